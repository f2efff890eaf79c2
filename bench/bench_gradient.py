"""Gradient benchmark: forward simulation vs forward + reciprocal sweep, next to a
hand-written numpy BPTT of the same network, in the same run.

- tanh RNN (hidden 8, 64, 256; batch 1 and 64; T = 1000): h(k) = tanh(W [x(k); h(k-1)] + b),
  y(k) = V h(k) + c, squared-error loss;
- FIR network (T = 100,000): FIR layer -> tanh -> FIR layer, loop-free, so its sweep runs
  over whole sequences.

Run: ``make bench`` (or ``.venv/bin/python bench/bench_gradient.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best  # noqa: E402

from blockflow import Inport, Model, Outport, compile, simulate  # noqa: E402
from blockflow.gradient.sweep import backward  # noqa: E402
from blocks import Dense, RNNCell, UnitDelay  # noqa: E402
from models.paper import fir_network  # noqa: E402


def rnn(n_in, H, seed=0):
    m = Model("rnn")
    x, y = m.add(Inport("x", shape=(n_in,)), Outport("y"))
    cell = m.add(RNNCell.random(n_in, H, seed=seed, name="cell"))
    m.connect(x, cell.x)
    m.chain(cell, m.add(UnitDelay(np.zeros(H), name="z")), cell.h_prev)
    m.chain(cell, m.add(Dense.random(H, 1, seed=seed + 1, name="out")), y)
    return m


def numpy_bptt(W, b, V, c, X, D):
    """Hand-written BPTT of the same network: forward loop, backward loop, one matmul per
    weight."""
    T, B, n = X.shape
    H = W.shape[0]
    Hs = np.empty((T, B, H))
    h = np.zeros((B, H))
    Wx, Wh = W[:, :n], W[:, n:]
    XW = X @ Wx.T
    for k in range(T):
        h = np.tanh(XW[k] + h @ Wh.T + b)
        Hs[k] = h
    Y = Hs @ V.T + c
    dY = -2.0 * (D - Y)
    dH = dY @ V
    dZ = np.empty_like(Hs)
    carry = np.zeros((B, H))
    for k in range(T - 1, -1, -1):
        dz = (dH[k] + carry) * (1.0 - Hs[k] ** 2)
        dZ[k] = dz
        carry = dz @ Wh
    Hprev = np.concatenate([np.zeros((1, B, H)), Hs[:-1]])
    XH = np.concatenate([X, Hprev], -1)
    return {"cell.W": dZ.reshape(-1, H).T @ XH.reshape(-1, n + H), "cell.b": dZ.sum((0, 1)),
            "out.W": dY.reshape(-1, 1).T @ Hs.reshape(-1, H), "out.b": dY.sum((0, 1))}


def numba_bptt():
    """The same BPTT hand-written for numba: explicit loops, nothing allocated per step
    (the reference for the compiled path; JAX's lax.scan where JAX is installed)."""
    from numba import njit

    @njit(cache=True)
    def run(W, b, V, c, X, D):
        T, B, n = X.shape
        H = W.shape[0]
        Hs = np.zeros((T + 1, B, H))  # Hs[k + 1] = h(k), Hs[0] = h(-1) = 0
        gW, gb = np.zeros_like(W), np.zeros_like(b)
        gV, gc = np.zeros_like(V), np.zeros_like(c)
        dY = np.empty((T, B, V.shape[0]))
        for k in range(T):
            for r in range(B):
                for j in range(H):
                    s = b[j]
                    for i in range(n):
                        s += W[j, i] * X[k, r, i]
                    for i in range(H):
                        s += W[j, n + i] * Hs[k, r, i]
                    Hs[k + 1, r, j] = np.tanh(s)
                for o in range(V.shape[0]):
                    y = c[o]
                    for j in range(H):
                        y += V[o, j] * Hs[k + 1, r, j]
                    dY[k, r, o] = -2.0 * (D[k, r, o] - y)
        carry = np.zeros((B, H))
        dz = np.empty(H)
        for k in range(T - 1, -1, -1):
            for r in range(B):
                for j in range(H):
                    d = carry[r, j]
                    for o in range(V.shape[0]):
                        d += dY[k, r, o] * V[o, j]
                        gV[o, j] += dY[k, r, o] * Hs[k + 1, r, j]
                    hj = Hs[k + 1, r, j]
                    dz[j] = d * (1.0 - hj * hj)
                for o in range(V.shape[0]):
                    gc[o] += dY[k, r, o]
                for i in range(H):
                    carry[r, i] = 0.0
                for j in range(H):
                    gb[j] += dz[j]
                    for i in range(n):
                        gW[j, i] += dz[j] * X[k, r, i]
                    for i in range(H):
                        gW[j, n + i] += dz[j] * Hs[k, r, i]
                        carry[r, i] += dz[j] * W[j, n + i]
        return gW, gb, gV, gc

    return run


def jax_loss(n: int):
    """The RNN's SSE loss ``loss((W, b, V, c), X, D)`` as JAX's ``lax.scan`` (float64), for
    ``n`` inputs; ``None`` without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def loss(params, X, D):
        W, b, V, c = params

        def step(h, x):
            h = jnp.tanh(x @ W[:, :n].T + h @ W[:, n:].T + b)
            return h, h

        _, Hs = jax.lax.scan(step, jnp.zeros((X.shape[1], W.shape[0])), X)
        return jnp.sum((D - (Hs @ V.T + c)) ** 2)

    return loss


def jax_bptt(W, b, V, c, X, D):
    """The same gradient by JAX's ``lax.scan`` (jitted), or ``None`` without JAX."""
    loss = jax_loss(X.shape[-1])
    if loss is None:
        return None
    import jax

    g = jax.jit(jax.grad(loss))
    args = ((W, b, V, c), X, D)
    return lambda: jax.block_until_ready(g(*args))


def bench_rnn(H, B, T=1000, n_in=4):
    m = rnn(n_in, H)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, n_in))
    D = rng.standard_normal((T, B, 1))
    compile(m)
    cell, out = m.blocks["cell"], m.blocks["out"]
    g = backward(m, {"x": X}, targets=D).params
    ref = numpy_bptt(cell.W, cell.b, out.W, out.b, X, D)
    err = max(np.abs(g[k] - ref[k]).max() / (np.abs(ref[k]).max() + 1e-300) for k in ref)
    t_fwd = best(lambda: simulate(m, {"x": X}))
    t_grad = best(lambda: backward(m, {"x": X}, targets=D))
    t_np = best(lambda: numpy_bptt(cell.W, cell.b, out.W, out.b, X, D))
    print(f"tanh RNN H={H:3d} B={B:2d} T={T}: forward {1e3 * t_fwd:7.1f} ms | fwd+sweep "
          f"{1e3 * t_grad:7.1f} ms ({t_grad / t_fwd:4.2f}x forward) | numpy BPTT "
          f"{1e3 * t_np:7.1f} ms (blockflow {t_grad / t_np:4.2f}x) | max rel diff {err:.1e}")
    if B > 1:
        return
    # the compiled path against hand-written compiled BPTT (numba; JAX where installed)
    os.environ["BLOCKFLOW_BACKEND"] = "numba"
    g = backward(m, {"x": X}, targets=D).params
    err = max(np.abs(g[k] - ref[k]).max() / (np.abs(ref[k]).max() + 1e-300) for k in ref)
    t_nb = best(lambda: backward(m, {"x": X}, targets=D), 5)
    del os.environ["BLOCKFLOW_BACKEND"]
    hand = numba_bptt()
    args = (cell.W, cell.b, out.W, out.b, X, D)
    hg = hand(*args)
    assert np.allclose(hg[0], ref["cell.W"], rtol=1e-9, atol=1e-12)
    t_hand = best(lambda: hand(*args), 5)
    line = (f"  compiled: fwd+sweep {1e3 * t_nb:7.3f} ms | hand-written numba BPTT "
            f"{1e3 * t_hand:7.3f} ms (blockflow {t_nb / t_hand:4.2f}x) | max rel diff {err:.1e}")
    jx = jax_bptt(*args)
    if jx is not None:
        jx()
        t_jax = best(jx, 5)
        line += f" | JAX lax.scan {1e3 * t_jax:7.3f} ms (blockflow {t_nb / t_jax:4.2f}x)"
    print(line)


