"""The staff processor's pure step: one input (an event of ``anchang.staff`` or ``anchang.complaints``, already
turned into a value by services/staff/staff_wire.py) and the state it applies to → the new state, the facts, the
penalties and the timers. No I/O, no clock: every instant comes from the input.

The rules themselves are in attendance.py, leave.py and complaints.py; this module only threads state through
them and decides *when* they run (at clock-in, at the day's close, when a deadline passes). Office-wide inputs
(SpecialDayDeclared, DayEnded) go through ``decide_office``, over every staff member of the office at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeAlias

from services.sales.policy import Role
from services.staff import complaints as c
from services.staff.attendance import (
    Approval,
    Clocking,
    DayStatus,
    ObservedSwap,
    PremisesExit,
    attendance_day,
    check_rest_day,
    day_end,
    lateness,
    lateness_penalties,
    premises_exit_penalties,
    swap_penalties,
)
from services.staff.leave import (
    LeaveDecision,
    LeaveRequest,
    LeaveStatus,
    SickLeaveState,
    certificate_deadline,
    check_approval,
    check_request,
    sick_leave_outcome,
)
from services.staff.localtime import RESOLUTION, day_last_instant, local_day
from services.staff.penalties import Penalty, PenaltyKind
from services.staff.policy import DayKind, LeaveType, StaffPolicy
from services.staff.refusal import INPUT_RULE, ROLE_RULE
from services.staff.staff_state import (
    Approved,
    ComplaintState,
    Fact,
    LeaveRecord,
    OfficeDay,
    Outcome,
    StaffState,
    Stamp,
    Timer,
)

KEEP_DAYS = 62  # per-day memory kept behind the last judged day: two ledger months


# ---------------------------------------------------------------------------------------------------------------
# Staff inputs (anchang.staff). ``event_id`` is the input's id; ``at`` when it counts (see staff_wire.py).


@dataclass(frozen=True, kw_only=True)
class StaffInput:
    event_id: str
    staff_id: str
    at: datetime
    actor_role: str = Role.SYSTEM


@dataclass(frozen=True, kw_only=True)
class ClockIn(StaffInput):
    pass


@dataclass(frozen=True, kw_only=True)
class ClockOut(StaffInput):
    pass


@dataclass(frozen=True, kw_only=True)
class AskLeave(StaffInput):
    request_id: str
    leave_type: LeaveType
    days: tuple[date, ...]
    addressed_to_role: str


@dataclass(frozen=True, kw_only=True)
class ApproveLeave(StaffInput):
    request_id: str
    handover_done: bool


@dataclass(frozen=True, kw_only=True)
class SubmitCertificate(StaffInput):
    request_id: str


@dataclass(frozen=True, kw_only=True)
class ApproveExit(StaffInput):
    day: date


@dataclass(frozen=True, kw_only=True)
class LeavePremises(StaffInput):
    pass


@dataclass(frozen=True, kw_only=True)
class ApproveSwap(StaffInput):
    rostered_staff_id: str
    day: date


@dataclass(frozen=True, kw_only=True)
class ObserveSwap(StaffInput):
    rostered_staff_id: str
    day: date


@dataclass(frozen=True, kw_only=True)
class ScheduleRest(StaffInput):
    day: date


@dataclass(frozen=True, kw_only=True)
class RecordSanction(StaffInput):
    rule_id: str
    sanction_id: str | None
    kind: PenaltyKind
    day: date
    amount_yuan: int | None
    suspension_days: int | None
    detail: str


@dataclass(frozen=True, kw_only=True)
class DayDue(StaffInput):
    """The DAY_END timer: close ``day``."""

    day: date


@dataclass(frozen=True, kw_only=True)
class CertificateDue(StaffInput):
    """The CERTIFICATE timer: the first day back after a sick leave is over."""

    request_id: str


@dataclass(frozen=True, kw_only=True)
class Malformed(StaffInput):
    event_type: str
    reason: str


StaffCommand: TypeAlias = (
    ClockIn | ClockOut | AskLeave | ApproveLeave | SubmitCertificate | ApproveExit | LeavePremises | ApproveSwap
    | ObserveSwap | ScheduleRest | RecordSanction | DayDue | CertificateDue | Malformed
)  # fmt: skip

Calendar: TypeAlias = Mapping[date, OfficeDay]


def decide_staff(
    state: StaffState, command: StaffCommand, policy: StaffPolicy, calendar: Calendar
) -> tuple[StaffState, Outcome]:
    """Apply one staff input. Every input makes the person known, which starts the daily DAY_END timer."""
    tz = policy.timezone
    if state.first_day is None and not isinstance(command, Malformed):
        state = state.model_copy(update={"first_day": local_day(command.at, tz)})
    state, outcome = _decide(state, command, policy, calendar)
    return state, replace(outcome, timers=(*outcome.timers, *_day_end_timer(state, policy)))


def _decide(
    state: StaffState, command: StaffCommand, policy: StaffPolicy, calendar: Calendar
) -> tuple[StaffState, Outcome]:
    tz = policy.timezone
    match command:
        case ClockIn():
            return _clock_in(state, command, policy)
        case ClockOut():
            day = local_day(command.at, tz)
            clock_outs = {**state.clock_outs, day: Stamp(event_id=command.event_id, at=command.at)}
            return state.model_copy(update={"clock_outs": clock_outs}), Outcome()
        case AskLeave():
            return _ask_leave(state, command, policy, calendar)
        case ApproveLeave():
            return _approve_leave(state, command, policy, calendar)
        case SubmitCertificate():
            record = state.leaves.get(command.request_id)
            if record is None or record.leave_type is not LeaveType.SICK:
                return state, _refused(command, "SickCertificateSubmitted", INPUT_RULE, "no such sick-leave request")
            if record.certificate is not None:
                return state, Outcome()
            stamp = Stamp(event_id=command.event_id, at=command.at)
            return _with_leave(state, record.model_copy(update={"certificate": stamp})), Outcome()
        case ApproveExit():
            approval = Approved(event_id=command.event_id, role=command.actor_role, at=command.at)
            return state.model_copy(
                update={"exit_approvals": {**state.exit_approvals, command.day: approval}}
            ), Outcome()
        case LeavePremises():
            return state, _left_premises(state, command, policy, calendar)
        case ApproveSwap():
            approval = Approved(event_id=command.event_id, role=command.actor_role, at=command.at)
            key = f"{command.rostered_staff_id}/{command.day.isoformat()}"
            return state.model_copy(update={"swap_approvals": {**state.swap_approvals, key: approval}}), Outcome()
        case ObserveSwap():
            return state, _swapped(state, command, policy)
        case ScheduleRest():
            refusal = check_rest_day(command.day, state.rest_days, policy)
            if refusal is not None:
                return state, _refused(command, "RestDayScheduled", refusal.rule_id, refusal.reason)
            return state.model_copy(update={"rest_days": tuple(sorted({*state.rest_days, command.day}))}), Outcome()
        case RecordSanction():
            return state, _sanction(command, policy)
        case DayDue():
            return _close_day(state, command, policy, calendar)
        case CertificateDue():
            return _certificate_due(state, command, policy)
        case Malformed():
            return state, _refused(command, command.event_type, INPUT_RULE, command.reason)


def _refused(command: StaffInput, event_type: str, rule_id: str, reason: str) -> Outcome:
    payload = {"staff_id": command.staff_id, "refused_event_id": command.event_id,
               "refused_event_type": event_type, "rule_id": rule_id, "reason": reason}  # fmt: skip
    return Outcome(facts=(Fact("StaffInputRefused", command.at, payload),))


def _with_leave(state: StaffState, record: LeaveRecord) -> StaffState:
    return state.model_copy(update={"leaves": {**state.leaves, record.request_id: record}})


# ---------------------------------------------------------------------------------------------------------------
# ATT-02/03: clock-in; ATT-09: the first day back after sick leave starts the certificate window


def _clock_in(state: StaffState, command: ClockIn, policy: StaffPolicy) -> tuple[StaffState, Outcome]:
    tz = policy.timezone
    day = local_day(command.at, tz)
    if day in state.clock_ins or (state.judged_through is not None and day <= state.judged_through):
        return state, Outcome()  # a second clock-in that day, or one for a day already closed: nothing new
    stamp = Stamp(event_id=command.event_id, at=command.at)
    state = state.model_copy(update={"clock_ins": {**state.clock_ins, day: stamp}})
    clocking = Clocking(command.event_id, command.staff_id, command.at)
    penalties = tuple(lateness_penalties(clocking, policy))
    timers: list[Timer] = []
    for record in state.leaves.values():
        if (
            record.leave_type is LeaveType.SICK
            and record.status is LeaveStatus.GRANTED
            and record.returned is None
            and max(record.days) < day
        ):
            state = _with_leave(state, record.model_copy(update={"returned": stamp}))
            due = certificate_deadline(command.at, policy) + RESOLUTION
            payload = {"staff_id": state.staff_id, "timer": "CERTIFICATE", "day": day.isoformat(),
                       "request_id": record.request_id}  # fmt: skip
            slot = f"certificate/{state.staff_id}/{record.request_id}"
            timers.append(Timer(slot, state.staff_id, "AttendanceTimerDue", payload, due))
    extra = {"late": True} if lateness(clocking, policy) else {}
    return state, Outcome(penalties=penalties, timers=tuple(timers), extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# ATT-05/07/08/09/12: leave


def _special_days(calendar: Calendar) -> dict[date, DayKind]:
    return {day: info.kind for day, info in calendar.items() if info.kind is not None}


def _leave_fact(staff_id: str, record: LeaveRecord, at: datetime, reason: str) -> Fact:
    payload = {"staff_id": staff_id, "request_id": record.request_id, "leave_type": str(record.leave_type),
               "days": list(record.days), "status": str(record.status), "rule_id": record.rule_id,
               "reason": reason, "evidence_event_ids": list(record.evidence)}  # fmt: skip
    return Fact("LeaveDecided", at, payload)


def _decided(state: StaffState, record: LeaveRecord, at: datetime, reason: str) -> tuple[StaffState, Outcome]:
    fact = _leave_fact(state.staff_id, record, at, reason)
    extra = {"leave_refused": record.rule_id} if record.status is LeaveStatus.REFUSED else {}
    return _with_leave(state, record), Outcome(facts=(fact,), extra=extra)


def _request_of(record: LeaveRecord, staff_id: str) -> LeaveRequest:
    return LeaveRequest(record.event_id, staff_id, record.leave_type, record.days, record.requested_at,
                        record.addressed_to_role)  # fmt: skip


def _ask_leave(
    state: StaffState, command: AskLeave, policy: StaffPolicy, calendar: Calendar
) -> tuple[StaffState, Outcome]:
    if command.request_id in state.leaves:
        return state, _refused(command, "LeaveRequested", INPUT_RULE, f"request {command.request_id} already exists")
    request = LeaveRequest(command.event_id, command.staff_id, command.leave_type, command.days, command.at,
                           command.addressed_to_role)  # fmt: skip
    decision = check_request(request, _special_days(calendar), policy)
    record = LeaveRecord(
        request_id=command.request_id, event_id=command.event_id, leave_type=command.leave_type,
        days=tuple(sorted(set(command.days))) or command.days, requested_at=command.at,
        addressed_to_role=command.addressed_to_role, status=decision.status, rule_id=decision.rule_id,
        evidence=decision.evidence,
    )  # fmt: skip
    return _decided(state, record, command.at, decision.reason)


def _approve_leave(
    state: StaffState, command: ApproveLeave, policy: StaffPolicy, calendar: Calendar
) -> tuple[StaffState, Outcome]:
    record = state.leaves.get(command.request_id)
    if record is None:
        return state, _refused(command, "LeaveApproved", INPUT_RULE, f"no leave request {command.request_id}")
    if record.status is not LeaveStatus.AWAITING_APPROVAL:
        return state, _refused(command, "LeaveApproved", INPUT_RULE, f"request {record.request_id} is {record.status}")
    request = _request_of(record, state.staff_id)
    # A blackout day declared after the request but before its approval still refuses it (ATT-05).
    again = check_request(request, _special_days(calendar), policy)
    if again.status is LeaveStatus.REFUSED:
        refused = record.model_copy(update={"status": LeaveStatus.REFUSED, "rule_id": again.rule_id,
                                            "evidence": (*again.evidence, command.event_id)})  # fmt: skip
        return _decided(state, refused, command.at, again.reason)
    approval = Approval(command.event_id, command.staff_id, command.actor_role, command.at)
    current = LeaveDecision(record.request_id, record.status, record.rule_id, evidence=record.evidence)
    decision = check_approval(request, current, approval, command.handover_done, policy)
    updated = record.model_copy(
        update={"status": decision.status, "rule_id": decision.rule_id, "evidence": decision.evidence}
    )
    return _decided(state, updated, command.at, decision.reason)


def _certificate_due(state: StaffState, command: CertificateDue, policy: StaffPolicy) -> tuple[StaffState, Outcome]:
    record = state.leaves.get(command.request_id)
    cleared = (f"certificate/{state.staff_id}/{command.request_id}",)
    if record is None or record.returned is None or record.reclassified:
        return state, Outcome(cleared=cleared)
    certificate = None if record.certificate is None else (record.certificate.event_id, record.certificate.at)
    returned = (record.returned.event_id, record.returned.at)
    result = sick_leave_outcome(_request_of(record, state.staff_id), returned, certificate, command.at, policy)
    if result.state is SickLeaveState.PENDING:
        return state, Outcome()  # too early (not the tick's): the timer stays
    if result.state is SickLeaveState.CERTIFIED:
        return state, Outcome(cleared=cleared)
    state = _with_leave(state, record.model_copy(update={"reclassified": True}))
    payload = {"staff_id": state.staff_id, "request_id": record.request_id, "days": list(record.days),
               "reclassified_as": str(result.leave_type), "deadline_at": result.deadline,
               "evidence_event_ids": list(result.evidence)}  # fmt: skip
    facts = [Fact("SickLeaveReclassified", command.at, payload)]
    # Days already judged as 病假 are judged again with the type they count as now (the ledger keeps the last).
    for day in record.remaining_days:
        if state.judged_through is not None and day <= state.judged_through:
            judged = _judged_payload(state.staff_id, day, DayStatus.LEAVE, result.leave_type, result.evidence)
            facts.append(Fact("AttendanceDayJudged", command.at, judged))
    return state, Outcome(facts=tuple(facts), cleared=cleared)


# ---------------------------------------------------------------------------------------------------------------
# ATT-12/14 and recorded sanctions


def _left_premises(state: StaffState, command: LeavePremises, policy: StaffPolicy, calendar: Calendar) -> Outcome:
    day = local_day(command.at, policy.timezone)
    approved = state.exit_approvals.get(day)
    approval = None if approved is None else Approval(approved.event_id, "", approved.role, approved.at)
    info = calendar.get(day, OfficeDay())
    # The day's end as known when they leave (ATT-01): 17:30, or later if the office already said so.
    end = day_end(day, policy, info.last_visitor_left_at, info.evening_meeting_ended_at)
    exit_ = PremisesExit(command.event_id, command.staff_id, command.at)
    return Outcome(penalties=tuple(premises_exit_penalties(exit_, approval, policy, end)))


def _swapped(state: StaffState, command: ObserveSwap, policy: StaffPolicy) -> Outcome:
    approved = state.swap_approvals.get(f"{command.rostered_staff_id}/{command.day.isoformat()}")
    approval = None if approved is None else Approval(approved.event_id, "", approved.role, approved.at)
    pair = frozenset({command.staff_id, command.rostered_staff_id}) if approved is not None else frozenset[str]()
    swap = ObservedSwap(command.event_id, command.day, command.staff_id, command.rostered_staff_id, command.at)
    return Outcome(penalties=tuple(swap_penalties(swap, approval, pair, policy)))


def _sanction(command: RecordSanction, policy: StaffPolicy) -> Outcome:
    """A violation a 主管 or 经理 observed (§9.1 rows the system cannot detect, e.g. PEN-07 dozing)."""
    if command.actor_role not in policy.violation_observers:
        allowed = ", ".join(sorted(policy.violation_observers))
        return _refused(
            command, "StaffSanctionRecorded", ROLE_RULE, f"{command.actor_role} may not; allowed: {allowed}"
        )
    try:
        penalty = Penalty(
            staff_id=command.staff_id, rule_id=command.rule_id, sanction_id=command.sanction_id, kind=command.kind,
            day=command.day, at=command.at, evidence=(command.event_id,), amount_yuan=command.amount_yuan,
            suspension_days=command.suspension_days, issued_by_role=command.actor_role, detail=command.detail,
        )  # fmt: skip
    except ValueError as problem:
        return _refused(command, "StaffSanctionRecorded", INPUT_RULE, str(problem))
    return Outcome(penalties=(penalty,))


# ---------------------------------------------------------------------------------------------------------------
# ATT-01/02/10/11: closing a day


def _day_end_timer(state: StaffState, policy: StaffPolicy) -> tuple[Timer, ...]:
    """The DAY_END timer of the next day to close: it fires at the first instant of the day after it."""
    if state.first_day is None:
        return ()
    day = state.first_day if state.judged_through is None else state.judged_through + timedelta(days=1)
    payload = {"staff_id": state.staff_id, "timer": "DAY_END", "day": day.isoformat(), "request_id": None}
    due = day_last_instant(day, policy.timezone) + RESOLUTION
    return (Timer(f"day-end/{state.staff_id}", state.staff_id, "AttendanceTimerDue", payload, due),)


def _judged_payload(
    staff_id: str,
    day: date,
    status: DayStatus,
    leave_type: LeaveType | None,
    evidence: tuple[str, ...],
    late: timedelta = timedelta(0),
    early: timedelta = timedelta(0),
    missing_clock_out: bool = False,
    end: datetime | None = None,
) -> dict[str, Any]:
    return {"staff_id": staff_id, "day": day, "status": str(status),
            "leave_type": None if leave_type is None else str(leave_type),
            "late_ms": int(late / timedelta(milliseconds=1)), "early_ms": int(early / timedelta(milliseconds=1)),
            "missing_clock_out": missing_clock_out, "day_end_at": end,
            "evidence_event_ids": list(evidence)}  # fmt: skip


def _close_day(
    state: StaffState, command: DayDue, policy: StaffPolicy, calendar: Calendar
) -> tuple[StaffState, Outcome]:
    day = command.day
    expected = state.first_day if state.judged_through is None else state.judged_through + timedelta(days=1)
    if expected is None or day != expected:
        return state, Outcome()  # a copy of a timer already handled
    if command.at <= day_last_instant(day, policy.timezone):
        return state, Outcome()  # not over yet: anybody can post this event type, only the tick posts it in time
    info = calendar.get(day, OfficeDay())
    end = day_end(day, policy, info.last_visitor_left_at, info.evening_meeting_ended_at)
    clock_in = state.clock_ins.get(day)
    clock_out = state.clock_outs.get(day)
    covering = [r for r in state.leaves.values() if r.covers(day)]  # a day revoked by ATT-05 is a working day
    refused = tuple(r.event_id for r in state.leaves.values() if day in r.days and r.status is LeaveStatus.REFUSED)
    leave = covering[0] if covering else None
    result = attendance_day(
        state.staff_id, day, policy, closed_by=command.event_id, closed_at=command.at,
        scheduled=day not in state.rest_days,
        clock_in=None if clock_in is None else Clocking(clock_in.event_id, state.staff_id, clock_in.at),
        clock_out=None if clock_out is None else Clocking(clock_out.event_id, state.staff_id, clock_out.at),
        end=end, leave_type=None if leave is None else leave.counts_as(policy.sick_reclassified_as),
        leave_evidence=() if leave is None else leave.evidence, refused_leave=refused,
    )  # fmt: skip
    record = result.day
    payload = _judged_payload(
        state.staff_id, day, record.status, record.leave_type, record.evidence, record.late, record.early,
        record.missing_clock_out, end if record.status is DayStatus.PRESENT else None,
    )  # fmt: skip
    # The lateness fine went out at clock-in (same penalty id): only the day's other sanctions are new here.
    penalties = tuple(p for p in result.penalties if p.rule_id != "ATT-03")
    keep_from = day - timedelta(days=KEEP_DAYS)
    state = state.model_copy(
        update={
            "judged_through": day,
            "clock_ins": {d: s for d, s in state.clock_ins.items() if d >= keep_from},
            "clock_outs": {d: s for d, s in state.clock_outs.items() if d >= keep_from},
            "exit_approvals": {d: a for d, a in state.exit_approvals.items() if d >= keep_from},
            "rest_days": tuple(d for d in state.rest_days if d >= keep_from),
            "leaves": {k: r for k, r in state.leaves.items() if r.days and max(r.days) >= keep_from},
        }
    )
    return state, Outcome(facts=(Fact("AttendanceDayJudged", command.at, payload),), penalties=penalties)


# ---------------------------------------------------------------------------------------------------------------
# Office-wide inputs (ATT-01/05): SpecialDayDeclared and DayEnded reach every staff member of the office


@dataclass(frozen=True, kw_only=True)
class DeclareSpecialDay:
    """SpecialDayDeclared: ``kind`` None is the reader's UNKNOWN (the day is an ordinary one again)."""

    event_id: str
    at: datetime  # recorded_at: a declaration cannot be backdated
    day: date
    kind: DayKind | None


