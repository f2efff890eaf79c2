"""Operating points (trim): a steady state of a model, solved with exact Jacobians.

``find_operating_point(model, inputs=..., outputs=..., fixed=...)`` looks for the states
``x`` and the free inputs ``u`` at which the model stays where it is,
``x(k+1) = x(k)``, with the named outputs at their targets: a nonlinear least-squares
problem (``scipy.optimize.least_squares``) whose Jacobian ``[[A - I, B], [C, D]]`` is
the model's linearisation at each iterate (:func:`~blockflow.control.lti.linearize`,
from the tangent model: exact, no finite differences), like python-control's
``find_eqpt`` or Simulink's ``findop``.  For a continuous plant under a solver the
fixed points of the one-step map are the equilibria ``f(x, u) = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blockflow.control.lti import _flat, _names, _unflat, linearize
from blockflow.core.model import Model
from blockflow.errors import SimulationError
from blockflow.run.simulator import Simulator


@dataclass
class OperatingPoint:
    """A steady state: ``states`` by block path (as :attr:`Simulator.state` takes them),
    ``inputs`` and ``outputs`` by port, the largest residual left and whether the solver
    met its tolerance."""

    states: dict
    inputs: dict
    outputs: dict
    residual: float
    success: bool
    message: str = ""
    names: dict = field(default_factory=dict)


class _Layout:
    """The model's state as one vector, ordered and named as ``linearize`` names it."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.ops = []
        init = sim.state
        for seg in sim.plan.segments:
            for op in seg.ops:
                if op.state is None:
                    continue
                b = op.block
                sizes = [_flat(np.asarray(p), b.state_batch_axis).shape[1]
                         for p in b.state_parts(init[op.path])]
                self.ops.append((op.path, b, sizes))
        self.names = [nm for path, _, sizes in self.ops for nm in _names(path, sum(sizes))]
        self.init = init

    def vector(self, states: dict) -> np.ndarray:
        out = []
        for path, b, _ in self.ops:
            out += [_flat(np.asarray(p), b.state_batch_axis)[0]
                    for p in b.state_parts(states[path])]
        return np.concatenate(out) if out else np.zeros(0)

    def states(self, v: np.ndarray) -> dict:
        out, row = {}, 0
        for path, b, sizes in self.ops:
            like = self.init[path]
            parts = []
            for p, size in zip(b.state_parts(like), sizes, strict=True):
                p = np.asarray(p)
                parts.append(_unflat(v[row:row + size][None].astype(p.dtype), p,
                                     b.state_batch_axis))
                row += size
            out[path] = b.with_state_parts(like, tuple(parts))
        return out


