"""The staff processor and its read side on the real broker, on SQLite and PostgreSQL: one scenario per database
publishes a week of an office's attendance, leave and complaints, runs the staff processor (timers fired by a
clock the test moves, as after downtime) and the read-models processor until caught up; then each test checks
one rule, named by its id (rules.md §2, §8, §9)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from projections import staff_views as views
from projections.db import make_engine
from projections.service import build_processor
from projections.staff_tables import attendance_days, complaints, leave_requests, penalties, refusals
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.direct import DirectPublisher
from services.staff.staff_processor import StaffDecisions
from services.staff.staff_service import build_staff_processor

pytestmark = pytest.mark.kafka

TZ = ZoneInfo("Asia/Shanghai")
D = date(2026, 11, 23)  # a Monday
MONTH = "2026-11"
MANAGER = {"staff_id": "m-1", "role": "SALES_MANAGER"}
SUPERVISOR = {"staff_id": "sup-1", "role": "SALES_SUPERVISOR"}
CONSULTANT = {"staff_id": "c-9", "role": "SALES_CONSULTANT"}
SERVICE = {"staff_id": "cs-1", "role": "CUSTOMER_SERVICE"}


def at(day: date, hhmm: str, ms: int = 0) -> datetime:
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=TZ) + timedelta(milliseconds=ms)


def later(days: int) -> date:
    return D + timedelta(days=days)


@dataclass
class World:
    """What the scenario left behind: the read side's rows of this run's office, and the ids of key events."""

    office: str
    engine: Engine
    ids: dict[str, str] = field(default_factory=dict)

    def rows(self, table: Any, **where: Any) -> list[dict[str, Any]]:
        query = select(table).where(table.c.office_id == self.office)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def day(self, staff: str, day: date) -> dict[str, Any]:
        (row,) = self.rows(attendance_days, staff_id=staff, day=day)
        return row

    def sanctions(self, staff: str) -> list[tuple[str, str | None, str, int | None]]:
        rows = self.rows(penalties, staff_id=staff)
        return sorted(((r["rule_id"], r["sanction_id"], r["kind"], r["amount_yuan"]) for r in rows), key=repr)

    def leave(self, request_id: str) -> dict[str, Any]:
        (row,) = self.rows(leave_requests, request_id=request_id)
        return row

    def complaint(self, complaint_id: str) -> dict[str, Any]:
        (row,) = self.rows(complaints, complaint_id=complaint_id)
        return row


class Office:
    def __init__(self, publisher: DirectPublisher, clock: FrozenClock, office: str) -> None:
        self.publisher, self.clock, self.office = publisher, clock, office

    def send(self, event_type: str, actor: dict[str, str], when: datetime, **payload: Any) -> str:
        self.clock.at = when.astimezone(UTC)  # recorded_at: when Anchang accepts it
        body = {"event_type": event_type, "actor": actor, "occurred_at": when.isoformat(), "payload": payload}
        return self.publisher.publish(body, office_id=self.office)

    def clock_in(self, staff: str, when: datetime, kind: str = "ClockedIn") -> str:
        return self.send(kind, {"staff_id": staff, "role": "SALES_CONSULTANT"}, when, staff_id=staff,
                         clocked_at=when.isoformat())  # fmt: skip

    def ask_leave(self, staff: str, request: str, leave_type: str, days: list[date], when: datetime) -> str:
        return self.send("LeaveRequested", {"staff_id": staff, "role": "SALES_CONSULTANT"}, when, staff_id=staff,
                         request_id=request, leave_type=leave_type, days=[d.isoformat() for d in days],
                         addressed_to_role="SALES_MANAGER")  # fmt: skip

    def complaint(self, complaint: str, when: datetime, category: str = "ATTITUDE", subject: str | None = None) -> str:
        return self.send("ComplaintFiled", {"staff_id": "fd-1", "role": "FRONT_DESK"}, when, complaint_id=complaint,
                         complainant_type="CUSTOMER", subject_staff=subject, channel="VISIT", category=category,
                         severity="MEDIUM", description="态度不好")  # fmt: skip

    def step(self, complaint: str, step: str, actor: dict[str, str], when: datetime, **fields: Any) -> str:
        return self.send("ComplaintStepRecorded", actor, when, complaint_id=complaint, step=step, **fields)


def scenario(office: Office, settings: Settings, clock: FrozenClock) -> dict[str, str]:
    staff_processor = build_staff_processor(settings, clock=clock)
    decisions = staff_processor.projections[0]
    assert isinstance(decisions, StaffDecisions)

    def catch_up() -> None:
        office.publisher.flush()
        staff_processor.run_until_caught_up()
        # Fire every due timer, decide it, until none is left (days are closed one after another).
        while decisions.fire_due_timers(staff_processor.engine):
            staff_processor.run_until_caught_up()

    ids: dict[str, str] = {}
    o = office
    # A second office (ATT-05 after a grant, ATT-01 posted late): its calendar is its own.
    b = Office(office.publisher, clock, f"{office.office}-b")
    ids["office-b"] = b.office
    # Sunday: known staff, a swap approved in advance (ATT-12); the office's 开盘日 and its day end (ATT-05/01).
    o.clock_in("s-absent", at(later(-1), "08:00"))
    o.send("ShiftSwapApproved", MANAGER, at(later(-1), "09:00"), staff_id="s-swap-ok", rostered_staff_id="s-swap-ok2",
           day=D.isoformat())  # fmt: skip
    o.send("SpecialDayDeclared", MANAGER, at(later(-1), "09:00"), staff_id="m-1", day=later(2).isoformat(),
           kind="OPENING_DAY")  # fmt: skip
    o.send("DayEnded", MANAGER, at(D, "18:30"), staff_id="m-1", day=D.isoformat(),
           last_visitor_left_at=at(D, "18:00").isoformat(),
           evening_meeting_ended_at=at(D, "18:30").isoformat())  # fmt: skip
    clock.at = at(later(-1), "09:00").astimezone(UTC)
    catch_up()  # the calendar is in before any leave request is decided

    # Monday morning: sick notices by 07:30 (ATT-09), same-day leave before and after 07:30 (ATT-07).
    ids["sick"] = o.ask_leave("s-sick", "r-sick", "SICK", [D], at(D, "07:00"))
    o.ask_leave("s-sick-cert", "r-sick-cert", "SICK", [D], at(D, "07:00"))
    o.ask_leave("s-same-ok", "r-same-ok", "PERSONAL", [D], at(D, "07:30"))
    ids["same-late"] = o.ask_leave("s-same-late", "r-same-late", "PERSONAL", [D], at(D, "07:30", ms=1))
    o.send("LeaveApproved", MANAGER, at(D, "07:40"), staff_id="s-same-ok", request_id="r-same-ok", handover_done=True)
    # Clock-ins (ATT-02/03): exactly 08:30:00.000 is on time; 08:31 is late.
    o.clock_in("s-ontime", at(D, "08:30"))
    ids["late"] = o.clock_in("s-late", at(D, "08:31"))
    o.clock_in("s-ontime", at(D, "17:00"), kind="ClockedOut")  # before the 晚会 ended (ATT-01)
    # Leave a day ahead (ATT-08): approved by the 销售经理, or by a 主管 who may not; on the 开盘日 (ATT-05).
    o.ask_leave("s-leave", "r-leave", "PERSONAL", [later(1)], at(D, "10:00"))
    o.send("LeaveApproved", MANAGER, at(D, "11:00"), staff_id="s-leave", request_id="r-leave", handover_done=True)
    o.ask_leave("s-leave-sup", "r-leave-sup", "PERSONAL", [later(1)], at(D, "10:00"))
    o.send("LeaveApproved", SUPERVISOR, at(D, "11:00"), staff_id="s-leave-sup", request_id="r-leave-sup",
           handover_done=True)  # fmt: skip
    o.ask_leave("s-opening", "r-opening", "PERSONAL", [later(2)], at(D, "10:00"))
    # Swaps (ATT-12) and leaving the premises (ATT-14).
    o.send("ShiftSwapped", MANAGER, at(D, "09:00"), staff_id="s-swap", rostered_staff_id="s-swap2", day=D.isoformat())
    o.send("ShiftSwapped", MANAGER, at(D, "09:00"), staff_id="s-swap-ok", rostered_staff_id="s-swap-ok2",
           day=D.isoformat())  # fmt: skip
    o.send("PremisesExitApproved", MANAGER, at(D, "13:00"), staff_id="s-exit-ok", day=D.isoformat())
    o.send("PremisesLeft", CONSULTANT, at(D, "14:00"), staff_id="s-exit-ok", left_at=at(D, "14:00").isoformat())
    ids["exit"] = o.send("PremisesLeft", CONSULTANT, at(D, "14:00"), staff_id="s-exit",
                         left_at=at(D, "14:00").isoformat())  # fmt: skip
    # Rest days (ATT-04) and a manager's recorded sanction (PEN-07), or a consultant's, who may not (§12).
    o.send("RestDayScheduled", MANAGER, at(D, "09:00"), staff_id="s-rest", day=later(5).isoformat())  # Saturday
    o.send("StaffSanctionRecorded", MANAGER, at(D, "15:00"), staff_id="s-doze", rule_id="PEN-07", sanction_id="PEN-07",
           kind="FINE", day=D.isoformat(), amount_yuan=200, detail="上班时间打瞌睡")  # fmt: skip
    o.send("StaffSanctionRecorded", CONSULTANT, at(D, "15:00"), staff_id="s-doze2", rule_id="PEN-07",
           sanction_id="PEN-07", kind="FINE", day=D.isoformat(), amount_yuan=200, detail="")  # fmt: skip
    # Complaints (CMP-01/02/08/09).
    o.complaint("c-attitude", at(D, "10:00"), subject="s-late")
    o.step("c-attitude", "CLASSIFY", MANAGER, at(D, "10:30"), valid=True)
    ids["resolved"] = o.send("ComplaintResolved", MANAGER, at(D, "11:00"), complaint_id="c-attitude",
                             resolution="道歉", resolved_by="m-1", substantiated=True)  # fmt: skip
    o.step("c-attitude", "CALLBACK", SERVICE, at(D, "16:00"))
    o.step("c-attitude", "CLOSE", MANAGER, at(D, "16:30"))
    o.complaint("c-role", at(D, "10:00"))
    ids["role"] = o.step("c-role", "CLASSIFY", CONSULTANT, at(D, "10:05"), valid=True)
    o.complaint("c-sla", at(D, "10:00"))
    o.complaint("c-callback", at(D, "10:00"), category="PRODUCT_KNOWLEDGE")
    o.step("c-callback", "CLASSIFY", MANAGER, at(D, "10:10"), valid=True)
    o.step("c-callback", "FORWARD", MANAGER, at(D, "10:20"), department="工程部")
    o.send("ComplaintResolved", MANAGER, at(D, "11:00"), complaint_id="c-callback", resolution="已修复",
           resolved_by="m-1", substantiated=False)  # fmt: skip
    # Office B: leave for Tuesday granted on Monday, before Tuesday becomes its 广告日 (ATT-05); a sick day is exempt.
    b.ask_leave("s-rv", "r-rv", "PERSONAL", [later(1)], at(D, "10:00"))
    b.send("LeaveApproved", MANAGER, at(D, "11:00"), staff_id="s-rv", request_id="r-rv", handover_done=True)
    b.ask_leave("s-rv2", "r-rv2", "PERSONAL", [later(1), later(2)], at(D, "10:00"))
    b.send("LeaveApproved", MANAGER, at(D, "11:00"), staff_id="s-rv2", request_id="r-rv2", handover_done=True)
    b.ask_leave("s-rv-sick", "r-rv-sick", "SICK", [later(1)], at(D, "07:00"))
    b.clock_in("s-rv-out", at(D, "08:00"))
    b.clock_in("s-rv-out", at(D, "17:45"), kind="ClockedOut")
    o.complaint("c-invalid", at(D, "10:00"))
    o.step("c-invalid", "CLASSIFY", MANAGER, at(D, "10:10"), valid=False, note="投诉不成立")
    ids["out-of-order"] = o.step("c-invalid", "FORWARD", MANAGER, at(D, "10:20"), department="工程部")
    o.step("c-invalid", "CLOSE", MANAGER, at(D, "10:30"))
    clock.at = at(D, "18:30").astimezone(UTC)
    catch_up()
    # Monday evening, after the grants were decided: office B declares Tuesday a 广告日 (ATT-05).
    ids["declared"] = b.send("SpecialDayDeclared", MANAGER, at(D, "19:00"), staff_id="m-1",
                             day=later(1).isoformat(), kind="AD_DAY")  # fmt: skip
    catch_up()

    # Tuesday: back from sick leave; one brings a certificate, one does not (ATT-09).
    o.clock_in("s-sick", at(later(1), "08:00"))
    o.clock_in("s-sick-cert", at(later(1), "08:00"))
    b.clock_in("s-rv2", at(later(1), "08:20"))  # revoked: back at work on the 广告日
    o.send("SickCertificateSubmitted", MANAGER, at(later(1), "09:00"), staff_id="s-sick-cert", request_id="r-sick-cert")
    catch_up()  # Monday is closed now
    # Office B's Monday DayEnded, posted the next morning (ATT-01): the 晚会 ended at 18:30.
    ids["late-ended"] = b.send("DayEnded", MANAGER, at(later(1), "09:30"), staff_id="m-1", day=D.isoformat(),
                               evening_meeting_ended_at=at(D, "18:30").isoformat())  # fmt: skip
    catch_up()
    # Thursday noon, after "downtime": every timer that fell due meanwhile fires, in order.
    clock.at = at(later(3), "12:00").astimezone(UTC)
    catch_up()
    read_models = build_processor(settings)
    read_models.run_until_caught_up()
    return ids


@pytest.fixture(scope="module")
def world(
    module_database_url: str,
    broker: str,
    registry_url: str,
    codec: EventCodec,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("staff")
    url = module_database_url
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, DATABASE_URL=url, ANCHANG_DATA_DIR=data_dir,
        ANCHANG_PROJECTOR_GROUP=f"p-{run}", ANCHANG_STAFF_PROCESSOR_GROUP=f"s-{run}",
    )  # fmt: skip
    clock = FrozenClock(at(later(-1), "08:00").astimezone(UTC))
    office = Office(DirectPublisher(settings.kafka_client_config(), codec, catalogue, clock=clock), clock, f"o-{run}")
    ids = scenario(office, settings, clock)
    engine = make_engine(url)
    yield World(office.office, engine, ids)
    engine.dispose()


# ---------------------------------------------------------------------------------------------------------------
# Attendance


def test_ATT_02_a_clock_in_at_exactly_0830_is_on_time(world: World) -> None:
    assert world.day("s-ontime", D)["status"] == "PRESENT"
    assert world.day("s-ontime", D)["late_ms"] == 0
    assert all(rule != "ATT-03" for rule, *_ in world.sanctions("s-ontime"))


def test_ATT_03_PEN_01_clocking_in_at_0831_shows_a_50_yuan_fine_in_the_months_ledger(world: World) -> None:
    assert ("ATT-03", "PEN-01", "FINE", 50) in world.sanctions("s-late")
    with world.engine.connect() as connection:
        ledger = {row["staff_id"]: row for row in views.discipline(connection, world.office, MONTH)}
        attendance = {row.staff_id: row for row in views.attendance_rows(connection, world.office, MONTH)}
    assert ledger["s-late"]["fines_by_rule"] == {"ATT-03": 50}
    line = next(line for line in ledger["s-late"]["lines"] if line["rule_id"] == "ATT-03")
    assert line["evidence"] == [world.ids["late"]] and line["detail"] == "late by 1 min"
    assert (attendance["s-late"].late_count, attendance["s-late"].fines_yuan) == (1, 50)


def test_ATT_01_early_leave_is_measured_against_the_end_of_the_evening_meeting(world: World) -> None:
    day = world.day("s-ontime", D)
    assert day["early_ms"] == 90 * 60 * 1000  # out at 17:00, the 晚会 ended at 18:30
    assert not day["missing_clock_out"]


def test_ATT_10_PEN_02_a_scheduled_day_without_clock_in_or_leave_is_absence_and_a_warning(world: World) -> None:
    assert world.day("s-absent", later(-1))["status"] == "PRESENT"
    assert world.day("s-absent", D)["status"] == "ABSENT"
    on_monday = [r for r in world.rows(penalties, staff_id="s-absent", day=D)]
    assert sorted((r["rule_id"], r["sanction_id"], r["kind"]) for r in on_monday) == [
        ("ATT-10", "PEN-02", "ABSENCE"), ("ATT-10", "PEN-02", "WARNING"),
    ]  # fmt: skip


def test_ATT_07_same_day_leave_counts_only_if_asked_by_0730(world: World) -> None:
    assert world.leave("r-same-ok")["status"] == "GRANTED"  # asked at 07:30:00.000, approved
    assert world.day("s-same-ok", D)["status"] == "LEAVE"
    refused = world.leave("r-same-late")
    assert (refused["status"], refused["rule_id"]) == ("REFUSED", "ATT-07")


def test_ATT_11_PEN_03_a_late_leave_request_makes_the_day_absence(world: World) -> None:
    assert world.day("s-same-late", D)["status"] == "ABSENT"
    on_monday = world.rows(penalties, staff_id="s-same-late", day=D)
    absence = next(r for r in on_monday if r["kind"] == "ABSENCE")
    assert (absence["rule_id"], absence["sanction_id"]) == ("ATT-11", "PEN-03")
    assert world.ids["same-late"] in absence["evidence"]


def test_ATT_08_leave_a_day_ahead_needs_the_sales_managers_approval(world: World) -> None:
    assert world.leave("r-leave")["status"] == "GRANTED"
    assert world.day("s-leave", later(1))["status"] == "LEAVE"
    assert world.day("s-leave", later(1))["leave_type"] == "PERSONAL"
    by_supervisor = world.leave("r-leave-sup")
    assert (by_supervisor["status"], by_supervisor["rule_id"]) == ("REFUSED", "ATT-08")


def test_ATT_05_a_leave_request_on_an_opening_day_is_refused_with_the_rule_id(world: World) -> None:
    refused = world.leave("r-opening")
    assert (refused["status"], refused["rule_id"]) == ("REFUSED", "ATT-05")
    assert "OPENING_DAY" in refused["reason"]


def test_ATT_05_a_special_day_declared_after_a_grant_revokes_the_leave(world: World) -> None:
    b = World(world.ids["office-b"], world.engine)
    revoked = b.leave("r-rv")
    assert (revoked["status"], revoked["rule_id"], revoked["revoked_days"]) == ("REVOKED", "ATT-05", ["2026-11-24"])
    assert "AD_DAY" in revoked["reason"]
    # Expected at work that day: no clock-in is 旷工 + 警告单 as usual (ATT-10).
    assert b.day("s-rv", later(1))["status"] == "ABSENT"
    tuesday = sorted((r["rule_id"], r["kind"]) for r in b.rows(penalties, staff_id="s-rv", day=later(1)))
    assert tuesday == [("ATT-10", "ABSENCE"), ("ATT-10", "WARNING")]
    # A two-day leave loses the declared day only; the other day is still leave.
    partly = b.leave("r-rv2")
    assert (partly["status"], partly["revoked_days"]) == ("GRANTED", ["2026-11-24"])
    assert (b.day("s-rv2", later(1))["status"], b.day("s-rv2", later(2))["status"]) == ("PRESENT", "LEAVE")
    # Sick leave is exempt (decision 5); the other office's leave that Tuesday stands.
    assert (b.leave("r-rv-sick")["status"], b.day("s-rv-sick", later(1))["leave_type"]) == ("GRANTED", "SICK")
    assert (world.leave("r-leave")["revoked_days"], world.day("s-leave", later(1))["status"]) == ([], "LEAVE")
    # The read view behind GET /v1/staff/leave shows the revoked state, and filters on it.
    with world.engine.connect() as connection:
        (listed,) = views.leave_of(connection, b.office, None, "REVOKED")
    assert (listed["request_id"], listed["revoked_days"]) == ("r-rv", ["2026-11-24"])


def test_ATT_01_a_day_ended_posted_after_the_day_was_closed_judges_early_leave_again(world: World) -> None:
    monday = World(world.ids["office-b"], world.engine).day("s-rv-out", D)
    assert (monday["status"], monday["early_ms"]) == ("PRESENT", 45 * 60 * 1000)  # out 17:45, 晚会 until 18:30
    assert world.ids["late-ended"] in monday["evidence"]


def test_ATT_09_PEN_05_sick_leave_without_certificate_on_the_first_day_back_becomes_personal_leave(
    world: World,
) -> None:
    assert world.leave("r-sick")["status"] == "RECLASSIFIED"
    assert world.leave("r-sick")["counts_as"] == "PERSONAL"
    assert (world.day("s-sick", D)["status"], world.day("s-sick", D)["leave_type"]) == ("LEAVE", "PERSONAL")
    assert world.leave("r-sick-cert")["status"] == "GRANTED"
    assert world.day("s-sick-cert", D)["leave_type"] == "SICK"


def test_ATT_12_PEN_04_an_unapproved_swap_makes_both_absent(world: World) -> None:
    assert ("ATT-12", "PEN-04", "ABSENCE", None) in world.sanctions("s-swap")
    assert ("ATT-12", "PEN-04", "ABSENCE", None) in world.sanctions("s-swap2")
    assert all(rule != "ATT-12" for rule, *_ in world.sanctions("s-swap-ok"))


def test_ATT_14_PEN_06_leaving_the_premises_without_approval_is_absence_200_yuan_and_a_warning(world: World) -> None:
    exit_sanctions = [s for s in world.sanctions("s-exit") if s[0] == "ATT-14"]
    assert exit_sanctions == [
        ("ATT-14", "PEN-06", "ABSENCE", None), ("ATT-14", "PEN-06", "FINE", 200), ("ATT-14", "PEN-06", "WARNING", None),
    ]  # fmt: skip
    assert all(s[0] != "ATT-14" for s in world.sanctions("s-exit-ok"))


def test_ATT_04_a_rest_day_on_a_saturday_is_refused(world: World) -> None:
    (refusal,) = world.rows(refusals, subject_id="s-rest")
    assert (refusal["refused_event_type"], refusal["rule_id"]) == ("RestDayScheduled", "ATT-04")


def test_PEN_07_a_managers_recorded_sanction_is_in_the_ledger_a_consultants_is_refused(world: World) -> None:
    (line,) = world.rows(penalties, staff_id="s-doze", sanction_id="PEN-07")
    assert (line["kind"], line["amount_yuan"], line["issued_by_role"]) == ("FINE", 200, "SALES_MANAGER")
    assert world.rows(penalties, staff_id="s-doze2", sanction_id="PEN-07") == []
    assert [r["rule_id"] for r in world.rows(refusals, subject_id="s-doze2")] == ["§12"]


def test_ATT_13_the_attendance_ledger_exports_as_csv(world: World) -> None:
    from services.staff.attendance import LEDGER_COLUMNS, ledger_csv_rows

    with world.engine.connect() as connection:
        rows = views.attendance_rows(connection, world.office, MONTH)
    table = ledger_csv_rows(rows)
    assert table[0] == LEDGER_COLUMNS
    exit_row = next(r for r in rows if r.staff_id == "s-exit")
    assert exit_row.fines_yuan == 200 and exit_row.warnings >= 1


# ---------------------------------------------------------------------------------------------------------------
# Complaints


def test_CMP_01_PEN_10_a_substantiated_attitude_complaint_gives_the_named_staff_a_disciplinary_slip(
    world: World,
) -> None:
    (slip,) = [r for r in world.rows(penalties, staff_id="s-late") if r["rule_id"] == "CMP-01"]
    assert (slip["sanction_id"], slip["kind"], slip["detail"]) == ("PEN-10", "DISCIPLINARY_SLIP", "c-attitude")
    assert world.ids["resolved"] in slip["evidence"]
    with world.engine.connect() as connection:
        per_staff = views.complaints_per_staff(connection, world.office, MONTH)
    assert {"staff_id": "s-late", "filed": 1, "substantiated": 1} in per_staff


def test_CMP_02_complaints_go_to_the_sales_manager_and_others_may_not_handle_them(world: World) -> None:
    assert world.complaint("c-attitude")["assigned_role"] == "SALES_MANAGER"
    assert world.complaint("c-attitude")["stage"] == "CLOSED"
    (refusal,) = world.rows(refusals, subject_id="c-role")
    assert (refusal["refused_event_id"], refusal["rule_id"]) == (world.ids["role"], "CMP-02")
    assert world.complaint("c-role")["stage"] == "FILED"


def test_CMP_08_an_invalid_complaint_is_rejected_then_closed_and_cannot_be_forwarded(world: World) -> None:
    assert world.complaint("c-invalid")["stage"] == "CLOSED"
    (refusal,) = world.rows(refusals, subject_id="c-invalid")
    assert (refusal["refused_event_id"], refusal["rule_id"]) == (world.ids["out-of-order"], "CMP-08")


def test_CMP_09_a_complaint_past_its_sla_escalates(world: World) -> None:
    escalations = world.complaint("c-sla")["escalations"]
    assert [(e["deadline"], e["rule_id"], e["escalate_to"]) for e in escalations] == [
        ("CLASSIFY", "CMP-09", "COMPANY_MANAGEMENT"), ("RESOLVE", "CMP-X01", "COMPANY_MANAGEMENT"),
    ]  # fmt: skip
    with world.engine.connect() as connection:
        cases = {c["complaint_id"]: c for c in views.complaints_of(connection, world.office, None, datetime.now(UTC))}
    assert cases["c-sla"]["sla"] == {"CLASSIFY": "escalated", "RESOLVE": "escalated"}
    assert cases["c-attitude"]["sla"] == {"CLASSIFY": "met", "RESOLVE": "met", "CALLBACK": "met"}


def test_CMP_09_a_callback_not_made_within_3_days_escalates(world: World) -> None:
    case = world.complaint("c-callback")
    assert case["stage"] == "RESOLVED"
    assert [e["deadline"] for e in case["escalations"]] == ["CALLBACK"]
    assert world.complaint("c-attitude")["escalations"] == []  # called back the same day
