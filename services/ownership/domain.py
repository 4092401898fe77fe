"""The ownership decider: ``decide``, ``evolve`` and ``fold`` over one customer's stream (rules.md §5, §7).

``decide(state, event, policy)`` answers every event with at least one fact: records of what was observed, the
decisions the rules draw from it (each naming its rule id and the event ids it rests on), or one ``Rejected``
naming the rule that refuses it. ``evolve`` (evolve.py, re-exported here) applies one fact and needs no policy:
every computed value (an expiry, a share) is on the fact. Time is an input (``event.at``); nothing here reads a
clock, makes an id or does I/O.

Ordering: the shell delivers a customer's register events (visits, calls, referrals, decisions) in event-time
order; channel reports may come late and in any order, and the outcome does not depend on it (channel.py).
An ownership whose expiry has passed at ``event.at`` expires first (``OwnershipExpired``), whatever the event.

Decisions are documented in docs/ownership-policy.md.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TypedDict, assert_never

from services.ownership.channel import judge_all, same_person
from services.ownership.events import (
    CallAnswered,
    CallbackMade,
    ChannelMentioned,
    ChannelReported,
    DealRefunded,
    DealSubscribed,
    DisputeRaised,
    DisputeResolved,
    EmployeeReferralReported,
    Event,
    ExpiryDue,
    OrderDumpingConfirmed,
    PoachingConfirmed,
    PriceNegotiationStarted,
    ReferralRecorded,
    RelationDeclared,
    RenewalApproved,
    SwitchRequested,
    VisitConfirmationSlipSigned,
    VisitKind,
    VisitReceived,
)
from services.ownership.evolve import InconsistentHistory, deal_channel, evolve, fold
from services.ownership.facts import (
    COM_01,
    COM_02,
    COM_05,
    INPUT_RULE,
    OWN_01,
    OWN_02,
    OWN_03,
    OWN_04,
    OWN_05,
    OWN_06,
    OWN_07,
    OWN_08,
    OWN_09,
    OWN_12,
    OWN_13,
    OWN_14,
    OWN_15,
    OWN_17,
    OWN_19,
    OWN_20,
    ROLE_RULE,
    SALE_19,
    Basis,
    CallRecorded,
    ChannelAttributed,
    ChannelBarred,
    ChannelMentionRecorded,
    ChannelReportRecorded,
    ChannelReportRejected,
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
    RotationTurnReturned,
    ServedForAbsentOwner,
    Share,
    SwitchRecorded,
    VisitRecorded,
)
from services.ownership.policy import OwnershipPolicy, Role, SwitchCredit
from services.ownership.state import (
    Contact,
    CustomerState,
    Ownership,
    ReportStatus,
    Withholding,
)

__all__ = ["InconsistentHistory", "deal_channel", "decide", "evolve", "fold"]  # evolve.py re-exported


# ---------------------------------------------------------------------------------------------------------------
# Answers


class _Meta(TypedDict):
    customer_key: str
    caused_by: str
    at: datetime
    actor_id: str
    actor_role: str


def _meta(event: Event) -> _Meta:
    """Meta of a record of the event, or of the actor's own decision."""
    return _Meta(
        customer_key=event.customer_key,
        caused_by=event.event_id,
        at=event.at,
        actor_id=event.actor_id,
        actor_role=event.actor_role,
    )


def _auto(event: Event, policy: OwnershipPolicy) -> _Meta:
    """Meta of a consequence the rules draw on their own (the processor decides it)."""
    return _Meta(
        customer_key=event.customer_key,
        caused_by=event.event_id,
        at=event.at,
        actor_id=policy.processor_id,
        actor_role=Role.SYSTEM,
    )


class _Answer:
    """The facts answering one event, and the state after each of them."""

    def __init__(self, state: CustomerState, event: Event, policy: OwnershipPolicy) -> None:
        self.state, self.event, self.policy = state, event, policy
        self.facts: list[Fact] = []

    def add(self, fact: Fact) -> None:
        self.facts.append(fact)
        self.state = evolve(self.state, fact)

    def reject(self, rule_id: str, reason: str) -> None:
        owner = self.state.owner
        self.add(
            Rejected(
                **_meta(self.event),
                event_type=type(self.event).__name__,
                rule_id=rule_id,
                reason=reason,
                current_owner=owner.staff_id if owner is not None else None,
            )
        )

    def note(self, rule_id: str, note: str) -> None:
        self.add(Noted(**_meta(self.event), event_type=type(self.event).__name__, rule_id=rule_id, note=note))

    def assign(
        self, staff_id: str, basis: Basis, rule_id: str, evidence: tuple[str, ...], on_record: bool = True
    ) -> None:
        previous = self.state.owner
        self.add(
            OwnershipAssigned(
                **_auto(self.event, self.policy),
                staff_id=staff_id,
                basis=basis,
                rule_id=rule_id,
                evidence=evidence,
                since=self.event.at,
                expires_at=self.policy.expires_at(self.event.at),
                previous_owner=previous.staff_id if previous is not None else None,
                on_record=on_record,
            )
        )


