"""The attribution processor: the single writer of every customer's ownership and commission facts.

Run by a ProjectionProcessor over ``anchang.ownership.commands`` (报备, referrals, renewals, switches, disputes,
confirmations, targets, its own expiry timer), ``anchang.frontdesk`` (visits and answered calls) and
``anchang.units`` (the 认购 whose deposit stopped the clock, contracts, processed refunds). For each batch it
translates the records (inputs.py), locks the customers concerned, folds each one's state from the facts it stored
before, runs the pure ``decide``/``evolve``, produces the new facts to ``anchang.ownership`` (phones masked) and
then commits, in one SQL transaction with the consumed offsets: the facts (raw phones kept, for OWN-12), its answer
to every input, the read side (projections/ownership.py), the OWN-05 timers and the project blocklist.

Concurrency: two instances may consume different partitions, and one customer's inputs arrive on several topics.
Each batch locks its customers' rows (SELECT … FOR UPDATE on PostgreSQL, in key order so two batches never wait on
each other in a cycle; SQLite has one writer), so a customer is decided by one batch at a time and its state is
always folded from every fact committed before.

OWN-05 expiry: ``fire_due_expiries`` (the runner's tick) puts an EXPIRE_OWNERSHIP command with a deterministic id on
the commands topic for every ownership past ``expires_at``. On the log it is ordered with the office's other
inputs, and an expiry that passed while the processor was down fires at the first tick after it starts."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from projections.base import ConsumedEvent, upsert
from projections.ownership import PerformanceKey, refresh_performance, set_target, write_customers
from projections.ownership_tables import (
    channel_reports,
    commission_ledger,
    customer_owners,
    sales_performance,
    sales_targets,
)
from projections.timers import not_sent_recently
from services.core.catalog import Catalogue
from services.core.clock import Clock, now_in_millis, stored_utc, to_millis
from services.core.codec import EventCodec
from services.ingest.events import build_system_event
from services.kafka.emitter import FactEmitter
from services.ownership import facts as f
from services.ownership.customers import CustomerKeys, mask_phone
from services.ownership.domain import decide, evolve, fold
from services.ownership.events import DealRefunded, DealSubscribed
from services.ownership.inputs import Decide, Input, Refuse, SetTarget, Skip, project_of, translate
from services.ownership.policies import OwnershipPolicies
from services.ownership.policy import Role
from services.ownership.state import CustomerState
from services.ownership.tables import (
    barred_agents,
    ownership_customers,
    ownership_decisions,
    ownership_facts,
    ownership_subscriptions,
    ownership_timers,
)
from services.ownership.wire import fact_event_id, fact_to_record_and_json, json_to_fact, rule_of

log = logging.getLogger(__name__)

COMMANDS_TOPIC = "anchang.ownership.commands"
FACTS_TOPIC = "anchang.ownership"
INPUT_TOPICS = (COMMANDS_TOPIC, "anchang.frontdesk", "anchang.units")
PROCESSOR_NAME = "attribution"
EXPIRY_NAMESPACE = uuid.UUID("5c2f8e17-9a3b-4d6e-b1f0-2e7a9c4d8b65")
GAUGE_REFRESH_SECONDS = 10.0
# Facts that never change a customer's state: skipped when folding.
STATELESS_EVENT_TYPES = ("OwnershipInputRejected", "OwnershipInputNoted")

EXPIRING_7D = Gauge(
    "anchang_ownerships_expiring_7d", "Ownerships expiring in the next 7 days (OWN-05/06 follow-up), by office.",
    ["office_id"],
)  # fmt: skip
REPORTS_REJECTED = Counter(
    "anchang_channel_reports_rejected_total",
    "Channel 报备 verdicts that earn nothing (OWN-10…16), by office and reason.",
    ["office_id", "reason"],
)  # fmt: skip
COMMISSIONS_WITHHELD = Counter(
    "anchang_commissions_withheld_total", "Channel commissions withheld (COM-05, OWN-12/15/17), by office and rule.",
    ["office_id", "rule_id"],
)  # fmt: skip
DISPUTES_OPEN = Gauge(
    "anchang_ownership_disputes_open", "Open ownership disputes (COM-01, OWN-20), by office.", ["office_id"]
)
INPUTS_SKIPPED = Counter(
    "anchang_ownership_inputs_skipped_total", "Inputs naming no identifiable customer, by reason.", ["reason"]
)
DECISIONS = Counter(
    "anchang_ownership_decisions_total", "Ownership inputs decided, by office, input and outcome.",
    ["office_id", "input_type", "outcome"],
)  # fmt: skip
# Built once: run for every customer of every batch (bound names differ from the columns, as SQLAlchemy requires).
_UPDATE_CUSTOMER = (
    update(ownership_customers)
    .where(ownership_customers.c.customer_key == bindparam("b_key"))
    .values(dispute_open=bindparam("b_dispute_open"), updated_at=bindparam("b_updated_at"))
)
_UPDATE_CUSTOMER_PHONE = _UPDATE_CUSTOMER.values(phone_masked=bindparam("b_phone_masked"))
# The translation look-ups, one per input or so.
_KNOWN_CUSTOMER = select(ownership_customers.c.customer_key).where(
    ownership_customers.c.customer_key == bindparam("b_key")
)
_OWNER_OF = select(customer_owners.c.staff_id).where(customer_owners.c.customer_key == bindparam("b_key"))
_BARRED_AT = select(barred_agents.c.barred_at).where(
    barred_agents.c.project_id == bindparam("b_project_id"), barred_agents.c.agent_id == bindparam("b_agent_id")
)
_SUBSCRIPTION = select(ownership_subscriptions).where(
    ownership_subscriptions.c.subscription_id == bindparam("b_subscription_id")
)


class _SqlContext:
    """What translation looks up, answered from the processor's tables inside the batch's transaction."""

    def __init__(self, connection: Connection, customer_keys: CustomerKeys) -> None:
        self.connection = connection
        self.customer_keys = customer_keys
        self.pending: set[str] = set()  # customers first seen earlier in this batch

    def customer_key(self, project_id: str, phone: str) -> str:
        return self.customer_keys.key(project_id, phone)

    def known_customer(self, key: str) -> bool:
        if key in self.pending:
            return True
        found = self.connection.execute(_KNOWN_CUSTOMER, {"b_key": key}).first()
        return found is not None

    def owner_of(self, key: str) -> str | None:
        return self.connection.execute(_OWNER_OF, {"b_key": key}).scalar()

    def barred_at(self, project_id: str, agent_id: str) -> datetime | None:
        barred = self.connection.execute(_BARRED_AT, {"b_project_id": project_id, "b_agent_id": agent_id}).scalar()
        return stored_utc(barred) if barred is not None else None

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        row = self.connection.execute(_SUBSCRIPTION, {"b_subscription_id": subscription_id}).first()
        return _aware_row(row._mapping) if row is not None else None


class Attribution:
    """The decision step, run by a ProjectionProcessor over the input topics."""

    tables = (
        ownership_facts, ownership_customers, ownership_subscriptions, ownership_decisions, ownership_timers,
        barred_agents, customer_owners, sales_performance, sales_targets, channel_reports, commission_ledger,
    )  # fmt: skip

    def __init__(
        self,
        *,
        codec: EventCodec,
        catalogue: Catalogue,
        kafka_config: dict[str, Any],
        policies: OwnershipPolicies,
        clock: Clock,
        customer_keys: CustomerKeys,
    ) -> None:
        self.codec = codec
        self.catalogue = catalogue
        self.policies = policies
        self.customer_keys = customer_keys
        self.clock = clock
        self.emitter = FactEmitter(kafka_config)
        self._gauges_refreshed = 0.0

    # ------------------------------------------------------------ deciding a batch

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        # Facts go out when the SQL writes have succeeded too; a batch that raises sends none (the runner
        # then retries its records one by one and dead-letters the one that fails).
        with self.emitter.batch():
            self._apply(connection, events)

    def _apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None:
        now = self._now()
        context = _SqlContext(connection, self.customer_keys)
        inputs: list[tuple[ConsumedEvent, Input]] = []
        offices: dict[str, str] = {}  # customer → office of its first input in the batch
        touched: set[str] = set()  # customers whose read side must be rewritten
        for event in events:
            touched.update(self._track_units(connection, event, context))
            answer = _unmet_deal(translate(event.event_type, event.record, context), context)
            if answer is None:
                continue
            inputs.append((event, answer))
            if isinstance(answer, Decide | Refuse):
                key = answer.event.customer_key if isinstance(answer, Decide) else answer.customer_key
                context.pending.add(key)
                offices.setdefault(key, event.office_id)
                touched.add(key)
        if not inputs and not touched:
            return
        customer_offices = self._lock(connection, touched, offices, now)
        states = self._load_states(connection, touched)
        fact_rows: list[dict[str, Any]] = []
        decision_rows: list[dict[str, Any]] = []
        performance: set[PerformanceKey] = set()
        for event, answer in inputs:
            if isinstance(answer, SetTarget):
                performance.add(self._set_target(connection, event, answer))
                decision_rows.append(self._decision(event, None, "accepted", None, None, [], now))
                continue
            if isinstance(answer, Skip):
                INPUTS_SKIPPED.labels(answer.reason).inc()
                log.warning("%s: skipped %s %s: %s", PROCESSOR_NAME, event.event_type, event.event_id, answer.detail)
                decision_rows.append(self._decision(event, None, "skipped", None, answer.detail, [], now))
                continue
            key = answer.event.customer_key if isinstance(answer, Decide) else answer.customer_key
            if event.event_type == "OwnershipCommandIssued" and customer_offices[key] != event.office_id:
                # An office decides only about its own customers (the API scopes reads the same way).
                INPUTS_SKIPPED.labels("other_office").inc()
                reason = f"customer {key} belongs to another office"
                decision_rows.append(self._decision(event, None, "skipped", None, reason, [], now))
                continue
            facts = self._decide(states[key], event, answer)
            fact_ids = [fact_event_id(event.event_id, index) for index in range(len(facts))]
            for fact, fact_id in zip(facts, fact_ids, strict=True):
                states[key] = evolve(states[key], fact)
                fact_rows.append(self._emit(fact, fact_id, customer_offices[key], now))
            rejection = next((fact for fact in facts if isinstance(fact, f.Rejected)), None)
            outcome = "rejected" if rejection is not None else "accepted"
            decision_rows.append(
                self._decision(
                    event, key, outcome, rejection.rule_id if rejection else None,
                    rejection.reason if rejection else None, fact_ids, now,
                )
            )  # fmt: skip
        if fact_rows:
            connection.execute(ownership_facts.insert(), fact_rows)
        if decision_rows:
            upsert(connection, ownership_decisions, decision_rows, keys=("input_id",))
        performance |= self._write_read_side(connection, states, customer_offices, fact_rows, now)
        refresh_performance(connection, performance)

    def _decide(self, state: CustomerState, event: ConsumedEvent, answer: Decide | Refuse) -> list[f.Fact]:
        if isinstance(answer, Decide):
            return decide(state, answer.event, self.policies(event.office_id))
        actor = event.envelope["actor"]
        owner = state.owner
        return [
            f.Rejected(
                customer_key=answer.customer_key, caused_by=event.event_id, at=event.recorded_at,
                actor_id=actor["staff_id"], actor_role=actor["role"], event_type=answer.event_type,
                rule_id=answer.rule_id, reason=f"{answer.field}: {answer.reason}",
                current_owner=owner.staff_id if owner is not None else None,
            )
        ]  # fmt: skip

    def _emit(self, fact: f.Fact, event_id: str, office_id: str, recorded_at: datetime) -> dict[str, Any]:
        # One walk over the fact gives both the wire record (phones masked) and the SQL body (raw phones, OWN-12).
        event_type, record, body = fact_to_record_and_json(
            fact, event_id=event_id, office_id=office_id, recorded_at=recorded_at
        )
        value = self.codec.encode(event_type, record, FACTS_TOPIC)
        self.emitter.produce(FACTS_TOPIC, value, fact.customer_key, event_type)
        if isinstance(fact, f.ChannelReportRejected):
            REPORTS_REJECTED.labels(office_id, str(fact.reason)).inc()
        if isinstance(fact, f.CommissionWithheld):
            COMMISSIONS_WITHHELD.labels(office_id, fact.rule_id).inc()
        return {"event_id": event_id, "office_id": office_id, "customer_key": fact.customer_key,
                "event_type": event_type, "caused_by": fact.caused_by, "rule_id": rule_of(fact),
                "occurred_at": fact.at, "body": body}  # fmt: skip

    def _decision(
        self,
        event: ConsumedEvent,
        key: str | None,
        outcome: str,
        rule_id: str | None,
        reason: str | None,
        fact_ids: list[str],
        now: datetime,
    ) -> dict[str, Any]:
        input_type = str(event.record.get("command_type") or event.event_type)
        DECISIONS.labels(event.office_id, input_type, outcome).inc()
        return {"input_id": event.event_id, "office_id": event.office_id, "customer_key": key,
                "input_type": input_type, "outcome": outcome, "rule_id": rule_id, "reason": reason,
                "fact_event_ids": fact_ids, "decided_at": now}  # fmt: skip

    def _set_target(self, connection: Connection, event: ConsumedEvent, target: SetTarget) -> PerformanceKey:
        return set_target(
            connection, event.office_id, target.staff_id, target.month, target.target_amount_fen,
            event.envelope["actor"]["staff_id"], event.event_id, event.recorded_at,
        )  # fmt: skip

    # ------------------------------------------------------------ 销控 bookkeeping

    def _track_units(self, connection: Connection, event: ConsumedEvent, context: _SqlContext) -> set[str]:
        """Remember every 认购 and its later dates; return known customers whose ledger changes without a decision
        (a contract moves the CONTRACT credit point).

        A 认购 is remembered even when its customer is not known yet: the 销控 ``customer_id`` is the ownership
        customer key the API gave out, and the deal is decided only when its deposit stops the SALE-09 clock
        (inputs.py ``_units``), by which time the visit or call that made the customer known has been decided
        (timestamp order). Forgetting it lost the deal for good whenever the 认购 came first (same timestamp, a
        producer's clock behind, the idle bound of a live run). A customer still not met when the deposit comes
        is not credited to anyone: the payment is skipped as ``unknown_customer`` (``_unmet_deal``)."""
        record, subs = event.record, ownership_subscriptions
        match event.event_type:
            case "SubscriptionSigned":
                if not context.known_customer(record["customer_id"]):
                    log.info("%s: 认购 %s names customer %s, not met yet", PROCESSOR_NAME,
                             record["subscription_id"], record["customer_id"])  # fmt: skip
                row = {"subscription_id": record["subscription_id"], "office_id": event.office_id,
                       "customer_key": record["customer_id"], "unit_id": record["unit_id"],
                       "staff_id": record["staff_id"], "price_fen": record["price_fen"],
                       "signed_at": record["signed_at"], "deposit_paid_at": None, "contracted_at": None,
                       "refunded_at": None}  # fmt: skip
                upsert(connection, subs, [row], keys=("subscription_id",))
                return set()
            case "PaymentReceived" if record.get("stops_clock"):
                values = {"deposit_paid_at": event.occurred_at}
            case "ContractSigned":
                values = {"contracted_at": event.occurred_at}
            case "RefundProcessed":
                values = {"refunded_at": event.occurred_at}
            case _:
                return set()
        connection.execute(update(subs).where(subs.c.subscription_id == record["subscription_id"]).values(**values))
        subscription = context.subscription(record["subscription_id"])
        if subscription is None or not context.known_customer(subscription["customer_key"]):
            return set()  # a customer not met yet has no customer row or read side to rewrite
        return {subscription["customer_key"]}

    # ------------------------------------------------------------ state

    def _lock(self, connection: Connection, keys: set[str], offices: dict[str, str], now: datetime) -> dict[str, str]:
        """Create the customers first seen, lock every customer of the batch, and return each one's office."""
        ordered = sorted(keys)
        if not ordered:
            return {}
        new = [{"customer_key": key, "office_id": offices[key], "phone_masked": None, "dispute_open": False,
                "created_at": now, "updated_at": now} for key in ordered if key in offices]  # fmt: skip
        if new:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            connection.execute(insert(ownership_customers).on_conflict_do_nothing(), new)
        query = (
            select(ownership_customers.c.customer_key, ownership_customers.c.office_id)
            .where(ownership_customers.c.customer_key.in_(ordered))
            .order_by(ownership_customers.c.customer_key)
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        return {key: office for key, office in connection.execute(query)}

    def _load_states(self, connection: Connection, keys: set[str]) -> dict[str, CustomerState]:
        """Each customer's state, folded from the facts this processor stored for it (in decision order)."""
        history: dict[str, list[f.Fact]] = defaultdict(list)
        ordered = sorted(keys)
        for start in range(0, len(ordered), 500):
            rows = connection.execute(
                select(ownership_facts.c.customer_key, ownership_facts.c.event_type, ownership_facts.c.body)
                .where(ownership_facts.c.customer_key.in_(ordered[start : start + 500]))
                .where(ownership_facts.c.event_type.not_in(STATELESS_EVENT_TYPES))
                .order_by(ownership_facts.c.seq)
            )
            for key, event_type, body in rows:
                history[key].append(json_to_fact(event_type, body))
        return {key: fold(history[key]) for key in keys}

    def _write_read_side(
        self,
        connection: Connection,
        states: dict[str, CustomerState],
        offices: dict[str, str],
        fact_rows: list[dict[str, Any]],
        now: datetime,
    ) -> set[PerformanceKey]:
        performance: set[PerformanceKey] = set()
        keys = sorted(states)
        subscriptions = {
            row.subscription_id: _aware_row(row._mapping)
            for row in connection.execute(
                select(ownership_subscriptions).where(ownership_subscriptions.c.customer_key.in_(keys))
            )
        }
        customers = [(offices[key], key, states[key], self.policies(offices[key])) for key in keys]
        performance |= write_customers(connection, customers, subscriptions, now)
        timers, stopped = [], []
        plain: list[dict[str, Any]] = []  # customer rows to update, without and with a masked phone
        phoned: list[dict[str, Any]] = []
        for key in keys:
            state, office_id = states[key], offices[key]
            owner = state.owner
            if owner is not None and owner.expires_at is not None:
                expires_at = owner.expires_at.astimezone(UTC)
                timers.append({"customer_key": key, "office_id": office_id, "expires_at": expires_at,
                               "expiry_sent_at": None})  # fmt: skip
            else:
                stopped.append(key)
            visit = state.first_visit
            row = {"b_key": key, "b_dispute_open": state.dispute_open, "b_updated_at": now}
            if visit is None:
                plain.append(row)
            else:
                phoned.append(row | {"b_phone_masked": mask_phone(visit.phone)})
        if plain:  # one executemany per shape instead of an UPDATE per customer
            connection.execute(_UPDATE_CUSTOMER, plain)
        if phoned:
            connection.execute(_UPDATE_CUSTOMER_PHONE, phoned)
        if stopped:
            connection.execute(delete(ownership_timers).where(ownership_timers.c.customer_key.in_(stopped)))
        upsert(connection, ownership_timers, timers, keys=("customer_key",))
        bars = [
            {"project_id": project_of(row["customer_key"]), "agent_id": row["body"]["agent_id"],
             "barred_at": row["occurred_at"], "event_id": row["event_id"]}
            for row in fact_rows
            if row["event_type"] == "ChannelBarred"
        ]  # fmt: skip
        if bars:  # the first bar of an agent in a project counts (OWN-15)
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            connection.execute(insert(barred_agents).on_conflict_do_nothing(), bars)
        return performance

    # ------------------------------------------------------------ the OWN-05 timer

    def fire_due_expiries(self, engine: Engine) -> int:
        """Put an EXPIRE_OWNERSHIP on the log for every ownership past its expiry; return how many."""
        now = self._now()
        with engine.begin() as connection:
            due = connection.execute(
                select(ownership_timers).where(
                    ownership_timers.c.expires_at <= now,
                    not_sent_recently(ownership_timers.c.expiry_sent_at, now),
                )
            ).all()
            for row in due:
                self._send_expiry(row.office_id, row.customer_key, stored_utc(row.expires_at), now)
            self.emitter.flush()
            if due:
                connection.execute(
                    update(ownership_timers)
                    .where(ownership_timers.c.customer_key.in_([row.customer_key for row in due]))
                    .values(expiry_sent_at=now)
                )
        return len(due)

    def _send_expiry(self, office_id: str, key: str, expires_at: datetime, now: datetime) -> None:
        # One id per (customer, expiry): copies sent again are dropped as duplicates by the runner.
        command_id = str(uuid.uuid5(EXPIRY_NAMESPACE, f"{key}/{to_millis(expires_at)}"))
        body = {
            "event_type": "OwnershipCommandIssued",
            "event_id": command_id,
            "occurred_at": now,
            "actor": {"staff_id": self.policies(office_id).processor_id, "role": str(Role.SYSTEM)},
            "payload": {"command_type": "EXPIRE_OWNERSHIP", "customer_key": key, "expires_at": expires_at},
        }
        self.emitter.produce_event(build_system_event(body, office_id, self.catalogue, now), self.codec)

    def refresh_gauges(self, engine: Engine, force: bool = False) -> None:
        """Ownerships expiring within 7 days and open disputes, by office (read from SQL, at most every 10 s)."""
        if not force and time.monotonic() - self._gauges_refreshed < GAUGE_REFRESH_SECONDS:
            return
        self._gauges_refreshed = time.monotonic()
        now = self._now()
        with engine.connect() as connection:
            expiring = connection.execute(
                select(customer_owners.c.office_id, func.count())
                .where(customer_owners.c.expires_at > now, customer_owners.c.expires_at <= now + timedelta(days=7))
                .group_by(customer_owners.c.office_id)
            ).all()
            disputes = connection.execute(
                select(ownership_customers.c.office_id, func.count())
                .where(ownership_customers.c.dispute_open.is_(True))
                .group_by(ownership_customers.c.office_id)
            ).all()
        for gauge, rows in ((EXPIRING_7D, expiring), (DISPUTES_OPEN, disputes)):
            gauge.clear()
            for office_id, count in rows:
                gauge.labels(office_id).set(count)

    # ------------------------------------------------------------ plumbing

    def _now(self) -> datetime:
        return now_in_millis(self.clock)


def _unmet_deal(answer: Input | None, context: _SqlContext) -> Input | None:
    """A deposit (or refund) whose 认购 names a customer ownership never met (no visit, call or command decided for
    the key) is skipped with its reason, as before the 认购 was remembered: a key nobody met may be another office's
    or a typo, and crediting the signer as first contact (OWN-01) would make an owner out of it."""
    if isinstance(answer, Decide) and isinstance(answer.event, DealSubscribed | DealRefunded):
        key = answer.event.customer_key
        if not context.known_customer(key):  # counted in INPUTS_SKIPPED where skips are answered
            return Skip("unknown_customer", f"认购 {answer.event.deal_id} names customer {key}, unknown to ownership")
    return answer


def _aware_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {name: stored_utc(value) if isinstance(value, datetime) else value for name, value in row.items()}
