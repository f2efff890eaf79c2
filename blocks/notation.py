"""How diagrams write polynomials: ``s² + 3s + 2``, ``1 - 0.5z⁻¹``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _polynomial(c, monomial: Callable[[int], str]) -> str:
    """``sum_i c[i] monomial(i)``, zero terms left out, unit coefficients not written."""
    terms = []
    for i, v in enumerate(np.asarray(c, float)):
        if v == 0:
            continue
        x = monomial(i)
        coef = "" if abs(v) == 1 and x else f"{abs(v):.4g}"
        terms.append(("-" if v < 0 else "+", coef + x))
    if not terms:
        return "0"
    text = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    return text + "".join(f" {sg} {t}" for sg, t in terms[1:])


def poly_text(c, var: str = "s") -> str:
    """``[1, 3, 2]`` -> ``"s² + 3s + 2"`` (descending powers)."""
    n = np.size(c) - 1
    return _polynomial(c, lambda i: "" if i == n else var if i == n - 1
                       else var + str(n - i).translate(_SUP))


def zinv_text(c) -> str:
    """``[1, -0.5]`` -> ``"1 - 0.5z⁻¹"`` (ascending powers of z^-1)."""
    return _polynomial(c, lambda m: "" if m == 0 else "z⁻" + str(m).translate(_SUP))
