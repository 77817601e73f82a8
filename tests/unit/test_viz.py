"""Unit tests of imc_core.viz: each builder on tiny inputs, empty and nan inputs, frustum geometry."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from imc_core import viz
from imc_core.errors import InputError
from imc_core.submission import R_COLS, T_COLS


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _frame(names: list[str], rot: np.ndarray, trans: np.ndarray) -> pd.DataFrame:
    data: dict[str, object] = {"dataset": "ds", "scene": "s", "image": names}
    flat = rot.reshape(-1, 9)
    for k, col in enumerate(R_COLS):
        data[col] = flat[:, k]
    for k, col in enumerate(T_COLS):
        data[col] = trans[:, k]
    return pd.DataFrame(data)


def _names(fig: go.Figure) -> list[str]:
    return [tr.name for tr in fig.data]


@pytest.fixture
def scene() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Six GT cameras and the same cameras expressed in a frame related by an exact similarity."""
    rot = np.stack([_rot("y", 30 * i) @ _rot("x", 10 * i) for i in range(6)])
    trans = np.array([[i, -i, 2.0 + 0.5 * i] for i in range(6)], dtype=float)
    names = [f"im{i}.png" for i in range(6)]
    gt = _frame(names, rot, trans)
    s, r_a, t_a = 2.5, _rot("z", 40) @ _rot("x", 20), np.array([1.0, -2.0, 0.5])
    # x_gt = s R_a x_pred + t_a  ->  x_pred = R_aᵀ (x_gt - t_a) / s
    centres = viz.camera_centers(rot, trans)
    c_pred = (centres - t_a) @ r_a / s
    rot_pred = rot @ r_a
    t_pred = -np.einsum("nij,nj->ni", rot_pred, c_pred)
    pred = _frame(names, rot_pred, t_pred)
    return gt, pred, {"s": s, "R": r_a.tolist(), "t": t_a.tolist()}


# ---------------------------------------------------------------------------------------------------- frustums


def test_frustum_apex_is_camera_centre_for_hand_pose() -> None:
    rot = _rot("z", 90)[None]
    trans = np.array([[1.0, 2.0, 3.0]])
    verts = viz.frustum_vertices(rot, trans, scale=0.5)
    assert verts.shape == (1, 5, 3)
    # R = [[0,-1,0],[1,0,0],[0,0,1]] -> c = -Rᵀ t = -(2, -1, 3)
    np.testing.assert_allclose(verts[0, 0], [-2.0, 1.0, -3.0])
    # corners lie at depth `scale` along the camera's +z (camera frame = R x + t)
    cam = np.einsum("ij,kj->ki", rot[0], verts[0, 1:]) + trans[0]
    np.testing.assert_allclose(cam[:, 2], 0.5)
    np.testing.assert_allclose(cam[:, :2], [[-1 / 3, -0.25], [1 / 3, -0.25], [1 / 3, 0.25], [-1 / 3, 0.25]])


def test_gt_centres_trace_uses_world_to_camera_convention() -> None:
    gt = _frame(["a.png"], _rot("z", 90)[None], np.array([[1.0, 2.0, 3.0]]))
    fig = viz.camera_frustums(gt, None, scale=1.0)
    centres = next(tr for tr in fig.data if tr.name == "GT centres")
    np.testing.assert_allclose([centres.x[0], centres.y[0], centres.z[0]], [-2.0, 1.0, -3.0])
    assert fig.layout.scene.aspectmode == "data"
    assert _names(fig) == ["GT cameras", "GT centres"]


