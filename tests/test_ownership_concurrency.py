"""Two attribution processors on one PostgreSQL database decide every customer as one processor would.

services/ownership/processor.py claims that each batch locks its customers' rows (SELECT … FOR UPDATE, in key
order), so a customer is decided by one batch at a time, always from every fact committed before. Here two
instances run as members of one consumer group (threads, real tansu, PostgreSQL) over a contended stream:

- "door" customers: two visits from two offices of one project (OWN-01 first contact), on front-desk partitions
  held by different members, so both try to create the same new customer at once;
- "channel" customers: channel 报备 and the visit (OWN-10/11/13 verdicts), then two 认购 on units held by
  different members racing a late 报备 on the commands topic;
- "switch" customers: a visit, then a customer's REQUEST_SWITCH and a RAISE_DISPUTE (OWN-19, COM-01) racing a
  认购 decided by the other member.

Every batch keeps its transaction open ``HOLD_SECONDS`` longer (as a slow acknowledgement would), so batches of the
two members overlap, and two barriers force the schedules that matter: in phase 2 a batch that has folded a switch
customer's state waits for the other member's batch to fold it too (which the lock must prevent: that batch waits
in SELECT … FOR UPDATE until the barrier times out); in phase 3 both members' 认购 batches are open at once. The
invariants must hold whatever the interleaving; the strongest check replays each customer's inputs, in the order
the processors decided them, through the pure decide/evolve and expects the stored facts bit for bit. Outcomes
that must not depend on the interleaving are compared with one instance.

Findings: the 业绩 row (sales_performance, COM-06) was not covered by the customer locks and lost updates when both
members credited one consultant at once (fixed: projections.ownership locks the rows it recomputes); OWN-01 across
two offices of one project followed consumption order, not arrival order (fixed in the pure core: an earlier
arrival decided late takes first contact over, OwnershipFirstContactCorrected).

Partitioning note: the commands and front-desk topics are both keyed by office and have 6 partitions each, so with
the range assignor one office's commands and visits always land on the same member; customers meet across members
through the units topic (keyed by unit) and through projects served by several offices."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition
from sqlalchemy import Connection, Engine, func, select

from projections.base import ConsumedEvent
from projections.db import make_engine, migrate
from projections.ownership_tables import channel_reports, commission_ledger, customer_owners, sales_performance
from projections.runner import ProjectionProcessor
from projections.tables import processed_events, projection_offsets
from services.core.catalog import Catalogue
from services.core.clock import FrozenClock
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ownership import facts as f
from services.ownership.customers import CustomerKeys
from services.ownership.domain import decide, evolve, fold
from services.ownership.inputs import Decide, translate
from services.ownership.processor import FACTS_TOPIC, INPUT_TOPICS, PROCESSOR_NAME, Attribution
from services.ownership.service import build_attribution_processor
from services.ownership.state import INITIAL, CustomerState
from services.ownership.tables import (
    ownership_customers,
    ownership_decisions,
    ownership_facts,
    ownership_subscriptions,
)
from services.ownership.wire import event_type_of, fact_event_id, fact_to_json, fact_to_record, json_to_fact
from tests.support import TEST_CUSTOMER_KEY_SECRET, read_topic, wait_for
from tests.test_ownership_support import T0, Office, iso

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
ARRIVAL = T0 + HOUR  # 11:00 office time
HOLD_SECONDS = 0.03  # each batch holds its locks this much longer before committing
DOORS, CHANNELS, SWITCHES, LATE = 16, 16, 8, 4
PRICE = 100_000_000
KEYS = CustomerKeys(TEST_CUSTOMER_KEY_SECRET.encode())


# ------------------------------------------------------------------------------------------------ the stream


@dataclass
class Stream:
    """One run's customers and inputs: two offices selling one project."""

    project: str
    offices: tuple[Office, Office]
    keys: dict[str, str] = field(default_factory=dict)  # customer name → key
    phones: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # customer name → door | channel | switch
    inputs: list[str] = field(default_factory=list)  # every input that must be decided exactly once
    roles: dict[str, tuple[str, str]] = field(default_factory=dict)  # input id → (customer name, role)
    units: set[str] = field(default_factory=set)
    deals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # customer → 认购 ids

    def customer(self, kind: str, number: int) -> tuple[str, str]:
        kinds = ("door", "channel", "switch", "late")
        name, phone = f"{kind}-{number:02d}", f"139{77_000_000 + kinds.index(kind) * 100 + number:08d}"
        self.keys[name], self.kinds[name], self.phones[name] = KEYS.key(self.project, phone), kind, phone
        return name, phone

    def named(self, kind: str) -> list[str]:
        return sorted(name for name, found in self.kinds.items() if found == kind)

    def note(self, name: str, role: str, input_id: str) -> None:
        self.inputs.append(input_id)
        self.roles[input_id] = (name, role)

    def flush(self) -> None:
        for office in self.offices:
            office.flush()