def _role_refused(event: Event, allowed: frozenset[str]) -> str | None:
    if event.actor_role in allowed:
        return None
    return f"role {event.actor_role} may not {type(event).__name__} (allowed: {', '.join(sorted(allowed))})"


# ---------------------------------------------------------------------------------------------------------------
# decide


def decide(state: CustomerState, event: Event, policy: OwnershipPolicy) -> list[Fact]:
    """The facts answering ``event`` for a customer in ``state``; never empty, never raises for a valid event."""
    answer = _Answer(state, event, policy)
    owner = state.owner
    if owner is not None and owner.expires_at is not None and event.at >= owner.expires_at:  # OWN-05
        answer.add(
            OwnershipExpired(
                **_auto(event, policy), staff_id=owner.staff_id, expired_at=owner.expires_at, rule_id=OWN_05
            )
        )
        if isinstance(event, ExpiryDue) and event.actor_role in policy.expiry_timers:
            return answer.facts
    _decide(answer, event)
    return answer.facts


def _decide(a: _Answer, event: Event) -> None:
    match event:
        case CallAnswered():
            _call(a, event)
        case VisitReceived():
            _visit(a, event)
        case ChannelMentioned():
            _channel_mentioned(a, event)
        case ChannelReported():
            _channel_reported(a, event)
        case ReferralRecorded():
            _claim_recorded_first(a, event.referrer_owner_id, Basis.REFERRAL_CHAIN, OWN_03)
        case RelationDeclared():
            _claim_recorded_first(a, event.staff_id, Basis.RELATIVE, OWN_04)
        case EmployeeReferralReported():
            _employee_referral(a, event)
        case PriceNegotiationStarted():
            a.add(PriceNegotiationRecorded(**_meta(event), visit_id=event.visit_id, staff_id=event.staff_id))
        case CallbackMade():
            a.add(FollowUpRecorded(**_meta(event), staff_id=event.staff_id))
        case RenewalApproved():
            _renewal(a, event)
        case ExpiryDue():
            _expiry_due(a, event)
        case SwitchRequested():
            _switch(a, event)
        case DisputeRaised():
            _dispute_raised(a, event)
        case DisputeResolved():
            _dispute_resolved(a, event)
        case PoachingConfirmed():
            _poaching(a, event)
        case VisitConfirmationSlipSigned():
            _slip(a, event)
        case OrderDumpingConfirmed():
            _dumping(a, event)
        case DealSubscribed():
            _deal(a, event)
        case DealRefunded():
            _refund(a, event)
        case _:
            assert_never(event)


# --- contacts -------------------------------------------------------------------------------------------------


def _call(a: _Answer, ev: CallAnswered) -> None:
    a.add(CallRecorded(**_meta(ev), staff_id=ev.staff_id))
    if a.state.owner is None:  # OWN-07: the answerer owns a phone lead nobody owns yet
        a.assign(ev.staff_id, Basis.CALL_ANSWERER, OWN_07, (ev.event_id,), on_record=a.policy.trace_phone_ownership)


def _proof(ev: VisitReceived) -> tuple[str | None, str]:
    if ev.named_staff_id:
        return ev.named_staff_id, "named"
    if ev.sms_from_staff_id:
        return ev.sms_from_staff_id, "sms"
    return None, ""


def _this_period(state: CustomerState, contacts: tuple[Contact, ...]) -> tuple[Contact, ...]:
    start = state.period_start
    return contacts if start is None else tuple(c for c in contacts if c.at >= start)


def _referral_documents(state: CustomerState, nominee: str, form_id: str | None, before: datetime) -> tuple[str, ...]:
    """OWN-09d: the 员工推荐表, the nominee's 来电登记 and 追访记录, all before the visit; () if any is missing."""
    call = next((c for c in _this_period(state, state.calls) if c.staff_id == nominee and c.at < before), None)
    follow_up = next(
        (f for f in _this_period(state, state.follow_ups) if f.staff_id == nominee and f.at < before), None
    )
    if form_id is None or call is None or follow_up is None:
        return ()
    return (call.event_id, follow_up.event_id)


