"""The projection processor: Kafka records in, SQL rows out, offsets committed with the rows.

Why a plain confluent-kafka consumer and not a faust agent: see docs/architecture.md ("Projection
processors"). In short, exactly-once effects need the batch's rows and its offsets in one SQL
transaction and a restart that resumes from the offsets in SQL; faust owns offset commits and its
Table recovery is unreliable on tansu, and measured throughput is several times lower."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from projections.base import BulkInsert, ConsumedEvent, Projection, Upsert
from projections.tables import processed_events, projection_offsets
from services.core.catalog import Catalogue
from services.core.clock import Clock, system_clock
from services.core.codec import EventCodec, UndecodableEvent
from services.core.metrics import ASSIGNED_PARTITIONS, CONSUMER_LAG, EVENT_LATENCY, EVENTS_CONSUMED
from services.kafka.deadletter import DeadLetterSink, Rejected

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (records done, records known so far)

PROCESSING_FAILED = "processing_failed"  # dead-letter reason: the record made a projection raise
SQL_IN_CHUNK = 900  # ids per "IN (…)" lookup: stays under SQLite's bound-parameter limit
PROCESSED_EVENTS_INSERT = BulkInsert(processed_events, ("processor", "event_id", "topic", "partition", "offset"))
OFFSETS_UPSERT = Upsert(
    projection_offsets,
    ("processor", "topic", "partition", "next_offset", "updated_at"),
    keys=("processor", "topic", "partition"),
)


@dataclass
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) → next offset


class ProjectionProcessor:
    def __init__(
        self,
        name: str,
        projections: Sequence[Projection],
        *,
        engine: Engine,
        codec: EventCodec,
        catalogue: Catalogue,
        kafka_config: dict[str, Any],
        dead_letters: DeadLetterSink,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        batch_size: int = 5000,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        clock: Clock = system_clock,
        tick: Callable[[], None] | None = None,
        poll_timeout: float = 0.5,
        fetch_wait_ms: int = 100,
    ) -> None:
        self.name = name
        self.projections = projections
        self.engine = engine
        self.codec = codec
        self.catalogue = catalogue
        self.topics = list(topics or [topic.name for topic in catalogue.event_topics])
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.clock = clock
        self.tick = tick  # called after every batch (or idle poll) of run(): timers hang off it
        self.poll_timeout = poll_timeout
        self._consumer_config = {
            **kafka_config,
            "group.id": group_id or name,
            "enable.auto.commit": False,  # SQL holds the offsets that count; Kafka's copy is for lag tools
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            # How long the broker may hold a fetch open waiting for data; tansu holds it the whole time, so
            # this bounds the latency a record can wait before the processor sees it.
            "fetch.wait.max.ms": fetch_wait_ms,
        }
        self._positions: dict[tuple[str, int], int] = {}

    # ---------------------------------------------------------------- consuming

    def run(self, stop: threading.Event) -> None:
        """Consume as a member of the processor's group until ``stop`` is set."""
        consumer = Consumer(self._consumer_config)
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                self._process(consumer, self._next_batch(consumer))
                if self.tick is not None:
                    self.tick()
        finally:
            consumer.close()

    def run_until_caught_up(self, progress: Progress | None = None, idle_timeout: float = 30.0) -> int:
        """Consume every partition from the offsets in SQL to the current end, then return the number of
        records handled. Uses assign(), not the group, so it can run beside nothing else."""
        consumer = Consumer(self._consumer_config)
        partitions = self._all_partitions(consumer)
        consumer.assign(self._starting_offsets(partitions))
        at_end: set[tuple[str, int]] = set()
        done = 0
        last_activity = time.monotonic()
        try:
            while len(at_end) < len(partitions):
                messages = self._next_batch(consumer)
                for message in messages:
                    key = (message.topic() or "", message.partition() or 0)
                    if _is_end_of_partition(message):
                        at_end.add(key)
                    else:
                        at_end.discard(key)
                outcome = self._process(consumer, messages)
                handled = outcome.applied + outcome.duplicates + outcome.dead_letters
                done += handled
                if messages:
                    last_activity = time.monotonic()
                elif time.monotonic() - last_activity > idle_timeout:
                    raise TimeoutError(f"{self.name}: no progress for {idle_timeout}s, {len(at_end)} partitions at end")
                if progress is not None:
                    progress(done, done + self._known_lag(consumer, partitions))
        finally:
            consumer.close()
        return done

    def _next_batch(self, consumer: Consumer) -> list[Message]:
        """Wait for one record (up to ``poll_timeout``), then take whatever else is already fetched: low
        latency when records trickle in, big batches when they pour (``consume`` alone would wait for a
        full batch or the whole timeout)."""
        first = consumer.poll(self.poll_timeout)
        if first is None:
            return []
        return [first, *consumer.consume(self.batch_size - 1, timeout=0)]

    def reset(self) -> None:
        """Empty this processor's tables, offsets and seen-event ids (for a rebuild from offset 0)."""
        with self.engine.begin() as connection:
            for projection in self.projections:
                for table in projection.tables:
                    connection.execute(delete(table))
            connection.execute(delete(projection_offsets).where(projection_offsets.c.processor == self.name))
            connection.execute(delete(processed_events).where(processed_events.c.processor == self.name))

    def _all_partitions(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=30)
        return [
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in sorted(metadata.topics[topic].partitions)
        ]

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(self._starting_offsets(partitions))
        ASSIGNED_PARTITIONS.labels(self.name).set(len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self._positions.pop((partition.topic, partition.partition), None)
        consumer.unassign()
        ASSIGNED_PARTITIONS.labels(self.name).set(0)

    def _starting_offsets(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Resume each partition from the offset committed in SQL (or the beginning)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    projection_offsets.c.topic,
                    projection_offsets.c.partition,
                    projection_offsets.c.next_offset,
                ).where(projection_offsets.c.processor == self.name)
            ).all()
        stored = {(topic, partition): offset for topic, partition, offset in rows}
        assigned = []
        for partition in partitions:
            offset = stored.get((partition.topic, partition.partition), OFFSET_BEGINNING)
            assigned.append(TopicPartition(partition.topic, partition.partition, offset))
            if offset >= 0:
                self._positions[(partition.topic, partition.partition)] = offset
        return assigned

    # ---------------------------------------------------------------- one batch

    def _process(self, consumer: Consumer, messages: list[Message]) -> BatchOutcome:
        outcome = BatchOutcome()
        events: list[ConsumedEvent] = []
        sources: dict[tuple[str, int, int], Message] = {}
        rejected: list[Rejected] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if not _is_end_of_partition(message):
                    log.warning("%s: consumer error %s", self.name, error)
                continue
            topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
            outcome.positions[(topic, partition)] = offset + 1
            try:
                events.append(self._decode(message, topic, partition, offset))
                sources[(topic, partition, offset)] = message
            except UndecodableEvent as problem:
                rejected.append(Rejected(message, problem.reason, problem.detail))
        if not outcome.positions:
            self._update_lag(consumer)
            return outcome
        for item in rejected:
            self.dead_letters.send(item)
        # Dead letters must be durable before the offsets move past their source records.
        self.dead_letters.flush()
        failures: list[RecordFailure] = []
        try:
            applied = self._commit(events, outcome.positions)
        except Exception as problem:
            if not is_record_fault(problem):
                raise  # the database or Kafka failing: crash, restart and redo the batch, lose nothing
            log.warning("%s: a batch of %d failed (%r); applying it record by record", self.name, len(events), problem)
            applied, failures = self._commit_one_by_one(events)
            for failure in failures:
                rejected.append(Rejected(sources[failure.event.position], PROCESSING_FAILED, failure.detail))
                self.dead_letters.send(rejected[-1])
            self.dead_letters.flush()
            with self.engine.begin() as connection:
                self._store_offsets(connection, outcome.positions)
        outcome.dead_letters = len(rejected)
        outcome.applied, outcome.duplicates = len(applied), len(events) - len(applied) - len(failures)
        self._positions.update(outcome.positions)
        self._observe(applied)
        consumer.commit(
            offsets=[
                TopicPartition(topic, partition, offset) for (topic, partition), offset in outcome.positions.items()
            ],
            asynchronous=True,
        )
        self._update_lag(consumer)
        return outcome

    def _decode(self, message: Message, topic: str, partition: int, offset: int) -> ConsumedEvent:
        event_type, record = self.codec.decode(message.value())
        envelope = record.get("envelope") or {}
        if envelope.get("event_type") != event_type:
            raise UndecodableEvent(
                "invalid_envelope",
                f"envelope.event_type {envelope.get('event_type')!r} != record {event_type}",
            )
        if not envelope.get("office_id"):
            raise UndecodableEvent("invalid_envelope", "envelope.office_id is empty")
        expected = self.catalogue.topic_of_type[event_type].name
        if topic != expected:
            raise UndecodableEvent("wrong_topic", f"{event_type} belongs on {expected}, not {topic}")
        return ConsumedEvent(topic, partition, offset, event_type, record)

    def _commit(self, events: list[ConsumedEvent], positions: dict[tuple[str, int], int]) -> list[ConsumedEvent]:
        """Apply the unseen events and store the new offsets in one transaction; return what was applied."""
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    fresh = self._claim(connection, events)
                    for projection in self.projections:
                        projection.apply(connection, fresh)
                    self._store_offsets(connection, positions)
                return fresh
            except IntegrityError:
                # Another member of the group applied some of these events first (a rebalance race);
                # the next attempt sees them as duplicates.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _commit_one_by_one(self, events: list[ConsumedEvent]) -> tuple[list[ConsumedEvent], list[RecordFailure]]:
        """Apply each event in a transaction of its own (offsets are the caller's); return the applied events
        and the ones that raised a record fault, with why. A restart before the caller stores the offsets
        sees the applied ones as duplicates and fails (and dead-letters) the others again."""
        applied: list[ConsumedEvent] = []
        failures: list[RecordFailure] = []
        for event in events:
            try:
                applied += self._commit([event], {})
            except Exception as problem:
                if not is_record_fault(problem):
                    raise
                log.exception("%s: %s at %s:%d:%d dead-lettered", self.name, event.event_type, *event.position)
                failures.append(RecordFailure(event, f"{type(problem).__name__}: {problem}"))
        return applied, failures

    def _claim(self, connection: Connection, events: list[ConsumedEvent]) -> list[ConsumedEvent]:
        """Record the batch's event ids as processed and return the events not processed before, in order.

        An id already stored (a client's retry, or a record re-emitted after a crash) or seen earlier in the
        batch is dropped. The ids are looked up first and the new ones inserted with a plain INSERT: if another
        member of the group claims one of them in between (a rebalance race), the INSERT fails on the primary
        key and ``_commit`` retries the batch, which then sees them as duplicates."""
        first_of_id: dict[str, ConsumedEvent] = {}
        for event in events:
            first_of_id.setdefault(event.event_id, event)
        # Looked up and inserted in key order: random uuids otherwise reach the index pages in random order.
        ids = sorted(first_of_id)
        seen = self._already_processed(connection, ids)
        rows = []
        for event_id in ids:
            if event_id not in seen:
                event = first_of_id[event_id]
                rows.append((self.name, event_id, event.topic, event.partition, event.offset))
        PROCESSED_EVENTS_INSERT.execute_values(connection, rows)
        return [event for event_id, event in first_of_id.items() if event_id not in seen]

    def _already_processed(self, connection: Connection, event_ids: list[str]) -> set[str]:
        seen: set[str] = set()
        for start in range(0, len(event_ids), SQL_IN_CHUNK):
            seen.update(
                connection.execute(
                    select(processed_events.c.event_id).where(
                        processed_events.c.processor == self.name,
                        processed_events.c.event_id.in_(event_ids[start : start + SQL_IN_CHUNK]),
                    )
                ).scalars()
            )
        return seen

    def _store_offsets(self, connection: Connection, positions: dict[tuple[str, int], int]) -> None:
        now = self.clock()
        OFFSETS_UPSERT.execute_values(
            connection,
            [(self.name, topic, partition, offset, now) for (topic, partition), offset in positions.items()],
        )

    # ---------------------------------------------------------------- metrics

    def _observe(self, applied: list[ConsumedEvent]) -> None:
        now = datetime.now(UTC)  # latency is measured on the wall clock, whatever clock decisions use
        observe_latency = EVENT_LATENCY.labels(self.name).observe
        counts: Counter[tuple[str, str]] = Counter()
        for event in applied:
            counts[(event.event_type, event.office_id)] += 1
            observe_latency(max(0.0, (now - event.occurred_at).total_seconds()))
        for (event_type, office_id), count in counts.items():
            EVENTS_CONSUMED.labels(self.name, event_type, office_id).inc(count)

    def _known_lag(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> int:
        """Records between our position and the high watermark of the last fetch response. (Not
        ListOffsets: tansu answers it wrongly.)"""
        total = 0
        for partition in partitions:
            _low, high = consumer.get_watermark_offsets(partition, cached=True) or (0, 0)
            position = self._positions.get((partition.topic, partition.partition), 0)
            if high >= 0:
                total += max(0, high - position)
        return total

    def _update_lag(self, consumer: Consumer) -> None:
        for topic, partition in list(self._positions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True) or (
                0,
                0,
            )
            if high >= 0:
                lag = max(0, high - self._positions[(topic, partition)])
                CONSUMER_LAG.labels(self.name, topic, str(partition)).set(lag)


def _is_end_of_partition(message: Message) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF


@dataclass(frozen=True)
class RecordFailure:
    event: ConsumedEvent
    detail: str


def is_record_fault(problem: Exception) -> bool:
    """Whether ``problem`` is this record's doing (a value our code or a column cannot take), to dead-letter,
    rather than the environment failing (Kafka, the database's connection, disk, a missing migration),
    to crash on and redo after the restart."""
    if isinstance(problem, DBAPIError):
        return isinstance(problem, IntegrityError | DataError)
    if isinstance(problem, StatementError):
        return True  # a parameter that could not be converted before it reached the database
    return not isinstance(problem, SQLAlchemyError | KafkaException | OSError)
