"""Sanctions (rules.md §9): the ``Penalty`` value every rule of this package produces, and the monthly discipline
ledger per staff member (``discipline_ledger{staff, month}`` of §9: counts by kind, fine total, suspensions).

A penalty always names the behavioural rule it enforces (``rule_id``, e.g. ATT-03), the row of the sanction table
(``sanction_id``, e.g. PEN-01) when there is one, and the ids of the events that prove it (``evidence``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType

from services.sales.policy import Role
from services.staff.localtime import month_of, require_aware


class PenaltyKind(StrEnum):
    """PenaltyIssued.kind; ASCII values so that they can be Avro enum symbols, the handbook's word as ``label``."""

    FINE = "FINE"  # 罚款
    DISCIPLINARY_SLIP = "DISCIPLINARY_SLIP"  # 违纪单
    WARNING = "WARNING"  # 警告单
    SUSPENSION = "SUSPENSION"  # 停接客户
    ABSENCE = "ABSENCE"  # 旷工

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    PenaltyKind.FINE: "罚款",
    PenaltyKind.DISCIPLINARY_SLIP: "违纪单",
    PenaltyKind.WARNING: "警告单",
    PenaltyKind.SUSPENSION: "停接",
    PenaltyKind.ABSENCE: "旷工",
}


@dataclass(frozen=True, kw_only=True)
class Penalty:
    staff_id: str
    rule_id: str  # the rule broken, e.g. "ATT-03"
    sanction_id: str | None  # the row of rules.md §9.1, e.g. "PEN-01"; None when the sanction table has none
    kind: PenaltyKind
    day: date  # the office-local day the sanction is about; it decides the ledger month
    at: datetime  # the instant of the evidence that showed it
    evidence: tuple[str, ...]  # ids of the events that prove it; never empty
    amount_yuan: int | None = None  # fines only
    suspension_days: int | None = None  # 停接 only; None there means open-ended (until re-qualified, ROT-17)
    issued_by_role: str = Role.SYSTEM  # SYSTEM when detected from events, else the observer's role
    detail: str = ""  # what exactly, e.g. the blank field; also tells apart two fines on the same evidence

    def __post_init__(self) -> None:
        require_aware(self.at, "Penalty.at")
        if not self.staff_id:
            raise ValueError("Penalty.staff_id is empty")
        if not self.evidence or not all(self.evidence):
            raise ValueError(f"{self.rule_id}: a penalty needs the ids of its evidence")
        if (self.kind is PenaltyKind.FINE) != (self.amount_yuan is not None):
            raise ValueError(f"{self.rule_id}: amount_yuan is set for fines and only for fines")
        if self.amount_yuan is not None and self.amount_yuan <= 0:
            raise ValueError(f"{self.rule_id}: a fine must be positive")
        if self.kind is not PenaltyKind.SUSPENSION and self.suspension_days is not None:
            raise ValueError(f"{self.rule_id}: suspension_days is only for 停接")
        if self.suspension_days is not None and self.suspension_days < 1:
            raise ValueError(f"{self.rule_id}: a suspension lasts at least one day")

    @property
    def key(self) -> tuple[object, ...]:
        """Identity of the sanction: the same rule, kind, day, evidence and detail is the same penalty delivered
        twice (a replayed event), and is counted once."""
        return (self.staff_id, self.rule_id, self.kind, self.day, self.evidence, self.detail)


def fine(
    amount_yuan: int | None,
    *,
    staff_id: str,
    rule_id: str,
    sanction_id: str | None,
    day: date,
    at: datetime,
    evidence: tuple[str, ...],
    issued_by_role: str = Role.SYSTEM,
    detail: str = "",
) -> list[Penalty]:
    """A fine of ``amount_yuan``, or nothing when the office has no such fine (None or 0)."""
    if not amount_yuan:
        return []
    return [
        Penalty(
            staff_id=staff_id,
            rule_id=rule_id,
            sanction_id=sanction_id,
            kind=PenaltyKind.FINE,
            day=day,
            at=at,
            evidence=evidence,
            amount_yuan=amount_yuan,
            issued_by_role=issued_by_role,
            detail=detail,
        )
    ]


@dataclass(frozen=True)
class DisciplineRow:
    """One staff member's sanctions in one month (rules.md §9 ``discipline_ledger{staff, month}``)."""

    staff_id: str
    month: str  # YYYY-MM
    fines_yuan: int = 0
    fine_count: int = 0
    disciplinary_slips: int = 0  # 违纪单
    warnings: int = 0  # 警告单
    absence_days: int = 0  # distinct days of 旷工
    suspensions: int = 0  # 停接 issued
    suspension_days: int = 0  # their total length (open-ended ones excluded)
    open_ended_suspensions: int = 0
    fines_by_rule: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # rule id → yuan


def discipline_ledger(penalties: Iterable[Penalty], month: str | None = None) -> list[DisciplineRow]:
    """Rows per (month, staff), sorted; only ``month`` (``YYYY-MM``) when given. Duplicates (same ``key``) count
    once, and several 旷工 on one day are one day of absence."""
    seen: set[tuple[object, ...]] = set()
    groups: dict[tuple[str, str], list[Penalty]] = defaultdict(list)
    for penalty in penalties:
        if penalty.key in seen:
            continue
        seen.add(penalty.key)
        key = (month_of(penalty.day), penalty.staff_id)
        if month is None or key[0] == month:
            groups[key].append(penalty)
    return [_row(staff, mon, items) for (mon, staff), items in sorted(groups.items())]


def _row(staff_id: str, month: str, items: list[Penalty]) -> DisciplineRow:
    by_kind: dict[PenaltyKind, list[Penalty]] = defaultdict(list)
    for p in items:
        by_kind[p.kind].append(p)
    fines = by_kind[PenaltyKind.FINE]
    by_rule: dict[str, int] = defaultdict(int)
    for p in fines:
        by_rule[p.rule_id] += p.amount_yuan or 0
    suspensions = by_kind[PenaltyKind.SUSPENSION]
    return DisciplineRow(
        staff_id=staff_id,
        month=month,
        fines_yuan=sum(p.amount_yuan or 0 for p in fines),
        fine_count=len(fines),
        disciplinary_slips=len(by_kind[PenaltyKind.DISCIPLINARY_SLIP]),
        warnings=len(by_kind[PenaltyKind.WARNING]),
        absence_days=len({p.day for p in by_kind[PenaltyKind.ABSENCE]}),
        suspensions=len(suspensions),
        suspension_days=sum(p.suspension_days or 0 for p in suspensions),
        open_ended_suspensions=sum(1 for p in suspensions if p.suspension_days is None),
        fines_by_rule=MappingProxyType(dict(sorted(by_rule.items()))),
    )
