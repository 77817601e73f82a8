"""Results page (one run): headline scores, per-dataset / per-scene charts, the per-image registration table, 3-D
cameras, GT-scene × cluster matrix, match graph + pair viewer, loss attribution, timings, log, downloads."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import jobs, jobview, state
from imc_core.analysis import image_summary
from imc_core.errors import ImcError, InputError
from imc_core.runs import describe_code
from imc_core.viz import OUTLIERS, length_label

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

#: session keys that describe the page's view in a share link (besides the data root)
SHARE_KEYS = ["run", "dataset", "scene", "tab"]
TABS = ["Overview", "Images", "3D", "Clusters", "Pairs", "Loss", "Timings", "Log", "Descriptors"]
ALL_SCENES = "(all scenes)"
#: tabs that show what imc-lab's stages made (absent from a run of an outside submission) → what they show
STAGE_TABS = {"Pairs": "matches", "Timings": "stage times", "Descriptors": "image features"}
METRIC_THRESHOLDS = (2, 3, 4, 5)
#: How a run that ended without results ended, as a verb phrase.
ENDED = {"failed": "failed", "stopped": "stopped", "cancelled": "was cancelled"}
#: statuses of a run whose process is still at work: Results follows its progress instead of showing a score
ACTIVE = ("queued", "running", "cancelling")
#: The per-image ``error`` of per_image.csv is measured under the alignment of the *largest* threshold (the metric's
#: ``kmax``, t5), while each ``pass_k`` uses threshold k's own best alignment: the column says so.
ERROR_COL = "t5-aligned error"  # (shown as "8.16 mm", "1.2 cm", as the threshold columns: sorted in metres)
ERROR_HELP = ("Camera-centre distance to ground truth after the similarity alignment found for the largest "
              "threshold (t5). Each ✓/✗ column uses its own threshold's alignment, so an image can pass t2 with a "
              "larger error than t2 here.")
STATUS_FILTERS = {
    "all images": None,
    "in another cluster (a pose, but not in its scene's cluster)": "misclustered",
    "unregistered (no pose, or in outliers)": "unregistered",
    "unaligned (in its scene's cluster with fewer than 3 of its scene's images: nothing to align)": "unaligned",
    "partly passing (in its scene's cluster, passes some thresholds)": "partial",
    "failing (in its scene's cluster, passes no threshold)": "failing",
    "passing every threshold": "passing",
    "GT outliers left out, as they should be": "outliers",
    "GT outliers put in a cluster (they cost its clusterness)": "clustered outlier",
}


# ------------------------------------------------------------------------------------------------ helpers


def _bool(col: pd.Series) -> pd.Series:
    """Bool column that may have been read back from CSV as text."""
    if col.dtype == bool:
        return col
    return col.map(lambda v: str(v).strip().lower() in {"true", "1", "1.0"}).astype(bool)


def image_status(per_image: pd.DataFrame) -> pd.DataFrame:
    """Adds ``registered``, ``passes`` (of the 4 metric thresholds) and ``status`` to a per-image frame
    (:func:`imc_core.analysis.image_summary`, as Compare's per-image table counts them)."""
    df = per_image.copy()
    summary = image_summary(df)
    for col in ("registered", "passes", "status"):
        df[col] = summary[col].to_numpy()
    return df


def filter_images(df: pd.DataFrame, status: str | None, text: str = "") -> pd.DataFrame:
    """Rows matching a status filter (see :data:`STATUS_FILTERS`: the statuses the counts above the table use) and
    an image-name substring."""
    out = df
    if status is not None:
        out = out[out["status"] == status]
    if text:
        out = out[out["image"].astype(str).str.contains(text, case=False, regex=False)]
    return out


def image_rows_csv(shown: pd.DataFrame) -> bytes:
    """The rows of the Images table as per_image.csv wrote them, with their ``status`` and ``passes``: ``pass_k``
    as True/False and each error in metres, empty where there is none, for the metric's thresholds t2 … t5 (the
    table's own download writes its threshold columns as bare metres, inf for a camera without an error, and drops
    the ticks)."""
    first = [c for c in ("dataset", "scene", "image", "status", "passes") if c in shown]
    # pass_k / error_k of the thresholds the metric does not use (t0, t1) are left out: ``passes`` and ``status``
    # count t2 … t5, as the page does, and a filter on every pass_* column must agree with them
    unused = {f"{c}_{k}" for c in ("pass", "error") for k in range(6) if k not in METRIC_THRESHOLDS}
    rest = [c for c in shown.columns if c not in first and c != "registered" and c not in unused]
    return shown[first + rest].to_csv(index=False).encode()


def image_csv_name(run_id: str, dataset: str, scene: str | None, status: str | None, search: str) -> str:
    """File name of :func:`image_rows_csv`: the view in it, so downloads of other filters or searches do not
    overwrite each other (``run-ds-scene-failing-name_abc-images.csv``)."""
    search = re.sub(r"_+", "_", re.sub(r"[^\w.]+", "_", search.strip()))[:40].strip("_.")
    parts = (run_id, dataset, scene, status, f"name_{search}" if search else None)
    return "-".join(str(p) for p in parts if p) + "-images.csv"


def registration_table(df: pd.DataFrame) -> pd.DataFrame | Styler:
    """Display frame: image, GT scene, status, ✓/✗ per metric threshold, error, cluster vs GT scene, discounted
    cameras.

    With each threshold's error (runs since 2026-11-26) a ``t{k}`` column holds that error in metres (inf where
    there is none) and a Styler shows it as ``✓ 2.7 mm`` / ``✗ 12 mm`` / ``✗``, so that sorting a column sorts by
    error (as text, "✓ 12 mm" came before "✓ 2.7 mm"). Older runs' columns hold the ticks alone.
    """
    tick = {True: "✓", False: "✗"}
    # GT outliers have no pose to pass or fail: blank, not ✗ (they read as failures although the run put them in
    # "outliers", as it should)
    gt_outlier = (df["scene"].astype(str) == OUTLIERS).to_numpy()

    def ticks(flags: pd.Series) -> pd.Series:
        return flags.map(tick).where(~gt_outlier, "")

    shown: dict[str, pd.Series] = {}  # t column → pass flags, for the Styler
    cols: dict[str, Any] = {"image": df["image"], "GT scene": df["scene"], "status": df["status"]}
    # the four ticks the score is made of come first, so that a window of 1,400 px shows them without scrolling
    for k in METRIC_THRESHOLDS:
        if f"pass_{k}" in df:
            if f"error_{k}" in df:  # runs since 2026-11-26: the error this threshold's alignment gave
                err = pd.to_numeric(df[f"error_{k}"], errors="coerce").fillna(np.inf).astype(float)
                cols[f"t{k}"] = err.where(~gt_outlier, np.nan)  # (sorts after every image that has a pose)
                shown[f"t{k}"] = _bool(df[f"pass_{k}"])
            else:
                cols[f"t{k}"] = ticks(_bool(df[f"pass_{k}"]))
    if "error" in df:
        cols[ERROR_COL] = pd.to_numeric(df["error"], errors="coerce")
    for c, name in (("cluster", "cluster"), ("associated_cluster", "scene's cluster")):
        if c in df:
            cols[name] = df[c].fillna("").astype(str)
    cols["in cluster"] = ticks(_bool(df["registered"]) if "in_cluster" not in df else _bool(df["in_cluster"]))
    if "pose_valid" in df:
        cols["pose"] = ticks(_bool(df["pose_valid"]))
    if "discounted" in df:
        cols["discounted"] = _bool(df["discounted"]).map({True: "−3", False: ""})
    table = pd.DataFrame(cols)
    if table.empty or (not shown and ERROR_COL not in table):
        return table
    styler = table.style
    if ERROR_COL in table:
        styler = styler.format(lambda e: length_label(e) if np.isfinite(e) else "", subset=[ERROR_COL])
    for col, passed in shown.items():
        styler = styler.format(lambda e: "", subset=(table.index[gt_outlier], [col]))
        for flag, mark in ((True, "✓"), (False, "✗")):
            rows = passed.index[(passed.to_numpy() == flag) & ~gt_outlier]
            if len(rows):
                styler = styler.format(lambda e, m=mark: f"{m} {length_label(e)}" if np.isfinite(e) else m,
                                       subset=(rows, [col]))
    return styler


def image_columns(with_errors: bool = False, rows: pd.DataFrame | None = None) -> dict[str, Any]:
    """Column widths (pixels) of :func:`registration_table`: each as wide as its header and its longest usual
    value ("unregistered", "✓ 8.16 mm"), so nothing is cut off; on a narrow window the table scrolls sideways
    (``with_errors``: the threshold columns also hold each threshold's error). The image and GT scene columns fit
    the longest name of ``rows`` (per_image.csv rows), up to 320 px ("another_et_another_et…" could not be told
    apart, even at 1920 px)."""
    text = st.column_config.TextColumn

    def fit(column: str, least: int) -> int:
        if rows is None or not len(rows) or column not in rows:
            return least
        return max(least, min(320, 7 * int(rows[column].astype(str).str.len().max()) + 24))

    image, scene = fit("image", 120), fit("scene", 78)
    w = dict(zip(("image", "status", "GT scene", "cluster", "scene's cluster", "in cluster", "pose", "error",
                  "discounted", "t"),
                 (image, 95, scene, 68, 112, 80, 48, 145, 84, 82) if with_errors else
                 (image, 95, scene, 68, 112, 80, 48, 145, 84, 40), strict=True))
    config: dict[str, Any] = {name: text(width=w[name]) for name in ("image", "status", "GT scene", "cluster",
                                                                      "scene's cluster", "in cluster", "pose")}
    config[ERROR_COL] = st.column_config.NumberColumn(width=w["error"], help=ERROR_HELP)
    config["discounted"] = text(width=w["discounted"], help="the metric subtracts 3 from each threshold's count of "
                                "passing cameras (a count, no camera in particular); marked, to show the size of "
                                "that discount: the 3 cameras with the smallest error under the largest "
                                "threshold's alignment")
    help_t = "✓ passes / ✗ fails this threshold" + ("; then the error this threshold's alignment gave"
                                                     if with_errors else "")
    # (with errors the columns hold numbers, drawn as ticks by the Styler: a text column would sort them as text)
    column = st.column_config.Column if with_errors else text
    config.update({f"t{k}": column(width=w["t"], help=help_t) for k in METRIC_THRESHOLDS})
    return config


def _image_dir(rv: state.RunView, dataset: str) -> Path:
    root = rv.data_root
    split = rv.meta.get("split") or "train"
    d = root / str(split) / dataset
    return d if d.is_dir() else root / "train" / dataset


# ------------------------------------------------------------------------------------------------ sections


def header(rv: state.RunView) -> None:
    meta = rv.meta
    # (every value of run.json is shown as written: a teammate's bundle can hold anything, e.g. markdown images that
    # would make the browser fetch from elsewhere)
    bits = [f"status **{state.md(rv.status)}**", f"variant **{state.md(meta.get('variant', '?'))}**",
            f"created {state.md(meta.get('created', '?'))}"]
    if meta.get("group"):
        bits.append(f"group **{state.md(meta['group'])}**")
    if meta.get("label"):
        bits.append(f"label *{state.md(meta['label'])}*")
    if meta.get("split") == "test":
        bits.append("test split")
    if meta.get("seed") is not None:
        bits.append(f"seed {state.md(meta['seed'])}")
    if meta.get("imported_from"):
        bits.append(f"imported from {state.md(meta['imported_from'])}")
    if meta.get("source"):  # `add-submission`: a submission made outside imc-lab
        bits.append(f"scored from {state.md(meta['source'])}, made outside imc-lab")
    st.markdown(" · ".join(bits))
    if meta.get("overrides"):
        st.caption("overrides: " + " ".join(state.code(o) for o in meta["overrides"]))
    if rv.problems:
        st.warning("Some files of this run cannot be read, so the tabs that need them show nothing:\n"
                   + "\n".join(f"- {state.md(p)}" for p in rv.problems), icon="⚠️")
    if warnings := meta.get("warnings") or []:  # settings that took no part, failed datasets, rebuilt cache, data
        st.warning("\n".join(f"- {state.md(w)}" for w in warnings) if len(warnings) > 1 else state.md(warnings[0]),
                   icon="⚠️")
    where = [f"data root {state.code(meta['data_root'])}"] if meta.get("data_root") else []
    where += [f"device {state.md(meta['device'])}"] if meta.get("device") else []
    where += [f"{meta['jobs']} datasets reconstructed at once"] if (meta.get("jobs") or 1) > 1 else []
    where += [f"imc-lab {state.md(code)}"] if (code := describe_code(meta)) else []
    if where:
        st.caption(" · ".join(where))
    if rv.status == "failed":
        st.error(f"This run failed: {state.md(meta.get('error') or 'see the log')}")
    elif rv.status == "stopped":
        message = (failure_summary(rv) or ("", ""))[0]
        st.error(f"This run stopped: {state.md(message)} (run.json still says running).")
    elif rv.status == "cancelled":  # (why, once: the headline below does not say it again)
        why = f" ({state.md(meta['error'])})" if meta.get("error") else ""
        st.info(f"This run was cancelled{why}: no scores, and its results stop where it did.")
    elif rv.status not in ("done", *ACTIVE):  # (a live run's progress follows the header)
        st.info(f"This run is {state.md(rv.status)}; results may be incomplete.")


def headline(rv: state.RunView) -> None:
    scores = rv.scores
    if not scores:
        if rv.status in ("failed", "stopped"):
            st.caption(f"No scores: the run {ENDED[rv.status]}.")
        elif rv.status == "cancelled":
            pass  # (the header said it, with why)
        elif rv.meta.get("split") == "test":
            st.info("A test-split run: no ground truth, so no score. Its submission.csv (with image_id) is the file "
                    "Kaggle takes; the Overview tab says what it holds.")
        elif not any(str(w).startswith("not scored: ") for w in rv.meta.get("warnings") or []):
            # (a run that says why it was not scored has it in its warnings above: two notes said it twice)
            st.info("No scores.json in this run (no ground truth for its data, or it did not finish).")
        return
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Score", f"{scores.get('score', float('nan')):.2f}")
    c2.metric("mAA", f"{scores.get('mAA', float('nan')):.2f}")
    c3.metric("Clusterness", f"{scores.get('clusterness', float('nan')):.2f}")
    total = (rv.timings or {}).get("total")
    # (an outside submission's only time is the scoring's, not a pipeline's)
    c4.metric("Time", f"{total:.1f} s" if isinstance(total, (int, float)) and not rv.outside else "—")


def downloads(rv: state.RunView) -> None:
    c1, c2 = st.columns(2)
    sub = Path(rv.path) / "submission.csv"
    if sub.exists():
        c1.download_button("Download submission.csv", data=sub.read_bytes(), file_name=f"{rv.id}-submission.csv",
                           mime="text/csv", key="dl_submission")
    else:
        c1.caption("No submission.csv in this run.")

    def bundle() -> bytes:
        from imc_core.runs import export_bundle

        with tempfile.TemporaryDirectory() as tmp:
            return export_bundle(rv.path, Path(tmp) / f"{rv.id}.zip").read_bytes()

    if (problem := state.bundle_problem(rv.path)) is not None:  # (the teammate's import would refuse it)
        c2.button("Export bundle (.zip)", key="dl_bundle", disabled=True)
        c2.caption(f"Not exportable: {state.md(problem)}")
        return
    c2.download_button("Export bundle (.zip)", data=bundle, file_name=f"{rv.id}.zip", mime="application/zip",
                       key="dl_bundle", help="config, submission, scores, per-image table, logs and COLMAP models")


def unknown_link_value(key: str, options: list[str]) -> str | None:
    """A ``?key=`` value of the address bar that is none of ``options`` and did not come from this session's own
    widget (a link, or a typo in the address bar), as ``key “value”``; None otherwise. Streamlit drops such a value
    and shows the default without a word, so the page names it."""
    asked = state.qp_first(key)
    if asked is None or asked in options or asked == st.session_state.get(key):
        return None
    return f"{key} “{asked}”"


def dataset_scene_pickers(rv: state.RunView, left_out: list[str]) -> tuple[str | None, str | None]:
    """Dataset and GT scene selectors (bound to ``?dataset=`` and ``?scene=``); link values that are not in the run
    are appended to ``left_out``."""
    datasets = rv.datasets
    if not datasets:
        return None, None
    if bad := unknown_link_value("dataset", datasets):
        left_out.append(bad)
    if st.session_state.get("dataset") not in datasets:
        st.session_state["dataset"] = datasets[0]
    c1, c2 = st.columns(2)
    dataset = c1.selectbox("Dataset", datasets, key="dataset", bind="query-params")
    scenes: list[str] = []
    for frame in (rv.scenes, rv.per_image):
        if frame is not None and "scene" in frame and "dataset" in frame:
            scenes += [str(s) for s in frame.loc[frame["dataset"].astype(str) == dataset, "scene"].unique()
                       if str(s) not in scenes]
    if not scenes:  # a test-split run (no ground truth): no scene to pick
        return dataset, None
    options = [ALL_SCENES, *scenes]
    if bad := unknown_link_value("scene", options):
        left_out.append(bad)
    if st.session_state.get("scene") not in options:
        st.session_state["scene"] = ALL_SCENES
    scene = c2.selectbox("GT scene", options, key="scene", bind="query-params")
    return dataset, (None if scene == ALL_SCENES else scene)


def _scene_or_first(rv: state.RunView, dataset: str, scene: str | None) -> str | None:
    if scene:
        return scene
    if rv.per_image is None:
        return None
    scenes = [str(s) for s in rv.per_image.loc[rv.per_image["dataset"].astype(str) == dataset, "scene"].unique()
              if str(s) != "outliers"]
    return scenes[0] if scenes else None


def _thresholds(rv: state.RunView, dataset: str, scene: str) -> list[float] | None:
    entry = ((rv.alignments or {}).get(dataset) or {}).get(scene) or {}
    thr = entry.get("thresholds")
    return [float(x) for x in thr] if thr else None


def scene_table(scenes: pd.DataFrame) -> pd.DataFrame:
    """scenes.csv for display: after ``mAA`` the counts of the four thresholds it is computed from (t2 … t5; t0 and
    t1, which the metric skips, are left out: beside the mAA they read as a contradiction of it), then the
    metric's ``warning`` (not cut off at the far right); blank cells instead of None/nan in text columns."""
    df = scenes
    used = [f"registered_{k}" for k in METRIC_THRESHOLDS]
    first = [c for c in ("dataset", "scene", "n_images", "cluster", "cluster_size", "overlap", "mAA", *used,
                         "warning") if c in df]
    skipped = {f"registered_{k}" for k in range(6)} - set(used)
    return state.blank_text_cells(df[first + [c for c in df.columns if c not in first and c not in skipped]])


def scene_warnings(scenes: pd.DataFrame) -> list[str]:
    """scenes.csv's non-empty ``warning`` cells as ``**scene**: warning.`` lines, for the text under the table."""
    if "warning" not in scenes:
        return []
    return [f"**{state.md(str(sc))}**: {state.md(str(w).strip().rstrip('.'))}." for sc, w in
            zip(scenes["scene"], scenes["warning"], strict=True) if isinstance(w, str) and w.strip()]


def pooled_maa_note(scenes: pd.DataFrame, dataset_scores: dict[str, Any] | None) -> str | None:
    """Why a dataset's mAA is not the mean of its scenes' (the metric pools them: every scene's passing cameras over
    every scene's cameras, each less its 3), said when the two differ by 0.01 or more (an auditor took 53.85 beside
    scenes of 66.67 and 42.86 for a mistake)."""
    if len(scenes) < 2 or "mAA" not in scenes or not isinstance(dataset_scores, dict):
        return None
    try:
        pooled, mean = float(dataset_scores["mAA"]), float(pd.to_numeric(scenes["mAA"]).mean())
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.isfinite(pooled) and np.isfinite(mean)) or abs(pooled - mean) < 0.01:
        return None
    return (f"The dataset's mAA ({pooled:.2f}) pools its scenes as the metric does: the cameras that pass, summed "
            f"over every scene and threshold, over all of them (each scene less its 3), so it is not the mean of the "
            f"scenes' mAAs ({mean:.2f}); a scene with more cameras weighs more.")


