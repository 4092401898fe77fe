"""The 销控 decider: commands, facts, unit state, and the pure functions ``decide``, ``evolve`` and ``fold``.

One unit (房源) is one decision stream. ``decide(state, command, policy)`` answers every command with at least one
fact: the accepted facts, or one rejection naming the rule (``SALE-xx``, ``§12`` for a role the authorization matrix
does not allow, ``INPUT`` for a malformed command). ``evolve`` applies one fact; rejections never change state.
Time is an input (``command.at``); nothing here reads a clock, generates an id or does I/O. Facts carry the
command's id as ``caused_by`` so a shell can derive event ids deterministically.

The state machine is documented in docs/sales-policy.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias, TypedDict, TypeVar, assert_never

from services.sales.policy import Role, SalesPolicy

# Rule ids named on rejections (rules.md §6 and §12).
SALE_01 = "SALE-01"  # the manager verifies availability before 销控
SALE_02 = "SALE-02"  # no 认购 without the manager's confirmed lock
SALE_04 = "SALE-04"  # 退订 after 销控: the manager cancels the registration
SALE_06 = "SALE-06"  # one active claim per unit: no 一房二卖
SALE_07 = "SALE-07"  # salespeople may not release units
SALE_09 = "SALE-09"  # pay within 10 minutes of signing, or the order is abandoned
SALE_10 = "SALE-10"  # only finance handles money
SALE_11 = "SALE-11"  # payments are taken against the open subscription, with a receipt
SALE_17 = "SALE-17"  # refunds start with an application to the manager
SALE_18 = "SALE-18"  # the manager reviews every refund application
SALE_19 = "SALE-19"  # no refund is processed before the developer approves
ROLE_RULE = "§12"  # the authorization matrix does not allow this role
INPUT_RULE = "INPUT"  # the command itself is malformed


class UnitStatus(StrEnum):
    AVAILABLE = "available"
    LOCK_REQUESTED = "lock_requested"
    LOCKED = "locked"
    SUBSCRIBED = "subscribed"  # 认购 signed, the SALE-09 clock is running
    DEPOSIT_PAID = "deposit_paid"
    CONTRACTED = "contracted"  # 签约
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"  # only between RefundProcessed and the LockReleased that follows it


class RefundKind(StrEnum):
    """Symbols of schemas/types/RefundKind.avsc."""

    UNKNOWN = "UNKNOWN"
    CANCEL_SUBSCRIPTION = "CANCEL_SUBSCRIPTION"  # 退订: before the contract
    RETURN_UNIT = "RETURN_UNIT"  # 退房: after the contract


class RefundStage(StrEnum):
    REQUESTED = "requested"
    REVIEWED = "reviewed"
    SUBMITTED = "submitted"
    APPROVED = "approved"


class LockReleaseReason(StrEnum):
    """Symbols of LockReleaseReason in schemas/events/UnitLockReleased.avsc."""

    UNKNOWN = "UNKNOWN"
    MANAGER_RELEASE = "MANAGER_RELEASE"
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"
    REFUND_PROCESSED = "REFUND_PROCESSED"
    CUSTOMER_WITHDREW = "CUSTOMER_WITHDREW"
    INVALID_LOCK = "INVALID_LOCK"


class AbandonReason(StrEnum):
    """Symbols of AbandonReason in schemas/events/SubscriptionAbandoned.avsc."""

    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"
    CUSTOMER_WITHDREW = "CUSTOMER_WITHDREW"


# Reasons a manager may give; the others are consequences the decider emits itself.
MANAGER_RELEASE_REASONS: frozenset[str] = frozenset(
    {LockReleaseReason.MANAGER_RELEASE, LockReleaseReason.CUSTOMER_WITHDREW, LockReleaseReason.INVALID_LOCK}
)


_T = TypeVar("_T")


class InconsistentHistory(ValueError):
    """A fact that cannot follow the state it is applied to: the history was not produced by ``decide``."""


# ---------------------------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True, kw_only=True)
class _Command:
    command_id: str  # event id of the request; facts carry it as caused_by
    unit_id: str
    actor_id: str
    actor_role: str  # a Role symbol
    at: datetime  # when the command was recorded; tz-aware

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"{type(self).__name__}.at must be timezone-aware")


@dataclass(frozen=True, kw_only=True)
class RequestLock(_Command):
    customer_id: str
    staff_id: str  # the consultant asking


@dataclass(frozen=True, kw_only=True)
class ConfirmLock(_Command):
    customer_id: str


@dataclass(frozen=True, kw_only=True)
class SignSubscription(_Command):
    subscription_id: str
    customer_id: str
    price_fen: int


@dataclass(frozen=True, kw_only=True)
class ReceivePayment(_Command):
    subscription_id: str
    amount_fen: int
    kind: str  # a PaymentKind symbol
    receipt_no: str


@dataclass(frozen=True, kw_only=True)
class ReleaseLock(_Command):
    reason: str = LockReleaseReason.MANAGER_RELEASE  # one of MANAGER_RELEASE_REASONS


@dataclass(frozen=True, kw_only=True)
class ExpireDeadline(_Command):
    subscription_id: str


@dataclass(frozen=True, kw_only=True)
class RequestRefund(_Command):
    refund_id: str
    kind: str  # a RefundKind symbol
    reason: str = ""  # the customer's stated reason


@dataclass(frozen=True, kw_only=True)
class ReviewRefund(_Command):
    refund_id: str


@dataclass(frozen=True, kw_only=True)
class SubmitRefundToDeveloper(_Command):
    refund_id: str


@dataclass(frozen=True, kw_only=True)
class ApproveRefund(_Command):
    refund_id: str
    approved_amount_fen: int | None = None  # None: everything paid so far


@dataclass(frozen=True, kw_only=True)
class RejectRefund(_Command):
    refund_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ProcessRefund(_Command):
    refund_id: str


@dataclass(frozen=True, kw_only=True)
class SignContract(_Command):
    subscription_id: str


Command: TypeAlias = (
    RequestLock
    | ConfirmLock
    | SignSubscription
    | ReceivePayment
    | ReleaseLock
    | ExpireDeadline
    | RequestRefund
    | ReviewRefund
    | SubmitRefundToDeveloper
    | ApproveRefund
    | RejectRefund
    | ProcessRefund
    | SignContract
)


# ---------------------------------------------------------------------------------------------------------------
# Facts


@dataclass(frozen=True, kw_only=True)
class _Fact:
    unit_id: str
    caused_by: str  # command_id of the command decided
    at: datetime  # when it happened (the command's time)
    actor_id: str  # who caused it: the command's actor, or SalesPolicy.processor_id for automatic consequences
    actor_role: str


@dataclass(frozen=True, kw_only=True)
class LockRequested(_Fact):
    customer_id: str
    staff_id: str


@dataclass(frozen=True, kw_only=True)
class Locked(_Fact):
    """The manager's 销控; ``actor_id`` is confirmed_by."""

    customer_id: str
    staff_id: str | None  # the consultant who asked, if there was a request
    request_id: str | None  # caused_by of that LockRequested


