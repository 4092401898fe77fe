"""The embedded Kafka-API broker: tansu, on the memory engine (tests) or on SeaweedFS S3 (main job)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from deploy.binaries import tansu_binary
from deploy.process import ManagedProcess, port_open
from deploy.seaweed import SeaweedConfig


@dataclass(frozen=True)
class TansuConfig:
    port: int
    run_dir: Path
    # None: memory engine (fast, nothing survives); else the SeaweedFS store to keep data in.
    seaweed: SeaweedConfig | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage_engine(self) -> str:
        return f"s3://{self.seaweed.bucket}/" if self.seaweed else "memory://tansu/"


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True once the broker serves metadata (an open port alone is not enough)."""
    host, _, port = bootstrap.rpartition(":")
    if not port_open(host, int(port)):
        return False
    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


def tansu_process(config: TansuConfig) -> ManagedProcess:
    url = f"tcp://127.0.0.1:{config.port}"
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        config.storage_engine,
    ]
    env: dict[str, str] = {}
    if config.seaweed is not None:
        env = {
            "AWS_ENDPOINT": config.seaweed.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
            # SeaweedFS runs without S3 auth locally; tansu's S3 client still wants a key pair.
            "AWS_ACCESS_KEY_ID": "anchang",
            "AWS_SECRET_ACCESS_KEY": "anchang",
        }
    return ManagedProcess("tansu", argv, config.run_dir, lambda: broker_answers(config.bootstrap), env=env)
