"""Run directories: create, write, load, list, export and import bundles.

Layout (docs/formats.md): ``run.json`` (status and metadata), ``config.toml``, ``progress.json``, ``submission.csv``,
``scores.json``, ``scenes.csv``, ``per_image.csv``, ``alignments.json``, ``timings.json``, ``log.txt``,
``models/<dataset>/<k>/``. The dashboard only reads these; :mod:`imc_core.pipeline` writes them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import shutil
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from .cache import REPO_ROOT
from .errors import InputError, RunFolderRemoved
from .fsutil import atomic_write_json, atomic_write_text
from .liveness import process_alive, process_start, read_json, run_state

RUN_FILES = ("run.json", "config.toml", "submission.csv", "scores.json", "scenes.csv", "per_image.csv",
             "alignments.json", "timings.json", "log.txt", "progress.json", "pairs_stats.csv")
BUNDLE_REQUIRED = ("run.json", "config.toml")
#: ``run.json`` fields an imported bundle must type correctly when it has them (every reader relies on these)
META_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "created": (str,), "status": (str,), "variant": (str,), "data_root": (str,), "split": (str,),
    "datasets": (list,), "overrides": (list,), "seed": (int, type(None)), "label": (str, type(None)),
    "group": (str, type(None)), "error": (str, type(None)), "warnings": (list, type(None)), "code": (dict, type(None)),
}
BUNDLE_MAX_BYTES = 512 * 1024**2


def runs_root() -> Path:
    """``$IMC_RUNS_DIR`` or ``<repo>/data/runs``."""
    return Path(os.environ.get("IMC_RUNS_DIR") or REPO_ROOT / "data" / "runs")


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    """The code a run is made by, for its ``run.json`` ``code``: imc-lab's ``version``; ``source``, the first 12
    hex of a sha256 over imc_core's Python files and variant files (two edits of the code never share it, inside a
    checkout or not); and, when imc_core is tracked by a git checkout, its ``commit`` and whether imc_core differs
    from it (``dirty``: uncommitted or untracked files). Two runs of one variant made by different code can differ
    for that reason alone (a default changed), which the config cannot show.

    Read afresh on each call (a notebook may edit the code between runs); git missing, failing or refusing (another
    user's checkout) leaves the commit out. Git takes no optional lock, so a run never gets in the way of the user's
    own git commands.
    """
    import hashlib
    import subprocess

    from . import __version__

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted([*package.rglob("*.py"), *(package / "variants").glob("*.toml")]):
        try:
            digest.update(f"{f.relative_to(package).as_posix()}\0".encode() + f.read_bytes())
        except OSError:
            continue
    out: dict[str, Any] = {"version": __version__, "source": digest.hexdigest()[:12]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # (a run from a git hook: its GIT_DIR)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "--no-optional-locks", "-C", str(package), *args], capture_output=True,
                                  text=True, timeout=10, env=env)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # (only a checkout that tracks imc_core: an install inside another repository would name that one's commit)
    if git("ls-files", "--error-unmatch", "__init__.py") is not None and (commit := git("rev-parse", "--short=12",
                                                                                         "HEAD")):
        out["commit"] = commit
        changes = git("status", "--porcelain", "--", ".")
        if changes is not None:
            out["dirty"] = bool(changes)
    return out


def describe_code(meta: dict[str, Any]) -> str | None:
    """``run.json``'s ``code`` as one phrase (``0.1.0 at ad7d13d1e2f3``; ``… with uncommitted changes (source
    1a2b3c4d5e6f)`` when the checkout had edits, ``0.1.0 (source …)`` outside a checkout), None when the run does
    not say (made by an imc-lab from before runs recorded it). Equal phrases mean the same code, as far as the run
    can tell."""
    code = meta.get("code")
    if not isinstance(code, dict) or not code.get("version"):
        return None
    text = str(code["version"])
    if code.get("commit"):
        text += f" at {code['commit']}"
    if code.get("dirty"):
        text += " with uncommitted changes"
    if code.get("source") and (code.get("dirty") or not code.get("commit")):
        text += f" (source {code['source']})"
    return text


def new_run_dir(variant: str, root: Path | None = None) -> Path:
    """Create ``<root>/<YYYYmmdd-HHMMSS>-<variant>-<4 hex>/`` and return it (:func:`make_runs_folder` first)."""
    root = root or runs_root()
    make_runs_folder(root)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{_slug(variant)}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def make_runs_folder(root: Path) -> None:
    """Create the runs folder ``root`` (and its parents) where it is missing.

    Raises:
        InputError: naming ``root``, when it is a file or cannot be made (``import`` and ``add-submission`` ended in
            a traceback where ``run`` said so).
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(root, "the runs folder is not a folder") from None
    except OSError as err:
        raise InputError(root, f"cannot create the runs folder: {err.strerror or err}") from None


#: what a launcher (the dashboard) writes into a run folder before the pipeline starts in it
LAUNCHER_FILES = frozenset({"run.json", "progress.json", "job.json", "job.log", "CANCEL"})
#: the environment variable through which a launcher hands its process the ``launch_token`` of the run folder it
#: prepared (:func:`check_run_dir` accepts such a folder only from that process)
LAUNCH_TOKEN_ENV = "IMC_LAUNCH_TOKEN"
#: statuses of a run whose process may still write into its folder (queued: a launcher's queue will start it)
LIVE_STATUSES = ("running", "queued")
#: every status :func:`list_runs` shows (``stopped`` and ``cancelling`` from :mod:`imc_core.liveness`)
RUN_STATUSES = ("done", "failed", "cancelled", *LIVE_STATUSES, "cancelling", "stopped", "imported-incomplete")


