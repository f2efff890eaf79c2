"""One definition of every gradient mode: each stateful block agrees with the same system
built from elementary blocks (UnitDelay, Gain, Sum, Constant) in every schedule (full,
window, chunked, causal, streamed) and in forward mode, inside random models with and
without feedback.  Truncation means: the window's loss, the state at the window's start
held as data, inputs recorded before the window included."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockflow import Inport, Model, Outport, SimulationError, backward, simulate
from blockflow.gradient.online import OnlineBackprop
from blockflow.gradient.schedules import Causal, Chunked, Full, Window
from blockflow.gradient.tangent import directional
from blocks import (
    FIR,
    Constant,
    Delay,
    DiscreteFilter,
    DiscreteTransferFcn,
    FIRDense,
    Function,
    Gain,
    StateSpace,
    Sum,
    UnitDelay,
)

N = 2  # every signal is a (2,) vector
KINDS = ["delay", "fir", "filter", "filter_nofeed", "tf", "ss", "ss_d", "fir_layer"]


def _tapped(m: Model, src, n: int, prefix: str) -> list:
    """Taps u(k), u(k-1), ..., u(k-n+1) of ``src`` as a list of output references."""
    taps = [src]
    for i in range(1, n):
        z = m.add(UnitDelay(np.zeros(N), name=f"{prefix}{i}"))
        m.connect(taps[-1], z)
        taps.append(z.y)
    return taps


def stateful_pair(kind: str, rng):
    """(block, elementary subsystem, map): ``map`` lists (elementary parameter, block
    parameter, index) with elementary = block[index]."""
    e = Model("blk")
    u, y = e.add(Inport("u", shape=None), Outport("y"))
    pairs = []
    if kind == "delay":
        n = int(rng.integers(1, 4))
        x0 = rng.standard_normal(N)
        blk = Delay(n, x0, train_x0=True, name="blk")
        prev = u.y
        for i in range(n):
            z = e.add(UnitDelay(x0.copy(), train_x0=True, name=f"z{i}"))
            e.connect(prev, z)
            prev = z.y
            pairs.append((f"blk/z{i}.x0", "x0", Ellipsis))
        e.connect(prev, y)
    elif kind == "fir":
        h = rng.uniform(-0.8, 0.8, int(rng.integers(1, 5)))
        blk = FIR(h, name="blk")
        s = e.add(Sum("+" * h.size, name="s"))
        for m_, tap in enumerate(_tapped(e, u.y, h.size, "z")):
            g = e.add(Gain(h[m_], name=f"g{m_}"))
            e.connect(tap, g)
            e.connect(g, s[f"u{m_ + 1}"])
            pairs.append((f"blk/g{m_}.K", "h", m_))
        e.connect(s, y)
    elif kind in ("filter", "filter_nofeed", "tf"):
        nb, na = int(rng.integers(1, 4)), int(rng.integers(2, 4))
        b = rng.uniform(-0.8, 0.8, nb)
        if kind == "filter_nofeed":
            b[0] = 0.0
        a = np.concatenate([[1.0], rng.uniform(-0.3, 0.3, na - 1)])
        if kind == "tf":  # dlti order: a strictly proper num of fewer coefficients
            num = rng.uniform(-0.8, 0.8, na - 1)
            blk = DiscreteTransferFcn(num, a, name="blk")
            b = np.concatenate([[0.0], num])
            names = [("num", i - 1) for i in range(b.size)], [("den", i) for i in range(na)]
        else:
            blk = DiscreteFilter(b, a, name="blk")
            names = [("b", i) for i in range(b.size)], [("a", i) for i in range(na)]
        first = 1 if b[0] == 0 else 0  # no tap 0 gain: no direct feedthrough
        s = e.add(Sum("+" * (b.size - first) + "-" * (na - 1), name="s"))
        port = iter(s.inputs)
        for m_, tap in enumerate(_tapped(e, u.y, b.size, "zb")):
            if m_ < first:
                continue
            g = e.add(Gain(b[m_], name=f"gb{m_}"))
            e.chain(tap, g)
            e.connect(g, s[next(port)])
            pairs.append((f"blk/gb{m_}.K", *names[0][m_]))
        taps = _tapped(e, s.y, na, "za")
        for m_ in range(1, na):
            g = e.add(Gain(a[m_], name=f"ga{m_}"))
            e.connect(taps[m_], g)
            e.connect(g, s[next(port)])
            pairs.append((f"blk/ga{m_}.K", *names[1][m_]))
        e.connect(s, y)
    elif kind in ("ss", "ss_d"):
        A = rng.uniform(-0.5, 0.5, (2, 2))
        B, C = rng.uniform(-1, 1, (2, N)), rng.uniform(-1, 1, (N, 2))
        D = rng.uniform(-0.5, 0.5, (N, N)) if kind == "ss_d" else None
        x0 = rng.standard_normal(2)
        blk = StateSpace(A, B, C, D, x0=x0, train_x0=True, name="blk")
        z = e.add(UnitDelay(x0.copy(), train_x0=True, name="z"))
        gA, gB, gC = e.add(Gain(A, name="A"), Gain(B, name="B"), Gain(C, name="C"))
        sx = e.add(Sum("++", name="sx"))
        e.chain(z, gA)
        e.connect(gA, sx.u1)
        e.chain(u, gB)
        e.connect(gB, sx.u2)
        e.connect(sx, z)
        e.chain(z, gC)
        pairs += [("blk/A.K", "A", Ellipsis), ("blk/B.K", "B", Ellipsis),
                  ("blk/C.K", "C", Ellipsis), ("blk/z.x0", "x0", Ellipsis)]
        if D is None:
            e.connect(gC, y)
        else:
            gD, sy = e.add(Gain(D, name="D"), Sum("++", name="sy"))
            e.chain(u, gD)
            e.connect(gC, sy.u1)
            e.connect(gD, sy.u2)
            e.connect(sy, y)
            pairs.append(("blk/D.K", "D", Ellipsis))
    else:  # fir_layer
        W = rng.uniform(-0.6, 0.6, (int(rng.integers(1, 4)), N, N))
        bias = rng.uniform(-0.3, 0.3, N)
        blk = FIRDense(W, bias, name="blk")
        s = e.add(Sum("+" * (W.shape[0] + 1), name="s"))
        for m_, tap in enumerate(_tapped(e, u.y, W.shape[0], "z")):
            g = e.add(Gain(W[m_], name=f"W{m_}"))
            e.connect(tap, g)
            e.connect(g, s[f"u{m_ + 1}"])
            pairs.append((f"blk/W{m_}.K", "W", m_))
        c = e.add(Constant(bias, trainable=True, name="bias"))
        e.connect(c, s[f"u{W.shape[0] + 1}"])
        pairs.append(("blk/bias.value", "b", Ellipsis))
        e.connect(s, y)
    return blk, e, pairs


def context(inner, rng, feedback: bool) -> Model:
    """x -> gain -> (+ feedback) -> tanh -> inner -> y1, with tanh's output on y2."""
    m = Model("ctx")
    x, y1, y2 = m.add(Inport("x", shape=(N,)), Outport("y1"), Outport("y2"))
    g, f = m.add(Gain(rng.uniform(-1, 1, N), name="gin"), Function("tanh", name="f"))
    m.add(inner)
    m.chain(x, g)
    if feedback:
        s = m.add(Sum("++", name="s"))
        fb = m.add(UnitDelay(rng.standard_normal(N), train_x0=True, name="fb"))
        k = m.add(Gain(rng.uniform(-0.7, 0.7, N), name="kfb"))
        m.connect(g, s.u1)
        m.chain(inner.y, fb, k)
        m.connect(k, s.u2)
        m.chain(s, f)
    else:
        m.chain(g, f)
    m.chain(f, inner)
    m.connect(inner.y, y1)
    m.connect(f, y2)
    return m


