"""Dashboard helpers: data roots, URL state, cached run loading, thumbnails, config widgets, error boundaries.

Pages stay thin: they lay out widgets and call :mod:`imc_core` (data, runs, analysis, viz) through the cached
loaders here. Everything that does not need Streamlit (config-widget specs, ``--set`` lists, cache-artifact lookup,
thumbnail files) is a plain function so it can be unit-tested and later moved into :mod:`imc_core`.
"""

from __future__ import annotations

import dataclasses
import errno
import datetime as _dt
import hashlib
import inspect
import json
import math
import os
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import streamlit as st

from imc_core.errors import ImcError, InputError
from imc_core.images import decode_reason, image_problem  # (image_problem: the pipeline's own check, re-exported)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO_ROOT / "data" / "synthetic"
#: URL query keys that describe a view (``page`` is the st.navigation url path).
SHARE_KEYS = ("root", "run", "runs", "dataset", "scene", "tab")


# ------------------------------------------------------------------------------------------------------ errors


@contextmanager
def error_boundary(what: str) -> Iterator[None]:
    """Show errors inside the block as readable messages instead of tracebacks.

    ``ImcError`` (bad input, config, missing weights) → one ``st.error`` line; anything else → a short message plus
    the traceback in a collapsed expander. Streamlit's rerun/stop control flow (``BaseException``) passes through.
    """
    try:
        yield
    except ImcError as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        st.error(f"{what}: {md(text)}")  # (an error repeats names from the run or the link: shown as text)
    except Exception as err:  # the page must survive anything
        st.error(f"{what}: unexpected error — {type(err).__name__}: "
                 f"{md(str(err).splitlines()[0]) if str(err) else ''}")
        with st.expander("Details"):
            st.code(traceback.format_exc(), language="text")


def show_figure(name: str, *args: Any, key: str | None = None, on_select: str | None = None,
                selection_mode: str | tuple[str, ...] = "points", post: Callable[[Any], None] | None = None,
                **kwargs: Any) -> Any:
    """Build ``imc_core.viz.<name>(*args, **kwargs)`` and show it; problems become a caption, never a crash.

    ``post`` (optional) adjusts the built figure in place before it is shown (dashboard-only presentation, e.g.
    :func:`fit_3d_view`).

    Returns:
        The ``st.plotly_chart`` return value (the selection state with ``on_select``), or None.
    """
    try:
        from imc_core import viz
    except ImportError:
        st.caption(f"Chart unavailable: imc_core.viz is not installed in this checkout ({name}).")
        return None
    fn = getattr(viz, name, None)
    if fn is None:
        st.caption(f"Chart unavailable: imc_core.viz.{name} does not exist in this version.")
        return None
    try:
        fig = fn(*args, **kwargs)
        if post is not None:
            post(fig)
    except ImcError as err:
        st.warning(f"{name}: {md(err)}")
        return None
    except Exception as err:
        st.warning(f"Could not draw {name}: {type(err).__name__}: {md(err)}")
        with st.expander("Details"):
            st.code(traceback.format_exc(), language="text")
        return None
    if on_select:
        return st.plotly_chart(fig, key=key, on_select=on_select, selection_mode=selection_mode)
    return st.plotly_chart(fig, key=key)


# ------------------------------------------------------------------------------------------------------ data roots


def roots_file() -> Path:
    """Where extra data roots are remembered: ``$IMC_ROOTS_FILE`` or ``data/roots.json``."""
    return Path(os.environ.get("IMC_ROOTS_FILE") or REPO_ROOT / "data" / "roots.json")


def default_root() -> Path:
    """The bundled synthetic benchmark (``$IMC_DEFAULT_ROOT`` overrides it, for tests)."""
    return Path(os.environ.get("IMC_DEFAULT_ROOT") or DEFAULT_DATA_ROOT)


def saved_roots() -> list[str]:
    """The data roots remembered in :func:`roots_file` (none while it does not exist).

    Raises:
        InputError: the file cannot be read, is not JSON, or is not a list of folder paths (named, so that the
            user can fix it: the roots it lists are not shown meanwhile, and it is never overwritten).
    """
    path = roots_file()
    if not path.exists():
        return []
    try:
        extra = json.loads(path.read_text())
    except OSError as err:
        raise InputError(path, f"cannot be read ({err.strerror or err})") from None
    except ValueError as err:
        raise InputError(path, f"not valid JSON ({err}); fix it, or delete it to start a new list") from None
    if not isinstance(extra, list) or not all(isinstance(r, str) for r in extra):
        raise InputError(path, "expected a JSON list of folder paths, e.g. [\"/data/imc25\"]")
    return extra


def roots_problem() -> str | None:
    """Why the remembered data roots cannot be read (one line), or None."""
    try:
        saved_roots()
    except InputError as err:
        return str(err)
    return None


def load_roots() -> list[str]:
    """Known data roots: the default one first, then the remembered ones (none while their file is unreadable:
    :func:`roots_problem` says why)."""
    roots = [str(default_root())]
    try:
        extra = saved_roots()
    except InputError:
        extra = []
    roots += [r for r in extra if r not in roots]
    return roots


def save_roots(roots: list[str]) -> None:
    """Remember the extra roots (the default root is not stored).

    Raises:
        InputError: the file exists but cannot be read: writing would lose the roots it lists.
    """
    from imc_core.fsutil import atomic_write_json

    saved_roots()
    keep = [r for r in dict.fromkeys(roots) if r != str(default_root())]
    atomic_write_json(roots_file(), keep)


def add_root(path: str) -> str:
    """Validate a data root (a folder with ``train/`` or ``test/``) and remember it; returns the absolute path.

    Raises:
        InputError: not a folder, or no ``train/``/``test/`` inside.
    """
    from imc_core.data import DataRoot

    path = path.removeprefix("file://")  # pasted from a file manager or a browser's address bar
    p = Path(path).expanduser()
    p = (p if p.is_absolute() else REPO_ROOT / p).resolve()  # one entry per folder, however it was typed
    root = DataRoot(p)
    if not root.train_datasets() and not root.test_datasets(strict=False):
        raise InputError(p, "no datasets found (expected train/<dataset>/ or test/<dataset>/ folders)"
                         + root.parent_hint())
    roots = load_roots()
    if str(p) not in roots:
        save_roots([*roots, str(p)])
    return str(p)


def remove_root(path: str) -> None:
    """Forget a remembered data root (the default one cannot be removed; :func:`restore_root` undoes it)."""
    save_roots([r for r in load_roots() if r != path])


def restore_root(path: str, index: int) -> None:
    """Remember a root just forgotten again, at its old place and without checking its folder again (an undo
    gives back what was removed, even a root whose datasets have gone since)."""
    roots = [r for r in load_roots() if r != path]
    save_roots([*roots[:index], path, *roots[index:]])


def current_root() -> Path | None:
    """The data root picked in the sidebar (``st.session_state["root"]``)."""
    value = st.session_state.get("root")
    return Path(value) if value else None


#: session key of a data root the sidebar picker takes at the next script run (:func:`follow_root`)
NEXT_ROOT = "_root_next"


def follow_root(root: Path, reason: str) -> None:
    """Make the sidebar's data root ``root`` and run the script again, once per ``reason`` (e.g. a run id): the
    picker is drawn before the page, so it can only take the value at the next run. Nothing happens when ``root``
    is already picked or does not exist here (a teammate's run)."""
    current = current_root()
    if (not root.is_dir() or (current is not None and current.resolve() == root.resolve())
            or st.session_state.get("_root_followed") == reason):
        return
    st.session_state["_root_followed"] = reason
    st.session_state[NEXT_ROOT] = str(root)
    st.rerun()


