"""The first projections: the event register (counts and last event per office and type) and the
visit (来访登记) and call (来电登记) registers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from projections.base import ConsumedEvent, Projection, newer, upsert
from projections.tables import call_register, event_register, visit_register


def json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


class EventRegister:
    tables = (event_register,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for event in events:
            key = (event.office_id, event.event_type)
            row = totals.get(key)
            if row is None or event.recorded_at >= row["last_recorded_at"]:
                count = row["event_count"] if row else 0
                row = totals[key] = {
                    "office_id": event.office_id,
                    "event_type": event.event_type,
                    "event_count": count,
                    "last_event_id": event.event_id,
                    "last_occurred_at": event.occurred_at,
                    "last_recorded_at": event.recorded_at,
                    "last_topic": event.topic,
                    "last_partition": event.partition,
                    "last_offset": event.offset,
                }
            row["event_count"] += 1
        last_columns = [column.name for column in event_register.c if column.name.startswith("last_")]
        upsert(
            connection,
            event_register,
            totals.values(),
            keys=("office_id", "event_type"),
            update={
                "event_count": lambda excluded: event_register.c.event_count + excluded.event_count,
                # Compute every "last" column against the stored last_recorded_at, which is updated too:
                # SQL evaluates all SET expressions on the old row, so the order here does not matter.
                **{
                    column: (
                        lambda excluded, column=column: newer(excluded, event_register, column, "last_recorded_at")
                    )
                    for column in last_columns
                },
            },
        )


VISIT_COLUMNS = {
    "visit_id",
    "project_id",
    "customer_name",
    "phone",
    "arrived_at",
    "visit_type",
    "received_by",
}


class VisitRegister:
    tables = (visit_register,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        rows = {}
        for event in events:
            if event.event_type != "VisitRegistered":
                continue
            payload = event.payload()
            # A later registration of the same visit id corrects the earlier one.
            rows[(event.office_id, payload["visit_id"])] = {
                "office_id": event.office_id,
                "event_id": event.event_id,
                **{column: payload.get(column) for column in VISIT_COLUMNS},
                "details": json_safe({k: v for k, v in payload.items() if k not in VISIT_COLUMNS}),
                "occurred_at": event.occurred_at,
                "recorded_at": event.recorded_at,
            }
        update = {
            column.name: (lambda excluded, name=column.name: newer(excluded, visit_register, name, "recorded_at"))
            for column in visit_register.c
            if column.name not in ("office_id", "visit_id")
        }
        upsert(connection, visit_register, rows.values(), keys=("office_id", "visit_id"), update=update)


# Which call-register columns each event type fills, and from which payload field.
CALL_FIELDS: dict[str, dict[str, str]] = {
    "CallReceived": {
        "caller_number": "caller_number",
        "ring_started_at": "ring_started_at",
        "answered_at": "answered_at",
        "answered_by": "answered_by",
        "ring_count": "ring_count",
    },
    "CallLogged": {
        "logged_by": "staff_id",
        "customer_name": "customer_name",
        "phone": "phone",
        "wanted_unit_type": "wanted_unit_type",
        "awareness_channel": "awareness_channel",
        "caller_class": "caller_class",
        "visit_invited": "visit_invited",
        "blank_fields": "blank_fields",
    },
}
EVENT_ID_COLUMN = {"CallReceived": "received_event_id", "CallLogged": "logged_event_id"}


class CallRegister:
    """One row per call, filled in by the ring (CallReceived) and the register entry (CallLogged),
    whichever arrives first."""

    tables = (call_register,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        for event_type, fields in CALL_FIELDS.items():
            rows = {}
            for event in events:
                if event.event_type != event_type:
                    continue
                payload = event.payload()
                rows[(event.office_id, payload["call_id"])] = {
                    "office_id": event.office_id,
                    "call_id": payload["call_id"],
                    **{column: payload.get(source) for column, source in fields.items()},
                    EVENT_ID_COLUMN[event_type]: event.event_id,
                    "updated_at": event.recorded_at,
                }
            upsert(connection, call_register, rows.values(), keys=("office_id", "call_id"))


def spine_projections() -> list[Projection]:
    return [EventRegister(), VisitRegister(), CallRegister()]
