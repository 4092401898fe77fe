"""The staff processor's pure step and wire, without a broker: state round-trips through JSON, timers cannot be
fired early by a client, ids are deterministic and office-scoped, and policy files name the file and key."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from services.staff import staff_decide as sd
from services.staff.complaints import ComplaintCategory, Stage
from services.staff.policies import StaffPolicyError, staff_policies_from_dir
from services.staff.policy import DEFAULT_STAFF_POLICY, DayKind, LeaveType, StaffPolicy
from services.staff.staff_state import ComplaintState, OfficeDay, Outcome, StaffState, Timer
from services.staff.staff_wire import fact_event_id, record_to_office_input, timer_event_id

TZ = ZoneInfo("Asia/Shanghai")
D = date(2026, 11, 23)
POLICY = DEFAULT_STAFF_POLICY


def local(day: date, hours: int, minutes: int = 0, ms: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=TZ) + timedelta(milliseconds=ms)


def decide(state: StaffState, command: sd.StaffCommand) -> tuple[StaffState, Outcome]:
    return sd.decide_staff(state, command, POLICY, {})


def test_ATT_09_state_round_trips_through_json_with_leave_and_clock_ins() -> None:
    state, _ = decide(StaffState(staff_id="s-1"), sd.ClockIn(event_id="e1", staff_id="s-1", at=local(D, 8, 31)))
    state, outcome = decide(
        state,
        sd.AskLeave(event_id="e2", staff_id="s-1", at=local(D, 7), request_id="r", leave_type=LeaveType.SICK,
                    days=(D + timedelta(days=1),), addressed_to_role="SALES_MANAGER"),
    )  # fmt: skip
    assert [f.payload["status"] for f in outcome.facts] == ["GRANTED"]
    assert StaffState.model_validate(state.model_dump(mode="json")) == state


def test_CMP_09_complaint_state_round_trips_through_json() -> None:
    filed = sd.FileComplaint(event_id="e1", complaint_id="c", at=datetime(2026, 11, 23, 2, tzinfo=UTC),
                             category=ComplaintCategory.ATTITUDE, subject_staff="s-1")  # fmt: skip
    case, outcome = sd.decide_complaint(None, filed, POLICY)
    assert case is not None and case.case.stage is Stage.FILED
    assert [t.due_at for t in outcome.timers] == [filed.at + timedelta(days=1, milliseconds=1)]
    assert ComplaintState.model_validate(case.model_dump(mode="json")) == case


def test_ATT_10_a_day_end_timer_posted_before_the_day_is_over_closes_nothing() -> None:
    state, _ = decide(StaffState(staff_id="s-1"), sd.ClockOut(event_id="e1", staff_id="s-1", at=local(D, 7)))
    early = sd.DayDue(event_id="t", staff_id="s-1", at=local(D, 10), day=D)
    assert decide(state, early)[1].facts == ()
    on_time = sd.DayDue(event_id="t", staff_id="s-1", at=local(D + timedelta(days=1), 0), day=D)
    closed, outcome = decide(state, on_time)
    assert [f.payload["status"] for f in outcome.facts] == ["ABSENT"]
    assert closed.judged_through == D
    assert decide(closed, on_time)[1].facts == ()  # a copy of the timer: already closed


def test_ids_are_deterministic_and_timer_ids_are_per_office() -> None:
    timer = Timer("day-end/s-1", "s-1", "AttendanceTimerDue", {}, datetime(2026, 11, 23, 16, tzinfo=UTC))
    assert timer_event_id(timer, "a") == timer_event_id(timer, "a") != timer_event_id(timer, "b")
    assert fact_event_id("e", 0) == fact_event_id("e", 0) != fact_event_id("e", 1)


def test_policy_directory_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "sh-001.toml").write_text('[staff]\nclock_in_by = "25:00"\n')
    with pytest.raises(StaffPolicyError, match=r"sh-001\.toml \[staff\]: clock_in_by"):
        staff_policies_from_dir(tmp_path)
    (tmp_path / "sh-001.toml").write_text("[staff]\nlateness_fine_yuan = 80\n")
    policies = staff_policies_from_dir(tmp_path)
    assert (policies("sh-001").lateness_fine_yuan, policies("other").lateness_fine_yuan) == (80, 50)


# ---------------------------------------------------------------------------------------------------------------
# ATT-05 / ATT-01: office-wide inputs that arrive after a leave was granted or a day was closed

TUE, WED = D + timedelta(days=1), D + timedelta(days=2)
NO_DAYS: sd.Calendar = MappingProxyType({})


def granted(staff: str, request: str, leave_type: LeaveType, days: tuple[date, ...]) -> StaffState:
    """A staff member whose leave was asked on Monday 10:00 (the day ahead: ATT-08) and granted at 11:00."""
    state, outcome = decide(
        StaffState(staff_id=staff),
        sd.AskLeave(event_id=f"ask-{request}", staff_id=staff, at=local(D, 10), request_id=request,
                    leave_type=leave_type, days=days, addressed_to_role="SALES_MANAGER"),
    )  # fmt: skip
    if leave_type is not LeaveType.SICK:
        state, outcome = decide(
            state, sd.ApproveLeave(event_id=f"ok-{request}", staff_id=staff, at=local(D, 11), request_id=request,
                                   actor_role="SALES_MANAGER", handover_done=True),
        )  # fmt: skip
    assert [f.payload["status"] for f in outcome.facts] == ["GRANTED"]
    return state


def declare(day: date, when: datetime, kind: DayKind | None = DayKind.OPENING_DAY) -> sd.DeclareSpecialDay:
    return sd.DeclareSpecialDay(event_id="declared", at=when, day=day, kind=kind)


def office(
    states: list[StaffState], command: sd.OfficeCommand, policy: StaffPolicy = POLICY, calendar: sd.Calendar = NO_DAYS
) -> tuple[OfficeDay, dict[str, StaffState], Outcome]:
    return sd.decide_office({s.staff_id: s for s in states}, command, policy, calendar)


def close(state: StaffState, day: date, calendar: sd.Calendar = NO_DAYS) -> tuple[StaffState, Outcome]:
    """Close every day up to ``day`` (the DAY_END timers, in order); the outcome is ``day``'s."""
    outcome = Outcome()
    while state.judged_through is None or state.judged_through < day:
        nxt = state.first_day if state.judged_through is None else state.judged_through + timedelta(days=1)
        assert nxt is not None
        due = sd.DayDue(event_id=f"close-{nxt}", staff_id=state.staff_id, at=local(nxt + timedelta(days=1), 0), day=nxt)
        state, outcome = sd.decide_staff(state, due, POLICY, calendar)
    return state, outcome