def publish_first_contacts(s: Stream) -> None:
    """Phase 1 (published at once, customers interleaved): first contacts and channel 报备."""
    o1, o2 = s.offices
    project = {"project_id": s.project}
    for number in range(max(DOORS, CHANNELS, SWITCHES)):
        if number < DOORS:  # OWN-01: s-a at 11:00 at one office, s-b at 11:10 at the other
            name, phone = s.customer("door", number)
            s.note(name, "visit-a", o1.visit(phone, "s-a", ARRIVAL, **project))
            s.note(name, "visit-b", o2.visit(phone, "s-b", ARRIVAL + 10 * MINUTE, **project))
        if number < CHANNELS:  # OWN-10/11/13: verdicts must not depend on the order of 报备 and visit
            name, phone = s.customer("channel", number)
            variant = number % 4
            reports = {
                0: [("ch-x", "ag-1", -60)],  # valid: wins
                1: [("ch-x", "ag-1", -29)],  # OWN-11: less than 30 min before arrival
                2: [("ch-x", "ag-1", 1)],  # OWN-10: after arrival
                3: [("ch-y", "ag-2", -45), ("ch-x", "ag-1", -60)],  # OWN-13: the earlier one wins
            }[variant]
            mentioned = "ch-y" if variant == 3 else "ch-x"
            if number % 2:
                s.note(name, "visit", o1.visit(phone, "s-c", ARRIVAL, channel_mentioned=mentioned, **project))
            for index, (channel, agent, minutes) in enumerate(reports):
                report = o1.report(phone, channel, agent, ARRIVAL + minutes * MINUTE, **project)
                s.note(name, f"report-{index}", report)
            if not number % 2:
                s.note(name, "visit", o1.visit(phone, "s-c", ARRIVAL, channel_mentioned=mentioned, **project))
        if number < SWITCHES:
            name, phone = s.customer("switch", number)
            s.note(name, "visit", o1.visit(phone, "s-a", ARRIVAL, **project))
    s.flush()


def publish_commands(s: Stream) -> None:
    """Phase 2a: a late 报备 for every channel customer (OWN-10), a customer's switch and its dispute (OWN-19,
    COM-01) for every switch customer, all on the commands topic."""
    o1 = s.offices[0]
    for name in s.named("channel"):
        s.note(name, "late-report", o1.report(s.phones[name], "ch-z", "ag-9", o1.clock(), project_id=s.project))
    for name in s.named("switch"):
        key = s.keys[name]
        s.note(name, "switch", o1.command("REQUEST_SWITCH", "fd-1", customer_key=key, from_staff_id="s-a",
                                          to_staff_id="s-b", requested_by_customer=True))  # fmt: skip
        s.note(name, "dispute", o1.command("RAISE_DISPUTE", "s-a", customer_key=key, raised_by="s-a"))
    s.flush()


def publish_deals(s: Stream, unit_for: Callable[[int], str], commands_member: int) -> None:
    """Phase 2b: 认购 on units held by each member (those of switch customers on the member not deciding their
    commands: the COM-01 split decides their credit, so a deal decided without it would show)."""
    for name in s.named("channel"):
        s.note(name, "deal-0", deal(s, name, unit_for(0)))
        s.note(name, "deal-1", deal(s, name, unit_for(1)))
    for name in s.named("switch"):
        s.note(name, "deal", deal(s, name, unit_for(1 - commands_member)))
    s.flush()


def publish_disjoint_deals(s: Stream, unit_for: Callable[[int], str]) -> None:
    """Phase 3: one more 认购 on each member's units, for two different customers: the two batches share no
    customer, but both credit s-c for January (COM-06 业绩). One each, so no later batch refreshes 业绩 again."""
    for number, name in enumerate(s.named("channel")[:2]):
        s.note(name, "deal-2", deal(s, name, unit_for(number)))
    s.flush()


