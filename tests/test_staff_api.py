"""The staff slice end to end on the real broker: events posted to the API → staff processor → facts and
penalties → read models → GET /v1/staff/…, office-scoped, JSON and CSV. The issue's proof for this part: a
clock-in at 08:31 shows a 50 元 fine in the month's ledger; a leave request on a 开盘日 is refused with the rule
id; a complaint past its SLA escalates."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from projections.db import make_engine, migrate
from projections.service import build_processor
from services.core.clock import FrozenClock
from services.core.config import Settings
from services.ingest.app import create_app
from services.ingest.keys import create_key
from services.staff.staff_processor import StaffDecisions
from services.staff.staff_service import build_staff_processor
from tests.support import serve_in_thread

pytestmark = pytest.mark.kafka

TZ = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 11, 23, tzinfo=TZ)
MANAGER = {"staff_id": "m-1", "role": "SALES_MANAGER"}


@dataclass
class Api:
    url: str
    key: str
    other_key: str
    clock: FrozenClock
    ids: dict[str, str]

    def post(self, event_type: str, when: datetime, actor: dict[str, str], **payload: Any) -> httpx.Response:
        self.clock.at = when.astimezone(UTC)
        body = {"event_type": event_type, "occurred_at": when.isoformat(), "actor": actor, "payload": payload}
        return httpx.post(self.url + "/v1/events", json=body, headers={"X-API-Key": self.key}, timeout=30)

    def get(self, path: str, other_office: bool = False, **params: Any) -> httpx.Response:
        key = self.other_key if other_office else self.key
        return httpx.get(self.url + path, params=params, headers={"X-API-Key": key}, timeout=30)


def at(day_offset: int, hhmm: str) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return MONDAY + timedelta(days=day_offset, hours=hours, minutes=minutes)


def scenario(api: Api) -> dict[str, str]:
    """Post the office's events as its clients would; return the ids the tests look for. The 开盘日 is declared
    first (see ``api``): the calendar comes on the declarer's partition."""
    consultant = {"staff_id": "s-api", "role": "SALES_CONSULTANT"}
    ids: dict[str, str] = {}
    posted = [
        api.post("ClockedIn", at(0, "08:31"), consultant, staff_id="s-api", clocked_at=at(0, "08:31").isoformat()),
        api.post("LeaveRequested", at(0, "10:00"), consultant, staff_id="s-api", request_id="r-open",
                 leave_type="PERSONAL", days=["2026-11-25"], addressed_to_role="SALES_MANAGER"),
        api.post("ComplaintFiled", at(0, "10:00"), {"staff_id": "fd-1", "role": "FRONT_DESK"}, complaint_id="c-api",
                 complainant_type="CUSTOMER", subject_staff="s-api", channel="PHONE", category="ATTITUDE",
                 severity="LOW", description="接待不理不睬"),
    ]  # fmt: skip
    for response in posted:
        assert response.status_code == 202, response.text
    ids["clock_in"] = posted[0].json()["event_id"]
    return ids


@pytest.fixture(scope="module")
def api(broker: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("staff-api")
    policies = data_dir / "policies"
    policies.mkdir()
    run = uuid.uuid4().hex[:6]
    office, other = f"api-{run}", f"api-other-{run}"
    # This office's policy file: complaints must be classified within 2 hours (CMP-09), not the default 24.
    (policies / f"{office}.toml").write_text("[staff]\ncomplaint_classify_hours = 2\n")
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, ANCHANG_DATA_DIR=data_dir,
        DATABASE_URL=f"sqlite:///{data_dir / 'db.sqlite'}", ANCHANG_POLICY_DIR=policies,
        ANCHANG_PROJECTOR_GROUP=f"p-{run}", ANCHANG_STAFF_PROCESSOR_GROUP=f"s-{run}",
    )  # fmt: skip
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    keys = [create_key(engine, name, "test", datetime.now(UTC)) for name in (office, other)]
    clock = FrozenClock(MONDAY.astimezone(UTC))
    staff_processor = build_staff_processor(settings, clock=clock)
    decisions = staff_processor.projections[0]
    assert isinstance(decisions, StaffDecisions)
    with serve_in_thread(create_app(settings, clock=clock)) as url:
        api = Api(url, keys[0], keys[1], clock, {})
        declared = api.post("SpecialDayDeclared", at(-1, "09:00"), MANAGER, staff_id="m-1", day="2026-11-25",
                            kind="OPENING_DAY")  # fmt: skip
        assert declared.status_code == 202, declared.text
        staff_processor.run_until_caught_up()
        api.ids.update(scenario(api))
        # Tuesday 09:00: Monday is closed, and the complaint is past this office's 2-hour deadline (not yet the
        # default 24 hours).
        clock.at = at(1, "09:00").astimezone(UTC)
        staff_processor.run_until_caught_up()
        while decisions.fire_due_timers(staff_processor.engine):
            staff_processor.run_until_caught_up()
        build_processor(settings).run_until_caught_up()
        yield api
    engine.dispose()