@dataclass(frozen=True, kw_only=True)
class EndDay:
    """DayEnded: the last visitor group left / the 晚会 ended (either may be missing)."""

    event_id: str
    at: datetime
    day: date
    last_visitor_left_at: datetime | None
    evening_meeting_ended_at: datetime | None


OfficeCommand: TypeAlias = DeclareSpecialDay | EndDay


def office_day_after(info: OfficeDay, command: OfficeCommand) -> OfficeDay:
    """The office calendar's entry for ``command.day`` once the command is applied: a declaration sets the kind
    (the last one wins), a DayEnded fills in the instants it carries and keeps those it does not."""
    if isinstance(command, DeclareSpecialDay):
        return replace(info, kind=command.kind)
    return OfficeDay(
        info.kind,
        command.last_visitor_left_at or info.last_visitor_left_at,
        command.evening_meeting_ended_at or info.evening_meeting_ended_at,
    )


def decide_office(
    states: Mapping[str, StaffState], command: OfficeCommand, policy: StaffPolicy, calendar: Calendar
) -> tuple[OfficeDay, dict[str, StaffState], Outcome]:
    """Apply one office-wide input to the office's calendar (``calendar`` as it was before it) and to every staff
    member of the office (``states``, by staff id). Returns the day's new calendar entry, the states that changed
    and the facts, in staff-id order so that a replay gives the same fact ids.

    - SpecialDayDeclared (ATT-05): leave already granted for that day is revoked (``LeaveRevoked``), see
      ``_revoke_for_special_day``.
    - DayEnded (ATT-01): a day already judged PRESENT whose end moved is judged again (early leave measured
      against the new end); a DayEnded that arrives before the day's close changes nothing but the calendar."""
    before = calendar.get(command.day, OfficeDay())
    after = office_day_after(before, command)
    changed: dict[str, StaffState] = {}
    facts: list[Fact] = []
    for staff_id in sorted(states):
        state = states[staff_id]
        if isinstance(command, DeclareSpecialDay):
            new, more = _revoke_for_special_day(state, command, policy)
        else:
            new, more = state, _rejudge_day_end(state, command, policy, before, after)
        if new is not state:
            changed[staff_id] = new
        facts.extend(more)
    revoked = sum(1 for fact in facts if fact.event_type == "LeaveRevoked")
    extra = {"leave_revoked": revoked} if revoked else {}
    return after, changed, Outcome(facts=tuple(facts), extra=extra)


