"""Per-office ownership policy from the policy directory (``ANCHANG_POLICY_DIR``, table ``[ownership]``)::

    [ownership]
    ownership_months = 3                 # OWN-05
    extend_on_return_visit = false       # §13.10
    renewal_window_days = 7              # OWN-06
    deal_freezes_ownership = true
    trace_phone_ownership = false        # OWN-08 / §13.13
    report_lead_time_minutes = 30        # OWN-11
    lead_time_inclusive = true           # exactly 30 minutes counts
    switch_split = ["1/2", "1/2"]        # COM-01 (old, new)
    undisputed_switch_credit = "OLD_OWNER"
    credit_point = "SUBSCRIPTION"        # COM-06: SUBSCRIPTION (认购) or CONTRACT (签约)

``default.toml`` sets what every office starts from; ``<office_id>.toml`` overrides it. Unknown keys and bad values
are errors naming the file and the key. Who may do what (§12) is not configurable here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from services.core.policy_files import DEFAULT_FILE, PolicyFileError, read_policy_dir
from services.ownership.policy import DEFAULT_POLICY, CreditPoint, OwnershipPolicy, SwitchCredit


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _split(value: Any) -> tuple[Fraction, Fraction]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError('must be two fractions (old, new), e.g. ["1/2", "1/2"]')
    old, new = (Fraction(str(part)) for part in value)
    return old, new


# key → (policy field, conversion)
SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ownership_months": ("ownership_months", _int),
    "extend_on_return_visit": ("extend_on_return_visit", _bool),
    "renewal_window_days": ("renewal_window", lambda v: timedelta(days=_int(v))),
    "deal_freezes_ownership": ("deal_freezes_ownership", _bool),
    "trace_phone_ownership": ("trace_phone_ownership", _bool),
    "report_lead_time_minutes": ("report_lead_time", lambda v: timedelta(minutes=_int(v))),
    "lead_time_inclusive": ("lead_time_inclusive", _bool),
    "switch_split": ("switch_split", _split),
    "undisputed_switch_credit": ("undisputed_switch_credit", lambda v: SwitchCredit(v)),
    "credit_point": ("credit_point", lambda v: CreditPoint(v)),
}


def _apply(base: OwnershipPolicy, table: Mapping[str, Any], where: str) -> OwnershipPolicy:
    if unknown := sorted(set(table) - set(SETTINGS)):
        raise PolicyFileError(f"{where}: unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        name, convert = SETTINGS[key]
        try:
            changes[name] = convert(value)
        except (ValueError, TypeError, ZeroDivisionError) as problem:
            raise PolicyFileError(f"{where}: {key} = {value!r}: {problem}") from problem
    try:
        return replace(base, **changes)
    except ValueError as problem:  # OwnershipPolicy's own hard limits
        raise PolicyFileError(f"{where}: {problem}") from problem


class OwnershipPolicies:
    """The policy of each office: ``policies(office_id)``."""

    def __init__(self, default: OwnershipPolicy = DEFAULT_POLICY, offices: Mapping[str, OwnershipPolicy] | None = None):
        self.default = default
        self.offices = dict(offices or {})

    def __call__(self, office_id: str) -> OwnershipPolicy:
        return self.offices.get(office_id, self.default)

    @classmethod
    def load(cls, directory: Path | None) -> OwnershipPolicies:
        tables = read_policy_dir(directory, "ownership")
        default = _apply(DEFAULT_POLICY, tables.default, tables.where.get(DEFAULT_FILE, "default"))
        offices = {
            office: _apply(default, table, tables.where[office]) for office, table in tables.offices.items() if table
        }
        return cls(default, offices)
