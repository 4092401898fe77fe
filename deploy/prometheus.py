"""A Prometheus server scraping the main job: find the binary, render deploy/prometheus.yml for other
ports, and run it as a ``ManagedProcess``. Prometheus itself comes from the OS packages
(scripts/install-prometheus.sh), not from PyPI."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx

from deploy.process import ManagedProcess

CONFIG_FILE = Path(__file__).with_name("prometheus.yml")
DEBIAN_BINARY = Path("/usr/bin/prometheus")

# Job names in deploy/prometheus.yml → the Settings field holding that process's port.
JOBS = {
    "anchang-api": "api_port",
    "anchang-projector": "projector_metrics_port",
    "anchang-supervisor": "supervisor_metrics_port",
    "anchang-registry": "registry_port",
    "anchang-sales": "sales_metrics_port",
    "anchang-ownership": "ownership_metrics_port",
    "anchang-frontdesk": "frontdesk_metrics_port",
    "anchang-staff": "staff_metrics_port",
}

_JOB_LINE = re.compile(r"^\s*-\s*job_name:\s*[\"']?(?P<job>[\w.-]+)[\"']?\s*(?:#.*)?$")
_LOOPBACK_TARGET = re.compile(r"(?P<host>127\.0\.0\.1|localhost):(?P<port>\d+)")


def prometheus_binary() -> Path:
    """The ``prometheus`` server on PATH, else Debian's /usr/bin/prometheus."""
    found = shutil.which("prometheus")
    if found is not None:
        return Path(found)
    if DEBIAN_BINARY.exists():
        return DEBIAN_BINARY
    raise FileNotFoundError(
        "prometheus is not installed (not on PATH, no /usr/bin/prometheus): run scripts/install-prometheus.sh"
    )


def render_config(ports: dict[str, int], template: Path = CONFIG_FILE) -> str:
    """deploy/prometheus.yml with the loopback target port of each job in ``ports`` (keyed by job name,
    e.g. ``{"anchang-api": 18000}``) replaced; jobs not named keep their default ports.

    Done on the text (PyYAML is not a dependency), so comments and layout survive: within a job's block
    (from its ``- job_name:`` line to the next one), every ``127.0.0.1:PORT`` target gets the job's port."""
    unknown = set(ports) - set(JOBS)
    if unknown:
        raise ValueError(f"unknown Prometheus job(s) {sorted(unknown)}; the config has {sorted(JOBS)}")
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise ValueError(f"port {port} of job {name} is out of range")
    current: str | None = None  # the job whose block the loop is in
    replaced: set[str] = set()
    lines = []
    for line in template.read_text(encoding="utf-8").splitlines(keepends=True):
        if match := _JOB_LINE.match(line):
            current = match["job"]
        elif current is not None and current in ports and not line.lstrip().startswith("#"):
            line, count = _LOOPBACK_TARGET.subn(rf"\g<host>:{ports[current]}", line)
            if count:
                replaced.add(current)
        lines.append(line)
    missing = set(ports) - replaced
    if missing:
        raise ValueError(f"no loopback target found for job(s) {sorted(missing)} in {template}")
    return "".join(lines)


def prometheus_process(config_file: Path, port: int, data_dir: Path, run_dir: Path) -> ManagedProcess:
    """Prometheus on 127.0.0.1:``port`` with its TSDB in ``data_dir``; ready once /-/ready answers 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(prometheus_binary()),
        f"--config.file={config_file.resolve()}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={data_dir.resolve()}",
    ]

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return ManagedProcess("prometheus", argv, run_dir, ready)
