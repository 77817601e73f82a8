"""Pure Plotly figure builders for the dashboard (no Streamlit here): every function returns a ``go.Figure``.

Inputs are pandas frames, numpy arrays and dicts in the formats of ``docs/formats.md``: pose frames (world→camera
``r00..r22, tx, ty, tz`` per ``image``), ``scores.json``, ``scenes.csv``, ``per_image.csv``, ``alignments.json``,
``timings.json``. Each builder accepts empty inputs and nan poses without raising (it then shows a "no data" note).

Example:
    >>> fig = camera_frustums(gt_scene, pred_cluster, alignment=alignments[ds][scene], errors=err_by_image,
    ...                       thresholds=alignments[ds][scene]["thresholds"])
    >>> fig.show()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from .errors import InputError
from .metric import MetricConfig
from .submission import R_COLS, T_COLS

__all__ = [
    "apply_similarity",
    "camera_centers",
    "camera_centres",
    "camera_frustums",
    "cluster_matrix",
    "compare_bars",
    "embedding_scatter",
    "frustum_vertices",
    "graph_layout",
    "loss_attribution_bar",
    "match_graph",
    "pair_view",
    "scene_bars",
    "score_bars",
    "strongest_pairs",
    "threshold_curve",
    "thresholds_passed",
    "timings_bar",
]

OUTLIERS = "outliers"
GT_COLOR = "#4a6fa5"
FAIL_COLOR = "#d73027"
OUTLIER_COLOR = "#9e9e9e"
#: a predicted camera drawn without ground truth (no error to colour it by)
PRED_COLOR = "#e66101"
#: lines, grids and de-emphasised marks in mid grey, which reads on Streamlit's light and dark themes alike (a
#: dark grey vanished on the dark page, a light one outshone the marks it was meant to sit behind)
NEUTRAL_LINE = "rgba(128,128,128,0.9)"
NEUTRAL_GRID = "rgba(128,128,128,0.3)"
SKIPPED_GREY = "rgba(128,128,128,0.4)"
#: error bins of the 3-D view, best to worst before the fail colour
ERROR_SCALE = [[0.0, "#1a9850"], [0.5, "#d4a000"], [1.0, PRED_COLOR]]
#: qualitative colours handed out in order to labels (scenes, clusters)
LABEL_COLORS: list[str] = qualitative.Plotly + qualitative.D3 + qualitative.Set3
PART_COLORS: dict[str, str] = {
    "score": "#bdbdbd",
    "clusterness": "#7b3294",
    "misclustered": "#c2a5cf",
    "unregistered": "#d7191c",
    "inaccurate": "#fdae61",
    "discount": "#2c7bb6",
}


# --------------------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------------------


def _note(fig: go.Figure, text: str, *, top: bool = False) -> go.Figure:
    """Put a grey note on ``fig``: centred (empty inputs), or at the top left above a drawn figure."""
    where = {"x": 0.0, "y": 1.0, "xanchor": "left", "yanchor": "top"} if top else {"x": 0.5, "y": 0.5}
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", **where,
                       font={"size": 12 if top else 14, "color": NEUTRAL_LINE})
    return fig


def _empty(title: str, text: str = "no data") -> go.Figure:
    """An empty figure with a title and a note."""
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _note(fig, text)


def _palette(labels: Sequence[str]) -> dict[str, str]:
    """Stable qualitative colours per label; ``outliers`` is grey."""
    colors = LABEL_COLORS
    out: dict[str, str] = {}
    k = 0
    for label in labels:
        if label in out:
            continue
        if label == OUTLIERS:
            out[label] = OUTLIER_COLOR
        else:
            out[label] = colors[k % len(colors)]
            k += 1
    return out


def _as_bool(col: pd.Series) -> np.ndarray:
    """Bool array from a column that may hold bools or their CSV spellings."""
    if col.dtype == bool:
        return col.to_numpy()
    truthy = {"true", "1", "1.0", "yes"}
    return np.array([bool(v) if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() in truthy for v in col])


def _polyline(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten (N, K, 3) polylines into x, y, z arrays with a nan break after each (one trace for all).

    Plotly draws nan as a gap; numpy arrays also skip Plotly's slow per-element validation of lists.
    """
    seg = np.asarray(segments, dtype=float).reshape(len(segments), -1, 3)
    pts = np.concatenate([seg, np.full((len(seg), 1, 3), np.nan)], axis=1).reshape(-1, 3)
    return pts[:, 0], pts[:, 1], pts[:, 2]


# --------------------------------------------------------------------------------------------------------------
# camera geometry
# --------------------------------------------------------------------------------------------------------------


