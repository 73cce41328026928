"""Lookup-table labs: a CSV of measured experiments used as a lab whose only possible experiments are its rows.

The inputs are every column except the objective and the excluded ones. Unless a campaign file says otherwise,
a column whose every value is a finite number is numeric (a ``discrete`` parameter when it has at most
``MAX_LEVELS`` distinct values, else ``continuous``; ``fixed`` when constant), and a column of text is
categorical. A column that is mostly numbers but has text or empty cells, ``nan``/``inf`` anywhere numeric,
duplicate column names and empty tables are refused with a ``LabloopError`` before anything runs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labloop.errors import LabloopError
from labloop.spec import (
    CampaignSpec,
    CategoricalParameter,
    CompositionParameter,
    ContinuousParameter,
    DiscreteParameter,
    FixedParameter,
    IntegerParameter,
    ObjectiveSpec,
    StrategySpec,
)

if TYPE_CHECKING:  # imported where used: the space needs torch, and reading a table does not
    from .space import CandidatePool, SearchSpace

MAX_LEVELS = 12


@dataclass
class Table:
    """A CSV's header and cells (as text), with the file name for messages."""

    source: str
    columns: list[str]
    cells: list[list[str]]

    def column(self, name: str) -> list[str]:
        j = self.columns.index(name)
        return [r[j] for r in self.cells]


def read_table(path: str | Path) -> Table:
    """Read a CSV with a header row. Raises ``LabloopError`` for missing/empty files, duplicate or blank column
    names and rows with the wrong number of cells."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except FileNotFoundError:
        raise LabloopError(f"{p}: no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabloopError(f"{p}: cannot read the table: {exc}", "give a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise LabloopError(f"{p}: not a valid CSV: {exc}", "check quoting and delimiters") from None
    if not rows:
        raise LabloopError(f"{p}: the table is empty", "give a CSV with a header row and at least one data row")
    header = [c.strip() for c in rows[0]]
    if any(not c for c in header):
        raise LabloopError(f"{p}: column {header.index('') + 1} has no name", "name every column in the header row")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise LabloopError(f"{p}: duplicate column names {dupes}", "give every column a unique name")
    if len(rows) < 2:
        raise LabloopError(f"{p}: the table has a header but no data rows", "add at least one row of data")
    cells = []
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise LabloopError(
                f"{p}: line {i} has {len(r)} cells, the header has {len(header)}", "give every row one cell per column"
            )
        cells.append([c.strip() for c in r])
    return Table(str(p), header, cells)


def as_number(cell: str) -> float | None:
    try:
        v = float(cell)
    except ValueError:
        return None
    return v


def numeric_column(table: Table, name: str, *, what: str = "numeric column") -> list[float]:
    """The column's values as finite floats, or a ``LabloopError`` naming the first bad cell."""
    out = []
    for i, cell in enumerate(table.column(name), start=2):
        v = as_number(cell)
        if v is None or not math.isfinite(v):
            raise LabloopError(
                f"{table.source}: {what} '{name}' has {cell!r} at line {i}",
                "give a finite number in every row, or remove/exclude the row or column",
            )
        out.append(v)
    return out


def infer_parameters(table: Table, inputs: Sequence[str]) -> list[Any]:
    """Parameter specs for the ``inputs`` columns, inferred from their cells (see the module docstring)."""
    params: list[Any] = []
    for name in inputs:
        col = table.column(name)
        nums = [as_number(c) for c in col]
        n_num = sum(v is not None and math.isfinite(v) for v in nums)
        if n_num == 0:
            choices = list(dict.fromkeys(col))
            if len(choices) == 1:
                params.append(FixedParameter(name=_safe(name), value=choices[0]))
            else:
                params.append(CategoricalParameter(name=_safe(name), choices=choices))
            continue
        if n_num < len(col):
            bad = next(i for i, v in enumerate(nums) if v is None or not math.isfinite(v))
            raise LabloopError(
                f"{table.source}: column '{name}' is numeric but has {col[bad]!r} at line {bad + 2}",
                "fix or remove that row, exclude the column (--exclude), or declare it categorical in a campaign file",
            )
        vals = sorted({v for v in nums if v is not None})  # every cell is a finite number here (checked above)
        if len(vals) == 1:
            params.append(FixedParameter(name=_safe(name), value=vals[0]))
        elif len(vals) <= MAX_LEVELS:
            params.append(DiscreteParameter(name=_safe(name), values=vals))
        else:
            params.append(ContinuousParameter(name=_safe(name), lower=vals[0], upper=vals[-1]))
    return params


def _safe(name: str) -> str:
    """Column names become parameter names; spec names allow letters, digits, '_' and '-'."""
    ok = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)
    return ok or "column"


@dataclass
class TableLab:
    """A table prepared for a campaign: the spec, the candidate pool of its rows, and each row's objective."""

    spec: CampaignSpec
    pool: CandidatePool
    values: list[float]
    objective: str

    def measure(self, params: dict[str, Any]) -> tuple[int, float]:
        """The row a proposal names and its objective value ("the measurement")."""
        i = self.pool.index_of(params)
        if i is None:
            raise LabloopError(f"proposal {params} is not a row of the table", "propose rows of the table only")
        return i, self.values[i]