def test_ATT_05_a_special_day_declared_after_a_grant_revokes_that_day_and_the_person_is_expected_at_work() -> None:
    state = granted("s-1", "r", LeaveType.PERSONAL, (TUE, WED))
    info, changed, outcome = office([state], declare(TUE, local(D, 19)))
    assert info.kind is DayKind.OPENING_DAY
    (fact,) = outcome.facts
    assert fact.event_type == "LeaveRevoked" and fact.at == local(D, 19)
    assert fact.payload == {
        "staff_id": "s-1", "request_id": "r", "leave_type": "PERSONAL", "day": TUE, "day_kind": "OPENING_DAY",
        "revoked_days": [TUE], "remaining_days": [WED], "rule_id": "ATT-05",
        "reason": "2026-11-24 was declared a OPENING_DAY after the leave was granted: 全体人员上班",
        "evidence_event_ids": ["declared", "ask-r", "ok-r"],
    }  # fmt: skip
    assert outcome.extra == {"leave_revoked": 1}
    revoked = changed["s-1"]
    assert revoked.leaves["r"].revoked_days == (TUE,)
    assert StaffState.model_validate(revoked.model_dump(mode="json")) == revoked
    # Tuesday without a clock-in is 旷工 + 警告单 as usual (ATT-10); Wednesday is still leave.
    calendar = {TUE: info}
    after_tue, tuesday = close(revoked, TUE, calendar)
    assert [f.payload["status"] for f in tuesday.facts] == ["ABSENT"]
    assert sorted((p.rule_id, str(p.kind)) for p in tuesday.penalties) == [("ATT-10", "ABSENCE"), ("ATT-10", "WARNING")]
    _, wednesday = close(after_tue, WED, calendar)
    assert [(f.payload["status"], f.payload["leave_type"]) for f in wednesday.facts] == [("LEAVE", "PERSONAL")]
    # Without the declaration the same person was on leave on Tuesday: the revocation is what changed it.
    assert [f.payload["status"] for f in close(state, TUE)[1].facts] == ["LEAVE"]


