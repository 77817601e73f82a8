"""Content-addressed stage artifacts with atomic writes.

An artifact is a folder ``$IMC_CACHE_DIR/<stage>/<dataset>-<key>/`` where ``key`` hashes the stage name, the stage
config, the keys of the artifacts it consumes and the dataset fingerprint. The folder is built under a temporary name
in the same parent and renamed into place once complete, with a ``DONE`` marker written last, so a killed run never
leaves a torn artifact that a later run would read. Change a matching parameter and the features key is unchanged
(reused); change a mapping parameter and both features and matches are reused.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fsutil import stable_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
DONE = "DONE"


def cache_root() -> Path:
    """``$IMC_CACHE_DIR`` or ``<repo>/data/cache``."""
    return Path(os.environ.get("IMC_CACHE_DIR") or REPO_ROOT / "data" / "cache")


def artifact_key(stage: str, conf: dict[str, Any], inputs: list[str], fingerprint: str) -> str:
    """Cache key of one stage artifact (16 hex)."""
    return stable_hash({"stage": stage, "conf": conf, "inputs": inputs, "fingerprint": fingerprint})


@dataclass
class Artifact:
    """A finished artifact folder."""

    stage: str
    key: str
    path: Path
    hit: bool  # True when it was already in the cache
    seconds: float  # build time (0 for a hit)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def cached(stage: str, dataset: str, key: str, *, root: Path | None = None) -> Path | None:
    """The finished artifact folder for ``key``, or ``None`` when the cache does not hold it (nothing is built)."""
    final = (root or cache_root()) / stage / f"{_safe(dataset)}-{key}"
    return final if (final / DONE).is_file() else None


def get_or_build(
    stage: str,
    dataset: str,
    key: str,
    build: Callable[[Path], None],
    *,
    root: Path | None = None,
    meta: dict[str, Any] | None = None,
    use_cache: bool = True,
) -> Artifact:
    """Return the artifact folder for ``key``, building it with ``build(tmp_dir)`` when missing.

    Args:
        stage: stage name (first folder level).
        dataset: dataset name (readability of folder names only; the key decides identity).
        key: :func:`artifact_key` output.
        build: writes the artifact's files into the (empty, temporary) folder it receives.
        root: cache root, default :func:`cache_root`.
        meta: JSON-able description stored in ``DONE`` (config, inputs) for humans.
        use_cache: False forces a rebuild into a fresh folder that replaces the cached one.

    An exception inside ``build`` (including cancellation) removes the temporary folder and leaves any cached
    artifact untouched.
    """
    parent = (root or cache_root()) / stage
    final = parent / f"{_safe(dataset)}-{key}"
    if use_cache and cached(stage, dataset, key, root=root) is not None:
        return Artifact(stage, key, final, True, 0.0)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{_safe(dataset)}-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        build(tmp)
        seconds = time.perf_counter() - t0
        (tmp / DONE).write_text(json.dumps({"stage": stage, "key": key, "seconds": seconds, **(meta or {})},
                                           indent=1, default=str))
        if final.exists():
            if use_cache and (final / DONE).is_file():  # another process finished first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return Artifact(stage, key, final, True, 0.0)
            trash = parent / f".trash-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Artifact(stage, key, final, False, seconds)


def clean_stale_temps(root: Path | None = None, older_than_s: float = 3600) -> int:
    """Remove temporary folders left by killed runs; returns how many were removed."""
    base = root or cache_root()
    n = 0
    now = time.time()
    for tmp in base.glob("*/.tmp-*"):
        if now - tmp.stat().st_mtime > older_than_s:
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
    return n
