"""Run analysis: where the score went, run-to-run noise, per-image and config differences between runs.

Everything here is pure (frames / dicts in, frames / dicts out) so the dashboard and the CLI can share it.
Inputs follow ``docs/formats.md``: ``scores.json`` (percentages), ``scenes.csv`` and ``per_image.csv`` as written by
:mod:`imc_core.metric`.

Example:
    >>> parts = loss_attribution(scores, scenes, per_image)
    >>> parts.loc["total", ["gap", "clusterness", "misclustered", "unregistered", "inaccurate", "discount"]]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = [
    "LOSS_PARTS",
    "METRIC_THRESHOLDS",
    "SCORED_STATUSES",
    "SEED_KEYS",
    "TO_DEC",
    "CompareScope",
    "RepeatComparison",
    "compare_repeats",
    "compare_scope",
    "config_diff",
    "default_pair",
    "flatten_config",
    "group_config_spread",
    "image_statuses",
    "image_summary",
    "loss_attribution",
    "misclustered",
    "noise_summary",
    "overall_on",
    "pca_2d",
    "per_image_delta",
    "pooled_local_descriptors",
    "same_data_roots",
    "scores_on",
    "submission_summary",
    "unscored_reason",
    "welch_p",
    "within_noise",
]

#: Indices of the six per-scene thresholds the metric uses (it skips the first two).
METRIC_THRESHOLDS: tuple[int, ...] = (2, 3, 4, 5)
#: The metric's ``to_dec``: cameras subtracted per scene from numerator and denominator of mAA.
TO_DEC: int = 3
#: Names of the loss parts returned by :func:`loss_attribution`, in display order.
LOSS_PARTS: tuple[str, ...] = ("clusterness", "misclustered", "unregistered", "inaccurate", "discount")

OUTLIERS = "outliers"


# --------------------------------------------------------------------------------------------------------------
# loss attribution
# --------------------------------------------------------------------------------------------------------------


def _harmonic(m: float, c: float) -> float:
    """The metric's combination of mAA and clusterness (fractions in [0, 1]); 0 when both are 0."""
    return 0.0 if m + c <= 0 else 2.0 * m * c / (m + c)


def _as_bool(col: pd.Series) -> pd.Series:
    """Parse a bool column that may have come back from CSV as strings ("True"/"False"/"1"/"0")."""
    if col.dtype == bool:
        return col
    mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False, "": False, "nan": False}
    return col.map(lambda v: bool(v) if isinstance(v, (bool, np.bool_, int, float)) and not pd.isna(v)
                   else mapping.get(str(v).strip().lower(), False)).astype(bool)


def _pass_matrix(per_image: pd.DataFrame) -> np.ndarray:
    """Pass flags of the thresholds the metric uses.

    Args:
        per_image: per-image table with columns ``pass_0`` .. ``pass_5``.

    Returns:
        (N, 4) bool array, columns = thresholds 2..5.
    """
    cols = [f"pass_{k}" for k in METRIC_THRESHOLDS]
    if len(per_image) == 0:
        return np.zeros((0, len(cols)), dtype=bool)
    return np.stack([_as_bool(per_image[c]).to_numpy() if c in per_image else np.zeros(len(per_image), bool)
                     for c in cols], axis=1)


def _recomputed_maa(per_image_ds: pd.DataFrame) -> tuple[float, float, int, int, int, int]:
    """mAA of one dataset from its per-image table, as the metric computes it, plus the discount-free variant.

    Args:
        per_image_ds: per-image rows of one dataset (GT ``outliers`` rows are ignored).

    Returns:
        ``(maa, maa_raw, n_images, n_misclustered_slots, n_unregistered_slots, n_inaccurate_slots)``: fractions
        and (image, threshold) slot counts over the four thresholds the metric uses (:func:`misclustered`).
    """
    rows = per_image_ds[per_image_ds["scene"].astype(str) != OUTLIERS]
    n_thr = len(METRIC_THRESHOLDS)
    if len(rows) == 0:
        return 0.0, 0.0, 0, 0, 0, 0
    passes = _pass_matrix(rows)
    registered = _registered(rows).to_numpy()
    num = 0.0
    den = 0.0
    for _, idx in rows.groupby(rows["scene"].astype(str), sort=False).indices.items():
        m = len(idx)
        p = passes[idx].sum(axis=0)  # (4,)
        num += float(np.maximum(p - TO_DEC, 0).sum())
        den += m - TO_DEC
    den = max(0.0, n_thr * den)
    maa = 0.0 if den == 0 else num / den
    n = len(rows)
    maa_raw = float(passes.sum()) / (n_thr * n)
    failing = ~passes
    elsewhere = misclustered(rows).to_numpy()
    lonely = unaligned(rows).to_numpy()
    to_miscl = elsewhere.copy()
    to_unreg = ~registered & ~elsewhere
    to_inacc = registered & ~lonely
    # an unaligned image fails for want of its scene's other cameras in its cluster: the loss is theirs, charged to
    # what kept most of them away (other clusters, or no pose); nothing of a scene of fewer than 3 images can be
    # aligned, which is the −3 rule's doing: no part counts those slots, so they stay in the discount
    for _, idx in rows.groupby(rows["scene"].astype(str), sort=False).indices.items():
        if len(idx) >= 3:
            away, unposed = int(elsewhere[idx].sum()), int(to_unreg[idx].sum())
            target = to_miscl if away > 0 and away >= unposed else to_unreg
            target[idx] |= lonely[idx]
    n_miscl = int((failing & to_miscl[:, None]).sum())
    n_unreg = int((failing & to_unreg[:, None]).sum())
    n_inacc = int((failing & to_inacc[:, None]).sum())
    return maa, maa_raw, n, n_miscl, n_unreg, n_inacc


def _registered(per_image: pd.DataFrame) -> pd.Series:
    """True where the image sits in the cluster associated with its GT scene and has a finite pose."""
    ok = pd.Series(True, index=per_image.index)
    for col in ("in_cluster", "pose_valid"):
        if col in per_image:
            ok &= _as_bool(per_image[col])
    return ok