def deal(s: Stream, name: str, unit: str) -> str:
    """A 认购 of ``unit`` signed by s-c whose deposit stops the clock; returns the payment's id (the input)."""
    office, key = s.offices[0], s.keys[name]
    subscription, signed = f"sub-{uuid.uuid4().hex[:10]}", s.offices[0].clock()
    office.publish("SubscriptionSigned", "s-c", {
        "subscription_id": subscription, "unit_id": unit, "customer_id": key, "staff_id": "s-c",
        "signed_at": iso(signed), "price_fen": PRICE,
    }, signed)  # fmt: skip
    paid = office.publish("PaymentReceived", "fin-1", {
        "subscription_id": subscription, "unit_id": unit, "customer_id": key, "amount_fen": 2_000_000,
        "kind": "DEPOSIT", "received_by": "fin-1", "receipt_no": f"r-{subscription}", "stops_clock": True,
    }, signed + 5 * MINUTE)  # fmt: skip
    s.units.add(unit)
    s.deals[name].append(subscription)
    return paid


# ------------------------------------------------------------------------------------------------ two members


@dataclass
class Batch:
    started: float
    ended: float
    event_ids: tuple[str, ...]


class Member:
    """One attribution processor running as a group member in a thread, with what it holds and what it decided."""

    def __init__(self, name: str, processor: ProjectionProcessor) -> None:
        self.name, self.processor = name, processor
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.batches: list[Batch] = []
        # Set: hold the next batch holding an event of that type open until the other member's batch comes too.
        self.rendezvous: tuple[threading.Barrier, str] | None = None
        # Set: the next batch that has loaded the states of one of these customers waits until the other member's
        # batch has loaded them too (it cannot while the customer locks hold) or the barrier times out.
        self.load_rendezvous: tuple[threading.Barrier, frozenset[str]] | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"attribution-{name}", daemon=True)
        on_assign, on_revoke = processor._on_assign, processor._on_revoke
        attribution: Attribution = processor.projections[0]  # type: ignore[assignment]
        apply, load = attribution.apply, attribution._load_states

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            on_assign(consumer, partitions)
            self.assigned = frozenset((p.topic, p.partition) for p in partitions)

        def revoked(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self.assigned = frozenset()
            on_revoke(consumer, partitions)

        def applied(connection: Connection, events: Sequence[ConsumedEvent]) -> None:
            started = time.monotonic()
            apply(connection, events)
            time.sleep(HOLD_SECONDS)  # the customer locks are still held: the other member's batch must wait
            rendezvous = self.rendezvous
            if rendezvous is not None and any(event.event_type == rendezvous[1] for event in events):
                self.rendezvous = None
                # Until the other member gets here too, or (timeout) is blocked on a row this batch holds.
                with contextlib.suppress(threading.BrokenBarrierError):
                    rendezvous[0].wait()
            self.batches.append(Batch(started, time.monotonic(), tuple(event.event_id for event in events)))

        def loaded(connection: Connection, keys: set[str]) -> dict[str, CustomerState]:
            states = load(connection, keys)
            rendezvous = self.load_rendezvous
            if rendezvous is not None and keys & rendezvous[1]:
                self.load_rendezvous = None
                with contextlib.suppress(threading.BrokenBarrierError):
                    rendezvous[0].wait()
            return states

        # The runner's own callbacks still run; we only watch (the assignment gauge is per processor name, shared).
        processor._on_assign = assigned  # type: ignore[method-assign]
        processor._on_revoke = revoked  # type: ignore[method-assign]
        attribution.apply = applied  # type: ignore[method-assign]
        attribution._load_states = loaded  # type: ignore[method-assign]

    def _run(self) -> None:
        try:
            self.processor.run(self.stop)
        except BaseException as problem:  # kept as evidence: a deadlock or serialization failure ends run()
            self.error = problem
            raise

    def decided(self) -> set[str]:
        return {event_id for batch in self.batches for event_id in batch.event_ids}


class LockWatch(threading.Thread):
    """Samples pg_stat_activity: backends of this database waiting for a lock (and on which statement)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="lock-watch", daemon=True)
        self.url, self.done = url, threading.Event()
        self.samples, self.waiting = 0, 0
        self.statements: Counter[str] = Counter()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            while not self.done.is_set():
                rows = connection.execute(
                    "SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                self.waiting += bool(rows)
                self.statements.update(f"{event}: {query}" for event, query in rows)
                time.sleep(0.003)


@dataclass
class Run:
    stream: Stream
    engine: Engine
    attribution: Attribution
    members: list[Member] = field(default_factory=list)
    lock_waits: LockWatch | None = None
    seconds: float = 0.0


def decided_count(engine: Engine, ids: list[str]) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(ownership_decisions).where(ownership_decisions.c.input_id.in_(ids))
            ).scalar_one()
        )


def wait_decided(run: Run, timeout: float = 20.0) -> None:
    def done() -> bool:
        for member in run.members:
            if member.error is not None:
                raise AssertionError(f"member {member.name} stopped: {member.error!r}") from member.error
        return decided_count(run.engine, run.stream.inputs) == len(run.stream.inputs)

    wait_for(done, timeout=timeout, what="every input decided")


def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """Each partition's end, read by fetching (tansu's ListOffsets LATEST is wrong, but only ever too low)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex[:6]}",
                         "enable.partition.eof": True, "enable.auto.commit": False})  # fmt: skip
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [TopicPartition(t, p, OFFSET_END) for t in topics for p in sorted(metadata.topics[t].partitions)]
        consumer.assign(partitions)
        at_end: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 20
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, "could not reach the end of the input topics"
            for message in consumer.consume(1000, timeout=0.2):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end.add((message.topic() or "", message.partition() or 0))
        return {(p.topic, p.partition): p.offset for p in consumer.position(partitions)}
    finally:
        consumer.close()


