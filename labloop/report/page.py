"""The report's ``index.html``: a summary table, the figures with their captions, and the trial table.

One file with its CSS inline and figures as files beside it, referenced by relative name: it opens from a USB stick
or a lab PC without internet (no CDN, no script, no font download). Every value from the store is HTML-escaped.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from typing import Any

from labloop import __version__
from labloop.spec import ObjectiveSpec, OutcomeConstraintSpec
from labloop.store.times import utc

from .gather import ReportData
from .plotting import Drawn, Item, NotDrawn

#: Marks a folder as a labloop report: only such a folder is replaced by a new report (never a folder of one's own
#: that happens to hold an index.html).
GENERATOR = '<meta name="generator" content="labloop report">'

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1100px;
 padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;
 vertical-align:top}th{background:#f4f4f4}
table.summary th{width:13rem}
.trials{max-height:36rem;overflow:auto;display:block}
.trials td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fff6d6}tr.failed td{color:#a33}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#444;max-width:60rem}
.note{color:#666;font-style:italic}.empty{font-size:1.1rem;padding:1rem;background:#f6f6f6;border-left:4px solid #999}
footer{margin-top:3rem;font-size:.8rem;color:#777}
"""


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return "" if v is None else str(v)


def _when(d: datetime | None) -> str:
    if d is None:
        return "-"
    return utc(d).strftime("%Y-%m-%d %H:%M:%S UTC")


def units(spec: Any) -> dict[str, str]:
    """The unit of every parameter (a composition's for its components), objective and constraint that has one."""
    out: dict[str, str] = {}
    for p in spec.parameters:
        unit = getattr(p, "unit", None)
        if unit:
            for name in getattr(p, "components", None) or [p.name]:
                out[name] = unit
    for o in [*spec.objectives, *spec.outcome_constraints]:
        if o.unit:
            out[o.name] = o.unit
    return out


def _with_unit(value: Any, unit: str | None) -> str:
    text = _num(value)
    return f"{text} {unit}" if unit and text and not isinstance(value, str) else text


def _recipe(params: dict[str, Any], unit: dict[str, str] | None = None) -> str:
    unit = unit or {}
    return ", ".join(f"{k} = {_with_unit(v, unit.get(k))}" for k, v in params.items())


