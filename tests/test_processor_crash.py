"""kill -9 of the attribution, front-desk and staff decision processors in the middle of a stream of their inputs,
then a restart: no input is lost or decided twice, and what each one put on Kafka is what it remembers in SQL.

Like tests/test_sales_crash.py (the 销控 processor), for each processor a real ``anchang <name> run`` process
decides a stream of one fresh office's inputs while the test SIGKILLs it twice and starts it again each time with
the same group and database: once about a third into the stream, wherever it is, and once exactly in the window
between producing a batch's facts and committing them (the processor's next write of its offsets waits: a table
lock on PostgreSQL, a trigger on SQLite). Afterwards, for every processor:

- every published input was claimed exactly once (``processed_events``), and has exactly one answer where the
  processor keeps one (attribution: ``ownership_decisions``; front desk: one visit row per visit, one call row per
  call, one SMS row per SMS, one or more facts per rotation command);
- its facts on Kafka, copies dropped by event id, are exactly those it remembers in SQL (attribution:
  ``ownership_facts``; front desk: ``frontdesk_facts``) or, for the staff processor, which keeps states and not
  facts, exactly what its pure step makes of the inputs in log order; the sanctions on ``anchang.discipline``
  exactly those the pure rules give for the committed inputs;
- a fact on the log twice (produced before a crash, decided again after it) is the same fact both times;
- the read side is that of a run without crashes: for the attribution and front-desk processors an in-process
  run of the same input log on a fresh database (its facts then go to Kafka a third time: the same ids must
  again carry the same content), for the staff processor the pure step folded over the log (states, timers).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, Table, select

from deploy.process import ManagedProcess, free_port
from projections.db import make_engine, migrate
from projections.ownership_tables import channel_reports, customer_owners, sales_performance, sales_targets
from projections.runner import ProjectionProcessor
from projections.tables import processed_events, projection_offsets
from services.core.catalog import Catalogue
from services.core.clock import stored_utc
from services.core.codec import EventCodec
from services.core.config import Settings
from services.kafka.direct import DirectPublisher
from services.ownership import processor as attribution
from services.ownership.service import build_attribution_processor
from services.ownership.tables import ownership_customers, ownership_decisions, ownership_facts
from services.ownership.wire import fact_to_record as ownership_record
from services.ownership.wire import json_to_fact
from services.stack import anchang_command, metric_positive
from services.staff import calls as c
from services.staff import frontdesk_processor as frontdesk
from services.staff import staff_decide as sd
from services.staff import staff_processor as staff
from services.staff.frontdesk_service import build_frontdesk_processor
from services.staff.frontdesk_tables import (
    frontdesk_calls,
    frontdesk_facts,
    frontdesk_sms,
    frontdesk_tally,
    frontdesk_visits,
)
from services.staff.frontdesk_wire import INPUT_TOPIC as FRONTDESK_TOPIC
from services.staff.localtime import local_day
from services.staff.penalties import Penalty
from services.staff.penalty_wire import DISCIPLINE_TOPIC, penalty_id, penalty_to_record
from services.staff.policies import staff_policies_from_dir
from services.staff.staff_state import ComplaintState, StaffState
from services.staff.staff_tables import complaint_states, staff_states, staff_timers
from services.staff.staff_wire import (
    COMPLAINTS_TOPIC,
    STAFF_TOPIC,
    fact_event_id,
    record_to_complaint_input,
    record_to_staff_input,
    timer_event_id,
)
from services.staff.staff_wire import fact_to_record as staff_record
from services.staff.visits import register_fines
from tests.support import Ends, read_log, stalled_after_producing, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PACE = 0.01  # seconds between two inputs
Body = dict[str, Any]  # an API-shaped event body
Decoded = tuple[str, dict[str, Any]]  # (event type, Avro record)
SHANGHAI = timedelta(hours=8)  # every office here uses the handbook's Asia/Shanghai (no DST)
ROLES = {"s": "SALES_CONSULTANT", "sup": "SALES_SUPERVISOR", "mgr": "SALES_MANAGER", "fd": "FRONT_DESK",
         "cs": "CUSTOMER_SERVICE", "pbx": "SYSTEM", "fin": "FINANCE", "ch": "CHANNEL_AGENT"}  # fmt: skip


def body(event_type: str, actor: str, at: datetime, **payload: Any) -> Body:
    return {"event_type": event_type, "occurred_at": at.isoformat(),
            "actor": {"staff_id": actor, "role": ROLES[actor.split("-")[0]]}, "payload": payload}  # fmt: skip


def interleave(scripts: list[list[Callable[[datetime], Body]]], rng: random.Random, start: datetime) -> list[Body]:
    """One stream of all scripts, each script's steps in their order, the scripts mixed at random; step n of the
    stream happens n seconds after ``start``."""
    queues = [list(reversed(script)) for script in scripts if script]
    stream: list[Body] = []
    while remaining := [queue for queue in queues if queue]:
        stream.append(rng.choice(remaining).pop()(start + timedelta(seconds=len(stream))))
    return stream


# ---------------------------------------------------------------------------------------------------------------
# The streams (one fresh office each; staff ids carry the run id, so keys on shared topics are this run's only)


def ownership_stream(office: str, run: str, rng: random.Random) -> list[Body]:
    """First contacts by visit or call, later visits and answered calls by other consultants (OWN-01/07), visits
    nobody can own (skipped), and on the commands topic 报备 of customers who never come (OWN-10…) and the
    month's targets. A customer's inputs are all on one topic, so the answers do not depend on how the processor
    interleaves its two input topics."""
    staff = [f"s-{run}-{n}" for n in range(5)]
    phones = iter(f"139{rng.randrange(10**8):08d}" for _ in range(10_000))
    scripts: list[list[Callable[[datetime], Body]]] = []

    def visit(phone: str, by: str | None, **extra: Any) -> Callable[[datetime], Body]:
        visit_id = f"v-{uuid.uuid4().hex[:8]}"
        return lambda at: body(
            "VisitRegistered", "fd-1", at, visit_id=visit_id, customer_name="王先生", phone=phone,
            arrived_at=at.isoformat(), visit_type="NEW", first_visit_claimed=True, prior_contact_claimed=False,
            **({"received_by": by} if by else {}), **extra,
        )  # fmt: skip

    def logged(phone: str, by: str) -> Callable[[datetime], Body]:
        call_id = f"c-{uuid.uuid4().hex[:8]}"
        return lambda at: body("CallLogged", by, at, call_id=call_id, staff_id=by, phone=phone,
                               caller_class="GENUINE_CUSTOMER", visit_invited=True)  # fmt: skip

    def answered(phone: str, by: str) -> Callable[[datetime], Body]:
        call_id = f"c-{uuid.uuid4().hex[:8]}"
        return lambda at: body("CallReceived", "pbx-1", at, call_id=call_id, caller_number=phone,
                               ring_started_at=at.isoformat(), ring_count=2, answered_by=by,
                               answered_at=(at + timedelta(seconds=5)).isoformat())  # fmt: skip

    def command(command_type: str, actor: str, **payload: Any) -> Callable[[datetime], Body]:
        return lambda at: body("OwnershipCommandIssued", actor, at, command_type=command_type, **payload)

    for _ in range(24):
        phone, first = next(phones), rng.choice(staff)
        script = [visit(phone, first) if rng.random() < 0.7 else logged(phone, first)]
        for _ in range(rng.randint(0, 3)):
            other = rng.choice(staff)
            script.append(rng.choice([visit(phone, other), visit(phone, other, prior_consultant_named=first),
                                      answered(phone, other), logged(phone, other)]))  # fmt: skip
        scripts.append(script)
    scripts += [[visit("12345", staff[0])], [visit(next(phones), None)]]  # an invalid number; no receiver
    for n in range(6):
        phone = next(phones)
        channels = rng.sample(["ch-x", "ch-y", "ch-z"], rng.randint(1, 2))
        scripts.append([command("REPORT_CHANNEL_CUSTOMER", "ch-1", phone=phone, customer_name="李女士",
                                channel_id=channel, agent_id=f"ag-{n}") for channel in channels])  # fmt: skip
    month = datetime.now(UTC).strftime("%Y-%m")
    scripts += [[command("SET_SALES_TARGET", "mgr-1", staff_id=s, month=month,
                         target_amount_fen=rng.randrange(1, 5) * 100_000_000)] for s in staff]  # fmt: skip
    return interleave(scripts, rng, datetime.now(UTC) - timedelta(hours=2))


def frontdesk_stream(office: str, run: str, rng: random.Random) -> list[Body]:
    """One office's front desk in one partition: the 轮序表 published (and refused to a consultant), visits routed
    by rotation or received by a named consultant, posts left and stood, turns waived, receptions ended (some
    refused), calls answered on various rings, logged with blank fields (CALL-01/03, PEN-26) and answered by SMS."""
    staff = [f"s-{run}-{n}" for n in range(5)]
    supervisor = f"sup-{run}"
    visits: list[str] = []
    scripts: list[list[Callable[[datetime], Body]]] = []

    def rotation(actor: str, command_type: str, **payload: Any) -> Callable[[datetime], Body]:
        return lambda at: body("RotationCommandIssued", actor, at, command_type=command_type, **payload)

    def visit(by: str | None) -> Callable[[datetime], Body]:
        visit_id = f"v-{len(visits)}-{uuid.uuid4().hex[:6]}"
        visits.append(visit_id)
        blanks = rng.sample(["awareness_channel", "wanted_unit_type", "customer_name"], rng.randint(0, 2))
        phone = f"139{rng.randrange(10**8):08d}"
        return lambda at: body(
            "VisitRegistered", "fd-1", at, visit_id=visit_id, customer_name="客户", phone=phone,
            arrived_at=at.isoformat(), visit_type=rng.choice(["NEW", "NEW", "RETURN"]), first_visit_claimed=True,
            prior_contact_claimed=False, blank_fields=blanks, **({"received_by": by} if by else {}),
        )  # fmt: skip

    def call(n: int) -> list[Callable[[datetime], Body]]:
        call_id, phone, by = f"c-{n}-{uuid.uuid4().hex[:6]}", f"138{rng.randrange(10**8):08d}", rng.choice(staff)
        rings = rng.randint(1, 5)
        klass = rng.choice(["GENUINE_CUSTOMER", "GENUINE_CUSTOMER", "MARKET_RESEARCH"])
        blanks = rng.sample(["wanted_unit_type", "awareness_channel", "customer_name"], rng.randint(0, 2))
        steps = [
            lambda at: body("CallReceived", "pbx-1", at, call_id=call_id, caller_number=phone,
                            ring_started_at=at.isoformat(), ring_count=rings, answered_by=by,
                            answered_at=(at + timedelta(seconds=3 * rings)).isoformat()),
            lambda at: body("CallEnded", "pbx-1", at, call_id=call_id, ended_at=at.isoformat()),
            lambda at: body("CallLogged", by, at, call_id=call_id, staff_id=by, customer_name="李女士", phone=phone,
                            caller_class=klass, visit_invited=rng.random() < 0.5, blank_fields=blanks),
        ]  # fmt: skip
        if rng.random() < 0.6:
            steps.append(lambda at: body("SmsSent", by, at, staff_id=by, call_id=call_id, phone=phone,
                                         sent_at=at.isoformat()))  # fmt: skip
        return steps

    opening = [rotation(staff[0], "PUBLISH_QUEUE", ordered_staff=staff[:2]),  # §12: not a consultant's to publish
               rotation(supervisor, "PUBLISH_QUEUE", ordered_staff=staff)]  # fmt: skip
    for n in range(10):
        scripts.append(call(n))
    desk: list[Callable[[datetime], Body]] = []
    for _ in range(45):
        who = rng.choice(staff)
        step = rng.random()
        if step < 0.3:
            desk.append(visit(None if rng.random() < 0.7 else who))
        elif step < 0.55 and visits:
            desk.append(rotation(who, "END_RECEPTION", staff_id=who, visit_id=rng.choice(visits)))
        elif step < 0.7:
            desk.append(rotation(who, "LEAVE_POST", staff_id=who, busy=rng.random() < 0.5))
        elif step < 0.85:
            desk.append(rotation(who, "STAND_POST", staff_id=who))
        else:
            desk.append(rotation(who, "WAIVE_TURN", staff_id=who))
    scripts.append(desk)
    start = datetime.now(UTC)  # CALL-04 deadlines 5 minutes ahead: no SMS timer fires while the test runs
    return [step(start) for step in opening] + interleave(scripts, rng, start + timedelta(seconds=2))


def staff_stream(office: str, run: str, rng: random.Random) -> list[Body]:
    """A morning of one office's attendance and complaints: clock-ins on time and late (ATT-02/03), leave asked and
    approved by the 经理 or a 主管 who may not (ATT-08), sanctions recorded by a 经理 or a consultant who may not
    (§12, PEN-07), premises left with and without approval (ATT-14), rest days (ATT-04), a garbled request, and
    complaints classified, resolved, called back and closed (CMP-*), some steps by the wrong role. Everything
    happens today, so no timer falls due while the test runs."""
    now = datetime.now(UTC)
    today = local_day(now, "Asia/Shanghai")

    def local(day: date, hhmm: str) -> datetime:
        hours, minutes = (int(part) for part in hhmm.split(":"))
        return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=UTC) - SHANGHAI

    def ev(event_type: str, actor: str, **payload: Any) -> Callable[[datetime], Body]:
        return lambda at: body(event_type, actor, at, **payload)

    manager, supervisor, consultant = f"mgr-{run}", f"sup-{run}", f"s-{run}-x"
    scripts: list[list[Callable[[datetime], Body]]] = []
    for n in range(12):
        person = f"s-{run}-{n}"
        arrived = local(today, "08:00") + timedelta(minutes=rng.randint(0, 60))
        script = [ev("ClockedIn", person, staff_id=person, clocked_at=arrived.isoformat())]
        if rng.random() < 0.6:
            request, day = f"r-{n}", (today + timedelta(days=rng.randint(1, 4))).isoformat()
            script.append(ev("LeaveRequested", person, staff_id=person, request_id=request, leave_type="PERSONAL",
                             days=[day], addressed_to_role="SALES_MANAGER"))  # fmt: skip
            approver = manager if rng.random() < 0.7 else supervisor
            script.append(ev("LeaveApproved", approver, staff_id=person, request_id=request, handover_done=True))
        if rng.random() < 0.4:
            recorder = manager if rng.random() < 0.7 else consultant
            script.append(ev("StaffSanctionRecorded", recorder, staff_id=person, rule_id="PEN-07",
                             sanction_id="PEN-07", kind="FINE", day=today.isoformat(), amount_yuan=200,
                             detail="上班时间打瞌睡"))  # fmt: skip
        if rng.random() < 0.4:
            if rng.random() < 0.5:
                script.append(ev("PremisesExitApproved", manager, staff_id=person, day=today.isoformat()))
            left = local(today, "14:00") + timedelta(minutes=n)
            script.append(ev("PremisesLeft", person, staff_id=person, left_at=left.isoformat()))
        if rng.random() < 0.3:
            script.append(ev("RestDayScheduled", manager, staff_id=person,
                             day=(today + timedelta(days=rng.randint(1, 6))).isoformat()))  # fmt: skip
        if rng.random() < 0.15:
            script.append(ev("LeaveRequested", person, staff_id=person, request_id=f"r-bad-{n}",
                             leave_type="PERSONAL", days=["not-a-day"], addressed_to_role="SALES_MANAGER"))  # fmt: skip
        script.append(
            ev(
                "ClockedOut",
                person,
                staff_id=person,
                clocked_at=(local(today, "17:00") + timedelta(minutes=rng.randint(0, 90))).isoformat(),
            )
        )
        scripts.append(script)
    for n in range(6):
        case = f"k-{run}-{n}"
        script = [ev("ComplaintFiled", "fd-1", complaint_id=case, complainant_type="CUSTOMER",
                     subject_staff=f"s-{run}-{n}", channel="VISIT", category="ATTITUDE", severity="MEDIUM",
                     description="态度不好")]  # fmt: skip
        classifier = manager if rng.random() < 0.8 else consultant
        script.append(ev("ComplaintStepRecorded", classifier, complaint_id=case, step="CLASSIFY",
                         valid=rng.random() < 0.8))  # fmt: skip
        if rng.random() < 0.7:
            script.append(ev("ComplaintResolved", manager, complaint_id=case, resolution="道歉", resolved_by=manager,
                             substantiated=rng.random() < 0.5))  # fmt: skip
            script.append(ev("ComplaintStepRecorded", "cs-1", complaint_id=case, step="CALLBACK"))
            script.append(ev("ComplaintStepRecorded", manager, complaint_id=case, step="CLOSE"))
        scripts.append(script)
    return interleave(scripts, rng, now - timedelta(minutes=5))


# ---------------------------------------------------------------------------------------------------------------
# The processors


@dataclass(frozen=True)
class Spec:
    name: str  # `anchang <name> run`, ANCHANG_<NAME>_…
    processor: str  # its name in processed_events / projection_offsets
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    stream: Callable[[str, str, random.Random], list[Body]]
    build: Callable[[Settings], ProjectionProcessor] | None  # for the run without crashes, if one is made

    def __str__(self) -> str:
        return self.name


OWNERSHIP = Spec("ownership", attribution.PROCESSOR_NAME, attribution.INPUT_TOPICS,
                 (attribution.FACTS_TOPIC,), ownership_stream, build_attribution_processor)  # fmt: skip
FRONTDESK = Spec("frontdesk", frontdesk.PROCESSOR_NAME, (FRONTDESK_TOPIC, frontdesk.UNITS_TOPIC),
                 ("anchang.frontdesk.facts", DISCIPLINE_TOPIC), frontdesk_stream,
                 build_frontdesk_processor)  # fmt: skip
STAFF = Spec("staff", staff.PROCESSOR_NAME, staff.INPUT_TOPICS, ("anchang.staff.facts", DISCIPLINE_TOPIC),
             staff_stream, None)  # fmt: skip


class InputStream(threading.Thread):
    """Publishes the planned inputs at a steady pace, as the API would; ``published`` are their ids."""

    def __init__(self, publisher: DirectPublisher, office: str, planned: list[Body]) -> None:
        super().__init__(name="input-stream", daemon=True)
        self.publisher, self.office, self.planned = publisher, office, planned
        self.published: list[str] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            start = time.monotonic()
            for index, planned in enumerate(self.planned):
                if self.halt.wait(max(0.0, start + index * PACE - time.monotonic())):
                    return
                self.published.append(self.publisher.publish(planned, office_id=self.office))
                self.publisher.producer.poll(0)
            self.publisher.flush()
        except BaseException as error:  # re-raised by the test
            self.error = error


@dataclass
class Processes:
    """Starts `anchang <name> run` processes, all with one group and one database; stops what is left."""

    spec: Spec
    settings: Settings
    run_dir: Path
    group: str = field(default_factory=lambda: f"crash-{uuid.uuid4().hex[:8]}")
    metrics_port: int = field(default_factory=free_port)
    started: list[ManagedProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        prefix = f"ANCHANG_{self.spec.name.upper()}"
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
            "DATABASE_URL": self.settings.resolved_database_url,
            "ANCHANG_DATA_DIR": str(self.settings.data_dir),
            f"{prefix}_METRICS_PORT": str(self.metrics_port),
            f"{prefix}_PROCESSOR_GROUP": self.group,
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        }

    def start(self) -> ManagedProcess:
        ready = metric_positive(f"http://127.0.0.1:{self.metrics_port}/", "anchang_consumer_assigned_partitions")
        process = ManagedProcess(self.spec.name, anchang_command(self.spec.name, "run"), self.run_dir, ready,
                                 env=self.env())  # fmt: skip
        self.started.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.popen is not None:
                process.stop()


def topic_ends(broker: str, topics: tuple[str, ...]) -> Ends:
    """The next offset of every partition of ``topics`` that holds records."""
    ends: Ends = {}
    for message in read_log(broker, topics):
        key = (message.topic() or "", message.partition() or 0)
        ends[key] = max(ends.get(key, 0), (message.offset() or 0) + 1)
    return ends


def prepare(url: str, processor: str, ends: dict[tuple[str, int], int]) -> Engine:
    """A database set up as if ``processor`` had been deciding all along: it resumes after the records already on
    its input topics (other tests' offices), so it decides this test's stream only."""
    migrate(url)
    engine = make_engine(url)
    if ends:
        with engine.begin() as connection:
            connection.execute(
                projection_offsets.insert(),
                [{"processor": processor, "topic": topic, "partition": partition, "next_offset": end,
                  "updated_at": datetime.now(UTC)} for (topic, partition), end in ends.items()],
            )  # fmt: skip
    return engine


@contextmanager
def second_database(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the same kind as the test's, for the run without crashes."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    base, schema = url.split("?", 1)[0], f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ---------------------------------------------------------------------------------------------------------------
# Reading what happened


@dataclass
class World:
    spec: Spec
    office: str
    run: str
    engine: Engine
    broker: str
    codec: EventCodec
    start: Ends  # where the input and output topics ended when the test began
    published: list[str] = field(default_factory=list)

    def claimed(self) -> set[str]:
        """The inputs of this test the processor has committed."""
        ids = sorted(set(self.published))
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 500):
                found.update(
                    connection.execute(
                        select(processed_events.c.event_id).where(
                            processed_events.c.processor == self.spec.processor,
                            processed_events.c.event_id.in_(ids[start : start + 500]),
                        )
                    ).scalars()
                )
        return found

    def mine(self, topic: str, message: Any) -> bool:
        key = (message.key() or b"").decode()
        if topic in (DISCIPLINE_TOPIC, STAFF_TOPIC, COMPLAINTS_TOPIC):
            return self.run in key  # keyed by staff member or case: this run's ids carry the run id
        if topic == attribution.FACTS_TOPIC:
            return key.startswith(f"{self.office}:")  # keyed by customer key, "<project>:<hex>"
        return key == self.office  # keyed by office

    def log(self, topics: tuple[str, ...]) -> dict[str, list[Decoded]]:
        """This office's records of ``topics`` written since the test began, decoded, per topic in log order
        (per partition, partitions in order)."""
        out: dict[str, list[Decoded]] = {topic: [] for topic in topics}
        for message in read_log(self.broker, topics, self.start):
            topic = message.topic() or ""
            if self.mine(topic, message):
                decoded = self.codec.decode(message.value())
                if decoded[1]["envelope"]["office_id"] == self.office:
                    out[topic].append(decoded)
        return out

    def uncommitted(self) -> Counter[str]:
        """Ids of the facts on the output topics caused by an input the processor has not committed, with the number
        of times each is there."""
        inputs, claimed = set(self.published), self.claimed()
        found: Counter[str] = Counter()
        for records in self.log(self.spec.outputs).values():
            for _, record in records:
                cause = record["envelope"]["causation_id"]
                if cause is not None and str(cause) in inputs and str(cause) not in claimed:
                    found[str(record["envelope"]["event_id"])] += 1
        return found


@dataclass(frozen=True)
class Crash:
    published: int
    decided: int
    uncommitted: Counter[str]

    def __str__(self) -> str:
        left = self.uncommitted.total()
        return f"published {self.published}, decided {self.decided}, {left} fact(s) produced but not committed"


def without_recorded_at(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "envelope": {**record["envelope"], "recorded_at": None}}


def normalized(codec: EventCodec, event_type: str, record: dict[str, Any], topic: str) -> dict[str, Any]:
    """``record`` as it reads back from the log (Avro round trip), without its recorded_at."""
    stamped = {**record, "envelope": {**record["envelope"], "recorded_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    return without_recorded_at(codec.decode(codec.encode(event_type, stamped, topic))[1])


def first_copies(records: list[Decoded], what: str) -> dict[str, Decoded]:
    """The records by event id, in log order of their first copy; each later copy must be the same fact (only its
    recorded_at, when it was produced, may differ)."""
    first: dict[str, Decoded] = {}
    for event_type, record in records:
        event_id = str(record["envelope"]["event_id"])
        if event_id in first:
            assert (event_type, without_recorded_at(record)) == (
                first[event_id][0], without_recorded_at(first[event_id][1]),
            ), f"{what}: two different facts with id {event_id}"  # fmt: skip
        else:
            first[event_id] = (event_type, record)
    return first


VOLATILE = {"decided_at", "updated_at", "created_at", "recorded_at", "timer_sent_at", "expiry_sent_at", "seq",
            "sent_at"}  # fmt: skip


def office_rows(engine: Engine, table: Table, office: str, drop: set[str] = VOLATILE) -> list[dict[str, Any]]:
    """The office's rows of ``table`` without the columns that say when (not what), in a stable order."""
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.office_id == office)).all()
    cleaned = [
        {k: stored_utc(v) if isinstance(v, datetime) else v for k, v in row._mapping.items() if k not in drop}
        for row in rows
    ]
    return sorted(cleaned, key=repr)


