"""The IMC-2025 score, exact in behaviour and vectorised.

This module re-implements the Kaggle IMC-2025 metric (``imc25-utils``, ``score()`` with its defaults
``inl_cf=0``, ``strict_cf=-1``, ``skip_top_thresholds=2``, ``to_dec=3``, ``combo_mode="harmonic"``) so that it returns
the same numbers, but evaluates all camera triplets in batches instead of one Python iteration per triplet.

How the official code behaves, and how each behaviour is mirrored here (the comments marked *official* in the code
below refer to this list):

1. **Validation** (``check_data``): per GT dataset, in GT order: an image twice in the GT dataset is an error; the
   dataset must be in the submission; every submitted image of that dataset must be a GT image, and each only once
   (a second occurrence in another cluster is reported as "does not belong"); every GT image must be submitted.
   Submitted datasets that are not in the GT are ignored (here: a warning). The official reader keeps the *last*
   row when one image appears twice in the same cluster; we reject every duplicate instead.
2. **Camera centres** ``c = -Rᵀ t``; a submitted camera whose centre is not finite is dropped before registration
   (``idx_cams``) but still counts in the overlap and the cluster size.
3. **Pairs**: every (GT scene, submitted cluster) pair where neither is ``outliers`` is registered on the cameras
   present in both (``good_cams``, in GT file order). Pairs involving ``outliers`` get an empty model and *zero*
   in every table (overlap, GT size, cluster size, mAA).
4. **Registration** (``register_by_Horn`` with ``inl_cf=0, strict_cf=-1``): the strict-inlier skip never fires
   (``err < -th`` is never true) and the refinement condition reduces to ``#inliers > 2``. For EVERY triplet
   ``i < j < k`` in lexicographic order a similarity is fitted with Horn's quaternion method; its inliers at each
   threshold ``q`` (squared error ``< th_q²``) are refitted with the SVD (Kabsch) method, scale = ratio of RMS
   deviations from the centroids, when there are more than two of them and the same inlier set did not already
   appear at a lower ``q`` of the same triplet. Each refitted model is scored at *all* thresholds and replaces the
   best model of threshold ``k`` when it has more inliers, or as many and a strictly smaller sum of squared errors
   over all valid cameras. Hence the best model of a threshold is the candidate with (max inliers, min SSE, earliest
   in (triplet, q) order); with no candidate (fewer than 3 valid cameras, or no triplet with 3 inliers at any
   threshold) every error is ``inf``. Candidates are refitted from their inlier set only, so equal sets give equal
   models: we refit each distinct set once per batch and break ties by first appearance, which is the same thing.
5. **Degenerate fits**: when all the submitted centres of a fit coincide the official scale is ``sqrt(x / 0)`` =
   ``inf`` and the model is all ``nan``/``inf``: no camera is an inlier, the SSE is not finite, and such a model
   never becomes a best model. GT centres that are not finite (not possible with :func:`imc_core.data.read_labels`)
   make every SSE ``nan``; the official update then only fires on strictly more inliers, which we reproduce by
   comparing SSEs with ``nan`` read as ``+inf``.
6. **mAA of a pair** (``mAA_on_cameras``): for the thresholds after the first two (by position, not by value),
   ``Σ max(0, #(err < th) - 3) / (4 · (m - 3))``, ``m`` = number of GT images of the scene (not of the pair),
   ``err`` = ``sqrt`` of the squared error under that threshold's best model; ``0`` when the numerator is ``0``.
7. **Association**: for each GT scene (``outliers`` included, removed afterwards) the cluster with the largest
   overlap, then the largest pair mAA, then the earliest first appearance of the cluster name among the submission
   rows of the dataset (``np.lexsort`` is stable). A cluster may serve several scenes (its size then counts several
   times). A scene whose every overlap is zero takes the first cluster in file order: an ordinary cluster then adds
   its whole size to the clusterness denominator and ``m`` to the mAA denominator; if that first cluster is
   ``outliers`` the scene adds 0 to both and its ``-3`` still lowers the pooled mAA denominator, so the dataset mAA
   can exceed 100% (reproduced, reported as a warning).
8. **Dataset scores**: clusterness = ``Σ overlap / Σ cluster size`` over the associated pairs of the non-outlier
   scenes (0 when the denominator is 0); mAA pools ``a = Σ_scenes Σ_thr max(0, count - 3)`` over
   ``b = max(0, 4 · (Σ m - 3 · #scenes))`` (0 when ``b == 0``). A GT scene with fewer than 3 images still
   subtracts 3 (its ``m - 3`` is negative). score = harmonic mean (0 when both are 0).
9. **Final**: ``100 · mean`` over the GT datasets of score, mAA and clusterness.

The registration is exact in behaviour; floating point differs from the official code only in the last bits of
intermediate sums (the triplet Horn fit mirrors the official operation order), which changes a result only when an
error lies within ~1e-15 (relative) of a threshold.

Speed (``MetricConfig.prefilter``, on by default): triplet models and refits are first computed approximately —
moments of the camera subsets, the largest eigenpair of Horn's 4×4 matrix by Newton's method and an adjugate (no
LAPACK call per model) — together with a generous bound on their error. A triplet whose errors are all farther than
that bound from every threshold has the same inlier sets as the exact computation; the others are recomputed exactly
(official-order Horn with ``eigh``). An inlier set is refitted exactly (SVD, as the official code) only when its
bounds say it can still be the best model of a threshold: the best model of a threshold is the candidate with the
largest (inliers, −SSE, −order), so a set whose inlier upper bound is below the largest lower bound seen (or equal,
with an SSE certainly larger) is beaten whatever is refitted after it, and the surviving sets may be refitted in any
order.

With numba (``MetricConfig.numba``, on by default; compiled on first use, cached on disk) this approximate pass is
fused per camera pair: one loop over the triplets (fast model, errors, threshold bands, inlier bit sets), a hash table
that drops the sets already met, and the approximate refit of each new set with an early exit when it cannot reach
the running bounds. No (models × cameras) array is built; memory is bounded by ``chunk_bytes`` (hash table, queue of
uncertain triplets, buffer of surviving sets). Without numba the same path runs in NumPy, in batches of about
``chunk_bytes``. Both paths give the same result; the exact numbers always come from the NumPy functions.
"""

from __future__ import annotations

import math
import os
import warnings as _warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = [
    "MetricConfig",
    "DatasetScore",
    "ScoreResult",
    "Registration",
    "register_cameras",
    "score",
    "score_files",
]

OUTLIERS = "outliers"
_EPS = np.finfo(float).eps * 4.0
_R_COLS = [f"r{i}{j}" for i in range(3) for j in range(3)]
_T_COLS = ["tx", "ty", "tz"]


@dataclass(frozen=True)
class MetricConfig:
    """Constants of the official metric and memory knobs of this implementation.

    Attributes:
        skip_top_thresholds: thresholds (by position) left out of the mAA; official 2.
        to_dec: cameras discounted per scene and threshold; official 3.
        chunk_bytes: rough working-set budget of one batch of triplets / refits, bytes.
        prefilter: refit every inlier set approximately first (moments + closed-form eigen solver) and refit
            exactly only those that can still become a best model; ``False`` refits every set exactly.
        numba: run the prefilter path with the numba kernels (compiled on first use, cached on disk); ``False``, or
            numba missing, uses the NumPy implementation of the same path (same results, slower).
        numba_min_cameras: below this many cameras in a (scene, cluster) pair the NumPy path is used: it is fast
            there, and a small submission then never pays numba's import (≈0.6 s per process).
        threads: threads walking one (scene, cluster) pair's triplets on the numba path; 0 = every core this
            process may use. A pair with fewer than 50,000 triplets per thread uses fewer (same result either way).
    """

    skip_top_thresholds: int = 2
    to_dec: int = 3
    chunk_bytes: int = 96 * 2**20
    prefilter: bool = True
    numba: bool = True
    numba_min_cameras: int = 40
    threads: int = 0


DEFAULT_CONFIG = MetricConfig()


# ---------------------------------------------------------------------------------------------------- results


@dataclass
class DatasetScore:
    """Scores of one dataset, percentages."""

    score: float
    mAA: float
    clusterness: float


@dataclass
class ScoreResult:
    """Everything the metric computed.

    Attributes:
        score: final score, percent (mean over datasets of the harmonic mean of mAA and clusterness).
        mAA: mean over datasets of the dataset mAA, percent.
        clusterness: mean over datasets of the dataset clusterness, percent.
        datasets: per dataset :class:`DatasetScore`, GT order.
        scenes: one row per (dataset, non-outlier GT scene): ``dataset, scene, n_images, cluster, cluster_size,
            overlap, mAA, registered_0..registered_{r-1}, warning`` (the sizes are those the metric used).
        per_image: one row per GT image (empty when ``details=False``).
        alignments: ``{dataset: {scene: {"cluster", "thresholds", "models"}}}`` (empty when ``details=False``).
        warnings: human-readable notes on quirks met while scoring.
        convention: the submission's low datasets scored under each reading of their poses
            (:mod:`imc_core.convention`: ``reading, meaning, mAA, score``), when :func:`score_files` was asked to
            check and a dataset is below :data:`imc_core.convention.LOW_MAA` mAA; else None.
    """

    score: float
    mAA: float
    clusterness: float
    datasets: dict[str, DatasetScore]
    scenes: pd.DataFrame
    per_image: pd.DataFrame
    alignments: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    convention: pd.DataFrame | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``score --json`` object: ``{"score", "mAA", "clusterness", "datasets": {name: {...}}}``."""
        return {
            "score": float(self.score),
            "mAA": float(self.mAA),
            "clusterness": float(self.clusterness),
            "datasets": {
                name: {"score": float(d.score), "mAA": float(d.mAA), "clusterness": float(d.clusterness)}
                for name, d in self.datasets.items()
            },
        }


@dataclass
class Registration:
    """Best similarity per threshold for one (GT scene, cluster) pair, official ``register_by_Horn`` semantics.

    Attributes:
        valid: ``(n,)`` bool, submitted centre finite (only these are registered).
        err: ``(n_valid, r)`` distance of each valid camera to its GT centre under each threshold's best model
            (``inf`` where a threshold has no model).
        n_inliers: ``(r,)`` inliers (squared error ``< th²``) of each best model.
        sse: ``(r,)`` sum of squared errors of each best model over the valid cameras (``inf`` without model).
        scale: ``(r,)`` scale of each best model (``nan`` without model).
        R: ``(r, 3, 3)`` rotation of each best model.
        t: ``(r, 3)`` translation of each best model: ``x_gt ≈ scale · R @ x_pred + t``.
        has_model: ``(r,)`` bool.
    """

    valid: np.ndarray
    err: np.ndarray
    n_inliers: np.ndarray
    sse: np.ndarray
    scale: np.ndarray
    R: np.ndarray
    t: np.ndarray
    has_model: np.ndarray


# ------------------------------------------------------------------------------------------- batched model fits


def _horn_triplets(P: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity ``Q ≈ s R P + t`` of each triplet with Horn's quaternion method (official op order).

    Args:
        P: ``(T, 3, 3)`` submitted centres, ``[triplet, point, xyz]``.
        Q: ``(T, 3, 3)`` GT centres, same layout.

    Returns:
        ``sR`` ``(T, 3, 3)`` (scaled rotation), ``t`` ``(T, 3)``, ``s`` ``(T,)``. Degenerate triplets (all submitted
        centres equal) give non-finite values, as in the official code.
    """
    T = P.shape[0]
    # official: t0 = -mean(v0); v0 += t0 (np.mean of 3 values sums left to right).
    mu0 = ((P[:, 0] + P[:, 1]) + P[:, 2]) / 3.0
    mu1 = ((Q[:, 0] + Q[:, 1]) + Q[:, 2]) / 3.0
    a = P + (-mu0)[:, None, :]
    b = Q + (-mu1)[:, None, :]
    prod = a[:, :, :, None] * b[:, :, None, :]  # (T, point, i, j) = a_i b_j
    S = (prod[:, 0] + prod[:, 1]) + prod[:, 2]
    xx, yy, zz = S[:, 0, 0], S[:, 1, 1], S[:, 2, 2]
    xy, yz, zx = S[:, 0, 1], S[:, 1, 2], S[:, 2, 0]
    xz, yx, zy = S[:, 0, 2], S[:, 1, 0], S[:, 2, 1]
    N = np.zeros((T, 4, 4))
    N[:, 0, 0] = (xx + yy) + zz
    N[:, 1, 0] = yz - zy
    N[:, 1, 1] = (xx - yy) - zz
    N[:, 2, 0] = zx - xz
    N[:, 2, 1] = xy + yx
    N[:, 2, 2] = (yy - xx) - zz
    N[:, 3, 0] = xy - yx
    N[:, 3, 1] = zx + xz
    N[:, 3, 2] = yz + zy
    N[:, 3, 3] = (zz - xx) - yy
    finite = np.isfinite(N).all(axis=(1, 2))
    if not finite.all():  # non-finite GT: keep LAPACK away from nan, the model becomes nan below
        N[~finite] = np.eye(4)
    # official: eigh (lower triangle), eigenvector of the largest eigenvalue (first index among exact ties).
    w, V = np.linalg.eigh(N)
    idx = np.argmax(w, axis=1)
    q = V[np.arange(T), :, idx]
    q = q / np.sqrt(np.sum((q + _EPS) ** 2, axis=1))[:, None]  # official quirk: norm(q + EPS)
    n = np.sum(q * q, axis=1)
    q = q * np.sqrt(2.0 / n)[:, None]
    qq = q[:, :, None] * q[:, None, :]
    R = np.empty((T, 3, 3))
    R[:, 0, 0] = 1.0 - qq[:, 2, 2] - qq[:, 3, 3]
    R[:, 0, 1] = qq[:, 1, 2] - qq[:, 3, 0]
    R[:, 0, 2] = qq[:, 1, 3] + qq[:, 2, 0]
    R[:, 1, 0] = qq[:, 1, 2] + qq[:, 3, 0]
    R[:, 1, 1] = 1.0 - qq[:, 1, 1] - qq[:, 3, 3]
    R[:, 1, 2] = qq[:, 2, 3] - qq[:, 1, 0]
    R[:, 2, 0] = qq[:, 1, 3] - qq[:, 2, 0]
    R[:, 2, 1] = qq[:, 2, 3] + qq[:, 1, 0]
    R[:, 2, 2] = 1.0 - qq[:, 1, 1] - qq[:, 2, 2]
    small = n < _EPS  # official quaternion_matrix: identity for a tiny quaternion
    if small.any():
        R[small] = np.eye(3)
    s = _scale(a, b)
    s[~finite] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        sR = R * s[:, None, None]  # inf · 0 = nan for coincident centres, as in the official code
    t = _translation(sR, mu0, mu1)
    return sR, t, s


