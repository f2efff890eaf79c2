"""Model files: ``save(model, path)`` / ``load(path)``.

The format is plain JSON, written atomically, read without executing code (no pickle,
no eval)::

    {"format": "blockflow-model", "version": 1,
     "model": {"name": "...", "blocks": [BLOCK, ...],
               "connections": [["src", "src_port", "dst", "dst_port"], ...]}}

    BLOCK = {"type": "Gain", "name": "g", "config": {...}}          # constructor arguments
          | {"type": "Model", "name": "sub", "model": {...}}        # a subsystem
    optional in BLOCK: "inputs"/"outputs" (port names, when not the class's),
                       "type_hints" (output types a transform knew)

Inside ``config``, arrays are ``{"__array__": {"dtype": "float64", "shape": [2, 3],
"data": [...]}}`` (floats written with ``repr``, so float64 round-trips exactly), nested
blocks (reciprocal wrappers) are ``{"__block__": BLOCK}`` and signal types
``{"__type__": {"shape": [...], "dtype": "..."}}``.  Block types load by class name from a
registry: the library's blocks are in it; your own blocks opt in with
:func:`register_block`.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from blockflow.core.block import Block, check_ports
from blockflow.core.model import Model
from blockflow.core.registry import _REGISTRY, register_block, register_library  # noqa: F401
from blockflow.core.types import SignalType
from blockflow.errors import BlockflowError, ModelFileError
from blockflow.fsutil import atomic_write

FORMAT = "blockflow-model"
VERSION = 1
MAX_FILE_BYTES = 256 * 2**20  # a bound on what load() reads
log = logging.getLogger(__name__)
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "bool"}


def _register_library() -> None:
    """Fill the registry: the engine's own blocks, then every block library installed
    under the entry-point group ``blockflow.blocks`` (the standard library is one; its
    package registers its classes when imported)."""
    if _REGISTRY.get("JacobianT") is not None:
        return
    from blockflow.core import gated, lines, ports
    from blockflow.gradient import adjoint

    for mod in (adjoint, gated, lines, ports):
        for v in vars(mod).values():
            if isinstance(v, type) and issubclass(v, Block) and v is not Block:
                _REGISTRY.setdefault(v.__name__, v)
    for ep in importlib.metadata.entry_points(group="blockflow.blocks"):
        try:
            ep.load()
        except ImportError as e:  # a broken plug-in must not stop other models loading
            log.warning("block library %r could not be imported: %s", ep.value, e)


# ---------------------------------------------------------------------------- save
def _encode(value, where: str):
    if isinstance(value, Block):
        return {"__block__": _block_spec(value, where)}
    if isinstance(value, SignalType):
        return {"__type__": {"shape": list(value.shape), "dtype": value.dtype.name}}
    if isinstance(value, np.ndarray | np.generic):
        a = np.asarray(value)
        if a.dtype.name not in _DTYPES:
            raise ModelFileError(f"{where}: cannot save an array of dtype {a.dtype}")
        data = a.ravel().tolist()
        return {"__array__": {"dtype": a.dtype.name, "shape": list(a.shape), "data": data}}
    if isinstance(value, list | tuple):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v, where) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    raise ModelFileError(f"{where}: cannot save a value of type {type(value).__name__}")


def _block_spec(b: Block, where: str) -> dict:
    where = f"{where} > block {b.name!r}"
    if isinstance(b, Model):
        return {"type": "Model", "name": b.name, "model": _model_spec(b, where)}
    try:
        config = b.config()
    except (ValueError, NotImplementedError) as e:
        raise ModelFileError(f"{where} ({type(b).__name__}): {e}") from None
    spec = {"type": type(b).__name__, "name": b.name, "config": _encode(config, where)}
    for attr in ("inputs", "outputs"):
        if attr in b.__dict__ and tuple(b.__dict__[attr]) != getattr(type(b), attr):
            spec[attr] = list(b.__dict__[attr])
    hints = b.type_hints
    if hints is not None:
        spec["type_hints"] = _encode(list(hints), where)
    if b.allow_nonfinite:
        spec["allow_nonfinite"] = True
    if b.sample_time is not None and "sample_time" not in config:
        spec["sample_time"] = _encode(b.sample_time, where)
    return spec


def _model_spec(m: Model, where: str) -> dict:
    spec = {"name": m.name,
            "blocks": [_block_spec(b, where) for b in m.blocks.values()],
            "connections": [[s, d["src_port"], t, d["dst_port"]]
                            for s, t, d in m.graph.edges(data=True)]}
    if m.reciprocal_of is not None:
        spec["reciprocal_of"] = m.reciprocal_of
    if m._dt is not None:
        spec["dt"] = m._dt
    if m.solver is not None:
        spec["solver"], spec["substeps"] = m.solver, m.substeps
    return spec


def dumps(model: Model) -> str:
    """The model file's text."""
    doc = {"format": FORMAT, "version": VERSION, "model": _model_spec(model, "model")}
    return json.dumps(doc, indent=1, allow_nan=True)


