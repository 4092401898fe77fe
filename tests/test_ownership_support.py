"""Scenario helpers for the ownership tests (no tests here): an office that publishes visits, calls, ownership
commands and 销控 facts straight to Kafka with a clock the test controls, and readers of the resulting SQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from projections.ownership_tables import channel_reports, commission_ledger, customer_owners, sales_performance
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.kafka.direct import DirectPublisher
from services.ownership.customers import customer_key
from services.ownership.tables import ownership_decisions, ownership_facts
from tests.support import TEST_CUSTOMER_KEY_SECRET

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 2026-01-05 10:00 in the office (UTC+8)
ROLES = {
    "s": "SALES_CONSULTANT", "sup": "SALES_SUPERVISOR", "mgr": "SALES_MANAGER", "fd": "FRONT_DESK",
    "fin": "FINANCE", "ch": "CHANNEL_AGENT",
}  # fmt: skip


def iso(moment: datetime) -> str:
    return moment.isoformat()


class Office:
    """One sales office's inputs. Each customer is a fresh phone number, so scenarios never meet."""

    def __init__(self, kafka: dict[str, Any], codec: EventCodec, catalogue: Catalogue, clock: FrozenClock) -> None:
        self.id = f"office-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.publisher = DirectPublisher(kafka, codec, catalogue, clock=clock)
        self._phones = iter(range(10_000_000, 99_999_999))
        self.units: dict[str, str] = {}  # subscription → unit

    def phone(self) -> str:
        return f"139{next(self._phones):08d}"

    def key(self, phone: str) -> str:
        return customer_key(self.id, phone, TEST_CUSTOMER_KEY_SECRET.encode())

    def publish(self, event_type: str, actor: str, payload: dict[str, Any], at: datetime | None = None) -> str:
        role = ROLES[actor.split("-")[0]]
        body = {
            "event_type": event_type,
            "occurred_at": iso(at or self.clock()),
            "actor": {"staff_id": actor, "role": role},
            "payload": payload,
        }
        return self.publisher.publish(body, office_id=self.id)

    def visit(self, phone: str, received_by: str, at: datetime, name: str = "王先生", **extra: Any) -> str:
        payload = {"visit_id": f"v-{uuid.uuid4().hex[:8]}", "customer_name": name, "phone": phone,
                   "arrived_at": iso(at), "visit_type": "NEW", "first_visit_claimed": True,
                   "prior_contact_claimed": False, "received_by": received_by, **extra}  # fmt: skip
        return self.publish("VisitRegistered", "fd-1", payload, at)

    def call(self, phone: str, staff: str, at: datetime) -> str:
        payload = {"call_id": f"c-{uuid.uuid4().hex[:8]}", "staff_id": staff, "phone": phone,
                   "caller_class": "GENUINE_CUSTOMER", "visit_invited": True}  # fmt: skip
        return self.publish("CallLogged", staff, payload, at)

    def command(self, command_type: str, actor: str, at: datetime | None = None, **payload: Any) -> str:
        return self.publish("OwnershipCommandIssued", actor, {"command_type": command_type, **payload}, at)

    def report(self, phone: str, channel: str, agent: str, at: datetime, name: str = "王先生", **extra: Any) -> str:
        return self.command(
            "REPORT_CHANNEL_CUSTOMER", "ch-1", at, phone=phone, customer_name=name, channel_id=channel,
            agent_id=agent, **extra,
        )  # fmt: skip

    def deal(self, key: str, staff: str, price_fen: int = 100_000_000, at: datetime | None = None) -> str:
        """A 认购 whose deposit stops the SALE-09 clock, as the 销控 processor records it; returns its id."""
        subscription, unit = f"sub-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
        signed = at or self.clock()
        signed_payload = {"subscription_id": subscription, "unit_id": unit, "customer_id": key, "staff_id": staff,
                          "signed_at": iso(signed), "price_fen": price_fen}  # fmt: skip
        paid_payload = {"subscription_id": subscription, "unit_id": unit, "customer_id": key, "amount_fen": 2_000_000,
                        "kind": "DEPOSIT", "received_by": "fin-1", "receipt_no": f"r-{subscription}",
                        "stops_clock": True}  # fmt: skip
        self.publish("SubscriptionSigned", staff, signed_payload, signed)
        self.publish("PaymentReceived", "fin-1", paid_payload, signed + timedelta(minutes=5))
        self.units[subscription] = unit
        return subscription

    def refund(self, subscription: str, at: datetime) -> str:
        return self.publish("RefundProcessed", "fin-1", {"refund_id": f"rf-{subscription}", "unit_id":
                            self.units[subscription], "subscription_id": subscription, "kind": "CANCEL_SUBSCRIPTION",
                            "refunded_amount_fen": 2_000_000, "processed_by": "fin-1"}, at)  # fmt: skip

    def flush(self) -> None:
        self.publisher.flush()


# ------------------------------------------------------------------------------------------------ reading SQL


def owner(engine: Engine, key: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(select(customer_owners).where(customer_owners.c.customer_key == key)).first()
    return dict(row._mapping) if row is not None else None


def facts(engine: Engine, key: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event type, rule id, body) of every fact decided for the customer, in order."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ownership_facts.c.event_type, ownership_facts.c.rule_id, ownership_facts.c.body)
            .where(ownership_facts.c.customer_key == key)
            .order_by(ownership_facts.c.seq)
        ).all()
    return [(event_type, rule_id, body) for event_type, rule_id, body in rows]


def fact_types(engine: Engine, key: str) -> list[str]:
    return [event_type for event_type, _, _ in facts(engine, key)]


def decision(engine: Engine, input_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(ownership_decisions).where(ownership_decisions.c.input_id == input_id)).one()
    return dict(row._mapping)


def reports(engine: Engine, key: str) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(channel_reports).where(channel_reports.c.customer_key == key)).all()
    return {row.report_id: dict(row._mapping) for row in rows}


def ledger(engine: Engine, deal_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(commission_ledger)
            .where(commission_ledger.c.deal_id == deal_id)
            .order_by(commission_ledger.c.line_id)
        ).all()
    return [dict(row._mapping) for row in rows]


def performance(engine: Engine, office_id: str, staff_id: str, month: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(sales_performance).where(
                sales_performance.c.office_id == office_id,
                sales_performance.c.staff_id == staff_id,
                sales_performance.c.month == month,
            )
        ).first()
    return dict(row._mapping) if row is not None else None
