"""Enabled and triggered subsystems (EnablePort, TriggerPort): against hand-written
simulations in every mode, exact gradients (finite differences and the dot-product test,
parameters and inputs), a zero delta at the gate, and the bad inputs."""

import numpy as np
import pytest

from blockflow import (
    EnablePort,
    Inport,
    Model,
    Outport,
    ParameterError,
    Simulator,
    TriggerPort,
    WiringError,
    backward,
    compile,
    simulate,
)
from blockflow.io.modelfile import dumps, loads
from blocks import DiscreteFilter, Function, Gain, Sum, UnitDelay

from .helpers import dot_check, fd_check

MODES = [("held", "held"), ("held", "reset"), ("reset", "held"), ("reset", "reset")]


def accumulator(port) -> Model:
    """``s = 0.7 tanh(u) + z``, ``z <- s`` (from 0.5), ``y = F(s)`` (a first-order
    filter): three stateful or nonlinear blocks, run when ``port`` says."""
    sub = Model("acc")
    u, y = sub.add(Inport("u"), Outport("y"))
    sub.add(port)
    f, g, s = sub.add(Function("tanh", name="f"), Gain(0.7, name="g"), Sum("++", name="s"))
    z = sub.add(UnitDelay(0.5, name="z"))
    filt = sub.add(DiscreteFilter([0.3, 0.2], [1.0, -0.4], name="filt"))
    sub.chain(u, f, g, s.u1)
    sub.chain(z, s.u2)
    sub.chain(s, z)
    sub.chain(s, filt, y)
    top = Model("top")
    a, e, out = top.add(Inport("a"), Inport("e"), Outport("out"))
    top.add(sub)
    top.connect(a, sub.u)
    top.connect(e, sub[port.name])
    top.connect(sub.y, out)
    return top


def by_hand(a, runs, states, outputs):
    """The same, in Python floats: ``runs[k, b]`` says whether the subsystem runs."""
    T, B = a.shape
    out = np.zeros((T, B))
    for b in range(B):
        z, fz, last = 0.5, 0.0, 0.0  # the filter in transposed direct form II
        for k in range(T):
            if runs[k, b]:
                s = 0.7 * np.tanh(a[k, b]) + z
                y = 0.3 * s + fz
                fz, z, last = 0.2 * s + 0.4 * y, s, y
                out[k, b] = y
            else:
                out[k, b] = last if outputs == "held" else 0.0
                if states == "reset":
                    z, fz = 0.5, 0.0
    return out