def _door_owner(state: CustomerState, ev: VisitReceived) -> tuple[str, Basis, str, tuple[str, ...]]:
    """Who owns a customer arriving with no owner on record (OWN-01/03/08/09)."""
    proof_staff, _ = _proof(ev)
    referral = state.employee_referral
    nominee = referral.recommended_staff_id if referral is not None else None
    if proof_staff is not None:
        if proof_staff == ev.referrer_owner_id:  # the newcomer asks for the referrer's salesperson (OWN-03)
            return proof_staff, Basis.REFERRAL_CHAIN, OWN_03, (ev.event_id,)
        if referral is not None and proof_staff == nominee:
            return proof_staff, Basis.EMPLOYEE_REFERRAL, OWN_09, (referral.event_id, ev.event_id)
        own_calls = tuple(c.event_id for c in _this_period(state, state.calls) if c.staff_id == proof_staff)
        return proof_staff, Basis.PROVEN_AT_DOOR, OWN_08, (*own_calls, ev.event_id)
    if referral is not None and nominee is not None:
        if ev.employee_mentioned:  # OWN-09a: the customer mentions the employee, who named a consultant
            return nominee, Basis.EMPLOYEE_REFERRAL, OWN_09, (referral.event_id, ev.event_id)
        documents = _referral_documents(state, nominee, referral.form_id, ev.at)
        if documents:  # OWN-09d: phone-only referral with 推荐表, 来电登记 and 追访记录
            return nominee, Basis.EMPLOYEE_REFERRAL, OWN_09, (referral.event_id, *documents, ev.event_id)
    if state.owner is not None:  # an untraced phone contact, not proven at the door: natural visit (OWN-08)
        return ev.received_by, Basis.NATURAL_VISIT, OWN_08, (ev.event_id,)
    return ev.received_by, Basis.FIRST_CONTACT, OWN_01, (ev.event_id,)


def _visit(a: _Answer, ev: VisitReceived) -> None:
    before = a.state
    a.add(
        VisitRecorded(
            **_meta(ev),
            visit_id=ev.visit_id,
            customer_name=ev.customer_name,
            phone=ev.phone,
            received_by=ev.received_by,
            kind=ev.kind,
            named_staff_id=ev.named_staff_id,
            sms_from_staff_id=ev.sms_from_staff_id,
            channel_mentioned=ev.channel_mentioned,
            reception_started_at=ev.reception_started_at,
            employee_mentioned=ev.employee_mentioned,
        )
    )
    if ev.kind is VisitKind.PEER_RESEARCH:  # ROT-14: 同行调研 is not a customer
        return
    if (taken := _earlier_arrival(before, ev, a.policy)) is not None:
        _correct_first_contact(a, before, ev, *taken)
        return
    owner = before.owner
    proof_staff, proof = _proof(ev)
    if owner is not None and owner.on_record:  # OWN-01: the customer already belongs to someone
        final = owner.staff_id
        expires_at = a.policy.expires_at(ev.at)
        extends = a.policy.extend_on_return_visit and before.first_visit is not None and owner.expires_at is not None
        if extends and owner.expires_at is not None and expires_at > owner.expires_at:  # never shortened by a late
            a.add(OwnershipExtended(**_auto(ev, a.policy), staff_id=final, expires_at=expires_at, rule_id=OWN_05))
    elif owner is not None and proof_staff == owner.staff_id:  # OWN-08: the phone owner, proven at the door
        own_calls = tuple(c.event_id for c in _this_period(before, before.calls) if c.staff_id == owner.staff_id)
        evidence = (*dict.fromkeys((*owner.evidence, *own_calls)), ev.event_id)
        final = owner.staff_id
        a.add(OwnershipProven(**_auto(ev, a.policy), staff_id=final, proof=proof, rule_id=OWN_08, evidence=evidence))
    else:
        final, basis, rule_id, evidence = _door_owner(before, ev)
        if owner is not None and final == owner.staff_id:  # the phone owner received them, or documented (OWN-09d)
            proof = "received" if ev.received_by == final else "documents"
            evidence = (*dict.fromkeys((*owner.evidence, *evidence)),)
            a.add(
                OwnershipProven(**_auto(ev, a.policy), staff_id=final, proof=proof, rule_id=rule_id, evidence=evidence)
            )
        else:
            a.assign(final, basis, rule_id, evidence)
    switch = before.switch
    if final != ev.received_by and (switch is None or switch.to_staff_id != ev.received_by):  # OWN-02, ROT-13
        a.add(
            ServedForAbsentOwner(
                **_auto(ev, a.policy), owner_id=final, helper_id=ev.received_by, visit_id=ev.visit_id, rule_id=OWN_02
            )
        )
    if before.first_visit is None:
        _rejudge_reports(a)


