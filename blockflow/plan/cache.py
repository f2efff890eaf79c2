"""Compiled artefacts (plans, reciprocal plans), cached beside a model, never on it.

An entry is keyed by the model's structure (``Model.version()``) *and* the identity and
trainability of every parameter array, so reassigning a parameter (``fir.h = new``),
casting (``astype``) or loading a model can never leave a stale plan or reciprocal: the
next request builds a new one.  In-place updates (training) keep the arrays and the
cache.  The cache holds the models weakly, so it never keeps a model alive, and a copy of
a model shares nothing with the original.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
    params = model.parameters(trainable_only=False)
    trainable = model.parameters()
    return (model.version(),
            tuple((k, id(a), k in trainable) for k, a in params.items()))


def cached(model, kind: str, build: Callable[[], Any]) -> Any:
    """The artefact ``kind`` of ``model``, rebuilt when its fingerprint changed."""
    entries = _ENTRIES.setdefault(model, {})
    if model in _PINNED and kind in entries:
        return entries[kind][2]
    key = fingerprint(model)
    hit = entries.get(kind)
    if hit is not None and hit[0] == key:
        return hit[2]
    value = build()
    # the arrays are kept alive with the entry, so their ids cannot be reused meanwhile
    entries[kind] = (key, list(model.parameters(trainable_only=False).values()), value)
    return value


def clear(model) -> None:
    """Forget every artefact cached for ``model``."""
    _ENTRIES.pop(model, None)
