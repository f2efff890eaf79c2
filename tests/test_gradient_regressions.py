"""Regression tests: cases that once gave a silently wrong gradient or crashed, and the
cache that must never serve a stale plan or reciprocal."""

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, backward, simulate
from blockflow.errors import SimulationError
from blockflow.gradient.losses import cross_entropy
from blockflow.gradient.tangent import directional
from blockflow.io.modelfile import load, save
from blockflow.train import SGD, train
from blocks import FIR, Constant, DiscreteFilter, Function, Gain, Sum

from .helpers import fd_check


def fir_model(h=(0.5, 0.3, 0.2)) -> Model:
    m = Model("m")
    u, f, t, y = m.add(Inport("u"), FIR(list(h), name="fir"), Function("tanh", name="t"),
                       Outport("y"))
    m.chain(u, f, t, y)
    return m


RNG = np.random.default_rng(0)
X = {"u": RNG.standard_normal((10, 2))}
D = RNG.standard_normal((10, 2))
NEW_TAPS = np.array([1.0, -2.0, 3.0])


def fresh_gradient():
    return backward(fir_model(NEW_TAPS), X, targets=D)


@pytest.mark.parametrize("how", ["reassign", "astype", "copy", "load", "train"])
def test_replaced_parameters_never_leave_a_stale_reciprocal(how, tmp_path):
    m = fir_model()
    backward(m, X, targets=D)  # builds and caches the plans and the reciprocal
    backward(m, X, targets=D, online=True)
    if how == "reassign":
        m.blocks["fir"].h = NEW_TAPS.copy()
    elif how == "astype":
        m.blocks["fir"].h = NEW_TAPS.copy()
        m = m.astype(np.float64)
    elif how == "copy":
        m.blocks["fir"].h = NEW_TAPS.copy()
        m = m.copy()
    elif how == "load":
        m.blocks["fir"].h = NEW_TAPS.copy()
        save(m, tmp_path / "m.json")
        m = load(tmp_path / "m.json")
    else:  # training updates the arrays in place; grad afterwards sees the new values
        train(m, X, D, optimizer=SGD(0.05), epochs=3)
        ref = backward(m.copy(), X, targets=D)
        got = backward(m, X, targets=D)
        np.testing.assert_allclose(got.inputs["u"], ref.inputs["u"], rtol=1e-13)
        return
    ref = fresh_gradient()
    for online in (False, True):
        got = backward(m, X, targets=D, online=online)
        np.testing.assert_allclose(got.inputs["u"], ref.inputs["u"], rtol=1e-12)
        np.testing.assert_allclose(got.params["fir.h"], ref.params["fir.h"], rtol=1e-12)


def test_copy_shares_no_cache_or_parameter_with_the_original():
    m = fir_model()
    backward(m, X, targets=D)
    c = m.copy()
    c.blocks["fir"].h[...] = NEW_TAPS  # in place: the original keeps its taps
    np.testing.assert_allclose(backward(m, X, targets=D).inputs["u"],
                               backward(fir_model(), X, targets=D).inputs["u"])
    np.testing.assert_allclose(backward(c, X, targets=D).inputs["u"],
                               fresh_gradient().inputs["u"])
    assert not m.__dict__.keys() & {"_plans", "_rplan", "_cplan"}  # nothing on the model


def test_truncated_filter_equals_its_elementary_build():
    """The issue's example: DiscreteFilter with window= once dropped the terms with
    inputs and outputs from before the window (b = [48.37, 36.75] vs [48.37, 48.37])."""
    rng = np.random.default_rng(3)
    x = {"u": rng.standard_normal((40, 2))}
    w = {"y": rng.standard_normal((40, 2))}
    f = Model("f")
    u, flt, y = f.add(Inport("u"), DiscreteFilter([0.4, 0.3], [1.0, -0.6], name="f"),
                      Outport("y"))
    f.chain(u, flt, y)
    e = Model("e")
    u, y = e.add(Inport("u"), Outport("y"))
    b, s = e.add(FIR([0.4, 0.3], name="b"), Sum("+-", name="s"))
    from blocks import UnitDelay

    z, a = e.add(UnitDelay(name="z"), Gain(-0.6, name="a"))
    e.chain(u, b)
    e.connect(b, s.u1)
    e.connect(s, y)
    e.chain(s, z, a)
    e.connect(a, s.u2)
    for kw in ({"window": 7}, {"window": 7, "chunked": True}):
        g1, g2 = backward(f, x, dL_dy=w, **kw), backward(e, x, dL_dy=w, **kw)
        np.testing.assert_allclose(g1.params["f.b"], g2.params["b.h"], rtol=1e-12)
        np.testing.assert_allclose(g1.params["f.a"][1], g2.params["a.K"], rtol=1e-12)
        np.testing.assert_allclose(g1.inputs["u"], g2.inputs["u"], atol=1e-14)


