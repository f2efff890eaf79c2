"""The registry of block classes by name, which model files are read with: the engine's
own blocks, and every block library (the standard one in ``blocks/``) registers its
classes here when it is imported.  It lives with the block protocol, below the file
format, so that libraries never import the layers above them."""

from __future__ import annotations

from blockflow.core.block import Block

_REGISTRY: dict[str, type] = {}


def register_block(cls: type) -> type:
    """Class decorator: let :func:`load` build blocks of this class (by its name)."""
    if not (isinstance(cls, type) and issubclass(cls, Block)):
        raise TypeError(f"register_block takes a Block subclass, got {cls!r}")
    known = _REGISTRY.get(cls.__name__)
    if known is not None and known is not cls:
        raise ValueError(f"a different block class is already registered as {cls.__name__!r}")
    _REGISTRY[cls.__name__] = cls
    return cls


def register_library(module) -> None:
    """Register every Block subclass a library module exports (called by the library)."""
    for v in vars(module).values():
        own = getattr(v, "__module__", "").partition(".")[0] == module.__name__
        if own and isinstance(v, type) and issubclass(v, Block):
            _REGISTRY.setdefault(v.__name__, v)
