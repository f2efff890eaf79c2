"""Small helpers for blocks writing their step as C (``Block.c_code``; the generator is
:mod:`blockflow.codegen`): element loops with broadcasting, matrix-vector products, and
the library's named elementwise functions as C expressions."""

from __future__ import annotations

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