def data(T=30, B=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((T, B))
    a[0] = 1.0  # non-zero at k = 0
    e = (rng.random((T, B)) > 0.4).astype(float)
    e[0] = [1.0, 0.0, 1.0]
    return a, e


@pytest.mark.parametrize(("states", "outputs"), MODES)
def test_enabled_subsystem_matches_a_hand_written_simulation(states, outputs):
    a, e = data()
    m = accumulator(EnablePort(states=states, outputs=outputs))
    got = simulate(m, {"a": a, "e": e})["out"]
    np.testing.assert_allclose(got, by_hand(a, e > 0, states, outputs), rtol=0, atol=1e-14)


def fd_input(m, inputs, name, seed=1, eps=1e-6):
    """d<w, y>/d(input) along a random direction, by central differences and by the sweep."""
    rng = np.random.default_rng(seed)
    w = {k: rng.standard_normal(v.shape) for k, v in simulate(m, inputs).outputs().items()}
    v = rng.standard_normal(inputs[name].shape)

    def J(x):
        t = simulate(m, {**inputs, name: x})
        return sum(float(np.vdot(w[k], t[k])) for k in w)

    num = (J(inputs[name] + eps * v) - J(inputs[name] - eps * v)) / (2 * eps)
    g = backward(m, inputs, dL_dy=w)
    return num, float(np.vdot(g.inputs[name], v)), g


@pytest.mark.parametrize(("states", "outputs"), MODES)
def test_enabled_gradients_are_exact(states, outputs):
    """Parameters by finite differences (every block, through held and reset states and
    outputs), the data input likewise, and the dot-product test; the gate's delta is 0."""
    a, e = data()
    m = accumulator(EnablePort(states=states, outputs=outputs))
    x = {"a": a, "e": e}
    assert fd_check(m, x, check_inputs=False) == len(m.parameters())
    num, ana, g = fd_input(m, x, "a")
    assert abs(num - ana) <= 1e-7 * max(1.0, abs(num))
    assert not np.any(g.inputs["e"])
    dot_check(m, x)


def test_a_closed_gate_passes_no_gradient():
    """Inputs on steps where the subsystem does not run have no effect, so no delta."""
    a, e = data()
    m = accumulator(EnablePort())
    g = backward(m, {"a": a, "e": e}, dL_dy={"out": np.ones_like(a)})
    assert np.all(g.inputs["a"][e == 0] == 0.0)
    assert np.any(g.inputs["a"][e > 0] != 0.0)


@pytest.mark.parametrize("edge", ["rising", "falling", "either"])
def test_triggered_subsystem_runs_once_per_edge(edge):
    rng = np.random.default_rng(3)
    T, B = 40, 2
    a = rng.standard_normal((T, B))
    trig = np.sign(np.sin(np.arange(T)[:, None] * np.array([[0.7, 1.3]]) + 0.3))
    trig[0] = [1.0, -1.0]  # positive at k = 0: a rising edge from the zero before it
    prev = np.vstack([np.zeros((1, B)), trig[:-1]])
    rising, falling = (trig > 0) & (prev <= 0), (prev > 0) & (trig <= 0)
    fires = {"rising": rising, "falling": falling, "either": rising | falling}[edge]
    m = accumulator(TriggerPort(edge=edge))
    got = simulate(m, {"a": a, "e": trig})["out"]
    np.testing.assert_allclose(got, by_hand(a, fires, "held", "held"), rtol=0, atol=1e-14)
    assert fd_check(m, {"a": a, "e": trig}, check_inputs=False) == len(m.parameters())
    num, ana, g = fd_input(m, {"a": a, "e": trig}, "a")
    assert abs(num - ana) <= 1e-7 * max(1.0, abs(num))
    assert not np.any(g.inputs["e"])


def test_the_plan_the_describe_and_the_compiled_backend(monkeypatch):
    a, e = data()
    m = accumulator(EnablePort())
    text = compile(m).describe()
    assert "a gated block (enabled or triggered subsystem) runs on the numpy path" in text
    want = simulate(m, {"a": a, "e": e})["out"]
    monkeypatch.setenv("BLOCKFLOW_BACKEND", "numba")
    np.testing.assert_array_equal(simulate(m, {"a": a, "e": e})["out"], want)


def test_simulator_chunks_and_model_files():
    a, e = data()
    m = accumulator(EnablePort(states="reset", outputs="held"))
    whole = simulate(m, {"a": a, "e": e})["out"]
    sim = Simulator(m, batch=3)
    parts = [sim.run({"a": a[:11], "e": e[:11]})["out"], sim.run({"a": a[11:], "e": e[11:]})["out"]]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    back = loads(dumps(m))
    port = back.block("acc/enable")
    assert (type(port).__name__, port.states, port.outputs_mode) == ("EnablePort", "reset", "held")
    np.testing.assert_array_equal(simulate(back, {"a": a, "e": e})["out"], whole)
    t = loads(dumps(accumulator(TriggerPort(edge="falling"))))
    assert t.block("acc/trigger").edge == "falling"


def test_an_enabled_model_at_the_top_level():
    m = Model("m")
    u, en, y = m.add(Inport("u"), EnablePort(outputs="reset"), Outport("y"))
    m.chain(u, m.add(Gain(2.0, name="k")), y)
    x = np.arange(1.0, 6.0)[:, None]
    got = simulate(m, {"u": x, "enable": np.array([[1.0], [0], [1], [0], [0]])})["y"][:, 0]
    np.testing.assert_array_equal(got, [2.0, 0.0, 6.0, 0.0, 0.0])


def test_bad_gates_are_refused():
    with pytest.raises(ParameterError, match="states must be 'held' or 'reset'"):
        EnablePort(states="keep")
    with pytest.raises(ParameterError, match="edge must be one of rising, falling, either"):
        TriggerPort(edge="up")
    two = Model("two")
    u, y = two.add(Inport("u"), Outport("y"))
    two.add(EnablePort("e1"), EnablePort("e2"))
    two.chain(u, two.add(Gain(1.0, name="k")), y)
    with pytest.raises(WiringError, match="2 enable/trigger ports .e1, e2."):
        compile(two)
    nested = Model("outer")
    u, y = nested.add(Inport("u"), Outport("y"))
    nested.add(EnablePort())
    inner = Model("inner")
    iu, iy = inner.add(Inport("u"), Outport("y"))
    inner.chain(iu, iy)
    nested.add(inner)
    nested.chain(u, inner, y)
    with pytest.raises(WiringError, match="subsystem 'inner' sits inside an enabled subsystem"):
        compile(nested)