def misclustered(per_image: pd.DataFrame) -> pd.Series:
    """True where the image has a finite pose but sits in another cluster than the one associated with its GT
    scene (not in ``outliers``): the mapping placed it, the clustering put it elsewhere. Such an image fails every
    threshold of its scene, as an unregistered one does, but the loss is the clustering's."""
    if not {"in_cluster", "pose_valid", "cluster"} <= set(per_image.columns):
        return pd.Series(False, index=per_image.index)
    return _as_bool(per_image["pose_valid"]) & ~_as_bool(per_image["in_cluster"]) & _placed(per_image)


def _placed(per_image: pd.DataFrame) -> pd.Series:
    """True where the run put the image in a cluster (a cluster name, not ``outliers``)."""
    if "cluster" not in per_image:
        return pd.Series(False, index=per_image.index)
    cluster = per_image["cluster"].fillna("").astype(str).str.strip()
    return (cluster != "") & (cluster != OUTLIERS)  # (a cluster named "nan" is a name: the metric counts it)


def unaligned(per_image: pd.DataFrame) -> pd.Series:
    """True where the image is registered (a pose, in its scene's cluster) but fewer than 3 images of its scene are:
    the metric fits a similarity to triplets, so it aligns nothing there and the image fails every threshold however
    exact its pose. Its loss is not its pose's but the rest of its scene's (in other clusters, or without a
    pose)."""
    if not len(per_image) or "scene" not in per_image:
        return pd.Series(False, index=per_image.index)
    registered = _registered(per_image)
    keys = [per_image["dataset"].astype(str)] if "dataset" in per_image else []
    together = registered.groupby([*keys, per_image["scene"].astype(str)]).transform("sum")
    outl = per_image["scene"].astype(str) == OUTLIERS
    return registered & (together < 3) & ~outl


def image_statuses(per_image: pd.DataFrame) -> pd.Series:
    """Each image's status in the score, as the Images tab and Compare name it: ``outliers`` (a GT outlier),
    ``misclustered`` (a pose, in another cluster than its scene's: :func:`misclustered`), ``unregistered`` (no
    pose, or in ``outliers``), ``unaligned`` (in its scene's cluster with fewer than 3 of its scene's images, so
    the metric aligns nothing: :func:`unaligned`), then by the metric's four thresholds ``passing`` (all),
    ``partial`` or ``failing`` (none). A GT outlier the run put in a cluster is ``clustered outlier``: it costs
    that cluster's clusterness."""
    if len(per_image) == 0:
        return pd.Series([], index=per_image.index, dtype=object)
    passes = _pass_matrix(per_image).sum(axis=1)
    outl = (per_image["scene"].astype(str) == OUTLIERS).to_numpy() if "scene" in per_image else False
    by_passes = np.where(passes == len(METRIC_THRESHOLDS), "passing", np.where(passes == 0, "failing", "partial"))
    in_a_cluster = _placed(per_image).to_numpy()
    outl = np.broadcast_to(outl, in_a_cluster.shape)
    status = np.select([outl & in_a_cluster, outl, misclustered(per_image).to_numpy(),
                        ~_registered(per_image).to_numpy(), unaligned(per_image).to_numpy()],
                       ["clustered outlier", "outliers", "misclustered", "unregistered", "unaligned"],
                       default=by_passes)
    return pd.Series(status, index=per_image.index, dtype=object)


def _clusterness_from_scenes(scenes_ds: pd.DataFrame) -> float | None:
    """Clusterness of one dataset from ``scenes.csv``: sum of overlaps / sum of associated cluster sizes."""
    rows = scenes_ds[scenes_ds["scene"].astype(str) != OUTLIERS]
    if len(rows) == 0 or "overlap" not in rows or "cluster_size" not in rows:
        return None
    size = pd.to_numeric(rows["cluster_size"], errors="coerce").fillna(0).sum()
    overlap = pd.to_numeric(rows["overlap"], errors="coerce").fillna(0).sum()
    return 0.0 if size == 0 else float(overlap / size)


def _split_gap(maa: float, clusterness: float, maa_parts: Mapping[str, float]) -> dict[str, float]:
    """Split ``1 - H(mAA, C)`` into a clusterness part and parts of the mAA loss (all fractions).

    Two-player Shapley value between "clusterness becomes 1" and "mAA becomes 1" (average of both orders), then
    the mAA player's share is split in proportion to ``maa_parts`` (which sum to ``1 - maa``).
    """
    h = _harmonic
    phi_c = 0.5 * ((h(maa, 1.0) - h(maa, clusterness)) + (1.0 - h(1.0, clusterness)))
    phi_m = 0.5 * ((h(1.0, clusterness) - h(maa, clusterness)) + (1.0 - h(maa, 1.0)))
    loss_m = sum(maa_parts.values())
    out = {"clusterness": phi_c}
    for name, value in maa_parts.items():
        out[name] = 0.0 if loss_m <= 0 else phi_m * value / loss_m
    return out


