"""Read endpoints of 销控, office-scoped by the API key: the 销控表 now and as of any past instant, one unit and
its history, open subscriptions with their payment deadlines, refunds by stage, and the decision audit log.

``services.ingest.app`` includes ``router``. The key check is imported from it when a request arrives, not at
import time, so that app.py can import this module at its top without an import cycle."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Connection

from projections import sales
from services.ingest.readside import Office, Service, run_query

T = TypeVar("T")


Limit = Annotated[int, Query(ge=1, le=10_000, description="At most this many rows.")]
RefundStage = Literal["requested", "reviewed", "submitted", "approved", "rejected", "processed"]

router = APIRouter(prefix="/v1", tags=["销控 (read side)"])


def with_seconds_left(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``row`` with ``seconds_left_to_pay``: while the SALE-09 clock runs, the seconds until the payment deadline
    (0 once it passed but the expiry is not decided yet); null when no clock runs."""
    deadline = row.get("payment_deadline_at")
    left = None
    if row.get("status") == "subscribed" and deadline is not None:
        left = round(max(0.0, (deadline - now).total_seconds()), 3)
    return {**row, "seconds_left_to_pay": left}


_SPACED_OFFSET = re.compile(r"(?P<moment>.*\d{2}:\d{2}(:\d{2}(\.\d+)?)?) (?P<offset>\d{2}(:?\d{2})?)")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a UTC offset (or Z). A '+' the client did not encode as %2B arrives as a space
    ("…T10:00:00 08:00"); it is put back rather than refused, since that is what the client meant."""
    text = text.strip()
    if spaced := _SPACED_OFFSET.fullmatch(text):
        text = f"{spaced['moment']}+{spaced['offset']}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise HTTPException(422, f"at={text!r} is not an ISO 8601 instant, e.g. 2026-11-22T10:00:00+08:00") from error
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise HTTPException(422, f"at={text!r} has no UTC offset; add one, e.g. +08:00 (as %2B08:00 in a URL) or Z")
    return moment


def _unknown_unit(unit_id: str, office_id: str) -> HTTPException:
    return HTTPException(
        404, f"unit {unit_id!r} is unknown to office {office_id!r}: not in its inventory and never acted on by it"
    )


@router.get("/board", summary="The 销控表: every unit of the office with its status, holder and time left to pay")
async def board(
    service: Service, office_id: Office, project_id: str | None = None, building: str | None = None
) -> list[dict[str, Any]]:
    rows = await run_query(service, lambda connection: sales.board(connection, office_id, project_id, building))
    now = service.clock()
    return [with_seconds_left(row, now) for row in rows]


@router.get("/board/as-of", summary="The 销控表 as it was at a past instant, rebuilt from the units' histories")
async def board_as_of(
    service: Service,
    office_id: Office,
    at: Annotated[str, Query(description="ISO 8601 with offset, e.g. 2026-11-22T10:00:00%2B08:00 or …Z")],
    project_id: str | None = None,
) -> list[dict[str, Any]]:
    moment = parse_instant(at)
    rows = await run_query(service, lambda connection: sales.board_as_of(connection, office_id, moment, project_id))
    return [with_seconds_left(row, moment) for row in rows]


@router.get("/units/{unit_id}", summary="One unit: its 销控 state and inventory attributes")
async def unit(service: Service, office_id: Office, unit_id: str) -> dict[str, Any]:
    row = await run_query(service, lambda connection: sales.unit_view(connection, office_id, unit_id))
    if row is None:
        raise _unknown_unit(unit_id, office_id)
    return with_seconds_left(row, service.clock())


@router.get("/units/{unit_id}/history", summary="Every fact of one unit in log order, with its status after each")
async def unit_history(service: Service, office_id: Office, unit_id: str) -> list[dict[str, Any]]:
    def query(connection: Connection) -> list[dict[str, Any]] | None:
        if not sales.unit_visible(connection, office_id, unit_id):
            return None
        return sales.history_view(connection, unit_id)

    history = await run_query(service, query)
    if history is None:
        raise _unknown_unit(unit_id, office_id)
    return history


@router.get("/subscriptions/open", summary="Subscriptions (认购) awaiting payment, soonest deadline first")
async def open_subscriptions(service: Service, office_id: Office) -> list[dict[str, Any]]:
    rows = await run_query(service, lambda connection: sales.open_subscriptions(connection, office_id))
    now = service.clock()
    return [with_seconds_left(row, now) for row in rows]


@router.get("/refunds", summary="Refund applications (退订/退房) by stage, most recently moved first")
async def refunds(service: Service, office_id: Office, stage: RefundStage | None = None) -> list[dict[str, Any]]:
    return await run_query(service, lambda connection: sales.refunds_of(connection, office_id, stage))


@router.get("/decisions", summary="The decision audit log: who asked, what was decided, under which rule")
async def decisions(
    service: Service,
    office_id: Office,
    unit_id: str | None = None,
    outcome: Literal["accepted", "rejected"] | None = None,
    limit: Limit = 1000,
) -> list[dict[str, Any]]:
    return await run_query(
        service, lambda connection: sales.decisions_of(connection, office_id, unit_id, outcome, limit)
    )
