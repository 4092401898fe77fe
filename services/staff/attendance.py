"""Attendance (rules.md §2): lateness and its fine, early leave against the day's computed end, the day's outcome
(present, on leave, 旷工), leaving the premises without approval, private shift swaps, the weekday-rest rule and the
monthly attendance ledger that 内业 exports. Leave requests are in services/staff/leave.py.

Every limit here is inclusive: the instant named by the handbook is still on time, the next millisecond is not."""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from enum import StrEnum

from services.staff.localtime import at_local, local_day, month_of, require_aware
from services.staff.penalties import Penalty, PenaltyKind, fine
from services.staff.policy import DayEndRule, LeaveType, StaffPolicy
from services.staff.refusal import INPUT_RULE, Refusal


@dataclass(frozen=True)
class Clocking:
    """ClockedIn or ClockedOut."""

    event_id: str
    staff_id: str
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at, "Clocking.at")


# ---------------------------------------------------------------------------------------------------------------
# ATT-01/02/03: the working window


def clock_in_deadline(day: date, policy: StaffPolicy) -> datetime:
    """The last instant of ``day`` that is still on time (ATT-02: 08:30:00.000 plus any configured grace)."""
    return at_local(day, policy.clock_in_by, policy.timezone) + policy.clock_in_grace


def lateness(clock_in: Clocking, policy: StaffPolicy) -> timedelta:
    """How late the clock-in was on its own office-local day; zero when on time (ATT-02)."""
    deadline = clock_in_deadline(local_day(clock_in.at, policy.timezone), policy)
    return max(clock_in.at - deadline, timedelta(0))


def lateness_penalties(clock_in: Clocking, policy: StaffPolicy) -> list[Penalty]:
    """ATT-03 / PEN-01: 50 元 for each late clock-in (the company's own lateness rule is not machine-known)."""
    late = lateness(clock_in, policy)
    if not late:
        return []
    return fine(
        policy.lateness_fine_yuan,
        staff_id=clock_in.staff_id,
        rule_id="ATT-03",
        sanction_id="PEN-01",
        day=local_day(clock_in.at, policy.timezone),
        at=clock_in.at,
        evidence=(clock_in.event_id,),
        detail=f"late by {_minutes(late)} min",
    )


def day_end(
    day: date,
    policy: StaffPolicy,
    last_visit_ended_at: datetime | None = None,
    evening_meeting_ended_at: datetime | None = None,
) -> datetime:
    """ATT-01 / §13.1: the later of 17:30, the last visitor group leaving and the end of the 晚会 (rule LATEST), or
    17:30 (rule FIXED). Pass the office's last VisitEnded and the 晚会's end of that day, when known."""
    end = at_local(day, policy.day_end, policy.timezone)
    if policy.day_end_rule is DayEndRule.FIXED:
        return end
    return max([end, *(require_aware(t) for t in (last_visit_ended_at, evening_meeting_ended_at) if t is not None)])


def early_leave(clock_out: Clocking, end: datetime) -> timedelta:
    """How much before ``end`` (see ``day_end``) the clock-out was; zero at or after it (ATT-01/02)."""
    return max(require_aware(end) - clock_out.at, timedelta(0))


# ---------------------------------------------------------------------------------------------------------------
# The day's outcome (ATT-02/03/10/11)


class DayStatus(StrEnum):
    PRESENT = "PRESENT"
    LEAVE = "LEAVE"  # a granted leave covers the day
    ABSENT = "ABSENT"  # 旷工
    REST = "REST"  # not scheduled (rest day)


@dataclass(frozen=True)
class AttendanceDay:
    staff_id: str
    day: date
    status: DayStatus
    leave_type: LeaveType | None = None
    late: timedelta = timedelta(0)
    early: timedelta = timedelta(0)
    missing_clock_out: bool = False
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class DayResult:
    day: AttendanceDay
    penalties: tuple[Penalty, ...] = ()


