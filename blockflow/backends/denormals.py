"""Subnormal numbers flushed to zero, on request: :func:`flush_denormals`.

A signal or a delta that decays towards zero passes through the subnormal range
(``2.2e-308`` down to ``5e-324``), where x86 and most other CPUs compute one operation
in tens to hundreds of cycles instead of one.  A gradient meets this more often than a
simulation: with ``dL/dy = 1`` at every step, a PID controller's integral action cancels
the constant sensitivity, and three quarters of its branch's deltas are subnormal; its
backward sweep then runs 5x slower than with them flushed.

blockflow keeps IEEE arithmetic by default: every number is the one the equations give,
and the numpy path and the compiled loops agree to the bit.  Inside
``flush_denormals()`` the calling thread's floating-point unit flushes subnormal results
to zero and reads subnormal operands as zero (FTZ and DAZ), as XLA's CPU backend does
always and PyTorch's ``set_flush_denormal(True)`` does on request.  Numbers whose
magnitude stays above ``2.2e-308`` are unchanged; a gradient summed from normal numbers
changes, if at all, by less than ``1e-307`` absolute.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from blockflow.errors import SimulationError

_ENV_BYTES = 64  # (more than any fenv_t: glibc's is 32 bytes on x86-64, 8 on aarch64)


def _control() -> tuple[int, int] | None:
    """``(byte offset, bits)`` of the flush-to-zero control in glibc's ``fenv_t`` on this
    machine, or ``None`` where not known."""
    if not sys.platform.startswith("linux"):
        return None
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return 28, 0x8040  # fenv_t.__mxcsr: FTZ (bit 15) and DAZ (bit 6)
    if machine in ("aarch64", "arm64"):
        return 0, 1 << 24  # fenv_t.__fpcr: FZ (bit 24)
    return None


_LIBM = None


def _libm():
    global _LIBM
    if _LIBM is None:
        _LIBM = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    return _LIBM


def flushing() -> bool:
    """Whether the calling thread flushes subnormal numbers to zero now."""
    control = _control()
    if control is None:
        return False
    env = ctypes.create_string_buffer(_ENV_BYTES)
    _libm().fegetenv(env)
    offset, bits = control
    return int.from_bytes(env.raw[offset:offset + 4], "little") & bits == bits


@contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Flush subnormal numbers to zero in the calling thread for the block (see module
    docs); ``enabled=False`` changes nothing (for a flag passed through).

    The setting is the thread's: runs in this thread (the numpy path, compiled loops,
    generated C called from it) flush, and so do threads it starts inside the block;
    threads already running and worker processes do not.  On leaving, the thread's
    floating-point environment is as it was.

    Raises
    ------
    SimulationError
        On a platform where the control is not known (Linux on x86-64 and aarch64 are).

    Examples
    --------
    >>> import numpy as np
    >>> tiny = np.float64(1e-300)
    >>> bool(tiny * 1e-10 > 0)
    True
    >>> with flush_denormals():
    ...     bool(tiny * 1e-10 > 0)
    False
    """
    if not enabled:
        yield
        return
    control = _control()
    if control is None:
        raise SimulationError(
            f"flush_denormals() sets the floating-point control of Linux on x86-64 and "
            f"aarch64; this is {sys.platform} on {platform.machine()}: run without it "
            "(IEEE subnormals: the same numbers, slower where values decay to ~1e-308)")
    libm = _libm()
    saved = ctypes.create_string_buffer(_ENV_BYTES)
    if libm.fegetenv(saved) != 0:
        raise SimulationError("flush_denormals(): fegetenv failed")
    offset, bits = control
    env = bytearray(saved.raw)
    word = int.from_bytes(env[offset:offset + 4], "little") | bits
    env[offset:offset + 4] = word.to_bytes(4, "little")
    if libm.fesetenv(ctypes.create_string_buffer(bytes(env), _ENV_BYTES)) != 0:
        raise SimulationError("flush_denormals(): fesetenv failed")
    try:
        yield
    finally:
        libm.fesetenv(saved)