def _earlier_arrival(state: CustomerState, ev: VisitReceived, policy: OwnershipPolicy) -> tuple[Basis, str] | None:
    """OWN-01 by arrival, not by decision order: (basis, rule) if visit ``ev``, arriving before the visit that gave
    the current owner first contact, takes it over; None when the rules keep the owner.

    Only a plain first contact is re-judged: the owner came from the period's first visit (first_contact or
    natural_visit, not proven, referred, renewed or switched), no 认购 of the period froze the attribution, both
    visits fall in one ownership period (OWN-05), and the earlier visit carries no claim of its own (a named
    consultant, an SMS, a referral: those are decided as they come)."""
    first, owner = state.first_visit, state.owner
    if first is None or owner is None or ev.at >= first.arrived_at:
        return None
    if owner.basis not in (Basis.FIRST_CONTACT, Basis.NATURAL_VISIT) or owner.renewed_by is not None:
        return None
    if owner.since != first.arrived_at or first.event_id not in owner.evidence:  # not the first visit's ownership
        return None
    if state.period_start is not None and ev.at < state.period_start:  # a visit of an earlier period
        return None
    if policy.expires_at(ev.at) <= first.arrived_at:  # the earlier ownership would have expired by then (OWN-05)
        return None
    if any(d.period == state.period for d in state.deals) or state.switch is not None:  # frozen at 认购 / OWN-19
        return None
    _, basis, _, _ = _door_owner(replace(state, owner=None), ev)
    if basis is not Basis.FIRST_CONTACT:  # the earlier visit names someone or is an employee's referral
        return None
    calls = sorted(_this_period(state, state.calls), key=lambda c: (c.at, c.event_id))
    phone_owner = next((c.staff_id for c in calls if c.at < ev.at), None)
    if phone_owner is None:
        return Basis.FIRST_CONTACT, OWN_01
    if phone_owner == ev.received_by:  # would have been OwnershipProven{received} (OWN-08): not re-judged
        return None
    return Basis.NATURAL_VISIT, OWN_08  # an untraced phone contact before the earlier visit, not proven at the door


def _correct_first_contact(a: _Answer, before: CustomerState, ev: VisitReceived, basis: Basis, rule_id: str) -> None:
    """The earlier arrival's receiver owns from their arrival (OWN-01/05); every other visit of the period is
    served for them (OWN-02), which supersedes the ServedForAbsentOwner facts naming the previous owner; the 报备
    are judged again against the new first visit (OWN-10…14)."""
    owner, first = before.owner, before.first_visit
    assert owner is not None and first is not None and owner.expires_at is not None
    expires_at = a.policy.expires_at(ev.at)
    if a.policy.extend_on_return_visit:  # the later visits count as return visits of the earlier one
        expires_at = max(expires_at, owner.expires_at)
    staff_id = ev.received_by
    a.add(
        OwnershipFirstContactCorrected(
            **_auto(ev, a.policy),
            staff_id=staff_id,
            basis=basis,
            rule_id=rule_id,
            evidence=(ev.event_id, first.event_id),
            visit_id=ev.visit_id,
            since=ev.at,
            expires_at=expires_at,
            previous_owner=owner.staff_id,
        )
    )
    for visit in sorted(before.visits, key=lambda v: (v.arrived_at, v.event_id)):
        if visit.received_by != staff_id:  # OWN-02: no switch can exist here (see _earlier_arrival)
            a.add(
                ServedForAbsentOwner(
                    **_auto(ev, a.policy),
                    owner_id=staff_id,
                    helper_id=visit.received_by,
                    visit_id=visit.visit_id,
                    rule_id=OWN_02,
                )
            )
    _rejudge_reports(a)


# --- channel 报备 ---------------------------------------------------------------------------------------------


