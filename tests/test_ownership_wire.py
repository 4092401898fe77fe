"""The ownership shell's pure parts: the generated fact schemas are current, every fact survives the SQL form and
encodes on the wire with its phone masked, and the per-office policy files are validated (file and key named)."""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from datetime import UTC, datetime, timedelta
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

import fastavro
import pytest

from services.core.catalog import Catalogue
from services.core.policy_files import PolicyFileError
from services.ownership import facts as f
from services.ownership.policies import OwnershipPolicies
from services.ownership.policy import CreditPoint
from services.ownership.schemagen import SCHEMA_DIR, all_schemas, render
from services.ownership.wire import FACT_EVENT_TYPES, fact_to_json, fact_to_record, json_to_fact

AT = datetime(2026, 1, 5, 2, 0, 0, 123000, tzinfo=UTC)
PHONE = "13912345678"


def sample(hint: Any, name: str) -> Any:
    """A value of the annotated type, with the raw phone wherever a phone goes."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return sample(inner, name)
    if typing.get_origin(hint) is tuple:
        return (sample(typing.get_args(hint)[0], name),)
    if hint is datetime:
        return AT
    if hint is Fraction:
        return Fraction(1, 3)
    if hint is bool:
        return True
    if isinstance(hint, type) and issubclass(hint, Enum):
        return list(hint)[-1]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint)
    assert hint is str, hint
    return PHONE if name == "phone" else f"{name}-1"


def build(cls: Any) -> Any:
    hints = typing.get_type_hints(cls, vars(f))
    values = {field.name: sample(hints[field.name], field.name) for field in dataclasses.fields(cls)}
    if "customer_key" in values:  # a fact: its envelope needs a real role
        values |= {"customer_key": "office-a:" + "0" * 32, "actor_role": "SYSTEM"}
    return cls(**values)


def test_the_fact_schemas_on_disk_are_the_generated_ones() -> None:
    for event_type, schema in all_schemas().items():
        path = Path(SCHEMA_DIR) / f"{event_type}.avsc"
        assert path.read_text(encoding="utf-8") == render(schema), (
            f"run python -m services.ownership.schemagen ({path})"
        )


@pytest.mark.parametrize("cls", list(FACT_EVENT_TYPES), ids=lambda cls: cls.__name__)
def test_a_fact_survives_sql_and_travels_masked(cls: Any, catalogue: Catalogue) -> None:
    fact = build(cls)
    assert json_to_fact(FACT_EVENT_TYPES[cls], fact_to_json(fact)) == fact
    event_type, record = fact_to_record(fact, event_id="e-1", office_id="office-a", recorded_at=AT)
    schema = fastavro.parse_schema(catalogue.schemas[event_type].json)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    assert PHONE.encode() not in buffer.getvalue()


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.toml").write_text(text, encoding="utf-8")


def test_policy_files_set_each_office_on_top_of_the_default(tmp_path: Path) -> None:
    write(tmp_path, "default", "[ownership]\nreport_lead_time_minutes = 45\n")
    write(
        tmp_path,
        "sh-001",
        '[ownership]\nownership_months = 6\ncredit_point = "CONTRACT"\nswitch_split = ["2/3", "1/3"]\n',
    )
    policies = OwnershipPolicies.load(tmp_path)
    office = policies("sh-001")
    assert (office.ownership_months, office.credit_point, office.report_lead_time) == (
        6, CreditPoint.CONTRACT, timedelta(minutes=45),
    )  # fmt: skip
    assert office.switch_split == (Fraction(2, 3), Fraction(1, 3))
    assert policies("elsewhere").ownership_months == 3


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[ownership]\nownership_months = 0\n", "ownership_months"),
        ("[ownership]\nreport_lead_time = 30\n", "report_lead_time"),
        ('[ownership]\nswitch_split = ["1/2", "1/3"]\n', "switch_split"),
        ('[ownership]\ncredit_point = "SIGNING"\n', "credit_point"),
    ],
)
def test_a_bad_policy_names_the_file_and_the_key(tmp_path: Path, text: str, named: str) -> None:
    write(tmp_path, "sh-002", text)
    with pytest.raises(PolicyFileError) as problem:
        OwnershipPolicies.load(tmp_path)
    assert "sh-002.toml" in str(problem.value) and named.split("_")[0] in str(problem.value)