@dataclass(frozen=True, kw_only=True)
class LockRejected(_Fact):
    """Answer to a RequestLock that was refused; ``caused_by`` is the rejected request."""

    customer_id: str
    staff_id: str
    rule_id: str
    reason: str
    current_holder: str | None


@dataclass(frozen=True, kw_only=True)
class LockRequestLapsed(_Fact):
    """A lock request not confirmed within SalesPolicy.lock_request_expiry; emitted only when that is set."""

    request_id: str
    customer_id: str
    staff_id: str
    requested_at: datetime
    lapsed_at: datetime


@dataclass(frozen=True, kw_only=True)
class LockReleased(_Fact):
    customer_id: str
    subscription_id: str | None
    reason: LockReleaseReason


@dataclass(frozen=True, kw_only=True)
class SubscriptionSigned(_Fact):
    """``at`` is signed_at; ``actor_id`` the consultant who signed it with the customer."""

    subscription_id: str
    customer_id: str
    price_fen: int
    payment_deadline_at: datetime


@dataclass(frozen=True, kw_only=True)
class PaymentReceived(_Fact):
    """``actor_id`` is received_by (finance)."""

    subscription_id: str
    customer_id: str
    amount_fen: int
    kind: str
    receipt_no: str
    toward_price: bool  # a kind in SalesPolicy.clock_stopping_kinds
    stops_clock: bool  # this payment brought the price paid to the minimum deposit: subscribed → deposit_paid
    deadline_at: datetime | None  # the SALE-09 deadline that was running when it arrived; None once stopped


@dataclass(frozen=True, kw_only=True)
class SubscriptionAbandoned(_Fact):
    subscription_id: str
    customer_id: str
    staff_id: str  # the consultant who signed it (KPI-10)
    deadline_at: datetime
    amount_paid_fen: int
    reason: AbandonReason


