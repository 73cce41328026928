"""Prior data: past experiments that warm-start the model (``strategy.prior_data`` in the campaign file).

Why: a lab rarely starts from nothing. Last month's campaign on the same furnace, or a spreadsheet of manual
experiments, already says where the good region is; a model that sees them proposes fewer wasted trials. Prior
observations are given to the strategy together with the campaign's own trials (so a strategy needs nothing
special to use them); they are never re-run, and they never count towards this campaign's budget, best result or
stopping rules, which read the campaign's own trials from the store.

Two sources:

* a CSV (``{csv: past.csv}``): a column per parameter (named as in the campaign file), a column per objective (an
  empty cell = not measured), an optional ``failed`` column (``1``/``true``/``yes`` = the experiment failed, which
  trains the feasibility model). Every row is checked against the search space, and a bad cell is an error naming
  its line, before anything is stored or moved;
* another campaign in the same store (``{campaign: NAME-or-ID}``): its finished trials (done, failed, rejected).
  Trials that do not fit this campaign's search space (another campaign may have searched wider bounds) are left
  out and counted in the audit log; a campaign none of whose trials fit is an error.

Related campaigns (``strategy.related``: the same two sources) are loaded here too, as observations tagged with
their ``task``: they are not the same experiment, and the strategy models them as other tasks of a multi-task GP
(:mod:`.transfer`). Their parameters must have this campaign's names and types (an error names the difference);
rows outside this campaign's bounds or choices are left out.

What a campaign learned from is recorded in its audit log when it starts (``strategy.prior_data``), and a resumed
campaign uses that record, not the files, which may have changed or gone since.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from labloop.errors import LabloopError
from labloop.spec import CampaignSpec

from .base import Observation, observations_from
from .tables import as_number, checked_row, read_table

# .space (torch) is imported in the functions that build a space: the run loop imports this module for the audit
# record helpers, and importing torch takes seconds.

AUDIT_ACTION = "strategy.prior_data"
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n", ""}


def csv_observations(spec: CampaignSpec, path: str | Path) -> list[Observation]:
    """The rows of a CSV of past experiments as observations (see the module docstring for the format)."""
    table = read_table(path)
    from .space import SearchSpace

    space = SearchSpace.from_spec(spec)
    needed = [c.name for c in space.columns]
    objectives = [o.name for o in spec.objectives]
    missing = [n for n in needed + objectives if n not in table.columns]
    if missing:
        raise LabloopError(
            f"{table.source}: prior data columns {missing} are missing (columns: {table.columns})",
            "give a column per parameter and per objective, named as in the campaign file",
        )
    extra = [o.name for o in spec.outcome_constraints if o.name in table.columns]
    out = []
    for line, cells in enumerate(table.cells, start=2):
        by_col = dict(zip(table.columns, cells))
        where = f"{table.source}: line {line}"
        params = checked_row(table, cells, line, spec, space)
        flag = by_col.get("failed", "").strip().lower()
        if flag not in _TRUE | _FALSE:
            raise LabloopError(f"{where}: 'failed' is {by_col['failed']!r}", "write 1/true/yes or 0/false/no")
        values: dict[str, float | None] = {}
        for name in objectives + extra:
            cell = by_col[name].strip()
            if not cell:
                values[name] = None
                continue
            v = as_number(cell)
            if v is None or not math.isfinite(v):
                raise LabloopError(
                    f"{where}: objective '{name}' is {cell!r}",
                    "give a finite number, or leave the cell empty if it was not measured",
                )
            values[name] = v
        failed = flag in _TRUE
        if not failed and all(values[n] is None for n in objectives):
            raise LabloopError(
                f"{where}: no objective value, and the row is not marked failed",
                "give the measured value, mark the row failed, or remove it",
            )
        out.append(Observation(params, values, failed=failed, reason="prior data: failed" if failed else None))
    if not out:
        raise LabloopError(f"{table.source}: no prior experiments in the file", "add rows or remove the entry")
    return out


def campaign_observations(spec: CampaignSpec, store: Any, ref: str) -> tuple[list[Observation], int]:
    """Finished trials of another stored campaign that fit this campaign's search space, and how many did not."""
    other = store.campaign(ref)
    from .space import SearchSpace

    space = SearchSpace.from_spec(spec)
    names = [o.name for o in spec.objectives]
    fit, skipped = [], 0
    for o in observations_from(store.trials(other.id)):
        try:
            space.encode({**space.fixed, **o.params})
        except LabloopError:
            skipped += 1
            continue
        fit.append(
            Observation(
                {**space.fixed, **{k: o.params[k] for k in space.names() if k in o.params}},
                {n: o.values.get(n) for n in names},
                o.failed,
                o.reason,
            )
        )
    if not fit:
        raise LabloopError(
            f"strategy.prior_data: none of the {skipped} finished trials of campaign "
            f"'{other.name}' (id {other.id}) fits this campaign's parameters and bounds",
            "name a campaign over the same parameters, or widen this campaign's bounds",
        )
    if not any(o.failed or any(v is not None for v in o.values.values()) for o in fit):
        raise LabloopError(
            f"strategy.prior_data: campaign '{other.name}' measured none of {names}",
            "name a campaign that measured the same objectives",
        )
    return fit, skipped


