"""Signal types: the shape and dtype of one sample of a signal.

At run time every signal carries a leading batch axis, ``(B, *shape)`` per step and
``(T, B, *shape)`` over a whole run; a :class:`SignalType` never mentions ``T`` or ``B``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from blockflow.errors import SignalTypeError


@dataclass(frozen=True)
class SignalType:
    """The type of one sample of a signal.

    Parameters
    ----------
    shape : tuple of int
        Shape of one sample (``()`` for a scalar signal).
    dtype : numpy dtype
        Floating-point dtype of the samples.

    Examples
    --------
    >>> SignalType((3,))
    SignalType(shape=(3,), dtype=float64)
    """

    shape: tuple[int, ...] = ()
    dtype: np.dtype = np.dtype(np.float64)

    def __post_init__(self):
        shape, dtype = self.shape, self.dtype
        if type(shape) is tuple and isinstance(dtype, np.dtype) and dtype.kind in "biuf" \
                and all(type(n) is int and n >= 0 for n in shape):
            return  # (already in normal form: the usual case, made by the library)
        try:
            shape = tuple(self.shape)
        except TypeError:
            raise SignalTypeError(f"a sample shape is a tuple of sizes, got {self.shape!r}") \
                from None
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0
                   for n in shape):
            raise SignalTypeError(f"a sample shape holds non-negative integers, got {shape}")
        try:
            dtype = np.dtype(self.dtype)
        except (TypeError, ValueError):
            raise SignalTypeError(f"unknown dtype {self.dtype!r}; use e.g. 'float64', "
                                  "'float32', 'int32' or 'bool'") from None
        if dtype.kind not in "biuf":
            raise SignalTypeError(f"signals carry numbers (bool, integer or floating), not "
                                  f"{dtype} samples")
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "dtype", dtype)

    def __repr__(self) -> str:
        return f"SignalType(shape={self.shape}, dtype={self.dtype})"

    def __str__(self) -> str:
        dims = "x".join(str(n) for n in self.shape) or "scalar"
        return f"{dims} {self.dtype}"

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def zeros(self, *lead: int) -> np.ndarray:
        """An array of zeros with leading axes ``lead`` and this type's shape."""
        return np.zeros((*lead, *self.shape), dtype=self.dtype)


class PortTypes(NamedTuple):
    """The signal types at a block's input ports, output ports and residuals, in order."""

    inputs: tuple
    outputs: tuple
    residuals: tuple = ()


def delta_type(t: SignalType | None) -> SignalType | None:
    """The type of a gradient (delta or tangent) of a signal of type ``t``.

    Floating signals keep their precision; integer and boolean signals get float64
    deltas (``dJ/du`` of an integer input is a real number, not a rounded one).
    """
    if t is None or t.dtype.kind in "fc":  # inexact: float or complex
        return t
    return SignalType(t.shape, np.float64)


def same_type(where: str, *types: SignalType | None) -> SignalType | None:
    """Return the common type of ``types`` (ignoring unknowns), or raise naming ``where``.

    Used by blocks whose inputs and outputs must all agree (Sum, Product, elementwise
    functions).  Dtypes promote; shapes must match exactly.
    """
    known = [t for t in types if t is not None]
    if not known:
        return None
    shapes = {t.shape for t in known}
    if len(shapes) > 1:
        listed = ", ".join(str(s) for s in sorted(shapes))
        raise SignalTypeError(
            f"{where}: inputs must have the same shape, got {listed}; "
            "insert a Gain or Mux/Demux to make them agree"
        )
    dtype = np.result_type(*(t.dtype for t in known))
    return SignalType(known[0].shape, dtype)
