"""kill -9 of the 销控 decision processor in the middle of a stream of commands, then a restart: no unit ever
holds two claims and no accepted command is lost.

A real ``anchang sales run`` process decides a contested stream of commands over fresh units while the test
SIGKILLs it twice and starts it again each time with the same group and database: once wherever it happens to
be about a third into the stream, once exactly in the window between producing a batch's facts and committing
them (the test makes the processor's next write of its offsets wait, so it stops right there). Afterwards:

- every published command has exactly one decision (none lost, none decided twice);
- the facts on ``anchang.units``, copies dropped by event id, are exactly the facts the processor remembers in
  SQL, in the same order, exactly those its decisions name, and exactly what the pure decider makes of the
  commands in log order;
- a fact on the log twice (produced before a crash, decided again after it) is the same fact both times;
- folded from the log, no unit ever holds two claims and every state passes ``check_invariants``;
- each unit's final state agrees on the log, in SQL and in the decision of its last command.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from deploy.process import ManagedProcess, free_port
from projections.db import make_engine, migrate
from projections.tables import projection_offsets
from services.core.catalog import Catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.direct import DirectPublisher
from services.sales import domain as d
from services.sales.policies import OfficePolicies
from services.sales.processor import COMMANDS_TOPIC, FACTS_TOPIC, PROCESSOR_NAME, summarize
from services.sales.tables import unit_decisions, unit_facts
from services.sales.wire import fact_event_id, record_to_command, record_to_fact
from services.stack import anchang_command, metric_positive
from tests.support import read_topic, stalled_after_producing, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

UNITS = 20
COMMANDS_PER_UNIT = 20
PACE = 0.01  # seconds between two commands: 400 commands in about 4 s
OFFICES = ("office-a", "office-b", "office-c")
CUSTOMERS = ("c-1", "c-2", "c-3", "c-4")
ROLES = {"consultant": "SALES_CONSULTANT", "manager": "SALES_MANAGER", "finance": "FINANCE"}
Decoded = tuple[str, dict[str, Any]]  # (event type, Avro record)


# ---------------------------------------------------------------------------------------------------------------
# The stream of commands


@dataclass(frozen=True)
class Planned:
    unit: str
    command_type: str
    who: str  # a key of ROLES
    office: str
    payload: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {
            "event_type": "UnitCommandIssued",
            "actor": {"staff_id": f"{self.who}-{self.office}", "role": ROLES[self.who]},
            "payload": {"unit_id": self.unit, "command_type": self.command_type, **self.payload},
        }


def unit_script(unit: str, rng: random.Random) -> list[Planned]:
    """A contested day of one unit: rounds of rival lock requests from several offices, the manager's 销控
    (not always for the first customer), a 认购, sometimes the deposit, a release; now and then by a wrong role."""
    script: list[Planned] = []

    def add(command_type: str, who: str, **payload: Any) -> None:
        script.append(Planned(unit, command_type, who, rng.choice(OFFICES), payload))

    round_no = 0
    while len(script) < COMMANDS_PER_UNIT:
        round_no += 1
        subscription = f"sub-{round_no}"
        rivals = rng.sample(CUSTOMERS, rng.randint(1, 3))
        for customer in rivals:
            add("REQUEST_LOCK", "consultant", customer_id=customer, staff_id=f"consultant-{customer}")
        if rng.random() < 0.3:  # only the 销售经理 does 销控
            add("CONFIRM_LOCK", "consultant", customer_id=rivals[0])
        add("CONFIRM_LOCK", "manager", customer_id=rng.choice(rivals))
        add("SIGN_SUBSCRIPTION", "consultant", subscription_id=subscription, customer_id=rng.choice(rivals),
            price_fen=150_000_000)  # fmt: skip
        if rng.random() < 0.3:  # SALE-10: salespeople never handle money
            add("RECEIVE_PAYMENT", "consultant", subscription_id=subscription, amount_fen=2_000_000,
                payment_kind="DEPOSIT", receipt_no=f"r-{round_no}-x")  # fmt: skip
        if rng.random() < 0.3:
            add("RECEIVE_PAYMENT", "finance", subscription_id=subscription, amount_fen=2_000_000,
                payment_kind="DEPOSIT", receipt_no=f"r-{round_no}")  # fmt: skip
        if rng.random() < 0.3:  # SALE-07: salespeople may not release units
            add("RELEASE_LOCK", "consultant")
        add("RELEASE_LOCK", "manager", reason=rng.choice(["MANAGER_RELEASE", "CUSTOMER_WITHDREW"]))
    return script[:COMMANDS_PER_UNIT]


def interleave(scripts: list[list[Planned]], rng: random.Random) -> list[Planned]:
    """One stream of all scripts, each unit's commands in their order, the units mixed at random."""
    queues = [list(reversed(script)) for script in scripts]
    stream: list[Planned] = []
    while remaining := [queue for queue in queues if queue]:
        stream.append(rng.choice(remaining).pop())
    return stream


