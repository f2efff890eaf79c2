"""The reciprocal transformer and the backward sweep on every model in models/."""

import networkx as nx
import numpy as np
import pytest

from blockflow import Block, Inport, Model, Outport, ReciprocalNotDefinedError, compile, simulate
from blockflow.gradient.adjoint import Anticausal, JacobianT, Junction
from blockflow.gradient.reciprocal import reciprocal
from blockflow.gradient.sweep import backward, grad
from blockflow.gradient.tangent import directional
from blockflow.plan.compiler import flatten
from blocks import Function, Gain, Sum, UnitDelay
from models import CATALOGUE
from models.paper import lstm, lstm_from_blocks

from .helpers import dot_check, fd_check

NAMES = sorted(CATALOGUE)


def _model(name, T=25, B=3, seed=0):
    build, make = CATALOGUE[name]
    return build(), make(T, B, seed)


@pytest.mark.parametrize("name", NAMES)
def test_sweep_gradients_match_finite_differences(name):
    m, x = _model(name)
    assert fd_check(m, x) >= 1


@pytest.mark.parametrize("name", NAMES)
def test_dot_product_tangent_vs_reciprocal(name):
    """<T v, w> == <v, R w>, for input and parameter directions together."""
    m, x = _model(name)
    dot_check(m, x, seed=5)


@pytest.mark.parametrize("name", ["iir_neuron", "fir_network", "pid_loop", "lstm"])
def test_forward_mode_matches_finite_differences(name):
    """directional(): dy along a parameter direction, against central differences (RTRL)."""
    m, x = _model(name, T=15)
    rng = np.random.default_rng(7)
    dp = {k: rng.standard_normal(p.shape) for k, p in m.parameters().items()}
    dy = directional(m, simulate(m, x), dparams=dp)["y"]
    eps, old = 1e-6, {k: p.copy() for k, p in m.parameters().items()}
    outs = []
    for s in (1, -1):
        for k, p in m.parameters().items():
            p[...] = old[k] + s * eps * dp[k]
        outs.append(simulate(m, x)["y"])
    for k, p in m.parameters().items():
        p[...] = old[k]
    np.testing.assert_allclose(dy, (outs[0] - outs[1]) / (2 * eps), rtol=1e-6, atol=1e-8)


def _edges(model):
    flat = flatten(model)
    return {(s, d["src_port"], t, d["dst_port"]) for s, t, d in flat.graph.edges(data=True)}


@pytest.mark.parametrize("name", NAMES)
def test_reciprocal_of_reciprocal_has_the_structure_of_the_model(name):
    m, _ = _model(name)
    r = reciprocal(m)
    rr = reciprocal(r)
    assert set(flatten(rr).blocks) == set(flatten(m).blocks)
    assert _edges(rr) == _edges(m)
    # the reciprocal reverses every wire (fan-outs through junctions)
    fwd = {(s, t) for s, _, t, _ in _edges(m)}
    rev = {(s, t) for s, _, t, _ in _edges(r)}
    rflat = flatten(r)
    direct = {(t, s) for s, t in fwd}
    through = {(s, t) for s, t in rev if not isinstance(rflat.blocks[s], Junction)
               and not isinstance(rflat.blocks[t], Junction)}
    assert through <= direct


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if not compile(CATALOGUE[n][0]()).loops])
def test_reversed_forward_schedule_is_a_reciprocal_schedule(name):
    m, _ = _model(name)
    order = compile(m).order
    pos = {p: i for i, p in enumerate(order)}
    rflat = flatten(reciprocal(m))
    g = nx.DiGraph()
    for s, t, d in rflat.graph.edges(data=True):
        if d["dst_port"] in rflat.blocks[t].direct_inputs() and s in pos and t in pos:
            g.add_edge(s, t)
    assert all(pos[s] > pos[t] for s, t in g.edges)


