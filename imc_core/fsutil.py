"""Small helpers: atomic writes and stable hashing."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, default=_json_default, allow_nan=True) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_only_sqlite(path: str | Path) -> Any:
    """A ``sqlite3`` connection to ``path`` that never writes: read-only and immutable (no lock, no ``-shm`` or
    ``-wal`` file made or removed beside it; a cached database's recorded checksum stays true)."""
    import sqlite3

    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)


def stable_hash(obj: Any) -> str:
    """sha256 (16 hex) of a JSON-serialisable object with sorted keys: equal configs → equal hashes."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def _umask() -> int:
    """The process umask, read once: reading it means setting it for a moment, which must not happen while other
    threads (COLMAP writing a model in a reconstruction worker) create files."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_umask()
