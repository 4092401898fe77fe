"""Avro in the Confluent Schema Registry wire format: magic byte 0, 4-byte schema id, Avro body.

Encoding uses confluent-kafka's ``AvroSerializer`` (subject per record name, auto-registered), so any
standard consumer with a registry client decodes our events. Decoding resolves each record from the
writer's schema (fetched by id, cached) to our current reader schema, so old events read with today's
defaults."""

from __future__ import annotations

import io
import json
import struct
import threading
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from services.core.catalog import NAMESPACE, Catalogue

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")


class UndecodableEvent(ValueError):
    """Raised for bytes that are not an Anchang event; ``reason`` is a short metric-friendly code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class WriterSchema:
    event_type: str
    parsed: Any
    # Written with exactly our current schema: read without resolution, which is several times faster.
    is_current: bool


class EventCodec:
    def __init__(self, registry: SchemaRegistryClient, catalogue: Catalogue) -> None:
        self._registry = registry
        self._catalogue = catalogue
        conf = {"auto.register.schemas": True, "subject.name.strategy": record_subject_name_strategy}
        self._serializers = {
            event_type: AvroSerializer(registry, schema.text, conf=conf)
            for event_type, schema in catalogue.schemas.items()
        }
        self._writers: dict[int, WriterSchema] = {}
        self._writers_lock = threading.Lock()

    def encode(self, event_type: str, record: dict[str, Any], topic: str) -> bytes:
        payload = self._serializers[event_type](record, SerializationContext(topic, MessageField.VALUE))
        if not isinstance(payload, bytes):
            raise TypeError(f"the Avro serializer returned {type(payload).__name__} for {event_type}")
        return payload

    def register_all(self) -> None:
        """Register every current schema at start-up: an incompatible change fails fast and loudly
        (the registry enforces BACKWARD_TRANSITIVE) instead of on the first request of that type."""
        for event_type, schema in self._catalogue.schemas.items():
            self._registry.register_schema(f"{NAMESPACE}.{event_type}", Schema(schema.text, "AVRO"))

    def decode(self, value: bytes | None) -> tuple[str, dict[str, Any]]:
        """(event type, record read with our current schema for that type)."""
        if value is None or len(value) < HEADER.size:
            raise UndecodableEvent("not_confluent_avro", "record is empty or shorter than the 5-byte header")
        magic, schema_id = HEADER.unpack_from(value)
        if magic != MAGIC_BYTE:
            raise UndecodableEvent("not_confluent_avro", f"magic byte {magic}, expected {MAGIC_BYTE}")
        writer = self._writer(schema_id)
        reader = self._catalogue.schemas.get(writer.event_type)
        if reader is None:
            raise UndecodableEvent("unknown_event_type", f"schema {schema_id} is {writer.event_type}")
        try:
            reader_schema = None if writer.is_current else reader.parsed
            record = fastavro.schemaless_reader(io.BytesIO(value[HEADER.size :]), writer.parsed, reader_schema)
        except Exception as error:  # fastavro raises many types for corrupt input
            raise UndecodableEvent("corrupt_avro", f"{type(error).__name__}: {error}") from error
        return writer.event_type, dict(record)  # type: ignore[arg-type]

    def _writer(self, schema_id: int) -> WriterSchema:
        cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        with self._writers_lock:
            try:
                schema = self._registry.get_schema(schema_id)
            except Exception as error:
                raise UndecodableEvent("unknown_schema_id", f"schema id {schema_id}: {error}") from error
            raw = json.loads(schema.schema_str or "null")
            name = raw.get("name", "") if isinstance(raw, dict) else ""
            namespace = raw.get("namespace", "") if isinstance(raw, dict) else ""
            if namespace != NAMESPACE:
                raise UndecodableEvent("unknown_event_type", f"schema id {schema_id} is {namespace}.{name}")
            current = self._catalogue.schemas.get(name)
            is_current = current is not None and _canonical(raw) == _canonical(current.json)
            writer = WriterSchema(name, fastavro.parse_schema(raw), is_current)
            self._writers[schema_id] = writer
            return writer


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
