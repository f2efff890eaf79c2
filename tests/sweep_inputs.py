"""A sweep's inputs(seed) shared by a killed sweep's process and the one resuming it (its
chunk files are reused only for the same function: code and the values it reads)."""

import os
import time

import numpy as np


def slow(seed):
    """Noise for ``seed``; sleeps ``$BF_SLOW`` seconds and leaves a file in ``$BF_CALLS``
    per call (read at run time: neither is part of what the results depend on)."""
    time.sleep(float(os.environ.get("BF_SLOW", "0")))
    if os.environ.get("BF_CALLS"):
        open(os.path.join(os.environ["BF_CALLS"], f"{seed}-{time.time_ns()}"), "w").close()
    return {"r": np.random.default_rng(seed).standard_normal(50)}
