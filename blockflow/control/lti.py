"""Linear systems in and out: linearisation of any model at an operating point, and
conversion to and from python-control.

``linearize`` runs the model's tangent model for one step with the batch axis carrying
the unit directions: member ``j`` starts from the ``j``-th unit state (or input)
perturbation, so one run gives every column of ``[[A, B], [C, D]]`` (Simulink's
``dlinmod``, exact: no finite differences).  The state is the evolving state of every
stateful block, in plan order; :attr:`LinearSystem.states` names each entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from blockflow.backends.ops import SegmentKind
from blockflow.core.block import Block
from blockflow.core.model import Model
from blockflow.errors import BlockflowError, ParameterError, SimulationError
from blockflow.gradient.tangent import tangent
from blockflow.plan.compiler import compile
from blockflow.run.driver import run
from blockflow.run.trace import Trace


@dataclass
class LinearSystem:
    """``x(k+1) = A x(k) + B u(k)``, ``y(k) = C x(k) + D u(k)`` at period ``dt``.

    Unpacks as ``A, B, C, D = linearize(...)``; ``states``, ``inputs`` and ``outputs``
    name every entry of ``x``, ``u`` and ``y`` (``"plant[1]"``, ``"u"``, ``"y[0]"``).
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    dt: float
    states: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter((self.A, self.B, self.C, self.D))

    def to_control(self):
        """The python-control ``StateSpace`` (discrete, with this ``dt``)."""
        control = _control()
        return control.ss(self.A, self.B, self.C, self.D, self.dt,
                          states=self.states or None, inputs=self.inputs or None,
                          outputs=self.outputs or None)


def _names(base: str, n: int) -> list[str]:
    return [base] if n == 1 else [f"{base}[{i}]" for i in range(n)]