def build(kind: str, seed: int, feedback: bool):
    blk, elem, pairs = stateful_pair(kind, np.random.default_rng(seed))
    ctx = np.random.default_rng(seed + 1)
    return context(blk, ctx, feedback), context(elem, np.random.default_rng(seed + 1),
                                                feedback), pairs, ctx


def mapped(g_block: dict, g_elem: dict, pairs) -> tuple[dict, dict]:
    """Block gradients and the same entries gathered from the elementary gradients."""
    want, got = {}, {}
    for pe, pb, idx in pairs:
        key = f"blk.{pb}"
        got.setdefault(key, np.zeros_like(g_block[key]))
        got[key][idx] += g_elem[pe]
        want[key] = g_block[key]
    for k, v in g_elem.items():  # the context's own parameters carry the same names
        if not k.startswith("blk/"):
            want[k], got[k] = g_block[k], v
    # entries with no elementary counterpart (a[0] of a filter) are left out
    for key in list(got):
        if key.startswith("blk."):
            pb = key[4:]
            cover = np.zeros(np.shape(g_block[key]), bool)
            for _, q, idx in pairs:
                if q == pb:
                    cover[idx] = True
            want[key], got[key] = want[key][cover], got[key][cover]
    return want, got


def assert_same(a: dict, b: dict, tol=1e-9):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=tol, atol=tol, err_msg=k)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10**6), feedback=st.booleans(),
       h=st.integers(1, 14))
