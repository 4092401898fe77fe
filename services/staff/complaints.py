"""Complaints and callbacks (rules.md §8): the case lifecycle filed → classified → (forwarded) → resolved → called
back → closed, or filed → rejected (invalid, CMP-08) → closed; SLA deadlines and escalations; the 违纪单 (or 停接)
that a substantiated complaint about a named staff member brings (CMP-01, PEN-10/11, ROT-17).

The core handbook gives no complaint SLA (§13.20). The defaults borrow CMP-09 (accept at once, call back within
3 days) and CMP-X01 (reply within 3 days); an office can change or switch off each one. Deadlines are inclusive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeAlias

from services.sales.policy import Role
from services.staff.localtime import local_day, month_of, require_aware
from services.staff.penalties import Penalty, PenaltyKind
from services.staff.policy import StaffPolicy
from services.staff.refusal import INPUT_RULE, Refusal


class ComplaintCategory(StrEnum):
    """Symbols of ComplaintCategory in schemas/events/ComplaintFiled.avsc."""

    UNKNOWN = "UNKNOWN"
    ATTITUDE = "ATTITUDE"
    DISPUTE = "DISPUTE"
    PRODUCT_KNOWLEDGE = "PRODUCT_KNOWLEDGE"
    SALES_PROMISE = "SALES_PROMISE"
    CONTRACT = "CONTRACT"
    PAYMENT_REFUND = "PAYMENT_REFUND"
    PROPERTY_QUALITY = "PROPERTY_QUALITY"
    PROPERTY_SERVICE = "PROPERTY_SERVICE"
    WORK_ARRANGEMENT = "WORK_ARRANGEMENT"
    OTHER = "OTHER"


class Stage(StrEnum):
    FILED = "FILED"
    CLASSIFIED = "CLASSIFIED"
    FORWARDED = "FORWARDED"
    RESOLVED = "RESOLVED"
    CALLED_BACK = "CALLED_BACK"
    CLOSED = "CLOSED"
    REJECTED = "REJECTED"  # not a valid complaint; answered quickly with the reasons (CMP-08)


@dataclass(frozen=True)
class ComplaintCase:
    complaint_id: str
    filed_event: str
    filed_at: datetime
    category: ComplaintCategory
    subject_staff: str | None
    assigned_role: str  # CMP-02: the 销售经理
    stage: Stage = Stage.FILED
    classified_at: datetime | None = None
    forwarded_to: str | None = None
    resolved_at: datetime | None = None
    resolved_event: str | None = None
    substantiated: bool | None = None
    called_back_at: datetime | None = None
    closed_at: datetime | None = None
    history: tuple[str, ...] = ()  # event ids of every step, filing first


def file_complaint(
    event_id: str,
    complaint_id: str,
    filed_at: datetime,
    category: ComplaintCategory,
    subject_staff: str | None,
    policy: StaffPolicy,
) -> ComplaintCase:
    """ComplaintFiled: the case starts, assigned to the 销售经理 (CMP-02) when that role handles complaints here."""
    require_aware(filed_at, "filed_at")
    handlers = policy.complaint_handlers
    assigned = Role.SALES_MANAGER if Role.SALES_MANAGER in handlers else sorted(handlers)[0]
    return ComplaintCase(complaint_id, event_id, filed_at, category, subject_staff, assigned, history=(event_id,))


@dataclass(frozen=True, kw_only=True)
class _Step:
    event_id: str
    at: datetime
    actor_role: str


@dataclass(frozen=True, kw_only=True)
class Classify(_Step):
    valid: bool  # False: the complaint does not stand (投诉不成立, CMP-08)
    category: ComplaintCategory | None = None  # re-classification, if any


@dataclass(frozen=True, kw_only=True)
class Forward(_Step):
    department: str  # CMP-08 「转交相关责任部门」


@dataclass(frozen=True, kw_only=True)
class Resolve(_Step):
    substantiated: bool


@dataclass(frozen=True, kw_only=True)
class RecordCallback(_Step):
    pass


@dataclass(frozen=True, kw_only=True)
class Close(_Step):
    pass


ComplaintStep: TypeAlias = Classify | Forward | Resolve | RecordCallback | Close

# Which stage each step may follow.
_FROM: dict[type[_Step], tuple[Stage, ...]] = {
    Classify: (Stage.FILED,),
    Forward: (Stage.CLASSIFIED,),
    Resolve: (Stage.CLASSIFIED, Stage.FORWARDED),
    RecordCallback: (Stage.RESOLVED,),
    Close: (Stage.CALLED_BACK, Stage.REJECTED),
}


@dataclass(frozen=True)
class StepOutcome:
    case: ComplaintCase  # unchanged when refused
    penalties: tuple[Penalty, ...] = ()
    refusal: Refusal | None = None


def step(case: ComplaintCase, command: ComplaintStep, policy: StaffPolicy) -> StepOutcome:
    """Apply one step of the lifecycle, or refuse it (wrong role: CMP-02 / CMP-09; out of order: CMP-08)."""
    at = require_aware(command.at, "step.at")
    allowed = policy.complaint_callers if isinstance(command, RecordCallback) else policy.complaint_handlers
    if command.actor_role not in allowed:
        rule = "CMP-09" if isinstance(command, RecordCallback) else "CMP-02"
        reason = f"role {command.actor_role} may not {type(command).__name__} (allowed: {', '.join(sorted(allowed))})"
        return StepOutcome(case, refusal=Refusal(rule, reason, (command.event_id,)))
    if case.stage not in _FROM[type(command)]:
        reason = f"{type(command).__name__} cannot follow {case.stage}"
        return StepOutcome(case, refusal=Refusal("CMP-08", reason, (command.event_id,)))
    if at < case.filed_at:
        return StepOutcome(case, refusal=Refusal(INPUT_RULE, "a step cannot precede the filing", (command.event_id,)))
    history = (*case.history, command.event_id)
    match command:
        case Classify():
            return StepOutcome(
                replace(
                    case,
                    stage=Stage.CLASSIFIED if command.valid else Stage.REJECTED,
                    category=command.category or case.category,
                    classified_at=at,
                    history=history,
                )
            )
        case Forward():
            return StepOutcome(replace(case, stage=Stage.FORWARDED, forwarded_to=command.department, history=history))
        case Resolve():
            resolved = replace(
                case,
                stage=Stage.RESOLVED,
                resolved_at=at,
                resolved_event=command.event_id,
                substantiated=command.substantiated,
                history=history,
            )
            return StepOutcome(resolved, tuple(complaint_penalties(resolved, command.actor_role, policy)))
        case RecordCallback():
            return StepOutcome(replace(case, stage=Stage.CALLED_BACK, called_back_at=at, history=history))
        case Close():
            return StepOutcome(replace(case, stage=Stage.CLOSED, closed_at=at, history=history))


# Substantiated complaint about a named staff member → sanction (rule, PEN row, kind).
_SANCTIONS: dict[ComplaintCategory, tuple[str, str, PenaltyKind]] = {
    ComplaintCategory.ATTITUDE: ("CMP-01", "PEN-10", PenaltyKind.DISCIPLINARY_SLIP),  # 不理不睬、想当然的回答
    ComplaintCategory.DISPUTE: ("CMP-01", "PEN-11", PenaltyKind.DISCIPLINARY_SLIP),  # 与客户发生争执
    ComplaintCategory.PRODUCT_KNOWLEDGE: ("ROT-17", "PEN-21", PenaltyKind.SUSPENSION),  # 停止接待客户并参加学习
}


def complaint_penalties(case: ComplaintCase, issued_by_role: str, policy: StaffPolicy) -> list[Penalty]:
    """CMP-01 「若发现有以上情况或得到投诉者论违纪处理开具违纪单一张」: one 违纪单 per substantiated attitude or dispute
    complaint against the named staff; a substantiated knowledge complaint suspends them until re-qualified
    (ROT-17). Nothing for unsubstantiated complaints or complaints naming nobody."""
    sanction = _SANCTIONS.get(case.category)
    if not case.substantiated or case.subject_staff is None or sanction is None or case.resolved_at is None:
        return []
    rule, row, kind = sanction
    evidence = (case.filed_event, *(() if case.resolved_event is None else (case.resolved_event,)))
    return [
        Penalty(
            staff_id=case.subject_staff,
            rule_id=rule,
            sanction_id=row,
            kind=kind,
            day=local_day(case.resolved_at, policy.timezone),
            at=case.resolved_at,
            evidence=evidence,
            issued_by_role=issued_by_role,
            detail=case.complaint_id,
        )
    ]


# ---------------------------------------------------------------------------------------------------------------
# SLA deadlines and escalation


class Deadline(StrEnum):
    CLASSIFY = "CLASSIFY"  # accepted and judged valid or not (CMP-09 「有投诉即时受理」)
    RESOLVE = "RESOLVE"  # a result for the complainant (CMP-X01 「三日內」)
    CALLBACK = "CALLBACK"  # the callback after resolution (CMP-09 「必须保证在三天之内回访」)


_DEADLINE_RULE = {Deadline.CLASSIFY: "CMP-09", Deadline.RESOLVE: "CMP-X01", Deadline.CALLBACK: "CMP-09"}


def deadlines(case: ComplaintCase, policy: StaffPolicy) -> dict[Deadline, datetime]:
    """The case's SLA deadlines that apply (the callback one once resolved; none after a rejection)."""
    out: dict[Deadline, datetime] = {}
    limits: list[tuple[Deadline, datetime | None, timedelta | None]] = [
        (Deadline.CLASSIFY, case.filed_at, policy.complaint_classify_within),
        (Deadline.RESOLVE, None if case.stage is Stage.REJECTED else case.filed_at, policy.complaint_resolve_within),
        (Deadline.CALLBACK, case.resolved_at, policy.complaint_callback_within),
    ]
    for name, start, within in limits:
        if start is not None and within is not None:
            out[name] = start + within
    return out