def _flat(part: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(part, axis, 0).reshape(part.shape[axis], -1)


def _unflat(v: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(like, axis, 0).shape
    return np.ascontiguousarray(np.moveaxis(v.reshape(moved), 0, axis))


def linearize(model: Model, inputs: dict | None = None, *, trace: Trace | None = None,
              step: int = 0, member: int = 0, outputs: list[str] | None = None,
              input_names: list[str] | None = None) -> LinearSystem:
    """The discrete linearisation of ``model`` around an operating point.

    Parameters
    ----------
    model : Model
    inputs : dict, optional
        Inputs of the run that defines the operating point (zeros when neither they nor
        ``trace`` are given).
    trace : Trace, optional
        A forward trace to linearise about (instead of ``inputs``).
    step : int, default 0
        The step ``k`` of the operating point.  The states are those the model has
        *at* step ``k``; Jacobians of nonlinear blocks are taken at their step-``k``
        values.
    member : int, default 0
        The batch member of the trace.
    outputs, input_names : list of str, optional
        Which Outports and Inports (default: all).

    Returns
    -------
    LinearSystem
        ``A, B, C, D`` (unpackable) with the period ``dt`` and names of every entry.

    A multirate model is periodic with the period of its schedule, ``N`` base steps (the
    least common multiple of its rates): it is linearised by *lifting*, over ``N`` steps
    from ``k`` (a multiple of ``N``): ``x(k+N) = A x(k) + B [u(k); ...; u(k+N-1)]``,
    ``[y(k); ...; y(k+N-1)] = C x(k) + D [u(k); ...]``, at period ``N dt``; inputs and
    outputs are named ``"r@0" .. "r@N-1"``.  Its poles are those of the loop at the
    slow rate when a zero-order hold composes exactly.

    Examples
    --------
    >>> from blockflow import Inport, Outport
    >>> from blocks import Gain, UnitDelay
    >>> m = Model("echo", dt=0.1)
    >>> u, g, d, y = m.add(Inport("u"), Gain(0.5), UnitDelay(), Outport("y"))
    >>> m.chain(u, g, d, y)
    >>> A, B, C, D = linearize(m)
    >>> B, C
    (array([[0.5]]), array([[1.]]))
    """
    from blockflow.run.simulate import simulate

    if not isinstance(model, Model):
        raise SimulationError(f"linearize takes a Model (load a model file with "
                              f"blockflow.load first), got {type(model).__name__} "
                              f"{model!r:.60}")
    for label, v in (("step", step), ("member", member)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise SimulationError(f"linearize: {label} must be a whole step number, got "
                                  f"{v!r:.40}")
    N = hyperperiod(compile(model), model.name)
    if step % N:
        raise SimulationError(
            f"linearize: {model.name!r} runs blocks at several rates (hyperperiod {N} "
            f"steps); its lifted map starts where every block hits: a step that is a "
            f"multiple of {N}, not {step}")
    if trace is None:
        plan = compile(model)
        if inputs is None:
            inputs = {n: plan.slot_types[s].zeros(step + N, 1) for n, s in plan.inports.items()}
        trace = simulate(model, inputs)
    if not 0 <= step <= trace.T - N:
        raise SimulationError(f"linearize: step {step} is outside the trace's "
                              f"0..{trace.T - N}" + (f" (a lifted map reads {N} steps)"
                                                     if N > 1 else ""))
    if not 0 <= member < trace.B:
        raise SimulationError(f"linearize: member {member} is outside the batch 0..{trace.B - 1}")
    tplan = compile(tangent(model), mode="step")
    ins = list(tplan.inports) if input_names is None else list(input_names)
    outs = list(tplan.outports) if outputs is None else list(outputs)
    for what, names, known in (("Inport", ins, tplan.inports), ("Outport", outs, tplan.outports)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SimulationError(f"linearize: {model.name!r} has no {what} {unknown}; its "
                                  f"{what}s are {sorted(known)}")
    st = tplan.slot_types

    # the evolving state of every stateful block, by path, in plan order
    stateful = [op for seg in tplan.segments if seg.kind is SegmentKind.LOOP
                for op in seg.ops if op.state is not None]
    layout, state_names = [], []
    for op in stateful:
        b = op.block
        x = b.init_state(1, tuple(st[s] for s in op.ins[:len(b.inputs)]),
                         tuple(st[s] for s in op.outs))
        sizes = [_flat(np.asarray(p), b.state_batch_axis).shape[1] for p in b.state_parts(x)]
        layout.append((op, sizes))
        state_names += _names(op.path, sum(sizes))
    n = len(state_names)
    in_sizes = [int(np.prod(st[tplan.inports[i]].shape)) for i in ins]
    m = sum(in_sizes)
    Bl = n + N * m  # one batch member per unit direction (an input's at each lifted step)
    if Bl == 0:
        raise SimulationError(f"linearize: {model.name!r} has no states and no inputs")

    states, row = {}, 0
    for op, sizes in layout:
        b = op.block
        x = b.init_state(Bl, tuple(st[s] for s in op.ins[:len(b.inputs)]),
                         tuple(st[s] for s in op.outs))
        parts = []
        for p, size in zip(b.state_parts(x), sizes, strict=True):
            v = np.zeros((Bl, size))
            v[row:row + size] = np.eye(size)
            parts.append(_unflat(v.astype(np.asarray(p).dtype), np.asarray(p),
                                 b.state_batch_axis))
            row += size
        states[op.path] = b.with_state_parts(x, tuple(parts))

    bufs: list = [None] * len(st)
    cols = {}  # (Inport, lifted step) -> its first column
    col = n
    for j in range(N):
        for name in ins:
            cols[(name, j)] = col
            col += in_sizes[ins.index(name)]
    for name, slot in tplan.inports.items():
        u = np.zeros((N, Bl, int(np.prod(st[slot].shape))), st[slot].dtype)
        if name in ins:
            size = in_sizes[ins.index(name)]
            for j in range(N):
                u[j, cols[(name, j)]:cols[(name, j)] + size] = np.eye(size)
        bufs[slot] = u.reshape(N, Bl, *st[slot].shape)

    def read(slot, path, r):  # the operating point: steps k.. of the member, every column
        if r.forcing:  # pragma: no cover - no parameter directions here
            return None
        at = trace[(path, r.port)][step:step + N, member:member + 1]
        return np.ascontiguousarray(np.broadcast_to(at, (N, Bl, *at.shape[2:])))

    ran = run(tplan, N, Bl, bufs, read, states=states)
    finals, bufs = ran.final_states, ran.bufs

    nxt = np.zeros((Bl, n))
    row = 0
    for op, sizes in layout:
        x = finals[op.path]
        for p, size in zip(op.block.state_parts(x), sizes, strict=True):
            nxt[:, row:row + size] = _flat(np.asarray(p), op.block.state_batch_axis)
            row += size
    # outputs at each lifted step, stacked: y(k+j) for j = 0..N-1
    ys = [[bufs[tplan.outports[o]][j].reshape(Bl, -1) for o in outs] for j in range(N)]
    Y = np.concatenate([np.concatenate(y, axis=1) if y else np.zeros((Bl, 0)) for y in ys],
                       axis=1)
    per = [nm for o, y in zip(outs, ys[0], strict=True) for nm in _names(o, y.shape[1])]
    per_in = [nm for i, size in zip(ins, in_sizes, strict=True) for nm in _names(i, size)]

    def lifted(names):
        return names if N == 1 else [f"{nm}@{j}" for j in range(N) for nm in names]

    return LinearSystem(nxt[:n].T.copy(), nxt[n:].T.copy(), Y[:n].T.copy(), Y[n:].T.copy(),
                        model.dt * N, state_names, lifted(per_in), lifted(per))


def hyperperiod(plan, name: str = "model") -> int:
    """The steps after which a multirate plan's schedule repeats (1: single rate): the
    least common multiple of its rates.  Rates with an offset are refused (at the
    hyperperiod's first step their held outputs would be state no block declares)."""
    N = 1
    for path, (rate, _) in plan.rates.items():
        if rate.offset:
            raise SimulationError(
                f"linearize: block {path!r} of {name!r} runs with an offset "
                f"({rate.offset} steps); lifting needs every block to hit at the start of "
                "the hyperperiod: give it no offset")
        N = math.lcm(N, rate.n)
    return N


# ------------------------------------------------------------------ python-control
def _control():
    try:
        import control
    except ImportError:
        raise BlockflowError("python-control is not installed: pip install "
                             "'blockflow[control]'") from None
    return control


def from_control(sys, *, method: str = "zoh", name: str | None = None,
                 trainable: bool = True) -> Block:
    """A block for a python-control ``TransferFunction`` or ``StateSpace``.

    Continuous systems become :class:`~blocks.TransferFcn` (SISO transfer functions) or
    :class:`~blocks.ContinuousStateSpace`, discretised with ``method`` at the period of
    the model they run in; discrete ones become :class:`~blocks.DiscreteTransferFcn` or
    :class:`~blocks.StateSpace` that run at the system's own period (``sample_time=dt``:
    every step in a model of that ``dt``, a slower rate in a faster model; a period that
    is no whole multiple of the model's is an error naming both).
    SISO blocks act elementwise (scalar signals); MIMO ones take ``(m,)`` samples.
    """
    control = _control()
    from blocks import ContinuousStateSpace, DiscreteTransferFcn, StateSpace, TransferFcn

    kw = {"name": name} if name else {}
    if not isinstance(sys, control.TransferFunction | control.StateSpace):
        raise ParameterError(f"from_control takes a control.TransferFunction or "
                             f"control.StateSpace, got {type(sys).__name__}")
    continuous = sys.isctime(strict=True)
    siso = sys.ninputs == 1 and sys.noutputs == 1
    if not continuous and sys.dt not in (None, True) and "sample_time" not in kw:
        kw["sample_time"] = float(sys.dt)  # runs at its own period in any model
    if isinstance(sys, control.TransferFunction) and siso:
        num, den = np.asarray(sys.num[0][0], float), np.asarray(sys.den[0][0], float)
        if continuous:
            return TransferFcn(num, den, method=method, trainable=trainable, **kw)
        return DiscreteTransferFcn(num, den, trainable=trainable, **kw)
    if isinstance(sys, control.TransferFunction):
        A, B, C, D = mimo_realisation(sys)
    else:
        A, B, C, D = (np.asarray(M, float) for M in (sys.A, sys.B, sys.C, sys.D))
    D = D if np.any(D) else None
    if continuous:
        return ContinuousStateSpace(A, B, C, D, method=method, elementwise=siso,
                                    trainable=trainable, **kw)
    return StateSpace(A, B, C, D, elementwise=siso, trainable=trainable, **kw)


def mimo_realisation(tf) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A state-space realisation of a MIMO transfer-function matrix without Slycot: each
    entry ``(i, j)`` realised on its own (controllable canonical form), side by side:
    ``A`` block diagonal, entry ``(i, j)``'s ``B`` in column ``j``, its ``C`` in row ``i``.
    Not minimal, but exact."""
    from blockflow.core.discretize import tf2ss

    parts = []
    for i in range(tf.noutputs):
        for j in range(tf.ninputs):
            num = np.trim_zeros(np.asarray(tf.num[i][j], float), "f")
            den = np.trim_zeros(np.asarray(tf.den[i][j], float), "f")
            if num.size > den.size:
                raise ParameterError(f"from_control: entry ({i}, {j}) of the transfer-function "
                                     f"matrix, num={num}, den={den}, is improper (more zeros "
                                     "than poles); it cannot run causally")
            parts.append((i, j, *tf2ss(num if num.size else np.zeros(1), den)))
    n = sum(a.shape[0] for _, _, a, _, _, _ in parts)
    A = np.zeros((n, n))
    B = np.zeros((n, tf.ninputs))
    C = np.zeros((tf.noutputs, n))
    D = np.zeros((tf.noutputs, tf.ninputs))
    k = 0
    for i, j, a, b, c, d in parts:
        m = a.shape[0]
        A[k:k + m, k:k + m] = a
        B[k:k + m, j] = b[:, 0]
        C[i, k:k + m] = c[0]
        D[i, j] = d[0, 0]
        k += m
    return A, B, C, D


def to_control(obj: Model | Block, *, continuous: bool = False):
    """A python-control ``StateSpace`` of a linear model or block, with its ``dt``.

    A model is linearised (:func:`linearize` at zero; exact for a linear model, the
    linearisation at rest for a nonlinear one); with ``continuous=True`` that discrete
    system is converted back to continuous time as a zero-order hold sampled it
    (:func:`d2c_zoh`), or refused where no continuous system samples to it.  A
    state-space or transfer-function block gives the discrete system it runs (at its
    model's period), or with ``continuous=True`` the continuous one of a continuous block.
    """
    control = _control()
    if isinstance(obj, Model):
        sys = linearize(obj)
        if not continuous:
            return sys.to_control()
        A, B = d2c_zoh(sys.A, sys.B, sys.dt, obj.name)
        return control.ss(A, B, sys.C, sys.D, states=sys.states or None,
                          inputs=sys.inputs or None, outputs=sys.outputs or None)
    if continuous:
        if not hasattr(obj, "continuous"):
            raise ParameterError(f"block {obj.name!r} ({type(obj).__name__}) is not a "
                                 "continuous block")
        return control.ss(*obj.continuous())
    dt = obj.period()
    if hasattr(obj, "matrices"):
        return control.ss(*obj.matrices(), dt)
    if hasattr(obj, "b") and hasattr(obj, "a") and obj.linear:  # b(z^-1) / a(z^-1)
        n = max(obj.b.size, obj.a.size)
        b, a = np.zeros(n), np.zeros(n)
        b[:obj.b.size], a[:obj.a.size] = obj.b, obj.a
        return control.ss(control.tf(b, a, dt))
    raise ParameterError(f"to_control: block {obj.name!r} ({type(obj).__name__}) is not a "
                         "state-space or transfer-function block; put it in a Model and "
                         "convert the model")


def d2c_zoh(Ad, Bd, dt: float, name: str = "model") -> tuple[np.ndarray, np.ndarray]:
    """The continuous ``(A, B)`` that a zero-order hold at period ``dt`` samples to
    ``(Ad, Bd)``: ``[[A, B], [0, 0]] = logm([[Ad, Bd], [0, I]]) / dt``.  Refused (naming
    why) where that logarithm is not real: an eigenvalue of ``Ad`` on the closed negative
    real axis (a discrete pole no continuous system makes, e.g. a sample-to-sample sign
    flip, or a pure delay at 0)."""
    import scipy.linalg

    n, m = np.shape(Bd)
    eig = np.linalg.eigvals(Ad) if n else np.zeros(0)
    bad = [complex(e) for e in eig if abs(e.imag) < 1e-12 and e.real <= 0]
    if bad:
        raise ParameterError(
            f"to_control({name!r}, continuous=True): the discrete system has poles "
            f"{[round(e.real, 6) for e in bad]} on the closed negative real axis, which no "
            "continuous system sampled by a zero-order hold has (a delay, or a discrete "
            "controller's own dynamics); keep it discrete (continuous=False)")
    M = np.zeros((n + m, n + m))
    M[:n, :n], M[:n, n:], M[n:, n:] = Ad, Bd, np.eye(m)
    L = scipy.linalg.logm(M) / dt
    return np.real_if_close(L[:n, :n], tol=1e6), np.real_if_close(L[:n, n:], tol=1e6)
