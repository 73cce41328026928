"""Instruments whose large data (spectra, diffraction patterns, images) go to HDF5 files, the bluesky way.

An :class:`ArrayInstrument` is an :class:`~labloop_devices.base.Instrument` whose ``read()`` holds only scalars;
each array it measures is written by :meth:`ArrayInstrument.write_arrays` (from ``measure``) to one HDF5 file per
acquisition and announced through the StreamAsset protocol of bluesky (``collect_asset_docs``): a
``stream_resource`` document per array (``uri`` of the file, ``parameters.dataset``) and a ``stream_datum`` saying
that frame 0 of it belongs to this event. The RunEngine (bluesky >= 1.13, event-model >= 1.19) asks for them on
``read`` and emits them before the event, which it links to them; ``describe()`` marks those data keys
``external: "STREAM:"`` with their shape and dtype. labloop's document writer checksums the files when the run ends;
``labloop.store.assets.read_arrays`` reads them back.

A researcher's instrument declares its arrays and calls ``write_arrays`` with finite values::

    class Raman(ArrayInstrument):
        arrays = {"intensity": ArraySpec((1024,), "counts"), "shift": ArraySpec((1024,), "1/cm")}
        peak = Cpt(Quantity, value=math.nan, units="1/cm", kind="hinted")

        def measure(self) -> None:
            shift, counts = self.acquire()
            self.peak.put(float(shift[counts.argmax()]))
            self.write_arrays({"intensity": counts, "shift": shift})

A NaN or infinite value, or a shape other than declared, is refused with a :class:`~labloop.errors.DeviceError`
naming the array: the measurement fails instead of storing data no analysis can use.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from event_model import ComposeStreamResource, StreamRange

from labloop.errors import DeviceError

from .base import Instrument

HDF5_MIMETYPE = "application/x-hdf5"


@dataclass(frozen=True)
class ArraySpec:
    """One array an instrument writes per acquisition: its shape, its unit, its numpy dtype."""

    shape: tuple[int, ...]
    units: str = ""
    dtype: str = "<f8"


def check_finite(name: str, values: np.ndarray) -> None:
    """Refuse an array with NaN or infinite values (bad input), saying how many and where the first is."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DeviceError(
            f"{name}: {int(bad.sum())} of {values.size} values are NaN or infinite (first at index "
            f"{first[0] if len(first) == 1 else first}); refused, nothing was stored",
            "check the instrument's detector and the sample; measure again",
        )


class ArrayInstrument(Instrument):
    """An instrument whose arrays are HDF5 assets (see the module's documentation)."""

    #: Array name -> spec; the data key is ``<device name>_<array name>``.
    arrays: ClassVar[dict[str, ArraySpec]] = {}

    def __init__(self, *args: Any, data_dir: str | os.PathLike[str] | Callable[[], str] | None = None, **kwargs: Any):
        """``data_dir``: the folder the files go to (created when the first file is written), or a callable
        giving it; None: a new temporary folder."""
        super().__init__(*args, **kwargs)
        self._data_dir = data_dir
        self._asset_lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self.last_file: str | None = None

    # ----------------------------------------------------------------------------------------- where
    def data_folder(self) -> Path:
        where = self._data_dir() if callable(self._data_dir) else self._data_dir
        if where is None:
            where = self._data_dir = tempfile.mkdtemp(prefix="labloop-assets-")
        path = Path(where).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeviceError(
                f"{self.name}: cannot create the data folder '{path}': {exc}",
                "make the folder writable, or give another data folder",
            ) from None
        return path

    # ----------------------------------------------------------------------------------------- describe
    def data_key(self, array: str) -> str:
        return f"{self.name}_{array}"

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = dict(super().describe())
        for array, spec in self.arrays.items():
            desc[self.data_key(array)] = {
                "source": f"file:{self.name}",
                "dtype": "array",
                "shape": list(spec.shape),
                "dtype_numpy": np.dtype(spec.dtype).str,
                "units": spec.units,
                "external": "STREAM:",
            }
        return desc

    # ----------------------------------------------------------------------------------------- write
    def trigger(self) -> Any:
        with self._asset_lock:
            self._pending = []  # what a failed acquisition announced is never emitted
        return super().trigger()

    def file_stem(self) -> str:
        sample = re.sub(r"[^A-Za-z0-9._-]+", "-", str(self.sample.get()) or "nosample").strip("-.") or "nosample"
        return f"{sample}-{self.name}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"

    def write_arrays(self, values: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> str:
        """Check every declared array (finite, declared shape), write them to one new HDF5 file (under a temporary
        name, renamed when complete: a reader never sees half a file) and queue its asset documents for the next
        ``read``. Returns the file's path."""
        import h5py  # imported here: only array instruments need it

        missing = sorted(set(self.arrays) - set(values))
        extra = sorted(set(values) - set(self.arrays))
        if missing or extra:
            raise DeviceError(
                f"{self.name}: arrays {missing or extra} {'missing' if missing else 'not declared'} "
                f"(declared: {sorted(self.arrays)})",
                "write exactly the declared arrays",
            )
        frames: dict[str, np.ndarray] = {}
        for array, spec in self.arrays.items():
            data = np.asarray(values[array], dtype=np.dtype(spec.dtype))
            if data.shape != tuple(spec.shape):
                raise DeviceError(
                    f"{self.name}: array '{array}' has shape {data.shape}, declared {spec.shape}",
                    "fix the instrument's read-out or its declared ArraySpec",
                )
            check_finite(f"{self.name}: {array}", data)
            frames[array] = data
        folder = self.data_folder()
        path = folder / f"{self.file_stem()}.h5"
        tmp = folder / f".{path.name}.part"
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["instrument"] = self.name
                f.attrs["sample"] = str(self.sample.get())
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
                for array, data in frames.items():
                    ds = f.create_dataset(f"/entry/data/{array}", data=data[np.newaxis, ...], chunks=(1, *data.shape))
                    ds.attrs["units"] = self.arrays[array].units
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DeviceError(
                f"{self.name}: cannot write '{path}': {exc}", "check the data folder's free space and permissions"
            ) from None
        docs: list[tuple[str, dict[str, Any]]] = []
        for array, data in frames.items():
            bundle = ComposeStreamResource()(
                mimetype=HDF5_MIMETYPE,
                uri=f"file://localhost{path.as_posix()}",
                data_key=self.data_key(array),
                parameters={"dataset": f"/entry/data/{array}", "chunk_shape": [1, *data.shape]},
            )
            docs.append(("stream_resource", dict(bundle.stream_resource_doc)))
            docs.append(("stream_datum", dict(bundle.compose_stream_datum(StreamRange(start=0, stop=1)))))
        with self._asset_lock:
            self._pending = docs
        self.last_file = str(path)
        return str(path)

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The StreamAsset protocol: the documents of the last acquisition, once (bluesky calls this on read)."""
        with self._asset_lock:
            docs, self._pending = self._pending, []
        yield from docs