def same_rows(crashed: list[dict[str, Any]], reference: list[dict[str, Any]], what: str) -> None:
    """Equal rows; if not, name the first row and the columns that differ."""
    if crashed == reference:
        return
    for ours, theirs in zip(crashed, reference, strict=False):
        if ours != theirs:
            differ = {
                k: (ours.get(k), theirs.get(k)) for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)
            }
            raise AssertionError(f"{what}: {len(crashed)} vs {len(reference)} rows; first difference {differ}")
    raise AssertionError(f"{what}: {len(crashed)} rows after crashes, {len(reference)} without")


def reference_run(world: World, settings: Settings, url: str, ends: dict[tuple[str, int], int]) -> Engine:
    """The same input log decided by an in-process processor without crashes, on a fresh database."""
    assert world.spec.build is not None
    engine = prepare(url, world.spec.processor, ends)
    # As the processes are configured (a copy of ``settings`` would keep its cached database URL).
    reference = Settings(KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
                         SCHEMA_REGISTRY_URL=settings.schema_registry_url, DATABASE_URL=url,
                         ANCHANG_DATA_DIR=settings.data_dir)  # fmt: skip
    processor = world.spec.build(reference)
    try:
        processor.run_until_caught_up()
    finally:
        processor.engine.dispose()
    return engine