def test_block_and_its_elementary_build_agree_in_every_mode(kind, seed, feedback, h):
    m1, m2, pairs, rng = build(kind, seed, feedback)
    T = 12
    x = {"x": rng.standard_normal((T, 2, N))}
    t1, t2 = simulate(m1, x), simulate(m2, x)
    for k in ("y1", "y2"):
        np.testing.assert_allclose(t2[k], t1[k], rtol=1e-12, atol=1e-12)
    w = {k: rng.standard_normal(t1[k].shape) for k in ("y1", "y2")}
    for sched in (Full(), Window(h), Chunked(h)):
        g1, g2 = backward(m1, trace=t1, dL_dy=w, schedule=sched), \
            backward(m2, trace=t2, dL_dy=w, schedule=sched)
        np.testing.assert_allclose(g2.inputs["x"], g1.inputs["x"], rtol=1e-9, atol=1e-9)
        assert_same(*mapped(g1.params, g2.params, pairs))
    # causal and streamed: where the advances are bounded, both equal the full sweep
    full = backward(m1, trace=t1, dL_dy=w).params
    bounded = not feedback and kind not in ("filter", "filter_nofeed", "tf", "ss", "ss_d")
    if bounded:
        for m, t in ((m1, t1), (m2, t2)):
            c = backward(m, trace=t, dL_dy=w, schedule=Causal())
            ref = backward(m, trace=t, dL_dy=w).params
            assert_same(ref, c.params)
        d = {k: t1[k] - 0.5 * w[k] for k in w}  # sse: dL/dy = -2 (d - y) = w
        _, streamed = OnlineBackprop(m1, chunk=int(1 + seed % 4)).run(x, d)
        assert_same(full, streamed)
    else:
        with pytest.raises(SimulationError, match="unbounded|feedback"):
            backward(m1, trace=t1, dL_dy=w, schedule=Causal())
    # forward mode: the same tangent for input and (mapped) parameter directions
    dx = {"x": rng.standard_normal((T, 2, N))}
    dpb = {k: rng.standard_normal(p.shape) for k, p in m1.parameters().items()}
    dpe = {k: v for k, v in dpb.items() if not k.startswith("blk.")}
    for pe, pb, idx in pairs:
        dpe[pe] = np.array(dpb[f"blk.{pb}"][idx])
    unmapped = {f"blk.{pb}" for _, pb, _ in pairs}
    for k in dpb:
        if k.startswith("blk.") and k not in unmapped:
            dpb[k] = np.zeros_like(dpb[k])
    covered = {pb: np.zeros(m1.parameters()[f"blk.{pb}"].shape, bool) for _, pb, _ in pairs}
    for _, pb, idx in pairs:
        covered[pb][idx] = True
    for pb, cover in covered.items():
        dpb[f"blk.{pb}"][~cover] = 0.0
    d1, d2 = directional(m1, t1, dx, dpb), directional(m2, t2, dx, dpe)
    for k in ("y1", "y2"):
        np.testing.assert_allclose(d2[k], d1[k], rtol=1e-9, atol=1e-9)


def test_truncated_state_space_holds_the_state_at_the_window_start():
    """The issue's example: dJ/dC of a 1-state system, chunked, equals the sum of each
    window's exact gradient with the window's initial state held as data."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 1, 1))
    u1 = Model("ss")
    a, s1, b = u1.add(Inport("u", shape=(1,)), StateSpace(0.9, 1.0, 2.0, name="s"),
                      Outport("y"))
    u1.chain(a, s1, b)
    tr = simulate(u1, {"u": x})
    w = {"y": rng.standard_normal(tr["y"].shape)}
    chunked = backward(u1, trace=tr, dL_dy=w, schedule=Chunked(10)).params["s.C"]
    X = tr["s.y"] / 2.0  # y = C x with C = 2: the recorded states
    # within each window the state starts from the recorded x(a): dy/dC = x(k)
    expect = sum(float(np.vdot(w["y"][a:a + 10], X[a:a + 10])) for a in (0, 10, 20))
    np.testing.assert_allclose(chunked.ravel(), [expect], rtol=1e-12)
    full = backward(u1, trace=tr, dL_dy=w).params["s.C"]
    np.testing.assert_allclose(full.ravel(), [expect], rtol=1e-12)  # C is not recursive
    # A is: its chunked gradient differs from the full one, and equals the window sums
    gA = backward(u1, trace=tr, dL_dy=w, schedule=Chunked(10)).params["s.A"]
    parts = 0.0
    for a0 in (0, 10, 20):
        lam, tot = 0.0, 0.0
        for k in range(a0 + 9, a0 - 1, -1):  # lam = dJ/dx(k+1) inside the window
            tot += lam * X[k, 0, 0]
            lam = 0.9 * lam + 2.0 * w["y"][k, 0, 0]
        parts += tot
    np.testing.assert_allclose(gA.ravel(), [parts], rtol=1e-12)
