"""Per-office 销控 policy, read from a TOML file (``ANCHANG_POLICY_FILE``)::

    [default]
    payment_deadline_seconds = 600      # SALE-09: 10 minutes

    [offices.sh-001]
    payment_deadline_seconds = 900
    minimum_deposit_fen = 2000000       # 2 万元 stops the clock
    lock_request_expiry_seconds = 1800

Offices not listed use ``[default]``; without a file every office uses ``DEFAULT_POLICY``. Only the
numbers are configurable here: who may do what (§12) stays as SalesPolicy defines it."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.core.policy_files import DEFAULT_FILE, SlicePolicies, read_policy_dir
from services.sales.policy import DEFAULT_POLICY, SalesPolicy

SETTINGS = ("payment_deadline_seconds", "minimum_deposit_fen", "lock_request_expiry_seconds")


def _apply(base: SalesPolicy, settings: Mapping[str, Any], where: str) -> SalesPolicy:
    if unknown := set(settings) - set(SETTINGS):
        raise ValueError(f"{where}: unknown policy settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    changes: dict[str, Any] = {}
    if "payment_deadline_seconds" in settings:
        changes["payment_deadline"] = timedelta(seconds=float(settings["payment_deadline_seconds"]))
    if "minimum_deposit_fen" in settings:
        changes["minimum_deposit_fen"] = int(settings["minimum_deposit_fen"])
    if "lock_request_expiry_seconds" in settings:
        seconds = settings["lock_request_expiry_seconds"]
        changes["lock_request_expiry"] = None if seconds in (None, 0) else timedelta(seconds=float(seconds))
    return replace(base, **changes)


class OfficePolicies:
    def __init__(self, default: SalesPolicy = DEFAULT_POLICY, offices: Mapping[str, SalesPolicy] | None = None):
        self.default = default
        self.offices = dict(offices or {})

    def __call__(self, office_id: str) -> SalesPolicy:
        return self.offices.get(office_id, self.default)

    @classmethod
    def from_toml(cls, text: str, where: str = "policy file") -> OfficePolicies:
        raw = tomllib.loads(text)
        default = _apply(DEFAULT_POLICY, raw.get("default", {}), f"{where} [default]")
        offices = {
            office: _apply(default, settings, f"{where} [offices.{office}]")
            for office, settings in raw.get("offices", {}).items()
        }
        return cls(default, offices)

    @classmethod
    def load(cls, path: Path | None) -> OfficePolicies:
        return cls() if path is None else cls.from_toml(path.read_text(encoding="utf-8"), str(path))

    @classmethod
    def from_slice(cls, tables: SlicePolicies) -> OfficePolicies:
        """From the ``[sales]`` tables of the policy directory (services/core/policy_files.py)."""
        default = _apply(DEFAULT_POLICY, tables.default, tables.where.get(DEFAULT_FILE, "default"))
        offices = {office: _apply(default, table, tables.where[office]) for office, table in tables.offices.items()}
        return cls(default, offices)

    @classmethod
    def from_settings(cls, policy_file: Path | None, policy_dir: Path | None) -> OfficePolicies:
        """The policy directory's ``[sales]`` tables if there is a directory, else the single policy file."""
        if policy_dir is not None:
            if policy_file is not None:
                raise ValueError("set ANCHANG_POLICY_DIR or ANCHANG_POLICY_FILE, not both")
            return cls.from_slice(read_policy_dir(policy_dir, "sales"))
        return cls.load(policy_file)
