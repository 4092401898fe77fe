"""End to end: the real main job (``anchang up``) as a subprocess, on free ports and a temporary data
directory, with its embedded SeaweedFS, tansu and schema registry. Started once for the module; the
last test stops it, restarts it on the same data and stops it again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from deploy.process import free_port, free_port_block, pid_alive, tail
from deploy.prometheus import prometheus_binary, prometheus_process, render_config
from services.core.catalog import load_catalogue
from tests.support import visit_event, wait_for

pytestmark = pytest.mark.slow

BANNER = "Anchang is running."
OFFICE = "demo-office"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
PROCESSORS = ("sales", "ownership", "frontdesk", "staff")  # decision processors, each with a metrics port
CHILDREN = {"seaweed", "tansu", "registry", "api", "projector", *PROCESSORS}
# Settings that make `anchang up` use outside services instead of starting its own.
OUTSIDE_SERVICES = ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL")


def _distinct_free_ports(count: int, avoid: range) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in avoid:
            ports.append(port)
    return ports


class MainJob:
    """One ``python -m services.cli up`` at a time, always on the same data directory and ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        seaweed = free_port_block(10)
        names = ("api", "registry", "broker", "projector", "supervisor", *PROCESSORS)
        self.ports = dict(zip(names, _distinct_free_ports(len(names), range(seaweed, seaweed + 10)), strict=True))
        self.ports["seaweed"] = seaweed
        api, registry, broker, projector, supervisor = (self.ports[name] for name in names[:5])
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in OUTSIDE_SERVICES and not name.startswith("ANCHANG_")
        }
        env.update(
            ANCHANG_DATA_DIR=str(self.data_dir),
            ANCHANG_API_PORT=str(api),
            ANCHANG_REGISTRY_PORT=str(registry),
            ANCHANG_BROKER_PORT=str(broker),
            ANCHANG_PROJECTOR_METRICS_PORT=str(projector),
            ANCHANG_SUPERVISOR_METRICS_PORT=str(supervisor),
            **{f"ANCHANG_{name.upper()}_METRICS_PORT": str(self.ports[name]) for name in PROCESSORS},
            ANCHANG_SEAWEED_BASE_PORT=str(seaweed),
            COLUMNS="200",  # rich wraps `anchang publish` messages at 80 columns otherwise
        )
        self.env = env
        self.popen: subprocess.Popen[str] | None = None
        self.stdout: list[str] = []
        self.stderr_file = root / "up.stderr"
        self.key = ""
        self.posted: set[str] = set()  # visit ids the API accepted
        self.starts = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self.starts += 1
        self.stdout = []
        banner = threading.Event()
        with self.stderr_file.open("a") as stderr:
            stderr.write(f"\n==== start {self.starts}\n")
            stderr.flush()
            # cwd: the temporary directory, so no .env of a developer's checkout is read.
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up"],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.popen.stdout is not None
        threading.Thread(target=self._read, args=(self.popen.stdout, banner), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not banner.wait(0.2):
            if self.popen.poll() is not None:
                pytest.fail(f"anchang up exited with {self.popen.returncode} before its banner:\n{self._logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no banner from anchang up after {START_TIMEOUT:.0f}s:\n{self._logs()}")
        self.key = (self.data_dir / f"{OFFICE}.key").read_text().strip()
        assert self.key, "empty demo office key file"

    def _read(self, stream: TextIO, banner: threading.Event) -> None:
        for line in stream:
            self.stdout.append(line.rstrip("\n"))
            if line.startswith(BANNER):
                banner.set()

    def _logs(self) -> str:
        return f"stdout: {self.stdout}\nstderr:\n{tail(self.stderr_file, 40)}"

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the supervisor and return its exit code (TimeoutExpired if it does not exit)."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout)

    def child_pids(self) -> dict[str, int]:
        pids = {}
        for pid_file in self.run_dir.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids[pid_file.stem] = int(pid_file.read_text().strip())
        return pids

    def terminate(self) -> None:
        """Stop whatever still runs, politely first; never leaves a process of this job behind."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        # Children run in their own sessions: kill each one's whole process group.
        for pid in self.child_pids().values():
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    # ---------------------------------------------------------------- talking to it

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def post(self, body: Any) -> httpx.Response:
        response = httpx.post(f"{self.api}/v1/events", json=body, headers=self.headers, timeout=10)
        if response.status_code == 202 and isinstance(body, dict):
            self.posted.add(body["payload"]["visit_id"])
        return response

    def visit_ids(self) -> set[str]:
        response = httpx.get(f"{self.api}/v1/visits", params={"limit": 1000}, headers=self.headers, timeout=5)
        response.raise_for_status()
        return {visit["visit_id"] for visit in response.json()}

    def register_count(self, event_type: str) -> int:
        response = httpx.get(f"{self.api}/v1/register", headers=self.headers, timeout=5)
        response.raise_for_status()
        return sum(row["event_count"] for row in response.json() if row["event_type"] == event_type)

    def wait_visible(self, visit_ids: set[str], timeout: float) -> float:
        """Seconds until every id is in GET /v1/visits."""
        started = time.monotonic()
        wait_for(lambda: visit_ids <= self.visit_ids(), timeout, f"visits {sorted(visit_ids)}", interval=0.02)
        return time.monotonic() - started


def metric(url: str, sample: str, **labels: str) -> float:
    """The sum of ``sample`` over the series whose labels include ``labels`` (0 if there is none)."""
    text = httpx.get(url, timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(name) == value for name, value in labels.items())
    )


def consumed(job: MainJob) -> float:
    return metric(
        f"http://127.0.0.1:{job.ports['projector']}/metrics",
        "anchang_events_consumed_total",
        event_type="VisitRegistered",
        office_id=OFFICE,
    )


def produced(job: MainJob, **labels: str) -> float:
    return metric(f"{job.api}/metrics", "anchang_events_produced_total", **labels)


def new_visit_id(what: str) -> str:
    return f"v-{what}-{uuid.uuid4().hex[:8]}"


def records_in_topic(bootstrap: str, topic: str, timeout: float = 20.0) -> int:
    """Every record of ``topic``, read from offset 0 of each partition straight from the broker."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-stack-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, partition, 0) for partition in partitions])
        at_end: set[int] = set()
        count = 0
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: only {sorted(at_end)} of {len(partitions)} read"
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is None:
                    count += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        return count
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainJob]:
    job = MainJob(tmp_path_factory.mktemp("main-job"))
    try:
        job.start()
        # The banner comes once the projector serves metrics, a few seconds before it has joined its
        # consumer group; one visit through the whole path makes the timings below about steady state.
        warm_up = new_visit_id("warm-up")
        assert job.post(visit_event(warm_up, office=OFFICE)).status_code == 202
        job.wait_visible({warm_up}, timeout=30)
        yield job
    finally:
        job.terminate()