# ------------------------------------------------------------------------------------------------------ URL state


#: what tables show in a cell without a value (Streamlit's own placeholder is a grey "None", which reads like a value)
NO_VALUE = "—"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def md(text: object) -> str:
    """``text`` (a run's label, a group, a file name: anything a user typed) escaped for ``st.markdown``, so
    that ``*``, ``_``, ``[x](y)``, ``$…$`` and ``:red[…]`` show as typed, not as emphasis, links, maths or colour."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def code(text: object) -> str:
    """``text`` as inline code for ``st.markdown`` (a path, a setting), fenced by more backticks than it holds, so
    that nothing in it (a bundle's ``![x](http://…)``, a backtick) leaves the code span."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if len(fence) > 1 else f"`{text}`"


def register_share(page: str, keys: tuple[str, ...] | list[str], values: dict[str, str] | None = None) -> None:
    """Declare which session keys describe the current view (used by :func:`share_link`); ``values`` replace the
    session's value of a key in the link (the Results page shares the run's own data root, not the sidebar's)."""
    st.session_state["_share_page"] = page
    st.session_state["_share_keys"] = list(keys)
    st.session_state["_share_values"] = dict(values or {})


def share_also(*keys: str) -> None:
    """Add ``keys`` to the view's share link (a section that draws its widgets only sometimes)."""
    st.session_state["_share_keys"] = list(dict.fromkeys([*st.session_state.get("_share_keys", []), *keys]))


def share_query(page: str | None = None, keys: list[str] | None = None) -> str:
    """``page=...&root=...&run=...`` for the current view (lists as repeated keys)."""
    page = page or st.session_state.get("_share_page") or ""
    keys = keys if keys is not None else ["root", *st.session_state.get("_share_keys", [])]
    items: list[tuple[str, str]] = [("page", page)] if page else []
    values = st.session_state.get("_share_values", {})
    for k in dict.fromkeys(keys):
        v = values[k] if k in values else st.session_state.get(k)
        if v is None or v == "" or v == [] or (isinstance(v, str) and v.startswith("(") and v.endswith(")")):
            continue  # unset, or a placeholder option such as "(all scenes)"
        if isinstance(v, (list, tuple)):
            items += [(k, str(x)) for x in v]
        else:
            items.append((k, str(v)))
    return urlencode(items)


def share_link() -> str:
    """Full URL of the current view when the browser told us the app URL, else ``/page?query``."""
    query = share_query()
    url = None
    try:
        url = st.context.url
    except Exception:  # older runtimes / bare mode
        url = None
    page = st.session_state.get("_share_page") or ""
    if url:
        return f"{url}?{query}"
    return f"/{page}?{query}"


def qp_first(name: str) -> str | None:
    """First value of a URL query parameter (None when absent)."""
    values = st.query_params.get_all(name)
    return values[0] if values else None


# ------------------------------------------------------------------------------------------------------ runs


@dataclass
class RunView:
    """Everything the pages show about one run, read once per (run dir, mtime)."""

    id: str
    path: str
    meta: dict[str, Any]
    config: dict[str, Any]
    scores: dict[str, Any] | None
    scenes: pd.DataFrame | None
    per_image: pd.DataFrame | None
    alignments: dict[str, Any] | None
    timings: dict[str, Any] | None
    log: str
    has_submission: bool
    models: dict[str, list[str]] = field(default_factory=dict)
    #: files of the run that could not be read (``name: why``); their parts are None and the tabs that need them say
    #: they have nothing, while the rest of the run still shows
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``run.json``'s status, except that a ``running`` run whose process is gone reads ``stopped`` (or
        ``cancelled``), as on the Run page's job list (:func:`live_status`)."""
        return live_status(str(self.meta.get("status", "unknown")), self.path)

    @property
    def has_centres(self) -> bool:
        """Whether ``per_image.csv`` holds the GT and aligned predicted camera centres (runs since 2026-11-26): the
        3-D view draws them when the data root, and so the GT orientations, is not on this machine."""
        return self.per_image is not None and "gt_cx" in self.per_image

    def no_gt_note(self) -> str:
        """What the 3-D view says when the run's data root (its GT poses) is not on this machine."""
        return (f"Ground-truth poses are not available here (data root {code(self.meta.get('data_root'))} is "
                "missing), "
                + ("so only camera centres are drawn, from the run's per_image.csv: the predicted ones placed by the "
                   "metric's similarity, without orientations or 3-D points." if self.has_centres
                   else "so cameras cannot be drawn."))

    @property
    def outside(self) -> bool:
        """Whether the run was scored from a submission made outside imc-lab (``add-submission``): no stage of
        imc-lab made it, so it has no config, stage times, matches or COLMAP model."""
        from imc_core.ingest import SUBMISSION_VARIANT

        return self.meta.get("variant") == SUBMISSION_VARIANT

    def unreadable(self, file: str) -> bool:
        """Whether the run's ``file`` (e.g. ``config.toml``) is among :attr:`problems`."""
        # each problem reads "<path>[:<line>]: <why>"
        return any(Path(p.split(": ", 1)[0]).name.split(":")[0] == file for p in self.problems)

    @property
    def datasets(self) -> list[str]:
        names = list(self.meta.get("datasets") or [])
        for frame in (self.per_image, self.scenes):
            if frame is not None and "dataset" in frame:
                names += [str(d) for d in frame["dataset"].unique() if str(d) not in names]
        if self.scores:
            names += [d for d in (self.scores.get("datasets") or {}) if d not in names]
        return names

    @property
    def label(self) -> str:
        """Short human name: ``variant · id``."""
        return f"{self.meta.get('variant', '?')} · {self.id}"

    @property
    def data_root(self) -> Path:
        """The run's data root; a relative one (the CLI records what it was given) is tried from the repo root."""
        p = Path(str(self.meta.get("data_root") or ""))
        if not p.is_absolute() and not p.is_dir():
            p = REPO_ROOT / p
        return p


def run_progress(run_dir: str | Path) -> dict[str, Any] | None:
    """``progress.json`` of a run (None when missing or unreadable)."""
    from imc_core.liveness import read_json

    progress = read_json(Path(run_dir) / "progress.json")
    return progress if isinstance(progress, dict) else None


def live_status(status: str, run_dir: str | Path) -> str:
    """A run's status as the job list shows it: ``run.json`` says ``running`` until the pipeline writes its result,
    so a process that died (crash, kill, config error before the pipeline took over) would read ``running``
    forever; :func:`dashboard.jobs.job_status` checks the process and says ``stopped`` / ``cancelled`` instead.
    The same for ``queued`` runs whose queue process died. Other statuses are returned as they are (no file is
    read)."""
    from imc_core.runs import LIVE_STATUSES

    if status not in LIVE_STATUSES:
        return status
    from dashboard.jobs import job_status

    return job_status(Path(run_dir)).status


def resolve_run_dir(run: str) -> Path:
    """A run id (folder name under the runs root) or an absolute run directory (one that holds a run's files) →
    its path.

    Raises:
        InputError: unsafe id or no such folder.
    """
    from imc_core.runs import _files_of_a_run, runs_root

    p = Path(run)
    if not p.is_absolute():
        if Path(run).name != run or run in {"", ".", ".."} or "\\" in run:  # a plain folder name
            raise InputError(None, f"invalid run id {run!r}")
        p = runs_root() / run
    try:
        found = p.is_dir()
        # an absolute folder (a `run --out` elsewhere) must hold a run: a shared link could otherwise tell which
        # folders of this machine exist ("not found" against another error), and the same words serve both
        if found and Path(run).is_absolute() and not (p / "run.json").is_file() and not _files_of_a_run(p):
            found = False
    except OSError as err:
        if err.errno != errno.ENAMETOOLONG:  # (a folder it may not read is not found either: same words)
            raise InputError(p, "run directory not found") from None
        # (a link's 5,000-character id)
        raise InputError(None, f"invalid run id {run[:60]!r}…: {err.strerror}") from None
    if not found:
        raise InputError(p, "run directory not found")
    return p


