"""The parts of a compiled plan: operations, segments and trace reads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from blockflow.core.block import Block, Read
from blockflow.core.rates import BASE, FORWARD_IO, Rate


@dataclass
class Op:
    """One block bound into the plan: its input and output slots and its state index."""

    path: str
    block: Block
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    state: int | None = None
    rate: Rate = BASE  # the steps it runs on
    io: tuple[str, str] = FORWARD_IO  # how it reads inputs and writes outputs off its hits

    @property
    def multirate(self) -> bool:
        return self.rate != BASE or self.io != FORWARD_IO


class SegmentKind(Enum):
    """How a segment of the plan runs."""

    EXTERNAL = "external"  # an Inport: filled by the caller
    SOURCE = "source"  # a source: its whole sequence at once (generate)
    SEQUENCE = "sequence"  # a block outside every loop: its whole sequence at once
    LOOP = "loop"  # a feedback loop: step by step, as one generated function


@dataclass
class Segment:
    kind: SegmentKind
    ops: list[Op]
    loop: object = None  # the generated step function of a loop segment (numpy path)
    why_numpy: str | None = None  # why a loop has no compiled form (None: it has one)
    # (what running learns, the compiled function among it, is kept beside the plan:
    # blockflow.backends.runtime)
    interpreted: bool = False  # compiled loops: run by the interpreter of their kinds


class TraceRead(NamedTuple):
    """A slot the caller fills with a forward signal: ``read`` of the block at ``path``."""

    slot: int
    path: str
    read: Read