def save(model: Model, path: str | Path) -> Path:
    """Write ``model`` to ``path`` as JSON, atomically (see module docs).

    Raises
    ------
    ModelFileError
        Something in the model cannot be written as data (a Python callable without a
        registered name, a block without ``config()``), or the file cannot be written.
    """
    if not isinstance(model, Model):
        raise ModelFileError(f"save() takes a Model, got {type(model).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"cannot save model {model.name!r} to {str(path)!r}: it is a "
                             "directory; give a file name such as model.json")
    text = dumps(model).encode()
    try:
        return atomic_write(path, text)
    except OSError as e:
        raise ModelFileError(f"cannot save model {model.name!r} to {str(path)!r}: "
                             f"{e.strerror or e}; choose a writable location") from None


# ---------------------------------------------------------------------------- load
def _expect(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ModelFileError(f"{where}: {msg}")


MAX_DIGITS = 400  # an integer longer than this is no parameter value (float64: 309)
MAX_VALUE_DEPTH = 32  # lists and objects inside one block's configuration


class _LongInteger(str):
    """An integer literal of more than MAX_DIGITS digits, kept as text for the message."""


def _parse_int(text: str):
    return _LongInteger(text) if len(text) > MAX_DIGITS else int(text)


def _nesting_site(text: str | bytes, limit: int = 400) -> str:
    """Where the JSON first nests deeper than ``limit`` (line, column and the block
    whose entry holds it, if a name precedes it)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth, quoted, escaped = 0, False, False
    for i, ch in enumerate(text):
        if quoted:  # inside a string: brackets do not count
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, i) + 1
                col = i - text.rfind("\n", 0, i)
                names = re.findall(r'"name"\s*:\s*"([^"]{0,80})"', text[:i])
                inside = f", inside block {names[-1]!r}" if names else ""
                return f"at line {line}, column {col}{inside}"
        elif ch in "]}":
            depth -= 1
    return "somewhere"


def _decode(value, where: str, depth: int = 0):
    if depth > MAX_VALUE_DEPTH:
        raise ModelFileError(f"{where}: values nested more than {MAX_VALUE_DEPTH} deep; a "
                             "parameter is an array (an \"__array__\" object), not nested lists")
    if isinstance(value, _LongInteger):
        raise ModelFileError(f"{where}: an integer of {len(value.lstrip('-'))} digits, more "
                             "than any parameter can hold; is the file damaged?")
    if isinstance(value, dict):
        if "__array__" in value:
            return _decode_array(value["__array__"], where)
        if "__block__" in value:
            return _build_block(value["__block__"], where)
        if "__type__" in value:
            t = value["__type__"]
            _expect(isinstance(t, dict) and isinstance(t.get("shape"), list)
                    and t.get("dtype") in _DTYPES, where, f"malformed signal type {t!r}")
            _expect(all(isinstance(n, int) and n >= 0 for n in t["shape"]), where,
                    f"malformed shape {t['shape']!r}")
            return SignalType(tuple(t["shape"]), t["dtype"])
        return {k: _decode(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, where, depth + 1) for v in value]
    return value


def _decode_array(a, where: str) -> np.ndarray:
    _expect(isinstance(a, dict), where, "an array must be an object")
    dtype, shape, data = a.get("dtype"), a.get("shape"), a.get("data")
    _expect(dtype in _DTYPES, where, f"unsupported array dtype {dtype!r}")
    _expect(isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool)
                                            and 0 <= n for n in shape),
            where, f"array shape must be a list of non-negative integers, got {shape!r}")
    _expect(isinstance(data, list), where, "array data must be a flat list of numbers")
    for x in data:
        _decode(x, where)  # (refuses an integer of thousands of digits, naming the block)
    _expect(all(isinstance(x, int | float) for x in data), where,
            "array data must be a flat list of numbers")
    _expect(len(data) == math.prod(shape), where,
            f"array of shape {shape} needs {math.prod(shape)} numbers, got {len(data)}")
    try:
        return np.array(data, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError, TypeError) as e:
        raise ModelFileError(f"{where}: array data do not fit dtype {dtype}: {e}") from None


def _ports(spec: dict, key: str, where: str):
    ports = spec.get(key)
    if ports is None:
        return None
    _expect(isinstance(ports, list) and all(isinstance(p, str) for p in ports), where,
            f"{key!r} must be a list of port names")
    return tuple(ports)


def _unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ModelFileError(f"duplicate key {dup!r} in one JSON object: the file is "
                             "ambiguous (which value is meant?)")
    return dict(pairs)


def _build_block(spec, where: str) -> Block:
    _expect(isinstance(spec, dict), where, f"a block must be an object, got {type(spec).__name__}")
    name, kind = spec.get("name"), spec.get("type")
    _expect(isinstance(name, str) and name != "", where, f"block name must be a string, got "
            f"{name!r}")
    where = f"{where} > block {name!r}"
    _expect(isinstance(kind, str), where, f"block type must be a string, got {kind!r}")
    if kind == "Model":
        return _build_model(spec.get("model"), where)
    cls = _REGISTRY.get(kind)
    _expect(cls is not None, where, f"unknown block type {kind!r}; a block class of your own "
            "loads once its class is decorated with @register_block")
    config = spec.get("config", {})
    _expect(isinstance(config, dict), where, "'config' must be an object")
    kwargs = _decode(config, where)
    params = inspect.signature(cls).parameters
    if "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs["name"] = name
        if spec.get("allow_nonfinite") is True:
            kwargs["allow_nonfinite"] = True
    try:
        b = cls(**kwargs)
    except BlockflowError as e:
        raise ModelFileError(f"{where} ({kind}): {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise ModelFileError(f"{where} ({kind}): bad configuration {sorted(config)}: {e}") \
            from None
    b.name = name
    for key in ("inputs", "outputs"):
        ports = _ports(spec, key, where)
        if ports is not None:
            _expect(len(ports) == len(getattr(b, key)), where,
                    f"{key} {list(ports)} do not match the block's {list(getattr(b, key))}")
            setattr(b, key, ports)
    try:
        check_ports(name, b.inputs, b.outputs)
    except BlockflowError as e:
        raise ModelFileError(f"{where}: {e}") from None
    if "type_hints" in spec:
        hints = _decode(spec["type_hints"], where)
        _expect(isinstance(hints, list) and len(hints) == len(b.outputs)
                and all(h is None or isinstance(h, SignalType) for h in hints), where,
                "type_hints must give one signal type per output")
        b.type_hints = tuple(hints)
    if "sample_time" in spec:
        st = _decode(spec["sample_time"], where)
        ok = isinstance(st, int | float) or (isinstance(st, list) and 1 <= len(st) <= 2 and
                                             all(isinstance(v, int | float) for v in st))
        _expect(ok and not isinstance(st, bool), where,
                f"sample_time must be Ts or [Ts, offset] in seconds, got {st!r}")
        b.sample_time = tuple(st) if isinstance(st, list) else st
    return b


def _build_model(spec, where: str) -> Model:
    _expect(isinstance(spec, dict), where, "a model must be an object")
    name = spec.get("name")
    _expect(isinstance(name, str) and name != "", where, f"model name must be a string, got "
            f"{name!r}")
    where = f"{where} {name!r}" if where == "model" else where
    blocks, conns = spec.get("blocks"), spec.get("connections")
    _expect(isinstance(blocks, list), where, "'blocks' must be a list")
    _expect(isinstance(conns, list), where, "'connections' must be a list")
    m = Model(name)
    if "dt" in spec:
        try:
            m.dt = spec["dt"]
        except BlockflowError as e:
            raise ModelFileError(f"{where}: {e}") from None
    if "solver" in spec:
        try:
            m.set_solver(spec["solver"], spec.get("substeps", 1))
        except BlockflowError as e:
            raise ModelFileError(f"{where}: {e}") from None
    if "reciprocal_of" in spec:
        m.reciprocal_of = str(spec["reciprocal_of"])
    for i, bspec in enumerate(blocks):
        b = _build_block(bspec, f"{where} > blocks[{i}]")
        try:
            m.add(b)
        except BlockflowError as e:
            raise ModelFileError(f"{where} > blocks[{i}]: {e}") from None
    for i, c in enumerate(conns):
        here = f"{where} > connections[{i}]"
        _expect(isinstance(c, list) and len(c) == 4 and all(isinstance(x, str) for x in c),
                here, f"a connection is [src, src_port, dst, dst_port], got {c!r}")
        s, sp, d, dp = c
        _expect(s in m.blocks, here, f"connection from unknown block {s!r}")
        _expect(d in m.blocks, here, f"connection to unknown block {d!r}")
        try:
            m.connect(m.blocks[s][sp], m.blocks[d][dp])
        except BlockflowError as e:
            raise ModelFileError(f"{here}: {e}") from None
    return m


def loads(text: str | bytes) -> Model:
    """A model from the text of a model file."""
    _register_library()
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_parse_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"not a blockflow model file (invalid JSON, truncated?): {e}") \
            from None
    except RecursionError:
        raise ModelFileError(f"not a blockflow model file: JSON nested too deeply "
                             f"({_nesting_site(text)})") from None
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise ModelFileError(f"not a blockflow model file: {e}") from None
    _expect(isinstance(doc, dict) and doc.get("format") == FORMAT, "file",
            f"not a blockflow model file (expected \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    _expect(not isinstance(version, _LongInteger), "file", "not a blockflow model file: "
            f"'version' is an integer of {len(str(version))} digits")
    _expect(isinstance(version, int) and not isinstance(version, bool), "file",
            f"'version' must be an integer, got {version!r:.40}")
    _expect(version <= VERSION, "file", f"written in format version {version}, newer than "
            f"this blockflow reads ({VERSION}); upgrade blockflow")
    _expect(version >= 1, "file", f"unknown format version {version}")
    try:
        return _build_model(doc.get("model"), "model")
    except RecursionError:
        raise ModelFileError("model nesting too deep") from None


def load(path: str | Path) -> Model:
    """Read a model written by :func:`save`.  Never executes code from the file.

    Raises
    ------
    ModelFileError
        The file is missing, malformed, from a newer format, names an unknown block type
        or a dangling connection, or holds a parameter of the wrong shape.
    """
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never end
            raise ModelFileError(f"{str(path)!r} is not a regular file (a directory, pipe or "
                                 "device); give the path of a model file")
        if st.st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"model file {str(path)!r} is {st.st_size / 2**20:.0f} MiB, "
                                 f"larger than the {MAX_FILE_BYTES // 2**20} MiB a model file "
                                 "may be; is it really one?")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {e.strerror}") from None
    try:
        return loads(data)
    except ModelFileError as e:
        raise ModelFileError(f"{path.name}: {e}") from None