def check_run_dir(path: str | Path) -> bool:
    """Make sure ``path`` can take a new run, before anything is written there.

    Accepted: a path that does not exist yet, an empty folder, or a folder a launcher prepared (only
    :data:`LAUNCHER_FILES`, its ``run.json`` saying ``running`` or ``queued``; when it holds a ``launch_token``,
    only from the process given that token in :data:`LAUNCH_TOKEN_ENV`). A finished run is never overwritten:
    its old scores would pass for the new run's, nor a folder inside a run's folder.

    Returns:
        True for a prepared folder (a failure before the run starts is then recorded in its ``run.json``).

    Raises:
        InputError: ``path`` is a file, holds another run, or holds other files.
    """
    path = Path(path)
    # a run inside another's folder: `runs`, prune and export missed it (below the runs root only, when the folder is
    # in it: a runs root kept inside some run's folder is the researcher's choice, and every run goes there)
    absolute, top = Path(os.path.abspath(path)), Path(os.path.abspath(runs_root()))
    in_runs_root = absolute.is_relative_to(top)
    for parent in absolute.parents:
        if in_runs_root and parent == top:
            break
        if (parent / "run.json").is_file() or (parent / CLAIM_FILE).exists():
            raise InputError(path, f"is inside the run folder {parent}; a run needs a folder of its own")
    if not path.exists():
        return False
    if not path.is_dir():
        raise InputError(path, "exists and is not a folder; the run needs a new folder")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return False
    if CLAIM_FILE in entries:  # (see claim_run_dir)
        raise InputError(path, "another run is being written to this folder; choose a new folder")
    meta = read_json(path / "run.json")
    if meta is None and (path / "run.json").exists():
        meta = {"status": "unreadable run.json"}
    status = meta.get("status", "unknown") if isinstance(meta, dict) else None
    if set(entries) <= LAUNCHER_FILES and status in LIVE_STATUSES:
        token = meta.get("launch_token") if isinstance(meta, dict) else None
        if token is None or os.environ.get(LAUNCH_TOKEN_ENV) == token:
            return True
        # (a `run --out` at a run the dashboard had queued took it over: the queue's group and its run were lost)
        if (state := run_state(path, meta).status) not in LIVE_STATUSES:
            raise InputError(path, f"is a run the dashboard prepared, {state} before it started; remove it (runs rm) "
                                   "or choose a new folder")
        raise InputError(path, f"is a run the dashboard prepared ({status}), which its own process will write; "
                               "choose a new folder")
    if status is not None:
        raise InputError(path, f"already holds a run (status {status}); choose a new folder or remove this one")
    raise InputError(path, f"is not empty ({', '.join(entries[:3])}{', …' if len(entries) > 3 else ''}); "
                           "a run needs a new or empty folder")


#: made with O_EXCL by the process that writes a run folder, removed when it is done (dotted: never exported)
CLAIM_FILE = ".claimed"


def claim_run_dir(path: Path) -> None:
    """Make ``path`` this process's run folder: two runs started at once with one ``--out`` both passed
    :func:`check_run_dir`, then wrote into it together (one printed its score over the other's results).

    Raises:
        InputError: another process has claimed it.
    """
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise InputError(path, "another run is being written to this folder; choose a new folder") from None
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)


def release_run_dir(path: Path) -> None:
    """Undo :func:`claim_run_dir` once the run has ended."""
    (path / CLAIM_FILE).unlink(missing_ok=True)


def record_failure(path: str | Path, error: str, status: str = "failed") -> None:
    """Mark a prepared run folder (:func:`check_run_dir`) ``failed`` (or ``cancelled``) before its run started:
    ``run.json`` keeps the launcher's fields and gets ``status``, the one-line ``error`` and ``finished``;
    ``log.txt`` says why."""
    # (the token served the process that never came; a bundle need not carry it)
    writer = RunWriter.reopen(path, drop=("launch_token",))
    writer.set_status(status, error=error.splitlines()[0] if error else status)
    writer.log(f"{status.upper()} before the run started: {error}")


def _slug(text: str) -> str:
    """A folder name of ASCII letters, digits, ``-`` and ``_`` (what a URL's ``?run=`` carries as it is)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in text)[:40] or "run"


#: the shortest time between two writes of ``progress.json`` (an update in between is written when it is due)
PROGRESS_INTERVAL_S = 0.25


class RunWriter:
    """Writes one run directory; every JSON write is atomic so a reader never sees a torn file."""

    def __init__(self, path: Path, claimed: bool = False) -> None:
        """``claimed``: the folder holds this process's :data:`CLAIM_FILE` (:func:`claim_run_dir`); every write
        then checks that it still does, and raises :class:`~imc_core.errors.RunFolderRemoved` once the folder has
        been removed (the writes made it again, and the run finished "done" there without its config)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._claimed = claimed
        self._meta: dict[str, Any] = {}
        self._progress: dict[str, Any] = {"stage": "", "done": 0, "total": 0, "message": "", "stages": {}}
        self._last_progress_write = 0.0
        self._progress_due: threading.Timer | None = None  # (the write a throttled update still owes)
        self._lock = threading.RLock()  # datasets reconstruct in worker threads (pipeline ``jobs``)

    @classmethod
    def reopen(cls, path: str | Path, drop: tuple[str, ...] = ()) -> RunWriter:
        """A writer of an existing run folder that keeps what its ``run.json`` holds but the keys in ``drop`` (a
        write adds to it)."""
        writer = cls(Path(path))
        meta = read_json(writer.path / "run.json")
        writer._meta = {k: v for k, v in meta.items() if k not in drop} if isinstance(meta, dict) else {}
        return writer

    def _still_there(self) -> None:
        if self._claimed and not (self.path / CLAIM_FILE).exists():
            raise RunFolderRemoved(f"{self.path}: the run folder was removed while the run went on")

    # -- metadata / status
    def write_meta(self, **meta: Any) -> None:
        with self._lock:
            self._still_there()
            self._meta.update(meta)
            atomic_write_json(self.path / "run.json", self._meta)

    def add_warning(self, warning: str) -> None:
        """Append to ``run.json``'s ``warnings`` (shown by the CLI and the dashboard) and to the log."""
        with self._lock:
            self.write_meta(warnings=[*(self._meta.get("warnings") or []), warning])
            self.log(f"WARNING: {warning}")

    def set_status(self, status: str, error: str | None = None) -> None:
        self.write_meta(status=status, error=error, finished=now_iso() if status != "running" else None)

    # -- logs
    def log(self, message: str) -> None:
        self.log_lines([message])

    def log_lines(self, messages: Iterable[str]) -> None:
        """Append lines to ``log.txt`` as one block (another thread's lines do not land in between)."""
        stamp = _dt.datetime.now().strftime('%H:%M:%S')
        text = "".join(f"[{stamp}] {m}\n" for m in messages)
        with self._lock:
            self._still_there()
            with open(self.path / "log.txt", "a", encoding="utf-8") as f:
                f.write(text)

    # -- progress
    def progress(self, stage: str, done: int, total: int, message: str = "", *, cached: bool | None = None,
                 seconds: float | None = None, force: bool = False) -> None:
        with self._lock:
            st = self._progress["stages"].setdefault(stage, {"done": 0, "total": 0, "cached": False, "seconds": None})
            if done != st["done"]:  # when the count last moved: the dashboard's ETA counts down from there
                st["done_at"] = time.time()
            st["done"], st["total"] = done, total
            if cached is not None:
                st["cached"] = cached
            if seconds is not None:
                st["seconds"] = seconds
            if st.get("started") is None:
                st["started"] = time.time()
            if done > 0 and st.get("first_at") is None:  # the first items carry the stage's set-up (model loads)
                st["first_at"], st["first_done"] = time.time(), done
            self._progress.update(stage=stage, done=done, total=total, message=message, updated=time.time())
            wait = PROGRESS_INTERVAL_S - (time.monotonic() - self._last_progress_write)
            if force or done >= total or wait <= 0:
                self._write_progress()
            elif self._progress_due is None:
                # written when due rather than dropped: a stage's start that came right after another stage's end
                # stayed unwritten until its first chunk was done (two minutes of "pairs done" during features)
                self._progress_due = threading.Timer(wait, self._write_due_progress)
                self._progress_due.daemon = True
                self._progress_due.start()

    def _write_progress(self) -> None:
        self._still_there()
        self._last_progress_write = time.monotonic()
        atomic_write_json(self.path / "progress.json", self._progress)

    def _write_due_progress(self) -> None:
        with self._lock:
            self._progress_due = None
            if not self.path.is_dir():  # (removed meanwhile: a write must not make it again)
                return
            try:
                self._write_progress()
            except (RunFolderRemoved, OSError):  # (the run's own next write says so, in its own thread)
                pass

    def write_json(self, name: str, obj: Any) -> None:
        with self._lock:
            self._still_there()
            atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        self._still_there()
        atomic_write_text(self.path / name, text)

    def write_csv(self, name: str, df: pd.DataFrame) -> None:
        self._still_there()
        atomic_write_text(self.path / name, df.to_csv(index=False))

    def cancel_requested(self) -> bool:
        """Whether a cancel was asked for (``CANCEL``); raises RunFolderRemoved once the folder is gone (the
        pipeline polls this between steps, so a removed run stops there)."""
        self._still_there()
        return (self.path / "CANCEL").exists()


