"""Producing a decision processor's output: every record acknowledged before the batch's SQL commits.

A decision processor produces its facts, waits for every acknowledgement (acks=all, idempotent) and only then
commits the transaction that remembers them with the consumed offsets. A crash in between re-decides the batch
from the same state and re-produces the same event ids, which consumers drop as duplicates.

Records are held back until ``flush``: a decision batch runs inside ``batch()``, so a batch that raises (a record
our code cannot handle, which the runner then dead-letters) has sent nothing, not even its first facts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.core.codec import EventCodec
from services.ingest.events import OutgoingEvent
from services.kafka.producer import producer_config

FLUSH_TIMEOUT_SECONDS = 30


class FactEmitter:
    def __init__(self, kafka_config: dict[str, Any]) -> None:
        self.producer = Producer(producer_config(kafka_config))
        self._failures: list[KafkaError] = []
        self._pending: list[tuple[str, bytes, bytes, list[tuple[str, str | bytes | None]] | None]] = []

    def produce(self, topic: str, value: bytes, key: str, event_type: str | None = None) -> None:
        headers: list[tuple[str, str | bytes | None]] | None = (
            [("anchang-event-type", event_type.encode())] if event_type else None
        )
        self._pending.append((topic, value, key.encode(), headers))

    def produce_event(self, event: OutgoingEvent, codec: EventCodec) -> None:
        """A built event (``services.ingest.events``) to its catalogue topic, under its catalogue key."""
        self.produce(
            event.topic, codec.encode(event.event_type, event.record, event.topic), event.key, event.event_type
        )

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Records produced inside are sent (and acknowledged) when the block ends, dropped if it raises."""
        self._pending.clear()
        try:
            yield
        except BaseException:
            self._pending.clear()
            raise
        self.flush()

    def flush(self) -> None:
        """Send everything produced so far and wait until it is acknowledged; raise if any record was not."""
        pending, self._pending = self._pending, []
        for topic, value, key, headers in pending:
            while True:
                try:
                    self.producer.produce(topic, value, key, on_delivery=self._on_delivery, headers=headers)
                    break
                except BufferError:  # the client's local queue is full: let it drain
                    self.producer.poll(0.1)
        if self.producer.flush(FLUSH_TIMEOUT_SECONDS) or self._failures:
            failures, self._failures = self._failures, []
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT))

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)
