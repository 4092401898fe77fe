"""Per-office settings of the ownership decider and the commission ledger, with documented defaults
(rules.md §5, §7, §12, §13; reasoning in docs/ownership-policy.md).

Nothing here does I/O; a policy is a plain value handed to ``decide`` and ``commission_ledger``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from fractions import Fraction

from services.ownership.months import add_months
from services.sales.policy import Role

__all__ = [
    "CHINA_STANDARD_TIME",
    "DEFAULT_POLICY",
    "DEFAULT_RATE_TABLE",
    "CommissionRates",
    "CreditPoint",
    "OwnershipPolicy",
    "Role",
    "SwitchCredit",
]

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact and needs no tz database.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


class CreditPoint(StrEnum):
    """When a deal counts as 业绩 and its commission accrues (COM-06, §13.15: the handbooks do not say)."""

    SUBSCRIPTION = "SUBSCRIPTION"  # 认购, once the deposit reached finance (SALE-09 clock stopped)
    CONTRACT = "CONTRACT"  # 签约


class SwitchCredit(StrEnum):
    """Who is credited after a customer-requested switch nobody disputes (COM-01 is silent)."""

    OLD_OWNER = "OLD_OWNER"  # the first-contact owner keeps the credit (OWN-01/02)
    NEW_SALESPERSON = "NEW_SALESPERSON"


@dataclass(frozen=True)
class CommissionRates:
    """Commission as basis points of the deal price (1 bp = 0.01 %): the credited staff share ``staff_bp``,
    the winning channel is owed ``channel_bp``."""

    staff_bp: int
    channel_bp: int

    def __post_init__(self) -> None:
        if not (0 <= self.staff_bp <= 10_000 and 0 <= self.channel_bp <= 10_000):
            raise ValueError("commission rates are basis points between 0 and 10000")


# Anchang's default table. The handbooks give no rates at all (COM-10: the incentive chapter of S0-O is missing),
# so these are placeholders in the usual range of the trade, to be replaced by each office's contract.
DEFAULT_RATE_TABLE: tuple[tuple[str, CommissionRates], ...] = (
    ("住宅", CommissionRates(staff_bp=30, channel_bp=150)),  # homes: 0.3 % staff, 1.5 % channel
    ("公寓", CommissionRates(staff_bp=30, channel_bp=150)),
    ("商铺", CommissionRates(staff_bp=50, channel_bp=300)),  # shops: 0.5 % staff, 3 % channel
    ("写字楼", CommissionRates(staff_bp=50, channel_bp=300)),
    ("车位", CommissionRates(staff_bp=100, channel_bp=0)),  # parking: 1 % staff, no channel commission
)
_DEFAULT_RATES = CommissionRates(staff_bp=30, channel_bp=150)  # any category not in the table

_SALESPEOPLE = frozenset({Role.SALES_CONSULTANT})


def _roles(*roles: Role) -> frozenset[str]:
    return frozenset(roles)


@dataclass(frozen=True)
class OwnershipPolicy:
    """Settings of one sales office (案场). Every default cites its basis in rules.md."""

    # OWN-05 「其拥有客户资源的时效为三个月」: calendar months on the office's wall clock (see months.py). Ownership
    # holds for ``since <= t < expires_at``; at the expiry instant itself the customer is free.
    ownership_months: int = 3
    timezone: tzinfo = CHINA_STANDARD_TIME
    # §13.10: the clock runs from the contact that made the owner, not from each return visit: the handbook's slow
    # customer must be re-registered "after the 3 months" even though they kept coming (OWN-06).
    extend_on_return_visit: bool = False
    # OWN-06: the 售楼部主管 signs a renewal from this long before the expiry (the ownerships_expiring_7d list),
    # or at any time after it while nobody else has claimed the customer.
    renewal_window: timedelta = timedelta(days=7)
    # OWN-05 ambiguity: "practically a deal ends the question". While a deal stands the ownership does not expire;
    # a refund starts a fresh period.
    deal_freezes_ownership: bool = True
    # OWN-08 / §13.13: the front desk "is not responsible for tracing phone-number ownership"; a phone contact is
    # honoured at the door only when the customer names the consultant or shows their SMS. True: the system traces
    # it (the phone number is the customer key) and honours it without that proof.
    trace_phone_ownership: bool = False

    # OWN-11 「报备时间必须与到访时间间隔半个小时以上」. 以上 includes the number itself (民法典 第1259条), so a
    # report exactly 30 minutes before arrival counts; ``lead_time_inclusive=False`` makes it "more than".
    report_lead_time: timedelta = timedelta(minutes=30)
    lead_time_inclusive: bool = True

    # COM-01 「可参照该套佣金按5:5分配老销售员于新销售员」: (old, new) shares on a disputed switch.
    switch_split: tuple[Fraction, Fraction] = (Fraction(1, 2), Fraction(1, 2))
    undisputed_switch_credit: SwitchCredit = SwitchCredit.OLD_OWNER

    # COM-06 / §13.15: 业绩 at 认购 (deposit paid), reversed by a processed refund. See docs/ownership-policy.md.
    credit_point: CreditPoint = CreditPoint.SUBSCRIPTION
    rate_table: tuple[tuple[str, CommissionRates], ...] = DEFAULT_RATE_TABLE
    default_rates: CommissionRates = _DEFAULT_RATES

    # §12.1 authorization matrix.
    renewers: frozenset[str] = field(default=_roles(Role.SALES_SUPERVISOR))  # OWN-06: 售楼部主管 signs
    # §13.19: who confirms 撬单 / 甩单 is not stated; the 销售经理 decides (presumably, per rules.md OWN-15).
    poaching_confirmers: frozenset[str] = field(default=_roles(Role.SALES_MANAGER))
    dumping_confirmers: frozenset[str] = field(default=_roles(Role.SALES_MANAGER))
    # OWN-20: disputes are decided by the superior (上级领导), the 销售经理 of the office.
    dispute_resolvers: frozenset[str] = field(default=_roles(Role.SALES_MANAGER))
    expiry_timers: frozenset[str] = field(default=_roles(Role.SYSTEM))  # the shell's OWN-05 timer

    processor_id: str = "anchang-ownership"  # actor named on facts the decider emits on its own account

    def __post_init__(self) -> None:
        if self.ownership_months < 1:
            raise ValueError("ownership_months must be at least 1 (OWN-05)")
        if self.timezone.utcoffset(datetime(2024, 1, 1)) is None:
            raise ValueError("timezone must have a UTC offset")
        if self.renewal_window < timedelta(0) or self.report_lead_time < timedelta(0):
            raise ValueError("renewal_window and report_lead_time may not be negative")
        old, new = self.switch_split
        if old < 0 or new < 0 or old + new != 1:
            raise ValueError("switch_split is (old, new) shares, each at least 0, adding up to 1 (COM-01)")
        categories = [name for name, _ in self.rate_table]
        if len(categories) != len(set(categories)):
            raise ValueError("rate_table lists a product category twice")
        confirmers = self.renewers | self.poaching_confirmers | self.dumping_confirmers | self.dispute_resolvers
        if confirmers & _SALESPEOPLE:
            raise ValueError("a 置业顾问 may not renew, confirm 撬单/甩单 or settle disputes on their own customers")

    def expires_at(self, since: datetime) -> datetime:
        """End of an ownership that began at ``since`` (OWN-05)."""
        return add_months(since, self.ownership_months, self.timezone)

    def report_in_time(self, reported_at: datetime, arrived_at: datetime) -> bool:
        """OWN-11: the report precedes the arrival by the lead time (inclusive by default)."""
        lead = arrived_at - reported_at
        return lead >= self.report_lead_time if self.lead_time_inclusive else lead > self.report_lead_time

    def rates_for(self, product_category: str | None) -> CommissionRates:
        for name, rates in self.rate_table:
            if name == product_category:
                return rates
        return self.default_rates


DEFAULT_POLICY = OwnershipPolicy()