def attendance_day(
    staff_id: str,
    day: date,
    policy: StaffPolicy,
    *,
    closed_by: str,
    closed_at: datetime,
    scheduled: bool = True,
    clock_in: Clocking | None = None,
    clock_out: Clocking | None = None,
    end: datetime | None = None,
    leave_type: LeaveType | None = None,
    leave_evidence: tuple[str, ...] = (),
    refused_leave: tuple[str, ...] = (),
) -> DayResult:
    """The outcome of one staff member's day, decided when the day is closed (``closed_by`` is the id of the event
    that closed it, e.g. the shell's day-end timer, recorded at ``closed_at``).

    - not scheduled: REST.
    - clocked in: PRESENT, with lateness (ATT-03 fine) and early leave against ``end`` (no fine: ATT-02 forbids it
      but names no sanction); a day without clock-out is flagged, not punished.
    - not clocked in, a granted leave (``leave_type``): LEAVE.
    - otherwise 旷工 plus a 警告单 (ATT-10 / PEN-02). When a leave request for the day was refused
      (``refused_leave`` names it), the 旷工 is ATT-11 / PEN-03 「凡是未按时请假的,记作旷工一天」.
    """
    if clock_in is not None and local_day(clock_in.at, policy.timezone) != day:
        raise ValueError(f"clock-in {clock_in.event_id} is not on {day}")
    if not scheduled:
        return DayResult(AttendanceDay(staff_id, day, DayStatus.REST))
    if clock_in is not None:
        late = lateness(clock_in, policy)
        early = early_leave(clock_out, end) if clock_out is not None and end is not None else timedelta(0)
        evidence = tuple(c.event_id for c in (clock_in, clock_out) if c is not None)
        record = AttendanceDay(
            staff_id,
            day,
            DayStatus.PRESENT,
            late=late,
            early=early,
            missing_clock_out=clock_out is None,
            evidence=evidence,
        )
        return DayResult(record, tuple(lateness_penalties(clock_in, policy)))
    if leave_type is not None:
        return DayResult(AttendanceDay(staff_id, day, DayStatus.LEAVE, leave_type=leave_type, evidence=leave_evidence))
    evidence = (closed_by, *refused_leave)
    rule, sanction = ("ATT-11", "PEN-03") if refused_leave else ("ATT-10", "PEN-02")
    penalties = (
        Penalty(
            staff_id=staff_id,
            rule_id=rule,
            sanction_id=sanction,
            kind=PenaltyKind.ABSENCE,
            day=day,
            at=closed_at,
            evidence=evidence,
        ),
        Penalty(
            staff_id=staff_id,
            rule_id="ATT-10",
            sanction_id="PEN-02",
            kind=PenaltyKind.WARNING,
            day=day,
            at=closed_at,
            evidence=evidence,
        ),
    )
    return DayResult(AttendanceDay(staff_id, day, DayStatus.ABSENT, evidence=evidence), penalties)


# ---------------------------------------------------------------------------------------------------------------
# ATT-14: leaving the premises


@dataclass(frozen=True)
class PremisesExit:
    event_id: str  # PremisesExited
    staff_id: str
    at: datetime


@dataclass(frozen=True)
class Approval:
    """PremisesExitApproved / ShiftSwapApproved / LeaveApproved: who approved, in which role, when."""

    event_id: str
    approver_id: str
    approver_role: str
    at: datetime


