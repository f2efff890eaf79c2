"""Small helpers for blocks writing their step as C (``Block.c_code``; the generator is
:mod:`blockflow.codegen`): element loops with broadcasting, matrix-vector products, and
the library's named elementwise functions as C expressions."""

from __future__ import annotations

import numpy as np

#: the library's named elementwise functions (blocks.math.ELEMENTWISE) in C, of ``{a}``
FUNCTIONS_C = {
    "tanh": "tanh({a})",
    "sigmoid": "(0.5 + 0.5 * tanh(0.5 * ({a})))",
    "relu": "(({a}) > 0 ? ({a}) : 0)",
    "identity": "({a})",
    "exp": "exp({a})",
    "sin": "sin({a})",
    "cos": "cos({a})",
    "square": "(({a}) * ({a}))",
    "softplus": "(({a}) > 0 ? ({a}) + log1p(exp(-({a}))) : log1p(exp({a})))",
}

#: their derivatives, of the input ``{a}`` and the recorded output ``{y}`` (as
#: blocks.math.ELEMENTWISE's ``df(a, y)``)
DERIVATIVES_C = {
    "tanh": "(1.0 - ({y}) * ({y}))",
    "sigmoid": "(({y}) * (1.0 - ({y})))",
    "relu": "(({a}) > 0 ? 1.0 : 0.0)",
    "identity": "1.0",
    "exp": "({y})",
    "sin": "cos({a})",
    "cos": "(-sin({a}))",
    "square": "(2.0 * ({a}))",
    "softplus": "(0.5 + 0.5 * tanh(0.5 * ({a})))",
}


def outer_add(g: str, dy: str, rows: int, u: str, cols: int) -> list[str]:
    """``g[r cols + c] += dy[r] u[c]``: a weight gradient's step, ``delta a^T``."""
    return [f"for (int r = 0; r < {rows}; ++r)",
            f"    for (int c = 0; c < {cols}; ++c) {g}[r * {cols} + c] += {dy}[r] * {u}[c];"]


def matvec_t(out: str, M: str, rows: int, cols: int, v: str, ctype: str = "double"
             ) -> list[str]:
    """``out[j] = sum_i M[i cols + j] v[i]``: the transposed product (a reciprocal's)."""
    return [f"for (int j = 0; j < {cols}; ++j) {{",
            f"    {ctype} acc = 0;",
            f"    for (int i = 0; i < {rows}; ++i) acc += {M}[i * {cols} + j] * {v}[i];",
            f"    {out}[j] = acc;",
            "}"]


def at(array: str, size: int, n: int) -> str:
    """``array`` at element ``i`` of an ``n``-element loop (a one-element array
    broadcasts)."""
    return f"{array}[0]" if size == 1 and n != 1 else f"{array}[i]"


def each(n: int, body: str) -> list[str]:
    """``for i in 0..n-1: body``."""
    return [f"for (int i = 0; i < {n}; ++i) {body}"]


def matvec(out: str, M: str, rows: int, cols: int, v: str, *, add: str | None = None,
           accumulate: bool = False, ctype: str = "double") -> list[str]:
    """``out[i] (+)= sum_j M[i cols + j] v[j] (+ add[i])``."""
    plus = f" + {add}[i]" if add else ""
    start = f"{out}[i]" if accumulate else "0"
    return [f"for (int i = 0; i < {rows}; ++i) {{",
            f"    {ctype} acc = {start};",
            f"    for (int j = 0; j < {cols}; ++j) acc += {M}[i * {cols} + j] * {v}[j];",
            f"    {out}[i] = acc{plus};",
            "}"]


def number(v: float, ctype: str = "double") -> str:
    """A C literal for ``v`` (``f`` suffix in single precision)."""
    if not np.isfinite(v):
        return ("INFINITY" if v > 0 else "-INFINITY") if np.isinf(v) else "NAN"
    return repr(float(v)) + ("f" if ctype == "float" else "")


def linear_map(c, apply, in_shapes: list[tuple], dtype) -> None:
    """Write ``y_j = sum_i M_ji u_i`` for the linear map ``apply(*u) -> y or (y_1, ...)``
    on one-member batches ``(1, *shape)``, its matrix read off by applying it to unit
    vectors (exact: each entry is one product with 1).  Sparse blocks of ``M`` (a sum, a
    gain, a mux) become one statement per row; dense ones a matrix-vector product over a
    ``static const`` matrix."""
    cols = []
    for i, shape in enumerate(in_shapes):
        for e in range(int(np.prod(shape, dtype=int))):
            args = [np.zeros((1, *s), dtype) for s in in_shapes]
            args[i].reshape(-1)[e] = 1.0
            res = apply(*args)
            res = res if isinstance(res, tuple) else (res,)
            cols.append((i, e, [np.asarray(r, float).reshape(-1) for r in res]))
    n_out = len(cols[0][2]) if cols else 0
    for j in range(n_out):
        rows = c.n_y(j)
        M = {i: np.zeros((rows, c.n_u(i))) for i in range(len(in_shapes))}
        for i, e, res in cols:
            M[i][:, e] = res[j]
        dense = {i: m for i, m in M.items()
                 if np.count_nonzero(m) > 2 * (m.shape[0] + m.shape[1])}
        y, lines = c.y(j), []
        if dense:
            lines.append(f"memset({y}, 0, sizeof({c.T}) * {rows});")
            for i, m in dense.items():
                lines += matvec(y, c.param(f"J{j}_{i}", m), rows, m.shape[1], c.u(i),
                                accumulate=True, ctype=c.T)
        for r in range(rows):
            terms = []
            for i, m in M.items():
                if i in dense:
                    continue
                for e in np.flatnonzero(m[r]):
                    k = m[r, e]
                    u = f"{c.u(i)}[{e}]"
                    terms.append(f"+ {u}" if k == 1 else f"- {u}" if k == -1 else
                                 f"+ {number(k, c.T)} * {u}")
            rhs = " ".join(terms).removeprefix("+ ")
            if dense and terms:
                lines.append(f"{y}[{r}] += {rhs};")
            elif not dense:
                lines.append(f"{y}[{r}] = {rhs or '0'};")
        c.output(*lines)


class VjpView:
    """What a nonlinear block's ``c_vjp(v)`` writes with: the deltas at its outputs
    ``dy(j)``, its forward inputs ``u(i)`` and recorded outputs ``y(r)`` at the same
    step, and the input deltas ``du(i)`` it writes (one ``JacobianT`` step)."""

    def __init__(self, c, block):
        self.c, self.block, self.T = c, block, c.T
        self._n_y, self._n_u = len(block.outputs), len(block.inputs)

    def dy(self, j: int = 0) -> str:
        return self.c.u(j)

    def u(self, i: int = 0) -> str:
        return self.c.u(self._n_y + i)

    def y(self, r: int = 0) -> str:
        return self.c.u(self._n_y + self._n_u + r)

    def du(self, i: int = 0) -> str:
        return self.c.y(i)

    def n_u(self, i: int = 0) -> int:
        return self.c.n_y(i)

    def n_y(self, j: int = 0) -> int:
        return self.c.n_u(j)

    def param(self, name: str, value) -> str:
        return self.c.param(name, value)

    def state(self, name: str, init) -> str:
        return self.c.state(name, init)

    def output(self, *lines: str) -> None:
        self.c.output(*lines)

    def refuse(self, why: str):
        return self.c.refuse(why)