# ---------------------------------------------------------------------------------------------------------------
# Per-processor checks: (a) one answer per input, (b) log = SQL, (d) the read side of a run without crashes.
# (c), a fact twice on the log is the same fact, is checked by ``first_copies`` wherever the log is read.


def check_ownership(w: World, settings: Settings, reference: Engine | None) -> str:
    with w.engine.connect() as connection:
        decisions = connection.execute(
            select(ownership_decisions).where(ownership_decisions.c.office_id == w.office)
        ).all()
        stored = connection.execute(
            select(ownership_facts).where(ownership_facts.c.office_id == w.office).order_by(ownership_facts.c.seq)
        ).all()
    # (a) exactly one answer per input
    assert Counter(row.input_id for row in decisions) == Counter(w.published)
    # (b) the facts on anchang.ownership, copies dropped, are the facts in SQL, per customer in the same order,
    # with the same content (the log's phones masked), and exactly those the answers name.
    on_log = first_copies(w.log((attribution.FACTS_TOPIC,))[attribution.FACTS_TOPIC], "anchang.ownership")
    log_order: dict[str, list[str]] = defaultdict(list)
    for event_id, (_, record) in on_log.items():
        log_order[record["customer_key"]].append(event_id)
    sql_order: dict[str, list[str]] = defaultdict(list)
    for row in stored:
        sql_order[row.customer_key].append(row.event_id)
        event_type, record = ownership_record(json_to_fact(row.event_type, row.body), event_id=row.event_id,
                                              office_id=w.office, recorded_at=datetime.now(UTC))  # fmt: skip
        assert (event_type, normalized(w.codec, event_type, record, attribution.FACTS_TOPIC)) == (
            on_log[row.event_id][0], without_recorded_at(on_log[row.event_id][1]),
        ), row.event_id  # fmt: skip
    assert dict(log_order) == dict(sql_order)
    named = [fact_id for row in decisions for fact_id in row.fact_event_ids]
    assert sorted(named) == sorted(on_log)
    outcomes = Counter(row.outcome for row in decisions)
    assert outcomes["accepted"] and outcomes["skipped"], outcomes
    # (d) the read side of a run without crashes
    if reference is not None:
        for table in (ownership_decisions, ownership_facts, ownership_customers, customer_owners, channel_reports,
                      sales_targets, sales_performance):  # fmt: skip
            same_rows(office_rows(w.engine, table, w.office), office_rows(reference, table, w.office), table.name)
    owners = office_rows(w.engine, customer_owners, w.office)
    assert owners, "first contacts make owners"
    return f"{len(on_log)} facts, outcomes {dict(outcomes)}, {len(owners)} owners"


