"""What the ownership decider reads: observations about one customer, keyed by ``customer_key``.

The stream shell (not part of this package) turns registered events into these values: the visit register
(VisitRegistered), the call log (CallLogged), WeChat 报备 ingestion (ChannelReferralReported), the 销控 facts
(deposit paid → ``DealSubscribed``, RefundProcessed → ``DealRefunded``) and the managers' decisions. Anything
that needs another customer's or another stream's state is resolved by the shell and carried on the event: the
owner of a referring customer (``referrer_owner_id``) and a channel agent's bar (``agent_barred_at``).

Every event carries ``event_id`` (facts name it as ``caused_by`` and as evidence), ``customer_key``, ``at`` (when
it happened: tz-aware event time, never the processing time), ``actor_id`` and ``actor_role`` (a Role symbol).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import TypeAlias

__all__ = [
    "CallAnswered",
    "CallbackMade",
    "ChannelMentioned",
    "ChannelReported",
    "DealRefunded",
    "DealSubscribed",
    "DisputeRaised",
    "DisputeResolved",
    "EmployeeReferralReported",
    "Event",
    "ExpiryDue",
    "OrderDumpingConfirmed",
    "PoachingConfirmed",
    "PriceNegotiationStarted",
    "ReferralRecorded",
    "RelationDeclared",
    "RenewalApproved",
    "ReportGroup",
    "SwitchRequested",
    "VisitConfirmationSlipSigned",
    "VisitKind",
    "VisitReceived",
]


class VisitKind(StrEnum):
    """VisitType of schemas/events/VisitRegistered.avsc."""

    UNKNOWN = "UNKNOWN"
    NEW = "NEW"
    RETURN = "RETURN"  # 老客户回访
    CLOSED_CUSTOMER = "CLOSED_CUSTOMER"  # 已成交客户
    TOP_UP_DEPOSIT = "TOP_UP_DEPOSIT"  # 补定
    PEER_RESEARCH = "PEER_RESEARCH"  # 同行调研: not a customer, never owned (ROT-14)


class ReportGroup(StrEnum):
    """The WeChat group a 报备 was posted in."""

    CHANNEL = "CHANNEL"  # a channel company's group (OWN-10)
    KONGJIANJIA = "KONGJIANJIA"  # 空间家 employees' group: needs a pre-arranged consultant (OWN-16)


@dataclass(frozen=True, kw_only=True)
class _Event:
    event_id: str
    customer_key: str
    at: datetime
    actor_id: str
    actor_role: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"{type(self).__name__}.at must be timezone-aware")


@dataclass(frozen=True, kw_only=True)
class CallAnswered(_Event):
    """A consultant answered and logged a call from the customer (CALL-05, OWN-07). ``at`` = answered at."""

    staff_id: str


@dataclass(frozen=True, kw_only=True)
class VisitReceived(_Event):
    """The customer's group was registered at the door and received (VIS-03). ``at`` = arrived at.

    ``named_staff_id`` / ``sms_from_staff_id``: the consultant the customer named, or whose SMS they showed, as
    resolved by the front desk (OWN-08). ``channel_mentioned``: the channel the customer mentioned when asked on
    arrival (OWN-14). ``reception_started_at``: when the standard reception began, if it has.
    """

    visit_id: str
    customer_name: str
    phone: str
    received_by: str
    kind: VisitKind = VisitKind.NEW
    named_staff_id: str | None = None
    sms_from_staff_id: str | None = None
    channel_mentioned: str | None = None
    reception_started_at: datetime | None = None
    referrer_key: str | None = None  # the customer who introduced this one (群带性, OWN-03)
    referrer_owner_id: str | None = None  # that customer's owner, resolved by the shell
    employee_mentioned: str | None = None  # an employee the customer says referred them (OWN-09a)


@dataclass(frozen=True, kw_only=True)
class ChannelMentioned(_Event):
    """The customer named a channel after registration (OWN-14: counts only before reception started)."""

    visit_id: str
    channel_id: str


@dataclass(frozen=True, kw_only=True)
class ChannelReported(_Event):
    """A 报备 in a WeChat group (OWN-10). ``at`` = the message's time (reported_at).

    ``agent_barred_at``: when the agent was barred from this project (OWN-15), from the shell's blocklist.
    """

    channel_id: str  # the channel company
    agent_id: str  # the channel person
    customer_name: str
    phone: str
    group: ReportGroup = ReportGroup.CHANNEL
    pre_arranged_staff_id: str | None = None  # OWN-16
    agent_barred_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ReferralRecorded(_Event):
    """An old customer's introduction of this one was recorded (老客户介绍在先, OWN-03)."""

    referring_customer_key: str
    referrer_owner_id: str  # the referring customer's owner at ``at``, resolved by the shell