def group_conflict(group: str | None, config: dict[str, Any], runs: pd.DataFrame,
                   exclude: Iterable[str] = (), data_root: str | Path | None = None) -> tuple[str, list[str]] | None:
    """When ``group`` already holds runs (rows of :func:`list_runs`, ids in ``exclude`` aside) of another config
    than ``config`` (the seed aside), or on other data: ``(a run's id, the keys that differ)``; None when it holds
    none, or only runs of this config on this data. A group name kept after a parameter change put two experiments
    in one mean ± std. A scored submission (``add-submission``, ``meta.variant = "submission"``) and a pipeline run
    are always of other configs (the key ``meta.variant``); two submissions have no pipeline config to compare.

    Args:
        group: the group name (blank or None: no group).
        config: the new run's config as ``config.toml`` holds it (sections, and ``meta`` with variant and overrides).
        runs: :func:`list_runs` of the folder the run goes to.
        data_root: the new run's data root; a member run of another one is a conflict too, with the key
            ``data_root`` last (Compare scored such a group on what its runs share, and a failed run of another root
            became its first pick; a tester), unless both roots hold the same ground truth (a teammate's copy of the
            data, :func:`same_ground_truth`, which Compare takes as one root).

    Returns:
        The config's keys first, from the first member of another config (its id), then ``data_root`` when a
        member is on other data (its id when no config differs): a member on another root had hidden another
        member's config change.
    """
    import tomllib

    from .analysis import group_config_spread

    group = (group or "").strip()
    if not group or runs.empty or "group" not in runs:
        return None
    skip = set(exclude)
    members = runs[(runs["group"].astype(str) == group) & ~runs["id"].isin(skip)]
    elsewhere = None
    if data_root is not None and "data_root" in members:
        mine = os.path.normpath(str(Path(data_root).resolve()))
        elsewhere = next((str(run_id) for run_id, theirs, path in zip(members["id"], members["data_root"],
                                                                        members["path"], strict=True)
                          if isinstance(theirs, str) and theirs and os.path.normpath(theirs) != mine
                          and not same_ground_truth(Path(path), data_root)), None)
    mine_outside = (config.get("meta") or {}).get("variant") == "submission"
    for run_id, path in zip(members["id"], members["path"], strict=True):
        try:
            theirs = tomllib.loads((Path(path) / "config.toml").read_text())
        except (OSError, ValueError):
            continue
        theirs_outside = (theirs.get("meta") or {}).get("variant") == "submission"
        if theirs_outside != mine_outside:  # (Compare counted a submission as a seed of pipeline runs)
            return str(run_id), ["meta.variant", *(["data_root"] if elsewhere else [])]
        if theirs_outside:
            continue
        spread = group_config_spread({"new": config, str(run_id): theirs})
        if len(spread):
            return str(run_id), [*spread["key"], *(["data_root"] if elsewhere else [])]
        break  # (the members share one config, as this check kept them: the first says it)
    return (elsewhere, ["data_root"]) if elsewhere else None


def same_ground_truth(run_dir: Path, data_root: str | Path) -> bool:
    """Whether the run in ``run_dir`` was scored against the same ground truth as ``data_root`` holds now: its
    ``run.json`` ``gt_hashes`` equal the root's for every dataset they share (at least one). False when either is
    unknown (a test split, a run from before the hashes were kept, a root without labels)."""
    from .analysis import same_ground_truth_hashes
    from .data import DataRoot, ground_truth_hashes
    from .errors import ImcError

    try:
        meta = _read_json(run_dir / "run.json")
        theirs = meta.get("gt_hashes") if isinstance(meta, dict) else None
        if not isinstance(theirs, dict) or not theirs:
            return False
        root = DataRoot(data_root)
        if root.labels is None:
            return False
        shared = sorted(set(map(str, theirs)) & set(root.labels["dataset"].astype(str)))
        mine = ground_truth_hashes(root.labels, root.thresholds or {}, shared)
    except (ImcError, OSError, ValueError):
        return False
    return same_ground_truth_hashes(mine, {str(k): v for k, v in theirs.items()})