def pick(partition_of: Callable[[str], int], wanted: set[int], prefix: str) -> str:
    """A fresh id whose records land on one of the ``wanted`` partitions."""
    while True:
        candidate = f"{prefix}-{uuid.uuid4().hex[:8]}"
        if partition_of(candidate) in wanted:
            return candidate


def partition_of(count: int) -> Callable[[str], int]:
    # librdkafka's default partitioner (consistent_random): CRC-32 of the key modulo the partition count.
    return lambda key: zlib.crc32(key.encode()) % count


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def schema_url(postgres_url: str, broker: str, catalogue: Catalogue) -> Iterator[str]:
    """A fresh schema whose processor offsets start at the current end of the input topics (records of other
    tests in this session are not ours to decide)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    migrate(url)
    engine, now = make_engine(url), datetime.now(UTC)
    ends = end_offsets(broker, INPUT_TOPICS)
    with engine.begin() as connection:
        connection.execute(
            projection_offsets.insert(),
            [{"processor": PROCESSOR_NAME, "topic": topic, "partition": partition, "next_offset": offset,
              "updated_at": now} for (topic, partition), offset in ends.items()],
        )  # fmt: skip
    engine.dispose()
    yield url
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def new_stream(settings: Settings, codec: EventCodec, catalogue: Catalogue, clock: FrozenClock) -> Stream:
    kafka = settings.kafka_client_config()
    return Stream(
        f"proj-{uuid.uuid4().hex[:8]}", (Office(kafka, codec, catalogue, clock), Office(kafka, codec, catalogue, clock))
    )


def settings_for(broker: str, registry_url: str, url: str, data_dir: Path, group: str) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker, SCHEMA_REGISTRY_URL=registry_url, DATABASE_URL=url, ANCHANG_DATA_DIR=data_dir,
        ANCHANG_CUSTOMER_KEY_SECRET=TEST_CUSTOMER_KEY_SECRET, ANCHANG_OWNERSHIP_PROCESSOR_GROUP=group,
        KAFKA_SESSION_TIMEOUT_MS=2000, KAFKA_HEARTBEAT_INTERVAL_MS=500,
    )  # fmt: skip


@pytest.fixture(scope="module")
def race(
    broker: str,
    registry_url: str,
    codec: EventCodec,
    catalogue: Catalogue,
    postgres_url: str,
    schema_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    """The stream decided by two members of one group."""
    started = time.monotonic()
    clock = FrozenClock(T0 + 2 * HOUR)
    settings = settings_for(broker, registry_url, schema_url, tmp_path_factory.mktemp("race"),
                            f"attribution-race-{uuid.uuid4().hex[:8]}")  # fmt: skip
    members = [Member(name, build_attribution_processor(settings, clock)) for name in ("a", "b")]
    watch = LockWatch(postgres_url)
    stream = new_stream(settings, codec, catalogue, clock)
    run = Run(stream, members[0].processor.engine, members[0].processor.projections[0], members, watch)  # type: ignore[arg-type]
    for member in members:
        member.thread.start()
    try:
        everything = {(topic, p) for topic in INPUT_TOPICS for p in range(catalogue.topics[topic].partitions)}
        wait_for(
            lambda: all(m.assigned for m in members)
            and not members[0].assigned & members[1].assigned
            and members[0].assigned | members[1].assigned == everything,
            timeout=30, what="both members holding partitions",
        )  # fmt: skip
        held = [{topic: {p for t, p in m.assigned if t == topic} for topic in INPUT_TOPICS} for m in members]
        # The two offices' front desks on different members: the door customers are created by both at once.
        for office, holding in zip(stream.offices, held, strict=True):
            office.id = pick(partition_of(6), holding["anchang.frontdesk"], "office")
        commands_member = next(i for i, m in enumerate(held) if partition_of(6)(stream.offices[0].id) in m[
            "anchang.ownership.commands"])  # fmt: skip
        watch.start()
        publish_first_contacts(stream)
        wait_decided(run)
        clock.at = T0 + 3 * HOUR
        units: Callable[[int], str] = lambda m: pick(partition_of(12), held[m]["anchang.units"], "u")  # noqa: E731
        # Phase 2, published at once. The adversarial schedule for the lock: a batch about switch customers that has
        # folded their states waits until the other member's batch has folded them too. With the locks, the other
        # batch waits in SELECT … FOR UPDATE, the barrier times out after 1 s and the batches run one after the
        # other; without them both would decide from states missing the other's facts.
        switching = frozenset(stream.keys[name] for name in stream.named("switch"))
        loads = threading.Barrier(2, timeout=1.0)
        for member in members:
            member.load_rendezvous = (loads, switching)
        publish_commands(stream)
        publish_deals(stream, units, commands_member)
        wait_decided(run)
        for member in members:
            member.load_rendezvous = None
        # Phase 3: both members' 认购 batches in flight at once, each waiting (up to 2 s) for the other.
        deals = threading.Barrier(2, timeout=2.0)
        for member in members:
            member.rendezvous = (deals, "PaymentReceived")
        publish_disjoint_deals(stream, units)
        wait_decided(run)
    finally:
        for member in members:
            member.stop.set()
        for member in members:
            member.thread.join(timeout=15)
        watch.done.set()
        watch.join(timeout=5)
    run.seconds = time.monotonic() - started
    for member in members:
        member.processor.engine.dispose()
    print(f"\ntwo members: {run.seconds:.1f}s; batches a={len(members[0].batches)} b={len(members[1].batches)}; "
          f"lock waits seen in {watch.waiting}/{watch.samples} samples: {dict(watch.statements)}")  # fmt: skip
    yield run


@pytest.fixture(scope="module")
def solo(
    race: Run,
    broker: str,
    registry_url: str,
    codec: EventCodec,
    catalogue: Catalogue,
    schema_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """The same stream (fresh offices and project, same database) decided by one processor, after the race."""
    clock = FrozenClock(T0 + 2 * HOUR)
    settings = settings_for(broker, registry_url, schema_url, tmp_path_factory.mktemp("solo"),
                            f"attribution-solo-{uuid.uuid4().hex[:8]}")  # fmt: skip
    processor = build_attribution_processor(settings, clock)
    stream = new_stream(settings, codec, catalogue, clock)
    run = Run(stream, processor.engine, processor.projections[0])  # type: ignore[arg-type]
    publish_first_contacts(stream)
    processor.run_until_caught_up()
    clock.at = T0 + 3 * HOUR
    publish_commands(stream)
    publish_deals(stream, lambda _: f"u-{uuid.uuid4().hex[:8]}", 0)
    processor.run_until_caught_up()
    publish_disjoint_deals(stream, lambda _: f"u-{uuid.uuid4().hex[:8]}")
    processor.run_until_caught_up()
    # OWN-01 across two offices of one project: the 11:10 visit is read before the 11:00 one (partition lag).
    o1, o2 = stream.offices
    late = [stream.customer("late", number) for number in range(LATE)]
    for name, phone in late:
        stream.note(name, "visit-b", o2.visit(phone, "s-b", ARRIVAL + 10 * MINUTE, project_id=stream.project))
    stream.flush()
    processor.run_until_caught_up()
    for name, phone in late:
        stream.note(name, "visit-a", o1.visit(phone, "s-a", ARRIVAL, project_id=stream.project))
    stream.flush()
    processor.run_until_caught_up()
    assert decided_count(run.engine, stream.inputs) == len(stream.inputs)
    return run


# ------------------------------------------------------------------------------------------------ reading back


@dataclass(frozen=True)
class StoredFact:
    seq: int
    event_id: str
    event_type: str
    caused_by: str
    office_id: str
    body: dict[str, Any]

    def fact(self) -> f.Fact:
        return json_to_fact(self.event_type, self.body)


def stored_facts(run: Run) -> dict[str, list[StoredFact]]:
    """Each customer's facts in stored (decision) order."""
    keys = list(run.stream.keys.values())
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(ownership_facts).where(ownership_facts.c.customer_key.in_(keys)).order_by(ownership_facts.c.seq)
        ).all()
    found: dict[str, list[StoredFact]] = {key: [] for key in keys}
    for row in rows:
        found[row.customer_key].append(
            StoredFact(row.seq, row.event_id, row.event_type, row.caused_by, row.office_id, row.body)
        )
    return found


