"""Bounded-memory BPTT: a tanh RNN (RNNCell H=64 fed back through a delay, a Dense
readout), the stored sweep (backward, with every delta or with those its gradients need)
beside the checkpointed one (segments of sqrt(T) steps, recomputed from saved states) and
JAX's ``lax.scan`` in one run: time and peak traced memory.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_memory.py``).
"""

from __future__ import annotations

import gc
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
    """``f()``, its seconds and its peak traced memory, counted from nothing: the record
    pools every plan keeps for its next run are emptied first (a run reusing the last
    one's records allocates none)."""
    from blockflow.backends import runtime

    gc.collect()
    for st in list(runtime._PLANS.values()):
        st.records.clear()
        st.records_bytes = 0
    tracemalloc.start()
    t0 = time.perf_counter()
    g = f()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return g, seconds, peak


def jax_bytes(m: Model, x: np.ndarray, d: np.ndarray) -> int | None:
    """The same gradient (parameters and inputs) by JAX's ``lax.scan``: the bytes of the
    intermediate buffers XLA assigns its compiled program (``memory_analysis``; the
    arguments and results not counted, as tracemalloc does not count ours), or ``None``
    without JAX."""
    from bench_gradient import jax_loss

    loss = jax_loss(x.shape[-1])
    if loss is None:
        return None
    import jax

    cell, out = m.blocks["cell"], m.blocks["out"]
    W, b, V, c = (np.asarray(a) for a in (cell.W, cell.b, out.W, out.b))
    f = jax.jit(jax.grad(loss, argnums=(0, 1))).lower((W, b, V, c), x, d).compile()
    return f.memory_analysis().temp_size_in_bytes


def per_step(m: Model, T: int) -> tuple:
    """Peak bytes of the stored sweep (every delta; ``keep_deltas=False``) and of JAX at
    ``T`` steps, with their seconds."""
    x = np.random.default_rng(0).standard_normal((T, 1, 8))
    d = np.zeros((T, 1, 1))
    full, t_full, m_full = measure(lambda: backward(m, {"x": x}, targets=d))
    lean, t_lean, m_lean = measure(lambda: backward(m, {"x": x}, targets=d, keep_deltas=False))
    assert all(np.array_equal(lean.params[k], v) for k, v in full.params.items())
    return (m_full, m_lean, jax_bytes(m, x, d)), (t_full, t_lean)


def main(T: int = 20_000) -> None:
    m = rnn()
    x = {"x": np.random.default_rng(0).standard_normal((T, 1, 8))}
    d = np.zeros((T, 1, 1))
    backward(m, {"x": x["x"][:100]}, targets=d[:100])  # warm: compile, caches
    backward(m, {"x": x["x"][:100]}, targets=d[:100], keep_deltas=False)
    backward_checkpointed(m, {"x": x["x"][:100]}, targets=d[:100])
    (m_full, m_lean, jx), (t_full, t_lean) = per_step(m, T)
    (m2_full, m2_lean, jx2), _ = per_step(m, 2 * T)  # per step: the growth from T to 2T
    full = backward(m, x, targets=d)
    ck, t_ck, m_ck = measure(lambda: backward_checkpointed(m, x, targets=d))
    diff = max(float(np.abs(ck.params[k] - v).max() / (np.abs(v).max() or 1))
               for k, v in full.params.items())
    print(f"RNN H=64, parameter and input gradients, memory per step (peak growth from "
          f"T={T} to {2 * T}): stored sweep {(m2_full - m_full) / T:.0f} B; "
          f"keep_deltas=False (as train() runs) {(m2_lean - m_lean) / T:.0f} B"
          + (f"; JAX lax.scan {(jx2 - jx) / T:.0f} B (XLA's buffers)" if jx else
             "; JAX not installed"))
    print(f"  at T={T}: stored sweep {t_full:.2f} s, peak {m_full / 2**20:.1f} MiB; "
          f"keep_deltas=False {t_lean:.2f} s, {m_lean / 2**20:.1f} MiB; checkpointed "
          f"(sqrt T) {t_ck:.2f} s ({t_ck / t_full:.1f}x the stored sweep), peak "
          f"{m_ck / 2**20:.1f} MiB ({m_full / max(m_ck, 1):.1f}x less) | max rel diff "
          f"{diff:.1e}")


if __name__ == "__main__":
    main()