def scene_columns(table: pd.DataFrame) -> dict[str, Any]:
    """Column widths (pixels) for :func:`scene_table` so that every column fits the page, ``registered_k`` shown as
    ``reg. tk`` (its header names what it counts)."""
    text, number = st.column_config.TextColumn, st.column_config.NumberColumn
    config: dict[str, Any] = {"dataset": text(width=80), "scene": text(width=110), "n_images": number(width=70),
                              "cluster": text(width=80), "cluster_size": number(width=85),
                              "overlap": number(width=65), "mAA": number(format="%.2f", width=65),
                              "warning": text(width=160)}
    for c in table.columns:
        if str(c).startswith("registered_"):
            k = str(c).removeprefix("registered_")
            config[c] = number(f"reg. t{k}", width=55, help=f"GT images registered within threshold t{k} (the "
                               "metric's mAA counts t2 … t5, less 3 cameras each)")
    return config


#: a line of a run's log.txt as :class:`imc_core.runs.RunWriter` writes it (other lines continue one, e.g. a traceback)
LOG_ENTRY = re.compile(r"\[\d\d:\d\d:\d\d\] ")


def absent(rv: state.RunView, file: str, otherwise: str) -> str:
    """Why a tab has nothing to show when ``file`` is missing from the run: unreadable (the warning above names
    it), the run ended before writing it, or ``otherwise`` (e.g. no ground truth)."""
    if rv.unreadable(file):
        return f"{file} cannot be read (the warning above says why)."
    if rv.status in ENDED:
        return f"The run {ENDED[rv.status]} before it wrote {file}; the Log tab shows how far it got."
    if rv.status != "done":
        return f"The run is {rv.status}; {file} is written when it finishes."
    return otherwise


