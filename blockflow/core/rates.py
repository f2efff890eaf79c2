"""Sample rates: which steps of the base period each block runs on, inferred along wires.

A model has a base period ``dt``; a block may run every ``n``-th step from step ``offset``
(its :class:`Rate`; Simulink's sample time ``[Ts, offset]`` with ``Ts = n dt``).  Every
signal is stored at the base rate: a slow block *samples* its inputs on its hits and
*holds* its outputs in between (zero before its first hit), so the trace shows what a
scope shows.  Blocks at different rates meet only through rate transitions
(``ZeroOrderHold``, ``Downsample``, ``Upsample``); a direct wire is a :class:`RateError`.

The reciprocal follows the transposes.  On the stored signals a slow block is
``H F S`` (sample, block, hold); its reciprocal is ``S^T F^T H^T``: the deltas are
*summed* over each held interval, the block's reciprocal runs on its hits, and its output
deltas are *impulses* at the hits (zero in between).  A rate transition is an identity at
the slow rate: ``ZeroOrderHold`` and ``Downsample`` both hold (``H S``), so their
reciprocal is summation over the held steps placed at the hits (upsampling by zero
insertion); ``Upsample`` places samples at the hits (``S^T S``) and is its own transpose.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from typing import NamedTuple

import numpy as np

from blockflow.errors import WiringError

SAMPLE, SUM = "sample", "sum"  # how a slow block reads its inputs
HOLD, IMPULSE = "hold", "impulse"  # how it writes its outputs
FORWARD_IO = (SAMPLE, HOLD)
#: the i/o convention of a block's transpose (an involution: the transpose of the
#: transpose reads and writes as the block itself)
ADJOINT_IO = {(SAMPLE, HOLD): (SUM, IMPULSE), (SUM, IMPULSE): (SAMPLE, HOLD),
              (SAMPLE, IMPULSE): (SAMPLE, IMPULSE)}


class RateError(WiringError):
    """Blocks at different sample rates wired directly, or a rate that is not a whole
    multiple of the base period."""


class Rate(NamedTuple):
    """Every ``n``-th base step, from step ``offset`` (``0 <= offset < n``)."""

    n: int = 1
    offset: int = 0

    def text(self, dt: float) -> str:
        ts = f"Ts={_fmt(self.n * dt)}"
        return ts if not self.offset else f"{ts}, offset {_fmt(self.offset * dt)}"


BASE = Rate(1, 0)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def parse_sample_time(value, dt: float, where: str) -> Rate:
    """``Ts`` or ``(Ts, offset)`` in seconds -> a :class:`Rate` in base steps."""
    ts, off = (value, 0.0) if np.ndim(value) == 0 else tuple(value) + (0.0,) * (2 - len(value))
    try:
        ts, off = float(ts), float(off)
    except (TypeError, ValueError):
        raise RateError(f"{where}: sample_time must be Ts or (Ts, offset) in seconds, got "
                        f"{value!r}") from None
    n, o = ts / dt, off / dt
    if not (math.isfinite(n) and n >= 1 - 1e-9 and abs(n - round(n)) < 1e-9 * max(1, n)):
        raise RateError(f"{where}: sample time {ts:g} s is not a whole multiple of the "
                        f"model's base period dt={dt:g} s (ratio {n:g}); make it one")
    if not (abs(o - round(o)) < 1e-9 * max(1, n) and 0 <= round(o) < round(n)):
        raise RateError(f"{where}: offset {off:g} s must be a whole number of base periods "
                        f"(dt={dt:g} s) in [0, Ts)")
    return Rate(int(round(n)), int(round(o)))


# ------------------------------------------------------------ stored signals
def n_hits(rate: Rate, T: int) -> int:
    return max(0, -(-(T - rate.offset) // rate.n))


def sample(U: np.ndarray, rate: Rate) -> np.ndarray:
    """``S``: the values at the hits."""
    return U[rate.offset::rate.n]


def interval_sum(U: np.ndarray, rate: Rate) -> np.ndarray:
    """``H^T``: the sum over each held interval ``[hit, next hit)``."""
    T = U.shape[0]
    if n_hits(rate, T) == 0:
        return U[:0]
    V = U[rate.offset:]
    if rate.n > 16:  # few long intervals
        return np.add.reduceat(V, np.arange(0, T - rate.offset, rate.n), axis=0)
    # many short ones: n strided adds, left to right (reduceat: 3-10x slower)
    out = V[::rate.n].copy()
    for j in range(1, rate.n):
        s = V[j::rate.n]
        out[:s.shape[0]] += s
    return out


def place(Ys: np.ndarray, rate: Rate, T: int, how: str) -> np.ndarray:
    """``H`` (``how="hold"``: each value held until the next hit) or ``S^T``
    (``"impulse"``: at the hits, zero in between); zero before the first hit."""
    Y = np.zeros((T, *Ys.shape[1:]), dtype=Ys.dtype)
    if how == HOLD:
        Y[rate.offset:] = np.repeat(Ys, rate.n, axis=0)[: T - rate.offset]
    else:
        Y[rate.offset::rate.n] = Ys
    return Y


# -------------------------------------------------------------------- inference
def infer_rates(flat, dt: float) -> dict:
    """The rate each block of a flattened forward model runs at, by path.

    Declared rates (``sample_time=``) seed the inference; every other block runs at the
    rate of its inputs (which must agree), rate transitions convert, and what nothing
    determines (sources, loops of delays alone) runs at the base rate.
    """
    blocks = flat.blocks
    if not any(b.sample_time is not None or not getattr(type(b).rates, "keeps_rate", False)
               for b in blocks.values()):
        # nothing declares a rate and nothing converts one: all at the base rate (what
        # the inference below gives, at a fraction of its cost for wide models)
        return dict.fromkeys(blocks, BASE)
    declared = {}
    for path, b in blocks.items():
        if b.sample_time is not None:
            declared[path] = parse_sample_time(b.sample_time, dt,
                                               f"block {path!r} ({type(b).__name__})")
            if b.external and declared[path] != BASE:  # an Inport
                raise RateError(f"Inport {path!r} runs at the base rate; put a Downsample "
                                "after it to read it at a slower rate")
    readers: dict[str, set] = {p: set() for p in blocks}
    for path, b in blocks.items():
        for p in b.inputs:
            readers[flat.source_of(path, p)[0]].add(path)
    op_rate: dict[str, Rate] = {}
    out_rate: dict[str, Rate] = {}
    queue = deque(blocks)
    queued = set(queue)  # (each block once in the queue: a wide Sum is not re-read per input)
    while queue:
        path = queue.popleft()
        queued.discard(path)
        b = blocks[path]
        srcs = [flat.source_of(path, p) for p in b.inputs]
        ins = tuple(out_rate.get(s[0]) for s in srcs)
        if any(r is not None for r in ins) or path in declared or not b.inputs:
            known = [(r, s, p) for r, s, p in zip(ins, srcs, b.inputs, strict=True)
                     if r is not None]
            op, out = b.rates(declared.get(path), known, dt, path)
            if path in out_rate and (op_rate[path], out_rate[path]) != (op, out):
                raise RateError(f"block {path!r} ({type(b).__name__}) is reached at two "
                                f"rates ({op_rate[path].text(dt)} and {op.text(dt)}); wire "
                                "the two through a rate transition")
            if path not in out_rate:
                op_rate[path], out_rate[path] = op, out
                fresh = readers[path] - queued
                queue.extend(sorted(fresh))
                queued |= fresh
    for path in blocks:
        op_rate.setdefault(path, BASE)
    return op_rate


def common_rate(declared: Rate | None, known: list, dt: float, path: str, kind: str) -> Rate:
    """The rate of an ordinary block: its declared one, which every known input must
    share (``known``: ``(rate, (src_block, src_port), port)``)."""
    rate = declared or (known[0][0] if known else BASE)
    for r, (sb, sp), port in known:
        if r != rate:
            raise RateError(
                f"{sb}.{sp} ({r.text(dt)}) is wired directly to {path}.{port} of block "
                f"{path!r} ({kind}, {rate.text(dt)}); blocks at different rates meet "
                "through a rate transition: ZeroOrderHold (slow to fast), Downsample (fast "
                "to slow) or Upsample (zero insertion)")
    return rate


def hits_text(rate: Rate) -> str:
    """A Python condition on ``k`` true on the hits (for generated loops)."""
    if rate == BASE:
        return "True"
    if rate.offset == 0:
        return f"k % {rate.n} == 0"
    return f"k >= {rate.offset} and (k - {rate.offset}) % {rate.n} == 0"


#: the rate each block runs at in the model it was last compiled in, kept beside the
#: blocks (a compile writes nothing into them): weakly, by identity, so a copy of a block
#: has none until its own model is compiled
_PLACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def place_rate(block, rate: Rate) -> None:
    """Record the rate ``block`` runs at (the plan's rate inference)."""
    _PLACED[block] = rate


def placed_rate(block) -> Rate | None:
    """The rate ``block`` runs at in its compiled model, or None (not compiled yet)."""
    return _PLACED.get(block)