def decisions(run: Run) -> dict[str, dict[str, Any]]:
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(ownership_decisions).where(ownership_decisions.c.input_id.in_(run.stream.inputs))
        ).all()
    return {row.input_id: dict(row._mapping) for row in rows}


def first_contacts(facts: list[StoredFact]) -> list[f.Fact]:
    return [
        fact
        for fact in (stored.fact() for stored in facts)
        if isinstance(fact, f.OwnershipAssigned) and fact.rule_id == "OWN-01"
    ]


def owner_rows(run: Run) -> dict[str, dict[str, Any]]:
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(customer_owners).where(customer_owners.c.customer_key.in_(run.stream.keys.values()))
        ).all()
    return {row.customer_key: dict(row._mapping) for row in rows}


def report_rows(run: Run) -> dict[str, dict[str, Any]]:
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(channel_reports).where(channel_reports.c.customer_key.in_(run.stream.keys.values()))
        ).all()
    return {row.report_id: dict(row._mapping) for row in rows}


def ledger_lines(run: Run, deal_id: str) -> list[tuple[Any, ...]]:
    c = commission_ledger.c
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(c.party, c.party_id, c.entry, c.status, c.share, c.sales_fen, c.commission_fen, c.withheld_fen,
                   c.month, c.rule_id).where(c.deal_id == deal_id).order_by(c.line_id)
        ).all()  # fmt: skip
    return [tuple(row) for row in rows]


