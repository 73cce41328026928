"""Trial rows as a Parquet file (``labloop export --format parquet``), with pyarrow when it is installed."""

from __future__ import annotations

import io
from typing import Any

from labloop.errors import LabloopError


def parquet(rows: list[dict[str, Any]], cols: list[str]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LabloopError(
            "the parquet format needs pyarrow, which is not installed",
            "pip install 'pyarrow>=14', or export as csv or jsonl",
        ) from None
    arrays = []
    for c in cols:
        values = [r[c] for r in rows]
        if c == "stations":
            arrays.append(pa.array(values, pa.list_(pa.string())))
            continue
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types (a number here, a word there): text
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    table = pa.Table.from_arrays(arrays, names=cols)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