def run_mtime(path: Path) -> float:
    """Latest modification time of a run's files and of its folder (cache key; cheap stats only): the folder's
    changes when a file is added, removed or replaced (a removed per_image.csv was still shown)."""
    from imc_core.runs import RUN_FILES

    times = []
    for name in (".", *RUN_FILES):
        try:
            times.append((path / name).stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


#: columns without which a run's table is unusable (every tab selects rows by dataset)
_REQUIRED_COLUMNS = {"per_image": ("dataset", "scene", "image"), "scenes": ("dataset", "scene"),
                     "pairs_stats": ("dataset", "name0", "name1")}
#: keys without which scores.json is unusable
_REQUIRED_SCORES = ("score", "mAA", "clusterness")


def _run_part(run: Any, name: str, problems: list[str]) -> Any:
    """``run.<name>``, or None with the reason in ``problems`` when its file cannot be read or lacks what the
    pages need (a damaged per_image.csv made every tab fail with a KeyError, a damaged scores.json the whole page)."""
    file = {"config": "config.toml", "per_image": "per_image.csv", "scenes": "scenes.csv",
            "pairs_stats": "pairs_stats.csv"}.get(name, f"{name}.json")
    try:
        value = getattr(run, name)
    except ImcError as err:  # a file that does not parse (imc_core.runs names it)
        problems.append(str(err).splitlines()[0])
        return None
    if isinstance(value, pd.DataFrame):
        if missing := [c for c in _REQUIRED_COLUMNS.get(name, ()) if c not in value.columns]:
            problems.append(f"{Path(run.path) / file}: no column {', '.join(missing)}")
            return None
    elif value is not None and (not isinstance(value, dict) or (
            name == "scores" and any(k not in value for k in _REQUIRED_SCORES))):
        problems.append(f"{Path(run.path) / file}: not the object the dashboard expects")
        return None
    return value


#: runs whose views stay cached: more than Compare's largest groups (a 76-run group at 64 re-read every run on
#: every click); a view holds no pair table (:func:`pairs_stats`), so each is small
RUN_VIEWS_CACHED = 512


@st.cache_data(max_entries=RUN_VIEWS_CACHED, show_spinner=False)
def _load_run_view(path: str, mtime: float) -> RunView:
    from imc_core.runs import load_run

    run = load_run(path)
    problems: list[str] = []
    parts = {name: _run_part(run, name, problems) for name in ("config", "scores", "scenes", "per_image",
                                                               "alignments", "timings")}
    problems += per_image_gaps(parts["per_image"], parts["scenes"], Path(path) / "per_image.csv")
    models = {}
    base = Path(path) / "models"
    if base.is_dir():
        models = {d.name: [m.name for m in run.models(d.name)] for d in sorted(base.iterdir()) if d.is_dir()}
    return RunView(run.id, str(run.path), dict(run.meta), dict(parts["config"] or {}), parts["scores"],
                   parts["scenes"], parts["per_image"], parts["alignments"], parts["timings"], run.log, (run.path / "submission.csv").exists(), models, problems)


def per_image_gaps(per_image: pd.DataFrame | None, scenes: pd.DataFrame | None, file: Path) -> list[str]:
    """Datasets whose per-image table holds fewer (or more) GT-scene images than ``scenes.csv`` counts, one line
    each: a table cut at a line break reads as valid, and Compare counted the rows it lost as losses."""
    if per_image is None or scenes is None or "n_images" not in scenes:
        return []
    expected = pd.to_numeric(scenes["n_images"], errors="coerce").groupby(scenes["dataset"].astype(str)).sum()
    posed = per_image[per_image["scene"].astype(str) != "outliers"]
    held = posed.groupby(posed["dataset"].astype(str)).size()
    return [f"{file}: holds {int(held.get(ds, 0))} of the {int(n)} ground-truth images of {ds} that scenes.csv "
            "counts (cut short?); what it lacks shows as absent"
            for ds, n in expected.items() if pd.notna(n) and int(held.get(ds, 0)) != int(n)]


@st.cache_data(max_entries=2, show_spinner=False)
def _pairs_table(path: str, mtime: float) -> tuple[pd.DataFrame | None, str | None]:
    from imc_core.runs import load_run

    problems: list[str] = []
    table = _run_part(load_run(path), "pairs_stats", problems)
    if table is not None:
        table["dataset"] = table["dataset"].astype(str)
    return table, (problems[0] if problems else None)


def bundle_problem(path: str | Path) -> str | None:
    """Why a teammate's import would refuse this run's bundle (:func:`imc_core.runs.bundle_problem`), or None;
    read again only when one of the run's files changes (the check parses its tables)."""
    folder = Path(path)
    try:
        signature = tuple(sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in folder.iterdir()
                                 if f.is_file()))
    except OSError:
        signature = ()
    return _bundle_problem(str(folder), signature)


@st.cache_data(max_entries=64, show_spinner=False)
def _bundle_problem(path: str, signature: tuple[tuple[str, int, int], ...]) -> str | None:
    from imc_core.runs import bundle_problem as problem_of

    problem = problem_of(path)
    return None if problem is None else str(problem)


@st.cache_data(max_entries=4, show_spinner=False)
def _pairs_stats(path: str, mtime: float, dataset: str) -> tuple[pd.DataFrame | None, str | None]:
    table, problem = _pairs_table(path, mtime)  # (parsed once per file: a dataset switch only filters)
    if table is not None:
        table = table[table["dataset"] == dataset].reset_index(drop=True)
    return table, problem


def pairs_stats(rv: RunView, dataset: str) -> tuple[pd.DataFrame | None, str | None]:
    """``(rows of the run's pairs_stats.csv for dataset, None)``, ``(None, why it cannot be read)``, or ``(None,
    None)`` when the run has none. Read only by the Pairs tab, and cached apart from the run's view: an exhaustive
    table of a 225-image dataset holds 17,000 pairs per dataset (21 MB in memory for IMC-2025's train set), which
    every cached view of a run carried into every page and session."""
    file = Path(rv.path) / "pairs_stats.csv"
    try:
        mtime = file.stat().st_mtime
    except OSError:
        return None, None
    return _pairs_stats(rv.path, mtime, dataset)


def run_choice(df: pd.DataFrame) -> Callable[[str], str]:
    """``format_func`` of the run pickers: the id (what the URL holds), then the run's label, group and score, so
    that a run among hundreds can be found by typing its label (the pickers listed bare ids)."""
    described: dict[str, str] = {}
    for row in df.to_dict("records"):
        bits = [str(row["id"])]
        for key in ("label", "group"):
            if isinstance(row.get(key), str) and row[key] and row.get("status") != "unreadable":
                bits.append(row[key].replace("\n", " ")[:60])
        score = row.get("score")
        if isinstance(score, (int, float)) and math.isfinite(score):
            bits.append(f"{score:.2f}")
        elif row.get("status") not in (None, "done"):
            bits.append(str(row["status"]))
        described[str(row["id"])] = " · ".join(bits)
    return lambda run_id: described.get(run_id, run_id)


def run_view(run: str) -> RunView:
    """Load a run (cached by directory + mtime). Raises InputError for a missing or unreadable run."""
    p = resolve_run_dir(run)
    return _load_run_view(str(p), run_mtime(p))


