"""What a projection is: a fold of decoded events into SQL rows, run inside the processor's transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import JSON, Connection, Dialect, Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import dml
from sqlalchemy.sql.elements import ColumnElement


@dataclass(frozen=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    event_type: str
    record: dict[str, Any]  # the whole Avro record, read with our current schema
    # The envelope fields every projection reads, several times per event: taken out of the record once.
    event_id: str = field(init=False, repr=False, compare=False)
    office_id: str = field(init=False, repr=False, compare=False)
    occurred_at: datetime = field(init=False, repr=False, compare=False)
    recorded_at: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        envelope = self.envelope
        set_field = object.__setattr__  # the dataclass is frozen
        set_field(self, "event_id", str(envelope["event_id"]))  # str() in case a record holds a uuid.UUID
        set_field(self, "office_id", envelope["office_id"])
        set_field(self, "occurred_at", envelope["occurred_at"])
        set_field(self, "recorded_at", envelope["recorded_at"])

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]  # type: ignore[no-any-return]

    @property
    def position(self) -> tuple[str, int, int]:
        """Where the record sits in the log: (topic, partition, offset)."""
        return self.topic, self.partition, self.offset

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


class BulkInsert:
    """INSERT of many rows with the given ``columns`` into ``table`` (a duplicate key raises IntegrityError).

    Why not ``connection.execute(table.insert(), rows)``: for an executemany SQLAlchemy builds and type-processes
    every row's parameters in Python (about 35 µs a row: most of a projection's time at 5,000-event batches).
    Here SQLAlchemy compiles the statement once per dialect, each value goes through the bind processor
    SQLAlchemy would have used for its column type (DateTime → text on SQLite, JSON → ``json.dumps``, Boolean →
    int, …), and the DB-API driver's executemany binds the rows: the rows stored are the same.

    ``json_text`` names JSON columns whose values the caller passes already serialized, as ``json.dumps`` (the
    JSON type's serializer) would have written them, to spare a second walk over the value."""

    def __init__(self, table: Table, columns: Sequence[str], json_text: Collection[str] = ()) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.json_text = frozenset(json_text)
        self._values_of = itemgetter(*self.columns) if len(self.columns) > 1 else lambda row: (row[self.columns[0]],)
        self._prepared: WeakKeyDictionary[Dialect, _Prepared | None] = WeakKeyDictionary()

    def statement(self, dialect: Dialect) -> dml.Insert:
        return self.table.insert()

    def execute(self, connection: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write rows given as mappings that have (at least) ``columns``."""
        self.execute_values(connection, [self._values_of(row) for row in rows])

    def execute_values(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Write rows given as sequences of values in the order of ``columns`` (the cheapest form to build)."""
        if not rows:
            return
        dialect = connection.dialect
        try:
            prepared = self._prepared[dialect]
        except KeyError:
            prepared = _Prepared.of(self.statement(dialect), dialect, self.columns, self.json_text)
            self._prepared[dialect] = prepared
        if prepared is None:  # a statement the fast path does not cover: let SQLAlchemy run it
            connection.execute(self.statement(dialect), [dict(zip(self.columns, row, strict=True)) for row in rows])
        else:
            connection.exec_driver_sql(prepared.sql, prepared.parameters(rows))


class Upsert(BulkInsert):
    """INSERT … ON CONFLICT (keys) DO UPDATE of many rows, on SQLite and PostgreSQL, run like ``BulkInsert``.

    ``update`` maps columns to expressions built from ``excluded`` (pass a callable) or defaults to overwriting
    every non-key column with the new row's value."""

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        keys: Sequence[str],
        update: Mapping[str, Any] | None = None,
        json_text: Collection[str] = (),
    ) -> None:
        super().__init__(table, columns, json_text)
        self.keys = tuple(keys)
        self.update = update

    def statement(self, dialect: Dialect) -> dml.Insert:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(self.table)
        excluded = statement.excluded
        if self.update is None:
            set_: dict[str, Any] = {column: excluded[column] for column in self.columns if column not in self.keys}
        else:
            set_ = {column: (value(excluded) if callable(value) else value) for column, value in self.update.items()}
        return statement.on_conflict_do_update(index_elements=list(self.keys), set_=set_)


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled for one dialect, and how to turn rows into its DB-API parameters."""

    sql: str
    order: tuple[int, ...] | None  # the column index of each parameter, or None if it is the columns' order
    conversions: tuple[tuple[int, Callable[[Any], Any]], ...]  # (parameter index, bind processor)
    names: tuple[str, ...] | None  # parameter names, for named paramstyles (psycopg); None for positional

    @classmethod
    def of(
        cls, statement: Any, dialect: Dialect, columns: tuple[str, ...], json_text: frozenset[str]
    ) -> _Prepared | None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
        if set(names) - set(columns) or compiled.escaped_bind_names or compiled.literal_execute_params:
            return None  # bound values that are not row columns (defaults, literals in ``update``): not covered
        conversions = []
        for index, name in enumerate(names):
            type_ = compiled.binds[name].type
            if name in json_text:
                if not isinstance(type_, JSON):
                    raise TypeError(f"json_text column {name} is {type_!r}, not JSON")
                continue  # already serialized, as the JSON type's processor would have done
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                conversions.append((index, processor))
        order = tuple(columns.index(name) for name in names)
        return cls(
            sql=compiled.string,
            order=None if order == tuple(range(len(columns))) else order,
            conversions=tuple(conversions),
            names=None if compiled.positional else names,
        )

    def parameters(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        order, conversions = self.order, self.conversions
        if order is None and not conversions and self.names is None:
            return [tuple(row) for row in rows]
        parameters: list[Any] = []
        for row in rows:
            values = list(row) if order is None else [row[index] for index in order]
            for index, processor in conversions:
                values[index] = processor(values[index])
            parameters.append(tuple(values) if self.names is None else dict(zip(self.names, values, strict=True)))
        return parameters


@lru_cache(maxsize=256)
def _plain_upsert(table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> Upsert:
    return Upsert(table, columns, keys)


def upsert(
    connection: Connection,
    table: Table,
    rows: Iterable[dict[str, Any]],
    keys: Sequence[str],
    update: dict[str, Any] | None = None,
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL (see ``Upsert``), for rows that all have
    the keys of the first. Without ``update`` the compiled statement is cached per table and columns."""
    rows = list(rows)
    if not rows:
        return
    columns = tuple(rows[0])
    statement = _plain_upsert(table, columns, tuple(keys)) if update is None else Upsert(table, columns, keys, update)
    statement.execute(connection, rows)


def newer(excluded: Any, table: Table, column: str, by: str) -> ColumnElement[Any]:
    """The incoming value of ``column`` if its row is at least as recent by ``by``, else the stored one."""
    return case((excluded[by] >= table.c[by], excluded[column]), else_=table.c[column])
