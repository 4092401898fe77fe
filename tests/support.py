"""Helpers the tests share: servers in threads, waiting, publishing straight to Kafka."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import uvicorn
from confluent_kafka import Producer

T = TypeVar("T")


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="uvicorn start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "condition", interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def visit_event(visit_id: str, *, office: str = "office-a", customer: str = "王先生", phone: str = "13800000000",
                **payload: Any) -> dict[str, Any]:  # fmt: skip
    """A valid VisitRegistered body as the API takes it."""
    return {
        "event_type": "VisitRegistered",
        "occurred_at": "2026-11-22T09:30:00+08:00",
        "actor": {"staff_id": "fd-01", "role": "FRONT_DESK"},
        "office_id": office,
        "payload": {
            "visit_id": visit_id,
            "customer_name": customer,
            "phone": phone,
            "arrived_at": "2026-11-22T09:30:00+08:00",
            "visit_type": "NEW",
            "first_visit_claimed": True,
            "prior_contact_claimed": False,
            **payload,
        },
    }


def call_received(call_id: str, *, office: str = "office-a") -> dict[str, Any]:
    return {
        "event_type": "CallReceived",
        "occurred_at": "2026-11-22T10:00:00+08:00",
        "actor": {"staff_id": "s-01", "role": "SALES_CONSULTANT"},
        "office_id": office,
        "payload": {"call_id": call_id, "caller_number": "13900000000", "ring_started_at": "2026-11-22T10:00:00+08:00",
                    "ring_count": 2, "answered_by": "s-01", "answered_at": "2026-11-22T10:00:06+08:00"},
    }  # fmt: skip


def call_logged(call_id: str, *, office: str = "office-a", blank_fields: list[str] | None = None) -> dict[str, Any]:
    return {
        "event_type": "CallLogged",
        "occurred_at": "2026-11-22T10:05:00+08:00",
        "actor": {"staff_id": "s-01", "role": "SALES_CONSULTANT"},
        "office_id": office,
        "payload": {"call_id": call_id, "staff_id": "s-01", "customer_name": "李女士", "phone": "13900000000",
                    "caller_class": "GENUINE_CUSTOMER", "visit_invited": True, "blank_fields": blank_fields or []},
    }  # fmt: skip


class DirectPublisher:
    """Puts events on Kafka the way the API does, without HTTP: for projection tests and benchmarks."""

    def __init__(self, kafka_config: dict[str, Any], codec: Any, catalogue: Any) -> None:
        from services.kafka.producer import producer_config

        self.producer = Producer(producer_config(kafka_config))
        self.codec = codec
        self.catalogue = catalogue

    def publish(self, body: dict[str, Any], *, event_id: str | None = None) -> str:
        from services.ingest.events import build_event

        if event_id:
            body = {**body, "event_id": event_id}
        event, errors = build_event(body, body["office_id"], self.catalogue, datetime.now(UTC))
        assert event is not None, errors
        value = self.codec.encode(event.event_type, event.record, event.topic)
        self.producer.produce(event.topic, value, event.key.encode())
        return event.event_id

    def raw(self, topic: str, value: bytes | None, key: bytes = b"k") -> None:
        self.producer.produce(topic, value, key)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0