def expected_frontdesk_penalties(w: World, settings: Settings, inputs: list[Decoded]) -> dict[str, Penalty]:
    """What CALL-01/03 and VIS-02 (PEN-26) make of the committed inputs, by the pure rules: the visit's receiver is
    the committed one (routing is checked against the run without crashes)."""
    policy = staff_policies_from_dir(settings.policy_dir)(w.office)
    with w.engine.connect() as connection:
        receivers = dict(
            connection.execute(
                select(frontdesk_visits.c.event_id, frontdesk_visits.c.receiver)
                .where(frontdesk_visits.c.office_id == w.office)
            ).all()
        )  # fmt: skip
    penalties: list[Penalty] = []
    for event_type, rec in inputs:
        event_id = str(rec["envelope"]["event_id"])
        if event_type == "CallReceived":
            call = c.Call(event_id, rec["call_id"], rec["ring_started_at"], rec.get("answered_at"),
                          rec.get("ring_count"), rec.get("answered_by"))  # fmt: skip
            penalties += c.check_answer(call, policy).penalties
        elif event_type == "CallLogged":
            log = c.CallLog(event_id, rec["call_id"], rec["staff_id"], rec["envelope"]["occurred_at"],
                            c.CallerClass(rec["caller_class"]), tuple(rec.get("blank_fields") or ()),
                            rec["visit_invited"])  # fmt: skip
            penalties += c.call_log_fines(log, policy)
        elif event_type == "VisitRegistered" and receivers.get(event_id):
            penalties += register_fines(receivers[event_id], rec.get("blank_fields") or (),
                                        rec["envelope"]["recorded_at"], (event_id,), policy)  # fmt: skip
    return {penalty_id(p): p for p in penalties}


