"""Helpers the tests share: servers in threads, waiting, publishing straight to Kafka."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import Engine, text

T = TypeVar("T")

# The customer-key secret of the test settings (tests/conftest.py), so tests can derive the keys processors use.
TEST_CUSTOMER_KEY_SECRET = "anchang-tests-customer-key-secret"


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


def visit_event(
    visit_id: str,
    *,
    office: str = "office-a",
    customer: str = "王先生",
    phone: str = "13800000000",
    **payload: Any,
) -> dict[str, Any]:
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
        "payload": {
            "call_id": call_id,
            "caller_number": "13900000000",
            "ring_started_at": "2026-11-22T10:00:00+08:00",
            "ring_count": 2,
            "answered_by": "s-01",
            "answered_at": "2026-11-22T10:00:06+08:00",
        },
    }


def call_logged(call_id: str, *, office: str = "office-a", blank_fields: list[str] | None = None) -> dict[str, Any]:
    return {
        "event_type": "CallLogged",
        "occurred_at": "2026-11-22T10:05:00+08:00",
        "actor": {"staff_id": "s-01", "role": "SALES_CONSULTANT"},
        "office_id": office,
        "payload": {
            "call_id": call_id,
            "staff_id": "s-01",
            "customer_name": "李女士",
            "phone": "13900000000",
            "caller_class": "GENUINE_CUSTOMER",
            "visit_invited": True,
            "blank_fields": blank_fields or [],
        },
    }


def count_records(bootstrap: str, topic: str) -> int:
    """Records in ``topic``, counted by reading it to the end (fetch-based; tansu's ListOffsets is wrong)."""
    return len(read_topic(bootstrap, topic))


Ends = dict[tuple[str, int], int]  # (topic, partition) → next offset


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` (confluent-kafka Messages), read from the beginning to the end."""
    return read_log(bootstrap, (topic,))


def read_log(bootstrap: str, topics: tuple[str, ...], start: Ends | None = None) -> list[Any]:
    """Every record of ``topics`` from ``start`` (else the beginning) to the end, in (topic, partition, offset)
    order. The end is found by partition EOF, not ListOffsets, which tansu answers wrongly; short fetch waits
    keep an empty partition from costing half a second."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.partition.eof": True,
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=10)
        assigned = [
            TopicPartition(topic, partition, (start or {}).get((topic, partition), OFFSET_BEGINNING))
            for topic in topics
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        consumer.assign(assigned)
        at_end: set[tuple[str, int]] = set()
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(at_end) < len(assigned):
            assert time.monotonic() < deadline, f"could not read {topics} to their end"
            for message in consumer.consume(1000, timeout=0.1):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((message.topic() or "", message.partition() or 0))
                elif error is None:
                    records.append(message)
        records.sort(key=lambda m: (m.topic() or "", m.partition() or 0, m.offset() or 0))
        return records
    finally:
        consumer.close()


# SQLite has no table locks: a trigger that keeps the inserting transaction busy for minutes stands in for one.
_STALL_TRIGGER = """
CREATE TRIGGER crash_test_stall BEFORE INSERT ON projection_offsets BEGIN
    SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000000)
                          SELECT i FROM n);
END
"""


@contextmanager
def stalled_after_producing(engine: Engine) -> Iterator[None]:
    """While inside, a decision processor's next batch stops in its transaction right after its facts went to
    Kafka (FactEmitter.batch flushes them when the decision step is done, the runner then stores the offsets):
    that offsets write waits, on PostgreSQL for an EXCLUSIVE lock on projection_offsets held here (reads still
    pass), on SQLite in a trigger. Kill the processor before leaving: leaving lets a waiting insert go on."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE projection_offsets IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                connection.rollback()
        return
    with engine.begin() as connection:
        connection.execute(text(_STALL_TRIGGER))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER crash_test_stall"))
