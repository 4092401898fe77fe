"""The projection processor: Kafka records in, SQL rows out, offsets committed with the rows.

Why a plain confluent-kafka consumer and not a faust agent: see docs/architecture.md ("Projection
processors"). In short, exactly-once effects need the batch's rows and its offsets in one SQL
transaction and a restart that resumes from the offsets in SQL; faust owns offset commits and its
Table recovery is unreliable on tansu, and measured throughput is several times lower.

Optionally (``order_by_timestamp``) records are processed across all assigned partitions in the order of their
Kafka timestamps, as Kafka Streams does (``TimestampOrder``): without it, a catch-up may consume one topic far ahead
of another, so a decision would depend on fetch timing instead of on the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
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
PartitionKey = tuple[str, int]  # (topic, partition)

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


class TimestampOrder:
    """Fetched records buffered per partition and released in timestamp order across partitions (the rule of
    Kafka Streams' PartitionGroup and ``max.task.idle.ms``).

    The next record is always the buffered one with the smallest (timestamp, rank of its topic, partition,
    offset). While an assigned partition has nothing buffered and has not reported PARTITION_EOF since its last
    record, it may still hold an earlier record, so nothing is released: ``strict`` waits for it as long as it
    takes (a catch-up, whose result must not depend on fetch timing), otherwise only ``max_idle`` seconds from
    the moment it first held others back, so a slow or silent partition cannot stall live processing. A
    partition whose buffer grows past ``max_buffered`` is to be paused, and resumed once it has drained to half
    of it (``flow``)."""

    def __init__(self, topics: Sequence[str], *, max_idle_ms: int, max_buffered: int) -> None:
        self.rank = {topic: index for index, topic in enumerate(topics)}
        self.max_idle = max_idle_ms / 1000
        self.max_buffered = max_buffered
        self.buffers: dict[PartitionKey, deque[Message]] = {}
        self.at_end: set[PartitionKey] = set()  # PARTITION_EOF seen since the partition's last record
        self.idle_since: dict[PartitionKey, float] = {}  # empty partitions holding others back, since when
        self.paused: set[PartitionKey] = set()
        self.pauses = 0  # partitions paused so far (for tests and curiosity)
        self.generation = 0  # bumped by every revoke: records taken before it are re-read from the offsets in SQL

    # ------------------------------------------------------------ assignment

    def assign(self, keys: Iterable[PartitionKey]) -> None:
        for key in keys:
            self.buffers[key] = deque()
            self.at_end.discard(key)
            self.idle_since.pop(key, None)
            self.paused.discard(key)

    def revoke(self, keys: Iterable[PartitionKey]) -> None:
        """Forget the partitions' buffered records: they were not processed, so no offset covers them, and
        whoever is assigned the partition next resumes from the offsets in SQL."""
        for key in keys:
            self.buffers.pop(key, None)
            self.at_end.discard(key)
            self.idle_since.pop(key, None)
            self.paused.discard(key)
        self.generation += 1

    # ------------------------------------------------------------ records in

    def add(self, message: Message) -> None:
        key = (message.topic() or "", message.partition() or 0)
        buffer = self.buffers.get(key)
        if buffer is None:
            return  # fetched before its partition was revoked
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self.at_end.add(key)
                self.idle_since.pop(key, None)
            else:
                log.warning("consumer error %s", error)
            return
        buffer.append(message)
        self.at_end.discard(key)
        self.idle_since.pop(key, None)

    # ------------------------------------------------------------ records out

    def take(self, limit: int, *, strict: bool) -> list[Message]:
        """Up to ``limit`` records in timestamp order, stopping where an empty partition may still hold an
        earlier one."""
        taken: list[Message] = []
        while len(taken) < limit:
            heads = [(_order_key(buffer[0], self.rank), key) for key, buffer in self.buffers.items() if buffer]
            if not heads or self.waiting_for(strict=strict):
                break
            _, key = min(heads)
            taken.append(self.buffers[key].popleft())
        return taken

    def waiting_for(self, *, strict: bool) -> list[PartitionKey]:
        """The empty partitions not known to be at their end that still hold the others back."""
        now = time.monotonic()
        waiting = []
        for key, buffer in self.buffers.items():
            if buffer or key in self.at_end:
                continue
            since = self.idle_since.setdefault(key, now)
            if strict or now - since < self.max_idle:
                waiting.append(key)
        return waiting

    def wait_limit(self, *, strict: bool) -> float | None:
        """Seconds until the idle bound of a partition holding records back runs out (None: nothing to wait
        out). Called only when records are buffered."""
        if strict:
            return None
        deadlines = [self.idle_since[key] + self.max_idle for key in self.waiting_for(strict=False)]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def buffered(self) -> int:
        return sum(len(buffer) for buffer in self.buffers.values())

    def drained(self) -> bool:
        """Every assigned partition processed to the end it reported."""
        return all(not buffer and key in self.at_end for key, buffer in self.buffers.items())

    def flow(self) -> tuple[list[PartitionKey], list[PartitionKey]]:
        """(partitions to pause, partitions to resume) for the buffers' sizes now; updates ``paused``."""
        pause = [k for k, b in self.buffers.items() if k not in self.paused and len(b) > self.max_buffered]
        resume = [k for k in self.paused if len(self.buffers[k]) <= self.max_buffered // 2]
        self.paused.update(pause)
        self.paused.difference_update(resume)
        self.pauses += len(pause)
        return pause, resume


def _order_key(message: Message, rank: dict[str, int]) -> tuple[int, int, int, int]:
    kind, timestamp = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE:
        timestamp = -1  # (pre-0.10 records) ordered by where they sit in their partition only
    return (timestamp, rank.get(message.topic() or "", len(rank)), message.partition() or 0, message.offset() or 0)


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
        order_by_timestamp: bool = False,
        max_idle_ms: int = 300,
        max_buffered_per_partition: int = 1000,
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
        # Timestamp order across partitions (None: each batch as fetched, ordered only within a partition).
        self.order_by_timestamp = order_by_timestamp
        self.max_idle_ms = max_idle_ms
        self.max_buffered_per_partition = max_buffered_per_partition
        self._order: TimestampOrder | None = None
        self._last_fetch = time.monotonic()  # when the consumer last returned anything (a record or an EOF)

    @property
    def timestamp_order(self) -> TimestampOrder | None:
        """The buffers of the current or last run when ordering by timestamp."""
        return self._order

    def _new_order(self) -> TimestampOrder | None:
        if not self.order_by_timestamp:
            return None
        return TimestampOrder(self.topics, max_idle_ms=self.max_idle_ms, max_buffered=self.max_buffered_per_partition)

    # ---------------------------------------------------------------- consuming

    def run(self, stop: threading.Event) -> None:
        """Consume as a member of the processor's group until ``stop`` is set."""
        consumer = Consumer(self._consumer_config)
        self._order = self._new_order()
        consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set():
                if self._order is None:
                    batch = self._next_batch(consumer)
                else:
                    batch = self._next_ordered_batch(consumer, self._order, strict=False)
                self._process(consumer, batch)
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
        self._order = self._new_order()
        if self._order is not None:
            try:
                return self._catch_up_in_order(consumer, self._order, partitions, progress, idle_timeout)
            finally:
                consumer.close()
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

    def _catch_up_in_order(
        self,
        consumer: Consumer,
        order: TimestampOrder,
        partitions: list[TopicPartition],
        progress: Progress | None,
        idle_timeout: float,
    ) -> int:
        """run_until_caught_up() in timestamp order: strict (an empty partition short of its end is always waited
        for, so the result does not depend on fetch timing); done when every partition is drained to its EOF."""
        order.assign((partition.topic, partition.partition) for partition in partitions)
        done = 0
        self._last_fetch = time.monotonic()
        while not order.drained():
            outcome = self._process(consumer, self._next_ordered_batch(consumer, order, strict=True))
            done += outcome.applied + outcome.duplicates + outcome.dead_letters
            if time.monotonic() - self._last_fetch > idle_timeout:
                ended = len(order.at_end)
                raise TimeoutError(f"{self.name}: no progress for {idle_timeout}s, {ended} partitions at end")
            if progress is not None:
                progress(done, done + self._known_lag(consumer, partitions))
        return done

    def _next_ordered_batch(self, consumer: Consumer, order: TimestampOrder, *, strict: bool) -> list[Message]:
        """Up to ``batch_size`` records in timestamp order. Waits (polling) up to ``poll_timeout`` for the first
        one, or less when the idle bound of a partition holding records back runs out first; then hands over
        what it has as soon as the consumer has nothing more right away (low latency when records trickle)."""
        batch: list[Message] = []
        deadline = time.monotonic() + self.poll_timeout
        generation = order.generation
        while len(batch) < self.batch_size:
            if batch or (order.buffered() and not order.waiting_for(strict=strict)):
                wait = 0.0  # records ready: take what is already fetched, do not wait
            else:
                wait = max(0.0, deadline - time.monotonic())
                if order.buffered() and (limit := order.wait_limit(strict=strict)) is not None:
                    wait = min(wait, limit)
            received = self._fill(consumer, order, wait)
            self._flow(consumer, order)
            if order.generation != generation:  # a revoke ran inside poll(): every partition is re-read from SQL
                batch = []
                generation = order.generation
            taken = order.take(self.batch_size - len(batch), strict=strict)
            batch += taken
            # Done when nothing more is ready: hand over what there is, or nothing once poll_timeout is up (so
            # run() ticks its timers even while records of other partitions keep coming and one is awaited).
            if not taken and ((batch and not received) or time.monotonic() >= deadline):
                break
        self._flow(consumer, order)
        return batch

    @staticmethod
    def _flow(consumer: Consumer, order: TimestampOrder) -> None:
        """Pause the partitions buffered beyond the bound (while an earlier record is awaited elsewhere, say),
        resume the ones drained: memory stays bounded by about the bound plus what librdkafka prefetched."""
        pause, resume = order.flow()
        if pause:
            consumer.pause([TopicPartition(topic, partition) for topic, partition in pause])
        if resume:
            consumer.resume([TopicPartition(topic, partition) for topic, partition in resume])

    def _fill(self, consumer: Consumer, order: TimestampOrder, wait: float) -> int:
        """Move what the consumer has fetched into the buffers, waiting up to ``wait`` s if it has nothing;
        return how many records and EOFs came."""
        messages = consumer.consume(self.batch_size, timeout=0)
        if not messages and wait > 0:
            first = consumer.poll(wait)
            messages = [first, *consumer.consume(self.batch_size - 1, timeout=0)] if first is not None else []
        for message in messages:
            order.add(message)
        if messages:
            self._last_fetch = time.monotonic()
        return len(messages)

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
        if self._order is not None:
            self._order.assign((partition.topic, partition.partition) for partition in partitions)
            if partitions:
                consumer.resume(partitions)  # a pause of ours must not outlive the assignment it was made in
        ASSIGNED_PARTITIONS.labels(self.name).set(len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self._positions.pop((partition.topic, partition.partition), None)
        if self._order is not None:  # unassign() drops every partition, so every buffer goes
            self._order.revoke(list(self._order.buffers))
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
