"""Publish events straight to Kafka, validated and encoded exactly as the API does, without HTTP.

For trusted in-house producers (importers, processors, benchmarks) that live next to the cluster."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from confluent_kafka import Producer

from services.core.catalog import Catalogue
from services.core.clock import Clock, system_clock
from services.core.codec import EventCodec
from services.ingest.events import build_event
from services.kafka.producer import producer_config


class InvalidEvent(ValueError):
    pass


class DirectPublisher:
    def __init__(
        self, kafka_config: dict[str, Any], codec: EventCodec, catalogue: Catalogue, clock: Clock = system_clock
    ) -> None:
        self.producer = Producer(producer_config(kafka_config))
        self.codec = codec
        self.catalogue = catalogue
        self.clock = clock  # gives recorded_at, as the API's clock does

    def publish(self, body: dict[str, Any], *, office_id: str | None = None, timestamp_ms: int | None = None) -> str:
        """Validate, encode and enqueue one API-shaped event body; return its event id. ``timestamp_ms`` sets the
        Kafka record timestamp (default: now), which processors ordering by timestamp follow."""
        office = office_id or body.get("office_id")
        if not office:
            raise InvalidEvent("office_id is required")
        event, errors = build_event(body, office, self.catalogue, self.clock().astimezone(UTC))
        if event is None:
            raise InvalidEvent("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        value = self.codec.encode(event.event_type, event.record, event.topic)
        while True:
            try:
                self.producer.produce(
                    event.topic,
                    value,
                    event.key.encode(),
                    headers=[("anchang-event-type", event.event_type.encode())],
                    timestamp=timestamp_ms or 0,  # 0: librdkafka stamps the current time
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
        return event.event_id

    def raw(self, topic: str, value: bytes | None, key: bytes = b"raw") -> None:
        """Produce bytes as they are (tests use it to send what no validated path would)."""
        self.producer.produce(topic, value, key)

    def flush(self, timeout: float = 60.0) -> None:
        if remaining := self.producer.flush(timeout):
            raise TimeoutError(f"{remaining} records not acknowledged after {timeout}s")
