"""``simulate(model, inputs, steps=..., batch=...)``: run a model, return its Trace."""

from __future__ import annotations

import numbers

import numpy as np

from blockflow.errors import SimulationError
from blockflow.plan.compiler import Plan, compile
from blockflow.run.driver import run
from blockflow.run.inputs import bind_inputs, check_steps
from blockflow.run.simulator import Simulator
from blockflow.run.trace import Trace, first_nonfinite, signal_slot

__all__ = ["bind_inputs", "check_steps", "simulate"]


def simulate(model, inputs: dict | None = None, *, steps: int | None = None,
             batch: int | None = None, mode: str = "auto", progress=None,
             check_finite: bool = True, backend: str | None = None,
             params: dict | None = None, seed=None, t_final: float | None = None,
             initial_state: dict | None = None, k0: int = 0,
             signals: list[str] | str | None = None) -> Trace:
    """Simulate ``model`` and return the :class:`Trace` of every signal.

    Parameters
    ----------
    model : Model or Plan
    inputs : dict, optional
        Data for each top-level Inport: ``(T, B, *shape)`` or ``(T, *shape)`` arrays.
    steps : int, optional
        Number of steps ``T``; taken from the inputs when omitted.
    t_final : float, optional
        Instead of ``steps``: simulate from ``t = 0`` to ``t_final`` seconds inclusive
        (``t_final / dt + 1`` samples; a whole number of the model's periods).
    batch : int, optional
        Batch size ``B`` (parallel runs); taken from the inputs, else 1.
    mode : {"auto", "step"}
        ``"step"`` forces step-by-step execution of every block.
    progress : callable, optional
        ``progress(steps, total)`` wraps each feedback loop's steps (e.g. a tqdm bar).
    backend : {"auto", "numpy", "numba"}, optional
        How feedback loops run (see :func:`~blockflow.plan.compiler.compile`).
    params : dict, optional
        Parameters given per batch member, ``{"block.param": (B, *shape) array}``, for
        the parameters blocks declare ``batchable`` (see :mod:`blockflow.run.batched`).
    seed : int or sequence of int, optional
        The run seed of the batch members, which every random block (``Noise``) draws
        from: one per member, or one for all; by default member ``b`` has seed ``b``.
        A member's draws depend on its seed and the block alone (see ``Noise``).
    check_finite : bool, default True
        Refuse inputs holding NaN or infinity (naming the Inport and step), and a run in
        which a block produces one (naming the first block and step).  ``False`` returns
        the trace as it is.
    initial_state : dict, optional
        States by block path (``trace.final_state`` of an earlier run, or
        ``Simulator.state``) to start from; the run is then made step by step (as a
        :class:`~blockflow.run.simulator.Simulator` runs it), so continuing a run this way
        gives its numbers bit for bit.
    k0 : int, default 0
        The step the run starts at (sources continue from it: a continued run's first
        step).
    signals : str or list of str, optional
        The signals to record (names as the Trace takes them: ``"y"``, ``"ctrl/tanh.y"``);
        by default every one.  A feedback loop keeps one row, written and read within
        each step, of the others that nothing after it reads (less memory, less to
        write); the Trace raises for those.  The Outports are always recorded.

    Returns
    -------
    Trace

    Examples
    --------
    >>> from models.arma import arma_blocks
    >>> tr = simulate(arma_blocks(), {"u": np.ones(5)})
    >>> tr["y"].shape
    (5, 1)
    """
    from blockflow.core.model import Model

    if not isinstance(model, Model | Plan):
        raise SimulationError(f"simulate() takes a Model or a compiled Plan, got "
                              f"{type(model).__name__}")
    if initial_state is not None or k0:
        if isinstance(model, Plan) or params or t_final is not None:
            raise SimulationError("simulate(initial_state=, k0=) takes a Model, without "
                                  "params= or t_final=")
        sim = Simulator(model, backend=backend, batch=batch or _batch_of(inputs),
                        initial_state=initial_state, seed=seed)
        sim.k = _checked_step(k0)
        return sim.run(inputs, steps=steps)
    plan = model if isinstance(model, Plan) else compile(model, mode, backend)
    if t_final is not None:
        steps = _steps_to(plan.model, t_final, steps)
    if params:
        from blockflow.plan.cache import pinned
        from blockflow.run.batched import batched, check_batched

        batch, checked = check_batched(plan, params, batch)
        with pinned(plan.model), batched(checked):
            return simulate(plan, inputs, steps=steps, batch=batch, progress=progress,
                            check_finite=check_finite, seed=seed, signals=signals)
    keep = None
    if signals is not None:
        names = [signals] if isinstance(signals, str) else list(signals)
        keep = frozenset(signal_slot(plan, n) for n in names)
    T, B, bufs = bind_inputs(plan, inputs, steps, batch, check_finite=check_finite)
    trace = run(plan, T, B, bufs, progress=progress, seeds=seed, keep=keep,
                dropped=None if keep is None else NOT_RECORDED)
    if check_finite:
        where = first_nonfinite(trace)
        if where is not None:
            raise SimulationError(
                f"the run of {plan.model.name!r} produced a non-finite value, first at "
                f"{where[0]}, step {where[1]}: the model is unstable there or a block "
                "divided by zero; pass check_finite=False to get the trace anyway"
            )
    return trace


#: what a Trace of a run that recorded some signals says of the others
NOT_RECORDED = ("simulate(..., signals=[...]) recorded the signals named (and those read "
                "after their loop); leave signals out to record every one")


def _batch_of(inputs) -> int:
    """The batch size of ``(T, B, ...)`` inputs (1 when they are ``(T,)``)."""
    for v in (inputs or {}).values():
        a = np.asarray(v)
        return a.shape[1] if a.ndim >= 2 else 1
    return 1


def _checked_step(k0) -> int:
    if isinstance(k0, bool) or not isinstance(k0, numbers.Integral) or k0 < 0:
        raise SimulationError(f"k0 must be a whole step number >= 0, got {k0!r:.40}")
    return int(k0)


def _steps_to(model, t_final, steps) -> int:
    """The number of samples from ``t = 0`` to ``t_final`` (s) inclusive."""
    if steps is not None:
        raise SimulationError("give steps= or t_final=, not both")
    if model._dt is None:
        raise SimulationError(f"t_final= is in seconds, and model {model.name!r} has no dt; "
                              "give Model(dt=...) or steps=")
    if not isinstance(t_final, numbers.Real) or not np.isfinite(t_final) or t_final < 0:
        raise SimulationError(f"t_final must be a time >= 0 in seconds, got {t_final!r}")
    n = t_final / model.dt
    if abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise SimulationError(f"t_final={t_final:g} s is not a whole number of the model's "
                              f"periods (dt={model.dt:g} s)")
    return int(round(n)) + 1
