"""Trace files (``.npz``): every signal, the time axis and the run's metadata.

Reading checks the file before trusting it: a regular file, a zip of ``.npy`` members
(no pickles), metadata that is a JSON object with ``T >= 0``, ``B >= 1``, a numeric or
null ``dt`` and a model name, a time axis of ``T`` steps, signals of shape
``(T, B, ...)``, and no member declaring more data than it holds (a 2 KB file declaring
10^12 elements is refused before anything is allocated).  Every failure is a
:class:`~blockflow.errors.TraceFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from blockflow.errors import TraceFileError


def save(path, arrays: dict, time: np.ndarray, meta: dict) -> Path:
    """Write a trace file (atomically); refuse a folder or a path under a file."""
    from blockflow.fsutil import atomic_write

    path = Path(path)
    if path.is_dir():
        raise TraceFileError(f"cannot save a trace to {str(path)!r}: it is a folder; give a "
                             "file name (trace.npz)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TraceFileError(f"cannot save a trace to {str(path)!r}: {str(parent)!r} "
                                     "is a file, not a folder")
            break
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{"~time": time, "~meta": np.array(json.dumps(meta))})
    try:
        return atomic_write(path, buf.getvalue())
    except OSError as e:
        raise TraceFileError(f"cannot save a trace to {str(path)!r}: {e.strerror or e}") \
            from None


def load(path) -> tuple[dict, np.ndarray, dict]:
    """``(signals, time, meta)`` of a trace file, checked (see the module docs)."""
    path = Path(path)

    def bad(why: str) -> TraceFileError:
        return TraceFileError(f"cannot load trace {str(path)!r}: {why}")

    try:
        st = os.stat(path)
    except OSError as e:
        raise bad(e.strerror or str(e)) from None
    if not stat.S_ISREG(st.st_mode):
        raise bad("not a regular file (a folder, pipe or device)")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_members(zf)
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if not {"~meta", "~time"} <= names:
                raise bad("not a trace file (no ~meta or ~time member)")
            meta = json.loads(str(z["~meta"]))
            time = z["~time"]
            arrays = {k: z[k] for k in z.files if not k.startswith("~")}
    except TraceFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
            json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad(f"damaged or not a trace file ({type(e).__name__}: {str(e)[:120]})") \
            from None
    _check_meta(meta, bad)
    T, B = meta["T"], meta["B"]
    if time.shape != (T,):
        raise bad(f"its time axis has shape {time.shape}, the metadata says T={T}")
    for k, a in arrays.items():
        if a.shape[:2] != (T, B):
            raise bad(f"signal {k!r} has shape {a.shape}, expected (T, B, ...) = ({T}, {B}, ...)")
    return arrays, time, meta


def _check_members(zf: zipfile.ZipFile) -> None:
    """Every member an ``.npy`` whose declared data fits in what it holds."""
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(f"member {info.filename!r} is not an array")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"member {info.filename!r} has array format {version}")
            shape, _, dtype = read(f)
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if need > info.file_size:
                raise ValueError(f"member {info.filename!r} declares {need} bytes of data "
                                 f"but holds {info.file_size}")


def _check_meta(meta, bad) -> None:
    if not isinstance(meta, dict):
        raise bad(f"its metadata is not a JSON object (got {type(meta).__name__})")
    T, B, dt, model = meta.get("T"), meta.get("B"), meta.get("dt"), meta.get("model")
    if not (isinstance(T, int) and not isinstance(T, bool) and T >= 0):
        raise bad(f"metadata T must be a non-negative integer, got {T!r:.40}")
    if not (isinstance(B, int) and not isinstance(B, bool) and B >= 1):
        raise bad(f"metadata B must be a positive integer, got {B!r:.40}")
    if dt is not None and not (isinstance(dt, int | float) and not isinstance(dt, bool)
                               and np.isfinite(dt) and dt > 0):
        raise bad(f"metadata dt must be a positive number or null, got {dt!r:.40}")
    if not isinstance(model, str):
        raise bad(f"metadata model must be the model's name, got {model!r:.40}")
