"""The Avro event catalogue: conventions, topic keys, round trips and backward-transitive compatibility.

Schemas live in ``schemas/types`` (shared named types) and ``schemas/events`` (one record per event type,
listed in ``schemas/topics.toml``). The loader below is deliberately minimal and local to these tests; the
production loader is ``services/core/catalog.py``.
"""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from fastavro.schema import UnknownType

from services.registry.compat import incompatibilities

ROOT = Path(__file__).resolve().parents[1]

SCHEMAS = ROOT / "schemas"
TYPES_DIR = SCHEMAS / "types"
EVENTS_DIR = SCHEMAS / "events"
NAMESPACE = "anchang.events"
ENVELOPE = f"{NAMESPACE}.Envelope"
NAMED_KINDS = {"record", "enum", "fixed"}
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

# Fields of the lead-owned shared types that have no "doc" yet (reported; not changed here).
Schema = Any  # JSON-shaped Avro schema: str | list | dict


# --------------------------------------------------------------------------------------------------------
# Minimal loader
# --------------------------------------------------------------------------------------------------------


def full_name(schema: Mapping[str, Any]) -> str:
    name = schema["name"]
    return name if "." in name else f"{schema.get('namespace', '')}.{name}".lstrip(".")


def parse_types(type_schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """Parse shared named types into a fastavro named_schemas dict, whatever order they come in.

    Each type is parsed with ``expand=True`` so that the stored definitions are self-contained (Actor holds
    Role, Envelope holds Actor): events that reference them then expand completely.
    """
    named: dict[str, Any] = {}
    pending = list(type_schemas)
    while pending:
        unresolved = []
        for schema in pending:
            trial = dict(named)
            try:
                fastavro.parse_schema(copy.deepcopy(schema), named_schemas=trial, expand=True)
            except UnknownType:
                unresolved.append(schema)
            else:
                named = trial
        if len(unresolved) == len(pending):
            names = [full_name(s) for s in unresolved]
            raise AssertionError(f"shared types reference unknown types: {names}")
        pending = unresolved
    return named


def expand(schema: dict[str, Any], named: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with every named reference replaced by its definition (fastavro's expanded form)."""
    expanded = fastavro.parse_schema(copy.deepcopy(schema), named_schemas=dict(named), expand=True)
    return cast(dict[str, Any], strip_internal(expanded))


def strip_internal(schema: Schema) -> Schema:
    """Drop fastavro's private ``__*`` keys, recursively."""
    if isinstance(schema, list):
        return [strip_internal(s) for s in schema]
    if isinstance(schema, dict):
        return {k: strip_internal(v) for k, v in schema.items() if not k.startswith("__")}
    return schema


def canonical_json(expanded: Schema) -> str:
    """Standalone Avro JSON for the ``avro`` package: each named type defined once, then referenced.

    fastavro's expansion inlines a named type at every use (Role inside every Actor, say); the Avro
    specification allows only one definition per name, so later occurrences become references again.
    """
    seen: set[str] = set()

    def walk(node: Schema) -> Schema:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, str):
            return node
        kind = node["type"]
        if not isinstance(kind, str):  # {"type": {...}} wrapper
            return {**node, "type": walk(kind)}
        if kind in NAMED_KINDS:
            name = full_name(node)
            if name in seen:
                return name
            seen.add(name)
        if kind == "record":
            return {**node, "fields": [{**f, "type": walk(f["type"])} for f in node["fields"]]}
        if kind == "array":
            return {**node, "items": walk(node["items"])}
        if kind == "map":
            return {**node, "values": walk(node["values"])}
        return node

    return json.dumps(walk(strip_internal(expanded)), ensure_ascii=False)


def load_json_dir(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.avsc"))}


TYPES = load_json_dir(TYPES_DIR)
EVENTS = load_json_dir(EVENTS_DIR)
NAMED = parse_types(list(TYPES.values()))
TOPICS: dict[str, dict[str, Any]] = tomllib.loads((SCHEMAS / "topics.toml").read_text(encoding="utf-8"))["topics"]
TOPIC_OF_EVENT = {event: topic for topic, spec in TOPICS.items() for event in spec.get("event_types", [])}


def walk_schemas(schema: Schema) -> Iterator[dict[str, Any]]:
    """Every dict-shaped (complex or annotated) schema nested in ``schema``, itself included."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_schemas(branch)
    elif isinstance(schema, dict):
        yield schema
        kind = schema["type"]
        if not isinstance(kind, str):
            yield from walk_schemas(kind)
        elif kind == "record":
            for field in schema["fields"]:
                yield from walk_schemas(field["type"])
        elif kind == "array":
            yield from walk_schemas(schema["items"])
        elif kind == "map":
            yield from walk_schemas(schema["values"])


def records_with_fields(schema: Schema) -> Iterator[tuple[str, dict[str, Any]]]:
    for node in walk_schemas(schema):
        if node["type"] == "record":
            for field in node["fields"]:
                yield full_name(node), field


# --------------------------------------------------------------------------------------------------------
# 1. One file per event type, and the file conventions
# --------------------------------------------------------------------------------------------------------


def test_every_event_type_has_exactly_one_schema_and_vice_versa() -> None:
    listed = [event for spec in TOPICS.values() for event in spec.get("event_types", [])]
    duplicates = sorted({e for e in listed if listed.count(e) > 1})
    assert not duplicates, f"event types in more than one topic: {duplicates}"
    files = sorted(EVENTS)
    assert sorted(listed) == files, (
        f"in topics.toml without a schema: {sorted(set(listed) - set(files))}; "
        f"schema without a topic: {sorted(set(files) - set(listed))}"
    )


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_event_file_conventions(event_type: str) -> None:
    schema = EVENTS[event_type]
    assert schema["type"] == "record"
    assert schema["name"] == event_type, "record name must equal the file name"
    assert schema["namespace"] == NAMESPACE
    first = schema["fields"][0]
    assert (first["name"], first["type"]) == ("envelope", ENVELOPE), "the envelope must be field 0, by name"
    names = [f["name"] for f in schema["fields"]]
    assert len(names) == len(set(names)), "duplicate field names"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names), f"payload fields must be snake_case: {names}"
    doc = schema.get("doc", "")
    assert re.search(r"\b[A-Z]{2,4}-X?\d{2}\b", doc), "the record doc must name the rule ids it serves"
    assert re.search(r"[\u4e00-\u9fff]", doc), "the record doc must give the Chinese term"


@pytest.mark.parametrize("name", sorted(TYPES))
def test_shared_type_file_conventions(name: str) -> None:
    schema = TYPES[name]
    assert schema["name"] == name, "type name must equal the file name"
    assert schema["namespace"] == NAMESPACE
    assert schema.get("doc"), "shared types need a doc"


# --------------------------------------------------------------------------------------------------------
# 2. Enums, union defaults, docs
# --------------------------------------------------------------------------------------------------------


ALL_EXPANDED = {name: expand(schema, NAMED) for name, schema in {**TYPES, **EVENTS}.items()}


@pytest.mark.parametrize("name", sorted(ALL_EXPANDED))
def test_enums_start_with_unknown_and_default_to_it(name: str) -> None:
    enums = [node for node in walk_schemas(ALL_EXPANDED[name]) if node["type"] == "enum"]
    for enum in enums:
        assert enum["symbols"][0] == "UNKNOWN", f"{enum['name']}: first symbol must be UNKNOWN"
        assert enum.get("default") == "UNKNOWN", f"{enum['name']}: default must be UNKNOWN"
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", s) for s in enum["symbols"]), enum["symbols"]
        assert len(set(enum["symbols"])) == len(enum["symbols"]), f"{enum['name']}: duplicate symbols"


def _valid_for(default: Any, branch: Schema) -> bool:
    if branch == "null":
        return default is None
    try:
        return bool(fastavro.validation.validate(default, branch, raise_errors=False))
    except Exception:
        return False


@pytest.mark.parametrize("name", sorted(ALL_EXPANDED))
def test_union_defaults_match_the_first_branch(name: str) -> None:
    for record, field in records_with_fields(ALL_EXPANDED[name]):
        union = field["type"]
        if not isinstance(union, list):
            continue
        where = f"{record}.{field['name']}"
        if union[0] == "null":
            assert "default" in field and field["default"] is None, f"{where}: optional fields default to null"
        if "default" in field:
            assert _valid_for(field["default"], union[0]), (
                f"{where}: default {field['default']!r} is not valid for the first branch {union[0]!r}"
            )


@pytest.mark.parametrize("name", sorted({**TYPES, **EVENTS}))
def test_every_field_has_a_doc(name: str) -> None:
    schema = {**TYPES, **EVENTS}[name]
    missing = [
        f"{record}.{field['name']}"
        for record, field in records_with_fields(schema)
        if not str(field.get("doc", "")).strip()
    ]
    assert not missing, f"fields without a doc: {missing}"


# --------------------------------------------------------------------------------------------------------
# 3. Topic keys
# --------------------------------------------------------------------------------------------------------


def _is_string(schema: Schema) -> bool:
    return schema == "string" or (isinstance(schema, dict) and schema.get("type") == "string")


@pytest.mark.parametrize("event_type", sorted(TOPIC_OF_EVENT))
def test_topic_key_field_exists_and_is_a_string(event_type: str) -> None:
    topic = TOPIC_OF_EVENT[event_type]
    key = TOPICS[topic]["key"]
    expanded = ALL_EXPANDED[event_type]
    if key.startswith("envelope."):
        (envelope,) = (f["type"] for f in expanded["fields"] if f["name"] == "envelope")
        fields = {f["name"]: f["type"] for f in envelope["fields"]}
        key = key.removeprefix("envelope.")
    else:
        fields = {f["name"]: f["type"] for f in expanded["fields"]}
    assert key in fields, f"{event_type} is on {topic}, keyed by {key!r}, but has no such top-level field"
    assert _is_string(fields[key]), f"{event_type}.{key} must be a non-null string, not {fields[key]!r}"


# --------------------------------------------------------------------------------------------------------
# 4. Sample records round-trip
# --------------------------------------------------------------------------------------------------------

SAMPLE_TIME = datetime(2025, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)


def sample(schema: Schema, *, full: bool) -> Any:
    """A valid datum for an expanded schema: minimal, or (``full``) with every optional part filled."""
    if isinstance(schema, list):
        return sample(schema[-1] if full else schema[0], full=full)
    if isinstance(schema, str):
        return {
            "null": None,
            "boolean": True,
            "int": 3,
            "long": 123_456,
            "float": 1.5,
            "double": 2.25,
            "bytes": b"\x01",
            "string": "s",
        }[schema]
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical in {"timestamp-millis", "timestamp-micros"}:
        return SAMPLE_TIME
    if logical == "uuid":
        return uuid.UUID(int=1)
    if logical == "date":
        return SAMPLE_TIME.date()
    if not isinstance(kind, str) or kind in PRIMITIVES:
        return sample(kind, full=full)
    if kind == "record":
        return {f["name"]: sample(f["type"], full=full) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][-1 if full else 0]
    if kind == "array":
        return [sample(schema["items"], full=full)] if full else []
    if kind == "map":
        return {"k": sample(schema["values"], full=full)} if full else {}
    if kind == "fixed":
        return b"\x00" * schema["size"]
    raise AssertionError(f"no sample for {schema!r}")


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_sample_record_round_trips(event_type: str, full: bool) -> None:
    datum = sample(ALL_EXPANDED[event_type], full=full)
    datum["envelope"]["event_type"] = event_type
    parsed = fastavro.parse_schema(copy.deepcopy(EVENTS[event_type]), named_schemas=dict(NAMED))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, datum)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, parsed, parsed) == datum


# --------------------------------------------------------------------------------------------------------
# 5. BACKWARD_TRANSITIVE across git history
# --------------------------------------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def _git_json(sha: str, path: str) -> dict[str, Any] | None:
    shown = git("show", f"{sha}:{path}")
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def types_at(sha: str) -> list[dict[str, Any]]:
    """The shared types as committed at ``sha``; any type missing there is taken from the working tree."""
    listing = git("ls-tree", "--name-only", sha, f"{TYPES_DIR.relative_to(ROOT).as_posix()}/")
    old: dict[str, dict[str, Any]] = {}
    for path in listing.stdout.split():
        if path.endswith(".avsc") and (schema := _git_json(sha, path)) is not None:
            old[full_name(schema)] = schema
    current = {full_name(s): s for s in TYPES.values()}
    return list({**current, **old}.values())


def history_pairs() -> Iterator[tuple[str, str, str, str]]:
    """(path, sha, reader_json, writer_json) for every committed version of every current schema."""
    named_at: dict[str, dict[str, Any]] = {}
    for path in sorted([*TYPES_DIR.glob("*.avsc"), *EVENTS_DIR.glob("*.avsc")]):
        rel = path.relative_to(ROOT).as_posix()
        current = json.loads(path.read_text(encoding="utf-8"))
        reader = canonical_json(expand(current, NAMED))
        shas = git("log", "--format=%H", "--", rel).stdout.split()
        for sha in shas:
            old = _git_json(sha, rel)
            if old is None:  # the commit deleted the file: no version to read
                continue
            if sha not in named_at:
                named_at[sha] = parse_types(types_at(sha))
            yield rel, sha, reader, canonical_json(expand(old, named_at[sha]))


def test_backward_transitive_against_git_history() -> None:
    if git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git work tree: no schema history to check")
    failures = []
    pairs = 0
    for rel, sha, reader, writer in history_pairs():
        pairs += 1
        problems = incompatibilities(reader, writer)
        if problems:
            failures.append(f"{rel}: cannot read data written at {sha[:12]}:\n    " + "\n    ".join(problems))
    print(f"BACKWARD_TRANSITIVE: checked {pairs} (current, committed) schema pairs")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", sorted(ALL_EXPANDED))
def test_avro_package_accepts_each_schema(name: str) -> None:
    """The registry's checker (the ``avro`` package) parses each schema and accepts it against itself."""
    text = canonical_json(ALL_EXPANDED[name])
    assert incompatibilities(text, text) == []


def test_compatibility_check_is_not_vacuous() -> None:
    event_type = sorted(EVENTS)[0]
    current = expand(EVENTS[event_type], NAMED)
    assert incompatibilities(canonical_json(current), canonical_json(current)) == []

    with_required = copy.deepcopy(current)
    with_required["fields"].append({"name": "added_without_default", "type": "string", "doc": "x"})
    problems = incompatibilities(canonical_json(with_required), canonical_json(current))
    assert problems, "adding a required field without a default must break backward compatibility"
    assert any("added_without_default" in p for p in problems), problems

    with_optional = copy.deepcopy(current)
    with_optional["fields"].append({"name": "added_optional", "type": ["null", "string"], "default": None, "doc": "x"})
    assert incompatibilities(canonical_json(with_optional), canonical_json(current)) == []


def test_canonical_json_defines_each_named_type_once() -> None:
    for name, expanded in ALL_EXPANDED.items():
        text = canonical_json(expanded)
        for type_name in NAMED:
            definitions = text.count(f'"name": "{type_name}"')
            assert definitions <= 1, f"{name}: {type_name} defined {definitions} times"


def _uuids_as_text(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {key: _uuids_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_uuids_as_text(item) for item in value]
    return value


@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_compiled_reader_reads_what_fastavro_reads(event_type: str, full: bool) -> None:
    """The codec's generated reader (services/core/codec.py) covers every event type and agrees with fastavro,
    logical types included (uuids come back as text)."""
    from services.core.catalog import load_catalogue
    from services.core.codec import compile_reader

    parsed = load_catalogue().schemas[event_type].parsed
    reader = compile_reader(parsed)
    assert reader is not None, f"{event_type} falls back to fastavro"
    datum = sample(ALL_EXPANDED[event_type], full=full)
    datum["envelope"]["event_type"] = event_type
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, datum)
    expected = fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), parsed)
    assert reader(buffer.getvalue(), 0) == _uuids_as_text(expected)