def loss_attribution(scores: Mapping[str, Any], scenes: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """Split each dataset's gap to a perfect score (``100 - score``) into what it was lost to.

    Definitions (per dataset; ``m_s`` = GT images of scene ``s``, ``p_{s,k}`` = images passing threshold ``k``,
    ``k`` over the four thresholds the metric uses, ``L = 4``):

    * ``mAA = Σ_s Σ_k max(p_{s,k} - 3, 0) / (L · Σ_s (m_s - 3))`` and ``score = H(mAA, C)``, the harmonic mean
      with clusterness ``C``, exactly as the metric does. ``mAA`` and ``C`` are taken from ``scores.json``.
    * ``mAA_raw = Σ_s Σ_k p_{s,k} / (L · Σ_s m_s)``: the fraction of (image, threshold) slots that pass, i.e. the
      mAA without the metric's ``-3``. The mAA loss splits exactly into
      ``1 - mAA = (1 - mAA_raw) + (mAA_raw - mAA)``, where ``1 - mAA_raw`` is shared by failing slots, each worth
      ``1 / (L · Σ m_s)``:

      - **misclustered**: the GT image has a finite pose but sits in another cluster than the one associated
        with its scene (a clustering loss: its scene misses it here, and when the cluster it sits in is another
        scene's, that scene's clusterness counts it too);
      - **unregistered**: the GT image has no pose, or sits in ``outliers``;
      - **inaccurate**: registered in the right cluster but the aligned camera centre misses the threshold;
      - an image registered in the right cluster with fewer than 3 of its scene's images there cannot be aligned
        (:func:`unaligned`): its slots go to misclustered when more of the scene's other images sit in other
        clusters than have no pose, else to unregistered (exact poses of a scene split over clusters are a
        clustering loss, not inaccurate ones); in a scene of fewer than 3 images nothing can be aligned, and
        those slots stay in the discount;
      - **discount**: ``mAA_raw - mAA``, the extra loss from the ``-3`` rule (slots weigh ``1/(L·Σ(m_s-3))``
        instead of ``1/(L·Σm_s)``, and a (scene, threshold) that at most 3 cameras pass adds 0). It vanishes when
        all pass, and it is negative when the failures concentrate in some scenes (or a scene has fewer than 3
        images): a scene that fails wholly loses its 3 discounted slots from the denominator, so another part can
        then exceed the gap. It also absorbs any difference between the reported mAA and the recount from
        ``per_image`` (``mAA_recomputed``): the metric's mAA above 100 % (the ``outliers`` cluster first in the
        file) lands there whole.

    * The score gap ``1 - H(mAA, C)`` is split between clusterness and mAA by the two-player Shapley value
      (average of "fix clusterness first" and "fix mAA first": ``H`` is not additive, so the order matters and
      averaging removes that arbitrariness); the mAA share is split over misclustered / unregistered / inaccurate
      / discount in proportion to the mAA losses above. So the five parts sum to the gap exactly (up to float
      rounding), and the ``clusterness`` part is the whole gap for a run that only loses clusterness. Clusterness
      also drops when no cluster overlaps a scene (all its images unregistered): the metric then charges the first
      cluster's size to that scene, so an unclustered scene costs clusterness points too. A dataset of which no
      image is in any cluster (its reconstruction failed) has no clusterness part: its clusterness is 0 only
      because nothing was registered, so the whole gap goes to the mAA's parts.

    The ``total`` row averages the dataset rows, as the overall score averages dataset scores.

    Args:
        scores: ``scores.json`` content ``{"score", "mAA", "clusterness", "datasets": {name: {...}}}`` in percent.
        scenes: ``scenes.csv`` frame (columns ``dataset, scene, cluster_size, overlap``; used when a dataset is
            missing from ``scores`` to get its clusterness).
        per_image: ``per_image.csv`` frame (``dataset, scene, in_cluster, pose_valid, pass_0..pass_5``).

    Returns:
        Frame indexed by dataset name plus ``"total"``, columns ``score, mAA, clusterness_score, gap`` then the
        parts ``clusterness, misclustered, unregistered, inaccurate, discount`` (score points, percent), then
        ``mAA_recomputed`` (percent, from ``per_image``), ``n_images``, ``misclustered_slots``,
        ``unregistered_slots``, ``inaccurate_slots``.
    """
    ds_scores: Mapping[str, Mapping[str, float]] = dict(scores.get("datasets", {}) or {})
    names: list[str] = list(ds_scores)
    for frame in (per_image, scenes):
        if len(frame) and "dataset" in frame:
            names += [str(d) for d in frame["dataset"].unique() if str(d) not in names]
    rows: list[dict[str, Any]] = []
    for name in names:
        pi = per_image[per_image["dataset"].astype(str) == name] if len(per_image) else per_image
        sc = scenes[scenes["dataset"].astype(str) == name] if len(scenes) else scenes
        if len(pi) and "scene" in pi:
            maa_re, _, n, n_miscl, n_unreg, n_inacc = _recomputed_maa(pi)
        else:
            maa_re, n, n_miscl, n_unreg, n_inacc = 0.0, 0, 0, 0, 0
        given = ds_scores.get(name, {})
        maa = float(given["mAA"]) / 100.0 if "mAA" in given else maa_re
        c_scenes = _clusterness_from_scenes(sc) if len(sc) and "scene" in sc else None
        clus = float(given["clusterness"]) / 100.0 if "clusterness" in given else (c_scenes or 0.0)
        score = float(given["score"]) / 100.0 if "score" in given else _harmonic(maa, clus)
        slots = len(METRIC_THRESHOLDS) * n
        miscl = n_miscl / slots if slots else 0.0
        unreg = n_unreg / slots if slots else 0.0
        inacc = n_inacc / slots if slots else 0.0
        # the discount absorbs any difference between the reported mAA and the per-image recount
        discount = (1.0 - maa) - miscl - unreg - inacc
        maa_parts = {"misclustered": miscl, "unregistered": unreg, "inaccurate": inacc, "discount": discount}
        if len(pi) and not _placed(pi).any():
            # no image in any cluster (a reconstruction that failed, everything in outliers): clusterness is 0
            # only because nothing was registered, and there is no cluster to fix, so the whole gap is the mAA's
            # (the symmetric split charged half of it to "impure clusters" that did not exist)
            loss = sum(maa_parts.values())
            parts = {"clusterness": 0.0, **{k: (1.0 - score) * v / loss if loss > 0 else 0.0
                                            for k, v in maa_parts.items()}}
        else:
            parts = _split_gap(maa, clus, maa_parts)
        gap = 100.0 - 100.0 * score
        pts = {k: 100.0 * v for k, v in parts.items()}
        # make the sum exact in the reported score's own rounding (differences are ~1e-13)
        pts["discount"] = gap - sum(pts[k] for k in LOSS_PARTS if k != "discount")
        rows.append({"dataset": name, "score": 100.0 * score, "mAA": 100.0 * maa, "clusterness_score": 100.0 * clus,
                     "gap": gap, **pts, "mAA_recomputed": 100.0 * maa_re, "n_images": n,
                     "misclustered_slots": n_miscl, "unregistered_slots": n_unreg, "inaccurate_slots": n_inacc})
    counts = ["n_images", "misclustered_slots", "unregistered_slots", "inaccurate_slots"]
    cols = ["score", "mAA", "clusterness_score", "gap", *LOSS_PARTS, "mAA_recomputed", *counts]
    out = pd.DataFrame(rows, columns=["dataset", *cols]).set_index("dataset")
    if len(out):
        total = out[cols].mean(numeric_only=True)
        total[counts] = out[counts].sum()
        out.loc["total"] = total
    else:
        out.loc["total"] = [0.0] * len(cols)
    return out


# --------------------------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------------------------


def noise_summary(score_lists: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Mean, sample std (ddof=1, nan for a single value), count, min and max of each variant's repeated scores.

    Args:
        score_lists: variant name → scores of repeated runs (e.g. different seeds). Nan values are dropped.

    Returns:
        Frame indexed by variant, columns ``mean, std, n, min, max`` (nan where there is no value).
    """
    rows = []
    for name, values in score_lists.items():
        v = np.asarray([x for x in values if x is not None and not math.isnan(float(x))], dtype=float)
        n = int(v.size)
        rows.append({"variant": name, "mean": v.mean() if n else np.nan, "std": v.std(ddof=1) if n > 1 else np.nan,
                     "n": n, "min": v.min() if n else np.nan, "max": v.max() if n else np.nan})
    return pd.DataFrame(rows, columns=["variant", "mean", "std", "n", "min", "max"]).set_index("variant")


SIGNIFICANTLY_BETTER = "significantly better"
SIGNIFICANTLY_WORSE = "significantly worse"
NOT_SIGNIFICANT = "not significant"
SAME_SCORES = "same scores"
NO_SPREAD = "differs; noise unknown (repeats all equal)"
SAME_SHIFT = "differs by the same at every seed; noise unknown"
NEEDS_REPEATS = "unknown (needs repeats)"
#: every verdict :func:`compare_repeats` gives
VERDICTS = (SIGNIFICANTLY_BETTER, SIGNIFICANTLY_WORSE, NOT_SIGNIFICANT, SAME_SCORES, NO_SPREAD, SAME_SHIFT,
            NEEDS_REPEATS)


@dataclass(frozen=True)
class RepeatComparison:
    """How the repeated scores of an arm B compare with those of a reference arm A (:func:`compare_repeats`)."""

    verdict: str  # one of VERDICTS
    test: str  # "paired t", "Welch t", "one run vs repeats", or "" when no test could be made
    n_a: int  # scores of A that entered (finite ones)
    n_b: int
    delta: float  # mean of B − mean of A (nan when a side has no score); paired: mean of the per-seed differences
    p: float | None  # two-sided p-value of the test, None without one
    low: float | None  # the (1 − alpha) interval of delta, None without a test
    high: float | None
    unpaired: int = 0  # paired t: runs left out because the other arm did not run their seed


def _flat(x: np.ndarray) -> bool:
    """No spread: every value equal up to float rounding (an overall recomputed as a mean of percentages differs
    from the metric's own in the last digit, which a test would take for a measured, tiny noise)."""
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))))