def table_lab(
    path: str | Path,
    objective: str | None = None,
    direction: str | None = None,
    exclude: Sequence[str] = (),
    campaign: CampaignSpec | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    initial_design: int | None = None,
    budget: int | None = None,
) -> TableLab:
    """Build a :class:`TableLab` from a CSV, inferring inputs unless ``campaign`` declares the parameters."""
    table = read_table(path)
    if campaign is not None and objective is None:
        objective = campaign.objectives[0].name
    if objective is None:
        raise LabloopError("no objective column given", "pass --objective COLUMN (or a campaign file)")
    if objective not in table.columns:
        raise LabloopError(
            f"{table.source}: no column '{objective}' (columns: {table.columns})",
            "name the objective column exactly as in the header",
        )
    unknown = [c for c in exclude if c not in table.columns]
    if unknown:
        raise LabloopError(f"{table.source}: --exclude names unknown columns {unknown}", f"choose from {table.columns}")
    values = numeric_column(table, objective, what="objective column")
    inputs = [c for c in table.columns if c != objective and c not in set(exclude)]
    if not inputs:
        raise LabloopError(
            f"{table.source}: no input columns left besides the objective", "keep at least one input column"
        )
    dir_map = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
    if campaign is not None:
        params = list(campaign.parameters)
        names = campaign.parameter_names()
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise LabloopError(
                f"{table.source}: the campaign's parameters {missing} are not columns of the table",
                "name parameters exactly as the table's columns",
            )
        objectives = list(campaign.objectives)
        if objectives[0].name != objective or (
            direction and dir_map.get(direction) != objectives[0].direction and objectives[0].direction != "band"
        ):
            first = ObjectiveSpec(
                name=objective, direction=dir_map.get(direction or "", objectives[0].direction), plugin="table"
            )
            objectives = [first]
        spec_data = campaign.model_dump()
        spec_data.update(objectives=[o.model_dump() for o in objectives])
        spec_data["lab"] = None
        spec_data["workflow"] = []
    else:
        if direction not in dir_map:
            raise LabloopError(f"direction must be 'max' or 'min', got {direction!r}", "pass --direction max|min")
        params = infer_parameters(table, inputs)
        spec_data = {
            "name": Path(path).stem.replace(" ", "_"),
            "parameters": params,
            "objectives": [ObjectiveSpec(name=objective, direction=dir_map[direction], plugin="table")],
        }
    strat = dict(spec_data.get("strategy") or StrategySpec().model_dump()) if campaign is not None else {}
    if batch_size is not None:
        strat["batch_size"] = batch_size
    if initial_design is not None:
        strat["initial_design"] = initial_design
    spec_data["strategy"] = strat
    if seed is not None:
        spec_data["seed"] = seed
    if budget is not None:  # the strategy plans with the budget (BotorchStrategy.small_pool)
        spec_data["stopping"] = {**dict(spec_data.get("stopping") or {}), "max_trials": budget}
    spec = CampaignSpec.model_validate(spec_data)
    from .space import CandidatePool, SearchSpace

    space = SearchSpace.from_spec(spec)
    rows = [typed_row(table, r, params) for r in table.cells]
    pool = CandidatePool(space, rows)
    return TableLab(spec, pool, values, objective)


def typed_row(table: Table, cells: list[str], params: Sequence[Any]) -> dict[str, Any]:
    """A table row as parameter values (numbers for numeric parameters, text for categorical)."""
    by_col = dict(zip(table.columns, cells))
    safe = {_safe(c): c for c in table.columns}
    out: dict[str, Any] = {}
    for p in params:
        names = p.components if isinstance(p, CompositionParameter) else [p.name]
        for n in names:
            cell = by_col.get(n, by_col.get(safe.get(n, n)))
            if cell is None:
                continue
            if isinstance(p, CategoricalParameter) or (isinstance(p, FixedParameter) and isinstance(p.value, str)):
                out[n] = cell
            else:
                v = as_number(cell)
                if v is None or not math.isfinite(v):
                    raise LabloopError(f"{table.source}: parameter '{n}' has {cell!r}", "give numbers only")
                out[n] = int(v) if isinstance(p, IntegerParameter) else v
    return out


def checked_row(table: Table, cells: list[str], line: int, spec: CampaignSpec, space: SearchSpace) -> dict[str, Any]:
    """A table row as a full point of ``spec``'s search space (fixed parameters included), or a ``LabloopError``
    naming the file and line: the check candidate pools and prior data share."""
    try:
        row = {**space.fixed, **typed_row(table, cells, spec.parameters)}
        space.encode(row)
    except LabloopError as exc:
        problem = exc.problem.removeprefix(f"{table.source}: ")
        raise LabloopError(f"{table.source}: line {line}: {problem}", exc.fix) from None
    return row


def candidate_pool(spec: CampaignSpec, path: str | Path) -> CandidatePool:
    """The campaign's candidate pool from a CSV (``spec.candidates``): one row per allowed point, a column per
    parameter (extra columns are ignored). Rows outside the search space are a ``LabloopError`` naming the line."""
    table = read_table(path)
    names = spec.parameter_names()
    fixed = {p.name for p in spec.parameters if isinstance(p, FixedParameter)}
    missing = [n for n in names if n not in table.columns and n not in fixed]
    if missing:
        raise LabloopError(
            f"{table.source}: candidate columns {missing} are missing (columns: {table.columns})",
            "give one column per campaign parameter, named as in the campaign file",
        )
    from .space import CandidatePool, SearchSpace

    space = SearchSpace.from_spec(spec)
    rows = [checked_row(table, cells, i, spec, space) for i, cells in enumerate(table.cells, start=2)]
    return CandidatePool(space, rows)