def test_a_posted_visit_is_projected_within_a_second(job: MainJob) -> None:
    visit_id = new_visit_id("a")
    produced_before, consumed_before = produced(job, event_type="VisitRegistered", office_id=OFFICE), consumed(job)

    response = job.post(visit_event(visit_id, office=OFFICE))
    accepted_at = time.monotonic()

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["topic"] == load_catalogue().topic_of_type["VisitRegistered"].name
    assert isinstance(body["partition"], int) and body["partition"] >= 0
    assert isinstance(body["offset"], int) and body["offset"] >= 0
    wait_for(lambda: visit_id in job.visit_ids(), timeout=5, what=f"visit {visit_id}", interval=0.02)
    elapsed = time.monotonic() - accepted_at
    assert elapsed < 1.0, f"the visit took {elapsed:.2f}s to appear in GET /v1/visits"
    wait_for(lambda: consumed(job) == consumed_before + 1, timeout=5, what="the projector's counter")
    assert produced(job, event_type="VisitRegistered", office_id=OFFICE) == produced_before + 1


def test_b_an_invalid_event_is_refused_and_not_produced(job: MainJob) -> None:
    visit_id = new_visit_id("b")
    produced_before = produced(job)
    rejected_before = metric(f"{job.api}/metrics", "anchang_events_rejected_total", reason="invalid")
    register_before = job.register_count("VisitRegistered")

    response = job.post(visit_event(visit_id, office=OFFICE, visit_type="TELEPORTED"))

    assert response.status_code == 422, response.text
    fields = [error["loc"] for error in response.json()["detail"]]
    assert ["payload", "visit_type"] in fields, fields
    time.sleep(1.0)  # what would have been produced would be projected by now (test a: < 1 s)
    assert produced(job) == produced_before
    assert metric(f"{job.api}/metrics", "anchang_events_rejected_total", reason="invalid") == rejected_before + 1
    assert job.register_count("VisitRegistered") == register_before
    assert visit_id not in job.visit_ids()


