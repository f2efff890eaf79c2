"""The suite's gradient checks: the library's own (see blockflow.gradient.check)."""

from blockflow.gradient.check import dot_check, fd_check

__all__ = ["dot_check", "fd_check"]