def failure_summary(rv: state.RunView, lines: int = 15) -> tuple[str, str] | None:
    """``(message, log tail)`` for a run that ended without results (failed, stopped, cancelled), else None.

    The message is run.json's ``error`` (or, for a process that died, what :func:`dashboard.jobs.job_status` says);
    the tail is the last ``lines`` entries of log.txt (its time-stamped lines: the traceback under a FAILED line
    is for the Log tab), else the last non-empty lines of job.log (the process output).
    """
    status = rv.status
    if status not in ("failed", "stopped", "cancelled"):
        return None
    from dashboard.jobs import job_status

    error = rv.meta.get("error") or (job_status(Path(rv.path)).error if status == "stopped" else None)
    message = str(error or ("cancelled on request" if status == "cancelled" else "no error was recorded"))
    tail = [ln for ln in (rv.log or "").splitlines() if LOG_ENTRY.match(ln)][-lines:]
    if not tail:
        tail = [ln for ln in _read_text(Path(rv.path) / "job.log").splitlines() if ln.strip()][-lines:]
    return message, "\n".join(tail)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tab_overview(rv: state.RunView, dataset: str | None, scene: str | None) -> None:
    failure = failure_summary(rv)
    if failure is not None:
        message, tail = failure
        where = "Its last log lines are below; the whole log is" if tail else "It wrote no log lines; look"
        why = f"({state.md(message)})" if rv.status == "cancelled" else "(the reason is above)"
        st.info(f"This run **{ENDED[rv.status]}** {why}. {where} in the **Log** tab.")
        if tail:
            st.code(tail, language="text")
    if not rv.scores and failure is None:
        summary = state.submission_summary(rv)
        if summary is not None and not summary.empty:
            st.markdown("**What the submission holds** (no ground truth to score it against)")
            st.dataframe(summary, hide_index=True, placeholder=state.NO_VALUE, width="stretch")
    if rv.scores:
        state.show_figure("score_bars", rv.scores, key="fig_scores")
        per_ds = pd.DataFrame.from_dict(rv.scores.get("datasets") or {}, orient="index")
        if not per_ds.empty:
            st.dataframe(per_ds.rename_axis("dataset").reset_index(), hide_index=True, placeholder=state.NO_VALUE,
                         width="stretch", column_config={  # two decimals, as the headline (not 70 beside 53.8462)
                             c: st.column_config.NumberColumn(format="%.2f") for c in per_ds.columns
                             if pd.api.types.is_float_dtype(per_ds[c])})
    if rv.scenes is not None and dataset:
        sc = rv.scenes[rv.scenes["dataset"].astype(str) == dataset]
        state.show_figure("scene_bars", sc, title=f"{dataset}: per-scene results", key="fig_scenes")
        table = scene_table(sc)
        st.dataframe(table, hide_index=True, placeholder=state.NO_VALUE, width="stretch",
                     column_config=scene_columns(table))
        if said := scene_warnings(sc):  # (whole: at 160 px the column read "associated with clust…")
            st.caption("The metric's warnings: " + " ".join(said))
        if pooled := pooled_maa_note(sc, (rv.scores.get("datasets") or {}).get(dataset) if rv.scores else None):
            st.caption(pooled)
    s = _scene_or_first(rv, dataset, scene) if dataset else None
    if rv.per_image is not None and s:
        state.show_figure("threshold_curve", rv.per_image, dataset, s, thresholds=_thresholds(rv, dataset, s),
                          key="fig_thr")
        which = "" if scene else f"Scene **{state.md(s)}**, the first of {dataset} (pick a scene above for another). "
        st.caption(which + "The curve: the share of the scene's cameras within each error, all placed by the "
                   "largest threshold's alignment; the markers: the metric's share at each threshold, each under its "
                   "own alignment, so a marker can sit above the curve (a small threshold's own alignment fits its "
                   "cameras better).")


