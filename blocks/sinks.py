"""Sinks: Scope and ToArray mark signals to look at; the Trace records every signal."""

from __future__ import annotations

from blockflow.core.block import Block


class Scope(Block):
    """Displays its input ``u(k)`` (see ``Trace.plot``); ``trace[scope_name]`` reads it."""

    outputs = ()
    nondifferentiable = True
    display = True  # plot_scopes() draws it

    def infer(self, *t):
        return ()

    def c_code(self, c) -> bool:  # nothing to compute: its input is a signal of the step
        return True

    def config(self) -> dict:
        return {}


class ToArray(Scope):
    """Names a signal to export: ``trace[name]`` is its ``(T, B, *shape)`` array."""

    display = False