class CommandStream(threading.Thread):
    """Publishes the planned commands at a steady pace, as the API would; ``published`` are their ids."""

    def __init__(self, publisher: DirectPublisher, planned: list[Planned]) -> None:
        super().__init__(name="command-stream", daemon=True)
        self.publisher = publisher
        self.planned = planned
        self.published: list[str] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            start = time.monotonic()
            for index, command in enumerate(self.planned):
                if self.halt.wait(max(0.0, start + index * PACE - time.monotonic())):
                    return
                self.published.append(self.publisher.publish(command.body(), office_id=command.office))
                self.publisher.producer.poll(0)
            self.publisher.flush()
        except BaseException as error:  # re-raised by the test
            self.error = error


# ---------------------------------------------------------------------------------------------------------------
# The processor as a process


@dataclass
class Processors:
    """Starts `anchang sales run` processes, all with one group and one database; stops what is left at the end."""

    settings: Settings
    run_dir: Path
    group: str = field(default_factory=lambda: f"crash-{uuid.uuid4().hex[:8]}")
    metrics_port: int = field(default_factory=free_port)
    started: list[ManagedProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
            "DATABASE_URL": self.settings.resolved_database_url,
            "ANCHANG_DATA_DIR": str(self.settings.data_dir),
            "ANCHANG_SALES_METRICS_PORT": str(self.metrics_port),
            "ANCHANG_SALES_PROCESSOR_GROUP": self.group,
            # A short session: a new process joins (and a killed one leaves) the group in about a second.
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        }

    def start(self) -> ManagedProcess:
        ready = metric_positive(f"http://127.0.0.1:{self.metrics_port}/", "anchang_consumer_assigned_partitions")
        process = ManagedProcess("sales", anchang_command("sales", "run"), self.run_dir, ready, env=self.env())
        self.started.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.popen is not None:
                process.stop()


@pytest.fixture
def processors(settings: Settings, tmp_path: Path) -> Iterator[Processors]:
    processors = Processors(settings, tmp_path / "run")
    try:
        yield processors
    finally:
        processors.stop_all()


@pytest.fixture
def engine(settings: Settings, broker: str) -> Iterator[Engine]:
    """The processor's database, set up as if it had been deciding all along: it resumes after the commands
    already on the log (other tests' units), so this test's processes decide this test's stream only."""
    migrate(settings.resolved_database_url)
    ends: dict[int, int] = {}
    for message in read_topic(broker, COMMANDS_TOPIC):
        partition, offset = message.partition() or 0, message.offset() or 0
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    engine = make_engine(settings.resolved_database_url)
    try:
        if ends:
            with engine.begin() as connection:
                connection.execute(
                    projection_offsets.insert(),
                    [
                        {"processor": PROCESSOR_NAME, "topic": COMMANDS_TOPIC, "partition": partition,
                         "next_offset": end, "updated_at": datetime.now(UTC)}
                        for partition, end in ends.items()
                    ],
                )  # fmt: skip
        yield engine
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Crash:
    published: int  # commands published when the processor was killed
    decided: int  # commands it had decided (committed) by then
    uncommitted: Counter[str]  # ids of the facts it had put on the log without committing them (copies each)

    def __str__(self) -> str:
        left = self.uncommitted.total()
        return f"published {self.published}, decided {self.decided}, {left} fact(s) produced but not committed"


# ---------------------------------------------------------------------------------------------------------------
# Checks


def second_claim(before: d.UnitState, fact: d.Fact) -> str | None:
    """Why ``fact`` would put a claim on a unit beside the one it already has; None if it would not."""
    match fact:
        case d.LockRequested():
            fine = before.status is d.UnitStatus.AVAILABLE
        case d.Locked():
            fine = before.claimant in (None, fact.customer_id) and before.status in (
                d.UnitStatus.AVAILABLE, d.UnitStatus.LOCK_REQUESTED,
            )  # fmt: skip
        case d.SubscriptionSigned():
            fine = before.status is d.UnitStatus.LOCKED and before.claimant == fact.customer_id
        case d.PaymentReceived() | d.LockReleased():
            fine = before.claimant == fact.customer_id
        case _:
            return None
    if fine:
        return None
    return f"{type(fact).__name__} for {fact.customer_id} while the unit is {before.status} for {before.claimant}"