def check_frontdesk(w: World, settings: Settings, reference: Engine | None) -> str:
    inputs = list(first_copies(w.log((FRONTDESK_TOPIC,))[FRONTDESK_TOPIC], FRONTDESK_TOPIC).values())
    assert [str(rec["envelope"]["event_id"]) for _, rec in inputs] == w.published
    with w.engine.connect() as connection:
        stored = connection.execute(
            select(frontdesk_facts).where(frontdesk_facts.c.office_id == w.office).order_by(frontdesk_facts.c.seq)
        ).all()
    visits = office_rows(w.engine, frontdesk_visits, w.office)
    calls = office_rows(w.engine, frontdesk_calls, w.office)
    sms = office_rows(w.engine, frontdesk_sms, w.office)
    # (a) one visit row per visit, one call row per call, one SMS row per SMS, facts for every rotation command
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event_type, rec in inputs:
        by_type[event_type].append(rec)
    assert Counter(row["event_id"] for row in visits) == Counter(
        str(rec["envelope"]["event_id"]) for rec in by_type["VisitRegistered"]
    )
    assert sorted(row["call_id"] for row in calls) == sorted(rec["call_id"] for rec in by_type["CallReceived"])
    assert sorted(row["event_id"] for row in sms) == sorted(
        str(rec["envelope"]["event_id"]) for rec in by_type["SmsSent"]
    )
    causes = Counter(row.caused_by for row in stored)
    for rec in by_type["RotationCommandIssued"] + by_type["VisitRegistered"]:
        assert causes[str(rec["envelope"]["event_id"])] >= 1, rec
    # (b) the facts on anchang.frontdesk.facts, copies dropped, are frontdesk_facts, in order and content
    logged = w.log(FRONTDESK.outputs)
    on_log = first_copies(logged["anchang.frontdesk.facts"], "anchang.frontdesk.facts")
    assert list(on_log) == [row.event_id for row in stored]
    for row in stored:
        event_type, record = w.codec.decode(row.avro)
        assert (event_type, without_recorded_at(record)) == (
            on_log[row.event_id][0], without_recorded_at(on_log[row.event_id][1]),
        ), row.event_id  # fmt: skip
    # ... and the sanctions on anchang.discipline exactly those the pure rules give, the same each time
    penalties = first_copies(logged[DISCIPLINE_TOPIC], DISCIPLINE_TOPIC)
    expected = expected_frontdesk_penalties(w, settings, inputs)
    assert sorted(penalties) == sorted(expected)
    for penalty_key, penalty in expected.items():
        record = penalty_to_record(penalty, office_id=w.office, processor_id=frontdesk.PROCESSOR_ID,
                                   recorded_at=datetime.now(UTC))  # fmt: skip
        assert normalized(w.codec, "PenaltyIssued", record, DISCIPLINE_TOPIC) == without_recorded_at(
            penalties[penalty_key][1]
        ), penalty_key
    # (d) the read side of a run without crashes
    if reference is not None:
        for table in (frontdesk_facts, frontdesk_visits, frontdesk_calls, frontdesk_sms, frontdesk_tally):
            drop = VOLATILE | ({"avro"} if table is frontdesk_facts else set())
            same_rows(office_rows(w.engine, table, w.office, drop), office_rows(reference, table, w.office, drop),
                      table.name)  # fmt: skip
        with reference.connect() as connection:
            again = connection.execute(
                select(frontdesk_facts.c.event_id, frontdesk_facts.c.avro)
                .where(frontdesk_facts.c.office_id == w.office)
                .order_by(frontdesk_facts.c.seq)
            ).all()  # fmt: skip
        assert [(event_id, without_recorded_at(w.codec.decode(avro)[1])) for event_id, avro in again] == [
            (row.event_id, without_recorded_at(w.codec.decode(row.avro)[1])) for row in stored
        ]
    kinds = Counter(event_type for event_type, _ in on_log.values())
    assert kinds["RotationCommandRejected"] and kinds["ReceptionStarted"], kinds
    fines = Counter[str]()
    for _, record in penalties.values():
        fines[record["staff_id"]] += record["amount_yuan"] or 0
    return f"{len(on_log)} facts {dict(kinds)}, {len(penalties)} penalties, fines {dict(fines)}"


