"""Durable state of the schema registry, in one SQLite file.

Schema ids are global: the same schema (modulo whitespace and key order) gets the same id under every
subject, as Confluent does. Each subject holds versions 1..n pointing at ids; deleting a subject only
marks its versions, so ids and version numbers are never reused. Compatibility is decided here, inside
the write transaction, so two concurrent registrations cannot both pass against the same history."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, cast

import avro.schema
import fastavro

from services.registry.compat import incompatibilities


class Compatibility(StrEnum):
    """Confluent's compatibility levels: which earlier versions a new one must stay readable with."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """The new schema must read data written with the old ones."""
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """The old schemas must read data written with the new one."""
        return self.startswith(("FORWARD", "FULL"))


DEFAULT_COMPATIBILITY = Compatibility.BACKWARD_TRANSITIVE


class RegistryError(Exception):
    """A refusal the REST layer reports as Confluent's ``{"error_code", "message"}`` body."""

    status: int = 500
    error_code: int = 50001

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SubjectNotFound(RegistryError):
    status, error_code = 404, 40401


class VersionNotFound(RegistryError):
    status, error_code = 404, 40402


class SchemaNotFound(RegistryError):
    status, error_code = 404, 40403


class SubjectSoftDeleted(RegistryError):
    status, error_code = 404, 40404


class SubjectNotSoftDeleted(RegistryError):
    status, error_code = 404, 40405


class SubjectConfigNotFound(RegistryError):
    status, error_code = 404, 40408


class IncompatibleSchema(RegistryError):
    status, error_code = 409, 409


class InvalidSchema(RegistryError):
    status, error_code = 422, 42201


class InvalidVersion(RegistryError):
    status, error_code = 422, 42202


class InvalidCompatibilityLevel(RegistryError):
    status, error_code = 422, 42203


@dataclass(frozen=True)
class SubjectVersion:
    """One version of a subject, with the schema text as first registered under its id."""

    subject: str
    version: int
    schema_id: int
    schema: str


def canonical_form(schema: str) -> str:
    """The identity of a schema: its JSON with whitespace and key order normalised.

    Avro's Parsing Canonical Form is not used because it drops defaults, docs and logical types: adding
    a default would then look like the schema already registered, and no new version would be made."""
    try:
        parsed = json.loads(schema)
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        fastavro.parse_schema(parsed)  # the serdes' parser; it also checks defaults against their types
        avro.schema.parse(schema)  # the compatibility checker's parser
    except Exception as error:  # any parser's refusal means the text is not a usable Avro schema
        raise InvalidSchema(f"Invalid schema {schema} of type AVRO, details: {error}") from error
    return canonical


def compatibility_errors(level: Compatibility, candidate: str, history: list[SubjectVersion]) -> list[str]:
    """Why ``candidate`` may not follow ``history`` (oldest first) under ``level``; empty if it may."""
    if level is Compatibility.NONE:
        return []
    earlier = history if level.transitive else history[-1:]
    errors: list[str] = []
    for previous in reversed(earlier):
        if level.backward:
            errors += [
                f"backward, reading version {previous.version}: {message}"
                for message in incompatibilities(candidate, previous.schema)
            ]
        if level.forward:
            errors += [
                f"forward, read by version {previous.version}: {message}"
                for message in incompatibilities(previous.schema, candidate)
            ]
    return errors


_GLOBAL = ""  # the config row of the global level; an empty subject cannot appear in a URL path

_DDL = """
CREATE TABLE IF NOT EXISTS schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    canonical TEXT NOT NULL UNIQUE,
    schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas (id),
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS versions_by_schema ON versions (schema_id);
CREATE TABLE IF NOT EXISTS config (
    subject TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
"""

_HISTORY = """
SELECT v.subject, v.version, v.schema_id, s.schema FROM versions v JOIN schemas s ON s.id = v.schema_id
WHERE v.subject = ? AND (v.deleted = 0 OR ?) ORDER BY v.version
"""


_Mode = Literal["DEFERRED", "IMMEDIATE"]


