"""Explicit Runge-Kutta methods for continuous subsystems, as Butcher tableaus.

A model (or subsystem) given ``solver=`` integrates the continuous subsystem its
``Integrator`` blocks form (``x' = f(x, u)``) over each sample period with one of these,
``substeps`` times per period, its inputs held over the period.  The stages are expanded
into ordinary blocks (:mod:`blockflow.plan.integrate`), so the gradient through the
integrator is the exact gradient of the discretised map.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

from blockflow.errors import ParameterError


class Tableau(NamedTuple):
    """``a[s]``: the weights of stages ``0 .. s-1`` in stage ``s``; ``b``: of the update."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int


#: the methods, by name: forward Euler, Heun's (explicit trapezoidal), the classical
#: fourth-order method, and Dormand-Prince's fifth-order solution at a fixed step
TABLEAUS: dict[str, Tableau] = {
    "euler": Tableau(((),), (1.0,), 1),
    "heun": Tableau(((), (1.0,)), (0.5, 0.5), 2),
    "rk4": Tableau(((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                   (1 / 6, 1 / 3, 1 / 3, 1 / 6), 4),
    "rk45": Tableau(((),
                     (1 / 5,),
                     (3 / 40, 9 / 40),
                     (44 / 45, -56 / 15, 32 / 9),
                     (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
                     (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656)),
                    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84), 5),
}


def check_solver(solver: str | None, substeps, where: str) -> tuple[str | None, int]:
    """``(solver, substeps)`` checked: a known method (or None) and a whole number >= 1."""
    if solver is not None and solver not in TABLEAUS:
        raise ParameterError(f"{where}: unknown solver {solver!r}; use one of "
                             f"{', '.join(TABLEAUS)} (or None: each continuous block "
                             "discretised on its own)")
    try:
        n = None if isinstance(substeps, bool) else operator.index(substeps)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ParameterError(f"{where}: substeps must be a whole number >= 1, got "
                             f"{substeps!r:.40}")
    return solver, int(n)
