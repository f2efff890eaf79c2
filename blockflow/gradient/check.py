"""Gradient checks for your own blocks and models: finite differences and the
dot-product test between the tangent and the reciprocal model.

>>> from blockflow.gradient.check import fd_check
>>> from models.closed_loop import tanh_loop
>>> fd_check(tanh_loop(), {"r": np.ones((10, 2))})  # number of gradients checked
4
"""

from __future__ import annotations

import numpy as np

from blockflow.gradient.sweep import backward
from blockflow.gradient.tangent import directional
from blockflow.run.simulate import simulate


def _wrong(what: str, ana: float, num: float) -> str:
    return (f"gradient of {what} along a random direction: {ana:.12g} from the reciprocal "
            f"sweep, {num:.12g} by finite differences")


def central_difference(J, h: float) -> float:
    """``dJ/dt`` at ``t = 0`` of ``J(t)`` by central differences with Richardson
    extrapolation (error ``O(h^4)``): ``(4 D(h/2) - D(h)) / 3``."""
    def d(step):
        return (J(step) - J(-step)) / (2 * step)

    return (4.0 * d(h / 2) - d(h)) / 3.0


def relative_step(p: np.ndarray, v: np.ndarray, eps: float = 1e-4) -> float:
    """A step along ``v`` scaled to the parameter's size (a fixed step of 1e-6 on gains
    near 100 is a relative step of 1e-8, where rounding swamps the difference)."""
    return eps * max(1.0, float(np.abs(p).max(initial=0.0))) / max(
        float(np.abs(v).max(initial=0.0)), 1e-300)


def dot_check(model, inputs, *, seed=0, tol=1e-10):
    """The adjoint test <T v, w> == <v, R w> over input and parameter directions."""
    rng = np.random.default_rng(seed)
    tr = simulate(model, inputs)
    v = {k: rng.standard_normal(np.shape(a)) for k, a in inputs.items()}
    w = {k: rng.standard_normal(a.shape) for k, a in tr.outputs().items()}
    dp = {k: rng.standard_normal(p.shape) for k, p in model.parameters().items()}
    t = directional(model, tr, v, dp)
    g = backward(model, trace=tr, dL_dy=w)
    lhs = sum(float(np.vdot(t[k], w[k])) for k in w)
    rhs = sum(float(np.vdot(v[k], g.inputs[k])) for k in v)
    rhs += sum(float(np.vdot(d, g.params[k])) for k, d in dp.items())
    assert abs(lhs - rhs) <= tol * max(1.0, abs(lhs)), (
        f"dot-product test failed: <T v, w> = {lhs:.12g} (tangent model) but <v, R w> = "
        f"{rhs:.12g} (reciprocal model)")


def fd_check(model, inputs, *, seed=0, eps=1e-6, rtol=1e-6, params=True, check_inputs=True):
    """Compare every sweep gradient with central differences of ``J = <w, y>``.

    ``w`` is a random output weighting (so dL/dy = w); each parameter and each input is
    perturbed along a random direction and ``dJ`` compared with ``<grad, direction>``.
    """
    rng = np.random.default_rng(seed)
    tr = simulate(model, inputs)
    w = {n: rng.standard_normal(a.shape) for n, a in tr.outputs().items()}

    def J():
        t = simulate(model, inputs)
        return sum(float(np.vdot(w[n], t[n])) for n in w)

    g = backward(model, trace=tr, dL_dy=w)
    checked = 0
    if params:
        for name, p in model.parameters().items():
            v = rng.standard_normal(p.shape)
            old = p.copy()
            p[...] = old + eps * v
            jp = J()
            p[...] = old - eps * v
            jm = J()
            p[...] = old
            num, ana = (jp - jm) / (2 * eps), float(np.vdot(g.params[name], v))
            assert abs(num - ana) <= rtol * max(1.0, abs(num)), _wrong(name, ana, num)
            checked += 1
    if check_inputs:
        for name, x in inputs.items():
            v = rng.standard_normal(np.shape(x))
            xp, xm = dict(inputs), dict(inputs)
            xp[name], xm[name] = x + eps * v, x - eps * v
            jp = sum(float(np.vdot(w[n], simulate(model, xp)[n])) for n in w)
            jm = sum(float(np.vdot(w[n], simulate(model, xm)[n])) for n in w)
            num, ana = (jp - jm) / (2 * eps), float(np.vdot(g.inputs[name], v))
            assert abs(num - ana) <= rtol * max(1.0, abs(num)), _wrong(f"input {name}", ana,
                                                                       num)
            checked += 1
    return checked