def _revoke_for_special_day(
    state: StaffState, command: DeclareSpecialDay, policy: StaffPolicy
) -> tuple[StaffState, list[Fact]]:
    """ATT-05 「节假日、开盘日、广告日、集中办理按揭日,全体人员上班」 also binds leave granted before the day was
    declared: each granted 事假/年假/调休 covering the day loses that day (病假 only if
    ``blackout_applies_to_sick_leave``); its other days stay granted. The person is then expected at work, and a
    day without clock-in is judged as usual (旷工, ATT-10). Not revoked: with ``revoke_leave_on_special_day``
    off; a kind outside ``blackout_day_kinds``; a declaration recorded on the day itself or later (the person may
    already be away, and a day already closed is never judged again)."""
    day = command.day
    if not policy.revoke_leave_on_special_day or command.kind is None or command.kind not in policy.blackout_day_kinds:
        return state, []
    if local_day(command.at, policy.timezone) >= day:
        return state, []
    if state.judged_through is not None and day <= state.judged_through:
        return state, []
    facts: list[Fact] = []
    for request_id in sorted(state.leaves):
        record = state.leaves[request_id]
        if not record.covers(day):
            continue
        if record.leave_type is LeaveType.SICK and not policy.blackout_applies_to_sick_leave:
            continue  # illness cannot be forbidden (docs/staff-policy.md, decision 5)
        record = record.model_copy(update={"revoked_days": tuple(sorted({*record.revoked_days, day}))})
        state = _with_leave(state, record)
        reason = f"{day} was declared a {command.kind} after the leave was granted: 全体人员上班"
        payload = {"staff_id": state.staff_id, "request_id": record.request_id, "leave_type": str(record.leave_type),
                   "day": day, "day_kind": str(command.kind), "revoked_days": list(record.revoked_days),
                   "remaining_days": list(record.remaining_days), "rule_id": "ATT-05", "reason": reason,
                   "evidence_event_ids": [command.event_id, *record.evidence]}  # fmt: skip
        facts.append(Fact("LeaveRevoked", command.at, payload))
    return state, facts