@dataclass(frozen=True, kw_only=True)
class RelationDeclared(_Event):
    """A consultant recorded that the customer is a relative or friend (OWN-04)."""

    staff_id: str
    relation: str


@dataclass(frozen=True, kw_only=True)
class EmployeeReferralReported(_Event):
    """A company employee referred the customer (沿海员工推荐, OWN-09).

    ``recommended_staff_id``: the consultant the employee nominated, if any yet. ``form_id``: the 员工推荐表.
    """

    employee_id: str
    recommended_staff_id: str | None = None
    form_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class PriceNegotiationStarted(_Event):
    visit_id: str
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class CallbackMade(_Event):
    """A consultant followed the customer up (追访记录, OWN-09d)."""

    staff_id: str


@dataclass(frozen=True, kw_only=True)
class RenewalApproved(_Event):
    """The 售楼部主管 signed the re-registration for ``staff_id`` (OWN-06); ``actor_*`` is the signer."""

    staff_id: str


@dataclass(frozen=True, kw_only=True)
class ExpiryDue(_Event):
    """The shell's timer: the ownership's expiry instant has come (OWN-05)."""


@dataclass(frozen=True, kw_only=True)
class SwitchRequested(_Event):
    """The customer asked to be served by another consultant (OWN-19)."""

    from_staff_id: str
    to_staff_id: str
    requested_by_customer: bool


@dataclass(frozen=True, kw_only=True)
class DisputeRaised(_Event):
    """One of the two consultants of a switch objects to the credit (COM-01)."""

    raised_by: str


@dataclass(frozen=True, kw_only=True)
class DisputeResolved(_Event):
    """The superior decides (OWN-20). ``shares``: (staff, share) pairs replacing the COM-01 default, or None."""

    shares: tuple[tuple[str, Fraction], ...] | None = None


@dataclass(frozen=True, kw_only=True)
class PoachingConfirmed(_Event):
    """撬单 confirmed: the channel agent took a consultant's natural walk-in (OWN-15)."""

    channel_id: str
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class VisitConfirmationSlipSigned(_Event):
    """A 带访确认单 signed by a consultant for a channel (OWN-17: audited)."""

    channel_id: str
    agent_id: str
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class OrderDumpingConfirmed(_Event):
    """甩单 confirmed: the consultant handed a natural customer to a channel (OWN-17)."""

    staff_id: str
    channel_id: str


@dataclass(frozen=True, kw_only=True)
class DealSubscribed(_Event):
    """A 认购 of this customer whose deposit reached finance (销控: PaymentReceived with stops_clock). ``at`` = when
    the order was signed. ``buyer_*`` as on the order, compared with the winning 报备 (OWN-12)."""

    deal_id: str  # the subscription id
    unit_id: str
    signed_by: str
    buyer_name: str | None = None
    buyer_phone: str | None = None


@dataclass(frozen=True, kw_only=True)
class DealRefunded(_Event):
    """退订/退房 processed for the deal (销控: RefundProcessed)."""

    deal_id: str


Event: TypeAlias = (
    CallAnswered
    | VisitReceived
    | ChannelMentioned
    | ChannelReported
    | ReferralRecorded
    | RelationDeclared
    | EmployeeReferralReported
    | PriceNegotiationStarted
    | CallbackMade
    | RenewalApproved
    | ExpiryDue
    | SwitchRequested
    | DisputeRaised
    | DisputeResolved
    | PoachingConfirmed
    | VisitConfirmationSlipSigned
    | OrderDumpingConfirmed
    | DealSubscribed
    | DealRefunded
)