def test_ATT_03_PEN_01_a_clock_in_at_0831_shows_a_50_yuan_fine_in_the_months_discipline_ledger(api: Api) -> None:
    response = api.get("/v1/staff/discipline", month="2026-11")
    assert response.status_code == 200, response.text
    (row,) = response.json()
    assert (row["staff_id"], row["fines_yuan"], row["fines_by_rule"]) == ("s-api", 50, {"ATT-03": 50})
    (line,) = row["lines"]
    assert (line["rule_id"], line["sanction_id"], line["label"]) == ("ATT-03", "PEN-01", "罚款")
    assert line["evidence"] == [api.ids["clock_in"]]


def test_ATT_03_the_discipline_ledger_exports_as_csv(api: Api) -> None:
    response = api.get("/v1/staff/discipline", month="2026-11", format="csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    header, *lines = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert header[:4] == ["staff_id", "month", "day", "rule_id"]
    assert [(line[0], line[3], line[7]) for line in lines] == [("s-api", "ATT-03", "50")]


def test_ATT_13_the_attendance_ledger_exports_as_csv_before_the_30th(api: Api) -> None:
    ledger = api.get("/v1/staff/attendance", month="2026-11").json()
    assert ledger["report_due"] == "2026-11-29"
    (row,) = ledger["rows"]
    assert (row["staff_id"], row["late_count"], row["fines_yuan"]) == ("s-api", 1, 50)
    exported = api.get("/v1/staff/attendance", month="2026-11", format="csv")
    header, *lines = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert header[:3] == ["staff_id", "month", "scheduled_days"] and lines[0][0] == "s-api"
    assert api.get("/v1/staff/attendance", month="2026-13").status_code == 422


def test_ATT_05_a_leave_request_on_an_opening_day_is_refused_with_the_rule_id(api: Api) -> None:
    (request,) = api.get("/v1/staff/leave", staff_id="s-api").json()
    assert (request["request_id"], request["status"], request["rule_id"]) == ("r-open", "REFUSED", "ATT-05")
    assert request["revoked_days"] == []  # refused before any grant: nothing to revoke
    assert api.get("/v1/staff/leave", status="GRANTED").json() == []
    assert api.get("/v1/staff/leave", status="REVOKED").json() == []  # a status the read side knows (ATT-05)
    assert api.get("/v1/staff/leave", status="CANCELLED").status_code == 422


def test_CMP_09_a_complaint_past_its_sla_escalates_per_the_offices_policy(api: Api) -> None:
    (case,) = api.get("/v1/staff/complaints").json()
    assert (case["complaint_id"], case["stage"], case["assigned_role"]) == ("c-api", "FILED", "SALES_MANAGER")
    assert [e["deadline"] for e in case["escalations"]] == ["CLASSIFY"]
    assert case["sla"] == {"CLASSIFY": "escalated", "RESOLVE": "open"}
    assert api.get("/v1/staff/complaints/per-staff", month="2026-11").json() == [
        {"staff_id": "s-api", "filed": 1, "substantiated": 0}
    ]


def test_the_staff_read_side_is_office_scoped_and_facts_are_not_client_events(api: Api) -> None:
    assert api.get("/v1/staff/discipline", other_office=True, month="2026-11").json() == []
    assert api.get("/v1/staff/complaints", other_office=True).json() == []
    assert api.get("/v1/staff/discipline", month="2026-11").status_code == 200
    forged = api.post("PenaltyIssued", at(0, "12:00"), MANAGER, penalty_id="x", staff_id="s-api", rule_id="ATT-03",
                      kind="FINE", day="2026-11-23", amount_yuan=50, issued_by_role="SALES_MANAGER",
                      evidence_event_ids=["x"])  # fmt: skip
    assert forged.status_code in (403, 422), forged.text
    judged = api.post("AttendanceDayJudged", at(0, "12:00"), MANAGER, staff_id="s-api", day="2026-11-23",
                      status="PRESENT", evidence_event_ids=[])  # fmt: skip
    assert judged.status_code in (403, 422), judged.text