def tab_images(rv: state.RunView, dataset: str | None, scene: str | None) -> None:
    if rv.per_image is None or dataset is None:
        st.info(absent(rv, "per_image.csv", "No per-image table in this run (it is written when ground truth "
                                            "exists)."))
        return
    df = image_status(rv.per_image[rv.per_image["dataset"].astype(str) == dataset])
    if scene:
        df = df[df["scene"].astype(str) == scene]
    c1, c2 = st.columns([2, 1])
    label = c1.selectbox("Show", list(STATUS_FILTERS), key="image_filter")
    text = c2.text_input("Image name contains", key="image_search")
    shown = filter_images(df, STATUS_FILTERS[label], text.strip())
    counts = df["status"].value_counts()
    st.caption(f"{len(shown)} of {len(df)} images · " + " · ".join(f"{k}: {v}" for k, v in counts.items()))
    if scene:
        thr = _thresholds(rv, dataset, scene)
        if thr:
            st.caption("thresholds used by the metric: " + ", ".join(f"t{k} = {thr[k]:g} m" for k in METRIC_THRESHOLDS))
    with_errors = any(f"error_{k}" in df for k in METRIC_THRESHOLDS)
    st.caption("✓/✗ per threshold: the metric aligns the cluster to the GT scene separately for each threshold "
               "and each column uses its own threshold's alignment"
               + (" (the error beside the tick is the one that alignment gave)" if with_errors else "")
               + f". **{ERROR_COL}** is the camera-centre error after the alignment of the largest threshold only, "
               "so a small threshold can show ✓ beside a larger error there (or ✗ beside a smaller one).")
    # up to 25 rows without an inner scroll bar (the default showed 10 of ETs' 22 above an empty page)
    st.dataframe(registration_table(shown), hide_index=True, placeholder=state.NO_VALUE, width="stretch",
                 height=38 + 35 * min(max(len(shown), 1), 25),
                 key="image_table", column_config=image_columns(  # (one width for every scene and filter)
                     with_errors, rv.per_image[rv.per_image["dataset"].astype(str) == dataset]))
    if shown.empty:
        return
    rows = "this row" if len(shown) == 1 else f"these {len(shown)} rows"
    st.download_button(f"Download {rows} (CSV)", data=image_rows_csv(shown),
                       file_name=image_csv_name(rv.id, dataset, scene, STATUS_FILTERS[label], text),
                       mime="text/csv", key="image_csv",
                       help="per_image.csv's columns for the rows above, with their status: pass_k as True/False "
                            "and each error in metres (empty where there is none)")


def pose_convention_note(rv: state.RunView) -> str:
    """What convention the run's poses are in, and how that is known (the 3-D tab's answer to "are my poses
    world→camera or camera→world?")."""
    from imc_core.convention import CHECK_FAILED, WARNING_STARTS

    what = ("Poses: world→camera, x_cam = R·x_world + t with R row-major, camera centre c = −Rᵀ·t (COLMAP's "
            "cam_from_world; what IMC-2025 wants). ")
    if not rv.outside:
        return what + "imc-lab writes its own runs so, from COLMAP's models."
    warns = [str(w) for w in rv.meta.get("warnings") or []]
    if any(w.startswith(WARNING_STARTS) for w in warns):
        return what + "This file's poses look written another way: see the warning above (and the Loss tab)."
    if any(w.startswith(CHECK_FAILED) for w in warns):
        return what + "Which convention this file follows was not checked: the check failed (warning above)."
    return what + ("This file was also read four other ways where that could matter (camera→world, transposed R, "
                   "t's sign flipped, the centre as t): each fitted to the ground truth, and scored unless the fit "
                   "ruled it out; none did clearly better.")


#: the 3-D tab's colourings: label → by thresholds passed (else by error under the drawn alignment)
COLOUR_BY = {"thresholds passed (as the metric)": True, "error under the drawn alignment": False}


def tab_3d(rv: state.RunView, dataset: str | None, scene: str | None) -> None:
    if dataset is None:
        return
    s = _scene_or_first(rv, dataset, scene)
    if s is None:
        if not predicted_clusters_3d(rv, dataset):  # (a test split: the clusters as submitted, without GT)
            st.info(absent(rv, "scenes.csv", "No GT scenes for this dataset in the run."))
        return
    no_labels = state.root_labels(rv.data_root) is None
    if no_labels:  # said once, not once per scene
        st.info(rv.no_gt_note())
        if not rv.has_centres:
            return
    if s == "outliers":
        st.info("Outliers have no ground-truth pose, so there are no cameras to draw: the Clusters tab shows where "
                "they went.")
        return
    # (an outside submission's run has no COLMAP model to take points from)
    c1, c2 = st.columns([1, 2])
    with c1:
        with_points = not rv.outside and not no_labels and st.checkbox("Show 3-D points (COLMAP model)", key="pts")
    colour = c2.radio("Colour cameras by", list(COLOUR_BY), horizontal=True, key="colour_3d",
                      help="Thresholds passed: as the metric counts, each threshold under its own alignment (the "
                      "Images tab's t2 … t5). Error: the distance drawn here, under the largest threshold's "
                      "alignment.")
    by_passes = COLOUR_BY[colour]
    st.caption("Predicted cameras are placed by the metric's best similarity for the **largest** threshold. "
               + ("Their colour counts the thresholds each passes under that threshold's own alignment, as the "
                  "metric scores it, so a camera drawn a little off may still pass them all."
                  if by_passes else
                  "Their colour is their error under that alignment. Each threshold has its own alignment (Images "
                  "tab, t2 … t5), so a camera can pass a threshold its colour here says it misses, or fail one it "
                  "seems to meet."))
    st.caption(pose_convention_note(rv))
    scenes = _gt_scenes(rv, dataset)
    if scene or len(scenes) <= 1:  # (one GT scene: drawn full size, not in half the page)
        state.cameras_3d(rv, dataset, s, key="fig_3d", with_points=with_points, by_passes=by_passes)
        return
    # all scenes: each GT scene has its own metric frame, so one view per scene, side by side
    st.caption(f"All {len(scenes)} GT scenes of {state.md(dataset)}, each in its own frame (pick one above to "
               "enlarge it).")
    cols = st.columns(2)
    for i, name in enumerate(scenes):
        with cols[i % 2]:
            state.cameras_3d(rv, dataset, name, key=f"fig_3d_{i}", with_points=with_points, compact=True,
                             by_passes=by_passes)


def submitted_rows(rv: state.RunView, dataset: str) -> pd.DataFrame:
    """The rows of the run's submission.csv for ``dataset`` (none without a submission): what a run without
    ground truth has to show."""
    sub = state.run_submission(rv)
    return pd.DataFrame() if sub is None else sub[sub["dataset"].astype(str) == dataset]


#: session key (and ``?cluster=`` of the URL) of the submitted cluster the 3D tab draws for a run without ground truth
PRED_CLUSTER = "cluster"


def predicted_clusters_3d(rv: state.RunView, dataset: str) -> bool:
    """A run without ground truth for ``dataset`` (a test split, a root without labels): one cluster of its
    submission drawn in its own frame, with the COLMAP model's points on request (the tab said "No GT scenes" and
    drew nothing, while checking a cluster before submitting it is what a test run is for). False when the run
    has no posed cluster there."""
    rows = submitted_rows(rv, dataset)
    if rows.empty:
        return False
    rows = rows[rows["scene"].astype(str) != OUTLIERS]
    counts = rows["scene"].astype(str).value_counts()
    if counts.empty:
        return False
    sizes = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))  # (the largest first, then by name)
    st.info("No ground truth for this dataset in the run: each cluster of its submission.csv is drawn in its own "
            "frame, as submitted (no alignment, no error).")
    # the cluster is part of the view, so in the address bar and the share link (a teammate's link opened the
    # largest cluster, whichever one had been checked)
    if bad := unknown_link_value(PRED_CLUSTER, list(sizes)):
        st.warning(f"Not in this dataset's submission, so left out of the link: {bad}. Showing its largest cluster "
                   "instead.")
    asked = state.qp_first(PRED_CLUSTER)
    if asked in sizes:  # (set before the widget: the page's first runs can stop before the tab binds the URL)
        st.session_state[PRED_CLUSTER] = asked
    elif st.session_state.get(PRED_CLUSTER) not in sizes:
        st.session_state[PRED_CLUSTER] = next(iter(sizes))
    state.share_also(PRED_CLUSTER)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    cluster = c1.selectbox("Cluster", list(sizes), key=PRED_CLUSTER, bind="query-params",
                           format_func=lambda c: f"{c} ({sizes[c]} images)")
    model = Path(rv.path) / "models" / dataset / str(cluster).removeprefix("cluster")
    has_model = not rv.outside and str(cluster).startswith("cluster") and (
        (model / "points3D.bin").exists() or (model / "points3D.txt").exists())
    points = state.model_points(model) if has_model and c2.checkbox("Show 3-D points (COLMAP model)",
                                                                     key="pred_pts") else None
    state.show_figure("cluster_cameras", rows[rows["scene"].astype(str) == cluster], points=points,
                      title=f"{dataset} / {cluster}", key="fig_pred_3d", post=state.fit_3d_view)
    return True