def numpy_fir_network(W1, b1, W2, b2, X, D):
    """Hand-written temporal backprop of the FIR network: taps as shifted matmuls."""
    T = X.shape[0]

    def fir(W, U):
        Y = U @ W[0].T
        for m in range(1, W.shape[0]):
            Y[m:] += U[: T - m] @ W[m].T
        return Y

    def fir_t(W, dY):  # the reciprocal: delta_u(k) = sum_m W[m]^T delta_y(k+m)
        dU = dY @ W[0]
        for m in range(1, W.shape[0]):
            dU[: T - m] += dY[m:] @ W[m]
        return dU

    def grads(W, dY, U):
        return np.stack([dY[m:].reshape(-1, dY.shape[-1]).T @ U[: T - m].reshape(-1, U.shape[-1])
                         for m in range(W.shape[0])])

    A = np.tanh(fir(W1, X) + b1)
    Y = fir(W2, A) + b2
    dY = -2.0 * (D - Y)
    dS = fir_t(W2, dY) * (1 - A * A)
    return {"layer1.W": grads(W1, dS, X), "layer1.b": dS.sum((0, 1)),
            "layer2.W": grads(W2, dY, A), "layer2.b": dY.sum((0, 1))}


def bench_fir(T=100_000, B=1):
    m = fir_network((1, 8, 1), (10, 5))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, 1))
    D = rng.standard_normal((T, B, 1))
    compile(m)
    t_fwd = best(lambda: simulate(m, {"x": X}))
    t_grad = best(lambda: backward(m, {"x": X}, targets=D))
    t_on = best(lambda: backward(m, {"x": X}, targets=D, online=True))
    tr = simulate(m, {"x": X})
    from blockflow.gradient.sweep import output_deltas, sweep

    _, dl = output_deltas(tr, "sse", D)
    t_sweep = best(lambda: sweep(m, tr, dl))
    l1, l2 = m.blocks["layer1"], m.blocks["layer2"]

    def hand():
        return numpy_fir_network(l1.W, l1.b, l2.W, l2.b, X, D)

    g = backward(m, {"x": X}, targets=D).params
    ref = hand()
    err = max(np.abs(g[k] - ref[k]).max() / np.abs(ref[k]).max() for k in ref)
    t_np = best(hand)
    print(f"FIR network 1-8-1 (10,5 taps) T={T}: forward {1e3 * t_fwd:6.1f} ms | sweep "
          f"{1e3 * t_sweep:6.1f} ms ({t_sweep / t_fwd:4.2f}x forward) | fwd+sweep "
          f"{1e3 * t_grad:6.1f} ms | online (causal) fwd+sweep {1e3 * t_on:6.1f} ms | numpy "
          f"temporal backprop {1e3 * t_np:6.1f} ms (blockflow {t_grad / t_np:4.2f}x) | max rel "
          f"diff {err:.1e}")


if __name__ == "__main__":
    print(f"numpy {np.__version__}; best of 3 runs")
    for H in (8, 64, 256):
        for B in (1, 64):
            bench_rnn(H, B)
    bench_fir()
