"""The front-desk decision processor: the single writer of the 轮序表, the visit routing (电转访) and the call register.

It consumes ``anchang.frontdesk`` (keyed by office, so one office's visits, calls and rotation commands arrive in
order) and the 销控 facts on ``anchang.units`` (deals, for KPI-02/10) through the projection runner. For each batch
it folds each office's rotation state from the facts it stored before, runs the pure core (services/staff/
rotation.py, visits.py, calls.py), produces the new facts to ``anchang.frontdesk.facts`` and sanctions to
``anchang.discipline``, flushes, and then commits in one SQL transaction the facts, the read-side rows and the
consumed offsets. A crash in between re-decides the same inputs into identical events (deterministic ids).

The CALL-04 SMS deadline is a timer: ``fire_due_sms_timers`` puts a ``SmsDeadlineReached`` on the input topic once
a deadline has passed, with an id derived from the call and the deadline. On the log it is ordered with the SMS for
that office: whichever comes first is decided first. A deadline that passed while the processor was down fires at
the first tick after it starts.

The CALL-03 / PEN-26 call-log deadline (漏登, services/staff/frontdesk_call_log.py) is a timer of the same kind:
``fire_due_log_timers`` puts a ``CallLogDeadlineReached`` on the input topic once an answered call's log deadline has
passed unlogged; decided in log order, it emits ``CallLogMissing`` and the 漏登 fines. A ``CallLogged`` that Anchang
accepted after the deadline (it was on the log before the timer, e.g. written while the processor was down) is the
same 漏登, decided from the log itself, so the outcome does not depend on when the processor ran.

ROT-07: a visitor who arrives while the first post is empty is the moment the handbook's 「第一接待不得空位」 is
broken with a consequence; the cascade's decision (who is accountable, PEN-25) becomes a ``FirstPostEmpty`` fact."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    and_,
    bindparam,
    column,
    func,
    inspect,
    or_,
    select,
    table,
    type_coerce,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from projections.base import ConsumedEvent, upsert
from projections.timers import not_sent_recently
from services.core.catalog import Catalogue
from services.core.clock import Clock, now_in_millis, stored_utc, to_millis
from services.core.codec import EventCodec
from services.ingest.events import build_system_event
from services.kafka.emitter import FactEmitter
from services.ownership.customers import CustomerKeys
from services.staff import calls as c
from services.staff import frontdesk_call_log as cl
from services.staff import rotation as r
from services.staff.frontdesk_read import sms_counts
from services.staff.frontdesk_state import load_rotation_state
from services.staff.frontdesk_tables import (
    frontdesk_call_logs,
    frontdesk_calls,
    frontdesk_deals,
    frontdesk_facts,
    frontdesk_sms,
    frontdesk_tally,
    frontdesk_visits,
)
from services.staff.frontdesk_wire import (
    FACTS_TOPIC,
    InvalidCommand,
    command_meta,
    envelope,
    fact_event_id,
    fact_to_record,
    record_to_command,
)
from services.staff.localtime import local_day
from services.staff.penalties import Penalty
from services.staff.penalty_wire import DISCIPLINE_TOPIC, penalty_to_record
from services.staff.policies import StaffPolicies
from services.staff.policy import StaffPolicy
from services.staff.visits import DoorAnswers, RoutingBasis, register_fines, route_visit

PROCESSOR_NAME = "frontdesk-decisions"
PROCESSOR_ID = "anchang-frontdesk"  # the actor of the processor's own events
UNITS_TOPIC = "anchang.units"
TIMER_NAMESPACE = uuid.UUID("9a4d2c61-7be0-4c35-8f1e-6b2a9d0c5e74")
# If a SmsDeadlineReached put on the log has not been decided after this long, put it there again (same id).
DEAL_EVENT_TYPES = frozenset({"SubscriptionSigned", "PaymentReceived", "SubscriptionAbandoned"})

FINES_YUAN = Counter(
    "anchang_frontdesk_fines_yuan_total", "Fines decided by the front desk (CALL-01/03, VIS-02), by office and rule.",
    ["office_id", "rule_id"],
)  # fmt: skip
CALLS_UNLOGGED = Counter("anchang_frontdesk_calls_unlogged_total",
                         "Answered calls not logged by the call-log deadline (CALL-03).", ["office_id"])  # fmt: skip
FIRST_POST_EMPTY = Counter("anchang_frontdesk_first_post_empty_total",
                           "Visitors who met an empty first post (ROT-07), by office.", ["office_id"])  # fmt: skip
SMS_OVERDUE = Counter("anchang_frontdesk_sms_overdue_total", "Genuine calls with no SMS in 5 minutes (CALL-04).",
                      ["office_id"])  # fmt: skip
LATE_ANSWERS = Counter("anchang_frontdesk_calls_answered_late_total", "Calls picked up after the 3rd ring (CALL-01).",
                       ["office_id"])  # fmt: skip
RECEPTIONS_TODAY = Gauge("anchang_frontdesk_receptions_today", "KPI-07 quota units of the office's day (waiver = 2).",
                         ["office_id"])  # fmt: skip
SMS_COMPLIANCE_TODAY = Gauge(
    "anchang_frontdesk_sms_compliance_ratio", "KPI-09 of the office's day: genuine calls with an SMS in 5 minutes ÷ "
    "genuine calls whose deadline is decided (NaN: none yet).", ["office_id"],
)  # fmt: skip

_owners = table(
    "customer_owners",
    column("customer_key"),
    column("office_id"),
    column("staff_id"),
    column("since"),
    column("expires_at"),
)  # fmt: skip  -- created by the ownership slice; read only, and only when it exists


# Statements built once (SQLAlchemy then reuses their compiled form): per batch, the rows the batch's inputs name are
# looked up with IN (…) in chunks of at most IN_CHUNK ids (SQLite's bound-parameter limit is 999 on old builds);
# the single-row statements serve what an input names only once decided (an SMS matched to a call by number).
IN_CHUNK = 900
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_OFFICE: BindParameter[Any] = bindparam("office")
_CALL_ID: BindParameter[Any] = bindparam("call_id")
_CALLS_IN = select(frontdesk_calls).where(frontdesk_calls.c.office_id == _OFFICE, frontdesk_calls.c.call_id.in_(_IDS))
_CALL = select(frontdesk_calls).where(frontdesk_calls.c.office_id == _OFFICE, frontdesk_calls.c.call_id == _CALL_ID)
_CALLS_OF_CUSTOMER = select(frontdesk_calls).where(
    frontdesk_calls.c.office_id == _OFFICE, frontdesk_calls.c.customer_key == bindparam("key")
)  # fmt: skip
_LOGS_IN = select(frontdesk_call_logs).where(
    frontdesk_call_logs.c.office_id == _OFFICE, frontdesk_call_logs.c.call_id.in_(_IDS)
)  # fmt: skip
_LOG = select(frontdesk_call_logs).where(
    frontdesk_call_logs.c.office_id == _OFFICE, frontdesk_call_logs.c.call_id == _CALL_ID
)  # fmt: skip
# frontdesk_sms has no index on the call (only its event id): one scan per chunk, not one per call event.
_SMS_IN = select(frontdesk_sms.c.office_id, frontdesk_sms.c.call_id, frontdesk_sms.c.sent_at).where(
    frontdesk_sms.c.call_id.in_(_IDS)
)  # fmt: skip
_SMS_OF_CALL = select(frontdesk_sms.c.sent_at).where(
    frontdesk_sms.c.office_id == _OFFICE, frontdesk_sms.c.call_id == _CALL_ID
)  # fmt: skip
_LAST_SMS_SENDER = (
    select(frontdesk_sms.c.staff_id)
    .where(frontdesk_sms.c.office_id == _OFFICE, frontdesk_sms.c.customer_key == bindparam("key"))
    .order_by(frontdesk_sms.c.sent_at.desc())
    .limit(1)
)  # fmt: skip
_TALLIED_IN = select(frontdesk_tally.c.ref_id).where(
    frontdesk_tally.c.office_id == _OFFICE, frontdesk_tally.c.ref_id.in_(_IDS)
)  # fmt: skip
_TALLIED = select(func.count()).select_from(frontdesk_tally).where(
    frontdesk_tally.c.office_id == _OFFICE, frontdesk_tally.c.ref_id == bindparam("ref_id")
)  # fmt: skip
# ``_owners`` is untyped: its times are read (and ``at`` bound) as DateTime, as a datetime literal would be.
_OWNERS_IN = select(
    _owners.c.customer_key, _owners.c.office_id, _owners.c.staff_id,
    type_coerce(_owners.c.since, DateTime(timezone=True)), type_coerce(_owners.c.expires_at, DateTime(timezone=True)),
).where(_owners.c.customer_key.in_(_IDS))  # fmt: skip
_AT = bindparam("at", type_=DateTime(timezone=True))
_OWNER = (
    select(_owners.c.staff_id)
    .where(_owners.c.customer_key == bindparam("key"), _owners.c.office_id == _OFFICE, _owners.c.since <= _AT)
    .where(or_(_owners.c.expires_at.is_(None), _owners.c.expires_at > _AT))
    .order_by(_owners.c.since.desc())
    .limit(1)
)  # fmt: skip
_DEAL = select(frontdesk_deals).where(
    frontdesk_deals.c.office_id == _OFFICE, frontdesk_deals.c.subscription_id == bindparam("subscription_id")
)  # fmt: skip
_UNITS_OF_DAY = select(func.coalesce(func.sum(frontdesk_tally.c.weight), 0)).where(
    frontdesk_tally.c.office_id == _OFFICE, frontdesk_tally.c.day == bindparam("day")
)  # fmt: skip
_SMS_CLOCKS_OF_DAY = select(
    frontdesk_calls.c.sms_required, frontdesk_calls.c.sms_sent_at, frontdesk_calls.c.sms_deadline_at
).where(frontdesk_calls.c.office_id == _OFFICE, frontdesk_calls.c.day == bindparam("day"))  # fmt: skip
CALL_EVENT_TYPES = frozenset(
    {"CallReceived", "CallEnded", "CallLogged", "SmsDeadlineReached", "CallLogDeadlineReached"}
)


def customer_key_or_none(keys: CustomerKeys, project_id: str | None, office_id: str, phone: str | None) -> str | None:
    """The ownership slice's customer key (under the deployment's secret, so it matches ``customer_owners``), or None
    for a missing or invalid number (it is then nobody's)."""
    if not phone:
        return None
    try:
        return keys.key(project_id or office_id, phone)
    except ValueError:
        return None


@dataclass
class _Batch:
    """What one batch decides, written at the end in the runner's transaction."""

    recorded_at: datetime
    states: dict[str, r.RotationState] = field(default_factory=dict)
    facts: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    call_logs: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    sms: list[dict[str, Any]] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)
    tally: list[dict[str, Any]] = field(default_factory=list)
    deals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    offices: set[str] = field(default_factory=set)
    # Indexes of the rows above, kept as they are appended: (office, ref_id) of ``tally``, the SMS times of
    # ``sms`` by (office, call_id), the last SMS sender of ``sms`` by (office, customer key).
    tallied: set[tuple[str, str]] = field(default_factory=set)
    sms_times: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)
    sms_senders: dict[tuple[str, str], str] = field(default_factory=dict)
    # What SQL held before the batch, looked up once for the ids its inputs name (``_prefetch``). The processor
    # writes SQL only after the loop, so this stays what each input would have read; the batch's own changes
    # (above) are read first, as before. A key absent here was not looked up: it is read on its own, then kept.
    stored_calls: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    stored_logs: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    stored_sms: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)
    stored_tallied: dict[tuple[str, str], bool] = field(default_factory=dict)
    stored_owners: dict[str, list[tuple[str, str, datetime, datetime | None]]] = field(default_factory=dict)
    keys: dict[tuple[str | None, str, str | None], str | None] = field(default_factory=dict)


