"""What the ownership decider answers: facts, each with the rule it applies and the evidence (event ids) it rests on.

Every fact carries ``customer_key``, ``caused_by`` (the event decided), ``at`` (that event's time), ``actor_id`` and
``actor_role``: the event's actor for records and for a person's own decision (a renewal, a confirmed 撬单), the
processor (``OwnershipPolicy.processor_id``, role SYSTEM) for consequences the rules draw automatically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import TypeAlias

__all__ = [
    "Basis",
    "CallRecorded",
    "ChannelAttributed",
    "ChannelBarred",
    "ChannelClaim",
    "ChannelMentionRecorded",
    "ChannelReportRecorded",
    "ChannelReportRejected",
    "ChannelStatus",
    "CommissionSplit",
    "CommissionWithheld",
    "ConfirmationSlipChecked",
    "DealAttributed",
    "DealReversed",
    "DisputeClosed",
    "DisputeOpened",
    "EmployeeReferralRecorded",
    "Fact",
    "FollowUpRecorded",
    "Noted",
    "OrderDumpingFlagged",
    "OwnershipAssigned",
    "OwnershipExpired",
    "OwnershipExtended",
    "OwnershipFirstContactCorrected",
    "OwnershipProven",
    "OwnershipRenewed",
    "PriceNegotiationRecorded",
    "Rejected",
    "RejectionReason",
    "RotationTurnReturned",
    "ServedForAbsentOwner",
    "Share",
    "SwitchRecorded",
    "VisitRecorded",
]

# Rule ids named on decisions and refusals (rules.md §5 OWN, §7 COM).
OWN_01 = "OWN-01"  # 第一接触点: first contact owns
OWN_02 = "OWN-02"  # absent owner: the helper closes for no credit
OWN_03 = "OWN-03"  # 群带性: referral chain, only when named or recorded first
OWN_04 = "OWN-04"  # relatives and friends, only when recorded first
OWN_05 = "OWN-05"  # 时效性: 3 months
OWN_06 = "OWN-06"  # renewal signed by the 售楼部主管
OWN_07 = "OWN-07"  # the call answerer owns a phone lead
OWN_08 = "OWN-08"  # proof at the door: named or SMS, else natural visit
OWN_09 = "OWN-09"  # employee referrals
OWN_10 = "OWN-10"  # 报备 in the WeChat group before the visit
OWN_11 = "OWN-11"  # at least 30 minutes before arrival
OWN_12 = "OWN-12"  # name and phone match the visit register
OWN_13 = "OWN-13"  # earlier report wins
OWN_14 = "OWN-14"  # channel not mentioned at arrival → natural visit
OWN_15 = "OWN-15"  # 撬单 → commission withheld, agent barred
OWN_16 = "OWN-16"  # 空间家: report and pre-arrange a consultant
OWN_17 = "OWN-17"  # 带访确认单 audited; 甩单 → dismissal
OWN_19 = "OWN-19"  # switch at the customer's request
OWN_20 = "OWN-20"  # disputes settled by the superior
COM_01 = "COM-01"  # disputed switch → 5:5
COM_02 = "COM-02"  # no credit for helping an absent owner
COM_03 = "COM-03"  # employee-referral attribution
COM_04 = "COM-04"  # channel commission only for the valid earliest report
COM_05 = "COM-05"  # 撬单 → channel commission withheld
SALE_19 = "SALE-19"  # refund processed → credit reversed
ROLE_RULE = "§12"  # the authorization matrix does not allow this role
INPUT_RULE = "INPUT"  # the event itself is malformed or a duplicate


class Basis(StrEnum):
    """Why a staff member owns the customer (OwnershipAssigned.basis in rules.md §1)."""

    FIRST_CONTACT = "first_contact"  # received the customer in person, nobody before (OWN-01)
    CALL_ANSWERER = "call_answerer"  # answered the customer's call first (OWN-07)
    PROVEN_AT_DOOR = "proven_at_door"  # the customer named them or showed their SMS (OWN-08)
    NATURAL_VISIT = "natural_visit"  # received the customer whose earlier phone contact was not proven (OWN-08)
    REFERRAL_CHAIN = "referral_chain"  # 群带性 (OWN-03)
    RELATIVE = "relative"  # relative or friend recorded first (OWN-04)
    EMPLOYEE_REFERRAL = "employee_referral"  # nominated by the referring employee (OWN-09)


class RejectionReason(StrEnum):
    """Why a 报备 earns the channel nothing (label of channel_reports_rejected_total)."""

    AFTER_ARRIVAL = "after_arrival"  # OWN-10: reported at or after the customer's arrival
    LEAD_TIME = "lt_lead_time"  # OWN-11: less than 30 minutes before arrival
    MISMATCH = "mismatch"  # OWN-12: name or phone differ from the visit register
    EARLIER_REPORT_WON = "earlier_report_won"  # OWN-13
    NOT_MENTIONED = "not_mentioned"  # OWN-14: no channel named before reception started
    AGENT_BARRED = "agent_barred"  # OWN-15: the agent was barred before reporting
    NO_PRE_ARRANGED_CONSULTANT = "no_pre_arranged_consultant"  # OWN-16
    STALE = "stale"  # OWN-05: reported during an ownership that has since expired


class ChannelStatus(StrEnum):
    PAYABLE = "payable"
    WITHHELD = "withheld"
    NOT_APPLICABLE = "not_applicable"  # natural visit: no valid 报备


@dataclass(frozen=True)
class Share:
    staff_id: str
    share: Fraction


@dataclass(frozen=True)
class ChannelClaim:
    """The winning 报备."""

    report_id: str  # the ChannelReported event id
    channel_id: str
    agent_id: str
    reported_at: datetime
    customer_name: str
    phone: str


@dataclass(frozen=True, kw_only=True)
class _Fact:
    customer_key: str
    caused_by: str
    at: datetime
    actor_id: str
    actor_role: str


# --- records: the event's data, kept as evidence -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CallRecorded(_Fact):
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class VisitRecorded(_Fact):
    """``at`` = arrived at."""

    visit_id: str
    customer_name: str
    phone: str
    received_by: str
    kind: str
    named_staff_id: str | None
    sms_from_staff_id: str | None
    channel_mentioned: str | None
    reception_started_at: datetime | None
    employee_mentioned: str | None


@dataclass(frozen=True, kw_only=True)
class ChannelMentionRecorded(_Fact):
    visit_id: str
    channel_id: str


@dataclass(frozen=True, kw_only=True)
class ChannelReportRecorded(_Fact):
    """``at`` = reported at."""

    channel_id: str
    agent_id: str
    customer_name: str
    phone: str
    group: str
    pre_arranged_staff_id: str | None
    agent_barred_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class FollowUpRecorded(_Fact):
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class PriceNegotiationRecorded(_Fact):
    visit_id: str
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class EmployeeReferralRecorded(_Fact):
    """Kept until the visit decides it (OWN-09a/d); without a nominee it only awaits the employee's choice."""

    employee_id: str
    recommended_staff_id: str | None
    form_id: str | None


