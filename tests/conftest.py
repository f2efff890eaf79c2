import os
import sys

import numpy as np
import pytest
from hypothesis import settings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the suite runs feedback loops on the numpy path; tests/test_compiled.py compares the
# compiled path with it explicitly (compiling every test's loops would cost minutes)
os.environ.setdefault("BLOCKFLOW_BACKEND", "numpy")
# the tests check what compiled loops compute, not how fast: LLVM's optimisation passes
# are most of numba's compile time (-58 % at level 0), and they do not change IEEE
# arithmetic (no fastmath); benchmarks and users keep numba's default level
os.environ.setdefault("NUMBA_OPT", "0")
# ... and they keep their compiled loops apart from the user's cache (which holds fully
# optimised code for real runs and benchmarks)
os.environ.setdefault("BLOCKFLOW_CACHE", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "blockflow-tests"))

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
