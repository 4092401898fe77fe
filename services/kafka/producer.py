"""An idempotent, acks=all producer that asyncio code can await per record."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


def producer_config(kafka_config: dict[str, Any]) -> dict[str, Any]:
    return {
        **kafka_config,
        # Idempotence: retries never duplicate or reorder a partition's records.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }


class AsyncProducer:
    """Wraps librdkafka's producer: a background thread serves delivery reports and resolves futures."""

    def __init__(self, kafka_config: dict[str, Any]) -> None:
        self._producer = Producer(producer_config(kafka_config))
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> Delivered:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                loop.call_soon_threadsafe(_set_exception, future, KafkaException(error))
            else:
                delivered = Delivered(message.topic() or topic, message.partition() or 0, message.offset() or 0)
                loop.call_soon_threadsafe(_set_result, future, delivered)

        while True:
            try:
                self._producer.produce(topic, value, key, headers=list(headers), on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                await asyncio.sleep(0.01)
        return await future

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
        self._running = False
        self._poller.join()


def _set_result(future: asyncio.Future[Delivered], value: Delivered) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Delivered], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
