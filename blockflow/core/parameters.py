"""A block's parameters and checked constructor arguments.

``param`` registers an array (trainable or not) and refuses what is not numeric or not
finite, naming the block and the parameter; ``scalar`` and ``signal_type`` check scalar
arguments and signal types the same way.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any, ClassVar, TypeVar

import numpy as np

from blockflow.core.types import SignalType
from blockflow.errors import ParameterError, SignalTypeError

#: the block type a method returns itself as
B = TypeVar("B", bound="Parameters")


class Parameters:
    """The parameter part of :class:`~blockflow.core.block.Block` (a mixin of it)."""

    #: parameters that may carry a leading batch axis (one value per batch member; see
    #: blockflow.run.batched): those the block's equations broadcast against its signals
    batchable: ClassVar[frozenset] = frozenset()

    def param(self, name: str, value: Any, *, trainable: bool = True, dtype=None,
              ndim: int | tuple | None = None) -> np.ndarray:
        """Register ``value`` as parameter ``name`` (an attribute too) and return it.

        The value must be numeric (``ndim`` dimensions when given) and finite unless the
        block was made with ``allow_nonfinite=True``; otherwise a ParameterError names
        the block and the parameter.
        """
        where = f"block {self.name!r} ({type(self).__name__}), parameter {name!r}"
        if dtype is None:  # floating arrays keep their precision; anything else is float64
            kind = getattr(value, "dtype", np.dtype(object)).kind
            dtype = value.dtype if kind == "f" else np.float64
        try:
            arr = np.array(value, dtype=dtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise ParameterError(f"{where}: must be a number or an array of numbers, got "
                                 f"{value!r:.60} ({e})") from None
        if ndim is not None and arr.ndim not in np.atleast_1d(ndim):
            raise ParameterError(f"{where}: must have {ndim} dimension(s), got shape "
                                 f"{arr.shape}")
        if not self.allow_nonfinite and not np.all(np.isfinite(arr)):
            raise ParameterError(f"{where}: holds NaN or infinite values; pass finite values "
                                 "(or allow_nonfinite=True if you mean it)")
        self._params[name] = trainable
        setattr(self, name, arr)
        return arr

    def copy(self: B, name: str | None = None) -> B:
        """An independent deep copy (parameters too), in no model yet: to use a block or
        a subsystem a second time."""
        memo = {id(self.__dict__.get("_model")): None}  # the owner is not copied
        new = copy.deepcopy(self, memo)
        new._model = None
        if name is not None:
            new.name = name
        return new

    def scalar(self, name: str, value, *, integer: bool = False, minimum=None, above=None,
               below=None, finite: bool = True):
        """A scalar constructor argument, checked: a ParameterError names the block, the
        argument and the allowed range."""
        where = f"block {self.name!r} ({type(self).__name__}): {name}"
        try:
            if integer:
                if isinstance(value, bool):
                    raise TypeError
                if isinstance(value, float | np.floating) and float(value).is_integer():
                    value = int(value)
                v = operator.index(value)
            else:
                v = float(value)
        except (TypeError, ValueError, OverflowError):
            kind = "an integer" if integer else "a number"
            raise ParameterError(f"{where} must be {kind}, got {value!r:.60}") from None
        if finite and not integer and not math.isfinite(v) and not self.allow_nonfinite:
            raise ParameterError(f"{where} must be finite, got {v}")
        if not integer and math.isnan(v) and not self.allow_nonfinite:  # never a limit
            raise ParameterError(f"{where} must be a number, got NaN")
        if minimum is not None and v < minimum:
            raise ParameterError(f"{where} must be >= {minimum}, got {v}")
        if above is not None and not v > above:
            raise ParameterError(f"{where} must be > {above}, got {v}")
        if below is not None and not v < below:
            raise ParameterError(f"{where} must be < {below}, got {v}")
        return v

    def signal_type(self, shape, dtype) -> SignalType:
        """A SignalType from constructor arguments (a ParameterError names the block)."""
        if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
            shape = (int(shape),)  # shape=3 means (3,)
        try:
            return SignalType(shape, dtype)
        except SignalTypeError as e:
            raise ParameterError(f"block {self.name!r} ({type(self).__name__}): {e}") from None

    def parameters(self, *, trainable_only: bool = True) -> dict[str, np.ndarray]:
        """The block's parameters by name (the arrays themselves, not copies)."""
        return {n: getattr(self, n) for n, t in self._params.items() if t or not trainable_only}

    def held(self) -> dict[str, np.ndarray]:
        """Elements of trainable parameters that training holds where they are
        (``{name: boolean mask}``): their gradients are exact, :func:`~blockflow.train`
        leaves them unchanged (a filter's ``a[0]``, which only scales ``b`` and ``a``)."""
        return {}

    def astype(self: B, dtype) -> B:
        """Cast every parameter to ``dtype`` in place (returns the block)."""
        for n in self._params:
            setattr(self, n, getattr(self, n).astype(dtype))
        return self