def find_operating_point(model: Model, *, inputs: dict | None = None,
                         outputs: dict | None = None, fixed: dict | None = None,
                         guess: dict | None = None, input_guess: dict | None = None,
                         tol: float = 1e-12, max_iterations: int = 200) -> OperatingPoint:
    """A steady state of ``model`` (see the module).

    Parameters
    ----------
    model : Model
    inputs : dict, optional
        Inports held at these values; the others are solved for.
    outputs : dict, optional
        Outports' target values at the steady state.
    fixed : dict, optional
        Stateful blocks (by path) whose state is held at the given value.
    guess, input_guess : dict, optional
        Starting states (by path) and input values; the initial states and zeros
        otherwise.
    tol : float
        The tolerance on the residuals and the step (``least_squares``'s ftol, xtol).

    Returns
    -------
    OperatingPoint
    """
    import scipy.optimize

    inputs, outputs, fixed = dict(inputs or {}), dict(outputs or {}), dict(fixed or {})
    sim = Simulator(model, backend="numpy")
    plan = sim.plan
    for what, names, known in (("Inport", inputs, plan.inports),
                               ("Outport", outputs, plan.outports)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise SimulationError(f"find_operating_point: {model.name!r} has no {what} "
                                  f"{unknown}; its {what}s are {sorted(known)}")
    lay = _Layout(sim)
    st = plan.slot_types
    shapes = {n: st[s].shape for n, s in plan.inports.items()}
    free_in = [n for n in plan.inports if n not in inputs]
    in_names = [nm for n in plan.inports for nm in _names(n, int(np.prod(shapes[n])))]

    x = lay.vector({**lay.init, **sim._checked(guess or {}), **sim._checked(fixed)})
    held = np.array([nm.partition("[")[0] in fixed for nm in lay.names], bool)
    u = np.concatenate([np.ravel(np.asarray(
        inputs[n] if n in inputs else (input_guess or {}).get(n, np.zeros(shapes[n])),
        float) * np.ones(shapes[n])) for n in plan.inports]) if plan.inports else np.zeros(0)
    u_free = np.array([nm.partition("[")[0] in free_in for nm in in_names], bool)
    target = np.concatenate([np.ravel(np.asarray(outputs[o], float) *
                                      np.ones(st[plan.outports[o]].shape))
                             for o in outputs]) if outputs else np.zeros(0)
    out_rows = [i for i, nm in enumerate(_out_names(plan))
                if nm.partition("[")[0] in outputs]

    def split(z):
        xs, us = x.copy(), u.copy()
        xs[~held] = z[:int((~held).sum())]
        us[u_free] = z[int((~held).sum()):]
        return xs, us

    def inputs_of(us):
        out, i = {}, 0
        for n in plan.inports:
            size = int(np.prod(shapes[n]))
            out[n] = us[i:i + size].reshape(shapes[n])
            i += size
        return out

    def step(z):
        xs, us = split(z)
        sim.reset(lay.states(xs))
        tr = sim.run({n: v[None] for n, v in inputs_of(us).items()} or None,
                     steps=None if plan.inports else 1)
        nxt = lay.vector(tr.final_states)
        y = np.concatenate([np.ravel(tr[o][0, 0]) for o in plan.outports]) \
            if plan.outports else np.zeros(0)
        return xs, nxt, y, tr

    def residual(z):
        xs, nxt, y, _ = step(z)
        return np.concatenate([nxt - xs, y[out_rows] - target])

    def jacobian(z):
        _, _, _, tr = step(z)
        lin = linearize(model, trace=tr, step=0)
        order = [lin.states.index(nm) for nm in lay.names]
        A = lin.A[np.ix_(order, order)] - np.eye(len(order))
        B = lin.B[order]
        C, D = lin.C[:, order][out_rows], lin.D[out_rows]
        J = np.block([[A, B], [C, D]]) if len(order) else np.hstack([B, D])[:0]
        cols = np.concatenate([~held, u_free])
        return J[:, cols]

    z0 = np.concatenate([x[~held], u[u_free]])
    if z0.size == 0:
        raise SimulationError("find_operating_point: nothing to solve for (every state is "
                              "fixed and every input given)")
    sol = scipy.optimize.least_squares(residual, z0, jac=jacobian, method="trf", xtol=tol,
                                       ftol=tol, gtol=tol, max_nfev=max_iterations)
    xs, nxt, y, _ = step(sol.x)
    _, us = split(sol.x)
    res = float(np.max(np.abs(residual(sol.x)))) if sol.fun.size else 0.0
    ys, i = {}, 0
    for o in plan.outports:
        size = int(np.prod(st[plan.outports[o]].shape))
        ys[o] = y[i:i + size].reshape(st[plan.outports[o]].shape)
        i += size
    return OperatingPoint(lay.states(xs), inputs_of(us), ys, res,
                          bool(sol.success and res <= max(1e3 * tol, 1e-9)), sol.message,
                          {"states": lay.names, "inputs": in_names})


def _out_names(plan) -> list[str]:
    st = plan.slot_types
    return [nm for o, s in plan.outports.items()
            for nm in _names(o, int(np.prod(st[s].shape)))]
