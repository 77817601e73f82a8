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
=========================  ===========================================  ======================================

:func:`convention_check` scores each low dataset of the submission under each reading; when another reading scores
clearly better than the file as written, :meth:`ConventionCheck.warning` names the dataset and the reading, so the
question "are my poses world→camera or camera→world?" is answered from the numbers instead of by reading code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .submission import R_COLS, T_COLS, rotations, translations, world_to_cam

if TYPE_CHECKING:
    from .metric import ScoreResult

__all__ = ["READINGS", "WARNING_STARTS", "ConventionCheck", "check_scored", "convention_check", "low_datasets",
           "posed_scenes", "reread"]

READINGS: dict[str, str] = {
    "as written": "world→camera R (row-major) and t, as IMC-2025 and COLMAP's cam_from_world",
    "camera→world": "R and t are camera→world: t is the camera centre",
    "transposed rotation": "R written column-major (its transpose)",
    "negated translation": "t written as R·c instead of −R·c (every centre mirrored)",
}
"""Reading name → what it assumes the file holds."""

#: how a warning describes a dataset best read another way
LOOKS: dict[str, str] = {
    "camera→world": "camera→world (t holding the camera centre)",
    "transposed rotation": "written with each R transposed (column-major)",
    "negated translation": "written with t = R·c (the sign of t flipped)",
}

