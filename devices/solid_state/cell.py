"""The solid-state workcell as a campaign sees it: thin adapters over the lab's declarative devices and robot driver.

Why adapters and not the YAML files alone: a campaign speaks in recipes (``li_source: LiOH``, ``ratio: 1.05``,
``atmosphere: O2``) and in labloop's sample ids and station names (``solid-state-0003``, ``furnace2``); the
instruments speak in hopper numbers and grams, atmosphere codes and crucible barcodes and taught slots (``CR0003``,
``f2s3``). Each factory below builds the instrument from its YAML description (devices/solid_state/*.yaml, the
same file ``labloop devices check`` passes) with a small subclass that translates; the protocol work stays in the
declarative device and its transport.

* :func:`dispenser`: ``{li_source, mn_source, ratio}`` -> two doses (grams for 5 mmol of LiMn2O4 at that Li/Mn).
* :func:`furnace`: ``{peak_c, ramp_c_per_min, dwell_h, atmosphere}`` -> the controller's profile (dwell in
  minutes, atmosphere as its register code), for the crucibles it holds (a batch's ``samples``: up to four).
* :func:`balance`, :func:`xrd`: the YAML devices as they are (the campaign names them by address).
* :func:`barcode`: the reader at the balance; the label ``CRNNNN`` read as labloop's sample ``PREFIX-NNNN``.
* :class:`CellRobot`: labloop's sample ``PREFIX-NNNN`` is crucible ``CRNNNN``, which lives in rack slot NN; the
  entry (``load_lock``) and the end of the workflow (``storage``) are that slot; ``furnaceN`` is one of its four
  slots ``fNs1`` .. ``fNs4``, chosen from the arm controller's own record of what it placed where.
"""

from __future__ import annotations

import re
import time
import zlib
from pathlib import Path
from typing import Any

from labloop_devices.base import Move
from labloop_devices.solid_state.hooks import AlarmRaised, AlarmWatchingStation, Furnace
from labloop_devices.solid_state.robot import OpcuaRobot
from ophyd import Component as Cpt
from ophyd import Signal

from labloop.declarative.builder import build_class
from labloop.declarative.schema import load_spec
from labloop.device_base import check_limits
from labloop.errors import DeviceError, LimitError

FOLDER = Path(__file__).parent

#: precursor -> (hopper number on the dispenser, cations of Li or Mn per formula unit, molar mass g/mol)
HOPPERS: dict[str, tuple[int, int, float]] = {
    "Li2CO3": (0, 2, 73.89),
    "LiOH": (1, 1, 23.95),
    "LiNO3": (2, 1, 68.95),
    "Li2O": (3, 2, 29.88),
    "MnO2": (4, 1, 86.94),
    "Mn2O3": (5, 2, 157.87),
    "MnCO3": (6, 1, 114.95),
    "Mn3O4": (7, 3, 228.81),
}
LI_SOURCES = ("Li2CO3", "LiOH", "LiNO3", "Li2O")
MN_SOURCES = ("MnO2", "Mn2O3", "MnCO3", "Mn3O4")
ATMOSPHERES = ("air", "O2", "N2", "Ar")
TARGET_MMOL = 5.0  # of LiMn2O4 per crucible


def masses(li_source: str, mn_source: str, ratio: float, target_mmol: float = TARGET_MMOL) -> dict[str, float]:
    """Grams of each precursor for ``target_mmol`` of LiMn2O4 at Li/Mn = 0.5 * ``ratio``."""
    mn_mol = 2 * target_mmol / 1000
    li_mol = mn_mol * 0.5 * ratio
    _, li_cat, li_m = HOPPERS[li_source]
    _, mn_cat, mn_m = HOPPERS[mn_source]
    return {li_source: li_mol / li_cat * li_m, mn_source: mn_mol / mn_cat * mn_m}


