"""The front-desk read API over HTTP on the real broker (SQLite): the morning of test_frontdesk_processor.py is
decided once, then each endpoint is asked, office-scoped by the API key. Also the per-office policy loading."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from projections.db import make_engine, migrate
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ingest.app import create_app
from services.ingest.keys import create_key
from services.kafka.direct import DirectPublisher
from services.staff.frontdesk_processor import FrontDeskDecisions
from services.staff.frontdesk_service import build_frontdesk_processor
from services.staff.policies import StaffPolicyError, staff_policies_from_dir
from tests.support import serve_in_thread
from tests.test_frontdesk_processor import T0, Office, morning

pytestmark = pytest.mark.kafka


@dataclass
class Api:
    url: str
    key: str
    other_key: str

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"X-API-Key": key or self.key}, timeout=30)


@pytest.fixture(scope="module")
def api(
    broker: str, registry_url: str, codec: EventCodec, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("frontdesk-api")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, ANCHANG_DATA_DIR=data_dir,
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite'}",
        ANCHANG_FRONTDESK_PROCESSOR_GROUP=f"fd-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    clock = FrozenClock(T0)
    office = Office(DirectPublisher(settings.kafka_client_config(), codec, catalogue, clock=clock), clock)
    morning(office)
    office.rotation("s2-back", "s2", 121, "STAND_POST", staff_id="s2")
    office.publisher.flush()
    processor = build_frontdesk_processor(settings, clock=clock)
    processor.run_until_caught_up()
    decisions: FrontDeskDecisions = processor.projections[0]  # type: ignore[assignment]
    decisions.fire_due_sms_timers(processor.engine)
    processor.run_until_caught_up()
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    now = datetime.now(UTC)
    key, other = create_key(engine, office.office, "test", now), create_key(engine, "fd-elsewhere", "test", now)
    with serve_in_thread(create_app(settings, clock=clock)) as url:
        yield Api(url, key, other)
    engine.dispose()
    processor.engine.dispose()


def test_ROT_02_next_receiver_in_one_call_with_why_and_the_queue(api: Api) -> None:
    answer = api.get("/v1/frontdesk/next-receiver").json()
    assert answer["staff_id"] == "s2"
    assert answer["rule_id"] == "ROT-09"  # people ahead of s2 were skipped, keeping their places
    assert "s1: 停接 (ROT-11)" in answer["why"] and "s3: 停接 (ROT-05)" in answer["why"]
    assert [entry["staff_id"] for entry in answer["queue"]] == ["s1", "s3", "s4", "s2"]
    assert answer["first_post_empty"] is None


def test_ROT_02_next_receiver_at_a_given_instant_and_without_a_queue(api: Api) -> None:
    tomorrow = (T0 + timedelta(days=1)).isoformat()
    answer = api.get("/v1/frontdesk/next-receiver", at=tomorrow).json()
    assert (answer["staff_id"], answer["why"]) == (None, "no 轮序表 published for today")
    assert api.get("/v1/frontdesk/next-receiver", key=api.other_key).json()["queue"] == []


def test_CALL_06_the_days_call_register_for_the_manager(api: Api) -> None:
    register = api.get("/v1/frontdesk/calls", day="2026-11-23").json()
    assert [call["call_id"] for call in register["calls"]] == ["c1", "c2", "c3", "c4"]
    assert (register["totals"]["fines_yuan"], register["totals"]["sms_overdue"]) == (30, 1)
    # CALL-03 / PEN-26: each answered call's log deadline (the end of the office's day) and that it was met.
    assert {(call["log_status"], call["log_deadline_at"]) for call in register["calls"]} == {
        ("LOGGED", "2026-11-23T16:00:00Z")
    }  # fmt: skip
    assert (register["totals"]["unlogged"], register["totals"]["log_missing"]) == (0, 0)
    assert api.get("/v1/frontdesk/calls", key=api.other_key, day="2026-11-23").json()["calls"] == []


def test_KPI_07_reception_counts_over_http(api: Api) -> None:
    counts = api.get("/v1/frontdesk/receptions", day="2026-11-23").json()
    assert {row["staff_id"]: row["receptions"] for row in counts["staff"]} == {"s1": 2, "s2": 3, "s3": 1, "s4": 1}


def test_KPI_01_and_KPI_09_office_figures_over_http(api: Api) -> None:
    result = api.get("/v1/frontdesk/kpis", month="2026-11").json()
    assert result["office"]["call_to_visit_rate"] == pytest.approx(2 / 3)
    assert result["office"]["sms_compliance"] == pytest.approx(2 / 3)
    assert api.get("/v1/frontdesk/kpis", month="November").status_code == 422


def test_the_read_api_needs_a_key(api: Api) -> None:
    assert httpx.get(api.url + "/v1/frontdesk/next-receiver", timeout=30).status_code == 401


def test_clients_may_publish_rotation_commands_but_not_front_desk_facts(api: Api) -> None:
    command = {"event_type": "RotationCommandIssued", "actor": {"staff_id": "s2", "role": "SALES_CONSULTANT"},
               "payload": {"command_type": "STAND_POST", "staff_id": "s2"}}  # fmt: skip
    headers = {"X-API-Key": api.key}
    assert httpx.post(api.url + "/v1/events", json=command, headers=headers, timeout=30).status_code == 202
    fact = {"event_type": "PostStood", "actor": {"staff_id": "s2", "role": "SALES_CONSULTANT"},
            "payload": {"staff_id": "s2"}}  # fmt: skip
    refused = httpx.post(api.url + "/v1/events", json=fact, headers=headers, timeout=30)
    assert refused.status_code == 422 and refused.json()["detail"][0]["type"] == "decided_event"


# ---------------------------------------------------------------------------------------------------------------
# Policy per office (no broker needed)


def test_policies_per_office_from_the_policy_directory(tmp_path: Path) -> None:
    (tmp_path / "default.toml").write_text("[staff]\nsms_within_seconds = 240\n")
    (tmp_path / "sh-001.toml").write_text('[staff]\nwaiver_reception_weight = 3\npacks = ["property"]\n')
    policies = staff_policies_from_dir(tmp_path)
    assert policies("anywhere").sms_within == timedelta(minutes=4)
    office = policies("sh-001")
    assert (office.waiver_reception_weight, office.sms_within, office.late_answer_fine_yuan) == (
        3, timedelta(minutes=4), 15,
    )  # fmt: skip


def test_a_bad_policy_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "sh-002.toml").write_text("[staff]\nwaiver_minimum_minutes = -5\n")
    with pytest.raises(StaffPolicyError, match=r"sh-002\.toml \[staff\]: waiver_minimum_minutes"):
        staff_policies_from_dir(tmp_path)
