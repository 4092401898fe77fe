"""KPI formulas (rules.md §10) as pure functions over counts. The projections count; these divide.

Edges: a rate whose denominator is zero is ``None`` ("no data", shown as such, never 0 % or 100 %); negative counts
raise ``ValueError``. Rates are plain fractions (0.25, not 25), and a rate may exceed 1 where the numerator is not a
subset of the denominator (达成率 above target)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from services.staff.policy import StaffPolicy


def rate(numerator: float, denominator: float) -> float | None:
    """numerator ÷ denominator; None when the denominator is 0."""
    if numerator < 0 or denominator < 0:
        raise ValueError(f"counts cannot be negative: {numerator} / {denominator}")
    return None if denominator == 0 else numerator / denominator


def call_to_visit_rate(visits_from_calls: int, genuine_calls_answered: int) -> float | None:
    """KPI-01 来电转化率: visits by customers whose first contact was a genuine call this staff member answered ÷
    those genuine calls (「根据接电数量制定平均到访率」)."""
    return rate(visits_from_calls, genuine_calls_answered)


@dataclass(frozen=True)
class VisitOutcome:
    """Counted (NEW, ROT-12/14) visits a staff member received in one product category, and the deals among them."""

    staff_id: str
    category: str
    visits: int
    deals: int


@dataclass(frozen=True)
class CategoryRate:
    staff_id: str
    category: str
    rate: float | None  # the staff member's 来访转成交率 in the category
    office_average: float | None  # pooled: all deals ÷ all visits of the office in the category
    versus_average: float | None  # rate − office_average (None if either is None)


def visit_to_deal_rates(outcomes: Iterable[VisitOutcome]) -> list[CategoryRate]:
    """KPI-02 来访转成交率 per product category against the office average
    (「根据所选产品类别不同分别制定出平均转成交」). The average is pooled (Σ deals ÷ Σ visits), so a staff member
    with 1 visit weighs 1 visit, not one vote. Rows of the same (staff, category) are added up; output sorted by
    category then staff."""
    per: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        if o.deals < 0 or o.visits < 0:
            raise ValueError(f"counts cannot be negative: {o}")
        for bucket in (per[(o.category, o.staff_id)], totals[o.category]):
            bucket[0] += o.deals
            bucket[1] += o.visits
    rows = []
    for (category, staff), (deals, visits) in sorted(per.items()):
        own, average = rate(deals, visits), rate(*totals[category])
        diff = None if own is None or average is None else own - average
        rows.append(CategoryRate(staff, category, own, average, diff))
    return rows


def achievement_rate(credited: float, target: float) -> float | None:
    """KPI-03 / COM-06 业绩达成率 = credited sales ÷ the 销售经理's target (units or amount, as long as both agree);
    None without a target."""
    return rate(credited, target)


def reception_count(counted_receptions: int, waivers: int, policy: StaffPolicy) -> int:
    """KPI-07 接待指标: counted receptions (NEW visits of unowned customers; ROT-12/13/14 excluded) plus each waiver
    at its weight (ROT-03: 2)."""
    if counted_receptions < 0 or waivers < 0:
        raise ValueError("counts cannot be negative")
    return counted_receptions + policy.waiver_reception_weight * waivers


def sms_compliance_rate(sms_in_time: int, genuine_calls: int) -> float | None:
    """KPI-09: genuine calls with an SMS within 5 minutes ÷ genuine calls (None on a day without any)."""
    return rate(sms_in_time, genuine_calls)


@dataclass(frozen=True)
class PaymentCompliance:
    signed: int  # subscriptions whose SALE-09 deadline has passed or been met
    paid_in_time: int
    abandoned: int  # SubscriptionAbandoned (PAYMENT_TIMEOUT)
    rate: float | None  # paid_in_time ÷ signed
    median_minutes_to_payment: float | None  # over the in-time payments


def payment_deadline_compliance(
    paid_in_time: int, abandoned: int, minutes_to_payment: Iterable[timedelta] = ()
) -> PaymentCompliance:
    """KPI-10: of the subscriptions whose 10-minute clock has run out or stopped, how many were paid in time; and
    the median time from signing to payment. Subscriptions still inside their 10 minutes are not counted yet."""
    if paid_in_time < 0 or abandoned < 0:
        raise ValueError("counts cannot be negative")
    minutes = [d.total_seconds() / 60 for d in minutes_to_payment]
    signed = paid_in_time + abandoned
    median = statistics.median(minutes) if minutes else None
    return PaymentCompliance(signed, paid_in_time, abandoned, rate(paid_in_time, signed), median)


def answer_rate(answered: int, received: int) -> float | None:
    """KPI-X01 接通率 (call-centre pack): answered ÷ received."""
    return rate(answered, received)


def meets_answer_rate(answered: int, received: int, policy: StaffPolicy) -> bool | None:
    """Whether 接通率 reaches the pack's target (≥ 90 %); None without a target or without calls."""
    value = answer_rate(answered, received)
    if value is None or policy.answer_rate_target is None:
        return None
    return value >= policy.answer_rate_target


def agents_short(online: int, peak: bool, policy: StaffPolicy) -> int | None:
    """CALL-X01 (call-centre pack): seats missing against the minimum (8 at peak, 2 overnight); None without one."""
    minimum = policy.min_agents_peak if peak else policy.min_agents_night
    return None if minimum is None else max(minimum - online, 0)