def performance_rows(run: Run) -> dict[tuple[str, str], tuple[int, int]]:
    """(staff, month) → (credited deals, credited amount) of the run's office."""
    c = sales_performance.c
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(c.staff_id, c.month, c.credited_deals, c.credited_amount_fen).where(
                c.office_id == run.stream.offices[0].id
            )
        ).all()
    return {(staff, month): (deals, amount) for staff, month, deals, amount in rows}


def performance_from_ledger(run: Run) -> dict[tuple[str, str], tuple[int, int]]:
    """The same, summed from the ledger's staff lines (what refresh_performance computes, COM-06)."""
    c = commission_ledger.c
    with run.engine.connect() as connection:
        rows = connection.execute(
            select(c.party_id, c.month, c.entry, c.sales_fen).where(
                c.office_id == run.stream.offices[0].id, c.party == "staff"
            )
        ).all()
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for staff, month, entry, sales in rows:
        totals[(staff, month)][0] += 1 if entry == "credit" else -1
        totals[(staff, month)][1] += sales
    return {key: (deals, amount) for key, (deals, amount) in totals.items()}


def input_records(run: Run, broker: str, codec: EventCodec) -> dict[str, tuple[str, dict[str, Any]]]:
    """The run's inputs as the processors decoded them, by event id."""
    offices = {office.id.encode() for office in run.stream.offices}
    units = {unit.encode() for unit in run.stream.units}
    wanted = set(run.stream.inputs)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for topic in INPUT_TOPICS:
        ours = units if topic == "anchang.units" else offices
        for message in read_topic(broker, topic):
            if message.key() in ours:
                event_type, record = codec.decode(message.value())
                if (event_id := str(record["envelope"]["event_id"])) in wanted:
                    found[event_id] = (event_type, record)
    return found


class ReplayContext:
    """Translation lookups for the replay. The stream names no referrer and no barred agent; 认购 are read back."""

    def __init__(self, engine: Engine) -> None:
        with engine.connect() as connection:
            self.subscriptions = {
                row.subscription_id: {k: _aware(v) for k, v in row._mapping.items()}
                for row in connection.execute(select(ownership_subscriptions))
            }

    def customer_key(self, project_id: str, phone: str) -> str:
        return KEYS.key(project_id, phone)

    def known_customer(self, key: str) -> bool:
        return True

    def owner_of(self, key: str) -> str | None:
        return None

    def barred_at(self, project_id: str, agent_id: str) -> datetime | None:
        return None

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        return self.subscriptions.get(subscription_id)