def _pairwise_sum9(x: np.ndarray) -> np.ndarray:
    """numpy's pairwise sum of 9 values along the last axis (8 accumulators, then the ninth)."""
    return (((x[..., 0] + x[..., 1]) + (x[..., 2] + x[..., 3])) + ((x[..., 4] + x[..., 5]) + (x[..., 6] + x[..., 7]))) + x[
        ..., 8
    ]


def _scale(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Official scale ``sqrt(Σ b² / Σ a²)`` of centred triplets ``(T, point, xyz)``, summed in official order."""
    T = a.shape[0]
    a2 = np.ascontiguousarray(np.swapaxes(a * a, 1, 2)).reshape(T, 9)  # official arrays are (xyz, point)
    b2 = np.ascontiguousarray(np.swapaxes(b * b, 1, 2)).reshape(T, 9)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(_pairwise_sum9(b2) / _pairwise_sum9(a2))


def _translation(sR: np.ndarray, mu0: np.ndarray, mu1: np.ndarray) -> np.ndarray:
    """``t = sR @ (-mu0) + mu1`` (official ``inv(M1) @ M @ M0``)."""
    m = -mu0
    with np.errstate(invalid="ignore", over="ignore"):
        return ((sR[:, :, 0] * m[:, None, 0] + sR[:, :, 1] * m[:, None, 1]) + sR[:, :, 2] * m[:, None, 2]) + mu1


def _kabsch_sets(
    mask: np.ndarray, ev: np.ndarray, gt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity fitted with the SVD (Kabsch) method on each camera subset (official refinement).

    Args:
        mask: ``(U, n)`` bool, the cameras of each subset (at least 3 each).
        ev: ``(n, 3)`` submitted centres.
        gt: ``(n, 3)`` GT centres.

    Returns:
        ``sR`` ``(U, 3, 3)``, ``t`` ``(U, 3)``, ``s`` ``(U,)``.
    """
    w = mask.astype(np.float64)
    k = w.sum(axis=1)
    # sums along the cameras in order, row by row: ``w @ ev`` took another BLAS kernel for a lone row than inside a
    # batch, so a set's last bits depended on which sets shared its batch (and so on the metric's thread count)
    mu0 = np.cumsum(w[:, :, None] * ev[None], axis=1)[:, -1] / k[:, None]
    mu1 = np.cumsum(w[:, :, None] * gt[None], axis=1)[:, -1] / k[:, None]
    a = (ev[None, :, :] - mu0[:, None, :]) * w[:, :, None]  # (U, n, 3), zero outside the subset
    b = (gt[None, :, :] - mu1[:, None, :]) * w[:, :, None]
    H = np.matmul(np.swapaxes(b, 1, 2), a)  # official np.dot(v1, v0.T): (U, 3, 3)
    finite = np.isfinite(H).all(axis=(1, 2))
    if not finite.all():
        H[~finite] = np.eye(3)
    u, _, vh = np.linalg.svd(H)
    R = np.matmul(u, vh)
    flip = np.linalg.det(R) < 0.0
    if flip.any():
        R[flip] -= 2.0 * u[flip, :, 2, None] * vh[flip, None, 2, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(np.einsum("uni,uni->u", b, b) / np.einsum("uni,uni->u", a, a))
    s[~finite] = np.nan
    sR = R * s[:, None, None]
    return sR, _translation(sR, mu0, mu1), s


def _sq_errors(sR: np.ndarray, t: np.ndarray, ev: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Squared distances ``‖sR x + t − g‖²`` of every camera under every model.

    Args:
        sR: ``(M, 3, 3)``; t: ``(M, 3)``; ev, gt: ``(n, 3)``.

    Returns:
        ``(M, n)`` float64.
    """
    M = sR.shape[0]
    n = ev.shape[0]
    with np.errstate(invalid="ignore", over="ignore"):
        rot = (sR.reshape(M * 3, 3) @ ev.T).reshape(M, 3, n)
        rot += t[:, :, None]
        rot -= gt.T[None]
        rot *= rot
        # official: np.sum over the 3 coordinates, left to right
        return (rot[:, 0] + rot[:, 1]) + rot[:, 2]


def _triplet_chunks(n: int, max_t: int) -> Iterator[tuple[int, np.ndarray]]:
    """All triplets ``i < j < k`` of ``range(n)`` in lexicographic order, in chunks of about ``max_t``.

    Yields:
        ``(offset, trip)``: index of the chunk's first triplet in the full order and ``(T, 3)`` int64 indices.
    """
    offset = 0
    blocks: list[np.ndarray] = []
    size = 0
    for i in range(n - 2):
        m = n - i - 1
        jj, kk = np.triu_indices(m, 1)
        blk = np.empty((len(jj), 3), dtype=np.int64)
        blk[:, 0] = i
        blk[:, 1] = jj + i + 1
        blk[:, 2] = kk + i + 1
        blocks.append(blk)
        size += len(blk)
        if size >= max_t:
            trip = np.concatenate(blocks)
            yield offset, trip
            offset += len(trip)
            blocks, size = [], 0
    if blocks:
        yield offset, np.concatenate(blocks)


def _unique_sets(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of a packed-bit matrix, first occurrences in row order.

    Args:
        packed: ``(C, B)`` uint8.

    Returns:
        ``first`` ``(U,)`` index of the first occurrence of each distinct row, ascending, and ``inverse`` ``(C,)``
        position of each row's set in ``first``.
    """
    C, B = packed.shape
    pad = (-B) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((C, pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(packed).view(np.uint64)  # (C, W)
    if words.shape[1] == 1:
        _, first, inv = np.unique(words[:, 0], return_index=True, return_inverse=True)
    else:
        keys = np.ascontiguousarray(words).view(np.dtype((np.void, words.shape[1] * 8)))[:, 0]
        _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inv.reshape(-1)]


def _triplet_errors(
    trip: np.ndarray,
    ev: np.ndarray,
    gt: np.ndarray,
    th: np.ndarray,
    fast: tuple[np.ndarray, np.ndarray, float] | None,
) -> np.ndarray:
    """Squared errors ``(T, n)`` of every camera under each triplet's Horn model.

    With ``fast``, the models come from the closed-form solver and the errors from one matrix product; triplets
    with an error within the error bound of a threshold are recomputed with the official-order Horn fit, so the
    inlier sets are those of the exact computation.
    """
    if fast is None:
        sR, t, _ = _horn_triplets(ev[trip], gt[trip])
        return _sq_errors(sR, t, ev, gt)
    feats, phi, D = fast
    M = (feats[trip[:, 0]] + feats[trip[:, 1]]) + feats[trip[:, 2]]
    e2, tol, tol2, _ = _fast_from_moments(M, 3.0, phi, D)
    unc = np.flatnonzero(_uncertain(e2, tol, tol2, th))
    if len(unc):
        sR, t, _ = _horn_triplets(ev[trip[unc]], gt[trip[unc]])
        e2[unc] = _sq_errors(sR, t, ev, gt)
    return e2


def _fast_features(ev: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Per-camera moment features for :func:`_fast_refits` (pair-centred coordinates), ``None`` if not finite."""
    if not (np.isfinite(ev).all() and np.isfinite(gt).all()):
        return None
    e = ev - ev.mean(axis=0)
    g = gt - gt.mean(axis=0)
    n = len(e)
    ge = (e[:, :, None] * g[:, None, :]).reshape(n, 9)  # e_i g_j
    ee = np.sum(e * e, axis=1)
    gg = np.sum(g * g, axis=1)
    feats = np.concatenate([e, g, ge, ee[:, None], gg[:, None]], axis=1)
    gie = (g[:, :, None] * e[:, None, :]).reshape(n, 9)  # g_i e_j
    # e2 = s²|e|² + |t|² + 2 (sRᵀt)·e − 2 t·g − 2 Σ (sR)_ij g_i e_j + |g|²
    phi = np.concatenate([ee[:, None], np.ones((n, 1)), e, g, gie, gg[:, None]], axis=1).T.copy()
    D = float(np.sqrt(max(ee.max(), gg.max(), 1e-300)))
    return feats, phi, D


# ------------------------------------------------------------------------------- numba kernels (compiled lazily)
#
# The functions ``_k_*`` are plain Python source; :func:`_kernels` compiles them with numba on first use (cached on
# disk, ``cache=True``), so ``import imc_core.metric`` does not import numba. They fuse, per camera pair, what the
# NumPy path does in ~a dozen passes over (models × cameras) arrays: the fast triplet model, its errors, the
# threshold bands, the inlier sets, their de-duplication (hash table) and the approximate refit with its bounds.
# They only ever *decide* which models need the exact computation; every number that reaches the result (the exact
# triplet Horn fit of uncertain triplets, the exact refits and their errors) is computed by the NumPy functions above.

_MULT = 0x9E3779B97F4A7C15


def _k_det4(A):  # pragma: no cover - numba
    s0 = A[0, 0] * A[1, 1] - A[1, 0] * A[0, 1]
    s1 = A[0, 0] * A[1, 2] - A[1, 0] * A[0, 2]
    s2 = A[0, 0] * A[1, 3] - A[1, 0] * A[0, 3]
    s3 = A[0, 1] * A[1, 2] - A[1, 1] * A[0, 2]
    s4 = A[0, 1] * A[1, 3] - A[1, 1] * A[0, 3]
    s5 = A[0, 2] * A[1, 3] - A[1, 2] * A[0, 3]
    c5 = A[2, 2] * A[3, 3] - A[3, 2] * A[2, 3]
    c4 = A[2, 1] * A[3, 3] - A[3, 1] * A[2, 3]
    c3 = A[2, 1] * A[3, 2] - A[3, 1] * A[2, 2]
    c2 = A[2, 0] * A[3, 3] - A[3, 0] * A[2, 3]
    c1 = A[2, 0] * A[3, 2] - A[3, 0] * A[2, 2]
    c0 = A[2, 0] * A[3, 1] - A[3, 0] * A[2, 1]
    return s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0


def _k_cof(A, i, r):  # pragma: no cover - numba
    """Cofactor ``(i, r)`` of a 4×4 ``A`` (row ``i`` and column ``r`` deleted), which is ``adj(A)[r, i]``."""
    a0 = 0 if i > 0 else 1
    a1 = 1 if i > 1 else 2
    a2 = 2 if i > 2 else 3
    b0 = 0 if r > 0 else 1
    b1 = 1 if r > 1 else 2
    b2 = 2 if r > 2 else 3
    m = (
        A[a0, b0] * (A[a1, b1] * A[a2, b2] - A[a1, b2] * A[a2, b1])
        - A[a0, b1] * (A[a1, b0] * A[a2, b2] - A[a1, b2] * A[a2, b0])
        + A[a0, b2] * (A[a1, b0] * A[a2, b1] - A[a1, b1] * A[a2, b0])
    )
    return m if (i + r) % 2 == 0 else -m


def _k_model(M, kk, D, N, A, q, out):  # pragma: no cover - numba
    """Approximate similarity of a camera subset from its moments (scalar port of :func:`_fast_from_moments`).

    Args:
        M: ``(17,)`` summed features (see :func:`_fast_features`); kk: subset size; D: pair extent.
        N, A: ``(4, 4)`` scratch; q: ``(4,)`` scratch.
        out: ``(14,)`` receives ``sR`` (row-major, 0:9), ``t`` (9:12), ``tol`` (12), ``tol2`` (13).

    Returns:
        ``True`` when the bounds are finite (else the subset needs the exact path).
    """
    eps = 2.220446049250313e-16
    m00 = M[0] / kk
    m01 = M[1] / kk
    m02 = M[2] / kk
    m10 = M[3] / kk
    m11 = M[4] / kk
    m12 = M[5] / kk
    xx = M[6] - kk * m00 * m10
    xy = M[7] - kk * m00 * m11
    xz = M[8] - kk * m00 * m12
    yx = M[9] - kk * m01 * m10
    yy = M[10] - kk * m01 * m11
    yz = M[11] - kk * m01 * m12
    zx = M[12] - kk * m02 * m10
    zy = M[13] - kk * m02 * m11
    zz = M[14] - kk * m02 * m12
    a2 = M[15] - kk * (m00 * m00 + m01 * m01 + m02 * m02)
    b2 = M[16] - kk * (m10 * m10 + m11 * m11 + m12 * m12)
    N[0, 0] = xx + yy + zz
    N[1, 0] = yz - zy
    N[1, 1] = xx - yy - zz
    N[2, 0] = zx - xz
    N[2, 1] = xy + yx
    N[2, 2] = yy - xx - zz
    N[3, 0] = xy - yx
    N[3, 1] = zx + xz
    N[3, 2] = yz + zy
    N[3, 3] = zz - xx - yy
    for i in range(4):
        for j in range(i):
            N[j, i] = N[i, j]
    p2 = 0.0
    for i in range(4):
        for j in range(4):
            p2 += N[i, j] * N[i, j]
    for i in range(4):  # A = N @ N
        for j in range(4):
            acc = 0.0
            for l in range(4):
                acc += N[i, l] * N[l, j]
            A[i, j] = acc
    p3 = 0.0
    for i in range(4):
        for j in range(4):
            p3 += A[i, j] * N[j, i]
    det = _k_det4(N)
    c2 = -0.5 * p2
    c1 = -p3 / 3.0
    lam = math.sqrt(0.75 * p2)
    bound = math.sqrt(max(a2, 0.0) * max(b2, 0.0))
    if math.isfinite(bound):
        lam = min(lam, bound * (1.0 + 1e-12))
    for _ in range(100):
        l2 = lam * lam
        P = (l2 + c2) * l2 + c1 * lam + det
        dP = (4.0 * l2 + 2.0 * c2) * lam + c1
        step = P / dP if dP > 0 else 0.0
        if not step > 0.0:  # also nan
            step = 0.0
        lam = lam - step
        if not step > 1e-15 * abs(lam):
            break
    for i in range(4):
        for j in range(4):
            A[i, j] = N[i, j]
        A[i, i] -= lam
    # largest |adj_ii| (first among ties), then that column
    best = -1.0
    bi = 0
    for i in range(4):
        d = abs(_k_cof(A, i, i))
        if d > best:  # first among ties, as np.argmax
            best = d
            bi = i
    for i in range(4):
        q[i] = _k_cof(A, bi, i)
    nq = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    cond = abs(lam) ** 3 / best
    fin = math.isfinite(cond)
    for i in range(4):
        q[i] = q[i] / nq
        if not math.isfinite(q[i]):
            fin = False
            q[i] = 0.0
    if not fin:
        cond = math.inf
        q[0] = 1.0
    f = math.sqrt(2.0 / (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]))
    w = q[0] * f
    x = q[1] * f
    y = q[2] * f
    z = q[3] * f
    s = math.sqrt(b2 / a2)
    r00 = 1.0 - y * y - z * z
    r01 = x * y - z * w
    r02 = x * z + y * w
    r10 = x * y + z * w
    r11 = 1.0 - x * x - z * z
    r12 = y * z - x * w
    r20 = x * z - y * w
    r21 = y * z + x * w
    r22 = 1.0 - x * x - y * y
    out[0] = s * r00
    out[1] = s * r01
    out[2] = s * r02
    out[3] = s * r10
    out[4] = s * r11
    out[5] = s * r12
    out[6] = s * r20
    out[7] = s * r21
    out[8] = s * r22
    out[9] = m10 - (out[0] * m00 + out[1] * m01 + out[2] * m02)
    out[10] = m11 - (out[3] * m00 + out[4] * m01 + out[5] * m02)
    out[11] = m12 - (out[6] * m00 + out[7] * m01 + out[8] * m02)
    tn = math.sqrt(out[9] * out[9] + out[10] * out[10] + out[11] * out[11])
    spread = min(a2, b2 / max(s * s, 1e-300)) / kk
    rel = (1.0 + D * D / spread) * max(cond, 1.0)
    scale_len = (s + 1.0) * D + tn
    tol = 1e4 * eps * scale_len * (rel + 1.0)
    tol2 = 1e4 * eps * scale_len * scale_len
    out[12] = tol
    out[13] = tol2
    return math.isfinite(tol) and math.isfinite(tol2) and math.isfinite(s) and a2 > 0


def _k_e2(E, G, m, out):  # pragma: no cover - numba
    """Squared distances ``out`` ``(n,)`` of all cameras under model ``m`` (``sR`` 0:9, ``t`` 9:12).

    ``E``, ``G`` ``(3, n)``: pair-centred submitted / GT centres (coordinate-major, so the loop vectorises)."""
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
    t0, t1, t2 = m[9], m[10], m[11]
    Ex, Ey, Ez, Gx, Gy, Gz = E[0], E[1], E[2], G[0], G[1], G[2]
    for c in range(out.shape[0]):
        dx = m0 * Ex[c] + m1 * Ey[c] + m2 * Ez[c] + (t0 - Gx[c])
        dy = m3 * Ex[c] + m4 * Ey[c] + m5 * Ez[c] + (t1 - Gy[c])
        dz = m6 * Ex[c] + m7 * Ey[c] + m8 * Ez[c] + (t2 - Gz[c])
        out[c] = dx * dx + dy * dy + dz * dz


def _k_count(e2, bound):  # pragma: no cover - numba
    """``#(e2 < bound)`` (branch-free, vectorises)."""
    cnt = 0
    for c in range(e2.shape[0]):
        cnt += e2[c] < bound
    return cnt


def _k_hash_insert(row, Hk, Hu, st):  # pragma: no cover - numba
    """Insert the bit set ``row`` ``(W,)`` into the open-addressing table; ``False`` if it was there already.

    The table is cleared when half full (de-duplication only saves work: a set seen again is refitted again and
    loses every tie on its later order)."""
    cap = Hu.shape[0]
    W = row.shape[0]
    if st[6] * 2 >= cap:
        Hu[:] = False
        st[6] = 0
    h = np.uint64(W)
    for w in range(W):
        h = (h ^ row[w]) * np.uint64(_MULT)
        h = h ^ (h >> np.uint64(29))
    p = np.int64(h & np.uint64(cap - 1))
    while Hu[p]:
        same = True
        for w in range(W):
            if Hk[p, w] != row[w]:
                same = False
                break
        if same:
            return False
        p = (p + 1) & (cap - 1)
    Hu[p] = True
    for w in range(W):
        Hk[p, w] = row[w]
    st[6] += 1
    return True


def _k_candidate(  # pragma: no cover - numba
    row, order, E, G, F, th, D, floor, smin, Sm, So, Su, Sl, st, N, A, q, mod, M, e2, lower, upper
):
    """Approximate refit of one distinct inlier set; keeps it as a survivor when its exact refit could be the best
    model of some threshold (see :func:`_survivors_keep`), and raises the running floors with its lower bounds."""
    n = E.shape[1]
    r = th.shape[0]
    for x in range(17):
        M[x] = 0.0
    kk = 0
    for c in range(n):
        if (row[c >> 6] >> np.uint64(c & 63)) & np.uint64(1):
            kk += 1
            for x in range(17):
                M[x] += F[c, x]
    ok = _k_model(M, float(kk), D, N, A, q, mod)
    sse = 0.0
    tol = 0.0
    tol2 = 0.0
    sse_tol = 0.0
    if ok:
        tol = mod[12]
        tol2 = mod[13]
        _k_e2(E, G, mod, e2)
        for c in range(n):
            sse += e2[c]
        ok = math.isfinite(sse)
    if ok:
        alive = False
        for k in range(r):
            upper[k] = _k_count(e2, (th[k] + tol) ** 2 + tol2)
            alive |= upper[k] >= floor[k]
        if not alive:  # beaten at every threshold by a candidate already seen
            return
        for k in range(r):
            lower[k] = _k_count(e2, max(th[k] - tol, 0.0) ** 2 - tol2)
    if ok:
        sse_tol = 2.0 * tol * math.sqrt(n * max(sse, 0.0)) + n * (tol * tol + tol2) + 1e-12 * abs(sse)
        ok = math.isfinite(sse_tol)
    j = st[5]
    if not ok:  # degenerate or not finite: always refitted exactly
        for k in range(r):
            Su[j, k] = n + 1
        Sl[j] = -math.inf
    else:
        s_lo = sse - sse_tol
        s_hi = sse + sse_tol
        keep = False
        for k in range(r):
            if lower[k] > floor[k]:
                floor[k] = lower[k]
                smin[k] = s_hi
            elif lower[k] == floor[k] and s_hi < smin[k]:
                smin[k] = s_hi
        for k in range(r):
            if upper[k] > floor[k] or (upper[k] == floor[k] and s_lo <= smin[k]):
                keep = True
                break
        if not keep:
            return
        for k in range(r):
            Su[j, k] = upper[k]
        Sl[j] = s_lo
    for w in range(row.shape[0]):
        Sm[j, w] = row[w]
    So[j] = order
    st[5] = j + 1


def _k_sets(  # pragma: no cover - numba
    e2, tidx, E, G, F, th, th2, D, Hk, Hu, floor, smin, Sm, So, Su, Sl, st, bits, pops, N, A, q, mod, M, ebuf, lower,
    upper,
):
    """Inlier sets of one triplet model (exact squared errors ``e2`` ``(n,)``) at every threshold; each new set with
    more than two members goes to :func:`_k_candidate` with order ``tidx · r + q``."""
    n = E.shape[1]
    r = th.shape[0]
    W = bits.shape[1]
    for k in range(r):
        for w in range(W):
            bits[k, w] = np.uint64(0)
        pops[k] = 0
    for c in range(n):
        v = e2[c]
        for k in range(r):
            if v < th2[k]:
                bits[k, c >> 6] |= np.uint64(1) << np.uint64(c & 63)
                pops[k] += 1
    for k in range(r):
        if pops[k] <= 2:
            continue
        dup = False
        for p in range(k):  # official: a set already met at a lower q of the same triplet is not refitted
            if pops[p] == pops[k]:
                same = True
                for w in range(W):
                    if bits[p, w] != bits[k, w]:
                        same = False
                        break
                if same:
                    dup = True
                    break
        if dup:
            continue
        if _k_hash_insert(bits[k], Hk, Hu, st):
            _k_candidate(bits[k], tidx * r + k, E, G, F, th, D, floor, smin, Sm, So, Su, Sl, st, N, A, q, mod, M,
                         ebuf, lower, upper)


def _k_triplets(E, G, F, th, th2, D, st, Ut, Hk, Hu, floor, smin, Sm, So, Su, Sl):  # pragma: no cover - numba
    """Walk the triplets ``i < j < k`` from the position in ``st`` (``i, j, k, index``) up to the first triplet
    whose ``i`` is ``st[8]``: fast Horn model, errors, threshold bands; triplets with an error near a threshold (or a
    degenerate fit) are queued in ``Ut`` for the exact fit, the others' inlier sets are processed at once. Returns
    when done (``st[7] = 1``), when ``Ut`` is full or when the survivor buffer may overflow."""
    n = E.shape[1]
    r = th.shape[0]
    W = Hk.shape[1]
    N = np.zeros((4, 4))
    A = np.zeros((4, 4))
    q = np.zeros(4)
    mod = np.zeros(14)
    M = np.zeros(17)
    Mij = np.zeros(17)
    ebuf = np.zeros(E.shape[1])
    lower = np.zeros(r, np.int64)
    upper = np.zeros(r, np.int64)
    bits = np.zeros((r, W), np.uint64)
    pops = np.zeros(r, np.int64)
    e2 = np.zeros(n)
    M3 = np.zeros(17)
    i, j, k, t = st[0], st[1], st[2], st[3]
    iend = min(st[8], n - 2)
    ucap = Ut.shape[0]
    scap = Sm.shape[0]
    while i < iend:
        while j < n - 1:
            for x in range(17):
                Mij[x] = F[i, x] + F[j, x]
            while k < n:
                if st[4] >= ucap or st[5] + r > scap:
                    st[0], st[1], st[2], st[3] = i, j, k, t
                    return
                for x in range(17):
                    M3[x] = Mij[x] + F[k, x]
                unc = not _k_model(M3, 3.0, D, N, A, q, mod)
                if not unc:
                    tol = mod[12]
                    tol2 = mod[13]
                    _k_e2(E, G, mod, e2)
                    nb = n - _k_count(e2, math.inf)  # not finite
                    for kk in range(r):
                        lo = max(th[kk] - tol, 0.0) ** 2 - tol2
                        hi = (th[kk] + tol) ** 2 + tol2
                        nb += _k_count(e2, hi) - _k_count(e2, lo)  # lo <= e2 < hi (lo <= hi)
                    unc = nb > 0
                if unc:
                    Ut[st[4], 0] = t
                    Ut[st[4], 1] = i
                    Ut[st[4], 2] = j
                    Ut[st[4], 3] = k
                    st[4] += 1
                else:
                    _k_sets(e2, t, E, G, F, th, th2, D, Hk, Hu, floor, smin, Sm, So, Su, Sl, st, bits, pops, N, A,
                            q, mod, M, ebuf, lower, upper)
                k += 1
                t += 1
            j += 1
            k = j + 1
        i += 1
        j = i + 1
        k = j + 1
    st[0], st[1], st[2], st[3] = i, j, k, t
    st[7] = 1


def _k_rows(e2s, tids, start, E, G, F, th, th2, D, st, Hk, Hu, floor, smin, Sm, So, Su, Sl):  # pragma: no cover - numba
    """:func:`_k_sets` for exact error rows ``e2s`` ``(U, n)`` of triplets ``tids`` from row ``start``; returns
    the next row to do (``U`` when done; earlier when the survivor buffer may overflow)."""
    r = th.shape[0]
    W = Hk.shape[1]
    N = np.zeros((4, 4))
    A = np.zeros((4, 4))
    q = np.zeros(4)
    mod = np.zeros(14)
    M = np.zeros(17)
    ebuf = np.zeros(E.shape[1])
    lower = np.zeros(r, np.int64)
    upper = np.zeros(r, np.int64)
    bits = np.zeros((r, W), np.uint64)
    pops = np.zeros(r, np.int64)
    scap = Sm.shape[0]
    for u in range(start, e2s.shape[0]):
        if st[5] + r > scap:
            return u
        _k_sets(e2s[u], tids[u], E, G, F, th, th2, D, Hk, Hu, floor, smin, Sm, So, Su, Sl, st, bits, pops, N, A, q,
                mod, M, ebuf, lower, upper)
    return e2s.shape[0]


_KERNEL_NAMES = tuple(name for name in list(globals()) if name.startswith("_k_"))
_KERNELS: dict[str, Any] | None = None


def _kernels() -> dict[str, Any] | None:
    """The numba-compiled kernels (compiled or loaded from the on-disk cache on first call); ``None`` without numba."""
    global _KERNELS
    if _KERNELS is None:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is pinned in requirements.txt
            _KERNELS = {}
            return None
        g = globals()
        for name in _KERNEL_NAMES:  # all wrapped before the first (lazy) compilation: kernels see compiled helpers
            if not isinstance(g[name], numba.core.dispatcher.Dispatcher):
                g[name] = numba.njit(cache=True, error_model="numpy", nogil=True)(g[name])
        _KERNELS = {name: g[name] for name in _KERNEL_NAMES}
    return _KERNELS or None


def _survivors_keep(Su: np.ndarray, Sl: np.ndarray, floor: np.ndarray, smin: np.ndarray) -> np.ndarray:
    """Which approximate refits can still be the best model of some threshold.

    The best model of threshold ``k`` is the candidate with the largest (count, −SSE, −order). ``floor[k]`` is a
    count some candidate certainly reaches (the largest lower bound seen, or the best exact count) and ``smin[k]`` the
    smallest SSE upper bound among the candidates certain to reach it. A candidate with count upper bound ``Su``
    below the floor, or equal to it with an SSE lower bound ``Sl`` above ``smin``, is beaten by another one.

    Args:
        Su: ``(S, r)`` count upper bounds; Sl: ``(S,)`` SSE lower bounds; floor: ``(r,)``; smin: ``(r,)``.

    Returns:
        ``(S,)`` bool.
    """
    return ((Su > floor[None]) | ((Su == floor[None]) & (Sl[:, None] <= smin[None]))).any(axis=1)


def _first_index_ranges(n: int, parts: int) -> list[tuple[int, int, int]]:
    """Split the triplets ``i < j < k`` of ``n`` cameras, in official order, into at most ``parts`` runs of whole
    first indices with about as many triplets each: ``(i_start, i_end, index of the first triplet)``."""
    per_i = np.array([(n - 1 - i) * (n - 2 - i) // 2 for i in range(max(n - 2, 0))], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(per_i)])
    total = int(starts[-1])
    cuts = sorted({0, *(int(np.searchsorted(starts, total * b / parts)) for b in range(1, parts)), len(per_i)})
    return [(a, b, int(starts[a])) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _metric_threads(config: MetricConfig, n_triplets: int) -> int:
    """Threads for one registration: ``config.threads`` (0: every core), fewer when there are too few triplets to
    share (below :data:`TRIPLETS_PER_THREAD` each, a thread costs more than it saves)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(config.threads or cores, n_triplets // TRIPLETS_PER_THREAD))


TRIPLETS_PER_THREAD = 50_000


def _register_numba(
    ev: np.ndarray, gt: np.ndarray, th: np.ndarray, config: MetricConfig, state: tuple[np.ndarray, ...],
    K: dict[str, Any],
) -> None:
    """Fill the best-model ``state`` of :func:`register_cameras` with the numba kernels (prefilter path).

    Exact numbers come from the NumPy functions: official-order Horn for triplets whose inlier sets are uncertain,
    SVD refits for the inlier sets that survive the bounds (:func:`_select_exact`).

    A large scene's triplets are split into runs of whole first indices walked in threads (the kernels release the
    GIL), each with a best-model state of its own; the states are then merged with the official rule, largest
    (count, −SSE, −official position). Each candidate carries its official position, and its count and SSE depend on
    its inlier set only, so the result is the same bit for bit whatever the number of threads (tested).
    """
    n = ev.shape[0]
    n_triplets = n * (n - 1) * (n - 2) // 6
    threads = _metric_threads(config, n_triplets)
    if threads == 1:
        _walk_triplets(ev, gt, th, config, state, K, 0, max(n - 2, 0), 0, config.chunk_bytes)
        return
    ranges = _first_index_ranges(n, 2 * threads)  # (more runs than threads: the last ones even out the wait)
    states = [tuple(np.copy(a) for a in state) for _ in ranges]
    budget = max(config.chunk_bytes // threads, 4 * 2**20)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imc-metric") as pool:
        list(pool.map(lambda a: _walk_triplets(ev, gt, th, config, states[a[0]], K, *a[1], budget),
                      enumerate(ranges)))
    for part in states:  # the official choice over every run's best
        for k in range(len(th)):
            if _beats(int(part[0][k]), float(part[1][k]), int(part[2][k]), state, k):
                for mine, theirs in zip(state, part, strict=True):
                    mine[k] = theirs[k]


def _beats(count: int, sse: float, order: int, state: tuple[np.ndarray, ...], k: int) -> bool:
    """Whether a model with ``(count, sse, official position)`` replaces threshold ``k``'s best in ``state``: the
    official rule, largest count, then smallest SSE, then first in official order."""
    best_cnt, best_sse, best_ord = state[0], state[1], state[2]
    return count > best_cnt[k] or (count == best_cnt[k] and (sse < best_sse[k] or (sse == best_sse[k]
                                                                                   and order < best_ord[k])))


def _walk_triplets(
    ev: np.ndarray, gt: np.ndarray, th: np.ndarray, config: MetricConfig, state: tuple[np.ndarray, ...],
    K: dict[str, Any], i_start: int, i_end: int, t_start: int, budget: int,
) -> None:
    """:func:`_register_numba` over the triplets whose first index is in ``[i_start, i_end)`` (the first of them is
    triplet ``t_start`` in official order), with buffers sized by ``budget`` bytes."""
    n, r = ev.shape[0], len(th)
    th2 = th**2
    feats_phi = _fast_features(ev, gt)
    assert feats_phi is not None
    F = np.ascontiguousarray(feats_phi[0])
    D = feats_phi[2]
    E = np.ascontiguousarray((ev - ev.mean(axis=0)).T)  # (3, n)
    G = np.ascontiguousarray((gt - gt.mean(axis=0)).T)
    W = (n + 63) // 64
    hcap = 1 << max(6, int(math.log2(max(64, budget // (4 * (8 * W + 1))))))
    scap = max(4 * r, budget // (16 * (8 * W + 8 * r + 16)))
    ucap = max(8, budget // (16 * 8 * n * 8))
    Hk = np.zeros((hcap, W), np.uint64)
    Hu = np.zeros(hcap, np.bool_)
    Sm = np.zeros((scap, W), np.uint64)
    So = np.zeros(scap, np.int64)
    Su = np.zeros((scap, r), np.int64)
    Sl = np.zeros(scap)
    Ut = np.zeros((ucap, 4), np.int64)
    floor = np.zeros(r, np.int64)  # the official initial best: 0 inliers, SSE inf
    smin = np.full(r, np.inf)
    # i, j, k, triplet index, #queued, #survivors, #hashed, done, first i not walked
    st = np.array([i_start, i_start + 1, i_start + 2, t_start, 0, 0, 0, 0, i_end], np.int64)

    def flush(force: bool) -> None:
        s = int(st[5])
        keep = np.flatnonzero(_survivors_keep(Su[:s], Sl[:s], floor, smin))
        m = len(keep)
        Sm[:m], So[:m], Su[:m], Sl[:m] = Sm[keep], So[keep], Su[keep], Sl[keep]
        st[5] = m
        if m and (force or m + r > scap // 2):
            masks = np.unpackbits(Sm[:m].view(np.uint8), axis=1, count=n, bitorder="little").astype(bool)
            _select_exact(masks, So[:m].copy(), ev, gt, th2, config, state)
            st[5] = 0
            best_cnt, best_sse = state[0], state[1]
            up = best_cnt > floor
            floor[up] = best_cnt[up]
            smin[up] = best_sse[up]
            eq = best_cnt == floor
            smin[eq] = np.minimum(smin[eq], best_sse[eq])

    while True:
        K["_k_triplets"](E, G, F, th, th2, D, st, Ut, Hk, Hu, floor, smin, Sm, So, Su, Sl)
        nu = int(st[4])
        if nu and (nu >= ucap or st[7]):
            tr = Ut[:nu]
            sR, t, _ = _horn_triplets(ev[tr[:, 1:]], gt[tr[:, 1:]])
            e2s = np.ascontiguousarray(_sq_errors(sR, t, ev, gt))
            tids = tr[:, 0].copy()
            pos = 0
            while pos < nu:
                pos = int(K["_k_rows"](e2s, tids, pos, E, G, F, th, th2, D, st, Hk, Hu, floor, smin, Sm, So, Su, Sl))
                if pos < nu:
                    flush(False)
            st[4] = 0
        if st[5] + r > scap:
            flush(False)
        if st[7] and st[4] == 0:
            break
    flush(True)


def _select_exact(
    masks: np.ndarray, order: np.ndarray, ev: np.ndarray, gt: np.ndarray, th2: np.ndarray, config: MetricConfig,
    state: tuple[np.ndarray, ...],
) -> None:
    """Exact (SVD) refit of inlier sets in any order; the best of a threshold is the largest (count, −SSE, −order).

    Args:
        masks: ``(U, n)`` bool; order: ``(U,)`` official position ``triplet · r + q`` of each set.
        ev, gt: ``(n, 3)``; th2: ``(r,)`` squared thresholds; state: best-model arrays of :func:`register_cameras`.
    """
    best_cnt, best_sse, best_ord, best_sR, best_t, best_s, best_e2, has = state
    n = ev.shape[0]
    step = max(32, config.chunk_bytes // (8 * 8 * n + 512))
    for lo in range(0, len(masks), step):
        m = masks[lo : lo + step]
        od = order[lo : lo + step]
        sR, t, s = _kabsch_sets(m, ev, gt)
        e2 = _sq_errors(sR, t, ev, gt)
        with np.errstate(invalid="ignore", over="ignore"):
            sse = e2.sum(axis=1)
        sse = np.where(np.isnan(sse), np.inf, sse)
        cnt = (e2[:, :, None] < th2[None, None, :]).sum(axis=1)  # (U, r)
        for k in range(len(th2)):
            j = np.lexsort((od, sse, -cnt[:, k]))[0]  # max count, then min SSE, then first in official order
            c, sj, oj = int(cnt[j, k]), float(sse[j]), int(od[j])
            if _beats(c, sj, oj, state, k):
                best_cnt[k], best_sse[k], best_ord[k] = c, sj, oj
                best_sR[k], best_t[k], best_s[k], best_e2[k] = sR[j], t[j], s[j], e2[j]
                has[k] = True


def register_cameras(
    ev: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, *, config: MetricConfig = DEFAULT_CONFIG
) -> Registration:
    """Official ``register_by_Horn`` (``inl_cf=0, strict_cf=-1``), vectorised: best similarity per threshold.

    Args:
        ev: ``(n, 3)`` submitted camera centres (rows with a non-finite value are dropped, official).
        gt: ``(n, 3)`` GT camera centres, same cameras in the same order (the order fixes the triplet order, which
            only matters for exact ties).
        thresholds: ``(r,)`` metres, in file order.
        config: chunk size.

    Returns:
        The :class:`Registration`.
    """
    ev = np.asarray(ev, dtype=np.float64).reshape(-1, 3)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 3)
    th = np.ascontiguousarray(np.asarray(thresholds, dtype=np.float64).reshape(-1))
    valid = np.isfinite(ev).all(axis=1)
    ev = np.ascontiguousarray(ev[valid])
    gt = np.ascontiguousarray(gt[valid])
    n, r = len(ev), len(th)
    th2 = th**2

    best_cnt = np.zeros(r, dtype=np.int64)
    best_sse = np.full(r, np.inf)  # official initial state: 0 inliers, SSE inf; update on strict improvement
    best_ord = np.full(r, -1, dtype=np.int64)  # the initial state comes first in the official order
    best_sR = np.full((r, 3, 3), np.nan)
    best_t = np.full((r, 3), np.nan)
    best_s = np.full(r, np.nan)
    best_e2 = np.full((r, n), np.inf)
    has = np.zeros(r, dtype=bool)

    state = (best_cnt, best_sse, best_ord, best_sR, best_t, best_s, best_e2, has)
    kernels = _kernels() if (config.prefilter and config.numba and n >= max(3, config.numba_min_cameras)) else None
    if kernels is not None and np.isfinite(ev).all() and np.isfinite(gt).all():
        _register_numba(ev, gt, th, config, state, kernels)
    elif n >= 3:
        # bytes per triplet ≈ (3n doubles for the residuals + r·n bools + a few per-model arrays) · safety
        fast = _fast_features(ev, gt) if config.prefilter else None
        per = 8 * (3 * n + n) + r * n + 512
        max_t = max(64, config.chunk_bytes // (3 * per))
        for offset, trip in _triplet_chunks(n, max_t):
            e2 = _triplet_errors(trip, ev, gt, th, fast)  # (T, n)
            inl = e2[:, None, :] < th2[None, :, None]  # (T, r, n)
            cnt = _count(inl)
            cand_t, cand_q = np.nonzero(cnt > 2)  # row-major: (triplet, q) order = official refinement order
            if len(cand_t) == 0:
                continue
            packed = np.packbits(inl[cand_t, cand_q], axis=1)
            del inl, e2
            first, _ = _unique_sets(packed)
            order = (offset + cand_t[first]) * r + cand_q[first]
            masks = np.unpackbits(packed[first], axis=1, count=n).astype(bool)
            _refine_and_select(masks, order, ev, gt, th2, config, state, fast)

    err = np.sqrt(best_e2.T)  # (n, r), official best_err = sqrt(err_ref)
    scale = best_s.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        R = best_sR / scale[:, None, None]
    return Registration(
        valid=valid, err=err, n_inliers=best_cnt, sse=best_sse, scale=scale, R=R, t=best_t, has_model=has
    )


def _count(b: np.ndarray) -> np.ndarray:
    """``b.sum(axis=-1)`` for a bool array, several times faster (uint8/uint16 accumulation)."""
    dt = np.uint8 if b.shape[-1] < 256 else np.uint16 if b.shape[-1] < 65536 else np.int64
    return np.add.reduce(b.view(np.uint8), axis=-1, dtype=dt).astype(np.int64)


def _any(b: np.ndarray) -> np.ndarray:
    """``b.any(axis=-1)`` for a bool array (bitwise-or reduction on bytes)."""
    return np.bitwise_or.reduce(b.view(np.uint8), axis=-1).astype(bool)


def _adjugate4(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjugate and determinant of a stack of 4×4 matrices (closed form, vectorised).

    Args:
        A: ``(U, 4, 4)``.

    Returns:
        ``adj`` ``(U, 4, 4)`` with ``A @ adj = det · I`` and ``det`` ``(U,)``.
    """
    a = [[A[:, i, j] for j in range(4)] for i in range(4)]
    s0 = a[0][0] * a[1][1] - a[1][0] * a[0][1]
    s1 = a[0][0] * a[1][2] - a[1][0] * a[0][2]
    s2 = a[0][0] * a[1][3] - a[1][0] * a[0][3]
    s3 = a[0][1] * a[1][2] - a[1][1] * a[0][2]
    s4 = a[0][1] * a[1][3] - a[1][1] * a[0][3]
    s5 = a[0][2] * a[1][3] - a[1][2] * a[0][3]
    c5 = a[2][2] * a[3][3] - a[3][2] * a[2][3]
    c4 = a[2][1] * a[3][3] - a[3][1] * a[2][3]
    c3 = a[2][1] * a[3][2] - a[3][1] * a[2][2]
    c2 = a[2][0] * a[3][3] - a[3][0] * a[2][3]
    c1 = a[2][0] * a[3][2] - a[3][0] * a[2][2]
    c0 = a[2][0] * a[3][1] - a[3][0] * a[2][1]
    det = s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0
    adj = np.empty_like(A)
    adj[:, 0, 0] = a[1][1] * c5 - a[1][2] * c4 + a[1][3] * c3
    adj[:, 0, 1] = -a[0][1] * c5 + a[0][2] * c4 - a[0][3] * c3
    adj[:, 0, 2] = a[3][1] * s5 - a[3][2] * s4 + a[3][3] * s3
    adj[:, 0, 3] = -a[2][1] * s5 + a[2][2] * s4 - a[2][3] * s3
    adj[:, 1, 0] = -a[1][0] * c5 + a[1][2] * c2 - a[1][3] * c1
    adj[:, 1, 1] = a[0][0] * c5 - a[0][2] * c2 + a[0][3] * c1
    adj[:, 1, 2] = -a[3][0] * s5 + a[3][2] * s2 - a[3][3] * s1
    adj[:, 1, 3] = a[2][0] * s5 - a[2][2] * s2 + a[2][3] * s1
    adj[:, 2, 0] = a[1][0] * c4 - a[1][1] * c2 + a[1][3] * c0
    adj[:, 2, 1] = -a[0][0] * c4 + a[0][1] * c2 - a[0][3] * c0
    adj[:, 2, 2] = a[3][0] * s4 - a[3][1] * s2 + a[3][3] * s0
    adj[:, 2, 3] = -a[2][0] * s4 + a[2][1] * s2 - a[2][3] * s0
    adj[:, 3, 0] = -a[1][0] * c3 + a[1][1] * c1 - a[1][2] * c0
    adj[:, 3, 1] = a[0][0] * c3 - a[0][1] * c1 + a[0][2] * c0
    adj[:, 3, 2] = -a[3][0] * s3 + a[3][1] * s1 - a[3][2] * s0
    adj[:, 3, 3] = a[2][0] * s3 - a[2][1] * s1 + a[2][2] * s0
    return adj, det


def _horn_matrix(S: np.ndarray) -> np.ndarray:
    """Horn's symmetric 4×4 matrix (both triangles) from ``S[i, j] = Σ a_i b_j``, ``(U, 3, 3) → (U, 4, 4)``."""
    xx, yy, zz = S[:, 0, 0], S[:, 1, 1], S[:, 2, 2]
    xy, yz, zx = S[:, 0, 1], S[:, 1, 2], S[:, 2, 0]
    xz, yx, zy = S[:, 0, 2], S[:, 1, 0], S[:, 2, 1]
    N = np.empty((S.shape[0], 4, 4))
    vals = {
        (0, 0): xx + yy + zz, (1, 0): yz - zy, (1, 1): xx - yy - zz, (2, 0): zx - xz, (2, 1): xy + yx,
        (2, 2): yy - xx - zz, (3, 0): xy - yx, (3, 1): zx + xz, (3, 2): yz + zy, (3, 3): zz - xx - yy,
    }  # fmt: skip
    for (i, j), v in vals.items():
        N[:, i, j] = v
        N[:, j, i] = v
    return N


def _quat_to_rot(q: np.ndarray) -> np.ndarray:
    """Official ``quaternion_matrix`` rotation block for unit-ish quaternions ``(U, 4)`` → ``(U, 3, 3)``."""
    q = q * np.sqrt(2.0 / np.sum(q * q, axis=1))[:, None]
    qq = q[:, :, None] * q[:, None, :]
    R = np.empty((q.shape[0], 3, 3))
    R[:, 0, 0] = 1.0 - qq[:, 2, 2] - qq[:, 3, 3]
    R[:, 0, 1] = qq[:, 1, 2] - qq[:, 3, 0]
    R[:, 0, 2] = qq[:, 1, 3] + qq[:, 2, 0]
    R[:, 1, 0] = qq[:, 1, 2] + qq[:, 3, 0]
    R[:, 1, 1] = 1.0 - qq[:, 1, 1] - qq[:, 3, 3]
    R[:, 1, 2] = qq[:, 2, 3] - qq[:, 1, 0]
    R[:, 2, 0] = qq[:, 1, 3] - qq[:, 2, 0]
    R[:, 2, 1] = qq[:, 2, 3] + qq[:, 1, 0]
    R[:, 2, 2] = 1.0 - qq[:, 1, 1] - qq[:, 2, 2]
    return R


def _det4(A: np.ndarray) -> np.ndarray:
    """Determinants of a stack of 4×4 matrices ``(U, 4, 4) → (U,)`` (closed form)."""
    a = [[A[:, i, j] for j in range(4)] for i in range(4)]
    s0 = a[0][0] * a[1][1] - a[1][0] * a[0][1]
    s1 = a[0][0] * a[1][2] - a[1][0] * a[0][2]
    s2 = a[0][0] * a[1][3] - a[1][0] * a[0][3]
    s3 = a[0][1] * a[1][2] - a[1][1] * a[0][2]
    s4 = a[0][1] * a[1][3] - a[1][1] * a[0][3]
    s5 = a[0][2] * a[1][3] - a[1][2] * a[0][3]
    c5 = a[2][2] * a[3][3] - a[3][2] * a[2][3]
    c4 = a[2][1] * a[3][3] - a[3][1] * a[2][3]
    c3 = a[2][1] * a[3][2] - a[3][1] * a[2][2]
    c2 = a[2][0] * a[3][3] - a[3][0] * a[2][3]
    c1 = a[2][0] * a[3][2] - a[3][0] * a[2][2]
    c0 = a[2][0] * a[3][1] - a[3][0] * a[2][1]
    return s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0


def _qcp_rotation(S: np.ndarray, bound: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal rotation ``b ≈ R a`` from ``S[i, j] = Σ a_i b_j`` without LAPACK (fast path, approximate).

    The largest eigenvalue of Horn's matrix ``N`` is found by Newton's method on ``det(N − λI)`` started above it
    (``‖N‖_F``; the quartic is convex there, so the iteration decreases monotonically), its eigenvector is the
    largest column of ``adj(N − λI)``. This is the rotation of the SVD (Kabsch) method with the reflection fix.

    Args:
        S: ``(U, 3, 3)``.
        bound: ``(U,)`` optional upper bound of the largest eigenvalue (``sqrt(Σ|a|² Σ|b|²)``, Cauchy-Schwarz),
            a close start for good fits.

    Returns:
        ``R`` ``(U, 3, 3)`` and ``cond`` ``(U,)``: ``λ³ / max|adj_ii|``, a conditioning factor (large when the
        largest eigenvalue is nearly repeated, ``inf`` when not finite).
    """
    N = _horn_matrix(S)
    U = N.shape[0]
    p2 = np.einsum("uij,uij->u", N, N)
    N2 = np.matmul(N, N)
    p3 = np.einsum("uij,uji->u", N2, N)
    det = _det4(N)
    c2, c1 = -0.5 * p2, -p3 / 3.0
    lam = np.sqrt(0.75 * p2)  # λmax ≤ σ1 + σ2 + σ3 ≤ √3‖S‖_F and ‖N‖_F² = 4‖S‖_F²
    if bound is not None:
        lam = np.where(np.isfinite(bound), np.minimum(lam, bound * (1.0 + 1e-12)), lam)
    for _ in range(100):
        l2 = lam * lam
        P = (l2 + c2) * l2 + c1 * lam + det
        dP = (4.0 * l2 + 2.0 * c2) * lam + c1
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(dP > 0, P / dP, 0.0)
        step = np.maximum(step, 0.0)  # monotone from above
        lam = lam - step
        if not np.any(step > 1e-15 * np.abs(lam)):
            break
    A = N - lam[:, None, None] * np.eye(4)[None]
    adj, _ = _adjugate4(A)
    diag = np.abs(np.einsum("uii->ui", adj))
    i = np.argmax(diag, axis=1)
    q = adj[np.arange(U), :, i]
    dmax = diag[np.arange(U), i]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = q / np.sqrt(np.sum(q * q, axis=1))[:, None]
        cond = np.abs(lam) ** 3 / dmax
    cond = np.where(np.isfinite(cond) & np.isfinite(q).all(axis=1), cond, np.inf)
    q = np.where(np.isfinite(q), q, 0.0)
    q[:, 0] = np.where(cond < np.inf, q[:, 0], 1.0)
    return _quat_to_rot(q), cond


def _fast_refits(
    W: np.ndarray, feats: np.ndarray, phi: np.ndarray, D: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Approximate refits of many camera subsets from moments (BLAS) and their squared errors.

    Args:
        W: ``(U, n)`` float 0/1 subset weights.
        feats: ``(n, 17)`` per camera ``[e (3), g (3), e_i g_j (9), |e|², |g|²]`` (pair-centred coordinates).
        phi: ``(18, n)`` per camera ``[|e|², 1, e (3), g (3), g_i e_j (9), |g|²]``.
        D: largest centre norm in the pair-centred coordinates (for the error bound).

    Returns:
        ``e2`` ``(U, n)`` approximate squared errors; ``tol`` ``(U,)``: bound on the model's position error in
        metres; ``tol2`` ``(U,)``: bound on the rounding of the expanded squared distance (heuristic bounds with a
        large safety factor; ``inf`` when the fit is degenerate); ``sse`` ``(U,)``. The exact squared error lies in
        ``[max(√e2 − tol, 0)² − tol2, (√e2 + tol)² + tol2]``.
    """
    return _fast_from_moments(W @ feats, W.sum(axis=1), phi, D)


def _fast_from_moments(
    M: np.ndarray, k: np.ndarray | float, phi: np.ndarray, D: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Similarity fit from subset moments ``M`` ``(U, 17)`` (see :func:`_fast_refits`) and its squared errors."""
    U = M.shape[0]
    k = np.broadcast_to(np.asarray(k, dtype=np.float64), (U,))
    mu0 = M[:, 0:3] / k[:, None]
    mu1 = M[:, 3:6] / k[:, None]
    S = M[:, 6:15].reshape(U, 3, 3) - k[:, None, None] * mu0[:, :, None] * mu1[:, None, :]
    a2 = M[:, 15] - k * np.sum(mu0 * mu0, axis=1)
    b2 = M[:, 16] - k * np.sum(mu1 * mu1, axis=1)
    with np.errstate(invalid="ignore"):
        bound = np.sqrt(np.maximum(a2, 0.0) * np.maximum(b2, 0.0))
    R, cond = _qcp_rotation(S, bound)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.sqrt(b2 / a2)
        sR = R * s[:, None, None]
        t = mu1 - np.einsum("uij,uj->ui", sR, mu0)
        coef = np.empty((U, 18))
        coef[:, 0] = s * s
        coef[:, 1] = np.sum(t * t, axis=1)
        coef[:, 2:5] = 2.0 * np.einsum("uji,uj->ui", sR, t)
        coef[:, 5:8] = -2.0 * t
        coef[:, 8:17] = -2.0 * sR.reshape(U, 9)
        coef[:, 17] = 1.0
        e2 = coef @ phi
        # error model: moments lose ~eps·D²/spread² (relative) to cancellation, the eigen solver ~eps·cond, the
        # expanded squared distance ~eps·(sD + |t| + D)²; 1e4 is a safety factor (checked against the exact path)
        spread = np.minimum(a2, b2 / np.maximum(s * s, 1e-300)) / k
        rel = (1.0 + D * D / spread) * np.maximum(cond, 1.0)
        scale_len = (s + 1.0) * D + np.sqrt(coef[:, 1])
        tol = 1e4 * np.finfo(float).eps * scale_len * (rel + 1.0)
        tol2 = 1e4 * np.finfo(float).eps * scale_len * scale_len
    bad = ~(np.isfinite(tol) & np.isfinite(tol2) & np.isfinite(s) & (a2 > 0) & np.isfinite(e2).all(axis=1))
    tol[bad] = np.inf
    tol2[bad] = np.inf
    return e2, tol, tol2, np.sum(e2, axis=1)


def _uncertain(e2: np.ndarray, tol: np.ndarray, tol2: np.ndarray, th: np.ndarray) -> np.ndarray:
    """Rows with an error that may lie on either side of a threshold (their inlier sets need the exact path).

    Args:
        e2: ``(U, n)`` approximate squared errors; tol, tol2: ``(U,)`` bounds (see :func:`_fast_refits`);
        th: ``(r,)`` metres.

    Returns:
        ``(U,)`` bool.
    """
    unc = ~np.isfinite(tol)
    for thk in np.unique(th):
        lo = np.maximum(thk - tol, 0.0) ** 2 - tol2
        hi = (thk + tol) ** 2 + tol2
        unc |= _any((e2 >= lo[:, None]) & (e2 < hi[:, None]))
    return unc


def _refine_and_select(
    masks: np.ndarray,
    order: np.ndarray,
    ev: np.ndarray,
    gt: np.ndarray,
    th2: np.ndarray,
    config: MetricConfig,
    state: tuple[np.ndarray, ...],
    fast: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> None:
    """Refit each inlier set, score it at every threshold and update the running best models in ``state``.

    With ``fast`` (moment features of the pair), every set is first refitted approximately; only the sets that
    could still be a best model (upper bound of their inlier count ≥ best lower bound, or SSE within the error
    bound of the best) are refitted exactly, as the official code does.
    """
    best_cnt, best_sse, best_ord, best_sR, best_t, best_s, best_e2, has = state
    n = ev.shape[0]
    per = 8 * 8 * n + 512
    step = max(32, config.chunk_bytes // per)
    for lo in range(0, len(masks), step):
        m = masks[lo : lo + step]
        od = order[lo : lo + step]
        if fast is not None and len(m) > 64:
            m, od = _prefilter(m, od, th2, best_cnt, best_sse, fast)
            if len(m) == 0:
                continue
        sR, t, s = _kabsch_sets(m, ev, gt)
        e2 = _sq_errors(sR, t, ev, gt)  # (U, n)
        with np.errstate(invalid="ignore", over="ignore"):
            sse = e2.sum(axis=1)
        sse = np.where(np.isnan(sse), np.inf, sse)
        cnt = (e2[:, :, None] < th2[None, None, :]).sum(axis=1)  # (U, r)
        for k in range(len(th2)):
            c = cnt[:, k]
            cmax = c.max()
            sel = np.flatnonzero(c == cmax)
            ssel = sse[sel]
            smin = ssel.min()
            sel = sel[ssel == smin]
            j = sel[np.argmin(od[sel])]
            # official update rule; later batches hold later candidates, so an exact tie keeps the earlier model
            better = cmax > best_cnt[k] or (cmax == best_cnt[k] and smin < best_sse[k])
            if better:
                best_cnt[k] = cmax
                best_sse[k] = smin
                best_ord[k] = od[j]
                best_sR[k] = sR[j]
                best_t[k] = t[j]
                best_s[k] = s[j]
                best_e2[k] = e2[j]
                has[k] = True


def _prefilter(
    m: np.ndarray,
    od: np.ndarray,
    th2: np.ndarray,
    best_cnt: np.ndarray,
    best_sse: np.ndarray,
    fast: tuple[np.ndarray, np.ndarray, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the subsets whose exact refit could beat or tie the best model of some threshold.

    For each threshold: the exact inlier count of a refit lies in ``[lower, upper]`` (fast fit and its error
    bounds); a set is dropped when ``upper`` is below the best ``lower`` (or the best exact count so far), or when
    its count is certain and equal to the best while its SSE is certainly larger than the best one.
    """
    feats, phi, D = fast
    e2, tol, tol2, sse = _fast_refits(m.astype(np.float64), feats, phi, D)
    n = m.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):
        sse_tol = 2.0 * tol * np.sqrt(n * np.maximum(sse, 0.0)) + n * (tol * tol + tol2) + 1e-12 * np.abs(sse)
    keep = ~np.isfinite(sse_tol)
    for k in range(len(th2)):
        th = math.sqrt(th2[k])
        upper = _count(e2 < ((th + tol) ** 2 + tol2)[:, None])
        lower = _count(e2 < (np.maximum(th - tol, 0.0) ** 2 - tol2)[:, None])
        floor = max(int(best_cnt[k]), int(lower.max()))
        cand = upper >= floor
        certain = cand & (lower == upper)
        if certain.any():
            smin = float(np.min((sse + sse_tol)[certain]))
            if int(best_cnt[k]) == floor:
                smin = min(smin, float(best_sse[k]))
            cand &= ~certain | (sse - sse_tol <= smin)
        keep |= cand
    return m[keep], od[keep]


# ------------------------------------------------------------------------------------------------ scoring


def _pair_numerator(err: np.ndarray, th: np.ndarray, config: MetricConfig) -> tuple[int, np.ndarray]:
    """Official numerator ``Σ_{k ≥ skip} max(0, #(err_k < th_k) − to_dec)`` and all counts ``(r,)``."""
    counts = (err < th[None, :]).sum(axis=0).astype(np.int64) if err.size else np.zeros(len(th), np.int64)
    sk = config.skip_top_thresholds
    num = int(np.maximum(counts[sk:] - config.to_dec, 0).sum())
    return num, counts


def _pair_mAA(num: int, m: int, lt: int, config: MetricConfig) -> float:
    """Official ``mAA_on_cameras``: 0 when the numerator is 0, else ``num / (lt · (m − to_dec))``."""
    return 0.0 if num == 0 else num / (lt * (m - config.to_dec))


def _centres(df: pd.DataFrame) -> np.ndarray:
    """``c = -Rᵀ t`` per row, ``(N, 3)``."""
    R = df[_R_COLS].to_numpy(dtype=np.float64).reshape(-1, 3, 3)
    t = df[_T_COLS].to_numpy(dtype=np.float64).reshape(-1, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        return -np.einsum("nji,nj->ni", R, t)


def _line(df: pd.DataFrame, pos: int) -> int:
    try:
        from .submission import row_line
    except ImportError:  # pragma: no cover - submission.py always ships with the metric
        return pos + 2
    return row_line(df, pos)


def _check_columns(df: pd.DataFrame, path: str | None, what: str) -> None:
    missing = [c for c in ["dataset", "scene", "image", *_R_COLS, *_T_COLS] if c not in df.columns]
    if missing:
        raise InputError(path, f"{what} lacks column(s) {', '.join(missing)}")


def _validate(gt: pd.DataFrame, sub: pd.DataFrame, gt_path: str | None, sub_path: str | None) -> list[str]:
    """Official ``check_data`` (plus: any duplicate submission row is an error). Returns warnings."""
    _check_columns(gt, gt_path, "ground truth")
    _check_columns(sub, sub_path, "submission")
    notes: list[str] = []
    g_ds = gt["dataset"].astype(str).to_numpy(dtype=object)
    g_im = gt["image"].astype(str).to_numpy(dtype=object)
    s_ds = sub["dataset"].astype(str).to_numpy(dtype=object)
    s_im = sub["image"].astype(str).to_numpy(dtype=object)
    gkeys = pd.MultiIndex.from_arrays([g_ds, g_im])
    skeys = pd.MultiIndex.from_arrays([s_ds, s_im])
    gdup = np.flatnonzero(gkeys.duplicated(keep="first"))
    sdup = np.flatnonzero(skeys.duplicated(keep="first"))
    known = skeys.isin(gkeys)
    covered = gkeys.isin(skeys)
    sub_sets = set(s_ds.tolist())
    for ds in pd.unique(g_ds):
        # official order per GT dataset: GT duplicates, dataset present, unknown/duplicate images, missing images
        d = np.flatnonzero(g_ds[gdup] == ds) if gdup.size else []
        if len(d):
            i = int(gdup[d[0]])
            raise InputError(gt_path, f"image {g_im[i]!r} found twice in GT dataset {ds!r}", _line(gt, i))
        if ds not in sub_sets:
            other = sorted(map(str, sub_sets - set(g_ds.tolist())))  # a misspelt name is the likely cause
            hint = f" (it has {', '.join(map(repr, other[:5]))}, not in the ground truth)" if other else ""
            raise InputError(sub_path, f"dataset {ds!r} of the ground truth is not in the submission{hint}")
        rows = np.flatnonzero(s_ds == ds)
        bad = rows[~known[rows]]
        dup = np.intersect1d(sdup, rows)
        first_bad = min([int(x) for x in (bad[:1].tolist() + dup[:1].tolist())], default=None)
        if first_bad is not None:
            i = first_bad
            if not known[i]:
                same = [str(g) for g in g_im[g_ds == ds] if str(g).lower() == str(s_im[i]).lower()]
                hint = f" (the ground truth has {same[0]!r}: names are case-sensitive)" if same else ""
                raise InputError(sub_path, f"image {s_im[i]!r} does not belong to GT dataset {ds!r}{hint}",
                                 _line(sub, i))
            j = int(np.flatnonzero((s_ds == ds) & (s_im == s_im[i]))[0])
            raise InputError(
                sub_path, f"duplicate image {s_im[i]!r} in dataset {ds!r} (first on line {_line(sub, j)})", _line(sub, i)
            )
        miss = np.flatnonzero((g_ds == ds) & ~covered)
        if miss.size:
            eg = ", ".join(repr(g_im[i]) for i in miss[:3])
            # the likely cause: the image is there under a dataset name of another case ("ets" for "ETs")
            elsewhere = np.flatnonzero((s_im == g_im[miss[0]]) & (s_ds != ds))
            hint = (f" ({g_im[miss[0]]!r} is on line {_line(sub, int(elsewhere[0]))} under dataset "
                    f"{s_ds[elsewhere[0]]!r}{': names are case-sensitive' if str(s_ds[elsewhere[0]]).lower() == ds.lower() else ''})"
                    if elsewhere.size else "")
            raise InputError(
                sub_path, f"submission dataset {ds!r} misses {miss.size} GT image(s), e.g. {eg}{hint}"
            )
    extra = sorted(sub_sets - set(g_ds.tolist()))
    if extra:
        notes.append(f"submitted dataset(s) not in the ground truth ignored: {', '.join(map(str, extra))}")
    notes += _odd_rows(sub, sub_path)
    return notes


OFFICIAL_THRESHOLD_COUNT = 6  # IMC-2025's thresholds file: 6 per scene, of which the metric skips the first 2


def about_the_ground_truth(note: str) -> bool:
    """Whether a note of :attr:`ScoreResult.warnings` is about the labels and thresholds (a scene of fewer than 3
    images, thresholds out of order or of another count, GT centres that are not finite), not about the
    submission: a run says those as warnings of its own; how its clusters met the scenes is in the per-scene table."""
    return (": scene has " in note or note.startswith(("thresholds of ", "some GT centres"))
            or "thresholds per scene" in note or "threshold(s) per scene" in note)


def _threshold_count_problem(r: int, config: MetricConfig) -> str | None:
    """What is odd about ``r`` thresholds per scene: none left once the metric skips its first ones (every score
    was 0, silently), or another count than the official files' (3 thresholds scored 100 on one of them)."""
    sk = config.skip_top_thresholds
    if r <= sk:
        return (f"{r} threshold(s) per scene, and the metric skips the first {sk}: none is left to score (the "
                f"official files hold {OFFICIAL_THRESHOLD_COUNT})")
    if r != OFFICIAL_THRESHOLD_COUNT:
        return (f"{r} thresholds per scene where the official files hold {OFFICIAL_THRESHOLD_COUNT}: the metric "
                f"skips the first {sk} and scores the other {r - sk}")
    return None


#: largest |RRᵀ − I| entry of a rotation as written (numbers of 4 decimals stay far below)
ROTATION_TOLERANCE = 1e-2


def _odd_rows(sub: pd.DataFrame, path: str | None) -> list[str]:
    """Warnings on submission rows the metric scores without a word: a pose whose 12 numbers are neither all
    finite nor all ``nan`` (``inf``, or a few ``nan``: such a camera never registers, like an unregistered one), a
    rotation that is not one (a reflection, or not orthonormal beyond :data:`ROTATION_TOLERANCE`), and an empty
    scene (cluster) name. Each names how many rows and the first one's line."""
    where = f"{path}: " if path else ""
    notes = []
    poses = sub[[*_R_COLS, *_T_COLS]].to_numpy(dtype=np.float64)
    odd = np.flatnonzero(~np.isfinite(poses).all(axis=1) & ~np.isnan(poses).all(axis=1))
    if odd.size:
        i = int(odd[0])
        notes.append(f"{where}{odd.size} row(s) with a pose neither all finite nor all nan (inf, or some nan), "
                     f"scored as unregistered, e.g. {sub['dataset'].iloc[i]}/{sub['image'].iloc[i]} on line "
                     f"{_line(sub, i)} (an unregistered image writes nan for all 12 numbers)")
    finite = np.isfinite(poses).all(axis=1)
    R = poses[finite, :9].reshape(-1, 3, 3)
    off = np.abs(np.einsum("nij,nkj->nik", R, R) - np.eye(3)).max(axis=(1, 2)) > ROTATION_TOLERANCE
    flipped = np.linalg.det(R) < 0 if len(R) else np.zeros(0, bool)
    if (bad := np.flatnonzero(finite)[off | flipped]).size:
        i = int(bad[0])
        kinds = [f"{int(flipped.sum())} with det R < 0 (a reflection)"] if flipped.any() else []
        kinds += [f"{int(off.sum())} not orthonormal (RRᵀ ≠ I)"] if off.any() else []
        notes.append(f"{where}{bad.size} row(s) whose R is not a rotation ({', '.join(kinds)}), e.g. "
                     f"{sub['dataset'].iloc[i]}/{sub['image'].iloc[i]} on line {_line(sub, i)}: the metric uses "
                     "only the camera centres −Rᵀt, so they are scored as written, but no camera has such a pose "
                     "(a matrix built by hand, or one of another convention's tools)")
    empty = np.flatnonzero(sub["scene"].astype(str).str.strip().eq("").to_numpy())
    if empty.size:
        i = int(empty[0])
        notes.append(f"{where}{empty.size} row(s) with an empty scene (cluster) name, counted in a cluster named "
                     f"'', e.g. {sub['dataset'].iloc[i]}/{sub['image'].iloc[i]} on line {_line(sub, i)}")
    return notes


@dataclass
class _Pair:
    cluster: str
    overlap: int
    cluster_size: int
    m: int
    num: int
    mAA: float
    counts: np.ndarray
    reg: Registration | None
    good_rows: np.ndarray  # GT row positions of the shared cameras (GT order)


def _score_dataset(
    ds: str,
    gt: pd.DataFrame,
    g_c: np.ndarray,
    sub: pd.DataFrame,
    s_c: np.ndarray,
    thresholds: dict[tuple[str, str], np.ndarray],
    r: int,
    config: MetricConfig,
    details: bool,
    sub_path: str | None,
) -> tuple[
    DatasetScore, tuple[float, float, float], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any], list[str]
]:
    """Score one dataset; returns its score (percent and fractions), scene rows, per-image rows, alignments and
    warnings."""
    notes: list[str] = []
    lt = r - config.skip_top_thresholds
    g_rows = np.flatnonzero(gt["dataset"].to_numpy(dtype=object) == ds)
    s_rows = np.flatnonzero(sub["dataset"].to_numpy(dtype=object) == ds)
    g_scene = gt["scene"].astype(str).to_numpy(dtype=object)[g_rows]
    g_img = gt["image"].astype(str).to_numpy(dtype=object)[g_rows]
    s_clu = sub["scene"].astype(str).to_numpy(dtype=object)[s_rows]
    s_img = sub["image"].astype(str).to_numpy(dtype=object)[s_rows]
    scenes = list(pd.unique(g_scene))  # official: dict order = first appearance in the file
    clusters = list(pd.unique(s_clu))
    clu_size = {c: int(v) for c, v in pd.Series(s_clu).value_counts(sort=False).items()}
    img_pos = pd.Index(s_img)
    pos_of_gt = img_pos.get_indexer(g_img)  # submission row (within dataset) of each GT image
    img_cluster = s_clu[pos_of_gt]

    for sc in scenes:
        if sc != OUTLIERS and (ds, sc) not in thresholds:
            raise InputError(None, f"no thresholds for scene {sc!r} of dataset {ds!r}")

    pairs: dict[str, list[_Pair | None]] = {}
    for sc in scenes:
        rows_sc = np.flatnonzero(g_scene == sc)
        m = len(rows_sc)
        row_pairs: list[_Pair | None] = []
        for cl in clusters:
            if sc == OUTLIERS or cl == OUTLIERS:
                row_pairs.append(None)  # official: empty model, zeros in every table
                continue
            th = np.asarray(thresholds[(ds, sc)], dtype=np.float64)
            good = rows_sc[img_cluster[rows_sc] == cl]
            reg = None
            if len(good):
                reg = register_cameras(s_c[s_rows[pos_of_gt[good]]], g_c[g_rows[good]], th, config=config)
                num, counts = _pair_numerator(reg.err, th, config)
            else:
                num, counts = 0, np.zeros(r, np.int64)
            row_pairs.append(
                _Pair(cl, len(good), clu_size[cl], m, num, _pair_mAA(num, m, lt, config), counts, reg, good)
            )
        pairs[sc] = row_pairs

    # official greedy association: max overlap, then max pair mAA, then first cluster in file order
    chosen: dict[str, int] = {}
    for sc in scenes:
        ov = np.array([p.overlap if p else 0 for p in pairs[sc]], dtype=float)
        ma = np.array([p.mAA if p else 0.0 for p in pairs[sc]], dtype=float)
        chosen[sc] = int(np.lexsort((-ma, -ov))[0])

    real = [sc for sc in scenes if sc != OUTLIERS]
    users: dict[str, list[str]] = {}
    for sc in real:
        users.setdefault(clusters[chosen[sc]], []).append(sc)
    sum_overlap = sum_cluster = sum_m = 0
    a = 0
    scene_rows: list[dict[str, Any]] = []
    for sc in real:
        p = pairs[sc][chosen[sc]]
        cl = clusters[chosen[sc]]
        n_img = int((g_scene == sc).sum())
        warn: list[str] = []
        if n_img < config.to_dec:
            warn.append(f"scene has {n_img} < {config.to_dec} images: it still subtracts {config.to_dec} from the "
                        "pooled mAA denominator")
        if p is None:  # the 'outliers' cluster came first and no cluster overlaps the scene
            true_ov = int((img_cluster[g_scene == sc] == OUTLIERS).sum())
            warn.append(
                f"associated with cluster {OUTLIERS!r} (first in file, no other cluster overlaps; {true_ov} of its "
                f"images are there): the official metric counts 0 images for this scene in the mAA denominator but "
                f"still subtracts {config.to_dec}: "
                + ("where other scenes of the dataset have passing cameras, this inflates the dataset mAA (it can "
                   "exceed 100%)" if len(real) > 1 else "the dataset's only scene, so its mAA is 0")
            )
            row = dict(cluster=cl, cluster_size=0, overlap=0, mAA=0.0, counts=np.zeros(r, np.int64))
        else:
            if p.overlap == 0:
                warn.append(
                    f"no cluster overlaps this scene: associated with the first cluster {cl!r}, whose "
                    f"{p.cluster_size} images all count against clusterness"
                )
            if len(users[cl]) > 1:
                others = [o for o in users[cl] if o != sc]
                warn.append(f"cluster {cl!r} also serves scene(s) {', '.join(others)}; its size counts each time")
            sum_overlap += p.overlap
            sum_cluster += p.cluster_size
            sum_m += p.m
            a += p.num
            row = dict(cluster=cl, cluster_size=p.cluster_size, overlap=p.overlap, mAA=100.0 * p.mAA,
                       counts=p.counts)
        counts = row.pop("counts")
        scene_rows.append(
            {"dataset": ds, "scene": sc, "n_images": n_img, **row,
             **{f"registered_{k}": int(counts[k]) for k in range(r)}, "warning": "; ".join(warn)}
        )
        for w in warn:
            notes.append(f"{ds}/{sc}: {w}")

    # official get_clusterness_score / get_mAA_score / fuse_score (float64 as in numpy)
    clusterness = 0 if sum_cluster == 0 else np.float64(sum_overlap) / np.float64(sum_cluster)
    b = max(0, lt * (np.float64(sum_m) - len(real) * config.to_dec))
    mAA = 0 if b == 0 else a / b
    score = 0 if (mAA + clusterness) == 0 else 2 * mAA * clusterness / (mAA + clusterness)
    if mAA > 1:
        notes.append(f"{ds}: mAA {100 * mAA:.4f}% exceeds 100% (official quirk, see the scene warnings)")
    result = DatasetScore(100 * score, 100 * mAA, 100 * clusterness)

    per_image: list[dict[str, Any]] = []
    align: dict[str, Any] = {}
    if details:
        per_image, align = _details(ds, gt, g_rows, g_scene, g_img, g_c, s_c, s_rows, pos_of_gt, img_cluster,
                                    scenes, clusters, chosen, pairs, thresholds, r, config)
    return result, (score, mAA, clusterness), scene_rows, per_image, align, notes


def _details(
    ds: str,
    gt: pd.DataFrame,
    g_rows: np.ndarray,
    g_scene: np.ndarray,
    g_img: np.ndarray,
    g_c: np.ndarray,
    s_c: np.ndarray,
    s_rows: np.ndarray,
    pos_of_gt: np.ndarray,
    img_cluster: np.ndarray,
    scenes: list[str],
    clusters: list[str],
    chosen: dict[str, int],
    pairs: dict[str, list[_Pair | None]],
    thresholds: dict[tuple[str, str], np.ndarray],
    r: int,
    config: MetricConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-image rows and alignments of one dataset."""
    nG = len(g_rows)
    assoc = np.array([clusters[chosen[sc]] if sc != OUTLIERS else "" for sc in g_scene], dtype=object)
    err = np.full(nG, np.nan)
    err_k = np.full((nG, r), np.nan)  # under each threshold's own alignment (what pass_k compares)
    passes = np.zeros((nG, r), dtype=bool)
    disc = np.zeros(nG, dtype=bool)
    pred = np.full((nG, 3), np.nan)
    s_cent = s_c[s_rows[pos_of_gt]]
    valid = np.isfinite(s_cent).all(axis=1)
    align: dict[str, Any] = {}
    for sc in scenes:
        if sc == OUTLIERS:
            continue
        p = pairs[sc][chosen[sc]]
        th = np.asarray(thresholds[(ds, sc)], dtype=np.float64)
        models: list[dict[str, Any] | None] = [None] * r
        if p is not None and p.reg is not None:
            reg = p.reg
            idx = p.good_rows[reg.valid]  # dataset-local GT positions of the registered cameras
            kmax = int(len(th) - 1 - np.argmax(th[::-1]))  # largest threshold (last among equals)
            if reg.has_model[kmax]:
                err[idx] = reg.err[:, kmax]
                sR = reg.scale[kmax] * reg.R[kmax]
                pred[idx] = s_cent[idx] @ sR.T + reg.t[kmax]
            passes[idx] = reg.err < th[None, :]
            err_k[idx] = np.where(reg.has_model[None, :], reg.err, np.nan)
            ok = idx[passes[idx, kmax]]
            if len(ok):
                disc[ok[np.argsort(err[ok], kind="stable")[: config.to_dec]]] = True
            for k in range(r):
                if reg.has_model[k]:
                    models[k] = {"s": float(reg.scale[k]), "R": reg.R[k].tolist(), "t": reg.t[k].tolist()}
        align[sc] = {"cluster": clusters[chosen[sc]], "thresholds": [float(x) for x in th], "models": models}
    rows = []
    gc = g_c[g_rows]
    for i in range(nG):
        row = {
            "dataset": ds, "scene": g_scene[i], "image": g_img[i], "cluster": img_cluster[i],
            "associated_cluster": assoc[i],
            "in_cluster": bool(assoc[i] != "" and assoc[i] != OUTLIERS and img_cluster[i] == assoc[i]),
            "pose_valid": bool(valid[i]), "error": err[i],
        }
        for k in range(r):
            row[f"error_{k}"] = err_k[i, k]
        for k in range(r):
            row[f"pass_{k}"] = bool(passes[i, k])
        row.update(discounted=bool(disc[i]), gt_cx=gc[i, 0], gt_cy=gc[i, 1], gt_cz=gc[i, 2],
                   pred_cx=pred[i, 0], pred_cy=pred[i, 1], pred_cz=pred[i, 2])
        rows.append(row)
    return rows, align


def score(
    gt: pd.DataFrame,
    thresholds: dict[tuple[str, str], np.ndarray],
    submission: pd.DataFrame,
    *,
    details: bool = True,
    submission_path: str | None = None,
    config: MetricConfig = DEFAULT_CONFIG,
) -> ScoreResult:
    """Score a submission pose frame against GT labels with the exact IMC-2025 metric.

    Args:
        gt: labels pose frame (``dataset, scene, image`` + pose columns), file order; ``outliers`` scene allowed.
        thresholds: ``{(dataset, scene): (r,) metres}`` (official: 6, the first two skipped); every non-outlier GT
            scene needs one, all of the same length.
        submission: submission pose frame, file order (cluster names in ``scene``).
        details: also build ``per_image`` and ``alignments`` (scores are identical either way).
        submission_path: file named in errors (default ``submission.attrs["path"]``).
        config: metric constants and chunk size.

    Returns:
        The :class:`ScoreResult` (percentages).

    Raises:
        InputError: GT image twice in a dataset, a GT dataset missing from the submission, an unknown or duplicate
            submitted image, missing GT images, missing thresholds, thresholds of different lengths.
    """
    gt_path = gt.attrs.get("path")
    # (a submission built from a copy of the labels frame carries the labels' path: its faults are not that file's)
    sub_path = submission_path or (None if submission.attrs.get("path") == gt_path else submission.attrs.get("path"))
    if "scene" in submission and submission["scene"].isna().any():
        # a frame built in memory (a merge that left some clusters unset): as an empty cell of a file, a cluster
        # named '' that the checks below name (it raised a KeyError)
        submission = submission.assign(scene=submission["scene"].astype(object).where(submission["scene"].notna(), ""))
    notes = _validate(gt, submission, gt_path, sub_path)
    lens = {len(np.atleast_1d(v)) for v in thresholds.values()}
    if len(lens) > 1:
        raise InputError(None, f"number of thresholds varies per scene: {sorted(lens)}")
    r = lens.pop() if lens else 6
    if lens_note := _threshold_count_problem(r, config):
        if r <= config.skip_top_thresholds:
            raise InputError(None, lens_note)
        notes.append(lens_note)
    g_c = _centres(gt)
    s_c = _centres(submission)
    real_gt = gt["scene"].astype(str).to_numpy(dtype=object) != OUTLIERS
    if not np.isfinite(g_c[real_gt]).all():
        notes.append("some GT centres outside 'outliers' are not finite: those cameras never register")
    scored = set(zip(gt["dataset"].astype(str), gt["scene"].astype(str), strict=True))
    for (ds, sc), values in thresholds.items():  # (the official file has 0 for two thresholds the metric skips)
        zero = [k for k, v in enumerate(np.atleast_1d(values)) if k >= config.skip_top_thresholds and v <= 0]
        if zero and (ds, sc) in scored:
            notes.append(f"thresholds of {ds}/{sc}: {', '.join(f't{k}' for k in zero)} = 0, which no camera can pass "
                         "(a camera passes when its error is below the threshold): even exact poses fail there")
        row = np.atleast_1d(np.asarray(values, dtype=float))
        if (ds, sc) in scored and (np.diff(row) < 0).any():  # (every official file lists them smallest first)
            skipped = ", ".join(f"{v:g}" for v in row[:config.skip_top_thresholds])
            notes.append(f"thresholds of {ds}/{sc} are not in increasing order ({';'.join(f'{v:g}' for v in row)}): "
                         f"the metric leaves the first {config.skip_top_thresholds} unscored by their place, not "
                         f"their size (here {skipped})")

    datasets: dict[str, DatasetScore] = {}
    frac: list[tuple[float, float, float]] = []  # exact fractions: the official takes 100 * mean of these
    scene_rows: list[dict[str, Any]] = []
    image_rows: list[dict[str, Any]] = []
    alignments: dict[str, Any] = {}
    for ds in pd.unique(gt["dataset"].astype(str).to_numpy(dtype=object)):
        res, fr, srows, irows, align, dnotes = _score_dataset(
            ds, gt, g_c, submission, s_c, thresholds, r, config, details, sub_path
        )
        datasets[ds] = res
        frac.append(fr)
        scene_rows += srows
        image_rows += irows
        if details:
            alignments[ds] = align
        notes += dnotes

    # official: 100 * np.mean over datasets (per-dataset values are kept as fractions until here)
    final = [100 * float(np.mean([f[i] for f in frac])) if frac else 0.0 for i in range(3)]
    scene_cols = ["dataset", "scene", "n_images", "cluster", "cluster_size", "overlap", "mAA",
                  *[f"registered_{k}" for k in range(r)], "warning"]
    img_cols = ["dataset", "scene", "image", "cluster", "associated_cluster", "in_cluster", "pose_valid", "error",
                *[f"error_{k}" for k in range(r)], *[f"pass_{k}" for k in range(r)], "discounted",
                "gt_cx", "gt_cy", "gt_cz",
                "pred_cx", "pred_cy", "pred_cz"]
    return ScoreResult(
        score=final[0],
        mAA=final[1],
        clusterness=final[2],
        datasets=datasets,
        scenes=pd.DataFrame(scene_rows, columns=scene_cols),
        per_image=pd.DataFrame(image_rows, columns=img_cols),
        alignments=alignments,
        warnings=notes,
    )


def score_files(
    gt_csv: str | Path,
    thresholds_csv: str | Path,
    submission_csv: str | Path,
    *,
    details: bool = True,
    config: MetricConfig = DEFAULT_CONFIG,
    datasets: Sequence[str] | None = None,
    convention: bool = False,
) -> ScoreResult:
    """Read the three IMC-2025 CSVs and :func:`score` them.

    Args:
        gt_csv: ``train_labels.csv``-style labels.
        thresholds_csv: ``train_thresholds.csv``-style thresholds.
        submission_csv: the submission.
        details: see :func:`score`.
        config: see :func:`score`.
        datasets: score only these datasets of the labels (a run of some datasets against the full labels file);
            the submission's rows of other datasets are ignored, as the official metric ignores datasets the
            labels lack. ``None``: every dataset of the labels, each of which the submission must hold.
        convention: also score the poses of the datasets below :data:`imc_core.convention.LOW_MAA` mAA read as
            camera→world and with transposed rotations (:func:`imc_core.convention.convention_check`): the table
            goes to ``convention`` (None when every dataset reaches it), and a warning joins ``warnings`` when
            another reading scores clearly better than the file as written, or one scene reads better so.

    Returns:
        The :class:`ScoreResult`.

    Raises:
        InputError: any bad file (named, with the line when there is one).
    """
    from .convention import check_scored
    from .data import missing_thresholds_error, read_labels, read_thresholds, scenes_without_thresholds
    from .submission import read_pose_csv, take_rows

    gt = read_labels(gt_csv)
    left_out: set[str] = set()
    if datasets is not None:
        names = set(gt["dataset"].astype(str))
        if unknown := [d for d in dict.fromkeys(datasets) if d not in names]:
            raise InputError(gt_csv, f"no dataset {', '.join(map(repr, unknown))} in the labels (they hold "
                                     f"{', '.join(sorted(names))})")
        left_out = names - set(datasets)
        gt = gt[~gt["dataset"].astype(str).isin(left_out)].reset_index(drop=True)
    th = read_thresholds(thresholds_csv)
    if lacking := scenes_without_thresholds(gt, th):  # named here, where the file is known
        raise missing_thresholds_error(thresholds_csv, lacking)
    sub = read_pose_csv(submission_csv, require_rows=True)
    if left_out:  # not "submitted dataset(s) not in the ground truth": they are, and were not asked for
        sub = take_rows(sub, ~sub["dataset"].astype(str).isin(left_out).to_numpy())
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", RuntimeWarning)
        res = score(gt, th, sub, details=details, submission_path=str(submission_csv), config=config)
    if convention and (check := check_scored(gt, th, sub, res, config)) is not None:
        res.convention = check.table
        if note := check.warning():
            res.warnings.append(note)
    return res
