"""Projection processors on the real broker, on SQLite and PostgreSQL: folding, exactly-once effects,
restarts, dead letters and rebuilds."""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import OperationalError

from projections.base import ConsumedEvent
from projections.runner import ProjectionProcessor
from projections.service import PROCESSOR_NAME, build_processor
from projections.spine import EventRegister
from projections.tables import call_register, event_register, visit_register
from services.core.catalog import Catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ingest.events import build_event
from services.kafka import deadletter
from services.kafka.direct import DirectPublisher
from tests.support import call_logged, call_received, read_topic, visit_event, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
def office() -> str:
    """A fresh office per test: the session's topics are shared, the rows we look at are not."""
    return f"office-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def publisher(settings: Settings, codec: EventCodec, catalogue: Catalogue) -> DirectPublisher:
    return DirectPublisher(settings.kafka_client_config(), codec, catalogue)


def rows(engine: Engine, table: Any, office: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        result = connection.execute(select(table).where(table.c.office_id == office).order_by(*table.primary_key))
        return [dict(row._mapping) for row in result]


def counts(engine: Engine, office: str) -> dict[str, int]:
    return {row["event_type"]: row["event_count"] for row in rows(engine, event_register, office)}


def test_registers_fold_visits_calls_and_counts(settings: Settings, publisher: DirectPublisher, office: str) -> None:
    publisher.publish(visit_event("v-1", office=office, customer="王先生"))
    publisher.publish(visit_event("v-2", office=office, customer="李女士", received_by="s-02"))
    publisher.publish(visit_event("v-1", office=office, customer="王建国"))  # corrects v-1
    publisher.publish(call_logged("c-1", office=office, blank_fields=["wanted_unit_type"]))  # log before ring
    publisher.publish(call_received("c-1", office=office))
    publisher.flush()
    processor = build_processor(settings)
    processor.run_until_caught_up()

    visits = rows(processor.engine, visit_register, office)
    assert [(v["visit_id"], v["customer_name"]) for v in visits] == [("v-1", "王建国"), ("v-2", "李女士")]
    assert visits[1]["received_by"] == "s-02" and visits[1]["visit_type"] == "NEW"
    assert visits[1]["details"]["first_visit_claimed"] is True
    (call,) = rows(processor.engine, call_register, office)
    assert call["ring_count"] == 2 and call["answered_by"] == "s-01"  # from CallReceived
    assert call["logged_by"] == "s-01" and call["blank_fields"] == ["wanted_unit_type"]  # from CallLogged
    assert call["caller_class"] == "GENUINE_CUSTOMER" and call["visit_invited"] is True
    assert counts(processor.engine, office) == {"VisitRegistered": 3, "CallLogged": 1, "CallReceived": 1}


def test_a_republished_event_is_counted_once(settings: Settings, publisher: DirectPublisher, office: str) -> None:
    event_id = str(uuid.uuid4())
    publisher.publish({**visit_event("v-1", office=office), "event_id": event_id})
    publisher.publish({**visit_event("v-1", office=office), "event_id": event_id})  # a client retry
    publisher.flush()
    processor = build_processor(settings)
    processor.run_until_caught_up()
    assert counts(processor.engine, office) == {"VisitRegistered": 1}
    (register,) = rows(processor.engine, event_register, office)
    assert register["last_event_id"] == event_id


def test_a_restart_resumes_from_the_offsets_in_sql_not_kafkas(
    settings: Settings, publisher: DirectPublisher, office: str
) -> None:
    publisher.publish(visit_event("v-1", office=office))
    publisher.flush()
    build_processor(settings).run_until_caught_up()

    publisher.publish(visit_event("v-2", office=office))
    publisher.publish(visit_event("v-3", office=office))
    publisher.flush()
    # A new consumer group has no Kafka offsets at all: only SQL knows where we were.
    restarted = build_processor(settings.model_copy(update={"projector_group": f"other-{uuid.uuid4()}"}))
    assert restarted.run_until_caught_up() == 2
    assert counts(restarted.engine, office) == {"VisitRegistered": 3}


class Exploding:
    """A projection whose database fails mid-batch, after the other projections wrote their rows."""

    tables: Sequence[Any] = ()

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        if events:
            raise OperationalError("INSERT INTO register", {}, Exception("disk full"))


class ChokesOn:
    """A projection with a bug that one record's values trigger (a poison record)."""

    tables: Sequence[Any] = ()

    def __init__(self, visit_id: str) -> None:
        self.visit_id = visit_id

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        for event in events:
            if event.record.get("visit_id") == self.visit_id:
                raise KeyError("unit_type")


def test_a_failed_batch_leaves_no_trace_and_is_redone_exactly_once(
    settings: Settings, publisher: DirectPublisher, office: str
) -> None:
    healthy = build_processor(settings)
    healthy.run_until_caught_up()  # consume what earlier tests left, so the failing batch is ours
    for number in range(5):
        publisher.publish(visit_event(f"v-{number}", office=office))
    publisher.flush()
    failing = ProjectionProcessor(
        PROCESSOR_NAME,
        [EventRegister(), Exploding()],
        engine=healthy.engine,
        codec=healthy.codec,
        catalogue=healthy.catalogue,
        kafka_config=settings.kafka_client_config(),
        dead_letters=healthy.dead_letters,
        group_id=f"g-{uuid.uuid4()}",
    )
    with pytest.raises(OperationalError, match="disk full"):  # not the records' fault: crash, dead-letter nothing
        failing.run_until_caught_up()
    assert counts(healthy.engine, office) == {}  # the register rows rolled back with the offsets

    assert build_processor(settings).run_until_caught_up() == 5
    assert counts(healthy.engine, office) == {"VisitRegistered": 5}


def test_a_record_that_makes_a_projection_raise_is_dead_lettered_and_the_rest_applied(
    settings: Settings, publisher: DirectPublisher, office: str, broker: str
) -> None:
    healthy = build_processor(settings)
    healthy.run_until_caught_up()  # consume what earlier tests left, so the poisoned batch is ours
    before = dead_letter_count("processing_failed", "anchang.frontdesk")
    for number in range(5):
        publisher.publish(visit_event(f"v-{number}", office=office))
    publisher.flush()
    choking = ProjectionProcessor(
        PROCESSOR_NAME,
        [EventRegister(), ChokesOn("v-2")],
        engine=healthy.engine,
        codec=healthy.codec,
        catalogue=healthy.catalogue,
        kafka_config=settings.kafka_client_config(),
        dead_letters=healthy.dead_letters,
        topics=healthy.topics,
        group_id=f"g-{uuid.uuid4()}",
    )
    assert choking.run_until_caught_up() == 5
    assert counts(healthy.engine, office) == {"VisitRegistered": 4}  # the good ones, in their batch
    assert build_processor(settings).run_until_caught_up() == 0  # the offsets in SQL moved past the poison

    letters = [
        m for m in read_topic(broker, "anchang.deadletter")
        if _header(m, deadletter.REASON) == "processing_failed" and office.encode() in m.value()
    ]  # fmt: skip
    (letter,) = letters
    assert _header(letter, deadletter.DETAIL) == "KeyError: 'unit_type'"
    assert _header(letter, deadletter.PROCESSOR) == PROCESSOR_NAME
    assert healthy.codec.decode(letter.value())[1]["visit_id"] == "v-2"  # forwarded unchanged
    assert dead_letter_count("processing_failed", "anchang.frontdesk") == before + 1


def _header(message: Any, name: str) -> str | None:
    return next((value.decode() for key, value in message.headers() or [] if key == name), None)


def dead_letter_count(reason: str, source_topic: str) -> float:
    labels = {"processor": PROCESSOR_NAME, "source_topic": source_topic, "reason": reason}
    return REGISTRY.get_sample_value("anchang_dead_letters_total", labels) or 0.0


def test_bad_records_go_to_the_dead_letter_topic_and_processing_continues(
    settings: Settings, publisher: DirectPublisher, codec: EventCodec, office: str, broker: str
) -> None:
    before = {
        reason: dead_letter_count(reason, "anchang.frontdesk")
        for reason in ("not_confluent_avro", "unknown_schema_id", "wrong_topic")
    }
    marker = uuid.uuid4().hex.encode()
    publisher.raw("anchang.frontdesk", b"plain text, not avro " + marker, key=marker)
    publisher.raw("anchang.frontdesk", struct.pack(">bI", 0, 987654) + b"\x02xx", key=marker)
    clock_in = {
        "event_type": "ClockedIn",
        "office_id": office,
        "actor": {"staff_id": "s-1", "role": "SALES_CONSULTANT"},
        "payload": {"staff_id": "s-1", "clocked_at": "2026-11-22T08:29:00+08:00"},
    }
    event, errors = build_event(clock_in, office, publisher.catalogue, datetime.now(UTC))
    assert event is not None, errors
    publisher.raw("anchang.frontdesk", codec.encode("ClockedIn", event.record, "anchang.staff"), key=marker)
    publisher.publish(visit_event("v-after", office=office))
    publisher.flush()

    processor = build_processor(settings)
    processor.run_until_caught_up()

    assert [v["visit_id"] for v in rows(processor.engine, visit_register, office)] == ["v-after"]
    letters = [m for m in read_topic(broker, "anchang.deadletter") if m.key() == marker]
    reasons = []
    for letter in letters:
        headers = {key: value.decode() for key, value in letter.headers()}
        assert headers[deadletter.SOURCE_TOPIC] == "anchang.frontdesk"
        assert int(headers[deadletter.SOURCE_OFFSET]) >= 0 and headers[deadletter.SOURCE_PARTITION].isdigit()
        assert headers[deadletter.PROCESSOR] == PROCESSOR_NAME and headers[deadletter.DETAIL]
        reasons.append(headers[deadletter.REASON])
    assert sorted(reasons) == ["not_confluent_avro", "unknown_schema_id", "wrong_topic"]
    assert letters[0].value().endswith(marker)  # forwarded unchanged
    for reason, count in before.items():  # other tests' processors may have counted the same records too
        assert dead_letter_count(reason, "anchang.frontdesk") >= count + 1


def test_rebuild_replays_from_zero_into_the_same_tables(
    settings: Settings, publisher: DirectPublisher, office: str
) -> None:
    for number in range(3):
        publisher.publish(visit_event(f"v-{number}", office=office))
    publisher.publish(call_received("c-1", office=office))
    publisher.flush()
    processor = build_processor(settings)
    processor.run_until_caught_up()
    snapshot = [rows(processor.engine, table, office) for table in (event_register, visit_register, call_register)]

    processor.reset()
    assert rows(processor.engine, visit_register, office) == []
    progress: list[tuple[int, int]] = []
    replayed = processor.run_until_caught_up(lambda done, total: progress.append((done, total)))
    assert replayed >= 4 and progress[-1][0] == replayed
    assert [rows(processor.engine, t, office) for t in (event_register, visit_register, call_register)] == snapshot


def test_the_group_member_projects_live_and_reports_lag(
    settings: Settings, publisher: DirectPublisher, office: str
) -> None:
    processor = build_processor(settings)
    stop = threading.Event()
    worker = threading.Thread(target=processor.run, args=(stop,))
    worker.start()
    try:
        publisher.publish(visit_event("v-live", office=office))
        publisher.flush()
        wait_for(lambda: rows(processor.engine, visit_register, office), timeout=30, what="live projection")
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    lag = [
        sample
        for metric in REGISTRY.collect()
        if metric.name == "anchang_consumer_lag_messages"
        for sample in metric.samples
        if sample.labels["topic"] == "anchang.frontdesk"
    ]
    assert lag and all(sample.value == 0 for sample in lag)