def group_clash_warning(group: str | None, config: dict[str, Any], runs_dir: Path,
                        exclude: Iterable[str] = (), data_root: str | Path | None = None) -> str | None:
    """The run warning for a ``group`` of ``runs_dir`` that already holds runs of another config
    (:func:`group_conflict`), or None; advisory: runs beside it that cannot be listed (a ``--out`` in /tmp beside
    folders this user may not enter) never stop a run."""
    if not (group or "").strip():
        return None
    try:
        clash = group_conflict(group, config, list_runs(runs_dir), exclude=exclude, data_root=data_root)
    except Exception:  # noqa: BLE001
        return None
    if clash is None:
        return None
    other, keys = clash
    if keys == ["data_root"]:
        return (f"group {(group or '').strip()} already holds runs on another data root ({other}): Compare averages "
                "a group as the seeds of one experiment, on the datasets its runs share; name a new group unless "
                "that is what you mean")
    config_keys = [k for k in keys if k != "data_root"]
    return (f"group {(group or '').strip()} already holds runs of another config ({other} differs in "
            f"{', '.join(config_keys[:4])}{' …' if len(config_keys) > 4 else ''})"
            f"{', and runs on another data root' if 'data_root' in keys else ''}: Compare averages a group as the "
            "seeds of one experiment; name a new group unless that is what you mean")


def _files_of_a_run(path: Path) -> list[str]:
    """The run files (:data:`RUN_FILES` but run.json) the folder ``path`` holds."""
    return [f for f in RUN_FILES[1:] if (path / f).is_file()] if path.is_dir() else []


def remove_runs(ids: Iterable[str] = (), root: Path | None = None, *, statuses: Iterable[str] = (),
                groups: Iterable[str] = (), force: bool = False, dry_run: bool = False) -> list[Path]:
    """Delete run folders under ``root`` (default runs root): the runs named in ``ids`` and every run whose
    ``run.json`` status is in ``statuses`` (e.g. ``failed``) and whose group is in ``groups`` (either filter alone
    selects by itself; both: the runs that pass both). Cache artifacts stay (``cache prune --unused`` then frees
    those no remaining run needs).

    Args:
        ids: run folder names inside ``root``, or paths to folders directly inside it.
        statuses: statuses to delete in bulk, as :func:`list_runs` shows them (``stopped``: a run that says
            running or queued in ``run.json`` but whose process has ended, :mod:`imc_core.liveness`).
        groups: groups (``run.json`` ``group``) to delete in bulk.
        force: also delete runs whose process still runs (or that cannot be checked: recorded on another host).
        dry_run: return what would go, delete nothing.

    Returns:
        The run folders deleted (or that would be).

    Raises:
        InputError: an id that is not a run folder under ``root``, a group no run of ``root`` has, or a live run
            without ``force`` (nothing is deleted then).
    """
    root = Path(root or runs_root())
    chosen: dict[Path, str] = {}
    for run_id in ids:
        run_id = run_id.rstrip("/")  # a shell's completion of the folder name
        given = Path(run_id)
        if len(given.parts) > 1 and given.resolve().parent == root.resolve():  # a path to the run folder (export
            run_id = given.name  # takes one too)
        path = root / run_id
        if len(given.parts) > 1 and (given / "run.json").is_file() and given.resolve().parent != root.resolve():
            raise InputError(given, f"a run folder outside the runs folder {root}, which `runs rm` removes from "
                                    "(set --root to its folder, or remove it by hand)")
        if run_id in {"", ".", ".."} or Path(run_id).name != run_id or not (
                (path / "run.json").is_file() or _files_of_a_run(path)):  # (`runs` names those without run.json)
            raise InputError(path, "no such run folder")
        chosen[path] = run_id
    wanted, wanted_groups = set(statuses), set(groups)
    if "" in wanted_groups:  # (it must not read as every run without a group)
        raise InputError(root, "a group to remove needs a name")
    seen_groups: set[str] = set()
    if (wanted or wanted_groups) and root.is_dir():
        for p in sorted(root.iterdir()):
            meta = read_json(p / "run.json")
            if not isinstance(meta, dict):
                continue
            group = _text(meta.get("group"))  # (as `runs` lists it: a number written by hand matches its digits)
            seen_groups.add(group)
            if (not wanted_groups or group in wanted_groups) and (not wanted or _status(p, meta) in wanted):
                chosen[p] = p.name
    if unknown := sorted(wanted_groups - seen_groups):  # (a misspelt group removed nothing and said "0 run(s)")
        raise InputError(root, f"no run of group {', '.join(map(repr, unknown))} (groups here: "
                               f"{', '.join(sorted(g for g in seen_groups if g)) or 'none'})")
    if not force:
        for path in chosen:
            meta = read_json(path / "run.json")
            status = run_state(path, meta).status if isinstance(meta, dict) else None
            if status in (*LIVE_STATUSES, "cancelling"):
                others = f", so none of the {len(chosen)} runs chosen is removed" if len(chosen) > 1 else ""
                raise InputError(path, f"run is {status} (its process still runs){others}; stop it first (Ctrl-C "
                                       "where it runs, or Cancel in the dashboard), or force the removal (runs rm "
                                       "--force)")
    out = sorted(chosen)
    if not dry_run:
        for path in out:
            if force:
                _stop_process(path)
            shutil.rmtree(path)
    return out


def _stop_process(path: Path, grace_s: float = 10.0) -> None:
    """End the process of a run still at work on this machine (SIGTERM, then SIGKILL after ``grace_s``) before its
    folder goes: left running, it made the folder again and finished as a run without its config.toml."""
    import signal

    meta = read_json(path / "run.json")
    state = run_state(path, meta if isinstance(meta, dict) else None)
    host = meta.get("host") if isinstance(meta, dict) else None
    if not state.alive or state.pid is None or (isinstance(host, str) and host and host != platform.node()):
        return
    start = process_start(state.pid)

    def alive() -> bool:  # the process itself: run.json says "cancelled" while it still writes its last files
        return process_alive(state.pid, path, started=start) if start is not None else run_state(path).alive

    try:
        os.kill(state.pid, signal.SIGTERM)
    except OSError:
        return
    end = time.monotonic() + grace_s
    while time.monotonic() < end and alive():
        time.sleep(0.1)
    if alive():
        try:
            os.kill(state.pid, signal.SIGKILL)
        except OSError:
            pass


def request_cancel(run_dir: Path) -> None:
    """Ask a running pipeline to stop (it polls for this file between steps)."""
    (Path(run_dir) / "CANCEL").write_text(now_iso())


# ---------------------------------------------------------------------------------------------------------------
# reading


def _read_json(path: Path) -> Any:
    """JSON content of ``path``; None when missing (:func:`imc_core.liveness.read_json`: None when unreadable too).

    Raises:
        InputError: the file cannot be read or is not JSON (not UTF-8 included).
    """
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as err:
        raise InputError(path, f"cannot read JSON: {err}") from None