def _by_seed(values: Sequence[float], seeds: Sequence[int | None]) -> dict[int, float] | None:
    """Seed → finite score, or None when a kept run's seed is unknown or repeats (no one-to-one match)."""
    kept = [(seed, float(v)) for seed, v in zip(seeds, values, strict=True)
            if v is not None and math.isfinite(float(v))]
    named = [seed for seed, _ in kept]
    return None if None in named or len(set(named)) != len(named) else dict(kept)  # type: ignore[arg-type]


def _paired(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int | None] | None,
            seeds_b: Sequence[int | None] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, b)`` of the seeds both arms ran (distinct seeds, finite scores), ordered by seed; None when there are
    fewer than two such seeds or they are under half of the larger arm's runs (pairing would then throw away more
    runs than it is worth: the arms are compared unpaired).

    A seed only one arm ran (an extra repeat, or a run that failed in the other arm) is left out of the pairs.
    """
    if seeds_a is None or seeds_b is None or len(seeds_a) != len(a) or len(seeds_b) != len(b):
        return None
    ka, kb = _by_seed(a, seeds_a), _by_seed(b, seeds_b)
    if ka is None or kb is None:
        return None
    shared = sorted(set(ka) & set(kb))
    if len(shared) < 2 or 2 * len(shared) < max(len(ka), len(kb)):
        return None
    return np.array([ka[s] for s in shared]), np.array([kb[s] for s in shared])


def compare_repeats(a: Sequence[float], b: Sequence[float], seeds_a: Sequence[int | None] | None = None,
                    seeds_b: Sequence[int | None] | None = None, alpha: float = 0.05) -> RepeatComparison:
    """Whether arm B's scores differ from reference arm A's by more than run-to-run noise.

    The test follows the design:

    * both arms ran the same seeds (``seeds_a`` / ``seeds_b`` given, distinct seeds, at least two shared): a
      **paired** t-test on the per-seed differences (:func:`scipy.stats.ttest_rel`). With the features and
      matches shared through the cache, one seed's two runs move together (r ≈ 0.97 on ETs), so the pairing
      removes most of the noise; it is valid whatever that correlation is. Seeds only one arm ran (an extra
      repeat, a run that failed in the other arm) are left out (``unpaired`` counts them; ``n_a`` / ``n_b`` and
      ``delta`` are then the pairs'), as long as the shared seeds are at least half of each arm's runs.
    * both arms repeated otherwise: **Welch's** two-sample t-test (:func:`scipy.stats.ttest_ind`,
      ``equal_var=False``).
    * one run against an arm of n repeats: the run is compared with the arm's **prediction interval**,
      t = (x − mean) / (s·√(1 + 1/n)) with n − 1 degrees of freedom (a bare |Δ| ≤ 2·s rule called a run of the
      same distribution significant 35 % of the time with n = 2).

    Repeats that all scored the same (up to float rounding) measure no noise: then equal means are
    :data:`SAME_SCORES`, different ones :data:`NO_SPREAD` (or :data:`SAME_SHIFT` for paired seeds), never
    significant. A p above ``alpha`` is :data:`NOT_SIGNIFICANT`, which is not "the same": the interval says how
    large a difference the repeats can rule out.

    Args:
        a: the reference arm's scores (nan / None are left out).
        b: the other arm's scores.
        seeds_a: the mapper seed of each of ``a``'s runs (None where unknown), for pairing.
        seeds_b: the same for ``b``.
        alpha: significance level; the interval is the (1 − alpha) one.

    Returns:
        A :class:`RepeatComparison`; ``delta`` is mean(b) − mean(a).
    """
    from scipy import stats

    xa, xb = _finite(a), _finite(b)
    na, nb = int(xa.size), int(xb.size)
    if na == 0 or nb == 0:
        return RepeatComparison(NEEDS_REPEATS, "", na, nb, float("nan"), None, None, None)
    delta = float(xb.mean() - xa.mean())
    tol = 1e-9 * max(1.0, float(np.max(np.abs(np.concatenate([xa, xb])))))

    def judged(test: str, p: float, low: float, high: float) -> RepeatComparison:
        verdict = NOT_SIGNIFICANT if not p <= alpha else SIGNIFICANTLY_BETTER if delta > 0 else SIGNIFICANTLY_WORSE
        return RepeatComparison(verdict, test, na, nb, delta, float(p), float(low), float(high))

    def untestable(shift: str) -> RepeatComparison:
        return RepeatComparison(SAME_SCORES if abs(delta) <= tol else shift, "", na, nb, delta, None, None, None)

    paired = _paired(a, b, seeds_a, seeds_b)
    with warnings.catch_warnings():  # (scipy warns about near-constant samples; the checks above handle them)
        warnings.simplefilter("ignore", RuntimeWarning)
        if paired is not None:
            pa, pb = paired
            unpaired = na + nb - 2 * len(pa)
            na = nb = len(pa)
            delta = float(np.mean(pb - pa))
            if _flat(pb - pa):
                return replace(untestable(SAME_SHIFT), unpaired=unpaired)
            res = stats.ttest_rel(pb, pa)
            ci = res.confidence_interval(1.0 - alpha)
            return replace(judged("paired t", res.pvalue, ci.low, ci.high), unpaired=unpaired)
        if na >= 2 and nb >= 2:
            if _flat(xa) and _flat(xb):
                return untestable(NO_SPREAD)
            res = stats.ttest_ind(xb, xa, equal_var=False)
            ci = res.confidence_interval(1.0 - alpha)
            return judged("Welch t", res.pvalue, ci.low, ci.high)
        if na == 1 and nb == 1:
            return RepeatComparison(NEEDS_REPEATS, "", na, nb, delta, None, None, None)
        many = xa if na >= 2 else xb
        if _flat(many):
            return untestable(NO_SPREAD)
        n = many.size
        scale = float(many.std(ddof=1)) * math.sqrt(1.0 + 1.0 / n)
        t = abs(delta) / scale
        p = 2.0 * float(stats.t.sf(t, n - 1))
        half = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1)) * scale
        return judged("one run vs repeats", p, delta - half, delta + half)


def within_noise(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> bool | None:
    """Whether two sets of repeated scores are indistinguishable from run-to-run noise (Welch's t-test through
    :func:`compare_repeats`, no pairing): the difference is within noise when ``p > alpha``.

    Returns:
        ``True`` (within noise, or the same scores), ``False`` (a significant difference) or ``None`` (unknown:
        a side has fewer than two values, or no spread to test a different mean against).
    """
    xa, xb = _finite(a), _finite(b)
    if xa.size < 2 or xb.size < 2:
        return None
    verdict = compare_repeats(xa, xb, alpha=alpha).verdict
    if verdict in (NOT_SIGNIFICANT, SAME_SCORES):
        return True
    return False if verdict in (SIGNIFICANTLY_BETTER, SIGNIFICANTLY_WORSE) else None


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test between two sets of repeated scores (:func:`within_noise`'s test).

    Returns:
        The p-value, or None when either side has fewer than two values or both have no spread (up to float
        rounding: deterministic runs, no noise to test against).
    """
    from scipy import stats

    xa, xb = _finite(a), _finite(b)
    if xa.size < 2 or xb.size < 2 or (_flat(xa) and _flat(xb)):
        return None
    with warnings.catch_warnings():  # one side's repeats all equal (common with seeds): scipy warns, the test holds
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(xa, xb, equal_var=False).pvalue)


