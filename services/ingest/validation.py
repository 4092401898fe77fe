"""Turn a JSON event into an Avro datum, or say precisely which field is wrong and why.

JSON has no timestamps, enums or unions of its own, so a plain JSON body needs mapping onto the Avro
schema: ISO-8601 strings (or epoch milliseconds) become ``timestamp-millis``; an optional field is its
value or null. Every problem is reported with its field path, not only the first one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class _Converter:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.named: dict[str, Any] = {}

    def fail(self, loc: tuple[str | int, ...], msg: str, kind: str) -> None:
        self.errors.append(FieldError(loc, msg, kind))

    def convert(self, schema: Any, value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(schema, list):
            return self._union(schema, value, loc)
        if isinstance(schema, str):
            if schema in self.named:
                return self.convert(self.named[schema], value, loc)
            return self._primitive(schema, value, loc)
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            name = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}"
            self.named[name] = schema
        if kind == "record":
            return self._record(schema, value, loc)
        if kind == "enum":
            return self._enum(schema, value, loc)
        if kind == "array":
            if not isinstance(value, list):
                self.fail(loc, "must be a list", "array_type")
                return value
            return [self.convert(schema["items"], item, (*loc, i)) for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                self.fail(loc, "must be an object", "map_type")
                return value
            return {key: self.convert(schema["values"], item, (*loc, key)) for key, item in value.items()}
        if schema.get("logicalType") == "timestamp-millis":
            return self._timestamp(value, loc)
        if schema.get("logicalType") == "uuid":
            return self._uuid(value, loc)
        return self.convert(kind, value, loc)

    def _record(self, schema: dict[str, Any], value: Any, loc: tuple[str | int, ...]) -> Any:
        if not isinstance(value, dict):
            self.fail(loc, "must be an object", "record_type")
            return value
        known = {field["name"] for field in schema["fields"]}
        for unknown in sorted(set(value) - known):
            self.fail((*loc, unknown), f"unknown field; allowed: {', '.join(sorted(known))}", "extra_forbidden")
        datum: dict[str, Any] = {}
        for field in schema["fields"]:
            name = field["name"]
            if name in value:
                datum[name] = self.convert(field["type"], value[name], (*loc, name))
            elif "default" in field:
                datum[name] = field["default"]
            else:
                self.fail((*loc, name), "field required", "missing")
        return datum

    def _enum(self, schema: dict[str, Any], value: Any, loc: tuple[str | int, ...]) -> Any:
        symbols = schema["symbols"]
        if value not in symbols or value == "UNKNOWN":
            allowed = ", ".join(s for s in symbols if s != "UNKNOWN")
            self.fail(loc, f"must be one of: {allowed}", "enum")
        return value

    def _union(self, branches: list[Any], value: Any, loc: tuple[str | int, ...]) -> Any:
        if value is None:
            if "null" not in branches:
                self.fail(loc, "must not be null", "null")
            return None
        candidates = [branch for branch in branches if branch != "null"]
        for branch in candidates:
            trial = _Converter()
            trial.named = self.named
            converted = trial.convert(branch, value, loc)
            if not trial.errors:
                return converted
        if len(candidates) == 1:  # report the one branch's own errors: they are the useful ones
            return self.convert(candidates[0], value, loc)
        self.fail(loc, "matches none of the allowed types", "union")
        return value

    def _primitive(self, kind: str, value: Any, loc: tuple[str | int, ...]) -> Any:
        if kind == "null":
            if value is not None:
                self.fail(loc, "must be null", "null")
            return None
        if kind == "boolean":
            if not isinstance(value, bool):
                self.fail(loc, "must be true or false", "bool_type")
            return value
        if kind in ("int", "long"):
            low, high = INT_RANGE if kind == "int" else LONG_RANGE
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(loc, "must be an integer", "int_type")
            elif not low <= value <= high:
                self.fail(loc, f"must be between {low} and {high}", "int_range")
            return value
        if kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(loc, "must be a number", "float_type")
                return value
            return float(value)
        if kind == "string":
            if not isinstance(value, str):
                self.fail(loc, "must be a string", "string_type")
            return value
        if kind == "bytes":
            if not isinstance(value, str):
                self.fail(loc, "must be a string", "bytes_type")
                return value
            return value.encode()
        self.fail(loc, f"unsupported schema type {kind}", "schema")
        return value

    def _timestamp(self, value: Any, loc: tuple[str | int, ...]) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # epoch milliseconds
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value
        if not isinstance(value, str):
            self.fail(
                loc,
                "must be an ISO-8601 timestamp with a UTC offset, e.g. 2026-11-22T09:30:00+08:00",
                "datetime",
            )
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(loc, f"{value!r} is not an ISO-8601 timestamp", "datetime")
            return value
        if moment.tzinfo is None:
            self.fail(loc, "needs a UTC offset (e.g. +08:00 or Z): local time is ambiguous", "datetime_naive")
            return value
        return moment

    def _uuid(self, value: Any, loc: tuple[str | int, ...]) -> Any:
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            self.fail(loc, "must be a UUID", "uuid")
            return value


def to_avro_datum(schema: Any, value: Any, loc: tuple[str | int, ...] = ()) -> tuple[Any, list[FieldError]]:
    """(datum ready for fastavro, errors). The datum is meaningful only when there are no errors."""
    converter = _Converter()
    datum = converter.convert(schema, value, loc)
    return datum, converter.errors


def to_event_datum(
    event_schema: dict[str, Any], envelope: dict[str, Any], payload: Any
) -> tuple[dict[str, Any], list[FieldError]]:
    """Like ``to_avro_datum`` for an Anchang event, whose first field is the envelope: envelope errors
    are reported at the top level (as clients write them), payload errors under ``payload``."""
    converter = _Converter()
    envelope_field, *payload_fields = event_schema["fields"]
    datum = {"envelope": converter.convert(envelope_field["type"], envelope, ())}
    # Walk the envelope first so the named types it defines are known to the payload fields.
    payload_record = {**event_schema, "fields": payload_fields}
    converted = converter.convert(payload_record, payload, ("payload",))
    if isinstance(converted, dict):
        datum.update(converted)
    return datum, converter.errors
