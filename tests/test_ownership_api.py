"""The ownership API end to end on the real broker: inputs posted with POST /v1/events, decided by the attribution
processor, read back office-scoped. The issue's "done when": a channel that reported 29 minutes before arrival gets
no commission and the API says why; a disputed switch shows 5:5 in the ledger (also as CSV); a customer whose first
visit was 3 months and a day ago belongs to the new receiver unless renewed."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from projections.db import make_engine, migrate
from projections.runner import ProjectionProcessor
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ingest.app import create_app
from services.ingest.keys import create_key
from services.ownership.service import build_attribution_processor
from tests.support import serve_in_thread
from tests.test_ownership_support import T0, Office, iso

pytestmark = pytest.mark.kafka

ARRIVAL = T0 + timedelta(hours=1)
LATER = T0 + timedelta(days=31 + 28 + 31 + 1)  # three months and a day after the first visits


@dataclass
class Api:
    url: str
    key: str
    other_key: str
    office: Office
    processor: ProjectionProcessor
    phones: dict[str, str]
    subscriptions: dict[str, str]

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"X-API-Key": key or self.key}, timeout=30)

    def post_event(self, event_type: str, actor: dict[str, str], payload: dict[str, Any], at: datetime) -> str:
        body = {"event_type": event_type, "occurred_at": iso(at), "actor": actor, "payload": payload}
        response = httpx.post(self.url + "/v1/events", json=body, headers={"X-API-Key": self.key}, timeout=30)
        assert response.status_code == 202, response.text
        return str(response.json()["event_id"])

    def decide(self) -> None:
        self.office.flush()
        self.processor.run_until_caught_up()


CONSULTANT = {"staff_id": "s-a", "role": "SALES_CONSULTANT"}
FRONT_DESK = {"staff_id": "fd-1", "role": "FRONT_DESK"}
CHANNEL = {"staff_id": "ag-1", "role": "CHANNEL_AGENT"}


def visit(api: Api, phone: str, received_by: str, at: datetime) -> None:
    api.post_event("VisitRegistered", FRONT_DESK, {
        "visit_id": f"v-{uuid.uuid4().hex[:8]}", "customer_name": "王先生", "phone": phone, "arrived_at": iso(at),
        "visit_type": "NEW",
        "first_visit_claimed": True, "prior_contact_claimed": False, "received_by": received_by,
        "channel_mentioned": "ch-x",
    }, at)  # fmt: skip


def command(api: Api, actor: dict[str, str], at: datetime, **payload: Any) -> str:
    return api.post_event("OwnershipCommandIssued", actor, payload, at)


@pytest.fixture(scope="module")
def api(
    broker: str, registry_url: str, codec: EventCodec, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("ownership-api")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, ANCHANG_DATA_DIR=data_dir,
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite'}",
    )  # fmt: skip
    migrate(settings.resolved_database_url)
    clock = FrozenClock(T0)
    office = Office(settings.kafka_client_config(), codec, catalogue, clock)
    engine = make_engine(settings.resolved_database_url)
    keys = [create_key(engine, office_id, "test", datetime.now(UTC)) for office_id in (office.id, "office-other")]
    with serve_in_thread(create_app(settings, clock)) as url:
        api = Api(url, keys[0], keys[1], office, build_attribution_processor(settings, clock), {}, {})
        play(api)
        yield api


def play(api: Api) -> None:
    phones = api.phones
    for name in ("late29", "dispute", "expires", "renewed"):
        phones[name] = api.office.phone()
    # a 报备 29 minutes before the arrival; a customer who will switch and dispute; two who reach 3 months
    command(api, CHANNEL, ARRIVAL - timedelta(minutes=29), command_type="REPORT_CHANNEL_CUSTOMER",
            phone=phones["late29"], customer_name="王先生", channel_id="ch-x", agent_id="ag-1")  # fmt: skip
    for name in ("late29", "dispute", "expires", "renewed"):
        visit(api, phones[name], "s-a", ARRIVAL)
    api.decide()
    api.office.clock.at = T0 + timedelta(hours=2)
    dispute = api.office.key(phones["dispute"])
    command(api, FRONT_DESK, T0, command_type="REQUEST_SWITCH", customer_key=dispute, from_staff_id="s-a",
            to_staff_id="s-b", requested_by_customer=True)  # fmt: skip
    command(api, CONSULTANT, T0, command_type="RAISE_DISPUTE", customer_key=dispute, raised_by="s-a")
    api.decide()
    api.subscriptions["late29"] = api.office.deal(api.office.key(phones["late29"]), "s-a", 100_000_000)
    api.subscriptions["dispute"] = api.office.deal(dispute, "s-b", 300_000_000)
    api.decide()
    api.office.clock.at = LATER - timedelta(days=3)
    command(api, {"staff_id": "sup-1", "role": "SALES_SUPERVISOR"}, LATER, command_type="APPROVE_RENEWAL",
            customer_key=api.office.key(phones["renewed"]), staff_id="s-a")  # fmt: skip
    api.decide()
    api.office.clock.at = LATER
    api.processor.projections[0].fire_due_expiries(api.processor.engine)  # type: ignore[attr-defined]
    api.decide()
    visit(api, phones["expires"], "s-b", LATER)
    visit(api, phones["renewed"], "s-b", LATER)
    api.decide()


def test_OWN_11_the_api_says_why_a_report_29_minutes_before_arrival_earns_nothing(api: Api) -> None:
    key = api.office.key(api.phones["late29"])
    (report,) = api.get("/v1/channel-reports", customer_key=key).json()
    assert (report["status"], report["reason"], report["rule_id"]) == ("rejected", "lt_lead_time", "OWN-11")
    assert "29 min before arrival" in report["detail"]
    assert report["phone_masked"].count("*") == 4
    why = api.get(f"/v1/customers/{key}/why").json()
    assert why["owner"]["staff_id"] == "s-a"
    deal = next(fact for fact in why["chain"] if fact["event_type"] == "DealAttributed")
    assert (deal["details"]["channel_status"], deal["details"]["channel_rule"]) == ("not_applicable", "OWN-11")
    assert "29 min before arrival" in deal["details"]["channel_reason"]
    rejected = next(fact for fact in why["chain"] if fact["event_type"] == "ChannelReportRejected")
    assert (rejected["rule_id"], rejected["details"]["reason"]) == ("OWN-11", "lt_lead_time")
    assert all(api.phones["late29"] not in str(fact) for fact in why["chain"])
    assert api.get("/v1/commissions", channel_id="ch-x").json() == []  # a natural visit: no channel is owed


def test_OWN_01_the_owner_by_phone_in_any_spelling(api: Api) -> None:
    phone = api.phones["late29"]
    spelled = f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"
    answer = api.get("/v1/customers/owner", phone=spelled).json()
    assert (answer["status"], answer["owner"]["staff_id"], answer["owner"]["basis"]) == (
        "owned",
        "s-a",
        "first_contact",
    )
    assert answer["owner"]["expires_at"] is None  # a standing deal freezes the ownership (OWN-05)


def test_COM_01_a_disputed_switch_shows_5_5_in_the_ledger_csv(api: Api) -> None:
    response = api.get("/v1/commissions", month="2026-01", format="csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    deal = [row for row in rows if row["deal_id"] == api.subscriptions["dispute"] and row["party"] == "staff"]
    assert sorted((row["party_id"], row["share"], row["sales_fen"], row["rule_id"]) for row in deal) == [
        ("s-a", "1/2", "150000000", "COM-01"), ("s-b", "1/2", "150000000", "COM-01"),
    ]  # fmt: skip
    by_staff = api.get("/v1/commissions", staff_id="s-b").json()
    assert [(row["deal_id"], row["share"]) for row in by_staff] == [(api.subscriptions["dispute"], "1/2")]


def test_OWN_05_three_months_and_a_day_later_the_new_receiver_owns_unless_renewed(api: Api) -> None:
    expired = api.get("/v1/customers/owner", phone=api.phones["expires"]).json()
    assert (expired["status"], expired["owner"]["staff_id"]) == ("owned", "s-b")
    renewed = api.get("/v1/customers/owner", phone=api.phones["renewed"]).json()
    assert (renewed["status"], renewed["owner"]["staff_id"]) == ("owned", "s-a")
    chain = api.get(f"/v1/customers/{expired['customer_key']}/why").json()["chain"]
    assert [fact["rule_id"] for fact in chain if fact["event_type"] == "OwnershipExpired"] == ["OWN-05"]


def test_errors_name_the_field_and_the_rule(api: Api) -> None:
    bad_phone = api.get("/v1/customers/owner", phone="12345")
    assert bad_phone.status_code == 422
    assert bad_phone.json()["detail"][0] | {"msg": ""} == {"loc": ["query", "phone"], "msg": "", "rule_id": "OWN-01"}
    bad_month = api.get("/v1/commissions", month="2026-13")
    assert (bad_month.status_code, bad_month.json()["detail"][0]["rule_id"]) == (422, "COM-06")
    unknown = api.get(f"/v1/customers/{api.office.id}:{'0' * 32}/owner")
    assert (unknown.status_code, unknown.json()["detail"][0]["loc"]) == (404, ["path", "customer_key"])


def test_another_office_sees_none_of_it(api: Api) -> None:
    key = api.office.key(api.phones["late29"])
    assert api.get(f"/v1/customers/{key}/why", key=api.other_key).status_code == 404
    assert api.get("/v1/channel-reports", key=api.other_key).json() == []
    assert api.get("/v1/commissions", key=api.other_key).json() == []
