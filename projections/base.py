"""What a projection is: a fold of decoded events into SQL rows, run inside the processor's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    event_type: str
    record: dict[str, Any]  # the whole Avro record, read with our current schema

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]  # type: ignore[no-any-return]

    @property
    def event_id(self) -> str:
        return str(self.envelope["event_id"])

    @property
    def office_id(self) -> str:
        return str(self.envelope["office_id"])

    @property
    def occurred_at(self) -> datetime:
        return self.envelope["occurred_at"]  # type: ignore[no-any-return]

    @property
    def recorded_at(self) -> datetime:
        return self.envelope["recorded_at"]  # type: ignore[no-any-return]

    def payload(self) -> dict[str, Any]:
        return {key: value for key, value in self.record.items() if key != "envelope"}


class Projection(Protocol):
    """Folds a batch into SQL. Must be idempotent per event: the runner drops events it has seen, but a
    projection must not assume batch boundaries."""

    @property
    def tables(self) -> Sequence[Table]:
        """The tables it owns: a rebuild empties them."""
        ...

    def apply(self, connection: Connection, events: Sequence[ConsumedEvent]) -> None: ...


def upsert(
    connection: Connection,
    table: Table,
    rows: Iterable[dict[str, Any]],
    keys: Sequence[str],
    update: dict[str, Any] | None = None,
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL.

    ``update`` maps columns to expressions built from ``excluded`` (pass a callable) or defaults to
    overwriting every non-key column with the new row's value."""
    rows = list(rows)
    if not rows:
        return
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    excluded = statement.excluded
    if update is None:
        columns = [column for column in rows[0] if column not in keys]
        set_: dict[str, Any] = {column: excluded[column] for column in columns}
    else:
        set_ = {column: (value(excluded) if callable(value) else value) for column, value in update.items()}
    connection.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=set_), rows)


def newer(excluded: Any, table: Table, column: str, by: str) -> ColumnElement[Any]:
    """The incoming value of ``column`` if its row is at least as recent by ``by``, else the stored one."""
    return case((excluded[by] >= table.c[by], excluded[column]), else_=table.c[column])