def check_staff(w: World, settings: Settings, reference: Engine | None) -> str:
    """The staff processor keeps states, not facts: its log is checked against the pure step folded over the input
    log, and so are the states and timers it keeps."""
    policy = staff_policies_from_dir(settings.policy_dir)(w.office)
    logged_inputs = w.log((STAFF_TOPIC, COMPLAINTS_TOPIC))
    people: dict[tuple[str, str], StaffState] = {}
    cases: dict[tuple[str, str], ComplaintState] = {}
    timers: dict[tuple[str, str], str | None] = {}
    expected_facts: dict[str, dict[str, Any]] = {}
    expected_penalties: dict[str, dict[str, Any]] = {}
    seen: list[str] = []
    stamp = datetime.now(UTC)
    for topic, records in logged_inputs.items():
        for event_type, record in first_copies(records, topic).values():
            event_id = str(record["envelope"]["event_id"])
            seen.append(event_id)
            if topic == STAFF_TOPIC:
                key = (w.office, str(record["staff_id"]))
                state = people.get(key) or StaffState(staff_id=key[1])
                people[key], outcome = sd.decide_staff(state, record_to_staff_input(event_type, record), policy, {})
            else:
                key = (w.office, str(record["complaint_id"]))
                case, outcome = sd.decide_complaint(cases.get(key), record_to_complaint_input(event_type, record),
                                                    policy)  # fmt: skip
                if case is not None:
                    cases[key] = case
            for index, fact in enumerate(outcome.facts):
                fact_id = fact_event_id(event_id, index)
                record_out = staff_record(fact, event_id=fact_id, office_id=w.office, cause_id=event_id,
                                          processor_id=staff.PROCESSOR_ID, recorded_at=stamp)  # fmt: skip
                expected_facts[fact_id] = normalized(w.codec, fact.event_type, record_out, "anchang.staff.facts")
            for penalty in outcome.penalties:
                record_out = penalty_to_record(penalty, office_id=w.office, processor_id=staff.PROCESSOR_ID,
                                               recorded_at=stamp)  # fmt: skip
                expected_penalties[penalty_id(penalty)] = normalized(w.codec, "PenaltyIssued", record_out,
                                                                     DISCIPLINE_TOPIC)  # fmt: skip
            for slot in outcome.cleared:
                timers[(w.office, slot)] = None
            for timer in outcome.timers:
                timers[(w.office, timer.slot)] = timer_event_id(timer, w.office)
    # (a) every input is on the log once (no timer fell due) and was committed once (processed_events' key)
    assert sorted(seen) == sorted(w.published)
    assert w.claimed() == set(w.published)
    # (b) the facts and sanctions on the log, copies dropped, are exactly what the pure step makes of the inputs
    logged = w.log(STAFF.outputs)
    facts = first_copies(logged["anchang.staff.facts"], "anchang.staff.facts")
    penalties = first_copies(logged[DISCIPLINE_TOPIC], DISCIPLINE_TOPIC)
    assert {i: without_recorded_at(r) for i, (_, r) in facts.items()} == expected_facts
    assert {i: without_recorded_at(r) for i, (_, r) in penalties.items()} == expected_penalties
    # (d) the states and timers in SQL are those of the pure step (a run without crashes)
    with w.engine.connect() as connection:
        stored_people = {
            (row.office_id, row.staff_id): StaffState.model_validate(row.state)
            for row in connection.execute(select(staff_states).where(staff_states.c.office_id == w.office))
        }
        stored_cases = {
            (row.office_id, row.complaint_id): ComplaintState.model_validate(row.state)
            for row in connection.execute(select(complaint_states).where(complaint_states.c.office_id == w.office))
        }
        stored_timers = {
            (row.office_id, row.slot): row.timer_id
            for row in connection.execute(select(staff_timers).where(staff_timers.c.office_id == w.office))
        }
    assert stored_people == people
    assert stored_cases == cases
    assert stored_timers == {key: timer for key, timer in timers.items() if timer is not None}
    fines = Counter[str]()
    for record in expected_penalties.values():
        fines[record["staff_id"]] += record["amount_yuan"] or 0
    kinds = Counter(record["envelope"]["event_type"] for record in expected_facts.values())
    assert expected_penalties and kinds["StaffInputRefused"], (kinds, fines)
    return f"{len(facts)} facts {dict(kinds)}, {len(penalties)} penalties, fines {dict(fines)}"


