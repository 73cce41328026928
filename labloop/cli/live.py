"""What `labloop run`, `labloop demo` and `labloop resume` print while a campaign runs: one line per step start and
per finished trial (with the best so far), alerts and pauses as they happen, then why the campaign stopped. Plain
lines, so pipes and CI logs stay readable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import console

if TYPE_CHECKING:
    from labloop.spec import CampaignSpec


class LiveView:
    """One line per step start (trial n of N, step, station) and per finished trial (pipes and CI logs stay
    readable), alerts and pauses as they happen, then why the campaign stopped."""

    def __init__(self, spec: CampaignSpec, steps: bool = True, trials: Any = ()):
        from labloop.data.status import fmt_params
        from labloop.run.best import best_trial

        self.fmt_params, self.best_trial = fmt_params, best_trial
        self.spec = spec
        self.steps = steps  # one dim line per step start: which trial, which step, on which station
        self.trials = {t.number: t for t in trials}  # finished so far (a resumed campaign's earlier trials too)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "finished":
            t = data["trial"]
            self.trials[t.number] = t
            if t.state == "done":
                value = fmt_values(self.spec, t.values, constraints=True)
            else:
                value = f"[red]{t.state}[/]: {t.failure_reason}" if t.failure_reason else f"[red]{t.state}[/]"
            # the one definition of best (labloop/run/best.py): feasible first, the campaign's rule among several
            top = self.best_trial(self.spec, self.trials.values())
            best = (
                f"best {fmt_values(self.spec, top.values, names=len(self.spec.objectives) > 1)} (trial {top.number})"
                if top
                else "best -"
            )
            console.print(
                f"trial {t.number:3d}/{self.spec.stopping.max_trials} [dim]{t.source:6s}[/] "
                f"{self.fmt_params(self.spec, t.params)}  {value}  [bold]{best}[/]",
                soft_wrap=True,
            )
        elif kind == "step" and self.steps:
            where = f"by {data['device']} to {data['to']}" if data.get("to") else f"on {data['device']}"
            retry = f" (attempt {data['attempt']})" if data["attempt"] > 1 else ""
            console.print(
                f"[dim]trial {data['trial']:3d}/{data['of']} {data['step']} {where}{retry}[/]", soft_wrap=True
            )
        elif kind == "stopped":
            console.print(f"[bold green]stopped:[/] {data['decision'].reason}", soft_wrap=True)
        elif kind == "proposed" and data.get("approval"):
            t = data["trial"]
            console.print(
                f"trial {t.number:3d} [yellow]awaits approval[/]: {self.fmt_params(self.spec, t.params)}  "
                f"(labloop approve {t.number} / labloop reject {t.number} --reason ...)",
                soft_wrap=True,
            )
        elif kind == "alert":
            console.print(f"[bold red]alert:[/] {data['message']}", soft_wrap=True)
        elif kind == "paused":
            console.print(f"[yellow]paused:[/] {data['reason']} (labloop resume to continue)", soft_wrap=True)
        elif kind == "resumed":
            console.print(
                "[green]resumed[/]"
                + (f": back in service: {', '.join(data['restored'])}" if data.get("restored") else ""),
                soft_wrap=True,
            )


def fmt_values(spec: CampaignSpec, values: dict[str, Any], names: bool = True, constraints: bool = False) -> str:
    """``name=value unit`` (or ``value unit``) for each objective with a number (a failed trial may lack some);
    with ``constraints``, each outcome constraint's value too, marked where it is outside its limit. Why: the
    best-so-far names only trials that meet the constraints, so a trial with a better objective but too much
    impurity must say why it is not the best."""
    out = []
    for o in spec.objectives:
        v = (values or {}).get(o.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((f"{o.name}=" if names else "") + f"{float(v):.4g}" + (f" {o.unit}" if o.unit else ""))
    shown = {o.name for o in spec.objectives}
    for c in spec.outcome_constraints if constraints else ():
        v = (values or {}).get(c.name)
        if c.name in shown or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        text = f"{c.name}={float(v):.4g}" + (f" {c.unit}" if c.unit else "")
        if c.upper is not None and v > c.upper:
            text += f" [red](over {c.upper:g})[/]"
        elif c.lower is not None and v < c.lower:
            text += f" [red](under {c.lower:g})[/]"
        out.append(text)
    return " ".join(out) or "-"