#: columns of a run's tables that hold names (datasets, scenes, images, clusters): read as written, so that a cluster
#: named "NA" or "None" stays that name (pandas read it as missing, and its images turned from misclustered into
#: unregistered in the Loss and Images tabs); only an empty cell is missing there
NAME_COLUMNS = ("dataset", "scene", "image", "cluster", "associated_cluster", "name0", "name1", "warning")
_MISSING = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
            "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # pandas' defaults, for the other columns


def _read_csv(path: Path) -> pd.DataFrame | None:
    """A run's table (None when absent).

    Raises:
        InputError: the file cannot be read as CSV, or it was cut short: every table a run writes ends with a line
            break, and one cut mid-row read as valid with its last number cut (Compare counted the rows it lost as
            losses; a tester).
    """
    if not path.exists():
        return None
    try:
        with open(path, "rb") as fh:
            if fh.seek(0, os.SEEK_END) and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
                raise InputError(path, "cut short: its last line ends without a line break (a copy or a write cut "
                                       "off), so its last row cannot be trusted")
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    try:
        columns = list(pd.read_csv(path, nrows=0).columns)
        names = [c for c in columns if c in NAME_COLUMNS]
        return pd.read_csv(path, keep_default_na=False, dtype={c: str for c in names},
                           na_values={c: ([""] if c in names else _MISSING) for c in columns})
    except Exception as err:  # pandas raises several types
        raise InputError(path, f"cannot read CSV: {err}") from None


@dataclass
class Run:
    """Lazy view of a run directory (each file is read on first access)."""

    path: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.path.name

    @cached_property
    def meta(self) -> dict[str, Any]:
        if self.path.exists() and not self.path.is_dir():  # (it said "cannot read JSON: Not a directory")
            raise InputError(self.path, "not a run directory (a file, not a folder)")
        meta = _read_json(self.path / "run.json")
        if meta is None and not (self.path / "run.json").is_file():
            raise InputError(self.path / "run.json", "not a run directory (run.json missing)")
        if not isinstance(meta, dict):  # e.g. `null`: it said "run.json missing" of a file that is there
            raise InputError(self.path / "run.json", "not a JSON object")
        return meta

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "unknown"))

    @cached_property
    def config(self) -> dict[str, Any]:
        import tomllib

        p = self.path / "config.toml"
        try:
            return tomllib.loads(p.read_text()) if p.exists() else {}
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as err:
            raise InputError(p, f"cannot read TOML: {err}") from None

    @cached_property
    def scores(self) -> dict[str, Any] | None:
        return _read_json(self.path / "scores.json")

    @cached_property
    def scenes(self) -> pd.DataFrame | None:
        return _read_csv(self.path / "scenes.csv")

    @cached_property
    def per_image(self) -> pd.DataFrame | None:
        return _read_csv(self.path / "per_image.csv")

    @cached_property
    def alignments(self) -> dict[str, Any] | None:
        return _read_json(self.path / "alignments.json")

    @cached_property
    def timings(self) -> dict[str, Any] | None:
        return _read_json(self.path / "timings.json")

    @cached_property
    def pairs_stats(self) -> pd.DataFrame | None:
        return _read_csv(self.path / "pairs_stats.csv")

    @property
    def progress(self) -> dict[str, Any] | None:
        return _read_json(self.path / "progress.json")

    @property
    def log(self) -> str:
        p = self.path / "log.txt"
        return p.read_text(errors="replace") if p.exists() else ""

    @cached_property
    def submission(self) -> pd.DataFrame | None:
        from .submission import read_pose_csv

        p = self.path / "submission.csv"
        return read_pose_csv(p) if p.exists() else None

    def models(self, dataset: str) -> list[Path]:
        base = self.path / "models" / dataset
        return sorted((p for p in base.glob("*") if p.is_dir()), key=lambda p: p.name) if base.exists() else []

    def mtime(self) -> float:
        """Latest modification time of the run's files (cache key for the dashboard)."""
        times = [(self.path / n).stat().st_mtime for n in RUN_FILES if (self.path / n).exists()]
        return max(times, default=0.0)