def test_exact_similarity_lands_prediction_on_gt(scene) -> None:
    gt, pred, model = scene
    fig = viz.camera_frustums(gt, pred, alignment=model, thresholds=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
    gt_c = next(tr for tr in fig.data if tr.name == "GT centres")
    pr_c = next(tr for tr in fig.data if tr.name == "pred centres")
    np.testing.assert_allclose(np.c_[pr_c.x, pr_c.y, pr_c.z], np.c_[gt_c.x, gt_c.y, gt_c.z], atol=1e-9)
    # all errors ~0 -> only the best bin, nothing unregistered
    assert _names(fig) == ["GT cameras", "GT centres", "pred: err < 2 cm", "pred centres", "GT–pred offsets"]
    # aligned orientation equals the GT orientation too
    r_new, _ = viz.apply_similarity(viz._poses(pred, "p")[1], viz._poses(pred, "p")[2], model["s"],
                                    np.array(model["R"]), np.array(model["t"]))
    np.testing.assert_allclose(r_new, viz._poses(gt, "g")[1], atol=1e-12)


def test_alignment_entry_uses_last_model_and_errors_colour_bins(scene) -> None:
    gt, pred, model = scene
    entry = {"cluster": "c0", "thresholds": [0.005, 0.01, 0.02, 0.05, 0.1, 0.2], "models": [None] * 5 + [model]}
    errors = pd.Series([0.01, 0.03, 0.07, 0.15, 0.5, np.nan], index=gt["image"])
    fig = viz.camera_frustums(gt, pred, alignment=entry, errors=errors, thresholds=entry["thresholds"])
    bins = [n for n in _names(fig) if n.startswith("pred: ")]
    assert bins == ["pred: err < 2 cm", "pred: 2 cm – 5 cm", "pred: 5 cm – 10 cm", "pred: 10 cm – 20 cm",
                    "pred: fail (≥ 20 cm or in another cluster)"]
    marker_colors = next(tr for tr in fig.data if tr.name == "pred centres").marker.color
    assert marker_colors[4] == marker_colors[5] == viz.FAIL_COLOR


def test_frustums_coloured_by_thresholds_passed_as_the_metric_counts(scene) -> None:
    """The colour by error under the largest threshold's alignment disagreed with the Images tab's passes (each
    threshold has its own alignment): coloured by the passes, a camera 3 cm off that passes every threshold is
    green, and one that passes none is red whatever its error."""
    gt, pred, model = scene
    th = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    entry = {"cluster": "c0", "thresholds": th, "models": [None] * 5 + [model]}
    rows = pd.DataFrame({"image": gt["image"], **{f"pass_{k}": [False] * 6 for k in range(2)},
                         "pass_2": [True, True, False, False, False, False],
                         "pass_3": [True, True, True, False, False, False],
                         "pass_4": ["True", "True", "True", "True", "False", "False"],  # (as read from a CSV)
                         "pass_5": [True, True, True, True, True, False]})
    passes = viz.thresholds_passed(rows, th)
    assert passes.to_dict() == {"im0.png": 4, "im1.png": 4, "im2.png": 3, "im3.png": 2, "im4.png": 1,
                                "im5.png": 0}
    errors = pd.Series([0.03, 0.001, 0.001, 0.001, 0.001, 0.001], index=gt["image"])
    fig = viz.camera_frustums(gt, pred, alignment=entry, errors=errors, thresholds=th, passes=passes)
    assert [n for n in _names(fig) if n.startswith("pred: ")] == [
        "pred: passes 4 of 4 thresholds", "pred: passes 3 of 4 thresholds", "pred: passes 2 of 4 thresholds",
        "pred: passes 1 of 4 thresholds", "pred: passes none (or in another cluster)"]
    centres = next(tr for tr in fig.data if tr.name == "pred centres")
    assert centres.marker.color[0] == centres.marker.color[1] != viz.FAIL_COLOR  # 3 cm off, passes all four
    assert centres.marker.color[5] == viz.FAIL_COLOR  # 1 mm off under the drawn alignment, passes none
    assert "passes 4 of 4 thresholds" in centres.text[0] and "error 0.03 m" in centres.text[0]
    by_error = viz.camera_frustums(gt, pred, alignment=entry, errors=errors, thresholds=th)
    assert next(tr for tr in by_error.data if tr.name == "pred centres").marker.color[5] != viz.FAIL_COLOR
    rows[["gt_cx", "gt_cy", "gt_cz"]] = viz.camera_centers(*viz._poses(gt, "g")[1:])
    rows[["pred_cx", "pred_cy", "pred_cz"]] = rows[["gt_cx", "gt_cy", "gt_cz"]].to_numpy() + 0.001
    rows["error"] = errors.to_numpy()
    centred = viz.camera_centres(rows, th, by_passes=True)
    assert {t.name: len(t.x) for t in centred.data if t.name.startswith("pred: ")} == {
        "pred: passes 4 of 4 thresholds": 2, "pred: passes 3 of 4 thresholds": 1,
        "pred: passes 2 of 4 thresholds": 1, "pred: passes 1 of 4 thresholds": 1,
        "pred: passes none (or in another cluster)": 1}


def test_a_scene_of_other_than_six_thresholds_skips_the_first_two_as_the_metric(scene) -> None:
    """The metric leaves the first two thresholds unscored whatever their number: a scene of four was coloured by
    all four (passes 4 of 4 for an image the metric counts passing 2 of 2); thresholds as an array are taken."""
    gt, _pred, _model = scene
    th = np.array([0.01, 0.02, 0.05, 0.1])
    rows = pd.DataFrame({"image": gt["image"], "pass_0": [True] * 6, "pass_1": [True] * 6,
                         "pass_2": [True, True, False, False, False, False],
                         "pass_3": [True, True, True, False, False, False]})
    assert viz.thresholds_passed(rows, th).to_list() == [2, 2, 1, 0, 0, 0]
    idx, names, _ = viz._error_bins(np.array([0.03, 0.07, 0.2, np.nan]), th)
    assert names == ["err < 5 cm", "5 cm – 10 cm", "fail (≥ 10 cm or in another cluster)"]
    assert idx.tolist() == [0, 1, 2, 2]
    rows[["gt_cx", "gt_cy", "gt_cz"]] = viz.camera_centers(*viz._poses(gt, "g")[1:])
    rows[["pred_cx", "pred_cy", "pred_cz"]] = rows[["gt_cx", "gt_cy", "gt_cz"]].to_numpy() + 0.001
    rows["error"] = 0.001
    fig = viz.camera_centres(rows, th, by_passes=True)  # (an array of thresholds crashed the hover text)
    pred = [t for t in fig.data if t.name.startswith("pred: ")]
    assert {t.name: len(t.x) for t in pred} == {"pred: passes 2 of 2 thresholds": 2,
                                                "pred: passes 1 of 2 thresholds": 1,
                                                "pred: passes none (or in another cluster)": 3}
    assert "passes 2 of 2 thresholds" in pred[0].text[0]
    assert viz._skipped(2) == 0 and viz._used_thresholds([0.1, 0.2]) == [0, 1]  # (too short to skip any)


def test_a_run_without_pass_columns_is_coloured_by_error_and_says_so(scene) -> None:
    """Asked to colour by thresholds passed, a run whose per_image.csv holds no pass_k columns drew every camera
    "passes none" in red: unknown is not none, so the colour is the error's and the figure says why."""
    gt, pred, model = scene
    th = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    entry = {"cluster": "c0", "thresholds": th, "models": [None] * 5 + [model]}
    rows = pd.DataFrame({"image": gt["image"]})
    passes = viz.thresholds_passed(rows, th)
    assert passes.isna().all() and list(passes.index) == list(gt["image"])
    errors = pd.Series([0.01, 0.03, 0.07, 0.15, 0.5, np.nan], index=gt["image"])
    fig = viz.camera_frustums(gt, pred, alignment=entry, errors=errors, thresholds=th, passes=passes)
    assert [n for n in _names(fig) if n.startswith("pred: ")][0] == "pred: err < 2 cm"
    assert "coloured by error: no thresholds passed recorded" in fig.layout.annotations[0].text
    rows[["gt_cx", "gt_cy", "gt_cz"]] = viz.camera_centers(*viz._poses(gt, "g")[1:])
    rows[["pred_cx", "pred_cy", "pred_cz"]] = rows[["gt_cx", "gt_cy", "gt_cz"]].to_numpy() + 0.001
    rows["error"] = errors.to_numpy()
    centred = viz.camera_centres(rows, th, by_passes=True)
    assert "pred: err < 2 cm" in _names(centred)
    assert "coloured by error: no thresholds passed recorded" in centred.layout.annotations[0].text
    assert "pred: pred centres" in _names(viz.camera_centres(rows, [], by_passes=True))  # (none: one colour)
    # some scored columns only (thresholds changed after the run): counted on those, and said
    rows["pass_2"], rows["pass_3"] = True, False
    partial = viz.thresholds_passed(rows, th)
    assert partial.tolist() == [1] * 6 and partial.attrs["missing"] == ["t4", "t5"]
    fig = viz.camera_frustums(gt, pred, alignment=entry, errors=errors, thresholds=th, passes=partial)
    assert "the run records no passes of t4, t5: counted as not passed" in fig.layout.annotations[0].text
    assert "no passes of t4, t5" in viz.camera_centres(rows, th, by_passes=True).layout.annotations[0].text


def test_nan_poses_are_drawn_only_as_gt(scene) -> None:
    gt, pred, model = scene
    pred = pred.copy()
    pred.loc[2, list(T_COLS)] = np.nan
    gt = gt.copy()
    gt.loc[5, list(R_COLS)] = np.nan  # an unusable GT row is skipped
    fig = viz.camera_frustums(gt, pred, alignment=model, thresholds=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
                              points=np.random.default_rng(0).normal(size=(50, 3)), max_points=10)
    assert len(next(tr for tr in fig.data if tr.name == "GT centres").x) == 5
    unreg = next(tr for tr in fig.data if tr.name == "not registered")
    assert list(unreg.text) == ["im2.png"]
    assert len(next(tr for tr in fig.data if tr.name == "pred centres").x) == 4  # im5 is not in GT
    assert "pred (not in this scene)" in _names(fig)
    assert len(next(tr for tr in fig.data if tr.name == "points").x) == 10


def test_frustums_empty_and_missing_alignment(scene) -> None:
    gt, pred, _ = scene
    empty = viz.camera_frustums(gt.iloc[:0], None)
    assert len(empty.data) == 0 and len(empty.layout.annotations) == 1
    fig = viz.camera_frustums(gt, pred, alignment={"cluster": "", "thresholds": [], "models": [None] * 6})
    assert not any(n.startswith("pred") for n in _names(fig))
    assert "no alignment" in fig.layout.annotations[0].text
    with pytest.raises(InputError, match="lacks columns"):
        viz.camera_frustums(gt.drop(columns=["tx"]), None)


# ---------------------------------------------------------------------------------------------------- scores


SCORES = {"score": 50.0, "mAA": 45.0, "clusterness": 70.0,
          "datasets": {"a": {"score": 60.0, "mAA": 50.0, "clusterness": 75.0},
                       "b": {"score": 40.0, "mAA": 40.0, "clusterness": 65.0}}}


def test_score_bars() -> None:
    fig = viz.score_bars(SCORES)
    assert _names(fig) == ["score", "mAA", "clusterness", f"overall score {SCORES['score']:.2f}"]
    assert all(isinstance(tr, go.Bar) for tr in fig.data[:3])
    assert not [a for a in fig.layout.annotations if "overall" in a.text]  # (on the line, it sat under a bar label)
    assert list(fig.data[1].y) == [50.0, 40.0]
    assert fig.layout.shapes[0].y0 == 50.0
    assert len(viz.score_bars({"score": 0.0, "datasets": {}}).data) == 0
    # a dataset whose reconstruction failed scores 0 everywhere: its slot says so instead of looking empty
    failed = viz.score_bars({"score": 25.0, "datasets": {"a": {"score": 50.0, "mAA": 40.0, "clusterness": 60.0},
                                                         "stairs": {"score": 0.0, "mAA": 0.0, "clusterness": 0.0}}})
    assert [(a.x, a.text) for a in failed.layout.annotations if "scored" in a.text] == [("stairs", "0: nothing scored")]


def test_lines_and_3d_boxes_read_on_a_dark_page() -> None:
    """Streamlit's dark theme recolours a 2-D chart's background but not a 3-D box's walls (bright white) nor
    lines drawn in fixed dark or light greys (match-graph edges vanished, skipped thresholds outshone scored ones)."""
    gt = _frame(["a.png"], _rot("z", 90)[None], np.array([[1.0, 2.0, 3.0]]))
    scene = viz.camera_frustums(gt, None, scale=1.0).layout.scene
    for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
        assert axis.showbackground is False and axis.gridcolor == viz.NEUTRAL_GRID
    pairs = pd.DataFrame({"name0": ["a", "a"], "name1": ["b", "c"], "n_matches": [100, 50], "n_inliers": [90, 5]})
    edges = [tr.line.color for tr in viz.match_graph(pairs).data if tr.name.startswith("edges")]
    assert edges and all(c.startswith("rgba(128,128,128,") and float(c[:-1].rsplit(",", 1)[1]) >= 0.45
                         for c in edges)
    assert viz.score_bars(SCORES).layout.shapes[0].line.color == viz.NEUTRAL_LINE


def test_scene_bars_skips_outliers_and_handles_empty() -> None:
    scenes = pd.DataFrame({"dataset": ["a", "a", "a"], "scene": ["s1", "s2", "outliers"], "n_images": [10, 8, 3],
                           "cluster": ["c0", "", ""], "cluster_size": [12, 0, 0], "overlap": [9, 0, 0],
                           "mAA": [70.0, np.nan, 0.0], "warning": ["", "no cluster", ""]})
    fig = viz.scene_bars(scenes)
    assert _names(fig) == ["mAA", "GT images", "cluster size", "overlap"]
    assert list(fig.data[0].x) == ["a / s1", "a / s2"]
    assert len(viz.scene_bars(scenes.iloc[:0]).data) == 0


def _per_image() -> pd.DataFrame:
    rows = []
    spec = [("s1", "c0", 4), ("s1", "c1", 1), ("s2", "c1", 3), ("s2", "outliers", 2), ("outliers", "c0", 1),
            ("outliers", "outliers", 2)]
    k = 0
    for scene, cluster, n in spec:
        for _ in range(n):
            assoc = {"s1": "c0", "s2": "c1"}.get(scene, "")
            ok = cluster == assoc
            rows.append({"dataset": "ds", "scene": scene, "image": f"im{k}.png", "cluster": cluster,
                         "associated_cluster": assoc, "in_cluster": ok, "pose_valid": ok,
                         "error": 0.01 * (k + 1) if ok else np.nan,
                         **{f"pass_{t}": ok and 0.01 * (k + 1) < (0.02, 0.03, 0.05, 0.08, 0.1, 0.2)[t]
                            for t in range(6)},
                         "discounted": False})
            k += 1
    return pd.DataFrame(rows)


def test_threshold_curve_of_exact_poses_keeps_the_thresholds_readable() -> None:
    """Errors of 1e-12 m (a submission copied from the ground truth) spread the log axis over ten decades and
    pressed every threshold into its right edge, and the tables wrote "1.89e-09 mm"."""
    per_image = _per_image()
    per_image["error"] = np.where(np.isfinite(per_image["error"]), 1.89e-12, np.nan)
    fig = viz.threshold_curve(per_image, "ds", "s1", thresholds=[0.02, 0.03, 0.05, 0.08, 0.1, 0.2])
    curve = fig.data[0]
    assert min(curve.x) == pytest.approx(0.0002) and max(curve.customdata) == pytest.approx(1.89e-12)
    assert any("errors below 0.2 mm drawn at 0.2 mm" in a.text for a in fig.layout.annotations)
    assert not any("drawn at" in a.text for a in viz.threshold_curve(_per_image(), "ds", "s1").layout.annotations)
    assert [viz.length_label(x) for x in (1.89e-12, 0.0, 2e-5)] == ["< 0.01 mm", "0 mm", "0.02 mm"]


def test_cluster_matrix_counts_and_order() -> None:
    fig = viz.cluster_matrix(_per_image(), "ds")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    hm = fig.data[0]
    assert list(hm.y) == ["s1", "s2", "outliers"]
    assert list(hm.x) == ["c0", "c1", "outliers"]
    z = np.asarray(hm.z)
    np.testing.assert_array_equal(z, [[4, 1, 0], [0, 3, 2], [1, 0, 2]])
    assert len(fig.layout.shapes) == 2  # associated cells outlined
    # whole images from 0 (one value drew a scale of 4.6 … 5.4; others ticked 1.5, 2.5)
    assert (hm.zmin, hm.zmax, hm.colorbar.dtick, hm.colorbar.tickformat) == (0, 4, 1, "d")
    assert len(viz.cluster_matrix(_per_image(), "nope").data) == 0
    # a cluster literally named "nan" is a cluster (the metric counts it), not "(none)"
    named = _per_image().replace({"cluster": {"c1": "nan"}, "associated_cluster": {"c1": "nan"}})
    hm = viz.cluster_matrix(named, "ds").data[0]
    assert list(hm.x) == ["c0", "nan", "outliers"] and "(none)" not in list(hm.x)


def test_threshold_curve() -> None:
    per_image = _per_image()
    fig = viz.threshold_curve(per_image, "ds", "s1", thresholds=[0.02, 0.03, 0.05, 0.08, 0.1, 0.2])
    # the thresholds the metric scores and the two it skips, each trace in the colour its legend shows
    assert _names(fig) == ["registered within error", "metric: t2…t5 (pass_k)", "t0…t1, not scored by the metric"]
    curve = fig.data[0]
    assert curve.y[-1] == pytest.approx(4 / 5)  # 4 of 5 GT images of s1 have an error
    np.testing.assert_allclose([*fig.data[2].y, *fig.data[1].y], [1 / 5, 2 / 5, 4 / 5, 4 / 5, 4 / 5, 4 / 5])
    assert (fig.data[1].marker.color, fig.data[2].marker.color) == ("#d62728", viz.SKIPPED_GREY)
    assert fig.layout.xaxis.type == "log"
    # the thresholds are the ticks, in readable units (plotly's own log ticks read "2, 5, 0.01, 2")
    assert list(fig.layout.xaxis.tickvals) == [0.02, 0.03, 0.05, 0.08, 0.1, 0.2]
    assert list(fig.layout.xaxis.ticktext) == ["2 cm", "3 cm", "5 cm", "8 cm", "10 cm", "20 cm"]
    assert [viz.length_label(x) for x in (0.002, 0.0005, 0.015, 1.0, 3.5)] == ["2 mm", "0.5 mm", "1.5 cm", "1 m",
                                                                              "3.5 m"]
    all_nan = per_image.assign(error=np.nan)
    assert _names(viz.threshold_curve(all_nan, "ds", "s1")) == []
    # mini_imc25's bike scene has t0 = t1 = 0: no place on a log axis, so no legend entry without a marker
    zero = viz.threshold_curve(per_image, "ds", "s1", thresholds=[0.0, 0.0, 0.05, 0.08, 0.1, 0.2])
    assert _names(zero) == ["registered within error", "metric: t2…t5 (pass_k)"]
    assert len(zero.layout.shapes) == 4
    assert [a.text for a in zero.layout.annotations] == ["t0, t1 = 0: no place on a log axis, not drawn"]  # (said)
    assert not viz.threshold_curve(per_image, "ds", "s1", thresholds=[0.02, 0.03, 0.05, 0.08, 0.1, 0.2]
                                   ).layout.annotations
    assert len(viz.threshold_curve(per_image, "ds", "missing").data) == 0


def test_embedding_scatter() -> None:
    coords = np.arange(12, dtype=float).reshape(6, 2)
    gt = ["s1", "s1", "s2", "s2", "outliers", "s1"]
    cl = ["c0", "c0", "c0", "c1", "outliers", "c1"]
    fig = viz.embedding_scatter(coords, gt, cl, [f"im{i}" for i in range(6)])
    assert [(tr.legendgroup, tr.name) for tr in fig.data] == [
        ("gt", "s1"), ("gt", "s2"), ("gt", "outliers"), ("cluster", "c0"), ("cluster", "c1"),
        ("cluster", "outliers")]
    assert sum(len(tr.x) for tr in fig.data) == 12
    assert len(viz.embedding_scatter(coords, gt, None, list("abcdef")).data) == 3
    assert len(viz.embedding_scatter(np.zeros((0, 2)), [], [], []).data) == 0
    with pytest.raises(InputError):
        viz.embedding_scatter(coords, gt[:3], cl, list("abcdef"))


def test_embedding_scatter_clusters_take_their_scenes_colours() -> None:
    """c1 serves s1 and c0 serves s2: each takes that scene's colour; a second claim and strays get fresh colours."""
    coords = np.arange(14, dtype=float).reshape(7, 2)
    gt = ["s1", "s1", "s2", "s2", "outliers", "s1", "s2"]
    cl = ["c1", "c1", "c0", "c0", "outliers", "c2", "c3"]
    fig = viz.embedding_scatter(coords, gt, cl, list("abcdefg"), cluster_scene={"c1": "s1", "c0": "s2", "c3": "s2"})
    color = {(tr.legendgroup, tr.name): tr.marker.color for tr in fig.data}
    assert color[("cluster", "c1")] == color[("gt", "s1")] and color[("cluster", "c0")] == color[("gt", "s2")]
    assert color[("cluster", "outliers")] == color[("gt", "outliers")]
    others = {color[("cluster", "c2")], color[("cluster", "c3")]}
    assert len(others) == 2 and not others & {color[("gt", "s1")], color[("gt", "s2")], color[("gt", "outliers")]}


def test_loss_attribution_bar_from_mapping_and_frame() -> None:
    fig = viz.loss_attribution_bar({"a": {"score": 60.0, "clusterness": 10.0, "unregistered": 15.0,
                                          "misclustered": 5.0, "inaccurate": 7.0, "discount": 3.0}})
    assert _names(fig) == ["score", "clusterness", "misclustered", "unregistered", "inaccurate", "discount"]
    assert all(tr.orientation == "h" for tr in fig.data)
    assert sum(tr.x[0] for tr in fig.data) == pytest.approx(100.0)
    frame = pd.DataFrame({"score": [80.0], "gap": [20.0], "clusterness": [20.0], "unregistered": [0.0],
                          "inaccurate": [0.0], "discount": [0.0], "n_images": [9]}, index=["total"])
    assert _names(viz.loss_attribution_bar(frame)) == ["score", "clusterness", "unregistered", "inaccurate",
                                                       "discount"]
    assert len(viz.loss_attribution_bar({}).data) == 0


def test_timings_bar() -> None:
    timings = {"total": 12.5, "datasets": {"a": {"features": 3.0, "matching": 4.0}, "b": {"features": 1.0,
                                                                                         "mapping": 2.0}},
               "cache": {"a": {"features": "hit"}}}
    fig = viz.timings_bar(timings)
    assert _names(fig) == ["features", "matching", "mapping"]
    assert fig.layout.barmode == "stack"
    assert list(fig.data[2].y) == [0.0, 2.0]
    assert list(fig.data[0].customdata) == ["hit", ""]
    # a cached stage draws no bar (0 s): the dataset's label names it
    assert list(fig.layout.xaxis.ticktext) == ["a<br>cache: features", "b"]
    assert "12.5" in fig.layout.title.text
    assert len(viz.timings_bar({"datasets": {}}).data) == 0


def test_compare_bars_error_bars_only_with_seeds() -> None:
    other = {"score": 54.0, "datasets": {"a": {"score": 64.0}, "b": {"score": 44.0}}}
    fig = viz.compare_bars({"base": SCORES, "new": [SCORES, other]})
    assert _names(fig) == ["base", "new"]
    assert list(fig.data[0].x) == ["a", "b", "overall"]
    assert fig.data[0].error_y.array is None
    assert list(fig.data[1].y) == [62.0, 42.0, 52.0]
    np.testing.assert_allclose(fig.data[1].error_y.array, [np.std([60, 64], ddof=1)] * 3)
    assert len(viz.compare_bars({}).data) == 0


def test_compare_bars_write_each_value_so_a_zero_is_seen() -> None:
    """A run scoring 0 drew no bar at all, which read as a run without that dataset."""
    zero = {"score": 0.0, "datasets": {"a": {"score": 0.0}}}
    fig = viz.compare_bars({"base": SCORES, "slip": zero})
    assert list(fig.data[1].text) == ["0.0", "", "0.0"]  # b: not in that run, so no label either
    assert list(fig.data[0].text) == [f"{v:.1f}" for v in fig.data[0].y]


def test_compare_bars_error_bars_stop_at_0_and_100() -> None:
    """Seeds scoring 100, 100 and 70 drew a bar up to 107; the hover still gives the whole std."""
    runs = [{"score": v, "datasets": {"a": {"score": v}}} for v in (100.0, 100.0, 70.0)]
    low = [{"score": v, "datasets": {"a": {"score": v}}} for v in (0.0, 0.0, 30.0)]
    fig = viz.compare_bars({"high": runs, "low": low})
    sd = np.std([100, 100, 70], ddof=1)
    high_err, low_err = fig.data[0].error_y, fig.data[1].error_y
    np.testing.assert_allclose(high_err.array, [10.0, 10.0])  # up to 100 from the mean 90
    np.testing.assert_allclose(high_err.arrayminus, [sd, sd])
    np.testing.assert_allclose(low_err.arrayminus, [10.0, 10.0])  # down to 0 from the mean 10
    np.testing.assert_allclose(low_err.array, [sd, sd])
    np.testing.assert_allclose([c[0] for c in fig.data[0].customdata], [sd, sd])
    # the value is not written where the whisker stands (above the bar) but inside it; a short bar keeps it above
    assert list(fig.data[0].textposition) == ["inside", "inside"] and list(fig.data[1].textposition) == ["outside"] * 2
    assert list(viz.compare_bars({"one": runs[0]}).data[0].textposition) == ["outside", "outside"]


# ---------------------------------------------------------------------------------------------------- matching


def test_match_graph() -> None:
    pairs = pd.DataFrame({"name0": ["a", "a", "b", "c"], "name1": ["b", "c", "c", "d"],
                          "n_matches": [100, 50, 80, 10], "n_inliers": [90, 20, 0, 5]})
    groups = {"a": "s1", "b": "s1", "c": "s2", "d": "outliers"}
    fig = viz.match_graph(pairs, groups)
    mids = next(tr for tr in fig.data if tr.name == "edge midpoints")
    assert mids.marker.opacity == 0
    assert [tuple(c[:2]) for c in mids.customdata] == [("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")]
    node_traces = [tr for tr in fig.data if tr.mode == "markers" and tr.name != "edge midpoints"]
    assert [tr.name for tr in node_traces] == ["s1", "s2", "outliers"]
    assert sum(len(tr.x) for tr in fig.data if tr.name.startswith("edges")) == 4 * 3  # 2 points + break per edge
    again = viz.match_graph(pairs, groups)
    np.testing.assert_array_equal(again.data[-1].x, fig.data[-1].x)  # deterministic layout
    circ = viz.graph_layout(4, np.array([[0, 1]]), method="circular")
    np.testing.assert_allclose(np.linalg.norm(circ, axis=1), 1.0)
    # grouped: a gap of two node steps between groups (and after the last), one step inside a group
    arcs = viz.graph_layout(4, np.array([[0, 1]]), method="circular", groups=["s1", "s1", "s2", "s2"])
    ang = np.mod(np.arctan2(arcs[:, 1], arcs[:, 0]), 2 * np.pi) / (2 * np.pi) * 8  # steps 0, 1, (gap) 4, 5, (gap) 8
    np.testing.assert_allclose(ang, [0, 1, 4, 5], atol=1e-9)
    assert len(viz.match_graph(pairs.iloc[:0]).data) == 0
    with pytest.raises(InputError):
        viz.match_graph(pairs.drop(columns=["n_inliers"]))


def test_pair_view() -> None:
    img0 = np.zeros((20, 30, 3), dtype=np.uint8)
    img1 = np.random.default_rng(0).random((25, 20))  # grayscale float
    k0 = np.array([[1.0, 2.0], [5.0, 5.0], [10.0, 3.0]])
    k1 = np.array([[2.0, 2.0], [4.0, 6.0]])
    matches = np.array([[0, 0], [1, 1], [2, 1]])
    fig = viz.pair_view(img0, img1, k0, k1, matches, np.array([True, True, False]), gap=10)
    assert [tr.type for tr in fig.data] == ["image", "image", "scatter", "scatter"]
    assert _names(fig)[2:] == ["inliers (2)", "outliers (1)"]
    assert fig.data[1].x0 == 40
    assert fig.data[1].z is None and fig.data[1].source.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(fig.data[1].source.split(",", 1)[1]))) as im:
        assert im.size == (20, 25) and im.mode == "RGB"
    assert list(fig.layout.yaxis.range) == [24.5, -0.5]  # the taller image, top row up
    # first inlier line goes from (1, 2) to (2 + 40, 2)
    assert list(fig.data[2].x[:2]) == [1.0, 42.0] and list(fig.data[2].y[:2]) == [2.0, 2.0]
    none = viz.pair_view(img0, img0, k0, k1, np.zeros((0, 2), int), np.zeros(0, bool))
    assert len(none.data) == 2
    with pytest.raises(InputError):
        viz.pair_view(img0, img0, k0, k1, np.array([[5, 0]]), None)


