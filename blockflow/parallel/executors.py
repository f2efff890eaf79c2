"""Where a sweep's chunks and many trainings run: this process, local processes (a
forkserver that imported the library once), any ``concurrent.futures.Executor`` or a Dask
client; and how models travel there (as model files, pickled only when they hold Python
callables)."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
from concurrent.futures import Executor, ProcessPoolExecutor

from blockflow.core.model import Model
from blockflow.errors import ModelFileError, ParameterError

log = logging.getLogger(__name__)

_MODELS: dict[str, Model] = {}  # per worker process: unpacked once per sweep


# ----------------------------------------------------------------- transport
def _pickler():
    try:
        import cloudpickle  # lambdas and local functions too (installed with dask)

        return cloudpickle
    except ImportError:
        return pickle


def pack_model(model: Model) -> tuple[str, bytes]:
    """The model as it travels to a worker: its model file, or pickled when it holds
    Python callables a model file cannot carry."""
    from blockflow.io.modelfile import dumps

    try:
        return "file", dumps(model).encode()
    except (ModelFileError, ParameterError):
        return "pickle", _pickler().dumps(model)


def unpack_model(packed: tuple[str, bytes]) -> Model:
    """A private copy of a packed model, cached per process (by content)."""
    key = hashlib.sha1(packed[1]).hexdigest()
    m = _MODELS.get(key)
    if m is None:
        from blockflow.io.modelfile import loads

        m = loads(packed[1].decode()) if packed[0] == "file" else pickle.loads(packed[1])
        if len(_MODELS) > 8:
            _MODELS.clear()
        _MODELS[key] = m
    return m


class _Serial(Executor):
    """Runs each task at submit time, in this process."""

    def submit(self, fn, /, *args, **kwargs):
        from concurrent.futures import Future

        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - reported per run by the sweep
            f.set_exception(e)
        return f


_LIMITS = None  # a worker's BLAS thread limit, kept for the process's life


def one_blas_thread() -> None:
    """A local worker process's initializer: its BLAS runs one thread.  The pool has a worker
    per core already; a BLAS thread per core in each made them fight for the cores
    (training FIR networks on two processes of a 2-core machine: 220 s per network
    against 35)."""
    global _LIMITS
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # (a dependency; an environment without it runs as it is)
        return
    _LIMITS = threadpool_limits(limits=1, user_api="blas")


#: serial seconds from which a sweep's default executor starts local processes (starting
#: two workers costs 1.5-3 s on this kind of machine: shorter work runs in this process)
POOL_MIN_SECONDS = 5.0


def _executor(executor, workers: int | None, n_tasks: int, seconds: float | None = None):
    """``(executor, owned)``: a Dask client's executor, a given one, or local processes.

    By default (``executor=None``) the work runs in this process when there is one task,
    or when its estimated serial time (``seconds``) is under :data:`POOL_MIN_SECONDS`:
    the pool starts only where it pays."""
    if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool)
                                    and workers >= 1):
        raise ParameterError(f"workers must be a positive number of processes (or None: "
                             f"one per core), got {workers!r}")
    if executor == "serial" or (executor is None and (
            n_tasks <= 1 or (seconds is not None and seconds < POOL_MIN_SECONDS))):
        return _Serial(), False
    if executor is None or executor == "processes":
        import multiprocessing as mp

        _check_main_guard()

        n = workers or os.cpu_count() or 1
        if "forkserver" in mp.get_all_start_methods():
            # workers fork from a server that imported the library once: they start in
            # milliseconds, and safely (the server has no threads)
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["blockflow.parallel.sweep", "blocks"])
        else:
            ctx = mp.get_context("spawn")
        return ProcessPoolExecutor(max_workers=min(n, n_tasks), mp_context=ctx,
                                   initializer=one_blas_thread), True
    if type(executor).__module__.startswith("distributed") and hasattr(executor,
                                                                        "get_executor"):
        return executor.get_executor(), False  # a dask.distributed.Client
    if isinstance(executor, Executor):
        return executor, False
    raise ParameterError(f"executor must be None (local processes), 'serial', a "
                         f"concurrent.futures.Executor or a dask.distributed.Client; got "
                         f"{executor!r}")


def _check_main_guard() -> None:
    """Local worker processes import the main script again: a script that starts a sweep
    at its top level without ``if __name__ == "__main__":`` would start it again in every
    worker (Python then breaks the pool with pages of tracebacks).  Refuse, in one line."""
    import ast
    import inspect

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or not os.path.isfile(path):
        return  # interactive, a notebook, python -c: nothing is imported again
    for info in inspect.stack(context=0):
        if info.frame.f_globals is not vars(main) or info.function != "<module>":
            continue
        try:
            tree = ast.parse(open(path, encoding="utf-8").read())
        except (OSError, SyntaxError, ValueError):
            return
        guarded = [(n.lineno, n.end_lineno) for n in ast.walk(tree)
                   if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)
                   and "__name__" in ast.unparse(n.test)]
        if not any(a <= info.lineno <= b for a, b in guarded):
            raise ParameterError(
                f"{os.path.basename(path)}, line {info.lineno}: a sweep on local processes "
                "must start under `if __name__ == \"__main__\":` (each worker imports the "
                "script again and would start the sweep anew); add the guard, or pass "
                "executor=\"serial\"")
        return


def _name(f) -> str | None:
    return None if f is None else str(getattr(f, "__qualname__", f))


def _payload(obj):
    """Callables made picklable for the trip (cloudpickle when available)."""
    return _pickler().dumps(obj)
