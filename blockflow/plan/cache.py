"""Compiled artefacts (plans, reciprocal plans), cached beside a model, never on it.

An entry is keyed by the model's structure (``Model.version()``) *and* the identity and
trainability of every parameter array, so reassigning a parameter (``fir.h = new``),
casting (``astype``) or loading a model can never leave a stale plan or reciprocal: the
next request builds a new one.  In-place updates (training) keep the arrays and the
cache.  The cache holds the models weakly, so it never keeps a model alive, and a copy of
a model shares nothing with the original.

Builds run with Python's cyclic garbage collector paused: a build allocates a few
objects per block and frees nothing, and every full collection would scan the whole heap
again (for a model of 16,000 blocks, half of compiling and taking the reciprocal was the
collector's).  Cycles made meanwhile are collected after the build as usual.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from blockflow.core.model import Model
from blockflow.core.parameters import Parameters

_ENTRIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PINNED: weakref.WeakSet = weakref.WeakSet()


@contextmanager
def pinned(model) -> Iterator[None]:
    """Keep serving the artefacts built so far while parameters are swapped for one run
    (batched parameters): the plans do not depend on parameter values."""
    _PINNED.add(model)
    try:
        yield
    finally:
        _PINNED.discard(model)


def fingerprint(model) -> tuple:
    """What a compiled artefact of ``model`` depends on (structure and parameter arrays)."""
    return _fingerprint(model)[0]


def _fingerprint(model) -> tuple[tuple, list]:
    """The fingerprint and the parameter arrays it names (kept alive with an entry).

    The structure (which blocks, which parameter names) is in ``Model.version()``; the
    parameter arrays enter by identity and trainability, in the model's block order."""
    arrays: list = []
    trainable: list[bool] = []
    _parameter_arrays(model, arrays, trainable)
    return (model.version(), tuple(map(id, arrays)), tuple(trainable)), arrays


def _parameter_arrays(model, arrays: list, trainable: list) -> None:
    for b in model.blocks.values():
        if isinstance(b, Model):  # a subsystem
            _parameter_arrays(b, arrays, trainable)
            continue
        if type(b).parameters is Parameters.parameters:  # (the usual case, read directly)
            for n, t in b._params.items():
                arrays.append(getattr(b, n))
                trainable.append(t)
            continue
        params = b.parameters(trainable_only=False)
        if params:
            train = b.parameters()
            arrays.extend(params.values())
            trainable.extend(k in train for k in params)


def cached(model, kind: str, build: Callable[[], Any]) -> Any:
    """The artefact ``kind`` of ``model``, rebuilt when its fingerprint changed."""
    entries = _ENTRIES.setdefault(model, {})
    if model in _PINNED and kind in entries:
        return entries[kind][2]
    key, arrays = _fingerprint(model)
    hit = entries.get(kind)
    if hit is not None and hit[0] == key:
        return hit[2]
    with collector_paused():
        value = build()
    # the arrays are kept alive with the entry, so their ids cannot be reused meanwhile
    entries[kind] = (key, arrays, value)
    return value


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if on) for the block; nested use is free."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def clear(model) -> None:
    """Forget every artefact cached for ``model``."""
    _ENTRIES.pop(model, None)
