"""The attribution processor catching up from offset 0 decides in Kafka-timestamp order, on the real broker, on
SQLite and PostgreSQL: 销控 records published before the visit that came first are still decided after it.

Each customer's records are published in an order that contradicts their timestamps (the units first), as a
catch-up after downtime sees them when librdkafka fetches anchang.units ahead of anchang.frontdesk."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from projections.runner import ProjectionProcessor
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ownership.service import build_attribution_processor
from services.ownership.tables import ownership_customers, ownership_decisions
from tests.test_ownership_support import ROLES, T0, Office, decision, fact_types, iso, ledger, owner

pytestmark = pytest.mark.kafka

ARRIVAL = T0 + timedelta(hours=1)
SIGNED = T0 + timedelta(hours=3)


@dataclass
class Deal:
    key: str
    subscription: str
    payment_id: str
    visit_id: str | None = None


@dataclass
class Played:
    office: Office
    processor: ProjectionProcessor
    deals: dict[str, Deal] = field(default_factory=dict)

    @property
    def engine(self) -> Any:
        return self.processor.engine


def _publish(office: Office, event_type: str, actor: str, payload: dict[str, Any], at: Any, timestamp_ms: int) -> str:
    body = {"event_type": event_type, "occurred_at": iso(at), "payload": payload,
            "actor": {"staff_id": actor, "role": ROLES[actor.split("-")[0]]}}  # fmt: skip
    return office.publisher.publish(body, office_id=office.id, timestamp_ms=timestamp_ms)


def _visit(office: Office, phone: str, received_by: str, timestamp_ms: int) -> str:
    payload = {"visit_id": f"v-{uuid.uuid4().hex[:8]}", "customer_name": "王先生", "phone": phone,
               "arrived_at": iso(ARRIVAL), "visit_type": "NEW", "first_visit_claimed": True,
               "prior_contact_claimed": False, "received_by": received_by}  # fmt: skip
    return _publish(office, "VisitRegistered", "fd-1", payload, ARRIVAL, timestamp_ms)


def _units(office: Office, key: str, staff: str, signed_ms: int, paid_ms: int) -> tuple[str, str]:
    """A 认购 and the deposit that stops the SALE-09 clock, with the given Kafka timestamps."""
    subscription, unit = f"sub-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    signed = {"subscription_id": subscription, "unit_id": unit, "customer_id": key, "staff_id": staff,
              "signed_at": iso(SIGNED), "price_fen": 100_000_000}  # fmt: skip
    paid = {
        "subscription_id": subscription,
        "unit_id": unit,
        "customer_id": key,
        "amount_fen": 2_000_000,
        "kind": "DEPOSIT",
        "received_by": "fin-1",
        "receipt_no": f"r-{subscription}",
        "stops_clock": True,
    }
    _publish(office, "SubscriptionSigned", staff, signed, SIGNED, signed_ms)
    payment = _publish(office, "PaymentReceived", "fin-1", paid, SIGNED + timedelta(minutes=5), paid_ms)
    return subscription, payment


def play(office: Office, processor: ProjectionProcessor) -> Played:
    played = Played(office, processor)
    # Stamped from now on: within a partition records go in offset order, so a record stamped earlier than the
    # records other tests left before it on the shared topics would be held behind them.
    base = int(time.time() * 1000)
    phones = {name: office.phone() for name in ("ordered", "remembered", "never_met")}
    keys = {name: office.key(phone) for name, phone in phones.items()}
    # Published first: every 销控 record. "ordered": 认购 and deposit both after the visit. "remembered": the 认购
    # before the visit (its customer still unknown then), the deposit after it. "never_met": no visit at all.
    for name, signed_ms, paid_ms in (("ordered", 200, 300), ("remembered", 0, 300), ("never_met", 200, 300)):
        subscription, payment = _units(office, keys[name], "s-b", base + signed_ms, base + paid_ms)
        played.deals[name] = Deal(keys[name], subscription, payment)
    office.flush()
    # Published last, stamped earlier: the visits that make the customers known (s-a receives them: OWN-01).
    for name in ("ordered", "remembered"):
        played.deals[name].visit_id = _visit(office, phones[name], "s-a", base + 100)
    office.flush()
    processor.run_until_caught_up()
    return played


@pytest.fixture(scope="module")
def played(
    module_database_url: str,
    broker: str,
    registry_url: str,
    codec: EventCodec,
    catalogue: Catalogue,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Played]:
    data_dir: Path = tmp_path_factory.mktemp("ownership-ordering")
    database_url = module_database_url
    settings = Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, DATABASE_URL=database_url,
        ANCHANG_DATA_DIR=data_dir,
    )  # fmt: skip
    clock = FrozenClock(T0 + timedelta(hours=4))
    office = Office(settings.kafka_client_config(), codec, catalogue, clock)
    yield play(office, build_attribution_processor(settings, clock))


def test_OWN_01_units_published_before_the_earlier_visit_are_decided_after_it(played: Played) -> None:
    deal = played.deals["ordered"]
    assert decision(played.engine, deal.payment_id)["outcome"] == "accepted"
    types = fact_types(played.engine, deal.key)
    assert "DealAttributed" in types
    assert types.index("OwnershipVisitRecorded") < types.index("DealAttributed")
    current = owner(played.engine, deal.key)
    assert current is not None and current["staff_id"] == "s-a"  # the visit's receiver, not s-b who signed
    credits = [line for line in ledger(played.engine, deal.subscription) if line["party"] == "staff"]
    assert [(line["party_id"], line["entry"]) for line in credits] == [("s-a", "credit")]


def test_OWN_01_a_subscription_signed_before_its_customer_was_met_is_remembered_until_the_deposit(
    played: Played,
) -> None:
    deal = played.deals["remembered"]
    assert decision(played.engine, deal.payment_id)["outcome"] == "accepted"
    assert fact_types(played.engine, deal.key).count("DealAttributed") == 1
    current = owner(played.engine, deal.key)
    assert current is not None and current["staff_id"] == "s-a"


def test_a_deposit_for_a_customer_ownership_never_met_is_skipped_with_its_reason(played: Played) -> None:
    deal = played.deals["never_met"]
    answered = decision(played.engine, deal.payment_id)
    assert (answered["outcome"], answered["customer_key"]) == ("skipped", None)
    assert "unknown to ownership" in answered["reason"]
    with played.engine.connect() as connection:
        made = connection.execute(
            select(ownership_customers.c.customer_key).where(ownership_customers.c.customer_key == deal.key)
        ).first()
    assert made is None  # no owner was made out of a key nobody met
    assert fact_types(played.engine, deal.key) == []


def test_nothing_of_the_met_customers_was_skipped(played: Played) -> None:
    with played.engine.connect() as connection:
        skipped = connection.execute(
            select(ownership_decisions.c.input_id).where(
                ownership_decisions.c.office_id == played.office.id, ownership_decisions.c.outcome == "skipped"
            )
        ).all()
    assert [row.input_id for row in skipped] == [played.deals["never_met"].payment_id]