def _finite(values: Sequence[float]) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and not math.isnan(float(x))], dtype=float)


# --------------------------------------------------------------------------------------------------------------
# per-image delta
# --------------------------------------------------------------------------------------------------------------


def _change(in_a: pd.Series, in_b: pd.Series) -> pd.Series:
    """``gained`` (only b), ``lost`` (only a), ``both``, ``neither`` per row."""
    out = np.where(in_a & in_b, "both", np.where(in_b, "gained", np.where(in_a, "lost", "neither")))
    return pd.Series(out, index=in_a.index, dtype=object)


def image_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per image of one run's per_image.csv: its keys (``dataset, scene, image``), ``registered`` (in its scene's
    cluster with a finite pose), ``passes`` (of the four thresholds the metric uses), ``error`` and ``status``
    (:func:`image_statuses`); what the Images tab and Compare's per-image table show."""
    keys = [c for c in ("dataset", "scene", "image") if c in frame]
    out = frame[keys].copy()
    out["registered"] = _registered(frame).to_numpy() if len(frame) else np.zeros(0, bool)
    out["passes"] = _pass_matrix(frame).sum(axis=1) if len(frame) else np.zeros(0, int)
    out["error"] = pd.to_numeric(frame["error"], errors="coerce") if "error" in frame else np.nan
    out["status"] = image_statuses(frame).to_numpy() if len(frame) else np.zeros(0, object)
    return out


