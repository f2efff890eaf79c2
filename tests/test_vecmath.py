"""The compiled loops' tanh (:mod:`blockflow.core.vecmath`): libm's to 2 ulp, exact at
the special values, what compiled code computes; and the compiled loops' division by
zero, which now gives what the numpy path gives."""

import math

import numpy as np
import pytest

from blockflow import Inport, Model, Outport, simulate
from blockflow.core import vecmath
from blockflow.errors import SimulationError
from blocks import Function, Gain, Product, Sum, UnitDelay
from models.closed_loop import tanh_loop


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want) / np.spacing(np.abs(want))


@pytest.mark.parametrize("lo, hi", [(1e-310, 1e-300), (1e-12, 1e-3), (1e-3, 0.6), (0.6, 0.65),
                                    (0.65, 2.0), (2.0, 10.0), (10.0, 25.0), (25.0, 1e300)])
def test_tanh_is_libms_to_two_ulp_on_every_range(lo, hi):
    rng = np.random.default_rng(7)
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), 4000)) * rng.choice([-1.0, 1.0], 4000)
    got = np.array([vecmath.tanh(float(v)) for v in x])
    want = np.array([math.tanh(v) for v in x])
    assert _ulps(got, want).max() <= 2.0
    assert np.array_equal(np.sign(got), np.sign(want))  # odd, and no sign lost


def test_tanh_special_values_and_the_logistic():
    for v in (0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 19.0, 19.1, -40.0, 1e308):
        got = vecmath.tanh(v)
        assert got == math.tanh(v) and math.copysign(1.0, got) == math.copysign(1.0, v), v
    assert math.isnan(vecmath.tanh(math.nan))
    # the logistic function as the numpy path computes it (0.5 + 0.5 tanh(a / 2): its
    # absolute error is an ulp or two of its value near 1, of 0.5 far out, as numpy's is)
    a = np.linspace(-30.0, 30.0, 601)
    got = np.array([vecmath.sigmoid(v) for v in a])
    np.testing.assert_allclose(got, 0.5 + 0.5 * np.tanh(0.5 * a), rtol=0, atol=2.3e-16)
    np.testing.assert_allclose(got, 1.0 / (1.0 + np.exp(-a)), rtol=0, atol=2.3e-16)


def test_compiled_loops_compute_vecmaths_tanh_batch_and_single():
    """A compiled loop's Function("tanh") gives vecmath.tanh of its input to the bit (the
    compiler's vectorised arithmetic is IEEE's, no contraction), at B=1 (a loop of
    numbers) and B=64 (element loops); the numpy path agrees to rounding."""
    pytest.importorskip("numba")
    m = tanh_loop()
    f = np.vectorize(vecmath.tanh)
    for B in (1, 64):
        r = np.random.default_rng(B).standard_normal((300, B)) * 2.0
        tr = simulate(m, {"r": r}, backend="numba")
        u, y = tr["kc.y"], tr["tanh.y"]
        assert np.array_equal(y, f(u))
        ref = simulate(m, {"r": r}, backend="numpy")
        np.testing.assert_allclose(tr["y"], ref["y"], rtol=1e-12, atol=1e-14)


def _divide_by_delayed() -> Model:
    """``p = r / z(p / 2)``: divides by the delay's initial zero at step 0."""
    m = Model("div")
    r, y = m.add(Inport("r"), Outport("y"))
    p, z, g = m.add(Product("*/", name="p"), UnitDelay(0.0, name="z"), Gain(0.5, name="g"))
    m.connect(r, p.u1)
    m.chain(p, g, z, p.u2)
    m.connect(p, y)
    return m


@pytest.mark.parametrize("B", [1, 3])
def test_a_compiled_division_by_zero_is_the_numpy_paths_infinity(B):
    """numba's default error model raised ZeroDivisionError from a compiled loop where the
    numpy path gives inf; the loops are compiled with numpy's (also what lets the
    compiler vectorise a division): the same error, naming the block, the same trace."""
    pytest.importorskip("numba")
    m, x = _divide_by_delayed(), np.ones((5, B))
    for backend in ("numpy", "numba"):
        with pytest.raises(SimulationError, match=r"non-finite value, first at p\.y, step 0"):
            simulate(m, {"r": x}, backend=backend)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (simulate(m, {"r": x}, backend=be, check_finite=False)["y"]
                for be in ("numpy", "numba"))
    assert np.isinf(a[0]).all()
    np.testing.assert_array_equal(a, b)


def test_function_tanh_and_sigmoid_no_longer_count_as_libm():
    """The backend policy weighs libm calls per element; tanh and sigmoid make none."""
    assert Function("tanh").libm == 0 and Function("sigmoid").libm == 0
    assert Function("exp").libm == 1 and Function("sin").libm == 1


def _square_less_one(a):  # the form compiled code computes: a^2 - 1, rounded otherwise
    return a * a - 1.0


def test_kernel_jit_is_what_compiled_code_runs_on_numbers():
    """``kernel(f, jit=g)``: compiled loops call ``g`` where the argument is a number
    (their element loops and loops of numbers), the numpy path ``f``.  Here f and g are
    the same function rounded differently, (a + 1)(a - 1) and a^2 - 1, so the bits say
    which ran."""
    pytest.importorskip("numba")
    from blockflow import Block
    from blockflow.core.kernel import Kernel, elementwise_into, kernel

    @kernel(name="tests.vecmath.product_less_one", numbers=True, jit=_square_less_one)
    def f(a):
        return (a + 1.0) * (a - 1.0)

    f.into = elementwise_into(f, 1, "tests.vecmath.product_less_one.into")

    class Shrink(Block):  # y = (u^2 - 1) / 4, a contraction for |u| < 1
        def output(self, x, u):
            return f(u)

        def kernel(self):
            return Kernel(f)

    m = Model("jit_loop")
    r, y = m.add(Inport("r"), Outport("y"))
    s, k, g = m.add(Sum("++", name="s"), Shrink(name="f"), Gain(0.25, name="g"))
    z = m.add(UnitDelay(0.0, name="z"))
    m.connect(r, s.u1)
    m.chain(s, k, g, y)
    m.chain(g, z, s.u2)
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (60, 4))
    for B in (1, 4):  # a loop of numbers, then element loops
        u = x[:, :B]
        tr = simulate(m, {"r": u}, backend="numba")
        v = tr["s.y"]
        assert np.array_equal(tr["f.y"], v * v - 1.0)
        ref = simulate(m, {"r": u}, backend="numpy")
        assert np.array_equal(ref["f.y"], (ref["s.y"] + 1.0) * (ref["s.y"] - 1.0))
        assert not np.array_equal(tr["f.y"], (v + 1.0) * (v - 1.0))  # (they differ)
        np.testing.assert_allclose(tr["y"], ref["y"], rtol=1e-13, atol=1e-15)
