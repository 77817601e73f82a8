"""Which pose convention a submission was written in: its poses read four ways, each scored per dataset.

The IMC-2025 metric looks only at camera centres, ``c = -Rᵀ t`` of world→camera poses (``x_cam = R x_world + t``,
see :mod:`imc_core.submission`). A submission written in another convention keeps its clusters, so its clusterness
does not move, but every camera lands elsewhere and its mAA collapses without any error. The usual slips, and the
world→camera pose each one means:

=========================  ===========================================  ======================================
reading                    what was written                             world→camera pose it means
=========================  ===========================================  ======================================
``as written``             world→camera ``R`` (row-major) and ``t``     ``(R, t)``: centre ``-Rᵀ t``
``camera→world``           camera→world ``R`` and the centre as ``t``   ``(Rᵀ, -Rᵀ t)``: centre ``t``
``transposed rotation``    ``R`` written column-major                   ``(Rᵀ, t)``: centre ``-R t``
``negated translation``    ``t = R·c`` instead of ``-R·c``              ``(R, -t)``: centre ``Rᵀ t`` (mirrored)
``centre as t``            world→camera ``R``, the centre as ``t``      ``(R, -R t)``: centre ``t``
=========================  ===========================================  ======================================

``camera→world`` and ``centre as t`` put every camera at the same centre, so they score the same; the rotations
tell them apart (:func:`fit_table`), and the one they contradict is not named.

:func:`convention_check` scores each low dataset of the submission under each reading; when another reading scores
clearly better than the file as written, :meth:`ConventionCheck.warning` names the dataset and the reading, so the
question "are my poses world→camera or camera→world?" is answered from the numbers instead of by reading code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .analysis import METRIC_THRESHOLDS
from .submission import R_COLS, T_COLS, rotations, translations, world_to_cam

if TYPE_CHECKING:
    from .metric import MetricConfig, ScoreResult

__all__ = ["CHECK_FAILED", "READINGS", "WARNING_STARTS", "ConventionCheck", "check_scored", "convention_check",
           "fit_table", "geometry", "low_datasets", "posed_scenes", "preferred_elsewhere", "reread"]

READINGS: dict[str, str] = {
    "as written": "world→camera R (row-major) and t, as IMC-2025 and COLMAP's cam_from_world",
    "camera→world": "R and t are camera→world: t is the camera centre",
    "transposed rotation": "R written column-major (its transpose)",
    "negated translation": "t written as R·c instead of −R·c (every centre mirrored)",
    "centre as t": "R world→camera, but t holds the camera centre c (instead of −R·c)",
}
"""Reading name → what it assumes the file holds."""

#: how a warning describes a dataset best read another way
LOOKS: dict[str, str] = {
    "camera→world": "camera→world (t holding the camera centre)",
    "transposed rotation": "written with each R transposed (column-major)",
    "negated translation": "written with t = R·c (the sign of t flipped)",
    "centre as t": "written with the camera centre as t (R itself world→camera)",
    "camera→world or centre as t": "written with the camera centre as t, R either camera→world or world→camera "
                                   "(the rotations, all facing one way, cannot tell which)",
}

#: the two readings that put every camera at the same centre, and the name of a finding that cannot choose
TWINS = ("camera→world", "centre as t")
EITHER = "camera→world or centre as t"

#: how each warning of :meth:`ConventionCheck.warning` starts (the dashboard shows these beside a run)
WARNING_STARTS = ("these poses look", "some poses may be", "the poses of scene")

#: how the warning of a check that failed starts (:func:`check_scored`)
CHECK_FAILED = "the pose-convention check failed"

LOW_MAA = 50.0
"""Datasets larger than :data:`SMALL_DATASET` whose mAA as written reaches this (percent) are not re-read: a wrong
convention scrambles the camera centres, so such a dataset is written right, and re-reading it would only cost time
(scoring the 1,945 training images of IMC-2025 three times took 18 s instead of 5 s). A re-reading that reaches it
makes the warning firm."""

MARGIN = 5.0
"""mAA points by which another reading must beat the file as written before :meth:`ConventionCheck.warning` speaks
(a wrong convention costs tens of points; a few points can be the metric's own luck on a small scene)."""


def reread(submission: pd.DataFrame, reading: str) -> pd.DataFrame:
    """The submission's poses as the world→camera poses ``reading`` (a key of :data:`READINGS`) says they mean.

    Args:
        submission: pose frame (:mod:`imc_core.submission`).
        reading: a key of :data:`READINGS`.

    Returns:
        A copy with its ``r00 … r22`` and ``tx, ty, tz`` replaced (nan rows stay nan).
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}: one of {', '.join(READINGS)}")
    out = submission.copy()
    if reading == "as written":
        return out
    R, t = rotations(submission), translations(submission)
    if reading == "camera→world":  # the file holds (R_c2w, c)
        R, t = world_to_cam(R, t)
    elif reading == "transposed rotation":
        R = np.swapaxes(R, -1, -2)
    elif reading == "centre as t":
        t = -np.einsum("nij,nj->ni", R, t)
    else:  # negated translation
        t = -t
    out[R_COLS] = R.reshape(-1, 9)
    out[T_COLS] = t
    return out


@dataclass
class ConventionCheck:
    """The low datasets of a submission scored under each reading of their poses.

    Attributes:
        table: one row per (dataset, reading), readings in :data:`READINGS` order: ``dataset``, ``reading``,
            ``meaning``, ``mAA`` (percent; clusterness is the same under every reading; nan: not scored, the
            geometry rules the reading out, see :func:`convention_check`).
        scenes: one row per (dataset, GT scene, reading): ``dataset``, ``scene``, ``reading``, ``mAA``. A scene's
            mAA depends on its own cluster's poses only, so a dataset of which one scene was written another way
            shows there, while the dataset as a whole reads best as written.
        fits: :func:`fit_table` of the submission: how well each reading's poses fit the GT ones under one
            similarity. A reading whose geometry contradicts it is not named though it scores better (a right
            file of noisy cameras on an arc scored 56 read camera→world against 50 as written), nor a soft one
            the geometry does not support (:meth:`_geometry_allows`).
    """

    table: pd.DataFrame
    scenes: pd.DataFrame | None = None
    fits: pd.DataFrame | None = None  # :func:`fit_table` of the same submission (None: no geometric veto)
    failed: str | None = None  # the check itself failed (:func:`check_scored`): why; the score stands

    @property
    def datasets(self) -> list[str]:
        """The datasets re-read."""
        return list(dict.fromkeys(self.table["dataset"]))

    def findings(self, margin: float = MARGIN) -> list[tuple[str, str, float, float]]:
        """``(dataset, reading, mAA as written, mAA read so)`` for each dataset whose best reading beats the file as
        written by more than ``margin`` points and is supported by the poses' geometry (datasets where no reading
        does are left out)."""
        out = []
        for dataset, rows in self.table.groupby("dataset", sort=False):
            wins = _better_readings(rows, margin)
            if not wins or self._mixed(str(dataset), wins[0][0], margin):
                continue
            if (won := self._pick(str(dataset), None, wins)) is None:
                continue
            # a scene that reads best another way: the scenes were written differently, and are named one by one
            # (converting the whole dataset would break that scene; a dataset with two scenes each slipped its own
            # way was told to convert all of it)
            if any(not _same_reading(pick[0], won[0]) for pick in self._scene_picks(str(dataset), margin).values()):
                continue
            out.append((str(dataset), *won))
        return out

    def _scene_picks(self, dataset: str, margin: float) -> dict[str, tuple[str, float, float]]:
        """``{scene: (reading, mAA as written, mAA read so)}`` of the scenes of ``dataset`` that read clearly
        better another way, by the rules of :meth:`scene_findings`."""
        if self.scenes is None or self.scenes.empty:
            return {}
        out = {}
        for scene, rows in self.scenes[self.scenes["dataset"] == dataset].groupby("scene", sort=False):
            wins = [w for w in _better_readings(rows, margin) if w[2] >= LOW_MAA
                    or (w[2] >= LOW_MAA / 2 and self._strongly_supported(dataset, str(scene), w[0]))]
            if (won := self._pick(dataset, str(scene), wins)) is not None:
                out[str(scene)] = won
        return out

    def _pick(self, dataset: str, scene: str | None, wins: list[tuple[str, float, float]]
              ) -> tuple[str, float, float] | None:
        """The best-scoring of ``wins`` the geometry supports; camera→world and centre-as-t put every camera at the
        same centre, so when both are there with one score the rotations choose, and when they cannot (cameras all
        facing one way: a drone grid, a forward track) both are named."""
        allowed = [w for w in wins if self._geometry_allows(dataset, scene, w[0])]
        if not allowed:
            return None
        best = allowed[0]
        twin = next((w for w in allowed[1:] if {w[0], best[0]} == set(TWINS) and abs(w[2] - best[2]) < 1e-9), None)
        if twin is None:
            return best
        better = self._clearly_better(dataset, scene, best[0], twin[0])
        return best if better == best[0] else twin if better == twin[0] else (EITHER, best[1], best[2])

    def _clearly_better(self, dataset: str, scene: str | None, a: str, b: str) -> str | None:
        """Which of readings ``a`` and ``b`` the rotations (their spread, or their agreement with the centres on the
        change of frame; medians over the scenes) clearly prefer, or None."""
        if self.fits is None or self.fits.empty:
            return None
        rows = self.fits[(self.fits["dataset"] == dataset) & ((self.fits["scene"] == scene) if scene else True)]
        med = rows.groupby("reading")[["rot", "turn"]].median()
        if a not in med.index or b not in med.index:
            return None
        for col, slack in (("rot", ROT_SLACK), ("turn", TURN_SLACK)):
            x, y = float(med.loc[a, col]), float(med.loc[b, col])
            if np.isfinite(x) and np.isfinite(y) and abs(x - y) > slack:
                return a if x < y else b
        return None

    def _mixed(self, dataset: str, reading: str, margin: float) -> bool:
        """True when ``reading`` lifts the dataset but costs one of its scenes more than ``margin`` points while
        that scene's geometry contradicts it: its scenes were written in different conventions, so the scenes are
        named instead (converting the whole dataset would break the scenes written right). A scene the reading
        costs by the luck of its noise, whose geometry does not say it was written right, does not count."""
        if self.scenes is None or self.scenes.empty:
            return False
        rows = self.scenes[self.scenes["dataset"] == dataset]
        table = rows.pivot_table(index="scene", columns="reading", values="mAA", aggfunc="first")
        if reading not in table or "as written" not in table:
            return False
        hurt = [str(sc) for sc in table.index[(table["as written"] - table[reading] > margin).to_numpy()]]
        if not hurt or self.fits is None or self.fits.empty:
            return bool(hurt)
        contradicts = geometry(self.fits[self.fits["dataset"] == dataset], AGREE)[1]
        if reading not in contradicts:
            return True
        said = {str(sc): bool(v) for (_, sc), v in contradicts[reading].items()}
        return any(said.get(sc, True) for sc in hurt)

    def _geometry_allows(self, dataset: str, scene: str | None, reading: str) -> bool:
        """Whether the poses' geometry (:func:`geometry` of :attr:`fits`, in ``scene`` or in the scenes of
        ``dataset``) supports ``reading`` in some scene and does not contradict it in every one: a better score
        alone is no evidence (four to six cameras, all facing one way, scored 50 read transposed against 0 as
        written). True when nothing was fitted."""
        if self.fits is None or self.fits.empty:
            return True
        rows = self.fits[(self.fits["dataset"] == dataset) & ((self.fits["scene"] == scene) if scene else True)]
        if rows.empty or rows["fit"].isna().all():
            return True
        fitted = rows.groupby("reading")["fit"].apply(lambda f: bool(f.notna().any()))
        if not fitted.get("as written", False) or not fitted.get(reading, False):
            return True  # (nothing to weigh the reading against in these scenes)
        # geometry() judges each scene on its own row: the whole table's rows for these scenes, computed once
        # (computed again for every scene and reading, it took 8 s of a 13-dataset file's check)
        supports, contradicts = self._geometry_tables
        keys = pd.MultiIndex.from_frame(rows[["dataset", "scene"]].drop_duplicates())
        return bool(supports.loc[keys, reading].any()) and not bool(contradicts.loc[keys, reading].all())

    @cached_property
    def _geometry_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """:func:`geometry` of all :attr:`fits` at :data:`PREFER`."""
        return geometry(self.fits, PREFER)

    def could_name(self, dataset: str, scenes: list[str], reading: str) -> bool:
        """Whether ``reading`` could be named in ``dataset`` or one of its ``scenes`` whatever it scores: the
        geometry allows it there (:meth:`_geometry_allows`). :func:`convention_check` scores only such readings."""
        return any(self._geometry_allows(dataset, scene, reading) for scene in [None, *scenes])

    def _strongly_supported(self, dataset: str, scene: str, reading: str) -> bool:
        """The scene's centres fit under :data:`PREFER` times the file's read so *and* its rotations back the
        reading (spread clearly less, or agreeing with the centres on the frame where the file's do not): evidence
        enough to name a scene the reading lifts to under :data:`LOW_MAA` (a pipeline's noisy scene written
        camera→world went 18 → 41, its centres fitting 2.4× better and its rotations 8× tighter, and was not
        named; centres alone, on a right file of cameras orbiting a point under five thresholds of noise, named
        "centre as t" for 0 → 12.5)."""
        if self.fits is None or self.fits.empty:
            return False
        rows = self.fits[(self.fits["dataset"] == dataset) & (self.fits["scene"] == scene)].set_index("reading")
        if reading not in rows.index or "as written" not in rows.index:
            return False
        r, w = rows.loc[reading], rows.loc["as written"]
        centres = bool(r["fit"] < PREFER * w["fit"])
        rotations = bool((r["rot"] < AGREE * w["rot"] and w["rot"] - r["rot"] > ROT_SLACK)
                         or w["turn"] - r["turn"] > TURN_SLACK)
        return centres and rotations and self._geometry_allows(dataset, scene, reading)

    def scene_findings(self, margin: float = MARGIN) -> list[tuple[str, str, str, float, float]]:
        """``(dataset, scene, reading, mAA as written, mAA read so)`` for each GT scene of a dataset without a
        finding of its own (:meth:`findings`) whose best reading beats the file as written by more than ``margin``
        points, is supported by the geometry, and reaches :data:`LOW_MAA`, or half of it and is strongly supported
        (:meth:`_strongly_supported`): one scene written another way (a scene that a wrong reading merely lifts
        from 0 to 20 is left out, since a few cameras can align by chance)."""
        if self.scenes is None or self.scenes.empty:
            return []
        whole = {d for d, *_ in self.findings(margin)}
        return [(dataset, scene, *won) for dataset in dict.fromkeys(self.scenes["dataset"].astype(str))
                if dataset not in whole for scene, won in self._scene_picks(dataset, margin).items()]

    def warning(self, margin: float = MARGIN) -> str | None:
        """One line naming each dataset that another reading scores clearly better, else None. Firm ("these poses
        look camera→world") when that reading reaches :data:`LOW_MAA`; else only "some poses may be" (e.g. half
        of a dataset's rows written camera→world: converting all of them would break the others). Then the
        scenes of :meth:`scene_findings` ("the poses of scene s in d look …")."""
        if self.failed:
            return (f"{CHECK_FAILED} ({self.failed}); the score above stands, but which "
                    "convention the poses follow was not checked. Please report this.")
        found, scenes = self.findings(margin), self.scene_findings(margin)
        if not found and not scenes:
            return None
        groups: dict[tuple[str, bool], list[str]] = {}  # (reading, firm) → "dataset (numbers)"
        for dataset, reading, written, better in found:
            groups.setdefault((reading, better >= LOW_MAA), []).append(
                f"{dataset} (mAA {written:.2f} as written, {better:.2f} read so)")
        parts = [f"{'these poses look' if firm else 'some poses may be'} {LOOKS[reading]} in {', '.join(where)}"
                 for (reading, firm), where in groups.items()]
        parts += [f"the poses of scene {scene} of {dataset} look {LOOKS[reading]} (mAA {written:.2f} as written, "
                  f"{better:.2f} read so)" for dataset, scene, reading, written, better in scenes]
        return ("; ".join(parts) + ". IMC-2025 wants world→camera poses, x_cam = R·x_world + t, R row-major and "
                "t = −R·c for a camera centre c.")


def _same_reading(a: str, b: str) -> bool:
    """Whether readings ``a`` and ``b`` agree (either of :data:`TWINS` agrees with :data:`EITHER`)."""
    return a == b or (EITHER in (a, b) and {a, b} - {EITHER} <= set(TWINS))


def _better_readings(rows: pd.DataFrame, margin: float) -> list[tuple[str, float, float]]:
    """``(reading, mAA as written, mAA read so)`` of each of ``rows``' readings (``reading``, ``mAA``) that beats the
    file as written by more than ``margin`` points, best first (ties in :data:`READINGS` order)."""
    mAA = rows.set_index("reading")["mAA"]
    written = float(mAA["as written"])
    wins = [(str(r), written, float(m)) for r, m in mAA.items() if r != "as written" and m - written > margin]
    return sorted(wins, key=lambda w: -w[2])


AGREE = 0.8
"""A reading that scores better is named only when its centres also fit the GT centres better than as written: its
:func:`fit_table` value under this fraction of the file's in some scene."""

ROT_SLACK = 2.0
"""Degrees by which a reading's rotations must spread more than the file's before they count against it (a file's
rotations off by a degree or two either way say nothing)."""

LINE_RATIO = 0.1
"""A scene whose cameras' second spread (singular value of the centred GT centres) is under this fraction of the
first lies along a line: its ``turn`` (:func:`fit_table`) is left out."""

TURN_SLACK = 20.0
"""Degrees by which the centres' and the rotations' frames may disagree more under a reading than as written before
that counts against it: cameras orbiting a point far from the origin, read with the centre as t, trace a similar
circle the other way round, which only a half turn of the world aligns, while their rotations want none."""

PREFER = 0.5
""":func:`low_datasets` re-reads a dataset of any mAA when another reading's centres fit one of its scenes under this
fraction of the file's: t's sign flipped only mirrors the centres, and a flat layout survives a mirror, so a large
dataset written so kept 55–88 mAA and was not re-read at all."""


def _trimmed_similarity_residuals(src: np.ndarray, dst: np.ndarray, rounds: int = 2
                                  ) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``‖s·R·src + t − dst‖`` after a least-squares similarity (Umeyama, a proper rotation) fitted to all
    points, then ``rounds`` times again to the half that fits best (a few lost cameras do not hide the rest).

    Args:
        src, dst: ``(n, 3)``, n ≥ 3, finite.

    Returns:
        ``(n,)`` residuals of every point under the last fit, and its rotation ``R`` ``(3, 3)``.
    """
    keep = np.ones(len(src), bool)
    res, R = np.zeros(len(src)), np.eye(3)
    for _ in range(rounds + 1):
        a, b = src[keep], dst[keep]
        ma, mb = a.mean(axis=0), b.mean(axis=0)
        A, B = a - ma, b - mb
        u, sv, vh = np.linalg.svd(B.T @ A)
        d = np.array([1.0, 1.0, -1.0 if np.linalg.det(u @ vh) < 0 else 1.0])
        R = (u * d) @ vh
        var = float((A * A).sum())
        scale = float((sv * d).sum()) / var if var > 0 else 0.0
        res = np.linalg.norm((src - ma) @ (scale * R).T + mb - dst, axis=1)
        keep = res <= np.median(res)
        if keep.sum() < 3:
            break
    return res, R


def _angle(A: np.ndarray, B: np.ndarray) -> float:
    """Angle (degrees) between two rotations."""
    return float(np.degrees(np.arccos(np.clip((np.trace(A.T @ B) - 1.0) / 2.0, -1.0, 1.0))))


def _rotation_spread(R_sub: np.ndarray, R_gt: np.ndarray) -> tuple[float, np.ndarray]:
    """Median angle (degrees) between each camera's ``R_gtᵀ·R_sub`` and their mean rotation, and that mean: a change
    of world frame ``x ↦ s·Q·x + d`` makes every world→camera rotation ``R·Qᵀ``, so right rotations agree on ``Qᵀ``
    whatever the frame, and rotations read the wrong way round (transposed) do not."""
    M = np.einsum("nji,njk->nik", R_gt, R_sub)  # R_gtᵀ · R_sub per camera
    u, _, vh = np.linalg.svd(M.sum(axis=0))
    d = np.array([1.0, 1.0, -1.0 if np.linalg.det(u @ vh) < 0 else 1.0])
    mean = (u * d) @ vh
    cos = (np.einsum("ij,nij->n", mean, M) - 1.0) / 2.0
    return float(np.degrees(np.median(np.arccos(np.clip(cos, -1.0, 1.0))))), mean


def fit_table(gt: pd.DataFrame, submission: pd.DataFrame, datasets: list[str] | None = None,
              thresholds: dict[tuple[str, str], np.ndarray] | None = None) -> pd.DataFrame:
    """How well each reading's poses fit the GT poses, per GT scene: one row per (dataset, scene, reading) with
    ``n`` (cameras fitted), ``fit``, the median residual of the camera centres after a trimmed similarity fit
    (:func:`_trimmed_similarity_residuals`) over the median distance of the scene's GT centres to their mean, and
    ``rot``, the spread of the rotations (:func:`_rotation_spread`, degrees), and ``turn``, the angle (degrees)
    between the world rotation the centres' fit finds and the one the rotations agree on: the same for poses read
    right, as one change of frame moves both; nan under 3 cameras. Given the ``thresholds``, ``quick`` is the
    percentage of (camera, scored threshold) pairs within the threshold under that one fit: a rough, cheap mAA
    (the metric's own search fits every triplet, per threshold). A scene's cameras are those of the submitted
    cluster holding most of its posed images.

    Cheap (a few 3×3 SVDs per scene, no triplets), so every dataset can be screened, whatever its mAA: the metric's
    own re-scoring stays the judge of a reading, this only says where to look and vetoes a reading that scores
    better by the luck of a few thresholds without fitting better.
    """
    from .submission import camera_centers

    gt_ds = gt["dataset"].astype(str)
    names = list(dict.fromkeys(gt_ds)) if datasets is None else list(datasets)
    gt_c = camera_centers(gt)
    keys = pd.MultiIndex.from_arrays([submission["dataset"].astype(str), submission["image"].astype(str)])
    first = ~keys.duplicated()
    where = pd.Series(np.flatnonzero(first), index=keys[first])
    from .submission import rotations

    reads = {reading: reread(submission, reading) for reading in READINGS}
    with np.errstate(invalid="ignore", over="ignore"):  # (an inf pose: a non-finite centre, left out below)
        centres = {reading: camera_centers(r) for reading, r in reads.items()}
    rots = {reading: rotations(r) for reading, r in reads.items()}
    gt_R = rotations(gt)
    cluster = submission["scene"].astype(str).to_numpy()
    rows = []
    for name in names:
        g = gt[(gt_ds == name) & (gt["scene"].astype(str) != "outliers")]
        for scene, part in g.groupby(g["scene"].astype(str), sort=False):
            idx = where.reindex(pd.MultiIndex.from_arrays([[name] * len(part), part["image"].astype(str)]))
            ok = idx.notna().to_numpy() & np.isfinite(gt_c[part.index]).all(axis=1)
            sub_i, gt_i = idx.to_numpy()[ok].astype(int), part.index.to_numpy()[ok]
            posed = np.isfinite(centres["as written"][sub_i]).all(axis=1)
            sub_i, gt_i = sub_i[posed], gt_i[posed]
            if len(sub_i):  # the cluster holding most of the scene's posed images (first such on ties)
                names_c, counts = np.unique(cluster[sub_i], return_counts=True)
                best = names_c[np.argmax(counts)]
                sub_i, gt_i = sub_i[cluster[sub_i] == best], gt_i[cluster[sub_i] == best]
            dst = gt_c[gt_i]
            extent = float(np.median(np.linalg.norm(dst - dst.mean(axis=0), axis=1))) if len(dst) else 0.0
            # cameras along a line (a track, a corridor): a fit's turn about that line is arbitrary, so the frames'
            # agreement says nothing there (it named camera→world slips "centre as t" and the other way round)
            spread = np.linalg.svd(dst - dst.mean(axis=0), compute_uv=False) if len(dst) >= 3 else np.zeros(3)
            along_a_line = not spread[0] > 0 or spread[1] < LINE_RATIO * spread[0]
            for reading in READINGS:
                src = centres[reading][sub_i]
                fine = np.isfinite(src).all(axis=1)
                fit = rot = turn = quick = float("nan")
                if fine.sum() >= 3 and extent > 0:
                    res, R_centres = _trimmed_similarity_residuals(src[fine], dst[fine])
                    fit = float(np.median(res)) / extent
                    if (th := (thresholds or {}).get((name, str(scene)))) is not None:
                        scored = np.asarray(th, dtype=float)[list(METRIC_THRESHOLDS)]
                        quick = 100.0 * float((res[:, None] < scored[None, :]).mean())
                    R_sub, R_gt = rots[reading][sub_i][fine], gt_R[gt_i][fine]
                    if np.isfinite(R_sub).all() and np.isfinite(R_gt).all():
                        rot, R_rotations = _rotation_spread(R_sub, R_gt)
                        turn = float("nan") if along_a_line else _angle(R_centres, R_rotations)
                rows.append({"dataset": name, "scene": str(scene), "reading": reading, "n": int(fine.sum()),
                             "fit": fit, "rot": rot, "turn": turn, "quick": quick})
    return pd.DataFrame(rows, columns=["dataset", "scene", "reading", "n", "fit", "rot", "turn", "quick"])


def geometry(fits: pd.DataFrame, ratio: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the poses' geometry says of each reading other than "as written", per (dataset, scene) of
    :func:`fit_table`: ``(supports, contradicts)``, two boolean frames with a column per reading.

    * supports: the reading's centres fit the GT under ``ratio`` times the file's, or (given ``quick``) put more
      of the cameras within the thresholds (by two cameras' worth, at least :data:`MARGIN` points), or its
      rotations spread clearly less, or its centres and rotations agree on the frame where the file's do not (by
      :data:`TURN_SLACK`; five cameras with t's sign flipped: 179° as written, 1° read so); and neither its
      rotations nor that agreement are clearly worse (a mirrored, nearly flat scene fits its best half as well
      either way: the rest is where the mirror shows).
    * contradicts: its rotations fit clearly worse than the file's (by :data:`AGREE` and :data:`ROT_SLACK`), its
      centres and rotations disagree on the change of frame (by :data:`TURN_SLACK` more than the file's), or the
      file's centres fit clearly better (by :data:`AGREE`). A noisy, right file of cameras orbiting a point read
      camera→world traced a similar, larger circle and scored better, while its rotations, transposed, disagreed
      with the ground truth by tens of degrees.

    Neither, with a few cameras (three to fit, the rest free), or a flat layout under a mirror (t's sign flipped).
    """
    # every table on one index: pivot_table drops the scenes whose values are all nan (fewer than 3 cameras
    # fitted), and comparing tables of other scenes raised (a scene of 10 cameras beside one of 2 failed `score`)
    index = pd.MultiIndex.from_frame(fits[["dataset", "scene"]].drop_duplicates()).sort_values()

    def wide(column: str) -> pd.DataFrame:  # (dataset, scene) × reading
        return fits.pivot_table(index=["dataset", "scene"], columns="reading", values=column,
                                aggfunc="first").reindex(index)

    fit, rot, turn = wide("fit"), wide("rot"), wide("turn")
    if "as written" not in fit:
        return pd.DataFrame(index=fit.index), pd.DataFrame(index=fit.index)
    quick = wide("quick") if "quick" in fits and fits["quick"].notna().any() else None
    n = wide("n") if quick is not None else None
    supports, contradicts = {}, {}
    for reading in [r for r in READINGS if r != "as written" and r in fit]:
        worse_rot = pd.Series(False, index=fit.index)
        if reading in rot and "as written" in rot:
            worse_rot = ((rot["as written"] < AGREE * rot[reading])
                         & (rot[reading] - rot["as written"] > ROT_SLACK)).fillna(False).astype(bool)
        if reading in turn and "as written" in turn:  # centres and rotations moved by different frames
            worse_rot |= (turn[reading] - turn["as written"] > TURN_SLACK).fillna(False).astype(bool)
        better_rot = pd.Series(False, index=fit.index)
        if reading in rot and "as written" in rot:  # rotations that agree where the file's do not
            better_rot = ((rot[reading] < AGREE * rot["as written"])
                          & (rot["as written"] - rot[reading] > ROT_SLACK)).fillna(False).astype(bool)
        if reading in turn and "as written" in turn:  # centres and rotations agreeing on the frame
            better_rot |= (turn["as written"] - turn[reading] > TURN_SLACK).fillna(False).astype(bool)
        better = (fit[reading] < ratio * fit["as written"]).fillna(False).astype(bool) | better_rot
        if quick is not None and reading in quick:  # more cameras within the thresholds under one fit, by more
            # than two cameras' worth (4 cameras: one (camera, threshold) pair is 6 points of luck)
            step = (200.0 / n[reading].clip(lower=1)).clip(lower=MARGIN)
            better |= (quick[reading] - quick["as written"] > step).fillna(False).astype(bool)
        supports[reading] = better & ~worse_rot
        # (the file's centres fitting better does not count against rotations that clearly back the reading:
        # cameras orbiting a point written camera→world trace a similar circle as written)
        fits_worse = (fit["as written"] < AGREE * fit[reading]).fillna(False).astype(bool) & ~better_rot
        contradicts[reading] = worse_rot | fits_worse
    return pd.DataFrame(supports, index=fit.index), pd.DataFrame(contradicts, index=fit.index)


def preferred_elsewhere(fits: pd.DataFrame) -> list[str]:
    """Datasets with a scene whose centres fit the GT clearly better under another reading (:data:`PREFER`)."""
    if fits is None or fits.empty:
        return []
    table = geometry(fits, PREFER)[0]
    if table.empty or not len(table.columns):
        return []
    better = table.any(axis=1)
    return list(dict.fromkeys(str(d) for d, _ in table.index[better.to_numpy()]))


SMALL_DATASET = 60
"""Datasets of at most this many GT images are re-read whatever their mAA: with a few cameras per scene, a wrong
convention can still reach :data:`LOW_MAA` (the bundled synthetic benchmark written camera→world scores 51 and 53
mAA: any three cameras align, and the metric's −3 rule is generous with eight to ten), and re-reading them costs
little (the metric's work grows with the cube of a scene's size)."""


def posed_scenes(gt: pd.DataFrame, submission: pd.DataFrame) -> set[tuple[str, str]]:
    """``(dataset, scene)`` of the GT scenes at least half of whose images the submission gives a finite pose."""
    from .submission import camera_centers

    posed = pd.Series(np.isfinite(camera_centers(submission)).all(axis=1),
                      index=pd.MultiIndex.from_arrays([submission["dataset"].astype(str),
                                                       submission["image"].astype(str)]))
    posed = posed[~posed.index.duplicated()]
    keys = pd.MultiIndex.from_arrays([gt["dataset"].astype(str), gt["image"].astype(str)])
    has = pd.Series(posed.reindex(keys, fill_value=False).to_numpy(), index=gt.index)
    frac = has.groupby([gt["dataset"].astype(str), gt["scene"].astype(str)]).mean()
    return {(str(d), str(s)) for (d, s), f in frac.items() if f >= 0.5 and s != "outliers"}


def low_datasets(result: ScoreResult, below: float | None = None,
                 posed: set[tuple[str, str]] | None = None, fits: pd.DataFrame | None = None) -> list[str]:
    """The datasets of a scored submission worth re-reading: those whose mAA as written is under ``below`` percent
    (default :data:`LOW_MAA`), the small ones (:data:`SMALL_DATASET`) whatever their mAA, and, given ``posed``
    (:func:`posed_scenes`), those with a *posed but misplaced* scene: at least half of its images posed and in its
    cluster, yet under ``below`` (one scene written another way looks so; a scene the pipeline failed to register
    does not, and costs no re-reading), and, given ``fits`` (:func:`fit_table`), those of which another reading
    fits a scene clearly better (:func:`preferred_elsewhere`: t's sign flipped keeps a flat layout's mAA high)."""
    below = LOW_MAA if below is None else below
    small = SMALL_DATASET  # (read when called: tests set it)
    sc = result.scenes
    sizes = sc.groupby(sc["dataset"].astype(str))["n_images"].sum() if len(sc) else pd.Series(dtype=float)
    misplaced = {str(r.dataset) for r in sc.itertuples()
                 if (str(r.dataset), str(r.scene)) in (posed or set()) and r.overlap * 2 >= r.n_images
                 and r.mAA < below}
    preferred = set(preferred_elsewhere(fits)) if fits is not None else set()
    return [name for name, d in result.datasets.items()
            if d.mAA < below or sizes.get(name, small + 1) <= small or name in misplaced or name in preferred]


def convention_check(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray],
                     submission: pd.DataFrame, datasets: list[str] | None = None,
                     fits: pd.DataFrame | None = None, written: ScoreResult | None = None,
                     every_reading: bool = False, config: MetricConfig | None = None) -> ConventionCheck:
    """Score each dataset of ``submission`` under each reading of :data:`READINGS` that could be named, one dataset
    at a time (the metric's :func:`~imc_core.metric.score` without details, its warnings left out: the file as
    written is scored, and warned about, by the caller).

    A reading whose geometry (:func:`fit_table`) rules it out in the dataset and in each of its scenes is not
    scored (its mAA is nan): no score could get it named (:meth:`ConventionCheck._geometry_allows`), and the
    metric's re-scoring is what costs (a pipeline's submission with every dataset under 50 mAA took 4–5 times its
    own scoring to re-read four ways).

    Args:
        gt: labels pose frame.
        thresholds: ``{(dataset, scene): thresholds}``.
        submission: submission pose frame, already validated by a scoring of it.
        datasets: re-read only these datasets (e.g. :func:`low_datasets`); None: every dataset of ``gt``.
        fits: :func:`fit_table` of the submission when already computed (else computed here).
        written: the submission scored as written, when the caller has it: its datasets' and scenes' mAA are
            taken, not scored again (scored with ``config``, as every other reading is).
        every_reading: score every reading, the ones the geometry rules out too (for tables).

    Returns:
        The :class:`ConventionCheck`.
    """
    from .metric import score
    from .submission import take_rows

    names = list(dict.fromkeys(gt["dataset"].astype(str))) if datasets is None else list(datasets)
    fits = fit_table(gt, submission, names, thresholds) if fits is None else \
        fits[fits["dataset"].isin(names)].reset_index(drop=True)
    judge = ConventionCheck(pd.DataFrame(), fits=fits)
    gt_ds, sub_ds = gt["dataset"].astype(str), submission["dataset"].astype(str)
    rows, scene_rows = [], []
    for name in names:
        g = gt[gt_ds == name].reset_index(drop=True)
        th = {k: v for k, v in thresholds.items() if k[0] == name}
        sub = take_rows(submission, (sub_ds == name).to_numpy())
        gt_scenes = [str(sc) for sc in dict.fromkeys(g["scene"].astype(str)) if sc != "outliers"]
        for reading, meaning in READINGS.items():
            if reading == "as written" and written is not None and name in written.datasets:
                mAA = written.datasets[name].mAA
                sc_rows = written.scenes[written.scenes["dataset"].astype(str) == name]
                per_scene = zip(sc_rows["scene"], sc_rows["mAA"], strict=True)
            elif reading == "as written" or every_reading or judge.could_name(name, gt_scenes, reading):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = score(g, th, reread(sub, reading), details=False,
                                **({} if config is None else {"config": config}))
                mAA, per_scene = res.datasets[name].mAA, zip(res.scenes["scene"], res.scenes["mAA"], strict=True)
            else:
                mAA, per_scene = float("nan"), ((sc, float("nan")) for sc in gt_scenes)
            rows.append({"dataset": name, "reading": reading, "meaning": meaning, "mAA": mAA})
            scene_rows += [{"dataset": name, "scene": str(sc), "reading": reading, "mAA": float(m)}
                           for sc, m in per_scene]
    return ConventionCheck(pd.DataFrame(rows, columns=["dataset", "reading", "meaning", "mAA"]),
                           pd.DataFrame(scene_rows, columns=["dataset", "scene", "reading", "mAA"]), fits)


def check_scored(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray], submission: pd.DataFrame,
                 result: ScoreResult, config: MetricConfig | None = None) -> ConventionCheck | None:
    """The check as ``score`` and ``add-submission`` run it, after scoring ``submission`` as written (``result``):
    only the datasets :func:`low_datasets` names (with :func:`posed_scenes` and :func:`fit_table`) are re-read;
    None when there are none.

    The check only advises: a fault of its own becomes a check with :attr:`ConventionCheck.failed` set, whose
    warning says so, never a failed scoring."""
    try:
        fits = fit_table(gt, submission, thresholds=thresholds)
        low = low_datasets(result, posed=posed_scenes(gt, submission), fits=fits)
        return convention_check(gt, thresholds, submission, low, fits, written=result, config=config) if low \
            else None
    except Exception as err:  # noqa: BLE001  (advisory: the score must not be lost to a fault here)
        return ConventionCheck(pd.DataFrame(columns=["dataset", "reading", "meaning", "mAA"]),
                               failed=f"{type(err).__name__}: {err}")
