"""The reference cases of ../shared/reference/, computed by an independent autograd:
each built as a blockflow model, its loss and every gradient matched to 1e-9."""

from pathlib import Path

import numpy as np
import pytest

from blockflow import simulate
from blockflow.gradient.sweep import backward
from blockflow.gradient.tangent import directional
from models.paper import cascaded, mlp, output_feedback_rnn

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason="../shared/reference not present")


def load(name):
    return dict(np.load(REF / f"{name}.npz"))


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(b).max()))


def batch1(a):
    return a[:, None]  # (K, n) -> (T, B=1, n)


def test_mlp():
    r = load("mlp")
    m = mlp(r["W1"], r["b1"], r["W2"], r["b2"])
    g = backward(m, {"x": batch1(r["x"])}, targets=batch1(r["d"]))
    close(g.loss, r["J"])
    close(simulate(m, {"x": batch1(r["x"])})["y"][:, 0], r["y"])
    for p in ("W1", "b1", "W2", "b2"):
        close(g.params[f"layer{p[1]}.{p[0]}"], r[f"dJ_d{p}"])
    close(g.deltas["layer1.y"][:, 0], r["dJ_dnet1"])


def test_output_feedback_rnn():
    r = load("output_feedback_rnn")
    m = output_feedback_rnn(r["W1"], r["b1"], r["W2"], r["b2"])
    x, d = {"x": batch1(r["x"])}, batch1(r["d"])
    g = backward(m, x, targets=d)
    close(g.loss, r["J"])
    close(simulate(m, x)["y"][:, 0], r["y"])
    for p in ("W1", "b1", "W2", "b2"):
        close(g.params[f"layer{p[1]}.{p[0]}"], r[f"dJ_d{p}"])
    close(g.deltas["out.y"][:, 0], r["dJ_dy"])  # the BPTT delta of eq. 4
    # forward mode: the directional derivative along v
    tr = simulate(m, x)
    dirs = {f"layer{p[1]}.{p[0]}": r[f"v_{p}"] for p in ("W1", "b1", "W2", "b2")}
    dy = directional(m, tr, dparams=dirs)["y"]
    close(float(np.vdot(-2.0 * (d - tr["y"]), dy)), r["dJ_dw_dot_v"])


def test_cascaded_fir():
    r = load("cascaded_fir")
    nets = [tuple(r[f"N{i}_{p}"] for p in ("W1", "b1", "W2", "b2")) for i in (1, 2)]
    m = cascaded(*nets)
    x, d = {"x": batch1(r["x"][:, 0])}, batch1(r["d"][:, 0])
    g = backward(m, x, targets=d)
    close(g.loss, r["J"])
    close(simulate(m, x)["y"][:, 0], r["y"][:, 0])
    close(simulate(m, x)["u.y1"][:, 0], r["sig_u"][:, 0])
    for i in (1, 2):
        for p, q in (("W1", "W0"), ("b1", "b0"), ("W2", "W1"), ("b2", "b1")):
            close(g.params[f"N{i}.{q}"], r[f"dJ_dN{i}_{p}"])
    close(g.deltas["u.y1"][:, 0], r["dJ_du"][:, 0])
    close(g.deltas["N2.u"][:, 0], r["dJ_dz2"])
