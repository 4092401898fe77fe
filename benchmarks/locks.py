"""销控 decision benchmark: how fast the decision processor answers lock requests, and how long each waits.

Stages, in one run on one broker (tansu, memory engine) with the decision processor as its own process
(`anchang sales run`, as in production, so this process's measuring does not compete with it for the GIL):

1. **spread**: N lock requests for N different units, produced at once;
2. **hot**: N lock requests for one unit from N customers, produced at once (one wins, the rest are
   refused by the 一房二卖 guard, SALE-06);
3. **sequential**: requests one at a time, each waiting for its decision: the unloaded latency.

Decision latency = from the moment the command is handed to the producer to the moment its decision
(the fact whose causation_id is the command) is read back from ``anchang.units``: command produced →
decision consumed. Targets: p99 < 20 ms spread, < 50 ms hot.

    .venv/bin/python -m benchmarks.locks [--requests 1000] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.table import Table

from benchmarks.spine import broker, databases, describe_database
from deploy.process import ManagedProcess, free_port
from deploy.topics import ensure_topics
from services.core.catalog import load_catalogue
from services.core.codec import EventCodec
from services.kafka.direct import DirectPublisher
from services.registry.app import create_app as create_registry_app
from services.sales.processor import FACTS_TOPIC
from services.stack import anchang_command, metric_positive
from tests.support import serve_in_thread

TARGET_P99 = {"spread": 0.020, "hot": 0.050}
console = Console(width=None if sys.stdout.isatty() else 140)


class DecisionWatcher:
    """Reads the facts topic in a thread and notes when each command's first fact arrives."""

    def __init__(self, bootstrap: str, codec: EventCodec) -> None:
        self.codec = codec
        self.arrived: dict[str, float] = {}
        self.outcomes: dict[str, str] = {}
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 5})  # fmt: skip
        partitions = self._consumer.list_topics(FACTS_TOPIC, timeout=10).topics[FACTS_TOPIC].partitions
        self._consumer.assign([TopicPartition(FACTS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            now = time.perf_counter()
            event_type, record = self.codec.decode(message.value())
            command_id = str(record["envelope"]["causation_id"])
            if command_id not in self.arrived:
                self.arrived[command_id] = now
                self.outcomes[command_id] = event_type

    def wait(self, command_ids: Sequence[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while any(command_id not in self.arrived for command_id in command_ids):
            if time.monotonic() > deadline:
                missing = sum(command_id not in self.arrived for command_id in command_ids)
                raise TimeoutError(f"{missing} of {len(command_ids)} commands undecided after {timeout}s")
            time.sleep(0.001)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


@dataclass
class Result:
    stage: str
    requests: int
    seconds: float
    latencies: list[float]
    accepted: int

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def lock_body(unit: str, customer: str, office: str) -> dict[str, object]:
    return {
        "event_type": "UnitCommandIssued",
        "office_id": office,
        "actor": {"staff_id": "s-bench", "role": "SALES_CONSULTANT"},
        "payload": {"unit_id": unit, "command_type": "REQUEST_LOCK", "customer_id": customer, "staff_id": "s-bench"},
    }


def burst(stage: str, publisher: DirectPublisher, watcher: DecisionWatcher, units: Sequence[str]) -> Result:
    sent: dict[str, float] = {}
    for index, unit in enumerate(units):
        sent_at = time.perf_counter()
        command_id = publisher.publish(lock_body(unit, f"c-{index}", f"office-{index % 5}"))
        sent[command_id] = sent_at
        publisher.producer.poll(0)
    publisher.flush()
    watcher.wait(list(sent))
    return _result(stage, sent, watcher)


def sequential(publisher: DirectPublisher, watcher: DecisionWatcher, count: int) -> Result:
    sent: dict[str, float] = {}
    for index in range(count):
        sent_at = time.perf_counter()
        command_id = publisher.publish(lock_body(f"seq-{uuid.uuid4().hex[:8]}", f"c-{index}", "office-0"))
        publisher.flush()
        sent[command_id] = sent_at
        watcher.wait([command_id])
    return _result("sequential", sent, watcher)


def _result(stage: str, sent: dict[str, float], watcher: DecisionWatcher) -> Result:
    latencies = [watcher.arrived[command_id] - at for command_id, at in sent.items()]
    seconds = max(watcher.arrived[command_id] for command_id in sent) - min(sent.values())
    accepted = sum(watcher.outcomes[command_id] == "UnitLockRequested" for command_id in sent)
    return Result(stage, len(sent), seconds, latencies, accepted)


def decision_processor(env: dict[str, str], run_dir: Path) -> ManagedProcess:
    port = free_port()
    env = {**env, "ANCHANG_SALES_METRICS_PORT": str(port)}
    ready = metric_positive(f"http://127.0.0.1:{port}/", "anchang_consumer_assigned_partitions")
    return ManagedProcess("sales", anchang_command("sales", "run"), run_dir, ready, env=env, startup_timeout=120)


def run(requests: int, database_url: str | None) -> int:
    catalogue = load_catalogue()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with (
            broker(tmp / "run") as bootstrap,
            serve_in_thread(create_registry_app(tmp / "registry.db")) as registry_url,
            databases(database_url, tmp, ["decisions"]) as urls,
        ):
            ensure_topics({"bootstrap.servers": bootstrap}, catalogue)
            codec = EventCodec(SchemaRegistryClient({"url": registry_url}), catalogue)
            codec.register_all()
            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SCHEMA_REGISTRY_URL": registry_url,
                   "DATABASE_URL": urls["decisions"], "ANCHANG_DATA_DIR": str(tmp)}  # fmt: skip
            processor = decision_processor(env, tmp / "run")
            processor.start()
            watcher = DecisionWatcher(bootstrap, codec)
            publisher = DirectPublisher({"bootstrap.servers": bootstrap}, codec, catalogue)
            try:
                sequential(publisher, watcher, 20)  # warm-up: connections, schema ids, SQLite pages
                results = [
                    burst("spread", publisher, watcher, [f"spread-{i}" for i in range(requests)]),
                    burst("hot", publisher, watcher, ["hot-unit"] * requests),
                    sequential(publisher, watcher, 200),
                ]
            finally:
                watcher.close()
                processor.stop()
    _print(results, requests, describe_database(database_url))
    hot = results[1]
    if hot.accepted != 1 or results[0].accepted != requests:
        console.print(f"[red]wrong outcomes: spread accepted {results[0].accepted}, hot accepted {hot.accepted}")
        return 1
    return 0


def _print(results: Sequence[Result], requests: int, database: str) -> None:
    console.print(f"销控 decisions — {requests} requests per burst, {os.cpu_count()} cores, {database}")
    table = Table("stage", "requests", "accepted", "decisions/s", "p50 ms", "p99 ms", "max ms", "p99 target")
    for result in results:
        target = TARGET_P99.get(result.stage)
        p99 = result.percentile(0.99)
        verdict = "" if target is None else (f"< {target * 1000:.0f} ms " + ("met" if p99 < target else "MISSED"))
        table.add_row(
            result.stage, str(result.requests), str(result.accepted), f"{result.requests / result.seconds:,.0f}",
            f"{statistics.median(result.latencies) * 1000:.1f}", f"{p99 * 1000:.1f}",
            f"{max(result.latencies) * 1000:.1f}", verdict,
        )  # fmt: skip
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    return run(args.requests, args.database_url)


if __name__ == "__main__":
    sys.exit(main())
