"""The suite's gradient checks: the library's own (see blockflow.check)."""

from blockflow.check import dot_check, fd_check

__all__ = ["dot_check", "fd_check"]