def _channel_mentioned(a: _Answer, ev: ChannelMentioned) -> None:
    visit = a.state.first_visit
    if visit is None or visit.visit_id != ev.visit_id:
        a.reject(OWN_14, f"visit {ev.visit_id} is not the first visit of this ownership period")
        return
    if visit.channel_mentioned is not None:
        a.note(OWN_14, f"the customer had already named channel {visit.channel_mentioned}")
        return
    # OWN-14: a channel counts only if named before the standard reception began; with no recorded start, only
    # what the customer said on arrival (VisitReceived.channel_mentioned) counts.
    started = visit.reception_started_at if visit.reception_started_at is not None else visit.arrived_at
    if started <= ev.at:
        a.reject(OWN_14, "channel named only after the standard reception began: natural visit (自然到访)")
        return
    a.add(ChannelMentionRecorded(**_meta(ev), visit_id=ev.visit_id, channel_id=ev.channel_id))
    _rejudge_reports(a)


def _channel_reported(a: _Answer, ev: ChannelReported) -> None:
    if a.state.report(ev.event_id) is not None:
        a.reject(INPUT_RULE, f"report {ev.event_id} is already recorded")
        return
    a.add(
        ChannelReportRecorded(
            **_meta(ev),
            channel_id=ev.channel_id,
            agent_id=ev.agent_id,
            customer_name=ev.customer_name,
            phone=ev.phone,
            group=ev.group,
            pre_arranged_staff_id=ev.pre_arranged_staff_id,
            agent_barred_at=ev.agent_barred_at,
        )
    )
    _rejudge_reports(a)


def _rejudge_reports(a: _Answer) -> None:
    """Judge all reports of the period again (channel.judge_all) and emit what changed: the new winner first,
    then every report whose rejection is new."""
    state = a.state
    judgement = judge_all(state.reports, state.first_visit, a.policy, dict(state.barred_agents), state.period_start)
    winner, old = judgement.winner, state.channel
    if winner is not None and state.first_visit is not None and (old is None or old.report_id != winner.event_id):
        a.add(
            ChannelAttributed(
                **_auto(a.event, a.policy),
                claim=winner.claim(),
                visit_id=state.first_visit.visit_id,
                rule_id=OWN_13,
                evidence=(winner.event_id, state.first_visit.event_id),
                replaces=old.report_id if old is not None else None,
            )
        )
    for report in sorted(state.reports, key=lambda r: (r.reported_at, r.event_id)):
        verdict, current = judgement.verdicts[report.event_id], a.state.report(report.event_id)
        if verdict.status is not ReportStatus.REJECTED or current is None or current.verdict == verdict:
            continue
        assert verdict.reason is not None and verdict.rule_id is not None
        visit = a.state.first_visit
        a.add(
            ChannelReportRejected(
                **_auto(a.event, a.policy),
                report_id=report.event_id,
                channel_id=report.channel_id,
                agent_id=report.agent_id,
                reason=verdict.reason,
                rule_id=verdict.rule_id,
                detail=verdict.detail,
                evidence=(report.event_id,) if visit is None else (report.event_id, visit.event_id),
            )
        )


# --- referrals ------------------------------------------------------------------------------------------------


def _claim_recorded_first(a: _Answer, staff_id: str, basis: Basis, rule_id: str) -> None:
    """OWN-03 群带性 / OWN-04 relatives: a record made before anyone's first contact gives ownership."""
    owner = a.state.owner
    if owner is None:
        a.assign(staff_id, basis, rule_id, (a.event.event_id,))
    elif owner.staff_id == staff_id:
        a.note(rule_id, f"the customer already belongs to {staff_id}")
    else:
        first = "recorded first" if rule_id == OWN_04 else "recorded first or asked for by the newcomer (不期而遇不算)"
        a.reject(rule_id, f"{owner.staff_id} made first contact at {owner.since.isoformat()}; this counts only {first}")


def _employee_referral(a: _Answer, ev: EmployeeReferralReported) -> None:
    """OWN-09 / COM-03: the four cases of an employee's referral."""
    state, nominee = a.state, ev.recommended_staff_id
    record = EmployeeReferralRecorded(
        **_meta(ev), employee_id=ev.employee_id, recommended_staff_id=nominee, form_id=ev.form_id
    )
    visit, owner = state.first_visit, state.owner
    if nominee is None or visit is None:  # (a) awaiting the nomination, or decided when the customer visits
        a.add(record)
        return
    if any(d.period == state.period for d in state.active_deals()):
        a.reject(OWN_09, "a deal of this customer is already attributed")
        return
    if owner is not None and owner.staff_id == nominee:
        a.add(record)
        return
    documents = _referral_documents(state, nominee, ev.form_id, visit.arrived_at)
    # a 认购 of this period, even one refunded since, means the price was negotiated
    negotiated = any(d.period == state.period for d in state.deals) or (
        state.price_negotiation_at is not None and state.price_negotiation_at <= ev.at
    )
    receiver_owns = owner is None or (
        owner.staff_id == visit.received_by and owner.basis in (Basis.FIRST_CONTACT, Basis.NATURAL_VISIT)
    )
    if not negotiated and receiver_owns:  # (b) during reception, before price negotiation
        a.add(record)
        a.assign(nominee, Basis.EMPLOYEE_REFERRAL, OWN_09, (ev.event_id, visit.event_id))
        if visit.received_by != nominee:
            a.add(RotationTurnReturned(**_auto(ev, a.policy), staff_id=visit.received_by, rule_id=OWN_09))
    elif documents:  # (d) phone-only referral, documented before the visit
        a.add(record)
        a.assign(nominee, Basis.EMPLOYEE_REFERRAL, OWN_09, (ev.event_id, *documents, visit.event_id))
    elif negotiated:  # (c) after price negotiation the deal stays with the receiving consultant
        a.reject(OWN_09, "the employee was contacted after price negotiation: the receiving consultant keeps it")
    else:
        assert owner is not None
        a.reject(OWN_01, f"the customer already belongs to {owner.staff_id} ({owner.basis})")