def _runs_key(root: Path) -> tuple[tuple[str, float], ...]:
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                out.append((p.name, run_mtime(p)))
    return tuple(sorted(out))


@st.cache_data(max_entries=8, show_spinner=False)
def _runs_table(root: str, key: tuple[tuple[str, float], ...]) -> pd.DataFrame:
    from imc_core.runs import list_runs

    df = list_runs(Path(root))
    extra = [{"id": name, "status": "unreadable", "label": problem, "path": str(Path(root) / name), "created": ""}
             for name, problem in df.attrs["unreadable"].items()]  # run folders whose files do not parse
    if extra:
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    return df


def default_run(runs: pd.DataFrame, root: Path | None) -> str:
    """The run Results opens with when none is asked for: the newest on the sidebar's data root, else the newest
    (taking the newest overall switched a user's data root to another run's on a mere look at Results)."""
    if root is not None and "data_root" in runs:
        here = [str(i) for i, r in zip(runs["id"], runs["data_root"], strict=True)
                if isinstance(r, str) and r and _same_path(r, root)]
        if here:
            return here[0]
    return str(runs["id"].iloc[0])


def made_on(runs: pd.DataFrame, run_id: str, root: Path | None) -> bool:
    """Whether run ``run_id`` of ``runs`` was made on data root ``root`` (True without a root to compare, or when the
    run records none, as an outside bundle may not)."""
    if root is None or "data_root" not in runs:
        return True
    where = runs.loc[runs["id"].astype(str) == str(run_id), "data_root"]
    recorded = str(where.iloc[0]) if len(where) and isinstance(where.iloc[0], str) else ""
    return not recorded or _same_path(recorded, root)


def _same_path(a: str, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def runs_table() -> pd.DataFrame:
    """:func:`imc_core.runs.list_runs` of the runs root (cached on the runs' mtimes), plus unreadable run folders;
    a live run whose process has ended since the table was cached shows :func:`live_status` (``stopped``)."""
    from imc_core.runs import LIVE_STATUSES, runs_root

    root = runs_root()
    df = _runs_table(str(root), _runs_key(root))
    live = df["status"].astype(str).isin((*LIVE_STATUSES, "cancelling")) if "status" in df else None
    if live is not None and live.any():  # liveness is not in the cache key: checked on every call
        df = df.copy()
        df.loc[live, "status"] = [live_status("running", p) for p in df.loc[live, "path"]]
    return df


def blank_text_cells(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with None / nan in text columns shown as empty cells instead of Streamlit's "None" (text columns: of
    object or string dtype, or empty ones, which CSV readers type as float). Numbers keep their nan (sorting stays
    numeric; Streamlit draws a missing number as a grey "None" whatever the Styler says)."""
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col) or (len(out) and col.isna().all()):
            out[c] = out[c].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else v)
    return out


def short_root(path: object) -> str:
    """A data root as a history table shows it: its last two folders (``datasets/ets``), empty when unknown."""
    text = "" if path is None or (isinstance(path, float) and math.isnan(path)) else str(path).strip()
    if not text:
        return ""
    parts = Path(text).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else text


def history_frame(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The run history as shown: ``columns`` (those present), ``created`` as ``YYYY-MM-DD HH:MM:SS`` in this machine's
    time zone, blank text cells instead of None; a launch of every dataset that ended before its pipeline named
    them (cancelled while queued) says "(every dataset)" where its cell was blank."""
    out = blank_text_cells(df[[c for c in columns if c in df.columns]])
    if "datasets" in out and "status" in df:
        unnamed = (out["datasets"].astype(str) == "") & (df["status"].astype(str) != "done")
        out.loc[unnamed, "datasets"] = "(every dataset)"
    if "created" in out:
        # in this machine's time zone: a teammate's run records its own UTC offset
        when = pd.to_datetime(out["created"], errors="coerce", utc=True, format="ISO8601")
        local = when.dt.tz_convert(_dt.datetime.now().astimezone().tzinfo).dt.strftime("%Y-%m-%d %H:%M:%S")
        out["created"] = local.where(when.notna(), out["created"].astype(str).str.slice(0, 19))
    return out


# ------------------------------------------------------------------------------------------------------ 3-D views


def submission_summary(rv: RunView) -> pd.DataFrame | None:
    """Per-dataset summary of a run's submission (:func:`imc_core.analysis.submission_summary`); None without
    a readable submission.csv."""
    from imc_core.analysis import submission_summary as summarize

    try:
        sub = run_submission(rv)
    except InputError:
        return None
    return None if sub is None else summarize(sub)


@st.cache_data(max_entries=16, show_spinner=False)
def _submission(path: str, mtime: float) -> pd.DataFrame | None:
    from imc_core.submission import read_pose_csv

    p = Path(path) / "submission.csv"
    return read_pose_csv(p) if p.exists() else None


def run_submission(rv: RunView) -> pd.DataFrame | None:
    """The run's ``submission.csv`` as a pose frame (cached while the run folder is unchanged), None without one."""
    return _submission(rv.path, run_mtime(Path(rv.path)))


def model_points(model: Path) -> np.ndarray:
    """Up to 20,000 3-D points of the COLMAP model in ``model`` (cached per folder)."""
    return _model_points(str(model))


@st.cache_data(max_entries=16, show_spinner=False)
def _model_points(model_dir: str, max_points: int = 20000) -> np.ndarray:
    import pycolmap

    rec = pycolmap.Reconstruction(model_dir)
    xyz = np.array([p.xyz for p in rec.points3D.values()], dtype=float).reshape(-1, 3)
    if len(xyz) > max_points:
        xyz = xyz[np.random.default_rng(0).choice(len(xyz), max_points, replace=False)]
    return xyz


def fit_3d_view(fig: Any, height: int = 600, distance: float = 1.0) -> None:
    """Keep a 3-D figure's true proportions but fit the whole scene in view.

    Plotly's ``aspectmode="data"`` scales the axes so that their ratios' product is 1: an elongated scene gets an
    axis of ratio ≫ 1, which the default camera eye (1.25, 1.25, 1.25) sits inside of, cutting cameras off. Here the
    ratios follow the data ranges (``aspectmode="manual"``) scaled so that the box's diagonal is the default cube's
    (√3): a cube-like scene looks as before, an elongated one fills the view without overflowing it.

    Args:
        fig: a ``plotly.graph_objects.Figure`` with ``scatter3d`` traces (changed in place).
        height: figure height in pixels.
        distance: the camera's distance as a multiple of Plotly's default eye (1.25, 1.25, 1.25); small views need
            more, or the box's near corner, its tick labels and axis titles fall outside the frame.
    """
    ranges = []
    for axis in ("x", "y", "z"):
        values = [np.asarray(getattr(t, axis), dtype=float) for t in fig.data
                  if getattr(t, "type", "") == "scatter3d" and getattr(t, axis, None) is not None]
        flat = np.concatenate([v.ravel() for v in values]) if values else np.empty(0)
        flat = flat[np.isfinite(flat)]
        ranges.append(float(flat.max() - flat.min()) if flat.size else 0.0)
    fig.update_layout(height=height)
    if distance != 1.0:
        eye = 1.25 * distance
        fig.update_layout(scene_camera={"eye": {"x": eye, "y": eye, "z": eye}})
    longest = max(ranges)
    if longest > 0:
        rel = np.maximum(np.asarray(ranges) / longest, 0.05)  # a flat axis keeps a visible thickness
        rel *= np.sqrt(3.0) / np.linalg.norm(rel)
        fig.update_layout(scene={"aspectmode": "manual",
                                 "aspectratio": {axis: float(r) for axis, r in zip("xyz", rel, strict=True)}})


def _legend_below(fig: Any) -> None:
    """Compact layout for side-by-side 3-D views: legend under the plot instead of beside it."""
    fit_3d_view(fig, height=600, distance=1.3)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0),
                      margin=dict(l=0, r=0, t=40, b=0))


