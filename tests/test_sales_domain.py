"""The pure 销控 decider (services/sales): example tests named by rule id, and properties over random command runs."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sales.domain import (
    INITIAL,
    AbandonReason,
    ApproveRefund,
    Command,
    CommandRejected,
    ConfirmLock,
    ContractSigned,
    ExpireDeadline,
    Fact,
    InconsistentHistory,
    Locked,
    LockRejected,
    LockReleased,
    LockReleaseReason,
    LockRequested,
    LockRequestLapsed,
    PaymentReceived,
    ProcessRefund,
    ReceivePayment,
    RefundApproved,
    RefundKind,
    RefundProcessed,
    RefundRejected,
    RefundRequested,
    RefundReviewed,
    RefundStage,
    RefundSubmittedToDeveloper,
    RejectRefund,
    ReleaseLock,
    RequestLock,
    RequestRefund,
    ReviewRefund,
    SignContract,
    SignSubscription,
    SubmitRefundToDeveloper,
    SubscriptionAbandoned,
    SubscriptionSigned,
    UnitState,
    UnitStatus,
    check_invariants,
    decide,
    evolve,
    fold,
    is_double_sale_attempt,
)
from services.sales.policy import DEFAULT_POLICY, PaymentKind, Role, SalesPolicy

UTC = UTC
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
UNIT = "unit-A-1203"
ACTOR_OF = {role: f"{role.lower()}-1" for role in Role}
_ids = itertools.count(1)
T = TypeVar("T")


def command(cls: Callable[..., Command], role: Role, at: datetime = T0, **fields: Any) -> Command:
    return cls(command_id=f"cmd-{next(_ids)}", unit_id=UNIT, actor_id=ACTOR_OF[role], actor_role=role, at=at, **fields)


def request(customer: str = "cust-A", at: datetime = T0, role: Role = Role.SALES_CONSULTANT) -> Command:
    return command(RequestLock, role, at, customer_id=customer, staff_id=ACTOR_OF[role])


def confirm(customer: str = "cust-A", at: datetime = T0, role: Role = Role.SALES_MANAGER) -> Command:
    return command(ConfirmLock, role, at, customer_id=customer)


def sign(
    customer: str = "cust-A", at: datetime = T0, sub: str = "sub-1", role: Role = Role.SALES_CONSULTANT
) -> Command:
    return command(SignSubscription, role, at, subscription_id=sub, customer_id=customer, price_fen=150_000_000)


def pay(
    at: datetime,
    amount: int = 5_000_000,
    kind: str = PaymentKind.DEPOSIT,
    sub: str = "sub-1",
    role: Role = Role.FINANCE,
) -> Command:
    return command(ReceivePayment, role, at, subscription_id=sub, amount_fen=amount, kind=kind, receipt_no="R-0001")


def expire(at: datetime, sub: str = "sub-1", role: Role = Role.SYSTEM) -> Command:
    return command(ExpireDeadline, role, at, subscription_id=sub)


def run(state: UnitState, cmd: Command, policy: SalesPolicy = DEFAULT_POLICY) -> tuple[UnitState, list[Fact]]:
    facts = decide(state, cmd, policy)
    return fold(facts, state), facts


def given_history(*commands: Command, policy: SalesPolicy = DEFAULT_POLICY) -> UnitState:
    """The state after ``commands``, each of which must be accepted."""
    state = INITIAL
    for cmd in commands:
        state, facts = run(state, cmd, policy)
        assert not any(isinstance(f, LockRejected | CommandRejected) for f in facts), facts
    return state


def rejection(facts: list[Fact]) -> LockRejected | CommandRejected:
    assert len(facts) == 1, facts
    fact = facts[0]
    assert isinstance(fact, LockRejected | CommandRejected), fact
    return fact


def requested() -> UnitState:
    return given_history(request())


def locked() -> UnitState:
    return given_history(request(), confirm())


def subscribed() -> UnitState:
    return given_history(request(), confirm(), sign())


def deposit_paid() -> UnitState:
    return given_history(request(), confirm(), sign(), pay(T0 + timedelta(minutes=3)))


def contracted() -> UnitState:
    return given_history(
        request(),
        confirm(),
        sign(),
        pay(T0 + timedelta(minutes=3)),
        command(SignContract, Role.SALES_MANAGER, subscription_id="sub-1"),
    )


def refund_at(stage: RefundStage, base: UnitState | None = None) -> UnitState:
    """A refund of ``base`` (default: a deposit-paid unit) carried up to ``stage``."""
    state = deposit_paid() if base is None else base
    kind = RefundKind.RETURN_UNIT if state.status is UnitStatus.CONTRACTED else RefundKind.CANCEL_SUBSCRIPTION
    steps = [
        command(RequestRefund, Role.SALES_CONSULTANT, refund_id="ref-1", kind=kind),
        command(ReviewRefund, Role.SALES_MANAGER, refund_id="ref-1"),
        command(SubmitRefundToDeveloper, Role.SALES_MANAGER, refund_id="ref-1"),
        command(ApproveRefund, Role.DEVELOPER, refund_id="ref-1"),
    ]
    for cmd in steps[: list(RefundStage).index(stage) + 1]:
        state, facts = run(state, cmd)
        assert not isinstance(facts[0], CommandRejected), facts
    return state


STATE_BUILDERS: dict[str, Callable[[], UnitState]] = {
    "lock_requested": requested,
    "locked": locked,
    "subscribed": subscribed,
    "deposit_paid": deposit_paid,
    "contracted": contracted,
    "refund_pending": lambda: refund_at(RefundStage.REQUESTED),
}


# ---------------------------------------------------------------------------------------------------------------
# SALE-01/02: the manager does 销控


def test_SALE_02_consultant_requests_and_manager_confirms() -> None:
    state, facts = run(INITIAL, request())
    assert [type(f) for f in facts] == [LockRequested]
    assert state.status is UnitStatus.LOCK_REQUESTED and state.claimant == "cust-A"
    confirmation = confirm()
    state, facts = run(state, confirmation)
    (fact,) = facts
    assert isinstance(fact, Locked)
    assert fact.actor_id == ACTOR_OF[Role.SALES_MANAGER] and fact.staff_id == ACTOR_OF[Role.SALES_CONSULTANT]
    assert fact.request_id is not None and fact.caused_by == confirmation.command_id
    assert state.status is UnitStatus.LOCKED and state.holder is not None and state.pending is None


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SALES_MANAGER])
def test_SALE_02_only_the_sales_manager_confirms_a_lock(role: Role) -> None:
    state = requested()
    new_state, facts = run(state, confirm(role=role))
    assert rejection(facts).rule_id == "SALE-02"
    assert new_state == state


def test_SALE_02_manager_confirms_only_the_requested_customer() -> None:
    before = requested()
    state, facts = run(before, confirm("cust-B"))
    fact = rejection(facts)
    assert isinstance(fact, CommandRejected)
    assert (fact.rule_id, fact.current_holder, fact.command_type) == ("SALE-02", "cust-A", "ConfirmLock")
    assert state == before


def test_SALE_01_manager_may_lock_an_available_unit_directly() -> None:
    state, facts = run(INITIAL, confirm("cust-B"))
    (fact,) = facts
    assert isinstance(fact, Locked) and fact.request_id is None and fact.staff_id is None
    assert state.status is UnitStatus.LOCKED and state.claimant == "cust-B"


@pytest.mark.parametrize("status", ["locked", "subscribed", "deposit_paid", "contracted", "refund_pending"])
def test_SALE_01_no_lock_on_a_unit_that_is_not_available(status: str) -> None:
    state = STATE_BUILDERS[status]()
    for customer in ("cust-A", "cust-B"):
        assert rejection(decide(state, confirm(customer), DEFAULT_POLICY)).rule_id == "SALE-01"


# ---------------------------------------------------------------------------------------------------------------
# SALE-06: one active claim per unit (一房二卖 guard)


@pytest.mark.parametrize("status", list(STATE_BUILDERS))
@pytest.mark.parametrize("customer", ["cust-A", "cust-B"])
def test_SALE_06_second_lock_request_is_blocked(status: str, customer: str) -> None:
    state = STATE_BUILDERS[status]()
    new_state, facts = run(state, request(customer, role=Role.SALES_SUPERVISOR))
    fact = rejection(facts)
    assert isinstance(fact, LockRejected)
    assert (fact.rule_id, fact.current_holder, fact.customer_id) == ("SALE-06", "cust-A", customer)
    assert is_double_sale_attempt(fact)
    assert new_state == state


@pytest.mark.parametrize("status", ["subscribed", "deposit_paid", "contracted", "refund_pending"])
def test_SALE_06_second_subscription_is_blocked(status: str) -> None:
    state = STATE_BUILDERS[status]()
    for customer, sub in (("cust-A", "sub-2"), ("cust-B", "sub-2"), ("cust-A", "sub-1")):
        fact = rejection(decide(state, sign(customer, sub=sub), DEFAULT_POLICY))
        assert fact.rule_id == "SALE-06" and is_double_sale_attempt(fact)


def test_SALE_06_subscription_for_a_customer_the_unit_is_not_held_for() -> None:
    for state in (requested(), locked()):
        assert rejection(decide(state, sign("cust-B"), DEFAULT_POLICY)).rule_id == "SALE-06"


def test_SALE_02_no_subscription_without_a_confirmed_lock() -> None:
    assert rejection(decide(INITIAL, sign(), DEFAULT_POLICY)).rule_id == "SALE-02"
    assert rejection(decide(requested(), sign(), DEFAULT_POLICY)).rule_id == "SALE-02"


def test_double_sale_metric_counts_only_guard_refusals() -> None:
    facts = decide(locked(), request("cust-B"), DEFAULT_POLICY) + decide(INITIAL, sign(), DEFAULT_POLICY)
    assert [is_double_sale_attempt(f) for f in facts] == [True, False]


# ---------------------------------------------------------------------------------------------------------------
# SALE-09: 10 minutes to pay


def test_SALE_09_subscription_starts_a_ten_minute_clock() -> None:
    state, facts = run(locked(), sign(at=T0))
    (fact,) = facts
    assert isinstance(fact, SubscriptionSigned) and fact.payment_deadline_at == T0 + timedelta(minutes=10)
    assert state.status is UnitStatus.SUBSCRIBED and state.subscription is not None
    assert state.subscription.deadline_at == T0 + timedelta(minutes=10)


def test_SALE_09_payment_one_tenth_second_before_deadline_wins() -> None:
    at = T0 + timedelta(minutes=9, seconds=59, milliseconds=900)
    state, facts = run(subscribed(), pay(at))
    (fact,) = facts
    assert isinstance(fact, PaymentReceived) and fact.stops_clock and fact.deadline_at == T0 + timedelta(minutes=10)
    assert state.status is UnitStatus.DEPOSIT_PAID
    assert state.subscription is not None and state.subscription.deposit_paid_at == at
    # The timer firing afterwards finds the clock stopped: recorded, no effect.
    after, facts = run(state, expire(T0 + timedelta(minutes=10)))
    assert rejection(facts).rule_id == "SALE-09" and after == state


def test_SALE_09_payment_at_deadline_is_late() -> None:
    state = subscribed()
    new_state, facts = run(state, pay(T0 + timedelta(minutes=10)))
    assert rejection(facts).rule_id == "SALE-09" and new_state == state


def test_SALE_09_payment_after_deadline_rejected() -> None:
    state = subscribed()
    for late in (timedelta(minutes=10, microseconds=1), timedelta(minutes=11), timedelta(days=1)):
        assert rejection(decide(state, pay(T0 + late), DEFAULT_POLICY)).rule_id == "SALE-09"


def test_SALE_09_at_the_deadline_instant_expiry_wins_over_payment() -> None:
    deadline = T0 + timedelta(minutes=10)
    state, facts = run(subscribed(), expire(deadline))
    abandoned, released = facts
    assert isinstance(abandoned, SubscriptionAbandoned) and abandoned.reason is AbandonReason.PAYMENT_TIMEOUT
    assert abandoned.deadline_at == deadline and abandoned.amount_paid_fen == 0
    assert isinstance(released, LockReleased) and released.reason is LockReleaseReason.PAYMENT_TIMEOUT
    assert released.subscription_id == "sub-1" and released.customer_id == "cust-A"
    assert state == INITIAL
    # The unit is on sale again: another customer can be locked (再销售).
    assert isinstance(decide(state, request("cust-B"), DEFAULT_POLICY)[0], LockRequested)


def test_SALE_09_expiry_before_the_deadline_is_recorded_and_ignored() -> None:
    state = subscribed()
    new_state, facts = run(state, expire(T0 + timedelta(minutes=9, seconds=59, milliseconds=999)))
    assert rejection(facts).rule_id == "SALE-09" and new_state == state


def test_SALE_09_expiry_of_a_subscription_that_is_not_open() -> None:
    assert rejection(decide(subscribed(), expire(T0 + timedelta(hours=1), sub="sub-old"), DEFAULT_POLICY))
    assert rejection(decide(INITIAL, expire(T0 + timedelta(hours=1)), DEFAULT_POLICY)).rule_id == "SALE-09"


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SYSTEM])
def test_SALE_09_only_the_system_timer_expires_a_deadline(role: Role) -> None:
    assert rejection(decide(subscribed(), expire(T0 + timedelta(hours=1), role=role), DEFAULT_POLICY)).rule_id == "§12"


def test_SALE_09_deadline_follows_the_office_policy() -> None:
    policy = SalesPolicy(payment_deadline=timedelta(minutes=3))
    state = given_history(request(), confirm(), sign(), policy=policy)
    assert state.subscription is not None and state.subscription.deadline_at == T0 + timedelta(minutes=3)
    assert rejection(decide(state, pay(T0 + timedelta(minutes=3)), policy)).rule_id == "SALE-09"


def test_SALE_09_partial_payments_add_up_to_the_minimum_deposit() -> None:
    policy = SalesPolicy(minimum_deposit_fen=2_000_000)  # 2 万元
    state = given_history(request(), confirm(), sign(), policy=policy)
    state, facts = run(state, pay(T0 + timedelta(minutes=1), amount=500_000), policy)
    assert isinstance(facts[0], PaymentReceived) and not facts[0].stops_clock
    assert state.status is UnitStatus.SUBSCRIBED
    state, facts = run(state, pay(T0 + timedelta(minutes=2), amount=1_500_000, kind=PaymentKind.DOWN_PAYMENT), policy)
    assert isinstance(facts[0], PaymentReceived) and facts[0].stops_clock
    assert state.status is UnitStatus.DEPOSIT_PAID


def test_SALE_09_below_minimum_is_abandoned_with_what_was_paid() -> None:
    policy = SalesPolicy(minimum_deposit_fen=2_000_000)
    state = given_history(request(), confirm(), sign(), pay(T0 + timedelta(minutes=1), amount=500_000), policy=policy)
    state, facts = run(state, expire(T0 + timedelta(minutes=10)), policy)
    assert isinstance(facts[0], SubscriptionAbandoned) and facts[0].amount_paid_fen == 500_000
    assert state == INITIAL


@pytest.mark.parametrize(
    "kind", [PaymentKind.DEED_TAX, PaymentKind.MAINTENANCE_FUND, PaymentKind.MORTGAGE_FEE, "UNKNOWN"]
)
def test_SALE_09_fees_do_not_stop_the_clock(kind: str) -> None:
    state, facts = run(subscribed(), pay(T0 + timedelta(minutes=1), kind=kind))
    assert isinstance(facts[0], PaymentReceived) and not facts[0].toward_price and not facts[0].stops_clock
    assert state.status is UnitStatus.SUBSCRIBED


@pytest.mark.parametrize("kind", [PaymentKind.DEPOSIT, PaymentKind.DOWN_PAYMENT, PaymentKind.PURCHASE_PRICE])
def test_SALE_09_one_fen_towards_the_price_stops_the_clock_by_default(kind: str) -> None:
    state, _ = run(subscribed(), pay(T0 + timedelta(minutes=1), amount=1, kind=kind))
    assert state.status is UnitStatus.DEPOSIT_PAID


# ---------------------------------------------------------------------------------------------------------------
# SALE-10/11: only finance takes money


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.FINANCE])
def test_SALE_10_only_finance_takes_money(role: Role) -> None:
    state = subscribed()
    new_state, facts = run(state, pay(T0 + timedelta(minutes=1), role=role))
    assert rejection(facts).rule_id == "SALE-10" and new_state == state


def test_SALE_11_payment_must_match_the_open_subscription() -> None:
    assert rejection(decide(subscribed(), pay(T0, sub="sub-9"), DEFAULT_POLICY)).rule_id == "SALE-11"
    assert rejection(decide(locked(), pay(T0), DEFAULT_POLICY)).rule_id == "SALE-11"


def test_SALE_11_non_positive_amounts_are_malformed() -> None:
    assert rejection(decide(subscribed(), pay(T0, amount=0), DEFAULT_POLICY)).rule_id == "INPUT"


def test_SALE_22_later_payments_have_no_deadline() -> None:
    state = deposit_paid()
    state, facts = run(state, pay(T0 + timedelta(days=30), amount=100_000_000, kind=PaymentKind.BALANCE))
    (fact,) = facts
    assert isinstance(fact, PaymentReceived) and fact.deadline_at is None and not fact.stops_clock
    assert state.status is UnitStatus.DEPOSIT_PAID and state.subscription is not None
    assert state.subscription.paid_fen == 105_000_000


def test_SALE_19_no_money_is_taken_while_a_refund_is_pending() -> None:
    assert rejection(decide(refund_at(RefundStage.REVIEWED), pay(T0), DEFAULT_POLICY)).rule_id == "SALE-19"


# ---------------------------------------------------------------------------------------------------------------
# SALE-04/07: only the manager releases


@pytest.mark.parametrize("status", ["lock_requested", "locked", "subscribed"])
def test_SALE_04_manager_releases_an_unpaid_claim(status: str) -> None:
    state, facts = run(STATE_BUILDERS[status](), command(ReleaseLock, Role.SALES_MANAGER))
    (fact,) = facts
    assert isinstance(fact, LockReleased) and fact.reason is LockReleaseReason.MANAGER_RELEASE
    assert fact.customer_id == "cust-A"
    assert fact.subscription_id == ("sub-1" if status == "subscribed" else None)
    assert state == INITIAL


def test_SALE_04_customer_withdraws_before_paying() -> None:
    cmd = command(ReleaseLock, Role.SALES_MANAGER, reason=LockReleaseReason.CUSTOMER_WITHDREW)
    state, facts = run(subscribed(), cmd)
    abandoned, released = facts
    assert isinstance(abandoned, SubscriptionAbandoned) and abandoned.reason is AbandonReason.CUSTOMER_WITHDREW
    assert isinstance(released, LockReleased) and released.reason is LockReleaseReason.CUSTOMER_WITHDREW
    assert state == INITIAL


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.SALES_MANAGER])
def test_SALE_07_nobody_but_the_manager_releases(role: Role) -> None:
    assert rejection(decide(locked(), command(ReleaseLock, role), DEFAULT_POLICY)).rule_id == "SALE-07"


def test_SALE_04_nothing_to_release_on_an_available_unit() -> None:
    assert rejection(decide(INITIAL, command(ReleaseLock, Role.SALES_MANAGER), DEFAULT_POLICY)).rule_id == "SALE-04"


@pytest.mark.parametrize("status", ["deposit_paid", "contracted", "refund_pending"])
def test_SALE_19_paid_units_leave_only_through_a_refund(status: str) -> None:
    cmd = command(ReleaseLock, Role.SALES_MANAGER)
    assert rejection(decide(STATE_BUILDERS[status](), cmd, DEFAULT_POLICY)).rule_id == "SALE-19"


@pytest.mark.parametrize("reason", [LockReleaseReason.PAYMENT_TIMEOUT, LockReleaseReason.REFUND_PROCESSED, "FOO"])
def test_release_reasons_of_automatic_consequences_are_not_for_managers(reason: str) -> None:
    cmd = command(ReleaseLock, Role.SALES_MANAGER, reason=reason)
    assert rejection(decide(locked(), cmd, DEFAULT_POLICY)).rule_id == "INPUT"


# ---------------------------------------------------------------------------------------------------------------
# Contract (签约)


def test_contract_is_signed_by_the_manager_after_the_deposit() -> None:
    state, facts = run(deposit_paid(), command(SignContract, Role.SALES_MANAGER, subscription_id="sub-1"))
    assert isinstance(facts[0], ContractSigned) and state.status is UnitStatus.CONTRACTED


def test_SALE_09_no_contract_before_the_deposit() -> None:
    cmd = command(SignContract, Role.SALES_MANAGER, subscription_id="sub-1")
    assert rejection(decide(subscribed(), cmd, DEFAULT_POLICY)).rule_id == "SALE-09"


def test_SALE_06_no_second_contract() -> None:
    for sub in ("sub-1", "sub-2"):
        cmd = command(SignContract, Role.SALES_MANAGER, subscription_id=sub)
        assert rejection(decide(contracted(), cmd, DEFAULT_POLICY)).rule_id == "SALE-06"


def test_SALE_02_no_contract_without_a_subscription() -> None:
    cmd = command(SignContract, Role.SALES_MANAGER, subscription_id="sub-1")
    assert rejection(decide(locked(), cmd, DEFAULT_POLICY)).rule_id == "SALE-02"


# ---------------------------------------------------------------------------------------------------------------
# SALE-17/18/19: refunds


@pytest.mark.parametrize(
    ("base", "kind", "back_to"),
    [
        (deposit_paid, RefundKind.CANCEL_SUBSCRIPTION, UnitStatus.DEPOSIT_PAID),
        (contracted, RefundKind.RETURN_UNIT, UnitStatus.CONTRACTED),
    ],
)
def test_SALE_19_full_refund_chain_releases_the_unit(
    base: Callable[[], UnitState], kind: RefundKind, back_to: UnitStatus
) -> None:
    state = base()
    expected = [RefundRequested, RefundReviewed, RefundSubmittedToDeveloper, RefundApproved]
    steps = [
        command(RequestRefund, Role.SALES_CONSULTANT, refund_id="ref-1", kind=kind, reason="资金问题"),
        command(ReviewRefund, Role.SALES_MANAGER, refund_id="ref-1"),
        command(SubmitRefundToDeveloper, Role.SALES_MANAGER, refund_id="ref-1"),
        command(ApproveRefund, Role.DEVELOPER, refund_id="ref-1"),
    ]
    for cmd, fact_type in zip(steps, expected, strict=True):
        state, facts = run(state, cmd)
        assert [type(f) for f in facts] == [fact_type]
        assert state.status is UnitStatus.REFUND_PENDING and state.refund is not None
        assert state.refund.resume_status is back_to and state.refund.kind is kind
    state, facts = run(state, command(ProcessRefund, Role.FINANCE, refund_id="ref-1"))
    processed, released = facts
    assert isinstance(processed, RefundProcessed) and processed.refunded_amount_fen == 5_000_000
    assert isinstance(released, LockReleased) and released.reason is LockReleaseReason.REFUND_PROCESSED
    assert released.actor_role == Role.SYSTEM
    assert fold([processed], refund_at(RefundStage.APPROVED, base())).status is UnitStatus.REFUNDED
    assert state == INITIAL


@pytest.mark.parametrize("stage", [RefundStage.REQUESTED, RefundStage.REVIEWED, RefundStage.SUBMITTED])
def test_SALE_19_no_refund_processed_before_developer_approves(stage: RefundStage) -> None:
    state = refund_at(stage)
    new_state, facts = run(state, command(ProcessRefund, Role.FINANCE, refund_id="ref-1"))
    assert rejection(facts).rule_id == "SALE-19" and new_state == state


def test_SALE_18_manager_reviews_before_submitting_to_the_developer() -> None:
    cmd = command(SubmitRefundToDeveloper, Role.SALES_MANAGER, refund_id="ref-1")
    assert rejection(decide(refund_at(RefundStage.REQUESTED), cmd, DEFAULT_POLICY)).rule_id == "SALE-18"
    again = command(ReviewRefund, Role.SALES_MANAGER, refund_id="ref-1")
    assert rejection(decide(refund_at(RefundStage.REVIEWED), again, DEFAULT_POLICY)).rule_id == "SALE-18"


def test_SALE_19_developer_decides_only_once_submitted() -> None:
    for stage in (RefundStage.REQUESTED, RefundStage.REVIEWED):
        for cmd in (
            command(ApproveRefund, Role.DEVELOPER, refund_id="ref-1"),
            command(RejectRefund, Role.DEVELOPER, refund_id="ref-1", reason="不同意"),
        ):
            assert rejection(decide(refund_at(stage), cmd, DEFAULT_POLICY)).rule_id == "SALE-19"


@pytest.mark.parametrize(("base", "back_to"), [(deposit_paid, "deposit_paid"), (contracted, "contracted")])
def test_SALE_19_rejected_refund_returns_the_unit_to_its_sold_state(
    base: Callable[[], UnitState], back_to: str
) -> None:
    before = base()
    reject = command(RejectRefund, Role.DEVELOPER, refund_id="ref-1", reason="逾期")
    state, facts = run(refund_at(RefundStage.SUBMITTED, before), reject)
    assert isinstance(facts[0], RefundRejected) and facts[0].reason == "逾期"
    assert state.status == back_to and state == before


def test_SALE_18_manager_may_turn_an_application_down_at_review_but_not_after_submitting() -> None:
    reject = command(RejectRefund, Role.SALES_MANAGER, refund_id="ref-1", reason="材料不全")
    before = deposit_paid()
    for stage in (RefundStage.REQUESTED, RefundStage.REVIEWED):
        state, facts = run(refund_at(stage, before), reject)
        assert isinstance(facts[0], RefundRejected) and state == before
    assert rejection(decide(refund_at(RefundStage.SUBMITTED), reject, DEFAULT_POLICY)).rule_id == "SALE-19"


def test_SALE_17_refund_kind_must_fit_the_unit() -> None:
    wrong = [
        (deposit_paid(), RefundKind.RETURN_UNIT),
        (contracted(), RefundKind.CANCEL_SUBSCRIPTION),
        (subscribed(), RefundKind.CANCEL_SUBSCRIPTION),  # unpaid 退订 is a manager release (SALE-04)
        (locked(), RefundKind.CANCEL_SUBSCRIPTION),
        (INITIAL, RefundKind.RETURN_UNIT),
    ]
    for state, kind in wrong:
        cmd = command(RequestRefund, Role.SALES_CONSULTANT, refund_id="ref-1", kind=kind)
        assert rejection(decide(state, cmd, DEFAULT_POLICY)).rule_id == "SALE-17"


def test_SALE_19_one_refund_at_a_time() -> None:
    cmd = command(RequestRefund, Role.SALES_CONSULTANT, refund_id="ref-2", kind=RefundKind.CANCEL_SUBSCRIPTION)
    assert rejection(decide(refund_at(RefundStage.REVIEWED), cmd, DEFAULT_POLICY)).rule_id == "SALE-19"
    other = command(ReviewRefund, Role.SALES_MANAGER, refund_id="ref-2")
    assert rejection(decide(refund_at(RefundStage.REQUESTED), other, DEFAULT_POLICY)).rule_id == "SALE-19"


def test_SALE_19_approved_amount_is_bounded_by_what_was_paid() -> None:
    state = refund_at(RefundStage.SUBMITTED)
    too_much = command(ApproveRefund, Role.DEVELOPER, refund_id="ref-1", approved_amount_fen=5_000_001)
    assert rejection(decide(state, too_much, DEFAULT_POLICY)).rule_id == "INPUT"
    state, _ = run(state, command(ApproveRefund, Role.DEVELOPER, refund_id="ref-1", approved_amount_fen=3_000_000))
    _, facts = run(state, command(ProcessRefund, Role.FINANCE, refund_id="ref-1"))
    assert isinstance(facts[0], RefundProcessed) and facts[0].refunded_amount_fen == 3_000_000


# ---------------------------------------------------------------------------------------------------------------
# Lock-request expiry (a policy option; off by default because no rule gives a limit)


def test_lock_requests_never_lapse_by_default() -> None:
    _, facts = run(requested(), request("cust-B", at=T0 + timedelta(days=3)))
    assert rejection(facts).rule_id == "SALE-06"


def test_lock_request_lapses_when_the_office_sets_an_expiry() -> None:
    policy = SalesPolicy(lock_request_expiry=timedelta(minutes=30))
    state = given_history(request(), policy=policy)
    early = T0 + timedelta(minutes=29, seconds=59)
    assert rejection(decide(state, request("cust-B", at=early), policy)).rule_id == "SALE-06"
    state, facts = run(state, request("cust-B", at=T0 + timedelta(minutes=30)), policy)
    lapsed, requested_b = facts
    assert isinstance(lapsed, LockRequestLapsed) and lapsed.customer_id == "cust-A"
    assert lapsed.lapsed_at == T0 + timedelta(minutes=30) and lapsed.actor_role == Role.SYSTEM
    assert isinstance(requested_b, LockRequested) and state.claimant == "cust-B"
    # A late confirmation for the first customer no longer matches the (new) request.
    assert rejection(decide(state, confirm("cust-A", at=T0 + timedelta(minutes=31)), policy)).rule_id == "SALE-02"


def test_lapse_is_recorded_even_when_the_command_is_refused() -> None:
    policy = SalesPolicy(lock_request_expiry=timedelta(minutes=30))
    state = given_history(request(), policy=policy)
    state, facts = run(state, command(ReleaseLock, Role.SALES_MANAGER, at=T0 + timedelta(hours=1)), policy)
    assert [type(f) for f in facts] == [LockRequestLapsed, CommandRejected]
    assert state == INITIAL


# ---------------------------------------------------------------------------------------------------------------
# §12 role matrix: every role × every command


SALES = {
    Role.SALES_CONSULTANT,
    Role.SALES_SUPERVISOR,
    Role.DEPUTY_SALES_MANAGER,
    Role.SALES_MANAGER,
    Role.PROJECT_MANAGER,
}
LATER = T0 + timedelta(minutes=1)

# command name → (roles allowed by §12, rule named when a role is refused, state where it is accepted, command)
MATRIX: dict[str, tuple[set[Role], str, Callable[[Role], UnitState], Callable[[Role], Command]]] = {
    "RequestLock": (SALES, "§12", lambda r: INITIAL, lambda r: request(role=r)),
    "ConfirmLock": ({Role.SALES_MANAGER}, "SALE-02", lambda r: requested(), lambda r: confirm(role=r)),
    "SignSubscription": (SALES, "§12", lambda r: locked(), lambda r: sign(role=r)),
    "ReceivePayment": ({Role.FINANCE}, "SALE-10", lambda r: subscribed(), lambda r: pay(LATER, role=r)),
    "ReleaseLock": ({Role.SALES_MANAGER}, "SALE-07", lambda r: locked(), lambda r: command(ReleaseLock, r)),
    "ExpireDeadline": (
        {Role.SYSTEM},
        "§12",
        lambda r: subscribed(),
        lambda r: expire(T0 + timedelta(minutes=10), role=r),
    ),
    "SignContract": (
        {Role.SALES_MANAGER},
        "§12",
        lambda r: deposit_paid(),
        lambda r: command(SignContract, r, subscription_id="sub-1"),
    ),
    "RequestRefund": (
        SALES,
        "§12",
        lambda r: deposit_paid(),
        lambda r: command(RequestRefund, r, refund_id="ref-1", kind=RefundKind.CANCEL_SUBSCRIPTION),
    ),
    "ReviewRefund": (
        {Role.SALES_MANAGER},
        "SALE-18",
        lambda r: refund_at(RefundStage.REQUESTED),
        lambda r: command(ReviewRefund, r, refund_id="ref-1"),
    ),
    "SubmitRefundToDeveloper": (
        {Role.SALES_MANAGER},
        "SALE-19",
        lambda r: refund_at(RefundStage.REVIEWED),
        lambda r: command(SubmitRefundToDeveloper, r, refund_id="ref-1"),
    ),
    "ApproveRefund": (
        {Role.DEVELOPER},
        "SALE-19",
        lambda r: refund_at(RefundStage.SUBMITTED),
        lambda r: command(ApproveRefund, r, refund_id="ref-1"),
    ),
    "RejectRefund": (
        {Role.DEVELOPER, Role.SALES_MANAGER},
        "SALE-19",
        lambda r: refund_at(RefundStage.SUBMITTED if r is Role.DEVELOPER else RefundStage.REVIEWED),
        lambda r: command(RejectRefund, r, refund_id="ref-1", reason="不同意"),
    ),
    "ProcessRefund": (
        {Role.FINANCE},
        "SALE-10",
        lambda r: refund_at(RefundStage.APPROVED),
        lambda r: command(ProcessRefund, r, refund_id="ref-1"),
    ),
}


def test_role_matrix_covers_every_command() -> None:
    assert set(MATRIX) == {cls.__name__ for cls in get_args(Command)}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("name", list(MATRIX))
def test_role_matrix_section_12(name: str, role: Role) -> None:
    allowed, rule_id, ready, make = MATRIX[name]
    state = ready(role)
    facts = decide(state, make(role), DEFAULT_POLICY)
    if role in allowed:
        assert not any(isinstance(f, LockRejected | CommandRejected) for f in facts), facts
    else:
        assert rejection(facts).rule_id == rule_id
        assert fold(facts, state) == state


# ---------------------------------------------------------------------------------------------------------------
# Policy, commands and history are validated


@pytest.mark.parametrize(
    "overrides",
    [
        {"payment_receivers": frozenset({Role.SALES_CONSULTANT, Role.FINANCE})},
        {"refund_processors": frozenset({Role.SALES_MANAGER})},
        {"lock_confirmers": frozenset({Role.SALES_CONSULTANT})},
        {"lock_releasers": frozenset({Role.SALES_MANAGER, Role.SALES_CONSULTANT})},
        {"refund_approvers": frozenset({Role.SALES_MANAGER})},
        {"payment_deadline": timedelta(0)},
        {"minimum_deposit_fen": 0},
        {"lock_request_expiry": timedelta(seconds=-1)},
    ],
)
def test_policy_cannot_relax_hard_rules(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SalesPolicy(**overrides)


def test_policy_defaults_follow_the_handbook() -> None:
    p = DEFAULT_POLICY
    assert p.payment_deadline == timedelta(minutes=10) and p.minimum_deposit_fen == 1
    assert p.lock_request_expiry is None
    assert p.contract_signers == {Role.SALES_MANAGER} and p.refund_processors == {Role.FINANCE}


def test_commands_need_timezone_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        request(at=datetime(2024, 5, 1, 10, 0))


def test_evolve_refuses_a_fact_that_does_not_fit_the_state() -> None:
    (fact,) = decide(subscribed(), pay(LATER), DEFAULT_POLICY)
    with pytest.raises(InconsistentHistory):
        evolve(INITIAL, fact)


# ---------------------------------------------------------------------------------------------------------------
# Properties over random command runs
#
# A run is driven by a byte string: each choice takes one byte, and 0 always means the first (happiest) option, so
# hypothesis shrinks a failing run towards the plain sales path. One byte string is far cheaper to generate than
# hundreds of separate draws, which keeps 300 runs of up to 40 commands well under a few seconds.

CUSTOMERS = ["cust-A", "cust-B", "cust-C"]
STEPS = [timedelta(0), timedelta(milliseconds=1), timedelta(milliseconds=100), timedelta(seconds=1)]
STEPS += [timedelta(minutes=m) for m in (1, 5, 10, 11, 31, 120)]
POLICIES = [
    DEFAULT_POLICY,
    SalesPolicy(lock_request_expiry=timedelta(minutes=30), minimum_deposit_fen=2_000_000),
    SalesPolicy(payment_deadline=timedelta(minutes=3), refund_review_rejecters=frozenset()),
]
ALL_ROLES = list(Role)
COMMAND_NAMES = list(MATRIX)
PREFERRED: dict[str, list[Role]] = {
    "RequestLock": [Role.SALES_CONSULTANT, Role.SALES_SUPERVISOR],
    "ConfirmLock": [Role.SALES_MANAGER],
    "SignSubscription": [Role.SALES_CONSULTANT],
    "ReceivePayment": [Role.FINANCE],
    "ReleaseLock": [Role.SALES_MANAGER],
    "ExpireDeadline": [Role.SYSTEM],
    "SignContract": [Role.SALES_MANAGER],
    "RequestRefund": [Role.SALES_CONSULTANT],
    "ReviewRefund": [Role.SALES_MANAGER],
    "SubmitRefundToDeveloper": [Role.SALES_MANAGER],
    "ApproveRefund": [Role.DEVELOPER],
    "RejectRefund": [Role.DEVELOPER, Role.SALES_MANAGER],
    "ProcessRefund": [Role.FINANCE],
}
# The commands that move a unit on from each status (the "guided" choices).
NEXT: dict[UnitStatus | RefundStage, list[str]] = {
    UnitStatus.AVAILABLE: ["RequestLock", "ConfirmLock"],
    UnitStatus.LOCK_REQUESTED: ["ConfirmLock", "ReleaseLock"],
    UnitStatus.LOCKED: ["SignSubscription", "ReleaseLock"],
    UnitStatus.SUBSCRIBED: ["ReceivePayment", "ExpireDeadline", "ReceivePayment", "ReleaseLock"],
    UnitStatus.DEPOSIT_PAID: ["SignContract", "RequestRefund", "ReceivePayment"],
    UnitStatus.CONTRACTED: ["RequestRefund", "ReceivePayment"],
    RefundStage.REQUESTED: ["ReviewRefund", "RejectRefund"],
    RefundStage.REVIEWED: ["SubmitRefundToDeveloper", "RejectRefund"],
    RefundStage.SUBMITTED: ["ApproveRefund", "RejectRefund"],
    RefundStage.APPROVED: ["ProcessRefund"],
}


class Chooser:
    """Choices from a byte string (hypothesis) or a seeded PRNG (the coverage check)."""

    def __init__(self, source: bytes | random.Random) -> None:
        self._bytes = iter(source) if isinstance(source, bytes) else None
        self._random = source if isinstance(source, random.Random) else None

    def index(self, n: int) -> int:
        if self._random is not None:
            return self._random.randrange(n)
        assert self._bytes is not None
        return next(self._bytes, 0) % n

    def pick(self, options: Sequence[T]) -> T:
        return options[self.index(len(options))]

    def chance(self, percent: int) -> bool:
        return self.index(100) < percent


def next_command(c: Chooser, state: UnitState, now: datetime, n: int) -> Command:
    """A command at or after ``now``: mostly one that moves the unit on, sometimes anything by anyone."""
    guided = c.chance(75)
    stage = state.refund.stage if state.refund is not None else state.status
    name = c.pick(NEXT[stage]) if guided else c.pick(COMMAND_NAMES)
    role = c.pick(PREFERRED[name]) if c.chance(90 if guided else 50) else c.pick(ALL_ROLES)
    sub, refund = state.subscription, state.refund
    current_subs = [sub.subscription_id] if sub else []
    sub_id = current_subs[0] if guided and sub else c.pick([*current_subs, "sub-1", "sub-2"])
    refund_id = refund.refund_id if guided and refund else c.pick([*([refund.refund_id] if refund else []), "ref-1"])
    customer = state.claimant if guided and state.claimant else c.pick(CUSTOMERS)
    at = now + (c.pick(STEPS[:5]) if guided else c.pick(STEPS))
    if sub is not None and not guided and c.chance(30):  # the deadline instant and its neighbourhood
        at = max(now, sub.deadline_at + c.pick([timedelta(0), timedelta(milliseconds=-100), timedelta(milliseconds=1)]))
    if name == "ExpireDeadline" and guided and sub is not None:
        at = max(at, sub.deadline_at)
    base: dict[str, Any] = {"command_id": f"c{n}", "unit_id": UNIT, "actor_id": ACTOR_OF[role], "actor_role": role}
    base["at"] = at
    match name:
        case "RequestLock":
            return RequestLock(**base, customer_id=c.pick(CUSTOMERS), staff_id=ACTOR_OF[role])
        case "ConfirmLock":
            return ConfirmLock(**base, customer_id=customer)
        case "SignSubscription":
            new_id = f"sub-{n}" if guided else c.pick([f"sub-{n}", "sub-1"])
            return SignSubscription(**base, subscription_id=new_id, customer_id=customer, price_fen=100_000_000)
        case "ReceivePayment":
            amount = 5_000_000 if guided else c.pick([5_000_000, 1_000_000, 1, 0, -1])
            kind = PaymentKind.DEPOSIT if guided else c.pick(list(PaymentKind))
            return ReceivePayment(**base, subscription_id=sub_id, amount_fen=amount, kind=kind, receipt_no=f"R{n}")
        case "ReleaseLock":
            reason = LockReleaseReason.MANAGER_RELEASE if guided else c.pick(list(LockReleaseReason))
            return ReleaseLock(**base, reason=reason)
        case "ExpireDeadline":
            return ExpireDeadline(**base, subscription_id=sub_id)
        case "SignContract":
            return SignContract(**base, subscription_id=sub_id)
        case "RequestRefund":
            fitting = (
                RefundKind.RETURN_UNIT if state.status is UnitStatus.CONTRACTED else RefundKind.CANCEL_SUBSCRIPTION
            )
            refund_kind = fitting if guided else c.pick(list(RefundKind))
            new_refund = f"ref-{n}" if guided else c.pick([f"ref-{n}", "ref-1"])
            return RequestRefund(**base, refund_id=new_refund, kind=refund_kind)
        case "ReviewRefund":
            return ReviewRefund(**base, refund_id=refund_id)
        case "SubmitRefundToDeveloper":
            return SubmitRefundToDeveloper(**base, refund_id=refund_id)
        case "ApproveRefund":
            amount_or_none = None if guided else c.pick([None, 0, 1_000_000, 10**12, -1])
            return ApproveRefund(**base, refund_id=refund_id, approved_amount_fen=amount_or_none)
        case "RejectRefund":
            return RejectRefund(**base, refund_id=refund_id, reason="不同意")
        case _:
            return ProcessRefund(**base, refund_id=refund_id)


BYTES_PER_COMMAND = 16


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 40),
    source=st.binary(min_size=40 * BYTES_PER_COMMAND, max_size=40 * BYTES_PER_COMMAND),
    policy=st.sampled_from(POLICIES),
)
def test_properties_of_random_command_runs(length: int, source: bytes, policy: SalesPolicy) -> None:
    c = Chooser(source)
    state, now, history = INITIAL, T0, []
    for n in range(length):
        cmd = next_command(c, state, now, n)
        now = cmd.at
        facts = decide(state, cmd, policy)
        assert len(facts) >= 1  # (3) every command is answered
        assert decide(state, cmd, policy) == facts  # (4) deterministic
        assert all(f.caused_by == cmd.command_id and f.unit_id == cmd.unit_id for f in facts)
        refusals = [f for f in facts if isinstance(f, LockRejected | CommandRejected)]
        if refusals:  # a refusal is the whole answer (after a lapse, if one was due) and changes nothing
            assert len(refusals) == 1 and all(isinstance(f, LockRequestLapsed) for f in facts[:-1])
            assert evolve(state, refusals[0]) == state
        for fact in facts:  # (5) a payment never arrives at or after a running deadline
            if isinstance(fact, PaymentReceived):
                assert fact.deadline_at is None or fact.at < fact.deadline_at
                if state.status is UnitStatus.SUBSCRIBED and state.subscription is not None:
                    assert fact.at < state.subscription.deadline_at
        before = state
        for fact in facts:  # (1) one active claim; the status agrees with holder, subscription and refund
            state = evolve(state, fact)
            assert check_invariants(state) == [], fact
        assert state.status is not UnitStatus.REFUNDED  # only ever between two facts of one answer
        if before.claimant and state.claimant and before.claimant != state.claimant:
            assert any(isinstance(f, LockReleased | LockRequestLapsed) for f in facts)  # never overwritten
        history.extend(facts)
    assert fold(history) == state  # (2) replaying the facts reproduces the live state


def test_random_runs_reach_every_fact_type_and_status() -> None:
    """Guards the generator: the runs above explore the whole state machine, refusals included."""
    facts_seen: set[str] = set()
    statuses_seen: set[UnitStatus] = set()
    for seed in range(300):
        c, state, now = Chooser(random.Random(seed)), INITIAL, T0
        policy = POLICIES[seed % len(POLICIES)]
        for n in range(40):
            cmd = next_command(c, state, now, n)
            now = cmd.at
            facts = decide(state, cmd, policy)
            facts_seen.update(type(f).__name__ for f in facts)
            for fact in facts:
                state = evolve(state, fact)
                statuses_seen.add(state.status)
    all_facts = {cls.__name__ for cls in get_args(Fact)}
    assert all_facts <= facts_seen, all_facts - facts_seen
    assert statuses_seen == set(UnitStatus)