def test_ATT_05_a_whole_leave_revoked_leaves_no_day_and_a_second_declaration_changes_nothing() -> None:
    state = granted("s-1", "r", LeaveType.ANNUAL, (TUE,))
    _, changed, outcome = office([state], declare(TUE, local(D, 19)))
    assert [(f.payload["remaining_days"], f.payload["leave_type"]) for f in outcome.facts] == [([], "ANNUAL")]
    assert changed["s-1"].leaves["r"].remaining_days == ()
    again = office(list(changed.values()), declare(TUE, local(D, 20), DayKind.AD_DAY))
    assert again[1:] == ({}, Outcome())  # already revoked: no second fact


def test_ATT_05_a_declaration_before_the_grant_refuses_the_approval_and_revokes_nothing() -> None:
    asked, _ = decide(
        StaffState(staff_id="s-1"),
        sd.AskLeave(event_id="ask", staff_id="s-1", at=local(D, 10), request_id="r", leave_type=LeaveType.PERSONAL,
                    days=(TUE,), addressed_to_role="SALES_MANAGER"),
    )  # fmt: skip
    info, changed, outcome = office([asked], declare(TUE, local(D, 10, 30)))
    assert (changed, outcome.facts) == ({}, ())  # awaiting approval: nothing granted to revoke
    approve = sd.ApproveLeave(event_id="ok", staff_id="s-1", at=local(D, 11), request_id="r",
                              actor_role="SALES_MANAGER", handover_done=True)  # fmt: skip
    _, approval = sd.decide_staff(asked, approve, POLICY, {TUE: info})
    assert [(f.payload["status"], f.payload["rule_id"]) for f in approval.facts] == [("REFUSED", "ATT-05")]


def test_ATT_05_sick_leave_is_not_revoked_unless_the_policy_says_so() -> None:
    sick = granted("s-1", "r", LeaveType.SICK, (TUE,))
    assert office([sick], declare(TUE, local(D, 19)))[1:] == ({}, Outcome())
    strict = replace(POLICY, blackout_applies_to_sick_leave=True)
    _, changed, outcome = office([sick], declare(TUE, local(D, 19)), strict)
    assert [f.payload["leave_type"] for f in outcome.facts] == ["SICK"] and "s-1" in changed


def test_ATT_05_comp_leave_is_revoked_like_personal_leave() -> None:
    comp = granted("s-1", "r", LeaveType.COMP, (TUE,))  # 调休 on a Tuesday (ATT-04: weekdays only)
    assert [f.payload["leave_type"] for f in office([comp], declare(TUE, local(D, 19)))[2].facts] == ["COMP"]


def test_ATT_05_only_the_declared_day_and_only_blackout_kinds_revoke() -> None:
    state = granted("s-1", "r", LeaveType.PERSONAL, (TUE,))
    assert office([state], declare(WED, local(D, 19)))[1:] == ({}, Outcome())  # another day
    assert office([state], declare(TUE, local(D, 19), kind=None))[1:] == ({}, Outcome())  # UNKNOWN: ordinary day
    holidays_only = replace(POLICY, blackout_day_kinds=frozenset({DayKind.HOLIDAY}))
    assert office([state], declare(TUE, local(D, 19)), holidays_only)[1:] == ({}, Outcome())


def test_ATT_05_the_office_policy_can_keep_granted_leave() -> None:
    state = granted("s-1", "r", LeaveType.PERSONAL, (TUE,))
    keep = replace(POLICY, revoke_leave_on_special_day=False)
    info, changed, outcome = office([state], declare(TUE, local(D, 19)), keep)
    assert (info.kind, changed, outcome) == (DayKind.OPENING_DAY, {}, Outcome())  # the calendar still changes


def test_ATT_05_a_declaration_on_the_day_itself_or_for_a_past_day_revokes_nothing() -> None:
    state = granted("s-1", "r", LeaveType.PERSONAL, (TUE,))
    assert office([state], declare(TUE, local(TUE, 0)))[1:] == ({}, Outcome())  # the leave has begun
    assert office([state], declare(TUE, local(WED, 9)))[1:] == ({}, Outcome())  # already past
    # A day already closed is never judged again, whatever instant the declaration carries.
    closed, _ = close(state, TUE)
    assert office([closed], declare(TUE, local(D, 19)))[1:] == ({}, Outcome())