def _rejudge_day_end(
    state: StaffState, command: EndDay, policy: StaffPolicy, before: OfficeDay, after: OfficeDay
) -> list[Fact]:
    """ATT-01: a DayEnded recorded after the person's day was closed. The day was judged against the end known
    then; if the end moved, a PRESENT day is judged again (the ledger keeps the last judgement). Early leave costs
    nothing (decision 4), so no sanction changes; other statuses do not depend on the day's end."""
    day = command.day
    if state.judged_through is None or day > state.judged_through or day in state.rest_days:
        return []
    clock_in = state.clock_ins.get(day)
    if clock_in is None:
        return []
    old_end = day_end(day, policy, before.last_visitor_left_at, before.evening_meeting_ended_at)
    end = day_end(day, policy, after.last_visitor_left_at, after.evening_meeting_ended_at)
    if end == old_end:
        return []
    clock_out = state.clock_outs.get(day)
    result = attendance_day(
        state.staff_id, day, policy, closed_by=command.event_id, closed_at=command.at,
        clock_in=Clocking(clock_in.event_id, state.staff_id, clock_in.at),
        clock_out=None if clock_out is None else Clocking(clock_out.event_id, state.staff_id, clock_out.at), end=end,
    )  # fmt: skip
    record = result.day
    payload = _judged_payload(
        state.staff_id, day, record.status, record.leave_type, (*record.evidence, command.event_id), record.late,
        record.early, record.missing_clock_out, end,
    )  # fmt: skip
    return [Fact("AttendanceDayJudged", command.at, payload)]


