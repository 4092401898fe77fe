"""The runner's timestamp order (``order_by_timestamp``) on the real broker: records of two topics published in an
order that contradicts their timestamps are applied in timestamp order, the offsets stored in SQL cover only
applied records, a partition with nothing to say does not stall a live processor beyond the idle bound, and
pausing partitions for the buffer bound loses nothing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from projections.base import ConsumedEvent
from projections.runner import ProjectionProcessor
from projections.tables import projection_offsets
from projections.wiring import processor_parts
from services.core.catalog import Catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.deadletter import DeadLetterSink
from services.kafka.direct import DirectPublisher
from tests.support import read_topic, visit_event, wait_for

pytestmark = pytest.mark.kafka

VISITS = "anchang.frontdesk"  # topic A (given first: it wins timestamp ties)
COMMANDS = "anchang.ownership.commands"  # topic B
TOPICS = (VISITS, COMMANDS)
Position = tuple[str, int]


@dataclass
class Recorder:
    """A projection that records what it is given, in order, and what offsets SQL held when each batch began."""

    name: str
    tables: Sequence[Any] = ()
    applied: list[ConsumedEvent] = field(default_factory=list)
    checks: list[tuple[dict[Position, int], dict[Position, int]]] = field(default_factory=list)  # (stored, applied)
    seeded: dict[Position, int] = field(default_factory=dict)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        stored = _stored_offsets(connection, self.name)
        covered = dict(self.seeded)
        for event in self.applied:
            covered[(event.topic, event.partition)] = event.offset + 1
        self.checks.append((stored, covered))
        self.applied.extend(events)


def _stored_offsets(connection: Connection, name: str) -> dict[Position, int]:
    rows = connection.execute(
        select(projection_offsets.c.topic, projection_offsets.c.partition, projection_offsets.c.next_offset).where(
            projection_offsets.c.processor == name
        )
    )
    return {(topic, partition): offset for topic, partition, offset in rows}


@dataclass
class Rig:
    settings: Settings
    codec: EventCodec
    catalogue: Catalogue
    broker: str
    publisher: DirectPublisher
    offices: list[str]

    def processor(self, **options: Any) -> tuple[ProjectionProcessor, Recorder]:
        """A processor over both topics that starts at their current end (the session's topics are shared)."""
        parts = processor_parts(self.settings)
        name = f"ordering-{uuid.uuid4().hex[:8]}"
        recorder = Recorder(name)
        recorder.seeded = self._seed_offsets_at_end(parts.engine, name)
        processor = ProjectionProcessor(
            name, [recorder], engine=parts.engine, codec=parts.codec, catalogue=parts.catalogue,
            kafka_config=parts.kafka, dead_letters=DeadLetterSink(parts.kafka, "anchang.deadletter", name),
            topics=TOPICS, group_id=name, order_by_timestamp=True, poll_timeout=0.1, fetch_wait_ms=2, **options,
        )  # fmt: skip
        return processor, recorder

    def _seed_offsets_at_end(self, engine: Any, name: str) -> dict[Position, int]:
        ends: dict[Position, int] = {}
        for topic in TOPICS:  # read to the end (tansu's ListOffsets is wrong)
            for message in read_topic(self.broker, topic):
                ends[(topic, message.partition())] = message.offset() + 1
        if not ends:
            return ends  # a fresh broker: nothing to skip
        with engine.begin() as connection:
            connection.execute(
                projection_offsets.insert(),
                [{"processor": name, "topic": t, "partition": p, "next_offset": o,
                  "updated_at": datetime.now(UTC)}
                 for (t, p), o in ends.items()],
            )  # fmt: skip
        return ends

    def visit(self, timestamp_ms: int, office: str) -> str:
        body = visit_event(f"v-{uuid.uuid4().hex[:8]}", office=office, phone="13800000000")
        return self.publisher.publish(body, timestamp_ms=timestamp_ms)

    def report(self, timestamp_ms: int, office: str) -> str:
        body = {
            "event_type": "OwnershipCommandIssued", "occurred_at": "2026-11-22T09:00:00+08:00", "office_id": office,
            "actor": {"staff_id": "ch-1", "role": "CHANNEL_AGENT"},
            "payload": {"command_type": "REPORT_CHANNEL_CUSTOMER", "phone": "13900000000", "customer_name": "王先生",
                        "channel_id": "ch-x", "agent_id": "ag-1"},
        }  # fmt: skip
        return self.publisher.publish(body, timestamp_ms=timestamp_ms)

    def publish_interleaved(self, pairs: int) -> list[str]:
        """``pairs`` reports (topic B, odd timestamps) published first, then as many visits (topic A, even
        timestamps): arrival order contradicts timestamps. Returns the event ids in timestamp order."""
        base = int(time.time() * 1000) - 600_000
        by_time: dict[int, str] = {}
        for index in range(pairs):
            by_time[base + 2 * index + 1] = self.report(base + 2 * index + 1, self.offices[index % len(self.offices)])
        self.publisher.flush()
        for index in range(pairs):
            by_time[base + 2 * index] = self.visit(base + 2 * index, self.offices[index % len(self.offices)])
        self.publisher.flush()
        return [by_time[moment] for moment in sorted(by_time)]


@pytest.fixture
def rig(
    settings: Settings, codec: EventCodec, catalogue: Catalogue, broker: str
) -> Iterator[Rig]:  # fmt: skip
    # Several offices: both topics are keyed by office, so the records spread over several partitions of each.
    offices = [f"office-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    yield Rig(settings, codec, catalogue, broker, DirectPublisher(settings.kafka_client_config(), codec, catalogue),
              offices)  # fmt: skip


@pytest.fixture
def sqlite_rig(broker: str, registry_url: str, codec: EventCodec, catalogue: Catalogue, tmp_path: Path) -> Rig:
    """For the live tests: their point is the consumer's timing, not the database."""
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'ordering.db'}", ANCHANG_DATA_DIR=tmp_path,
    )  # fmt: skip
    offices = [f"office-{uuid.uuid4().hex[:8]}"]
    return Rig(settings, codec, catalogue, broker, DirectPublisher(settings.kafka_client_config(), codec, catalogue),
               offices)  # fmt: skip


