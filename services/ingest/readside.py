"""What every read endpoint shares: the request's read side (``app.state.ingestion``), the office its API key
belongs to, and running a query off the event loop.

The key check is imported from ``services.ingest.app`` when a request arrives, not at import time, so that app.py
can import the routers at its top without an import cycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from services.core.clock import Clock
from services.core.codec import EventCodec
from services.ownership.customers import CustomerKeys

T = TypeVar("T")


class ReadSide(Protocol):
    """What read endpoints need of ``app.state.ingestion`` (services.ingest.app.Ingestion has it)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def codec(self) -> EventCodec: ...

    @property
    def customer_keys(self) -> CustomerKeys: ...


def _read_side(request: Request) -> ReadSide:
    return request.app.state.ingestion  # type: ignore[no-any-return]


def _office(request: Request) -> str:
    from services.ingest.app import get_office  # at request time: app.py imports the routers

    return get_office(request, request.app.state.ingestion)


Service = Annotated[ReadSide, Depends(_read_side)]
Office = Annotated[str, Depends(_office)]


async def run_query(service: ReadSide, query: Callable[[Connection], T]) -> T:
    """``query`` on a connection of its own, in a worker thread (SQL drivers block)."""

    def run() -> T:
        with service.engine.connect() as connection:
            return query(connection)

    return await asyncio.to_thread(run)