def _poses(frame: pd.DataFrame | None, what: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image names, rotations and translations of a pose frame (first row per image kept).

    Returns:
        names (N), R (N, 3, 3) world→camera, t (N, 3); nan rows are kept (callers decide).
    """
    if frame is None or len(frame) == 0:
        return [], np.zeros((0, 3, 3)), np.zeros((0, 3))
    missing = [c for c in ("image", *R_COLS, *T_COLS) if c not in frame.columns]
    if missing:
        raise InputError(None, f"{what} pose frame lacks columns {', '.join(missing)}")
    frame = frame.drop_duplicates("image", keep="first")
    rot = frame[list(R_COLS)].to_numpy(dtype=float).reshape(-1, 3, 3)
    trans = frame[list(T_COLS)].to_numpy(dtype=float)
    return [str(n) for n in frame["image"]], rot, trans


def camera_centers(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Camera centres of world→camera poses.

    Args:
        rot: (N, 3, 3) world→camera rotations.
        trans: (N, 3) world→camera translations.

    Returns:
        (N, 3) centres ``c = -Rᵀ t`` (nan where the pose is nan).
    """
    return -np.einsum("nji,nj->ni", rot, trans)


def apply_similarity(rot: np.ndarray, trans: np.ndarray, s: float, r_align: np.ndarray,
                     t_align: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move world→camera poses into another frame by ``x_new = s · R_a · x + t_a`` (the metric's alignment).

    The centre becomes ``s · R_a · c + t_a`` and the camera→world rotation ``R_a · Rᵀ``; camera scale is unchanged.

    Args:
        rot: (N, 3, 3) world→camera rotations in the source frame.
        trans: (N, 3) world→camera translations in the source frame.
        s: scale.
        r_align: (3, 3) rotation.
        t_align: (3,) translation.

    Returns:
        ``(rot_new (N, 3, 3), trans_new (N, 3))`` world→camera poses in the target frame.
    """
    r_align = np.asarray(r_align, dtype=float).reshape(3, 3)
    t_align = np.asarray(t_align, dtype=float).reshape(3)
    centers = s * camera_centers(rot, trans) @ r_align.T + t_align
    rot_new = rot @ r_align.T
    trans_new = -np.einsum("nij,nj->ni", rot_new, centers)
    return rot_new, trans_new


def frustum_vertices(rot: np.ndarray, trans: np.ndarray, scale: float, aspect: float = 4 / 3) -> np.ndarray:
    """Apex and image-plane corners of camera pyramids.

    The apex is the camera centre ``-Rᵀt``; the corners lie at depth ``scale`` along the camera's +z, at
    ``(±aspect/2, ±1/2) · scale`` in camera x (right) and y (down).

    Args:
        rot: (N, 3, 3) world→camera rotations.
        trans: (N, 3) world→camera translations.
        scale: pyramid depth in world units.
        aspect: image width / height.

    Returns:
        (N, 5, 3) world points: apex, then corners top-left, top-right, bottom-right, bottom-left.
    """
    h = 0.5
    w = 0.5 * aspect
    local = np.array([[0, 0, 0], [-w, -h, 1], [w, -h, 1], [w, h, 1], [-w, h, 1]], dtype=float) * scale
    centers = camera_centers(rot, trans)
    # x_world = c + Rᵀ x_cam
    return centers[:, None, :] + np.einsum("nji,kj->nki", rot, local)


def _frustum_segments(rot: np.ndarray, trans: np.ndarray, scale: float) -> np.ndarray:
    """(N, 17, 3) polylines drawing each pyramid (nan = pen up) plus a small "up" tick above the top edge."""
    verts = frustum_vertices(rot, trans, scale)
    tick = np.array([[-0.15, -0.5, 1], [0.0, -0.75, 1], [0.15, -0.5, 1]], dtype=float) * scale
    ticks = camera_centers(rot, trans)[:, None, :] + np.einsum("nji,kj->nki", rot, tick)
    nan = np.full((len(verts), 1, 3), np.nan)
    a, c0, c1, c2, c3 = (verts[:, i : i + 1] for i in range(5))
    return np.concatenate([c0, c1, c2, c3, c0, a, c1, nan, a, c2, nan, a, c3, nan, ticks], axis=1)


def _similarity(alignment: Mapping[str, Any] | None) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``(s, R, t)`` from a model dict or from an ``alignments.json`` scene entry (its last non-null model)."""
    if alignment is None:
        return None
    model: Any = alignment
    if "models" in alignment:
        models = [m for m in (alignment.get("models") or []) if m]
        if not models:
            return None
        model = models[-1]
    try:
        return float(model["s"]), np.asarray(model["R"], float).reshape(3, 3), np.asarray(model["t"], float).reshape(3)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(None, f"alignment needs keys s, R (3x3), t (3): {exc}") from exc


def near_points(points: np.ndarray, centers: np.ndarray, quantile: float = 0.98, max_factor: float = 4.0
                ) -> np.ndarray:
    """Mask of the 3-D points worth drawing around the cameras.

    Points near infinity (low-parallax tracks) lie hundreds of scene sizes away; with ``aspectmode = "data"`` a few
    of them shrink the cameras to a dot. Kept: points within ``min(q, max_factor · r)`` of the cameras' centroid,
    with ``q`` the ``quantile`` of the points' distances and ``r`` the cameras' largest distance from it (at least
    ``2 · r``, so the scene the cameras look at stays whole).

    Args:
        points: (P, 3).
        centers: (C, 3) camera centres in the same frame.

    Returns:
        (P,) bool.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    centers = np.asarray(centers, dtype=float).reshape(-1, 3)
    centers = centers[np.isfinite(centers).all(axis=1)]
    if len(points) == 0 or len(centers) < 2:
        return np.ones(len(points), dtype=bool)
    mid = centers.mean(axis=0)
    r = float(np.linalg.norm(centers - mid, axis=1).max())
    d = np.linalg.norm(points - mid, axis=1)
    if r <= 0:
        return np.ones(len(points), dtype=bool)
    limit = max(min(float(np.quantile(d, quantile)), max_factor * r), 2.0 * r)
    return d <= limit


def _auto_scale(centers: np.ndarray) -> float:
    """Frustum depth: 0.8 × the median nearest-camera distance, kept between 1 % and 6 % of the extent (the
    diagonal of the box holding the central 96 % of the cameras on each axis, so a few cameras far off do not
    inflate it). At 200 cameras 6 % of the extent was several times their spacing: the pyramids merged into one
    mass; cameras nearly on top of each other (a video) still get pyramids of 1 %."""
    pts = centers[np.isfinite(centers).all(axis=1)]
    if len(pts) < 2:
        return 1.0
    lo, hi = np.percentile(pts, [2.0, 98.0], axis=0)
    diag = float(np.linalg.norm(hi - lo)) or float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
    if diag <= 0:
        return 1.0
    from scipy.spatial import cKDTree

    nn = float(np.median(cKDTree(pts).query(pts, k=2)[0][:, 1]))
    return float(np.clip(0.8 * nn, 0.01 * diag, 0.06 * diag))


def _error_bins(errors: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, list[str], list[str]]:
    """Bin errors by the metric thresholds.

    Args:
        errors: (N,) metres, nan = not evaluated.
        thresholds: the scene's thresholds (the first two, skipped by the metric, are ignored; a list of two or
            fewer is used whole).

    Returns:
        bin index per camera (N,), bin names, bin colours; the last bin is fail / not registered.
    """
    thr = [float(x) for x in thresholds]
    used = thr[_skipped(len(thr)):]
    # green → amber → orange: every bin stays visible on a white background (RdYlGn's middle is near white)
    colors = sample_colorscale(ERROR_SCALE, list(np.linspace(0.0, 1.0, len(used)))) + [FAIL_COLOR]
    # lengths in the unit that reads best (3.01 cm, not 0.03014 m; the Images tab's ticks say mm/cm the same way)
    names = [f"err < {length_label(used[0])}"] + [
        f"{length_label(lo)} – {length_label(hi)}" for lo, hi in zip(used[:-1], used[1:], strict=True)]
    # (a camera without an error is posed but outside its scene's cluster; an unregistered one has its own ✕)
    names.append(f"fail (≥ {length_label(used[-1])} or in another cluster)" if used else "fail")
    idx = np.full(len(errors), len(used), dtype=int)
    for k in range(len(used) - 1, -1, -1):
        idx[np.nan_to_num(errors, nan=np.inf) < used[k]] = k
    return idx, names, colors


def _skipped(n: int) -> int:
    """How many of a scene's ``n`` thresholds the metric leaves unscored: the first two (``skip_top_thresholds``)
    whatever their number, none of a list too short to keep any (drawn whole, as a plain increasing list)."""
    skip = MetricConfig().skip_top_thresholds
    return skip if n > skip else 0


def _used_thresholds(thresholds: Sequence[float]) -> list[int]:
    """Indices of the thresholds the metric scores: all but the first two (t2 … t5 of a scene's six)."""
    return list(range(_skipped(len(thresholds)), len(thresholds)))


def thresholds_passed(rows: pd.DataFrame, thresholds: Sequence[float]) -> pd.Series:
    """How many of the scored thresholds each image passes, each under its own alignment, as the metric counts.

    Args:
        rows: ``per_image.csv`` rows of one GT scene (``image`` and ``pass_0 … pass_5``).
        thresholds: the scene's thresholds (six: t2 … t5 are scored).

    Returns:
        Series indexed by image name, 0 … the number of scored thresholds (an absent pass column counts as not
        passed; nan for every image when the rows hold none of the scored ones: unknown, not "passes none").
    """
    if not any(f"pass_{k}" in rows for k in _used_thresholds(thresholds)):
        return pd.Series(np.nan, index=rows["image"].astype(str).to_numpy(), dtype=float)
    count = pd.Series(0, index=rows.index, dtype=int)
    for k in _used_thresholds(thresholds):
        if f"pass_{k}" in rows:
            column = rows[f"pass_{k}"]
            count += (column.astype(str).str.lower() == "true").astype(int) if column.dtype != bool else column
    out = pd.Series(count.to_numpy(), index=rows["image"].astype(str).to_numpy())
    # (thresholds changed after the run: the figures say which ones the count leaves out)
    out.attrs["missing"] = [f"t{k}" for k in _used_thresholds(thresholds) if f"pass_{k}" not in rows]
    return out


def _missing_note(passes: Any) -> str | None:
    """A figure's note when ``passes`` (:func:`thresholds_passed`) counted without some scored thresholds."""
    missing = getattr(passes, "attrs", {}).get("missing") if passes is not None else None
    return f"the run records no passes of {', '.join(missing)}: counted as not passed" if missing else None


def _pass_bins(counts: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, list[str], list[str]]:
    """Bin cameras by how many scored thresholds they pass (:func:`thresholds_passed`), most first.

    Args:
        counts: (N,) thresholds passed; nan = unknown (binned with those that pass none).
        thresholds: the scene's thresholds.

    Returns:
        bin index per camera (N,), bin names, bin colours (the palette of :func:`_error_bins`, whose bins they
        replace); the last bin is "passes none".
    """
    n = len(_used_thresholds(thresholds))
    colors = sample_colorscale(ERROR_SCALE, list(np.linspace(0.0, 1.0, n))) + [FAIL_COLOR] if n else [FAIL_COLOR]
    names = [f"passes {k} of {n} thresholds" for k in range(n, 0, -1)] + ["passes none (or in another cluster)"]
    idx = n - np.clip(np.nan_to_num(np.asarray(counts, dtype=float), nan=0.0), 0, n).astype(int)
    return idx, names, colors


def _camera_layout(fig: go.Figure, frame: str = "GT frame, m") -> None:
    """The layout of the 3-D camera views: true proportions, x/y/z axes named with their ``frame`` (the axes read
    "x, y, z" in no unit), and the user's camera kept across redraws (``uirevision``)."""
    # no white walls and mid-grey grids: Streamlit's dark theme recolours a 2-D chart's background, not a 3-D box's
    axis = {"showbackground": False, "gridcolor": NEUTRAL_GRID, "zerolinecolor": NEUTRAL_LINE}
    fig.update_layout(scene={"aspectmode": "data", **{f"{a}axis": {"title": {"text": f"{a} ({frame})"}, **axis}
                                                      for a in "xyz"}},
                      legend={"itemsizing": "constant"}, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      uirevision="cameras")


def _passed(names: Sequence[str], passes: pd.Series | Mapping[str, float] | None) -> np.ndarray:
    """Thresholds passed per name (nan where ``passes`` does not say, or is None)."""
    table = {str(k): float(v) for k, v in dict(passes).items()} if passes is not None else {}
    return np.array([table.get(str(n), np.nan) for n in names], dtype=float)


def _passed_hover(count: float, thresholds: Sequence[float] | None) -> str:
    """``<br>passes k of n thresholds`` for a hover text, or nothing when unknown."""
    if not np.isfinite(count) or thresholds is None or len(thresholds) == 0:
        return ""
    return f"<br>passes {int(count)} of {len(_used_thresholds(thresholds))} thresholds"


def _posed(frame: pd.DataFrame | None, what: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:func:`_poses` of the rows with a finite pose (names, (N, 3, 3) rotations, (N, 3) translations)."""
    names, rot, t = _poses(frame, what)
    ok = np.isfinite(rot).all(axis=(1, 2)) & np.isfinite(t).all(axis=1)
    return [n for n, good in zip(names, ok, strict=True) if good], rot[ok], t[ok]


def _add_points(fig: go.Figure, points: np.ndarray, centres: np.ndarray, max_points: int, notes: list[str],
                sim: tuple[float, np.ndarray, np.ndarray] | None = None) -> None:
    """A ``points`` trace of the finite 3-D points (at most ``max_points``, a fixed-seed sample; mapped by the
    similarity ``sim`` when given), those far from the ``centres`` left out and counted in ``notes``."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) > max_points:
        pts = pts[np.sort(np.random.default_rng(0).choice(len(pts), max_points, replace=False))]
    if sim is not None:
        s, ra, ta = sim
        pts = s * pts @ ra.T + ta
    keep = near_points(pts, centres)
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} far 3-D points not drawn")
        pts = pts[keep]
    if len(pts):
        fig.add_trace(go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name="points",
                                   hoverinfo="skip", marker={"size": 1.5, "color": "#555", "opacity": 0.5}))


def cluster_cameras(pred: pd.DataFrame, *, points: np.ndarray | None = None, max_points: int = 20000,
                    title: str = "Cameras of a cluster") -> go.Figure:
    """3-D view of one predicted cluster's cameras in its own frame, without ground truth (a test split, a data root
    without labels): what a submission holds, to check a cluster's layout before it is scored.

    Args:
        pred: pose frame of the cluster (``image, r00..r22, tx, ty, tz``, world→camera); nan rows are skipped.
        points: (P, 3) 3-D points in the same frame (e.g. the COLMAP model's), subsampled to ``max_points`` with a
            fixed seed; points far from the cameras are left out (:func:`near_points`), and said so.
        max_points: most points drawn.
        title: figure title.

    Returns:
        Figure with Scatter3d traces ``cameras`` (pyramids), ``centres`` (one marker per image, its name on hover)
        and ``points`` (when given), ``scene.aspectmode = "data"``.
    """
    names, rot, t = _posed(pred, "predicted")
    centres = camera_centers(rot, t)
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    notes: list[str] = []
    if len(names):
        xs, ys, zs = _polyline(_frustum_segments(rot, t, _auto_scale(centres)))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="cameras", hoverinfo="skip",
                                   line={"color": PRED_COLOR, "width": 3}))
        fig.add_trace(go.Scatter3d(x=centres[:, 0], y=centres[:, 1], z=centres[:, 2], mode="markers",
                                   name="centres", marker={"size": 4, "color": PRED_COLOR}, text=names,
                                   hovertemplate="%{text}<extra></extra>"))
    if points is not None and len(points) and len(names):
        _add_points(fig, points, centres, max_points, notes)
    _camera_layout(fig, "the model's frame and scale")
    if not fig.data:
        notes.append("no valid camera poses")
    if notes:
        _note(fig, "; ".join(notes), top=bool(fig.data))
    return fig


