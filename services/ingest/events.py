"""From a JSON event body to the Avro record that goes on Kafka (pure: no I/O, clock passed in)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core.catalog import Catalogue
from services.ingest.validation import FieldError, to_event_datum

ENVELOPE_INPUT_FIELDS = {
    "event_type",
    "event_id",
    "office_id",
    "occurred_at",
    "actor",
    "correlation_id",
    "causation_id",
    "payload",
}


class OfficeMismatch(Exception):
    """The body names an office other than the one the API key belongs to."""


@dataclass(frozen=True)
class OutgoingEvent:
    event_type: str
    event_id: str
    office_id: str
    topic: str
    key: str
    record: dict[str, Any]


def build_system_event(body: Any, office_id: str, catalogue: Catalogue, recorded_at: datetime) -> OutgoingEvent:
    """``build_event`` for an event a processor writes itself (a timer): invalid means a bug, so it raises."""
    event, errors = build_event(body, office_id, catalogue, recorded_at)
    if event is None:
        raise ValueError(f"could not build {body.get('event_type')} for {office_id}: {errors}")
    return event


def build_event(
    body: Any, office_id: str, catalogue: Catalogue, recorded_at: datetime
) -> tuple[OutgoingEvent | None, list[FieldError]]:
    """Validate ``body`` (``{event_type, occurred_at, actor, payload, [event_id, office_id,
    correlation_id, causation_id]}``) against the event's schema and complete its envelope."""
    if not isinstance(body, dict):
        return None, [FieldError((), "an event must be a JSON object", "record_type")]
    errors = [
        FieldError((name,), f"unknown field; allowed: {', '.join(sorted(ENVELOPE_INPUT_FIELDS))}", "extra_forbidden")
        for name in sorted(set(body) - ENVELOPE_INPUT_FIELDS)
    ]
    event_type = body.get("event_type")
    schema = catalogue.schemas.get(event_type) if isinstance(event_type, str) else None
    if schema is None:
        known = ", ".join(sorted(catalogue.schemas))
        return None, [
            *errors,
            FieldError(("event_type",), f"unknown event type; known: {known}", "event_type"),
        ]
    claimed_office = body.get("office_id")
    if claimed_office is not None and claimed_office != office_id:
        raise OfficeMismatch(f"this API key belongs to office {office_id!r}, the event names {claimed_office!r}")
    event_id = body.get("event_id") or str(uuid.uuid4())
    envelope = {
        "event_id": event_id,
        "event_type": event_type,
        "office_id": office_id,
        "occurred_at": body.get("occurred_at", recorded_at),
        "recorded_at": recorded_at,
        "actor": body.get("actor"),
        # A flow's first event is its own correlation id.
        "correlation_id": body.get("correlation_id") or event_id,
        "causation_id": body.get("causation_id"),
    }
    record, schema_errors = to_event_datum(schema.json, envelope, body.get("payload"))
    errors.extend(schema_errors)
    if errors:
        return None, errors
    topic = catalogue.topic_of_type[schema.event_type]
    return OutgoingEvent(
        schema.event_type, str(record["envelope"]["event_id"]), office_id, topic.name, topic.key_of(record), record
    ), []