def load_run(path: str | Path) -> Run:
    """Open a run directory (raises InputError when it is not one)."""
    run = Run(Path(path))
    _ = run.meta
    return run


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run under ``root`` (newest first): id, created, status, variant, datasets, score, mAA,
    clusterness, seconds, seed, config_hash, path, data_root. Folders whose run.json, scores.json or timings.json
    cannot be read are left out and named in ``df.attrs["unreadable"]`` (name → why). A run that says
    running or queued is checked against its process (:func:`imc_core.liveness.run_state`): ``stopped`` when it has
    ended without recording a result."""
    root = root or runs_root()
    rows = []
    unreadable: dict[str, str] = {}
    if root.exists():
        if not root.is_dir():
            raise InputError(root, "the runs folder is not a folder")
        for p in root.iterdir():
            if not (p / "run.json").is_file():
                # a run's other files without its run.json (lost, or not copied): named, not passed over in silence
                if not p.name.startswith(".") and (held := _files_of_a_run(p)):  # (not an import's staging)
                    unreadable[p.name] = f"{p / 'run.json'}: missing (the folder holds a run's {', '.join(held[:3])})"
                continue
            try:
                run = load_run(p)
                meta, scores, timings = run.meta, run.scores, run.timings or {}
            except InputError as err:
                unreadable[p.name] = str(err).splitlines()[0]
                continue
            if scores is not None and not (isinstance(scores, dict) and _number(scores.get("score")) is not None):
                # (listed as a run with blank scores it read as one that was never scored: import refuses it too)
                unreadable[p.name] = f"{p / 'scores.json'}: has no numeric 'score'"
                continue
            scores = scores or {}
            timings = timings if isinstance(timings, dict) else {}
            datasets = meta.get("datasets")
            rows.append({
                "id": p.name, "created": _text(meta.get("created")), "status": _status(p, meta),
                "variant": _text(meta.get("variant")),
                "datasets": ",".join(map(str, datasets)) if isinstance(datasets, list) else _text(datasets),
                "score": _number(scores.get("score")), "mAA": _number(scores.get("mAA")),
                "clusterness": _number(scores.get("clusterness")), "seconds": _number(timings.get("total")),
                "seed": meta_seed(meta),
                "group": _text(meta.get("group")) or None,
                "config_hash": _text(meta.get("config_hash")), "label": _text(meta.get("label")), "path": str(p),
                "data_root": _text(meta.get("data_root")),
            })
    cols = ["id", "created", "status", "variant", "datasets", "score", "mAA", "clusterness", "seconds", "seed",
            "group", "config_hash", "label", "path", "data_root"]
    df = pd.DataFrame(rows, columns=cols)
    # by the moment each run was made: run.json's ISO times carry their UTC offset (a teammate's may differ)
    when = pd.to_datetime(df["created"], errors="coerce", utc=True, format="ISO8601")
    # (ties: the runs of one repeated launch made in one second, by seed, not by their ids' random suffix)
    keys = pd.DataFrame({"when": when, "seed": pd.to_numeric(df["seed"], errors="coerce"), "id": df["id"]})
    order = keys.sort_values(["when", "seed", "id"], ascending=False, kind="stable", na_position="last").index
    df = df.loc[order].reset_index(drop=True)
    df.attrs["unreadable"] = dict(sorted(unreadable.items()))
    return df


def scores_problem(scores: Any) -> str | None:
    """What keeps ``scores`` from being the ``score --json`` schema the pages read (``score``, ``mAA`` and
    ``clusterness`` numbers, overall and per dataset), None when nothing does: an imported run without its
    clusterness was listed with a blank one."""
    if not (isinstance(scores, dict) and _number(scores.get("score")) is not None):
        return "has no numeric 'score'"
    for key in ("mAA", "clusterness"):
        if _number(scores.get(key)) is None:
            return f"has no numeric {key!r}"
    datasets = scores.get("datasets", {})
    if not isinstance(datasets, dict):
        return "'datasets' is not an object"
    for name, values in datasets.items():
        missing = [k for k in ("score", "mAA", "clusterness") if not isinstance(values, dict)
                   or _number(values.get(k)) is None]
        if missing:
            return f"dataset {str(name)[:80]!r} has no numeric {', '.join(map(repr, missing))}"
    return None


def scores_mismatch(scores: dict[str, Any], tol: float = 1e-3) -> str | None:
    """What in ``scores`` (the :func:`scores_problem` schema) the metric could not have written, None when it all
    adds up: each dataset's score is the harmonic mean of its mAA and clusterness, and the overall values are the
    means over the datasets. A bundle whose score was edited (99 beside mAA 53.85 and clusterness 100, which give
    70) imported, and Compare counted it as the same measurement as the run it came from."""
    def harmonic(m: float, c: float) -> float:
        return 0.0 if m + c == 0 else 2 * m * c / (m + c)

    datasets = scores.get("datasets") or {}
    for name, d in datasets.items():
        m, c, sc = (float(d[k]) for k in ("mAA", "clusterness", "score"))
        if abs(sc - harmonic(m, c)) > tol:
            return (f"dataset {str(name)[:80]!r}: score {sc:.4f} is not the harmonic mean of its mAA {m:.4f} and "
                    f"clusterness {c:.4f} ({harmonic(m, c):.4f}), as the metric writes it")
    if datasets:
        for key in ("score", "mAA", "clusterness"):
            mean = sum(float(d[key]) for d in datasets.values()) / len(datasets)
            if abs(float(scores[key]) - mean) > tol:
                return (f"{key} {float(scores[key]):.4f} is not the mean of its datasets' ({mean:.4f}), as the "
                        "metric writes it")
    return None


def meta_seed(meta: dict[str, Any]) -> int | None:
    """The mapper seed of a run: its ``run.json`` ``seed``, or while it has not started (queued, or cancelled
    before it started) the ``reconstruction.seed=`` override its launcher recorded; None when neither says."""
    if _is_int(meta.get("seed")):
        return int(meta["seed"])
    for item in meta.get("overrides") or []:
        if isinstance(item, str) and item.replace(" ", "").startswith("reconstruction.seed="):
            value = item.split("=", 1)[1].strip()
            return int(value) if value.lstrip("-").isdigit() else None
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _status(path: Path, meta: dict[str, Any]) -> str:
    """``run.json``'s status, checked against the process for a run that says running or queued."""
    status = str(meta.get("status", ""))
    return run_state(path, meta).status if status in LIVE_STATUSES else status


def referenced_artifacts(root: Path | None = None) -> set[tuple[str, str]]:
    """``(stage, folder name)`` of every cache artifact a run under ``root`` names in its ``artifacts.json`` (or
    the run ``root`` itself, when it is one: a run written with ``run --out``).

    Names rather than paths, so that runs imported from a teammate (their paths) or written under another
    ``IMC_CACHE_DIR`` still protect the same content-addressed artifacts here.

    A run that read the cache but names nothing (made by an imc-lab from before ``artifacts.json``) keeps every
    artifact of its datasets: ``(imc_core.cache.EVERY_STAGE, dataset folder name)``.

    Raises:
        InputError: ``root`` is not a folder (a mistyped ``--runs-dir`` or ``IMC_RUNS_DIR`` would make every
            artifact look unused), or a run's ``artifacts.json`` cannot be read: what it needs is unknown, so
            nothing may be pruned.
    """
    from .cache import EVERY_STAGE, _safe

    root = root or runs_root()
    found: set[tuple[str, str]] = set()
    if not root.is_dir():
        raise InputError(root, f"runs folder {'not found' if not root.exists() else 'is not a folder'}: cannot "
                               "tell which cache artifacts the runs need (set --runs-dir or IMC_RUNS_DIR)")
    # (a run folder by its run.json too, as prune's check for live runs reads it: a run from before
    # artifacts.json given as --runs-dir was read as a folder of runs, its models/ and previews/, and kept nothing)
    is_run = (root / "artifacts.json").is_file() or (root / "run.json").is_file()
    for p in [root] if is_run else sorted(root.iterdir()):
        f = p / "artifacts.json"
        if not f.is_file():
            found.update((EVERY_STAGE, _safe(ds)) for ds in _datasets_read_from_cache(p))
            continue
        data = _read_json(f)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise InputError(f, "not a {dataset: {stage: path}} object; cannot tell which cache artifacts "
                                "this run needs")
        for stages in data.values():
            for stage, path in stages.items():
                found.add((str(stage), PurePosixPath(str(path).replace("\\", "/")).name))
    return found


def _datasets_read_from_cache(run_dir: Path) -> list[str]:
    """Datasets whose stages ``run_dir``'s ``timings.json`` says came from or went to the cache (``[]`` when it
    has none or cannot be read: such a run needed nothing)."""
    try:
        cache = json.loads((run_dir / "timings.json").read_text()).get("cache")
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(cache, dict):
        return []
    return [str(ds) for ds, stages in cache.items()
            if isinstance(stages, dict) and any(v in ("hit", "miss") for v in stages.values())]


