"""StateSpace(A, B, C, D): ``x(k+1) = A x + B u``, ``y = C x + D u`` (vector samples,
or elementwise for a SISO system); the realisation continuous blocks run.

Linear and stateful: the reciprocal is the transposed realisation run in reversed time
(see :mod:`blocks.filters`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from blockflow.core.block import Block, sum_to
from blockflow.core.ccode import matvec, matvec_t, outer_add
from blockflow.core.kernel import Kernel, Scalar, generated_kernel, kernel
from blockflow.core.types import SignalType
from blockflow.errors import ParameterError


# y = C x + D u and x(k+1) = A x + B u, row by row: a row is a batch member's (m,)
# input and (n,) state, or (SISO, elementwise) one element of a sample and its n states;
# the state updates in place through ``work`` (one row of n), the only buffer it needs
@kernel(allocates=False)
def _ss_rows_y(CT, DT, feed, x, u, y):
    n, m, p = CT.shape[0], DT.shape[0], CT.shape[1]
    for r in range(y.size // p):
        for i in range(p):
            acc = 0.0
            for j in range(n):
                acc += x.flat[r * n + j] * CT[j, i]
            if feed:
                for j in range(m):
                    acc += u.flat[r * m + j] * DT[j, i]
            y.flat[r * p + i] = acc
    return y


@kernel(allocates=False)
def _ss_output_into(AT, BT, CT, DT, feed, work, x, u, out):
    _ss_rows_y(CT, DT, feed, x, u, out[0])
    for i in range(x.size):  # the state, recorded
        out[1].flat[i] = x.flat[i]
    return out


@kernel(allocates=False)
def _ss_output_plain_into(AT, BT, CT, DT, feed, work, x, u, out):
    return _ss_rows_y(CT, DT, feed, x, u, out)


@kernel(allocates=False)
def _ss_update_into(AT, BT, CT, DT, feed, work, x, u, out):  # out is x itself
    n, m = AT.shape[0], BT.shape[0]
    for r in range(x.size // n if n else 0):
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += x.flat[r * n + j] * AT[j, i]
            for j in range(m):
                acc += u.flat[r * m + j] * BT[j, i]
            work[i] = acc
        for i in range(n):
            out.flat[r * n + i] = work[i]
    return out


@kernel(into=_ss_output_into)
def ss_output(AT, BT, CT, DT, feed, work, x, u):  # y = C x + D u; the state is recorded
    y = x @ CT
    if feed:
        y = y + u @ DT
    return y, x


@kernel(into=_ss_output_plain_into)
def ss_output_plain(AT, BT, CT, DT, feed, work, x, u):  # transposed realisations: no record
    y = x @ CT
    if feed:
        y = y + u @ DT
    return y


@kernel(into=_ss_update_into)
def ss_update(AT, BT, CT, DT, feed, work, x, u):  # x(k+1) = A x + B u
    return x @ AT + u @ BT


@kernel
def _elements(x):
    """The elements a SISO state ``(..., n)`` serves: the product of its leading axes."""
    rows = 1
    for d in x.shape[:-1]:
        rows *= d
    return rows


# a SISO system acting elementwise: samples of any shape, a state of n per element
@kernel(into=_ss_output_into)
def siso_output(AT, BT, CT, DT, feed, work, x, u):  # (n states per element)
    y = x.reshape((x.size // x.shape[-1] if x.shape[-1] else _elements(x), x.shape[-1])) @ CT
    if feed:
        y = y + u.reshape((-1, 1)) @ DT
    return y.reshape(x.shape[:-1]), x


@kernel(into=_ss_output_plain_into)
def siso_output_plain(AT, BT, CT, DT, feed, work, x, u):
    y = x.reshape((x.size // x.shape[-1] if x.shape[-1] else _elements(x), x.shape[-1])) @ CT
    if feed:
        y = y + u.reshape((-1, 1)) @ DT
    return y.reshape(x.shape[:-1])


@kernel(into=_ss_update_into)
def siso_update(AT, BT, CT, DT, feed, work, x, u):
    n = x.shape[-1]  # (rows counted: reshape(-1, 0) cannot size a system of no states)
    rows = x.size // n if n else _elements(x)
    return (x.reshape((rows, n)) @ AT + u.reshape((-1, 1)) @ BT).reshape(x.shape)


@functools.cache
def ss_numbers(n: int, record: bool, feed: bool) -> tuple:
    """A single-input single-output system's step on numbers (:class:`Scalar`), written
    out for ``n`` states: ``y = C x + D u`` (and the state, recorded) and
    ``x(k+1) = A x + B u``, the matrices transposed and flattened into tuples, the sums in
    the element loops' order (the same results to the bit)."""
    head = "def f(at, bt, ct, dt, feed, x, u):\n"
    out = [*(f"    acc += x[{j}] * ct[{j}]" for j in range(n)),
           *(["    acc += u * dt[0]"] if feed else [])]
    out = head + "    acc = 0.0\n" + "\n".join(out) + (
        "\n    return acc, x\n" if record else "\n    return acc\n")
    upd = [line for i in range(n) for line in (
        f"    a{i} = 0.0", *(f"    a{i} += x[{j}] * at[{j * n + i}]" for j in range(n)),
        f"    a{i} += u * bt[{i}]")]
    upd = head + "\n".join(upd) + "\n    return (" + "".join(f"a{i}, " for i in range(n)) + ")\n"
    key = (f"blocks.statespace.ss_numbers{n}{'_record' if record else ''}"
           f"{'_feed' if feed else ''}")
    return (generated_kernel(key + "_output", out, "f", {}, numbers=True),
            generated_kernel(key + "_update", upd, "f", {}, numbers=True))


