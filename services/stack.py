"""The main job: every Anchang process on one machine, started in order and stopped cleanly.

Embedded parts (tansu on SeaweedFS, the schema registry) start only when the environment does not
point at production ones (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client import Gauge, start_http_server
from sqlalchemy import func, select

from deploy.process import ManagedProcess
from deploy.seaweed import SeaweedConfig, seaweed_process
from deploy.tansu import TansuConfig, tansu_process
from deploy.topics import ensure_topics
from projections.db import make_engine, migrate
from projections.tables import api_keys
from services.core.catalog import load_catalogue
from services.core.config import Settings
from services.ingest.keys import create_key

log = logging.getLogger("anchang.up")

COMPONENT_UP = Gauge("anchang_component_up", "1 while a process of the main job runs.", ["component"])
DEMO_OFFICE = "demo-office"
# Children that are Kafka consumers: started together, then awaited, since each group join takes seconds.
CONSUMERS = frozenset({"projector", "sales", "ownership", "frontdesk", "staff"})


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    return check


def metric_positive(url: str, metric: str) -> Callable[[], bool]:
    """True once ``url`` serves ``metric`` with a value above zero."""

    def check() -> bool:
        try:
            text = httpx.get(url, timeout=1.0).text
        except httpx.HTTPError:
            return False
        return any(line.startswith(metric) and float(line.rsplit(" ", 1)[1]) > 0 for line in text.splitlines())

    return check


def anchang_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


@dataclass
class Stack:
    settings: Settings
    embedded_broker: bool
    embedded_registry: bool

    @property
    def run_dir(self) -> Path:
        return self.settings.data_dir / "run"

    def child_env(self) -> dict[str, str]:
        env = {"ANCHANG_DATA_DIR": str(self.settings.data_dir.resolve())}
        if self.embedded_broker:
            env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{self.settings.broker_port}"
        if self.embedded_registry:
            env["SCHEMA_REGISTRY_URL"] = f"http://127.0.0.1:{self.settings.registry_port}"
        return env

    def processes(self) -> list[ManagedProcess]:
        """In start order."""
        s, env, run_dir = self.settings, self.child_env(), self.run_dir
        started: list[ManagedProcess] = []
        if self.embedded_broker:
            seaweed = SeaweedConfig(s.data_dir / "seaweed", run_dir, s.seaweed_base_port)
            started += [seaweed_process(seaweed), tansu_process(TansuConfig(s.broker_port, run_dir, seaweed))]
        if self.embedded_registry:
            registry_url = f"http://127.0.0.1:{s.registry_port}"
            started.append(
                ManagedProcess(
                    "registry",
                    anchang_command("registry", "serve"),
                    run_dir,
                    http_ok(f"{registry_url}/subjects"),
                    env=env,
                )
            )
        api_url = f"http://{s.api_host}:{s.api_port}"
        started.append(
            ManagedProcess("api", anchang_command("api", "serve"), run_dir, http_ok(f"{api_url}/healthz"), env=env)
        )
        # Ready once it has joined its group and been given partitions, not merely started.
        started.append(
            ManagedProcess(
                "projector",
                anchang_command("projections", "run"),
                run_dir,
                metric_positive(
                    f"http://127.0.0.1:{s.projector_metrics_port}/", "anchang_consumer_assigned_partitions"
                ),
                env=env,
            )
        )
        # The decision processors: each ready once it has joined its group and been given partitions.
        for name, command, port in [
            ("sales", ("sales", "run"), s.sales_metrics_port),
            ("ownership", ("ownership", "run"), s.ownership_metrics_port),
            ("frontdesk", ("frontdesk", "run"), s.frontdesk_metrics_port),
            ("staff", ("staff", "run"), s.staff_metrics_port),
        ]:
            started.append(
                ManagedProcess(
                    name,
                    anchang_command(*command),
                    run_dir,
                    metric_positive(f"http://127.0.0.1:{port}/", "anchang_consumer_assigned_partitions"),
                    env=env,
                )
            )
        return started

    def run(self, stop: threading.Event, on_ready: Callable[[str], None]) -> int:
        """Start everything, wait for ``stop`` (or a child dying), stop everything in reverse order."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        start_http_server(self.settings.supervisor_metrics_port, addr="127.0.0.1")
        for name, value in self.child_env().items():
            os.environ[name] = value
        settings = Settings()  # re-read with the embedded endpoints
        migrate(settings.resolved_database_url)  # once, before any child could race another to it
        key = demo_key(settings)
        running: list[ManagedProcess] = []
        exit_code = 0
        try:
            joining: list[ManagedProcess] = []
            for process in self.processes():
                if stop.is_set():
                    return 130
                log.info("starting %s", process.name)
                # Consumers join their groups in parallel: a group join takes seconds on tansu.
                consumer = process.name in CONSUMERS
                process.start(wait=not consumer)
                running.append(process)
                if consumer:
                    joining.append(process)
                else:
                    COMPONENT_UP.labels(process.name).set(1)
                if process.name == "tansu":
                    created = ensure_topics(
                        settings.kafka_client_config(), load_catalogue(), settings.topic_replication_factor
                    )
                    log.info("topics created: %s", ", ".join(created) or "none (all exist)")
            for process in joining:
                process.wait_ready()
                COMPONENT_UP.labels(process.name).set(1)
            on_ready(self._banner(settings, key))
            while not stop.wait(1.0):
                dead = [process for process in running if process.exited()]
                if dead:
                    for process in dead:
                        COMPONENT_UP.labels(process.name).set(0)
                        log.error("%s exited unexpectedly; see %s", process.name, process.log_file)
                    exit_code = 1
                    break
        finally:
            for process in reversed(running):
                log.info("stopping %s", process.name)
                process.stop()
                COMPONENT_UP.labels(process.name).set(0)
        return exit_code

    def _banner(self, settings: Settings, key: str) -> str:
        api = f"http://{settings.api_host}:{settings.api_port}"
        return "\n".join(
            [
                "Anchang is running. Ctrl-C stops everything.",
                f"  API + OpenAPI docs  {api}/docs",
                f"  Kafka bootstrap     {settings.kafka_bootstrap_servers}",
                f"  Schema registry     {settings.schema_registry_url}",
                f"  Database            {settings.resolved_database_url}",
                f"  Metrics             {api}/metrics, "
                + ", ".join(
                    f"http://127.0.0.1:{port}/metrics"
                    for port in (
                        settings.projector_metrics_port,
                        settings.sales_metrics_port,
                        settings.ownership_metrics_port,
                        settings.frontdesk_metrics_port,
                        settings.staff_metrics_port,
                        settings.supervisor_metrics_port,
                    )
                )
                + (f", {settings.schema_registry_url}/metrics" if self.embedded_registry else ""),
                f"  Logs                {self.run_dir}/*.log",
                f"  API key of {DEMO_OFFICE}  {key}",
            ]
        )


def demo_key(settings: Settings) -> str:
    """The demo office's key, created on first start and kept in the data directory."""
    path = settings.data_dir / f"{DEMO_OFFICE}.key"
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            active = connection.execute(
                select(func.count())
                .select_from(api_keys)
                .where(api_keys.c.office_id == DEMO_OFFICE, api_keys.c.revoked_at.is_(None))
            ).scalar_one()
        if path.exists() and active:
            return path.read_text().strip()
        key = create_key(engine, DEMO_OFFICE, "created by anchang up", datetime.now(UTC))
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key
    finally:
        engine.dispose()


def run_stack(settings: Settings) -> int:
    stack = Stack(
        settings,
        embedded_broker="KAFKA_BOOTSTRAP_SERVERS" not in os.environ,
        embedded_registry="SCHEMA_REGISTRY_URL" not in os.environ,
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stack.run(stop, on_ready=lambda banner: print(banner, flush=True))
