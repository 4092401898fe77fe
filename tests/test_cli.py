"""The command line: broker management and rebuilds, run as a user would (through typer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from deploy.process import free_port
from projections.db import make_engine
from projections.tables import visit_register
from services.cli import app
from services.core.config import Settings
from services.kafka.direct import DirectPublisher
from tests.support import visit_event

runner = CliRunner()


def test_every_command_has_help() -> None:
    for command in (
        ["--help"],
        ["up", "--help"],
        ["broker", "start", "--help"],
        ["publish", "--help"],
        ["projections", "rebuild", "--help"],
        ["keys", "create", "--help"],
        ["topics", "list"],
        ["deadletters", "list", "--help"],
        ["deadletters", "replay", "--help"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert "anchang.units" in runner.invoke(app, ["topics", "list"]).output


@pytest.mark.kafka
def test_broker_start_status_stop_with_the_memory_engine(tmp_path: Path) -> None:
    env = {"ANCHANG_DATA_DIR": str(tmp_path), "ANCHANG_BROKER_PORT": str(free_port())}
    started = runner.invoke(app, ["broker", "start", "--engine", "memory"], env=env)
    try:
        assert started.exit_code == 0, started.output
        assert (tmp_path / "run" / "tansu.pid").exists() and (tmp_path / "run" / "tansu.log").exists()
        status = runner.invoke(app, ["broker", "status", "--engine", "memory"], env=env)
        assert status.exit_code == 0 and "running" in status.output and "answers" in status.output
    finally:
        stopped = runner.invoke(app, ["broker", "stop", "--engine", "memory"], env=env)
    assert stopped.exit_code == 0 and not (tmp_path / "run" / "tansu.pid").exists()
    assert runner.invoke(app, ["broker", "status", "--engine", "memory"], env=env).exit_code == 1


@pytest.mark.kafka
def test_projections_rebuild_replays_everything(settings: Settings, codec: object, catalogue: object) -> None:
    publisher = DirectPublisher(settings.kafka_client_config(), codec, catalogue)  # type: ignore[arg-type]
    publisher.publish(visit_event("v-rebuild", office="office-rebuild"))
    publisher.flush()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "DATABASE_URL": settings.resolved_database_url,
        "ANCHANG_DATA_DIR": str(settings.data_dir),
    }
    result = runner.invoke(app, ["projections", "rebuild"], env=env)
    assert result.exit_code == 0, result.output
    assert "rebuilt from" in result.output
    with make_engine(settings.resolved_database_url).connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(visit_register).where(visit_register.c.office_id == "office-rebuild")
        ).scalar_one()
    assert count == 1
