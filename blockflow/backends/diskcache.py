"""The disk cache of generated loop modules and numba's machine code for them.

Code is loaded from it, so it must be private: a folder owned by the user and writable
by nobody else (mode 0700, made so whatever the umask).  ``BLOCKFLOW_CACHE`` names its
root (default ``$XDG_CACHE_HOME/blockflow`` or ``~/.cache/blockflow``); where that
cannot be made, a per-user folder under the temporary directory.  A folder that is not
private (another user's, or one others may write: a planted ``.pyc`` or numba index
would run as the user's code) is refused with a warning, and loops then compile in
memory, uncached.  The same happens where nothing can be written (a full disk).

Files are written under random names opened exclusively (no symlink is followed) and
renamed into place; generated modules are executed from the text blockflow made, never
from a ``.pyc``.  A damaged entry (a truncated numba index, a garbage module) is
discarded and rebuilt.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
import types
from pathlib import Path

log = logging.getLogger(__name__)

_WARNED: set = set()


def _warn_once(key: str, msg: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg)


def private(path: Path) -> str | None:
    """Why ``path`` is not a private folder of this user (``None``: it is)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"others may write to it (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _make_private(path: Path) -> str | None:
    """Make ``path`` (and missing parents) as private folders; why not, if not."""
    try:
        existed = path.exists() or path.is_symlink()
        if not existed:
            path.mkdir(parents=True, mode=0o700)
            os.chmod(path, 0o700)  # (mkdir's mode is filtered by the umask)
    except OSError as e:
        return f"it cannot be made ({e.strerror or e})"
    return private(path)


_DISABLED: list = []  # why this process stopped using the disk cache (see disable)


def disable(why: str) -> None:
    """Stop using the disk cache in this process (loops compile in memory), warned once."""
    if not _DISABLED:
        _DISABLED.append(why)
        log.warning("the loop cache is not used from now on (%s): compiled loops are made "
                    "in memory, uncached", why)


def loop_dir() -> Path | None:
    """The private folder for generated loops, or ``None`` (run uncached; warned once)."""
    if _DISABLED:
        return None
    root = os.environ.get("BLOCKFLOW_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "blockflow")
    path = Path(root) / "loops"
    why = _make_private(path) or _make_private(path / "__pycache__")
    if why is None and os.access(path, os.W_OK):
        return path
    if not os.environ.get("BLOCKFLOW_CACHE"):  # no usable home: a per-user temp folder
        tmp = Path(tempfile.gettempdir()) / f"blockflow-{os.getuid()}"
        why_tmp = _make_private(tmp) or _make_private(tmp / "loops") or _make_private(
            tmp / "loops" / "__pycache__")
        if why_tmp is None and os.access(tmp / "loops", os.W_OK):
            return tmp / "loops"
        why = f"{why}; and {tmp}: {why_tmp}"
    _warn_once(str(path), f"the loop cache {path} is not used ({why or 'not writable'}): "
               "compiled loops are made in memory, uncached; point BLOCKFLOW_CACHE at a "
               "private folder (yours, mode 0700)")
    return None


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a fresh file of a random name (opened
    exclusively, mode 0600: no planted symlink is followed) renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def discard(folder: Path, name: str) -> None:
    """Remove numba's cache files of the module ``name`` (a damaged entry)."""
    for p in (folder / "__pycache__").glob(f"{name}.*"):
        try:
            p.unlink()
        except OSError:
            pass


def load_generated(name: str, source: str, cached: bool = True) -> types.ModuleType:
    """The generated module ``name`` made from ``source`` (once per process).

    Cached: written to the private folder (rewritten where it differs: a damaged or
    replaced file) and executed from ``source`` with its file name there, so numba keeps
    its machine code beside it.  Uncached (no private folder, nothing writable, or
    ``cached=False``): executed in memory with numba's caching off.
    """
    module = sys.modules.get(name)
    if module is not None:
        return module
    folder = loop_dir() if cached else None
    path = None
    if folder is not None:
        path = folder / f"{name}.py"
        try:
            try:
                same = path.read_bytes() == source.encode()
            except OSError:
                same = False
            if not same:
                write_private(path, source)
                discard(folder, name)  # machine code of another text: never reused
        except OSError as e:  # (a full disk, a read-only folder)
            _warn_once(f"write:{folder}", f"cannot write the loop cache in {folder} "
                       f"({e.strerror or e}): loops compile in memory, uncached")
            path = None
    text = source if path is not None else source.replace("cache=True", "cache=False")
    module = types.ModuleType(name)
    module.__file__ = str(path) if path is not None else f"<blockflow {name}>"
    code = compile(text, module.__file__, "exec")
    exec(code, module.__dict__)  # noqa: S102 - source generated by blockflow itself
    sys.modules[name] = module
    return module


def forget(name: str) -> None:
    """Drop the module ``name`` from this process (to load it again, rebuilt)."""
    sys.modules.pop(name, None)