def _quantities(data: ReportData) -> str:
    """One row per objective and constraint: how it is measured, its unit, and the scale the model uses, so each
    quantity has one name and one definition (an instrument's own reading of a similar name is another quantity)."""
    from .crossval import model_log

    spec = data.spec
    out = [
        '<h2 id="quantities">Quantities</h2><table class="quantities"><thead><tr><th>name</th><th>role</th>'
        "<th>measured by</th><th>unit</th><th>modelled on</th></tr></thead><tbody>"
    ]
    quantities: list[ObjectiveSpec | OutcomeConstraintSpec] = [*spec.objectives, *spec.outcome_constraints]
    for o in quantities:
        if isinstance(o, ObjectiveSpec):
            role = f"objective ({o.direction})"
        else:
            role = "constraint " + " and ".join(
                x
                for x in (
                    f">= {_num(o.lower)}" if o.lower is not None else "",
                    f"<= {_num(o.upper)}" if o.upper is not None else "",
                )
                if x
            )
        how = o.plugin + (" (" + ", ".join(f"{k}={v}" for k, v in o.options.items()) + ")" if o.options else "")
        values = [float(t.values[o.name]) for t in data.done if isinstance((t.values or {}).get(o.name), (int, float))]
        scale = "log" if model_log(data, o, values) else "linear"
        out.append(
            f'<tr id="quantity-{escape(o.name)}"><td>{escape(o.name)}</td><td>{escape(role)}</td>'
            f"<td>{escape(how)}</td><td>{escape(o.unit or 'none given')}</td><td>{scale}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def summary_rows(data: ReportData) -> list[tuple[str, str, str]]:
    """(key, heading, value as text) of the summary table; the keys become row ids (tests read them)."""
    c, spec = data.campaign, data.spec
    rows = [
        ("campaign", "campaign", f"{c.name} (id {c.id}, uid {c.uid})"),
        ("state", "state", c.state),
        ("stop-reason", "stop reason", c.stop_reason or "-"),
        ("started", "started", _when(c.created_at)),
        ("finished", "finished", _when(c.finished_at)),
        ("strategy", "strategy", f"{spec.strategy.name} (initial design {spec.strategy.initial_design})"),
        (
            "objectives",
            "objectives",
            "; ".join(
                f"{o.name}: {o.direction}"
                + (f", target {o.target:g}" if o.target is not None else "")
                + (f" {o.unit}" if o.unit else "")
                for o in spec.objectives
            ),
        ),
        ("trials", "trials", str(len(data.trials))),
    ]
    for state, n in data.counts.items():
        rows.append((f"trials-{state}", f"&nbsp;&nbsp;{state}", str(n)))
    if data.best is not None:
        b = data.best
        unit = units(spec)
        values = ", ".join(f"{k} = {_with_unit(v, unit.get(k))}" for k, v in (b.values or {}).items())
        rows.append(("best-trial", "best trial", f"trial {b.number}: {values}"))
        rows.append(("best-recipe", "best recipe", _recipe(b.params, unit)))
    else:
        rows.append(("best-trial", "best trial", "none: no trial succeeded"))
    return rows


def render(data: ReportData, items: list[Item], asked_missing: str = "") -> str:
    c = data.campaign
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        GENERATOR,
        f"<title>labloop report: {escape(c.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Campaign report: {escape(c.name)}</h1>",
    ]
    if data.spec.description:
        out.append(f"<p>{escape(data.spec.description)}</p>")
    out.append('<h2 id="summary">Summary</h2><table class="summary">')
    for key, head, value in summary_rows(data):
        out.append(f'<tr id="summary-{key}"><th>{head}</th><td>{escape(value)}</td></tr>')
    out.append("</table>")
    if not data.trials:
        out.append(
            '<p class="empty" id="no-trials">This campaign has no trials yet: there is nothing to plot. '
            "Run it (<code>labloop run FILE</code> or <code>labloop resume</code>) and make the report "
            "again.</p>"
        )
    else:
        if data.best is None:
            out.append(
                '<p class="empty" id="no-success">No trial of this campaign succeeded: there is no best '
                "result, no convergence and no model to show. The failure map and the trial table below say "
                "where and why trials failed.</p>"
            )
        out.append('<h2 id="figures">Figures</h2>')
        for item in items:
            out.append(_item(item))
        out.append(_quantities(data))
        out.append(_trial_table(data))
    out.append(
        f"<footer>Made by labloop {escape(__version__)} on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} from the store; figures are SVG "
        "files beside this page.</footer></body></html>"
    )
    return "\n".join(out) + "\n"


def _item(item: Item) -> str:
    if isinstance(item, Drawn):
        return (
            f'<figure><h3>{escape(item.title)}</h3><img src="{escape(item.file)}" alt="{escape(item.title)}">'
            f"<figcaption>{escape(item.caption)}</figcaption></figure>"
        )
    assert isinstance(item, NotDrawn)
    return f'<h3>{escape(item.title)}</h3><p class="note">Not drawn: {escape(item.reason)}.</p>'


def _trial_table(data: ReportData) -> str:
    spec = data.spec
    params = spec.parameter_names()
    outcomes = [o.name for o in spec.objectives] + [o.name for o in spec.outcome_constraints]
    unit = units(spec)
    head = [
        "trial",
        "state",
        "source",
        *[f"{h} ({unit[h]})" if h in unit else h for h in (*params, *outcomes)],
        "failure reason",
    ]
    out = [
        '<h2 id="trials">Trials</h2><table class="trials"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    best = data.best.number if data.best else None
    for t in data.trials:
        cls = "best" if t.number == best else ("failed" if t.state == "failed" else "")
        cells = [f'<td class="num">{t.number}</td>', f"<td>{escape(t.state)}</td>", f"<td>{escape(t.source)}</td>"]
        cells += [f'<td class="num">{escape(_num(t.params.get(p)))}</td>' for p in params]
        cells += [f'<td class="num">{escape(_num((t.values or {}).get(o)))}</td>' for o in outcomes]
        cells.append(f"<td>{escape(t.failure_reason or '')}</td>")
        out.append(f'<tr id="trial-{t.number}" class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
