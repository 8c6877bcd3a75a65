"""The one file writer of the package (no torch here): atomic writes and the JSON cleaner.

Every file the package writes (reports, run records, summaries, figures, arrays, checkpoints) goes
through :func:`atomic_write`: the content is written to a temporary file in the target's directory,
flushed and fsynced, given the mode a plain ``open(path, "w")`` would give it (0666 minus the
process umask), renamed over the target, and the directory is fsynced. A reader, or a resumed run,
therefore sees either the old file or the complete new one, never a partial file under the final
name; on failure (a full disk, an exception in the writer) the temporary file is removed and the
error names the target. Temporary files are named ``.<name>.<host>-<pid>.<random>.tmp<suffix>``
(hidden, never mistaken for finished work); one left by a writer that was killed (``kill -9``,
a power cut) is removed by the next write into that directory from the same host, once its
process is gone.

:func:`to_jsonable` is the one JSON cleaner: NumPy scalars and arrays become Python numbers and
lists (NaN and infinities inside arrays included), and every non-finite float becomes ``None``
(strict JSON has no NaN or Infinity).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable, Mapping
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "to_jsonable", "file_mode",
           "remove_stale_temporaries"]


def _umask() -> int:
    """The process umask: read from /proc on Linux (setting it, the portable way to read it, briefly
    changes it for every thread of the process)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` would create a file with: 0o666 minus the current umask."""
    return 0o666 & ~_umask()


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - directories that cannot be opened (some platforms)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname() or "host")[:32]
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")
_swept: set[str] = set()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or cannot tell: keep its file
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Remove the temporary files that writers on this host left in ``directory`` when they were killed
    (their process is gone); returns the names removed. Called once per directory by :func:`atomic_write`."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if m and m.group("host") == _HOST and not _alive(int(m.group("pid"))):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:  # pragma: no cover  (removed meanwhile, or not ours to remove)
                pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any] | Callable[[str], Any], *,
                 to_path: bool = False) -> str:
    """Write ``path`` atomically with ``write``.

    ``write(fh)`` receives a binary file object open on the temporary file; with ``to_path=True``
    it receives the temporary file's path instead (for writers that open the file themselves, such
    as ``Figure.savefig`` or ``torch.save``; the temporary name keeps the target's suffix). Returns
    ``path``. Raises ``OSError`` naming ``path`` when the write fails (the target is untouched).
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    base = os.path.basename(path)
    if d not in _swept:
        _swept.add(d)
        remove_stale_temporaries(d)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{_HOST}-{os.getpid()}.", suffix=f".tmp{os.path.splitext(base)[1]}",
                               dir=d)
    try:
        try:
            if to_path:
                os.close(fd)
                fd = -1
                write(tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            else:
                with os.fdopen(fd, "wb") as fh:
                    fd = -1
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OSError(exc.errno, f"could not write {path}: {reason}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(d)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(o: Any) -> Any:
    """``o`` with NumPy values made Python values and every non-finite float made ``None``.

    Mappings (keys made ``str``), lists, tuples and arrays recurse; ``np.float32``, ``np.int64``,
    ``np.bool_`` become ``float``, ``int``, ``bool``; objects with a ``to_dict()`` method are
    converted through it.
    """
    if o is None or isinstance(o, (str, bool, int)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(o, np.ndarray):
            return to_jsonable(o.tolist())
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return to_jsonable(float(o))
    if hasattr(o, "to_dict") and callable(o.to_dict):
        return to_jsonable(o.to_dict())
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> str:
    """Write ``obj`` as strict JSON (:func:`to_jsonable`: NaN/inf -> null) to ``path`` atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")
