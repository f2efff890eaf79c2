"""Trace: every signal of a run as a ``(T, B, *shape)`` array, addressable by name."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from blockflow.core.rates import HOLD
from blockflow.errors import BlockflowError, SimulationError


class Trace:
    """The recorded signals of one simulation (or sweep).

    Index by ``"path.port"`` (``"ctrl/tanh.y"``), by ``"path"`` for a block with one
    output, by the name of an Inport or Outport, or by ``(path, port)``.  Input ports are
    addressable too (``"gain.u"`` is the signal driving the gain).

    Attributes
    ----------
    T, B : int
        Number of steps and batch size.
    final_states : dict
        The state of every stateful block after the last step, by path.
    k0 : int
        The step the trace starts at (a Simulator's chunk; 0 for a whole run).
    dropped : str or None
        Why some signals have no record (a run that kept only what its caller reads,
        such as ``backward(..., keep_deltas=False)``) and how to keep them; asking for one
        of them raises this.
    """

    def __init__(self, plan, bufs: list, T: int, B: int, final_states: dict | None = None,
                 k0: int = 0, dropped: str | None = None):
        self.plan = plan
        self.bufs = bufs
        self.T, self.B = T, B
        self.final_states = final_states or {}
        self.k0 = k0
        self.dropped = dropped

    @property
    def final_state(self) -> dict:
        """The state of every stateful block after the last step, by path: what
        ``simulate(..., initial_state=)`` or a Simulator continues from.  A run that made
        a stateful block over whole sequences (outside every loop) kept no state for it:
        then this says so (run with ``mode="step"``, or a Simulator)."""
        plan = self.plan
        missing = [op.path for seg in plan.segments for op in seg.ops
                   if op.block.stateful and op.path not in self.final_states]
        if missing:
            raise SimulationError(
                f"this run of {plan.model.name!r} made {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} over whole sequences and kept no final "
                "state for them; simulate(..., mode='step') or a Simulator keeps every state")
        out = dict(self.final_states)
        for seg in plan.segments:  # what slow blocks hold between hits (multirate)
            for op in seg.ops:
                if op.multirate and op.io[1] == HOLD:
                    rows = tuple(np.array(self.bufs[s][-1], copy=True) for s in op.outs)
                    out[f"{op.path}:held"] = rows[0] if len(rows) == 1 else rows
        return out

    @property
    def dt(self) -> float:
        """The model's base sample period (s); 1 when it has none (time in steps)."""
        return self.plan.model.dt

    @property
    def time(self) -> np.ndarray:
        """The time of every step: ``k dt`` (seconds, or steps when ``dt`` is 1)."""
        return np.arange(self.k0, self.k0 + self.T) * self.dt

    def slot(self, key) -> int:
        return signal_slot(self.plan, key)

    def __getitem__(self, key) -> np.ndarray:
        a = self.bufs[self.slot(key)]
        if a is None and self.dropped is not None:
            raise SimulationError(f"the run kept no record of {key!r}: {self.dropped}")
        return a

    def __contains__(self, key) -> bool:
        try:
            self.slot(key)
        except BlockflowError:
            return False
        return True

    def names(self) -> list[str]:
        """Every output signal, as ``"path.port"``."""
        return [f"{path}.{p}" for path, b in self.plan.flat.blocks.items() for p in b.outputs]

    def recorded(self) -> list[str]:
        """The output signals the run kept a record of (all of them, unless it was asked
        to keep some: ``simulate(signals=)``, ``backward(keep_deltas=False)``)."""
        return [n for n in self.names() if self.bufs[self.slot(n)] is not None]

    def outputs(self) -> dict[str, np.ndarray]:
        """The model's Outport signals by name."""
        return {n: self.bufs[s] for n, s in self.plan.outports.items()}

    def _pick(self, signals) -> list[str]:
        if signals is None:
            return list(self.plan.inports) + list(self.plan.outports) or self.names()
        names = [signals] if isinstance(signals, str) else signals
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise SimulationError(f"signals must be a signal name or a list of names (see "
                                  f"trace.names()), got {signals!r:.60}")
        return list(names)

    def to_xarray(self, signals=None):
        """The signals as an ``xarray.Dataset``: dims ``time`` (seconds when the model has
        a sample period, else steps), ``batch`` and each signal's sample axes;
        ``signals`` defaults to the Inports and Outports."""
        xr = _require("xarray", "data")
        data = {}
        for name in self._pick(signals):
            a = self[name]
            dims = ("time", "batch", *(f"{name}_dim{i}" for i in range(a.ndim - 2)))
            data[name] = (dims, np.asarray(a))
        return xr.Dataset(data, coords={"time": self.time, "batch": np.arange(self.B)},
                          attrs={"model": self.plan.model.name, "dt": self.dt})

    def to_pandas(self, signals=None):
        """The signals as a long ``pandas.DataFrame``: one row per step and batch member,
        a column per scalar (``name[i]`` for vector samples)."""
        pd = _require("pandas", "data")
        cols = {"time": np.repeat(self.time, self.B),
                "batch": np.tile(np.arange(self.B), self.T)}
        for name in self._pick(signals):
            a = self[name].reshape(self.T * self.B, -1)
            if a.shape[1] == 1:
                cols[name] = a[:, 0]
            else:
                cols.update({f"{name}[{i}]": a[:, i] for i in range(a.shape[1])})
        return pd.DataFrame(cols)

    def save(self, path) -> Path:
        """Every signal to ``path`` (.npz), with the time axis and the model's name."""
        from blockflow.run.tracefile import save

        names = dict.fromkeys([*self.plan.inports, *self.plan.outports, *self.recorded()])
        return save(path, {n: self[n] for n in names}, self.time,
                    {"model": self.plan.model.name, "T": self.T, "B": self.B, "dt": self.dt})

    @staticmethod
    def load(path) -> SavedTrace:
        """A trace saved by :meth:`save`: signals by name, ``time``, ``T``, ``B``
        (checked: a damaged or foreign file is a TraceFileError naming what is wrong)."""
        from blockflow.run.tracefile import load

        return SavedTrace(*load(path))

    def plot(self, signals=None, path=None, **kw):
        """Plot signals over time (see :func:`blockflow.run.plot.plot_trace`)."""
        from blockflow.run.plot import plot_trace

        return plot_trace(self, signals, path, **kw)

    def _repr_html_(self) -> str:
        """A table of the signals (notebooks): name, shape, dtype, min, max."""
        rows = []
        for n in self.recorded():
            a = self[n]
            lo, hi = (f"{a.min():.4g}", f"{a.max():.4g}") if a.size else ("", "")
            rows.append(f"<tr><td>{html.escape(n)}</td><td>{a.shape[2:] or 'scalar'}</td>"
                        f"<td>{a.dtype}</td><td>{lo}</td><td>{hi}</td></tr>")
        dt = f", dt={self.dt:g} s" if self.plan.model._dt is not None else ""
        head = (f"<b>Trace of {html.escape(self.plan.model.name)}</b>: T={self.T}, "
                f"B={self.B}{dt}, {len(rows)} signals")
        if len(rows) < len(self.names()):
            head += f" ({len(self.names()) - len(rows)} more not recorded)"
        return (f"{head}<table><tr><th>signal</th><th>sample</th><th>dtype</th><th>min</th>"
                f"<th>max</th></tr>{''.join(rows)}</table>")

    def __repr__(self) -> str:
        return f"<Trace of {self.plan.model.name!r}: T={self.T}, B={self.B}, " \
               f"{len(self.names())} signals>"


class SavedTrace:
    """Signals loaded from a saved trace: ``saved["plant.y"]``, ``time``, ``T``, ``B``,
    ``dt``, ``model``."""

    def __init__(self, arrays: dict, time: np.ndarray, meta: dict):
        self.arrays, self.time = arrays, time
        self.model, self.T, self.B, self.dt = meta["model"], meta["T"], meta["B"], meta["dt"]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise BlockflowError(f"the saved trace of {self.model!r} has no signal {name!r}; "
                                 f"it has {sorted(self.arrays)}")
        return self.arrays[name]

    def names(self) -> list[str]:
        return list(self.arrays)

    def __repr__(self) -> str:
        return f"<SavedTrace of {self.model!r}: T={self.T}, B={self.B}, {len(self.arrays)} " \
               "signals>"


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BlockflowError(f"this needs {module}: pip install 'blockflow[{extra}]'") \
            from None


def read_span(a: np.ndarray, start: int, n: int, t0: int = 0) -> np.ndarray:
    """Values of a recorded signal at times ``start .. start+n-1``, zero where it has none.

    ``a`` holds the signal at times ``t0 .. t0+len(a)-1``.  The one way the gradient
    schedules read forward values and deltas shifted in time (causal lags, streamed
    history, steps before ``k = 0``).
    """
    lo, hi = max(start, t0), min(start + n, t0 + a.shape[0])
    if lo == start and hi == start + n:
        return a[lo - t0:hi - t0]
    out = np.zeros((n, *a.shape[1:]), a.dtype)
    if hi > lo:
        out[lo - start:hi - start] = a[lo - t0:hi - t0]
    return out


def signal_slot(plan, key) -> int:
    """The slot of signal ``key`` of ``plan``, addressed as a :class:`Trace` takes it."""
    if isinstance(key, tuple):
        path, port = key
    else:
        path, _, port = str(key).partition(".")
    if not port:
        if path in plan.inports:
            return plan.inports[path]
        if path in plan.outports:
            return plan.outports[path]
        b = plan.flat.blocks.get(path)
        if b is not None and len(b.outputs) == 1:
            port = b.outputs[0]
        elif b is not None and not b.outputs and len(b.inputs) == 1:
            port = b.inputs[0]  # a sink: the signal it displays
        elif b is not None:
            raise BlockflowError(f"block {path!r} has outputs {list(b.outputs)}; "
                                 f"ask for one, e.g. '{path}.{b.outputs[0]}'")
    s = plan.slots.get((path, port))
    if s is None:
        names = [f"{p}.{o}" for p, b in plan.flat.blocks.items() for o in b.outputs]
        raise BlockflowError(f"the trace has no signal {key!r}; signals are "
                             f"{names[:12]}{' ...' if len(names) > 12 else ''}")
    return s


def first_nonfinite(trace, *, backward: bool = False):
    """``(path.port, k)`` of the first non-finite value in ``trace``, or ``None``.

    Forward: the smallest step, then the first block in execution order.  For a backward
    sweep (``backward=True``) time runs down, so the largest step comes first.
    """
    plan = trace.plan
    best = None
    rank = {p: i for i, p in enumerate(plan.order)}
    bases: dict[int, bool] = {}  # views of one array (an interpreted loop's records)

    def finite(a) -> bool:  # a sum is finite only if every term is (one pass, no copy)
        if a.dtype.kind != "f":
            return False
        if a.ndim and a.strides[0] == 0:  # one row for every step (a transient record)
            a = a[:1]
        base = a.base
        if isinstance(base, np.ndarray) and base.dtype == a.dtype:
            if id(base) not in bases:  # checked once for all its views
                bases[id(base)] = bool(np.isfinite(np.add.reduce(base, axis=None)))
            if bases[id(base)]:
                return True
        return bool(np.isfinite(np.add.reduce(a, axis=None)))

    for path, b in plan.flat.blocks.items():
        for p in b.outputs:
            a = trace.bufs[trace.slot((path, p))]
            if a is None or finite(a):  # (a signal the run kept no record of)
                continue
            bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
            if not bad.any():
                continue
            k = int(np.flatnonzero(bad)[-1 if backward else 0])
            key = (-k if backward else k, rank.get(path, len(rank)))
            if best is None or key < best[0]:
                best = (key, f"{path}.{p}", k)
    return None if best is None else best[1:]


def check_finite_data(what: str, name: str, a: np.ndarray, exc=None) -> None:
    """Refuse data holding NaN or infinity, naming where the first such value is.

    ``a`` is ``(T, B, *shape)`` or ``(T, *shape)``; the message gives the step (and the
    batch member and sample index).
    """
    a = np.asarray(a)
    # (a sum is finite only if every term is: one pass, no boolean copy; an overflowing
    # sum of finite values is then told apart by the full test)
    if a.dtype.kind not in "fc" or np.isfinite(np.add.reduce(a, axis=None)) \
            or np.isfinite(a).all():
        return
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    raise (exc or SimulationError)(
        f"{what} {name!r} holds {a[idx]} at step {idx[0]}"
        f"{f', index {idx[1:]}' if len(idx) > 1 else ''}; clean the data, or pass "
        "check_finite=False to run with it anyway"
    )