# --- expiry and renewal ---------------------------------------------------------------------------------------


def _expiry_due(a: _Answer, ev: ExpiryDue) -> None:
    if refused := _role_refused(ev, a.policy.expiry_timers):
        a.reject(ROLE_RULE, refused)
        return
    owner = a.state.owner
    if owner is None:
        a.reject(OWN_05, "nobody owns the customer")
    elif owner.expires_at is None:
        a.reject(OWN_05, "the ownership does not expire while a deal stands")
    else:
        a.reject(OWN_05, f"the ownership expires at {owner.expires_at.isoformat()}")


def _duration(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} hours"


def _renewal(a: _Answer, ev: RenewalApproved) -> None:
    """OWN-06: only the 售楼部主管 renews; from ``renewal_window`` before the expiry, or after it while the
    customer is still unclaimed."""
    if refused := _role_refused(ev, a.policy.renewers):
        a.reject(OWN_06, refused)
        return
    owner, last = a.state.owner, a.state.last_owner
    if owner is not None:
        if owner.staff_id != ev.staff_id:
            a.reject(OWN_06, f"the customer belongs to {owner.staff_id}")
            return
        if owner.expires_at is None:
            a.reject(OWN_06, "the ownership does not expire while a deal stands")
            return
        opens = owner.expires_at - a.policy.renewal_window
        if ev.at < opens:
            a.reject(
                OWN_06, f"renewal opens at {opens.isoformat()}, {_duration(a.policy.renewal_window)} before the expiry"
            )
            return
        renewed, start = owner, owner.expires_at  # renewing early loses no days
    elif last is not None and last.staff_id == ev.staff_id:
        renewed, start = last, ev.at
    else:
        a.reject(OWN_06, f"{ev.staff_id} has no expired ownership of this customer to renew")
        return
    a.add(
        OwnershipRenewed(
            **_meta(ev),
            staff_id=renewed.staff_id,
            basis=renewed.basis,
            since=renewed.since,
            expires_at=a.policy.expires_at(start),
            rule_id=OWN_06,
            evidence=(*renewed.evidence, ev.event_id),
        )
    )


# --- switch and dispute ---------------------------------------------------------------------------------------


def _switch(a: _Answer, ev: SwitchRequested) -> None:
    owner, switch = a.state.owner, a.state.switch
    if not ev.requested_by_customer:
        a.reject(OWN_19, "only the customer may ask for another consultant; consultants may not pick customers")
    elif owner is None:
        a.reject(OWN_19, "nobody owns the customer: the next receiver simply serves them")
    elif switch is not None:
        a.reject(OWN_19, f"already switched from {switch.from_staff_id} to {switch.to_staff_id}; ask the superior")
    elif ev.from_staff_id != owner.staff_id:
        a.reject(OWN_19, f"the customer belongs to {owner.staff_id}, not {ev.from_staff_id}")
    elif ev.to_staff_id == ev.from_staff_id:
        a.reject(INPUT_RULE, "a switch needs two different consultants")
    else:
        a.add(SwitchRecorded(**_meta(ev), from_staff_id=ev.from_staff_id, to_staff_id=ev.to_staff_id, rule_id=OWN_19))