@dataclass(frozen=True, kw_only=True)
class ContractSigned(_Fact):
    subscription_id: str
    customer_id: str


@dataclass(frozen=True, kw_only=True)
class _RefundFact(_Fact):
    refund_id: str
    subscription_id: str
    kind: RefundKind


@dataclass(frozen=True, kw_only=True)
class RefundRequested(_RefundFact):
    customer_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RefundReviewed(_RefundFact):
    pass


@dataclass(frozen=True, kw_only=True)
class RefundSubmittedToDeveloper(_RefundFact):
    pass


@dataclass(frozen=True, kw_only=True)
class RefundApproved(_RefundFact):
    approved_amount_fen: int


@dataclass(frozen=True, kw_only=True)
class RefundRejected(_RefundFact):
    reason: str


@dataclass(frozen=True, kw_only=True)
class RefundProcessed(_RefundFact):
    refunded_amount_fen: int


@dataclass(frozen=True, kw_only=True)
class CommandRejected(_Fact):
    """Refusal of any command other than RequestLock; ``caused_by`` is the refused command."""

    command_type: str
    rule_id: str
    reason: str
    current_holder: str | None


Rejection: TypeAlias = LockRejected | CommandRejected

Fact: TypeAlias = (
    LockRequested
    | Locked
    | LockRejected
    | LockRequestLapsed
    | LockReleased
    | SubscriptionSigned
    | PaymentReceived
    | SubscriptionAbandoned
    | ContractSigned
    | RefundRequested
    | RefundReviewed
    | RefundSubmittedToDeveloper
    | RefundApproved
    | RefundRejected
    | RefundProcessed
    | CommandRejected
)


def is_double_sale_attempt(fact: Fact) -> bool:
    """A refusal by the 一房二卖 guard; the count of these is a metric (unit_double_sale_attempts_total), not state."""
    return isinstance(fact, LockRejected | CommandRejected) and fact.rule_id == SALE_06


# ---------------------------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class LockRequest:
    request_id: str
    customer_id: str
    staff_id: str
    requested_at: datetime


@dataclass(frozen=True)
class Holder:
    """The one active claim on a unit once the manager locked it (SALE-06)."""

    customer_id: str
    staff_id: str | None
    request_id: str | None
    confirmed_by: str
    locked_at: datetime


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    customer_id: str
    staff_id: str
    price_fen: int
    signed_at: datetime
    deadline_at: datetime
    paid_fen: int = 0  # everything finance took for it
    price_paid_fen: int = 0  # of which towards the price (the kinds that can stop the clock)
    deposit_paid_at: datetime | None = None  # when the clock stopped
    contract_signed_at: datetime | None = None


@dataclass(frozen=True)
class RefundProgress:
    refund_id: str
    kind: RefundKind
    stage: RefundStage
    resume_status: UnitStatus  # where a rejected refund returns the unit: deposit_paid or contracted
    requested_at: datetime
    approved_amount_fen: int | None = None


@dataclass(frozen=True)
class UnitState:
    """A unit's 销控 state. At most one of ``pending`` / ``holder`` is set: the unit's single active claim."""

    status: UnitStatus = UnitStatus.AVAILABLE
    pending: LockRequest | None = None
    holder: Holder | None = None
    subscription: Subscription | None = None
    refund: RefundProgress | None = None

    @property
    def claimant(self) -> str | None:
        """Customer id of the active claim (request, lock or subscription), if any."""
        if self.holder is not None:
            return self.holder.customer_id
        return self.pending.customer_id if self.pending is not None else None


INITIAL = UnitState()

_SOLD = (UnitStatus.DEPOSIT_PAID, UnitStatus.CONTRACTED)


