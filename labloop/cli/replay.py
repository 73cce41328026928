"""``labloop replay``: backtest the strategy on a lookup table (a CSV of measured experiments)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from labloop.errors import LabloopError

from .common import console, user_errors


@user_errors
def replay(
    table: Path = typer.Argument(..., help="CSV of measured experiments: input columns and the objective column."),
    objective: str | None = typer.Option(None, "--objective", help="The objective column."),
    direction: str | None = typer.Option(None, "--direction", help="max or min."),
    exclude: list[str] | None = typer.Option(
        None, "--exclude", help="Columns that are not inputs (repeat, or comma-separate)."
    ),
    campaign: Path | None = typer.Option(
        None, "--campaign", help="Campaign file declaring the parameters (types, encodings) and the strategy."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial design and the strategy."),
    budget: int = typer.Option(50, "--budget", min=1, help="Experiments in all (initial design included)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Proposals per round (q)."),
    start_rows: str | None = typer.Option(
        None,
        "--start-rows",
        help="Measure these rows first, then let the strategy propose: comma-separated row "
        "indices, 0 = the first data row (as in the 'rows' of --json). Replaces the strategy's initial design.",
    ),
    random_start: int | None = typer.Option(
        None,
        "--random-start",
        min=1,
        help="Start from this many seeded random rows, the same rows "
        "benchmarks/replay_tables.py and benchmarks/peers.py use for --seed (the shared benchmark protocol).",
    ),
    related: list[Path] | None = typer.Option(
        None,
        "--related",
        help="CSV of an earlier related campaign (same columns), modelled as another task of a "
        "multi-task GP (repeat for several).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: history, best, ..."),
) -> None:
    """Run a whole campaign against TABLE: the pool is its rows, a measurement is a row's objective value."""
    from labloop.spec import load_spec
    from labloop.strategy.replay import run_replay, with_related
    from labloop.strategy.tables import read_table, table_lab

    spec = load_spec(campaign) if campaign is not None else None
    if spec is None and direction is None:
        raise LabloopError("no --direction given", "pass --direction max or --direction min")
    excl = [c.strip() for e in (exclude or []) for c in e.split(",") if c.strip()]
    first = _start_rows(start_rows, random_start, len(read_table(table).cells), seed)
    lab = table_lab(
        table,
        objective,
        direction,
        excl,
        spec,
        seed=seed,
        batch_size=batch_size,
        budget=budget,
        initial_design=len(first) or None,
    )
    lab, prior = with_related(lab, related or [])
    result = run_replay(lab, budget, batch_size=batch_size, initial_rows=first, prior=prior)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    best = result.best
    if best is None:  # a budget of no experiments
        console.print(f"{table}: no experiments run")
        return
    console.print(
        f"{table}: {len(result.history)} experiments, best {lab.objective} = {best:g} "
        f"(first reached at experiment {result.history.index(best) + 1}); table best = "
        f"{(max if result.direction == 'maximize' else min)(lab.values):g}"
    )
    imp = result.last_info.get("importance")
    if imp:
        console.print("importance: " + ", ".join(f"{k} {v:.0%}" for k, v in imp.items()))
    pb = result.last_info.get("predicted_best")
    if pb:
        console.print(f"model's predicted best: {pb}")


def _start_rows(given: str | None, random_k: int | None, n_rows: int, seed: int) -> list[int]:
    """The rows measured first: ``--start-rows`` as given, or ``--random-start K`` drawn by the benchmark
    protocol (:func:`labloop.benchmark_protocol.start_rows`); checked before anything runs."""
    if given is not None and random_k is not None:
        raise LabloopError("both --start-rows and --random-start given", "pass one of them")
    if random_k is not None:
        from labloop.benchmark_protocol import start_rows

        if random_k > n_rows:
            raise LabloopError(
                f"--random-start {random_k} is more than the table's {n_rows} rows", f"pass at most {n_rows}"
            )
        return start_rows(n_rows, seed, random_k)
    if given is None:
        return []
    rows: list[int] = []
    for part in (p.strip() for p in given.split(",")):
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            raise LabloopError(
                f"--start-rows: {part!r} is not a row index",
                "give comma-separated whole numbers, e.g. --start-rows 0,17,42",
            )
        i = int(part)
        if not 0 <= i < n_rows:
            raise LabloopError(
                f"--start-rows: row {i} is not in the table (rows 0 to {n_rows - 1})",
                "give indices of data rows, 0 = the first row after the header",
            )
        if i in rows:
            raise LabloopError(f"--start-rows: row {i} is given twice", "give each starting row once")
        rows.append(i)
    if not rows:
        raise LabloopError("--start-rows names no rows", "give comma-separated row indices, e.g. 0,17,42")
    return rows


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the main CLI."""
    app.command("replay")(replay)
