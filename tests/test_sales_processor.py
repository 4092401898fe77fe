"""The 销控 decision processor on the real broker, on SQLite and PostgreSQL: single writer, facts on the log,
the SALE-09 deadline as a recorded, log-ordered event that also fires after downtime."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from projections.runner import ProjectionProcessor
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka import deadletter
from services.kafka.direct import DirectPublisher
from services.sales import domain as sales_domain
from services.sales.processor import FACTS_TOPIC
from services.sales.service import build_decision_processor
from services.sales.tables import unit_deadlines, unit_decisions
from services.sales.wire import record_to_fact
from tests.support import read_topic, wait_for

pytestmark = pytest.mark.kafka

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ROLES = {"consultant": "SALES_CONSULTANT", "manager": "SALES_MANAGER", "finance": "FINANCE", "system": "SYSTEM"}


class Desk:
    """Issues unit commands as the front desk would, with a clock the test controls."""

    def __init__(self, settings: Settings, codec: EventCodec, catalogue: Catalogue) -> None:
        self.clock = FrozenClock(T0)
        self.publisher = DirectPublisher(settings.kafka_client_config(), codec, catalogue, clock=self.clock)
        self.unit = f"u-{uuid.uuid4().hex[:8]}"

    def command(self, command_type: str, who: str, office: str = "office-a", **payload: Any) -> str:
        body = {
            "event_type": "UnitCommandIssued",
            "actor": {"staff_id": f"{who}-1", "role": ROLES[who]},
            "payload": {"unit_id": self.unit, "command_type": command_type, **payload},
        }
        command_id = self.publisher.publish(body, office_id=office)
        self.publisher.flush()
        return command_id

    def lock_and_sign(self, customer: str = "c-1", subscription: str = "sub-1") -> None:
        self.command("REQUEST_LOCK", "consultant", customer_id=customer, staff_id="consultant-1")
        self.command("CONFIRM_LOCK", "manager", customer_id=customer)
        self.command("SIGN_SUBSCRIPTION", "consultant", subscription_id=subscription, customer_id=customer,
                     price_fen=150_000_000)  # fmt: skip

    def pay(self, subscription: str = "sub-1", amount: int = 2_000_000) -> str:
        return self.command("RECEIVE_PAYMENT", "finance", subscription_id=subscription, amount_fen=amount,
                            payment_kind="DEPOSIT", receipt_no=f"r-{uuid.uuid4().hex[:6]}")  # fmt: skip


@pytest.fixture
def desk(settings: Settings, codec: EventCodec, catalogue: Catalogue) -> Desk:
    return Desk(settings, codec, catalogue)


@pytest.fixture
def processor(settings: Settings, desk: Desk) -> ProjectionProcessor:
    return build_decision_processor(settings, clock=desk.clock)


def decision(processor: ProjectionProcessor, command_id: str) -> dict[str, Any]:
    with processor.engine.connect() as connection:
        row = connection.execute(select(unit_decisions).where(unit_decisions.c.command_id == command_id)).one()
    return dict(row._mapping)


def facts_on_the_log(broker: str, unit: str, codec: EventCodec) -> list[str]:
    return [codec.decode(m.value())[0] for m in read_topic(broker, FACTS_TOPIC) if m.key() == unit.encode()]


def fire_deadlines(processor: ProjectionProcessor) -> int:
    return processor.projections[0].fire_due_deadlines(processor.engine)  # type: ignore[attr-defined,no-any-return]


def test_one_unit_one_claim_and_every_command_answered(
    processor: ProjectionProcessor, desk: Desk, broker: str, codec: EventCodec
) -> None:
    first = desk.command("REQUEST_LOCK", "consultant", office="office-a", customer_id="c-1", staff_id="s-1")
    second = desk.command("REQUEST_LOCK", "consultant", office="office-b", customer_id="c-2", staff_id="s-2")
    by_consultant = desk.command("CONFIRM_LOCK", "consultant", customer_id="c-1")
    confirmed = desk.command("CONFIRM_LOCK", "manager", customer_id="c-1")
    processor.run_until_caught_up()

    assert decision(processor, first)["outcome"] == "accepted"
    refused = decision(processor, second)
    assert (refused["outcome"], refused["rule_id"], refused["current_holder"]) == ("rejected", "SALE-06", "c-1")
    not_allowed = decision(processor, by_consultant)  # only the 销售经理 does 销控
    assert (not_allowed["outcome"], not_allowed["rule_id"]) == ("forbidden", "SALE-02")
    assert decision(processor, confirmed)["state_after"]["status"] == "locked"
    assert facts_on_the_log(broker, desk.unit, codec) == [
        "UnitLockRequested", "UnitLockRejected", "UnitCommandRejected", "UnitLocked",
    ]  # fmt: skip


def test_SALE_09_a_payment_just_before_the_deadline_wins(processor: ProjectionProcessor, desk: Desk) -> None:
    desk.lock_and_sign()
    desk.clock.advance(timedelta(minutes=10) - timedelta(milliseconds=100))  # 9:59.9
    paid = desk.pay()
    processor.run_until_caught_up()
    assert fire_deadlines(processor) == 0  # the clock stopped: nothing left to expire
    assert decision(processor, paid)["state_after"]["status"] == "deposit_paid"


def test_SALE_09_at_the_deadline_the_unit_goes_back_on_sale(
    processor: ProjectionProcessor, desk: Desk, broker: str, codec: EventCodec
) -> None:
    desk.lock_and_sign()
    processor.run_until_caught_up()
    desk.clock.advance(timedelta(minutes=10) - timedelta(milliseconds=1))
    assert fire_deadlines(processor) == 0  # not yet
    desk.clock.advance(timedelta(milliseconds=1))  # exactly 10:00.000 is late
    assert fire_deadlines(processor) == 1
    assert fire_deadlines(processor) == 0  # sent once, not on every tick
    processor.run_until_caught_up()
    desk.clock.advance(timedelta(milliseconds=100))  # 10:00.1
    late = desk.pay()
    processor.run_until_caught_up()
    refused = decision(processor, late)
    assert (refused["outcome"], refused["rule_id"]) == ("rejected", "SALE-11")  # no open subscription any more
    assert refused["state_after"]["status"] == "available"
    assert facts_on_the_log(broker, desk.unit, codec)[-3:] == [
        "SubscriptionAbandoned", "UnitLockReleased", "UnitCommandRejected",
    ]  # fmt: skip
    with processor.engine.connect() as connection:
        assert connection.execute(select(unit_deadlines).where(unit_deadlines.c.unit_id == desk.unit)).all() == []


def test_SALE_09_a_payment_ahead_of_the_expiry_on_the_log_wins(processor: ProjectionProcessor, desk: Desk) -> None:
    desk.lock_and_sign()
    processor.run_until_caught_up()
    desk.clock.advance(timedelta(minutes=10) - timedelta(milliseconds=100))
    paid = desk.pay()  # recorded at 9:59.9, on the log before any expiry
    desk.clock.advance(timedelta(milliseconds=200))
    assert fire_deadlines(processor) == 1  # the timer saw the deadline pass before the payment was decided
    processor.run_until_caught_up()
    assert decision(processor, paid)["outcome"] == "accepted"
    expiry = [row for row in _decisions(processor, desk.unit) if row["command_type"] == "EXPIRE_DEADLINE"]
    assert [(row["outcome"], row["rule_id"]) for row in expiry] == [("rejected", "SALE-09")]


def _decisions(processor: ProjectionProcessor, unit: str) -> list[dict[str, Any]]:
    with processor.engine.connect() as connection:
        rows = connection.execute(select(unit_decisions).where(unit_decisions.c.unit_id == unit)).all()
    return [dict(row._mapping) for row in rows]


def test_SALE_09_a_deadline_that_passed_during_downtime_fires_on_recovery(
    processor: ProjectionProcessor, desk: Desk, settings: Settings
) -> None:
    desk.lock_and_sign()
    processor.run_until_caught_up()  # then the processor is "down" while the clock runs on
    desk.clock.advance(timedelta(minutes=45))
    restarted = build_decision_processor(settings, clock=desk.clock)
    stop = threading.Event()
    worker = threading.Thread(target=restarted.run, args=(stop,))
    started = time.monotonic()
    worker.start()
    try:
        released = wait_for(
            lambda: [r for r in _decisions(restarted, desk.unit) if r["command_type"] == "EXPIRE_DEADLINE"],
            timeout=30, what="the expiry after recovery",
        )  # fmt: skip
    finally:
        stop.set()
        worker.join(timeout=30)
    assert released[0]["outcome"] == "accepted" and released[0]["state_after"]["status"] == "available"
    assert time.monotonic() - started < 15  # group join on tansu takes a few seconds; then it fires at once


def test_redeciding_after_a_crash_reproduces_the_same_fact_ids(
    processor: ProjectionProcessor, desk: Desk, settings: Settings, broker: str, codec: EventCodec
) -> None:
    desk.lock_and_sign()
    processor.run_until_caught_up()
    # Forget the SQL side of the batch as a crash before the commit would, keeping what is on Kafka.
    processor.reset()
    build_decision_processor(settings, clock=desk.clock).run_until_caught_up()
    messages = [m for m in read_topic(broker, FACTS_TOPIC) if m.key() == desk.unit.encode()]
    ids = [str(codec.decode(m.value())[1]["envelope"]["event_id"]) for m in messages]
    assert len(ids) == 6 and len(set(ids)) == 3  # each fact twice, with the same id both times
    facts = [record_to_fact(*codec.decode(m.value())) for m in messages]
    assert facts[:3] == facts[3:]


def test_a_command_the_decision_code_chokes_on_is_dead_lettered_and_the_batch_goes_on(
    processor: ProjectionProcessor,
    desk: Desk,
    settings: Settings,
    codec: EventCodec,
    catalogue: Catalogue,
    broker: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug that one command triggers must not stop 销控 for everyone: the command goes to the dead-letter
    topic with the reason, the rest of its batch is decided, and no fact of the failed batch went out twice."""
    real_decide = sales_domain.decide

    def decide_with_a_bug(state: Any, command: Any, policy: Any) -> Any:
        if getattr(command, "customer_id", None) == "c-poison":
            raise ZeroDivisionError("division by zero")
        return real_decide(state, command, policy)

    monkeypatch.setattr(sales_domain, "decide", decide_with_a_bug)
    good = Desk(settings, codec, catalogue)
    accepted = good.command("REQUEST_LOCK", "consultant", customer_id="c-1", staff_id="s-1")
    poisoned = desk.command("REQUEST_LOCK", "consultant", customer_id="c-poison", staff_id="s-1")
    processor.run_until_caught_up()

    assert decision(processor, accepted)["outcome"] == "accepted"
    assert facts_on_the_log(broker, good.unit, codec) == ["UnitLockRequested"]  # once, not once per attempt
    assert facts_on_the_log(broker, desk.unit, codec) == []
    (letter,) = [m for m in read_topic(broker, "anchang.deadletter") if poisoned.encode() in m.value()]
    headers = {key: value.decode() for key, value in letter.headers()}
    assert headers[deadletter.REASON] == "processing_failed"
    assert headers[deadletter.DETAIL] == "ZeroDivisionError: division by zero"
    assert headers[deadletter.SOURCE_TOPIC] == "anchang.units.commands"

    # The unit is untouched by the failed attempt: the next request for it is decided normally.
    retried = desk.command("REQUEST_LOCK", "consultant", customer_id="c-2", staff_id="s-2")
    processor.run_until_caught_up()
    assert decision(processor, retried)["outcome"] == "accepted"
    assert facts_on_the_log(broker, desk.unit, codec) == ["UnitLockRequested"]