def _done_at(case: ComplaintCase, name: Deadline) -> datetime | None:
    return {Deadline.CLASSIFY: case.classified_at, Deadline.RESOLVE: case.resolved_at}.get(name, case.called_back_at)


@dataclass(frozen=True)
class Breach:
    """ComplaintEscalated when ``open`` (the step is still not done): escalate to ``escalate_to``."""

    complaint_id: str
    deadline: Deadline
    due_at: datetime
    open: bool  # False: the step was done, but late (for reports)
    rule_id: str
    escalate_to: str
    evidence: tuple[str, ...]


def breaches(case: ComplaintCase, at: datetime, policy: StaffPolicy) -> list[Breach]:
    """Every deadline passed at ``at``: still open (``at`` after it and not done) or done after it."""
    require_aware(at)
    out = []
    for name, due in deadlines(case, policy).items():
        done = _done_at(case, name)
        late_open = done is None and at > due and case.stage is not Stage.CLOSED
        if late_open or (done is not None and done > due):
            out.append(
                Breach(
                    complaint_id=case.complaint_id,
                    deadline=name,
                    due_at=due,
                    open=late_open,
                    rule_id=_DEADLINE_RULE[name],
                    escalate_to=policy.complaint_escalate_to,
                    evidence=case.history,
                )
            )
    return out