def test_default_frustum_scale_follows_scene_extent(scene) -> None:
    gt, _, _ = scene
    big = gt.copy()
    big[list(T_COLS)] *= 10.0  # same rotations, centres 10x further apart

    def pyramid_depth(fig: go.Figure) -> float:
        lines = next(tr for tr in fig.data if tr.name == "GT cameras")
        pts = np.c_[lines.x[:17], lines.y[:17], lines.z[:17]]
        apex = pts[5]
        return float(np.linalg.norm(pts[0] - apex))

    assert pyramid_depth(viz.camera_frustums(big, None)) == pytest.approx(
        10 * pyramid_depth(viz.camera_frustums(gt, None)))


def test_far_points_are_left_out_of_the_3d_view(scene) -> None:
    """Points near infinity would shrink the cameras to a dot under aspectmode "data"."""
    gt, pred, model = scene
    rng = np.random.default_rng(0)
    centres = viz.camera_centers(viz._poses(pred, "p")[1], viz._poses(pred, "p")[2])
    near = centres.mean(0) + rng.normal(scale=0.5, size=(200, 3)) * np.ptp(centres, axis=0).max()
    far = centres.mean(0) + np.array([[1e4, 0, 0], [0, -3e4, 0]])
    keep = viz.near_points(np.vstack([near, far]), centres)
    assert keep[:200].mean() > 0.95 and not keep[200:].any()
    fig = viz.camera_frustums(gt, pred, alignment=model, thresholds=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
                              points=np.vstack([near, far]))
    drawn = next(tr for tr in fig.data if tr.name == "points")
    assert len(drawn.x) == int(keep.sum())
    assert f"{int((~keep).sum())} far 3-D points not drawn" in fig.layout.annotations[0].text
    # per-camera colours are named by the bins' traces, not by a legend entry of their own
    assert next(tr for tr in fig.data if tr.name == "pred centres").showlegend is False


