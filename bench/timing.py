"""Timing helper shared by the benchmarks."""

from __future__ import annotations

import time


def best(f, repeat: int = 3) -> float:
    """Seconds of the fastest of ``repeat`` calls of ``f``, after one warm-up call."""
    f()  # warm up: compile, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)
