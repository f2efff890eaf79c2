"""How a plan's operations run: the one backend policy (``policy``: numpy, compiled or
interpreted, a pure function of the run), the numpy executor (``execute``), the loop
source generator and numba loops (``steps``, ``loops``), the interpreter of large loops
(``interp``) and the private disk cache (``diskcache``)."""
