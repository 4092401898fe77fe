"""What the ownership decider remembers about one customer (one ``customer_key``).

An *ownership period* runs from the contact that made the owner until the expiry (OWN-05). Everything tied to
that period (the first visit the channel reports are judged against, the reports themselves, the winning channel,
a switch and its dispute, withheld commissions) is cleared when it expires; ``period`` counts the periods so a
deal keeps the attribution of the period it was made in. Deals, contacts, bars and flags are kept for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.ownership.facts import Basis, ChannelClaim, ChannelStatus, RejectionReason, Share

__all__ = [
    "INITIAL",
    "Contact",
    "CustomerState",
    "DealRecord",
    "FirstVisit",
    "Ownership",
    "PendingReferral",
    "Report",
    "ReportStatus",
    "SplitDecision",
    "Switch",
    "Verdict",
    "Withholding",
    "check_invariants",
]


class ReportStatus(StrEnum):
    PENDING = "pending"  # no visit to judge it against yet
    WINNING = "winning"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Verdict:
    status: ReportStatus
    reason: RejectionReason | None = None
    rule_id: str | None = None
    detail: str = ""


PENDING = Verdict(ReportStatus.PENDING)


@dataclass(frozen=True)
class Ownership:
    staff_id: str
    basis: Basis
    rule_id: str
    since: datetime
    expires_at: datetime | None  # None while a deal stands (deal_freezes_ownership)
    evidence: tuple[str, ...]
    on_record: bool  # False: an untraced phone contact, honoured at the door only with proof (OWN-08)
    renewed_by: str | None = None

    def active_at(self, moment: datetime) -> bool:
        return self.since <= moment and (self.expires_at is None or moment < self.expires_at)


@dataclass(frozen=True)
class Contact:
    staff_id: str
    event_id: str
    at: datetime


@dataclass(frozen=True)
class FirstVisit:
    """The first visit of the ownership period: channel reports are judged against it (OWN-10…14)."""

    event_id: str
    visit_id: str
    arrived_at: datetime
    customer_name: str
    phone: str
    received_by: str
    channel_mentioned: str | None
    reception_started_at: datetime | None


@dataclass(frozen=True)
class Report:
    event_id: str
    channel_id: str
    agent_id: str
    reported_at: datetime
    customer_name: str
    phone: str
    group: str
    pre_arranged_staff_id: str | None
    agent_barred_at: datetime | None
    verdict: Verdict = PENDING

    def claim(self) -> ChannelClaim:
        return ChannelClaim(
            self.event_id, self.channel_id, self.agent_id, self.reported_at, self.customer_name, self.phone
        )


@dataclass(frozen=True)
class PendingReferral:
    event_id: str
    employee_id: str
    recommended_staff_id: str | None
    form_id: str | None
    at: datetime


@dataclass(frozen=True)
class Switch:
    event_id: str
    from_staff_id: str
    to_staff_id: str
    at: datetime


@dataclass(frozen=True)
class SplitDecision:
    shares: tuple[Share, ...]
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Withholding:
    channel_id: str
    agent_id: str | None
    deal_id: str | None  # None: every deal of the period
    reason: str
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class DealRecord:
    """A deal's attribution, frozen at 认购 and amended only by a split, a withholding or a late earlier 报备 of
    the same period."""

    deal_id: str
    customer_key: str
    unit_id: str
    at: datetime
    signed_by: str
    period: int
    shares: tuple[Share, ...]
    basis: Basis
    rule_id: str
    evidence: tuple[str, ...]
    channel: ChannelClaim | None
    channel_status: ChannelStatus
    channel_rule: str
    channel_reason: str
    reversed_at: datetime | None = None


@dataclass(frozen=True)
class CustomerState:
    owner: Ownership | None = None
    last_owner: Ownership | None = None  # the ownership that expired last (OWN-06 renewal after expiry)
    period: int = 0
    period_start: datetime | None = None  # when the last ownership expired; earlier reports and contacts are stale
    first_visit: FirstVisit | None = None
    # every visit of the period, in decision order: an earlier arrival decided late takes first contact from the
    # first visit (OWN-01, OwnershipFirstContactCorrected) and the others are then served for the new owner (OWN-02)
    visits: tuple[FirstVisit, ...] = ()
    reports: tuple[Report, ...] = ()
    channel: ChannelClaim | None = None
    withheld: tuple[Withholding, ...] = ()
    price_negotiation_at: datetime | None = None
    employee_referral: PendingReferral | None = None
    switch: Switch | None = None
    split: SplitDecision | None = None
    dispute_open: bool = False
    calls: tuple[Contact, ...] = ()
    follow_ups: tuple[Contact, ...] = ()
    deals: tuple[DealRecord, ...] = ()
    barred_agents: tuple[tuple[str, datetime], ...] = ()  # (agent, barred at), from this customer's 撬单
    dumping_flags: tuple[str, ...] = ()  # staff flagged for 甩单

    def owner_at(self, moment: datetime) -> str | None:
        """Staff id owning the customer at ``moment`` as far as this state knows (expiry applied lazily)."""
        return self.owner.staff_id if self.owner is not None and self.owner.active_at(moment) else None

    def deal(self, deal_id: str) -> DealRecord | None:
        return next((d for d in self.deals if d.deal_id == deal_id), None)

    def report(self, report_id: str) -> Report | None:
        return next((r for r in self.reports if r.event_id == report_id), None)

    def active_deals(self) -> tuple[DealRecord, ...]:
        return tuple(d for d in self.deals if d.reversed_at is None)


INITIAL = CustomerState()


def check_invariants(state: CustomerState) -> list[str]:
    """Violations of the state's consistency rules; empty for every state ``fold`` can reach."""
    problems: list[str] = []
    winners = [r for r in state.reports if r.verdict.status is ReportStatus.WINNING]
    if len(winners) > 1:
        problems.append(f"{len(winners)} winning reports")
    if (state.channel is None) != (not winners):
        problems.append("channel attribution and winning report disagree")
    if state.channel is not None and winners and winners[0].event_id != state.channel.report_id:
        problems.append("the winning report is not the attributed one")
    if winners and state.first_visit is None:
        problems.append("a report wins without a visit")
    if state.first_visit is not None and state.first_visit not in state.visits:
        problems.append("the first visit is not a visit of the period")
    ids = [r.event_id for r in state.reports]
    if len(ids) != len(set(ids)):
        problems.append("a report is recorded twice")
    for deal in state.deals:
        if sum((s.share for s in deal.shares), start=0) != 1 or any(s.share < 0 for s in deal.shares):
            problems.append(f"deal {deal.deal_id}: shares do not add up to 1")
        if (deal.channel_status is ChannelStatus.NOT_APPLICABLE) != (deal.channel is None):
            problems.append(f"deal {deal.deal_id}: channel status {deal.channel_status} with claim {deal.channel}")
    if state.split is not None and sum((s.share for s in state.split.shares), start=0) != 1:
        problems.append("split shares do not add up to 1")
    if state.dispute_open and state.switch is None:
        problems.append("a dispute without a switch")
    if state.owner is not None and state.owner.expires_at is None and not state.active_deals():
        problems.append("ownership frozen without a standing deal")
    return problems