# --- ownership ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OwnershipAssigned(_Fact):
    """``staff_id`` owns the customer from ``since`` until ``expires_at``. ``previous_owner`` is whoever owned the
    customer just before (a transfer), never an active owner silently overwritten. ``on_record``: honoured at the
    door without proof (False only for an untraced phone contact, OWN-08)."""

    staff_id: str
    basis: Basis
    rule_id: str
    evidence: tuple[str, ...]
    since: datetime
    expires_at: datetime
    previous_owner: str | None
    on_record: bool


@dataclass(frozen=True, kw_only=True)
class OwnershipFirstContactCorrected(_Fact):
    """OWN-01 judged by arrival, not by decision order: visit ``visit_id`` arrived before the visit that gave
    ``previous_owner`` first contact, so its receiver ``staff_id`` owns the customer from ``since`` (its arrival)
    until ``expires_at`` and it becomes the period's first visit. It replaces the later visit's ownership, it is
    not a second first contact; ``ServedForAbsentOwner`` facts naming ``previous_owner`` for visits of the period
    are superseded (the decider re-issues them for the new owner in the same answer)."""

    staff_id: str
    basis: Basis  # first_contact (OWN-01), or natural_visit (OWN-08) after an untraced phone contact
    rule_id: str
    evidence: tuple[str, ...]  # (the earlier visit, the visit it takes first contact from)
    visit_id: str
    since: datetime
    expires_at: datetime
    previous_owner: str


@dataclass(frozen=True, kw_only=True)
class OwnershipProven(_Fact):
    """A phone owner's claim honoured at the visit (OWN-08): the customer named them or showed their SMS, they
    received the customer themselves, or (OWN-09d) they produced the employee-referral documents."""

    staff_id: str
    proof: str  # "named" | "sms" | "received" | "documents"
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class OwnershipExpired(_Fact):
    staff_id: str
    expired_at: datetime
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class OwnershipExtended(_Fact):
    """Only with ``OwnershipPolicy.extend_on_return_visit``: a return visit restarts the period."""

    staff_id: str
    expires_at: datetime
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class OwnershipRenewed(_Fact):
    """The 售楼部主管's signature (``actor_id``) renews ``staff_id``'s ownership until ``expires_at`` (OWN-06)."""

    staff_id: str
    basis: Basis
    since: datetime
    expires_at: datetime
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ServedForAbsentOwner(_Fact):
    """The owner was not the one who received this visit: the helper serves for no credit (OWN-02, ROT-13)."""

    owner_id: str
    helper_id: str
    visit_id: str
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class RotationTurnReturned(_Fact):
    """The receiving consultant handed the customer to the employee's nominee and gets the turn back (OWN-09b)."""

    staff_id: str
    rule_id: str


