"""Random sources' streams: each batch member's run seed, and one
``numpy.random.SeedSequence`` per member and random block (spawned by its path), so that
a member's draws depend on its seed and the block alone."""

from __future__ import annotations

import zlib

import numpy as np

from blockflow.errors import SimulationError


def random_streams(path: str, seeds) -> list:
    """One ``numpy.random.SeedSequence`` per batch member for the random block at
    ``path``: from the member's run seed, spawned for the block by its path, so that a
    member's draws depend on its seed and the block only (never on the batch size, the
    chunking or the worker) and two random blocks draw independently."""
    key = zlib.crc32(path.encode())
    return [np.random.SeedSequence(int(s), spawn_key=(key,)) for s in seeds]


def run_seeds(seed, B: int) -> np.ndarray:
    """The run seed of each of ``B`` members: ``None`` gives ``0 .. B-1``, an int the same
    seed to every member, a sequence one seed per member (non-negative integers)."""
    if seed is None:
        return np.arange(B)
    arr = np.asarray(seed)
    if arr.ndim == 0:
        arr = np.full(B, arr)
    if arr.shape != (B,) or arr.dtype.kind not in "iu" or (arr < 0).any():
        raise SimulationError(f"seed must be a non-negative integer or one per batch member "
                              f"({B}), got {seed!r:.60}")
    return arr
