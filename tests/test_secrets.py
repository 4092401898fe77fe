"""The customer-key secret: from the environment, else created once on disk and shared by every process."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.core.config import Settings
from services.core.secrets import read_or_create_secret


def test_a_fresh_data_dir_gets_one_secret_that_every_caller_then_reads(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "customer-key"
    with ThreadPoolExecutor(8) as pool:  # processes of `anchang up` start at the same moment
        values = set(pool.map(lambda _: read_or_create_secret(path), range(16)))
    assert len(values) == 1 and len(values.pop()) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no drafts left behind
    assert read_or_create_secret(path) == path.read_text().encode()


def test_the_environment_variable_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANCHANG_CUSTOMER_KEY_SECRET")  # the test session sets one (tests/conftest.py)
    from_file = Settings(ANCHANG_DATA_DIR=tmp_path).resolved_customer_key_secret()
    assert Settings(ANCHANG_DATA_DIR=tmp_path).resolved_customer_key_secret() == from_file
    given = Settings(ANCHANG_DATA_DIR=tmp_path, ANCHANG_CUSTOMER_KEY_SECRET="from-the-vault")
    assert given.resolved_customer_key_secret() == b"from-the-vault"
    assert "from-the-vault" not in repr(given)