def test_reciprocal_blocks_follow_the_six_rules():
    m = Model("rules")
    x, y = m.add(Inport("x"), Outport("y"))
    s, g, f, z = m.add(Sum("+-", name="s"), Gain(0.5, name="g"), Function("tanh", name="f"),
                       UnitDelay(name="z"))
    m.connect(x, s.u1)
    m.chain(s, g, f, y)
    m.chain(f, z, s.u2)
    r = reciprocal(m)
    assert isinstance(r.blocks["x"], Outport) and isinstance(r.blocks["y"], Inport)
    assert isinstance(r.blocks["z"], Anticausal) and r.blocks["z"].label() == "z⁺¹"
    assert isinstance(r.blocks["s"], JacobianT) and r.blocks["s"].outputs == ("u1", "u2")
    assert [r.port for r in r.blocks["f"].trace_reads] == ["u", "y"]
    assert r.blocks["g"].trace_reads == ()
    assert isinstance(r.blocks["f+y"], Junction)  # branching point -> summing junction
    assert r.source_of("s", "y") == ("g", "u")


def test_a_sum_of_plus_signs_reciprocates_to_a_branch_that_costs_nothing():
    """A summing junction of ``+`` signs becomes a branching point whose output deltas
    *are* its input delta: the reciprocal plan runs no op for it and its deltas share one
    record; a ``-`` sign keeps the op (it negates).  Gradients as finite differences."""
    from blockflow.gradient.gradients import reciprocal_plan

    def loop(signs: str) -> Model:
        m = Model(f"loop{signs}")
        x, y = m.add(Inport("x"), Outport("y"))
        s, g, f, z = m.add(Sum(signs, name="s"), Gain(0.5, name="g"),
                           Function("tanh", name="f"), UnitDelay(0.3, name="z"))
        m.connect(x, s.u1)
        m.chain(s, g, f, y)
        m.chain(f, z, s.u2)
        return m

    x = {"x": np.sin(np.arange(1.0, 13.0))}  # non-zero at k = 0
    for signs, free in (("++", True), ("+-", False)):
        m = loop(signs)
        r = reciprocal(m)
        assert isinstance(r.blocks["s"], JacobianT) and r.blocks["s"].alias is free
        rp = reciprocal_plan(m)
        assert ("s" not in {op.path for seg in rp.segments for op in seg.ops}) is free
        assert (rp.slots[("s", "u1")] == rp.slots[("s", "u2")] == rp.slots[("s", "y")]) \
            is free
        d = backward(m, x, dL_dy={"y": np.cos(np.arange(12.0))[:, None]}).deltas
        np.testing.assert_array_equal(d["s.u1"], d["s.y"])
        np.testing.assert_array_equal(d["s.u2"], d["s.y"] * (1.0 if free else -1.0))
        fd_check(m, x)


def test_cascaded_delta_u_is_sum_of_advanced_tap_deltas():
    m, x = _model("cascaded", T=30, B=2)
    tr = simulate(m, x)
    w = {"y": np.random.default_rng(1).standard_normal(tr["y"].shape)}
    d = backward(m, trace=tr, dL_dy=w).deltas
    du, taps = d["u.y1"], d["N2.u"]  # delta_u(k) and [delta_1, delta_2, delta_3](k)
    T = du.shape[0]
    expected = taps[:, :, 0].copy()
    expected[: T - 1] += taps[1:, :, 1]
    expected[: T - 2] += taps[2:, :, 2]
    np.testing.assert_allclose(du, expected, rtol=0, atol=1e-13)


