"""Session-wide real parts: one tansu broker (memory engine), one schema registry, PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from deploy.process import free_port
from deploy.tansu import TansuConfig, tansu_process
from deploy.topics import ensure_topics
from services.core.catalog import Catalogue, load_catalogue
from services.core.codec import EventCodec
from services.core.config import Settings
from services.registry.app import create_app as create_registry
from tests.support import TEST_CUSTOMER_KEY_SECRET, serve_in_thread

# Every Settings of the session (and every process it starts with this environment) derives customer keys under
# one known secret, so tests can compute the keys processors use (tests.test_ownership_support.Office.key).
os.environ["ANCHANG_CUSTOMER_KEY_SECRET"] = TEST_CUSTOMER_KEY_SECRET

POSTGRES_ADMIN_URL = os.environ.get("ANCHANG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> Iterator[str]:
    """Bootstrap address of a tansu broker (memory engine) with every catalogue topic created."""
    process = tansu_process(TansuConfig(free_port(), tmp_path_factory.mktemp("tansu")))
    process.start()
    bootstrap = f"127.0.0.1:{process.argv[process.argv.index('--listener-url') + 1].rsplit(':', 1)[1]}"
    ensure_topics({"bootstrap.servers": bootstrap}, catalogue)
    yield bootstrap
    process.kill()  # the memory engine has nothing to save; SIGTERM would wait ~5 s for idle clients


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_in_thread(create_registry(tmp_path_factory.mktemp("registry") / "registry.db")) as url:
        yield url


@pytest.fixture(scope="session")
def codec(registry_url: str, catalogue: Catalogue) -> EventCodec:
    return EventCodec(SchemaRegistryClient({"url": registry_url}), catalogue)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session, dropped afterwards. In CI it must be there."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}")
    name = f"anchang_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@contextmanager
def fresh_database(kind: str, directory: Path, postgres_url: str | None) -> Iterator[str]:
    """A database of its own: a SQLite file in ``directory``, or a PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'projections.db'}"
        return
    assert postgres_url is not None
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _postgres_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each projection test runs on SQLite and on PostgreSQL (a fresh schema per test)."""
    with fresh_database(request.param, tmp_path, _postgres_url(request)) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same for a module's shared scenario (a world played once, asserted by many tests)."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db"), _postgres_url(request)) as url:
        yield url


@pytest.fixture
def settings(broker: str, registry_url: str, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP_SERVERS=broker,
        SCHEMA_REGISTRY_URL=registry_url,
        DATABASE_URL=database_url,
        ANCHANG_DATA_DIR=tmp_path,
        ANCHANG_PROJECTOR_GROUP=f"test-{uuid.uuid4().hex[:8]}",
    )
