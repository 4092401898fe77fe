"""``evolve`` and ``fold``: the customer's state after each fact the decider emitted.

Needs no policy: every computed value (an expiry, a share, a channel status) is on the fact, so replaying the
stored facts always rebuilds the state the decider had (``fold(history) == live state``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import assert_never

from services.ownership.events import VisitKind
from services.ownership.facts import (
    COM_04,
    OWN_13,
    CallRecorded,
    ChannelAttributed,
    ChannelBarred,
    ChannelClaim,
    ChannelMentionRecorded,
    ChannelReportRecorded,
    ChannelReportRejected,
    ChannelStatus,
    CommissionSplit,
    CommissionWithheld,
    ConfirmationSlipChecked,
    DealAttributed,
    DealReversed,
    DisputeClosed,
    DisputeOpened,
    EmployeeReferralRecorded,
    Fact,
    FollowUpRecorded,
    Noted,
    OrderDumpingFlagged,
    OwnershipAssigned,
    OwnershipExpired,
    OwnershipExtended,
    OwnershipFirstContactCorrected,
    OwnershipProven,
    OwnershipRenewed,
    PriceNegotiationRecorded,
    Rejected,
    RejectionReason,
    RotationTurnReturned,
    ServedForAbsentOwner,
    SwitchRecorded,
    VisitRecorded,
)
from services.ownership.state import (
    INITIAL,
    PENDING,
    Contact,
    CustomerState,
    DealRecord,
    FirstVisit,
    Ownership,
    PendingReferral,
    Report,
    ReportStatus,
    SplitDecision,
    Switch,
    Verdict,
    Withholding,
)

__all__ = ["InconsistentHistory", "deal_channel", "evolve", "fold"]

# Rejections that do not depend on the visit a report is judged against survive the end of a period.
_VISIT_INDEPENDENT = frozenset({RejectionReason.AGENT_BARRED, RejectionReason.NO_PRE_ARRANGED_CONSULTANT})


class InconsistentHistory(ValueError):
    """A fact that cannot follow the state it is applied to: the history was not produced by ``decide``."""


def _natural_visit_reason(state: CustomerState) -> tuple[str, str]:
    rejected = sorted(
        (r for r in state.reports if r.verdict.status is ReportStatus.REJECTED),
        key=lambda r: (r.reported_at, r.event_id),
    )
    if rejected:
        first = rejected[0]
        return (
            first.verdict.rule_id or COM_04,
            f"natural visit (自然到访): 报备 {first.event_id} {first.verdict.detail}",
        )
    if state.reports:
        return COM_04, "no 报备 judged valid yet"
    return COM_04, "natural visit (自然到访): no 报备"


def deal_channel(state: CustomerState, deal_id: str) -> tuple[ChannelClaim | None, ChannelStatus, str, str]:
    """The channel claim on a deal of the current period: (claim, status, rule id, reason) (COM-04/05, OWN-12…17)."""
    claim = state.channel
    if claim is None:
        rule_id, reason = _natural_visit_reason(state)
        return None, ChannelStatus.NOT_APPLICABLE, rule_id, reason
    for held in state.withheld:
        if held.deal_id == deal_id or (held.deal_id is None and held.channel_id == claim.channel_id):
            return claim, ChannelStatus.WITHHELD, held.rule_id, held.reason
    return claim, ChannelStatus.PAYABLE, COM_04, f"报备 {claim.report_id} by {claim.channel_id} is the earliest valid"


def _owner(state: CustomerState, fact: Fact) -> Ownership:
    if state.owner is None:
        raise InconsistentHistory(f"{type(fact).__name__} needs an owner, which the state does not have")
    return state.owner


def _refresh_deals(state: CustomerState) -> CustomerState:
    """Recompute the channel fields of the current period's standing deals after the channel picture changed."""
    deals = []
    for deal in state.deals:
        if deal.period == state.period and deal.reversed_at is None:
            claim, status, rule_id, reason = deal_channel(state, deal.deal_id)
            deal = replace(deal, channel=claim, channel_status=status, channel_rule=rule_id, channel_reason=reason)
        deals.append(deal)
    return replace(state, deals=tuple(deals))


def _set_verdict(state: CustomerState, report_id: str, verdict: Verdict, fact: Fact) -> CustomerState:
    if state.report(report_id) is None:
        raise InconsistentHistory(f"{type(fact).__name__} names report {report_id}, which is not recorded")
    reports = tuple(replace(r, verdict=verdict) if r.event_id == report_id else r for r in state.reports)
    return replace(state, reports=reports)


