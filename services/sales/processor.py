"""The 销控 decision processor: the single writer of every unit's facts.

It consumes ``anchang.units.commands`` (keyed by unit, so one unit's commands arrive in order on one
partition) through the projection runner, which gives it exactly-once *effects*: for each batch it folds
each unit's state from the facts it emitted before, runs the pure ``decide``/``evolve``, produces the new
facts to ``anchang.units`` and then commits, in one SQL transaction, the facts, its answer to every command,
the running payment deadlines and the consumed offsets.

A crash after producing but before committing re-decides the same commands from the same state: the facts
come out identical, with the same event ids (``wire.fact_event_id``), and consumers drop the copies.

The SALE-09 payment deadline is a timer that puts an EXPIRE_DEADLINE *command* on the commands topic once
the deadline has passed. On the log it is ordered with the unit's payments: whichever comes first in the
partition is decided first, so a payment and the expiry can never both win. A deadline that passed while
the processor was down fires at the first tick after it starts."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection, Engine, delete, select, update

from projections.base import ConsumedEvent, upsert
from projections.timers import not_sent_recently
from services.core.catalog import Catalogue
from services.core.clock import Clock, now_in_millis
from services.core.codec import EventCodec
from services.ingest.events import build_system_event
from services.kafka.emitter import FactEmitter
from services.sales import domain as d
from services.sales.policies import OfficePolicies
from services.sales.tables import unit_deadlines, unit_decisions, unit_facts
from services.sales.wire import InvalidCommand, fact_event_id, fact_to_record, record_to_command, record_to_fact

COMMANDS_TOPIC = "anchang.units.commands"
FACTS_TOPIC = "anchang.units"
PROCESSOR_NAME = "unit-decisions"
REFUSAL_EVENT_TYPES = ("UnitLockRejected", "UnitCommandRejected")
EXPIRY_NAMESPACE = uuid.UUID("0b9d3f1e-2a4c-4f7b-8e61-3c5d7a9b1f20")
# If an EXPIRE_DEADLINE put on the log has not been decided after this long, put it there again (same id).

DECISIONS = Counter(
    "anchang_unit_decisions_total", "Unit commands decided, by office, command and outcome.",
    ["office_id", "command_type", "outcome"],
)  # fmt: skip
DOUBLE_SALES_BLOCKED = Counter(
    "anchang_double_sales_blocked_total", "Attempts refused by the 一房二卖 guard (SALE-06), by office.", ["office_id"]
)
DEADLINES_MISSED = Counter(
    "anchang_payment_deadlines_missed_total",
    "Subscriptions abandoned at the SALE-09 deadline, by office.",
    ["office_id"],
)
DECISION_LATENCY = Histogram(
    "anchang_unit_decision_seconds",
    "From a command's acceptance by the API (recorded_at) to its decision being committed.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def summarize(state: d.UnitState) -> dict[str, Any]:
    """What the API answers with after a decision: the unit as the 销控表 shows it."""
    subscription = state.subscription
    return {
        "status": str(state.status),
        "customer_id": state.claimant,
        "staff_id": state.holder.staff_id if state.holder else (state.pending.staff_id if state.pending else None),
        "subscription_id": subscription.subscription_id if subscription else None,
        "payment_deadline_at": subscription.deadline_at.isoformat()
        if subscription and state.status is d.UnitStatus.SUBSCRIBED
        else None,
        "refund_id": state.refund.refund_id if state.refund else None,
    }


class UnitDecisions:
    """The decision step, run by a ProjectionProcessor over the commands topic."""

    tables = (unit_facts, unit_decisions, unit_deadlines)

    def __init__(
        self,
        *,
        codec: EventCodec,
        catalogue: Catalogue,
        kafka_config: dict[str, Any],
        policies: OfficePolicies,
        clock: Clock,
    ) -> None:
        self.codec = codec
        self.catalogue = catalogue
        self.policies = policies
        self.clock = clock
        self.emitter = FactEmitter(kafka_config)

    # ------------------------------------------------------------ deciding a batch

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        # Facts go out when the SQL writes have succeeded too; a batch that raises sends none (the runner
        # then retries its records one by one and dead-letters the one that fails).
        with self.emitter.batch():
            self._apply(connection, events)

    def _apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        commands = [event for event in events if event.event_type == "UnitCommandIssued"]
        if not commands:
            return
        states = self._load_states(connection, {event.record["unit_id"] for event in commands})
        recorded_at = self._now()
        fact_rows: list[dict[str, Any]] = []
        decision_rows: list[dict[str, Any]] = []
        for event in commands:
            unit_id = event.record["unit_id"]
            facts = self._decide(states[unit_id], event)
            fact_ids = [fact_event_id(event.event_id, index) for index in range(len(facts))]
            for fact, fact_id in zip(facts, fact_ids, strict=True):
                states[unit_id] = d.evolve(states[unit_id], fact)
                fact_rows.append(self._emit(fact, fact_id, event.office_id, recorded_at))
            decision_rows.append(self._decision_row(event, facts, fact_ids, states[unit_id], recorded_at))
        connection.execute(unit_facts.insert(), fact_rows)
        connection.execute(unit_decisions.insert(), decision_rows)
        self._track_deadlines(connection, {event.record["unit_id"]: event.office_id for event in commands}, states)

    def _decide(self, state: d.UnitState, event: ConsumedEvent) -> list[d.Fact]:
        try:
            command = record_to_command(event.record)
        except InvalidCommand as problem:
            envelope = event.envelope
            return [
                d.CommandRejected(
                    unit_id=event.record["unit_id"], caused_by=event.event_id, at=envelope["recorded_at"],
                    actor_id=envelope["actor"]["staff_id"], actor_role=envelope["actor"]["role"],
                    command_type=str(event.record["command_type"]), rule_id=d.INPUT_RULE, reason=str(problem),
                    current_holder=state.claimant,
                )
            ]  # fmt: skip
        return d.decide(state, command, self.policies(event.office_id))

    def _emit(self, fact: d.Fact, event_id: str, office_id: str, recorded_at: datetime) -> dict[str, Any]:
        event_type, record = fact_to_record(fact, event_id=event_id, office_id=office_id, recorded_at=recorded_at)
        value = self.codec.encode(event_type, record, FACTS_TOPIC)
        self.emitter.produce(FACTS_TOPIC, value, fact.unit_id, event_type)
        if isinstance(fact, d.SubscriptionAbandoned):
            DEADLINES_MISSED.labels(office_id).inc()
        if d.is_double_sale_attempt(fact):
            DOUBLE_SALES_BLOCKED.labels(office_id).inc()
        return {"event_id": event_id, "office_id": office_id, "unit_id": fact.unit_id, "event_type": event_type,
                "caused_by": fact.caused_by, "occurred_at": fact.at, "avro": value}  # fmt: skip

    def _decision_row(
        self, event: ConsumedEvent, facts: list[d.Fact], fact_ids: list[str], state: d.UnitState, decided_at: datetime
    ) -> dict[str, Any]:
        rejection = next((fact for fact in facts if isinstance(fact, d.LockRejected | d.CommandRejected)), None)
        outcome = "accepted"
        if rejection is not None:
            outcome = (
                "forbidden"
                if d.is_role_refusal(rejection)
                else "invalid"
                if rejection.rule_id == d.INPUT_RULE
                else "rejected"
            )
        command_type = str(event.record["command_type"])
        DECISIONS.labels(event.office_id, command_type, outcome).inc()
        DECISION_LATENCY.observe(max(0.0, (decided_at - event.recorded_at).total_seconds()))
        return {
            "command_id": event.event_id,
            "office_id": event.office_id,
            "unit_id": event.record["unit_id"],
            "command_type": command_type,
            "outcome": outcome,
            "rule_id": rejection.rule_id if rejection else None,
            "reason": rejection.reason if rejection else None,
            "current_holder": rejection.current_holder if rejection else None,
            "state_after": summarize(state),
            "fact_event_ids": fact_ids,
            "command_recorded_at": event.recorded_at,
            "decided_at": decided_at,
        }

    def _load_states(self, connection: Connection, unit_ids: set[str]) -> dict[str, d.UnitState]:
        """Each unit's state, folded from the facts this processor emitted for it (in emission order)."""
        facts: dict[str, list[d.Fact]] = defaultdict(list)
        ids = sorted(unit_ids)
        for start in range(0, len(ids), 500):
            rows = connection.execute(
                select(unit_facts.c.unit_id, unit_facts.c.avro)
                .where(unit_facts.c.unit_id.in_(ids[start : start + 500]))
                # Refusals never change a unit's state: skip them, or a contested unit would re-read every
                # refused attempt on every batch.
                .where(unit_facts.c.event_type.not_in(REFUSAL_EVENT_TYPES))
                .order_by(unit_facts.c.seq)
            )
            for unit_id, value in rows:
                event_type, record = self.codec.decode(value)
                facts[unit_id].append(record_to_fact(event_type, record))
        return {unit_id: d.fold(facts[unit_id]) for unit_id in unit_ids}

    def _track_deadlines(self, connection: Connection, offices: dict[str, str], states: dict[str, d.UnitState]) -> None:
        running, stopped = [], []
        for unit_id, office_id in offices.items():
            state = states[unit_id]
            if state.status is d.UnitStatus.SUBSCRIBED and state.subscription is not None:
                running.append({"unit_id": unit_id, "office_id": office_id, "expiry_sent_at": None,
                                "subscription_id": state.subscription.subscription_id,
                                "deadline_at": state.subscription.deadline_at})  # fmt: skip
            else:
                stopped.append(unit_id)
        if stopped:
            connection.execute(delete(unit_deadlines).where(unit_deadlines.c.unit_id.in_(stopped)))
        upsert(connection, unit_deadlines, running, keys=("unit_id",))

    # ------------------------------------------------------------ the SALE-09 timer

    def fire_due_deadlines(self, engine: Engine) -> int:
        """Put an EXPIRE_DEADLINE on the log for every running deadline that has passed; return how many."""
        now = self._now()
        with engine.begin() as connection:
            due = connection.execute(
                select(unit_deadlines).where(
                    unit_deadlines.c.deadline_at <= now,
                    not_sent_recently(unit_deadlines.c.expiry_sent_at, now),
                )
            ).all()
            for row in due:
                self._send_expiry(row.office_id, row.unit_id, row.subscription_id, now)
            self.emitter.flush()
            if due:
                connection.execute(
                    update(unit_deadlines)
                    .where(unit_deadlines.c.unit_id.in_([row.unit_id for row in due]))
                    .values(expiry_sent_at=now)
                )
        return len(due)

    def _send_expiry(self, office_id: str, unit_id: str, subscription_id: str, now: datetime) -> None:
        # One id per subscription: copies sent again are dropped as duplicates by the runner.
        command_id = str(uuid.uuid5(EXPIRY_NAMESPACE, f"{unit_id}/{subscription_id}"))
        body = {
            "event_type": "UnitCommandIssued",
            "event_id": command_id,
            "occurred_at": now,
            "actor": {"staff_id": self.policies(office_id).processor_id, "role": "SYSTEM"},
            "payload": {"unit_id": unit_id, "command_type": "EXPIRE_DEADLINE", "subscription_id": subscription_id},
        }
        self.emitter.produce_event(build_system_event(body, office_id, self.catalogue, now), self.codec)

    # ------------------------------------------------------------ plumbing

    def _now(self) -> datetime:
        return now_in_millis(self.clock)
