"""Avro in the Confluent Schema Registry wire format: magic byte 0, 4-byte schema id, Avro body.

Encoding uses confluent-kafka's ``AvroSerializer`` (subject per record name, auto-registered), so any
standard consumer with a registry client decodes our events. Decoding resolves each record from the
writer's schema (fetched by id, cached) to our current reader schema, so old events read with today's
defaults. Decoded records hold ``timestamp-millis`` values as aware UTC datetimes and ``uuid`` values as
canonical (lower-case, hyphenated) strings: every consumer wants the text, and building ``uuid.UUID``
objects only to print them again cost more than the rest of the envelope."""

from __future__ import annotations

import io
import itertools
import json
import re
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

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
    # Written with exactly our current schema: read without resolution, which is several times faster, and with
    # ``read`` (compiled from the schema, see ``compile_reader``) unless the schema has something it does not cover.
    is_current: bool
    read: Reader | None = None


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
            if writer.read is not None:
                record = writer.read(value if isinstance(value, bytes) else bytes(value), HEADER.size)
            else:
                body = io.BytesIO(value[HEADER.size :])
                reader_schema = None if writer.is_current else reader.parsed
                record = _uuids_as_text(fastavro.schemaless_reader(body, writer.parsed, reader_schema))
        except Exception as error:  # the readers raise many types for corrupt input
            raise UndecodableEvent("corrupt_avro", f"{type(error).__name__}: {error}") from error
        return writer.event_type, record

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
            parsed = fastavro.parse_schema(raw)
            writer = WriterSchema(name, parsed, is_current, compile_reader(parsed) if is_current else None)
            self._writers[schema_id] = writer
            return writer


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------
# Records written with our current schema: a reader compiled from the schema
#
# fastavro interprets the schema for every value it reads (about 0.5 µs a field here) and converts logical types
# generically (about 2 µs a timestamp, 3 µs a uuid): 20–30 µs for one VisitRegistered, the largest single cost of
# the projection. Records written with exactly our current schema (all of them, until a schema changes) are read
# instead by a function generated once per schema: straight-line Python that reads the fields in order, about
# twice as fast. It returns what fastavro returns (uuids as text, see the module docstring) and raises for
# truncated or malformed input; a schema with anything it does not cover is read by fastavro.

Reader = Callable[[bytes, int], dict[str, Any]]  # (the message, where the Avro body starts) → the record
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INT64 = range(-(2**63), 2**63)


def uuid_text(text: str) -> str:
    """``str(uuid.UUID(text))`` (which raises ValueError for a malformed uuid), without building the UUID when the
    text is already canonical, as everything Anchang writes is."""
    return text if CANONICAL_UUID.fullmatch(text) else str(uuid.UUID(text))


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """(the zig-zag varint at ``pos``, the position after it): an Avro int or long."""
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError past the end
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    value = (value >> 1) ^ -(value & 1)
    if value not in INT64:
        raise ValueError(f"{value} is out of the range of a long")
    return value, pos


class NotCovered(Exception):
    """The schema has something the compiled reader does not handle."""


def compile_reader(parsed: Any) -> Reader | None:
    """A reader for records of ``parsed`` (a fastavro-parsed record schema), or None if it is not covered."""
    source = _ReaderSource(parsed.get("__named_schemas", {}))
    try:
        source.read(parsed, "record", indent=1)
    except NotCovered:
        return None
    code = "\n".join(["def read(data, pos):", "    size = len(data)", *source.lines, "    return record"])
    namespace = {
        "read_long": read_long,
        "uuid_text": uuid_text,
        "EPOCH": EPOCH,
        "EPOCH_DATE": EPOCH.date(),
        "timedelta": timedelta,
        "unpack_float": struct.Struct("<f").unpack_from,
        "unpack_double": struct.Struct("<d").unpack_from,
        **source.constants,
    }
    exec(compile(code, f"<Avro reader for {parsed['name']}>", "exec"), namespace)
    return cast(Reader, namespace["read"])