def test_lstm_block_and_lstm_from_blocks_agree():
    a, b = lstm(), lstm_from_blocks()
    x = {"x": np.random.default_rng(3).standard_normal((20, 2, 2))}
    ta, tb = simulate(a, x), simulate(b, x)
    np.testing.assert_allclose(ta["y"], tb["y"], atol=1e-13)
    d = np.zeros_like(ta["y"])
    Ja, ga = grad(a, x, targets=d)
    Jb, gb = grad(b, x, targets=d)
    assert Ja == pytest.approx(Jb, rel=1e-13)
    np.testing.assert_allclose(ga["cell.W"], gb["cell/W.W"], atol=1e-12)
    np.testing.assert_allclose(ga["cell.b"], gb["cell/W.b"], atol=1e-12)
    np.testing.assert_allclose(ga["readout.W"], gb["readout.W"], atol=1e-12)


def test_truncated_sweep_with_full_window_is_exact_and_shorter_window_differs():
    m, x = _model("output_feedback_rnn", T=30)
    tr = simulate(m, x)
    w = {"y": np.random.default_rng(2).standard_normal(tr["y"].shape)}
    full = backward(m, trace=tr, dL_dy=w)
    same = backward(m, trace=tr, dL_dy=w, window=30)
    longer = backward(m, trace=tr, dL_dy=w, window=100)
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], same.params[k])
        np.testing.assert_array_equal(full.params[k], longer.params[k])
    short = backward(m, trace=tr, dL_dy=w, window=5)
    assert short.deltas.T == 30  # addressed like the forward trace: zero before the window
    assert not short.deltas["out.y"][:25].any() and short.deltas["out.y"][25:].any()
    np.testing.assert_allclose(short.deltas["out.y"][-1], full.deltas["out.y"][-1])
    assert not np.allclose(short.params["layer1.W"], full.params["layer1.W"])


class Cube(Block):
    """``y(k) = u(k)^3``: a user-defined block with its reciprocal rule beside it."""

    def output(self, x, u):
        return u**3

    def vjp(self, u, y, dy):
        return 3.0 * u[0] ** 2 * dy

    def jvp(self, u, y, du):
        return 3.0 * u[0] ** 2 * du


class NoRule(Block):
    def output(self, x, u):
        return u


def test_user_defined_block_gradient():
    m = Model("user")
    m.chain(*m.add(Inport("u"), Gain(0.7, name="g"), Cube(name="cube"), Outport("y")))
    fd_check(m, {"u": np.random.default_rng(0).standard_normal((6, 2))})


def test_block_without_rule_names_itself():
    m = Model("user")
    m.chain(*m.add(Inport("u"), NoRule(name="mystery"), Outport("y")))
    simulate(m, {"u": np.ones(3)})  # runs forward fine
    with pytest.raises(ReciprocalNotDefinedError, match=r"block 'mystery' \(NoRule\) has no "
                                                        "reciprocal rule"):
        grad(m, {"u": np.ones(3)}, targets=np.zeros(3))


def test_loss_conventions():
    m = Model("id")
    m.chain(*m.add(Inport("u"), Gain(1.0, name="g"), Outport("y")))
    u = np.array([[1.0], [2.0]])
    J, g = grad(m, {"u": u}, targets=np.zeros((2, 1)))
    assert J == 5.0 and g["g.K"] == pytest.approx(10.0)  # sse: dJ/dy = -2e
    J, g = grad(m, {"u": u}, loss="mse", targets=np.zeros((2, 1)))
    assert J == 2.5 and g["g.K"] == pytest.approx(5.0)


def test_cross_entropy_gradient():
    from blocks import Dense

    m = Model("clf")
    m.chain(*m.add(Inport("x", shape=(3,)), Dense.random(3, 4, seed=1, name="d"), Outport("y")))
    rng = np.random.default_rng(0)
    x = {"x": rng.standard_normal((7, 2, 3))}
    labels = rng.integers(0, 4, (7, 2))
    J, g = grad(m, x, loss="cross_entropy", targets=labels)
    W = m.blocks["d"].W
    v = rng.standard_normal(W.shape)
    W += 1e-6 * v
    Jp, _ = grad(m, x, loss="cross_entropy", targets=labels)
    W -= 2e-6 * v
    Jm, _ = grad(m, x, loss="cross_entropy", targets=labels)
    W += 1e-6 * v
    assert (Jp - Jm) / 2e-6 == pytest.approx(np.vdot(g["d.W"], v), rel=1e-6)