def test_camera_centres_from_per_image_rows() -> None:
    """Without the data root's labels: GT and aligned predicted centres from per_image.csv, binned by error."""
    rows = pd.DataFrame({"image": ["a", "b", "c"], "gt_cx": [0.0, 1.0, 2.0], "gt_cy": 0.0, "gt_cz": 0.0,
                         "pred_cx": [0.001, 1.2, np.nan], "pred_cy": 0.0, "pred_cz": 0.0,
                         "error": [0.001, 0.2, np.nan]})
    th = [0.005, 0.01, 0.02, 0.05, 0.1, 0.5]
    fig = viz.camera_centres(rows, th)
    names = [t.name for t in fig.data]
    assert names[0] == "GT centres" and list(fig.data[0].x) == [0.0, 1.0, 2.0]
    preds = {t.name: list(t.x) for t in fig.data if t.name.startswith("pred: ")}
    assert preds == {"pred: err < 2 cm": [0.001], "pred: 10 cm – 50 cm": [1.2]}  # 0.2 m: between t4 and t5
    assert [list(t.x) for t in fig.data if t.name == "not registered"] == [[2.0]]
    assert "GT–pred offsets" in names and fig.layout.scene.aspectmode == "data"
    assert "centres only" in fig.layout.annotations[0].text
    assert viz.camera_centres(rows.drop(columns=["gt_cx"])).layout.annotations[0].text.startswith("no camera")


