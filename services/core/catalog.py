"""The event catalogue, loaded once: Avro schemas per event type and the topic each type goes to."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from schemas import EVENTS_DIR, TOPICS_FILE, TYPES_DIR

NAMESPACE = "anchang.events"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str
    why: str
    event_types: tuple[str, ...]
    dead_letter: bool = False
    # None: clients may publish every type; else only these (the rest are decided by Anchang itself).
    client_event_types: tuple[str, ...] | None = None
    # A command topic holds requests to a decision processor, not facts: read-model projectors skip it.
    commands: bool = False

    def client_may_publish(self, event_type: str) -> bool:
        return self.client_event_types is None or event_type in self.client_event_types

    def key_of(self, event: dict[str, Any]) -> str:
        """The record key: the field named by the catalogue (``envelope.x`` or a top-level field)."""
        scope, _, field = self.key.rpartition(".")
        source = event[scope] if scope else event
        return str(source[field])


@dataclass(frozen=True)
class EventSchema:
    event_type: str
    parsed: Any  # fastavro-parsed, for reading and writing
    json: dict[str, Any]  # self-contained schema: shared types written inline
    text: str  # ``json`` serialized, as registered with the schema registry
    field_names: frozenset[str]


@dataclass(frozen=True)
class Catalogue:
    topics: dict[str, Topic]
    schemas: dict[str, EventSchema]
    topic_of_type: dict[str, Topic]

    @property
    def dead_letter_topic(self) -> Topic:
        return next(topic for topic in self.topics.values() if topic.dead_letter)

    @property
    def event_topics(self) -> list[Topic]:
        return [topic for topic in self.topics.values() if not topic.dead_letter]

    @property
    def fact_topics(self) -> list[Topic]:
        """Topics of facts and observations: what read models project (command topics are left out)."""
        return [topic for topic in self.event_topics if not topic.commands]


def _shared_types() -> dict[str, Any]:
    """Raw JSON of ``types/*.avsc`` by full name."""
    types: dict[str, Any] = {}
    for path in sorted(TYPES_DIR.glob("*.avsc")):
        raw = json.loads(path.read_text())
        types[f"{raw.get('namespace', NAMESPACE)}.{raw['name']}"] = raw
    return types


def inline_shared_types(schema: Any, shared: dict[str, Any], defined: set[str] | None = None) -> Any:
    """A self-contained copy of ``schema``: each shared type it references is written out in full at
    its first use and referenced by name afterwards (Avro forbids defining a name twice)."""
    defined = set() if defined is None else defined
    if isinstance(schema, str):
        if schema in shared and schema not in defined:
            defined.add(schema)
            return inline_shared_types(shared[schema], shared, defined)
        return schema
    if isinstance(schema, list):
        return [inline_shared_types(branch, shared, defined) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    if "name" in schema and schema.get("type") in ("record", "enum", "fixed"):
        defined.add(
            schema["name"] if "." in schema["name"] else f"{schema.get('namespace', NAMESPACE)}.{schema['name']}"
        )
    copy = dict(schema)
    if schema.get("type") == "record":
        copy["fields"] = [
            {**field, "type": inline_shared_types(field["type"], shared, defined)} for field in schema["fields"]
        ]
    elif schema.get("type") == "array":
        copy["items"] = inline_shared_types(schema["items"], shared, defined)
    elif schema.get("type") == "map":
        copy["values"] = inline_shared_types(schema["values"], shared, defined)
    elif isinstance(schema.get("type"), (dict, list)):
        copy["type"] = inline_shared_types(schema["type"], shared, defined)
    return copy


def _load_event(path: Path, shared: dict[str, Any]) -> EventSchema:
    raw = json.loads(path.read_text())
    if raw.get("name") != path.stem or raw.get("namespace") != NAMESPACE:
        raise ValueError(f"{path}: record name must equal the file name in namespace {NAMESPACE}")
    inlined = inline_shared_types(raw, shared)
    text = json.dumps(inlined, ensure_ascii=False, separators=(",", ":"))
    parsed = fastavro.parse_schema(inlined)
    return EventSchema(path.stem, parsed, inlined, text, frozenset(field["name"] for field in raw["fields"]))


def _load_topics() -> dict[str, Topic]:
    raw = tomllib.loads(TOPICS_FILE.read_text())
    return {
        name: Topic(
            name=name,
            partitions=int(spec["partitions"]),
            key=spec["key"],
            why=" ".join(spec["why"].split()),
            event_types=tuple(spec["event_types"]),
            dead_letter=bool(spec.get("dead_letter", False)),
            client_event_types=tuple(spec["client_event_types"]) if "client_event_types" in spec else None,
            commands=bool(spec.get("commands", False)),
        )
        for name, spec in raw["topics"].items()
    }


@cache
def load_catalogue() -> Catalogue:
    shared = _shared_types()
    schemas = {path.stem: _load_event(path, shared) for path in sorted(EVENTS_DIR.glob("*.avsc"))}
    topics = _load_topics()
    topic_of_type: dict[str, Topic] = {}
    for topic in topics.values():
        for event_type in topic.event_types:
            if event_type in topic_of_type:
                raise ValueError(f"{event_type} is routed to both {topic_of_type[event_type].name} and {topic.name}")
            if event_type not in schemas:
                raise ValueError(f"{topic.name} lists {event_type}, which has no schema in {EVENTS_DIR}")
            topic_of_type[event_type] = topic
    if unrouted := set(schemas) - set(topic_of_type):
        raise ValueError(f"event types without a topic: {sorted(unrouted)}")
    return Catalogue(topics, schemas, topic_of_type)
