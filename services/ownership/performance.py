"""Monthly 业绩 per staff member and the achievement rate against the manager's target (COM-06, KPI-03).

业绩 is read off the commission ledger's staff lines, so it follows the credit point, the shares of a split and
the reversals of refunds: a 5:5 deal counts half a unit and half the price for each consultant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from services.ownership.ledger import LedgerLine, Party

__all__ = ["Performance", "SalesTarget", "TargetMeasure", "achievement_rate", "monthly_performance"]


class TargetMeasure(StrEnum):
    """What a SalesTargetSet counts (§13.15: units or 元 is not stated, so the target says)."""

    UNITS = "units"  # 套
    SALES_FEN = "sales_fen"  # 成交金额


@dataclass(frozen=True)
class Performance:
    staff_id: str
    month: str
    units: Fraction = Fraction(0)
    sales_fen: int = 0
    commission_fen: int = 0


@dataclass(frozen=True)
class SalesTarget:
    """A SalesTargetSet by the 销售经理 (COM-06) for one staff member and month."""

    staff_id: str
    month: str  # YYYY-MM
    measure: TargetMeasure
    target: int  # units, or fen

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError("a sales target must be positive")


def monthly_performance(lines: Iterable[LedgerLine], month: str) -> dict[str, Performance]:
    """Net 业绩 per staff member in ``month`` (credits minus reversals booked in that month)."""
    totals: dict[str, Performance] = {}
    for line in lines:
        if line.party is not Party.STAFF or line.month != month or line.party_id is None:
            continue
        p = totals.get(line.party_id, Performance(line.party_id, month))
        totals[line.party_id] = Performance(
            staff_id=p.staff_id,
            month=month,
            units=p.units + line.units,
            sales_fen=p.sales_fen + line.sales_fen,
            commission_fen=p.commission_fen + line.commission_fen,
        )
    return dict(sorted(totals.items()))


def achievement_rate(performance: Performance | None, target: SalesTarget) -> Fraction:
    """业绩达成率 = achieved ÷ target, in the target's measure (0 without any 业绩)."""
    if performance is None:
        return Fraction(0)
    if (performance.staff_id, performance.month) != (target.staff_id, target.month):
        raise ValueError("performance and target are for different staff or months")
    achieved = performance.units if target.measure is TargetMeasure.UNITS else Fraction(performance.sales_fen)
    return achieved / target.target
