"""SeaweedFS (``weed mini``) as tansu's durable S3 store for the local main job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.binaries import weed_binary
from deploy.process import ManagedProcess, free_port_block

# weed opens its S3 port before it can store anything; this log line means it really can.
READY_LINE = "All enabled components are running"

# Every listener weed mini opens, so none collides with another server on the machine.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class SeaweedConfig:
    """``base_port`` is the S3 port; weed's other listeners take the next ``len(PORT_FLAGS)`` ports."""

    data_dir: Path
    run_dir: Path
    base_port: int = 8333
    bucket: str = "tansu"

    @classmethod
    def on_free_ports(cls, data_dir: Path, run_dir: Path) -> SeaweedConfig:
        return cls(data_dir, run_dir, free_port_block(len(PORT_FLAGS) + 1))

    @property
    def s3_port(self) -> int:
        return self.base_port

    @property
    def ports(self) -> list[tuple[str, int]]:
        return [(flag, self.base_port + 1 + index) for index, flag in enumerate(PORT_FLAGS)]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"


def seaweed_process(config: SeaweedConfig) -> ManagedProcess:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(weed_binary()),
        "mini",
        f"-dir={config.data_dir.resolve()}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={config.bucket}",
        f"-s3.port={config.s3_port}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-metricsPort=0",
        *(f"-{flag}={port}" for flag, port in config.ports),
    ]
    log = config.run_dir / "seaweed.log"
    # The log is appended across runs: remember where this run starts so an old "ready" line doesn't count.
    offset = log.stat().st_size if log.exists() else 0

    def ready() -> bool:
        return log.exists() and READY_LINE in log.read_text(errors="replace")[offset:]

    return ManagedProcess("seaweed", argv, config.run_dir, ready, cwd=config.data_dir, startup_timeout=90)