def premises_exit_penalties(
    exit_: PremisesExit, approval: Approval | None, policy: StaffPolicy, end: datetime | None = None
) -> list[Penalty]:
    """ATT-14 / PEN-06 「工作时间不得中途擅自离开(除经案场销售经理同意)——违反者论旷工处理,罚款200元,并开具警告单」.

    An exit is approved when ``approval`` comes from an allowed role (the 销售经理) no later than the exit. Exits
    before clock-in time or at/after the day's ``end`` are outside working hours and cost nothing."""
    day = local_day(exit_.at, policy.timezone)
    if exit_.at < at_local(day, policy.clock_in_by, policy.timezone) or (end is not None and exit_.at >= end):
        return []
    if approval is not None and approval.approver_role in policy.premises_exit_approvers and approval.at <= exit_.at:
        return []
    evidence = (exit_.event_id,) if approval is None else (exit_.event_id, approval.event_id)

    def sanction(kind: PenaltyKind) -> Penalty:
        return Penalty(
            staff_id=exit_.staff_id,
            rule_id="ATT-14",
            sanction_id="PEN-06",
            kind=kind,
            day=day,
            at=exit_.at,
            evidence=evidence,
        )

    money = fine(
        policy.premises_exit_fine_yuan,
        staff_id=exit_.staff_id,
        rule_id="ATT-14",
        sanction_id="PEN-06",
        day=day,
        at=exit_.at,
        evidence=evidence,
    )
    return [sanction(PenaltyKind.ABSENCE), *money, sanction(PenaltyKind.WARNING)]


# ---------------------------------------------------------------------------------------------------------------
# ATT-12: shift swaps


@dataclass(frozen=True)
class ObservedSwap:
    """Staff ``worked`` worked on ``day`` instead of the rostered ``rostered`` (detected from the roster and the
    clock-ins, or reported); ``event_id`` is the evidence."""

    event_id: str
    day: date
    worked: str
    rostered: str
    at: datetime


def swap_penalties(
    swap: ObservedSwap, approval: Approval | None, approved_pair: frozenset[str], policy: StaffPolicy
) -> list[Penalty]:
    """ATT-12 / PEN-04 「私自换班者二人均论旷工处理」: both are 旷工 unless an allowed role (the 部门经理, i.e.
    销售经理; §13.3 lets an office add the 主管) approved this pair's swap before the day's clock-in time."""
    starts = at_local(swap.day, policy.clock_in_by, policy.timezone)
    if (
        approval is not None
        and approval.approver_role in policy.swap_approvers
        and approval.at <= starts
        and approved_pair == frozenset({swap.worked, swap.rostered})
    ):
        return []
    evidence = (swap.event_id,) if approval is None else (swap.event_id, approval.event_id)
    return [
        Penalty(
            staff_id=staff,
            rule_id="ATT-12",
            sanction_id="PEN-04",
            kind=PenaltyKind.ABSENCE,
            day=swap.day,
            at=swap.at,
            evidence=evidence,
        )
        for staff in (swap.worked, swap.rostered)
    ]


# ---------------------------------------------------------------------------------------------------------------
# ATT-04: six-day week, rest on a weekday


def check_rest_day(day: date, rest_days_that_week: Iterable[date], policy: StaffPolicy) -> Refusal | None:
    """ATT-04 「每周六天工作制,周一至周五轮休,星期六、星期日不安排休息」: a rest day must fall on an allowed weekday,
    and a staff member rests at most ``rest_days_per_week`` days per ISO week (``rest_days_that_week`` are the
    others already scheduled)."""
    if day.isoweekday() not in policy.rest_weekdays:
        return Refusal("ATT-04", f"{day} is a {calendar.day_name[day.weekday()]}: no rest on that weekday")
    week = day.isocalendar()[:2]
    others = {d for d in rest_days_that_week if d.isocalendar()[:2] == week and d != day}
    if len(others) >= policy.rest_days_per_week:
        return Refusal("ATT-04", f"already {len(others)} rest day(s) in ISO week {week[0]}-W{week[1]:02d}")
    return None


# ---------------------------------------------------------------------------------------------------------------
# ATT-13: the monthly ledger that 内业 exports


@dataclass(frozen=True)
class AttendanceRow:
    staff_id: str
    month: str  # YYYY-MM
    scheduled_days: int = 0
    present_days: int = 0
    late_count: int = 0
    late_minutes: int = 0  # each lateness rounded up to whole minutes
    early_leave_count: int = 0
    early_leave_minutes: int = 0
    missing_clock_outs: int = 0
    absence_days: int = 0  # 旷工: days ABSENT, plus days sanctioned 旷工 although present (ATT-12/14)
    personal_leave_days: int = 0  # 事假
    annual_leave_days: int = 0  # 年假
    sick_leave_days: int = 0  # 病假
    comp_days: int = 0  # 调休
    rest_days: int = 0
    fines_yuan: int = 0  # attendance fines (rule ids ATT-*)
    warnings: int = 0  # attendance 警告单


