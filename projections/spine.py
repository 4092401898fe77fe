"""The first projections: the event register (counts and last event per office and type) and the
visit (来访登记) and call (来电登记) registers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from projections.base import ConsumedEvent, Projection, Upsert, newer, upsert
from projections.tables import call_register, event_register, visit_register


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The JSON text of a value whose datetimes are written as ISO 8601 strings: what the JSON column type stores
# (json.dumps with default settings) for the value with its datetimes replaced, in one pass, without the copy.
to_json_text = json.JSONEncoder(default=_isoformat).encode


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
        EVENT_REGISTER_UPSERT.execute(connection, totals.values())


_LAST_COLUMNS = [column.name for column in event_register.c if column.name.startswith("last_")]
EVENT_REGISTER_UPSERT = Upsert(
    event_register,
    ("office_id", "event_type", "event_count", *_LAST_COLUMNS),
    keys=("office_id", "event_type"),
    update={
        "event_count": lambda excluded: event_register.c.event_count + excluded.event_count,
        # Compute every "last" column against the stored last_recorded_at, which is updated too:
        # SQL evaluates all SET expressions on the old row, so the order here does not matter.
        **{
            column: (lambda excluded, column=column: newer(excluded, event_register, column, "last_recorded_at"))
            for column in _LAST_COLUMNS
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
# Payload fields that are neither columns nor the envelope: they go to ``details``, in record order.
_NOT_DETAILS = VISIT_COLUMNS | {"envelope"}
VISIT_UPSERT = Upsert(
    visit_register,
    ("office_id", "visit_id", "event_id", "project_id", "customer_name", "phone", "arrived_at", "visit_type",
     "received_by", "details", "occurred_at", "recorded_at"),
    keys=("office_id", "visit_id"),
    json_text=("details",),
)  # fmt: skip


class VisitRegister:
    tables = (visit_register,)

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        for event in events:
            if event.event_type != "VisitRegistered":
                continue
            record = event.record
            office_id, visit_id = event.office_id, record["visit_id"]
            # A later registration of the same visit id corrects the earlier one.
            rows[(office_id, visit_id)] = (
                office_id,
                visit_id,
                event.event_id,
                record.get("project_id"),
                record.get("customer_name"),
                record.get("phone"),
                record.get("arrived_at"),
                record.get("visit_type"),
                record.get("received_by"),
                to_json_text({key: value for key, value in record.items() if key not in _NOT_DETAILS}),
                event.occurred_at,
                event.recorded_at,
            )
        # One office's front desk is one partition (keyed by office), so log order is the order of corrections:
        # the last registration of a visit id simply wins.
        VISIT_UPSERT.execute_values(connection, list(rows.values()))


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
                record = event.record
                rows[(event.office_id, record["call_id"])] = {
                    "office_id": event.office_id,
                    "call_id": record["call_id"],
                    **{column: record.get(source) for column, source in fields.items()},
                    EVENT_ID_COLUMN[event_type]: event.event_id,
                    "updated_at": event.recorded_at,
                }
            upsert(connection, call_register, rows.values(), keys=("office_id", "call_id"))


def spine_projections() -> list[Projection]:
    return [EventRegister(), VisitRegister(), CallRegister()]