def camera_frustums(
    gt: pd.DataFrame | None,
    pred: pd.DataFrame | None = None,
    *,
    alignment: Mapping[str, Any] | None = None,
    errors: pd.Series | Mapping[str, float] | None = None,
    thresholds: Sequence[float] | None = None,
    passes: pd.Series | Mapping[str, float] | None = None,
    scale: float | None = None,
    points: np.ndarray | None = None,
    max_points: int = 20000,
    title: str = "Cameras: ground truth vs prediction",
) -> go.Figure:
    """3-D view of GT cameras and predicted cameras aligned into the GT frame.

    GT cameras are blue pyramids; predicted ones are coloured by error on the metric's thresholds (green below
    the first used threshold … red = fails all / not registered). Thin grey lines join each GT centre to its
    aligned predicted centre; GT cameras without a usable prediction get a red ×.

    Args:
        gt: pose frame of one GT scene (``image, r00..r22, tx, ty, tz``, world→camera); nan rows are skipped.
        pred: pose frame of the prediction (e.g. the associated cluster), in its own frame; nan rows = not
            registered. Images not in ``gt`` are drawn in grey ("not in this scene").
        alignment: ``{"s", "R", "t"}`` with ``x_gt ≈ s·R·x_pred + t`` or an ``alignments.json`` scene entry
            (its last non-null model is used). ``None``: ``pred`` is already in the GT frame. An entry without
            any model means the prediction cannot be placed: only GT is drawn.
        errors: per-image error in metres indexed by image name (the metric's). Default: distance between the
            aligned predicted centre and the GT centre.
        thresholds: the scene's six thresholds in metres; ``None`` colours by a continuous error scale.
        passes: thresholds passed per image name (:func:`thresholds_passed`); with ``thresholds``, cameras are
            coloured by it (each threshold under its own alignment, as the metric counts) instead of by their error
            under the drawn (largest threshold's) alignment.
        scale: pyramid depth in GT units; default from the scene extent.
        points: (P, 3) 3-D points in the prediction's frame (aligned like the cameras), subsampled to
            ``max_points`` with a fixed seed.
        max_points: most points drawn.
        title: figure title.

    Returns:
        Figure with Scatter3d traces named ``GT cameras``, ``GT centres``, ``pred: <bin>`` (one per non-empty
        error bin), ``pred centres``, ``GT–pred offsets``, ``not registered``, ``pred (not in this scene)``,
        ``points`` (each only when it has something to draw), and ``scene.aspectmode = "data"``.
    """
    g_names, g_rot, g_t = _posed(gt, "GT")
    p_names, p_rot, p_t = _posed(pred, "predicted")
    g_c = camera_centers(g_rot, g_t)

    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    notes: list[str] = []
    sim = _similarity(alignment)
    if alignment is not None and sim is None and len(p_names):
        notes.append("no alignment for this scene: predictions not drawn")
        p_names, p_rot, p_t = [], np.zeros((0, 3, 3)), np.zeros((0, 3))
    if sim is not None and len(p_names):
        p_rot, p_t = apply_similarity(p_rot, p_t, *sim)
    p_c = camera_centers(p_rot, p_t)

    if scale is None:
        scale = _auto_scale(g_c if len(g_c) else p_c)

    if len(g_names):
        xs, ys, zs = _polyline(_frustum_segments(g_rot, g_t, scale))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="GT cameras", hoverinfo="skip",
                                   line={"color": GT_COLOR, "width": 2}))
        fig.add_trace(go.Scatter3d(x=g_c[:, 0], y=g_c[:, 1], z=g_c[:, 2], mode="markers", name="GT centres",
                                   marker={"size": 3, "color": GT_COLOR}, text=g_names,
                                   hovertemplate="%{text}<br>GT<extra></extra>"))

    gt_index = {n: i for i, n in enumerate(g_names)}
    in_scene = np.array([n in gt_index for n in p_names], dtype=bool) if len(gt_index) else np.ones(len(p_names), bool)
    err_map: dict[str, float] = {}
    if errors is not None:
        err_map = {str(k): float(v) for k, v in dict(errors).items()}
    err = np.full(len(p_names), np.nan)
    for i, name in enumerate(p_names):
        if name in err_map:
            err[i] = err_map[name]
        elif name in gt_index and errors is None:
            err[i] = float(np.linalg.norm(p_c[i] - g_c[gt_index[name]]))
    idx_in = np.flatnonzero(in_scene)

    passed = _passed(p_names, passes)
    unknown = passes is not None and not np.isfinite(passed[idx_in]).any()
    if unknown:  # (every camera would read "passes none": coloured by error, and said)
        passes = None
        if len(idx_in):
            notes.append("coloured by error: no thresholds passed recorded")
    elif len(idx_in) and (missing := _missing_note(passes)):
        notes.append(missing)
    if len(idx_in):
        hover = [(f"{p_names[i]}<br>error {err[i]:.4g} m" if np.isfinite(err[i]) else f"{p_names[i]}<br>error n/a")
                 + _passed_hover(passed[i], thresholds) for i in idx_in]
        if thresholds is not None and len(thresholds):
            bins, bin_names, bin_colors = (_error_bins(err[idx_in], thresholds) if passes is None
                                           else _pass_bins(passed[idx_in], thresholds))
            for k, (bname, bcolor) in enumerate(zip(bin_names, bin_colors, strict=True)):
                sel = idx_in[bins == k]
                if len(sel) == 0:
                    continue
                xs, ys, zs = _polyline(_frustum_segments(p_rot[sel], p_t[sel], scale))
                fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name=f"pred: {bname}",
                                           hoverinfo="skip", line={"color": bcolor, "width": 3}))
            marker: dict[str, Any] = {"size": 4, "color": [bin_colors[b] for b in bins]}
        else:
            xs, ys, zs = _polyline(_frustum_segments(p_rot[idx_in], p_t[idx_in], scale))
            fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="pred: cameras", hoverinfo="skip",
                                       line={"color": PRED_COLOR, "width": 3}))
            finite = np.isfinite(err[idx_in])
            marker = {"size": 4, "color": PRED_COLOR}
            if finite.any():
                marker = {"size": 4, "color": np.where(finite, err[idx_in], np.nanmax(err[idx_in])),
                          "colorscale": "RdYlGn_r", "showscale": True, "colorbar": {"title": {"text": "error (m)"}}}
        # per-camera colours: the legend would show the first camera's; the bins' frustum traces name the colours
        fig.add_trace(go.Scatter3d(x=p_c[idx_in, 0], y=p_c[idx_in, 1], z=p_c[idx_in, 2], mode="markers",
                                   name="pred centres", marker=marker, text=hover,
                                   showlegend=isinstance(marker["color"], str),
                                   hovertemplate="%{text}<extra>pred</extra>"))
        both = [i for i in idx_in if p_names[i] in gt_index]
        if both:
            gi = [gt_index[p_names[i]] for i in both]
            xs, ys, zs = _polyline(np.stack([g_c[gi], p_c[both]], axis=1))
            fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="GT–pred offsets", hoverinfo="skip",
                                       line={"color": "#888", "width": 1}))

    registered = set(p_names)
    missing = [i for i, n in enumerate(g_names) if n not in registered]
    if missing and (pred is not None):
        fig.add_trace(go.Scatter3d(x=g_c[missing, 0], y=g_c[missing, 1], z=g_c[missing, 2], mode="markers",
                                   name="not registered", marker={"size": 5, "color": FAIL_COLOR, "symbol": "x"},
                                   text=[g_names[i] for i in missing],
                                   hovertemplate="%{text}<br>not registered<extra></extra>"))

    idx_out = np.flatnonzero(~in_scene)
    if len(idx_out):
        xs, ys, zs = _polyline(_frustum_segments(p_rot[idx_out], p_t[idx_out], scale))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="pred (not in this scene)",
                                   hoverinfo="skip", line={"color": OUTLIER_COLOR, "width": 2}))

    if points is not None and len(points):
        _add_points(fig, points, p_c if len(p_c) else g_c, max_points, notes, sim)

    _camera_layout(fig)
    if not fig.data:
        notes.append("no valid camera poses")
    if notes:
        _note(fig, "; ".join(notes), top=bool(fig.data))
    return fig


