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

import numpy as np
import pandas as pd

from .submission import R_COLS, T_COLS, rotations, translations

__all__ = ["READINGS", "ConventionCheck", "convention_check", "reread"]

READINGS: dict[str, str] = {
    "as written": "world→camera R (row-major) and t, as IMC-2025 and COLMAP's cam_from_world",
    "camera→world": "R and t are camera→world: t is the camera centre",
    "transposed rotation": "R written column-major (its transpose)",
}
"""Reading name → what it assumes the file holds."""

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
            (percentages; clusterness is the same under every reading).
    """

    table: pd.DataFrame

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
        return (f"these poses look {looks}: as written they reach mAA {mAA['as written']:.2f}, read as {best} "
                f"{mAA[best]:.2f}. IMC-2025 wants world→camera poses, x_cam = R·x_world + t, R row-major and "
                "t = −R·c for a camera centre c.")


def convention_check(gt: pd.DataFrame, thresholds: dict[tuple[str, str], np.ndarray],
                     submission: pd.DataFrame) -> ConventionCheck:
    """Score ``submission`` under each reading of :data:`READINGS` (the metric's :func:`~imc_core.metric.score`
    without details, its warnings left out: the file as written is scored, and warned about, by the caller).

    Args:
        gt: labels pose frame.
        thresholds: ``{(dataset, scene): thresholds}``.
        submission: submission pose frame, already validated by a scoring of it.

    Returns:
        The :class:`ConventionCheck`.
    """
    from .metric import score

    rows = []
    for reading, meaning in READINGS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = score(gt, thresholds, reread(submission, reading), details=False)
        rows.append({"reading": reading, "meaning": meaning, "mAA": res.mAA, "score": res.score})
    return ConventionCheck(pd.DataFrame(rows, columns=["reading", "meaning", "mAA", "score"]))
