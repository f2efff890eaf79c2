"""Continuous-time blocks: ``TransferFcn``, ``ContinuousStateSpace``, ``Integrator``.

Each is discretised for the sample period it runs at (its model's ``dt``) with
``method="zoh" | "foh" | "tustin" | "euler" | "backward_euler"``
(:func:`scipy.signal.cont2discrete`), and runs as the discrete :class:`StateSpace` of
that realisation.  Gradients with respect to the continuous parameters flow through the
discretisation (:mod:`blockflow.core.discretize`): the discrete state-space rule gives
``dJ/d(Ad, Bd, Cd, Dd)``, the chain rule carries it to ``(A, B, C, D)`` or ``(num, den)``.
"""

from __future__ import annotations

import numpy as np

from blockflow.core.block import Block
from blockflow.core.discretize import (
    c2d,
    c2d_jvp,
    c2d_vjp,
    check_method,
    has_feedthrough,
    tf2ss,
    tf2ss_jvp,
    tf2ss_vjp,
)
from blockflow.core.kernel import Kernel, kernel
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError

from .filters import _refuse_lti_object
from .notation import poly_text
from .statespace import (
    StateSpace,
    _ss_rows_y,
    siso_output_plain,
    siso_update,
    ss_output_plain,
    ss_update,
)