@pytest.mark.parametrize("name,D", [("cascaded", 4), ("fir_network", 6), ("mlp", 0)])
def test_online_sweep_equals_the_full_sweep(name, D):
    m, x = _model(name, T=40)
    tr = simulate(m, x)
    w = {k: np.random.default_rng(4).standard_normal(a.shape) for k, a in tr.outputs().items()}
    full = backward(m, trace=tr, dL_dy=w)
    online = backward(m, trace=tr, dL_dy=w, online=True)
    assert online.delay == D
    for k in full.params:
        np.testing.assert_allclose(online.params[k], full.params[k], rtol=1e-12, atol=1e-13)
    for k in full.inputs:
        np.testing.assert_allclose(online.inputs[k], full.inputs[k], rtol=1e-12, atol=1e-13)
    for sig in ("layer1.y", "u.y1", "N2.u"):
        if sig in tr:
            np.testing.assert_allclose(online.deltas[sig], full.deltas[sig], atol=1e-13)


@pytest.mark.parametrize("name,why", [("output_feedback_rnn", "feedback loop through advances"),
                                      ("iir_neuron", "unbounded impulse response")])
def test_online_sweep_refuses_unbounded_advances(name, why):
    from blockflow import SimulationError

    m, x = _model(name)
    with pytest.raises(SimulationError, match=why):
        backward(m, x, targets=np.zeros_like(simulate(m, x)["y"]), online=True)


def test_output_gradient_is_the_jacobian_row_of_one_sample():
    """Seed 001: the gradient of an output (not a loss) with respect to inputs and weights."""
    from blockflow import output_gradient

    m, x = _model("tanh_loop", T=12, B=2)
    g = output_gradient(m, x, step=7)
    assert np.all(g.inputs["r"][8:] == 0)  # causal: y(7) does not see r(8..)
    eps = 1e-6
    for j in (0, 3, 7):
        xp, xm = {"r": x["r"].copy()}, {"r": x["r"].copy()}
        xp["r"][j, 1] += eps
        xm["r"][j, 1] -= eps
        fd = (simulate(m, xp)["y"][7, 1] - simulate(m, xm)["y"][7, 1]) / (2 * eps)
        assert g.inputs["r"][j, 1] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    with pytest.raises(Exception, match="no sample"):
        output_gradient(m, x, step=40)


def test_float32_gradients():
    from models.closed_loop import tanh_loop

    m32, m64 = tanh_loop().astype(np.float32), tanh_loop()
    r = np.random.default_rng(0).standard_normal((20, 3))
    _, g32 = grad(m32, {"r": r.astype(np.float32)}, targets=np.zeros((20, 3), np.float32))
    _, g64 = grad(m64, {"r": r}, targets=np.zeros((20, 3)))
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=2e-4)


def test_truncated_windows_see_the_taps_recorded_before_them():
    """For a tapped delay line, chunked windows split sum_k delta(k) u(k-m) exactly: the
    gradient of a loss on one window's outputs is the same swept alone or chunked."""
    m, x = _model("fir_network", T=24)
    tr = simulate(m, x)
    w = np.zeros_like(tr["y"])
    w[16:20] = np.random.default_rng(0).standard_normal(w[16:20].shape)
    full = backward(m, trace=tr, dL_dy={"y": w})
    chunked = backward(m, trace=tr, dL_dy={"y": w}, window=12, chunked=True)
    # the deltas at both layers' outputs stay inside the window [12, 24) (layer 2 reaches
    # back 2 steps), but layer 1's taps read inputs from k = 10, before the window
    for k, g in full.params.items():
        np.testing.assert_allclose(chunked.params[k], g, rtol=1e-12, atol=1e-14)
