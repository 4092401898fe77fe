"""The ``anchang`` command line."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.core.config import Settings
from services.sales.inventory import units_app

app = typer.Typer(help="Anchang (案场): event-sourced operations for real-estate sales offices.", no_args_is_help=True)
broker_app = typer.Typer(help="The embedded Kafka broker (tansu), for local use and tests.", no_args_is_help=True)
registry_app = typer.Typer(help="The embedded schema registry.", no_args_is_help=True)
api_app = typer.Typer(help="The ingestion HTTP API.", no_args_is_help=True)
projections_app = typer.Typer(help="Projection processors (events → SQL read models).", no_args_is_help=True)
sales_app = typer.Typer(
    help="The 销控 decision processor (units: locks, orders, payments, refunds).", no_args_is_help=True
)
ownership_app = typer.Typer(
    help="The attribution processor (customer ownership, channel 报备, commissions).", no_args_is_help=True
)
frontdesk_app = typer.Typer(help="The front-desk processor (visits, calls, the rotation queue).", no_args_is_help=True)
staff_app = typer.Typer(help="The staff processor (attendance, leave, complaints, discipline).", no_args_is_help=True)
keys_app = typer.Typer(help="Office API keys.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics from the topic catalogue.", no_args_is_help=True)
db_app = typer.Typer(help="The projection database.", no_args_is_help=True)
deadletters_app = typer.Typer(
    help="The dead-letter topic: list what failed and why; replay records once the cause is fixed.",
    no_args_is_help=True,
)
for sub, name in [
    (broker_app, "broker"),
    (registry_app, "registry"),
    (api_app, "api"),
    (projections_app, "projections"),
    (keys_app, "keys"),
    (topics_app, "topics"),
    (db_app, "db"),
    (sales_app, "sales"),
    (ownership_app, "ownership"),
    (frontdesk_app, "frontdesk"),
    (staff_app, "staff"),
    (deadletters_app, "deadletters"),
]:
    app.add_typer(sub, name=name)
app.add_typer(units_app, name="units")

console = Console(stderr=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


# ---------------------------------------------------------------- the main job


@app.command()
def up() -> None:
    """Run everything: tansu on SeaweedFS, schema registry, API, projector and the four decision processors
    (销控, attribution, front desk, staff). Ctrl-C stops it all."""
    from services.stack import run_stack

    _logging()
    raise typer.Exit(run_stack(Settings()))


# ---------------------------------------------------------------- broker


def _broker_processes(settings: Settings, engine: str) -> list[Any]:
    from deploy.seaweed import SeaweedConfig, seaweed_process
    from deploy.tansu import TansuConfig, tansu_process

    run_dir = settings.data_dir / "run"
    if engine == "memory":
        return [tansu_process(TansuConfig(settings.broker_port, run_dir))]
    seaweed = SeaweedConfig(settings.data_dir / "seaweed", run_dir, settings.seaweed_base_port)
    return [seaweed_process(seaweed), tansu_process(TansuConfig(settings.broker_port, run_dir, seaweed))]


EngineOption = Annotated[str, typer.Option(help="memory (nothing survives a stop) or s3 (durable, on SeaweedFS).")]


@broker_app.command("start")
def broker_start(engine: EngineOption = "s3") -> None:
    """Start the broker in the background (PID files and logs in $ANCHANG_DATA_DIR/run) and create topics."""
    from deploy.topics import ensure_topics
    from services.core.catalog import load_catalogue

    settings = Settings()
    for process in _broker_processes(settings, engine):
        process.start(detach=True)
        console.print(f"{process.name} started (PID {process.running_pid()}, log {process.log_file})")
    config = {"bootstrap.servers": f"127.0.0.1:{settings.broker_port}"}
    created = ensure_topics(config, load_catalogue(), settings.topic_replication_factor)
    console.print(f"broker ready at 127.0.0.1:{settings.broker_port}; topics created: {', '.join(created) or 'none'}")


@broker_app.command("stop")
def broker_stop(engine: EngineOption = "s3") -> None:
    """Stop a broker started with ``broker start``."""
    for process in reversed(_broker_processes(Settings(), engine)):
        process.stop()
        console.print(f"{process.name} stopped")


@broker_app.command("status")
def broker_status(engine: EngineOption = "s3") -> None:
    """Show whether the broker processes run; exit 1 if any does not."""
    from deploy.tansu import broker_answers

    settings = Settings()
    down = 0
    for process in _broker_processes(settings, engine):
        pid = process.running_pid()
        console.print(f"{process.name}: " + (f"running (PID {pid})" if pid else "stopped"))
        down += pid is None
    answers = broker_answers(f"127.0.0.1:{settings.broker_port}")
    console.print(f"Kafka API on 127.0.0.1:{settings.broker_port}: {'answers' if answers else 'no answer'}")
    raise typer.Exit(1 if down or not answers else 0)


# ---------------------------------------------------------------- services


@registry_app.command("serve")
def registry_serve() -> None:
    """Serve the Confluent-compatible schema registry (schemas kept in $ANCHANG_DATA_DIR/registry.db)."""
    from services.registry.app import serve

    settings = Settings()
    serve(settings.registry_host, settings.registry_port, settings.data_dir / "registry.db")


@api_app.command("serve")
def api_serve() -> None:
    """Serve the ingestion API (OpenAPI at /docs, metrics at /metrics)."""
    from services.ingest.app import serve

    serve(Settings())


@projections_app.command("run")
def projections_run() -> None:
    """Run the projection processors until SIGTERM/Ctrl-C (metrics on $ANCHANG_PROJECTOR_METRICS_PORT)."""
    from projections.service import run

    settings = Settings()
    _run_until_signalled(settings.projector_metrics_port, lambda stop: run(settings, stop))


def _run_until_signalled(metrics_port: int, run: Callable[[threading.Event], None]) -> None:
    import signal

    from prometheus_client import start_http_server

    _logging()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    start_http_server(metrics_port, addr="127.0.0.1")
    run(stop)


@sales_app.command("run")
def sales_run() -> None:
    """Run the 销控 decision processor and its payment-deadline timer until SIGTERM/Ctrl-C
    (metrics on $ANCHANG_SALES_METRICS_PORT)."""
    from services.sales.service import run

    settings = Settings()
    _run_until_signalled(settings.sales_metrics_port, lambda stop: run(settings, stop))


@ownership_app.command("run")
def ownership_run() -> None:
    """Run the attribution processor and its ownership-expiry timer until SIGTERM/Ctrl-C
    (metrics on $ANCHANG_OWNERSHIP_METRICS_PORT)."""
    from services.ownership.service import build_attribution_processor

    settings = Settings()
    _run_until_signalled(settings.ownership_metrics_port, build_attribution_processor(settings).run)


@frontdesk_app.command("run")
def frontdesk_run() -> None:
    """Run the front-desk processor and its SMS timer until SIGTERM/Ctrl-C
    (metrics on $ANCHANG_FRONTDESK_METRICS_PORT)."""
    from services.staff.frontdesk_service import build_frontdesk_processor

    settings = Settings()
    _run_until_signalled(settings.frontdesk_metrics_port, build_frontdesk_processor(settings).run)


@staff_app.command("run")
def staff_run() -> None:
    """Run the staff processor and its timers (certificates, complaint SLAs, callbacks) until SIGTERM/Ctrl-C
    (metrics on $ANCHANG_STAFF_METRICS_PORT)."""
    from services.staff.staff_service import build_staff_processor

    settings = Settings()
    _run_until_signalled(settings.staff_metrics_port, build_staff_processor(settings).run)


@projections_app.command("rebuild")
def projections_rebuild() -> None:
    """Empty the projection tables and replay every topic from offset 0. Stop the projector first."""
    from projections.service import rebuild

    with _progress() as progress:
        task = progress.add_task("replaying", total=None)
        replayed = rebuild(Settings(), lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"rebuilt from {replayed} records")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (the processes also do this at start)."""
    from projections.db import migrate

    settings = Settings()
    migrate(settings.resolved_database_url)
    console.print(f"{settings.resolved_database_url}: up to date")


