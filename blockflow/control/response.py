"""Control helpers: a model's step response (simulated) and frequency response (of its
linearisation, through python-control)."""

from __future__ import annotations

import numpy as np

from blockflow.control.lti import _control, linearize
from blockflow.errors import SimulationError
from blockflow.plan.compiler import compile
from blockflow.run.simulate import simulate
from blockflow.run.trace import Trace


def _pick(names: list, name: str | None, what: str, model) -> str:
    if name is None:
        if not names:
            raise SimulationError(f"{model.name!r} has no {what}")
        return names[0]
    if name not in names:
        raise SimulationError(f"{model.name!r} has no {what} {name!r}; its {what}s are "
                              f"{sorted(names)}")
    return name


def step_response(model, *, t_final: float | None = None, steps: int | None = None,
                  input: str | None = None, amplitude: float = 1.0,  # noqa: A002
                  backend: str | None = None) -> Trace:
    """The response of ``model``, from rest, to a step of ``amplitude`` on one Inport
    (``input``, default the first; every element of its samples) at ``t = 0``, the other
    Inports at zero; up to ``t_final`` seconds (or ``steps``).

    Returns the run's Trace: ``step_response(m, t_final=2.0)["y"]`` against ``.time``.
    """
    plan = compile(model)
    name = _pick(list(plan.inports), input, "Inport", model)
    if t_final is not None:
        from blockflow.run.simulate import _steps_to

        steps = _steps_to(model, t_final, steps)
    if steps is None:
        raise SimulationError("step_response: give t_final= (seconds) or steps=")
    inputs = {}
    for n, slot in plan.inports.items():
        t = plan.slot_types[slot]
        inputs[n] = np.full((steps, *t.shape), amplitude if n == name else 0.0, t.dtype)
    return simulate(model, inputs, backend=backend)


def frequency_response(model, omega=None, *, input: str | None = None,  # noqa: A002
                       output: str | None = None):
    """The frequency response of ``model``'s discrete linearisation (at rest) from one
    Inport to one Outport: ``(magnitude, phase, omega)`` arrays, ``omega`` in rad/s up to
    the Nyquist frequency ``pi / dt`` (python-control chooses the points when ``omega``
    is None).  Needs python-control (``pip install 'blockflow[control]'``)."""
    control = _control()
    lin = linearize(model)
    i = lin.inputs.index(_pick(lin.inputs, input, "input", model))
    o = lin.outputs.index(_pick(lin.outputs, output, "output", model))
    sys = control.ss(lin.A, lin.B[:, [i]], lin.C[[o], :], lin.D[[o]][:, [i]], lin.dt)
    if omega is not None:
        omega = np.asarray(omega, float)
        nyquist = np.pi / lin.dt
        if (omega <= 0).any() or (omega > nyquist * (1 + 1e-12)).any():
            raise SimulationError(f"frequency_response: omega must lie in (0, pi/dt = "
                                  f"{nyquist:g}] rad/s for a model sampled every {lin.dt:g} s")
    r = control.frequency_response(sys, omega)
    return (np.asarray(r.magnitude).reshape(-1), np.asarray(r.phase).reshape(-1),
            np.asarray(r.omega).reshape(-1))
