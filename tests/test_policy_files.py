"""The policy directory: one TOML file per office, each slice reading its own table, errors naming the file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.core.policy_files import PolicyFileError, read_policy_dir
from services.sales.policies import OfficePolicies


def _write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.toml").write_text(text, encoding="utf-8")


def test_no_directory_means_handbook_defaults() -> None:
    tables = read_policy_dir(None, "sales")
    assert (tables.default, tables.offices) == ({}, {})
    assert OfficePolicies.from_slice(tables)("any-office").payment_deadline == timedelta(minutes=10)


def test_each_office_file_starts_from_default_toml(tmp_path: Path) -> None:
    _write(tmp_path, "default", "[sales]\npayment_deadline_seconds = 900\n[staff]\nclock_in_by = '08:30'\n")
    _write(tmp_path, "sh-001", "[sales]\nminimum_deposit_fen = 2000000\n")
    _write(tmp_path, "sh-002", "[ownership]\n")
    policies = OfficePolicies.from_slice(read_policy_dir(tmp_path, "sales"))
    assert policies("sh-001").payment_deadline == timedelta(minutes=15)  # from default.toml
    assert policies("sh-001").minimum_deposit_fen == 2_000_000
    assert policies("sh-002").payment_deadline == timedelta(minutes=15)
    assert policies("elsewhere").minimum_deposit_fen == policies.default.minimum_deposit_fen
    assert read_policy_dir(tmp_path, "staff").default == {"clock_in_by": "08:30"}


def test_an_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    _write(tmp_path, "sh-001", "[sales]\npayment_deadline_minutes = 15\n")
    with pytest.raises(ValueError, match=r"sh-001\.toml \[sales\].*payment_deadline_minutes"):
        OfficePolicies.from_slice(read_policy_dir(tmp_path, "sales"))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("[sales\n", "not valid TOML"), ("[payroll]\n", "unknown tables"), ("sales = 3\n", "must be a table")],
)
def test_a_broken_file_names_itself(tmp_path: Path, text: str, complaint: str) -> None:
    _write(tmp_path, "sh-009", text)
    with pytest.raises(PolicyFileError, match=rf"sh-009\.toml.*{complaint}"):
        read_policy_dir(tmp_path, "sales")


def test_a_missing_directory_and_both_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="does not exist"):
        read_policy_dir(tmp_path / "nowhere", "staff")
    with pytest.raises(ValueError, match="not both"):
        OfficePolicies.from_settings(tmp_path / "policy.toml", tmp_path)