def test_c_prometheus_scrapes_every_process(job: MainJob, tmp_path: Path) -> None:
    try:
        prometheus_binary()
    except FileNotFoundError as missing:
        if os.environ.get("CI"):
            pytest.fail(str(missing))
        pytest.skip(f"{missing} (then run this test again)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_config(
            {
                "anchang-api": job.ports["api"],
                "anchang-projector": job.ports["projector"],
                "anchang-supervisor": job.ports["supervisor"],
                "anchang-registry": job.ports["registry"],
                **{f"anchang-{name}": job.ports[name] for name in PROCESSORS},
            }
        )
    )
    port = free_port()
    prometheus = prometheus_process(config, port, tmp_path / "tsdb", tmp_path / "run")
    prometheus.start()
    try:
        url = f"http://127.0.0.1:{port}/api/v1/query"

        def query(promql: str) -> list[dict[str, Any]]:
            response = httpx.get(url, params={"query": promql}, timeout=5)
            response.raise_for_status()
            answer = response.json()
            assert answer["status"] == "success", answer
            return answer["data"]["result"]  # type: ignore[no-any-return]

        expected = consumed(job)  # nothing is posted while this test runs
        assert expected >= 1
        jobs = {"anchang-api", "anchang-projector", "anchang-supervisor", "anchang-registry"}
        jobs |= {f"anchang-{name}" for name in PROCESSORS}
        # The decision processors consume visits too, each counting them under its own job.
        labels = f'job="anchang-projector",event_type="VisitRegistered",office_id="{OFFICE}"'
        selector = f"anchang_events_consumed_total{{{labels}}}"
        up: dict[str, float] = {}
        scraped: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            up = {series["metric"]["job"]: float(series["value"][1]) for series in query("up")}
            scraped = query(f"sum({selector})")
            if up == dict.fromkeys(jobs, 1.0) and scraped and float(scraped[0]["value"][1]) == expected:
                break
            time.sleep(0.5)
        assert up == dict.fromkeys(jobs, 1.0), f"up per job: {up}"
        assert scraped, f"Prometheus has no {selector}"
        assert float(scraped[0]["value"][1]) == expected
    finally:
        prometheus.stop()


def test_d_publish_imports_good_lines_and_reports_bad_ones(job: MainJob, tmp_path: Path) -> None:
    good = [new_visit_id("d") for _ in range(3)]
    bad_event = visit_event(new_visit_id("d-bad"), office=OFFICE)
    del bad_event["payload"]["phone"]
    lines = [
        json.dumps(visit_event(good[0], office=OFFICE)),
        "{this is not JSON",
        json.dumps(visit_event(good[1], office=OFFICE)),
        json.dumps(bad_event),
        json.dumps(visit_event(good[2], office=OFFICE)),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "publish", str(events), "--url", job.api, "--api-key", job.key],
        cwd=job.root,
        env=job.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "accepted 3, rejected 2" in output
    assert "line 2" in output and "not JSON" in output
    assert "line 4" in output and "payload.phone" in output
    job.posted.update(good)
    job.wait_visible(set(good), timeout=5)


def test_e_stops_cleanly_and_keeps_everything_across_a_restart(job: MainJob) -> None:
    children = job.child_pids()
    assert set(children) == CHILDREN
    assert job.posted <= job.visit_ids()
    posted_before, key_before = set(job.posted), job.key

    started = time.monotonic()
    code = job.stop(signal.SIGINT)
    stopped_in = time.monotonic() - started

    assert code == 0, f"exit code {code} after {stopped_in:.1f}s:\n{tail(job.stderr_file)}"
    assert not list(job.run_dir.glob("*.pid"))
    assert not {name: pid for name, pid in children.items() if pid_alive(pid)}

    job.start()

    assert job.key == key_before
    assert set(job.child_pids()) == CHILDREN
    assert posted_before <= job.visit_ids()
    # The broker kept its records on SeaweedFS (the memory engine would come back empty).
    topic = load_catalogue().topic_of_type["VisitRegistered"].name
    assert records_in_topic(f"127.0.0.1:{job.ports['broker']}", topic) == len(posted_before)
    visit_id = new_visit_id("e")
    assert job.post(visit_event(visit_id, office=OFFICE)).status_code == 202
    job.wait_visible({visit_id}, timeout=30)
    # Resumed from its stored offsets: every visit counted once, none twice.
    assert job.register_count("VisitRegistered") == len(job.posted) == len(posted_before) + 1
    assert job.stop(signal.SIGINT) == 0
    assert not list(job.run_dir.glob("*.pid"))