def camera_centres(rows: pd.DataFrame, thresholds: Sequence[float] | None = None,
                   title: str = "Camera centres: ground truth vs prediction", by_passes: bool = False) -> go.Figure:
    """Camera centres of one GT scene from a run's ``per_image.csv`` alone: for a run whose data root (and so its
    GT orientations) is not on this machine, e.g. a teammate's imported bundle.

    Args:
        rows: the scene's ``per_image.csv`` rows: ``image``, ``gt_cx … gt_cz``, ``pred_cx … pred_cz`` (the
            prediction aligned by the metric's similarity for the largest threshold, nan where there is none) and
            ``error`` (metres).
        thresholds: the scene's six thresholds in metres (colour bins as :func:`camera_frustums`); ``None``: one
            colour.
        title: figure title.
        by_passes: colour by the thresholds each image passes (the rows' ``pass_k`` columns,
            :func:`thresholds_passed`) instead of by its error under the largest threshold's alignment.

    Returns:
        Figure with Scatter3d traces ``GT centres``, ``pred: <bin>`` (one per non-empty bin), ``GT–pred offsets``
        and ``not registered`` (each only when it has something to draw), ``scene.aspectmode = "data"``.
    """
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    need = ["image", *(f"{w}_c{a}" for w in ("gt", "pred") for a in "xyz")]
    if rows is None or not set(need) <= set(rows.columns):
        return _note(fig, "no camera centres in this run's per_image.csv")
    names = rows["image"].astype(str).to_numpy()
    g = rows[["gt_cx", "gt_cy", "gt_cz"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    p = rows[["pred_cx", "pred_cy", "pred_cz"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    err = pd.to_numeric(rows["error"], errors="coerce").to_numpy(float) if "error" in rows else \
        np.linalg.norm(p - g, axis=1)
    has_g, has_p = np.isfinite(g).all(axis=1), np.isfinite(p).all(axis=1)
    if has_g.any():
        fig.add_trace(go.Scatter3d(x=g[has_g, 0], y=g[has_g, 1], z=g[has_g, 2], mode="markers", name="GT centres",
                                   marker={"size": 4, "color": GT_COLOR}, text=names[has_g],
                                   hovertemplate="%{text}<br>GT<extra></extra>"))
    shown = np.flatnonzero(has_p)
    counted = thresholds_passed(rows, thresholds) if thresholds is not None else None
    passed = counted.to_numpy(float) if counted is not None else np.full(len(rows), np.nan)
    unknown = by_passes and thresholds is not None and len(shown) > 0 and not np.isfinite(passed[shown]).any()
    by_passes = by_passes and not unknown  # (every camera would read "passes none": coloured by error, and said)
    if thresholds is None or len(thresholds) == 0:
        bins, bin_names, bin_colors = np.zeros(len(shown), int), ["pred centres"], [PRED_COLOR]
    else:
        bins, bin_names, bin_colors = (_pass_bins(passed[shown], thresholds) if by_passes
                                       else _error_bins(err[shown], thresholds))
    for k, (bname, bcolor) in enumerate(zip(bin_names, bin_colors, strict=True)):
        sel = shown[bins == k]
        if len(sel):
            fig.add_trace(go.Scatter3d(
                x=p[sel, 0], y=p[sel, 1], z=p[sel, 2], mode="markers", name=f"pred: {bname}",
                marker={"size": 5, "color": bcolor, "symbol": "diamond"},
                text=[f"{names[i]}<br>error {err[i]:.4g} m{_passed_hover(passed[i], thresholds)}" for i in sel],
                hovertemplate="%{text}<extra></extra>"))
    both = np.flatnonzero(has_g & has_p)
    if len(both):
        xs, ys, zs = _polyline(np.stack([g[both], p[both]], axis=1))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="GT–pred offsets", hoverinfo="skip",
                                   line={"color": "#888", "width": 1}))
    missing = np.flatnonzero(has_g & ~has_p)
    if len(missing):
        fig.add_trace(go.Scatter3d(x=g[missing, 0], y=g[missing, 1], z=g[missing, 2], mode="markers",
                                   name="not registered", marker={"size": 5, "color": FAIL_COLOR, "symbol": "x"},
                                   text=names[missing], hovertemplate="%{text}<br>not registered<extra></extra>"))
    _camera_layout(fig)
    said = "centres only (the run's per_image.csv): orientations need the data root's labels"
    if unknown:
        said += "; coloured by error: no thresholds passed recorded"
    elif by_passes and len(shown) and (missing := _missing_note(counted)):
        said += f"; {missing}"
    return _note(fig, said, top=bool(fig.data)) if fig.data else _note(fig, "no valid camera centres")


# --------------------------------------------------------------------------------------------------------------
# score charts
# --------------------------------------------------------------------------------------------------------------


def score_bars(scores: Mapping[str, Any], title: str = "Score per dataset") -> go.Figure:
    """Grouped bars of score, mAA and clusterness per dataset, with the overall score as a dashed line.

    Args:
        scores: ``scores.json`` content (percentages).
        title: figure title.

    Returns:
        Figure with three Bar traces ``score``, ``mAA``, ``clusterness``, a horizontal line shape at the
        overall score and an empty line trace that names it in the legend.
    """
    datasets = dict(scores.get("datasets", {}) or {})
    if not datasets:
        return _empty(title, "no scores")
    names = list(datasets)
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white", "barmode": "group"})
    for key, color in (("score", "#1f77b4"), ("mAA", "#2ca02c"), ("clusterness", "#9467bd")):
        vals = [float(datasets[n].get(key, np.nan)) for n in names]
        fig.add_trace(go.Bar(x=names, y=vals, name=key, marker_color=color,
                             text=[f"{v:.1f}" if math.isfinite(v) else "" for v in vals], textposition="auto",
                             insidetextanchor="end",  # inside the bar's top: the overall line would cross it above
                             hovertemplate=f"%{{x}}<br>{key} %{{y:.2f}}%<extra></extra>"))
    for name in names:  # a failed dataset's bars have no height: its slot looked like a gap in the chart
        vals = [float(datasets[name].get(key, np.nan)) for key in ("score", "mAA", "clusterness")]
        if all(not math.isfinite(v) or v == 0.0 for v in vals):
            fig.add_annotation(x=name, y=0, yanchor="bottom", showarrow=False, text="0: nothing scored",
                               font={"color": FAIL_COLOR})
    overall = scores.get("score")
    if overall is not None and math.isfinite(float(overall)):
        # named in the legend, not on the line: the line's own label sat under the first bar's value (a tester)
        fig.add_hline(y=float(overall), line_dash="dash", line_color=NEUTRAL_LINE)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"overall score {float(overall):.2f}",
                                 line={"dash": "dash", "color": NEUTRAL_LINE}, hoverinfo="skip"))
    fig.update_yaxes(title_text="percent", range=[0, 110])
    fig.update_xaxes(title_text="dataset")
    return fig