@keys_app.command("create")
def keys_create(office: str, label: Annotated[str, typer.Option(help="What the key is for.")] = "") -> None:
    """Create an API key for OFFICE and print it (only its hash is stored)."""
    from projections.db import make_engine, migrate
    from services.ingest.keys import create_key

    settings = Settings()
    migrate(settings.resolved_database_url)
    print(create_key(make_engine(settings.resolved_database_url), office, label or "cli", datetime.now(UTC)))


@keys_app.command("revoke")
def keys_revoke(office: str) -> None:
    """Revoke every active key of OFFICE."""
    from projections.db import make_engine
    from services.ingest.keys import revoke_keys

    settings = Settings()
    count = revoke_keys(make_engine(settings.resolved_database_url), office, datetime.now(UTC))
    console.print(f"revoked {count} key(s) of {office}")


@topics_app.command("create")
def topics_create() -> None:
    """Create every catalogue topic that does not exist yet."""
    from deploy.topics import ensure_topics
    from services.core.catalog import load_catalogue

    settings = Settings()
    created = ensure_topics(settings.kafka_client_config(), load_catalogue(), settings.topic_replication_factor)
    console.print(f"created: {', '.join(created) or 'none (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic catalogue: topics, partitions, keys and the event types on each."""
    from services.core.catalog import load_catalogue

    table = Table("topic", "partitions", "key", "event types")
    for topic in load_catalogue().topics.values():
        table.add_row(topic.name, str(topic.partitions), topic.key, ", ".join(topic.event_types) or "(dead letters)")
    Console().print(table)


ReasonOption = Annotated[str | None, typer.Option(help="Only this reason, e.g. processing_failed.")]
ProcessorOption = Annotated[str | None, typer.Option(help="Only letters from this processor, e.g. sales.")]
SourceTopicOption = Annotated[str | None, typer.Option(help="Only records from this topic.")]


def _dead_letters(reason: str | None, processor: str | None, source_topic: str | None) -> list[Any]:
    from services.core.catalog import load_catalogue
    from services.kafka.deadletter_log import matching, read_dead_letters

    settings = Settings()
    topic = load_catalogue().dead_letter_topic.name
    letters = read_dead_letters(settings.kafka_client_config(), topic)
    return matching(letters, reason=reason, processor=processor, source_topic=source_topic)


@deadletters_app.command("list")
def deadletters_list(
    reason: ReasonOption = None,
    processor: ProcessorOption = None,
    source_topic: SourceTopicOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
) -> None:
    """Print the dead letters (each source record once): where it came from, who failed on it and why."""
    letters = _dead_letters(reason, processor, source_topic)
    if as_json:
        for letter in letters:
            print(json.dumps({
                "dead_letter": f"{letter.partition}:{letter.offset}", "processor": letter.processor,
                "reason": letter.reason, "detail": letter.detail, "event_type": letter.event_type,
                "source": f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}",
            }, ensure_ascii=False))  # fmt: skip
        return
    table = Table("dead letter", "processor", "reason", "source", "event type", "detail")
    for letter in letters:
        source = f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"
        detail = letter.detail if len(letter.detail) <= 80 else letter.detail[:79] + "…"
        table.add_row(f"{letter.partition}:{letter.offset}", letter.processor, letter.reason, source,
                      letter.event_type, detail)  # fmt: skip
    Console().print(table)
    console.print(f"{len(letters)} dead letter(s)")