def _gt_scenes(rv: state.RunView, dataset: str) -> list[str]:
    """GT scenes of a dataset in the run (outliers excluded), in scenes.csv order."""
    frame = rv.scenes if rv.scenes is not None else rv.per_image
    if frame is None:
        return []
    names = frame.loc[frame["dataset"].astype(str) == dataset, "scene"].astype(str)
    return [n for n in dict.fromkeys(names) if n != "outliers"]


def shared_clusters(scenes: pd.DataFrame | None, dataset: str) -> dict[str, list[str]]:
    """Clusters the metric associated with more than one GT scene of ``dataset`` (scenes.csv's ``cluster``) and
    that hold images of each (``overlap`` > 0): two scenes merged into one cluster. ``{cluster: [scenes]}``, in
    file order. (The metric gives a scene that no cluster holds any image of the first cluster, at overlap 0: two
    scenes left wholly unregistered beside a third were called merged into its cluster.)"""
    if scenes is None or not {"dataset", "scene", "cluster"} <= set(scenes.columns):
        return {}
    rows = scenes[(scenes["dataset"].astype(str) == dataset) & (scenes["scene"].astype(str) != OUTLIERS)]
    if "overlap" in rows:
        rows = rows[pd.to_numeric(rows["overlap"], errors="coerce").fillna(0) > 0]
    out: dict[str, list[str]] = {}
    for scene, name in zip(rows["scene"].astype(str), rows["cluster"], strict=True):
        if isinstance(name, str) and name and name != OUTLIERS:
            out.setdefault(name, []).append(scene)
    return {k: v for k, v in out.items() if len(v) > 1}


#: misplaced images the Clusters tab draws
MISPLACED_SHOWN = 36


def tab_clusters(rv: state.RunView, dataset: str | None) -> None:
    if rv.per_image is None or dataset is None:
        rows = submitted_rows(rv, dataset) if dataset is not None else pd.DataFrame()
        if rows.empty:
            st.info(absent(rv, "per_image.csv", "No per-image table in this run."))
            return
        # no ground truth (a test split): the clusters as submitted, which is all there is to check
        scene = rows["scene"].astype(str)
        sizes = scene[scene != OUTLIERS].value_counts().rename_axis("cluster").rename("images").reset_index()
        st.info("No ground truth for this dataset in the run: its clusters as submitted (the 3D tab draws each).")
        st.dataframe(sizes, hide_index=True, placeholder=state.NO_VALUE)
        st.caption(f"{int((scene == OUTLIERS).sum())} of {len(rows)} images submitted as outliers (no cluster).")
        return
    state.show_figure("cluster_matrix", rv.per_image, dataset, key="fig_clusters")
    df = rv.per_image[rv.per_image["dataset"].astype(str) == dataset]
    gt_out = df["scene"].astype(str) == "outliers"
    in_cl = _bool(df["in_cluster"]) if "in_cluster" in df else pd.Series(True, index=df.index)
    cluster = df["cluster"].fillna("outliers").astype(str) if "cluster" in df else pd.Series("", index=df.index)
    for name, scenes in shared_clusters(rv.scenes, dataset).items():
        held = cluster[cluster == name].groupby(df["scene"].astype(str)).size()
        st.warning(f"**Scenes merged**: cluster {state.md(name)} is the cluster of GT scenes "
                   f"{', '.join(state.md(s) for s in scenes)} (it holds "
                   + ", ".join(f"{int(held.get(s, 0))} images of {state.md(s)}" for s in scenes)
                   + "). The metric scores each of those scenes on it, so none of their images counts as misplaced "
                   "below, but its images of the other scenes lower each one's clusterness.")
    misplaced = df[(~gt_out & ~in_cl & (cluster != "outliers")) | (gt_out & (cluster != "outliers"))]
    st.markdown(f"**Misplaced images** ({len(misplaced)}): in a cluster other than their GT scene's")
    if misplaced.empty:
        placed = int((~gt_out & (cluster != "outliers")).sum())
        # (with every image in outliers, "no image misplaced" read as a success)
        st.caption("No image sits in another scene's cluster." if placed else
                   "No image of a GT scene is in any cluster (all are in outliers): nothing was clustered, so "
                   "nothing could be misplaced.")
        return
    image_dir = _image_dir(rv, dataset)
    # (a run folder copied by hand can name any file: only images inside the dataset's folder are drawn)
    items = [(state.image_in(image_dir, str(r.image)), f"{r.image}: {r.scene} → {r.cluster}")
             for r in misplaced.head(MISPLACED_SHOWN).itertuples()]
    if len(misplaced) > MISPLACED_SHOWN:
        st.caption(f"The first {MISPLACED_SHOWN} of {len(misplaced)} are drawn; the Images tab lists every image.")
    state.image_grid([(p, c) for p, c in items if p is not None], columns=6)
    if outside := [c for p, c in items if p is None]:
        st.caption(f"Not drawn, named outside the dataset's folder: {state.md('; '.join(outside))}")


#: a match graph with more pairs draws each image's strongest ones only (viz.strongest_pairs)
MAX_GRAPH_EDGES = 1500
GRAPH_EDGES_PER_IMAGE = 6
#: the pair list holds at most this many (most matches first), else the pairs of one image
MAX_PAIR_OPTIONS = 500
EVERY_IMAGE = "(every image: most matches first)"


