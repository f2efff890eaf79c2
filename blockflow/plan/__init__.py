"""Compiling a model into an immutable plan: flatten, check, type, rate and order it
(``compiler``), and the cache of compiled artefacts beside models (``cache``)."""

from blockflow.plan.compiler import FlatModel, Plan, compile, flatten  # noqa: F401