class _ReaderSource:
    """The body of a reader function: lines that read one value after another from ``data`` at ``pos``."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}  # names the code refers to → values (enum symbols)
        self.named = named  # full name → definition, for types referred to by name
        self._expanding: set[str] = set()  # named types being read: a reference to one is a recursive type
        self._count = itertools.count()

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def local(self, prefix: str) -> str:
        return f"{prefix}{next(self._count)}"

    def read(self, schema: Any, target: str, indent: int) -> None:
        """Emit code that reads one value of ``schema`` into the local variable ``target``."""
        if isinstance(schema, list):
            return self.union(schema, target, indent)
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return PRIMITIVES[schema](self, target, indent)
            if schema in self._expanding or schema not in self.named:
                raise NotCovered(schema)
            return self.read(self.named[schema], target, indent)
        kind, logical = schema["type"], schema.get("logicalType")
        if logical is not None:
            if (kind, logical) == ("long", "timestamp-millis"):
                self.long(target, indent)
                return self.emit(indent, f"{target} = EPOCH + timedelta(0, 0, 0, {target})")  # exactly as fastavro
            if (kind, logical) == ("int", "date"):
                self.long(target, indent)
                return self.emit(indent, f"{target} = EPOCH_DATE + timedelta({target})")
            if (kind, logical) == ("string", "uuid"):
                self.string(target, indent)
                return self.emit(indent, f"{target} = uuid_text({target})")
            raise NotCovered(schema)
        if kind in PRIMITIVES:
            return PRIMITIVES[kind](self, target, indent)
        if kind == "record":
            return self.record(schema, target, indent)
        if kind == "enum":
            return self.enum(schema, target, indent)
        if kind == "array":
            return self.blocks(schema["items"], None, target, indent)
        if kind == "map":
            return self.blocks(schema["values"], "string", target, indent)
        if kind == "fixed":
            return self.fixed(schema["size"], target, indent)
        raise NotCovered(schema)

    def record(self, schema: Any, target: str, indent: int) -> None:
        self._expanding.add(schema["name"])
        fields = {field["name"]: self.local("field") for field in schema["fields"]}
        for field, variable in zip(schema["fields"], fields.values(), strict=True):
            self.read(field["type"], variable, indent)
        self.emit(indent, f"{target} = {{{', '.join(f'{name!r}: {variable}' for name, variable in fields.items())}}}")
        self._expanding.discard(schema["name"])

    def union(self, branches: list[Any], target: str, indent: int) -> None:
        index = self.local("branch")
        self.long(index, indent)
        for number, branch in enumerate(branches):
            self.emit(indent, f"{'if' if number == 0 else 'elif'} {index} == {number}:")
            self.read(branch, target, indent + 1)
        self.emit(indent, "else:")
        self.emit(indent + 1, f"raise ValueError(f'union branch {{{index}}} of {len(branches)}')")

    def enum(self, schema: Any, target: str, indent: int) -> None:
        symbols = self.local("symbols")
        self.constants[symbols] = tuple(schema["symbols"])
        self.long(target, indent)
        self.emit(indent, f"if not 0 <= {target} < {len(schema['symbols'])}:")
        self.emit(indent + 1, f"raise ValueError(f'enum index {{{target}}} of {len(schema['symbols'])}')")
        self.emit(indent, f"{target} = {symbols}[{target}]")

    def blocks(self, items: Any, keys: str | None, target: str, indent: int) -> None:
        """An array (``keys`` None) or a map: blocks of items, each block a count (negative: followed by its
        size in bytes), up to an empty block."""
        if items == "null" or (isinstance(items, dict) and items.get("type") == "null"):
            raise NotCovered(items)  # zero bytes an item: a corrupt count could make the loop endless
        count, key, item = self.local("count"), self.local("key"), self.local("item")
        self.emit(indent, f"{target} = {{}}" if keys else f"{target} = []")
        self.emit(indent, "while True:")
        self.long(count, indent + 1)
        self.emit(indent + 1, f"if {count} == 0:")
        self.emit(indent + 2, "break")
        self.emit(indent + 1, f"if {count} < 0:")
        self.emit(indent + 2, f"{count} = -{count}")
        self.long(self.local("block_size"), indent + 2)
        self.emit(indent + 1, f"if {count} > size - pos:")  # every item takes at least one byte
        self.emit(indent + 2, f"raise EOFError(f'{{{count}}} items beyond the end of the record')")
        self.emit(indent + 1, f"for _ in range({count}):")
        if keys:
            self.read(keys, key, indent + 2)
        self.read(items, item, indent + 2)
        self.emit(indent + 2, f"{target}[{key}] = {item}" if keys else f"{target}.append({item})")

    def long(self, target: str, indent: int) -> None:
        self.emit(indent, f"{target} = data[pos]")  # one byte: -64…63, the common case, inline
        self.emit(indent, f"if {target} < 0x80:")
        self.emit(indent + 1, "pos += 1")
        self.emit(indent + 1, f"{target} = ({target} >> 1) ^ -({target} & 1)")
        self.emit(indent, "else:")
        self.emit(indent + 1, f"{target}, pos = read_long(data, pos)")

    def bytes(self, target: str, indent: int) -> None:
        length = self.local("length")
        self.long(length, indent)
        self.emit(indent, f"if {length} < 0 or pos + {length} > size:")
        self.emit(indent + 1, f"raise EOFError(f'{{{length}}} bytes beyond the end of the record')")
        self.emit(indent, f"{target} = data[pos : pos + {length}]")
        self.emit(indent, f"pos += {length}")

    def string(self, target: str, indent: int) -> None:
        self.bytes(target, indent)
        self.emit(indent, f"{target} = {target}.decode()")  # UnicodeDecodeError for invalid UTF-8, as fastavro

    def fixed(self, size: int, target: str, indent: int) -> None:
        self.emit(indent, f"if pos + {size} > size:")
        self.emit(indent + 1, "raise EOFError('fixed beyond the end of the record')")
        self.emit(indent, f"{target} = data[pos : pos + {size}]")
        self.emit(indent, f"pos += {size}")

    def null(self, target: str, indent: int) -> None:
        self.emit(indent, f"{target} = None")

    def boolean(self, target: str, indent: int) -> None:
        self.emit(indent, f"{target} = data[pos] != 0")  # as fastavro: any byte but 0 is true
        self.emit(indent, "pos += 1")

    def float(self, target: str, indent: int) -> None:
        self.emit(indent, f"{target} = unpack_float(data, pos)[0]")  # struct.error past the end
        self.emit(indent, "pos += 4")

    def double(self, target: str, indent: int) -> None:
        self.emit(indent, f"{target} = unpack_double(data, pos)[0]")
        self.emit(indent, "pos += 8")


PRIMITIVES: dict[str, Callable[[_ReaderSource, str, int], None]] = {
    "null": _ReaderSource.null,
    "boolean": _ReaderSource.boolean,
    "int": _ReaderSource.long,
    "long": _ReaderSource.long,
    "float": _ReaderSource.float,
    "double": _ReaderSource.double,
    "bytes": _ReaderSource.bytes,
    "string": _ReaderSource.string,
}


def _uuids_as_text(value: Any) -> Any:
    """A record fastavro decoded with its uuid.UUID values as text, as the compiled reader returns them."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _uuids_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_uuids_as_text(item) for item in value]
    return value