def scene_bars(scenes: pd.DataFrame, title: str = "Per-scene results") -> go.Figure:
    """Per-scene mAA (top) and image counts: GT images, associated cluster size, overlap (bottom).

    Args:
        scenes: ``scenes.csv`` frame (``dataset, scene, n_images, cluster, cluster_size, overlap, mAA``,
            optional ``warning``); GT ``outliers`` rows are left out.
        title: figure title.

    Returns:
        Figure with Bar traces ``mAA`` (row 1) and ``GT images``, ``cluster size``, ``overlap`` (row 2).
    """
    if scenes is None or len(scenes) == 0:
        return _empty(title, "no scenes")
    rows = scenes[scenes["scene"].astype(str) != OUTLIERS]
    if len(rows) == 0:
        return _empty(title, "no scenes")
    label = (rows["dataset"].astype(str) + " / " + rows["scene"].astype(str)).tolist()
    cluster = rows["cluster"].astype(object).fillna("").astype(str).replace("", "(none)") if "cluster" in rows else \
        pd.Series(["?"] * len(rows))
    warning = rows["warning"].astype(object).fillna("").astype(str) if "warning" in rows else pd.Series([""] * len(rows))
    custom = np.stack([cluster.to_numpy(), warning.to_numpy()], axis=1)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14, row_heights=[0.55, 0.45],
                        subplot_titles=("mAA (%)", "images"))
    maa = pd.to_numeric(rows["mAA"], errors="coerce") if "mAA" in rows else pd.Series(np.nan, index=rows.index)
    fig.add_trace(go.Bar(x=label, y=maa, name="mAA", marker_color="#2ca02c", customdata=custom,
                         hovertemplate="%{x}<br>mAA %{y:.2f}%<br>cluster %{customdata[0]}<br>%{customdata[1]}"
                                       "<extra></extra>"), row=1, col=1)
    for key, name, color in (("n_images", "GT images", "#bdbdbd"), ("cluster_size", "cluster size", "#9467bd"),
                             ("overlap", "overlap", "#1f77b4")):
        vals = pd.to_numeric(rows[key], errors="coerce") if key in rows else pd.Series(np.nan, index=rows.index)
        fig.add_trace(go.Bar(x=label, y=vals, name=name, marker_color=color, customdata=custom,
                             hovertemplate=f"%{{x}}<br>{name} %{{y}}<br>cluster %{{customdata[0]}}<extra></extra>"),
                      row=2, col=1)
    fig.update_layout(title={"text": title}, template="plotly_white", barmode="group")
    fig.update_yaxes(title_text="mAA (%)", range=[0, 105], row=1, col=1)
    fig.update_yaxes(title_text="images", row=2, col=1)
    fig.update_xaxes(title_text="dataset / scene", row=2, col=1)
    return fig


def _ordered_unique(values: Sequence[str]) -> list[str]:
    """Unique values in first-appearance order."""
    return list(dict.fromkeys(values))


def cluster_matrix(per_image: pd.DataFrame, dataset: str, title: str | None = None) -> go.Figure:
    """Heatmap of GT scene × submitted cluster image counts for one dataset, with the counts written in.

    Rows are GT scenes in file order with ``outliers`` last; columns start with each scene's associated cluster
    (so a good clustering is diagonal), then the other clusters by size, then ``outliers`` and ``(none)``
    (images missing from the submission). Associated cells are outlined.

    Args:
        per_image: ``per_image.csv`` frame (``dataset, scene, image, cluster``, optional ``associated_cluster``).
        dataset: dataset to show.
        title: figure title (default names the dataset).

    Returns:
        Figure with one Heatmap trace (z = counts, x = clusters, y = GT scenes).
    """
    title = title or f"{dataset}: GT scene × submitted cluster"
    rows = per_image[per_image["dataset"].astype(str) == dataset] if len(per_image) else per_image
    if len(rows) == 0:
        return _empty(title, f"no images for dataset {dataset!r}")
    gt = rows["scene"].astype(str)
    cl = rows["cluster"].fillna("").astype(str).replace("", "(none)") \
        if "cluster" in rows else pd.Series("(none)", index=rows.index)
    table = pd.crosstab(gt, cl)
    y = [s for s in _ordered_unique(gt.tolist()) if s != OUTLIERS] + ([OUTLIERS] if OUTLIERS in table.index else [])
    assoc: dict[str, str] = {}
    if "associated_cluster" in rows:
        for scene, value in zip(gt, rows["associated_cluster"].fillna("").astype(str), strict=True):
            if scene not in assoc and value:
                assoc[scene] = value
    special = [OUTLIERS, "(none)"]
    x = _ordered_unique([assoc[s] for s in y if s in assoc and assoc[s] in table.columns and assoc[s] not in special])
    rest = table.drop(columns=[c for c in x + special if c in table.columns]).sum(axis=0).sort_values(
        ascending=False, kind="stable")
    x += list(rest.index) + [c for c in special if c in table.columns]
    z = table.reindex(index=y, columns=x, fill_value=0).to_numpy()
    # counts from 0, in whole images (a matrix of one value drew a scale of 4.6 … 5.4, others ticked 1.5, 2.5)
    top = max(1, int(z.max()) if z.size else 1)
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, text=z, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=top,
                               hovertemplate="GT %{y} → cluster %{x}: %{z} images<extra></extra>",
                               colorbar={"title": {"text": "images"}, "tickformat": "d",
                                         "dtick": max(1, -(-top // 8))}))
    for scene, cluster in assoc.items():
        if scene in y and cluster in x:
            i, j = y.index(scene), x.index(cluster)
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                          line={"color": "#e6550d", "width": 2})
    fig.update_layout(title={"text": title}, template="plotly_white")
    fig.update_xaxes(title_text="submitted cluster", type="category")
    fig.update_yaxes(title_text="GT scene", type="category", autorange="reversed")
    return fig


def threshold_curve(per_image: pd.DataFrame, dataset: str, scene: str,
                    thresholds: Sequence[float] | None = None, title: str | None = None) -> go.Figure:
    """Fraction of a GT scene's images registered within an error, as a function of that error.

    Args:
        per_image: ``per_image.csv`` frame (``dataset, scene, image, error``, optional ``pass_0..pass_5``).
        dataset: dataset name.
        scene: GT scene name.
        thresholds: the scene's six thresholds (metres); when given, the metric's own pass fractions are drawn as
            markers at them and the thresholds as dotted lines (the two the metric skips in light grey).
        title: figure title.

    Returns:
        Figure with a Scatter trace ``registered within error`` (step curve over all GT images of the scene,
        log x) and, with thresholds and pass columns, the pass fractions at the thresholds the metric scores
        (``metric: t2…t5 (pass_k)``) and, in grey, at the two it skips.
    """
    title = title or f"{dataset} / {scene}: registered vs threshold"
    if len(per_image) == 0:
        return _empty(title, "no images")
    rows = per_image[(per_image["dataset"].astype(str) == dataset) & (per_image["scene"].astype(str) == scene)]
    if len(rows) == 0:
        return _empty(title, f"no images for {dataset}/{scene}")
    n = len(rows)
    err = pd.to_numeric(rows["error"], errors="coerce").to_numpy() if "error" in rows else np.full(n, np.nan)
    names = rows["image"].astype(str).to_numpy() if "image" in rows else np.array([""] * n)
    order = np.argsort(err, kind="stable")
    finite = order[np.isfinite(err[order])]
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    positive = [float(t) for t in (thresholds if thresholds is not None else []) if float(t) > 0]
    # the log axis starts two decades below the smallest threshold: a camera copied from the ground truth (error
    # 1e-12 m) would otherwise squeeze every threshold into the right edge
    floor = min(positive) / 100.0 if positive else 1e-5
    notes: list[str] = []
    if len(finite):
        xs = err[finite]
        ys = np.arange(1, len(finite) + 1) / n
        fig.add_trace(go.Scatter(x=np.maximum(xs, floor), y=ys, mode="lines+markers", line_shape="hv",
                                 name="registered within error", marker={"size": 4}, text=names[finite],
                                 customdata=xs,
                                 hovertemplate="%{text}<br>error %{customdata:.4g} m<br>%{y:.1%} within"
                                               "<extra></extra>"))
        if (xs < floor).any():
            notes.append(f"errors below {length_label(floor)} drawn at {length_label(floor)}")
    else:
        _note(fig, "no registered image has an error")
    if thresholds is not None and len(thresholds):
        thr = [float(t) for t in thresholds]
        skipped = _skipped(len(thr))
        if zero := [f"t{k}" for k, t in enumerate(thr) if t <= 0]:  # (they vanished from the chart without a word)
            notes.append(f"{', '.join(zero)} = 0: no place on a log axis, not drawn")
        for k, t in enumerate(thr):
            if t > 0:
                fig.add_vline(x=t, line_dash="dot", line_color=SKIPPED_GREY if k < skipped else NEUTRAL_LINE)
        cols = [f"pass_{k}" for k in range(len(thr))]
        if all(c in rows for c in cols):
            frac = [float(_as_bool(rows[c]).mean()) for c in cols]
            # two traces, so that the legend's marker is the colour of the points it names
            used = f"metric: t{skipped}…t{len(thr) - 1} (pass_k)" if skipped else "metric (pass_k)"
            fig.add_trace(go.Scatter(x=thr[skipped:], y=frac[skipped:], mode="markers", name=used,
                                     marker={"size": 10, "symbol": "diamond", "color": "#d62728"},
                                     hovertemplate="threshold %{x:g} m<br>%{y:.1%} pass<extra></extra>"))
            drawn = [k for k in range(skipped) if thr[k] > 0]  # (a threshold of 0 has no place on a log axis)
            if drawn:
                fig.add_trace(go.Scatter(x=[thr[k] for k in drawn], y=[frac[k] for k in drawn], mode="markers",
                                         name=f"t0…t{skipped - 1}, not scored by the metric",
                                         marker={"size": 10, "symbol": "diamond", "color": SKIPPED_GREY},
                                         hovertemplate="threshold %{x:g} m (not scored)<br>%{y:.1%} pass"
                                                       "<extra></extra>"))
    # the metric fits one alignment per threshold; the per-image error is the one of the largest threshold
    fig.update_xaxes(title_text="camera centre error, alignment of the largest threshold (log scale)", type="log")
    ticks = sorted({float(t) for t in (thresholds if thresholds is not None else []) if float(t) > 0})
    if ticks:  # the thresholds are the values worth reading; plotly's log minor ticks read "2, 5, 0.01, 2"
        fig.update_xaxes(tickvals=ticks, ticktext=[length_label(t) for t in ticks], minor={"showgrid": False})
    fig.update_yaxes(title_text=f"fraction of {n} GT images", range=[0, 1.05], tickformat=".0%")
    if notes:
        _note(fig, "; ".join(notes), top=True)
    return fig


def length_label(metres: float) -> str:
    """A length for an axis tick: ``0.002`` → ``"2 mm"``, ``0.25`` → ``"25 cm"``, ``3`` → ``"3 m"``; below a
    hundredth of a millimetre ``"< 0.01 mm"`` (a pose copied from the ground truth errs by 1e-12 m, and
    ``"1.89e-09 mm"`` does not fit a table cell)."""
    if 0 < abs(metres) < 1e-5:
        return "< 0.01 mm"
    for unit, factor in (("m", 1.0), ("cm", 100.0), ("mm", 1000.0)):
        if abs(metres) * factor >= 1 or unit == "mm":
            return f"{metres * factor:.3g} {unit}"
    return f"{metres:g} m"


def embedding_scatter(coords: np.ndarray, labels_gt: Sequence[str] | None, labels_cluster: Sequence[str] | None,
                      names: Sequence[str], title: str = "Image embedding",
                      cluster_scene: Mapping[str, str] | None = None) -> go.Figure:
    """2-D scatter of image embeddings, coloured by GT scene (left) and by predicted cluster (right).

    Args:
        coords: (N, 2) projected descriptors (e.g. PCA / t-SNE of the fused descriptor).
        labels_gt: (N,) GT scene per image, or ``None`` to leave that panel out.
        labels_cluster: (N,) cluster per image, or ``None`` to leave that panel out.
        names: (N,) image names (hover and ``customdata``).
        title: figure title.
        cluster_scene: cluster → the GT scene the metric associated it with; such a cluster takes that scene's
            colour (the first cluster to claim it), so a right clustering looks the same in both panels.

    Returns:
        Figure with one Scatter trace per label and panel; traces of the left panel are in legend group ``gt``,
        those of the right in ``cluster``.
    """
    xy = np.asarray(coords, dtype=float).reshape(-1, 2) if np.size(coords) else np.zeros((0, 2))
    panels = [(key, lab, head) for key, lab, head in (("gt", labels_gt, "GT scene"),
                                                      ("cluster", labels_cluster, "cluster")) if lab is not None]
    if len(xy) == 0 or not panels:
        return _empty(title, "no embedding")
    n = len(xy)
    names_arr = np.asarray([str(v) for v in names])
    for key, lab, _ in panels:
        if len(lab) != n or len(names_arr) != n:
            raise InputError(None, f"embedding has {n} points but {len(lab)} {key} labels and {len(names_arr)} names")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"coloured by {h}" for _, _, h in panels],
                        horizontal_spacing=0.1)  # (at 0.06 the right panel's "dim 2" sat among the left's points)
    gt_colors = _palette(sorted({str(v) for v in labels_gt or []}, key=lambda s: (s == OUTLIERS, s)))
    for col, (key, lab, head) in enumerate(panels, start=1):
        lab_arr = np.asarray([str(v) for v in lab])
        colors = _palette(sorted(set(lab_arr.tolist()), key=lambda s: (s == OUTLIERS, s)))
        if key == "cluster" and cluster_scene:
            colors = _colors_following(colors, gt_colors, cluster_scene)
        for label, color in colors.items():
            sel = lab_arr == label
            fig.add_trace(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=label, legendgroup=key,
                                     legendgrouptitle_text=head, marker={"size": 7, "color": color},
                                     text=names_arr[sel], customdata=names_arr[sel],
                                     hovertemplate=f"%{{text}}<br>{head}: {label}<extra></extra>"),
                          row=1, col=col)
    fig.update_layout(title={"text": title}, template="plotly_white", legend={"groupclick": "toggleitem"})
    fig.update_xaxes(title_text="dim 1", zeroline=False)
    fig.update_yaxes(title_text="dim 2", zeroline=False)
    return fig