def per_image_delta(a: pd.DataFrame, b: pd.DataFrame, datasets: Collection[str] | None = None) -> pd.DataFrame:
    """Compare the per-image tables of two runs (``a`` = reference, ``b`` = new run).

    An image is *registered* when it sits in the cluster associated with its GT scene with a finite pose, and
    *passing* when it passes at least one of the four thresholds the metric uses. Images missing from one table
    count as neither registered nor passing there.

    Args:
        a: ``per_image.csv`` frame of the reference run.
        b: ``per_image.csv`` frame of the new run.
        datasets: compare only the images of these datasets (the ones both runs scored on the same data, see
            :func:`compare_scope`); None compares everything. Without it, a dataset only one run covers shows
            every one of its images as ``lost`` or ``gained``.

    Returns:
        One row per image (outer join on ``dataset, scene, image``) with ``status_a, status_b``
        (:func:`image_statuses`, ``absent`` where a run lacks the image), ``registered_a, registered_b,
        registered_change, passes_a, passes_b`` (thresholds passed, 0..4), ``pass_delta`` (b - a),
        ``pass_change``, ``error_a, error_b, error_delta`` (b - a, metres; nan when either is nan). The change
        columns are ``gained`` (only in b), ``lost`` (only in a), ``both`` or ``neither``. Sorted with changed
        images first.
    """
    keys = ["dataset", "scene", "image"]
    if datasets is not None:
        keep = {str(d) for d in datasets}
        a = a[a["dataset"].astype(str).isin(keep)] if "dataset" in a else a.iloc[0:0]
        b = b[b["dataset"].astype(str).isin(keep)] if "dataset" in b else b.iloc[0:0]
    sa = image_summary(a).rename(columns={"registered": "registered_a", "passes": "passes_a", "error": "error_a",
                                          "status": "status_a"})
    sb = image_summary(b).rename(columns={"registered": "registered_b", "passes": "passes_b", "error": "error_b",
                                          "status": "status_b"})
    for frame in (sa, sb):
        for k in keys:
            if k not in frame:
                frame[k] = ""
    m = sa.merge(sb, on=keys, how="outer", sort=False)
    for col in ("registered_a", "registered_b"):
        m[col] = m[col].astype("boolean").fillna(False).astype(bool)
    for col in ("passes_a", "passes_b"):
        m[col] = pd.to_numeric(m[col]).fillna(0).astype(int)
    m["registered_change"] = _change(m["registered_a"], m["registered_b"])
    m["pass_delta"] = m["passes_b"] - m["passes_a"]
    m["pass_change"] = _change(m["passes_a"] > 0, m["passes_b"] > 0)
    m["error_delta"] = m["error_b"] - m["error_a"]
    order = {"lost": 0, "gained": 1, "both": 2, "neither": 3}
    rank = m["pass_change"].map(order) * 4 + m["registered_change"].map(order)
    m = m.assign(_rank=rank, _abs=-m["pass_delta"].abs()).sort_values(["_rank", "_abs"], kind="stable")
    for col in ("status_a", "status_b"):  # an image one run does not have
        m[col] = m[col].fillna("absent")
    cols = [*keys, "status_a", "status_b", "registered_a", "registered_b", "registered_change", "passes_a",
            "passes_b", "pass_delta", "pass_change", "error_a", "error_b", "error_delta"]
    return m[cols].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# config diff