def replay(unit: str, facts: list[d.Fact]) -> d.UnitState:
    """Fold ``facts`` from a fresh unit, checking that no fact gives it a second claim and every state is sound."""
    state = d.INITIAL
    for number, fact in enumerate(facts):
        problem = second_claim(state, fact)
        assert problem is None, f"{unit}, fact {number}: {problem}"
        state = d.evolve(state, fact)  # InconsistentHistory fails the test
        assert d.check_invariants(state) == [], f"{unit}, after fact {number} ({type(fact).__name__})"
    return state


def without_recorded_at(decoded: Decoded) -> Decoded:
    event_type, record = decoded
    return event_type, {**record, "envelope": {**record["envelope"], "recorded_at": None}}


def by_unit(messages: list[Any], units: list[str], codec: EventCodec) -> dict[str, list[Decoded]]:
    """The records of ``units`` among ``messages``, decoded, per unit in log order."""
    keys = {unit.encode(): unit for unit in units}
    records: dict[str, list[Decoded]] = defaultdict(list)
    for message in messages:
        if message.key() in keys:
            records[keys[message.key()]].append(codec.decode(message.value()))
    return records


def uncommitted_facts(broker: str, codec: EventCodec, engine: Engine, units: list[str]) -> Counter[str]:
    """Ids of the facts of ``units`` on the log that the processor has not committed to SQL, with the number of
    times each is there."""
    records = by_unit(read_topic(broker, FACTS_TOPIC), units, codec)
    on_log = Counter(str(record["envelope"]["event_id"]) for decoded in records.values() for _, record in decoded)
    with engine.connect() as connection:
        in_sql = set(connection.execute(select(unit_facts.c.event_id).where(unit_facts.c.unit_id.in_(units))).scalars())
    return Counter({event_id: count for event_id, count in on_log.items() if event_id not in in_sql})


def decided(engine: Engine, units: list[str]) -> int:
    with engine.connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(unit_decisions).where(unit_decisions.c.unit_id.in_(units))
        ).scalar_one()
    return int(count)


# ---------------------------------------------------------------------------------------------------------------
# The test


