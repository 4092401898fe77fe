"""The schema registry, driven only by real clients: confluent-kafka's SchemaRegistryClient and Avro
serdes, plus raw httpx where the exact error bodies matter."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from services.registry.app import MEDIA_TYPE, create_app


@contextmanager
def running_registry(database: Path) -> Iterator[str]:
    """Serve the registry on a free loopback port in a thread; the pre-bound socket avoids port races."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(database), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "registry did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with running_registry(tmp_path / "registry.db") as base:
        yield base


@pytest.fixture
def client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def record(name: str, *fields: dict[str, Any], doc: str | None = None) -> str:
    schema: dict[str, Any] = {
        "type": "record",
        "name": name,
        "namespace": "anchang.test",
        "fields": list(fields),
    }
    if doc is not None:
        schema["doc"] = doc
    return json.dumps(schema)


def avro(text: str) -> Schema:
    return Schema(text, "AVRO")


VISIT_V1 = record(
    "Visit",
    {"name": "visit_id", "type": "string"},
    {"name": "party_size", "type": "int"},
    doc="A customer visit to the sales office (案场).",
)
VISIT_V2 = record(
    "Visit",
    {"name": "visit_id", "type": "string"},
    {"name": "party_size", "type": "int"},
    {"name": "source", "type": "string", "default": "walk-in"},
)
VISIT_REQUIRED_FIELD = record(
    "Visit",
    {"name": "visit_id", "type": "string"},
    {"name": "party_size", "type": "int"},
    {"name": "agent_id", "type": "string"},
)


def refused(call: Any, *args: Any) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args)
    return caught.value