def cameras_3d(rv: RunView, dataset: str, scene: str, key: str, with_points: bool = False,
               compact: bool = False, by_passes: bool = False) -> None:
    """GT frustums vs the associated cluster's cameras aligned into the GT frame (viz.camera_frustums), coloured
    by their error under that alignment or, ``by_passes``, by the thresholds each passes (viz.thresholds_passed)."""
    labels = root_labels(rv.data_root)
    entry = ((rv.alignments or {}).get(dataset) or {}).get(scene)
    thresholds = (entry or {}).get("thresholds")
    if labels is None:  # e.g. a teammate's bundle: the run's own per_image.csv still holds both centres
        if not rv.has_centres:
            st.info(rv.no_gt_note())
            return
        rows = rv.per_image[(rv.per_image["dataset"].astype(str) == dataset)
                            & (rv.per_image["scene"].astype(str) == scene)]
        st.caption(f"GT scene **{md(scene)}** ↔ cluster **{md((entry or {}).get('cluster') or 'none')}**")
        show_figure("camera_centres", rows, thresholds=thresholds, title=f"{dataset} / {scene}", key=key,
                    by_passes=by_passes, post=_legend_below if compact else fit_3d_view)
        return
    gt = labels[(labels["dataset"].astype(str) == dataset) & (labels["scene"].astype(str) == scene)]
    sub = run_submission(rv)
    pred = None
    cluster = (entry or {}).get("cluster") or ""
    if sub is not None and cluster:
        pred = sub[(sub["dataset"].astype(str) == dataset) & (sub["scene"].astype(str) == cluster)]
    errors = passes = None
    if rv.per_image is not None and "error" in rv.per_image:
        pi = rv.per_image[(rv.per_image["dataset"].astype(str) == dataset)
                          & (rv.per_image["scene"].astype(str) == scene)]
        errors = pd.to_numeric(pi.set_index("image")["error"], errors="coerce")
        if by_passes and thresholds:
            from imc_core.viz import thresholds_passed

            passes = thresholds_passed(pi, thresholds)
    points = None
    if with_points and cluster.startswith("cluster"):
        model = Path(rv.path) / "models" / dataset / cluster.removeprefix("cluster")
        if (model / "points3D.bin").exists() or (model / "points3D.txt").exists():
            points = model_points(model)
        else:
            st.caption("No COLMAP model saved for this cluster.")
    st.caption(f"GT scene **{md(scene)}** ↔ cluster **{md(cluster or 'none')}**")
    show_figure("camera_frustums", gt, pred, alignment=entry, errors=errors, thresholds=thresholds, passes=passes,
                points=points, title=f"{dataset} / {scene}", key=key, post=_legend_below if compact else fit_3d_view)


# ------------------------------------------------------------------------------------------------------ data


@st.cache_data(max_entries=16, show_spinner=False)
def _summary(root: str, key: tuple[float, ...]) -> pd.DataFrame:
    from imc_core.data import summarize

    return summarize(root)


def root_summary(root: Path) -> pd.DataFrame:
    """:func:`imc_core.data.summarize` cached on the mtimes of the root's label files and folders, each dataset
    folder's included (an image added or removed there changes the counts)."""
    folders = [root, root / "train", root / "test"]
    for split in folders[1:]:
        try:
            folders += sorted(p for p in split.iterdir() if p.is_dir())
        except OSError:
            pass
    key = tuple(_mtime(p) for p in (*folders, root / "train_labels.csv", root / "train_thresholds.csv",
                                    root / "sample_submission.csv"))
    return _summary(str(root), key)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(max_entries=32, show_spinner=False)
def _dataset_scenes(root: str, name: str, split: str, key: tuple[float, ...]) -> tuple[str, dict[str, list[str]]]:
    from imc_core.data import DataRoot

    dr = DataRoot(root)
    labels = dr.labels if split == "train" else None
    if labels is not None and (rows := labels[labels["dataset"] == name]).shape[0]:
        # straight from the labels: a labelled image missing on disk is shown as such (load_dataset refuses it,
        # as the pipeline must, and the whole dataset vanished behind that one error)
        scenes = {str(sc): imgs.tolist() for sc, imgs in rows.groupby("scene", sort=False)["image"]}
        return str(dr.path / "train" / name), scenes
    ds = dr.load_dataset(name, split)
    scenes = ds.scenes() or {"(no labels)": list(ds.images)}
    return str(ds.image_dir), scenes


def dataset_scenes(root: Path, name: str, split: str = "train") -> tuple[Path, dict[str, list[str]]]:
    """Image folder and GT scene → images of one dataset (``{"(no labels)": all}`` without labels)."""
    key = tuple(_mtime(p) for p in (root / split / name, root / "train_labels.csv", root / "sample_submission.csv"))
    image_dir, scenes = _dataset_scenes(str(root), name, split, key)
    return Path(image_dir), scenes


@st.cache_data(max_entries=8, show_spinner=False)
def _labels(root: str, key: float) -> pd.DataFrame | None:
    from imc_core.data import DataRoot

    return DataRoot(root).labels


def root_labels(root: str | Path) -> pd.DataFrame | None:
    """GT pose frame of a data root (None when the root or its labels are missing)."""
    p = Path(root)
    if not (p / "train_labels.csv").is_file():
        return None
    return _labels(str(p), _mtime(p / "train_labels.csv"))


def gt_hashes(rv: RunView) -> dict[str, str] | None:
    """A run's ground-truth hash per scored dataset (``run.json`` ``gt_hashes``). Runs made before runs recorded
    them get them from their data root when it is still here (its ground truth now); None when neither exists."""
    if rv.meta.get("gt_hashes"):
        return dict(rv.meta["gt_hashes"])
    datasets = sorted(str(d) for d in ((rv.scores or {}).get("datasets") or {}))
    root = Path(rv.data_root)
    if not datasets or not (root / "train_labels.csv").is_file():
        return None
    stamp = max(_mtime(root / "train_labels.csv"), _mtime(root / "train_thresholds.csv"))
    return _root_gt_hashes(str(root), stamp, tuple(datasets))


