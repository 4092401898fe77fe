"""Avro reader/writer compatibility, delegated to the ``avro`` package's checker."""

from __future__ import annotations

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def incompatibilities(reader_schema: str, writer_schema: str) -> list[str]:
    """Why data written with ``writer_schema`` cannot be read with ``reader_schema`` (empty if it can)."""
    reader = avro.schema.parse(reader_schema)
    writer = avro.schema.parse(writer_schema)
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)  # type: ignore[no-untyped-call]
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return [
        f"{kind.name.lower()} at {location}: {message}"
        for kind, location, message in zip(result.incompatibilities, result.locations, result.messages, strict=False)
    ]