def _dispute_raised(a: _Answer, ev: DisputeRaised) -> None:
    switch = a.state.switch
    if switch is None:
        a.reject(COM_01, "no customer-requested switch: an absent owner's customer stays theirs (OWN-02)")
    elif ev.raised_by not in (switch.from_staff_id, switch.to_staff_id):
        a.reject(COM_01, "only the old or the new consultant of the switch may dispute it")
    elif a.state.dispute_open or a.state.split is not None:
        a.reject(COM_01, "the switch is already disputed")
    else:
        old, new = a.policy.switch_split
        shares = (Share(switch.from_staff_id, old), Share(switch.to_staff_id, new))
        a.add(DisputeOpened(**_meta(ev), raised_by=ev.raised_by, rule_id=COM_01))
        a.add(
            CommissionSplit(
                **_auto(ev, a.policy), shares=shares, rule_id=COM_01, evidence=(switch.event_id, ev.event_id)
            )
        )


def _dispute_resolved(a: _Answer, ev: DisputeResolved) -> None:
    if refused := _role_refused(ev, a.policy.dispute_resolvers):
        a.reject(OWN_20, refused)
        return
    switch = a.state.switch
    if not a.state.dispute_open or switch is None:
        a.reject(OWN_20, "no open dispute")
        return
    if ev.shares is not None:
        staff = [s for s, _ in ev.shares]
        parties = {switch.from_staff_id, switch.to_staff_id}
        if len(set(staff)) != len(staff) or not set(staff) <= parties:
            a.reject(INPUT_RULE, f"shares go to the consultants of the switch: {sorted(parties)}")
            return
        if any(share < 0 for _, share in ev.shares) or sum((share for _, share in ev.shares), start=0) != 1:
            a.reject(INPUT_RULE, "shares are at least 0 and add up to 1")
            return
        shares = tuple(Share(s, share) for s, share in ev.shares)
        a.add(CommissionSplit(**_meta(ev), shares=shares, rule_id=OWN_20, evidence=(switch.event_id, ev.event_id)))
    a.add(DisputeClosed(**_meta(ev), rule_id=OWN_20))


# --- 撬单 and 甩单 --------------------------------------------------------------------------------------------


def _poaching(a: _Answer, ev: PoachingConfirmed) -> None:
    if refused := _role_refused(ev, a.policy.poaching_confirmers):
        a.reject(OWN_15, refused)
        return
    evidence = (ev.event_id, *(r.event_id for r in a.state.reports if r.agent_id == ev.agent_id))
    a.add(
        CommissionWithheld(
            **_meta(ev),
            channel_id=ev.channel_id,
            agent_id=ev.agent_id,
            deal_id=None,
            reason="撬单 confirmed: 成交佣金不予发放 (OWN-15)",
            rule_id=COM_05,
            evidence=evidence,
        )
    )
    if all(agent != ev.agent_id for agent, _ in a.state.barred_agents):
        a.add(
            ChannelBarred(
                **_meta(ev), channel_id=ev.channel_id, agent_id=ev.agent_id, rule_id=OWN_15, evidence=evidence
            )
        )
        _rejudge_reports(a)


def _slip(a: _Answer, ev: VisitConfirmationSlipSigned) -> None:
    if a.state.first_visit is None:
        a.reject(OWN_17, "no visit in this ownership period for the slip to confirm")
        return
    claim = a.state.channel
    matches = claim is not None and (claim.channel_id, claim.agent_id) == (ev.channel_id, ev.agent_id)
    if matches:
        detail = "matches the winning 报备"
    else:
        winner = f"the winning 报备 is {claim.channel_id}/{claim.agent_id}" if claim else "the visit is a natural visit"
        detail = f"no valid 报备 by {ev.channel_id}/{ev.agent_id}: {winner}; 甩单 suspected, review"
    a.add(
        ConfirmationSlipChecked(
            **_auto(ev, a.policy),
            channel_id=ev.channel_id,
            agent_id=ev.agent_id,
            staff_id=ev.staff_id,
            matches=matches,
            rule_id=OWN_17,
            detail=detail,
        )
    )


def _dumping(a: _Answer, ev: OrderDumpingConfirmed) -> None:
    if refused := _role_refused(ev, a.policy.dumping_confirmers):
        a.reject(OWN_17, refused)
        return
    evidence = (ev.event_id,)
    a.add(
        OrderDumpingFlagged(
            **_meta(ev), staff_id=ev.staff_id, channel_id=ev.channel_id, rule_id=OWN_17, evidence=evidence
        )
    )
    a.add(
        CommissionWithheld(
            **_meta(ev),
            channel_id=ev.channel_id,
            agent_id=None,
            deal_id=None,
            reason=f"甩单 by {ev.staff_id} confirmed: the customer is a natural visit (OWN-17)",
            rule_id=OWN_17,
            evidence=evidence,
        )
    )