@st.cache_data(show_spinner=False, max_entries=64)
def _root_gt_hashes(root: str, mtime: float, datasets: tuple[str, ...]) -> dict[str, str] | None:
    from imc_core.data import DataRoot, ground_truth_hashes
    from imc_core.errors import ImcError

    try:
        r = DataRoot(root)
        return ground_truth_hashes(r.labels, r.thresholds or {}, list(datasets))
    except (ImcError, OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------------------- cache


@st.cache_data(ttl=60, show_spinner=False)
def cache_summary() -> str:
    """One line on the stage cache (artifacts, size, where), refreshed at most once a minute."""
    from imc_core.cache import cache_root, list_artifacts, list_leftovers

    entries = list_artifacts()
    size = sum(e.size for e in entries) / 1024**2
    temps = list_leftovers() if cache_root().is_dir() else []
    temp = (f" (and {len(temps)} temporary folder{'' if len(temps) == 1 else 's'}, "
            f"{sum(t.size for t in temps) / 1024**2:,.1f} MB: builds at work or left by killed runs)") if temps else ""
    return (f"The stage cache holds {len(entries)} artifact{'' if len(entries) == 1 else 's'}, {size:,.1f} MB{temp}, "
            f"in {cache_root()}. "
            "`python -m imc_core cache prune --unused` frees what no run needs.")


# ------------------------------------------------------------------------------------------------------ thumbnails


def thumbs_dir() -> Path:
    """``<cache root>/thumbs`` (``data/cache/thumbs`` by default)."""
    from imc_core.cache import cache_root

    return cache_root() / "thumbs"


def make_thumbnail(image: Path, size: int = 192, out_dir: Path | None = None) -> Path:
    """A small JPEG of ``image`` (longest side ``size``), written once under :func:`thumbs_dir`.

    The file name hashes the image path, its size/mtime and ``size``, so an edited image gets a new thumbnail.

    Raises:
        InputError: the image cannot be read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from imc_core.fsutil import atomic_write_bytes
    from imc_core.images import decode_reason, rgb_array

    st_ = image.stat()
    key = hashlib.sha1(f"{image.resolve()}|{st_.st_size}|{st_.st_mtime_ns}|{size}".encode()).hexdigest()[:20]
    out = (out_dir or thumbs_dir()) / f"{key}.jpg"
    if out.exists():
        return out
    try:
        with Image.open(image) as im:
            im.draft("RGB", (size * 2, size * 2))  # JPEGs decode at a reduced scale
            im = ImageOps.exif_transpose(im)
            # imc_core's conversion: 16-bit and float images are scaled (PIL's convert("RGB") clips them to white)
            im = Image.fromarray(rgb_array(im))
            im.thumbnail((size, size))
            import io

            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # (PIL reports some broken PNG chunks as SyntaxError)
        raise InputError(image, f"cannot read image: {decode_reason(err, image)}") from None
    atomic_write_bytes(out, buf.getvalue())
    return out


@st.cache_data(max_entries=64, show_spinner=False)
def _image_problems(image_dir: str, names: tuple[str, ...], key: tuple[tuple[int, int], ...]) -> dict[str, str]:
    out = {}
    for name in names:
        why = image_problem(Path(image_dir) / name)
        if why:
            out[name] = why
    return out


def image_problems(image_dir: Path, names: list[str]) -> dict[str, str]:
    """``{image: "missing" | "unreadable: ..."}`` for the images of a folder that cannot be shown or used, cached
    on every file's size and modification time (an image replaced in place is checked again)."""
    key = []
    for name in names:
        try:
            st_ = (image_dir / name).stat()
            key.append((st_.st_size, st_.st_mtime_ns))
        except OSError:
            key.append((-1, -1))
    return _image_problems(str(image_dir), tuple(names), tuple(key))


@st.cache_data(max_entries=4096, show_spinner=False)
def _thumb(path: str, mtime: float, size: int) -> tuple[str | None, str | None]:
    return thumbnail_or_reason(Path(path), size)


def thumbnail_or_reason(path: Path, size: int = 192, out_dir: Path | None = None) -> tuple[str | None, str | None]:
    """``(thumbnail path, None)``, or ``(None, why)`` with why ``"missing"`` (no such file) or ``"unreadable: ..."``
    (the file is there but cannot be decoded; the decoder's reason follows)."""
    if not path.is_file():
        return None, "missing"
    try:
        return str(make_thumbnail(path, size, out_dir)), None
    except InputError as err:
        reason = str(getattr(err, "problem", "") or err).splitlines()[0].removeprefix("cannot read image: ")
        return None, image_problem(path) or f"unreadable: {decode_reason(reason, path)}"  # the checks' own words
    except (ImcError, OSError) as err:
        return None, image_problem(path) or f"unreadable: {decode_reason(err, path)}"


def thumbnail(path: Path, size: int = 192) -> str | None:
    """Cached thumbnail path (None when the image is missing or unreadable)."""
    return _thumb(str(path), _mtime(path), size)[0]


def image_in(folder: Path, name: str) -> Path | None:
    """``folder / name``, or None when ``name`` leads out of ``folder`` (absolute, or with a ``..`` part): a run's
    tables name images relative to their dataset's folder, and one copied by hand could name any file."""
    from imc_core.data import leads_out_of_folder

    return None if leads_out_of_folder(name) else folder / name


def image_grid(items: list[tuple[Path, str]], columns: int = 6, size: int = 192) -> dict[str, list[str]]:
    """Thumbnails with captions in a grid; an image that cannot be shown is named with the reason instead.

    Returns:
        ``{"missing": [captions], "unreadable": [captions]}`` of the items not drawn.
    """
    problems: dict[str, list[str]] = {"missing": [], "unreadable": []}
    if not items:
        return problems
    cols = st.columns(columns)
    for i, (path, caption) in enumerate(items):
        with cols[i % columns]:
            thumb, why = _thumb(str(path), _mtime(path), size)
            # (captions are markdown: an image name from a teammate's bundle is shown as written, never as markup)
            if thumb:
                st.image(thumb, caption=md(caption), width="stretch")
            elif why == "missing":
                problems["missing"].append(caption)
                st.caption(f"{md(caption)} (image not found)")
            else:
                problems["unreadable"].append(caption)
                st.caption(f"{md(caption)} ({md(why)})")
    return problems


# ------------------------------------------------------------------------------------------------------ config widgets


@dataclass
class FieldSpec:
    """How to show one config key as a widget.

    Attributes:
        section: config section (``features``).
        name: key inside the section (``max_keypoints``).
        kind: ``int``, ``float``, ``bool``, ``choice``, ``str`` or ``list``.
        default: the variant's value.
        choices: known values for ``choice`` (a closed list when the code documents it, else values seen in variants).
        closed: True when ``choices`` come from the code (:data:`CODE_CHOICES`, else a ``# a | b | c`` comment), so
            no other value makes sense.
        help: the comment next to the field in the code.
    """

    section: str
    name: str
    kind: str
    default: Any
    choices: list[str] = field(default_factory=list)
    closed: bool = False
    help: str = ""

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


_FIELD_COMMENT_RE = re.compile(r"^\s*(\w+)\s*:[^=#]*=[^#]*#\s*(.*?)\s*$")


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from the ``name: type = default  # comment`` lines of a dataclass's source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in src.splitlines():
        m = _FIELD_COMMENT_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def comment_choices(comment: str) -> list[str]:
    """``"incremental | global (GLOMAP)"`` → ``["incremental", "global"]``; no ``|`` → ``[]``."""
    if "|" not in comment:
        return []
    head = comment.split(":", 1)[1] if ":" in comment.split("|", 1)[0] else comment
    out = []
    for part in head.split("|"):
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)", part)
        if m:
            out.append(m.group(1))
    return out


#: ``section.key`` → (module, attribute) of the tuple the code validates the key against; checked before the field
#: comments, so a key whose comment lists no ``|`` alternatives (``clustering.method``: "none") still gets a dropdown.
#: A literal tuple stands for a check written inline (``ClusteringConfig.__post_init__`` accepts only ``"none"``).
CODE_CHOICES: dict[str, tuple[str, str] | tuple[str, ...]] = {
    "global_descriptors.device": ("imc_core.device", "CHOICES"),
    "clustering.method": ("none",),
    "pairs.method": ("imc_core.stages.pairs", "METHODS"),
    "features.method": ("imc_core.stages.features", "METHODS"),
    "features.model": ("imc_core.stages.features", "ALIKED_MODELS"),
    "features.device": ("imc_core.device", "CHOICES"),
    "matching.method": ("imc_core.stages.matching", "METHODS"),
    "matching.device": ("imc_core.device", "CHOICES"),
    "reconstruction.mapper": ("imc_core.stages.reconstruction", "MAPPERS"),
    "reconstruction.camera_model": ("imc_core.stages.reconstruction", "CAMERA_MODELS"),
    "reconstruction.camera_mode": ("imc_core.stages.reconstruction", "CAMERA_MODES"),
    "reconstruction.verify": ("imc_core.stages.reconstruction", "VERIFIERS"),
    "reconstruction.refine_loss": ("imc_core.stages.reconstruction", "REFINE_LOSSES"),
}


