"""Reading the dead-letter topic back: what failed, where and why, and putting records back once fixed.

A dead letter is the source record unchanged plus headers saying why (``services.kafka.deadletter``). Replaying
one produces it again, unchanged, to its source topic: every processor drops records whose event id it has
already applied, so only the processors that failed on it (and no longer do) act on the copy. If it still fails,
it is dead-lettered again; nothing is lost either way."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.kafka import deadletter
from services.kafka.producer import producer_config

REPLAYED_FROM = "anchang-replayed-from"  # header on a replayed record: "<dead-letter partition>:<offset>"
HEADERS_ADDED_ON_DEAD_LETTERING = frozenset(
    {
        deadletter.REASON,
        deadletter.DETAIL,
        deadletter.SOURCE_TOPIC,
        deadletter.SOURCE_PARTITION,
        deadletter.SOURCE_OFFSET,
        deadletter.PROCESSOR,
    }
)


@dataclass(frozen=True)
class DeadLetter:
    partition: int  # where the dead letter itself sits on the dead-letter topic
    offset: int
    reason: str
    detail: str
    processor: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    original_headers: tuple[tuple[str, bytes], ...]  # the source record's own headers

    @property
    def source(self) -> tuple[str, int, int]:
        return self.source_topic, self.source_partition, self.source_offset

    @property
    def event_type(self) -> str:
        """From the producer's header when the source record had one; "?" otherwise."""
        for name, value in self.original_headers:
            if name == "anchang-event-type":
                return value.decode(errors="replace")
        return "?"


def parse(message: Message) -> DeadLetter:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = [(name, _bytes(value)) for name, value in pairs]
    added = {name: value.decode(errors="replace") for name, value in headers if name in HEADERS_ADDED_ON_DEAD_LETTERING}
    return DeadLetter(
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        reason=added.get(deadletter.REASON, "?"),
        detail=added.get(deadletter.DETAIL, ""),
        processor=added.get(deadletter.PROCESSOR, "?"),
        source_topic=added.get(deadletter.SOURCE_TOPIC, ""),
        source_partition=_int(added.get(deadletter.SOURCE_PARTITION)),
        source_offset=_int(added.get(deadletter.SOURCE_OFFSET)),
        key=message.key(),
        value=message.value(),
        original_headers=tuple((n, v) for n, v in headers if n not in HEADERS_ADDED_ON_DEAD_LETTERING),
    )


def _bytes(value: str | bytes | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1


def matching(
    letters: Iterable[DeadLetter],
    *,
    reason: str | None = None,
    processor: str | None = None,
    source_topic: str | None = None,
) -> list[DeadLetter]:
    """The letters that pass every filter given; each source record once (several processors may have
    dead-lettered the same record: one copy back on the log serves them all)."""
    selected: dict[tuple[str, int, int], DeadLetter] = {}
    for letter in letters:
        if reason is not None and letter.reason != reason:
            continue
        if processor is not None and letter.processor != processor:
            continue
        if source_topic is not None and letter.source_topic != source_topic:
            continue
        selected.setdefault(letter.source, letter)
    return list(selected.values())


def read_dead_letters(kafka_config: dict[str, Any], topic: str, timeout: float = 60.0) -> list[DeadLetter]:
    """Every dead letter on ``topic``, from the beginning to the end the broker reports while reading.
    (The end is found by partition EOF, not ListOffsets, which tansu answers wrongly.)"""
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": "anchang-deadletter-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
        at_end: set[int] = set()
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f}s")
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is None:
                    letters.append(parse(message))
                    at_end.discard(message.partition() or 0)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                else:
                    raise KafkaException(error)
        return letters
    finally:
        consumer.close()


def replay(kafka_config: dict[str, Any], letters: Sequence[DeadLetter]) -> int:
    """Produce each letter's record unchanged to its source topic (same key and headers, plus where it came
    from); return how many, once every one is acknowledged."""
    producer = Producer(producer_config(kafka_config))
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    for letter in letters:
        if not letter.source_topic:
            raise ValueError(f"dead letter {letter.partition}:{letter.offset} names no source topic")
        headers: list[tuple[str, str | bytes | None]] = [
            *letter.original_headers,
            (REPLAYED_FROM, f"{letter.partition}:{letter.offset}".encode()),
        ]
        producer.produce(letter.source_topic, letter.value, letter.key, headers=headers, on_delivery=delivered)
    if producer.flush(30) or failures:
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT))
    return len(letters)