def test_frustum_size_follows_the_camera_spacing() -> None:
    """At 200 cameras the pyramids (6 % of the extent) were several times the cameras' spacing and merged into one
    mass; a few cameras far off inflated them further."""
    rng = np.random.default_rng(0)
    few = rng.uniform(0, 10, size=(8, 3))
    assert viz._auto_scale(few) == pytest.approx(0.06 * np.linalg.norm(np.ptp(np.percentile(few, [2, 98], axis=0),
                                                                               axis=0)), rel=0.5)
    grid = np.stack(np.meshgrid(np.arange(20.0), np.arange(10.0), [0.0]), axis=-1).reshape(-1, 3)  # 200, 1 m apart
    scale = viz._auto_scale(grid)
    assert scale == pytest.approx(0.8)  # 0.8 × the spacing, not 6 % of the extent (1.2 m) …
    far = np.vstack([grid, [[0.0, 0.0, -600.0], [5.0, 5.0, 900.0]]])
    assert viz._auto_scale(far) == pytest.approx(scale)  # … and two cameras far off change nothing
    video = np.stack([np.linspace(0, 10, 200), np.zeros(200), np.zeros(200)], axis=1)  # 5 cm apart on 10 m
    assert viz._auto_scale(video) == pytest.approx(0.1, rel=0.05)  # 1 % of the extent: still visible


