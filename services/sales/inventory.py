"""The unit inventory (房源) from a CSV file: reading and checking it, the UnitRegistered events it becomes, the
sample project, and the ``anchang units`` commands.

A CSV has a header line and one unit per line. Columns (any order; names are case-insensitive)::

    project_id, building, floor, number                  required
    unit_id                                               optional; default {project_id}-{building}-{floor:02d}{number}
    project_name, layout, area_sqm                        optional
    list_price_yuan  or  list_price_fen                   optional; at most one of them (元 with ≤ 2 decimals, or 分)

Units are only known to Anchang through UnitRegistered events (SALE-01: the manager checks availability against
this inventory), so importing means publishing one such event per line through the ingestion API.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REQUIRED_COLUMNS = ("project_id", "building", "floor", "number")
OPTIONAL_COLUMNS = ("unit_id", "project_name", "layout", "area_sqm", "list_price_yuan", "list_price_fen")
# The keys of a unit row, in the order of UnitRegistered's payload.
UNIT_FIELDS = (
    "unit_id",
    "project_id",
    "project_name",
    "building",
    "floor",
    "number",
    "layout",
    "area_sqm",
    "list_price_fen",
)
SAMPLE_COLUMNS = (
    "project_id",
    "project_name",
    "building",
    "floor",
    "number",
    "layout",
    "area_sqm",
    "list_price_yuan",
)
FLOORS = range(-10, 201)  # basements (parking units) up to super-tall towers
MAX_AREA_SQM = 10_000.0


class Registrar(StrEnum):
    """Roles that maintain the inventory: the 销售经理, or 内业 (the back-office clerk)."""

    SALES_MANAGER = "SALES_MANAGER"
    ADMIN_CLERK = "ADMIN_CLERK"


@dataclass(frozen=True)
class Problem:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class InventoryError(ValueError):
    """A CSV that cannot be imported; ``problems`` names each bad line and column."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(map(str, self.problems)))


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_units_csv(path: str | Path) -> list[dict[str, Any]]:
    """The units of a CSV file (see the module docstring), checked; raises InventoryError listing every problem."""
    return [row for _, row in read_units_csv_lines(path)]