# ---------------------------------------------------------------------------------------------------------------
# Complaints (CMP-01/02/08/09): the case, its steps, its SLA timer


@dataclass(frozen=True, kw_only=True)
class FileComplaint:
    event_id: str
    complaint_id: str
    at: datetime
    category: c.ComplaintCategory
    subject_staff: str | None


@dataclass(frozen=True, kw_only=True)
class ComplaintStepIn:
    complaint_id: str
    step: c.ComplaintStep


@dataclass(frozen=True, kw_only=True)
class ComplaintDue:
    event_id: str
    complaint_id: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ComplaintMalformed:
    event_id: str
    complaint_id: str
    at: datetime
    reason: str


ComplaintCommand: TypeAlias = FileComplaint | ComplaintStepIn | ComplaintDue | ComplaintMalformed


def decide_complaint(
    state: ComplaintState | None, command: ComplaintCommand, policy: StaffPolicy
) -> tuple[ComplaintState | None, Outcome]:
    match command:
        case FileComplaint():
            if state is not None:
                return state, _step_refused(command.complaint_id, command.event_id, command.at, INPUT_RULE,
                                            "complaint already filed")  # fmt: skip
            case = c.file_complaint(command.event_id, command.complaint_id, command.at, command.category,
                                    command.subject_staff, policy)  # fmt: skip
            new = ComplaintState(case=case)
            return new, _moved(new, command.event_id, command.at, policy, ())
        case ComplaintStepIn():
            step = command.step
            if state is None:
                return None, _step_refused(command.complaint_id, step.event_id, step.at, INPUT_RULE,
                                           "no such complaint")  # fmt: skip
            result = c.step(state.case, step, policy)
            if result.refusal is not None:
                refusal = result.refusal
                return state, _step_refused(command.complaint_id, step.event_id, step.at, refusal.rule_id,
                                            refusal.reason)  # fmt: skip
            new = state.model_copy(update={"case": result.case})
            return new, _moved(new, step.event_id, step.at, policy, result.penalties)
        case ComplaintDue():
            if state is None:
                return None, Outcome()
            return _escalate(state, command, policy)
        case ComplaintMalformed():
            return state, _step_refused(command.complaint_id, command.event_id, command.at, INPUT_RULE,
                                        command.reason)  # fmt: skip


