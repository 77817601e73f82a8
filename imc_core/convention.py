"""Which pose convention a submission was written in: its poses read three ways, each scored.

The IMC-2025 metric looks only at camera centres, ``c = -Rᵀ t`` of world→camera poses (``x_cam = R x_world + t``,
see :mod:`imc_core.submission`). A submission written in another convention keeps its clusters, so its clusterness
does not move, but every camera lands elsewhere and its mAA collapses without any error. The usual slips, and the
world→camera pose each one means:

========================  ===========================================  ======================================
reading                   what was written                             world→camera pose it means
========================  ===========================================  ======================================
``as written``            world→camera ``R`` (row-major) and ``t``     ``(R, t)``: centre ``-Rᵀ t``
``camera→world``          camera→world ``R`` and the centre as ``t``   ``(Rᵀ, -Rᵀ t)``: centre ``t``
``transposed rotation``   ``R`` written column-major                   ``(Rᵀ, t)``: centre ``-R t``
========================  ===========================================  ======================================

:func:`convention_check` scores the submission under each reading; when another reading scores clearly better
than the file as written, :meth:`ConventionCheck.warning` says which, so the question "are my poses world→camera
or camera→world?" is answered from the numbers instead of by reading code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .submission import R_COLS, T_COLS, rotations, translations

if TYPE_CHECKING:
    from .metric import ScoreResult

__all__ = ["READINGS", "ConventionCheck", "convention_check", "low_datasets", "reread"]

READINGS: dict[str, str] = {
    "as written": "world→camera R (row-major) and t, as IMC-2025 and COLMAP's cam_from_world",
    "camera→world": "R and t are camera→world: t is the camera centre",
    "transposed rotation": "R written column-major (its transpose)",
}
"""Reading name → what it assumes the file holds."""

LOW_MAA = 50.0
"""Datasets whose mAA as written reaches this (percent) are not re-read: a wrong convention scrambles the camera
centres, so such a dataset is written right, and re-reading it would only cost time (scoring the 1,945 training
images of IMC-2025 three times took 18 s instead of 5 s)."""

MARGIN = 5.0
"""mAA points by which another reading must beat the file as written before :meth:`ConventionCheck.warning` speaks
(a wrong convention costs tens of points; a few points can be the metric's own luck on a small scene)."""


def reread(submission: pd.DataFrame, reading: str) -> pd.DataFrame:
    """The submission's poses as the world→camera poses ``reading`` (a key of :data:`READINGS`) says they mean.

    Args:
        submission: pose frame (:mod:`imc_core.submission`).
        reading: ``"as written"``, ``"camera→world"`` or ``"transposed rotation"``.

    Returns:
        A copy with its ``r00 … r22`` and ``tx, ty, tz`` replaced (nan rows stay nan).
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}: one of {', '.join(READINGS)}")
    out = submission.copy()
    if reading == "as written":
        return out
    R, t = rotations(submission), translations(submission)
    Rt = np.swapaxes(R, -1, -2)
    new_t = -np.einsum("nij,nj->ni", Rt, t) if reading == "camera→world" else t
    out[R_COLS] = Rt.reshape(-1, 9)
    out[T_COLS] = new_t
    return out


@dataclass
class ConventionCheck:
    """The submission scored under each reading of its poses.

    Attributes:
        table: one row per reading (:data:`READINGS` order): ``reading``, ``meaning``, ``mAA``, ``score``
            (percentages over ``datasets``; clusterness is the same under every reading).
        datasets: the datasets re-read (those below :data:`LOW_MAA` as written, when the caller chose so).
    """

    table: pd.DataFrame
    datasets: list[str]

    @property
    def best(self) -> str:
        """The reading with the highest mAA (``as written`` on ties)."""
        mAA = self.table.set_index("reading")["mAA"]
        return str(mAA.index[int(np.argmax(mAA.to_numpy()))])

    def warning(self, margin: float = MARGIN) -> str | None:
        """A one-line warning when another reading beats the file as written by more than ``margin`` mAA points,
        else None."""
        mAA = self.table.set_index("reading")["mAA"]
        best = self.best
        if best == "as written" or mAA[best] - mAA["as written"] <= margin:
            return None
        looks = {"camera→world": "camera→world (t holding the camera centre)",
                 "transposed rotation": "written with each R transposed (column-major)"}[best]
        where = ", ".join(self.datasets[:5]) + (f" and {len(self.datasets) - 5} more" if len(self.datasets) > 5
                                                  else "")
        return (f"these poses look {looks} in {where}: as written they reach mAA {mAA['as written']:.2f} there, "
                f"read as {best} {mAA[best]:.2f}. IMC-2025 wants world→camera poses, x_cam = R·x_world + t, R "
                "row-major and t = −R·c for a camera centre c.")


def low_datasets(result: ScoreResult, below: float | None = None) -> list[str]:
    """The datasets of a scored submission whose mAA as written is under ``below`` percent (default
    :data:`LOW_MAA`): the ones worth re-reading. (A tiny scene can reach it written in a wrong convention: the
    metric's −3 rule is generous with four or five cameras.)"""
    below = LOW_MAA if below is None else below
    return [name for name, d in result.datasets.items() if d.mAA < below]


def convention_check(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray],
                     submission: pd.DataFrame, datasets: list[str] | None = None) -> ConventionCheck:
    """Score ``submission`` under each reading of :data:`READINGS` (the metric's :func:`~imc_core.metric.score`
    without details, its warnings left out: the file as written is scored, and warned about, by the caller).

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
    if datasets is not None:
        gt = gt[gt["dataset"].astype(str).isin(names)].reset_index(drop=True)
        thresholds = {k: v for k, v in thresholds.items() if k[0] in names}
        submission = take_rows(submission, submission["dataset"].astype(str).isin(names).to_numpy())
    rows = []
    for reading, meaning in READINGS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = score(gt, thresholds, reread(submission, reading), details=False)
        rows.append({"reading": reading, "meaning": meaning, "mAA": res.mAA, "score": res.score})
    return ConventionCheck(pd.DataFrame(rows, columns=["reading", "meaning", "mAA", "score"]), names)