def test_strongest_pairs_keep_each_images_best_links() -> None:
    """An exhaustive dataset's match graph (17,000 pairs of 225 images) drew as a solid disk."""
    from imc_core.viz import strongest_pairs

    names = [f"i{k}" for k in range(6)]
    rows = [(a, b, 10 * i + j) for i, a in enumerate(names) for j, b in enumerate(names) if i < j]
    pairs = pd.DataFrame(rows, columns=["name0", "name1", "n_inliers"])
    kept = strongest_pairs(pairs, 1)
    # i5's best is i4 (44), i4's too; i0's best is i5 (5); i1's i5 (15), i2's i5 (25), i3's i5 (35)
    assert list(zip(kept["name0"], kept["name1"], strict=True)) == [
        ("i0", "i5"), ("i1", "i5"), ("i2", "i5"), ("i3", "i5"), ("i4", "i5")]
    assert list(kept.index) == sorted(kept.index)  # original order
    assert len(strongest_pairs(pairs, 5)) == len(pairs)  # everyone keeps everything
    assert {"i0", "i1"} <= {*strongest_pairs(pairs, 2)["name0"]}  # every image keeps a link


def test_cluster_cameras_draws_a_cluster_as_submitted() -> None:
    """Without ground truth (a test split): the cluster's cameras in their own frame, names on hover, unposed rows
    skipped, far 3-D points left out and said so."""
    from imc_core.viz import cluster_cameras

    rot = np.stack([_rot("y", 20 * i) for i in range(4)])
    trans = np.array([[0.0, 0.0, 4.0]] * 4)
    frame = _frame(["a.png", "b.png", "c.png", "d.png"], rot, trans)
    frame.loc[3, R_COLS] = np.nan  # (unposed)
    pts = np.vstack([np.zeros((50, 3)), [[1e6, 1e6, 1e6]]])
    fig = cluster_cameras(frame, points=pts, title="ds / cluster0")
    assert _names(fig) == ["cameras", "centres", "points"]
    centres = next(t for t in fig.data if t.name == "centres")
    assert list(centres.text) == ["a.png", "b.png", "c.png"]
    np.testing.assert_allclose(np.c_[centres.x, centres.y, centres.z][0], -rot[0].T @ trans[0])
    assert len(next(t for t in fig.data if t.name == "points").x) == 50
    assert "1 far 3-D points not drawn" in str(fig.layout.annotations[0].text)
    assert fig.layout.scene.xaxis.title.text == "x (the model's frame and scale)"  # (no GT: no metres)
    assert viz.camera_frustums(frame).layout.scene.zaxis.title.text == "z (GT frame, m)"
    empty = cluster_cameras(frame.iloc[3:])
    assert not empty.data and "no valid camera poses" in str(empty.layout.annotations[0].text)