def code_choices(key: str) -> list[str]:
    """The closed set of values the code accepts for ``section.key`` (:data:`CODE_CHOICES`), ``[]`` when unknown.

    A constant that went missing (renamed in :mod:`imc_core`) gives ``[]`` so the field falls back to its comment.
    """
    import importlib

    entry = CODE_CHOICES.get(key)
    if not entry:
        return []
    if len(entry) == 2 and entry[0].startswith("imc_core."):
        try:
            values = getattr(importlib.import_module(entry[0]), entry[1])
        except (ImportError, AttributeError):
            return []
        return [str(v) for v in values]
    return [str(v) for v in entry]


def validate_config(variant: str, overrides: list[str]) -> str | None:
    """The pipeline's own config validation, in process: None when ``variant`` + ``overrides`` resolve, else the
    one-line :class:`~imc_core.errors.ConfigError` message (what ``python -m imc_core run`` would exit 2 with)."""
    from imc_core.config import resolve_config

    try:
        resolve_config(variant, list(overrides))
    except ImcError as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def group_conflict(group: str, variant: str, overrides: list[str],
                   data_root: Path | None = None) -> tuple[str, list[str]] | None:
    """:func:`imc_core.runs.group_conflict` for a launch of ``variant`` + ``overrides`` on ``data_root`` from the Run
    page (None while the config is invalid: the page says why)."""
    import tomllib

    from imc_core.config import dump_config, resolve_config
    from imc_core.runs import group_conflict as conflict

    if not group.strip():
        return None
    try:
        mine = tomllib.loads(dump_config(resolve_config(variant, list(overrides))))
    except ImcError:
        return None
    return conflict(group, mine, runs_table(), data_root=data_root)


def data_problem(root: Path, datasets: list[str], split: str) -> str | None:
    """What ``python -m imc_core run`` would exit 2 with for this data before any run folder (a missing image, a
    label row or thresholds that cannot score it: :meth:`imc_core.data.DataRoot.load_for_run`), one line; None when
    it can run. ``datasets`` [] = every dataset of the split."""
    from imc_core.data import DataRoot

    try:
        DataRoot(root).load_for_run(datasets or None, split)
    except ImcError as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def scoring_problem(root: Path, dataset: str) -> str | None:
    """Why the labels and thresholds of ``root`` cannot score the train dataset ``dataset`` (a run refuses it:
    :meth:`imc_core.data.DataRoot.check_scorable`), one line; None when they can, or when the root has no labels."""
    from imc_core.data import DataRoot

    try:
        DataRoot(root).check_scorable([dataset])
    except ImcError as err:
        return str(err).splitlines()[0]
    return None


def _variant_values() -> dict[str, set[str]]:
    """``section.key`` → string values set by any variant file."""
    from imc_core.config import list_variants, load_variant

    seen: dict[str, set[str]] = {}
    for name in list_variants():
        try:
            v = load_variant(name)
        except ImcError:
            continue
        for section, values in v.overrides.items():
            for k, val in (values or {}).items():
                if isinstance(val, str):
                    seen.setdefault(f"{section}.{k}", set()).add(val)
    return seen


def config_fields(base: dict[str, dict[str, Any]]) -> list[FieldSpec]:
    """Widget specs generated from the typed config dataclasses (:data:`imc_core.config.SECTIONS`).

    Args:
        base: the variant's resolved config (``PipelineConfig.to_dict()``), giving defaults.

    Returns:
        One :class:`FieldSpec` per key, section order then field order.
    """
    from imc_core.config import SECTIONS

    seen = _variant_values()
    specs = []
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            typ = hints[f.name]
            default = base.get(section, {}).get(f.name)
            comment = comments.get(f.name, "")
            metadata_choices = list(f.metadata.get("choices", [])) if f.metadata else []
            if typ is bool:
                kind, choices, closed = "bool", [], False
            elif typ is int:
                kind, choices, closed = "int", [], False
            elif typ is float:
                kind, choices, closed = "float", [], False
            elif typ is str:
                listed = metadata_choices or code_choices(f"{section}.{f.name}") or comment_choices(comment)
                known = sorted(seen.get(f"{section}.{f.name}", set()) | {str(default)})
                if listed:
                    choices = list(dict.fromkeys([*listed, *known]))
                    kind, closed = "choice", True
                elif len(known) > 1:
                    kind, choices, closed = "choice", known, False
                else:
                    kind, choices, closed = "str", [], False
            else:
                kind, choices, closed = "list", [], False
            specs.append(FieldSpec(section, f.name, kind, default, choices, closed, comment))
    return specs


def unread_in_section(base: dict[str, dict[str, Any]], values: dict[str, Any], section: str) -> list[str]:
    """Lines naming the keys of ``section`` that the config of the widgets' ``values`` (``{"section.key": value}``,
    on top of the variant's ``base``) never reads, grouped by reason ("model, root_sift: not read by
    features.method = colmap_sift"); empty when the values do not make a valid config yet."""
    from imc_core.config import PipelineConfig, merge, unread_keys
    from imc_core.errors import ConfigError

    over: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        sec, name = key.split(".", 1)
        over.setdefault(sec, {})[name] = value
    try:
        cfg = PipelineConfig.from_dict(merge(base, over), source="widgets")
    except (ConfigError, TypeError, ValueError):
        return []
    by_reason: dict[str, list[str]] = {}
    for key, why in unread_keys(cfg).items():
        sec, name = key.split(".", 1)
        if sec == section:
            by_reason.setdefault(why, []).append(name)
    return [f"{', '.join(names)}: {why}" for why, names in by_reason.items()]


def toml_literal(value: Any) -> str:
    """A value as the TOML literal ``--set`` expects (``true``, ``15``, ``0.1``, ``"aliked"``, ``[1.0, 2.0]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return json.dumps(str(value))


def parse_list_text(text: str, item_type: type | None = None) -> list[Any]:
    """Comma-separated text → list; items become floats/ints when the field's item type says so."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if item_type in (int, float):
        return [item_type(t) for t in items]
    return items