def related_csv_observations(spec: CampaignSpec, path: str | Path) -> list[Observation]:
    """The rows of an earlier related campaign's CSV as observations of task ``csv:<file name>`` (the format of
    prior data: a column per parameter and for the first objective). Rows outside this campaign's search space
    (another campaign may have searched wider) are left out; a file none of whose rows fits, or missing columns,
    is an error naming the columns and the fix."""
    table = read_table(path)
    from .space import SearchSpace

    space = SearchSpace.from_spec(spec)
    objective = spec.objectives[0].name
    needed = [c.name for c in space.columns]
    missing = [n for n in needed + [objective] if n not in table.columns]
    if missing:
        shared = sorted(set(needed + [objective]) & set(table.columns))
        raise LabloopError(
            f"{table.source}: related campaign lacks columns {missing} (its columns: {table.columns}; shared with "
            f"this campaign: {shared or 'none'})",
            "give a CSV over the same parameters and objective, named as in the campaign file (rename its columns)",
        )
    task = f"csv:{Path(path).name}"
    out, first_problem = [], None
    for line, cells in enumerate(table.cells, start=2):
        try:
            params = checked_row(table, cells, line, spec, space)
        except LabloopError as exc:
            first_problem = first_problem or exc.problem
            continue
        v = as_number(dict(zip(table.columns, cells))[objective])
        if v is None or not math.isfinite(v):
            first_problem = first_problem or f"{table.source}: line {line}: objective '{objective}' is not a number"
            continue
        out.append(Observation(params, {objective: v}, task=task))
    if not out:
        raise LabloopError(
            f"{table.source}: none of the {len(table.cells)} rows of the related campaign fits this "
            f"campaign's parameters (first: {first_problem})",
            "give a related campaign over the same parameters, types and choices",
        )
    return out


def related_store_observations(spec: CampaignSpec, store: Any, ref: str) -> list[Observation]:
    """An earlier campaign in the store as observations of task ``campaign:<name>``: its parameters must have the
    same names and types as this campaign's (else an error naming them); trials outside this campaign's bounds
    or choices are left out, as for prior data."""
    from labloop.spec import spec_from_text

    other = store.campaign(ref)
    theirs = {p.name: type(p).__name__ for p in spec_from_text(other.spec_text, f"<campaign {other.name}>").parameters}
    ours = {p.name: type(p).__name__ for p in spec.parameters}
    if theirs != ours:
        diff = sorted(
            f"{k}: {ours.get(k, 'absent')} here, {theirs.get(k, 'absent')} there"
            for k in set(ours) | set(theirs)
            if ours.get(k) != theirs.get(k)
        )
        raise LabloopError(
            f"strategy.related: campaign '{other.name}' has other parameters ({'; '.join(diff)})",
            "name an earlier campaign over the same parameter names and types",
        )
    obs, _ = campaign_observations(spec, store, ref)
    return [Observation(o.params, o.values, o.failed, o.reason, task=f"campaign:{other.name}") for o in obs]


def file_priors(spec: CampaignSpec) -> list[Observation]:
    """Every ``csv`` source of the campaign's prior data and related campaigns (checked now: before anything is
    stored)."""
    out: list[Observation] = []
    for field, load in (("prior_data", csv_observations), ("related", related_csv_observations)):
        for i, src in enumerate(getattr(spec.strategy, field)):
            if src.csv is not None:
                try:
                    out += load(spec, src.csv)
                except LabloopError as exc:
                    raise LabloopError(f"strategy.{field}[{i}]: {exc.problem}", exc.fix) from None
    return out


def store_priors(spec: CampaignSpec, store: Any) -> tuple[list[Observation], dict[str, int]]:
    """Every ``campaign`` source, from ``store``; and per source, how many trials did not fit and were left out."""
    out: list[Observation] = []
    skipped: dict[str, int] = {}
    for src in spec.strategy.prior_data:
        if src.campaign is not None:
            obs, n = campaign_observations(spec, store, src.campaign)
            out += obs
            skipped[src.campaign] = n
    for src in spec.strategy.related:
        if src.campaign is not None:
            out += related_store_observations(spec, store, src.campaign)
    return out, skipped


def to_record(observations: list[Observation]) -> list[dict[str, Any]]:
    return [
        {
            "params": o.params,
            "values": o.values,
            "failed": o.failed,
            "reason": o.reason,
            **({"task": o.task} if o.task else {}),
        }
        for o in observations
    ]


def from_record(rows: list[dict[str, Any]]) -> list[Observation]:
    return [Observation(r["params"], r["values"], r["failed"], r.get("reason"), r.get("task")) for r in rows]