def read_units_csv_lines(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Like ``read_units_csv``, each unit with its line number (for reporting what the API refused)."""
    # utf-8-sig: spreadsheet programs often save UTF-8 with a byte-order mark.
    with Path(path).open(encoding="utf-8-sig", newline="") as stream:
        return parse_units_csv(stream, str(path))


def parse_units_csv(stream: TextIO, source: str = "<csv>") -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(stream)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if problems := _header_problems(header):
        raise InventoryError(source, problems)
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, Any]]] = []
    problems = []
    first_line: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            problems.append(Problem(line, None, f"more cells than the {len(header)} columns of the header"))
            continue
        cells = {name: (value or "").strip() for name, value in raw.items() if name is not None}
        if not any(cells.values()):
            continue  # blank lines (or a row of empty cells) are not units
        row, row_problems = _parse_row(cells, line)
        problems.extend(row_problems)
        if row is None:
            continue
        if (earlier := first_line.setdefault(row["unit_id"], line)) != line:
            problems.append(Problem(line, "unit_id", f"unit {row['unit_id']} is already on line {earlier}"))
            continue
        rows.append((line, row))
    if problems:
        raise InventoryError(source, problems)
    return rows


def _header_problems(header: list[str]) -> list[Problem]:
    if not header:
        return [Problem(1, None, f"the file is empty; the header must name {', '.join(REQUIRED_COLUMNS)}")]
    problems = [Problem(1, name, "required column missing") for name in REQUIRED_COLUMNS if name not in header]
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    problems += [
        Problem(1, name or "(empty)", f"unknown column; known: {', '.join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))}")
        for name in header
        if name not in known
    ]
    problems += [Problem(1, name, "column named twice") for name in sorted(set(header)) if header.count(name) > 1]
    if "list_price_yuan" in header and "list_price_fen" in header:
        problems.append(Problem(1, "list_price_fen", "give list_price_yuan or list_price_fen, not both"))
    return problems


class _Bad(ValueError):
    """One cell's problem (its message names what is wrong with the value)."""


def _parse_row(cells: dict[str, str], line: int) -> tuple[dict[str, Any] | None, list[Problem]]:
    values: dict[str, Any] = {}
    problems = []
    for column, parse in CELL_PARSERS.items():
        if column not in cells:
            continue
        try:
            values[column] = parse(cells[column])
        except _Bad as bad:
            problems.append(Problem(line, column, str(bad)))
    if problems:
        return None, problems
    fen = values.pop("list_price_yuan", None)
    values.setdefault("list_price_fen", fen)
    if not values.get("unit_id"):
        values["unit_id"] = default_unit_id(values["project_id"], values["building"], values["floor"], values["number"])
    return {name: values.get(name) for name in UNIT_FIELDS}, []


def default_unit_id(project_id: str, building: str, floor: int, number: str) -> str:
    return f"{project_id}-{building}-{floor:02d}{number}"


def _identifier(cell: str) -> str:
    if not cell:
        raise _Bad("required, but empty")
    if any(char.isspace() or char == "/" for char in cell):
        raise _Bad(f"{cell!r} may not contain spaces or '/' (it becomes part of the unit id)")
    return cell


def _optional_identifier(cell: str) -> str | None:
    return _identifier(cell) if cell else None


def _text(cell: str) -> str | None:
    return cell or None


def _floor(cell: str) -> int:
    try:
        floor = int(cell)
    except ValueError:
        raise _Bad(f"{cell!r} is not a whole number" if cell else "required, but empty") from None
    if floor not in FLOORS:
        raise _Bad(f"{floor} is outside {FLOORS.start}…{FLOORS.stop - 1}")
    return floor


def _area(cell: str) -> float | None:
    if not cell:
        return None
    try:
        area = float(cell)
    except ValueError:
        raise _Bad(f"{cell!r} is not a number of square metres") from None
    if not 0 < area < MAX_AREA_SQM:
        raise _Bad(f"{area} m² is not a plausible unit area (0 … {MAX_AREA_SQM:g})")
    return area


def _yuan(cell: str) -> int | None:
    if not cell:
        return None
    try:
        # Thousands separators are how prices are written; Decimal keeps 元 → 分 exact.
        yuan = Decimal(cell.replace(",", "").replace("，", ""))
    except InvalidOperation:
        raise _Bad(f"{cell!r} is not an amount in yuan") from None
    fen = yuan * 100
    if not yuan.is_finite() or fen != fen.to_integral_value() or yuan < 0:
        raise _Bad(f"{cell!r} must be a non-negative amount with at most 2 decimals")
    return int(fen)


def _fen(cell: str) -> int | None:
    if not cell:
        return None
    try:
        fen = int(cell.replace(",", ""))
    except ValueError:
        raise _Bad(f"{cell!r} is not a whole number of fen") from None
    if fen < 0:
        raise _Bad("a price cannot be negative")
    return fen


CELL_PARSERS = {
    "unit_id": _optional_identifier,
    "project_id": _identifier,
    "project_name": _text,
    "building": _identifier,
    "floor": _floor,
    "number": _identifier,
    "layout": _text,
    "area_sqm": _area,
    "list_price_yuan": _yuan,
    "list_price_fen": _fen,
}


# ---------------------------------------------------------------------------------------------------------------
# Events


def unit_registered_body(
    row: dict[str, Any], *, staff_id: str = "inventory-import", role: str = Registrar.ADMIN_CLERK
) -> dict[str, Any]:
    """The API-shaped UnitRegistered event of a unit row (as ``read_units_csv`` returns them).

    No event id is set: a re-import registers the units again, which the inventory projection folds into the
    same rows (a registration by the owning office corrects the attributes)."""
    if role not in set(Registrar):
        raise ValueError(f"role {role!r} may not register units; allowed: {', '.join(Registrar)}")
    return {
        "event_type": "UnitRegistered",
        "actor": {"staff_id": staff_id, "role": str(role)},
        "payload": {name: row.get(name) for name in UNIT_FIELDS},
    }


# ---------------------------------------------------------------------------------------------------------------
# The sample project: 锦湖雅苑, 2 buildings × 20 floors × 4 units


@dataclass(frozen=True)
class _Plan:
    """One position on a floor plate: its layout, area, and whether it is a corner unit (two exposures)."""

    layout: str
    area_sqm: str  # as written in the CSV: an exact decimal
    corner: bool


SAMPLE_PROJECT = ("jinghu", "锦湖雅苑")
# Building 1 is the compact tower; building 2 faces the river with larger plates and a higher base price.
SAMPLE_BUILDINGS: dict[str, tuple[Decimal, tuple[_Plan, ...]]] = {
    "1": (
        Decimal(28_600),  # 元/㎡
        (
            _Plan("3室2厅2卫", "118.46", True),
            _Plan("2室2厅1卫", "89.12", False),
            _Plan("2室2厅1卫", "89.37", False),
            _Plan("3室2厅2卫", "126.05", True),
        ),
    ),
    "2": (
        Decimal(31_200),
        (
            _Plan("4室2厅2卫", "143.58", True),
            _Plan("3室2厅2卫", "121.35", False),
            _Plan("3室2厅2卫", "121.35", False),
            _Plan("4室2厅3卫", "168.20", True),
        ),
    ),
}
SAMPLE_FLOORS = range(1, 21)


def _floor_factor(floor: int) -> Decimal:
    """Price per ㎡ relative to the base: low floors are cheaper, each floor up adds 0.5 %, and the top floor is
    discounted (roof heat and leaks, as sales offices price it)."""
    if floor <= 2:
        return Decimal("0.95") + Decimal("0.02") * (floor - 1)
    factor = Decimal(1) + Decimal("0.005") * (floor - 3)
    return factor - Decimal("0.04") if floor == SAMPLE_FLOORS.stop - 1 else factor


def _sample_price_fen(base: Decimal, plan: _Plan, floor: int) -> int:
    per_sqm = base * _floor_factor(floor) * (Decimal("1.02") if plan.corner else Decimal(1))
    yuan = (per_sqm * Decimal(plan.area_sqm) / 100).quantize(Decimal(1)) * 100  # list prices end in 00 元
    return int(yuan) * 100


def sample_project_rows() -> list[dict[str, Any]]:
    """The 160 units of the sample project, as ``read_units_csv`` returns them (deploy/sample-project.csv)."""
    project_id, project_name = SAMPLE_PROJECT
    rows = []
    for building, (base, plans) in SAMPLE_BUILDINGS.items():
        for floor in SAMPLE_FLOORS:
            for position, plan in enumerate(plans, start=1):
                number = f"{position:02d}"
                rows.append(
                    {
                        "unit_id": default_unit_id(project_id, building, floor, number),
                        "project_id": project_id,
                        "project_name": project_name,
                        "building": building,
                        "floor": floor,
                        "number": number,
                        "layout": plan.layout,
                        "area_sqm": float(plan.area_sqm),
                        "list_price_fen": _sample_price_fen(base, plan, floor),
                    }
                )
    return rows


def write_units_csv(rows: Iterable[dict[str, Any]], stream: TextIO) -> None:
    """Write unit rows in the CSV format ``read_units_csv`` reads, prices in yuan."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(SAMPLE_COLUMNS)
    for row in rows:
        cells = {**row, "list_price_yuan": _fen_as_yuan(row.get("list_price_fen"))}
        writer.writerow(["" if cells.get(name) is None else cells[name] for name in SAMPLE_COLUMNS])


def _fen_as_yuan(fen: int | None) -> str | None:
    if fen is None:
        return None
    return str(fen // 100) if fen % 100 == 0 else f"{fen // 100}.{fen % 100:02d}"


def sample_project_csv() -> str:
    buffer = io.StringIO()
    write_units_csv(sample_project_rows(), buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# ``anchang units``

units_app = typer.Typer(
    help="The unit inventory (房源): import it from CSV, or write the sample.", no_args_is_help=True
)
console = Console(stderr=True, soft_wrap=True)  # soft wrap: a problem stays on one line, for grep


def _batches(items: Sequence[tuple[int, dict[str, Any]]], size: int) -> Iterator[Sequence[tuple[int, dict[str, Any]]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@units_app.command("import")
def import_units(
    file: Annotated[Path, typer.Argument(help="CSV file of units (header: project_id, building, floor, number, …).")],
    api_key: Annotated[str, typer.Option(envvar="ANCHANG_API_KEY", help="The office's API key.")],
    url: Annotated[str, typer.Option(envvar="ANCHANG_API_URL", help="The ingestion API.")] = "http://127.0.0.1:8000",
    staff_id: Annotated[
        str, typer.Option(envvar="ANCHANG_STAFF_ID", help="Who registers the units (the event's actor).")
    ] = "inventory-import",
    role: Annotated[Registrar, typer.Option(help="The registrar's role.")] = Registrar.ADMIN_CLERK,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Register every unit of FILE (one UnitRegistered event each) through the ingestion API. The whole file is
    checked first: nothing is published if any line is bad. Exits 1 if the API refused any unit, 2 for a bad file."""
    from services.client import AnchangClient, AnchangError

    try:
        lines = read_units_csv_lines(file)
    except InventoryError as error:
        for problem in error.problems:
            console.print(f"[red]{escape(str(file))}[/red] {escape(str(problem))}")
        console.print(f"nothing published: fix the {len(error.problems)} problem(s) above")
        raise typer.Exit(2) from error
    except OSError as error:
        console.print(f"[red]cannot read {escape(str(file))}[/red]: {escape(str(error))}")
        raise typer.Exit(2) from error
    accepted, refused = [], 0
    try:
        with AnchangClient(url, api_key) as client, _progress() as progress:
            task = progress.add_task("registering units", total=len(lines))
            for batch in _batches(lines, batch_size):
                result = client.publish_batch(
                    [unit_registered_body(row, staff_id=staff_id, role=role) for _, row in batch]
                )
                for (line, row), item in zip(batch, result["items"], strict=True):
                    if item["accepted"] is not None:
                        accepted.append(row)
                    else:
                        refused += 1
                        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in item["errors"])
                        console.print(f"[red]line {line}[/red] ({escape(row['unit_id'])}): {escape(problems)}")
                progress.advance(task, len(batch))
    except AnchangError as error:
        console.print(f"[red]the API refused the import[/red]: {escape(str(error))}")
        raise typer.Exit(1) from error
    console.print(_summary(accepted, refused))
    raise typer.Exit(1 if refused else 0)


def _summary(accepted: Sequence[dict[str, Any]], refused: int) -> str:
    projects = {row["project_id"] for row in accepted}
    buildings = {(row["project_id"], row["building"]) for row in accepted}
    return (
        f"registered {len(accepted)} unit(s) in {len(projects)} project(s), {len(buildings)} building(s); "
        f"refused {refused}"
    )


@units_app.command("sample")
def sample(
    out: Annotated[Path | None, typer.Option(help="Write the CSV here instead of to standard output.")] = None,
) -> None:
    """Write the sample project (锦湖雅苑: 2 buildings × 20 floors × 4 units) as a CSV to import."""
    text = sample_project_csv()
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {len(sample_project_rows())} units to {escape(str(out))}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
