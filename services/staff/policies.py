"""Per-office staff policies from TOML, and the optional customer-service packs of rules.md as named presets::

    [default]
    clock_in_by = "08:30"               # ATT-02
    lateness_fine_yuan = 50             # ATT-03 / PEN-01

    [offices.sh-001]
    packs = ["property"]                # the 物业客服 pack (rules.md §4.1, §8.3, §9.2)
    day_end_rule = "fixed"
    swap_approvers = ["SALES_MANAGER", "SALES_SUPERVISOR"]

Each section starts from the one above it (handbook defaults → ``[default]`` → ``[offices.<id>]``); within a section
its ``packs`` are applied first, in order, then its own keys. Offices not listed use ``[default]``. Every error names
the section and the key. ``staff_policies_from_dir`` reads the ``[staff]`` tables of the policy directory."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from services.core.policy_files import DEFAULT_FILE, read_policy_dir
from services.staff.policy import (
    ALL_ROLES,
    DEFAULT_STAFF_POLICY,
    DayEndRule,
    DayKind,
    LeaveType,
    PolicyValueError,
    StaffPolicy,
)


class StaffPolicyError(ValueError):
    """An invalid staff policy file; the message names the section (office) and the key."""


# Optional packs (rules.md tags them [CS]: configuration, not product invariants). Values are TOML settings.
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # 物业 customer service (S1 篇五/九, S2 C大厦, S0-E).
        "property": MappingProxyType(
            {
                "answer_within_rings": 3,  # CALL-X04 「電話鈴響三聲內必須接聽電話」
                "late_answer_fine_yuan": 15,  # CALL-X05 / PEN-C02 「服務電話響聲超過三次不接聽」 15 元
                "complaint_classify_hours": 24,  # CMP-X01 escalated the same day
                "complaint_resolve_hours": 72,  # CMP-X01 「人事行政部於三日內」
                "complaint_callback_hours": 168,  # CMP-X03 「每周對已處理完畢的客戶進行一次回訪」
                "repair_dispatch_minutes": 20,  # CMP-X11 「若工程人員在20分鐘內未到達現場」
                "complaint_callers": ["CUSTOMER_SERVICE", "SALES_MANAGER"],
                "complaint_handlers": ["CUSTOMER_SERVICE", "SALES_MANAGER"],
            }
        ),
        # Call centre (S0-N 客服部内部管理制度, S0-K 供暖报修).
        "call_centre": MappingProxyType(
            {
                "answer_rate_target": 0.90,  # CALL-X01 / KPI-X01 「保证电话接通率在90%以上」
                "min_agents_peak": 8,  # CALL-X01 「有至少8位坐席在线接听来电」
                "min_agents_night": 2,  # CALL-X01 「夜班至少2位坐席通宵在线」
                "answer_within_rings": 3,  # CALL-X04
                "complaint_callers": ["CUSTOMER_SERVICE", "SALES_MANAGER"],
            }
        ),
        # Real-estate owner complaints with closed-loop callbacks (S4-RE, CMP-08/09): the core defaults, made explicit.
        "owner_complaints": MappingProxyType(
            {
                "complaint_callback_hours": 72,  # CMP-09 「必须保证在三天之内回访」
                "complaint_handlers": ["CUSTOMER_SERVICE", "SALES_MANAGER"],
                "complaint_callers": ["CUSTOMER_SERVICE", "SALES_MANAGER"],
            }
        ),
    }
)


def _time(key: str, value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            hours, minutes = value.split(":")
            return time(int(hours), int(minutes))
        except ValueError:
            pass
    raise PolicyValueError(key, f'expected a time such as "08:30", got {value!r}')


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyValueError(key, f"expected an integer, got {value!r}")
    return value


def _optional_int(key: str, value: Any) -> int | None:
    """0 switches an optional rule off (TOML has no null)."""
    number = _int(key, value)
    return None if number == 0 else number


def _seconds(scale: int) -> Callable[[str, Any], timedelta]:
    def parse(key: str, value: Any) -> timedelta:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PolicyValueError(key, f"expected a number, got {value!r}")
        return timedelta(seconds=float(value) * scale)

    return parse


def _optional_seconds(scale: int) -> Callable[[str, Any], timedelta | None]:
    def parse(key: str, value: Any) -> timedelta | None:
        duration = _seconds(scale)(key, value)
        return None if duration == timedelta(0) else duration

    return parse


def _fraction(key: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyValueError(key, f"expected a fraction such as 0.9, got {value!r}")
    return None if value == 0 else float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PolicyValueError(key, f"expected true or false, got {value!r}")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise PolicyValueError(key, f"expected a string, got {value!r}")
    return value


def _strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyValueError(key, f"expected a list of strings, got {value!r}")
    return value


def _roles(key: str, value: Any) -> frozenset[str]:
    roles = _strings(key, value)
    if unknown := sorted(set(roles) - ALL_ROLES):
        raise PolicyValueError(key, f"unknown roles {unknown}; known: {', '.join(sorted(ALL_ROLES))}")
    return frozenset(roles)


def _role(key: str, value: Any) -> str:
    return next(iter(_roles(key, [_str(key, value)])))


def _day_kinds(key: str, value: Any) -> frozenset[DayKind]:
    names = _strings(key, value)
    if unknown := sorted(set(names) - set(DayKind)):
        raise PolicyValueError(key, f"unknown day kinds {unknown}; known: {', '.join(DayKind)}")
    return frozenset(DayKind(n) for n in names)


def _weekdays(key: str, value: Any) -> frozenset[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise PolicyValueError(key, f"expected a list of ISO weekdays (1 = Monday … 7 = Sunday), got {value!r}")
    return frozenset(value)


def _choice(kind: type[DayEndRule] | type[LeaveType]) -> Callable[[str, Any], Any]:
    def parse(key: str, value: Any) -> Any:
        text = _str(key, value)
        try:
            return kind(text)
        except ValueError:
            raise PolicyValueError(key, f"expected one of {', '.join(kind)}, got {text!r}") from None

    return parse


# TOML key → (StaffPolicy field, parser). The units are in the key names.
_SETTINGS: Mapping[str, tuple[str, Callable[[str, Any], Any]]] = MappingProxyType(
    {
        "timezone": ("timezone", _str),
        "clock_in_by": ("clock_in_by", _time),
        "clock_in_grace_seconds": ("clock_in_grace", _seconds(1)),
        "lateness_fine_yuan": ("lateness_fine_yuan", _int),
        "day_end": ("day_end", _time),
        "day_end_rule": ("day_end_rule", _choice(DayEndRule)),
        "same_day_leave_cutoff": ("same_day_leave_cutoff", _time),
        "sick_notice_cutoff": ("sick_notice_cutoff", _time),
        "leave_notice_days": ("leave_notice_days", _int),
        "leave_approvers": ("leave_approvers", _roles),
        "sick_notice_receivers": ("sick_notice_receivers", _roles),
        "sick_reclassified_as": ("sick_reclassified_as", _choice(LeaveType)),
        "blackout_day_kinds": ("blackout_day_kinds", _day_kinds),
        "blackout_applies_to_sick_leave": ("blackout_applies_to_sick_leave", _bool),
        "revoke_leave_on_special_day": ("revoke_leave_on_special_day", _bool),
        "rest_weekdays": ("rest_weekdays", _weekdays),
        "rest_days_per_week": ("rest_days_per_week", _int),
        "swap_approvers": ("swap_approvers", _roles),
        "premises_exit_approvers": ("premises_exit_approvers", _roles),
        "premises_exit_fine_yuan": ("premises_exit_fine_yuan", _int),
        "attendance_report_day": ("attendance_report_day", _int),
        "answer_within_rings": ("answer_within_rings", _int),
        "ring_seconds": ("ring_period", _seconds(1)),
        "late_answer_fine_yuan": ("late_answer_fine_yuan", _optional_int),
        "blank_field_fine_yuan": ("blank_field_fine_yuan", _int),
        "call_log_required_fields": ("call_log_required_fields", lambda k, v: frozenset(_strings(k, v))),
        "visit_register_required_fields": ("visit_register_required_fields", lambda k, v: frozenset(_strings(k, v))),
        "missing_log_fine_yuan": ("missing_log_fine_yuan", _optional_int),
        "sms_within_seconds": ("sms_within", _seconds(1)),
        "call_log_due": ("call_log_due", _time),
        "call_log_grace_minutes": ("call_log_grace", _seconds(60)),
        "call_target_seconds": ("call_target", _seconds(1)),
        "queue_publishers": ("queue_publishers", _roles),
        "waiver_minimum_minutes": ("waiver_minimum", _seconds(60)),
        "waiver_reception_weight": ("waiver_reception_weight", _int),
        "supervisor_suspension_days": ("supervisor_suspension_days", _int),
        "manager_suspension_days": ("manager_suspension_days", _int),
        "refusal_suspension_days": ("refusal_suspension_days", _int),
        "violation_observers": ("violation_observers", _roles),
        "requalifiers": ("requalifiers", _roles),
        "complaint_handlers": ("complaint_handlers", _roles),
        "complaint_callers": ("complaint_callers", _roles),
        "complaint_classify_hours": ("complaint_classify_within", _optional_seconds(3600)),
        "complaint_resolve_hours": ("complaint_resolve_within", _optional_seconds(3600)),
        "complaint_callback_hours": ("complaint_callback_within", _optional_seconds(3600)),
        "complaint_escalate_to": ("complaint_escalate_to", _role),
        "answer_rate_target": ("answer_rate_target", _fraction),
        "min_agents_peak": ("min_agents_peak", _optional_int),
        "min_agents_night": ("min_agents_night", _optional_int),
        "repair_dispatch_minutes": ("repair_dispatch_within", _optional_seconds(60)),
    }
)
SETTINGS: tuple[str, ...] = ("packs", *_SETTINGS)
_KEY_OF_FIELD = {policy_field: key for key, (policy_field, _) in _SETTINGS.items()}


def _apply_settings(base: StaffPolicy, settings: Mapping[str, Any], where: str) -> StaffPolicy:
    """``base`` with ``settings`` (TOML keys) applied; errors name ``where`` and the key."""
    if unknown := sorted(set(settings) - set(SETTINGS)):
        raise StaffPolicyError(f"{where}: unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    policy = base
    if "packs" in settings:
        try:
            packs = _strings("packs", settings["packs"])
        except PolicyValueError as exc:
            raise StaffPolicyError(f"{where}: {exc}") from None
        for pack in packs:
            if pack not in PRESETS:
                raise StaffPolicyError(f"{where}: packs: unknown pack {pack!r}; known: {', '.join(PRESETS)}")
            policy = _apply_settings(policy, PRESETS[pack], f"{where} pack {pack!r}")
            policy = replace(policy, packs=(*policy.packs, pack))
    changes: dict[str, Any] = {}
    try:
        for key, value in settings.items():
            if key != "packs":
                policy_field, parse = _SETTINGS[key]
                changes[policy_field] = parse(key, value)
        return replace(policy, **changes)
    except PolicyValueError as exc:
        key = _KEY_OF_FIELD.get(exc.setting, exc.setting)
        raise StaffPolicyError(f"{where}: {key}: {exc.message}") from None


def with_pack(policy: StaffPolicy, pack: str) -> StaffPolicy:
    """``policy`` with a named preset applied (for code; files use ``packs = [...]``)."""
    return _apply_settings(policy, {"packs": [pack]}, f"pack {pack!r}")


@dataclass(frozen=True)
class StaffPolicies:
    """The policy of every office: ``policies(office_id)``."""

    default: StaffPolicy = DEFAULT_STAFF_POLICY
    offices: Mapping[str, StaffPolicy] = field(default_factory=dict)

    def __call__(self, office_id: str) -> StaffPolicy:
        return self.offices.get(office_id, self.default)


def load_staff_policies(toml_text: str, where: str = "staff policy") -> StaffPolicies:
    """Parse and validate a per-office staff policy file (see the module docstring for its layout)."""
    try:
        raw = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise StaffPolicyError(f"{where}: not valid TOML: {exc}") from None
    if unknown := sorted(set(raw) - {"default", "offices"}):
        raise StaffPolicyError(f"{where}: unknown sections {unknown}; expected [default] and [offices.<office_id>]")
    default_section = raw.get("default", {})
    offices_section = raw.get("offices", {})
    if not isinstance(default_section, dict):
        raise StaffPolicyError(f"{where}: [default] must be a table")
    if not isinstance(offices_section, dict):
        raise StaffPolicyError(f"{where}: [offices] must hold one table per office")
    default = _apply_settings(DEFAULT_STAFF_POLICY, default_section, f"{where} [default]")
    offices: dict[str, StaffPolicy] = {}
    for office, settings in offices_section.items():
        if not isinstance(settings, dict):
            raise StaffPolicyError(f"{where} [offices.{office}]: must be a table of settings")
        offices[office] = _apply_settings(default, settings, f"{where} [offices.{office}]")
    return StaffPolicies(default, MappingProxyType(offices))


def staff_policies_from_dir(directory: Path | None) -> StaffPolicies:
    """Every office's staff policy from the ``[staff]`` tables of the policy directory
    (``services.core.policy_files``): ``default.toml`` on top of the handbook defaults, each office's file on top of
    it. Validated now, at start-up; errors name the file and the key. Without a directory: the handbook defaults."""
    tables = read_policy_dir(directory, "staff")
    base = _apply_settings(DEFAULT_STAFF_POLICY, tables.default, tables.where.get(DEFAULT_FILE, "default staff policy"))
    built = {
        office: _apply_settings(base, settings, tables.where.get(office, f"staff policy of {office}"))
        for office, settings in tables.offices.items()
    }
    return StaffPolicies(base, MappingProxyType(built))