def overrides_from_values(base: dict[str, dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """``section.key=value`` strings for the values that differ from the variant's config.

    Args:
        base: the variant's resolved config (nested dict).
        values: ``{"section.key": value}`` from the widgets.
    """
    out = []
    for key, value in values.items():
        section, name = key.split(".", 1)
        ref = base.get(section, {}).get(name)
        same = ref == value and type(ref) is type(value) if not isinstance(ref, float) else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == ref)
        if not same:
            out.append(f"{key}={toml_literal(value)}")
    return out


def parse_int_text(text: str) -> int | str:
    """An integer field's text as an int (``"8192"``, ``" 8_192 "``, ``"1e4"``, ``"10000.0"``), or the text itself
    when it is no whole number (``""``, ``"1.5"``, ``"abc"``): the config's validation then names the key and the
    value, as the CLI's ``--set`` does."""
    t = text.strip().replace("_", "")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        f = float(t)
    except (ValueError, OverflowError):
        return text
    return int(f) if f.is_integer() else text


def list_item_type(section: str, name: str) -> type | None:
    """Item type of a ``list[...]`` config field (None when unknown)."""
    from imc_core.config import SECTIONS

    typ = get_type_hints(SECTIONS[section]).get(name)
    args = getattr(typ, "__args__", ())
    return args[0] if args else None


@st.cache_data(show_spinner=False)
def variant_info(name: str) -> tuple[str, list[str], dict[str, dict[str, Any]]]:
    """(description, why it cannot run here, resolved config dict) of a variant."""
    from imc_core.config import load_variant

    v = load_variant(name)
    try:
        missing = v.missing_requirements()
    except Exception as err:  # a requirement check must not break the page
        missing = [f"requirement check failed: {err}"]
    return v.description, missing, v.config().to_dict()


# ------------------------------------------------------------------------------------------------------ cache lookup


def run_artifacts(run_dir: str | Path, dataset: str) -> dict[str, Path]:
    """Cache folders a run used for one dataset, from its ``artifacts.json`` (only those still present)."""
    p = Path(run_dir) / "artifacts.json"
    try:
        entry = json.loads(p.read_text()).get(dataset, {}) if p.is_file() else {}
    except (ValueError, OSError):
        entry = {}
    return {stage: Path(d) for stage, d in entry.items() if isinstance(d, str) and (Path(d) / "DONE").is_file()}


@st.cache_data(max_entries=8, show_spinner=False)
def _appearance_embedding(features_h5: str, mtime: float, names: tuple[str, ...]) -> np.ndarray:
    from imc_core.analysis import pca_2d, pooled_local_descriptors

    return pca_2d(pooled_local_descriptors(features_h5, names))


def appearance_embedding(features_h5: Path, names: list[str]) -> np.ndarray:
    """(N, 2) PCA of mean-pooled local descriptors per image, cached by file and modification time."""
    return _appearance_embedding(str(features_h5), features_h5.stat().st_mtime, tuple(names))


def find_match_artifacts(config: dict[str, Any], data_root: str | Path, dataset: str,
                         run_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Locate the cached ``features.h5`` and ``matches.h5`` a run used for one dataset.

    The run's ``artifacts.json`` (written by the pipeline) names them directly; runs without it fall back to
    recomputing the cache keys.

    The features key is recomputed by the pipeline's own :func:`imc_core.pipeline.cache_key_confs` (and the images'
    content fingerprint, or their times for runs keyed so before); the matching artifact is the finished one whose
    recorded inputs start with that key and whose config is the one a run of this config keys by (this lookup had
    a copy of the key's rules that drifted from the pipeline's: the default variant's cached matches were never
    found for an imported run).

    Args:
        config: the run's ``config.toml`` content (all sections).
        data_root: the run's data root.
        dataset: dataset name.

    Returns:
        ``(features_h5, matches_h5)``.

    Raises:
        InputError: with the reason when they cannot be found (no data root, cache cleared, images changed).
    """
    from imc_core.cache import DONE, artifact_key, cache_root, content_fingerprint
    from imc_core.data import DataRoot

    if run_dir is not None:
        arts = run_artifacts(run_dir, dataset)
        if "features" in arts and "matching" in arts:
            return arts["features"] / "features.h5", arts["matching"] / "matches.h5"
    root = Path(data_root)
    if not root.is_dir():
        raise InputError(root, "the run's data root is not available here, so its cached matches cannot be located")
    split = "train" if (root / "train" / dataset).is_dir() else "test"
    ds = DataRoot(root).load_dataset(dataset, split)
    from imc_core.config import SECTIONS, PipelineConfig
    from imc_core.pipeline import cache_key_confs

    try:
        cfg = PipelineConfig.from_dict({k: v for k, v in config.items() if k in SECTIONS},
                                       source="the run's config.toml")
    except ImcError as err:  # (keys of another imc-lab: the keys cannot be made again)
        raise InputError(root, f"its cached matches cannot be located: {str(err).splitlines()[0]}") from None
    confs = cache_key_confs(cfg)
    fconf = confs["features"]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    # (runs made before the keys held the images' contents keyed their features by the images' times)
    for fingerprint in (content_fingerprint(ds.image_dir, ds.images), ds.fingerprint):
        fkey = artifact_key("features", fconf, [], fingerprint)
        fdir = cache_root() / "features" / f"{safe}-{fkey}"
        if (fdir / DONE).is_file():
            break
    else:
        raise InputError(fdir, "cached features not found (cache cleared, images or config changed since the run, "
                               "or the run was made by an older imc-lab whose cache keys differ)")
    mconf = confs["matching"]
    for mdir in sorted((cache_root() / "matching").glob(f"{safe}-*")):
        done = mdir / DONE
        if not done.is_file():
            continue
        try:
            meta = json.loads(done.read_text() or "{}")
        except ValueError:
            continue
        meta = meta.get("meta", meta) if isinstance(meta, dict) else {}
        inputs = meta.get("inputs") or []
        if inputs and inputs[0] == fkey and _jsonable(meta.get("conf")) == _jsonable(mconf):
            return fdir / "features.h5", mdir / "matches.h5"
    raise InputError(cache_root() / "matching", f"cached matches for {dataset} not found (cache cleared?)")


def _jsonable(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


from imc_core.stages.matching import names_to_pair  # noqa: E402  (re-exported for the views)


def read_pair(features_h5: Path, matches_h5: Path, a: str, b: str) -> tuple[Any, Any, Any]:
    """Keypoints of ``a`` and ``b`` (N×2 float) and their matches (M×2 int, indices into a's and b's keypoints).

    Raises:
        InputError: the pair or an image is missing from the files.
    """
    import h5py
    import numpy as np

    with h5py.File(features_h5, "r") as f:
        if a not in f or b not in f:
            raise InputError(features_h5, f"keypoints of {a if a not in f else b} not in the features file")
        k0 = np.asarray(f[a]["keypoints"], dtype=np.float32)
        k1 = np.asarray(f[b]["keypoints"], dtype=np.float32)
    with h5py.File(matches_h5, "r") as f:
        for x, y, flip in ((a, b, False), (b, a, True)):
            name = names_to_pair(x, y)
            if name in f:
                g = f[name]
                m = np.asarray(g["matches"] if "matches" in g else g["matches0"], dtype=np.int64)
                if m.ndim == 1:  # hloc matches0 style: index in b or -1
                    idx = np.flatnonzero(m >= 0)
                    m = np.stack([idx, m[idx]], axis=1)
                return k0, k1, (m[:, ::-1] if flip else m)
    raise InputError(matches_h5, f"pair {a} / {b} not in the matches file")


def inlier_mask(run_dir: str | Path, dataset: str, a: str, b: str, matches: Any) -> Any:
    """Boolean mask of ``matches`` (M×2) that COLMAP's geometric verification kept, or ``None`` when unknown."""
    import numpy as np

    rec = run_artifacts(run_dir, dataset).get("reconstruction")
    if rec is None or not (rec / "database.db").is_file():
        return None
    from imc_core.stages.reconstruction import pair_inlier_matches

    try:
        inl = pair_inlier_matches(rec / "database.db", a, b)
    except Exception:  # an unreadable database only loses the colouring
        return None
    if inl is None:
        return np.zeros(len(matches), dtype=bool)
    keep = {(int(i), int(j)) for i, j in inl}
    return np.array([(int(i), int(j)) in keep for i, j in matches], dtype=bool)


def load_image_small(path: Path, max_side: int = 640) -> tuple[Any, float]:
    """RGB uint8 array of an image shrunk to ``max_side`` and the scale applied (keypoints × scale).

    Decoded by :func:`imc_core.images.load_image`, as the features were: upright (EXIF orientation applied, the frame
    of the keypoints), 16-bit and float images scaled, not clipped.

    Raises:
        InputError: the image is missing or cannot be decoded.
    """
    import numpy as np
    from PIL import Image

    from imc_core.images import load_image

    arr = load_image(path)
    h, w = arr.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        small = Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))))
        arr = np.asarray(small)
    return arr, scale
