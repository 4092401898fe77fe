"""The staff processor's pure step and wire, without a broker: state round-trips through JSON, timers cannot be
fired early by a client, ids are deterministic and office-scoped, and policy files name the file and key."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.staff import staff_decide as sd
from services.staff.complaints import ComplaintCategory, Stage
from services.staff.policies import StaffPolicyError, staff_policies_from_dir
from services.staff.policy import DEFAULT_STAFF_POLICY, LeaveType
from services.staff.staff_state import ComplaintState, Outcome, StaffState, Timer
from services.staff.staff_wire import fact_event_id, timer_event_id

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
