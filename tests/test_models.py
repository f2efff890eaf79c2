"""The ready-made models: their scipy twins, and step-by-step == whole-sequence paths."""

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given
from hypothesis import strategies as st

from blockflow import compile, simulate
from models import CATALOGUE
from models.arma import arma_blocks, arma_filter
from models.closed_loop import tanh_loop
from models.pid import pid_loop


@pytest.mark.parametrize("name", sorted(CATALOGUE))
@pytest.mark.parametrize("B", [1, 7])
def test_step_and_sequence_paths_agree(name, B):
    build, make_inputs = CATALOGUE[name]
    m = build()
    x = make_inputs(60, B, seed=3)
    auto, step = simulate(m, x), simulate(m, x, mode="step")
    assert compile(m, "step").loops  # the step path really is step by step
    for sig in auto.names():
        np.testing.assert_allclose(auto[sig], step[sig], rtol=0, atol=1e-12, err_msg=sig)


@pytest.mark.parametrize("B", [1, 7])
@given(b=st.lists(st.floats(-1, 1), min_size=1, max_size=4),
       a=st.lists(st.floats(-0.45, 0.45), min_size=1, max_size=3), seed=st.integers(0, 999))
def test_arma_blocks_and_filter_match_lfilter(B, b, a, seed):
    a = [1.0, *a]
    u = np.random.default_rng(seed).standard_normal((50, B))
    ref = ss.lfilter(b, a, u, axis=0)
    for m in (arma_blocks(b, a), arma_filter(b, a)):
        for mode in ("auto", "step"):
            y = simulate(m, {"u": u}, mode=mode)["y"]
            np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def _polymul(*ps):
    out = np.array([1.0])
    for p in ps:
        out = np.convolve(out, p)
    return out


def _polyadd(p, q):
    n = max(len(p), len(q))
    return np.pad(p, (0, n - len(p))) + np.pad(q, (0, n - len(q)))


@pytest.mark.parametrize("B", [1, 7])
def test_pid_loop_matches_closed_loop_transfer_function(B, rng):
    kp, ki, kd = 0.8, 0.3, 0.2
    num, den = (0.1, 0.08), (1.0, -1.5, 0.7)
    # controller in z^-1: P + I/(1 - z^-1) + D (1 - z^-1) over the common denominator
    nc = _polyadd(_polyadd(kp * np.array([1.0, -1.0]), [ki]),
                  _polymul([kd, -kd], [1.0, -1.0]))
    dc = np.array([1.0, -1.0])
    npl, dpl = np.array([0.0, *num]), np.array(den)  # strictly proper: one step delay
    b_cl = _polymul(nc, npl)
    a_cl = _polyadd(_polymul(dc, dpl), b_cl)
    r = rng.standard_normal((80, B))
    y = simulate(pid_loop(kp, ki, kd, num, den), {"r": r})["y"]
    np.testing.assert_allclose(y, ss.lfilter(b_cl, a_cl, r, axis=0), rtol=0, atol=1e-10)
    # and the plant alone against dlsim, inside the loop
    tr = simulate(pid_loop(kp, ki, kd, num, den), {"r": r})
    _, ref = ss.dlsim((num, den, 1.0), tr["pid/u"][:, 0])
    np.testing.assert_allclose(tr["plant"][:, 0], ref[:, 0], rtol=0, atol=1e-12)


def test_tanh_loop_matches_a_hand_written_loop(rng):
    kc, b, a, y0 = 1.5, (0.4, 0.2), (1.0, -0.5), 0.25
    r = rng.standard_normal((100, 4))
    y = simulate(tanh_loop(kc, b, a, y0), {"r": r})["y"]
    ref = np.zeros_like(r)
    yd, u1, y1 = np.full(4, y0), np.zeros(4), np.zeros(4)
    for k in range(100):
        u = np.tanh(kc * (r[k] - yd))
        ref[k] = b[0] * u + b[1] * u1 - a[1] * y1
        u1, y1, yd = u, ref[k], ref[k]
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def test_float32_runs_in_float32(rng):
    m = tanh_loop().astype(np.float32)
    r = rng.standard_normal((30, 2)).astype(np.float32)
    tr = simulate(m, {"r": r})
    assert tr["y"].dtype == np.float32 and tr["tanh"].dtype == np.float32
    ref = simulate(tanh_loop(), {"r": r.astype(np.float64)})["y"]
    np.testing.assert_allclose(tr["y"], ref, rtol=1e-5, atol=1e-5)