# --- channel 报备 ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChannelAttributed(_Fact):
    """The earliest valid 报备 wins the customer for its channel (OWN-10…13). ``replaces``: the report it beat."""

    claim: ChannelClaim
    visit_id: str
    rule_id: str
    evidence: tuple[str, ...]
    replaces: str | None


@dataclass(frozen=True, kw_only=True)
class ChannelReportRejected(_Fact):
    report_id: str
    channel_id: str
    agent_id: str
    reason: RejectionReason
    rule_id: str
    detail: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CommissionWithheld(_Fact):
    """The channel's commission is not paid: on ``deal_id`` only, or (None) on every deal of this ownership."""

    channel_id: str
    agent_id: str | None
    deal_id: str | None
    reason: str
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ChannelBarred(_Fact):
    """The agent may bring no more customers to this project (OWN-15). The shell keeps the project blocklist."""

    channel_id: str
    agent_id: str
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ConfirmationSlipChecked(_Fact):
    """A 带访确认单 compared with the attribution; ``matches=False`` is a 甩单 suspicion for review (OWN-17)."""

    channel_id: str
    agent_id: str
    staff_id: str
    matches: bool
    rule_id: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class OrderDumpingFlagged(_Fact):
    """甩单 confirmed: the consultant is to be dismissed (一律开除, OWN-17); the PEN module issues it."""

    staff_id: str
    channel_id: str
    rule_id: str
    evidence: tuple[str, ...]


# --- switch and dispute ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SwitchRecorded(_Fact):
    from_staff_id: str
    to_staff_id: str
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class DisputeOpened(_Fact):
    raised_by: str
    rule_id: str


@dataclass(frozen=True, kw_only=True)
class CommissionSplit(_Fact):
    """Shares of the staff credit for this ownership's deals (COM-01 default, or the superior's, OWN-20)."""

    shares: tuple[Share, ...]
    rule_id: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class DisputeClosed(_Fact):
    rule_id: str


# --- deals ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DealAttributed(_Fact):
    """Who is credited for the deal and what the channel is owed, frozen at 认购. ``freezes_ownership``: the
    ownership stops expiring while the deal stands."""

    deal_id: str
    unit_id: str
    signed_by: str
    shares: tuple[Share, ...]
    basis: Basis
    rule_id: str
    evidence: tuple[str, ...]
    channel: ChannelClaim | None
    channel_status: ChannelStatus
    channel_rule: str
    channel_reason: str
    freezes_ownership: bool


@dataclass(frozen=True, kw_only=True)
class DealReversed(_Fact):
    """The refund reverses the deal's credit. ``owner_expires_at``: the ownership's new expiry when the refund
    ends the freeze (a fresh period from the refund), else None."""

    deal_id: str
    rule_id: str
    owner_expires_at: datetime | None


# --- answers that change nothing ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Noted(_Fact):
    """Accepted, but nothing changes (e.g. a referral to the customer's current owner)."""

    event_type: str
    rule_id: str
    note: str


@dataclass(frozen=True, kw_only=True)
class Rejected(_Fact):
    """The event is refused; the state does not change."""

    event_type: str
    rule_id: str
    reason: str
    current_owner: str | None


Fact: TypeAlias = (
    CallRecorded
    | VisitRecorded
    | ChannelMentionRecorded
    | ChannelReportRecorded
    | FollowUpRecorded
    | PriceNegotiationRecorded
    | EmployeeReferralRecorded
    | OwnershipAssigned
    | OwnershipFirstContactCorrected
    | OwnershipProven
    | OwnershipExpired
    | OwnershipExtended
    | OwnershipRenewed
    | ServedForAbsentOwner
    | RotationTurnReturned
    | ChannelAttributed
    | ChannelReportRejected
    | CommissionWithheld
    | ChannelBarred
    | ConfirmationSlipChecked
    | OrderDumpingFlagged
    | SwitchRecorded
    | DisputeOpened
    | CommissionSplit
    | DisputeClosed
    | DealAttributed
    | DealReversed
    | Noted
    | Rejected
)