def _step_refused(complaint_id: str, event_id: str, at: datetime, rule_id: str, reason: str) -> Outcome:
    payload = {"complaint_id": complaint_id, "refused_event_id": event_id, "rule_id": rule_id, "reason": reason}
    return Outcome(facts=(Fact("ComplaintStepRefused", at, payload),))


def _moved(
    state: ComplaintState, event_id: str, at: datetime, policy: StaffPolicy, penalties: tuple[Penalty, ...]
) -> Outcome:
    case = state.case
    due = c.deadlines(case, policy)
    payload = {"complaint_id": case.complaint_id, "stage": str(case.stage), "category": str(case.category),
               "subject_staff": case.subject_staff, "assigned_role": case.assigned_role, "step_event_id": event_id,
               "substantiated": case.substantiated, "classify_due_at": due.get(c.Deadline.CLASSIFY),
               "resolve_due_at": due.get(c.Deadline.RESOLVE),
               "callback_due_at": due.get(c.Deadline.CALLBACK)}  # fmt: skip
    timers, cleared = _complaint_timer(state, policy)
    return Outcome(facts=(Fact("ComplaintStageChanged", at, payload),), penalties=penalties, timers=timers,
                   cleared=cleared)  # fmt: skip


def _done(case: c.ComplaintCase, name: c.Deadline) -> bool:
    done = {c.Deadline.CLASSIFY: case.classified_at, c.Deadline.RESOLVE: case.resolved_at,
            c.Deadline.CALLBACK: case.called_back_at}[name]  # fmt: skip
    return done is not None


