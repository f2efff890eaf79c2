"""Every linear block against its scipy.signal twin, to 1e-12, batch sizes 1 and 7,
through both the whole-sequence and the step-by-step paths."""

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given
from hypothesis import strategies as st

from blockflow import Inport, Model, Outport, simulate
from blocks import FIR, Delay, DiscreteFilter, DiscreteTransferFcn, StateSpace, UnitDelay

MODES = ("auto", "step")


def single(block, shape=()):
    m = Model("single")
    m.chain(*m.add(Inport("u", shape=shape), block, Outport("y")))
    return m


def run_both(m, u):
    ys = [simulate(m, {"u": u}, mode=mode)["y"] for mode in MODES]
    np.testing.assert_allclose(ys[0], ys[1], rtol=0, atol=1e-12)
    return ys[0]


coef = st.floats(-0.9, 0.9)
stable_poly = st.lists(st.floats(-0.45, 0.45), min_size=1, max_size=3)


@pytest.mark.parametrize("B", [1, 7])
@given(h=st.lists(coef, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_fir_matches_lfilter(B, h, seed):
    u = np.random.default_rng(seed).standard_normal((40, B))
    y = run_both(single(FIR(h)), u)
    np.testing.assert_allclose(y, ss.lfilter(h, [1.0], u, axis=0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("B", [1, 7])
@given(b=st.lists(coef, min_size=1, max_size=4), a=stable_poly, seed=st.integers(0, 2**16))
def test_discrete_filter_matches_lfilter(B, b, a, seed):
    a = [1.0, *a]
    u = np.random.default_rng(seed).standard_normal((50, B))
    y = run_both(single(DiscreteFilter(b, a)), u)
    np.testing.assert_allclose(y, ss.lfilter(b, a, u, axis=0), rtol=0, atol=1e-12)


def test_discrete_filter_normalises_a0_like_lfilter(rng):
    u = rng.standard_normal((30, 2))
    y = run_both(single(DiscreteFilter([0.0, 1.0, 0.5], [2.0, -0.4])), u)
    np.testing.assert_allclose(y, ss.lfilter([0.0, 1.0, 0.5], [2.0, -0.4], u, axis=0),
                               atol=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.signal.BadCoefficients")
@pytest.mark.parametrize("B", [1, 7])
@given(num=st.lists(coef, min_size=1, max_size=3), den=stable_poly, seed=st.integers(0, 2**16))
def test_transfer_fcn_matches_dlsim(B, num, den, seed):
    den = [1.0, *den]
    num = num[: len(den)]
    u = np.random.default_rng(seed).standard_normal((40, B))
    y = run_both(single(DiscreteTransferFcn(num, den)), u)
    for j in range(B):
        _, ref = ss.dlsim((num, den, 1.0), u[:, j])
        np.testing.assert_allclose(y[:, j], ref[:, 0], rtol=0, atol=1e-12)


def test_transfer_fcn_and_filter_differ_by_a_delay(rng):
    """Same coefficients, different conventions: dlti pads num in front (z^-1 per
    missing power), lfilter does not."""
    u = rng.standard_normal((20, 1))
    ytf = run_both(single(DiscreteTransferFcn([1.0, 0.5], [1.0, -0.3, 0.1])), u)
    yf = run_both(single(DiscreteFilter([1.0, 0.5], [1.0, -0.3, 0.1])), u)
    np.testing.assert_allclose(ytf[1:], yf[:-1], atol=1e-12)
    assert ytf[0, 0] == 0.0 and yf[0, 0] != 0.0


@pytest.mark.parametrize("B", [1, 7])
@pytest.mark.parametrize("with_d", [False, True])
def test_state_space_matches_dlsim(B, with_d, rng):
    n, m_, p = 3, 2, 2
    A = rng.standard_normal((n, n))
    A *= 0.8 / max(abs(np.linalg.eigvals(A)))
    Bm, C = rng.standard_normal((n, m_)), rng.standard_normal((p, n))
    D = rng.standard_normal((p, m_)) if with_d else np.zeros((p, m_))
    x0 = rng.standard_normal(n)
    u = rng.standard_normal((30, B, m_))
    y = run_both(single(StateSpace(A, Bm, C, D if with_d else None, x0=x0), shape=(m_,)), u)
    for j in range(B):
        _, ref, _ = ss.dlsim((A, Bm, C, D, 1.0), u[:, j], x0=x0)
        np.testing.assert_allclose(y[:, j], ref, rtol=0, atol=1e-12)


def test_unit_delay_keeps_the_first_sample():
    """Input non-zero at k = 0: y(0) = x0, y(1) = u(0) -- nothing lost, nothing doubled."""
    u = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    for mode in MODES:
        y = simulate(single(UnitDelay(x0=-2.0)), {"u": u}, mode=mode)["y"][:, 0]
        np.testing.assert_array_equal(y, [-2.0, 3.0, 1.0, 4.0, 1.0])


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_delay_n_shifts_by_n(n):
    u = np.arange(1.0, 11.0)
    for mode in MODES:
        y = simulate(single(Delay(n, x0=9.0)), {"u": u}, mode=mode)["y"][:, 0]
        expected = np.concatenate([np.full(n, 9.0), u])[:10]
        np.testing.assert_array_equal(y, expected)


def test_vector_delay_with_vector_initial_value():
    u = np.ones((4, 2, 3))
    y = simulate(single(UnitDelay(x0=[1.0, 2.0, 3.0]), shape=(3,)), {"u": u})["y"]
    np.testing.assert_array_equal(y[0], [[1, 2, 3], [1, 2, 3]])
    np.testing.assert_array_equal(y[1:], 1.0)


def test_discrete_filter_initial_state_is_scipys_zi_with_exact_gradients():
    """DiscreteFilter(x0=...) starts from that transposed direct form II state (scipy's
    zi), on the whole-sequence and the step path; gradients stay exact (a[0] != 1
    included: the state is stored divided by a[0])."""
    import scipy.signal

    from blockflow import ParameterError
    from blockflow.io.modelfile import dumps, loads
    from blocks import DiscreteFilter, DiscreteTransferFcn

    from .helpers import dot_check, fd_check

    U = np.random.default_rng(0).standard_normal((20, 2))
    U[0] = 1.0
    for a0 in (1.0, 2.0):
        m = Model("f")
        u, y = m.add(Inport("u"), Outport("y"))
        m.chain(u, m.add(DiscreteFilter([0.5, 0.3, 0.1], [a0, -0.4, 0.1], x0=[0.7, -0.2],
                                        name="f")), y)
        zi = np.array([[0.7, 0.7], [-0.2, -0.2]])
        want = scipy.signal.lfilter([0.5, 0.3, 0.1], [a0, -0.4, 0.1], U, axis=0, zi=zi)[0]
        np.testing.assert_array_equal(simulate(m, {"u": U})["y"], want)
        np.testing.assert_allclose(simulate(m, {"u": U}, mode="step")["y"], want, atol=1e-15)
        assert fd_check(m, {"u": U}) == 3
        dot_check(m, {"u": U})
        np.testing.assert_array_equal(simulate(loads(dumps(m)), {"u": U})["y"], want)
    tf = DiscreteTransferFcn([1.0], [1.0, -0.5], x0=2.0)
    assert tf.sequence((np.full((1, 1), 2.0),), np.zeros((3, 1)))[:, 0].tolist() == \
        [2.0, 1.0, 0.5]
    with pytest.raises(ParameterError, match="x0 is the initial state, 2 values"):
        DiscreteFilter([1.0], [1.0, 0.1, 0.2], x0=[1.0, 2.0, 3.0])



@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_filter_update_written_out_per_order_is_the_generic_one_to_the_bit(order):
    """The compiled update written out for ``n`` states (one statement per state, which
    the compiler vectorises) and the generic element loop: the same operations in the
    same order, so the same bits (both run here as plain Python); and a feedback loop
    through the filter compiled (B=3) gives the numpy path's numbers to the bit."""
    from blockflow.core.kernel import into_form
    from blockflow.core.types import SignalType
    from blocks import Sum
    from blocks.filters import _filter_update_into, filter_update_kernel
    from tests.helpers import compiled

    rng = np.random.default_rng(order)
    b, a = rng.standard_normal(order + 1), np.r_[1.0, 0.3 * rng.standard_normal(order)]
    t = SignalType((2,), np.float64)
    x = DiscreteFilter(b, a).init_state(3, [t], [t])
    x[0][...] = rng.standard_normal(x[0].shape)
    u = rng.standard_normal((3, 2))
    one, two = (x[0].copy(), *x[1:]), (x[0].copy(), *x[1:])
    _filter_update_into(True, one, u, one)
    into_form(filter_update_kernel(order))(True, two, u, two)
    assert np.array_equal(one[0], two[0])
    pytest.importorskip("numba")
    m = Model("filter_loop")  # y = F(r - 0.5 y(k-1))
    r, y = m.add(Inport("r"), Outport("y"))
    err, f = m.add(Sum("+-", name="err"), DiscreteFilter(0.5 * b, a, name="f"))
    z = m.add(UnitDelay(0.0, name="z"))
    m.connect(r, err.u1)
    m.chain(err, f, y)
    m.chain(f, z, err.u2)
    u = rng.standard_normal((40, 3))
    tr = simulate(m, {"r": u}, backend="numba")
    (seg,) = [s for s in tr.plan.segments if s.loop is not None]
    assert f"filter_update{order}.into" in compiled(seg).source  # (the one written out)
    assert np.array_equal(tr["y"], simulate(m, {"r": u}, backend="numpy")["y"])