def _expired(state: CustomerState, fact: OwnershipExpired) -> CustomerState:
    """The ownership period ends: everything tied to it is cleared; reports made since the expiry wait for the
    next period's first visit."""
    reports = tuple(
        r if r.verdict.reason in _VISIT_INDEPENDENT else replace(r, verdict=PENDING)
        for r in state.reports
        if r.reported_at >= fact.expired_at
    )
    return replace(
        state,
        owner=None,
        last_owner=_owner(state, fact),
        period=state.period + 1,
        period_start=fact.expired_at,
        first_visit=None,
        visits=(),
        reports=reports,
        channel=None,
        withheld=(),
        price_negotiation_at=None,
        employee_referral=None,
        switch=None,
        split=None,
        dispute_open=False,
    )


def evolve(state: CustomerState, fact: Fact) -> CustomerState:
    """The state after ``fact``. ``Rejected`` and ``Noted`` leave it unchanged."""
    match fact:
        case Rejected() | Noted() | ServedForAbsentOwner() | RotationTurnReturned() | ConfirmationSlipChecked():
            return state
        case CallRecorded():
            return replace(state, calls=(*state.calls, Contact(fact.staff_id, fact.caused_by, fact.at)))
        case FollowUpRecorded():
            return replace(state, follow_ups=(*state.follow_ups, Contact(fact.staff_id, fact.caused_by, fact.at)))
        case PriceNegotiationRecorded():
            earliest = fact.at if state.price_negotiation_at is None else min(state.price_negotiation_at, fact.at)
            return replace(state, price_negotiation_at=earliest)
        case VisitRecorded():
            if fact.kind == VisitKind.PEER_RESEARCH:
                return state
            visit = FirstVisit(
                event_id=fact.caused_by,
                visit_id=fact.visit_id,
                arrived_at=fact.at,
                customer_name=fact.customer_name,
                phone=fact.phone,
                received_by=fact.received_by,
                channel_mentioned=fact.channel_mentioned,
                reception_started_at=fact.reception_started_at,
            )
            first = visit if state.first_visit is None else state.first_visit
            return replace(state, first_visit=first, visits=(*state.visits, visit))
        case ChannelMentionRecorded():
            if state.first_visit is None or state.first_visit.visit_id != fact.visit_id:
                raise InconsistentHistory(f"ChannelMentionRecorded for visit {fact.visit_id}, not the first visit")
            mentioned = replace(state.first_visit, channel_mentioned=fact.channel_id)
            visits = tuple(mentioned if v == state.first_visit else v for v in state.visits)
            return replace(state, first_visit=mentioned, visits=visits)
        case ChannelReportRecorded():
            report = Report(
                event_id=fact.caused_by,
                channel_id=fact.channel_id,
                agent_id=fact.agent_id,
                reported_at=fact.at,
                customer_name=fact.customer_name,
                phone=fact.phone,
                group=fact.group,
                pre_arranged_staff_id=fact.pre_arranged_staff_id,
                agent_barred_at=fact.agent_barred_at,
            )
            return replace(state, reports=(*state.reports, report))
        case EmployeeReferralRecorded():
            if fact.recommended_staff_id is None:
                return state
            referral = PendingReferral(
                fact.caused_by, fact.employee_id, fact.recommended_staff_id, fact.form_id, fact.at
            )
            return replace(state, employee_referral=referral)
        case OwnershipAssigned():
            owner = Ownership(
                staff_id=fact.staff_id,
                basis=fact.basis,
                rule_id=fact.rule_id,
                since=fact.since,
                expires_at=fact.expires_at,
                evidence=fact.evidence,
                on_record=fact.on_record,
            )
            return replace(state, owner=owner, last_owner=None)
        case OwnershipFirstContactCorrected():
            # OWN-01 by arrival: the earlier visit becomes the period's first visit, its receiver the owner
            _owner(state, fact)
            earlier = next((v for v in state.visits if v.visit_id == fact.visit_id), None)
            if earlier is None:
                raise InconsistentHistory(f"{type(fact).__name__} names visit {fact.visit_id}, not of this period")
            owner = Ownership(
                staff_id=fact.staff_id,
                basis=fact.basis,
                rule_id=fact.rule_id,
                since=fact.since,
                expires_at=fact.expires_at,
                evidence=fact.evidence,
                on_record=True,
            )
            return replace(state, owner=owner, first_visit=earlier)
        case OwnershipProven():
            return replace(state, owner=replace(_owner(state, fact), on_record=True, evidence=fact.evidence))
        case OwnershipExpired():
            return _expired(state, fact)
        case OwnershipExtended():
            return replace(state, owner=replace(_owner(state, fact), expires_at=fact.expires_at))
        case OwnershipRenewed():
            owner = Ownership(
                staff_id=fact.staff_id,
                basis=fact.basis,
                rule_id=fact.rule_id,
                since=fact.since,
                expires_at=fact.expires_at,
                evidence=fact.evidence,
                on_record=True,
                renewed_by=fact.actor_id,
            )
            return replace(state, owner=owner, last_owner=None)
        case ChannelAttributed():
            if state.first_visit is None:
                raise InconsistentHistory("ChannelAttributed without a first visit")
            state = _set_verdict(state, fact.claim.report_id, Verdict(ReportStatus.WINNING), fact)
            if fact.replaces is not None:
                lost = Verdict(
                    ReportStatus.REJECTED, RejectionReason.EARLIER_REPORT_WON, OWN_13, f"{fact.claim.report_id} won"
                )
                state = _set_verdict(state, fact.replaces, lost, fact)
            return _refresh_deals(replace(state, channel=fact.claim))
        case ChannelReportRejected():
            verdict = Verdict(ReportStatus.REJECTED, fact.reason, fact.rule_id, fact.detail)
            state = _set_verdict(state, fact.report_id, verdict, fact)
            if state.channel is not None and state.channel.report_id == fact.report_id:
                state = replace(state, channel=None)
            return _refresh_deals(state)
        case CommissionWithheld():
            held = Withholding(fact.channel_id, fact.agent_id, fact.deal_id, fact.reason, fact.rule_id, fact.evidence)
            return _refresh_deals(replace(state, withheld=(*state.withheld, held)))
        case ChannelBarred():
            return replace(state, barred_agents=(*state.barred_agents, (fact.agent_id, fact.at)))
        case OrderDumpingFlagged():
            return replace(state, dumping_flags=(*state.dumping_flags, fact.staff_id))
        case SwitchRecorded():
            return replace(state, switch=Switch(fact.caused_by, fact.from_staff_id, fact.to_staff_id, fact.at))
        case DisputeOpened():
            return replace(state, dispute_open=True)
        case DisputeClosed():
            return replace(state, dispute_open=False)
        case CommissionSplit():
            split = SplitDecision(fact.shares, fact.rule_id, fact.evidence)
            deals = tuple(
                replace(
                    d,
                    shares=fact.shares,
                    rule_id=fact.rule_id,
                    evidence=tuple(dict.fromkeys((*d.evidence, *fact.evidence))),
                )
                if d.period == state.period and d.reversed_at is None
                else d
                for d in state.deals
            )
            return replace(state, split=split, deals=deals)
        case DealAttributed():
            owner = _owner(state, fact)
            deal = DealRecord(
                deal_id=fact.deal_id,
                customer_key=fact.customer_key,
                unit_id=fact.unit_id,
                at=fact.at,
                signed_by=fact.signed_by,
                period=state.period,
                shares=fact.shares,
                basis=fact.basis,
                rule_id=fact.rule_id,
                evidence=fact.evidence,
                channel=fact.channel,
                channel_status=fact.channel_status,
                channel_rule=fact.channel_rule,
                channel_reason=fact.channel_reason,
            )
            owner = replace(owner, on_record=True, expires_at=None if fact.freezes_ownership else owner.expires_at)
            return replace(state, owner=owner, deals=(*state.deals, deal))
        case DealReversed():
            if state.deal(fact.deal_id) is None:
                raise InconsistentHistory(f"DealReversed names deal {fact.deal_id}, which is not attributed")
            deals = tuple(replace(d, reversed_at=fact.at) if d.deal_id == fact.deal_id else d for d in state.deals)
            state = replace(state, deals=deals)
            if fact.owner_expires_at is not None:
                state = replace(state, owner=replace(_owner(state, fact), expires_at=fact.owner_expires_at))
            return state
        case _:
            assert_never(fact)


def fold(facts: Iterable[Fact], state: CustomerState = INITIAL) -> CustomerState:
    """Replay ``facts`` onto ``state`` (by default a customer nobody has met)."""
    for fact in facts:
        state = evolve(state, fact)
    return state