def _complaint_timer(state: ComplaintState, policy: StaffPolicy) -> tuple[tuple[Timer, ...], tuple[str, ...]]:
    """One SLA timer per case: the earliest deadline not met and not escalated yet, 1 ms after it (limits are
    inclusive). None once closed."""
    case = state.case
    slot = f"complaint/{case.complaint_id}"
    pending = [
        due for name, due in c.deadlines(case, policy).items() if not _done(case, name) and name not in state.escalated
    ]
    if case.stage in (c.Stage.CLOSED,) or not pending:
        return (), (slot,)
    due_at = min(pending)
    payload = {"complaint_id": case.complaint_id, "due_at": due_at}
    return (Timer(slot, case.complaint_id, "ComplaintTimerDue", payload, due_at + RESOLUTION),), ()


def _escalate(state: ComplaintState, command: ComplaintDue, policy: StaffPolicy) -> tuple[ComplaintState, Outcome]:
    facts = []
    escalated = list(state.escalated)
    for breach in c.breaches(state.case, command.at, policy):
        if not breach.open or breach.deadline in escalated:
            continue
        escalated.append(breach.deadline)
        payload = {"complaint_id": breach.complaint_id, "deadline": str(breach.deadline), "due_at": breach.due_at,
                   "rule_id": breach.rule_id, "escalate_to": breach.escalate_to,
                   "subject_staff": state.case.subject_staff,
                   "evidence_event_ids": [*breach.evidence, command.event_id]}  # fmt: skip
        facts.append(Fact("ComplaintEscalated", command.at, payload))
    new = state.model_copy(update={"escalated": tuple(escalated)})
    timers, cleared = _complaint_timer(new, policy)
    return new, Outcome(facts=tuple(facts), timers=timers, cleared=cleared)