def test_forward_mode_with_a_trainable_constant():
    m = Model("c")
    c, s, u, y = m.add(Constant(1.0, trainable=True, name="c"), Sum("++", name="s"),
                       Inport("u"), Outport("y"))
    m.connect(c, s.u1)
    m.connect(u, s.u2)
    m.connect(s, y)
    tr = simulate(m, {"u": np.ones((4, 1))})
    np.testing.assert_array_equal(directional(m, tr, dparams={"c.value": 2.0})["y"],
                                  np.full((4, 1), 2.0))


def test_cross_entropy_on_scalar_outputs_is_binary_and_checks_out():
    y = np.array([[0.3, -1.2], [2.0, 0.1]])
    d = np.array([[1.0, 0.0], [0.0, 1.0]])
    value, g = cross_entropy(y, d)
    s = 1 / (1 + np.exp(-y))
    expect = -(d * np.log(s) + (1 - d) * np.log(1 - s)).mean()
    assert value == pytest.approx(expect, rel=1e-13)
    np.testing.assert_allclose(g, (s - d) / 4, rtol=1e-13)
    eps = 1e-6
    for i in np.ndindex(y.shape):
        dy = np.zeros_like(y)
        dy[i] = eps
        num = (cross_entropy(y + dy, d)[0] - cross_entropy(y - dy, d)[0]) / (2 * eps)
        assert num == pytest.approx(g[i], rel=1e-6)


def test_cross_entropy_soft_targets_and_label_range():
    rng = np.random.default_rng(1)
    y, d = rng.standard_normal((3, 2, 4)), rng.uniform(0, 1, (3, 2, 4))  # not summing to 1
    _, g = cross_entropy(y, d)
    eps = 1e-6
    for i in [(0, 0, 1), (2, 1, 3)]:
        dy = np.zeros_like(y)
        dy[i] = eps
        num = (cross_entropy(y + dy, d)[0] - cross_entropy(y - dy, d)[0]) / (2 * eps)
        assert num == pytest.approx(g[i], rel=1e-6)
    with pytest.raises(SimulationError, match="class labels must lie in 0..3"):
        cross_entropy(y, np.full((3, 2), -1))
    with pytest.raises(SimulationError, match="0 or 1"):
        cross_entropy(y[..., 0], np.full((3, 2), 2))


def test_cli_cross_entropy_on_a_scalar_model_passes_its_own_check(capsys):
    from blockflow.cli import main

    assert main(["grad", "models/pid.py", "--loss", "cross_entropy", "--fd-check",
                 "--random-inputs", "0", "--steps", "30"]) in (0, None)
    out = capsys.readouterr().out
    assert "loss 0 " not in out and "worst relative difference" in out


def test_integer_inport_gets_a_real_gradient():
    m = Model("i")
    u, g, y = m.add(Inport("u", dtype=np.int32), Gain(0.5, name="g"), Outport("y"))
    m.chain(u, g, y)
    x = {"u": np.arange(4, dtype=np.int32).reshape(4, 1)}
    gr = backward(m, x, targets=np.ones((4, 1)))
    assert gr.inputs["u"].dtype == np.float64
    np.testing.assert_allclose(gr.inputs["u"].ravel(), [-1.0, -0.5, 0.0, 0.5])  # 0.5(-2e)
    t = directional(m, simulate(m, x), {"u": np.full((4, 1), 0.5)})
    np.testing.assert_allclose(t["y"].ravel(), 0.25)


def test_fd_check_still_holds_after_reassignment():
    m = fir_model()
    backward(m, X, targets=D)
    m.blocks["fir"].h = NEW_TAPS.copy()
    fd_check(m, X)