class _Discretised(StateSpace):
    """A continuous system run as the discrete state space of its realisation at the
    block's period; subclasses say what the continuous realisation is."""

    def continuous(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The continuous ``(A, B, C, D)``."""
        raise NotImplementedError

    def matrices(self):
        h = self.period()
        cont = self.continuous()
        key = (h, self.method, *(M.tobytes() for M in cont))
        cached = self.__dict__.get("_discrete")
        if cached is None or cached[0] != key:
            dtype = cont[0].dtype
            try:
                disc = c2d(*cont, h, self.method)
            except np.linalg.LinAlgError:
                raise ParameterError(
                    f"block {self.name!r} ({type(self).__name__}): {self.method} cannot "
                    f"discretise it at h={h:g} s (I - a h A is singular: a pole at "
                    f"s = 1/(a h)); choose another method or sample period") from None
            cached = (key, tuple(M.astype(dtype) for M in disc))
            self._discrete = cached
        return cached[1]

    def discretisation(self) -> str:
        return f"{self.label()} discretised by {self.method} at h={self.period():.6g} s"

    def continuous_grads(self, u, y, dy, resets=()) -> tuple[tuple, np.ndarray]:
        """``dJ/d(A, B, C, D)`` of the continuous realisation, and ``dJ/dx0``."""
        g = self.matrix_grads(u, y, dy, resets)
        cont = c2d_vjp(*self.continuous(), self.period(), self.method,
                       (g["A"], g["B"], g["C"], g["D"]))
        return cont, g["x0"]

    def realisation_grads(self, g: tuple) -> dict:
        """dJ/d(parameters) from dJ/d(A, B, C, D) of the continuous realisation."""
        raise NotImplementedError

    def realisation_directions(self, dp: dict) -> tuple:
        """The realisation's change ``(dA, dB, dC, dD)`` for parameter directions."""
        raise NotImplementedError

    def discrete_directions(self, dcont: tuple, dp: dict) -> dict:
        """Discrete directions for continuous ones, for :meth:`StateSpace.param_jvp`."""
        dA, dB, dC, dD = c2d_jvp(*self.continuous(), self.period(), self.method, dcont)
        out = {"A": dA, "B": dB, "C": dC, "D": dD}
        if "x0" in dp:
            out["x0"] = dp["x0"]
        return out

    def transposed(self) -> Block:
        return Realisation(self, adjoint=True, name=self.name, inputs=self.outputs,
                           outputs=self.inputs)


class Realisation(StateSpace):
    """The current discrete realisation of a continuous block (``adjoint=True``: its
    adjoint ``(A^T, C^T, B^T, D^T)``), read from the block whenever it runs, so that
    training the block in place reaches its reciprocal."""

    def __init__(self, source: _Discretised, *, adjoint: bool, **kw):
        A, B, C, D = source.matrices()
        if adjoint:
            A, B, C, D = A.T, C.T, B.T, D.T
        super().__init__(A, B, C, D, elementwise=source.elementwise, trainable=False, **kw)
        self.of, self.adjoint = source, adjoint
        self.feedthrough = source.feedthrough
        self.residuals = ()

    def matrices(self):
        A, B, C, D = self.of.matrices()
        return (A.T, C.T, B.T, D.T) if self.adjoint else (A, B, C, D)

    def transposed(self) -> Block:
        return Realisation(self.of, adjoint=not self.adjoint, name=self.name,
                           inputs=self.outputs, outputs=self.inputs)

    def label(self) -> str:
        return f"{self.of.label()}{'ᵀ' if self.adjoint else ''}"

    def config(self) -> dict:
        raise ParameterError(f"block {self.name!r} is the discrete realisation of "
                             f"{self.of.name!r}; save the model that holds that block")


class ContinuousStateSpace(_Discretised):
    """``dx/dt = A x + B u``, ``y = C x + D u``: discretised for the period it runs at.

    Parameters
    ----------
    A, B, C, D : array_like
        The continuous realisation (``D`` optional: no feedthrough without it, unless the
        method adds one).
    x0 : array_like, optional
        Initial state of the discrete realisation.
    method : {"zoh", "foh", "tustin", "euler", "backward_euler"}, default "zoh"
        How it is discretised (:func:`scipy.signal.cont2discrete`).  foh, tustin and
        backward Euler give the discrete system direct feedthrough.
    elementwise : bool, default False
        A SISO system acting on each element of samples of any shape.

    Examples
    --------
    >>> from blockflow import Inport, Model, Outport
    >>> m = Model("lag", dt=0.1)
    >>> u, p, y = m.add(Inport("u", shape=(1,)),
    ...                 ContinuousStateSpace([[-1.0]], [[1.0]], [[1.0]]),
    ...                 Outport("y"))
    >>> m.chain(u, p, y)
    >>> np.round(p.matrices()[0], 6)         # exp(-0.1)
    array([[0.904837]])
    """

    def __init__(self, A, B, C, D=None, x0=None, *, method: str = "zoh",
                 elementwise: bool = False, trainable: bool = True, train_x0: bool = False,
                 **kw):
        super().__init__(A, B, C, D, x0, elementwise=elementwise, trainable=trainable,
                         train_x0=train_x0, **kw)
        self.method = check_method(method, f"block {self.name!r} ({type(self).__name__})")
        self.feedthrough = has_feedthrough(self.D, method)

    def continuous(self):
        return self.A, self.B, self.C, self.D

    def realisation_grads(self, g):
        return {n: gn for n, gn in zip("ABCD", g, strict=True) if self._params[n]}

    def realisation_directions(self, dp):
        return tuple(np.asarray(dp.get(n, np.zeros_like(M)), float)
                     for n, M in zip("ABCD", self.continuous(), strict=True))

    def param_grads(self, u, y, dy, resets=()):
        g, gx0 = self.continuous_grads(u, y, dy, resets)
        grads = self.realisation_grads(g)
        return {**grads, "x0": gx0} if self._params["x0"] else grads

    def param_jvp(self, u, y, dp):
        dcont = self.realisation_directions(dp)
        return StateSpace.param_jvp(self, u, y, self.discrete_directions(dcont, dp))

    def label(self) -> str:
        return f"SS(s) (n={self.A.shape[0]})"

    def config(self) -> dict:
        cfg = super().config()
        cfg["D"] = self.D if np.any(self.D) else None
        cfg["method"] = self.method
        return cfg


class TransferFcn(_Discretised):
    """``Y(s) = num(s) / den(s) U(s)`` (descending powers of ``s``), acting elementwise,
    discretised for the period it runs at.

    Realised in controllable canonical form (:func:`scipy.signal.tf2ss`); the trainable
    parameters are ``num`` and ``den``.  An improper transfer function (more zeros than
    poles) is an error.

    Examples
    --------
    >>> TransferFcn([1.0], [1.0, 1.0]).label()
    '1/(s + 1)'
    """

    def __init__(self, num, den=None, *, x0=None, method: str = "zoh",
                 trainable: bool = True, train_x0: bool = False, **kw):
        where = f"block {kw.get('name')!r} ({type(self).__name__})"
        _refuse_lti_object(num, type(self).__name__)
        try:
            num = np.atleast_1d(np.asarray(num, float))
            den = np.atleast_1d(np.asarray(den, float))
        except (TypeError, ValueError) as e:
            raise ParameterError(f"{where}: num and den must be arrays of numbers ({e})"
                                 ) from None
        if num.ndim != 1 or den.ndim != 1 or num.size == 0 or den.size == 0:
            raise ParameterError(f"{where}: num and den must be non-empty 1-D, got shapes "
                                 f"{num.shape}, {den.shape}")
        for label, c in (("num", num), ("den", den)):
            if not np.isfinite(c).all():
                raise ParameterError(f"{where}: {label} holds NaN, None or infinite "
                                     f"coefficients: {c}; give finite numbers")
        num = np.trim_zeros(num, "f") if np.any(num) else num[-1:]
        if den[0] == 0:
            raise ParameterError(f"{where}: the leading coefficient of den must not be 0, "
                                 f"got den={den}")
        if num.size > den.size:
            raise ParameterError(f"{where}: transfer function num={num}, den={den} is "
                                 "improper (more zeros than poles); it cannot run causally")
        A, B, C, D = tf2ss(num, den)
        super().__init__(A, B, C, D, x0, elementwise=True, trainable=False,
                         train_x0=train_x0, **kw)
        self.method = check_method(method, where)
        self.feedthrough = has_feedthrough(D, method)
        for n in "ABCD":  # the realisation follows num and den: they are the parameters
            del self._params[n]
        self.param("num", num, trainable=trainable, ndim=1)
        self.param("den", den, trainable=trainable, ndim=1)

    def continuous(self):
        return tuple(M.astype(self.num.dtype) for M in tf2ss(self.num, self.den))

    def realisation_grads(self, g):
        gnum, gden = tf2ss_vjp(self.num, self.den, g)
        return {n: gn for n, gn in (("num", gnum), ("den", gden)) if self._params[n]}

    def realisation_directions(self, dp):
        return tf2ss_jvp(self.num, self.den, dp.get("num", np.zeros_like(self.num)),
                         dp.get("den", np.zeros_like(self.den)))

    def param_grads(self, u, y, dy, resets=()):
        g, gx0 = self.continuous_grads(u, y, dy, resets)
        grads = self.realisation_grads(g)
        return {**grads, "x0": gx0} if self._params["x0"] else grads

    def param_jvp(self, u, y, dp):
        dcont = self.realisation_directions(dp)
        return StateSpace.param_jvp(self, u, y, self.discrete_directions(dcont, dp))

    def fraction(self):
        return poly_text(self.num), poly_text(self.den)

    def label(self) -> str:
        def group(t):
            return f"({t})" if " " in t else t
        return f"{group(poly_text(self.num))}/{group(poly_text(self.den))}"

    def config(self) -> dict:
        cfg = {"num": self.num, "den": self.den, "method": self.method,
               "trainable": self._params["num"]}
        if np.any(self.x0) or self._params["x0"]:
            cfg["x0"], cfg["train_x0"] = self.x0, self._params["x0"]
        return cfg


class Integrator(TransferFcn):
    """``y(t) = x0 + integral of u``: the transfer function ``1/s``.  Acts elementwise;
    nothing to train.

    In a model with a ``solver`` (``Model(..., solver="rk4")``) it is a state of the
    continuous subsystem, integrated by that method together with the blocks that
    compute its input (its ``method`` is then unused).  Otherwise it is discretised on
    its own (zoh: the forward-Euler sum ``x(k+1) = x(k) + h u(k)``, ``y(k) = x(k)``;
    tustin: the trapezoidal rule).

    Examples
    --------
    >>> Integrator(x0=2.0).label()
    '1/s'
    """

    continuous_state = True  # integrated by its model's solver, where it has one

    def __init__(self, x0=0.0, *, method: str = "zoh", shape: tuple | None = None, **kw):
        super().__init__([1.0], [1.0, 0.0], x0=np.atleast_1d(np.asarray(x0, float)),
                         method=method, trainable=False, **kw)
        if shape is not None:  # the signal's shape where no input tells it
            shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
        self.shape = shape

    def infer(self, t):
        if t is None and self.shape is not None:  # (a loop of integrators, no Inport)
            return (SignalType(self.shape, np.float64),)
        if t is not None and self.shape is not None and t.shape != self.shape:
            raise self.type_error(f"declared shape {self.shape} but its input carries "
                                  f"{t.shape} samples", port="u")
        return super().infer(t)

    def config(self) -> dict:
        return {"x0": self.x0, "method": self.method, "shape": self.shape}


# a realisation's halves for compiled loops: the rate is the state-space update
# (x @ A^T + u @ B^T), the output its output; an output without D reads x alone
@kernel(allocates=False)
def _x_output_into(CT, DT, x, out):
    return _ss_rows_y(CT, DT, False, x, x, out)


@kernel(into=_x_output_into)
def x_output(CT, DT, x):  # y = C x
    return x @ CT


@kernel(into=_x_output_into)
def siso_x_output(CT, DT, x):
    return (x.reshape((-1, x.shape[-1])) @ CT).reshape(x.shape[:-1])


@kernel
def realised_vjp(M, N, d):  # (dx, du) = (d M, d N): vector samples
    return d @ M, d @ N


@kernel
def siso_rate_vjp(M, N, d):  # d: (..., n) per element
    d2 = d.reshape((-1, d.shape[-1]))
    return (d2 @ M).reshape(d.shape), (d2 @ N).reshape(d.shape[:-1])


@kernel
def siso_output_vjp(M, N, d):  # d: one per element; M (1, n), N (1, 1)
    d2 = d.reshape((-1, 1))
    return (d2 @ M).reshape((*d.shape, M.shape[1])), (d2 @ N).reshape(d.shape)


@kernel
def x_output_vjp(M, d):  # dx = d C
    return d @ M


@kernel
def siso_x_output_vjp(M, d):
    return (d.reshape((-1, 1)) @ M).reshape((*d.shape, M.shape[1]))


class RealisationPart(Block):
    """One half of a continuous block's realisation, for a model's solver: the state's
    derivative ``x' = A x + B u`` (``part="rate"``) or the output ``y = C x + D u``
    (``part="output"``), with ``(A, B, C, D)`` read from ``system`` (a TransferFcn or
    ContinuousStateSpace) at every run.  Under ``Model(solver=...)`` a continuous block
    becomes an Integrator of its state and these two (:mod:`blockflow.plan.integrate`);
    their gradients are the system's (``num``/``den`` or ``A, B, C, D``).
    """

    linear = True

    def __init__(self, system: _Discretised, part: str, **kw):
        # the output reads u only where D != 0 (no port, no false dependency, otherwise)
        reads_u = part == "rate" or bool(np.any(system.continuous()[3]))
        super().__init__(inputs=("x", "u") if reads_u else ("x",), **kw)
        self.system, self.part = system, part
        self.shares_parameters_with = system.name

    def parameters(self, *, trainable_only: bool = True) -> dict[str, np.ndarray]:
        return self.system.parameters(trainable_only=trainable_only)

    def infer(self, x, u=None):
        src = self.system
        if self.part == "rate":
            return (None if u is None else SignalType(src._state_shape(u), u.dtype),)
        if x is None:
            return (None,)
        return (SignalType(x.shape[:-1], x.dtype),) if src.elementwise else \
            (SignalType((src.C.shape[0],), x.dtype),)

    def _mats(self, mats=None):
        A, B, C, D = self.system.continuous() if mats is None else mats
        return (A, B) if self.part == "rate" else (C, D)

    def _u1(self, u):
        return u[..., None] if self.system.elementwise else u

    def _y(self, v):
        return v[..., 0] if self.system.elementwise and self.part == "output" else v

    def output(self, x, x_, u=None):
        M, N = self._mats()
        if u is None:
            return self._y(x_ @ M.T)
        return self._y(x_ @ M.T + self._u1(u) @ N.T)

    def vjp(self, u, y, dy):
        M, N = self._mats()
        d = dy[..., None] if self.system.elementwise and self.part == "output" else dy
        if len(self.inputs) == 1:
            return d @ M
        du = d @ N
        return d @ M, du[..., 0] if self.system.elementwise else du

    def param_grads(self, u, y, dy):
        d = dy[0][..., None] if self.system.elementwise and self.part == "output" else dy[0]
        zero = [np.zeros_like(M) for M in self.system.continuous()]
        def outer(a, b):  # sum over every step, member and element of a_i b_j
            return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])

        gM = outer(d, u[0])
        gN = outer(d, self._u1(u[1])) if len(u) > 1 else zero[1 if self.part == "rate" else 3]
        g = (gM, gN, *zero[2:]) if self.part == "rate" else (*zero[:2], gM, gN)
        return self.system.realisation_grads(g)

    def param_jvp(self, u, y, dp):
        dM, dN = self._mats(self.system.realisation_directions(dp))
        v = u[0] @ dM.T
        if len(u) > 1:
            v = v + self._u1(u[1]) @ dN.T
        return (self._y(v),)

    def kernel(self):
        A, B, C, D = (np.ascontiguousarray(M) for M in self.system.continuous())
        siso = self.system.elementwise
        if len(self.inputs) == 1:  # y = C x
            return Kernel(siso_x_output if siso else x_output,
                          params=(np.ascontiguousarray(C.T), np.ascontiguousarray(D.T)))
        work = np.zeros(max(A.shape[0], 1), A.dtype)
        params = (np.ascontiguousarray(A.T), np.ascontiguousarray(B.T),
                  np.ascontiguousarray(C.T), np.ascontiguousarray(D.T), True, work)
        if self.part == "rate":
            return Kernel(siso_update if siso else ss_update, params=params)
        return Kernel(siso_output_plain if siso else ss_output_plain, params=params)

    def vjp_kernel(self):
        M, N = (np.ascontiguousarray(X) for X in self._mats())
        siso = self.system.elementwise
        if len(self.inputs) == 1:
            return Kernel(siso_x_output_vjp if siso else x_output_vjp, params=(M,))
        if self.part == "rate":
            return Kernel(siso_rate_vjp if siso else realised_vjp, params=(M, N))
        return Kernel(siso_output_vjp if siso else realised_vjp, params=(M, N))

    def label(self) -> str:
        return f"{self.system.label()} {'rate' if self.part == 'rate' else 'output'}"

    def config(self) -> dict:
        return {"system": self.system, "part": self.part}
