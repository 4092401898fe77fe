"""Leave (rules.md §2 ATT-04/05/07/08/09/12): is a request in time and allowed, is it validly approved, and does a
sick leave keep its type once the certificate deadline has passed. A refused request leaves the day uncovered, so
``attendance.attendance_day`` records 旷工 for it (ATT-11) if the staff member does not come.

Time limits are inclusive: a request at 07:30:00.000 is still "before 07:30"; 07:30:00.001 is not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from services.sales.policy import Role
from services.staff.attendance import Approval
from services.staff.localtime import at_local, day_last_instant, local_day, require_aware
from services.staff.policy import DayKind, LeaveType, StaffPolicy
from services.staff.refusal import INPUT_RULE, Refusal


@dataclass(frozen=True)
class LeaveRequest:
    """LeaveRequested (a sick-leave request is also the morning notice of ATT-09)."""

    event_id: str
    staff_id: str
    leave_type: LeaveType
    days: tuple[date, ...]
    requested_at: datetime
    addressed_to_role: str = Role.SALES_MANAGER

    def __post_init__(self) -> None:
        require_aware(self.requested_at, "LeaveRequest.requested_at")


class LeaveStatus(StrEnum):
    REFUSED = "REFUSED"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # in time and allowed; 事假/年假/调休 still need the approval
    GRANTED = "GRANTED"


@dataclass(frozen=True)
class LeaveDecision:
    request_id: str
    status: LeaveStatus
    rule_id: str | None = None  # the rule that refused it
    reason: str = ""
    evidence: tuple[str, ...] = ()

    @property
    def covers_days(self) -> bool:
        return self.status is LeaveStatus.GRANTED


def _refused(request: LeaveRequest, refusal: Refusal) -> LeaveDecision:
    return LeaveDecision(
        request.event_id, LeaveStatus.REFUSED, refusal.rule_id, refusal.reason, (request.event_id, *refusal.evidence)
    )


def _approvers(leave_type: LeaveType, policy: StaffPolicy) -> tuple[frozenset[str], str]:
    if leave_type is LeaveType.SICK:
        return policy.sick_notice_receivers, "ATT-09"
    if leave_type is LeaveType.COMP:
        return policy.swap_approvers, "ATT-12"
    return policy.leave_approvers, "ATT-08"


def check_request(request: LeaveRequest, special_days: Mapping[date, DayKind], policy: StaffPolicy) -> LeaveDecision:
    """Decide a leave request when it is made. ``special_days`` is the office's SpecialDayDeclared calendar.

    In order: malformed (INPUT); a day already past, 「事后补假无效」 (ATT-08); a blackout day (ATT-05; sick leave is
    exempt unless the policy says otherwise); a day of the request's own date after 07:30 (ATT-07, or ATT-09 for
    sickness); 事假/年假 less than ``leave_notice_days`` ahead other than that same-day emergency (ATT-08); a 调休 on a
    weekday without rest (ATT-04); addressed to a role that cannot grant it (ATT-08/09/12). A request with one bad day
    is refused whole. Sick leave needs no approval: a notice in time is GRANTED (the certificate comes later)."""
    if not request.days or len(set(request.days)) != len(request.days):
        return _refused(request, Refusal(INPUT_RULE, "a leave request names each day once, at least one day"))
    tz = policy.timezone
    asked_on = local_day(request.requested_at, tz)
    sick = request.leave_type is LeaveType.SICK
    for day in sorted(request.days):
        if day < asked_on:
            return _refused(request, Refusal("ATT-08", f"{day} is already past: 事后补假无效, 按旷工处理"))
    for day in sorted(request.days):
        kind = special_days.get(day)
        if kind in policy.blackout_day_kinds and (not sick or policy.blackout_applies_to_sick_leave):
            return _refused(request, Refusal("ATT-05", f"{day} is a {kind}: 全体人员上班,不得请假"))
    if asked_on in request.days:
        cutoff = policy.sick_notice_cutoff if sick else policy.same_day_leave_cutoff
        if request.requested_at > at_local(asked_on, cutoff, tz):
            rule = "ATT-09" if sick else "ATT-07"
            return _refused(request, Refusal(rule, f"same-day leave must be asked by {cutoff:%H:%M}"))
    if request.leave_type in (LeaveType.PERSONAL, LeaveType.ANNUAL):
        for day in sorted(d for d in request.days if d != asked_on):
            if (day - asked_on).days < policy.leave_notice_days:
                reason = f"{day}: 事假/年假 must be asked {policy.leave_notice_days} day(s) ahead"
                return _refused(request, Refusal("ATT-08", reason))
    if request.leave_type is LeaveType.COMP:
        for day in sorted(request.days):
            if day.isoweekday() not in policy.rest_weekdays:
                return _refused(request, Refusal("ATT-04", f"{day}: no rest on that weekday (周一至周五轮休)"))
    roles, rule = _approvers(request.leave_type, policy)
    if request.addressed_to_role not in roles:
        reason = f"{request.leave_type} goes to {', '.join(sorted(roles))}, not {request.addressed_to_role}"
        return _refused(request, Refusal(rule, reason))
    status = LeaveStatus.GRANTED if sick else LeaveStatus.AWAITING_APPROVAL
    return LeaveDecision(request.event_id, status, evidence=(request.event_id,))


def check_approval(
    request: LeaveRequest, decision: LeaveDecision, approval: Approval, handover_done: bool, policy: StaffPolicy
) -> LeaveDecision:
    """ATT-08 「获得批准并交待好工作后,方为有效」 (ATT-12 for 调休): an approval from an allowed role, given no
    later than the first day of leave, with the work handed over, grants a request that was in time. Anything else
    refuses it."""
    if decision.status is not LeaveStatus.AWAITING_APPROVAL:
        return decision
    roles, rule = _approvers(request.leave_type, policy)
    evidence = (request.event_id, approval.event_id)
    if approval.approver_role not in roles:
        reason = f"approved by {approval.approver_role}; only {', '.join(sorted(roles))} may approve"
        return LeaveDecision(request.event_id, LeaveStatus.REFUSED, rule, reason, evidence)
    first = min(request.days)
    if approval.at > day_last_instant(first, policy.timezone):
        reason = f"approved after {first} had passed: 事后补假无效"
        return LeaveDecision(request.event_id, LeaveStatus.REFUSED, rule, reason, evidence)
    if not handover_done:
        return LeaveDecision(request.event_id, LeaveStatus.REFUSED, rule, "work not handed over (交待好工作)", evidence)
    return LeaveDecision(request.event_id, LeaveStatus.GRANTED, evidence=evidence)


# ---------------------------------------------------------------------------------------------------------------
# ATT-09 / PEN-05: the medical certificate


class SickLeaveState(StrEnum):
    CERTIFIED = "CERTIFIED"  # the certificate came in time: the days stay 病假
    PENDING = "PENDING"  # the first day back is not over yet
    RECLASSIFIED = "RECLASSIFIED"  # no certificate in time: the days become 事假 (or 年假, per policy)


@dataclass(frozen=True)
class SickLeaveOutcome:
    state: SickLeaveState
    leave_type: LeaveType  # the type the days count as now
    deadline: datetime  # last instant a certificate is in time
    rule_id: str = "ATT-09"
    sanction_id: str | None = None  # PEN-05 once reclassified
    evidence: tuple[str, ...] = ()


def certificate_deadline(returned_at: datetime, policy: StaffPolicy) -> datetime:
    """「病假后上班第一天内,向公司提供有效医务证明」: by the end of the office-local day of the first clock-in after
    the sick days (23:59:59.999)."""
    return day_last_instant(local_day(returned_at, policy.timezone), policy.timezone)


def sick_leave_outcome(
    request: LeaveRequest,
    returned: tuple[str, datetime],
    certificate: tuple[str, datetime] | None,
    at: datetime,
    policy: StaffPolicy,
) -> SickLeaveOutcome:
    """The type a granted sick leave counts as at ``at``. ``returned`` is the (event id, time) of the first
    clock-in after the sick days; ``certificate`` the MedicalCertificateSubmitted (event id, time), if any."""
    if request.leave_type is not LeaveType.SICK:
        raise ValueError(f"{request.event_id} is not a sick-leave request")
    deadline = certificate_deadline(returned[1], policy)
    if certificate is not None and certificate[1] <= deadline:
        evidence = (request.event_id, returned[0], certificate[0])
        return SickLeaveOutcome(SickLeaveState.CERTIFIED, LeaveType.SICK, deadline, evidence=evidence)
    if require_aware(at) <= deadline:
        return SickLeaveOutcome(SickLeaveState.PENDING, LeaveType.SICK, deadline, evidence=(request.event_id,))
    evidence = (request.event_id, returned[0], *(() if certificate is None else (certificate[0],)))
    return SickLeaveOutcome(
        SickLeaveState.RECLASSIFIED, policy.sick_reclassified_as, deadline, sanction_id="PEN-05", evidence=evidence
    )