def test_kill_9_mid_stream_loses_no_command_and_never_gives_a_unit_two_claims(
    processors: Processors,
    engine: Engine,
    settings: Settings,
    broker: str,
    codec: EventCodec,
    catalogue: Catalogue,
) -> None:
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)  # the run id reproduces the stream
    units = [f"crash-{run}-{n:02d}" for n in range(UNITS)]
    planned = interleave([unit_script(unit, rng) for unit in units], rng)
    total = len(planned)
    stream = CommandStream(DirectPublisher(settings.kafka_client_config(), codec, catalogue), planned)

    def uncommitted() -> Counter[str]:
        return uncommitted_facts(broker, codec, engine, units)

    def crash(process: ManagedProcess, left_before: Counter[str] | None = None) -> Crash:
        published = len(stream.published)
        process.kill()
        # Dead now: what it committed is final, and so is what it produced without committing. (Facts the
        # process before it left uncommitted may be among them: deciding the same commands again gives the
        # same ids, so count copies.)
        return Crash(published, decided(engine, units), uncommitted() - (left_before or Counter()))

    process = processors.start()
    stream.start()
    try:
        # First crash about a third into the stream, wherever the processor is as it keeps up with it.
        wait_for(lambda: len(stream.published) >= total // 3 and decided(engine, units) > 0,
                 timeout=30, what="a third of the stream")  # fmt: skip
        crashes = [crash(process)]
        time.sleep(0.5)
        # Second crash after the restarted process put a batch's facts on the log but before it committed them.
        with stalled_after_producing(engine):
            process = processors.start()
            try:
                wait_for(lambda: uncommitted() - crashes[0].uncommitted, timeout=30,
                         what="facts produced but not committed", interval=0.2)  # fmt: skip
            finally:
                crashes.append(crash(process, crashes[0].uncommitted))
        time.sleep(1)
        process = processors.start()
        stream.join(timeout=60)
        assert not stream.is_alive()
        if stream.error is not None:
            raise stream.error
        wait_for(lambda: decided(engine, units) >= total, timeout=60, what="every command decided", interval=0.2)
    finally:
        stream.halt.set()
        stream.join(timeout=10)

    assert len(stream.published) == len(set(stream.published)) == total
    # (5) The first kill really hit the middle of the stream: some but not all commands were decided. The second
    # hit a batch whose facts were on the log but not committed (the restarted process committed nothing).
    assert 0 < crashes[0].decided < total and crashes[0].published < total, str(crashes[0])
    assert crashes[1].decided == crashes[0].decided and crashes[1].uncommitted, str(crashes[1])
    left_uncommitted = set(crashes[0].uncommitted) | set(crashes[1].uncommitted)

    # (1) Exactly one decision per published command: none lost, none decided twice.
    with engine.connect() as connection:
        decisions = [
            dict(row._mapping)
            for row in connection.execute(select(unit_decisions).where(unit_decisions.c.unit_id.in_(units)))
        ]
        remembered = connection.execute(
            select(unit_facts.c.unit_id, unit_facts.c.event_id, unit_facts.c.avro)
            .where(unit_facts.c.unit_id.in_(units))
            .order_by(unit_facts.c.seq)
        ).all()
    assert Counter(row["command_id"] for row in decisions) == Counter(stream.published)
    decision_of = {row["command_id"]: row for row in decisions}

    commands = by_unit(read_topic(broker, COMMANDS_TOPIC), units, codec)
    on_log = by_unit(read_topic(broker, FACTS_TOPIC), units, codec)
    in_sql: dict[str, list[Decoded]] = defaultdict(list)
    for unit_id, _event_id, avro in remembered:
        in_sql[unit_id].append(codec.decode(avro))
    unit_commands = {unit: {str(record["envelope"]["event_id"]) for _, record in commands[unit]} for unit in units}
    policies = OfficePolicies.from_settings(settings.policy_file, settings.policy_dir)
    copies, reemitted, statuses = 0, 0, Counter[str]()
    for unit in units:
        # (3) A fact on the log twice is the same fact both times (only recorded_at differs); drop the copies.
        first: dict[str, Decoded] = {}
        for decoded in on_log[unit]:
            event_id = str(decoded[1]["envelope"]["event_id"])
            if event_id in first:
                copies += 1
                assert without_recorded_at(decoded) == without_recorded_at(first[event_id]), event_id
                assert record_to_fact(*decoded) == record_to_fact(*first[event_id])
            else:
                first[event_id] = decoded
        log_ids = list(first)
        # What the crashes left uncommitted was decided again, identically: those facts are on the log twice.
        occurrences = Counter(str(record["envelope"]["event_id"]) for _, record in on_log[unit])
        left = left_uncommitted & set(occurrences)
        assert all(occurrences[event_id] >= 2 for event_id in left), unit
        reemitted += len(left)
        log_facts = [record_to_fact(*decoded) for decoded in first.values()]

        # (2) No unit ever held two claims; every state on the way is sound.
        final = replay(unit, log_facts)

        # The log holds what the pure decider makes of the unit's commands in log order, with the derived ids,
        # and nothing a crashed process produced for a decision that was then lost.
        command_ids = [str(record["envelope"]["event_id"]) for _, record in commands[unit]]
        assert command_ids == [command_id for command_id in stream.published if command_id in unit_commands[unit]]
        assert len(command_ids) == COMMANDS_PER_UNIT
        state, expected_facts, expected_ids = d.INITIAL, [], []
        for _, record in commands[unit]:
            answer = d.decide(state, record_to_command(record), policies(record["envelope"]["office_id"]))
            for index, fact in enumerate(answer):
                state = d.evolve(state, fact)
                expected_ids.append(fact_event_id(str(record["envelope"]["event_id"]), index))
            expected_facts.extend(answer)
        assert (log_ids, log_facts) == (expected_ids, expected_facts), unit
        assert [fact_id for command_id in command_ids for fact_id in decision_of[command_id]["fact_event_ids"]] == (
            log_ids
        ), unit

        # (4) The same history in SQL, and the decision of the unit's last command shows the same unit.
        assert [str(record["envelope"]["event_id"]) for _, record in in_sql[unit]] == log_ids, unit
        assert d.fold(record_to_fact(*decoded) for decoded in in_sql[unit]) == final, unit
        last = decision_of[command_ids[-1]]["state_after"]
        assert (last["status"], last["customer_id"]) == (str(final.status), final.claimant), unit
        assert last == summarize(final), unit
        statuses[str(final.status)] += 1

    assert reemitted == len(left_uncommitted)  # each of them was found on the log twice, above
    outcomes = Counter(row["outcome"] for row in decisions)
    print(f"\nrun {run}: crash 1: {crashes[0]}; crash 2: {crashes[1]}; {copies} copies on the log; "
          f"outcomes {dict(outcomes)}; final states {dict(statuses)}")  # fmt: skip
