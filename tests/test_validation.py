"""Pure tests of JSON → Avro validation and envelope completion (no broker, no registry)."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest

from services.core.catalog import Catalogue
from services.ingest.events import OfficeMismatch, build_event
from services.ingest.validation import to_avro_datum
from tests.support import call_logged, visit_event

RECORDED = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)


def errors_by_field(body: dict[str, Any], catalogue: Catalogue, office: str = "office-a") -> dict[str, str]:
    event, errors = build_event(body, office, catalogue, RECORDED)
    assert event is None
    return {".".join(map(str, error.loc)): error.type for error in errors}


def test_valid_visit_gets_a_complete_envelope_and_its_topic_key(catalogue: Catalogue) -> None:
    event, errors = build_event(visit_event("v-1"), "office-a", catalogue, RECORDED)
    assert errors == [] and event is not None
    envelope = event.record["envelope"]
    assert envelope["office_id"] == "office-a"
    assert envelope["event_type"] == "VisitRegistered"
    assert envelope["recorded_at"] == RECORDED
    assert envelope["occurred_at"] == datetime(2026, 11, 22, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    assert uuid.UUID(envelope["event_id"])
    assert envelope["correlation_id"] == envelope["event_id"]  # a flow's first event correlates to itself
    assert envelope["causation_id"] is None
    assert (event.topic, event.key) == ("anchang.frontdesk", "office-a")
    # Defaults of optional fields are filled in, so the record is writable as it is.
    assert event.record["referrer"] is None and event.record["blank_fields"] == []
    schema = catalogue.schemas["VisitRegistered"].parsed
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event.record)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, schema)["visit_id"] == "v-1"  # type: ignore[index,call-overload]


def test_a_client_chosen_event_id_is_kept_for_idempotent_retries(catalogue: Catalogue) -> None:
    chosen = str(uuid.uuid4())
    event, _ = build_event({**visit_event("v-1"), "event_id": chosen}, "office-a", catalogue, RECORDED)
    assert event is not None and event.event_id == chosen


def test_every_problem_is_reported_with_its_field_path(catalogue: Catalogue) -> None:
    body = visit_event("v-1")
    body["occurred_at"] = "2026-11-22T09:30:00"  # no UTC offset
    body["actor"] = {"staff_id": "fd-01", "role": "BOSS"}
    body["colour"] = "red"
    body["payload"] = {**body["payload"], "visit_id": 7, "arrived_at": "yesterday", "shoe_size": 42}
    del body["payload"]["phone"]
    assert errors_by_field(body, catalogue) == {
        "colour": "extra_forbidden",
        "occurred_at": "datetime_naive",
        "actor.role": "enum",
        "payload.visit_id": "string_type",
        "payload.phone": "missing",
        "payload.arrived_at": "datetime",
        "payload.shoe_size": "extra_forbidden",
    }


def test_unknown_event_type_lists_the_known_ones(catalogue: Catalogue) -> None:
    event, errors = build_event({"event_type": "Teleported"}, "office-a", catalogue, RECORDED)
    assert event is None
    assert errors[0].loc == ("event_type",) and "VisitRegistered" in errors[0].msg


def test_missing_payload_is_named(catalogue: Catalogue) -> None:
    body = visit_event("v-1")
    del body["payload"]
    assert errors_by_field(body, catalogue) == {"payload": "record_type"}


def test_an_event_naming_another_office_is_refused(catalogue: Catalogue) -> None:
    with pytest.raises(OfficeMismatch, match="office-b"):
        build_event(visit_event("v-1", office="office-b"), "office-a", catalogue, RECORDED)


def test_unknown_enum_symbol_is_not_accepted_from_clients(catalogue: Catalogue) -> None:
    body = visit_event("v-1", visit_type="UNKNOWN")  # the reader default, never a valid input
    assert errors_by_field(body, catalogue) == {"payload.visit_type": "enum"}


def test_optional_fields_take_their_value_or_null(catalogue: Catalogue) -> None:
    event, errors = build_event(
        call_logged("c-1", blank_fields=["phone", "awareness_channel"]), "office-a", catalogue, RECORDED
    )
    assert errors == [] and event is not None
    assert event.record["blank_fields"] == ["phone", "awareness_channel"]
    assert event.record["wanted_unit_type"] is None


@pytest.mark.parametrize(
    ("schema", "value", "expected_type"),
    [
        ("int", 2**31, "int_range"),
        ("int", True, "int_type"),
        ("long", "12", "int_type"),
        ("double", "1.5", "float_type"),
        ("boolean", 1, "bool_type"),
        ({"type": "array", "items": "string"}, "a", "array_type"),
        ({"type": "map", "values": "int"}, [], "map_type"),
        (["null", "int", "string"], 1.5, "union"),
        ({"type": "string", "logicalType": "uuid"}, "not-a-uuid", "uuid"),
        ({"type": "long", "logicalType": "timestamp-millis"}, 1.5, "datetime"),
    ],
)
def test_type_errors(schema: object, value: object, expected_type: str) -> None:
    _, errors = to_avro_datum(schema, value, ("f",))
    assert [(error.loc, error.type) for error in errors] == [(("f",), expected_type)]


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "long", "logicalType": "timestamp-millis"}, 1_700_000_000_000, 1_700_000_000_000),
        ({"type": "long", "logicalType": "timestamp-millis"}, "2026-11-22T01:30:00Z", RECORDED),
        (["null", "string"], None, None),
        (["null", "int", "string"], "x", "x"),
        ("double", 3, 3.0),
        ({"type": "map", "values": "int"}, {"a": 1}, {"a": 1}),
    ],
)
def test_conversions(schema: object, value: object, expected: object) -> None:
    datum, errors = to_avro_datum(schema, value)
    assert errors == [] and datum == expected
