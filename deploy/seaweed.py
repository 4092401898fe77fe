"""SeaweedFS (``weed mini``) as tansu's durable S3 store for the local main job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.binaries import weed_binary
from deploy.process import ManagedProcess, free_port

# weed opens its S3 port before it can store anything; this log line means it really can.
READY_LINE = "All enabled components are running"

# Every listener weed mini opens, so none collides with another server on the machine.
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


@dataclass(frozen=True)
class SeaweedConfig:
    data_dir: Path
    run_dir: Path
    s3_port: int = 8333
    bucket: str = "tansu"
    # Other listeners: fixed defaults (offset from SeaweedFS's own) or free ports for tests.
    ports: tuple[tuple[str, int], ...] = (
        ("master.port", 9333), ("master.port.grpc", 19333), ("volume.port", 8380),
        ("volume.port.grpc", 18380), ("filer.port", 8888), ("filer.port.grpc", 18888),
        ("s3.port.grpc", 18333), ("admin.port", 23646), ("admin.port.grpc", 33646),
    )  # fmt: skip

    @classmethod
    def on_free_ports(cls, data_dir: Path, run_dir: Path) -> SeaweedConfig:
        return cls(data_dir, run_dir, free_port(), ports=tuple((flag, free_port()) for flag in PORT_FLAGS))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"


def seaweed_process(config: SeaweedConfig) -> ManagedProcess:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(weed_binary()), "mini",
        f"-dir={config.data_dir.resolve()}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-bucket={config.bucket}",
        f"-s3.port={config.s3_port}",
        "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
        *(f"-{flag}={port}" for flag, port in config.ports),
    ]  # fmt: skip
    log = config.run_dir / "seaweed.log"
    # The log is appended across runs: remember where this run starts so an old "ready" line doesn't count.
    offset = log.stat().st_size if log.exists() else 0

    def ready() -> bool:
        return log.exists() and READY_LINE in log.read_text(errors="replace")[offset:]

    return ManagedProcess("seaweed", argv, config.run_dir, ready, cwd=config.data_dir, startup_timeout=90)