def _pack_ss(x) -> tuple:
    return tuple(x.ravel())


def _unpack_ss(x, xs) -> np.ndarray:
    return np.array(xs, x.dtype).reshape(x.shape)


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_t a(t) b(t)^T`` over every leading axis (time, batch, elements); a system
    of no states gives its empty matrices (``reshape(-1, 0)`` cannot size them)."""
    rows = math.prod(a.shape[:-1])
    return a.reshape(rows, a.shape[-1]).T @ b.reshape(rows, b.shape[-1])


class StateSpace(Block):
    """``x(k+1) = A x(k) + B u(k)``, ``y(k) = C x(k) + D u(k)``, ``x(0) = x0``.

    Samples are vectors: ``u`` of shape ``(m,)``, ``y`` of shape ``(p,)``; a SISO system
    made with ``elementwise=True`` acts on each element of samples of any shape (scalar
    signals included).  Without ``D`` the block has no direct feedthrough.  Its reciprocal
    is the adjoint realisation ``(A^T, C^T, B^T, D^T)`` run backwards in time; its final
    state is ``dJ/dx(0)``.

    Examples
    --------
    >>> ss = StateSpace([[0.5]], [[1.0]], [[1.0]], elementwise=True)   # y(k) = x(k)
    >>> ss.sequence(np.zeros((1, 1)), np.array([[1.0], [1.0], [1.0]]))[0][:, 0]
    array([0. , 1. , 1.5])
    """

    stateful = True
    linear = True

    def __init__(self, A, B, C, D=None, x0=None, *, elementwise: bool = False,
                 trainable: bool = True, train_x0: bool = False, **kw):
        super().__init__(**kw)
        self.param("A", np.atleast_2d(A), trainable=trainable, ndim=2)
        self.param("B", np.atleast_2d(B), trainable=trainable, ndim=2)
        self.param("C", np.atleast_2d(C), trainable=trainable, ndim=2)
        n, m, p = self.A.shape[0], self.B.shape[1], self.C.shape[0]
        if self.A.shape != (n, n) or self.B.shape != (n, m) or self.C.shape != (p, n):
            raise ParameterError(f"block {self.name!r}: {type(self).__name__} needs A (n,n), "
                                 f"B (n,m), C (p,n); got {self.A.shape}, {self.B.shape}, "
                                 f"{self.C.shape}")
        self.elementwise = bool(elementwise)
        if self.elementwise and (m, p) != (1, 1):
            raise ParameterError(f"block {self.name!r}: elementwise=True needs a SISO system "
                                 f"(one input, one output), got {m} inputs, {p} outputs")
        self.feedthrough = D is not None and bool(np.any(D))
        self.param("D", np.zeros((p, m)) if D is None else np.atleast_2d(D),
                   trainable=trainable and self.feedthrough)
        if self.D.shape != (p, m):
            raise ParameterError(f"block {self.name!r}: D must be {(p, m)}, got {self.D.shape}")
        self.param("x0", np.zeros(n) if x0 is None else x0, trainable=train_x0)
        self.residuals = ("x",)  # the state x(k), recorded for param_grads
        if self.x0.shape not in ((n,), (), (1,)):
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): x0 must have "
                                 f"shape ({n},) for {n} states, got {self.x0.shape}")

    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The discrete ``(A, B, C, D)`` the block runs."""
        return self.A, self.B, self.C, self.D

    def infer(self, t):
        m, p = self.B.shape[1], self.C.shape[0]
        if self.elementwise:
            return (t,)
        if t is not None and t.shape != (m,):
            raise self.type_error(f"takes ({m},) samples, got {t.shape}", port=self.inputs[0])
        return (SignalType((p,), t.dtype if t else np.float64),)

    def _state_shape(self, t: SignalType) -> tuple:
        return (*t.shape, self.A.shape[0]) if self.elementwise else (self.A.shape[0],)

    def init_state(self, batch, in_types, out_types):
        shape = self._state_shape(out_types[0])
        return np.broadcast_to(self.x0, (batch, *shape)).astype(out_types[0].dtype)

    def residual_types(self, in_types, out_types):  # the state x(k), for param_grads
        return (SignalType(self._state_shape(out_types[0]), out_types[0].dtype),)

    def _params_t(self, contiguous=lambda a: a):
        # (A^T, B^T, C^T, D^T, feedthrough, work): a row of n for in-place updates
        work = np.zeros(max(self.A.shape[0], 1), self.A.dtype)
        return (*(contiguous(M.T) for M in self.matrices()), self.feedthrough, work)

    def _kernels(self):
        if self.elementwise:
            return (siso_output if self.residuals else siso_output_plain), siso_update
        return (ss_output if self.residuals else ss_output_plain), ss_update

    def c_code(self, c):
        A, B, C, D = self.matrices()
        n, m, p = A.shape[0], B.shape[1], C.shape[0]
        elements = c.n_y() if self.elementwise else 1  # a SISO system per element
        x0 = np.broadcast_to(np.ravel(self.x0) if self.x0.size == n else self.x0, (n,))
        x = c.state("x", np.tile(x0, elements))
        Ac, Bc, Cc = (c.param(k, M) for k, M in zip("ABC", (A, B, C), strict=True))
        Dc = c.param("D", D) if self.feedthrough else None
        for e in range(elements):
            xe, ue, ye = (f"({x} + {e * n})", f"({c.u(0)} + {e * m})", f"({c.y()} + {e * p})")
            c.output(*matvec(ye, Cc, p, n, xe, ctype=c.T))
            if self.feedthrough:
                c.output(*matvec(ye, Dc, p, m, ue, accumulate=True, ctype=c.T))
            c.update("{", f"    {c.T} next[{n}];",
                     *("    " + ln for ln in matvec("next", Ac, n, n, xe, ctype=c.T)),
                     *("    " + ln for ln in matvec("next", Bc, n, m, ue, accumulate=True,
                                                    ctype=c.T)),
                     f"    memcpy({xe}, next, sizeof next);", "}")
        if len(self.recorded) > 1:  # the state, recorded for the gradient rules
            c.output(f"memcpy({c.y(1)}, {x}, sizeof({c.T}) * {n * elements});")
        return None

    def output(self, x, u):
        return self._kernels()[0](*self._params_t(), x, u)

    def update(self, x, u):
        return self._kernels()[1](*self._params_t(), x, u)

    def kernel(self):
        out, upd = self._kernels()
        return Kernel(out, upd, self._params_t(np.ascontiguousarray))

    def scalar_kernel(self):
        A, B, C, D = self.matrices()
        if B.shape[1] != 1 or C.shape[0] != 1:  # (single numbers: one input, one output)
            return None

        def flat(M):  # M^T, row by row
            return tuple(float(v) for v in np.ravel(M.T))

        return Scalar(*ss_numbers(A.shape[0], bool(self.residuals), bool(self.feedthrough)),
                      (flat(A), flat(B), flat(C), flat(D), self.feedthrough),
                      _pack_ss, _unpack_ss)

    def _vec(self, U):  # samples as (..., m) vectors
        return U[..., None] if self.elementwise else U

    def states(self, x0, U) -> np.ndarray:
        """x(0..T-1) for inputs ``U`` (T, B, m) (or (T, B, ...) elementwise)."""
        A, B, _, _ = self.matrices()
        BU = self._vec(U) @ B.T
        X = np.empty((U.shape[0], *np.broadcast_shapes(BU.shape[1:], x0.shape)),
                     dtype=BU.dtype)
        x, At = x0, A.T
        for k in range(U.shape[0]):
            X[k] = x
            x = x @ At + BU[k]
        return X

    def sequence(self, x0, U):
        _, _, C, D = self.matrices()
        X = self.states(x0, U)
        Y = X @ C.T
        Y = Y + self._vec(U) @ D.T if self.feedthrough else Y
        Y = Y[..., 0] if self.elementwise else Y
        return (Y, X) if self.residuals else Y

    def matrix_grads(self, u, y, dy, resets=()) -> dict:
        """dJ/d(A, B, C, D, x0) of the matrices the block runs, all of them."""
        A, _, C, _ = self.matrices()
        (U,), (_, X), (dY,) = u, y, dy  # X: the states recorded in the forward pass
        U, dY = self._vec(U), self._vec(dY)
        lam = np.zeros_like(X)  # lam[k] = dJ/dx(k+1)
        nxt = np.zeros_like(X[0])
        CtdY = dY @ C
        held = set(resets)  # x(k) held as data there: the adjoint stops
        for k in range(U.shape[0] - 1, -1, -1):
            lam[k] = nxt
            nxt = nxt @ A + CtdY[k]
            if k in held:
                nxt = np.zeros_like(nxt)
        return {"A": _outer(lam, X), "B": _outer(lam, U), "C": _outer(dY, X), "D": _outer(dY, U),
                "x0": sum_to(nxt, self.x0.shape)}  # lambda(0) = dJ/dx(0)

    def param_grads(self, u, y, dy, resets=()):
        grads = self.matrix_grads(u, y, dy, resets)
        return {n: g for n, g in grads.items() if self._params[n]}

    def c_param_grads(self, g):
        # lam = dJ/dx(k+1), run back in time beside the sweep: dA += lam x(k)^T,
        # dB += lam u(k)^T, dC += dy x(k)^T, dD += dy u(k)^T; then lam <- A^T lam + C^T dy
        if type(self).matrices is not StateSpace.matrices:
            raise g.refuse("its matrices are computed from other parameters")
        A, B, C, D = self.matrices()
        n, m, p = A.shape[0], B.shape[1], C.shape[0]
        elements = g.n_y() // p
        lam = g.state("lam", np.zeros(n * elements))
        Ac, Cc = g.param("A", A), g.param("C", C)
        lines = []
        for e in range(elements):
            le, xe = f"({lam} + {e * n})", f"({g.y(1)} + {e * n})"
            ue, dye = f"({g.u()} + {e * m})", f"({g.dy()} + {e * p})"
            for name, rows, cols, left, right in (("A", n, n, le, xe), ("B", n, m, le, ue),
                                                  ("C", p, n, dye, xe), ("D", p, m, dye, ue)):
                if self._params[name]:
                    lines += outer_add(g.grad(name), left, rows, right, cols)
            lines += ["{", f"    {g.T} next[{n}];",
                      *("    " + ln for ln in matvec_t("next", Ac, n, n, le, g.T)),
                      f"    for (int j = 0; j < {n}; ++j)",
                      f"        for (int r = 0; r < {p}; ++r) next[j] += {Cc}[r * {n} + j] * "
                      f"{dye}[r];",
                      f"    memcpy({le}, next, sizeof next);", "}"]
            if self._params["x0"]:  # lam is now dJ/dx(k): at k = 0, dJ/dx0
                dx0 = g.grad("x0")
                to = "j" if self.x0.size == n else "0"
                lines.append(f"if (k == {g.offset}) for (int j = 0; j < {n}; ++j) "
                             f"{dx0}[{to}] += {le}[j];")
        g.add(*lines)

    def param_jvp(self, u, y, dp):
        """Forced response: ``e(k+1) = A e + dA x + dB u``, ``e(0) = dx0``,
        ``dy = C e + dC x + dD u``."""
        A, B, C, D = self.matrices()
        (U,), (_, X) = u, y
        U = self._vec(U)
        n = A.shape[0]
        dA, dB = dp.get("A", np.zeros_like(A)), dp.get("B", np.zeros_like(B))
        force = X @ np.transpose(dA) + U @ np.transpose(dB)
        E = np.empty_like(X)
        e = np.broadcast_to(np.asarray(dp.get("x0", np.zeros(n)), float), X[0].shape).copy()
        for k in range(U.shape[0]):
            E[k] = e
            e = e @ A.T + force[k]
        out = E @ C.T + X @ np.transpose(dp.get("C", np.zeros_like(C)))
        if "D" in dp:
            out = out + U @ np.transpose(dp["D"])
        return (out[..., 0] if self.elementwise else out,)

    def _like(self, A, B, C, D, **kw) -> StateSpace:
        r = StateSpace(A, B, C, D if self.feedthrough else None, elementwise=self.elementwise,
                       name=self.name, **kw)
        r.residuals = ()  # transposed realisations record nothing
        r.A, r.B, r.C = A, B, C
        if self.feedthrough:
            r.D = D
        return r

    def transposed(self) -> Block:  # the adjoint realisation (A^T, C^T, B^T, D^T)
        return self._like(self.A.T, self.C.T, self.B.T, self.D.T, inputs=self.outputs,
                          outputs=self.inputs)

    def label(self) -> str:
        return f"SS (n={self.A.shape[0]})"

    def config(self) -> dict:
        cfg = {"A": self.A, "B": self.B, "C": self.C,
               "D": self.D if self.feedthrough else None, "x0": self.x0,
               "trainable": self._params["A"], "train_x0": self._params["x0"]}
        if self.elementwise:
            cfg["elementwise"] = True
        return cfg