def tab_pairs(rv: state.RunView, dataset: str | None, scene: str | None = None) -> None:
    table, problem = state.pairs_stats(rv, dataset) if dataset is not None else (None, None)
    if problem:
        st.warning(f"No match graph: {state.md(problem)}", icon="⚠️")
        return
    if table is None:
        st.info(absent(rv, "pairs_stats.csv", "No pairs_stats.csv in this run, so there is no match graph."))
        return
    pairs = table.copy()
    if "n_inliers" not in pairs:
        pairs["n_inliers"] = pairs["n_matches"]  # runs made before verified inliers were recorded per pair
    pairs = pairs[pairs["n_matches"] > 0]
    groups, arcs = None, ""
    if rv.per_image is not None:
        pi = rv.per_image[rv.per_image["dataset"].astype(str) == dataset]
        groups = dict(zip(pi["image"].astype(str), pi["scene"].astype(str), strict=True))
        arcs = " On the circle each GT scene is an arc: chords across arcs are matches between scenes."
    elif not (rows := submitted_rows(rv, dataset)).empty:  # no ground truth (a test split): its submitted clusters
        groups = dict(zip(rows["image"].astype(str), rows["scene"].astype(str), strict=True))
        arcs = (" No ground truth: on the circle each submitted cluster is an arc, chords across arcs are matches "
                "between clusters.")
    drawn = pairs
    if len(pairs) > MAX_GRAPH_EDGES:
        from imc_core.viz import strongest_pairs

        drawn = strongest_pairs(pairs, GRAPH_EDGES_PER_IMAGE)
    c1, c2 = st.columns([3, 1])
    c1.caption(f"{len(pairs)} matched pairs; edge width = COLMAP-verified inliers. Click an edge midpoint to open "
               "the pair." + arcs
               + (f" **The graph draws {len(drawn)} of them**: each image's {GRAPH_EDGES_PER_IMAGE} with most "
                  f"inliers (all {len(pairs)} fill the circle); pick any pair below." if len(drawn) < len(pairs)
                  else ""))
    layout = c2.radio("Layout", ["circle", "spring"], horizontal=True, key="graph_layout",
                      help=f"circle: images grouped by {'GT scene' if rv.per_image is not None else 'cluster'}; "
                      "spring: a force layout (matched scenes clump)")
    # the chart's key names the run, the dataset, the layout and a generation: a click selects a point, and
    # clicking it again changes nothing Plotly reports, so once the pair shown is another the chart is drawn anew
    # (the same edge clicked again after a pair picked by hand, or in another run, opened nothing)
    graph = f"fig_graph_{rv.id}_{dataset}_{layout}_{st.session_state.get(GRAPH_GEN, 0)}"
    event = state.show_figure("match_graph", drawn, groups, title=f"{dataset}: match graph", key=graph,
                              on_select="rerun", selection_mode="points",
                              layout="circular" if layout == "circle" else "spring")
    picked = _picked_pair(event)
    last = st.session_state.get("_picked_pair")
    if last is not None and last[0] != graph:  # (a click on another chart: not this one's)
        last = None
    top = pairs.sort_values("n_matches", ascending=False, kind="stable")
    own = None  # a GT scene picked: its own pairs open the list (the list opened on another scene's strongest pair)
    if scene is not None and rv.per_image is not None and groups is not None:
        members = {image for image, s in groups.items() if s == scene}
        inside = top["name0"].astype(str).isin(members) & top["name1"].astype(str).isin(members)
        top, own = pd.concat([top[inside], top[~inside]]), int(inside.sum())
    if len(top) > MAX_PAIR_OPTIONS:  # (a list of 17,000 pairs took seconds to filter as one typed)
        images = sorted({*top["name0"].astype(str), *top["name1"].astype(str)})
        if st.session_state.get("pairs_of") not in images or (
                picked and (last is None or picked != last[1])):  # (a click on the graph: any pair)
            st.session_state["pairs_of"] = EVERY_IMAGE
        of = st.selectbox("Pairs of", [EVERY_IMAGE, *images], key="pairs_of",
                          help=f"{len(top)} pairs: the list below holds the {MAX_PAIR_OPTIONS} with most matches, "
                               "or every pair of one image")
        if of == EVERY_IMAGE:
            top = top.head(MAX_PAIR_OPTIONS) if picked is None else pd.concat([top.head(MAX_PAIR_OPTIONS), top[
                (top["name0"].astype(str) == picked[0]) & (top["name1"].astype(str) == picked[1])]]).drop_duplicates()
        else:
            top = top[(top["name0"].astype(str) == of) | (top["name1"].astype(str) == of)]
    options = [f"{r.name0} ↔ {r.name1} ({r.n_matches})" for r in top.itertuples()]
    if not options:
        return
    if picked and (last is None or picked != last[1]):  # a new click on the graph wins once
        st.session_state["_picked_pair"] = last = (graph, picked)
        key = f"{picked[0]} ↔ {picked[1]} ("
        st.session_state["pair"] = next((o for o in options if o.startswith(key)), options[0])
    if st.session_state.get("pair") not in options or (
            own and st.session_state.get(PAIRS_SCENE) != (rv.id, dataset, scene)):  # (another scene picked)
        st.session_state["pair"] = options[0]
    st.session_state[PAIRS_SCENE] = (rv.id, dataset, scene)
    choice = st.selectbox("Pair (most matches first)" if own is None else  # (a label is Markdown: md() the name)
                          f"Pair: the {own} of {state.md(str(scene))} first, then the others (most matches first)"
                          if own else f"Pair (most matches first; no pair inside {state.md(str(scene))} has matches)",
                          options, key="pair")
    a, b = choice.rsplit(" (", 1)[0].split(" ↔ ")
    if picked and picked != (a, b):  # another pair shown than the one selected on the chart: a fresh chart, so
        st.session_state[GRAPH_GEN] = st.session_state.get(GRAPH_GEN, 0) + 1  # that clicking it again counts
        st.session_state.pop("_picked_pair", None)
        st.rerun()
    pair_viewer(rv, dataset, a, b)


#: session key of the run, dataset and GT scene the pair list was last shown for (a newly picked scene opens it on
#: its own strongest pair)
PAIRS_SCENE = "_pairs_scene"
#: session key of the match graph's generation (:func:`tab_pairs` draws a fresh chart when it moves on)
GRAPH_GEN = "_graph_generation"


def _picked_pair(event: Any) -> tuple[str, str] | None:
    try:
        points = event.selection.points if event is not None else []
    except AttributeError:
        return None
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)) and len(cd) >= 2:
            return str(cd[0]), str(cd[1])
    return None


def pair_viewer(rv: state.RunView, dataset: str, a: str, b: str) -> None:
    """Two images with their keypoints and matches from the cached h5 artifacts (graph only when not found)."""
    try:
        feats, matches = state.find_match_artifacts(rv.config, rv.data_root, dataset, rv.path)
        k0, k1, m = state.read_pair(feats, matches, a, b)
        inliers = state.inlier_mask(rv.path, dataset, a, b, m)
        image_dir = _image_dir(rv, dataset)
    except (ImcError, OSError) as err:
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        st.info(f"Graph only: {state.md(reason)}")
        return
    try:
        p0, p1 = state.image_in(image_dir, a), state.image_in(image_dir, b)
        if p0 is None or p1 is None:
            raise InputError(image_dir, "the pair names an image outside the dataset's folder")
        img0, s0 = state.load_image_small(p0)
        img1, s1 = state.load_image_small(p1)
    except ImcError as err:  # it names the image
        if not rv.data_root.is_dir():  # a teammate's run: say why every image is missing, once
            st.info(f"Graph only: the run's data root {state.code(rv.data_root)} is not on this machine, so its "
                    "images cannot be drawn.")
        else:
            st.info(f"Graph only: {state.md(str(err).splitlines()[0])}")
        return
    if inliers is not None:
        st.caption(f"{int(inliers.sum())} of {len(m)} matches kept by COLMAP's geometric verification (green); "
                   "red: rejected")
    most = max(1, len(m))
    # (a pair of one match: Streamlit refuses a slider whose ends are equal, and the tab failed)
    lines = most if most <= 1 else st.slider("Match lines drawn (evenly subsampled, per class)", 1, most,
                                             min(most, 150), key="pair_lines",
                                             help="All matches count; fewer lines keep the images readable")
    state.show_figure("pair_view", img0, img1, k0 * s0, k1 * s1, m, inliers, title=f"{a} ↔ {b}", key="fig_pair",
                      max_lines=int(lines))


#: What the Loss tab's parts mean (imc_core.analysis.loss_attribution): the discount is not a fixed cost.
LOSS_CAPTION = (
    "Gap to 100 split into score points lost to clusterness (impure clusters), misclustered images (a pose, but in "
    "another cluster than their scene's: also a clustering loss), unregistered images (no pose, or in outliers), "
    "inaccurate poses (in the right cluster, missing thresholds; an image whose cluster holds fewer than 3 of its "
    "scene's images cannot be aligned, and counts under what kept the others away: misclustered or unregistered), "
    "and the discount: the extra loss from the "
    "metric's −3 rule (a failing slot weighs 1/Σ(m−3) instead of 1/Σm over the scenes' m images, and a threshold "
    "that at most 3 of a scene's cameras pass adds nothing). The discount vanishes when every camera passes and is "
    "negative when failures concentrate in some scenes (a scene that fails wholly drops its −3 from the "
    "denominator): another part can then exceed the gap. It also absorbs any difference between the reported mAA "
    "and its recount from the per-image table (mAA_recomputed). Clusterness also drops when a whole scene is left "
    "unclustered: the metric then charges the first cluster's size to it; a dataset with no image in any cluster (its "
    "reconstruction failed) loses nothing to clusterness: its whole gap is unregistered images.")


#: Short headers (and their meaning) of loss_attribution's longer columns, so that none is cut off.
LOSS_LABELS = {
    "clusterness_score": ("clust. %", "clusterness of the dataset (percent)"),
    # (not "clusterness" beside "clust. %": a reader took 0.00 for the dataset's clusterness)
    "clusterness": ("clust. loss", "score points lost to clusterness: other scenes' images or GT outliers in a "
                                   "scene's cluster"),
    "discount": ("discount", "the rest of the gap: the metric's −3 images per scene (see the caption)"),
    "misclustered": ("miscl.", "score points lost to images posed in another cluster than their scene's"),
    "unregistered": ("unreg.", "score points lost to unregistered images (no pose, or in outliers)"),
    "inaccurate": ("inacc.", "score points lost to inaccurate poses"),
    "mAA_recomputed": ("mAA recount", "mAA recounted from per_image.csv (percent)"),
    "n_images": ("images", "GT images of the dataset's scenes (outliers excepted)"),
    "misclustered_slots": ("miscl. slots", "(image, threshold) slots failed by misclustered images"),
    "unregistered_slots": ("unreg. slots", "(image, threshold) slots failed by unregistered images"),
    "inaccurate_slots": ("inacc. slots", "(image, threshold) slots failed by inaccurate poses"),
}


