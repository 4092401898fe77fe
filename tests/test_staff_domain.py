"""The pure staff core (services/staff): one example test per [CORE][P1] rule id of rules.md §2/3/4/8/9/10, named by
the id, edge tests for the arithmetic, and properties of the 轮序表 state machine."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import get_args
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sales.policy import Role
from services.staff import attendance, calls, complaints, kpi, leave, rotation, visits
from services.staff.attendance import Approval, Clocking, DayStatus, ObservedSwap, PremisesExit
from services.staff.calls import Call, CallerClass, CallLog, SmsState
from services.staff.complaints import ComplaintCategory, Deadline, Stage
from services.staff.leave import LeaveRequest, LeaveStatus, SickLeaveState
from services.staff.penalties import DisciplineRow, Penalty, PenaltyKind, discipline_ledger
from services.staff.policies import PRESETS, StaffPolicyError, load_staff_policies, with_pack
from services.staff.policy import DEFAULT_STAFF_POLICY, DayEndRule, DayKind, LeaveType, PolicyValueError, StaffPolicy
from services.staff.refusal import ROLE_RULE, Refusal
from services.staff.rotation import (
    INITIAL,
    EndReception,
    LeavePost,
    LiftSuspension,
    PostStatus,
    PublishQueue,
    QueuePublished,
    ReceptionStarted,
    RotationCommand,
    RotationFact,
    RotationRejected,
    RotationState,
    StandPost,
    StartReception,
    Suspend,
    VisitType,
    WaiveTurn,
    decide,
    evolve,
    fold,
    next_receiver,
)

SH = ZoneInfo("Asia/Shanghai")
POLICY = DEFAULT_STAFF_POLICY
MONDAY = date(2024, 5, 6)
TUESDAY = MONDAY + timedelta(days=1)
_ids = itertools.count(1)


def at(hh: int, mm: int = 0, ss: int = 0, ms: int = 0, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, ms * 1000, tzinfo=SH)


def eid(prefix: str = "evt") -> str:
    return f"{prefix}-{next(_ids)}"


# ---------------------------------------------------------------------------------------------------------------
# Policy


def test_defaults_are_the_handbook_numbers() -> None:
    p = StaffPolicy()
    assert (p.clock_in_by, p.lateness_fine_yuan, p.day_end, p.day_end_rule) == (time(8, 30), 50, time(17, 30), "latest")
    assert (p.same_day_leave_cutoff, p.sick_notice_cutoff, p.leave_notice_days) == (time(7, 30), time(7, 30), 1)
    assert p.blackout_day_kinds == set(DayKind) and p.rest_weekdays == {1, 2, 3, 4, 5}
    assert (p.premises_exit_fine_yuan, p.blank_field_fine_yuan) == (200, 10)
    assert (p.sms_within, p.answer_within_rings, p.call_target) == (timedelta(minutes=5), 3, timedelta(minutes=3))
    assert (p.waiver_minimum, p.waiver_reception_weight) == (timedelta(minutes=30), 2)
    assert (p.supervisor_suspension_days, p.manager_suspension_days, p.refusal_suspension_days) == (1, 3, 1)
    assert p.complaint_callback_within == timedelta(days=3)
    assert p.leave_approvers == {Role.SALES_MANAGER} and p.queue_publishers == {Role.SALES_SUPERVISOR}


def test_policies_load_per_office_with_default_section_and_packs() -> None:
    policies = load_staff_policies(
        """
        [default]
        lateness_fine_yuan = 30
        [offices.sh-001]
        packs = ["property"]
        clock_in_by = "09:00"
        day_end_rule = "fixed"
        swap_approvers = ["SALES_MANAGER", "SALES_SUPERVISOR"]
        complaint_callback_hours = 0
        [offices.bj-002]
        clock_in_by = 08:45:00
        """
    )
    sh, bj, other = policies("sh-001"), policies("bj-002"), policies("gz-003")
    assert other.lateness_fine_yuan == 30 and other.clock_in_by == time(8, 30)
    assert sh.lateness_fine_yuan == 30 and sh.clock_in_by == time(9) and sh.day_end_rule is DayEndRule.FIXED
    assert sh.late_answer_fine_yuan == 15 and sh.packs == ("property",)  # from the pack
    assert sh.complaint_callback_within is None  # the office's own key wins over its pack; 0 switches it off
    assert sh.swap_approvers == {Role.SALES_MANAGER, Role.SALES_SUPERVISOR}
    assert bj.clock_in_by == time(8, 45)  # a TOML time literal works too


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[offices.sh-001]\nclock_in_by = "25:00"', "[offices.sh-001]: clock_in_by: expected a time"),
        ("[offices.sh-001]\nlateness_fine_yuan = -5", "[offices.sh-001]: lateness_fine_yuan: must be an integer ≥ 0"),
        ('[offices.sh-001]\nlateness_fine_yuan = "50"', "[offices.sh-001]: lateness_fine_yuan: expected an integer"),
        ('[offices.sh-001]\nleave_approvers = ["BOSS"]', "[offices.sh-001]: leave_approvers: unknown roles ['BOSS']"),
        ('[offices.sh-001]\nleave_approvers = ["SALES_CONSULTANT"]', "leave_approvers: a 置业顾问 may not authorize"),
        ("[offices.sh-001]\nlunch_minutes = 40", "[offices.sh-001]: unknown settings ['lunch_minutes']"),
        ('[offices.sh-001]\npacks = ["spa"]', "[offices.sh-001]: packs: unknown pack 'spa'"),
        ('[default]\nsame_day_leave_cutoff = "09:00"', "[default]: same_day_leave_cutoff: leave and sick-notice"),
        ('[default]\ntimezone = "Mars/Olympus"', "[default]: timezone: unknown timezone"),
        ("[default]\nrest_weekdays = [6, 8]", "[default]: rest_weekdays: must be ISO weekdays"),
        ('[default]\nday_end_rule = "never"', "[default]: day_end_rule: expected one of latest, fixed"),
        ("[default]\nsms_within_seconds = 0", "[default]: sms_within_seconds: must be positive"),
        ("[default]\ncall_log_grace_minutes = -1", "[default]: call_log_grace_minutes: must not be negative"),
        ('[default]\ncall_log_due = "late"', '[default]: call_log_due: expected a time such as "08:30"'),
        ('[default]\nrevoke_leave_on_special_day = "no"', "[default]: revoke_leave_on_special_day: expected true"),
        ("[holidays]\nx = 1", "unknown sections ['holidays']"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_policy_errors_name_the_office_and_the_key(text: str, message: str) -> None:
    with pytest.raises(StaffPolicyError) as error:
        load_staff_policies(text)
    assert message in str(error.value)


def test_customer_service_packs_are_named_presets() -> None:
    assert set(PRESETS) == {"property", "call_centre", "owner_complaints"}
    centre = with_pack(POLICY, "call_centre")
    assert (centre.answer_rate_target, centre.min_agents_peak, centre.min_agents_night) == (0.9, 8, 2)
    assert with_pack(POLICY, "property").repair_dispatch_within == timedelta(minutes=20)
    with pytest.raises(PolicyValueError, match="answer_rate_target"):
        StaffPolicy(answer_rate_target=1.5)


# ---------------------------------------------------------------------------------------------------------------
# ATT: attendance


def clock(hh: int, mm: int = 0, ss: int = 0, ms: int = 0, staff: str = "s1", day: date = MONDAY) -> Clocking:
    return Clocking(eid("clock"), staff, at(hh, mm, ss, ms, day))


def test_ATT_03_clock_in_at_0831_is_fined_50() -> None:
    punch = clock(8, 31)
    [penalty] = attendance.lateness_penalties(punch, POLICY)
    assert (penalty.rule_id, penalty.sanction_id, penalty.kind, penalty.amount_yuan) == ("ATT-03", "PEN-01", "FINE", 50)
    assert penalty.evidence == (punch.event_id,) and penalty.day == MONDAY
    [row] = discipline_ledger([penalty], "2024-05")
    assert (row.staff_id, row.fines_yuan, row.fines_by_rule) == ("s1", 50, {"ATT-03": 50})


def test_ATT_02_clock_in_at_0830_exactly_is_on_time_and_one_millisecond_later_is_late() -> None:
    assert attendance.lateness(clock(8, 30), POLICY) == timedelta(0)
    assert attendance.lateness_penalties(clock(8, 30), POLICY) == []
    assert attendance.lateness(clock(8, 30, 0, 1), POLICY) == timedelta(milliseconds=1)
    assert attendance.lateness_penalties(clock(8, 30, 1), POLICY)[0].amount_yuan == 50
    graced = replace(POLICY, clock_in_grace=timedelta(seconds=59))  # a minute-resolution office
    assert attendance.lateness(clock(8, 30, 59), graced) == timedelta(0)
    assert attendance.lateness(clock(8, 31), graced) == timedelta(seconds=1)


def test_ATT_02_lateness_is_judged_on_the_office_clock_not_utc() -> None:
    utc_punch = Clocking("c", "s1", datetime(2024, 5, 6, 0, 29, tzinfo=UTC))  # 08:29 in Shanghai
    assert attendance.lateness(utc_punch, POLICY) == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Clocking("c", "s1", datetime(2024, 5, 6, 8, 29))


def test_ATT_01_day_ends_at_the_latest_of_1730_last_visitor_and_evening_meeting() -> None:
    assert attendance.day_end(MONDAY, POLICY) == at(17, 30)
    assert attendance.day_end(MONDAY, POLICY, at(18, 10), at(18, 40)) == at(18, 40)
    assert attendance.day_end(MONDAY, POLICY, at(19, 5), at(18, 40)) == at(19, 5)
    assert attendance.day_end(MONDAY, POLICY, at(16, 0), None) == at(17, 30)
    fixed = replace(POLICY, day_end_rule=DayEndRule.FIXED)
    assert attendance.day_end(MONDAY, fixed, at(19, 5), at(18, 40)) == at(17, 30)


def test_ATT_01_clocking_out_before_the_evening_meeting_ends_is_early_leave() -> None:
    end = attendance.day_end(MONDAY, POLICY, at(18, 0), at(18, 30))
    assert attendance.early_leave(clock(18, 0), end) == timedelta(minutes=30)
    assert attendance.early_leave(clock(18, 30), end) == timedelta(0)  # exactly at the end is not early
    result = attendance.attendance_day(
        "s1", MONDAY, POLICY, closed_by="close", closed_at=at(23), clock_in=clock(8, 20), clock_out=clock(18), end=end
    )
    assert result.day.status is DayStatus.PRESENT and result.day.early == timedelta(minutes=30)
    assert result.penalties == ()  # early leave is recorded, but the handbook names no sanction


def test_ATT_10_PEN_02_absent_without_leave_is_kuanggong_and_a_warning() -> None:
    result = attendance.attendance_day("s1", MONDAY, POLICY, closed_by="day-close-1", closed_at=at(23))
    assert result.day.status is DayStatus.ABSENT
    assert [(p.kind, p.rule_id, p.sanction_id) for p in result.penalties] == [
        (PenaltyKind.ABSENCE, "ATT-10", "PEN-02"),
        (PenaltyKind.WARNING, "ATT-10", "PEN-02"),
    ]
    assert all(p.evidence == ("day-close-1",) for p in result.penalties)
    rest = attendance.attendance_day("s1", MONDAY, POLICY, closed_by="c", closed_at=at(23), scheduled=False)
    assert rest.day.status is DayStatus.REST and rest.penalties == ()


def test_ATT_11_PEN_03_a_refused_leave_request_makes_the_day_kuanggong() -> None:
    result = attendance.attendance_day(
        "s1", MONDAY, POLICY, closed_by="close", closed_at=at(23), refused_leave=("leave-9",)
    )
    absence = result.penalties[0]
    assert (absence.kind, absence.rule_id, absence.sanction_id) == (PenaltyKind.ABSENCE, "ATT-11", "PEN-03")
    assert absence.evidence == ("close", "leave-9")


def request(
    days: tuple[date, ...],
    requested_at: datetime,
    leave_type: LeaveType = LeaveType.PERSONAL,
    to: str = Role.SALES_MANAGER,
) -> LeaveRequest:
    return LeaveRequest(eid("leave"), "s1", leave_type, days, requested_at, to)


def test_ATT_05_leave_on_opening_day_is_refused() -> None:
    decision = leave.check_request(request((TUESDAY,), at(10)), {TUESDAY: DayKind.OPENING_DAY}, POLICY)
    assert (decision.status, decision.rule_id) == (LeaveStatus.REFUSED, "ATT-05")
    assert "OPENING_DAY" in decision.reason and decision.evidence == (decision.request_id,)
    for kind in DayKind:  # holidays, 开盘日, 广告日, 集中办理按揭日 alike; a two-day request with one is refused whole
        days = (TUESDAY, TUESDAY + timedelta(days=1))
        assert leave.check_request(request(days, at(10)), {TUESDAY: kind}, POLICY).rule_id == "ATT-05"
    sick = leave.check_request(request((MONDAY,), at(7), LeaveType.SICK), {MONDAY: DayKind.OPENING_DAY}, POLICY)
    assert sick.status is LeaveStatus.GRANTED  # illness is not refused (documented decision)


def test_ATT_07_same_day_leave_is_valid_until_0730_inclusive() -> None:
    assert leave.check_request(request((MONDAY,), at(7, 30)), {}, POLICY).status is LeaveStatus.AWAITING_APPROVAL
    late = leave.check_request(request((MONDAY,), at(7, 30, 0, 1)), {}, POLICY)
    assert (late.status, late.rule_id) == (LeaveStatus.REFUSED, "ATT-07")


def test_ATT_08_personal_leave_one_day_ahead_with_the_sales_managers_approval() -> None:
    req = request((TUESDAY,), at(21))  # the evening before counts as one day ahead
    decision = leave.check_request(req, {}, POLICY)
    assert decision.status is LeaveStatus.AWAITING_APPROVAL
    manager = Approval("ok-1", "m1", Role.SALES_MANAGER, at(22))
    assert leave.check_approval(req, decision, manager, True, POLICY).status is LeaveStatus.GRANTED
    supervisor = Approval("ok-2", "sup", Role.SALES_SUPERVISOR, at(22))
    refused = leave.check_approval(req, decision, supervisor, True, POLICY)
    assert (refused.status, refused.rule_id, refused.evidence) == (
        LeaveStatus.REFUSED,
        "ATT-08",
        (req.event_id, "ok-2"),
    )
    assert leave.check_approval(req, decision, manager, False, POLICY).rule_id == "ATT-08"  # no handover
    after = Approval("ok-3", "m1", Role.SALES_MANAGER, at(0, 0, 0, 1, TUESDAY + timedelta(days=1)))
    assert leave.check_approval(req, decision, after, True, POLICY).rule_id == "ATT-08"  # 事后补假
    retro = leave.check_request(request((MONDAY,), at(9, day=TUESDAY)), {}, POLICY)
    assert (retro.rule_id, "事后补假无效" in retro.reason) == ("ATT-08", True)
    two_ahead = replace(POLICY, leave_notice_days=2)
    assert leave.check_request(request((TUESDAY,), at(10)), {}, two_ahead).rule_id == "ATT-08"
    elsewhere = leave.check_request(request((TUESDAY,), at(10), to=Role.SALES_SUPERVISOR), {}, POLICY)
    assert elsewhere.rule_id == "ATT-08"


def test_ATT_09_sick_notice_by_0730_and_certificate_on_the_first_day_back() -> None:
    req = request((MONDAY,), at(7, 30), LeaveType.SICK)
    assert leave.check_request(req, {}, POLICY).status is LeaveStatus.GRANTED  # no approval needed
    late = leave.check_request(request((MONDAY,), at(7, 31), LeaveType.SICK), {}, POLICY)
    assert (late.status, late.rule_id) == (LeaveStatus.REFUSED, "ATT-09")
    returned = ("clock-back", at(8, 20, day=TUESDAY))
    deadline = leave.certificate_deadline(returned[1], POLICY)
    assert deadline == at(23, 59, 59, 999, TUESDAY)
    certified = leave.sick_leave_outcome(req, returned, ("cert", deadline), deadline + timedelta(days=3), POLICY)
    assert (certified.state, certified.leave_type) == (SickLeaveState.CERTIFIED, LeaveType.SICK)
    pending = leave.sick_leave_outcome(req, returned, None, deadline, POLICY)
    assert pending.state is SickLeaveState.PENDING
    missed = leave.sick_leave_outcome(req, returned, None, deadline + timedelta(milliseconds=1), POLICY)
    assert (missed.state, missed.leave_type, missed.sanction_id) == (SickLeaveState.RECLASSIFIED, "PERSONAL", "PEN-05")
    late_cert = ("cert", deadline + timedelta(hours=1))
    too_late = leave.sick_leave_outcome(req, returned, late_cert, deadline + timedelta(hours=2), POLICY)
    assert (too_late.state, too_late.evidence) == (SickLeaveState.RECLASSIFIED, (req.event_id, "clock-back", "cert"))
    annual = replace(POLICY, sick_reclassified_as=LeaveType.ANNUAL)
    assert leave.sick_leave_outcome(req, returned, None, deadline + timedelta(days=1), annual).leave_type == "ANNUAL"


def test_ATT_04_rest_days_only_on_weekdays_and_one_per_week() -> None:
    saturday = MONDAY + timedelta(days=5)
    assert attendance.check_rest_day(saturday, [], POLICY) == Refusal(
        "ATT-04", "2024-05-11 is a Saturday: no rest on that weekday"
    )
    assert attendance.check_rest_day(TUESDAY, [], POLICY) is None
    refusal = attendance.check_rest_day(TUESDAY, [MONDAY + timedelta(days=3)], POLICY)
    assert refusal is not None and refusal.rule_id == "ATT-04"
    assert attendance.check_rest_day(TUESDAY, [MONDAY - timedelta(days=1)], POLICY) is None  # previous ISO week
    comp = leave.check_request(request((saturday,), at(10), LeaveType.COMP), {}, POLICY)
    assert comp.rule_id == "ATT-04"


def test_ATT_12_PEN_04_an_unapproved_shift_swap_makes_both_kuanggong() -> None:
    swap = ObservedSwap("swap-1", TUESDAY, worked="s2", rostered="s1", at=at(9, day=TUESDAY))
    penalties = attendance.swap_penalties(swap, None, frozenset(), POLICY)
    assert [(p.staff_id, p.kind, p.rule_id, p.sanction_id) for p in penalties] == [
        ("s2", PenaltyKind.ABSENCE, "ATT-12", "PEN-04"),
        ("s1", PenaltyKind.ABSENCE, "ATT-12", "PEN-04"),
    ]
    pair = frozenset({"s1", "s2"})
    ok = Approval("ok", "m1", Role.SALES_MANAGER, at(17))
    assert attendance.swap_penalties(swap, ok, pair, POLICY) == []
    by_supervisor = Approval("ok2", "sup", Role.SALES_SUPERVISOR, at(17))
    assert len(attendance.swap_penalties(swap, by_supervisor, pair, POLICY)) == 2  # §13.3: 部门经理 by default
    with_supervisors = replace(POLICY, swap_approvers=frozenset({Role.SALES_MANAGER, Role.SALES_SUPERVISOR}))
    assert attendance.swap_penalties(swap, by_supervisor, pair, with_supervisors) == []
    too_late = Approval("ok3", "m1", Role.SALES_MANAGER, at(8, 31, day=TUESDAY))
    assert len(attendance.swap_penalties(swap, too_late, pair, POLICY)) == 2


def test_ATT_14_PEN_06_leaving_the_premises_without_approval_costs_kuanggong_200_and_a_warning() -> None:
    exit_ = PremisesExit("exit-1", "s1", at(14))
    penalties = attendance.premises_exit_penalties(exit_, None, POLICY)
    assert [(p.kind, p.amount_yuan) for p in penalties] == [
        (PenaltyKind.ABSENCE, None),
        (PenaltyKind.FINE, 200),
        (PenaltyKind.WARNING, None),
    ]
    assert {(p.rule_id, p.sanction_id, p.evidence) for p in penalties} == {("ATT-14", "PEN-06", ("exit-1",))}
    approved = Approval("ok", "m1", Role.SALES_MANAGER, at(13, 55))
    assert attendance.premises_exit_penalties(exit_, approved, POLICY) == []
    by_colleague = Approval("ok", "s9", Role.SALES_CONSULTANT, at(13, 55))
    assert len(attendance.premises_exit_penalties(exit_, by_colleague, POLICY)) == 3
    after_hours = PremisesExit("exit-2", "s1", at(18, 45))
    assert attendance.premises_exit_penalties(after_hours, None, POLICY, end=at(18, 40)) == []
    [row] = discipline_ledger(penalties)
    assert (row.fines_yuan, row.absence_days, row.warnings) == (200, 1, 1)


def test_ATT_13_attendance_report_is_due_by_the_29th_and_by_february_end() -> None:
    assert attendance.attendance_report_due(2024, 5, POLICY) == date(2024, 5, 29)
    assert attendance.attendance_report_due(2024, 2, POLICY) == date(2024, 2, 29)
    assert attendance.attendance_report_due(2023, 2, POLICY) == date(2023, 2, 28)


def test_monthly_attendance_ledger_rows_and_csv() -> None:
    late = attendance.attendance_day("s1", MONDAY, POLICY, closed_by="c1", closed_at=at(23), clock_in=clock(8, 45))
    absent = attendance.attendance_day("s2", MONDAY, POLICY, closed_by="c1", closed_at=at(23))
    sick = attendance.attendance_day(
        "s1", TUESDAY, POLICY, closed_by="c2", closed_at=at(23, day=TUESDAY), leave_type=LeaveType.SICK
    )
    reclassified = replace(sick.day, leave_type=LeaveType.PERSONAL)  # later outcome for the same day wins
    exit_penalties = attendance.premises_exit_penalties(PremisesExit("x", "s1", at(15, day=TUESDAY)), None, POLICY)
    penalties = [*late.penalties, *absent.penalties, *absent.penalties, *exit_penalties]  # a replayed duplicate
    rows = attendance.attendance_ledger([late.day, absent.day, sick.day, reclassified], penalties, "2024-05")
    s1, s2 = rows
    assert (s1.present_days, s1.late_count, s1.late_minutes, s1.personal_leave_days, s1.sick_leave_days) == (
        1,
        1,
        15,
        1,
        0,
    )
    assert (s1.absence_days, s1.fines_yuan, s1.warnings) == (1, 250, 1)  # ATT-14's 旷工 on a leave day counts too
    assert (s2.absence_days, s2.warnings, s2.fines_yuan) == (1, 1, 0)
    csv = attendance.ledger_csv_rows(rows)
    assert csv[0][:3] == ("staff_id", "month", "scheduled_days") and csv[1][0] == "s1" and len(csv) == 3


# ---------------------------------------------------------------------------------------------------------------
# ROT: the 轮序表

STAFF = ("a", "b", "c", "d")


def cmd(
    cls: type[RotationCommand], when: datetime, role: str = Role.SALES_CONSULTANT, **fields: object
) -> RotationCommand:
    actor = str(fields.get("staff_id", "someone"))
    return cls(command_id=eid("cmd"), at=when, actor_id=actor, actor_role=role, **fields)  # type: ignore[arg-type]


def run(state: RotationState, command: RotationCommand) -> tuple[RotationState, list[RotationFact]]:
    facts = decide(state, command, POLICY)
    return fold(facts, state), facts


def accepted(state: RotationState, *commands: RotationCommand) -> RotationState:
    for command in commands:
        state, facts = run(state, command)
        assert not any(isinstance(f, RotationRejected) for f in facts), facts
    return state


def refused(state: RotationState, command: RotationCommand) -> RotationRejected:
    facts = decide(state, command, POLICY)
    assert len(facts) == 1 and isinstance(facts[0], RotationRejected), facts
    assert fold(facts, state) == state
    return facts[0]


def published(when: datetime | None = None) -> RotationState:
    return accepted(INITIAL, cmd(PublishQueue, when or at(8, 30), Role.SALES_SUPERVISOR, staff=STAFF))


def receive(
    staff: str, when: datetime, visit_type: VisitType = VisitType.NEW, owner: str | None = None
) -> RotationCommand:
    return cmd(StartReception, when, staff_id=staff, visit_id=eid("visit"), visit_type=visit_type, owner_id=owner)


def test_ROT_02_only_the_sales_supervisor_publishes_and_the_order_is_followed() -> None:
    consultant_try = refused(INITIAL, cmd(PublishQueue, at(8, 30), Role.SALES_CONSULTANT, staff=STAFF))
    assert consultant_try.rule_id == ROLE_RULE and "ROT-02" in consultant_try.reason
    state = published()
    assert next_receiver(state, at(9)) == "a" and next_receiver(INITIAL, at(9)) is None
    out_of_turn = refused(state, receive("c", at(9)))
    assert (out_of_turn.rule_id, out_of_turn.expected) == ("ROT-02", "a")
    state = accepted(state, receive("a", at(9)))
    assert state.order == ("b", "c", "d", "a") and next_receiver(state, at(9, 1)) == "b"
    assert next_receiver(state, at(9, day=TUESDAY)) is None  # yesterday's table is not today's
    assert refused(state, receive("b", at(9, day=TUESDAY))).rule_id == "ROT-02"


def test_ROT_03_waiver_moves_down_and_counts_two() -> None:
    state = accepted(published(), cmd(WaiveTurn, at(9), staff_id="a"))
    assert state.order == ("b", "c", "d", "a") and state.receptions["a"] == 2
    assert state.waived_until["a"] == at(9, 30)
    assert refused(state, cmd(StandPost, at(9, 29, 59), staff_id="a")).rule_id == "ROT-03"
    assert state.available("a", at(9, 30))  # exactly 30 minutes later the waiver is over
    assert kpi.reception_count(0, 1, POLICY) == 2


def test_ROT_03_a_waiver_is_at_least_30_minutes_and_only_for_the_one_whose_turn_it_is() -> None:
    state = published()
    assert refused(state, cmd(WaiveTurn, at(9), staff_id="a", until=at(9, 29))).rule_id == "ROT-03"
    assert refused(state, cmd(WaiveTurn, at(9), staff_id="b")).rule_id == "ROT-03"
    longer = accepted(state, cmd(WaiveTurn, at(9), staff_id="a", until=at(10)))
    assert longer.waived_until["a"] == at(10) and not longer.available("a", at(9, 59))


def test_ROT_09_busy_first_lets_the_second_receive_and_keeps_first_place() -> None:
    state = accepted(published(), cmd(LeavePost, at(9), staff_id="a", busy=True))
    assert next_receiver(state, at(9, 5)) == "b"
    state, facts = run(state, receive("b", at(9, 5)))
    started = facts[0]
    assert isinstance(started, ReceptionStarted) and started.skipped == ("a",)
    assert state.order == ("a", "c", "d", "b")  # a keeps first place, the others their places
    state = accepted(state, cmd(StandPost, at(9, 20), staff_id="a"))
    assert next_receiver(state, at(9, 20)) == "a"


def test_ROT_05_PEN_24_supervisor_suspends_one_day_manager_three_and_the_suspended_are_skipped() -> None:
    by_supervisor = rotation.suspension_penalty("a", Role.SALES_SUPERVISOR, at(9), ("seen-1",), POLICY)
    by_manager = rotation.suspension_penalty("a", Role.SALES_MANAGER, at(9), ("seen-2",), POLICY)
    assert isinstance(by_supervisor, Penalty) and isinstance(by_manager, Penalty)
    assert (by_supervisor.rule_id, by_supervisor.sanction_id, by_supervisor.suspension_days) == ("ROT-05", "PEN-24", 1)
    assert by_manager.suspension_days == 3 and by_manager.issued_by_role == Role.SALES_MANAGER
    refusal = rotation.suspension_penalty("a", Role.SALES_CONSULTANT, at(9), ("seen-3",), POLICY)
    assert isinstance(refusal, Refusal) and refusal.rule_id == ROLE_RULE
    state = accepted(published(), cmd(Suspend, at(9), Role.SALES_SUPERVISOR, penalty=by_supervisor))
    assert next_receiver(state, at(9, 1)) == "b"
    assert refused(state, receive("a", at(9, 1), VisitType.RETURN, owner="a")).rule_id == "ROT-05"
    tomorrow = accepted(state, cmd(PublishQueue, at(8, 30, day=TUESDAY), Role.SALES_SUPERVISOR, staff=STAFF))
    assert next_receiver(tomorrow, at(8, 59, day=TUESDAY)) == "b"  # N days = N × 24 h from issue
    assert next_receiver(tomorrow, at(9, day=TUESDAY)) == "a"


def test_ROT_11_PEN_17_refusing_a_customer_suspends_for_one_day() -> None:
    penalty = rotation.suspension_penalty("c", Role.SALES_MANAGER, at(11), ("seen",), POLICY, refused_customer=True)
    assert isinstance(penalty, Penalty)
    assert (penalty.rule_id, penalty.sanction_id, penalty.kind, penalty.suspension_days) == (
        "ROT-11",
        "PEN-17",
        PenaltyKind.SUSPENSION,
        1,
    )
    [row] = discipline_ledger([penalty])
    assert (row.suspensions, row.suspension_days) == (1, 1)


def test_ROT_17_PEN_21_knowledge_suspension_is_lifted_only_by_the_project_lead() -> None:
    case = complaints.file_complaint("f", "cmp-1", at(10), ComplaintCategory.PRODUCT_KNOWLEDGE, "a", POLICY)
    case = complaints.step(
        case, complaints.Classify(event_id="k", at=at(10, 5), actor_role=Role.SALES_MANAGER, valid=True), POLICY
    ).case
    outcome = complaints.step(
        case, complaints.Resolve(event_id="r", at=at(11), actor_role=Role.SALES_MANAGER, substantiated=True), POLICY
    )
    [penalty] = outcome.penalties
    assert (penalty.kind, penalty.rule_id, penalty.sanction_id, penalty.suspension_days) == (
        PenaltyKind.SUSPENSION,
        "ROT-17",
        "PEN-21",
        None,
    )
    state = accepted(published(), cmd(Suspend, at(11), Role.SALES_MANAGER, penalty=penalty))
    assert not state.available("a", at(11) + timedelta(days=30)) and next_receiver(state, at(11, 1)) == "b"
    assert refused(state, cmd(LiftSuspension, at(12), Role.SALES_MANAGER, staff_id="a")).rule_id == ROLE_RULE
    state = accepted(state, cmd(LiftSuspension, at(12), Role.PROJECT_LEAD, staff_id="a"))
    assert state.available("a", at(12))


def test_ROT_12_return_visits_closed_customers_and_top_ups_take_no_turn_and_count_nothing() -> None:
    state = published()
    for kind in (VisitType.RETURN, VisitType.CLOSED_CUSTOMER, VisitType.TOP_UP_DEPOSIT):
        visit = receive("c", at(9), kind, owner="c")
        after = accepted(state, visit)
        assert after.order == STAFF and after.receptions == {} and after.status["c"] is PostStatus.RECEIVING
    owned_new = accepted(state, receive("d", at(9), VisitType.NEW, owner="d"))  # 电转访 to the owner: no turn
    assert owned_new.order == STAFF and owned_new.receptions == {}
    assert refused(state, receive("c", at(9), VisitType.UNKNOWN)).rule_id == "INPUT"


def test_ROT_13_absent_owners_customer_goes_to_the_last_receiver_and_the_owner_is_told() -> None:
    state = accepted(published(), receive("a", at(9)), receive("b", at(9, 10)))
    visit_a, visit_b = state.receiving["a"], state.receiving["b"]
    state = accepted(
        state,
        cmd(EndReception, at(9, 40), staff_id="a", visit_id=visit_a),
        cmd(EndReception, at(9, 50), staff_id="b", visit_id=visit_b),
        cmd(LeavePost, at(9, 55), staff_id="d", busy=False),
    )
    routing = visits.route_visit(visits.DoorAnswers(VisitType.TOP_UP_DEPOSIT), "d", state, at(10))
    assert (routing.receiver, routing.basis, routing.counted, routing.owner_to_notify, routing.rule_id) == (
        "b",
        "DUTY",
        False,
        "d",
        "ROT-13",
    )
    present = visits.route_visit(visits.DoorAnswers(VisitType.RETURN), "c", state, at(10))
    assert (present.receiver, present.basis, present.owner_to_notify) == ("c", "OWNER", None)


def test_ROT_14_peer_research_goes_to_the_last_receiver_uncounted() -> None:
    state = accepted(published(), receive("a", at(9)))
    state = accepted(state, cmd(EndReception, at(9, 30), staff_id="a", visit_id=state.receiving["a"]))
    routing = visits.route_visit(visits.DoorAnswers(VisitType.PEER_RESEARCH), None, state, at(10))
    assert (routing.receiver, routing.counted, routing.rule_id) == ("a", False, "ROT-14")


def test_ROT_15_another_salespersons_customer_means_notifying_the_owner() -> None:
    assert visits.owner_to_notify("b", "a") == "a"
    assert visits.owner_to_notify("a", "a") is None and visits.owner_to_notify("a", None) is None


def test_ROT_06_VIS_01_receptions_missing_from_the_visit_register_are_found() -> None:
    receptions = [("a", "v1"), ("b", "v2"), ("a", "v3")]
    assert visits.unregistered_receptions(receptions, ["v1", "v3"]) == ["v2"]


def test_ROT_07_PEN_25_an_empty_first_post_is_charged_along_the_cascade() -> None:
    state = published()
    assert rotation.first_post_check(state, at(9)) is None
    away = accepted(state, cmd(LeavePost, at(9), staff_id="a", busy=False))
    finding = rotation.first_post_check(away, at(9, 5))
    assert finding is not None and (finding.accountable, finding.chain, finding.since) == ("a", ("a",), at(9))
    assert (finding.rule_id, finding.sanction_id) == ("ROT-07", "PEN-25")
    told = accepted(
        state,
        cmd(LeavePost, at(9), staff_id="b", busy=False),
        cmd(LeavePost, at(9, 1), staff_id="a", busy=False, notified="b"),
    )
    finding = rotation.first_post_check(told, at(9, 5))
    assert finding is not None and (finding.accountable, finding.chain) == ("b", ("a", "b"))
    busy = accepted(state, cmd(LeavePost, at(9), staff_id="a", busy=True))
    assert rotation.first_post_check(busy, at(9, 5)) is None  # busy with work is a reason; b stands first


# ---------------------------------------------------------------------------------------------------------------
# VIS


def test_VIS_02_PEN_26_blank_visit_register_fields_are_fined_per_blank() -> None:
    fines = visits.register_fines("a", ["awareness_channel", "referrer", "product_category"], at(10), ("v1",), POLICY)
    assert [(p.rule_id, p.sanction_id, p.amount_yuan, p.detail) for p in fines] == [
        ("VIS-02", "PEN-26", 10, "awareness_channel"),
        ("VIS-02", "PEN-26", 10, "product_category"),
    ]  # referrer is optional


def test_VIS_03_a_phoned_customer_with_the_sms_goes_to_the_owner_otherwise_to_the_rotation() -> None:
    state = published()
    with_sms = visits.DoorAnswers(VisitType.NEW, sms_evidence_shown=True)
    assert visits.route_visit(with_sms, "c", state, at(9)).receiver == "c"
    named = visits.DoorAnswers(VisitType.NEW, prior_consultant_named="c")
    assert visits.route_visit(named, "c", state, at(9)).basis == "OWNER"
    bare = visits.route_visit(visits.DoorAnswers(VisitType.NEW), "c", state, at(9))  # "I called a minute ago"
    assert (bare.receiver, bare.basis, bare.counted) == ("a", "ROTATION", True)


# ---------------------------------------------------------------------------------------------------------------
# CALL


def call(rings: int | None = None, answer_after: timedelta | None = timedelta(seconds=8), by: str = "a") -> Call:
    start = at(10)
    answered = None if answer_after is None else start + answer_after
    return Call(eid("call"), eid("c"), start, answered, rings, by if answered else None, None)


def test_CALL_01_the_third_ring_is_in_time_the_fourth_is_late() -> None:
    assert calls.check_answer(call(rings=3), POLICY).in_time
    late = calls.check_answer(call(rings=4), POLICY)
    assert (late.in_time, late.rule_id, late.penalties) == (False, "CALL-01", ())  # no fine in the core office
    assert calls.check_answer(call(rings=1), POLICY).in_time  # answering at once is no fault
    missed = calls.check_answer(call(answer_after=None), POLICY)
    assert (missed.answered, missed.in_time) == (False, False)
    [fine] = calls.check_answer(call(rings=4), with_pack(POLICY, "property")).penalties
    assert (fine.amount_yuan, fine.sanction_id) == (15, "PEN-C02")


def test_CALL_01_rings_from_seconds_when_the_exchange_gives_no_count() -> None:
    assert calls.rings_before_answer(call(answer_after=timedelta(seconds=14.999)), POLICY) == 3
    assert calls.rings_before_answer(call(answer_after=timedelta(seconds=15)), POLICY) == 4  # the 4th ring began
    assert calls.rings_before_answer(call(answer_after=timedelta(0)), POLICY) == 1


def log(
    blanks: tuple[str, ...] = (), caller: CallerClass = CallerClass.GENUINE_CUSTOMER, invited: bool = True
) -> CallLog:
    return CallLog(eid("log"), "c-1", "a", at(10, 5), caller, blanks, invited)


def test_PEN_26_two_blank_fields_cost_20() -> None:
    entry = log(("phone", "awareness_channel"))
    fines = calls.call_log_fines(entry, POLICY)
    assert [(p.rule_id, p.sanction_id, p.amount_yuan, p.detail) for p in fines] == [
        ("CALL-03", "PEN-26", 10, "awareness_channel"),
        ("CALL-03", "PEN-26", 10, "phone"),
    ]
    [row] = discipline_ledger(fines)
    assert (row.fines_yuan, row.fine_count) == (20, 2)  # same evidence, two blanks: two lines


def test_CALL_03_blank_optional_fields_cost_nothing_and_an_unlogged_call_costs_every_field() -> None:
    assert calls.call_log_fines(log(("awareness_detail", "phone", "phone")), POLICY)[0].detail == "phone"
    assert len(calls.call_log_fines(log(("awareness_detail", "phone", "phone")), POLICY)) == 1
    unlogged = calls.unlogged_call_fines(call(rings=2), "register-collected", at(21), POLICY)
    assert sum(p.amount_yuan or 0 for p in unlogged) == 40 and all(p.staff_id == "a" for p in unlogged)
    flat = replace(POLICY, missing_log_fine_yuan=10)
    assert [p.amount_yuan for p in calls.unlogged_call_fines(call(rings=2), "rc", at(21), flat)] == [10]
    assert calls.unlogged_call_fines(call(answer_after=None), "rc", at(21), POLICY) == []


def test_CALL_04_sms_at_exactly_five_minutes_is_in_time_and_a_missing_one_becomes_overdue() -> None:
    hung_up = at(10, 3)
    genuine = CallerClass.GENUINE_CUSTOMER
    assert calls.sms_deadline(hung_up, POLICY) == at(10, 8)
    assert calls.sms_state(genuine, hung_up, at(10, 8), at(12), POLICY) is SmsState.IN_TIME
    assert calls.sms_state(genuine, hung_up, at(10, 8, 0, 1), at(12), POLICY) is SmsState.LATE
    assert calls.sms_state(genuine, hung_up, None, at(10, 8), POLICY) is SmsState.PENDING
    assert calls.sms_state(genuine, hung_up, None, at(10, 8, 0, 1), POLICY) is SmsState.OVERDUE
    assert calls.sms_state(genuine, hung_up, at(10, 9), at(10, 8, 30), POLICY) is SmsState.OVERDUE  # not yet sent
    assert calls.sms_state(CallerClass.MARKET_RESEARCH, hung_up, None, at(12), POLICY) is SmsState.NOT_REQUIRED
    assert calls.sms_state(CallerClass.UNKNOWN, hung_up, None, at(12), POLICY) is SmsState.OVERDUE
    assert calls.first_sms(at(10), [at(9), at(10, 6), at(10, 4)]) == at(10, 4)


def test_CALL_05_CMP_05_the_answerer_owns_the_callback() -> None:
    answered = call(rings=2, by="b")
    owner = calls.callback_owner(answered, None)
    assert owner is not None and (owner.staff_id, owner.rule_id, owner.conflict) == ("b", "CALL-05", False)
    disputed = calls.callback_owner(answered, log())  # logged by a, answered by b
    assert disputed is not None and (disputed.staff_id, disputed.conflict) == ("b", True)
    no_exchange = replace(answered, answered_by=None)
    from_log = calls.callback_owner(no_exchange, log())
    assert from_log is not None and from_log.staff_id == "a"


def test_CALL_07_a_genuine_call_must_capture_the_caller_and_book_a_visit() -> None:
    assert calls.capture_gaps(log(), POLICY) == ()
    assert calls.capture_gaps(log(("phone", "wanted_unit_type"), invited=False), POLICY) == (
        "phone",
        "wanted_unit_type",
        "visit_invited",
    )
    assert calls.capture_gaps(log(("phone", "customer_name"), CallerClass.MARKET_RESEARCH), POLICY) == ("phone",)


def test_CALL_08_three_minutes_exactly_is_on_target() -> None:
    assert not calls.over_call_target(timedelta(minutes=3), POLICY)
    assert calls.over_call_target(timedelta(minutes=3, milliseconds=1), POLICY)


# ---------------------------------------------------------------------------------------------------------------
# CMP


def manager_step(case: complaints.ComplaintCase, step: complaints.ComplaintStep) -> complaints.StepOutcome:
    outcome = complaints.step(case, step, POLICY)
    assert outcome.refusal is None, outcome.refusal
    return outcome


def resolved(category: ComplaintCategory, substantiated: bool, staff: str | None = "a") -> complaints.StepOutcome:
    case = complaints.file_complaint("filed-1", "cmp-1", at(10), category, staff, POLICY)
    m = Role.SALES_MANAGER
    case = manager_step(case, complaints.Classify(event_id="cls-1", at=at(11), actor_role=m, valid=True)).case
    return manager_step(
        case, complaints.Resolve(event_id="res-1", at=at(15), actor_role=m, substantiated=substantiated)
    )


def test_CMP_01_PEN_10_a_substantiated_attitude_complaint_gives_the_named_staff_a_disciplinary_slip() -> None:
    [slip] = resolved(ComplaintCategory.ATTITUDE, True).penalties
    assert (slip.staff_id, slip.kind, slip.rule_id, slip.sanction_id, slip.amount_yuan) == (
        "a",
        PenaltyKind.DISCIPLINARY_SLIP,
        "CMP-01",
        "PEN-10",
        None,
    )
    assert slip.evidence == ("filed-1", "res-1") and slip.issued_by_role == Role.SALES_MANAGER
    assert resolved(ComplaintCategory.ATTITUDE, False).penalties == ()
    assert resolved(ComplaintCategory.ATTITUDE, True, staff=None).penalties == ()
    assert resolved(ComplaintCategory.CONTRACT, True).penalties == ()
    [row] = discipline_ledger(resolved(ComplaintCategory.ATTITUDE, True).penalties)
    assert row.disciplinary_slips == 1


def test_CMP_01_PEN_11_a_substantiated_dispute_complaint_gives_a_disciplinary_slip() -> None:
    [slip] = resolved(ComplaintCategory.DISPUTE, True).penalties
    assert (slip.rule_id, slip.sanction_id) == ("CMP-01", "PEN-11")


def test_CMP_02_the_sales_manager_handles_complaints() -> None:
    case = complaints.file_complaint("f", "cmp-2", at(10), ComplaintCategory.ATTITUDE, "a", POLICY)
    assert case.assigned_role == Role.SALES_MANAGER
    outcome = complaints.step(
        case, complaints.Classify(event_id="x", at=at(11), actor_role=Role.SALES_CONSULTANT, valid=True), POLICY
    )
    assert outcome.refusal is not None and outcome.refusal.rule_id == "CMP-02" and outcome.case == case


def test_CMP_08_an_invalid_complaint_is_rejected_and_closed_and_steps_keep_their_order() -> None:
    case = complaints.file_complaint("f", "cmp-3", at(10), ComplaintCategory.OTHER, None, POLICY)
    m = Role.SALES_MANAGER
    early = complaints.step(case, complaints.Resolve(event_id="r", at=at(11), actor_role=m, substantiated=True), POLICY)
    assert early.refusal is not None and early.refusal.rule_id == "CMP-08"
    case = manager_step(case, complaints.Classify(event_id="c", at=at(10, 30), actor_role=m, valid=False)).case
    assert case.stage is Stage.REJECTED and complaints.deadlines(case, POLICY).keys() == {Deadline.CLASSIFY}
    case = manager_step(case, complaints.Close(event_id="z", at=at(10, 40), actor_role=m)).case
    assert case.stage is Stage.CLOSED and case.history == ("f", "c", "z")
    full = complaints.file_complaint("f2", "cmp-4", at(10), ComplaintCategory.PROPERTY_QUALITY, None, POLICY)
    for step in (
        complaints.Classify(event_id="c2", at=at(11), actor_role=m, valid=True),
        complaints.Forward(event_id="fw", at=at(12), actor_role=m, department="工程部"),
        complaints.Resolve(event_id="r2", at=at(16), actor_role=m, substantiated=True),
        complaints.RecordCallback(event_id="cb", at=at(10, day=TUESDAY), actor_role=Role.CUSTOMER_SERVICE),
        complaints.Close(event_id="cl", at=at(11, day=TUESDAY), actor_role=m),
    ):
        full = manager_step(full, step).case
    assert (full.stage, full.forwarded_to) == (Stage.CLOSED, "工程部")
    assert complaints.breaches(full, at(12, day=TUESDAY), POLICY) == []


def test_CMP_09_a_callback_not_made_within_3_days_escalates() -> None:
    case = resolved(ComplaintCategory.ATTITUDE, True).case
    due = at(15) + timedelta(days=3)
    assert complaints.deadlines(case, POLICY)[Deadline.CALLBACK] == due
    assert complaints.next_deadline(case, POLICY) == due
    assert complaints.breaches(case, due, POLICY) == []  # the deadline instant is still in time
    [breach] = complaints.breaches(case, due + timedelta(milliseconds=1), POLICY)
    assert (breach.deadline, breach.open, breach.rule_id, breach.escalate_to) == (
        Deadline.CALLBACK,
        True,
        "CMP-09",
        Role.COMPANY_MANAGEMENT,
    )
    assert breach.evidence == ("filed-1", "cls-1", "res-1")
    late = manager_step(
        case, complaints.RecordCallback(event_id="cb", at=due + timedelta(hours=1), actor_role=Role.SALES_MANAGER)
    ).case
    [done_late] = complaints.breaches(late, due + timedelta(days=1), POLICY)
    assert (done_late.deadline, done_late.open) == (Deadline.CALLBACK, False)


def test_a_complaint_past_its_resolution_sla_escalates() -> None:
    case = complaints.file_complaint("f", "cmp-5", at(10), ComplaintCategory.PAYMENT_REFUND, None, POLICY)
    case = manager_step(
        case, complaints.Classify(event_id="c", at=at(10, 30), actor_role=Role.SALES_MANAGER, valid=True)
    ).case
    assert complaints.next_deadline(case, POLICY) == at(10) + timedelta(days=3)
    [breach] = complaints.breaches(case, at(10, 1, day=MONDAY + timedelta(days=3)), POLICY)
    assert (breach.deadline, breach.open, breach.rule_id) == (Deadline.RESOLVE, True, "CMP-X01")
    unclassified = complaints.file_complaint("f", "cmp-6", at(10), ComplaintCategory.OTHER, None, POLICY)
    assert [b.deadline for b in complaints.breaches(unclassified, at(10, 1, day=TUESDAY), POLICY)] == [
        Deadline.CLASSIFY
    ]
    no_sla = replace(POLICY, complaint_resolve_within=None, complaint_classify_within=None)
    assert complaints.breaches(unclassified, at(10, day=date(2024, 6, 1)), no_sla) == []


def test_complaints_per_staff_per_month() -> None:
    cases = [resolved(ComplaintCategory.ATTITUDE, True).case, resolved(ComplaintCategory.DISPUTE, False).case]
    assert complaints.complaints_per_staff(cases, "2024-05", POLICY) == {"a": (2, 1)}
    assert complaints.complaints_per_staff(cases, "2024-06", POLICY) == {}


def test_CMP_X11_repair_dispatch_only_with_the_property_pack() -> None:
    assert complaints.repair_dispatch_overdue(at(10), None, at(11), POLICY) is None
    prop = with_pack(POLICY, "property")
    assert complaints.repair_dispatch_overdue(at(10), at(10, 20), at(11), prop) is False
    assert complaints.repair_dispatch_overdue(at(10), None, at(10, 20, 0, 1), prop) is True


# ---------------------------------------------------------------------------------------------------------------
# PEN: the penalty value and the discipline ledger


def test_PEN_penalties_need_evidence_and_fines_need_an_amount() -> None:
    common = {"staff_id": "a", "rule_id": "ATT-03", "sanction_id": "PEN-01", "day": MONDAY, "at": at(9)}
    with pytest.raises(ValueError, match="evidence"):
        Penalty(kind=PenaltyKind.WARNING, evidence=(), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amount_yuan"):
        Penalty(kind=PenaltyKind.FINE, evidence=("e",), **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amount_yuan"):
        Penalty(kind=PenaltyKind.WARNING, evidence=("e",), amount_yuan=5, **common)  # type: ignore[arg-type]
    assert PenaltyKind.DISCIPLINARY_SLIP.label == "违纪单" and PenaltyKind.ABSENCE.label == "旷工"


def test_PEN_monthly_discipline_ledger_groups_by_staff_and_month_and_counts_replays_once() -> None:
    may = attendance.lateness_penalties(clock(8, 40), POLICY)
    june = attendance.lateness_penalties(clock(8, 40, day=date(2024, 6, 3)), POLICY)
    exit_ = attendance.premises_exit_penalties(PremisesExit("x", "s1", at(14)), None, POLICY)
    rows = discipline_ledger([*may, *may, *june, *exit_])
    assert rows == [
        DisciplineRow(
            "s1",
            "2024-05",
            fines_yuan=250,
            fine_count=2,
            warnings=1,
            absence_days=1,
            fines_by_rule={"ATT-03": 50, "ATT-14": 200},
        ),
        DisciplineRow("s1", "2024-06", fines_yuan=50, fine_count=1, fines_by_rule={"ATT-03": 50}),
    ]
    assert discipline_ledger([*may, *june], "2024-06") == rows[1:]


# ---------------------------------------------------------------------------------------------------------------
# KPI: hand-calculated examples and edges


def test_KPI_01_call_to_visit_rate() -> None:
    assert kpi.call_to_visit_rate(3, 12) == 0.25
    assert kpi.call_to_visit_rate(0, 0) is None  # no genuine calls: no rate, not 0 %
    with pytest.raises(ValueError):
        kpi.call_to_visit_rate(-1, 3)


def test_KPI_02_visit_to_deal_rate_per_category_against_the_pooled_office_average() -> None:
    rows = kpi.visit_to_deal_rates(
        [
            kpi.VisitOutcome("a", "高层", visits=10, deals=2),
            kpi.VisitOutcome("b", "高层", visits=5, deals=2),
            kpi.VisitOutcome("a", "洋房", visits=4, deals=1),
            kpi.VisitOutcome("b", "洋房", visits=0, deals=0),
        ]
    )
    by_key = {(r.staff_id, r.category): r for r in rows}
    assert by_key[("a", "高层")].rate == 0.2 and by_key[("b", "高层")].rate == 0.4
    assert by_key[("a", "高层")].office_average == pytest.approx(4 / 15)
    assert by_key[("a", "高层")].versus_average == pytest.approx(0.2 - 4 / 15)
    assert (by_key[("b", "洋房")].rate, by_key[("b", "洋房")].versus_average) == (None, None)
    assert by_key[("b", "洋房")].office_average == 0.25


def test_KPI_03_achievement_rate() -> None:
    assert kpi.achievement_rate(6, 5) == 1.2 and kpi.achievement_rate(0, 5) == 0.0
    assert kpi.achievement_rate(3, 0) is None


def test_KPI_07_reception_count_counts_waivers_twice() -> None:
    assert kpi.reception_count(5, 2, POLICY) == 9
    state = accepted(published(), receive("a", at(9)), cmd(WaiveTurn, at(9, 1), staff_id="b"))
    assert dict(state.receptions) == {"a": 1, "b": 2}


def test_KPI_09_sms_compliance_rate() -> None:
    assert kpi.sms_compliance_rate(9, 10) == 0.9 and kpi.sms_compliance_rate(0, 0) is None


def test_KPI_10_payment_deadline_compliance() -> None:
    result = kpi.payment_deadline_compliance(3, 1, [timedelta(minutes=m) for m in (2, 9, 4)])
    assert (result.signed, result.rate, result.median_minutes_to_payment) == (4, 0.75, 4.0)
    empty = kpi.payment_deadline_compliance(0, 0)
    assert (empty.rate, empty.median_minutes_to_payment) == (None, None)


def test_KPI_X01_answer_rate_and_staffing_with_the_call_centre_pack() -> None:
    centre = with_pack(POLICY, "call_centre")
    assert kpi.meets_answer_rate(90, 100, centre) is True and kpi.meets_answer_rate(89, 100, centre) is False
    assert kpi.meets_answer_rate(90, 100, POLICY) is None and kpi.meets_answer_rate(0, 0, centre) is None
    assert kpi.agents_short(6, True, centre) == 2 and kpi.agents_short(3, False, centre) == 0
    assert kpi.agents_short(6, True, POLICY) is None


# ---------------------------------------------------------------------------------------------------------------
# Properties of the 轮序表


# Weighted: receptions and returns to the post are common, suspensions (which last a day) rare.
KINDS = (
    *("stand", "stand", "leave_busy", "leave_away", "receive_new", "receive_new", "receive_new"),
    *("receive_return", "end", "end", "waive", "suspend", "lift"),
)
step_strategy = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, len(STAFF) - 1),
    st.integers(0, 15),  # minutes since the previous command
    st.booleans(),  # follow the rules (the next receiver, the minimum waiver, an allowed role) or not
)


def random_command(state: RotationState, now: datetime, kind: str, i: int, guided: bool) -> RotationCommand:
    staff = (next_receiver(state, now) or STAFF[i]) if guided else STAFF[i]
    match kind:
        case "stand":
            return cmd(StandPost, now, staff_id=staff)
        case "leave_busy" | "leave_away":
            told = STAFF[(i + 1) % len(STAFF)] if guided else None
            return cmd(LeavePost, now, staff_id=staff, busy=kind == "leave_busy", notified=told)
        case "receive_new":
            return receive(staff, now)
        case "receive_return":
            return receive(staff, now, VisitType.RETURN, owner=staff)
        case "end":
            visit = state.receiving.get(staff, "no-visit")
            return cmd(EndReception, now, staff_id=staff, visit_id=visit)
        case "waive":
            return cmd(WaiveTurn, now, staff_id=staff, until=None if guided else now + timedelta(minutes=20))
        case "suspend":
            role = Role.SALES_SUPERVISOR if guided else Role.SALES_MANAGER
            penalty = rotation.suspension_penalty(staff, role, now, (eid("seen"),), POLICY, refused_customer=i == 0)
            assert isinstance(penalty, Penalty)
            if i == len(STAFF) - 1:  # a knowledge complaint: open-ended until re-qualified (ROT-17)
                penalty = replace(penalty, rule_id="ROT-17", sanction_id="PEN-21", suspension_days=None)
            return cmd(Suspend, now, role, penalty=penalty)
        case _:
            return cmd(LiftSuspension, now, Role.PROJECT_LEAD if guided else Role.SALES_MANAGER, staff_id=staff)


@settings(max_examples=250, deadline=None)
@given(steps=st.lists(step_strategy, min_size=1, max_size=40))
def test_properties_of_the_rotation_queue(steps: list[tuple[str, int, int, bool]]) -> None:
    now = at(8, 30)
    state, history = published(now), []
    history_start = state
    for kind, i, minutes, guided in steps:
        now += timedelta(minutes=minutes)
        command = random_command(state, now, kind, i, guided)
        facts = decide(state, command, POLICY)
        assert facts and decide(state, command, POLICY) == facts  # always answered, deterministically
        before = state
        for fact in facts:
            state = evolve(state, fact)
        if any(isinstance(f, RotationRejected) for f in facts):
            assert len(facts) == 1 and state == before  # a refusal changes nothing
        assert sorted(state.order) == sorted(state.published) == sorted(STAFF)  # a permutation of the table
        for staff in STAFF:  # reception counts only grow
            assert state.receptions.get(staff, 0) >= before.receptions.get(staff, 0)
        up = next_receiver(state, now)
        if up is not None:  # nobody suspended, waiving or away is ever next
            assert state.suspension(up, now) is None and not state.waiving(up, now)
            assert state.status[up] is PostStatus.STANDING
            assert all(not state.available(s, now) for s in state.order[: state.order.index(up)])
        for fact in facts:
            if isinstance(fact, ReceptionStarted) and fact.counted:  # only the receiver moves, to the back
                assert state.order[-1] == fact.staff_id
                assert [s for s in state.order if s != fact.staff_id] == [s for s in before.order if s != fact.staff_id]
                assert fact.staff_id == next_receiver(before, now) or next_receiver(before, now) is None
        history.extend(facts)
    assert fold(history, history_start) == state  # replaying the facts gives the live state


def test_random_rotation_runs_reach_every_fact_type_and_refusal() -> None:
    """Guards the generator above: the runs explore the whole state machine, refusals included."""
    facts: set[str] = set()
    refusals: set[tuple[str, str]] = set()
    for seed in range(150):
        choose, now = random.Random(seed), at(8, 30)
        state = published(now)
        for _ in range(40):
            now += timedelta(minutes=choose.randint(0, 15))
            kind, i, guided = choose.choice(KINDS), choose.randrange(len(STAFF)), choose.random() < 0.5
            for fact in decide(state, random_command(state, now, kind, i, guided), POLICY):
                facts.add(type(fact).__name__)
                if isinstance(fact, RotationRejected):
                    refusals.add((fact.command_type, fact.rule_id))
                state = evolve(state, fact)
    assert facts >= {cls.__name__ for cls in get_args(RotationFact)} - {QueuePublished.__name__}
    assert {("StartReception", "ROT-02"), ("StartReception", "ROT-05"), ("WaiveTurn", "ROT-03")} <= refusals
    assert {("StandPost", "ROT-03"), ("LiftSuspension", ROLE_RULE), ("StartReception", "ROT-17")} <= refusals