# --- deals ----------------------------------------------------------------------------------------------------


def _credit(
    state: CustomerState, ev: DealSubscribed, owner: Ownership, policy: OwnershipPolicy
) -> tuple[tuple[Share, ...], str, tuple[str, ...]]:
    """Shares of the staff credit, the rule and the evidence: a disputed switch splits (COM-01, or the superior's
    shares, OWN-20); an undisputed one credits per policy (OWN-19); otherwise the owner takes it all, also when a
    helper signed for them (OWN-01/02, COM-02)."""
    one = Fraction(1)
    if state.split is not None:
        return state.split.shares, state.split.rule_id, (*owner.evidence, *state.split.evidence, ev.event_id)
    switch = state.switch
    if switch is not None:
        to_new = policy.undisputed_switch_credit is SwitchCredit.NEW_SALESPERSON
        credited = switch.to_staff_id if to_new else owner.staff_id
        return (Share(credited, one),), OWN_19, (*owner.evidence, switch.event_id, ev.event_id)
    rule_id = owner.rule_id if ev.signed_by == owner.staff_id else COM_02  # the helper who signed: no credit
    return (Share(owner.staff_id, one),), rule_id, (*owner.evidence, ev.event_id)


def _buyer_mismatch(state: CustomerState, ev: DealSubscribed) -> Withholding | None:
    """OWN-12 re-checked at the deal: the buyer on the order must still be the reported customer."""
    claim = state.channel
    if claim is None or (ev.buyer_name is None and ev.buyer_phone is None):
        return None
    name = ev.buyer_name if ev.buyer_name is not None else claim.customer_name
    phone = ev.buyer_phone if ev.buyer_phone is not None else claim.phone
    if same_person(name, phone, claim.customer_name, claim.phone):
        return None
    reason = "the buyer on the order differs from the 报备: natural visit (OWN-12)"
    return Withholding(claim.channel_id, claim.agent_id, ev.deal_id, reason, OWN_12, (claim.report_id, ev.event_id))


def _deal(a: _Answer, ev: DealSubscribed) -> None:
    if a.state.deal(ev.deal_id) is not None:
        a.reject(INPUT_RULE, f"deal {ev.deal_id} is already attributed")
        return
    if a.state.owner is None:  # nobody owned the customer: the consultant who signed is the first contact now
        a.assign(ev.signed_by, Basis.FIRST_CONTACT, OWN_01, (ev.event_id,))
    state = a.state
    owner = state.owner
    assert owner is not None
    shares, rule_id, evidence = _credit(state, ev, owner, a.policy)
    mismatch = _buyer_mismatch(state, ev)
    judged = state if mismatch is None else replace(state, withheld=(*state.withheld, mismatch))
    claim, status, channel_rule, channel_reason = deal_channel(judged, ev.deal_id)
    a.add(
        DealAttributed(
            **_auto(ev, a.policy),
            deal_id=ev.deal_id,
            unit_id=ev.unit_id,
            signed_by=ev.signed_by,
            shares=shares,
            basis=owner.basis,
            rule_id=rule_id,
            evidence=tuple(dict.fromkeys(evidence)),
            channel=claim,
            channel_status=status,
            channel_rule=channel_rule,
            channel_reason=channel_reason,
            freezes_ownership=a.policy.deal_freezes_ownership,
        )
    )
    if mismatch is not None:
        a.add(
            CommissionWithheld(
                **_auto(ev, a.policy),
                channel_id=mismatch.channel_id,
                agent_id=mismatch.agent_id,
                deal_id=ev.deal_id,
                reason=mismatch.reason,
                rule_id=mismatch.rule_id,
                evidence=mismatch.evidence,
            )
        )


def _refund(a: _Answer, ev: DealRefunded) -> None:
    deal = a.state.deal(ev.deal_id)
    if deal is None:
        a.reject(INPUT_RULE, f"deal {ev.deal_id} was never attributed to this customer")
        return
    if deal.reversed_at is not None:
        a.reject(INPUT_RULE, f"deal {ev.deal_id} was already reversed")
        return
    owner = a.state.owner
    others = [d for d in a.state.active_deals() if d.deal_id != ev.deal_id]
    thaws = owner is not None and owner.expires_at is None and not others
    expires_at = a.policy.expires_at(ev.at) if thaws else None  # a fresh period from the refund
    a.add(DealReversed(**_auto(ev, a.policy), deal_id=ev.deal_id, rule_id=SALE_19, owner_expires_at=expires_at))