def check_invariants(state: UnitState) -> list[str]:
    """Violations of the state's consistency rules; empty for every state ``fold`` can reach."""
    s, sub, problems = state.status, state.subscription, []
    if state.pending is not None and state.holder is not None:
        problems.append("two active claims: a pending request and a holder")
    if (state.pending is not None) != (s is UnitStatus.LOCK_REQUESTED):
        problems.append(f"{s}: pending request {'missing' if state.pending is None else 'unexpected'}")
    if (state.holder is None) != (s in (UnitStatus.AVAILABLE, UnitStatus.LOCK_REQUESTED)):
        problems.append(f"{s}: holder {'missing' if state.holder is None else 'unexpected'}")
    if (sub is None) != (s in (UnitStatus.AVAILABLE, UnitStatus.LOCK_REQUESTED, UnitStatus.LOCKED)):
        problems.append(f"{s}: subscription {'missing' if sub is None else 'unexpected'}")
    if (state.refund is not None) != (s is UnitStatus.REFUND_PENDING):
        problems.append(f"{s}: refund {'missing' if state.refund is None else 'unexpected'}")
    if sub is not None:
        if state.holder is not None and sub.customer_id != state.holder.customer_id:
            problems.append("subscription customer differs from the lock holder")
        if (sub.deposit_paid_at is None) != (s is UnitStatus.SUBSCRIBED):
            problems.append(f"{s}: deposit {'missing' if sub.deposit_paid_at is None else 'unexpected'}")
        contracted = s is UnitStatus.CONTRACTED
        if s is UnitStatus.REFUND_PENDING and state.refund is not None:
            contracted = state.refund.resume_status is UnitStatus.CONTRACTED
        if s is not UnitStatus.REFUNDED and (sub.contract_signed_at is not None) != contracted:
            problems.append(f"{s}: contract {'missing' if sub.contract_signed_at is None else 'unexpected'}")
    if state.refund is not None and state.refund.resume_status not in _SOLD:
        problems.append(f"refund would resume to {state.refund.resume_status}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# decide


class _Meta(TypedDict):
    unit_id: str
    caused_by: str
    at: datetime
    actor_id: str
    actor_role: str


def _meta(command: Command) -> _Meta:
    return _Meta(
        unit_id=command.unit_id,
        caused_by=command.command_id,
        at=command.at,
        actor_id=command.actor_id,
        actor_role=command.actor_role,
    )


def _processor_meta(command: Command, policy: SalesPolicy) -> _Meta:
    """Meta of a consequence the decider emits on its own account (e.g. the release after a processed refund)."""
    return _Meta(
        unit_id=command.unit_id,
        caused_by=command.command_id,
        at=command.at,
        actor_id=policy.processor_id,
        actor_role=Role.SYSTEM,
    )


def _reject(state: UnitState, command: Command, rule_id: str, reason: str) -> list[Fact]:
    if isinstance(command, RequestLock):
        return [
            LockRejected(
                **_meta(command),
                customer_id=command.customer_id,
                staff_id=command.staff_id,
                rule_id=rule_id,
                reason=reason,
                current_holder=state.claimant,
            )
        ]
    return [
        CommandRejected(
            **_meta(command),
            command_type=type(command).__name__,
            rule_id=rule_id,
            reason=reason,
            current_holder=state.claimant,
        )
    ]


ROLE_REFUSAL = "role "  # how every refusal for the actor's role (§12) begins


def is_role_refusal(fact: Fact) -> bool:
    """A refusal because the actor's role may not do this at all (the API answers 403), not because of the
    unit's state (409)."""
    return isinstance(fact, LockRejected | CommandRejected) and fact.reason.startswith(ROLE_REFUSAL)


def _role_refused(command: Command, allowed: frozenset[str]) -> str | None:
    if command.actor_role in allowed:
        return None
    return (
        f"{ROLE_REFUSAL}{command.actor_role} may not {type(command).__name__} (allowed: {', '.join(sorted(allowed))})"
    )


def decide(state: UnitState, command: Command, policy: SalesPolicy) -> list[Fact]:
    """The facts answering ``command`` on a unit in ``state``; never empty, never raises for a well-formed command."""
    facts: list[Fact] = []
    lapsed = _lapsed_request(state, command, policy)
    if lapsed is not None:  # a lapsed request stops blocking the unit before the command is looked at
        facts.append(lapsed)
        state = evolve(state, lapsed)
    facts.extend(_decide(state, command, policy))
    return facts


def _lapsed_request(state: UnitState, command: Command, policy: SalesPolicy) -> LockRequestLapsed | None:
    pending, expiry = state.pending, policy.lock_request_expiry
    if expiry is None or pending is None or command.at < pending.requested_at + expiry:
        return None
    return LockRequestLapsed(
        **_processor_meta(command, policy),
        request_id=pending.request_id,
        customer_id=pending.customer_id,
        staff_id=pending.staff_id,
        requested_at=pending.requested_at,
        lapsed_at=pending.requested_at + expiry,
    )


def _decide(state: UnitState, command: Command, policy: SalesPolicy) -> list[Fact]:
    match command:
        case RequestLock():
            return _request_lock(state, command, policy)
        case ConfirmLock():
            return _confirm_lock(state, command, policy)
        case SignSubscription():
            return _sign_subscription(state, command, policy)
        case ReceivePayment():
            return _receive_payment(state, command, policy)
        case ReleaseLock():
            return _release_lock(state, command, policy)
        case ExpireDeadline():
            return _expire_deadline(state, command, policy)
        case SignContract():
            return _sign_contract(state, command, policy)
        case RequestRefund():
            return _request_refund(state, command, policy)
        case ReviewRefund() | SubmitRefundToDeveloper() | ApproveRefund() | RejectRefund() | ProcessRefund():
            return _refund_step(state, command, policy)
        case _:
            assert_never(command)


def _request_lock(state: UnitState, cmd: RequestLock, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.lock_requesters):
        return _reject(state, cmd, ROLE_RULE, refused)
    if state.status is not UnitStatus.AVAILABLE:  # SALE-01/02/06: one active claim per unit
        return _reject(state, cmd, SALE_06, f"一房二卖: unit is {state.status} for customer {state.claimant}")
    return [LockRequested(**_meta(cmd), customer_id=cmd.customer_id, staff_id=cmd.staff_id)]


def _confirm_lock(state: UnitState, cmd: ConfirmLock, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.lock_confirmers):  # SALE-02: only the 销售经理 does 销控
        return _reject(state, cmd, SALE_02, refused)
    if state.status is UnitStatus.AVAILABLE:  # the manager may lock directly; confirming is the SALE-01 check
        return [Locked(**_meta(cmd), customer_id=cmd.customer_id, staff_id=None, request_id=None)]
    pending = state.pending
    if state.status is UnitStatus.LOCK_REQUESTED and pending is not None:
        if pending.customer_id != cmd.customer_id:
            return _reject(state, cmd, SALE_02, f"the lock was requested for customer {pending.customer_id}")
        return [
            Locked(**_meta(cmd), customer_id=cmd.customer_id, staff_id=pending.staff_id, request_id=pending.request_id)
        ]
    return _reject(state, cmd, SALE_01, f"房源不可销控: unit is {state.status} for customer {state.claimant}")


def _sign_subscription(state: UnitState, cmd: SignSubscription, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.subscription_signers):
        return _reject(state, cmd, ROLE_RULE, refused)
    if cmd.price_fen <= 0:
        return _reject(state, cmd, INPUT_RULE, "price_fen must be positive")
    holder = state.holder
    if state.status is UnitStatus.LOCKED and holder is not None and holder.customer_id == cmd.customer_id:
        return [
            SubscriptionSigned(
                **_meta(cmd),
                subscription_id=cmd.subscription_id,
                customer_id=cmd.customer_id,
                price_fen=cmd.price_fen,
                payment_deadline_at=cmd.at + policy.payment_deadline,  # SALE-09
            )
        ]
    if state.claimant not in (None, cmd.customer_id) or state.subscription is not None:  # SALE-06
        return _reject(state, cmd, SALE_06, f"一房二卖: unit is {state.status} for customer {state.claimant}")
    return _reject(state, cmd, SALE_02, f"认购 needs a lock confirmed by the 销售经理; unit is {state.status}")


def _receive_payment(state: UnitState, cmd: ReceivePayment, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.payment_receivers):  # SALE-10: 销售人员严禁经手定金或楼款
        return _reject(state, cmd, SALE_10, refused)
    if cmd.amount_fen <= 0:
        return _reject(state, cmd, INPUT_RULE, "amount_fen must be positive")
    sub = state.subscription
    if sub is None or sub.subscription_id != cmd.subscription_id:
        return _reject(state, cmd, SALE_11, f"no open subscription {cmd.subscription_id} on this unit")
    if state.status is UnitStatus.REFUND_PENDING:
        return _reject(state, cmd, SALE_19, "a refund is in its approval chain; no money is taken meanwhile")
    toward_price = cmd.kind in policy.clock_stopping_kinds
    running = state.status is UnitStatus.SUBSCRIBED
    if running and cmd.at >= sub.deadline_at:  # SALE-09: the deadline instant itself is late
        return _reject(state, cmd, SALE_09, f"视为放弃: payment at {cmd.at.isoformat()} is not before the deadline")
    price_paid = sub.price_paid_fen + (cmd.amount_fen if toward_price else 0)
    return [
        PaymentReceived(
            **_meta(cmd),
            subscription_id=sub.subscription_id,
            customer_id=sub.customer_id,
            amount_fen=cmd.amount_fen,
            kind=cmd.kind,
            receipt_no=cmd.receipt_no,
            toward_price=toward_price,
            stops_clock=running and toward_price and price_paid >= policy.minimum_deposit_fen,
            deadline_at=sub.deadline_at if running else None,
        )
    ]


def _release_lock(state: UnitState, cmd: ReleaseLock, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.lock_releasers):  # SALE-04/07: 销售人员无权放房源
        return _reject(state, cmd, SALE_07, refused)
    if cmd.reason not in MANAGER_RELEASE_REASONS:
        return _reject(state, cmd, INPUT_RULE, f"a manager releases with one of {sorted(MANAGER_RELEASE_REASONS)}")
    if state.status is UnitStatus.AVAILABLE:
        return _reject(state, cmd, SALE_04, "nothing to release: the unit is available")
    claimant, sub = state.claimant, state.subscription
    if claimant is None or state.status not in (UnitStatus.LOCK_REQUESTED, UnitStatus.LOCKED, UnitStatus.SUBSCRIBED):
        # Money was taken: only the refund chain (退订/退房, SALE-17…19) may end this claim.
        return _reject(state, cmd, SALE_19, f"unit is {state.status}: release it through a refund")
    facts: list[Fact] = []
    if sub is not None and cmd.reason == LockReleaseReason.CUSTOMER_WITHDREW:  # 退订 before paying (SALE-04)
        facts.append(_abandoned(cmd, sub, AbandonReason.CUSTOMER_WITHDREW))
    reason = LockReleaseReason(cmd.reason)
    sub_id = sub.subscription_id if sub is not None else None
    facts.append(LockReleased(**_meta(cmd), customer_id=claimant, subscription_id=sub_id, reason=reason))
    return facts


def _abandoned(cmd: Command, sub: Subscription, reason: AbandonReason) -> SubscriptionAbandoned:
    return SubscriptionAbandoned(
        **_meta(cmd),
        subscription_id=sub.subscription_id,
        customer_id=sub.customer_id,
        staff_id=sub.staff_id,
        deadline_at=sub.deadline_at,
        amount_paid_fen=sub.paid_fen,
        reason=reason,
    )


def _expire_deadline(state: UnitState, cmd: ExpireDeadline, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.deadline_expirers):
        return _reject(state, cmd, ROLE_RULE, refused)
    sub = state.subscription
    if sub is None or sub.subscription_id != cmd.subscription_id:
        return _reject(state, cmd, SALE_09, f"subscription {cmd.subscription_id} is not open on this unit")
    if state.status is not UnitStatus.SUBSCRIBED:
        return _reject(state, cmd, SALE_09, f"the clock stopped: deposit paid at {sub.deposit_paid_at}")
    if cmd.at < sub.deadline_at:
        return _reject(state, cmd, SALE_09, f"the deadline {sub.deadline_at.isoformat()} has not passed")
    return [  # SALE-09: 视为放弃, the unit goes back on sale
        _abandoned(cmd, sub, AbandonReason.PAYMENT_TIMEOUT),
        LockReleased(
            **_meta(cmd),
            customer_id=sub.customer_id,
            subscription_id=sub.subscription_id,
            reason=LockReleaseReason.PAYMENT_TIMEOUT,
        ),
    ]


def _sign_contract(state: UnitState, cmd: SignContract, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.contract_signers):
        return _reject(state, cmd, ROLE_RULE, refused)
    sub = state.subscription
    if sub is None:
        return _reject(state, cmd, SALE_02, f"no subscription on this unit; it is {state.status}")
    if sub.subscription_id != cmd.subscription_id:
        return _reject(state, cmd, SALE_06, f"一房二卖: unit is subscribed under {sub.subscription_id}")
    if state.status is UnitStatus.SUBSCRIBED:
        return _reject(state, cmd, SALE_09, "the deposit has not reached finance yet")
    if state.status is not UnitStatus.DEPOSIT_PAID:
        rule = SALE_19 if state.status is UnitStatus.REFUND_PENDING else SALE_06
        return _reject(state, cmd, rule, f"unit is {state.status}")
    return [ContractSigned(**_meta(cmd), subscription_id=sub.subscription_id, customer_id=sub.customer_id)]


# 退订 cancels a subscription before the contract, 退房 returns a unit after it (RefundKind.avsc).
_REFUND_KIND_OF: dict[UnitStatus, RefundKind] = {
    UnitStatus.DEPOSIT_PAID: RefundKind.CANCEL_SUBSCRIPTION,
    UnitStatus.CONTRACTED: RefundKind.RETURN_UNIT,
}


def _request_refund(state: UnitState, cmd: RequestRefund, policy: SalesPolicy) -> list[Fact]:
    if refused := _role_refused(cmd, policy.refund_requesters):
        return _reject(state, cmd, ROLE_RULE, refused)
    if state.refund is not None:
        return _reject(state, cmd, SALE_19, f"refund {state.refund.refund_id} is already in progress")
    expected, sub = _REFUND_KIND_OF.get(state.status), state.subscription
    if expected is None or sub is None:  # 退订 before paying is a manager release (CUSTOMER_WITHDREW, SALE-04)
        return _reject(state, cmd, SALE_17, f"nothing to refund: unit is {state.status}")
    if cmd.kind != expected:
        return _reject(state, cmd, SALE_17, f"unit is {state.status}: the refund kind is {expected}")
    return [
        RefundRequested(
            **_meta(cmd),
            refund_id=cmd.refund_id,
            subscription_id=sub.subscription_id,
            kind=expected,
            customer_id=sub.customer_id,
            reason=cmd.reason,
        )
    ]


class _RefundBase(TypedDict):
    refund_id: str
    subscription_id: str
    kind: RefundKind


_RefundStep: TypeAlias = ReviewRefund | SubmitRefundToDeveloper | ApproveRefund | RejectRefund | ProcessRefund


def _refund_step(state: UnitState, cmd: _RefundStep, policy: SalesPolicy) -> list[Fact]:
    """SALE-18/19: requested → reviewed (manager) → submitted (manager) → approved/rejected (developer) → processed."""
    allowed, role_rule = _refund_roles(cmd, policy)
    if refused := _role_refused(cmd, allowed):
        return _reject(state, cmd, role_rule, refused)
    refund, sub = state.refund, state.subscription
    if refund is None or sub is None or refund.refund_id != cmd.refund_id:
        return _reject(state, cmd, SALE_19, f"no refund {cmd.refund_id} in progress on this unit")
    needed = _needed_stage(cmd, policy)
    if refund.stage not in needed:
        # SALE-18 when the manager's review is what is missing (or done twice); otherwise the SALE-19 chain order.
        review_step = isinstance(cmd, ReviewRefund) or (
            isinstance(cmd, SubmitRefundToDeveloper) and refund.stage is RefundStage.REQUESTED
        )
        rule = SALE_18 if review_step else SALE_19
        wanted = " or ".join(needed)
        return _reject(state, cmd, rule, f"refund is {refund.stage}; {type(cmd).__name__} needs it {wanted}")
    base = _RefundBase(refund_id=refund.refund_id, subscription_id=sub.subscription_id, kind=refund.kind)
    match cmd:
        case ReviewRefund():
            return [RefundReviewed(**_meta(cmd), **base)]
        case SubmitRefundToDeveloper():
            return [RefundSubmittedToDeveloper(**_meta(cmd), **base)]
        case ApproveRefund():
            amount = sub.paid_fen if cmd.approved_amount_fen is None else cmd.approved_amount_fen
            if not 0 <= amount <= sub.paid_fen:
                return _reject(state, cmd, INPUT_RULE, f"approved amount must be within 0…{sub.paid_fen} fen paid")
            return [RefundApproved(**_meta(cmd), **base, approved_amount_fen=amount)]
        case RejectRefund():
            return [RefundRejected(**_meta(cmd), **base, reason=cmd.reason)]
        case ProcessRefund():
            paid_back = refund.approved_amount_fen if refund.approved_amount_fen is not None else sub.paid_fen
            return [
                RefundProcessed(**_meta(cmd), **base, refunded_amount_fen=paid_back),
                LockReleased(
                    **_processor_meta(cmd, policy),
                    customer_id=sub.customer_id,
                    subscription_id=sub.subscription_id,
                    reason=LockReleaseReason.REFUND_PROCESSED,
                ),
            ]
        case _:
            assert_never(cmd)


def _refund_roles(cmd: _RefundStep, policy: SalesPolicy) -> tuple[frozenset[str], str]:
    match cmd:
        case ReviewRefund():
            return policy.refund_reviewers, SALE_18
        case SubmitRefundToDeveloper():
            return policy.refund_submitters, SALE_19
        case ApproveRefund():
            return policy.refund_approvers, SALE_19
        case RejectRefund():
            return policy.refund_approvers | policy.refund_review_rejecters, SALE_19
        case ProcessRefund():
            return policy.refund_processors, SALE_10  # paying money back is handling money
        case _:
            assert_never(cmd)


def _needed_stage(cmd: _RefundStep, policy: SalesPolicy) -> tuple[RefundStage, ...]:
    match cmd:
        case ReviewRefund():
            return (RefundStage.REQUESTED,)
        case SubmitRefundToDeveloper():
            return (RefundStage.REVIEWED,)
        case ApproveRefund():
            return (RefundStage.SUBMITTED,)
        case RejectRefund():
            # The developer decides once it is submitted; the manager may turn it down at review, before that.
            stages: tuple[RefundStage, ...] = ()
            if cmd.actor_role in policy.refund_approvers:
                stages += (RefundStage.SUBMITTED,)
            if cmd.actor_role in policy.refund_review_rejecters:
                stages += (RefundStage.REQUESTED, RefundStage.REVIEWED)
            return stages
        case ProcessRefund():
            return (RefundStage.APPROVED,)  # SALE-19: nothing is paid back before the developer approves
        case _:
            assert_never(cmd)


# ---------------------------------------------------------------------------------------------------------------
# evolve / fold


def _need(value: _T | None, fact: Fact, what: str) -> _T:
    if value is None:
        raise InconsistentHistory(f"{type(fact).__name__} needs {what}, which the state does not have")
    return value


def evolve(state: UnitState, fact: Fact) -> UnitState:
    """The state after ``fact``. Rejections leave it unchanged."""
    match fact:
        case LockRejected() | CommandRejected():
            return state
        case LockRequested():
            request = LockRequest(fact.caused_by, fact.customer_id, fact.staff_id, fact.at)
            return UnitState(status=UnitStatus.LOCK_REQUESTED, pending=request)
        case LockRequestLapsed():
            return INITIAL
        case Locked():
            holder = Holder(fact.customer_id, fact.staff_id, fact.request_id, fact.actor_id, fact.at)
            return UnitState(status=UnitStatus.LOCKED, holder=holder)
        case LockReleased():
            return INITIAL
        case SubscriptionSigned():
            sub = Subscription(
                subscription_id=fact.subscription_id,
                customer_id=fact.customer_id,
                staff_id=fact.actor_id,
                price_fen=fact.price_fen,
                signed_at=fact.at,
                deadline_at=fact.payment_deadline_at,
            )
            return replace(state, status=UnitStatus.SUBSCRIBED, subscription=sub)
        case PaymentReceived():
            sub = _need(state.subscription, fact, "a subscription")
            sub = replace(
                sub,
                paid_fen=sub.paid_fen + fact.amount_fen,
                price_paid_fen=sub.price_paid_fen + (fact.amount_fen if fact.toward_price else 0),
                deposit_paid_at=fact.at if fact.stops_clock else sub.deposit_paid_at,
            )
            status = UnitStatus.DEPOSIT_PAID if fact.stops_clock else state.status
            return replace(state, status=status, subscription=sub)
        case SubscriptionAbandoned():
            return replace(state, status=UnitStatus.LOCKED, subscription=None)
        case ContractSigned():
            sub = replace(_need(state.subscription, fact, "a subscription"), contract_signed_at=fact.at)
            return replace(state, status=UnitStatus.CONTRACTED, subscription=sub)
        case RefundRequested():
            refund = RefundProgress(fact.refund_id, fact.kind, RefundStage.REQUESTED, state.status, fact.at)
            return replace(state, status=UnitStatus.REFUND_PENDING, refund=refund)
        case RefundReviewed():
            return _refund_to(state, fact, RefundStage.REVIEWED)
        case RefundSubmittedToDeveloper():
            return _refund_to(state, fact, RefundStage.SUBMITTED)
        case RefundApproved():
            approved = _refund_to(state, fact, RefundStage.APPROVED)
            refund = replace(_need(approved.refund, fact, "a refund"), approved_amount_fen=fact.approved_amount_fen)
            return replace(approved, refund=refund)
        case RefundRejected():
            refund = _need(state.refund, fact, "a refund")
            return replace(state, status=refund.resume_status, refund=None)
        case RefundProcessed():
            return replace(state, status=UnitStatus.REFUNDED, refund=None)
        case _:
            assert_never(fact)


def _refund_to(state: UnitState, fact: Fact, stage: RefundStage) -> UnitState:
    return replace(state, refund=replace(_need(state.refund, fact, "a refund"), stage=stage))


def fold(facts: Iterable[Fact], state: UnitState = INITIAL) -> UnitState:
    """Replay ``facts`` onto ``state`` (by default the state of a registered unit nobody has touched)."""
    for fact in facts:
        state = evolve(state, fact)
    return state