class FrontDeskDecisions:
    """The decision step, run by a ProjectionProcessor over ``anchang.frontdesk`` and ``anchang.units``."""

    tables = (frontdesk_facts, frontdesk_calls, frontdesk_sms, frontdesk_visits, frontdesk_tally, frontdesk_deals,
              frontdesk_call_logs)  # fmt: skip

    def __init__(
        self, *, codec: EventCodec, catalogue: Catalogue, kafka_config: dict[str, Any], policies: StaffPolicies,
        clock: Clock, customer_keys: CustomerKeys,
    ) -> None:  # fmt: skip
        self.codec = codec
        self.customer_keys = customer_keys
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
        batch = _Batch(recorded_at=self._now())
        has_owners = inspect(connection).has_table("customer_owners")
        self._prefetch(connection, batch, events, has_owners)
        for event in events:
            match event.event_type:
                case "RotationCommandIssued":
                    self._rotation_command(connection, batch, event)
                case "VisitRegistered":
                    self._visit(connection, batch, event, has_owners)
                case "CallReceived" | "CallEnded" | "CallLogged":
                    self._call_event(connection, batch, event)
                case "SmsSent":
                    self._sms(connection, batch, event)
                case "SmsDeadlineReached":
                    self._sms_deadline(connection, batch, event)
                case "CallLogDeadlineReached":
                    self._log_deadline(connection, batch, event)
                case event_type if event_type in DEAL_EVENT_TYPES:
                    self._deal(connection, batch, event)
                case _:
                    continue
            batch.offices.add(event.office_id)
        if not batch.offices:
            return
        if batch.facts:
            connection.execute(frontdesk_facts.insert(), batch.facts)
        upsert(connection, frontdesk_calls, batch.calls.values(), keys=("office_id", "call_id"))
        checks = [row for row in batch.call_logs.values() if row is not None]
        upsert(connection, frontdesk_call_logs, checks, keys=("office_id", "call_id"))
        upsert(connection, frontdesk_sms, batch.sms, keys=("event_id",))
        upsert(connection, frontdesk_visits, batch.visits, keys=("office_id", "visit_id"))
        upsert(connection, frontdesk_tally, batch.tally, keys=("office_id", "ref_id", "kind"))
        upsert(connection, frontdesk_deals, batch.deals.values(), keys=("office_id", "subscription_id"))
        self._update_gauges(connection, batch)

    def _prefetch(
        self, connection: Connection, batch: _Batch, events: Sequence[ConsumedEvent], has_owners: bool
    ) -> None:
        """Look up, once per batch, the stored rows the inputs name: calls, call-log checks and SMS by call id,
        the tally by visit id and the owners by customer key."""
        call_ids: defaultdict[str, set[str]] = defaultdict(set)
        visit_ids: defaultdict[str, set[str]] = defaultdict(set)
        customer_keys: set[str] = set()
        for event in events:
            rec, office = event.record, event.office_id
            if event.event_type in CALL_EVENT_TYPES or event.event_type == "SmsSent":
                if call_id := rec.get("call_id"):
                    call_ids[office].add(call_id)
            elif event.event_type == "VisitRegistered":
                if visit_id := rec.get("visit_id"):
                    visit_ids[office].add(visit_id)
                if has_owners and (key := self._key(batch, rec.get("project_id"), office, rec.get("phone"))):
                    customer_keys.add(key)
        for office, ids in call_ids.items():
            for chunk in _chunks(ids):
                batch.stored_calls.update(dict.fromkeys(((office, i) for i in chunk), None))
                for row in connection.execute(_CALLS_IN, {"office": office, "ids": chunk}):
                    batch.stored_calls[(office, row.call_id)] = _row(row)
                batch.stored_logs.update(dict.fromkeys(((office, i) for i in chunk), None))
                for row in connection.execute(_LOGS_IN, {"office": office, "ids": chunk}):
                    batch.stored_logs[(office, row.call_id)] = _row(row)
        wanted = {(office, call_id) for office, ids in call_ids.items() for call_id in ids}
        for chunk in _chunks({call_id for ids in call_ids.values() for call_id in ids}):
            for office, call_id, sent_at in connection.execute(_SMS_IN, {"ids": chunk}):
                if (office, call_id) in wanted:
                    batch.stored_sms.setdefault((office, call_id), []).append(stored_utc(sent_at))
        for pair in wanted:
            batch.stored_sms.setdefault(pair, [])
        for office, ids in visit_ids.items():
            for chunk in _chunks(ids):
                found = set(connection.execute(_TALLIED_IN, {"office": office, "ids": chunk}).scalars())
                batch.stored_tallied.update(((office, i), i in found) for i in chunk)
        for chunk in _chunks(customer_keys):
            batch.stored_owners.update((k, []) for k in chunk)
            for k, owner_office, staff_id, since, expires_at in connection.execute(_OWNERS_IN, {"ids": chunk}):
                batch.stored_owners[k].append((owner_office, staff_id, stored_utc(since), stored_utc(expires_at)))

    # ------------------------------------------------------------ the 轮序表

    def _state(self, connection: Connection, batch: _Batch, office_id: str) -> r.RotationState:
        if office_id not in batch.states:
            batch.states[office_id] = load_rotation_state(connection, self.codec, office_id)
        return batch.states[office_id]

    def _rotation_command(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        office, policy = event.office_id, self.policies(event.office_id)
        state = self._state(connection, batch, office)
        try:
            command = record_to_command(event.record, policy)
        except InvalidCommand as problem:
            m = command_meta(event.record)
            refusal = r.RotationRejected(
                caused_by=m.command_id, at=m.at, actor_id=m.actor_id, actor_role=m.actor_role,
                command_type=str(event.record["command_type"]), rule_id=problem.rule_id, reason=str(problem),
            )  # fmt: skip
            self._emit_rotation(batch, office, [refusal], event.event_id, policy)
            return
        facts = r.decide(state, command, policy)
        self._emit_rotation(batch, office, facts, event.event_id, policy)
        if isinstance(command, r.Suspend) and isinstance(facts[0], r.SuspensionStarted):
            # ROT-05/11: the 停接 is also a sanction on the discipline ledger.
            self._emit_penalties(office, [command.penalty], batch)

    def _emit_rotation(
        self, batch: _Batch, office: str, facts: Sequence[r.RotationFact], cause: str, policy: StaffPolicy,
        first_index: int = 0,
    ) -> None:  # fmt: skip
        for index, fact in enumerate(facts, start=first_index):
            event_id = fact_event_id(cause, index)
            batch.states[office] = r.evolve(batch.states[office], fact)
            event_type, record = fact_to_record(fact, event_id=event_id, office_id=office,
                                                recorded_at=batch.recorded_at)  # fmt: skip
            self._store_fact(batch, office, event_type, record, local_day(fact.at, policy.timezone))
            if isinstance(fact, r.ReceptionStarted):
                kind = "RECEPTION" if fact.counted else "UNCOUNTED"
                batch.tallied.add((office, fact.visit_id))
                batch.tally.append({
                    "office_id": office, "ref_id": fact.visit_id, "kind": kind, "staff_id": fact.staff_id,
                    "day": local_day(fact.at, policy.timezone), "weight": 1 if fact.counted else 0, "at": fact.at,
                })  # fmt: skip
            elif isinstance(fact, r.TurnWaived):
                batch.tallied.add((office, event_id))
                batch.tally.append({
                    "office_id": office, "ref_id": event_id, "kind": "WAIVER", "staff_id": fact.staff_id,
                    "day": local_day(fact.at, policy.timezone), "weight": fact.weight, "at": fact.at,
                })  # fmt: skip

    def _store_fact(self, batch: _Batch, office: str, event_type: str, record: dict[str, Any], day: date) -> None:
        value = self.codec.encode(event_type, record, FACTS_TOPIC)
        self.emitter.produce(FACTS_TOPIC, value, office, event_type)
        env = record["envelope"]
        batch.facts.append({
            "event_id": env["event_id"], "office_id": office, "day": day, "event_type": event_type,
            "caused_by": env["causation_id"] or env["event_id"], "occurred_at": env["occurred_at"], "avro": value,
        })  # fmt: skip

    def _emit_penalties(self, office: str, penalties: Sequence[Penalty], batch: _Batch) -> None:
        for penalty in penalties:
            record = penalty_to_record(penalty, office_id=office, processor_id=PROCESSOR_ID,
                                       recorded_at=batch.recorded_at)  # fmt: skip
            value = self.codec.encode("PenaltyIssued", record, DISCIPLINE_TOPIC)
            self.emitter.produce(DISCIPLINE_TOPIC, value, penalty.staff_id, "PenaltyIssued")
            if penalty.amount_yuan:
                FINES_YUAN.labels(office, penalty.rule_id).inc(penalty.amount_yuan)

    # ------------------------------------------------------------ visits (VIS-01/02/03, ROT-06/12/13/14/15)

    def _visit(self, connection: Connection, batch: _Batch, event: ConsumedEvent, has_owners: bool) -> None:
        rec, office = event.record, event.office_id
        policy = self.policies(office)
        state = self._state(connection, batch, office)
        at = event.recorded_at  # decided in log order, like every rotation command
        key = self._key(batch, rec.get("project_id"), office, rec["phone"])
        visit_type = r.VisitType(rec["visit_type"])
        answers = DoorAnswers(visit_type, rec.get("prior_consultant_named"), bool(rec.get("sms_evidence_shown")))
        owner = self._owner(connection, batch, office, key, rec, state, at, has_owners)
        empty_post = r.first_post_check(state, at)  # ROT-07, on the post as the visitor found it
        routing = route_visit(answers, owner, state, at)
        receiver = rec.get("received_by") or routing.receiver
        facts: list[r.RotationFact] = []
        reception = "none"
        if receiver is not None:
            if self._received_before(connection, batch, office, rec["visit_id"]):
                reception = "already"  # ROT-06: registered after a START_RECEPTION
            else:
                facts = r.decide(state, r.StartReception(
                    command_id=event.event_id, at=at, actor_id=event.envelope["actor"]["staff_id"],
                    actor_role=event.envelope["actor"]["role"], staff_id=receiver, visit_id=rec["visit_id"],
                    visit_type=visit_type, owner_id=owner if routing.basis is not RoutingBasis.ROTATION else None,
                ), policy)  # fmt: skip
                reception = "rejected" if isinstance(facts[0], r.RotationRejected) else "started"
        self._emit_rotation(batch, office, facts, event.event_id, policy)
        started = facts[0] if facts and isinstance(facts[0], r.ReceptionStarted) else None
        counted = started.counted if started is not None else routing.counted
        notify = routing.owner_to_notify or (owner if owner not in (None, receiver) else None)
        routed = {
            "visit_id": rec["visit_id"], "customer_key": key, "owner_id": owner, "receiver": receiver,
            "basis": str(routing.basis), "counted": counted, "owner_to_notify": notify, "rule_id": routing.rule_id,
        }  # fmt: skip
        routed_id = fact_event_id(event.event_id, len(facts))
        head = envelope("VisitRouted", event_id=routed_id, office_id=office, at=at, recorded_at=batch.recorded_at,
                        actor=(PROCESSOR_ID, "SYSTEM"), caused_by=event.event_id)  # fmt: skip
        self._store_fact(batch, office, "VisitRouted", {"envelope": head, **routed}, local_day(at, policy.timezone))
        if empty_post is not None:
            self._first_post_empty(batch, office, event.event_id, rec["visit_id"], empty_post, at, len(facts) + 1,
                                   policy)  # fmt: skip
        fines = [] if receiver is None else register_fines(receiver, rec.get("blank_fields") or (), at,
                                                           (event.event_id,), policy)  # fmt: skip
        self._emit_penalties(office, fines, batch)
        rejection = facts[0] if facts and isinstance(facts[0], r.RotationRejected) else None
        batch.visits.append({
            "office_id": office, "visit_id": rec["visit_id"], "day": local_day(rec["arrived_at"], policy.timezone),
            "arrived_at": rec["arrived_at"], "visit_type": str(visit_type), "customer_id": rec.get("customer_id"),
            "customer_key": key, "product_category": rec.get("product_category"), "receiver": receiver,
            "owner_id": owner, "basis": str(routing.basis), "counted": counted, "owner_to_notify": notify,
            "routing_rule": routing.rule_id, "reception": reception,
            "reception_rule": rejection.rule_id if rejection else None,
            "blank_fields": list(rec.get("blank_fields") or ()), "fine_yuan": sum(p.amount_yuan or 0 for p in fines),
            "event_id": event.event_id,
        })  # fmt: skip

    def _first_post_empty(
        self, batch: _Batch, office: str, cause: str, visit_id: str, finding: r.FirstPostFinding, at: datetime,
        index: int, policy: StaffPolicy,
    ) -> None:  # fmt: skip
        """ROT-07 / PEN-25: the cascade's decision as a fact. The handbook names no amount for 「追究…责任」, so it is
        an attribution for the supervisor, not a PenaltyIssued."""
        fact_id = fact_event_id(cause, index)
        head = envelope("FirstPostEmpty", event_id=fact_id, office_id=office, at=at, recorded_at=batch.recorded_at,
                        actor=(PROCESSOR_ID, "SYSTEM"), caused_by=cause)  # fmt: skip
        record = {"envelope": head, "visit_id": visit_id, "accountable": finding.accountable, "since": finding.since,
                  "chain": list(finding.chain), "rule_id": finding.rule_id, "sanction_id": finding.sanction_id,
                  "evidence_event_ids": [cause]}  # fmt: skip
        self._store_fact(batch, office, "FirstPostEmpty", record, local_day(at, policy.timezone))
        FIRST_POST_EMPTY.labels(office).inc()

    def _owner(
        self, connection: Connection, batch: _Batch, office: str, key: str | None, rec: dict[str, Any],
        state: r.RotationState, at: datetime, has_owners: bool,
    ) -> str | None:  # fmt: skip
        """The customer's owner: the ownership slice's table first; else (VIS-03, name or SMS evidence only) the
        consultant the customer named, if on today's 轮序表, or the sender of the last SMS to that number."""
        if key is not None and has_owners:
            owner = self._stored_owner(connection, batch, office, key, at)
            if owner is not None:
                return str(owner)
        named = rec.get("prior_consultant_named")
        if named and named in state.status:
            return str(named)
        if key is not None and rec.get("sms_evidence_shown"):
            pending = batch.sms_senders.get((office, key))
            if pending is not None:
                return str(pending)
            sender = connection.execute(_LAST_SMS_SENDER, {"office": office, "key": key}).scalar()
            return None if sender is None else str(sender)
        return None

    @staticmethod
    def _stored_owner(connection: Connection, batch: _Batch, office: str, key: str, at: datetime) -> str | None:
        """The owner in ``customer_owners`` at ``at`` (the latest ``since``; its key is unique, so at most one)."""
        rows = batch.stored_owners.get(key)
        if rows is None:
            owner = connection.execute(_OWNER, {"key": key, "office": office, "at": at}).scalar()
            return None if owner is None else str(owner)
        holding = [(since, staff_id) for o, staff_id, since, expires_at in rows
                   if o == office and since <= at and (expires_at is None or expires_at > at)]  # fmt: skip
        return str(max(holding)[1]) if holding else None

    @staticmethod
    def _received_before(connection: Connection, batch: _Batch, office: str, visit_id: str) -> bool:
        if (office, visit_id) in batch.tallied:
            return True
        key = (office, visit_id)
        if key not in batch.stored_tallied:
            batch.stored_tallied[key] = bool(
                connection.execute(_TALLIED, {"office": office, "ref_id": visit_id}).scalar()
            )
        return batch.stored_tallied[key]

    # ------------------------------------------------------------ calls (CALL-01/03/04/05/07/08)

    def _call_row(self, connection: Connection, batch: _Batch, office: str, call_id: str) -> dict[str, Any]:
        key = (office, call_id)
        if key not in batch.calls:
            if key in batch.stored_calls:
                stored = batch.stored_calls.pop(key)
            else:
                row = connection.execute(_CALL, {"office": office, "call_id": call_id}).first()
                stored = _row(row) if row is not None else None
            batch.calls[key] = stored if stored is not None else _empty_call(office, call_id)
        return batch.calls[key]

    def _call_event(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        rec, office = event.record, event.office_id
        policy = self.policies(office)
        row = self._call_row(connection, batch, office, rec["call_id"])
        if event.event_type == "CallReceived":
            call = c.Call(event.event_id, rec["call_id"], rec["ring_started_at"], rec.get("answered_at"),
                          rec.get("ring_count"), rec.get("answered_by"))  # fmt: skip
            check = c.check_answer(call, policy)
            row.update(ring_started_at=call.ring_started_at, caller_number=rec.get("caller_number"),
                       answered_at=call.answered_at, answered_by=call.answered_by, rings=check.rings,
                       answered_in_time=check.in_time if check.answered else None,
                       day=local_day(call.ring_started_at, policy.timezone))  # fmt: skip
            row["customer_key"] = row["customer_key"] or self._key(batch, None, office, rec.get("caller_number"))
            if check.answered and not check.in_time:
                LATE_ANSWERS.labels(office).inc()
            self._emit_penalties(office, check.penalties, batch)
            if call.answered_at is not None:
                self._expect_log(connection, batch, row, event.event_id, policy)
        elif event.event_type == "CallEnded":
            row["ended_at"] = rec["ended_at"]
            self._expect_log(connection, batch, row, None, policy)
        else:
            log = c.CallLog(event.event_id, rec["call_id"], rec["staff_id"], event.occurred_at,
                            c.CallerClass(rec["caller_class"]), tuple(rec.get("blank_fields") or ()),
                            rec["visit_invited"])  # fmt: skip
            fines = c.call_log_fines(log, policy)
            if self._log_arrived(connection, batch, row, event, policy):
                # The 漏登 was fined (every required field, or the flat amount): a late log's blanks add nothing.
                fines = []
            self._emit_penalties(office, fines, batch)
            row.update(logged_by=log.staff_id, logged_at=log.logged_at, caller_class=str(log.caller_class),
                       visit_invited=log.visit_invited, blank_fields=list(log.blank_fields),
                       fine_yuan=(row["fine_yuan"] or 0) + sum(p.amount_yuan or 0 for p in fines),
                       capture_gaps=list(c.capture_gaps(log, policy)))  # fmt: skip
            row["customer_key"] = self._key(batch, None, office, rec.get("phone")) or row["customer_key"]
            row["day"] = row["day"] or local_day(log.logged_at, policy.timezone)
        self._judge_call(connection, batch, row, policy, batch.recorded_at)

    def _judge_call(
        self, connection: Connection, batch: _Batch, row: dict[str, Any], policy: StaffPolicy, now: datetime
    ) -> None:
        """Recompute what follows from what is known of the call: duration (CALL-08), callback owner (CALL-05) and
        the SMS clock (CALL-04: from the hang-up; without one, from the log, written once the call is over)."""
        row["updated_at"] = now
        if row["ended_at"] is not None and row["answered_at"] is not None:
            duration = row["ended_at"] - row["answered_at"]
            row["duration_seconds"] = duration.total_seconds()
            row["over_target"] = c.over_call_target(duration, policy)
        row["callback_owner"] = row["answered_by"] or row["logged_by"]
        row["callback_conflict"] = bool(
            row["answered_by"] and row["logged_by"] and row["answered_by"] != row["logged_by"]
        )
        picked_up = row["answered_at"] or row["logged_at"]
        hung_up = row["ended_at"] or row["logged_at"]
        caller_class = c.CallerClass(row["caller_class"] or c.CallerClass.UNKNOWN)
        row["sms_required"] = picked_up is not None and hung_up is not None and c.needs_sms(caller_class)
        if not row["sms_required"]:
            row["sms_deadline_at"], row["sms_state"] = None, str(c.SmsState.NOT_REQUIRED)
            return
        row["sms_deadline_at"] = c.sms_deadline(hung_up, policy)
        key = (row["office_id"], row["call_id"])
        if key not in batch.stored_sms:
            stored = connection.execute(_SMS_OF_CALL, {"office": key[0], "call_id": key[1]}).scalars()
            batch.stored_sms[key] = [stored_utc(sent_at) for sent_at in stored]
        pending = batch.sms_times.get(key, [])
        row["sms_sent_at"] = c.first_sms(picked_up, [*batch.stored_sms[key], *pending])
        state = c.sms_state(caller_class, hung_up, row["sms_sent_at"], now, policy)
        # OVERDUE is declared by the timer's fact only; until then the call is PENDING.
        row["sms_state"] = str(c.SmsState.PENDING if state is c.SmsState.OVERDUE and row["sms_state"] != "OVERDUE"
                               else state)  # fmt: skip

    # ------------------------------------------------------------ the call-log deadline (CALL-03 / PEN-26 漏登)

    def _log_check(self, connection: Connection, batch: _Batch, office: str, call_id: str) -> dict[str, Any] | None:
        key = (office, call_id)
        if key not in batch.call_logs:
            if key in batch.stored_logs:
                batch.call_logs[key] = batch.stored_logs.pop(key)
            else:
                row = connection.execute(_LOG, {"office": office, "call_id": call_id}).first()
                batch.call_logs[key] = _row(row) if row is not None else None
        return batch.call_logs[key]

    def _expect_log(
        self, connection: Connection, batch: _Batch, row: dict[str, Any], received_id: str | None, policy: StaffPolicy
    ) -> None:
        """An answered call owes a log by its deadline: set it (CallReceived) or move it (CallEnded), while pending."""
        office, call_id = row["office_id"], row["call_id"]
        check = self._log_check(connection, batch, office, call_id)
        if row["answered_at"] is None or (check is None and received_id is None):
            return
        if check is not None and check["status"] != "PENDING":
            return
        deadline = cl.call_log_deadline(row["day"], row["answered_at"], row["ended_at"], cl.CallLogDeadline.of(policy),
                                        policy.timezone)  # fmt: skip
        if check is None:
            assert received_id is not None
            check = {"office_id": office, "call_id": call_id, "received_event_id": received_id, "timer_sent_at": None,
                     "missing_event_id": None, "fine_yuan": 0}  # fmt: skip
            batch.call_logs[(office, call_id)] = check
        check.update(staff_id=row["answered_by"], day=row["day"], answered_at=row["answered_at"], deadline_at=deadline,
                     status="LOGGED" if row["logged_at"] is not None else "PENDING",
                     updated_at=batch.recorded_at)  # fmt: skip

    def _log_arrived(
        self, connection: Connection, batch: _Batch, row: dict[str, Any], event: ConsumedEvent, policy: StaffPolicy
    ) -> bool:
        """A CallLogged for a call that owes one. True when the 漏登 is (or was already) decided for the call: the
        timer came first, or this log was accepted after the deadline."""
        check = self._log_check(connection, batch, event.office_id, row["call_id"])
        if check is None:
            return False  # never answered, or the exchange has not told yet: nothing was owed
        if check["status"] == "MISSING":
            return True
        if check["status"] == "PENDING" and cl.log_is_late(stored_utc(check["deadline_at"]), event.recorded_at):
            self._decide_missing(batch, row, check, event.event_id, event.recorded_at, policy, late_log=True)
            return True
        check.update(status="LOGGED", updated_at=batch.recorded_at)
        return False

    def _log_deadline(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        """The timer's command: the 漏登 holds only if, in log order, the call is still unlogged, the deadline stands
        and had passed when Anchang accepted the command."""
        rec, office = event.record, event.office_id
        check = self._log_check(connection, batch, office, rec["call_id"])
        if check is None or check["status"] != "PENDING":
            return
        if not cl.timer_holds(stored_utc(check["deadline_at"]), stored_utc(rec["deadline_at"]), event.recorded_at):
            return
        row = self._call_row(connection, batch, office, rec["call_id"])
        self._decide_missing(batch, row, check, event.event_id, event.recorded_at, self.policies(office))

    def _decide_missing(
        self, batch: _Batch, row: dict[str, Any], check: dict[str, Any], shown_by: str, at: datetime,
        policy: StaffPolicy, *, late_log: bool = False,
    ) -> None:  # fmt: skip
        office = row["office_id"]
        call = c.Call(check["received_event_id"], row["call_id"], row["ring_started_at"] or check["answered_at"],
                      stored_utc(check["answered_at"]), answered_by=check["staff_id"])  # fmt: skip
        decision = cl.missing_log(call, stored_utc(check["deadline_at"]), shown_by, at, policy, late_log=late_log)
        fact_id = fact_event_id(shown_by, 0)
        head = envelope("CallLogMissing", event_id=fact_id, office_id=office, at=at, recorded_at=batch.recorded_at,
                        actor=(PROCESSOR_ID, "SYSTEM"), caused_by=shown_by)  # fmt: skip
        record = {"envelope": head, "call_id": decision.call_id, "staff_id": decision.staff_id,
                  "answered_at": decision.answered_at, "deadline_at": decision.deadline_at,
                  "late_log_event_id": decision.late_log_event_id, "rule_id": decision.rule_id,
                  "sanction_id": decision.sanction_id, "fine_yuan": decision.fine_yuan,
                  "evidence_event_ids": list(decision.evidence)}  # fmt: skip
        self._store_fact(batch, office, "CallLogMissing", record, check["day"])
        self._emit_penalties(office, decision.penalties, batch)
        check.update(status="MISSING", missing_event_id=fact_id, fine_yuan=decision.fine_yuan,
                     updated_at=batch.recorded_at)  # fmt: skip
        row["fine_yuan"] = (row["fine_yuan"] or 0) + decision.fine_yuan
        CALLS_UNLOGGED.labels(office).inc()

    def fire_due_log_timers(self, engine: Engine) -> int:
        """Put a CallLogDeadlineReached on the log for every answered call still unlogged after its deadline."""
        now = self._now()
        t = frontdesk_call_logs
        with engine.begin() as connection:
            due = connection.execute(
                select(t.c.office_id, t.c.call_id, t.c.deadline_at).where(
                    t.c.status == "PENDING", t.c.deadline_at < now,
                    not_sent_recently(t.c.timer_sent_at, now),
                )
            ).all()  # fmt: skip
            for office, call_id, deadline in due:
                self._send_timer("CallLogDeadlineReached", office, call_id, stored_utc(deadline), now)
            self.emitter.flush()
            for office, call_id, _ in due:
                connection.execute(
                    update(t).where(and_(t.c.office_id == office, t.c.call_id == call_id)).values(timer_sent_at=now)
                )
        return len(due)

    # ------------------------------------------------------------ SMS (CALL-04)

    def _sms(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        """An SMS counts for the call it names; without a call id, for the office's last call from that number
        answered (or logged) before it, whose SMS is still owed."""
        rec, office = event.record, event.office_id
        key = self._key(batch, None, office, rec["phone"])
        call_id = rec.get("call_id") or (self._call_for_sms(connection, batch, office, key, rec["sent_at"]))
        batch.sms.append({"event_id": event.event_id, "office_id": office, "staff_id": rec["staff_id"],
                          "call_id": call_id, "customer_key": key, "sent_at": rec["sent_at"]})  # fmt: skip
        if key is not None:
            batch.sms_senders[(office, key)] = rec["staff_id"]
        if call_id is not None:
            batch.sms_times.setdefault((office, call_id), []).append(rec["sent_at"])
        if call_id is None:
            return
        row = self._call_row(connection, batch, office, call_id)
        self._judge_call(connection, batch, row, self.policies(office), batch.recorded_at)

    def _call_for_sms(
        self, connection: Connection, batch: _Batch, office: str, key: str | None, sent_at: datetime
    ) -> str | None:
        if key is None:
            return None
        candidates = [row for (o, _), row in batch.calls.items() if o == office and row["customer_key"] == key]
        stored = connection.execute(_CALLS_OF_CUSTOMER, {"office": office, "key": key}).all()
        candidates += [_row(row) for row in stored if (office, row.call_id) not in batch.calls]
        answered = [row for row in candidates if (row["answered_at"] or row["logged_at"] or sent_at) <= sent_at]
        latest = max(answered, key=lambda row: row["answered_at"] or row["logged_at"], default=None)
        return None if latest is None else str(latest["call_id"])

    def _sms_deadline(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        """The timer's command: the alert holds only if, in log order, the deadline stands, has passed by the
        time Anchang accepted the command (so a forged one changes nothing) and no SMS came first."""
        rec, office = event.record, event.office_id
        policy = self.policies(office)
        row = self._call_row(connection, batch, office, rec["call_id"])
        self._judge_call(connection, batch, row, policy, event.recorded_at)
        deadline = row["sms_deadline_at"]
        if not row["sms_required"] or row["sms_sent_at"] is not None or deadline is None:
            return
        if stored_utc(deadline) != stored_utc(rec["deadline_at"]) or event.recorded_at <= stored_utc(deadline):
            return
        row["sms_state"] = str(c.SmsState.OVERDUE)
        fact_id = fact_event_id(event.event_id, 0)
        head = envelope("SmsOverdue", event_id=fact_id, office_id=office, at=event.recorded_at,
                        recorded_at=batch.recorded_at, actor=(PROCESSOR_ID, "SYSTEM"),
                        caused_by=event.event_id)  # fmt: skip
        record = {"envelope": head, "call_id": rec["call_id"], "staff_id": row["callback_owner"],
                  "deadline_at": deadline, "caller_class": row["caller_class"] or "UNKNOWN"}  # fmt: skip
        self._store_fact(batch, office, "SmsOverdue", record, local_day(event.recorded_at, policy.timezone))
        SMS_OVERDUE.labels(office).inc()

    def fire_due_sms_timers(self, engine: Engine) -> int:
        """Put a SmsDeadlineReached on the log for every owed SMS whose deadline has passed; return how many."""
        now = self._now()
        t = frontdesk_calls
        with engine.begin() as connection:
            due = connection.execute(
                select(t.c.office_id, t.c.call_id, t.c.sms_deadline_at).where(
                    t.c.sms_required.is_(True), t.c.sms_sent_at.is_(None), t.c.sms_state != "OVERDUE",
                    t.c.sms_deadline_at < now,
                    not_sent_recently(t.c.timer_sent_at, now),
                )
            ).all()  # fmt: skip
            for office, call_id, deadline in due:
                self._send_timer("SmsDeadlineReached", office, call_id, stored_utc(deadline), now)
            self.emitter.flush()
            for office, call_id, _ in due:
                connection.execute(
                    update(t).where(and_(t.c.office_id == office, t.c.call_id == call_id)).values(timer_sent_at=now)
                )
        return len(due)

    def _send_timer(self, event_type: str, office: str, call_id: str, deadline: datetime, now: datetime) -> None:
        # One id per timer, call and deadline: copies sent again are dropped as duplicates by the runner.
        prefix = "" if event_type == "SmsDeadlineReached" else f"{event_type}/"  # the SMS ids stay as they were
        command_id = str(uuid.uuid5(TIMER_NAMESPACE, f"{prefix}{office}/{call_id}/{to_millis(deadline)}"))
        body = {
            "event_type": event_type, "event_id": command_id, "occurred_at": now,
            "actor": {"staff_id": PROCESSOR_ID, "role": "SYSTEM"},
            "payload": {"call_id": call_id, "deadline_at": deadline},
        }  # fmt: skip
        self.emitter.produce_event(build_system_event(body, office, self.catalogue, now), self.codec)

    # ------------------------------------------------------------ deals (KPI-02, KPI-10)

    def _deal(self, connection: Connection, batch: _Batch, event: ConsumedEvent) -> None:
        rec = event.record
        sub, key = rec["subscription_id"], (event.office_id, rec["subscription_id"])
        if key not in batch.deals:
            row = connection.execute(_DEAL, {"office": event.office_id, "subscription_id": sub}).first()
            batch.deals[key] = _row(row) if row is not None else {
                "subscription_id": sub, "office_id": event.office_id, "unit_id": rec["unit_id"],
                "customer_id": rec.get("customer_id"), "staff_id": None, "signed_at": None, "paid_at": None,
                "abandoned_at": None,
            }  # fmt: skip
        deal = batch.deals[key]
        if event.event_type == "SubscriptionSigned":
            deal.update(staff_id=rec["staff_id"], signed_at=rec["signed_at"], customer_id=rec["customer_id"])
        elif event.event_type == "PaymentReceived":
            if rec.get("stops_clock") and deal["paid_at"] is None:
                deal["paid_at"] = event.occurred_at
        else:
            deal["abandoned_at"] = event.occurred_at

    # ------------------------------------------------------------ metrics and plumbing

    def _update_gauges(self, connection: Connection, batch: _Batch) -> None:
        for office in batch.offices:
            policy = self.policies(office)
            today = local_day(batch.recorded_at, policy.timezone)
            units = connection.execute(_UNITS_OF_DAY, {"office": office, "day": today}).scalar()
            RECEPTIONS_TODAY.labels(office).set(float(units or 0))
            calls = [_row(row) for row in connection.execute(_SMS_CLOCKS_OF_DAY, {"office": office, "day": today})]
            in_time, decided = sms_counts(calls, batch.recorded_at)
            SMS_COMPLIANCE_TODAY.labels(office).set(in_time / decided if decided else float("nan"))

    def _now(self) -> datetime:
        return now_in_millis(self.clock)

    def _key(self, batch: _Batch, project_id: str | None, office_id: str, phone: str | None) -> str | None:
        memo = (project_id, office_id, phone)
        if memo not in batch.keys:
            batch.keys[memo] = customer_key_or_none(self.customer_keys, project_id, office_id, phone)
        return batch.keys[memo]


def _row(row: Any) -> dict[str, Any]:
    """A stored row as a dict, its datetimes aware (UTC)."""
    return {k: stored_utc(v) if isinstance(v, datetime) else v for k, v in row._mapping.items()}


def _chunks(ids: set[str]) -> Iterator[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_CHUNK):
        yield ordered[start : start + IN_CHUNK]


def _empty_call(office: str, call_id: str) -> dict[str, Any]:
    names = [col.name for col in frontdesk_calls.columns]
    row: dict[str, Any] = dict.fromkeys(names)
    row.update(office_id=office, call_id=call_id, fine_yuan=0)
    return row
