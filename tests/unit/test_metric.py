"""Unit tests of :mod:`imc_core.metric` (no /work/shared needed).

Hand-computed cases use 10-camera scenes and thresholds ``TH``; with ``m`` GT images and ``c_k`` cameras under the
``k``-th threshold, a scene contributes ``Σ_{k=2..5} max(0, c_k − 3)`` over ``4 · (m − 3)`` to the mAA. A naive
reference (plain loops over triplets, one LAPACK call per model, written from the metric's description) is compared
with the vectorised implementation on random small cases.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from imc_core.errors import InputError
from imc_core.metric import MetricConfig, register_cameras, score, score_files
from imc_core.submission import pose_frame, write_pose_csv

TH = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
DS = "ds"


# ------------------------------------------------------------------------------------------------------ helpers


def rand_rot(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Uniform random rotations ``(3, 3)`` or ``(n, 3, 3)``."""
    from scipy.spatial.transform import Rotation

    seed = int(rng.integers(2**31))
    R = Rotation.random(1 if n is None else n, random_state=seed).as_matrix()
    return R[0] if n is None else R


def scene_poses(rng: np.random.Generator, m: int, spread: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """World→camera ``R`` ``(m, 3, 3)`` and centres ``(m, 3)`` of a random scene."""
    return rand_rot(rng, m), rng.normal(size=(m, 3)) * spread


def frame(rows: list[tuple[str, str, str, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Pose frame from ``(dataset, scene, image, R, centre)`` rows (``t = -R c``)."""
    R = np.stack([r[3] for r in rows])
    c = np.stack([r[4] for r in rows])
    t = -np.einsum("nij,nj->ni", R, c)
    return pose_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], R, t)


def make_gt(
    rng: np.random.Generator, sizes: dict[str, int], outliers: int = 0
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """GT labels with scenes of the given sizes (+ nan-pose outliers), thresholds ``TH``, and the poses."""
    rows, poses = [], {}
    for sc, m in sizes.items():
        R, c = scene_poses(rng, m)
        poses[sc] = (R, c)
        rows += [(DS, sc, f"{sc}_{i:03d}.png", R[i], c[i]) for i in range(m)]
    nan = np.full(3, np.nan)
    rows += [(DS, "outliers", f"out_{i:03d}.png", np.full((3, 3), np.nan), nan) for i in range(outliers)]
    return frame(rows), {(DS, sc): TH.copy() for sc in sizes}, poses


def submit(gt: pd.DataFrame, cluster_of: dict[str, str], transform: bool = True, seed: int = 0) -> pd.DataFrame:
    """Submission = GT poses, optionally moved by one similarity, with clusters ``cluster_of[image]``."""
    rng = np.random.default_rng(seed)
    sub = gt.copy()
    sub["scene"] = [cluster_of[i] for i in sub["image"]]
    if transform:
        S, s, t = rand_rot(rng), 2.5, rng.normal(size=3) * 10
        R = sub[[f"r{i}{j}" for i in range(3) for j in range(3)]].to_numpy().reshape(-1, 3, 3)
        tt = sub[["tx", "ty", "tz"]].to_numpy()
        c = -np.einsum("nji,nj->ni", R, tt)
        c2 = s * c @ S.T + t
        R2 = R @ S.T
        t2 = -np.einsum("nij,nj->ni", R2, c2)
        sub[[f"r{i}{j}" for i in range(3) for j in range(3)]] = R2.reshape(-1, 9)
        sub[["tx", "ty", "tz"]] = t2
    return sub


def set_centre(sub: pd.DataFrame, image: str, c: np.ndarray) -> None:
    """Move the camera of ``image`` to centre ``c`` (keeping its rotation)."""
    i = int(np.flatnonzero(sub["image"].to_numpy() == image)[0])
    R = sub.loc[i, [f"r{a}{b}" for a in range(3) for b in range(3)]].to_numpy(dtype=float).reshape(3, 3)
    sub.loc[i, ["tx", "ty", "tz"]] = -R @ c


def centre_of(sub: pd.DataFrame, image: str) -> np.ndarray:
    i = int(np.flatnonzero(sub["image"].to_numpy() == image)[0])
    R = sub.loc[i, [f"r{a}{b}" for a in range(3) for b in range(3)]].to_numpy(dtype=float).reshape(3, 3)
    return -R.T @ sub.loc[i, ["tx", "ty", "tz"]].to_numpy(dtype=float)


def harmonic(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


# ------------------------------------------------------------------------------------------ naive reference


def _naive_fit(v0: np.ndarray, v1: np.ndarray, horn: bool) -> np.ndarray:
    """Similarity ``v1 ≈ M @ [v0; 1]`` of ``(3, k)`` point sets: Horn quaternion or SVD, scale = RMS ratio."""
    v0 = v0.copy()
    v1 = v1.copy()
    m0, m1 = v0.mean(axis=1), v1.mean(axis=1)
    v0 -= m0[:, None]
    v1 -= m1[:, None]
    if horn:
        xx, yy, zz = np.sum(v0 * v1, axis=1)
        xy, yz, zx = np.sum(v0 * np.roll(v1, -1, axis=0), axis=1)
        xz, yx, zy = np.sum(v0 * np.roll(v1, -2, axis=0), axis=1)
        N = np.array(
            [
                [xx + yy + zz, 0.0, 0.0, 0.0],
                [yz - zy, xx - yy - zz, 0.0, 0.0],
                [zx - xz, xy + yx, yy - xx - zz, 0.0],
                [xy - yx, zx + xz, yz + zy, zz - xx - yy],
            ]
        )
        w, V = np.linalg.eigh(N)
        q = V[:, np.argmax(w)]
        q = q / np.linalg.norm(q)
        a, b, c, d = q
        R = np.array(
            [
                [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
            ]
        )
    else:
        u, _, vh = np.linalg.svd(v1 @ v0.T)
        R = u @ vh
        if np.linalg.det(R) < 0:
            R -= np.outer(u[:, 2], vh[2, :] * 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = math.sqrt(np.sum(v1 * v1) / np.sum(v0 * v0)) if np.sum(v0 * v0) > 0 else math.inf
    M = np.zeros((3, 4))
    M[:, :3] = s * R
    M[:, 3] = m1 - s * R @ m0
    return M


def naive_register(ev: np.ndarray, gt: np.ndarray, th: np.ndarray) -> np.ndarray:
    """Best-model errors ``(n_valid, r)``: every triplet, Horn, SVD refit of each distinct inlier set with > 2
    members, best = more inliers, or as many and a strictly smaller SSE (first one wins ties)."""
    keep = np.isfinite(ev).all(axis=1)
    ev, gt = ev[keep], gt[keep]
    n, r = len(ev), len(th)
    ev1 = np.vstack([ev.T, np.ones(n)])
    best_n = np.zeros(r, dtype=int)
    best_sse = np.full(r, np.inf)
    best_err = np.full((n, r), np.inf)
    with np.errstate(all="ignore"):
        for tri in itertools.combinations(range(n), 3):
            i = list(tri)
            M = _naive_fit(ev[i].T, gt[i].T, horn=True)
            e2 = np.sum((M @ ev1 - gt.T) ** 2, axis=0)
            inl = e2[:, None] < th[None] ** 2
            for q in range(r):
                if inl[:, q].sum() <= 2 or any((inl[:, q] == inl[:, p]).all() for p in range(q)):
                    continue
                M2 = _naive_fit(ev[inl[:, q]].T, gt[inl[:, q]].T, horn=False)
                e2r = np.sum((M2 @ ev1 - gt.T) ** 2, axis=0)
                sse = e2r.sum()
                cnt = (e2r[:, None] < th[None] ** 2).sum(axis=0)
                upd = (cnt > best_n) | ((cnt == best_n) & (sse < best_sse))
                best_n[upd] = cnt[upd]
                best_sse[upd] = sse
                best_err[:, upd] = np.sqrt(e2r)[:, None]
    return best_err


def naive_score(gt: pd.DataFrame, th: dict, sub: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Final score and per-dataset scores (percent), plain loops over the metric's description."""

    def centres(df: pd.DataFrame) -> dict:
        out: dict = {}
        for row in df.itertuples(index=False):
            R = np.array([getattr(row, f"r{a}{b}") for a in range(3) for b in range(3)]).reshape(3, 3)
            t = np.array([row.tx, row.ty, row.tz])
            out.setdefault(row.dataset, {}).setdefault(row.scene, {})[row.image] = -R.T @ t
        return out

    G, U = centres(gt), centres(sub)
    per: dict[str, float] = {}
    for ds, gscenes in G.items():
        uscenes = U[ds]
        best = []
        for gs, gcams in gscenes.items():
            rows = []
            for us, ucams in uscenes.items():
                if gs == "outliers" or us == "outliers":
                    rows.append((0, 0.0, 0, 0, None))
                    continue
                good = [im for im in gcams if im in ucams]
                m = len(gcams)
                ths = th[(ds, gs)]
                if good:
                    err = naive_register(np.array([ucams[i] for i in good]), np.array([gcams[i] for i in good]), ths)
                else:
                    err = np.zeros((0, len(ths)))
                num = int(np.maximum((err[:, 2:] < ths[2:]).sum(axis=0) - 3, 0).sum())
                maa = 0.0 if num == 0 else num / (4 * (m - 3))
                rows.append((len(good), maa, m, len(ucams), num))
            # association: max overlap, then max mAA, then first in file order
            j = sorted(range(len(rows)), key=lambda k: (-rows[k][0], -rows[k][1], k))[0]
            best.append((gs, rows[j]))
        best = [b for b in best if b[0] != "outliers"]
        ov = sum(b[1][0] for b in best)
        cs = sum(b[1][3] for b in best)
        clus = 0.0 if cs == 0 else ov / cs
        a = sum(b[1][4] for b in best if b[1][4] is not None)
        den = max(0, 4 * (sum(b[1][2] for b in best) - 3 * len(best)))
        maa = 0.0 if den == 0 else a / den
        per[ds] = harmonic(maa, clus)
    return 100 * float(np.mean(list(per.values()))), {k: 100 * v for k, v in per.items()}


# ------------------------------------------------------------------------------------------- hand-made cases


@pytest.fixture
def one_scene() -> tuple[pd.DataFrame, dict, dict]:
    return make_gt(np.random.default_rng(0), {"A": 10})


def test_perfect_submission_scores_100(one_scene) -> None:
    gt, th, _ = one_scene
    res = score(gt, th, submit(gt, dict.fromkeys(gt["image"], "c0"), transform=False))
    assert res.score == pytest.approx(100.0, abs=1e-12)
    assert res.mAA == pytest.approx(100.0, abs=1e-12) and res.clusterness == 100.0
    assert res.to_json() == {
        "score": res.score,
        "mAA": res.mAA,
        "clusterness": res.clusterness,
        "datasets": {DS: {"score": res.score, "mAA": res.mAA, "clusterness": res.clusterness}},
    }


def test_similarity_invariance(one_scene) -> None:
    gt, th, _ = one_scene
    res = score(gt, th, submit(gt, dict.fromkeys(gt["image"], "c0"), transform=True, seed=3))
    assert res.score == pytest.approx(100.0, abs=1e-12)
    model = res.alignments[DS]["A"]["models"][5]
    assert model is not None and model["s"] == pytest.approx(1 / 2.5)


def test_one_camera_far(one_scene) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    set_centre(sub, "A_004.png", centre_of(sub, "A_004.png") + 100.0)
    res = score(gt, th, sub)
    # 9 of 10 cameras under thresholds 2..5: 4·(9−3) / (4·(10−3)) = 6/7; clusterness 1; score = 2·(6/7)/(13/7)
    assert res.mAA == pytest.approx(100 * 6 / 7, abs=1e-9)
    assert res.score == pytest.approx(100 * 12 / 13, abs=1e-9)
    row = res.per_image.set_index("image").loc["A_004.png"]
    assert not row["pass_5"] and row["error"] > 10
    assert res.per_image["discounted"].sum() == 3
    assert list(res.scenes.loc[0, [f"registered_{k}" for k in range(6)]]) == [9] * 6


def test_all_nan(one_scene) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    sub.loc[:, [c for c in sub.columns if c[0] in "rt" and len(c) <= 3]] = np.nan
    res = score(gt, th, sub)
    # nothing registered: mAA 0, clusterness 10/10 → score 0
    assert res.score == 0.0 and res.mAA == 0.0 and res.clusterness == 100.0
    assert not res.per_image["pose_valid"].any() and res.per_image["error"].isna().all()


def test_nan_poses_count_in_cluster_but_not_registered(one_scene) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    sub.loc[sub["image"].isin(["A_001.png", "A_007.png"]), ["tx", "ty", "tz"]] = np.nan
    res = score(gt, th, sub)
    # 8 registered: 4·5 / 28 = 5/7; clusterness 1; score = 2·(5/7)/(12/7) = 5/6
    assert res.mAA == pytest.approx(100 * 5 / 7, abs=1e-9)
    assert res.score == pytest.approx(100 * 5 / 6, abs=1e-9)


def test_an_unset_cluster_in_memory_is_an_empty_name_as_in_a_file(one_scene) -> None:
    """A frame built in memory with some clusters left unset (nan, e.g. after a merge) raised a KeyError; in a file
    the same rows are empty cells: a cluster named '' that a warning names."""
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    sub.loc[3, "scene"] = np.nan
    res = score(gt, th, sub)
    same = score(gt, th, sub.assign(scene=sub["scene"].fillna("")))
    assert res.score == same.score < 100.0 and res.warnings == same.warnings
    assert any("1 row(s) with an empty scene (cluster) name" in w for w in res.warnings)


def test_a_submission_copied_from_the_labels_frame_is_not_called_the_labels_file(one_scene) -> None:
    """pandas carries a frame's attrs to its copies: the faults of a submission made from the labels frame were
    reported against the labels file."""
    gt, th, _ = one_scene
    gt.attrs["path"] = "/data/train_labels.csv"
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    assert sub.attrs.get("path") == "/data/train_labels.csv"
    with pytest.raises(InputError) as err:
        score(gt, th, sub.drop(columns=["tz"]))
    assert "train_labels.csv" not in str(err.value) and "lacks column(s) tz" in str(err.value)


def test_an_odd_count_of_thresholds_is_named(one_scene) -> None:
    """Two thresholds scored 0 without a word (the metric skips the first two); three scored on the last one alone."""
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    res = score(gt, {k: v[-3:] for k, v in th.items()}, sub)
    assert res.score == pytest.approx(100.0)
    assert "3 thresholds per scene where the official files hold 6: the metric skips the first 2 and scores the " \
        "other 1" in res.warnings
    with pytest.raises(InputError, match="2 threshold.s. per scene, and the metric skips the first 2: none is left"):
        score(gt, {k: v[-2:] for k, v in th.items()}, sub)
    assert not score(gt, th, sub).warnings


def test_split_scene(one_scene) -> None:
    gt, th, _ = one_scene
    imgs = list(gt["image"])
    sub = submit(gt, {im: ("big" if k < 6 else "small") for k, im in enumerate(imgs)})
    res = score(gt, th, sub)
    # associated with "big" (overlap 6): mAA 4·3/28 = 3/7; clusterness 6/6; score = 2·(3/7)/(10/7) = 0.6
    assert res.scenes.loc[0, "cluster"] == "big" and res.scenes.loc[0, "overlap"] == 6
    assert res.score == pytest.approx(60.0, abs=1e-9)


def test_merged_scenes() -> None:
    gt, th, _ = make_gt(np.random.default_rng(1), {"A": 10, "B": 10})
    res = score(gt, th, submit(gt, dict.fromkeys(gt["image"], "c0")))
    # both scenes → c0: mAA 1 (each scene registers in its own frame); clusterness 20/40; score 2/3
    assert res.mAA == pytest.approx(100.0, abs=1e-9)
    assert res.clusterness == pytest.approx(50.0, abs=1e-12)
    assert res.score == pytest.approx(200 / 3, abs=1e-9)
    assert all("also serves" in w for w in res.scenes["warning"])


def test_outliers_in_and_out() -> None:
    gt, th, _ = make_gt(np.random.default_rng(2), {"A": 10}, outliers=2)
    outs = [im for im in gt["image"] if im.startswith("out")]
    cl_out = {im: ("outliers" if im in outs else "c0") for im in gt["image"]}
    assert score(gt, th, submit(gt, cl_out)).score == pytest.approx(100.0, abs=1e-9)
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    res = score(gt, th, sub)
    # the two GT outliers sit in c0 (with nan poses): clusterness 10/12, mAA 1 → score 2·(5/6)/(11/6) = 10/11
    assert res.clusterness == pytest.approx(100 * 10 / 12, abs=1e-9)
    assert res.score == pytest.approx(100 * 10 / 11, abs=1e-9)
    assert (res.per_image["associated_cluster"] == "").sum() == 2


def test_whole_scene_in_outliers_first_gives_mAA_above_100() -> None:
    gt, th, _ = make_gt(np.random.default_rng(3), {"A": 10, "B": 10})
    cl = {im: ("outliers" if im.startswith("B") else "c1") for im in gt["image"]}
    sub = submit(gt, cl)
    sub = pd.concat([sub[sub["scene"] == "outliers"], sub[sub["scene"] != "outliers"]], ignore_index=True)
    res = score(gt, th, sub)
    # A: a = 4·7 = 28; B → 'outliers' adds 0 images but −3: b = 4·(10 − 2·3) = 16 → mAA = 1.75; clusterness 1
    assert res.mAA == pytest.approx(175.0, abs=1e-9)
    assert res.score == pytest.approx(100 * harmonic(1.75, 1.0), abs=1e-9)
    assert "exceed 100%" in res.scenes.set_index("scene").loc["B", "warning"]
    assert any("exceeds 100%" in w for w in res.warnings)
    # a dataset of one scene: there are no other scenes to inflate (the warning spoke of them; a tester's stairs)
    gt, th, _ = make_gt(np.random.default_rng(3), {"A": 10})
    res = score(gt, th, submit(gt, {im: "outliers" for im in gt["image"]}))
    warned = res.scenes.set_index("scene").loc["A", "warning"]
    assert res.mAA == 0.0 and "the dataset's only scene, so its mAA is 0" in warned and "other scenes" not in warned


def test_tie_equal_overlap_prefers_higher_mAA(one_scene) -> None:
    gt, th, _ = one_scene
    imgs = list(gt["image"])
    sub = submit(gt, {im: ("good" if k < 5 else "bad") for k, im in enumerate(imgs)})
    rng = np.random.default_rng(5)
    for im in imgs[5:]:
        set_centre(sub, im, rng.normal(size=3) * 50)
    sub = pd.concat([sub[sub["scene"] == "bad"], sub[sub["scene"] == "good"]], ignore_index=True)  # bad first
    res = score(gt, th, sub)
    # overlaps 5 / 5; mAA(good) = 4·2/28 = 2/7 > mAA(bad) = 0 → good; score = 2·(2/7)/(9/7) = 4/9
    assert res.scenes.loc[0, "cluster"] == "good"
    assert res.score == pytest.approx(400 / 9, abs=1e-9)


def test_tie_equal_overlap_and_mAA_takes_first_in_file(one_scene) -> None:
    gt, th, _ = one_scene
    imgs = list(gt["image"])
    sub = submit(gt, {im: ("x" if k < 5 else "y") for k, im in enumerate(imgs)})
    rng = np.random.default_rng(6)
    for im in imgs:
        set_centre(sub, im, rng.normal(size=3) * 50)
    for first in ("x", "y"):
        other = "y" if first == "x" else "x"
        s2 = pd.concat([sub[sub["scene"] == first], sub[sub["scene"] == other]], ignore_index=True)
        res = score(gt, th, s2)
        assert res.scenes.loc[0, "cluster"] == first
        assert res.mAA == 0.0 and res.clusterness == 100.0


def test_zero_overlap_scene_takes_first_cluster() -> None:
    gt, th, _ = make_gt(np.random.default_rng(7), {"A": 10, "B": 10})
    cl = {im: ("cA" if im.startswith("A") else "outliers") for im in gt["image"]}
    res = score(gt, th, submit(gt, cl))  # cA first in file: B (no overlap anywhere) → cA with overlap 0
    # clusterness = (10 + 0)/(10 + 10); mAA = 28 / (4·(20 − 6)) = 1/2
    assert res.clusterness == pytest.approx(50.0, abs=1e-12)
    assert res.mAA == pytest.approx(50.0, abs=1e-12)
    assert "no cluster overlaps" in res.scenes.set_index("scene").loc["B", "warning"]


def test_small_scene_and_fewer_than_three_shared() -> None:
    gt, th, _ = make_gt(np.random.default_rng(8), {"A": 10, "S": 2})
    cl = {im: ("c0" if im.startswith("A") or im.endswith("000.png") else "c1") for im in gt["image"]}
    res = score(gt, th, submit(gt, cl))
    # A: 28; S (2 images) → c0 (overlap 1 = first max): 0; b = 4·(12 − 6) = 24 → mAA 28/24
    assert res.mAA == pytest.approx(100 * 28 / 24, abs=1e-9)
    assert res.clusterness == pytest.approx(100 * 11 / 22, abs=1e-9)
    assert "< 3 images" in res.scenes.set_index("scene").loc["S", "warning"]


def test_degenerate_coincident_centres_register_nothing(one_scene) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    sub[["tx", "ty", "tz"]] = 0.0  # every centre at the origin
    res = score(gt, th, sub)
    assert res.mAA == 0.0 and res.score == 0.0


def test_details_false_same_totals(one_scene) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    set_centre(sub, "A_002.png", centre_of(sub, "A_002.png") + 0.3)
    a = score(gt, th, sub)
    b = score(gt, th, sub, details=False)
    assert a.to_json() == b.to_json() and b.per_image.empty and b.alignments == {}
    assert len(a.per_image) == 10 and {"pred_cx", "gt_cz", "pass_5", "discounted"} <= set(a.per_image.columns)


def test_per_image_errors_under_each_thresholds_alignment(one_scene) -> None:
    """``error_k`` is the error ``pass_k`` was decided on (the metric aligns once per threshold); ``error`` is the
    largest threshold's."""
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    rng = np.random.default_rng(0)
    for name in gt["image"][1:6]:
        set_centre(sub, name, centre_of(sub, name) + rng.normal(0, 0.05, 3))
    pi = score(gt, th, sub).per_image
    thr = np.asarray(th[(DS, "A")], dtype=float)
    errs = pi[[f"error_{k}" for k in range(len(thr))]].to_numpy(float)
    passes = pi[[f"pass_{k}" for k in range(len(thr))]].to_numpy(bool)
    np.testing.assert_array_equal(passes, np.nan_to_num(errs, nan=np.inf) < thr[None, :])
    np.testing.assert_array_equal(pi["error"].to_numpy(float), errs[:, int(np.argmax(thr))])
    assert passes.any() and not passes.all()  # the check is not vacuous


# --------------------------------------------------------------------------------------------------- validation


def test_errors_duplicate_missing_unknown(one_scene, tmp_path) -> None:
    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    with pytest.raises(InputError, match="duplicate image 'A_003.png'"):
        score(gt, th, pd.concat([sub, sub.iloc[[3]]], ignore_index=True))
    with pytest.raises(InputError, match="misses 1 GT image"):
        score(gt, th, sub.iloc[1:].reset_index(drop=True))
    bad = sub.copy()
    bad.loc[4, "image"] = "nope.png"
    with pytest.raises(InputError, match="'nope.png' does not belong") as ei:
        score(gt, th, bad, submission_path="sub.csv")
    assert ei.value.row == 6 and str(ei.value).startswith("sub.csv:6:")
    # names that differ only in case: the likely cause is named
    upper = sub.copy()
    upper.loc[4, "image"] = str(sub.loc[4, "image"]).upper()
    with pytest.raises(InputError, match=f"'{upper.loc[4, 'image']}' does not belong to GT dataset 'ds' \\(the "
                                         f"ground truth has '{sub.loc[4, 'image']}': names are case-sensitive\\)"):
        score(gt, th, upper)
    case = sub.copy()
    case.loc[2, "dataset"] = "DS"
    with pytest.raises(InputError, match=f"misses 1 GT image\\(s\\), e.g. '{sub.loc[2, 'image']}' "
                                         f"\\('{sub.loc[2, 'image']}' is on line 4 under dataset 'DS': names are "
                                         "case-sensitive\\)"):
        score(gt, th, case)
    other = sub.copy()
    other["dataset"] = "other"
    with pytest.raises(InputError, match="dataset 'ds' of the ground truth is not in the submission \\(it has "
                                         "'other', not in the ground truth\\)"):  # (a misspelt name: the clue)
        score(gt, th, other)
    with pytest.raises(InputError, match="no thresholds"):
        score(gt, {}, sub)


def test_score_files_roundtrip_and_errors(one_scene, tmp_path) -> None:
    from imc_core.data import write_labels, write_thresholds

    gt, th, _ = one_scene
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"))
    set_centre(sub, "A_004.png", centre_of(sub, "A_004.png") + 100.0)
    g, t, s = tmp_path / "gt.csv", tmp_path / "th.csv", tmp_path / "sub.csv"
    write_labels(gt, g)
    write_thresholds(th, t)
    write_pose_csv(sub, s)
    res = score_files(g, t, s)
    assert res.score == pytest.approx(100 * 12 / 13, abs=1e-9)
    write_pose_csv(pd.concat([sub, sub.iloc[[0]]], ignore_index=True), s)
    with pytest.raises(InputError) as ei:
        score_files(g, t, s, details=False)
    assert ei.value.path == str(s) and ei.value.row == 12
    write_thresholds({("other", "scene"): next(iter(th.values()))}, t)  # none for the labelled scene
    with pytest.raises(InputError, match="no thresholds for scene") as ei:
        score_files(g, t, s)
    assert ei.value.path == str(t)  # the file at fault, not "<input>"


# ------------------------------------------------------------------------------------- naive reference checks


def _random_case(seed: int) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Up to 3 scenes of ≤ 12 images, noise near the thresholds, gross errors, nan poses, splits/merges."""
    rng = np.random.default_rng(seed)
    sizes = {f"s{k}": int(rng.integers(3, 13)) for k in range(int(rng.integers(1, 4)))}
    gt, th, _ = make_gt(rng, sizes, outliers=int(rng.integers(0, 3)))
    th = {k: np.sort(rng.uniform(0.02, 0.4, 6)) for k in th}
    n_clusters = int(rng.integers(1, 4))
    names = ["outliers"] + [f"c{k}" for k in range(n_clusters)]
    cl = {im: names[int(rng.integers(0, len(names)))] if rng.random() < 0.4 else
          ("outliers" if im.startswith("out") else f"c{int(im[1]) % n_clusters}") for im in gt["image"]}  # fmt: skip
    sub = submit(gt, cl, transform=True, seed=seed)
    s_scale = 2.5
    for im in sub["image"]:
        c = centre_of(sub, im)
        if not np.isfinite(c).all():
            c = rng.normal(size=3)
        sc = gt.set_index("image").loc[im, "scene"]
        sig = th[(DS, sc)][3] if sc != "outliers" else 1.0
        u = rng.random()
        if u < 0.1:
            c = c + rng.normal(size=3) * 20
        elif u < 0.15:
            c = c * np.nan
        else:
            c = c + rng.normal(size=3) * sig * s_scale * rng.uniform(0.2, 1.5)
        set_centre(sub, im, c)
    return gt, th, sub.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(20))
def test_matches_naive_reference(seed: int) -> None:
    gt, th, sub = _random_case(seed)
    ref, ref_ds = naive_score(gt, th, sub)
    res = score(gt, th, sub)
    assert res.score == pytest.approx(ref, abs=1e-9)
    for ds, v in ref_ds.items():
        assert res.datasets[ds].score == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_register_matches_naive_and_exact_path(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 12
    gt = rng.normal(size=(n, 3)) * 2 + 50.0
    S = rand_rot(rng)
    ev = 0.7 * gt @ S.T + 3.0 + rng.normal(size=(n, 3)) * 0.05
    ev[rng.random(n) < 0.15] += 5.0
    th = np.array([0.01, 0.03, 0.05, 0.08, 0.12, 0.3])
    ref = naive_register(ev, gt, th)
    fast = register_cameras(ev, gt, th, config=MetricConfig(chunk_bytes=2**16))
    exact = register_cameras(ev, gt, th, config=MetricConfig(prefilter=False))
    for reg in (fast, exact):
        np.testing.assert_array_equal(reg.err < th, ref < th)
        np.testing.assert_allclose(reg.err, ref, rtol=1e-9, atol=1e-12)


def test_pycolmap_synthetic_scene() -> None:
    pycolmap = pytest.importorskip("pycolmap")
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs = 1
    opts.num_cameras_per_rig = 1
    opts.num_frames_per_rig = 11
    opts.num_points3D = 50
    rec = pycolmap.synthesize_dataset(opts)
    rows = []
    for img in sorted(rec.images.values(), key=lambda im: im.name):
        pose = img.cam_from_world()
        R = np.array(pose.rotation.matrix())
        t = np.array(pose.translation)
        rows.append((DS, "syn", img.name, R, -R.T @ t))
    gt = frame(rows)
    assert len(gt) == 11
    c = np.stack([r[4] for r in rows])
    ext = float(np.linalg.norm(c - c.mean(axis=0), axis=1).max())
    th = {(DS, "syn"): TH * ext / 2}
    assert score(gt, th, submit(gt, dict.fromkeys(gt["image"], "c0"))).score == pytest.approx(100.0, abs=1e-9)
    sub = submit(gt, dict.fromkeys(gt["image"], "c0"), seed=9)
    rng = np.random.default_rng(9)
    for im in sub["image"]:
        set_centre(sub, im, centre_of(sub, im) + rng.normal(size=3) * th[(DS, "syn")][3] * 2.5)
    res = score(gt, th, sub)
    ref, _ = naive_score(gt, th, sub)
    assert 0 < res.score < 100
    assert res.score == pytest.approx(ref, abs=1e-9)


def _registration_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` cameras moved by a similarity, noise of the order of the thresholds, gross errors, duplicated cameras
    (exact ties between inlier sets) and one camera exactly on a threshold."""
    rng = np.random.default_rng(200 + seed)
    gt = rng.normal(size=(n, 3)) * 2 + 30.0
    S = rand_rot(rng)
    ev = 1.7 * gt @ S.T - 4.0 + rng.normal(size=(n, 3)) * 0.06
    ev[rng.random(n) < 0.15] += rng.normal(size=3) * 3.0
    ev[5], gt[5] = ev[4], gt[4]  # duplicates
    ev[9], gt[9] = ev[8], gt[8]
    th = np.array([0.02, 0.05, 0.08, 0.08, 0.15, 0.4])  # a repeated threshold
    return ev, gt, th


@pytest.mark.parametrize("seed", range(4))
def test_numba_numpy_and_exact_paths_agree(seed: int) -> None:
    ev, gt, th = _registration_case(seed, 40)
    exact = register_cameras(ev, gt, th, config=MetricConfig(prefilter=False))
    regs = [
        register_cameras(ev, gt, th, config=MetricConfig(numba=False)),
        register_cameras(ev, gt, th),
        # tiny buffers: resumed kernels, hash-table resets, survivor compaction and flushes
        register_cameras(ev, gt, th, config=MetricConfig(chunk_bytes=2**10)),
    ]
    for reg in regs:
        np.testing.assert_array_equal(reg.n_inliers, exact.n_inliers)
        np.testing.assert_array_equal(reg.has_model, exact.has_model)
        np.testing.assert_array_equal(reg.err < th, exact.err < th)
        # same models; the exact refits may differ in the last bits with the batch they are computed in (BLAS)
        np.testing.assert_allclose(reg.err, exact.err, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(reg.sse, exact.sse, rtol=1e-9)


def test_numba_kernels_available() -> None:
    """numba is pinned in requirements.txt: the fast path must really be the numba one."""
    pytest.importorskip("numba")
    from imc_core import metric

    assert metric._kernels() is not None


def test_numba_path_exact_data_and_zero_threshold() -> None:
    """Every triplet of exact data lies on the zero threshold's band: all go through the exact Horn fit."""
    gt = np.random.default_rng(3).normal(size=(12, 3))
    th = np.array([0.0, 1e-9, 0.01, 0.05, 0.1, 0.2])
    fast = register_cameras(gt.copy(), gt, th, config=MetricConfig(numba_min_cameras=3))
    exact = register_cameras(gt.copy(), gt, th, config=MetricConfig(prefilter=False))
    np.testing.assert_array_equal(fast.n_inliers, exact.n_inliers)
    np.testing.assert_array_equal(fast.err, exact.err)
    assert fast.n_inliers[0] == 0 and (fast.n_inliers[1:] == 12).all()


def test_odd_submission_rows_are_named_not_scored_silently() -> None:
    """An ``inf`` or partly ``nan`` pose and an empty cluster name were scored without a word."""
    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 8}, outliers=2)
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    assert not score(gt, th, sub).warnings
    sub.loc[sub.index[sub["scene"] == "s1"][0], "scene"] = ""
    sub.loc[sub.index[sub["scene"] == "s2"][:2], "tx"] = np.inf
    res = score(gt, th, sub, submission_path="mine.csv")
    assert res.warnings == [
        "mine.csv: 2 row(s) with a pose neither all finite nor all nan (inf, or some nan), scored as unregistered, "
        "e.g. ds/s2_000.png on line 12 (an unregistered image writes nan for all 12 numbers)",
        "mine.csv: 1 row(s) with an empty scene (cluster) name, counted in a cluster named '', e.g. ds/s1_000.png "
        "on line 2"]
    assert res.per_image.set_index("image").loc["s2_000.png", "pose_valid"] == False  # noqa: E712


def test_a_rotation_that_is_not_one_is_named() -> None:
    """A reflected R (det −1) and an R scaled by 1.5 were scored without a word (the metric uses only −Rᵀt); every R
    reflected was even taken for "t's sign flipped" by the convention check, the real fault never named."""
    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 8}, outliers=2)
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    R_cols = [f"r{i}{j}" for i in range(3) for j in range(3)]
    sub[R_cols + ["tx", "ty", "tz"]] = sub[R_cols + ["tx", "ty", "tz"]].round(4)  # 4 decimals: no warning
    assert not score(gt, th, sub).warnings
    s1, s2 = sub.index[sub["scene"] == "s1"], sub.index[sub["scene"] == "s2"]
    sub.loc[s1[:2], R_cols] *= -1.0
    sub.loc[s2[0], R_cols] *= 1.5
    res = score(gt, th, sub, submission_path="mine.csv")
    assert res.warnings == [
        "mine.csv: 3 row(s) whose R is not a rotation (2 with det R < 0 (a reflection), 1 not orthonormal (RRᵀ ≠ I)), "
        "e.g. ds/s1_000.png on line 2: the metric uses only the camera centres −Rᵀt, so they are scored as written, "
        "but no camera has such a pose (a matrix built by hand, or one of another convention's tools)"]


def test_triplet_runs_cover_every_triplet_once_in_official_order() -> None:
    from imc_core.metric import _first_index_ranges

    for n, parts in ((3, 2), (10, 3), (57, 4), (200, 4)):
        ranges = _first_index_ranges(n, parts)
        assert len(ranges) <= parts and ranges[0][0] == 0 and ranges[-1][1] == n - 2
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, in order
        official = list(itertools.combinations(range(n), 3))
        for i_start, i_end, t_start in ranges:  # each run starts at its first triplet's official position
            assert official[t_start][0] == i_start
        counts = [sum(1 for t in official if a <= t[0] < b) for a, b, _ in ranges]
        assert sum(counts) == len(official)
        if n >= 57:
            assert max(counts) < 1.6 * len(official) / len(ranges)  # about as many triplets each


def test_exact_refits_do_not_depend_on_the_batch_they_share() -> None:
    """The SVD refit of an inlier set gave other last bits alone than inside a batch (``w @ ev`` took another BLAS
    kernel for one row), so the metric's result depended on how its threads split the triplets."""
    from imc_core.metric import _kabsch_sets, _sq_errors

    for seed, n in ((0, 5), (1, 37), (2, 120)):
        rng = np.random.default_rng(seed)
        gt = rng.normal(size=(n, 3)) * 5
        ev = gt * 1.7 + rng.normal(size=(n, 3)) * 0.3
        masks = rng.random((64, n)) < 0.5
        masks[:, :3] = True
        sR, t, s = _kabsch_sets(masks, ev, gt)
        e2 = _sq_errors(sR, t, ev, gt)
        for size in (1, 2, 7):
            for lo in range(0, len(masks), size):
                sR1, t1, s1 = _kabsch_sets(masks[lo : lo + size], ev, gt)
                np.testing.assert_array_equal(sR1, sR[lo : lo + size])
                np.testing.assert_array_equal(t1, t[lo : lo + size])
                np.testing.assert_array_equal(s1, s[lo : lo + size])
                np.testing.assert_array_equal(_sq_errors(sR1, t1, ev, gt), e2[lo : lo + size])


@pytest.mark.parametrize("case", range(8))
def test_threads_give_the_same_registration_bit_for_bit(case: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene's triplets walked in threads, each run with its own best model, merged by the official rule: the
    same result as one walk whatever the number of threads (ties included). Cases 4–7: a reviewer's sweep, where
    4 of 10 scenes differed in the last bits before the refits stopped depending on their batch."""
    pytest.importorskip("numba")
    from imc_core import metric

    monkeypatch.setattr(metric, "TRIPLETS_PER_THREAD", 500)  # (a real scene needs 50,000 per thread)
    rng = np.random.default_rng(100 + case if case < 4 else 7 + case)
    n = 45 + 10 * case if case < 4 else int(rng.integers(40, 70))
    gt = rng.normal(size=(n, 3)) * 5
    ev = gt * 1.7 + rng.normal(size=(n, 3)) * (0.02, 0.2, 0.5, 0.05, 0.005, 1e-3, 0.02, 1e-4)[case]
    if case == 1:
        ev[:8] = rng.normal(size=(8, 3)) * 10  # gross errors
    if case == 3:
        ev, gt = ev.round(1), gt.round(1)  # exact ties between inlier sets of different triplets
    th = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    one = register_cameras(ev, gt, th, config=MetricConfig(threads=1))
    assert metric._metric_threads(MetricConfig(threads=3), n * (n - 1) * (n - 2) // 6) == 3
    for threads in (2, 3, 7):
        many = register_cameras(ev, gt, th, config=MetricConfig(threads=threads))
        for field in ("err", "n_inliers", "sse", "scale", "R", "t", "has_model"):
            np.testing.assert_array_equal(getattr(many, field), getattr(one, field), err_msg=f"{threads}: {field}")
    exact = register_cameras(ev, gt, th, config=MetricConfig(prefilter=False))  # and the reference path agrees
    np.testing.assert_array_equal(one.n_inliers, exact.n_inliers)


def test_a_scored_threshold_of_zero_is_named() -> None:
    """A threshold of 0 among the four the metric scores fails every camera, exact ones too, without a word (the
    official file's zeros sit in the two skipped thresholds: those stay quiet)."""
    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 8}, outliers=2)
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    th = {k: np.array([0.0, 0.0, *np.asarray(v)[2:]]) for k, v in th.items()}
    assert not score(gt, th, sub).warnings
    th[("ds", "s2")] = np.array([0.0, 0.0, 0.0, *np.asarray(th[("ds", "s2")])[3:]])
    res = score(gt, th, sub)
    assert res.warnings == ["thresholds of ds/s2: t2 = 0, which no camera can pass (a camera passes when its error "
                            "is below the threshold): even exact poses fail there"]


def test_thresholds_out_of_order_are_named() -> None:
    """The metric skips the first two thresholds by place: listed largest first, it skipped the loosest and scored
    the strictest, and the score fell (ETs 70.00 → 53.52) without a word."""
    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 8}, outliers=2)
    sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)))
    th[("ds", "s1")] = np.array([0.0, 0.0, 0.001, 0.01, 0.05, 0.1])  # the official file's zeros: in order
    assert not score(gt, th, sub).warnings
    th[("ds", "s2")] = np.array([0.04, 0.02, 0.01, 0.008, 0.005, 0.002])
    assert score(gt, th, sub).warnings == [
        "thresholds of ds/s2 are not in increasing order (0.04;0.02;0.01;0.008;0.005;0.002): the metric leaves the "
        "first 2 unscored by their place, not their size (here 0.04, 0.02)"]


def test_notes_about_the_ground_truth_are_told_from_those_about_the_submission() -> None:
    from imc_core.metric import about_the_ground_truth

    gt, th, _ = make_gt(np.random.default_rng(5), {"s1": 10, "s2": 2}, outliers=2)
    th[("ds", "s1")] = np.array([0.04, 0.02, 0.01, 0.0, 0.005, 0.002])
    sub = submit(gt, {name: "outliers" for name in gt["image"]})  # every scene lost: notes about the clusters too
    notes = score(gt, th, sub).warnings
    assert sorted(n for n in notes if about_the_ground_truth(n)) == sorted([
        "ds/s2: scene has 2 < 3 images: it still subtracts 3 from the pooled mAA denominator",
        "thresholds of ds/s1: t3 = 0, which no camera can pass (a camera passes when its error is below the "
        "threshold): even exact poses fail there",
        "thresholds of ds/s1 are not in increasing order (0.04;0.02;0.01;0;0.005;0.002): the metric leaves the "
        "first 2 unscored by their place, not their size (here 0.04, 0.02)"])
    assert any("associated with cluster 'outliers'" in n for n in notes if not about_the_ground_truth(n))
