"""``flush_denormals()``: subnormal numbers flushed to zero in the calling thread for a
block, on request; IEEE arithmetic (and the numpy/compiled bit identity) otherwise."""

from __future__ import annotations

import platform
import sys
import threading

import numpy as np
import pytest

from blockflow import backward, flush_denormals, simulate
from blockflow.backends.denormals import flushing
from models import CATALOGUE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.machine().lower() not in (
        "x86_64", "amd64", "aarch64", "arm64"), reason="the control is known on Linux")

TINY = np.finfo(np.float64).tiny  # the smallest normal number


def _subnormal(a: np.ndarray) -> int:
    return int(np.count_nonzero((a != 0) & (np.abs(a) < TINY)))


def test_inside_the_block_subnormals_are_zero_and_the_thread_is_restored_after():
    x = np.array([1e-300, -3e-300, 1.0])
    assert not flushing()
    assert _subnormal(x * 1e-10) == 2
    with flush_denormals():
        assert flushing()
        assert _subnormal(x * 1e-10) == 0
        np.testing.assert_array_equal(x * 1e-10, [0.0, -0.0, 1e-10])  # normal: unchanged
        assert np.array([5e-324])[0] * 1.0 == 0.0  # a subnormal operand reads as zero
        with flush_denormals(enabled=False):  # (a flag passed through changes nothing)
            assert flushing()
        with flush_denormals():  # nested: the outer setting is back after
            pass
        assert flushing()
    assert not flushing()
    assert _subnormal(x * 1e-10) == 2
    seen, inside, checked = [], threading.Event(), threading.Event()

    def other():  # a thread already running: its own setting stays
        inside.wait()
        seen.append(flushing())
        checked.set()

    t = threading.Thread(target=other)
    t.start()
    with flush_denormals():
        inside.set()
        checked.wait()
    t.join()
    assert seen == [False]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_pid_gradient_loses_its_subnormal_deltas_and_nothing_else(backend, monkeypatch):
    """The PID loop with dL/dy = 1: integral action cancels the constant sensitivity and
    most of its branch's deltas decay through the subnormal range.  Flushed, none is
    subnormal; every gradient is the IEEE one to within 1e-300 absolute."""
    if backend == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("BLOCKFLOW_BACKEND", backend)
    m = CATALOGUE["pid_loop"][0]()
    T = 6000
    x = {"r": np.ones((T, 1))}
    dL = {o: np.ones_like(a) for o, a in simulate(m, x).outputs().items()}
    ieee = backward(m, x, dL_dy=dL)
    with flush_denormals():
        flushed = backward(m, x, dL_dy=dL)
    assert sum(_subnormal(a) for a in ieee.deltas.bufs if a is not None) > T // 2
    assert sum(_subnormal(a) for a in flushed.deltas.bufs if a is not None) == 0
    for k, g in ieee.params.items():
        np.testing.assert_allclose(flushed.params[k], g, rtol=1e-12, atol=1e-300, err_msg=k)
    assert not flushing()
