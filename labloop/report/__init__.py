"""The campaign report (``labloop report``): an ``index.html`` with figures, for a researcher after a campaign.

How it converged (best so far, target, random-search expectation), the Pareto front when there are several
objectives, which parameters mattered and how good the model's predictions were (from the evidence each proposal
stored, and leave-one-out for every objective and constraint), the process streams of the best trial and of trials
asked for, where failures clustered, and the dock data of the best trials. Modules: :mod:`.gather` reads the store
once; :mod:`.convergence`, :mod:`.pareto`, :mod:`.model`, :mod:`.crossval`, :mod:`.failures`, :mod:`.streams`,
:mod:`.dock` each draw one family of figures from that data;
:mod:`.page` writes the HTML; :func:`write_report` puts it all in place atomically.

Nothing half-written: the report is made in a temporary folder beside ``out`` and renamed into place, so a failure
(disk full, a bug in a figure) leaves ``out`` as it was, and a reader never sees a report half old and half new.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labloop.errors import LabloopError
from labloop.store import Store
from labloop.store.schema import Campaign

from . import convergence, crossval, dock, failures, model, pareto, streams
from .gather import ReportData, gather
from .page import GENERATOR, render
from .plotting import Drawn, Item

__all__ = ["Report", "make", "write_report"]

FAMILIES = (convergence, pareto, model, crossval, streams, failures, dock)


@dataclass
class Report:
    """What was written: the folder, the page, the figures, and the data they came from."""

    out: Path
    index: Path
    items: list[Item]
    data: ReportData

    @property
    def files(self) -> list[str]:
        return [i.file for i in self.items if isinstance(i, Drawn)]


def make(data: ReportData, folder: Path) -> list[Item]:
    """Draw every figure family into ``folder`` and write ``index.html`` there."""
    items: list[Item] = []
    if data.trials:
        for family in FAMILIES:
            items.extend(family.draw(data, folder))
    (folder / "index.html").write_text(render(data, items), encoding="utf-8")
    return items


def check_out(out: Path) -> None:
    """Refuse, before any work, an ``out`` that is a file or a folder holding something other than a report, or
    whose parent cannot take a new folder."""
    if out.exists() and not out.is_dir():
        raise LabloopError(f"cannot write the report to {out}: it is a file", "give a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise LabloopError(
            f"{out} is not empty and holds no earlier report: writing there could mix the report with other files",
            "give a new or empty folder for --out (a folder holding an earlier labloop report is replaced)",
        )
    parent = out.parent
    if not parent.is_dir():
        raise LabloopError(
            f"cannot write the report to {out}: {parent} does not exist",
            f"create {parent} first, or give --out in an existing folder",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LabloopError(
            f"cannot write the report to {out}: {parent} is not writable", "give --out in a folder you may write to"
        )


def _is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a report labloop wrote (its index.html carries the generator mark)."""
    try:
        with open(folder / "index.html", encoding="utf-8", errors="replace") as f:
            return GENERATOR in f.read(2000)
    except OSError:
        return False


def write_report(
    store: Store, campaign: Campaign, out: str | os.PathLike[str], trials: list[int] | tuple[int, ...] = ()
) -> Report:
    """Gather, draw and write the report of ``campaign`` (a stored campaign row) into the folder ``out``."""
    out = Path(out).absolute()
    check_out(out)
    data = gather(store, campaign, trials)
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    except OSError as exc:
        raise LabloopError(
            f"cannot write the report to {out}: {exc.strerror or exc}", "give --out in a folder you may write to"
        ) from None
    try:
        items = make(data, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; others may read a report
        _replace(tmp, out)
    except OSError as exc:
        raise LabloopError(
            f"cannot write the report to {out}: {exc.strerror or exc}", "free some space or give another --out"
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Report(out, out / "index.html", items, data)


def _replace(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an earlier report there is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
