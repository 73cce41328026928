"""A fixed-mount barcode reader at a station of the simulated thin-film lab (``lab.options.barcode: true``), with
injectable faults, so a campaign can exercise labloop's sample-identity check (labloop/run/identity.py).

Physics-free: ``trigger()`` reads the label of the substrate the station holds (the lab's sample registry) into
the ``code`` signal. Two faults, seeded and off by default:

* a **misread** (per read, ``barcode_misread_rate``, or ``misread_next`` reads forced by a test): a no-read (the
  Status fails) or one digit off, as :class:`~labloop_simulators.solid_state.barcode.BarcodeReader` does; a re-read
  usually clears it;
* a **swap** (per substrate, ``barcode_swap_rate``, or ``swap_next`` forced by a test): the substrate carries
  another sample's label, so every read of it gives the same wrong id; a re-read does not clear it.

It has no ``sample`` signal on purpose: it is not a station, the robot never puts anything on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from labloop_devices.base import LabDevice
from ophyd import Component as Cpt
from ophyd import Signal
from ophyd.status import Status

from labloop.errors import DeviceError

from ..registry import SampleRegistry
from ..solid_state.barcode import BarcodeReader
from ..solid_state.faults import FaultRates


class SimBarcodeReader(LabDevice):
    """Reads the label of the sample in ``station``; see the module docstring for its faults."""

    role = "reader"
    code = Cpt(Signal, value="", kind="hinted", doc="The code read by the last trigger() ('' after a no-read).")

    def __init__(
        self,
        *,
        name: str,
        station: str,
        registry: SampleRegistry,
        seed: int | np.random.SeedSequence | None = None,
        misread_rate: float = 0.0,
        swap_rate: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(name=name, **kwargs)
        self.station, self.registry, self.swap_rate = station, registry, float(swap_rate)
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        read_seed, swap_seed = seq.spawn(2)
        self._reader = BarcodeReader(np.random.default_rng(read_seed), FaultRates(barcode_misread=float(misread_rate)))
        self._forced = BarcodeReader(np.random.default_rng(read_seed), FaultRates(barcode_misread=1.0))
        self._swap_rng = np.random.default_rng(swap_seed)
        self.misread_next = 0  # the next N reads are misread (a test's fault injection)
        self.swap_next = False  # the next substrate read for the first time carries another label
        self._labels: dict[str, str] = {}  # sample -> the id on its label
        self.reads: list[str | None] = []  # every read, for tests

    def trigger(self) -> Status:
        return self._run_status(self._read, timeout=10.0)

    def _label(self, sample: str) -> str:
        label = self._labels.get(sample)
        if label is None:
            swapped = self.swap_next or (self.swap_rate > 0 and self._swap_rng.random() < self.swap_rate)
            self.swap_next = self.swap_next and not swapped
            label = _other(sample) if swapped else sample
            self._labels[sample] = label
        return label

    def _read(self) -> None:
        sample = self.registry.occupant(self.station)
        read: str | None = None
        if sample is not None:
            label = self._label(sample)
            if self.misread_next > 0:
                self.misread_next -= 1
                read = self._forced.read(label)
            else:
                read = self._reader.read(label)
        self.reads.append(read)
        self.code.put(read or "")
        if read is None:
            raise DeviceError(f"{self.name}: NOREAD at {self.station}", "clean the label or the reader's window")


def _other(sample: str) -> str:
    """Another sample's id: the last digit changed (a neighbour's label)."""
    if sample and sample[-1].isdigit():
        return sample[:-1] + str((int(sample[-1]) + 1) % 10)
    return sample + "-X"
