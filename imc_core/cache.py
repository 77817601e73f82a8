"""Content-addressed stage artifacts with atomic writes.

An artifact is a folder ``$IMC_CACHE_DIR/<stage>/<dataset>-<key>/`` where ``key`` hashes the stage name, the stage
config, the keys of the artifacts it consumes and the dataset fingerprint. The folder is built under a temporary name
in the same parent and renamed into place once complete, with a ``DONE`` marker written last, so a killed run never
leaves a torn artifact that a later run would read. Change a matching parameter and the features key is unchanged
(reused); change a mapping parameter and both features and matches are reused.

The ``DONE`` marker's modification time is the artifact's last use: a cache hit touches it. :func:`list_artifacts`
and :func:`prune` (the ``cache`` CLI command) read it to report sizes and remove what no run needs any more; nothing
here removes an artifact on its own.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ImcError, InputError
from .fsutil import atomic_write_json, atomic_write_text, read_only_sqlite, stable_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
DONE = "DONE"
FILES = "files"  # DONE's record of the artifact's files (size, mtime, sha256) at build time
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # never recorded: SQLite makes and removes them as it likes
GRACE_S = 3600.0  # prune never removes an artifact built or used this recently (a run may be reading it)
FINGERPRINTS = "fingerprints"  # memo folder: a dataset's stat fingerprint -> the sha256 of its images' contents
#: the stages the pipeline caches (first folder level); ``cache prune --stage`` also takes any folder found there
STAGES = ("features", "matching", "database", "mapping", "reconstruction")


class CacheError(ImcError, OSError):
    """The cache folder cannot take a new artifact (not writable, disk full); the message names the folder."""


def cache_root() -> Path:
    """``$IMC_CACHE_DIR`` or ``<repo>/data/cache``."""
    return Path(os.environ.get("IMC_CACHE_DIR") or REPO_ROOT / "data" / "cache")


def artifact_key(stage: str, conf: dict[str, Any], inputs: list[str], fingerprint: str) -> str:
    """Cache key of one stage artifact (16 hex)."""
    return stable_hash({"stage": stage, "conf": conf, "inputs": inputs, "fingerprint": fingerprint})


def content_fingerprint(image_dir: str | Path, names: list[str], *, root: Path | None = None) -> str:
    """The fingerprint the artifact keys use: sha256 (hex) over each image's name and the sha256 of its bytes.

    A copy of the data root (new paths, new modification times), or an image touched without being changed, keeps
    its artifacts; an image rewritten with other bytes does not. Reading every image costs about a second per GB,
    so the result is remembered under ``<root>/fingerprints/<stat fingerprint>``, the cheap fingerprint of the
    images' names, sizes and times (:func:`imc_core.data.fingerprint_files`) taken just before they are read: a
    dataset is read again only after one of its files changed time, size or name. It is remembered only when that
    stat fingerprint is the same after the reading (an image edited meanwhile, then put back with its old time,
    would have found the edited bytes' fingerprint). A memo that cannot be written (a read-only cache) is
    skipped; the next run reads the images again.

    Raises:
        InputError: an image cannot be read (it names the file).
    """
    from .data import fingerprint_files

    def stat_fingerprint() -> str:
        try:
            return fingerprint_files(image_dir, names)
        except OSError as e:
            raise InputError(Path(e.filename or image_dir), f"cannot be read ({e.strerror or e})") from None

    before = stat_fingerprint()
    memo = (root or cache_root()) / FINGERPRINTS / before
    try:
        known = memo.read_text().strip()
    except OSError:
        known = ""
    if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
        return known
    h = hashlib.sha256()
    base = Path(image_dir)
    for name in sorted(names):
        try:
            digest = _sha256(base / name)
        except OSError as e:
            raise InputError(base / name, f"cannot be read ({e.strerror or e})") from None
        h.update(f"{name}\t{digest}\n".encode())
    fingerprint = h.hexdigest()
    if stat_fingerprint() == before:
        try:
            atomic_write_text(memo, fingerprint + "\n")
        except OSError:
            pass
    return fingerprint


@dataclass
class Artifact:
    """A finished artifact folder."""

    stage: str
    key: str
    path: Path
    hit: bool  # True when it was already in the cache
    seconds: float  # build time (0 for a hit)
    #: why the cached copy was rebuilt although the cache held it (its ``check`` found it unreadable), else None
    rebuilt_because: str | None = None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def cached(stage: str, dataset: str, key: str, *, root: Path | None = None) -> Path | None:
    """The finished artifact folder for ``key``, or ``None`` when the cache does not hold it (nothing is built)."""
    final = (root or cache_root()) / stage / f"{_safe(dataset)}-{key}"
    if not (final / DONE).is_file():
        return None
    mark_used(final)
    return final


def mark_used(path: Path) -> None:
    """Record a use of the finished artifact ``path``: its ``DONE`` marker's mtime becomes now."""
    try:
        os.utime(path / DONE)
    except OSError:  # read-only or vanished cache: the age then stays the build time
        pass


def get_or_build(
    stage: str,
    dataset: str,
    key: str,
    build: Callable[[Path], None],
    *,
    root: Path | None = None,
    meta: dict[str, Any] | None = None,
    use_cache: bool = True,
    check: Callable[[Path], str | None] | None = None,
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
        check: ``check(folder)`` of a cached artifact: ``None`` when it can be read, else what is wrong with it
            (a file damaged after it was written: disk full, a copy cut short); such an artifact is rebuilt in place
            and the returned one says why (``rebuilt_because``), instead of failing every run that reads it.

    An exception inside ``build`` (including cancellation) removes the temporary folder and leaves any cached
    artifact untouched.
    """
    parent = (root or cache_root()) / stage
    final = parent / f"{_safe(dataset)}-{key}"
    problem = None
    if use_cache and cached(stage, dataset, key, root=root) is not None:
        problem = files_problem(final) or (check(final) if check is not None else None)
        if problem is None:
            restore_marker(final, stage, key, meta)
            return Artifact(stage, key, final, True, 0.0)
        use_cache = False  # replace the damaged copy
    tmp = parent / f".tmp-{_safe(dataset)}-{key}-{uuid.uuid4().hex[:8]}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:  # read-only copy of a cache, a folder of another user, a full disk
        raise CacheError(f"cannot write the {stage} artifact of {dataset} in the cache folder {parent}: "
                         f"{e.strerror or e}. Make it writable, or point IMC_CACHE_DIR at a writable folder "
                         "(a read-only cache still gives the runs what it holds: only a stage it lacks is "
                         "written)") from e
    t0 = time.perf_counter()
    try:
        build(tmp)
        records = file_records(tmp)  # (part of the build's time: seconds for a large features.h5)
        seconds = time.perf_counter() - t0
        (tmp / DONE).write_text(json.dumps({"stage": stage, "key": key, "seconds": seconds, **(meta or {}),
                                            FILES: records}, indent=1, default=str))
        if final.exists():
            if use_cache and (final / DONE).is_file():  # another process finished first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)  # (this run did the work all the same: not a hit)
                return Artifact(stage, key, final, False, seconds)
            # the old copy is renamed away and deleted once the new one is in place: a reader holding the path
            # found no artifact there for as long as the old one took to delete
            replaced = _move_aside(final)
        else:
            replaced = None
        try:
            os.replace(tmp, final)
        except OSError as e:
            # another process published the same key between the check above and this rename: theirs is as new
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (final / DONE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return Artifact(stage, key, final, False, seconds, problem)
        finally:
            if replaced is not None:
                if final.exists():
                    shutil.rmtree(replaced, ignore_errors=True)
                else:  # (the new one could not be put in place, or an interrupt came between: the old one stays)
                    os.replace(replaced, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CacheError(f"the disk that holds the cache folder {parent} is full while writing the {stage} "
                             f"artifact of {dataset} ({e}); free space, run `python -m imc_core cache prune`, or "
                             "point IMC_CACHE_DIR at another disk") from e
        raise
    return Artifact(stage, key, final, False, seconds, problem)


def restore_marker(folder: Path, stage: str, key: str, meta: dict[str, Any] | None) -> None:
    """At a hit on an artifact whose ``DONE`` lost what it said (emptied or damaged; :func:`files_problem` then
    recorded only its files), write back what its build would have written: its inputs are how ``cache prune
    --unused`` knows a verified database or a mapped model belongs to a reconstruction a run names."""
    try:
        current = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return
    if not isinstance(current, dict) or current.get("key") == key:
        return
    try:
        atomic_write_json(folder / DONE, {"stage": stage, "key": key, **(meta or {}), **current})
    except OSError:  # (a read-only cache)
        pass


#: folder of the cache root where each run at work says so (one JSON file per run: its process, its start)
LIVE = ".live"


def register_live_run(run_dir: Path, root: Path | None = None) -> Path | None:
    """Record in the cache that a run is at work, whatever folder it writes to (:func:`live_runs` reads it back;
    ``cache prune`` keeps what such a run built or read since it started: a run outside the runs folders it was
    told about lost its artifacts and its temporary build folder, and died). Returns the record to pass to
    :func:`release_live_run`, or None when the cache cannot be written (a read-only copy: nothing is pruned there).
    """
    from .liveness import process_start

    folder = (root or cache_root()) / LIVE
    record = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, {"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                                   "started": time.time(), "run_dir": str(run_dir), "host": platform.node()})
    except OSError:
        return None
    return record


def release_live_run(record: Path | None) -> None:
    """Remove a record of :func:`register_live_run` (the run has ended)."""
    if record is not None:
        record.unlink(missing_ok=True)


#: how long a record of a run on another machine (a cache shared over a network disk, or with a container) is
#: taken as a run at work: its process cannot be checked from here
OTHER_HOST_LIVE_S = 2 * 86400.0


def live_runs(root: Path | None = None, *, forget_ended: bool = False) -> list[dict[str, Any]]:
    """The runs at work on this cache (:func:`register_live_run`), each ``{"pid", "pid_start", "started",
    "run_dir", "host"}``: on this machine those whose process still runs, on another one those that started in the
    last :data:`OTHER_HOST_LIVE_S`. ``forget_ended``: remove the records of runs that have ended (a killed run's);
    a look that changes nothing (``--dry-run``) leaves them."""
    from .liveness import process_alive

    found = []
    for record in sorted(((root or cache_root()) / LIVE).glob("*.json")):
        try:
            info = json.loads(record.read_text(encoding="utf-8"))
            pid, started = int(info["pid"]), float(info["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # (being written, or not ours: left alone)
        host = info.get("host")
        if isinstance(host, str) and host and host != platform.node():
            alive = time.time() - started < OTHER_HOST_LIVE_S
        else:
            alive = process_alive(pid, Path(str(info.get("run_dir", ""))), started=info.get("pid_start"))
        if alive:
            found.append({**info, "pid": pid, "started": started})
        elif forget_ended:
            record.unlink(missing_ok=True)
    return found


def _move_aside(path: Path) -> Path:
    """Rename the folder ``path`` to a ``.trash-*`` folder beside it (what :func:`prune` clears if left) and return
    that."""
    trash = path.parent / f".trash-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)
    return trash


def _trash(path: Path) -> None:
    """Remove the folder ``path``: renamed away first (a reader never sees it half deleted), then deleted."""
    shutil.rmtree(_move_aside(path), ignore_errors=True)


def drop_artifact(path: Path) -> None:
    """Remove the artifact folder ``path`` (:func:`_trash`); a read-only cache keeps it."""
    try:
        _trash(path)
    except OSError:
        pass


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"size", "mtime_ns", "sha256"}}`` of every file in the artifact ``folder`` but ``DONE``,
    stored in ``DONE`` when the artifact is built (:func:`files_problem` checks them at every hit)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        # (SQLite's side files come and go with its connections: any plain open of database.db removed them)
        if p.name != DONE and p.is_file() and not p.is_symlink() and not p.name.endswith(SQLITE_SIDE_FILES):
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                                     "sha256": _sha256(p)}
    return out


def files_problem(folder: Path) -> str | None:
    """``None`` when every file ``DONE`` recorded at build time is still as it was, else what changed.

    A file of the same size and modification time is taken as unchanged (one ``stat``); one whose time moved (a
    copy of the cache, or an edit) is read and compared with its sha256, and when that still matches the new time
    is recorded, so a copied cache is read once. An artifact built before these records were kept is recorded as it
    is at its first use (where the cache is writable), and checked from then on; so is one whose ``DONE`` is empty or
    does not read as a JSON object. SQLite's side files are left out.
    Files written over in place (an HDF5 file edited with h5py, bytes overwritten) opened fine and were read as
    data: a pair group deleted from ``matches.h5`` read as "no matches", and the run scored above 100.
    """
    try:
        meta = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):  # empty or damaged: nothing to compare with, so recorded now like an old one
        meta = {}  # (it had stayed unchecked at every later use)
    records = meta.get(FILES)
    if not isinstance(records, dict):  # built before the records were kept: recorded now, checked from now on
        try:
            atomic_write_json(folder / DONE, {**meta, FILES: file_records(folder)})
        except OSError:  # (a read-only cache: recorded by a writable one some day)
            pass
        return None
    moved = False
    for rel, rec in records.items():
        if rel.endswith(SQLITE_SIDE_FILES):  # (recorded by the first version of this check)
            continue
        path = folder / rel
        try:
            st = path.stat()
            if st.st_size != rec["size"]:
                return f"{rel} changed after it was built ({rec['size']} bytes then, {st.st_size} now)"
            if st.st_mtime_ns != rec["mtime_ns"]:
                if _sha256(path) != rec["sha256"]:
                    return f"{rel} changed after it was built (its content differs from the checksum taken then)"
                rec["mtime_ns"], moved = st.st_mtime_ns, True
        except FileNotFoundError:
            return f"{rel} is missing"
        except (OSError, KeyError, TypeError) as err:
            return f"{rel} cannot be checked ({err})"
    if moved:  # best effort: a read-only cache is checked again next time
        try:
            atomic_write_json(folder / DONE, meta)
        except OSError:
            pass
    return None


def h5_problem(path: Path) -> str | None:
    """``None`` when the HDF5 file ``path`` opens, else why not (a ``check`` for :func:`get_or_build`)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.keys()
    except OSError as err:
        return f"{path.name} cannot be read ({str(err).splitlines()[0]})"
    return None


def sqlite_problem(path: Path) -> str | None:
    """``None`` when the SQLite database ``path`` (a COLMAP database) opens, lists its tables and is as long as its
    header says, else why not. Cheap (no page but the first is read): SQLite's own ``quick_check`` took 0.5 s on a
    23 MB database, half of a small dataset's re-run."""
    import sqlite3

    if not path.is_file():
        return f"{path.name} is missing"
    if path.stat().st_size == 0:  # (SQLite opens it as a new, empty database: every pair then "failed" to verify)
        return f"{path.name} is empty"
    try:
        # immutable: no lock, no -shm or -wal file made beside it (a read-only cache read "readonly database")
        con = read_only_sqlite(path)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            (pages,) = con.execute("PRAGMA page_count").fetchone()
            (page_size,) = con.execute("PRAGMA page_size").fetchone()
        finally:
            con.close()
    except sqlite3.Error as err:
        return f"{path.name} cannot be read ({err})"
    if missing := sorted(COLMAP_TABLES - tables):
        return f"{path.name} is no COLMAP database (no table {', '.join(missing)})"
    size = path.stat().st_size
    return None if size >= pages * page_size else f"{path.name} is cut short ({size} of {pages * page_size} bytes)"


#: tables every COLMAP database holds (:func:`sqlite_problem`)
COLMAP_TABLES = frozenset({"cameras", "images", "keypoints", "matches", "two_view_geometries"})


def _tree_stats(path: Path) -> tuple[int, float]:
    """``(bytes of the files, newest modification time)`` of ``path`` and everything in it (symlinks not followed;
    a build in progress keeps writing, so its newest time moves)."""
    size, latest = 0, 0.0
    # os.walk skips a folder removed or renamed while it walks (a build renamed into place, a prune's trash
    # removed); Path.rglob raised FileNotFoundError then, and the cache listing failed with it
    entries = [path]
    for folder, dirs, files in os.walk(path):
        entries += [Path(folder, n) for n in (*dirs, *files)]
    for p in entries:
        try:
            st = p.lstat()
        except OSError:  # removed while walking
            continue
        latest = max(latest, st.st_mtime)
        if stat.S_ISREG(st.st_mode):
            size += st.st_size
    return size, latest


@dataclass(frozen=True)
class Leftover:
    """A temporary folder in the cache: a build in progress or one a killed run left (``.tmp-*``), an artifact
    being removed (``.trash-*``), or an artifact folder whose ``DONE`` marker is gone (removed by hand, or a copy
    that lost it): no run reads it, and a run that needs its key builds it anew."""

    path: Path
    size: int  # bytes of every file inside
    last_write: float  # epoch seconds of the newest file in it (a build in progress keeps moving it)

    @property
    def incomplete(self) -> bool:
        """An artifact folder without its ``DONE`` marker (not a ``.tmp-*`` or ``.trash-*`` folder)."""
        return not self.path.name.startswith(".")


def list_leftovers(root: Path | None = None, stages: list[str] | None = None) -> list[Leftover]:
    """The temporary folders under the cache root (of ``stages`` only when given); they are not artifacts, but they
    take disk space until a run finishes or :func:`prune` clears those older than its grace."""
    base = root or cache_root()
    # (an artifact folder without DONE was listed nowhere, so no prune ever freed it: a tester's 1.5 MB mapping)
    unmarked = [p for stage in STAGES if stages is None or stage in stages if (base / stage).is_dir()
                for p in (base / stage).iterdir() if not p.name.startswith(".") and p.is_dir()
                and not (p / DONE).exists()]
    found = [Leftover(p, *_tree_stats(p)) for p in sorted(_in_stages(base, ".tmp-*", stages)
                                                           + _in_stages(base, ".trash-*", stages) + unmarked)
             if p.is_dir()]
    return [t for t in found if t.last_write > 0]  # (0: the folder itself went away while it was measured)


def stale_leftovers(root: Path | None = None, older_than_s: float = 3600,
                    stages: list[str] | None = None) -> list[Leftover]:
    """The leftovers :func:`prune` clears: temporary folders and artifact folders without ``DONE`` nothing was
    written in for ``older_than_s`` (a build still writing keeps its folder) and every ``.trash-*`` folder (a
    removal cut short)."""
    now = time.time()
    return [t for t in list_leftovers(root, stages)
            if t.path.name.startswith(".trash-") or now - t.last_write > older_than_s]


def clean_stale_temps(root: Path | None = None, older_than_s: float = 3600, stages: list[str] | None = None) -> int:
    """Remove temporary folders left by killed runs (nothing written in them for ``older_than_s``), of ``stages``
    only when given; returns how many were removed."""
    stale = [t for t in stale_leftovers(root, older_than_s, stages) if t.path.name.startswith(".tmp-")]
    for t in stale:
        shutil.rmtree(t.path, ignore_errors=True)
    return len(stale)


def _in_stages(base: Path, pattern: str, stages: list[str] | None) -> list[Path]:
    """Entries matching ``pattern`` in every stage folder of ``base``, or in those of ``stages`` when given."""
    return [p for p in base.glob(f"*/{pattern}") if stages is None or p.parent.name in stages]


# ---------------------------------------------------------------------------------------------------------------
# sizes and pruning


@dataclass(frozen=True)
class CacheEntry:
    """One finished artifact as :func:`list_artifacts` finds it."""

    stage: str
    name: str  # folder name, ``<dataset>-<key>``
    path: Path
    size: int  # bytes of every file inside
    last_used: float  # epoch seconds: built or last cache hit (the ``DONE`` marker's mtime)
    dataset: str
    inputs: tuple[str, ...]  # keys of the artifacts it was built from (from ``DONE``; empty when unknown)


def list_artifacts(root: Path | None = None) -> list[CacheEntry]:
    """Every finished artifact under the cache root, by stage then folder name.

    Folders without a ``DONE`` marker (temporaries of running or killed builds) and plain files (the dashboard's
    thumbnails) are not artifacts and are not listed.
    """
    base = root or cache_root()
    entries: list[CacheEntry] = []
    if not base.is_dir():
        return entries
    for stage_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for d in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            done = d / DONE
            try:
                last_used = done.stat().st_mtime
            except OSError:
                continue
            try:
                meta = json.loads(done.read_text())
            except (OSError, ValueError):
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            inputs = meta.get("inputs")
            entries.append(CacheEntry(
                stage=stage_dir.name, name=d.name, path=d, size=_tree_stats(d)[0], last_used=last_used,
                dataset=str(meta.get("dataset") or d.name.rsplit("-", 1)[0]),
                inputs=tuple(str(i) for i in inputs) if isinstance(inputs, list) else ()))
    return entries


#: the stage of a ``referenced`` pair that keeps every artifact of a dataset: ``(EVERY_STAGE, dataset folder name)``
EVERY_STAGE = "*"


def unreferenced(entries: list[CacheEntry], referenced: set[tuple[str, str]]) -> list[CacheEntry]:
    """The entries no run needs: not named by any run (``(stage, folder name)`` pairs, e.g. from
    :func:`imc_core.runs.referenced_artifacts`), except verified databases and mapped models built from the same
    features and matches as a named reconstruction (runs do not name them, but a re-run of a mapping or final
    adjustment change reads them), and every artifact of a dataset named by ``(EVERY_STAGE, dataset)`` (a run that
    does not say which it read)."""
    def dataset(e: CacheEntry) -> str:  # (folder-safe, as ``whole`` names it)
        return e.name.rsplit("-", 1)[0]

    named = [e for e in entries if (e.stage, e.name) in referenced]
    rec_inputs = {e.inputs for e in named if e.stage == "reconstruction" and e.inputs}
    whole = {name for stage, name in referenced if stage == EVERY_STAGE}
    # a ``DONE`` emptied or damaged lost its inputs: a named reconstruction's, or a database's or model's own, and
    # which one was built from which is unknown; so that dataset keeps every database and model (they went, and a
    # re-run of a mapping change mapped again)
    blind = {dataset(e) for e in named if e.stage == "reconstruction" and not e.inputs}
    named_datasets = {dataset(e) for e in named}
    return [e for e in entries if (e.stage, e.name) not in referenced
            and not (e.stage in ("database", "mapping")
                     and (e.inputs in rec_inputs or dataset(e) in blind
                          or (not e.inputs and dataset(e) in named_datasets)))
            and dataset(e) not in whole]


def remove_artifact(entry: CacheEntry) -> None:
    """Remove one artifact: renamed away first (a reader never sees it half deleted), then deleted."""
    _trash(entry.path)


def prune(root: Path | None = None, *, referenced: set[tuple[str, str]] | None = None,
          older_than_s: float | None = None, stages: list[str] | None = None, grace_s: float = GRACE_S,
          dry_run: bool = False, now: float | None = None) -> list[CacheEntry]:
    """Remove artifacts that meet every given criterion; returns them (``dry_run``: only returns them).

    Args:
        root: cache root, default :func:`cache_root`.
        referenced: when given, only artifacts no run needs (:func:`unreferenced`) go.
        older_than_s: when given, only artifacts not built or used for that long go.
        stages: when given, only artifacts of these stages go.
        grace_s: artifacts built or used this recently always stay (a running pipeline may be reading them).
        dry_run: remove nothing.
        now: current time (epoch seconds), for tests.

    At least one of ``referenced`` and ``older_than_s`` is required, so a bare call cannot empty the cache.
    Leftovers of killed builds older than ``grace_s`` are cleared too (not returned).
    """
    if referenced is None and older_than_s is None:
        raise ValueError("say what to prune: unreferenced artifacts, artifacts older than some age, or both")
    base = root or cache_root()
    now = time.time() if now is None else now
    chosen = list_artifacts(base)
    if referenced is not None:  # over every stage: a database is kept for the reconstructions built from it
        chosen = unreferenced(chosen, referenced)
    if stages is not None:  # only narrows what may go
        chosen = [e for e in chosen if e.stage in stages]
    cutoff = now - max(grace_s, older_than_s or 0.0)
    chosen = [e for e in chosen if e.last_used < cutoff]
    if not dry_run:
        for e in chosen:
            remove_artifact(e)
        for leftover in stale_leftovers(base, grace_s, stages):
            shutil.rmtree(leftover.path, ignore_errors=True)
    return chosen