def test_register_fetch_and_lookup(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("visits-value", avro(VISIT_V1))

    assert client.get_schema(schema_id).schema_str == VISIT_V1  # the registered text, doc included
    latest = client.get_latest_version("visits-value")
    assert (latest.subject, latest.version, latest.schema_id) == ("visits-value", 1, schema_id)
    assert latest.schema.schema_str == VISIT_V1
    assert client.get_version("visits-value", 1).schema_id == schema_id
    assert client.get_schema_types() == ["AVRO"]

    # Identity ignores layout and key order.
    reformatted = json.dumps(json.loads(VISIT_V1), indent=4, sort_keys=True)
    found = client.lookup_schema("visits-value", avro(reformatted))
    assert (found.schema_id, found.version) == (schema_id, 1)


def test_registration_is_idempotent(url: str) -> None:
    first = SchemaRegistryClient({"url": url}).register_schema("visits-value", avro(VISIT_V1))
    fresh = SchemaRegistryClient({"url": url})  # no client-side cache hiding a second request
    again = fresh.register_schema("visits-value", avro(json.dumps(json.loads(VISIT_V1), indent=2)))
    assert again == first
    assert fresh.get_versions("visits-value") == [1]


def test_same_schema_under_two_subjects_shares_its_id(client: SchemaRegistryClient) -> None:
    in_visits = client.register_schema("visits-value", avro(VISIT_V1))
    in_audit = client.register_schema("audit-value", avro(VISIT_V1))
    other = client.register_schema("audit-value", avro(VISIT_V2))

    assert in_audit == in_visits
    assert other != in_visits
    assert client.get_version("audit-value", 1).schema_id == in_visits
    usages = {(v.subject, v.version) for v in client.get_schema_versions(in_visits)}
    assert usages == {("visits-value", 1), ("audit-value", 1)}
    assert sorted(client.get_subjects()) == ["audit-value", "visits-value"]


def test_required_field_refused_default_accepted(client: SchemaRegistryClient) -> None:
    first = client.register_schema("visits-value", avro(VISIT_V1))

    error = refused(client.register_schema, "visits-value", avro(VISIT_REQUIRED_FIELD))
    assert (error.http_status_code, error.error_code) == (409, 409)
    assert "agent_id" in error.error_message

    second = client.register_schema("visits-value", avro(VISIT_V2))
    assert second != first
    assert client.get_latest_version("visits-value").version == 2
    assert client.get_versions("visits-value") == [1, 2]


def test_transitive_level_checks_every_earlier_version(client: SchemaRegistryClient) -> None:
    v1 = record("Unit", {"name": "area", "type": "int"})
    v2 = record("Unit")  # dropping a field stays backward compatible
    v3 = record("Unit", {"name": "area", "type": "string", "default": "unknown"})  # reads v2, not v1
    client.set_compatibility("units-value", "BACKWARD")
    assert client.test_compatibility("units-value", avro(v1)) is True  # nothing to break yet
    client.register_schema("units-value", avro(v1))
    client.register_schema("units-value", avro(v2))

    assert client.test_compatibility("units-value", avro(v3)) is True
    assert client.test_compatibility("units-value", avro(v3), version=1) is False

    client.set_compatibility("units-value", "BACKWARD_TRANSITIVE")
    assert client.test_compatibility("units-value", avro(v3)) is False
    error = refused(client.register_schema, "units-value", avro(v3))
    assert error.error_code == 409
    assert "version 1" in error.error_message


def test_verbose_compatibility_lists_messages(url: str) -> None:
    client = SchemaRegistryClient({"url": url})
    client.register_schema("visits-value", avro(VISIT_V1))
    body = {"schema": VISIT_REQUIRED_FIELD}
    answer = httpx.post(f"{url}/compatibility/subjects/visits-value/versions/latest?verbose=true", json=body)
    assert answer.status_code == 200
    assert answer.json()["is_compatible"] is False
    assert any("agent_id" in message for message in answer.json()["messages"])


def test_forward_level_checks_the_other_direction(client: SchemaRegistryClient) -> None:
    client.set_compatibility("visits-value", "FORWARD")
    client.register_schema("visits-value", avro(VISIT_V1))
    # Old readers ignore a new field, so a required one is fine going forward ...
    assert client.test_compatibility("visits-value", avro(VISIT_REQUIRED_FIELD)) is True
    # ... but they cannot read data that lacks a field they require.
    without_party_size = record("Visit", {"name": "visit_id", "type": "string"})
    assert client.test_compatibility("visits-value", avro(without_party_size)) is False


def test_compatibility_config(url: str, client: SchemaRegistryClient) -> None:
    assert client.get_compatibility() == "BACKWARD_TRANSITIVE"
    # Confluent answers a PUT with "compatibility" but a GET with "compatibilityLevel".
    answer = httpx.put(f"{url}/config/visits-value", json={"compatibility": "full"})
    assert answer.json() == {"compatibility": "FULL"}
    assert client.get_compatibility("visits-value") == "FULL"

    error = refused(client.get_compatibility, "audit-value")
    assert (error.http_status_code, error.error_code) == (404, 40408)
    answer = httpx.get(f"{url}/config/audit-value", params={"defaultToGlobal": "true"})
    assert answer.json() == {"compatibilityLevel": "BACKWARD_TRANSITIVE"}

    client.set_compatibility(level="NONE")
    assert client.get_compatibility() == "NONE"
    assert client.get_compatibility("visits-value") == "FULL"


def test_none_level_accepts_anything(client: SchemaRegistryClient) -> None:
    client.set_compatibility(level="NONE")
    client.register_schema("visits-value", avro(VISIT_V1))
    assert client.register_schema("visits-value", avro(record("Other"))) > 0
    assert client.get_versions("visits-value") == [1, 2]


def test_serde_round_trip_with_auto_registration(client: SchemaRegistryClient) -> None:
    context = SerializationContext("visits", MessageField.VALUE)
    serialize = AvroSerializer(client, VISIT_V1, conf={"auto.register.schemas": True})
    visit = {"visit_id": "v-1", "party_size": 3}

    payload = serialize(visit, context)
    assert payload is not None
    registered = client.get_latest_version("visits-value")  # topic name strategy
    assert payload[0] == 0 and int.from_bytes(payload[1:5], "big") == registered.schema_id

    assert AvroDeserializer(client)(payload, context) == visit


def test_serde_use_latest_version_resolves_defaults(url: str) -> None:
    context = SerializationContext("visits", MessageField.VALUE)
    writer = SchemaRegistryClient({"url": url})
    old_payload = AvroSerializer(writer, VISIT_V1, conf={"auto.register.schemas": True})(
        {"visit_id": "v-1", "party_size": 2}, context
    )
    v2_id = writer.register_schema("visits-value", avro(VISIT_V2))

    reader = SchemaRegistryClient({"url": url})
    latest = {"auto.register.schemas": False, "use.latest.version": True}
    new_payload = AvroSerializer(reader, VISIT_V2, conf=latest)(
        {"visit_id": "v-2", "party_size": 4, "source": "referral"}, context
    )
    assert new_payload is not None and int.from_bytes(new_payload[1:5], "big") == v2_id

    deserialize = AvroDeserializer(reader, conf={"use.latest.version": True})
    # The v1 record is read with v2, whose registered default fills the new field.
    assert deserialize(old_payload, context) == {"visit_id": "v-1", "party_size": 2, "source": "walk-in"}
    assert deserialize(new_payload, context)["source"] == "referral"


def test_restart_keeps_ids_versions_and_config(tmp_path: Path) -> None:
    database = tmp_path / "registry.db"
    with running_registry(database) as url:
        client = SchemaRegistryClient({"url": url})
        first = client.register_schema("visits-value", avro(VISIT_V1))
        second = client.register_schema("visits-value", avro(VISIT_V2))
        client.set_compatibility("visits-value", "FULL")

    with running_registry(database) as url:
        client = SchemaRegistryClient({"url": url})
        assert client.get_versions("visits-value") == [1, 2]
        assert client.get_version("visits-value", 1).schema_id == first
        assert client.get_latest_version("visits-value").schema_id == second
        assert client.get_schema(first).schema_str == VISIT_V1
        assert client.get_compatibility("visits-value") == "FULL"
        third = client.register_schema("units-value", avro(record("Unit")))
        assert third not in (first, second)


def test_soft_delete_keeps_version_numbers(url: str, client: SchemaRegistryClient) -> None:
    first = client.register_schema("visits-value", avro(VISIT_V1))
    client.register_schema("visits-value", avro(VISIT_V2))

    assert client.delete_subject("visits-value") == [1, 2]
    assert client.get_subjects() == []
    assert refused(client.get_versions, "visits-value").error_code == 40401
    assert refused(client.delete_subject, "visits-value").error_code == 40404

    fresh = SchemaRegistryClient({"url": url})
    assert fresh.register_schema("visits-value", avro(VISIT_V1)) == first
    assert fresh.get_latest_version("visits-value").version == 3
    assert refused(fresh.delete_subject, "visits-value", True).error_code == 40405


def test_subject_names_may_contain_slashes(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("office/visits", avro(VISIT_V1))
    assert client.get_latest_version("office/visits").schema_id == schema_id
    assert client.get_subjects() == ["office/visits"]


def test_concurrent_registrations_get_distinct_versions(url: str) -> None:
    SchemaRegistryClient({"url": url}).set_compatibility(level="NONE")
    schemas = [record(f"Event{n}") for n in range(8)]
    ids: list[int] = []

    def register(schema: str) -> None:
        ids.append(SchemaRegistryClient({"url": url}).register_schema("events", avro(schema)))

    threads = [threading.Thread(target=register, args=(schema,)) for schema in schemas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 8
    assert SchemaRegistryClient({"url": url}).get_versions("events") == list(range(1, 9))


def test_lookup_of_unregistered_schema(client: SchemaRegistryClient) -> None:
    assert refused(client.lookup_schema, "visits-value", avro(VISIT_V1)).error_code == 40401
    client.register_schema("visits-value", avro(VISIT_V1))
    error = refused(client.lookup_schema, "visits-value", avro(VISIT_V2))
    assert (error.http_status_code, error.error_code) == (404, 40403)


ERROR_CASES: list[tuple[str, str, dict[str, str] | None, int, int]] = [
    ("GET", "/subjects/missing/versions", None, 404, 40401),
    ("GET", "/subjects/visits-value/versions/7", None, 404, 40402),
    ("GET", "/schemas/ids/999", None, 404, 40403),
    ("GET", "/subjects/visits-value/versions/0", None, 422, 42202),
    ("GET", "/subjects/visits-value/versions/first", None, 422, 42202),
    ("POST", "/subjects/visits-value/versions", {"schema": '{"type": "recrod"}'}, 422, 42201),
    ("POST", "/subjects/visits-value/versions", {"schema": "not json"}, 422, 42201),
    ("POST", "/subjects/visits-value/versions", {"schema": "{}", "schemaType": "PROTOBUF"}, 422, 42201),
    ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
    ("GET", "/no/such/route", None, 404, 404),
]


def test_error_bodies(url: str) -> None:
    """One server for the whole table: starting one per case would dominate the suite's run time."""
    SchemaRegistryClient({"url": url}).register_schema("visits-value", avro(VISIT_V1))
    with httpx.Client(base_url=url) as http:
        answers = [(case, http.request(case[0], case[1], json=case[2])) for case in ERROR_CASES]
    for (method, path, _, status, error_code), answer in answers:
        case = f"{method} {path}: {answer.text}"
        assert answer.status_code == status, case
        assert answer.headers["content-type"] == MEDIA_TYPE, case
        assert answer.json()["error_code"] == error_code, case
        assert isinstance(answer.json()["message"], str), case


def test_raw_schema_and_content_types(url: str) -> None:
    SchemaRegistryClient({"url": url}).register_schema("visits-value", avro(VISIT_V1))
    assert httpx.get(url).json() == {}
    raw = httpx.get(f"{url}/subjects/visits-value/versions/latest/schema")
    assert raw.headers["content-type"] == MEDIA_TYPE
    assert raw.text == VISIT_V1
    version = httpx.get(f"{url}/subjects/visits-value/versions/1").json()
    assert set(version) == {"subject", "version", "id", "schema"}  # no schemaType for AVRO
    # Plain application/json requests are accepted too.
    answer = httpx.post(f"{url}/subjects/visits-value", json={"schema": VISIT_V1})
    assert answer.json()["version"] == 1
    assert "anchang_http_requests_total" in httpx.get(f"{url}/metrics", follow_redirects=True).text
