"""The blockflow error hierarchy.

Every error names the block (by its path in the model) and, where one is involved, the
port, and says what to do next.  All derive from :class:`BlockflowError`, so
``except BlockflowError`` catches every user mistake the library can detect.
"""

from __future__ import annotations


class BlockflowError(Exception):
    """Base class of every error raised by blockflow for a user mistake."""


class ParameterError(BlockflowError, ValueError):
    """A block was given an impossible parameter (a shape, a name, a range)."""


class WiringError(BlockflowError, ValueError):
    """A connection is impossible or missing: unknown port, two sources, unconnected input."""


class PortError(WiringError, AttributeError):
    """``block.name`` names no port of the block (also an AttributeError)."""


class SignalTypeError(BlockflowError, TypeError):
    """Signal types (shape, dtype) do not agree, or cannot be inferred."""


class AlgebraicLoopError(BlockflowError):
    """A cycle through blocks with direct feedthrough only (no delay breaks it).

    Attributes
    ----------
    loop : list of str
        The block paths of the loop, in signal-flow order.
    """

    def __init__(self, message: str, loop: list[str]):
        super().__init__(message)
        self.loop = loop


class ReciprocalNotDefinedError(BlockflowError):
    """A block has no reciprocal (gradient) rule and is not marked nondifferentiable."""


class SimulationError(BlockflowError, ValueError):
    """Bad arguments to a simulation or a sweep: missing input, wrong shape, bad steps."""


class ModelFileError(BlockflowError, ValueError):
    """A model file cannot be read: malformed, unknown block type, wrong version."""


class TraceFileError(BlockflowError, ValueError):
    """A trace file cannot be written or read: a folder, damaged, not a trace."""


class TrainingError(BlockflowError):
    """Training cannot go on: a non-finite loss or gradient (the message says where)."""


class CodegenError(BlockflowError, ValueError):
    """A model cannot be written as C: a block without a C form (the message names it)."""
