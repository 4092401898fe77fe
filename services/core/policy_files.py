"""The policy directory: one TOML file per office, validated at start-up.

``ANCHANG_POLICY_DIR`` holds ``default.toml`` (optional: what every office starts from) and ``<office_id>.toml``
per office. Each file has one table per slice::

    # var/policies/sh-001.toml
    [sales]
    payment_deadline_seconds = 900

    [ownership]
    ownership_months = 3

    [staff]
    clock_in_by = "08:30"
    packs = ["property"]

Each slice validates its own table (unknown keys and bad values are errors naming the file and the key); this
module only finds the files and hands each slice its tables. Without a directory every office runs on the
handbook defaults."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLICES = ("sales", "ownership", "staff")
DEFAULT_FILE = "default"


class PolicyFileError(ValueError):
    """A policy file that cannot be read: the message names the file and what is wrong."""


@dataclass(frozen=True)
class SlicePolicies:
    """One slice's tables: ``default`` from default.toml (or empty), ``offices`` by office id. ``where`` names the
    file of each, for error messages."""

    slice: str
    default: Mapping[str, Any]
    offices: Mapping[str, Mapping[str, Any]]
    where: Mapping[str, str]


def read_policy_dir(directory: Path | None, slice_name: str) -> SlicePolicies:
    if slice_name not in SLICES:
        raise ValueError(f"unknown policy slice {slice_name!r}; known: {', '.join(SLICES)}")
    if directory is None:
        return SlicePolicies(slice_name, {}, {}, {})
    if not directory.is_dir():
        raise PolicyFileError(f"{directory}: the policy directory does not exist")
    default: Mapping[str, Any] = {}
    offices: dict[str, Mapping[str, Any]] = {}
    where: dict[str, str] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as problem:
            raise PolicyFileError(f"{path}: not valid TOML: {problem}") from problem
        if unknown := set(document) - set(SLICES):
            raise PolicyFileError(f"{path}: unknown tables {sorted(unknown)}; known: {', '.join(SLICES)}")
        table = document.get(slice_name, {})
        if not isinstance(table, dict):
            raise PolicyFileError(f"{path}: [{slice_name}] must be a table")
        location = f"{path} [{slice_name}]"
        if path.stem == DEFAULT_FILE:
            default = table
            where[DEFAULT_FILE] = location
        else:
            offices[path.stem] = table
            where[path.stem] = location
    return SlicePolicies(slice_name, default, offices, where)
