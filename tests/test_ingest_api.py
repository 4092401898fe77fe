"""The ingestion API against the real broker and registry: authentication, validation, production."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from projections.db import make_engine, migrate
from services.client import AnchangClient, AnchangError
from services.core.catalog import Catalogue
from services.core.config import Settings
from services.ingest.app import create_app
from services.ingest.keys import create_key, revoke_keys
from tests.support import call_received, count_records, serve_in_thread, visit_event

pytestmark = pytest.mark.kafka


class Api:
    def __init__(self, url: str, keys: dict[str, str], settings: Settings) -> None:
        self.url = url
        self.keys = keys
        self.settings = settings

    def post(self, body: object, office: str = "office-a", path: str = "/v1/events") -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"X-API-Key": self.keys[office]}, timeout=30)


@pytest.fixture(scope="module")
def api(broker: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("api")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker,
        SCHEMA_REGISTRY_URL=registry_url,
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite'}",
        ANCHANG_DATA_DIR=data_dir,
        ANCHANG_API_KEY_CACHE_SECONDS=0.5,
    )
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    keys = {office: create_key(engine, office, "test", datetime.now(UTC)) for office in ("office-a", "office-b")}
    with serve_in_thread(create_app(settings)) as url:
        yield Api(url, keys, settings)


def test_an_accepted_event_is_on_kafka_where_the_response_says(api: Api, broker: str, registry_url: str) -> None:
    response = api.post(visit_event("v-api-1"))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["topic"] == "anchang.frontdesk" and accepted["event_type"] == "VisitRegistered"
    consumer = Consumer({"bootstrap.servers": broker, "group.id": f"t-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(accepted["topic"], accepted["partition"], accepted["offset"])])
    message = consumer.consume(1, timeout=10)[0]
    consumer.close()
    assert message.key() == b"office-a"  # the catalogue keys front-desk events by office
    # Any standard consumer decodes it: a plain AvroDeserializer with only the registry URL.
    decode = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    record = decode(message.value(), SerializationContext(accepted["topic"], MessageField.VALUE))
    assert str(record["envelope"]["event_id"]) == accepted["event_id"]
    assert record["envelope"]["office_id"] == "office-a"
    assert record["visit_id"] == "v-api-1" and record["customer_name"] == "王先生"


def test_an_invalid_event_gets_422_naming_the_fields_and_nothing_is_produced(api: Api, broker: str) -> None:
    before = count_records(broker, "anchang.frontdesk")
    body = visit_event("v-bad", arrived_at="yesterday")
    del body["payload"]["phone"]
    response = api.post(body)
    assert response.status_code == 422
    problems = {".".join(map(str, item["loc"])): item["msg"] for item in response.json()["detail"]}
    assert set(problems) == {"payload.arrived_at", "payload.phone"}
    assert "ISO-8601" in problems["payload.arrived_at"] and problems["payload.phone"] == "field required"
    assert count_records(broker, "anchang.frontdesk") == before


def test_keys_decide_the_office(api: Api, broker: str) -> None:
    before = count_records(broker, "anchang.frontdesk")
    assert httpx.post(api.url + "/v1/events", json=visit_event("v-x")).status_code == 401
    assert (
        httpx.post(api.url + "/v1/events", json=visit_event("v-x"), headers={"X-API-Key": "ak_nope"}).status_code == 401
    )
    forbidden = api.post(visit_event("v-x", office="office-b"), office="office-a")
    assert forbidden.status_code == 403 and "office-b" in forbidden.json()["detail"]
    assert count_records(broker, "anchang.frontdesk") == before
    # The body may leave office_id out: the key decides.
    body = visit_event("v-own")
    del body["office_id"]
    accepted = api.post(body, office="office-b")
    assert accepted.status_code == 202


def test_a_revoked_key_stops_working(api: Api) -> None:
    engine = make_engine(api.settings.resolved_database_url)
    key = create_key(engine, "office-c", "short-lived", datetime.now(UTC))
    headers = {"X-API-Key": key}
    assert (
        httpx.post(api.url + "/v1/events", json=visit_event("v-c", office="office-c"), headers=headers).status_code
        == 202
    )
    assert revoke_keys(engine, "office-c", datetime.now(UTC)) == 1
    time.sleep(api.settings.api_key_cache_seconds + 0.1)
    assert (
        httpx.post(api.url + "/v1/events", json=visit_event("v-c", office="office-c"), headers=headers).status_code
        == 401
    )


def test_batch_accepts_the_good_and_explains_the_bad(api: Api) -> None:
    bad = visit_event("v-b3")
    bad["payload"]["visit_type"] = "VIP"
    body = [
        visit_event("v-b1"),
        call_received("c-b1"),
        bad,
        visit_event("v-b4", office="office-b"),
        "nonsense",
    ]
    response = api.post(body, path="/v1/events/batch")
    assert response.status_code == 200
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 3)
    items = result["items"]
    assert items[0]["accepted"]["topic"] == "anchang.frontdesk" and items[1]["accepted"]["event_type"] == "CallReceived"
    assert items[2]["errors"][0]["loc"] == ["payload", "visit_type"]
    assert items[3]["errors"][0]["type"] == "office_mismatch"
    assert items[4]["errors"][0]["type"] == "record_type"


def test_bad_json_and_oversized_batches_are_4xx(api: Api) -> None:
    headers = {"X-API-Key": api.keys["office-a"], "content-type": "application/json"}
    assert httpx.post(api.url + "/v1/events", content=b"{nope", headers=headers).status_code == 400
    assert api.post({"not": "a list"}, path="/v1/events/batch").status_code == 422


def test_openapi_metrics_and_catalogue_are_served(api: Api, catalogue: Catalogue) -> None:
    spec = httpx.get(api.url + "/openapi.json").json()
    assert {"/v1/events", "/v1/events/batch", "/v1/visits", "/v1/calls", "/v1/register"} <= set(spec["paths"])
    assert httpx.get(api.url + "/docs").status_code == 200
    types = httpx.get(api.url + "/v1/event-types").json()
    assert len(types) == len(catalogue.schemas) and types["ClockedIn"]["topic"] == "anchang.staff"
    metrics = httpx.get(api.url + "/metrics").text
    assert 'anchang_http_requests_total{method="POST",route="/v1/events",service="api",status="422"}' in metrics
    assert 'anchang_events_produced_total{event_type="VisitRegistered",office_id="office-a"}' in metrics


def test_the_python_client_publishes_and_explains_refusals(api: Api) -> None:
    with AnchangClient(api.url, api.keys["office-a"]) as client:
        accepted = client.publish(visit_event("v-client"))
        assert accepted["topic"] == "anchang.frontdesk" and accepted["offset"] >= 0
        batch = client.publish_batch([visit_event("v-client-2"), {"event_type": "Nope"}])
        assert (batch["accepted"], batch["rejected"]) == (1, 1)
        with pytest.raises(AnchangError) as refused:
            client.publish(visit_event("v-client-3", visit_type="VIP"))
    assert refused.value.status == 422 and refused.value.detail[0]["loc"] == ["payload", "visit_type"]


def test_facts_decided_by_anchang_cannot_be_posted(api: Api) -> None:
    body = {"event_type": "UnitLocked", "actor": {"staff_id": "m-1", "role": "SALES_MANAGER"},
            "payload": {"unit_id": "u-1", "customer_id": "c-1", "confirmed_by": "m-1"}}  # fmt: skip
    refused = api.post(body)
    assert refused.status_code == 422 and refused.json()["detail"][0]["type"] == "decided_event"