def next_deadline(case: ComplaintCase, policy: StaffPolicy) -> datetime | None:
    """When the shell's SLA timer should look again: the earliest deadline of a step not done yet (it fires after
    this instant, since the instant itself is in time)."""
    if case.stage is Stage.CLOSED:
        return None
    pending = [due for name, due in deadlines(case, policy).items() if _done_at(case, name) is None]
    return min(pending, default=None)


def complaints_per_staff(cases: Iterable[ComplaintCase], month: str, policy: StaffPolicy) -> dict[str, tuple[int, int]]:
    """Complaints naming each staff member filed in ``month``: (filed, substantiated)."""
    filed: Counter[str] = Counter()
    upheld: Counter[str] = Counter()
    for case in cases:
        if case.subject_staff is None or month_of(local_day(case.filed_at, policy.timezone)) != month:
            continue
        filed[case.subject_staff] += 1
        upheld[case.subject_staff] += bool(case.substantiated)
    return {staff: (filed[staff], upheld[staff]) for staff in sorted(filed)}


def repair_dispatch_overdue(
    requested_at: datetime, arrived_at: datetime | None, at: datetime, policy: StaffPolicy
) -> bool | None:
    """CMP-X11 (property pack): the engineer not on site within 20 minutes → customer service phones the owner.
    None when the office has no such rule."""
    if policy.repair_dispatch_within is None:
        return None
    due = require_aware(requested_at) + policy.repair_dispatch_within
    return (arrived_at > due) if arrived_at is not None else require_aware(at) > due
