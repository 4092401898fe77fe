"""The dead-letter topic: a record we cannot process is forwarded unchanged, with why and from where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.core.metrics import DEAD_LETTERS
from services.kafka.producer import producer_config

REASON = "anchang-dlq-reason"
DETAIL = "anchang-dlq-detail"
SOURCE_TOPIC = "anchang-dlq-source-topic"
SOURCE_PARTITION = "anchang-dlq-source-partition"
SOURCE_OFFSET = "anchang-dlq-source-offset"
PROCESSOR = "anchang-dlq-processor"


@dataclass(frozen=True)
class Rejected:
    """A record that failed decoding or validation, and why (``reason`` is a short code)."""

    message: Message
    reason: str
    detail: str


class DeadLetterSink:
    def __init__(self, kafka_config: dict[str, Any], topic: str, processor: str) -> None:
        self._producer = Producer(producer_config(kafka_config))
        self._topic = topic
        self._processor = processor
        self._failures: list[KafkaError] = []

    def send(self, rejected: Rejected) -> None:
        message = rejected.message
        headers = [
            *(message.headers() or []),
            (REASON, rejected.reason.encode()),
            (DETAIL, rejected.detail[:2000].encode()),
            (SOURCE_TOPIC, (message.topic() or "").encode()),
            (SOURCE_PARTITION, str(message.partition()).encode()),
            (SOURCE_OFFSET, str(message.offset()).encode()),
            (PROCESSOR, self._processor.encode()),
        ]
        self._producer.produce(
            self._topic, message.value(), message.key(), headers=headers, on_delivery=self._on_delivery
        )
        DEAD_LETTERS.labels(self._processor, message.topic() or "", rejected.reason).inc()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every dead letter is acknowledged; the caller moves its offsets only after this."""
        remaining = self._producer.flush(timeout)
        if remaining or self._failures:
            failures, self._failures = self._failures, []
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT))

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)