def test_ATT_05_only_the_staff_handed_in_are_touched_and_facts_come_in_staff_order() -> None:
    b = granted("s-b", "rb", LeaveType.PERSONAL, (TUE,))
    a = granted("s-a", "ra", LeaveType.PERSONAL, (TUE,))
    idle = StaffState(staff_id="s-c")
    _, changed, outcome = office([b, idle, a], declare(TUE, local(D, 19)))
    assert [f.payload["staff_id"] for f in outcome.facts] == ["s-a", "s-b"]
    assert sorted(changed) == ["s-a", "s-b"]


def test_ATT_05_a_state_stored_before_revocations_existed_still_loads() -> None:
    stored = granted("s-1", "r", LeaveType.PERSONAL, (TUE,)).model_dump(mode="json")
    del stored["leaves"]["r"]["revoked_days"]
    assert StaffState.model_validate(stored).leaves["r"].covers(TUE)


def test_ATT_01_a_day_ended_after_the_day_was_closed_judges_early_leave_again() -> None:
    state, _ = decide(StaffState(staff_id="s-1"), sd.ClockIn(event_id="in", staff_id="s-1", at=local(D, 8)))
    state, _ = decide(state, sd.ClockOut(event_id="out", staff_id="s-1", at=local(D, 18)))
    closed, first = close(state, D)
    assert first.facts[0].payload["early_ms"] == 0  # judged against 17:30: nobody had said otherwise
    ended = sd.EndDay(event_id="ended", at=local(TUE, 9), day=D, last_visitor_left_at=local(D, 18, 10),
                      evening_meeting_ended_at=local(D, 18, 30))  # fmt: skip
    info, changed, outcome = office([closed], ended)
    assert (info.last_visitor_left_at, info.evening_meeting_ended_at) == (local(D, 18, 10), local(D, 18, 30))
    assert changed == {} and outcome.penalties == ()  # early leave costs nothing (decision 4)
    (fact,) = outcome.facts
    assert fact.event_type == "AttendanceDayJudged"
    assert (fact.payload["status"], fact.payload["early_ms"], fact.payload["day_end_at"]) == (
        "PRESENT", 30 * 60 * 1000, local(D, 18, 30),
    )  # fmt: skip
    assert fact.payload["evidence_event_ids"] == ["in", "out", "ended"]
    # The same end posted again, or a DayEnded before the close, judges nothing.
    assert office([closed], ended, calendar={D: info})[2] == Outcome()
    assert office([state], ended)[2] == Outcome()


def test_ATT_01_a_late_day_ended_does_not_touch_absent_or_leave_days() -> None:
    absent, _ = close(StaffState(staff_id="s-1", first_day=D), D)
    ended = sd.EndDay(event_id="ended", at=local(TUE, 9), day=D, last_visitor_left_at=None,
                      evening_meeting_ended_at=local(D, 19))  # fmt: skip
    assert office([absent], ended)[2] == Outcome()


def test_office_wire_ignores_a_malformed_day_and_reads_unknown_as_no_kind() -> None:
    envelope = {"event_id": uuid.uuid4(), "recorded_at": local(D, 9)}
    bad = record_to_office_input("SpecialDayDeclared", {"envelope": envelope, "day": "24/11", "kind": "HOLIDAY"})
    assert bad is None
    unknown = record_to_office_input("SpecialDayDeclared", {"envelope": envelope, "day": "2026-11-24",
                                                            "kind": "UNKNOWN"})  # fmt: skip
    assert isinstance(unknown, sd.DeclareSpecialDay) and (unknown.day, unknown.kind) == (TUE, None)
    ended = record_to_office_input("DayEnded", {"envelope": envelope, "day": "2026-11-23", "last_visitor_left_at": None,
                                                "evening_meeting_ended_at": local(D, 19)})  # fmt: skip
    assert isinstance(ended, sd.EndDay) and ended.evening_meeting_ended_at == local(D, 19)


def test_ATT_05_the_policy_key_is_read_from_the_staff_table(tmp_path: Path) -> None:
    (tmp_path / "sh-001.toml").write_text("[staff]\nrevoke_leave_on_special_day = false\n")
    policies = staff_policies_from_dir(tmp_path)
    assert (policies("sh-001").revoke_leave_on_special_day, policies("other").revoke_leave_on_special_day) == (
        False, True,
    )  # fmt: skip