def _colors_following(colors: dict[str, str], gt_colors: Mapping[str, str],
                      cluster_scene: Mapping[str, str]) -> dict[str, str]:
    """Give each cluster its associated GT scene's colour (first claim wins); the others take unused colours."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label in colors:
        scene = cluster_scene.get(label)
        color = gt_colors.get(scene) if scene is not None else None
        if label != OUTLIERS and color is not None and color not in taken:
            out[label] = color
            taken.add(color)
    spare = [c for c in LABEL_COLORS if c not in taken and c not in gt_colors.values()]
    for label in colors:
        if label not in out:
            out[label] = OUTLIER_COLOR if label == OUTLIERS else spare.pop(0) if spare else colors[label]
    return out


def loss_attribution_bar(attribution: pd.DataFrame | Mapping[str, Mapping[str, float]],
                         title: str = "Where the score went") -> go.Figure:
    """Horizontal stacked bars per dataset: the score, then the points lost to each part, summing to 100.

    Args:
        attribution: the frame of :func:`imc_core.analysis.loss_attribution` (index = dataset and ``total``), or
            a mapping ``{dataset: {"score": s, "clusterness": p, "unregistered": p, ...}}`` in score points.
        title: figure title.

    Returns:
        Figure with one Bar trace (``orientation="h"``) per part present: ``score``, ``clusterness``,
        ``misclustered``, ``unregistered``, ``inaccurate``, ``discount`` (and any other numeric part of a mapping),
        stacked.
    """
    if isinstance(attribution, pd.DataFrame):
        frame = attribution.copy()
    else:
        frame = pd.DataFrame.from_dict({k: dict(v) for k, v in attribution.items()}, orient="index")
    if len(frame) == 0:
        return _empty(title, "nothing to attribute")
    known = ["score", "clusterness", "misclustered", "unregistered", "inaccurate", "discount"]
    if isinstance(attribution, pd.DataFrame):
        parts = [p for p in known if p in frame.columns]
    else:
        extra = [c for c in frame.columns if c not in known and c != "gap"
                 and pd.api.types.is_numeric_dtype(frame[c])]
        parts = [p for p in known if p in frame.columns] + extra
    labels = [str(i) for i in frame.index]
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white", "barmode": "relative"})
    for part in parts:
        vals = pd.to_numeric(frame[part], errors="coerce").fillna(0.0).to_numpy()
        fig.add_trace(go.Bar(y=labels, x=vals, name=part, orientation="h",
                             marker_color=PART_COLORS.get(part, None),
                             text=[f"{v:.1f}" if abs(v) >= 1.0 else "" for v in vals], textposition="inside",
                             hovertemplate=f"%{{y}}<br>{part}: %{{x:.2f}} points<extra></extra>"))
    fig.update_xaxes(title_text="score points (score + losses = 100)", range=[min(0.0, _neg_sum(frame, parts)), 100])
    fig.update_yaxes(title_text="dataset", autorange="reversed", type="category")
    return fig


def _neg_sum(frame: pd.DataFrame, parts: Sequence[str]) -> float:
    """Most negative stack extent (a negative part, e.g. a discount that helped, extends left of 0)."""
    vals = frame[list(parts)].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    return float(vals.clip(upper=0).sum(axis=1).min()) if len(vals) else 0.0


def timings_bar(timings: Mapping[str, Any], title: str = "Time per stage") -> go.Figure:
    """Stacked seconds per stage for each dataset.

    Args:
        timings: ``timings.json`` content (``{"total", "datasets": {name: {stage: s}}, "cache": {name: {stage:
            "hit"|"miss"}}}``) or directly ``{name: {stage: s}}``.
        title: figure title (the total is appended when known).

    Returns:
        Figure with one Bar trace per stage (in first-seen order), stacked; hover shows cache hits, and each
        dataset's axis label names the stages taken from the cache (they take no time, so no bar shows them).
    """
    per_ds = timings.get("datasets") if isinstance(timings.get("datasets"), Mapping) else timings
    per_ds = {k: v for k, v in per_ds.items() if isinstance(v, Mapping)}
    cache = timings.get("cache", {}) if isinstance(timings.get("cache"), Mapping) else {}
    if not per_ds:
        return _empty(title, "no timings")
    total = timings.get("total")
    if isinstance(total, (int, float)) and math.isfinite(total):
        title = f"{title} (total {float(total):.1f} s)"
    stages = _ordered_unique([s for v in per_ds.values() for s in v])
    names = list(per_ds)
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white", "barmode": "stack"})
    for stage in stages:
        secs = [float(per_ds[d].get(stage, 0.0) or 0.0) for d in names]
        status = [str(cache.get(d, {}).get(stage, "")) if isinstance(cache.get(d), Mapping) else "" for d in names]
        fig.add_trace(go.Bar(x=names, y=secs, name=stage, customdata=status,
                             hovertemplate=f"%{{x}}<br>{stage}: %{{y:.2f}} s<br>cache %{{customdata}}"
                                           "<extra></extra>"))
    # a stage from the cache takes no time, so no bar shows it: each dataset's label names them
    hits = {d: [st for st in stages if isinstance(cache.get(d), Mapping) and cache[d].get(st) == "hit"]
            for d in names}
    fig.update_xaxes(title_text="dataset", tickmode="array", tickvals=names,
                     ticktext=[f"{d}<br>cache: {', '.join(hits[d])}" if hits[d] else d for d in names])
    fig.update_yaxes(title_text="seconds")
    return fig


def compare_bars(runs: Mapping[str, Mapping[str, Any] | Sequence[Mapping[str, Any]]], metric: str = "score",
                 title: str | None = None) -> go.Figure:
    """Per-dataset score of several runs side by side, with ±1 std error bars for runs repeated over seeds.

    Args:
        runs: run (or variant) label → ``scores.json`` dict, or a list of them (one per seed).
        metric: ``score``, ``mAA`` or ``clusterness``.
        title: figure title.

    Returns:
        Figure with one Bar trace per run over datasets plus ``overall``; ``error_y`` is set (sample std, cut
        at 0 and 100) on runs with several score dicts.
    """
    title = title or f"{metric} per dataset"
    runs_l = {k: ([v] if isinstance(v, Mapping) else list(v)) for k, v in runs.items()}
    runs_l = {k: v for k, v in runs_l.items() if v}
    if not runs_l:
        return _empty(title, "no runs")
    datasets = _ordered_unique([d for v in runs_l.values() for s in v for d in (s.get("datasets") or {})])
    x = [*datasets, "overall"]
    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white", "barmode": "group"})
    for label, score_list in runs_l.items():
        means, stds, counts = [], [], []
        for d in x:
            vals = []
            for s in score_list:
                v = s.get(metric) if d == "overall" else (s.get("datasets") or {}).get(d, {}).get(metric)
                if v is not None and math.isfinite(float(v)):
                    vals.append(float(v))
            means.append(float(np.mean(vals)) if vals else np.nan)
            stds.append(float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
            counts.append(len(vals))
        # the bar stops at the scale's ends (a score lies in [0, 100]); the hover gives the whole std
        up = [min(sd, 100.0 - m) if np.isfinite(m) else 0.0 for sd, m in zip(stds, means, strict=True)]
        down = [min(sd, m) if np.isfinite(m) else 0.0 for sd, m in zip(stds, means, strict=True)]
        error = ({"type": "data", "symmetric": False, "array": up, "arrayminus": down, "visible": True}
                 if len(score_list) > 1 else None)
        # each bar's value written on it: a run scoring 0 draws no bar, and it should not read as missing data
        text = [f"{m:.1f}" if np.isfinite(m) else "" for m in means]
        # above the bar, except where an error bar would stand on it: then half-way down the bar (a short bar
        # keeps it above, with its whisker)
        where = [("inside" if error is not None and np.isfinite(m) and m >= 15.0 else "outside") for m in means]
        fig.add_trace(go.Bar(x=x, y=means, name=label, error_y=error, customdata=np.stack([stds, counts], axis=1),
                             text=text, textposition=where, insidetextanchor="middle", cliponaxis=False,
                             hovertemplate=f"{label}<br>%{{x}}: %{{y:.2f}} ± %{{customdata[0]:.2f}}"
                                           " (n=%{customdata[1]})<extra></extra>"))
    fig.update_xaxes(title_text="dataset")
    fig.update_yaxes(title_text=f"{metric} (%)", range=[0, 105])
    return fig


# --------------------------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------------------------


def graph_layout(n: int, edges: np.ndarray, weights: np.ndarray | None = None,
                 method: Literal["circular", "spring"] = "spring", iterations: int = 60,
                 groups: Sequence[str] | None = None) -> np.ndarray:
    """Deterministic 2-D node positions (no RNG): a circle, optionally relaxed by Fruchterman–Reingold.

    Args:
        n: number of nodes.
        edges: (E, 2) int node indices.
        weights: (E,) positive edge weights (attraction strength), default 1.
        method: ``circular`` or ``spring`` (starts from the circle).
        iterations: spring iterations.
        groups: (n,) group of each node, nodes of a group consecutive: the circle leaves a gap of two node steps
            between groups, so each group is an arc of its own.

    Returns:
        (n, 2) positions roughly in [-1, 1].
    """
    if n == 0:
        return np.zeros((0, 2))
    steps = np.ones(n)
    if groups is not None and len(groups) == n:
        steps[1:] += 2.0 * np.array([groups[i] != groups[i - 1] for i in range(1, n)], dtype=float)
    at = np.concatenate([[0.0], np.cumsum(steps[1:])])
    total = at[-1] + (3.0 if groups is not None and len(set(groups)) > 1 else 1.0)
    ang = 2 * np.pi * at / total
    pos = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    edges = np.asarray(edges, dtype=int).reshape(-1, 2)
    if method == "circular" or n < 3 or len(edges) == 0:
        return pos
    w = np.ones(len(edges)) if weights is None else np.asarray(weights, dtype=float)
    w = w / max(float(w.max()), 1e-12)
    k = 1.0 / math.sqrt(n)
    temp = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist2 = np.maximum(np.einsum("ijk,ijk->ij", delta, delta), 1e-6)
        disp = np.einsum("ijk,ij->ik", delta, k * k / dist2)
        d_e = pos[edges[:, 0]] - pos[edges[:, 1]]
        l_e = np.maximum(np.linalg.norm(d_e, axis=1), 1e-3)
        f_e = d_e * (w * l_e / k)[:, None]
        np.add.at(disp, edges[:, 0], -f_e)
        np.add.at(disp, edges[:, 1], f_e)
        length = np.maximum(np.linalg.norm(disp, axis=1), 1e-9)
        pos = pos + disp / length[:, None] * np.minimum(length, temp)[:, None]
        temp *= 0.95
    pos -= pos.mean(axis=0)
    extent = float(np.abs(pos).max())
    return pos / extent if extent > 0 else pos


def strongest_pairs(pairs: pd.DataFrame, per_image: int) -> pd.DataFrame:
    """The pairs among each image's ``per_image`` with most inliers (``n_inliers``; ties by row order), in their
    original order: every image keeps its strongest links, and a match graph of an exhaustive dataset (17,000 pairs
    of 225 images drew as a solid disk) stays readable.

    Args:
        pairs: frame with ``name0, name1, n_inliers``.
        per_image: links kept per image (a pair stays when either image keeps it).

    Returns:
        A row subset of ``pairs``.
    """
    score = pd.to_numeric(pairs["n_inliers"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    rows = np.arange(len(pairs))
    ends = pd.DataFrame({"image": np.concatenate([pairs["name0"].astype(str).to_numpy(),
                                                  pairs["name1"].astype(str).to_numpy()]),
                         "row": np.concatenate([rows, rows]), "score": np.concatenate([score, score])})
    best = ends.sort_values(["score", "row"], ascending=[False, True], kind="stable")
    keep = np.unique(best.groupby("image", sort=False).head(per_image)["row"].to_numpy())
    return pairs.iloc[keep]


def match_graph(pairs: pd.DataFrame, groups: Mapping[str, str] | None = None,
                layout: Literal["circular", "spring"] = "circular", title: str = "Match graph") -> go.Figure:
    """Images as nodes, matched pairs as edges whose width grows with the number of inliers.

    Edges are drawn in four width classes (one line trace each). An invisible marker sits on every edge midpoint
    with ``customdata = (name0, name1, n_matches, n_inliers)`` so the dashboard can select a pair with Plotly's
    click / box selection.

    Args:
        pairs: frame with ``name0, name1, n_matches, n_inliers`` (one row per pair).
        groups: image name → group (GT scene or cluster) used to colour nodes and order the circle (each group an
            arc of its own: edges inside a scene are short chords, edges across scenes cross the circle).
        layout: ``circular`` or ``spring`` (deterministic Fruchterman–Reingold: strongly matched scenes tend to
            collapse into tight clumps).
        title: figure title.

    Returns:
        Figure with Scatter traces ``edges <class>`` (lines), ``edge midpoints`` (invisible markers, customdata)
        and one node trace per group (``images`` without groups); nodes carry ``customdata = name``.
    """
    need = ["name0", "name1", "n_matches", "n_inliers"]
    if pairs is None or len(pairs) == 0:
        return _empty(title, "no pairs")
    missing = [c for c in need if c not in pairs.columns]
    if missing:
        raise InputError(None, f"pairs frame lacks columns {', '.join(missing)}")
    groups = dict(groups or {})
    n0 = pairs["name0"].astype(str).to_numpy()
    n1 = pairs["name1"].astype(str).to_numpy()
    nodes = _ordered_unique([*n0, *n1, *groups])
    nodes = sorted(nodes, key=lambda s: (groups.get(s, "") == OUTLIERS, groups.get(s, ""), s))
    index = {s: i for i, s in enumerate(nodes)}
    edges = np.array([[index[a], index[b]] for a, b in zip(n0, n1, strict=True)], dtype=int)
    inl = pd.to_numeric(pairs["n_inliers"], errors="coerce").fillna(0).to_numpy(dtype=float)
    nm = pd.to_numeric(pairs["n_matches"], errors="coerce").fillna(0).to_numpy(dtype=float)
    pos = graph_layout(len(nodes), edges, np.maximum(inl, 1.0), method=layout,
                       groups=[groups.get(s, "") for s in nodes] if groups else None)

    fig = go.Figure(layout={"title": {"text": title}, "template": "plotly_white"})
    top = max(float(inl.max()), 1.0)
    bounds = [0.0, 0.25 * top, 0.5 * top, 0.75 * top, math.inf]
    for k in range(4):
        lo, hi = bounds[k], bounds[k + 1]
        sel = np.flatnonzero((inl >= lo) & (inl < hi)) if k else np.flatnonzero(inl < hi)
        if len(sel) == 0:
            continue
        ends = np.stack([pos[edges[sel, 0]], pos[edges[sel, 1]], np.full((len(sel), 2), np.nan)], axis=1)
        xs, ys = ends[..., 0].ravel(), ends[..., 1].ravel()
        label = f"edges {lo:.0f}–{hi:.0f} inliers" if math.isfinite(hi) else f"edges ≥ {lo:.0f} inliers"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, hoverinfo="skip",
                                 line={"width": 0.5 + 1.5 * k,  # mid grey: seen on a light and a dark page
                                       "color": "rgba(128,128,128,%.2f)" % (0.45 + 0.18 * k)}))
    mid = 0.5 * (pos[edges[:, 0]] + pos[edges[:, 1]])
    custom = np.stack([n0, n1, nm.astype(int).astype(str), inl.astype(int).astype(str)], axis=1)
    fig.add_trace(go.Scatter(x=mid[:, 0], y=mid[:, 1], mode="markers", name="edge midpoints", showlegend=False,
                             marker={"size": 10, "opacity": 0}, customdata=custom,
                             # (the clicked midpoint shows; Plotly dimmed every other point of the graph)
                             selected={"marker": {"opacity": 0.9, "color": "#e6550d"}},
                             unselected={"marker": {"opacity": 0}},
                             hovertemplate="%{customdata[0]} – %{customdata[1]}<br>%{customdata[2]} matches, "
                                           "%{customdata[3]} inliers<extra></extra>"))
    degree = np.bincount(edges.ravel(), minlength=len(nodes))
    node_groups = [groups.get(s, "images" if not groups else "(no group)") for s in nodes]
    colors = _palette(_ordered_unique(node_groups))
    for group, color in colors.items():
        sel = [i for i, g in enumerate(node_groups) if g == group]
        fig.add_trace(go.Scatter(x=pos[sel, 0], y=pos[sel, 1], mode="markers", name=group,
                                 marker={"size": 10, "color": color, "line": {"width": 1, "color": "#fff"}},
                                 unselected={"marker": {"opacity": 1}},
                                 text=[f"{nodes[i]} (degree {degree[i]})" for i in sel],
                                 customdata=[nodes[i] for i in sel],
                                 hovertemplate="%{text}<br>" + group + "<extra></extra>"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    # a taller frame and thin margins: at Plotly's default 450 px the circle was a fifth of the page's width
    # (dragmode "pan": under "select" or "lasso" Streamlit sets clickmode to "event", and a click on a scatter point
    # then selects nothing: the edge midpoints could not be clicked)
    fig.update_layout(clickmode="event+select", dragmode="pan", hovermode="closest", height=620,
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def _rgb_uint8(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 / float [0, 1] image → (H, W, 3) uint8."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(None, f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = arr.astype(float)
        if np.nanmax(arr, initial=0.0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return arr


def image_uri(img: np.ndarray, quality: int = 90) -> str:
    """``data:image/jpeg;base64,...`` of an image (as :func:`_rgb_uint8` takes it), for ``go.Image(source=...)``:
    a 640 px pair travels as ~0.1 MB instead of 1.9 MB of pixel arrays."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_rgb_uint8(img)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pair_view(img0: np.ndarray, img1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray, matches: np.ndarray,
              inlier_mask: np.ndarray | None = None, *, max_lines: int = 1000, gap: int = 10,
              title: str = "Matches") -> go.Figure:
    """Two images side by side with match lines, inliers in green and outliers in red.

    Keypoints follow ``docs/formats.md`` (pixel coordinates, (0, 0) = centre of the top-left pixel), which is
    also how ``go.Image`` places pixels.

    Args:
        img0: (H0, W0[, C]) first image, uint8 or float in [0, 1].
        img1: (H1, W1[, C]) second image.
        kpts0: (N0, 2) keypoints of image 0 (x, y).
        kpts1: (N1, 2) keypoints of image 1.
        matches: (M, 2) indices into ``kpts0`` and ``kpts1``.
        inlier_mask: (M,) bool, ``None`` = all drawn as ``matches`` in one colour.
        max_lines: most lines drawn per class (evenly subsampled, deterministic).
        gap: pixels between the two images.
        title: figure title (the counts are appended).

    Returns:
        Figure with two Image traces (JPEG data URIs, :func:`image_uri`), then Scatter line traces ``inliers`` and
        ``outliers`` (or ``matches``), present when non-empty.
    """
    im0, im1 = _rgb_uint8(img0), _rgb_uint8(img1)
    off = im0.shape[1] + gap
    k0 = np.asarray(kpts0, dtype=float).reshape(-1, 2)
    k1 = np.asarray(kpts1, dtype=float).reshape(-1, 2)
    m = np.asarray(matches, dtype=int).reshape(-1, 2)
    bad = (m < 0).any(axis=1) | (m[:, 0] >= len(k0)) | (m[:, 1] >= len(k1))
    if bad.any():
        raise InputError(None, f"{int(bad.sum())} matches index outside the keypoints ({len(k0)}, {len(k1)})")
    mask = None if inlier_mask is None else np.asarray(inlier_mask, dtype=bool).reshape(-1)
    if mask is not None and len(mask) != len(m):
        raise InputError(None, f"inlier mask has {len(mask)} entries for {len(m)} matches")
    fig = go.Figure(layout={"template": "plotly_white"})
    fig.add_trace(go.Image(source=image_uri(im0), x0=0, y0=0, name="image 0", hoverinfo="skip"))
    fig.add_trace(go.Image(source=image_uri(im1), x0=off, y0=0, name="image 1", hoverinfo="skip"))
    classes = [("matches", np.ones(len(m), bool), "#ffbf00")] if mask is None else \
        [("inliers", mask, "#1a9850"), ("outliers", ~mask, FAIL_COLOR)]
    for name, sel, color in classes:
        idx = np.flatnonzero(sel)
        if len(idx) == 0:
            continue
        if len(idx) > max_lines:
            idx = idx[np.linspace(0, len(idx) - 1, max_lines).round().astype(int)]
        p0, p1 = k0[m[idx, 0]], k1[m[idx, 1]]
        xs = np.stack([p0[:, 0], p1[:, 0] + off, np.full(len(idx), np.nan)], axis=1).ravel()
        ys = np.stack([p0[:, 1], p1[:, 1], np.full(len(idx), np.nan)], axis=1).ravel()
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} ({int(sel.sum())})",
                                 line={"color": color, "width": 1}, marker={"size": 3, "color": color},
                                 hoverinfo="skip", connectgaps=False))
    n_in = int(mask.sum()) if mask is not None else len(m)
    head = f"{title}: {len(m)} matches" + (f", {n_in} inliers" if mask is not None else "")
    fig.update_layout(title={"text": head}, showlegend=True, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    fig.update_xaxes(visible=False, range=[-0.5, off + im1.shape[1] - 0.5])
    # (the browser learns an image source's size only once it has loaded it: both ranges are set here)
    fig.update_yaxes(visible=False, range=[max(im0.shape[0], im1.shape[0]) - 0.5, -0.5], scaleanchor="x",
                     scaleratio=1)
    return fig