def test_records_of_two_topics_are_applied_in_timestamp_order_and_offsets_cover_only_applied_ones(rig: Rig) -> None:
    processor, recorder = rig.processor(batch_size=5)
    expected = rig.publish_interleaved(12)
    assert processor.run_until_caught_up() == 24

    assert [event.event_id for event in recorder.applied] == expected
    assert {event.topic for event in recorder.applied} == set(TOPICS)
    # Several partitions per topic (six offices all on one partition of 6: a chance of 1 in 7,776).
    assert len({(event.topic, event.partition) for event in recorder.applied}) > 2
    # When each batch began, SQL held exactly the positions after the records applied before it: never those of
    # records fetched and buffered (all of topic B arrived before topic A's earlier records) but not yet applied.
    assert len(recorder.checks) >= 5
    for stored, covered in recorder.checks:
        assert {key: stored[key] for key in covered} == covered
        assert set(stored) == set(covered)
    with processor.engine.connect() as connection:
        final = _stored_offsets(connection, processor.name)
    for event in recorder.applied:
        assert final[(event.topic, event.partition)] >= event.offset + 1
    last = {(event.topic, event.partition): event.offset + 1 for event in recorder.applied}
    assert {key: final[key] for key in last} == last


def test_pausing_partitions_beyond_the_buffer_bound_still_applies_everything_in_order(rig: Rig) -> None:
    processor, recorder = rig.processor(batch_size=3, max_buffered_per_partition=2)
    expected = rig.publish_interleaved(40)
    assert processor.run_until_caught_up() == 80
    assert [event.event_id for event in recorder.applied] == expected
    order = processor.timestamp_order
    assert order is not None and order.pauses > 0  # the bound was hit: partitions were paused and resumed


def _run_live(processor: ProjectionProcessor, recorder: Recorder, rig: Rig) -> tuple[float, float]:
    """Run the processor as a group member, publish one visit once it holds its partitions; return (seconds from
    the publish to the visit being applied, the idle bound)."""
    stop = threading.Event()
    thread = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        total = sum(topic.partitions for topic in rig.catalogue.event_topics if topic.name in TOPICS)
        wait_for(lambda: (o := processor.timestamp_order) is not None and len(o.buffers) == total, 30, "assignment")
        time.sleep(0.5)  # let the first fetches come back
        started = time.monotonic()
        event_id = rig.visit(int(time.time() * 1000), rig.offices[0])
        rig.publisher.flush()
        wait_for(lambda: any(e.event_id == event_id for e in recorder.applied), 10, "the visit applied", 0.01)
        return time.monotonic() - started, processor.max_idle_ms / 1000
    finally:
        stop.set()
        thread.join(timeout=15)


def test_partitions_with_no_data_do_not_stall_a_live_processor(sqlite_rig: Rig) -> None:
    processor, recorder = sqlite_rig.processor(max_idle_ms=10_000)
    latency, idle = _run_live(processor, recorder, sqlite_rig)
    # Topic B and the other partitions of A have nothing: they reported EOF, so nothing waits for them (not even
    # the long idle bound given here).
    assert latency < 2.0 < idle


def test_a_partition_never_reporting_its_end_holds_others_back_only_for_the_idle_bound(sqlite_rig: Rig) -> None:
    processor, recorder = sqlite_rig.processor(max_idle_ms=400)
    processor._consumer_config["enable.partition.eof"] = False  # no partition is ever known to be at its end
    latency, idle = _run_live(processor, recorder, sqlite_rig)
    assert idle <= latency < idle + 2.0
