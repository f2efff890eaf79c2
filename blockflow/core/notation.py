"""How diagrams draw a block: its symbol, glyph, signs and transfer-function fraction.

Read by :mod:`blockflow.io.export`; nothing in the engine depends on it.
"""

from __future__ import annotations

from typing import ClassVar


class Notation:
    """The drawing part of :class:`~blockflow.core.block.Block` (a mixin of it)."""

    #: shown on diagrams; defaults to the class name
    symbol: ClassVar[str | None] = None

    #: how diagrams draw the block: "sum" (a circle), "gain" (a triangle), "delay" (a
    #: z^-n box), or None (a box with a field per port)
    glyph: ClassVar[str | None] = None

    def input_signs(self) -> str | None:
        """A summing junction's sign per input (``"+-"``), drawn at its inputs; else None."""
        return None

    def output_signs(self) -> str | None:
        """A branching point's sign per output (the reciprocal of a summing junction)."""
        return None

    def fraction(self) -> tuple[str, str] | None:
        """``(numerator, denominator)`` as diagrams write a transfer function, or None."""
        return None

    def label(self) -> str:
        """Short text for diagrams."""
        return self.symbol or type(self).__name__

    def reciprocal_label(self) -> str:
        """How the reciprocal block is drawn: ``Wᵀ`` for a linear block, else ``J(k)ᵀ``."""
        return f"{self.label()}ᵀ" if self.linear else f"J({self.label()})ᵀ"