def _aware(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def member_of(run: Run) -> dict[str, str]:
    return {event_id: member.name for member in run.members for event_id in member.decided()}


# ------------------------------------------------------------------------------------------------ the race


def test_both_members_decided_inputs_of_the_same_customers(race: Run) -> None:
    """The race is real: every customer had inputs decided by both members, their batches overlapped in time, and
    one member's batch waited on the other's row lock of a customer (SELECT … FOR UPDATE)."""
    by_member = member_of(race)
    members_of: dict[str, set[str]] = defaultdict(set)
    for input_id, (name, _) in race.stream.roles.items():
        members_of[name].add(by_member[input_id])
    shared = sorted(name for name, found in members_of.items() if len(found) == 2)
    assert shared == sorted(race.stream.keys)
    assert all(member.batches for member in race.members)
    overlapping = sum(
        1
        for a in race.members[0].batches
        for b in race.members[1].batches
        if a.started < b.ended and b.started < a.ended
    )
    print(f"customers met by both members: {len(shared)}; overlapping batch pairs: {overlapping}")
    assert overlapping > 0
    assert race.lock_waits is not None
    assert any("SELECT ownership_customers" in statement for statement in race.lock_waits.statements)


def test_every_input_is_decided_exactly_once(race: Run) -> None:
    found = decisions(race)
    assert set(found) == set(race.stream.inputs)
    assert len(race.stream.inputs) == len(set(race.stream.inputs))
    assert [row["outcome"] for row in found.values() if row["outcome"] == "skipped"] == []
    with race.engine.connect() as connection:
        claimed = Counter(
            connection.execute(
                select(processed_events.c.event_id).where(
                    processed_events.c.processor == PROCESSOR_NAME,
                    processed_events.c.event_id.in_(race.stream.inputs),
                )
            ).scalars()
        )
    assert set(claimed) == set(race.stream.inputs) and set(claimed.values()) == {1}
    by_member = member_of(race)
    assert set(race.stream.inputs) <= set(by_member)
    facts = [stored for rows in stored_facts(race).values() for stored in rows]
    ids = [stored.event_id for stored in facts]
    assert len(ids) == len(set(ids)), "a fact id stored twice"
    named = [fact_id for row in found.values() for fact_id in row["fact_event_ids"]]
    assert len(named) == len(set(named)) and set(named) == set(ids)
    for input_id, row in found.items():
        assert row["fact_event_ids"] == [fact_event_id(input_id, i) for i in range(len(row["fact_event_ids"]))]


def test_OWN_01_each_customer_has_exactly_one_first_contact(race: Run) -> None:
    facts = stored_facts(race)
    owners: Counter[str] = Counter()
    for name, key in race.stream.keys.items():
        (first,) = first_contacts(facts[key])  # never two owners by first contact, whoever decided first
        assert isinstance(first, f.OwnershipAssigned)
        kind = race.stream.kinds[name]
        assert first.staff_id in {"door": ("s-a", "s-b"), "channel": ("s-c",), "switch": ("s-a",)}[kind]
        if kind == "door":
            owners[first.staff_id] += 1
            helped = [stored.fact() for stored in facts[key] if stored.event_type == "ServedForAbsentOwner"]
            assert len(helped) == 1 and isinstance(helped[0], f.ServedForAbsentOwner)
            assert {helped[0].owner_id, helped[0].helper_id} == {"s-a", "s-b"}
    print(f"door customers owned (11:00 s-a at one office, 11:10 s-b at the other): {dict(owners)}")


def test_stored_facts_fold_to_the_read_model(race: Run) -> None:
    facts, owners, reports = stored_facts(race), owner_rows(race), report_rows(race)
    with race.engine.connect() as connection:
        rows = connection.execute(
            select(ownership_customers).where(ownership_customers.c.customer_key.in_(race.stream.keys.values()))
        ).all()
    disputes = {row.customer_key: row.dispute_open for row in rows}
    for key in race.stream.keys.values():
        state = fold(stored.fact() for stored in facts[key])
        owner, row = state.owner, owners.get(key)
        assert owner is not None and row is not None
        assert (row["staff_id"], row["basis"], row["rule_id"]) == (owner.staff_id, str(owner.basis), owner.rule_id)
        assert row["since"] == owner.since and row["expires_at"] == owner.expires_at
        assert disputes[key] == state.dispute_open
        for report in state.reports:
            stored = reports[report.event_id]
            assert (stored["status"], stored["reason"], stored["rule_id"]) == (
                str(report.verdict.status),
                str(report.verdict.reason) if report.verdict.reason is not None else None,
                report.verdict.rule_id,
            )


def test_facts_on_the_log_are_the_facts_in_sql(race: Run, broker: str, codec: EventCodec) -> None:
    facts = {stored.event_id: stored for rows in stored_facts(race).values() for stored in rows}
    keys = {key.encode() for key in race.stream.keys.values()}
    copies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in read_topic(broker, FACTS_TOPIC):
        if message.key() in keys:
            _, record = codec.decode(message.value())
            copies[str(record["envelope"]["event_id"])].append(record)
    assert set(copies) == set(facts)
    for event_id, records in copies.items():
        stored = facts[event_id]
        for record in records:  # a copy re-emitted after a retried batch must say the same
            _, expected = fact_to_record(stored.fact(), event_id=event_id, office_id=stored.office_id,
                                         recorded_at=record["envelope"]["recorded_at"])  # fmt: skip
            assert {name: record[name] for name in expected if name != "envelope"} == {
                name: value for name, value in expected.items() if name != "envelope"
            }
            assert {name: record["envelope"][name] for name in expected["envelope"]} == expected["envelope"]


def test_replaying_the_inputs_in_decision_order_gives_the_stored_facts(
    race: Run, broker: str, codec: EventCodec
) -> None:
    """Each decision was taken from the state folded from every fact stored before it: one pure decide/evolve,
    fed the customer's inputs in stored order, reproduces every stored fact (ids, types, bodies)."""
    records, context, facts = input_records(race, broker, codec), ReplayContext(race.engine), stored_facts(race)
    assert set(records) == set(race.stream.inputs)
    for name, key in race.stream.keys.items():
        runs: list[tuple[str, list[StoredFact]]] = []  # (input, its facts), in stored order
        for stored in facts[key]:
            if runs and runs[-1][0] == stored.caused_by:
                runs[-1][1].append(stored)
            else:
                runs.append((stored.caused_by, [stored]))
        order = [input_id for input_id, _ in runs]
        assert len(order) == len(set(order)), f"{name}: the facts of one input are not contiguous: {order}"
        assert set(order) == {i for i, (n, _) in race.stream.roles.items() if n == name}
        state: CustomerState = INITIAL
        for input_id, stored_run in runs:
            event_type, record = records[input_id]
            answer = translate(event_type, record, context)
            assert isinstance(answer, Decide)
            office = record["envelope"]["office_id"]
            replayed = decide(state, answer.event, race.attribution.policies(office))
            expected = [(fact_event_id(input_id, i), event_type_of(fact), fact_to_json(fact))
                        for i, fact in enumerate(replayed)]  # fmt: skip
            got = [(stored.event_id, stored.event_type, stored.body) for stored in stored_run]
            assert got == expected, f"{name}: {race.stream.roles[input_id][1]} was decided from another state"
            for fact in replayed:
                state = evolve(state, fact)


# ------------------------------------------------------------------------------------------------ one vs two


def outcomes(run: Run) -> dict[str, Any]:
    """What must not depend on the interleaving: channel customers' owners, verdicts, decisions and ledger."""
    found, owners, reports = decisions(run), owner_rows(run), report_rows(run)
    result: dict[str, Any] = {}
    for name in run.stream.named("channel"):
        key = run.stream.keys[name]
        owner = owners[key]
        verdicts = {}
        roles = {}
        for input_id, (customer, role) in run.stream.roles.items():
            if customer != name:
                continue
            roles[role] = (found[input_id]["outcome"], found[input_id]["rule_id"])
            if role.startswith("report") or role == "late-report":
                report = reports[input_id]
                verdicts[role] = (report["status"], report["reason"], report["rule_id"])
        ledger = [ledger_lines(run, deal_id) for deal_id in run.stream.deals[name]]
        result[name] = {"owner": (owner["staff_id"], owner["basis"], owner["rule_id"]), "verdicts": verdicts,
                        "decisions": roles, "ledger": ledger}  # fmt: skip
    for name in run.stream.named("door"):
        result[name] = len(first_contacts(stored_facts(run)[run.stream.keys[name]]))
    return result


def test_outcomes_match_a_single_instance(race: Run, solo: Run) -> None:
    two, one = outcomes(race), outcomes(solo)
    assert two == one
    # COM-06 with one instance: 16 channel customers × 2 认购, and 2 more, credited to s-c in January.
    assert performance_rows(solo)[("s-c", "2026-01")] == (2 * CHANNELS + 2, (2 * CHANNELS + 2) * PRICE)
    assert performance_rows(solo) == performance_from_ledger(solo)
    assert one["channel-00"]["verdicts"]["report-0"] == ("winning", None, None)  # the comparison is not vacuous
    assert one["channel-01"]["verdicts"]["report-0"] == ("rejected", "lt_lead_time", "OWN-11")
    assert one["channel-03"]["verdicts"]["report-1"] == ("winning", None, None)


def test_COM_06_performance_adds_up_the_ledger_when_two_members_credit_one_consultant(race: Run, solo: Run) -> None:
    assert performance_rows(race) == performance_from_ledger(race)


def test_OWN_01_the_earliest_arrival_owns_even_when_its_office_is_read_late(solo: Run) -> None:
    owners = owner_rows(solo)
    late = solo.stream.named("late")
    assert late
    assert {name: owners[solo.stream.keys[name]]["staff_id"] for name in late} == dict.fromkeys(late, "s-a")