def _choice(device: str, field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise LimitError(f"{device}: {field}={value!r} is not one of {list(choices)}", "choose one of them")
    return str(value)


#: jams cleared (and the rest dispensed) on one dose before the step fails; a top-up below this is not dispensed
JAM_CLEARS = 2
MIN_TOP_UP_G = 0.0005


class CellDispenser(AlarmWatchingStation):
    """The powder dispenser taking a campaign's precursor recipe: one dose of each precursor into the crucible."""

    jams_cleared = Cpt(Signal, value=0, kind="normal", doc="jams cleared (and the rest dispensed) in the last step")

    RECIPE_LIMITS = {"li_source": (0.0, 0.0), "mn_source": (0.0, 0.0), "ratio": (0.5, 2.0)}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = {**self.limits, **self.RECIPE_LIMITS}  # what a campaign's parameters may name

    def set(self, recipe: Any) -> Any:
        if not {"li_source", "mn_source", "ratio"} <= set(recipe):
            return super().set(recipe)  # a raw dose (precursor, mass_g): the YAML device as it is
        li = _choice(self.name, "li_source", recipe["li_source"], LI_SOURCES)
        mn = _choice(self.name, "mn_source", recipe["mn_source"], MN_SOURCES)
        check_limits({"ratio": self.RECIPE_LIMITS["ratio"]}, {"ratio": recipe["ratio"]}, self.name)
        if not self.sample.get():
            raise DeviceError(f"{self.name}: no crucible loaded", "transfer a crucible under the head first")
        if self.jammed.get():  # left jammed by a dose outside the campaign: the instrument would refuse every dose
            t = self.transport
            raise DeviceError(
                f"{self.name}: jammed before this crucible's dose (a jam nobody cleared; {t.kind} {t.address})",
                "clear the hopper, then reset the jam on the dispenser (ClearJam)",
            )
        doses = masses(li, mn, float(recipe["ratio"]))
        self._stop.clear()
        return self._run_status(lambda: self._dose(doses))

    def _dose(self, doses: dict[str, float]) -> None:
        """Each precursor's dose; a jam (the powder bridged in the hopper) is cleared on the instrument and the rest
        of that dose dispensed, as the jam's own fix says: the crucible keeps what came out, so repeating the whole
        step would overdose it. ``jams_cleared`` (read with the step) counts them. A jam beyond :data:`JAM_CLEARS`
        on one dose fails the step, naming the precursor and what is missing, with that jam cleared too, so that
        the next crucible is not refused by a jammed dispenser."""
        self.jams_cleared.put(0)
        for precursor, grams in doses.items():
            left, clears = round(grams, 4), 0
            while True:
                try:
                    self.run_recipe({"precursor": HOPPERS[precursor][0], "mass_g": left})
                    break
                except AlarmRaised as exc:
                    if "jammed" not in exc.alarms:
                        raise
                    self._idle(precursor)
                    out = float(self.dispensed.get() or 0.0)  # what came out before the jam (set before Jammed)
                    self.run_command("clear_jam")
                    clears += 1
                    self.jams_cleared.put(int(self.jams_cleared.get()) + 1)
                    left = round(left - out, 4)
                    if clears > JAM_CLEARS:
                        raise DeviceError(
                            f"{self.name}: jammed {clears} times dosing {precursor} ({grams:.4f} g asked, "
                            f"{left:.4f} g missing); the jam is cleared, the crucible holds a partial dose",
                            f"check the {precursor} hopper (caked powder: dry or sieve it); the trial's sample "
                            "does not have its recipe",
                        ) from exc
                    if left < MIN_TOP_UP_G:  # within the dispenser's dose error: the dose is complete
                        break

    def _idle(self, precursor: str) -> None:
        """Until the dispenser has ended the jammed dose (it raises Jammed just before it drops Busy): a dose asked
        for while it is busy is refused."""
        deadline = time.monotonic() + self.default_timeout
        while self.busy.get():
            if time.monotonic() > deadline:
                raise DeviceError(
                    f"{self.name}: still busy after a jam dosing {precursor}", "check the dispenser; clear the jam"
                )
            time.sleep(self.spec.poll)


class CellFurnace(Furnace):
    """A box furnace taking a campaign's firing profile (dwell in hours, atmosphere by name), for every crucible in
    its four slots at once.

    Like the thin-film lab's furnace it says which samples it holds with a ``samples`` list (the transfer plan keeps
    it in step with the robot's moves; a resumed trial whose crucible is inside is put back on it), not the
    one-sample ``sample`` signal. A batch's recipe (labloop/run/batching.py ``BatchFormer.recipe``) carries
    ``samples`` and ``batch`` beside the profile: the firing is refused, before anything heats, unless it names
    exactly the crucibles inside and the controller's slot count (register 11, its own sensor) agrees, because
    a furnace fires everything in it: a crucible that is not part of this firing would be fired anyway.
    """

    samples = Cpt(Signal, value=[], kind="config", doc="Ids of the samples in the furnace (one per occupied slot).")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = {**self.limits, "dwell_h": (0.0, 30.0)}

    def set(self, recipe: Any) -> Any:
        profile = dict(recipe)
        told, batch = profile.pop("samples", None), profile.pop("batch", None)
        if profile.pop("reattach", False):
            self._stop.clear()
            return self._run_status(lambda: self._follow([str(s) for s in told or []]))
        inside = [str(s) for s in (self.samples.get() or [])]
        if not inside:
            raise DeviceError(f"{self.name}: no crucible loaded", "transfer the batch's crucibles into the furnace")
        if told is not None and sorted(map(str, told)) != sorted(inside):
            raise DeviceError(
                f"{self.name}: the firing{f' of batch {batch}' if batch else ''} names {sorted(told)} but the "
                f"furnace holds {sorted(inside)}",
                "take out the crucibles that are not part of this firing, or fire them together",
            )
        occupied = int(self.occupied.get())
        if occupied != len(inside):
            raise DeviceError(
                f"{self.name}: the controller counts {occupied} crucible(s) in its slots, labloop put "
                f"{len(inside)} there ({sorted(inside)})",
                "look into the furnace: take out any crucible that is not part of this firing, or put back the "
                "missing one, then run the step again",
            )
        if "dwell_h" in profile:
            profile["dwell_min"] = float(profile.pop("dwell_h")) * 60.0
        if isinstance(profile.get("atmosphere"), str):
            profile["atmosphere"] = ATMOSPHERES.index(
                _choice(self.name, "atmosphere", profile["atmosphere"], ATMOSPHERES)
            )
        self._stop.clear()  # a new firing: forget an earlier stop()
        check_limits(self.limits, profile, self.name)
        tag = firing_tag(inside)

        def fire() -> None:
            self.program.put(tag)  # before run = 1: the controller latches it when the program starts
            self.run_recipe(profile)

        return self._run_status(fire)

    def program_of(self, samples: list[str]) -> str | None:
        """Whether the controller runs (``"running"``) or ran (``"done"``) the firing of exactly ``samples``, started
        after a client wrote it: its latched program tag is theirs (:func:`firing_tag`). None otherwise: a firing
        that never started (the client died between writing the profile and ``run = 1``), a tripped one, another
        set of crucibles. What resume asks before it reattaches a trial cut mid-firing instead of failing it."""
        if not samples or int(self.running_program.get()) != firing_tag(samples) or self.tripped.get():
            return None
        if self.done.get():
            return "done"
        return "running" if self.running.get() else None

    def _follow(self, samples: list[str]) -> None:
        """Wait, without writing anything, for the firing of ``samples`` that the controller runs to end (a
        reattached step: the program was started by a process that died); fails on a trip as a live firing does."""
        state = self.program_of(samples)
        if state is None:
            raise DeviceError(
                f"{self.name}: its controller does not run the firing of {sorted(samples)} (program "
                f"{int(self.running_program.get())}, expected {firing_tag(samples)})",
                "look into the furnace; take the crucibles out and fire them again as new trials",
            )
        self.samples.put(sorted(samples))
        deadline = time.monotonic() + self.default_timeout
        self.wait_until("following the firing started before the restart", lambda: bool(self.done.get()), deadline)


def firing_tag(samples: list[str]) -> int:
    """The program tag of one firing: a CRC-32 of the sorted ids of the crucibles it fires. Each crucible is fired
    once, so a tag names one firing; written before ``run = 1``, it tells a resumed client whether the program the
    controller runs is the one its predecessor started."""
    return zlib.crc32(",".join(sorted(map(str, samples))).encode())


class CellBarcodeReader:
    """The fixed-mount reader at the balance, read in labloop's names: the label ``CRNNNN`` is the crucible of
    sample ``PREFIX-NNNN``. The prefix is the campaign's (taken from the sample presented, which the run puts on
    the reader's ``sample`` signal); the number is what the label says, so a neighbour's crucible reads as the
    neighbour's sample and the identity check names it."""

    def measure(self) -> None:
        super().measure()  # type: ignore[misc]  # LON -> code (CRNNNN); NOREAD raises
        code, presented = str(self.code.get()), str(self.sample.get())  # type: ignore[attr-defined]
        found = re.fullmatch(r"CR(\d{4})", code)
        if found is not None and re.search(r"\d+$", presented):
            self.code.update(re.sub(r"\d+$", found.group(1), presented))  # type: ignore[attr-defined]


def _described(
    name: str, file: str, hook: type | None, address: str | None, timeout: float | None, time_scale: float = 1.0
) -> Any:
    """The device of ``file`` with its adapter. ``time_scale``: the lab's model seconds per real second when the
    instruments are simulated (``point_at`` sets it from the served lab), for a file whose completion timeout is in
    the instrument's own seconds (the furnace's: the longest firing its limits allow), so it shrinks with the scale;
    the other files' timeouts are small enough already."""
    spec = load_spec(FOLDER / file)
    cls = build_class(spec, str(FOLDER / file))
    if hook is not None:  # the described class with the adapter in front of the file's own hook
        cls = type(cls.__name__, (hook, cls), {})
    dev = cls(name=name, address=address, timeout=timeout)
    if time_scale <= 0:
        raise LimitError(f"{name}: time_scale must be > 0, not {time_scale:g}", "give the served lab's time scale")
    dev.default_timeout = max(10.0, dev.default_timeout / time_scale)
    return dev


# Every factory takes the served lab's ``time_scale`` (``point_at`` sets it for each described instrument); only the
# furnace's file states its timeout in the instrument's own seconds, the others' fit a simulated lab at any scale.
def dispenser(*, name: str, address: str | None = None, timeout: float | None = None, time_scale: float = 1.0) -> Any:
    return _described(name, "dispenser.yaml", CellDispenser, address, timeout)


def furnace(*, name: str, address: str | None = None, timeout: float | None = None, time_scale: float = 1.0) -> Any:
    return _described(name, "furnace.yaml", CellFurnace, address, timeout, time_scale)


def balance(*, name: str, address: str | None = None, timeout: float | None = None, time_scale: float = 1.0) -> Any:
    return _described(name, "balance.yaml", None, address, timeout)


def barcode(*, name: str, address: str | None = None, timeout: float | None = None, time_scale: float = 1.0) -> Any:
    return _described(name, "barcode.yaml", CellBarcodeReader, address, timeout)


def xrd(*, name: str, address: str | None = None, timeout: float | None = None, time_scale: float = 1.0) -> Any:
    return _described(name, "xrd.yaml", None, address, timeout)


class CellRobot(OpcuaRobot):
    """A lab robot addressed in labloop's names: samples are crucibles, stations are taught positions.

    A box furnace has four slots (``fNs1`` .. ``fNs4``) and fires every crucible in them, so a move into
    ``furnaceN`` must choose a free slot and a move out of it must pick where THAT crucible sits. Where that is
    known: **the arm controller's own record** (``Placed`` on the arm's OPC UA server, :meth:`OpcuaRobot.placed`),
    which the arm updates itself at every grip and release of a move that names its crucible. Why there:

    * it outlives the orchestrator: the store only says ``furnace2`` and the process may be killed between the
      release and the store's commit; the arm finished the move and wrote its record whatever happened to its
      client, so a resumed orchestrator (a new adapter) reads the same record back;
    * it is what a real cell has (a PLC's nest table); the adapter never reads the simulated world's truth, which
      no real adapter could;
    * deriving the slot from the crucible number (slot = k mod 4) would put two crucibles of one firing in one slot
      whenever their numbers agree mod 4: a collision, a protective stop.

    The rule: into ``furnaceN``, the slot the record already gives this crucible (a move repeated after a kill:
    the arm finds its hand empty and places nothing on top), else the lowest slot the record shows empty (none:
    the furnace is full, refused before the arm moves); out of ``furnaceN``, the slot the record gives this
    crucible (none: refused, naming what the record holds). Limits: the record holds only this arm's moves, so a
    furnace is loaded and unloaded by one arm (robot2 in experiments/solid_state.yaml); a crucible an operator
    takes out by hand leaves a stale entry (the slot looks taken, never wrongly empty: :meth:`forget` clears it).
    An arm whose controller keeps no record gets slot 1 (one crucible per firing, as before batching).
    """

    STATIONS = ("dispenser", "balance", "xrd")
    FURNACES = ("furnace1", "furnace2", "furnace3", "furnace4")
    PLACES = ("load_lock", "storage")
    SLOTS = 4  # crucibles per box furnace

    def __init__(self, prefix: str = "", *, name: str, address: str, **kwargs: Any):
        super().__init__(prefix, name=name, address=address, **kwargs)
        self.positions = self.STATIONS + self.FURNACES + self.PLACES

    @staticmethod
    def crucible(sample: str) -> str:
        found = re.search(r"(\d+)$", sample)
        if found is None or not 1 <= int(found.group(1)) <= 24:
            raise DeviceError(
                f"sample {sample!r} has no crucible: the rack holds CR0001..CR0024",
                "keep the campaign's budget within the 24 crucibles of the rack",
            )
        return f"CR{int(found.group(1)):04d}"

    def taught(self, sample: str, where: str, record: dict[str, str] | None = None, picking: bool = False) -> str:
        """The arm's position for ``sample`` at labloop's place ``where``; a furnace slot from the arm's ``record``
        (the rule: class docstring), slot 1 without one."""
        if where in self.PLACES:
            return f"rack{int(self.crucible(sample)[2:]):02d}"  # each crucible has its own rack slot
        if where not in self.FURNACES:
            return where
        n = where.removeprefix("furnace")
        slots = [f"f{n}s{s}" for s in range(1, self.SLOTS + 1)]
        if record is None:
            return slots[0]
        code = self.crucible(sample)
        mine = [s for s in slots if record.get(s) == code]
        if mine:
            return mine[0]
        held = {s: record[s] for s in slots if s in record}
        if picking:
            raise DeviceError(
                f"{self.name}: its record has no {code} in {where} (it holds {held or 'nothing'} there)",
                f"find {code}; if it is in {where}, take it out by hand and tell labloop where it is "
                "(the arm only knows the crucibles it placed itself)",
            )
        free = [s for s in slots if s not in held]
        if not free:
            raise DeviceError(
                f"{self.name}: {where} is full by its record ({held}): no slot for {code}",
                f"unload {where} first; if a slot is empty in fact, clear it with the arm's Forget(slot)",
            )
        return free[0]

    def locate(self, sample: str) -> str | None:
        """The furnace the arm's record puts ``sample``'s crucible in (None: not in one by this arm's record). Only
        the furnaces: this arm is the only one that loads and unloads them, so its record there is the truth, while
        at a station another arm also serves (the balance) the record goes stale when that arm takes the crucible.
        Why it matters: a crucible cut mid-firing is found without asking an operator, and its firing reattached."""
        record = self.placed()
        if not record:
            return None
        code = self.crucible(sample)
        for furnace in self.FURNACES:
            n = furnace.removeprefix("furnace")
            if any(record.get(f"f{n}s{k}") == code for k in range(1, self.SLOTS + 1)):
                return furnace
        return None

    def do_move(self, move: Move) -> None:
        furnaces = {move.source, move.destination} & set(self.FURNACES)
        record = self.placed() if furnaces else None
        super().do_move(
            Move(
                self.crucible(move.sample),
                self.taught(move.sample, move.source, record, picking=True),
                self.taught(move.sample, move.destination, record),
            )
        )