CHECKS: dict[str, Callable[[World, Settings, Engine | None], str]] = {
    "ownership": check_ownership, "frontdesk": check_frontdesk, "staff": check_staff,
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The test


def kill_twice(world: World, processes: Processes, stream: InputStream) -> list[Crash]:
    """Run the stream through the processor, killing it a third into the stream and then in the window between a
    batch's facts going to Kafka and its commit; return when a third process has committed every input."""
    total = len(stream.planned)

    def crash(process: ManagedProcess, left_before: Counter[str] | None = None) -> Crash:
        published = len(stream.published)
        process.kill()
        # Dead now: what it committed is final, and so is what it produced without committing (facts a process
        # before it left uncommitted may be among them: deciding the same inputs again gives the same ids).
        return Crash(published, len(world.claimed()), world.uncommitted() - (left_before or Counter()))

    try:
        process = processes.start()
        stream.start()
        wait_for(lambda: len(stream.published) >= total // 3 and world.claimed(), timeout=30,
                 what="a third of the stream")  # fmt: skip
        crashes = [crash(process)]
        with stalled_after_producing(world.engine):
            process = processes.start()
            try:
                wait_for(lambda: world.uncommitted() - crashes[0].uncommitted, timeout=30,
                         what="facts produced but not committed", interval=0.2)  # fmt: skip
            finally:
                crashes.append(crash(process, crashes[0].uncommitted))
        processes.start()
        stream.join(timeout=60)
        assert not stream.is_alive()
        if stream.error is not None:
            raise stream.error
        wait_for(lambda: len(world.claimed()) >= total, timeout=60, what="every input decided", interval=0.2)
    finally:
        stream.halt.set()
        stream.join(timeout=10)
        processes.stop_all()
    return crashes


@pytest.mark.parametrize("spec", [OWNERSHIP, FRONTDESK, STAFF], ids=str)
def test_kill_9_mid_stream_loses_no_input_and_log_equals_sql(
    spec: Spec,
    settings: Settings,
    broker: str,
    codec: EventCodec,
    catalogue: Catalogue,
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)  # the run id reproduces the stream
    office = f"crash-{spec.name}-{run}"
    planned = spec.stream(office, run, rng)
    total = len(planned)
    start = topic_ends(broker, spec.inputs + spec.outputs)
    ends = {(topic, partition): end for (topic, partition), end in start.items() if topic in spec.inputs}
    engine = prepare(settings.resolved_database_url, spec.processor, ends)
    try:
        stream = InputStream(DirectPublisher(settings.kafka_client_config(), codec, catalogue), office, planned)
        world = World(spec, office, run, engine, broker, codec, start, stream.published)
        crashes = kill_twice(world, Processes(spec, settings, tmp_path / "run"), stream)

        assert len(stream.published) == len(set(stream.published)) == total
        # The first kill hit the middle of the stream; the second a batch whose facts were on the log but not
        # committed (the restarted process committed nothing).
        assert 0 < crashes[0].decided < total and crashes[0].published < total, str(crashes[0])
        assert crashes[1].decided == crashes[0].decided and crashes[1].uncommitted, str(crashes[1])
        # What the crashes left uncommitted was decided again with the same ids: each such fact is on the log twice.
        left = set(crashes[0].uncommitted) | set(crashes[1].uncommitted)
        copies = Counter(
            str(record["envelope"]["event_id"]) for records in world.log(spec.outputs).values() for _, record in records
        )
        assert all(copies[event_id] >= 2 for event_id in left), {e: copies[e] for e in left if copies[e] < 2}

        if spec.build is None:
            summary = CHECKS[spec.name](world, settings, None)
        else:
            with second_database(settings, tmp_path) as url:
                reference = reference_run(world, settings, url, ends)
                try:
                    summary = CHECKS[spec.name](world, settings, reference)
                finally:
                    reference.dispose()
    finally:
        engine.dispose()
    print(f"\n{spec} run {run}: {total} inputs; crash 1: {crashes[0]}; crash 2: {crashes[1]}; {summary}")
