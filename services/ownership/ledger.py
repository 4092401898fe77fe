"""The commission ledger of one deal: who is credited, with which share, and what the channel is owed
(COM-01…05), as of the deal's 销控 timeline.

``commission_ledger(deal, state, policy)`` reads the deal's attribution from the customer's state (frozen at 认购
by ``DealAttributed``, amended by a split or a withholding) and the deal's money and dates from the 销控 side
(``Deal``). It returns nothing before the credit point (``OwnershipPolicy.credit_point``); at the credit point one
CREDIT line per credited staff member and one channel line (payable, withheld or not applicable); after a refund
of a credited deal, REVERSAL lines that cancel them in the month of the refund.

Amounts are integer fen. Commission = price × rate (basis points), rounded half up to the fen, then divided
between the credited staff by largest remainder so the parts add up to the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction

from services.ownership.facts import ChannelStatus, Share
from services.ownership.months import month_key
from services.ownership.policy import CreditPoint, OwnershipPolicy
from services.ownership.state import CustomerState, DealRecord

__all__ = ["Deal", "Entry", "LedgerLine", "Party", "allocate", "commission_fen", "commission_ledger"]


class Party(StrEnum):
    STAFF = "staff"
    CHANNEL = "channel"


class Entry(StrEnum):
    CREDIT = "credit"
    REVERSAL = "reversal"


@dataclass(frozen=True)
class Deal:
    """A deal as the 销控 side knows it (SubscriptionSigned, deposit paid, ContractSigned, RefundProcessed)."""

    deal_id: str
    price_fen: int
    subscribed_at: datetime  # 认购 with the deposit paid
    product_category: str | None = None
    contracted_at: datetime | None = None  # 签约
    refunded_at: datetime | None = None  # 退订/退房 processed

    def __post_init__(self) -> None:
        if self.price_fen <= 0:
            raise ValueError("price_fen must be positive")


@dataclass(frozen=True)
class LedgerLine:
    """One line of the ledger. Staff lines: ``status`` None, ``units``/``sales_fen`` count as 业绩 (COM-06).
    The channel line: ``status`` payable / withheld / not applicable; ``commission_fen`` is what is owed (0 unless
    payable), ``withheld_fen`` what would have been owed. REVERSAL lines carry the negated amounts."""

    deal_id: str
    customer_key: str
    party: Party
    party_id: str | None  # staff id, channel company id, or None for a deal without a channel
    agent_id: str | None
    entry: Entry
    status: ChannelStatus | None
    share: Fraction
    units: Fraction
    sales_fen: int
    commission_fen: int
    withheld_fen: int
    at: datetime
    month: str  # YYYY-MM on the office's wall clock
    rule_id: str
    basis: str
    reason: str
    evidence: tuple[str, ...]


def commission_fen(price_fen: int, rate_bp: int) -> int:
    """price × rate_bp / 10000, rounded half up to the fen."""
    return (price_fen * rate_bp * 2 + 10_000) // 20_000


def allocate(total: int, shares: tuple[Share, ...]) -> tuple[int, ...]:
    """``total`` fen divided by ``shares`` (adding up to 1) so the parts add up to ``total`` exactly: each part is
    rounded down, the remaining fen go to the largest remainders, ties to the earlier share."""
    exact = [total * s.share for s in shares]
    parts = [int(x // 1) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return tuple(parts)


def _credit_at(deal: Deal, policy: OwnershipPolicy) -> datetime | None:
    credit_at = deal.subscribed_at if policy.credit_point is CreditPoint.SUBSCRIPTION else deal.contracted_at
    if credit_at is None or (deal.refunded_at is not None and deal.refunded_at < credit_at):
        return None  # not yet at the credit point, or refunded before it (nothing was ever credited)
    return credit_at


def _credit_lines(deal: Deal, record: DealRecord, key: str, at: datetime, policy: OwnershipPolicy) -> list[LedgerLine]:
    rates = policy.rates_for(deal.product_category)
    month = month_key(at, policy.timezone)
    staff_total = commission_fen(deal.price_fen, rates.staff_bp)
    lines = [
        LedgerLine(
            deal_id=deal.deal_id,
            customer_key=key,
            party=Party.STAFF,
            party_id=share.staff_id,
            agent_id=None,
            entry=Entry.CREDIT,
            status=None,
            share=share.share,
            units=share.share,
            sales_fen=sales,
            commission_fen=commission,
            withheld_fen=0,
            at=at,
            month=month,
            rule_id=record.rule_id,
            basis=record.basis,
            reason=f"{share.share} of the deal credited under {record.rule_id}",
            evidence=record.evidence,
        )
        for share, sales, commission in zip(
            record.shares,
            allocate(deal.price_fen, record.shares),
            allocate(staff_total, record.shares),
            strict=True,
        )
    ]
    claim, status = record.channel, record.channel_status
    owed = commission_fen(deal.price_fen, rates.channel_bp) if claim is not None else 0
    lines.append(
        LedgerLine(
            deal_id=deal.deal_id,
            customer_key=key,
            party=Party.CHANNEL,
            party_id=claim.channel_id if claim is not None else None,
            agent_id=claim.agent_id if claim is not None else None,
            entry=Entry.CREDIT,
            status=status,
            share=Fraction(1) if claim is not None else Fraction(0),
            units=Fraction(0),
            sales_fen=0,
            commission_fen=owed if status is ChannelStatus.PAYABLE else 0,
            withheld_fen=owed if status is ChannelStatus.WITHHELD else 0,
            at=at,
            month=month,
            rule_id=record.channel_rule,
            basis="channel",
            reason=record.channel_reason,
            evidence=(claim.report_id,) if claim is not None else (),
        )
    )
    return lines


def _reversal(line: LedgerLine, at: datetime, policy: OwnershipPolicy) -> LedgerLine:
    return LedgerLine(
        deal_id=line.deal_id,
        customer_key=line.customer_key,
        party=line.party,
        party_id=line.party_id,
        agent_id=line.agent_id,
        entry=Entry.REVERSAL,
        status=line.status,
        share=line.share,
        units=-line.units,
        sales_fen=-line.sales_fen,
        commission_fen=-line.commission_fen,
        withheld_fen=-line.withheld_fen,
        at=at,
        month=month_key(at, policy.timezone),
        rule_id="SALE-19",
        basis=line.basis,
        reason="refund processed: the credit is reversed",
        evidence=line.evidence,
    )


def commission_ledger(deal: Deal, state: CustomerState, policy: OwnershipPolicy) -> list[LedgerLine]:
    """The ledger lines of ``deal`` for the customer in ``state`` (see the module docstring).

    Raises ``KeyError`` when the deal was never attributed to this customer (no ``DealSubscribed`` decided).
    """
    record = state.deal(deal.deal_id)
    if record is None:
        raise KeyError(f"deal {deal.deal_id} is not attributed in this customer's state")
    credit_at = _credit_at(deal, policy)
    if credit_at is None:
        return []
    lines = _credit_lines(deal, record, record.customer_key, credit_at, policy)
    if deal.refunded_at is not None:
        lines += [_reversal(line, deal.refunded_at, policy) for line in lines]
    return lines