@deadletters_app.command("replay")
def deadletters_replay(
    reason: Annotated[str, typer.Option(help="Replay letters with this reason.")] = "processing_failed",
    processor: ProcessorOption = None,
    source_topic: SourceTopicOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it; without it, only say what would be replayed.")] = False,
) -> None:
    """Put dead-lettered records back on their source topics, unchanged (after fixing what made them fail).

    Processors that applied a record before drop the copy by its event id; one that still fails on it
    dead-letters it again."""
    from services.kafka.deadletter_log import replay

    letters = _dead_letters(reason, processor, source_topic)
    if not yes:
        console.print(f"{len(letters)} record(s) would be replayed; add --yes to replay them")
        return
    console.print(f"replayed {replay(Settings().kafka_client_config(), letters)} record(s)")


# ---------------------------------------------------------------- publishing


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def _batches(lines: Iterator[str], size: int) -> Iterator[list[tuple[int, Any]]]:
    batch: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            batch.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            batch.append((number, error))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@app.command()
def publish(
    file: Annotated[str, typer.Argument(help="JSON-lines file of events, or - for standard input.")],
    api_key: Annotated[str, typer.Option(envvar="ANCHANG_API_KEY", help="The office's API key.")],
    url: Annotated[str, typer.Option(envvar="ANCHANG_API_URL", help="The ingestion API.")] = "http://127.0.0.1:8000",
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Bulk-import events (one JSON object per line) through the API; rejected lines are reported with
    their line number and errors. Exits 1 if any line was rejected."""
    from services.client import AnchangClient

    stream = sys.stdin if file == "-" else Path(file).open(encoding="utf-8")  # noqa: SIM115
    total = None if file == "-" else _count_lines(Path(file))
    accepted = rejected = 0
    with AnchangClient(url, api_key) as client, _progress() as progress, stream:
        task = progress.add_task("publishing", total=total)
        for batch in _batches(iter(stream), batch_size):
            events = [(number, item) for number, item in batch if not isinstance(item, Exception)]
            for number, item in batch:
                if isinstance(item, Exception):
                    rejected += 1
                    console.print(f"[red]line {number}[/red]: not JSON: {item}")
            result = client.publish_batch([event for _, event in events]) if events else {"items": []}
            for (number, _), outcome in zip(events, result["items"], strict=True):
                if outcome["accepted"] is not None:
                    accepted += 1
                else:
                    rejected += 1
                    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in outcome["errors"])
                    console.print(f"[red]line {number}[/red]: {problems}")
            progress.advance(task, len(batch))
    console.print(f"accepted {accepted}, rejected {rejected}")
    raise typer.Exit(1 if rejected else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