def _number_columns(df: pd.DataFrame, fmt: str, labels: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Compact number columns (each as wide as its header, ``fmt`` for floats) for every numeric column of ``df``,
    so wide tables fit and no header is cut ("mAA recour…"); ``labels`` gives some a shorter header and a tooltip
    (``{column: (header, help)}``)."""
    out = {}
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            label, help_ = (labels or {}).get(c, (None, None))
            width = max(64, 7 * len(label or str(c)) + 34)  # (pixels: the header, its sort arrow and padding)
            out[c] = st.column_config.NumberColumn(label, format=fmt if pd.api.types.is_float_dtype(df[c]) else None,
                                                   width=width, help=help_)
    return out


def tab_loss(rv: state.RunView) -> None:
    if not rv.scores or rv.per_image is None:
        st.info("Loss attribution needs scores.json and per_image.csv.")
        return
    from imc_core.analysis import loss_attribution

    from imc_core.convention import WARNING_STARTS

    att = loss_attribution(rv.scores, rv.scenes if rv.scenes is not None else pd.DataFrame(), rv.per_image)
    # poses written in another convention read as inaccurate (or unregistered) here: say so beside the parts
    for note in [w for w in rv.meta.get("warnings") or [] if str(w).startswith(WARNING_STARTS)]:
        st.warning(f"The pose-convention check: {state.md(str(note).rstrip('.'))}. Poses written another way count "
                   "below as inaccurate (and their discount); read so, those points would not be lost.", icon="⚠️")
    st.caption(LOSS_CAPTION)
    for name, row in att.drop(index="total", errors="ignore").iterrows():
        if abs(float(row["mAA"]) - float(row["mAA_recomputed"])) > 0.01:  # (NaN compares false: no recount, no note)
            st.warning(f"{state.md(name)}: the metric's mAA ({row['mAA']:.2f}) differs from its recount from the "
                       f"per-image table ({row['mAA_recomputed']:.2f}), which the official metric does when the "
                       "'outliers' cluster comes first in the file (its scenes count 0 images but still subtract 3, "
                       "so mAA can exceed 100). The difference sits in **discount**: this dataset's split does not "
                       "say where its points went.", icon="⚠️")
    state.show_figure("loss_attribution_bar", att, key="fig_loss")
    # the points, then the slots they come from in a table of their own (one table of both was cut at 1,366 px),
    # with the mAA recounted from them (beside the points, it was cut there too for long dataset names)
    slots = [c for c in att.columns if str(c).endswith("_slots") or c in ("n_images", "mAA_recomputed")]
    points = att.drop(columns=slots)
    st.dataframe(points.round(2).rename_axis("dataset").reset_index(), hide_index=True, placeholder=state.NO_VALUE,
                 width="stretch", column_config=_number_columns(points, "%.2f", LOSS_LABELS))
    if slots:
        st.caption("Failed (image, threshold) slots behind those points: each of a dataset's images counts once per "
                   "scored threshold (t2 … t5); the mAA recounted from the per-image table beside them.")
        st.dataframe(att[slots].rename_axis("dataset").reset_index(), hide_index=True, placeholder=state.NO_VALUE,
                     column_config=_number_columns(att[slots], "%.2f", LOSS_LABELS))


def reconstruction_steps_table(timings: dict) -> pd.DataFrame:
    """``timings.json``'s ``reconstruction_steps`` as one row per dataset, steps in run order, plus the stage's cache
    status (``hit``: the steps are those of the run that computed it); empty for runs from before the steps."""
    from imc_core.stages.reconstruction import STEPS

    steps = timings.get("reconstruction_steps") or {}
    cache = timings.get("cache") or {}

    rows = [{"dataset": ds, "cache": str((cache.get(ds) or {}).get("reconstruction", "")),
             **{k: float(v) for k, v in secs.items()}} for ds, secs in steps.items() if isinstance(secs, dict)]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    known = [c for c in STEPS if c in frame.columns]
    other = [c for c in frame.columns if c not in ("dataset", "cache", *STEPS)]
    return frame[["dataset", *known, *other, "cache"]]


def reconstruction_reuses(steps: pd.DataFrame) -> list[str]:
    """For each dataset of :func:`reconstruction_steps_table` whose reconstruction missed the cache but reused part
    of it, a line that says which part (its cache cell read only "miss" beside a step named "… reused")."""
    out = []
    for row in steps.to_dict("records") if not steps.empty else []:
        reused = [what for what, step in (("verified database", "verified database reused"),
                                          ("mapped models", "mapped models reused"))
                  if isinstance(row.get(step), float) and row[step] == row[step]]
        if row.get("cache") == "miss" and reused:
            out.append(f"**{state.md(str(row['dataset']))}**: a cache miss that reused the {' and the '.join(reused)}.")
    return out


def stages_reached(progress: dict[str, Any] | None) -> pd.DataFrame:
    """Per stage of ``progress.json``: done / total and seconds; a stage that never finished gets the time from its
    start to the run's last progress (what a cancelled or failed run spent there)."""
    from dashboard.jobs import stage_progress

    updated = (progress or {}).get("updated")
    rows = []
    for sp in stage_progress(progress, now=updated if isinstance(updated, (int, float)) else None):
        finished = sp.cached or 0 < sp.total <= sp.done
        seconds = sp.seconds if sp.seconds is not None or finished else sp.elapsed_s
        rows.append({"stage": sp.name, "done": f"{sp.done}/{sp.total}", "seconds": seconds,
                     "state": "cache hit" if sp.cached else ("finished" if finished else "stopped here")})
    return pd.DataFrame(rows, columns=["stage", "done", "seconds", "state"])


def tab_timings(rv: state.RunView) -> None:
    if not (rv.timings or {}).get("datasets") and rv.status in ("cancelled", "failed", "stopped"):
        # no dataset finished: its stage times were never written; the progress file says how far each got
        reached = stages_reached(state.run_progress(rv.path))
        if not reached.empty:
            st.markdown(f"**How far the run got** (it {ENDED.get(rv.status, rv.status)} before a dataset finished)")
            st.dataframe(reached, hide_index=True, placeholder=state.NO_VALUE, width="stretch", key="stages_reached",
                         column_config={"seconds": st.column_config.NumberColumn(format="%.1f")})
            total = (rv.timings or {}).get("total")
            if isinstance(total, (int, float)):
                st.caption(f"The run took {total:.1f} s in all.")
            return
    if not rv.timings:
        st.info(absent(rv, "timings.json", "No timings.json in this run."))
        return
    if fully_cached(rv.timings):
        total = rv.timings.get("total")
        took = f"its {total:.1f} s" if isinstance(total, (int, float)) else "its time"
        st.info(f"Every stage of this run came from the cache, so {took} went to reading cached artifacts, scoring "
                "and writing the run: there are no stage times to chart."
                + (" The steps below are those of the run that computed the reconstruction."
                   if rv.timings.get("reconstruction_steps") else ""))
    else:
        state.show_figure("timings_bar", rv.timings, key="fig_timings")
    jobs = rv.meta.get("jobs") or 1
    if jobs > 1 and len(rv.timings.get("datasets") or {}) > 1:
        st.caption(f"Up to {jobs} datasets were reconstructed at once, beside the next dataset's features and "
                   "matching, so the bars add up to more than the run's wall time.")
    cache = rv.timings.get("cache") or {}
    steps = reconstruction_steps_table(rv.timings)
    if not steps.empty:
        st.markdown("**Inside the reconstruction** (seconds)")
        st.dataframe(steps, hide_index=True, placeholder=state.NO_VALUE, width="stretch", key="reconstruction_steps",
                     column_config={c: st.column_config.NumberColumn(format="%.2f") for c in steps.columns
                                    if c not in ("dataset", "cache")})
        if reuses := reconstruction_reuses(steps):
            st.caption(" ".join(reuses))
        st.caption("A re-run after a change of a mapping key reuses the verified database and redoes the mapping "
                   "and the final bundle adjustment; after a change of a refine_* key only (the final adjustment's), "
                   "it reuses the mapped models too. On a cache hit the row shows the run that computed the "
                   "reconstruction. Components mapped side by side overlap, so a step's seconds are wall time.")
    if cache:
        st.markdown("**Cache**")
        st.dataframe(pd.DataFrame(cache).T.rename_axis("dataset").reset_index(), hide_index=True,
                     placeholder=state.NO_VALUE, width="stretch")


def fully_cached(timings: dict[str, Any], below_s: float = 0.05) -> bool:
    """Whether every stage of every dataset was a cache hit or took under ``below_s`` (exhaustive pairs are
    computed in microseconds), with at least one hit: such a run's stage bars are all zero."""
    per_ds = timings.get("datasets") or {}
    cache = timings.get("cache") or {}
    hits = 0
    for name, stages in per_ds.items():
        if not isinstance(stages, dict):
            return False
        for stage, seconds in stages.items():
            hit = (cache.get(name) or {}).get(stage) == "hit"
            hits += hit
            if not hit and not (isinstance(seconds, (int, float)) and seconds < below_s):
                return False
    return hits > 0


def tab_log(rv: state.RunView) -> None:
    lines = rv.log.splitlines()
    st.caption(f"{len(lines)} lines (last 500 shown)")
    st.code("\n".join(lines[-500:]) or "(empty log)", language="text")
    job_log = Path(rv.path) / "job.log"
    if job_log.exists() and job_log.stat().st_size:
        with st.expander("Process output (job.log)"):
            st.code(job_log.read_text(errors="replace")[-20000:], language="text")


def tab_descriptors(rv: state.RunView, dataset: str | None) -> None:
    if dataset is None:
        return
    models = (rv.config.get("global_descriptors") or {}).get("models") or []
    if models:
        st.info(f"This run's variant names global descriptors ({', '.join(models)}), but the run holds no global "
                "descriptor artifact; shown below is the local-feature proxy.")
    else:
        st.caption("No global descriptors (DINOv2 / BLIP) in this run's variant. Shown instead: each image's local "
                   "descriptors, L2-normalised and mean-pooled, projected to 2-D with PCA. Scenes that fall apart "
                   "here could be separated by appearance before matching; scenes that overlap need geometry.")
    features = state.run_artifacts(rv.path, dataset).get("features")
    if features is None or not (features / "features.h5").is_file():
        if features is None and rv.status != "done":  # artifacts.json gets a dataset once it is reconstructed
            st.info(absent(rv, "artifacts.json", "") + " Without it the run's cached features cannot be found.")
        elif not (Path(rv.path) / "artifacts.json").is_file():
            st.info("This run does not name its cached features (no artifacts.json: made by an imc-lab from before "
                    "runs recorded them, or the file was removed), so there is nothing to project. Re-run the "
                    "variant to compute them.")
        else:
            st.info("This run's cached local features are no longer in the cache (cleared, or the run was imported "
                    "from a bundle), so there is nothing to project. Re-run the variant to rebuild them.")
        return
    if rv.per_image is None:
        rows = submitted_rows(rv, dataset)
        if rows.empty:
            st.info(absent(rv, "per_image.csv", "No per-image table in this run, so images cannot be coloured by GT "
                                                "scene and cluster."))
            return
        # no ground truth (a test split): coloured by cluster alone (it drew nothing)
        st.caption("No ground truth for this dataset in the run: images are coloured by their submitted cluster.")
        pi = pd.DataFrame({"image": rows["image"].astype(str), "scene": None, "cluster": rows["scene"].astype(str)})
    else:
        pi = rv.per_image[rv.per_image["dataset"].astype(str) == dataset]
    names = pi["image"].astype(str).tolist()
    try:
        coords = state.appearance_embedding(features / "features.h5", names)
    except ImcError as err:
        st.warning(str(err))
        return
    st.caption(f"Images with features: {int(np.isfinite(coords).all(axis=1).sum())} of {len(names)}; hover a point "
               "for its name.")
    assoc = {}
    if rv.scenes is not None and {"dataset", "scene", "cluster"} <= set(rv.scenes.columns):
        sc = rv.scenes[rv.scenes["dataset"].astype(str) == dataset]
        assoc = {str(c): str(s) for s, c in zip(sc["scene"], sc["cluster"], strict=True) if isinstance(c, str)}
    gt = None if rv.per_image is None else pi["scene"].astype(str).tolist()
    state.show_figure("embedding_scatter", coords, gt, pi["cluster"].astype(str).tolist(), names, cluster_scene=assoc,
                      title=f"{dataset}: appearance (pooled local descriptors, PCA)", key="fig_desc")


#: tabs that show a whole dataset whatever GT scene is picked, and what they show of the scenes instead
DATASET_TABS = {
    "Clusters": "its rows are the scenes, its columns the clusters.",
    "Pairs": "the graph colours its images by GT scene, and only the pair list follows the picker: it opens on the "
             "scene's own pairs.",
    "Descriptors": "the points are coloured by GT scene.",
}

#: session key of the run Results showed last (kept while other pages show; the run picker's own state is not)
LAST_RUN = "_results_last_run"
#: session key of the ``?run=`` the picker last wrote to the URL (another value there comes from a link or from
#: browser navigation). The picker is not bound to the URL, as the sidebar's root picker is not: a bound picker
#: emptied itself on Back to a history entry written before it had put the run in the URL, whatever the session
#: held, and refused a value set from code.
URL_RUN = "_run_in_url"


def main() -> None:
    st.title("Results")
    state.register_share("results", SHARE_KEYS)
    df = state.runs_table()
    ids = [str(i) for i in df["id"]]
    wanted = state.qp_first("run")
    if wanted and wanted not in ids:
        ids.insert(0, wanted)  # not listed (unreadable or not there): let the loader say why
    if not ids:
        st.info("No runs yet: launch one on the Run page or import a bundle on the Compare page.")
        return
    if wanted and wanted != st.session_state.get(URL_RUN):  # a link, a page switch or Back/Forward naming a run
        st.session_state["run"] = wanted
    elif st.session_state.get("run") not in ids:  # a first visit, or back from a page that dropped the picker
        # the run shown last, unless the sidebar has moved to another data root since: then the newest run there
        # (the old run took the sidebar back to its own root, and hid the run just launched on the new one)
        remembered, root = st.session_state.get(LAST_RUN), state.current_root()
        st.session_state["run"] = (remembered if remembered in ids and state.made_on(df, remembered, root)
                                   else state.default_run(df, root))
    # (the value, and so the URL and the share link, is the run id; the label, group and score help find it)
    run_id = st.selectbox("Run", ids, index=None, key="run", placeholder="pick a run (type an id or a label)",
                          format_func=state.run_choice(df))
    if not run_id:
        return
    st.query_params["run"] = st.session_state[URL_RUN] = st.session_state[LAST_RUN] = run_id
    rv = state.run_view(run_id)
    if rv.meta.get("data_root"):
        # the sidebar shows the data the run was made on (when it exists here), and so does the share link
        state.follow_root(rv.data_root, reason=run_id)
        state.register_share("results", SHARE_KEYS, values={"root": str(rv.data_root)})
    header(rv)
    live = rv.status in ACTIVE and jobs.job_status(Path(rv.path)).active
    if live:  # its progress, live; the page reruns with the results when it ends
        jobview.follow(Path(rv.path))
        st.caption("The score and the downloads appear here when the run has finished.")
    else:
        headline(rv)
        downloads(rv)
    left_out: list[str] = []
    dataset, scene = dataset_scene_pickers(rv, left_out)
    asked_tab = state.qp_first("tab")
    if asked_tab and asked_tab not in TABS and (same := [t for t in TABS if t.lower() == asked_tab.strip().lower()]):
        st.query_params["tab"] = st.session_state["tab"] = same[0]  # a hand-typed ``?tab=images`` or ``3d``
    if bad := unknown_link_value("tab", TABS):
        left_out.append(bad)
    if left_out:
        shown = [dataset or "", scene or ALL_SCENES, st.session_state.get("tab") or TABS[0]]
        st.warning(f"Not in this run, so left out of the link: {', '.join(left_out)}. Showing "
                   f"{' · '.join(x for x in shown if x)} instead.")
    tabs = st.tabs(TABS, key="tab", bind="query-params")
    renderers = {
        "Overview": lambda: tab_overview(rv, dataset, scene),
        "Images": lambda: tab_images(rv, dataset, scene),
        "3D": lambda: tab_3d(rv, dataset, scene),
        "Clusters": lambda: tab_clusters(rv, dataset),
        "Pairs": lambda: tab_pairs(rv, dataset, scene),
        "Loss": lambda: tab_loss(rv),
        "Timings": lambda: tab_timings(rv),
        "Log": lambda: tab_log(rv),
        "Descriptors": lambda: tab_descriptors(rv, dataset),
    }
    for name, tab in zip(TABS, tabs, strict=True):
        if tab.open is False:
            continue  # lazy: only the selected tab is computed
        with tab, state.error_boundary(name):
            if live and name != "Log":
                st.info(f"This run is still {rv.status}: its {name} tab fills in when it has finished (the page "
                        "reloads by itself then). The Log tab shows its log as of this page's load.")
                continue
            if name in STAGE_TABS and rv.outside:
                st.info(f"This run was scored from a submission made outside imc-lab "
                        f"({state.code(rv.meta.get('source') or 'submission.csv')}): no stage of imc-lab ran, so "
                        f"there are no {STAGE_TABS[name]} to show.")
                continue
            if scene is not None and name in DATASET_TABS:  # (a tester read the graph as the scene's)
                st.caption(f"All of {state.md(str(dataset))}: this tab does not follow the GT scene picker "
                           f"({state.md(scene)}); {DATASET_TABS[name]}")
            renderers[name]()


with state.error_boundary("Results"):
    main()