# --------------------------------------------------------------------------------------------------------------


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``{"section.key": value}`` (lists and other values are leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def _same(x: Any, y: Any) -> bool:
    """Equality that treats nan == nan, compares lists / tuples element-wise and never equates bools to numbers."""
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, bool) != isinstance(y, bool):
        return False
    try:
        return bool(x == y)
    except (TypeError, ValueError):
        return False


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> pd.DataFrame:
    """Differences between two (nested) configs, keyed by ``section.key``.

    Args:
        a: reference config (e.g. ``config.toml`` of run A, parsed, or ``dataclasses.asdict`` of a config).
        b: the other config.

    Returns:
        Frame with columns ``key, a, b, change`` (``changed``, ``added`` = only in b, ``removed`` = only in a),
        one row per differing key, sorted by key; values are kept as Python objects (missing = ``None``).
    """
    fa, fb = flatten_config(a), flatten_config(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if key in fa and key in fb:
            if _same(fa[key], fb[key]):
                continue
            rows.append({"key": key, "a": fa[key], "b": fb[key], "change": "changed"})
        elif key in fb:
            rows.append({"key": key, "a": None, "b": fb[key], "change": "added"})
        else:
            rows.append({"key": key, "a": fa[key], "b": None, "change": "removed"})
    return pd.DataFrame(rows, columns=["key", "a", "b", "change"], dtype=object)


# --------------------------------------------------------------------------------------------------------------
# comparing runs: what can be compared
# --------------------------------------------------------------------------------------------------------------

#: ``run.json`` statuses whose ``scores.json`` may enter a comparison (a failed, cancelled or still running run may
#: hold no scores, or stale ones from an earlier attempt).
SCORED_STATUSES: tuple[str, ...] = ("done",)
#: Config keys the runs of one group are expected to differ in (a group is repeated seeds of one experiment).
#: ``config_hash`` covers the whole config, seed included, so it differs between seeds and cannot tell them apart.
SEED_KEYS: tuple[str, ...] = ("reconstruction.seed",)


def unscored_reason(status: str | None, scores: Mapping[str, Any] | None) -> str | None:
    """Why a run cannot enter score aggregates, or None when it can.

    Args:
        status: ``run.json`` ``status`` (``done``, ``failed``, ``cancelled``, ``running``, ...).
        scores: ``scores.json`` content, or None when the run has none.

    Returns:
        None for a finished run with a finite overall score and its datasets' scores; else a short reason such as
        ``"status failed"``, ``"no scores"`` or ``"scores.json has no per-dataset scores"`` (a hand-edited or
        truncated file: with its overall alone, no dataset was scored by every run and nothing could be compared).
    """
    if str(status) not in SCORED_STATUSES:
        return f"status {status}"
    value = (scores or {}).get("score")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return "no scores"
    datasets = (scores or {}).get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        return "scores.json has no per-dataset scores"
    return None


@dataclass
class CompareScope:
    """What the scored runs of a comparison have in common (see :func:`compare_scope`).

    Attributes:
        shared: ``(data_root, dataset)`` pairs every run has a score for, in first-seen order. A run has a single
            data root, so when this is not empty all runs share one root.
        roots: arm → distinct data roots of its runs.
        runs: arm → number of runs.
        left_out: ``(data_root, dataset)`` pairs not in every run → arm → how many of that arm's runs have it.
    """

    shared: list[tuple[str, str]]
    roots: dict[str, list[str]]
    runs: dict[str, int]
    left_out: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    @property
    def shared_datasets(self) -> list[str]:
        """Names of the shared datasets."""
        return [d for _, d in self.shared]

    @property
    def complete(self) -> bool:
        """True when every run covers the same datasets of the same data root (nothing is left out)."""
        return not self.left_out

    def messages(self) -> list[str]:
        """Plain sentences naming what differs between the runs (empty when nothing does)."""
        out: list[str] = []
        all_roots = list(dict.fromkeys(r for roots in self.roots.values() for r in roots))
        if len(all_roots) > 1:
            parts = [f"{arm} → {', '.join(roots)}" for arm, roots in self.roots.items()]
            out.append("Different data roots: " + "; ".join(parts) + ".")
        if self.left_out:
            groups: dict[tuple[str, tuple[tuple[str, int], ...]], list[str]] = {}
            for (root, ds), have in self.left_out.items():
                groups.setdefault((root, tuple(have.items())), []).append(ds)
            items = []
            for (root, have), names in groups.items():
                where = ", ".join(f"{arm}" + (f" ({n}/{self.runs[arm]} runs)" if self.runs[arm] > 1 else "")
                                  for arm, n in have)
                items.append(", ".join(names) + (f" ({root})" if len(all_roots) > 1 else "") + f" only in {where}")
            out.append("Datasets not scored by every run: " + "; ".join(items) + ".")
        return out


def same_ground_truth_hashes(mine: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    """Whether two ``{dataset: ground-truth hash}`` maps say the same data: at least one dataset shared, and every
    shared one with the same hash."""
    shared = set(mine) & set(theirs)
    return bool(shared) and all(str(mine[d]) == str(theirs[d]) for d in shared)


def same_data_roots(runs: Sequence[tuple[str, Mapping[str, str] | None]]) -> dict[str, str]:
    """Data roots that hold the same ground truth, mapped onto one of them.

    A teammate's bundle records the teammate's own path to the data, so a root differs even when the data does not.
    Runs record one ground-truth hash per dataset (``run.json`` ``gt_hashes``); a root whose datasets all have the
    hash that an earlier root has for them (at least one shared, none differing) is taken as that root.

    Args:
        runs: ``(data_root, {dataset: hash} or None)`` per run, in order (roots normalised as for
            :func:`compare_scope`).

    Returns:
        ``{root: canonical root}`` for every root given (itself when nothing matches it).
    """
    known: dict[str, dict[str, str]] = {}
    for root, hashes in runs:
        if hashes:
            known.setdefault(str(root), {}).update({str(k): str(v) for k, v in hashes.items()})
    out: dict[str, str] = {}
    canon: list[str] = []
    for root, _ in runs:
        root = str(root)
        if root in out:
            continue
        mine = known.get(root, {})
        target = root
        for other in canon:
            if same_ground_truth_hashes(mine, known.get(other, {})):
                target = other
                break
        out[root] = target
        if target == root:
            canon.append(root)
    return out


def compare_scope(arms: Mapping[str, Sequence[tuple[str, Iterable[str]]]]) -> CompareScope:
    """The ``(data_root, dataset)`` pairs all runs of a comparison share, and what only some of them have.

    Datasets are told apart by data root and name: two roots may hold different data under one dataset name
    (two synthetic benchmarks), so only the same name in the same root counts as the same dataset.

    Args:
        arms: arm label → its scored runs, each as ``(data_root, dataset names)`` (the names of
            ``scores.json["datasets"]``; normalise the roots first, e.g. resolved absolute paths).

    Returns:
        The :class:`CompareScope`; ``shared`` is empty when there is no run at all.
    """
    keys: list[set[tuple[str, str]]] = []
    order: list[tuple[str, str]] = []
    roots: dict[str, list[str]] = {}
    runs: dict[str, int] = {}
    per_arm: dict[str, list[set[tuple[str, str]]]] = {}
    for arm, members in arms.items():
        roots[arm] = []
        per_arm[arm] = []
        runs[arm] = len(members)
        for root, names in members:
            root = str(root)
            if root not in roots[arm]:
                roots[arm].append(root)
            ks = [(root, str(d)) for d in names]
            order += [k for k in ks if k not in order]
            keys.append(set(ks))
            per_arm[arm].append(set(ks))
    common = set.intersection(*keys) if keys else set()
    shared = [k for k in order if k in common]
    left_out: dict[tuple[str, str], dict[str, int]] = {}
    for k in order:
        if k in common:
            continue
        left_out[k] = {arm: n for arm, sets in per_arm.items() if (n := sum(k in s for s in sets))}
    return CompareScope(shared, {a: r for a, r in roots.items() if r}, runs, left_out)


def overall_on(scores: Mapping[str, Any] | None, datasets: Sequence[str], metric: str = "score") -> float:
    """A run's overall ``metric`` over some of its datasets, aggregated as the metric does (mean over datasets).

    The official overall (:func:`imc_core.metric.score`) is ``100 * mean`` of the per-dataset fractions, i.e. the
    mean of the per-dataset percentages of ``scores.json``; restricted to ``datasets`` it is the same mean over
    those. When ``datasets`` are exactly the run's datasets, the run's own overall value is returned unchanged.

    Args:
        scores: ``scores.json`` content (percentages).
        datasets: dataset names to average over.
        metric: ``score``, ``mAA`` or ``clusterness``.

    Returns:
        The mean in percent; nan when ``datasets`` is empty or a dataset or value is missing.
    """
    if not scores or not datasets:
        return float("nan")
    per = scores.get("datasets") or {}
    top = scores.get(metric)
    if set(per) == set(datasets) and isinstance(top, (int, float)) and not isinstance(top, bool):
        return float(top)
    values = []
    for d in datasets:
        v = (per.get(d) or {}).get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            return float("nan")
        values.append(float(v))
    return float(np.mean(values))


def scores_on(scores: Mapping[str, Any] | None, datasets: Sequence[str]) -> dict[str, Any]:
    """``scores.json`` content restricted to ``datasets``: their per-dataset entries and the overall score / mAA /
    clusterness recomputed over them with :func:`overall_on` (unchanged when they are all of the run's datasets).

    Returns:
        ``{"score", "mAA", "clusterness", "datasets": {name: {...}}}``; empty dict for no scores.
    """
    if not scores:
        return {}
    per = scores.get("datasets") or {}
    if set(per) == set(datasets):
        return dict(scores)
    out: dict[str, Any] = {m: overall_on(scores, datasets, m) for m in ("score", "mAA", "clusterness")}
    out["datasets"] = {d: per[d] for d in datasets if d in per}
    return out


def group_config_spread(configs: Mapping[str, Mapping[str, Any]],
                        ignore: Collection[str] = SEED_KEYS) -> pd.DataFrame:
    """Config keys whose value differs between the runs of one group (beyond the seed it repeats over).

    A group name reused for a different experiment would otherwise be averaged as if its runs were seeds.

    Args:
        configs: run id → parsed ``config.toml`` (the ``meta`` section, which records variant and overrides, is
            ignored).
        ignore: flattened keys expected to differ (the seed).

    Returns:
        Frame with column ``key`` then one column per run (its value, None when absent), one row per differing
        key, sorted by key; empty (still with those columns) when all runs agree.
    """
    flat = {rid: flatten_config({k: v for k, v in cfg.items() if k != "meta"}) for rid, cfg in configs.items()}
    ids = list(flat)
    rows = []
    for key in sorted({k for f in flat.values() for k in f} - set(ignore)):
        values = [flat[r].get(key) for r in ids]
        present = [key in flat[r] for r in ids]
        if all(present) and all(_same(values[0], v) for v in values[1:]):
            continue
        rows.append({"key": key, **dict(zip(ids, values, strict=True))})
    return pd.DataFrame(rows, columns=["key", *ids], dtype=object)


def default_pair(arms: Mapping[str, Sequence[str]], reference: str | None = None) -> tuple[str, str] | None:
    """Default runs (A, B) for a two-run view such as per-image gains and losses: one run of each side.

    Args:
        arms: arm label → ids of its usable runs (scored, with a per-image table), in display order.
        reference: the reference arm (default: the first arm with a run).

    Returns:
        ``(a, b)``: the first run of the reference arm and the first run of the next arm that has one; two runs
        of the reference arm when no other arm has any; None with fewer than two runs in all.
    """
    filled = {k: list(v) for k, v in arms.items() if v}
    if reference not in filled:
        reference = next(iter(filled), None)
    if reference is None:
        return None
    a = filled[reference][0]
    for label, ids in filled.items():
        if label != reference:
            return a, ids[0]
    return (a, filled[reference][1]) if len(filled[reference]) > 1 else None


# --------------------------------------------------------------------------------------------------------------
# test-split runs
# --------------------------------------------------------------------------------------------------------------


def submission_summary(sub: pd.DataFrame) -> pd.DataFrame:
    """What a submission holds per dataset, without ground truth (a test-split run): images, registered images
    (finite pose), clusters and the largest one, outliers.

    Args:
        sub: pose frame of a submission (:func:`imc_core.submission.read_pose_csv`).

    Returns:
        One row per dataset, in file order: ``dataset, images, registered, clusters, largest_cluster, outliers``.
    """
    cols = ["dataset", "images", "registered", "clusters", "largest_cluster", "outliers"]
    if sub is None or sub.empty:
        return pd.DataFrame(columns=cols)
    from .submission import POSE_COLS

    finite = np.isfinite(sub[POSE_COLS].to_numpy(dtype=float)).all(axis=1)
    rows = []
    for name, g in sub.assign(_ok=finite).groupby("dataset", sort=False):
        scene = g["scene"].astype(str)
        clustered = g[scene != "outliers"]
        sizes = clustered.groupby("scene").size()
        rows.append({"dataset": str(name), "images": len(g), "registered": int(g["_ok"].sum()),
                     "clusters": int(len(sizes)), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
                     "outliers": int((scene == "outliers").sum())})
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------------------ appearance embedding


def pooled_local_descriptors(features_path: str | Path, names: Sequence[str]) -> np.ndarray:
    """One appearance vector per image from its cached local features (a stand-in when a run has no global ones).

    Each image's local descriptors are L2-normalised, averaged, and the mean is L2-normalised again (sum pooling).
    It is a weak global descriptor, but enough to see whether the scenes of a dataset separate by appearance.

    Args:
        features_path: a ``features.h5`` (hloc layout, one group per image).
        names: images to describe, in output order.

    Returns:
        (N, D) float32; the row of an image without features (missing group or no keypoints) is NaN.

    Raises:
        InputError: the file cannot be read.
    """
    import h5py

    path = Path(features_path)
    rows: list[np.ndarray | None] = []
    try:
        with h5py.File(path, "r") as f:
            for name in names:
                g = f.get(str(name))
                desc = np.asarray(g["descriptors"][()], dtype=np.float32) if g is not None and "descriptors" in g \
                    else np.zeros((0, 0), np.float32)
                if desc.ndim != 2 or len(desc) == 0:
                    rows.append(None)
                    continue
                desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
                mean = desc.mean(axis=0)
                rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    except OSError as err:
        raise InputError(path, f"cannot read features file: {err}") from None
    dims = {len(r) for r in rows if r is not None}
    if len(dims) > 1:
        raise InputError(path, f"images have descriptors of different sizes {sorted(dims)}")
    dim = dims.pop() if dims else 0
    out = np.full((len(rows), dim), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = r
    return out


def pca_2d(desc: np.ndarray) -> np.ndarray:
    """Project descriptors to 2-D with PCA (scikit-learn, exact SVD: deterministic).

    Args:
        desc: (N, D); rows containing NaN are left out of the fit.

    Returns:
        (N, 2) float; NaN for the rows left out. With fewer than 3 usable rows the first two coordinates of the
        centred data are returned instead (PCA needs more rows than components).
    """
    from sklearn.decomposition import PCA

    desc = np.asarray(desc, dtype=np.float64)
    out = np.full((len(desc), 2), np.nan)
    if desc.ndim != 2 or len(desc) == 0:
        return out
    ok = np.isfinite(desc).all(axis=1)
    x = desc[ok]
    if len(x) == 0:
        return out
    if len(x) < 3 or x.shape[1] < 2:
        centred = x - x.mean(axis=0)
        pad = np.zeros((len(x), 2))
        pad[:, : min(2, x.shape[1])] = centred[:, :2]
        out[ok] = pad
        return out
    out[ok] = PCA(n_components=2, svd_solver="full").fit_transform(x)
    return out