class SchemaStore:
    """Thread-safe: one connection, used under a lock, so the app may call it from its worker threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an id handed to a producer must survive a crash
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_DDL)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, mode: _Mode = "DEFERRED") -> Iterator[sqlite3.Connection]:
        """IMMEDIATE takes SQLite's write lock up front, so a check-then-insert cannot interleave."""
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _history(db: sqlite3.Connection, subject: str, deleted: bool) -> list[SubjectVersion]:
        return [SubjectVersion(*row) for row in db.execute(_HISTORY, (subject, deleted))]

    @staticmethod
    def _level(db: sqlite3.Connection, subject: str) -> Compatibility:
        row = db.execute(
            "SELECT compatibility FROM config WHERE subject IN (?, ?) ORDER BY subject = ? LIMIT 1",
            (subject, _GLOBAL, _GLOBAL),
        ).fetchone()
        return Compatibility(row[0]) if row else DEFAULT_COMPATIBILITY

    def subjects(self, *, deleted: bool = False) -> list[str]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT DISTINCT subject FROM versions WHERE deleted = 0 OR ? ORDER BY subject", (deleted,)
            )
            return [row[0] for row in rows]

    def history(self, subject: str, *, deleted: bool = False) -> list[SubjectVersion]:
        """The subject's versions, oldest first; SubjectNotFound if it has none."""
        with self._transaction() as db:
            history = self._history(db, subject, deleted)
        if not history:
            raise SubjectNotFound(f"Subject '{subject}' not found.")
        return history

    def version(self, subject: str, version: int | None, *, deleted: bool = False) -> SubjectVersion:
        """One version of the subject; ``None`` is the latest."""
        history = self.history(subject, deleted=deleted)
        if version is None:
            return history[-1]
        for item in history:
            if item.version == version:
                return item
        raise VersionNotFound(f"Version {version} not found.")

    def schema(self, schema_id: int) -> str:
        with self._transaction() as db:
            row = db.execute("SELECT schema FROM schemas WHERE id = ?", (schema_id,)).fetchone()
        if row is None:
            raise SchemaNotFound(f"Schema {schema_id} not found")
        return str(row[0])

    def usages(self, schema_id: int, *, deleted: bool = False) -> list[tuple[str, int]]:
        """The (subject, version) pairs that point at the schema id."""
        self.schema(schema_id)  # raises SchemaNotFound for an unknown id
        with self._transaction() as db:
            rows = db.execute(
                "SELECT subject, version FROM versions WHERE schema_id = ? AND (deleted = 0 OR ?)"
                " ORDER BY subject, version",
                (schema_id, deleted),
            )
            return [(row[0], row[1]) for row in rows]

    def lookup(self, subject: str, schema: str, *, deleted: bool = False) -> SubjectVersion:
        """The latest version of the subject holding this schema."""
        canonical = canonical_form(schema)
        history = self.history(subject, deleted=deleted)
        with self._transaction() as db:
            row = db.execute("SELECT id FROM schemas WHERE canonical = ?", (canonical,)).fetchone()
        matches = [item for item in history if row is not None and item.schema_id == row[0]]
        if not matches:
            raise SchemaNotFound("Schema not found")
        return matches[-1]

    def register(self, subject: str, schema: str) -> SubjectVersion:
        """Add the schema as the subject's next version, or return the version already holding it."""
        canonical = canonical_form(schema)
        with self._transaction("IMMEDIATE") as db:
            history = self._history(db, subject, deleted=False)
            row = db.execute("SELECT id FROM schemas WHERE canonical = ?", (canonical,)).fetchone()
            existing = [item for item in history if row is not None and item.schema_id == row[0]]
            if existing:
                return existing[-1]
            errors = compatibility_errors(self._level(db, subject), schema, history)
            if errors:
                raise IncompatibleSchema(
                    f'Schema being registered is incompatible with an earlier schema for subject "{subject}",'
                    f" details: {errors}"
                )
            schema_id = row[0] if row else self._insert_schema(db, canonical, schema)
            # Soft-deleted versions keep their numbers, as in Confluent.
            (latest,) = db.execute("SELECT MAX(version) FROM versions WHERE subject = ?", (subject,)).fetchone()
            version = (latest or 0) + 1
            db.execute(
                "INSERT INTO versions (subject, version, schema_id) VALUES (?, ?, ?)",
                (subject, version, schema_id),
            )
            (text,) = db.execute("SELECT schema FROM schemas WHERE id = ?", (schema_id,)).fetchone()
            return SubjectVersion(subject, version, schema_id, text)

    @staticmethod
    def _insert_schema(db: sqlite3.Connection, canonical: str, schema: str) -> int:
        cursor = db.execute("INSERT INTO schemas (canonical, schema) VALUES (?, ?)", (canonical, schema))
        return cast(int, cursor.lastrowid)

    def check(self, subject: str, schema: str, version: int | None) -> list[str]:
        """Incompatibilities of ``schema`` with one version, or (``None``) with those the level covers."""
        canonical_form(schema)
        with self._transaction() as db:
            level = self._level(db, subject)
            history = self._history(db, subject, deleted=False)
        if version is not None:
            if not history:
                raise SubjectNotFound(f"Subject '{subject}' not found.")
            history = [item for item in history if item.version == version]
            if not history:
                raise VersionNotFound(f"Version {version} not found.")
        return compatibility_errors(level, schema, history)

    def global_compatibility(self) -> Compatibility:
        with self._transaction() as db:
            return self._level(db, _GLOBAL)

    def subject_compatibility(self, subject: str) -> Compatibility | None:
        """The subject's own level; ``None`` if it follows the global one."""
        with self._transaction() as db:
            row = db.execute("SELECT compatibility FROM config WHERE subject = ?", (subject,)).fetchone()
        return Compatibility(row[0]) if row else None

    def set_compatibility(self, level: Compatibility, subject: str | None = None) -> None:
        """Set the subject's level, or the global one when ``subject`` is ``None``."""
        with self._transaction("IMMEDIATE") as db:
            db.execute(
                "INSERT INTO config (subject, compatibility) VALUES (?, ?)"
                " ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                (_GLOBAL if subject is None else subject, level.value),
            )

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete the subject's versions, or erase them once soft-deleted; returns their numbers."""
        with self._transaction("IMMEDIATE") as db:
            rows = db.execute("SELECT version, deleted FROM versions WHERE subject = ?", (subject,)).fetchall()
            if not rows:
                raise SubjectNotFound(f"Subject '{subject}' not found.")
            live = [version for version, deleted in rows if not deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeleted(
                        f"Subject '{subject}' was not deleted first before being permanently deleted"
                    )
                db.execute("DELETE FROM versions WHERE subject = ?", (subject,))
                db.execute("DELETE FROM config WHERE subject = ?", (subject,))
                return sorted(version for version, _ in rows)
            if not live:
                raise SubjectSoftDeleted(
                    f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
                )
            db.execute("UPDATE versions SET deleted = 1 WHERE subject = ?", (subject,))
            return sorted(live)
