"""Bounded-memory BPTT: a tanh RNN (RNNCell H=64 fed back through a delay, a Dense
readout), the stored sweep (backward) beside the checkpointed one (segments of sqrt(T)
steps, recomputed from saved states) in one run: time and peak traced memory.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_memory.py``).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blockflow import Inport, Model, Outport, backward  # noqa: E402
from blockflow.gradient.sweep import backward_checkpointed  # noqa: E402
from blocks import Dense, RNNCell, UnitDelay  # noqa: E402


def rnn(n_in: int = 8, H: int = 64) -> Model:
    m = Model("rnn")
    x, y = m.add(Inport("x", shape=(n_in,)), Outport("y"))
    cell = m.add(RNNCell.random(n_in, H, name="cell"))
    z, out = m.add(UnitDelay(np.zeros(H), name="h"), Dense.random(H, 1, name="out"))
    m.connect(x, cell.x)
    m.chain(cell, z, cell.h_prev)
    m.chain(cell, out, y)
    return m


def measure(f):
    tracemalloc.start()
    t0 = time.perf_counter()
    g = f()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return g, seconds, peak


def main(T: int = 20_000) -> None:
    m = rnn()
    x = {"x": np.random.default_rng(0).standard_normal((T, 1, 8))}
    d = np.zeros((T, 1, 1))
    backward(m, {"x": x["x"][:100]}, targets=d[:100])  # warm: compile, caches
    backward_checkpointed(m, {"x": x["x"][:100]}, targets=d[:100])
    full, t_full, m_full = measure(lambda: backward(m, x, targets=d))
    ck, t_ck, m_ck = measure(lambda: backward_checkpointed(m, x, targets=d))
    diff = max(float(np.abs(ck.params[k] - v).max() / (np.abs(v).max() or 1))
               for k, v in full.params.items())
    print(f"RNN H=64 T={T}: stored sweep {t_full:.2f} s, peak {m_full / 2**20:.1f} MiB | "
          f"checkpointed (sqrt T) {t_ck:.2f} s ({t_ck / t_full:.1f}x), peak "
          f"{m_ck / 2**20:.1f} MiB ({m_full / max(m_ck, 1):.1f}x less) | max rel diff {diff:.1e}")


if __name__ == "__main__":
    main()
