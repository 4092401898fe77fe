"""The nightly 来电登记 reconciliation as pure functions (services/staff/frontdesk_call_log.py): the deadline arithmetic
in the office's timezone, the timer's guard and the 漏登 fine (CALL-03 / PEN-26). No broker, no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest

from services.staff import frontdesk_call_log as cl
from services.staff.calls import Call
from services.staff.penalty_wire import penalty_id
from services.staff.policies import load_staff_policies
from services.staff.policy import DEFAULT_STAFF_POLICY as POLICY

DAY = date(2026, 11, 23)
MIDNIGHT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 2026-11-24 00:00 in Asia/Shanghai
DEFAULT = cl.CallLogDeadline()


def local(hour: int, minute: int = 0, day: int = 23) -> datetime:
    """An instant given on the office's wall clock (UTC+8)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def answered(at: datetime, by: str | None = "s1") -> Call:
    return Call("rx-1", "c1", at - timedelta(seconds=6), at, 2, by)


def test_PEN_26_the_default_deadline_is_the_end_of_the_calls_local_day() -> None:
    assert cl.CallLogDeadline.of(POLICY) == DEFAULT  # StaffPolicy has no call-log keys yet: the defaults
    deadline = cl.call_log_deadline(DAY, local(9), local(9, 4), DEFAULT, POLICY.timezone)
    assert deadline == MIDNIGHT
    # A call at 23:50 still gets 30 minutes after its hang-up, on the next calendar day.
    late_call = cl.call_log_deadline(DAY, local(23, 50), local(23, 55), DEFAULT, POLICY.timezone)
    assert late_call == local(0, 25, day=24)
    # Without a hang-up, the grace runs from the pickup.
    assert cl.call_log_deadline(DAY, local(23, 50), None, DEFAULT, POLICY.timezone) == local(0, 20, day=24)


def test_PEN_26_an_office_cut_off_is_a_wall_clock_time_of_the_calls_day() -> None:
    nine_pm = cl.CallLogDeadline(due=time(21, 0), grace=timedelta(minutes=10))
    assert cl.call_log_deadline(DAY, local(9), local(9, 3), nine_pm, POLICY.timezone) == local(21)
    assert cl.call_log_deadline(DAY, local(20, 55), local(20, 58), nine_pm, POLICY.timezone) == local(21, 8)
    with pytest.raises(ValueError, match="call_log_grace"):
        cl.CallLogDeadline(grace=timedelta(minutes=-1))


def test_PEN_26_the_deadline_is_inclusive_and_the_timer_guard_needs_the_same_passed_deadline() -> None:
    assert not cl.log_is_late(MIDNIGHT, MIDNIGHT)  # logged at exactly the deadline: in time
    assert cl.log_is_late(MIDNIGHT, MIDNIGHT + timedelta(milliseconds=1))
    assert cl.timer_holds(MIDNIGHT, MIDNIGHT, MIDNIGHT + timedelta(seconds=1))
    assert not cl.timer_holds(MIDNIGHT, MIDNIGHT, MIDNIGHT)  # accepted at the deadline: not yet passed
    assert not cl.timer_holds(MIDNIGHT + timedelta(minutes=5), MIDNIGHT, MIDNIGHT + timedelta(hours=1))  # moved
    assert not cl.timer_holds(None, MIDNIGHT, MIDNIGHT + timedelta(hours=1))


def test_PEN_26_a_call_never_logged_costs_every_required_field_on_the_calls_day() -> None:
    decided_at = MIDNIGHT + timedelta(hours=3)  # the next day, after downtime
    decision = cl.missing_log(answered(local(9)), MIDNIGHT, "timer-1", decided_at, POLICY)
    assert (decision.rule_id, decision.sanction_id, decision.staff_id) == ("CALL-03", "PEN-26", "s1")
    assert decision.fine_yuan == 40 and decision.evidence == ("rx-1", "timer-1")
    assert sorted(p.detail for p in decision.penalties) == sorted(POLICY.call_log_required_fields)
    assert {(p.day, p.at, p.sanction_id, p.amount_yuan) for p in decision.penalties} == {
        (DAY, decided_at, "PEN-26", 10)
    }  # the ledger month is the call's, even when decided after midnight
    again = cl.missing_log(answered(local(9)), MIDNIGHT, "timer-1", decided_at, POLICY)
    assert [penalty_id(p) for p in again.penalties] == [penalty_id(p) for p in decision.penalties]


def test_PEN_26_the_flat_amount_a_late_log_and_no_answerer() -> None:
    flat = cl.missing_log(answered(local(9)), MIDNIGHT, "timer-1", MIDNIGHT, replace(POLICY, missing_log_fine_yuan=10))
    assert [(p.amount_yuan, p.detail) for p in flat.penalties] == [(10, "call not logged")]
    late = cl.missing_log(answered(local(9)), MIDNIGHT, "log-9", MIDNIGHT, POLICY, late_log=True)
    assert (late.late_log_event_id, late.evidence) == ("log-9", ("rx-1", "log-9"))
    nobody = cl.missing_log(answered(local(9), by=None), MIDNIGHT, "timer-1", MIDNIGHT, POLICY)
    assert (nobody.penalties, nobody.fine_yuan, nobody.staff_id) == ((), 0, None)
    with pytest.raises(ValueError, match="unanswered"):
        cl.missing_log(Call("rx-2", "c2", local(9)), MIDNIGHT, "timer-1", MIDNIGHT, POLICY)


def test_PEN_26_an_office_sets_its_cut_off_and_grace_in_its_policy_file() -> None:
    policies = load_staff_policies('[offices.sh-001]\ncall_log_due = "21:00"\ncall_log_grace_minutes = 15\n')
    assert cl.CallLogDeadline.of(policies("sh-001")) == cl.CallLogDeadline(time(21), timedelta(minutes=15))
    assert cl.CallLogDeadline.of(policies("bj-002")) == cl.CallLogDeadline(None, timedelta(minutes=30))