LEDGER_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AttendanceRow))

_LEAVE_COLUMN = {
    LeaveType.PERSONAL: "personal_leave_days",
    LeaveType.ANNUAL: "annual_leave_days",
    LeaveType.SICK: "sick_leave_days",
    LeaveType.COMP: "comp_days",
}


def attendance_ledger(days: Iterable[AttendanceDay], penalties: Iterable[Penalty], month: str) -> list[AttendanceRow]:
    """Rows per staff for ``month`` (``YYYY-MM``), sorted by staff id. When one (staff, day) appears more than once
    the last record wins (a sick day reclassified later replaces the first outcome); penalties are counted once per
    ``Penalty.key``."""
    latest: dict[tuple[str, date], AttendanceDay] = {}
    for record in days:
        if month_of(record.day) == month:
            latest[(record.staff_id, record.day)] = record
    counts: dict[str, dict[str, int]] = {}
    absent: dict[str, set[date]] = {}

    def row(staff: str) -> dict[str, int]:
        absent.setdefault(staff, set())
        return counts.setdefault(staff, dict.fromkeys(LEDGER_COLUMNS[2:], 0))

    for (staff, day), record in latest.items():
        r = row(staff)
        if record.status is DayStatus.REST:
            r["rest_days"] += 1
            continue
        r["scheduled_days"] += 1
        if record.status is DayStatus.PRESENT:
            r["present_days"] += 1
            if record.late:
                r["late_count"] += 1
                r["late_minutes"] += _minutes(record.late)
            if record.early:
                r["early_leave_count"] += 1
                r["early_leave_minutes"] += _minutes(record.early)
            r["missing_clock_outs"] += record.missing_clock_out
        elif record.status is DayStatus.LEAVE and record.leave_type is not None:
            r[_LEAVE_COLUMN[record.leave_type]] += 1
        elif record.status is DayStatus.ABSENT:
            absent[staff].add(day)
    seen: set[tuple[object, ...]] = set()
    for p in penalties:
        if p.key in seen or month_of(p.day) != month or not p.rule_id.startswith("ATT-"):
            continue
        seen.add(p.key)
        r = row(p.staff_id)
        if p.kind is PenaltyKind.FINE:
            r["fines_yuan"] += p.amount_yuan or 0
        elif p.kind is PenaltyKind.WARNING:
            r["warnings"] += 1
        elif p.kind is PenaltyKind.ABSENCE:
            absent[p.staff_id].add(p.day)
    for staff, days_absent in absent.items():
        counts[staff]["absence_days"] = len(days_absent)
    return [AttendanceRow(staff, month, **counts[staff]) for staff in sorted(counts)]


def ledger_csv_rows(rows: Iterable[AttendanceRow]) -> list[tuple[str, ...]]:
    """The header and one line of strings per row, in LEDGER_COLUMNS order (the shell writes the CSV)."""
    return [LEDGER_COLUMNS, *(tuple(str(getattr(r, c)) for c in LEDGER_COLUMNS) for r in rows)]


def attendance_report_due(year: int, month: int, policy: StaffPolicy) -> date:
    """ATT-13 「在每月30号前上报公司行政部」: due by the end of the 29th; in a month without that day (February in a
    common year), by its last day (§13.5)."""
    if not 1 <= month <= 12:
        raise ValueError(f"{INPUT_RULE}: month {month} out of range")
    return date(year, month, min(policy.attendance_report_day, calendar.monthrange(year, month)[1]))


def _minutes(delta: timedelta) -> int:
    return math.ceil(delta.total_seconds() / 60)