#: how each warning of :meth:`ConventionCheck.warning` starts (the dashboard shows these beside a run)
WARNING_STARTS = ("these poses look", "some poses may be", "the poses of scene")

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
            ``meaning``, ``mAA`` (percent; clusterness is the same under every reading).
        scenes: one row per (dataset, GT scene, reading): ``dataset``, ``scene``, ``reading``, ``mAA``. A scene's
            mAA depends on its own cluster's poses only, so a dataset of which one scene was written another way
            shows there, while the dataset as a whole reads best as written.
    """

    table: pd.DataFrame
    scenes: pd.DataFrame | None = None

    @property
    def datasets(self) -> list[str]:
        """The datasets re-read."""
        return list(dict.fromkeys(self.table["dataset"]))

    def findings(self, margin: float = MARGIN) -> list[tuple[str, str, float, float]]:
        """``(dataset, reading, mAA as written, mAA read so)`` for each dataset whose best reading beats the file as
        written by more than ``margin`` points (datasets where no reading does are left out)."""
        out = []
        for dataset, rows in self.table.groupby("dataset", sort=False):
            if (won := _better_reading(rows, margin)) is not None:
                out.append((str(dataset), *won))
        return out

    def scene_findings(self, margin: float = MARGIN) -> list[tuple[str, str, str, float, float]]:
        """``(dataset, scene, reading, mAA as written, mAA read so)`` for each GT scene of a dataset without a
        finding of its own (:meth:`findings`) whose best reading beats the file as written by more than ``margin``
        points and reaches :data:`LOW_MAA`: one scene written another way (a scene that a wrong reading merely
        lifts from 0 to 20 is left out, since a few cameras can align by chance)."""
        if self.scenes is None or self.scenes.empty:
            return []
        whole = {d for d, *_ in self.findings(margin)}
        out = []
        for (dataset, scene), rows in self.scenes.groupby(["dataset", "scene"], sort=False):
            if dataset not in whole and (won := _better_reading(rows, margin)) is not None and won[2] >= LOW_MAA:
                out.append((str(dataset), str(scene), *won))
        return out

    def warning(self, margin: float = MARGIN) -> str | None:
        """One line naming each dataset that another reading scores clearly better, else None. Firm ("these poses
        look camera→world") when that reading reaches :data:`LOW_MAA`; else only "some poses may be" (e.g. half
        of a dataset's rows written camera→world: converting all of them would break the others). Then the
        scenes of :meth:`scene_findings` ("the poses of scene s in d look …")."""
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


def _better_reading(rows: pd.DataFrame, margin: float) -> tuple[str, float, float] | None:
    """``(reading, mAA as written, mAA read so)`` when the best of ``rows``' readings (``reading``, ``mAA``) beats
    the file as written by more than ``margin`` points, else None ("as written" comes first: it wins ties)."""
    mAA = rows.set_index("reading")["mAA"]
    best = str(mAA.index[int(np.argmax(mAA.to_numpy()))])
    if best == "as written" or mAA[best] - mAA["as written"] <= margin:
        return None
    return best, float(mAA["as written"]), float(mAA[best])


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
                 posed: set[tuple[str, str]] | None = None) -> list[str]:
    """The datasets of a scored submission worth re-reading: those whose mAA as written is under ``below`` percent
    (default :data:`LOW_MAA`), the small ones (:data:`SMALL_DATASET`) whatever their mAA, and, given ``posed``
    (:func:`posed_scenes`), those with a *posed but misplaced* scene: at least half of its images posed and in its
    cluster, yet under ``below`` (one scene written another way looks so; a scene the pipeline failed to register
    does not, and costs no re-reading)."""
    below = LOW_MAA if below is None else below
    small = SMALL_DATASET  # (read when called: tests set it)
    sc = result.scenes
    sizes = sc.groupby(sc["dataset"].astype(str))["n_images"].sum() if len(sc) else pd.Series(dtype=float)
    misplaced = {str(r.dataset) for r in sc.itertuples()
                 if (str(r.dataset), str(r.scene)) in (posed or set()) and r.overlap * 2 >= r.n_images
                 and r.mAA < below}
    return [name for name, d in result.datasets.items()
            if d.mAA < below or sizes.get(name, small + 1) <= small or name in misplaced]


def convention_check(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray],
                     submission: pd.DataFrame, datasets: list[str] | None = None) -> ConventionCheck:
    """Score each dataset of ``submission`` under each reading of :data:`READINGS`, one dataset at a time (the
    metric's :func:`~imc_core.metric.score` without details, its warnings left out: the file as written is scored,
    and warned about, by the caller).

    Args:
        gt: labels pose frame.
        thresholds: ``{(dataset, scene): thresholds}``.
        submission: submission pose frame, already validated by a scoring of it.
        datasets: re-read only these datasets (e.g. :func:`low_datasets`); None: every dataset of ``gt``.

    Returns:
        The :class:`ConventionCheck`.
    """
    from .metric import score
    from .submission import take_rows

    names = list(dict.fromkeys(gt["dataset"].astype(str))) if datasets is None else list(datasets)
    gt_ds, sub_ds = gt["dataset"].astype(str), submission["dataset"].astype(str)
    rows, scene_rows = [], []
    for name in names:
        g = gt[gt_ds == name].reset_index(drop=True)
        th = {k: v for k, v in thresholds.items() if k[0] == name}
        sub = take_rows(submission, (sub_ds == name).to_numpy())
        for reading, meaning in READINGS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = score(g, th, reread(sub, reading), details=False)
            rows.append({"dataset": name, "reading": reading, "meaning": meaning, "mAA": res.datasets[name].mAA})
            scene_rows += [{"dataset": name, "scene": str(sc), "reading": reading, "mAA": float(m)}
                           for sc, m in zip(res.scenes["scene"], res.scenes["mAA"], strict=True)]
    return ConventionCheck(pd.DataFrame(rows, columns=["dataset", "reading", "meaning", "mAA"]),
                           pd.DataFrame(scene_rows, columns=["dataset", "scene", "reading", "mAA"]))


def check_scored(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray], submission: pd.DataFrame,
                 result: ScoreResult) -> ConventionCheck | None:
    """The check as ``score`` and ``add-submission`` run it, after scoring ``submission`` as written (``result``):
    only the datasets :func:`low_datasets` names (with :func:`posed_scenes`) are re-read; None when there are
    none."""
    low = low_datasets(result, posed=posed_scenes(gt, submission))
    return convention_check(gt, thresholds, submission, low) if low else None