# ---------------------------------------------------------------------------------------------------------------
# bundles


def bundle_problem(run_dir: str | Path) -> InputError | None:
    """Why a teammate's :func:`import_bundle` would refuse ``run_dir``'s bundle (a label with an escape sequence,
    a damaged ``scores.json``: they were exported, then refused at the other end), as the error that names the
    file; None when it would import."""
    run_dir = Path(run_dir)
    if missing := [f for f in BUNDLE_REQUIRED if not (run_dir / f).is_file()]:
        return InputError(run_dir, f"has no {', '.join(missing)}: a teammate's import would refuse its bundle, so "
                                   "none is written")
    try:
        _check_bundle(run_dir)
    except InputError as err:
        return InputError(err.path, f"{err.problem}: a teammate's import would refuse this run's bundle, so none is "
                                    "written", row=err.row)
    return None


def export_bundle(run_dir: str | Path, out_zip: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Zip a run (config, submission, scores, per-image table, logs, COLMAP models, previews) for a teammate.

    Args:
        run_dir: the run folder.
        out_zip: the bundle file (default ``RUN_DIR.zip`` beside the run folder).
        overwrite: replace an existing file there (by default that is an error: it may be another run's bundle).
    """
    run_dir = Path(run_dir)
    load_run(run_dir)
    if (problem := bundle_problem(run_dir)) is not None:
        raise problem
    out_zip = Path(out_zip) if out_zip else run_dir.parent / f"{run_dir.name}.zip"
    if out_zip.is_dir():
        raise InputError(out_zip, "is a folder: name the bundle file (e.g. run.zip)")
    if out_zip.resolve().is_relative_to(run_dir.resolve()):  # (the next export would zip this bundle too)
        raise InputError(out_zip, f"is inside the run folder {run_dir}: write the bundle beside it or elsewhere")
    if out_zip.exists() and not overwrite:
        raise InputError(out_zip, "already exists: name another file, or replace it with --force")
    tmp = out_zip.with_name(f".{out_zip.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(run_dir.rglob("*")):
                if f.is_file() and f.name not in {"CANCEL"} and not f.name.startswith("."):
                    zf.write(f, f"{run_dir.name}/{f.relative_to(run_dir).as_posix()}")
        os.replace(tmp, out_zip)
    except OSError as err:  # name the bundle asked for, not the temporary file beside it
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        where = "its folder does not exist" if not out_zip.parent.is_dir() else (err.strerror or str(err))
        raise InputError(out_zip, f"cannot write the bundle: {where}") from None
    return out_zip


def _same_results(a: Path, b: Path) -> bool:
    """Whether two run folders hold the same config, submission and scores (byte for byte; run.json aside)."""
    if not (a / "run.json").is_file():
        return False
    for name in ("config.toml", "submission.csv", "scores.json"):
        fa, fb = a / name, b / name
        if fa.exists() != fb.exists() or (fa.exists() and fa.read_bytes() != fb.read_bytes()):
            return False
    return True


#: the deepest member path a bundle may hold (a run folder's files lie two or three levels down)
MAX_BUNDLE_DEPTH = 16


def _control_characters(obj: Any, where: str = "") -> str | None:
    """The first field of ``obj`` (nested JSON) whose text holds a control character other than a newline or a
    tab, e.g. an escape sequence; None when there is none."""
    if isinstance(obj, str):
        return where or "a value" if any(ord(c) < 32 and c not in "\n\r\t" or 127 <= ord(c) < 160 for c in obj) \
            else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        if (found := _control_characters(key, where) if isinstance(key, str) else None) is not None:
            return found
        if (found := _control_characters(value, f"{where}[{key!r}]" if where else repr(key))) is not None:
            return found
    return None


def check_run_text(label: str | None, group: str | None) -> None:
    """Refuse a run's ``label`` or ``group`` that holds control characters (an escape sequence, a bell; a newline
    or a tab too, since each is one line): `runs` would print them to a terminal, and a teammate's import refuses
    the run's bundle (:func:`import_bundle`).

    Raises:
        ConfigError: naming the option.
    """
    from .errors import ConfigError

    for option, text in (("--label", label), ("--group", group)):
        # (one line each: a newline or a tab passed, and a group's name cut the error listing the groups at it)
        if text is not None and any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
            raise ConfigError(f"{option} {text!r} holds control characters (a terminal would act on them; a label "
                              "or a group is one line)")


def _plain_name(name: object) -> bool:
    """A dataset name that is one folder name (no separator, not ``.`` or ``..``)."""
    text = str(name)
    return bool(text.strip()) and text not in (".", "..") and not any(c in text for c in "/\\\0")


def _check_table_names(table: pd.DataFrame, path: Path) -> None:
    """A bundle's tables name images and datasets the pages join to the data root's folders: refuse an image name
    that leads out of its dataset's folder (an absolute path showed any file of the machine as a thumbnail) and a
    dataset name that is not a folder name."""
    from .data import check_image_names

    for col in ("image", "name0", "name1"):
        if col in table:
            check_image_names(table.rename(columns={col: "image"})[["image"]].astype(str), path)
    if "dataset" in table:
        _check_dataset_names(table["dataset"].astype(str), path)


def _check_dataset_names(names: Any, path: Path) -> None:
    """Refuse a dataset name that is not one folder name (:func:`_plain_name`), naming ``path``."""
    if bad := [d for d in names if not _plain_name(d)]:
        raise InputError(path, f"dataset name {bad[0]!r} is not a folder name"[:200])


def _check_bundle(staging: Path) -> dict[str, Any]:
    """Validate an unpacked bundle; returns its ``run.json``. Raises InputError naming the file at fault."""
    import tomllib

    from .submission import read_pose_csv

    meta = _read_json(staging / "run.json")
    if not isinstance(meta, dict):
        raise InputError(staging / "run.json", "not a JSON object")
    for key, types in META_TYPES.items():
        if key in meta and (not isinstance(meta[key], types) or isinstance(meta[key], bool)):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise InputError(staging / "run.json", f"{key!r} must be {want}, not {meta[key]!r}"[:200])
    if any(not isinstance(d, str) for d in meta.get("datasets") or []):
        raise InputError(staging / "run.json", "'datasets' must be a list of names")
    if meta.get("status") not in RUN_STATUSES:  # (the pages and `runs rm --status` know these only)
        raise InputError(staging / "run.json", f"'status' must be one of {', '.join(RUN_STATUSES)}, not "
                                               f"{meta.get('status')!r}"[:300])
    try:
        tomllib.loads((staging / "config.toml").read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(staging / "config.toml", f"cannot read TOML: {err}") from None
    scores = _read_json(staging / "scores.json")
    if scores is not None and (problem := scores_problem(scores) or scores_mismatch(scores)):
        raise InputError(staging / "scores.json", problem)
    for name in ("timings.json", "alignments.json", "artifacts.json", "progress.json"):  # optional, objects
        if (content := _read_json(staging / name)) is not None and not isinstance(content, dict):
            raise InputError(staging / name, "not a JSON object")
    if (bad := _control_characters(meta)) is not None:  # (printed by `runs`, they drove the teammate's terminal)
        raise InputError(staging / "run.json", f"{bad} holds control characters (a terminal would act on them)")
    if meta.get("split") not in (None, "train", "test"):
        raise InputError(staging / "run.json", f"'split' must be train or test, not {meta.get('split')!r}"[:200])
    _check_dataset_names(meta.get("datasets") or [], staging / "run.json")
    for name in ("per_image.csv", "scenes.csv", "pairs_stats.csv"):  # optional tables the pages read
        try:
            table = _read_csv(staging / name)
        except InputError:
            if (staging / name).read_text(errors="replace").strip():  # (an empty table is a table)
                raise
            continue
        if table is not None:
            _check_table_names(table, staging / name)
    sub = staging / "submission.csv"
    if sub.is_file():
        read_pose_csv(sub)
    elif meta.get("status") not in ("failed", "cancelled"):  # a run that ended early wrote none
        # (as `runs` says it: a killed run's run.json still reads "running", and the message said so)
        status = run_state(staging, meta).status
        raise InputError(staging, f"not a run bundle: missing submission.csv (status {status!r})")
    return meta


def import_bundle(zip_path: str | Path, root: Path | None = None) -> Path:
    """The run folder of a bundle after :func:`import_run` (imported now, or already here)."""
    return import_run(zip_path, root)[0]


def import_run(zip_path: str | Path, root: Path | None = None) -> tuple[Path, bool]:
    """Validate and unpack a bundle made by :func:`export_bundle` into ``root`` (default runs root); returns the
    run folder and whether it was imported now (False: the bundle's run was already here).

    Every member must sit inside one top folder (no absolute paths, no ``..``, no links), the required files must be
    there and parse (``run.json`` an object whose known fields have their types, ``config.toml`` TOML,
    ``scores.json`` a numeric score, ``submission.csv`` poses; a failed or cancelled run may lack the submission;
    the other JSON files objects and the other tables CSV, where present),
    and the total size is bounded. A damaged member is an InputError naming the bundle and the member. A run that
    says running or queued becomes ``imported-incomplete`` (its process was the teammate's). An existing run with
    the same id is never overwritten: the imported one gets a suffix; when that run already holds the same results
    (the same bundle imported again), it is returned and nothing is copied.
    """
    zip_path = Path(zip_path)
    root = root or runs_root()
    if not zip_path.exists():
        raise InputError(zip_path, "file not found")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(zip_path, f"not a valid zip bundle: {getattr(err, 'strerror', None) or err}") from None
    with zf:
        names = [i for i in zf.infolist() if not i.is_dir()]
        if not names:
            raise InputError(zip_path, "empty bundle")
        tops = set()
        total = 0
        for info in names:
            pp = PurePosixPath(info.filename)
            if pp.is_absolute() or ".." in pp.parts or "\\" in info.filename:
                raise InputError(zip_path, f"unsafe path in bundle: {info.filename!r}")
            if len(pp.parts) > MAX_BUNDLE_DEPTH:  # (2,000 folders deep raised a RecursionError)
                raise InputError(zip_path, f"a member lies {len(pp.parts)} folders deep (a run bundle's lie at most "
                                           f"{MAX_BUNDLE_DEPTH}): {info.filename[:120]!r}…")
            if len(pp.parts) < 2:
                raise InputError(zip_path, f"not a run bundle: {info.filename!r} sits outside a run folder (a bundle "
                                           "holds one run folder, as export and Export bundle write it)")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise InputError(zip_path, f"symbolic link in bundle: {info.filename!r}")
            tops.add(pp.parts[0])
            total += info.file_size
        if len(tops) != 1:
            raise InputError(zip_path, f"bundle must contain exactly one run folder, found {sorted(tops)}")
        if total > BUNDLE_MAX_BYTES:
            raise InputError(zip_path, f"bundle too large when unpacked ({total / 1e6:.0f} MB)")
        top = tops.pop()
        members = {PurePosixPath(i.filename).relative_to(top).as_posix() for i in names}
        missing = [f for f in BUNDLE_REQUIRED if f not in members]
        if missing:
            raise InputError(zip_path, f"not a run bundle: missing {', '.join(missing)}")
        made_root = not root.exists()  # removed again if nothing lands in it
        make_runs_folder(root)
        staging = root / f".import-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            for info in names:
                rel = PurePosixPath(info.filename).relative_to(top)
                target = staging.joinpath(*rel.parts)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                    raise InputError(zip_path, f"damaged bundle: cannot unpack {info.filename}: {err}") from None
            try:  # what it reads names the staging folder: name the bundle's member instead
                meta = _check_bundle(staging)
            except InputError as err:
                raise InputError(zip_path, str(err).replace(str(staging), top)) from None
            # named by the id its run.json holds (a renamed folder made a second copy of a run already here)
            dest_name = _slug(meta["id"]) if isinstance(meta.get("id"), str) and _slug(meta["id"]) else _slug(top)
            for existing in [root / dest_name, *sorted(root.glob(f"{dest_name}-imported-*"))]:
                if _same_results(existing, staging):
                    shutil.rmtree(staging, ignore_errors=True)
                    return existing, False
            if meta.get("status") in LIVE_STATUSES:  # its process ran on the teammate's machine
                meta["status"] = "imported-incomplete"
            dest = root / dest_name
            while dest.exists():
                dest = root / f"{dest_name}-imported-{secrets.token_hex(2)}"
            meta["id"] = dest.name  # the folder's name, as for every run
            meta["imported_from"] = zip_path.name
            meta["imported"] = now_iso()
            atomic_write_json(staging / "run.json", meta)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if made_root and not any(root.iterdir()):  # (a failed import left an empty --root folder behind)
                root.rmdir()
            raise
    return dest, True
