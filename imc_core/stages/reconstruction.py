"""Stage ``reconstruction``: pycolmap database import, geometric verification, mapping, models → clusters.

Flow of :func:`reconstruct` for one dataset:

1. **Database** (``out_dir/database.db``): one camera per image (``camera_model``; focal length from EXIF when the
   image has it, flagged as a prior, else ``focal_prior · max(W, H)``; principal point at the image centre), the
   keypoints of ``features.h5`` shifted by **+0.5 px** (``features.h5`` stores pixel coordinates whose top-left pixel
   centre is ``(0, 0)``; COLMAP puts it at ``(0.5, 0.5)``, see ``docs/formats.md``), and the raw matches of every
   pair of ``pairs`` that has at least one match in ``matches.h5``.
2. **Geometric verification** of exactly those pairs (``pycolmap.geometric_verification`` over the matched pairs,
   the 4.2.1 equivalent of ``verify_matches(db, pairs.txt)`` that also takes ``num_threads``), RANSAC seeded per
   pair, on ``map_jobs`` threads when deterministic (the same database as on one thread).
   Steps 1–2 depend only on the inputs and :func:`database_conf`; given ``database=`` (a verified database of an
   earlier call with the same of both, which the pipeline caches), they are skipped and that database is copied.
3. **Mapping**: ``pycolmap.incremental_mapping`` (``mapper = "incremental"``, with registered-image progress and a
   ``CancellationToken`` tied to ``should_cancel``) or ``pycolmap.global_mapping`` (``mapper = "global"``, GLOMAP
   in COLMAP 4; no progress or cancellation inside it). With ``map_components`` (incremental only) each connected
   component of the verified match graph (pairs with ≥ ``min_num_matches`` inliers, the mapper's own view) that
   has ≥ ``min_model_size`` images gets a mapper call of its own (``image_names``) when ``map_jobs > 1``, that many
   at once: no model can span two components, so this only splits the work (multi-scene datasets map in parallel
   while each mapper stays single-threaded and deterministic; the models are those of one whole-database call).
   Mapping depends only on the verified database and :func:`mapping_conf`; given ``mapped=`` (the raw models an
   earlier call wrote with ``keep_mapped``, which the pipeline caches), it is skipped and those models are read, so
   that a change of a ``refine_*`` key costs only the final adjustment.
4. **Clusters**: every model becomes a cluster ``cluster0, cluster1, …`` (most kept images first). COLMAP can
   register one image in several models; :func:`resolve_registrations` keeps it once (model where it has most 3D
   points, ties → larger model → lower model index) and the log says so. Unregistered images go to ``outliers``.

Determinism: with ``deterministic=True`` every random seed (global PRNG, RANSAC, mapper, triangulator) is ``seed``
and every mapper and bundle adjustment runs on one thread (the verification's threads take their seed per pair), so
two runs on the same inputs give identical poses.

Failures inside this stage (no pair with matches, no model, an exception inside pycolmap) never raise: the result has
``ok=False``, every image is an outlier and the log says why. Broken inputs (missing h5 file or image group, match
indices out of range) raise :class:`~imc_core.errors.InputError`; cancellation raises
:class:`~imc_core.errors.Cancelled` after removing the partial outputs.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import name_list
from ..errors import Cancelled, ConfigError, InputError
from ..fsutil import read_only_sqlite
from .matching import names_to_pair

if TYPE_CHECKING:  # pragma: no cover
    import pycolmap

MAPPERS = ("incremental", "global")
CAMERA_MODELS = ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV")
VERIFIERS = ("colmap",)
CAMERA_MODES = ("per_image", "per_size")
#: losses of the final bundle adjustment (``reconstruction.refine_loss``); "none" skips it
REFINE_LOSSES = ("none", "trivial", "soft_l1", "huber", "cauchy")
#: observations of points triangulated under this angle (degrees) go with the refinement's filter (COLMAP's mapper
#: default ``filter_min_tri_angle``)
REFINE_MIN_TRI_ANGLE = 1.5
OUTLIERS = "outliers"

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]


#: bump when the stage's output changes for the same config: it is part of the cache key
VERSION = 3  # 3: the final adjustment starts from the models as read back from their files (poses moved by ~1e-15)

@dataclass
class ReconstructionConfig:
    """Database import, verification and mapping options (``reconstruction.*``)."""

    mapper: str = "incremental"  # incremental | global (pycolmap.global_mapping, GLOMAP in COLMAP 4)
    camera_model: str = "SIMPLE_RADIAL"  # SIMPLE_RADIAL | SIMPLE_PINHOLE | PINHOLE | RADIAL | OPENCV, one per image
    camera_mode: str = "per_image"  # per_image (one camera each) | per_size (images of equal size and EXIF focal share one)
    focal_prior: float = 1.2  # focal = EXIF focal when present, else focal_prior * max(W, H)
    # COLMAP lowers a min_model_size too large for the dataset: with 1000, ETs keeps its models of 10 and 9 images
    min_model_size: int = 3  # the mapper drops models with fewer registered images (COLMAP lowers too large a value)
    max_num_models: int = 25  # incremental mapper: stop after this many models
    min_num_matches: int = 15  # mapper ignores verified pairs with fewer inlier matches
    num_threads: int = -1  # -1 = all cores; mapping and adjustments on 1 when deterministic (verification: see _verify)
    seed: int = 0  # random seed of RANSAC, mapper and triangulator (used when deterministic)
    deterministic: bool = True  # seeds + num_threads=1 → identical poses on repeat
    verify: str = "colmap"  # geometric verification: colmap (RANSAC E/F/H on the imported pairs)
    verify_max_error: float = 4.0  # RANSAC inlier threshold in pixels for verification
    verify_min_num_inliers: int = 15  # a pair needs this many verified inliers to count
    verify_max_num_trials: int = 10000  # RANSAC iteration cap for verification
    verify_confidence: float = 0.999  # RANSAC confidence for verification
    init_min_num_inliers: int = 100  # incremental: inliers the initial pair needs (Kaggle teams lower it, e.g. 50)
    init_max_error: float = 4.0  # incremental: reprojection error (px) for the initial pair
    init_num_trials: int = 200  # incremental: how many initial pairs are tried per model
    abs_pose_min_num_inliers: int = 30  # incremental: inliers needed to register a new image
    abs_pose_min_inlier_ratio: float = 0.25  # incremental: inlier ratio needed to register a new image
    abs_pose_max_error: float = 12.0  # incremental: PnP RANSAC threshold in pixels
    filter_max_reproj_error: float = 4.0  # incremental: observations above this error (px) are filtered
    max_model_overlap: int = 20  # incremental: images a new model may share with earlier ones
    map_components: bool = True  # incremental: map the match graph's components side by side when cores allow
    ba_refine_focal: bool = True  # bundle adjustment refines the focal length
    ba_refine_principal_point: bool = False  # bundle adjustment refines the principal point
    ba_refine_extra_params: bool = True  # bundle adjustment refines distortion parameters
    ba_local_num_images: int = 6  # incremental: images in each local bundle adjustment
    ba_global_images_ratio: float = 1.1  # incremental: global adjustment when the registered images grew by this ratio
    ba_global_points_ratio: float = 1.1  # incremental: global adjustment also when the 3-D points grew by this ratio
    ba_global_max_refinements: int = 5  # incremental: rounds of retriangulation + filtering + global adjustment
    ba_global_ignore_redundant_points: bool = False  # incremental: leave well-covered 3-D points out of global BA
    # Ceres stops an adjustment when the cost changes by less than this (relative); 0 = COLMAP's: never on the cost
    # (its gradient tolerance and iteration cap still stop it; 1e-7 changed neither scores nor time, BENCHMARKS.md)
    ba_local_function_tolerance: float = 0.0  # incremental: for each local bundle adjustment
    ba_global_function_tolerance: float = 0.0  # incremental: for each global bundle adjustment
    tri_max_transitivity: int = 1  # incremental: correspondence-graph hops the triangulator follows to build tracks
    # COLMAP 4 tries an image that PnP cannot register once more from its 2-D matches alone (Zheng and Wu); each such
    # try took about 10 s on learned matches (BENCHMARKS.md, "Learned variants map slowly")
    structure_less_fallback: bool = True  # incremental: register images from 2-D matches when PnP fails (COLMAP's)
    max_runtime_s: int = -1  # incremental: stop mapping after this many seconds, keeping the models so far (≤ 0: no limit)
    # A model built on a wrong start explains few of its images' verified matches: 0.06 observations per inlier match
    # for toy_fb82's dioscuri at seed 6 (mAA 0) against 0.41-0.63 for the other models of ETs, toy_fb82, mini_imc25
    # and strecha_mix, but for mini_imc25's bike (0.14 at every seed; BENCHMARKS.md, "Models that explain few of their
    # matches")
    remap_min_obs_per_match: float = 0.0  # incremental: a model under this is mapped again with other seeds (0 = off)
    remap_seeds: int = 3  # incremental: the other seeds tried then (seed + 1, seed + 2, …), until a model passes
    extract_colors: bool = True  # colour 3D points from the images (needs the image files; missing ones are skipped)
    # refine_loss = "none" switches the whole final step off, refine_filter_max_reproj_error included
    refine_loss: str = "none"  # final bundle adjustment of every model: none | trivial | soft_l1 | huber | cauchy
    refine_loss_scale: float = 1.0  # its robust loss scale in pixels
    refine_filter_max_reproj_error: float = 0.0  # then drop observations above this error (px), adjust again; 0 = no
    refine_max_iterations: int = 50  # Ceres iterations per final adjustment (COLMAP's global adjustments: 50)
    refine_function_tolerance: float = 0.0  # stop a final adjustment when the cost changes less (relative); 0 = never

    def __post_init__(self) -> None:
        if self.mapper not in MAPPERS:
            raise ConfigError(f"reconstruction.mapper must be one of {', '.join(MAPPERS)}, got {self.mapper!r}")
        if self.camera_model not in CAMERA_MODELS:
            raise ConfigError(f"reconstruction.camera_model must be one of {', '.join(CAMERA_MODELS)}, "
                              f"got {self.camera_model!r}")
        if self.camera_mode not in CAMERA_MODES:
            raise ConfigError(f"reconstruction.camera_mode must be one of {', '.join(CAMERA_MODES)}, "
                              f"got {self.camera_mode!r}")
        if self.verify not in VERIFIERS:
            raise ConfigError(f"reconstruction.verify must be one of {', '.join(VERIFIERS)}, got {self.verify!r}")
        if not self.focal_prior > 0:
            raise ConfigError(f"reconstruction.focal_prior must be > 0, got {self.focal_prior}")
        for key in ("min_model_size", "max_num_models", "min_num_matches", "verify_min_num_inliers",
                    "verify_max_num_trials", "init_min_num_inliers", "init_num_trials", "abs_pose_min_num_inliers",
                    "ba_global_max_refinements", "tri_max_transitivity", "max_model_overlap"):
            if getattr(self, key) < 1:
                raise ConfigError(f"reconstruction.{key} must be ≥ 1, got {getattr(self, key)}")
        # (the bounds COLMAP's options check holds: below them a run went on to score 0 with "Check failed:
        # options_->Check()", naming no key)
        if self.ba_local_num_images < 2:
            raise ConfigError(f"reconstruction.ba_local_num_images must be ≥ 2, got {self.ba_local_num_images}")
        for key in ("verify_max_error", "init_max_error", "abs_pose_max_error", "filter_max_reproj_error"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"reconstruction.{key} must be > 0, got {getattr(self, key)}")
        for key in ("ba_global_images_ratio", "ba_global_points_ratio"):
            if not getattr(self, key) > 1:
                raise ConfigError(f"reconstruction.{key} must be > 1, got {getattr(self, key)}")
        if self.refine_loss not in REFINE_LOSSES:
            raise ConfigError(f"reconstruction.refine_loss must be one of {', '.join(REFINE_LOSSES)}, "
                              f"got {self.refine_loss!r}")
        if not self.refine_loss_scale > 0:
            raise ConfigError(f"reconstruction.refine_loss_scale must be > 0, got {self.refine_loss_scale}")
        for key in ("ba_local_function_tolerance", "ba_global_function_tolerance", "refine_function_tolerance"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"reconstruction.{key} must be in [0, 1), got {getattr(self, key)}")
        if self.refine_max_iterations < 1:
            raise ConfigError(f"reconstruction.refine_max_iterations must be ≥ 1, got {self.refine_max_iterations}")
        if self.refine_filter_max_reproj_error < 0:
            raise ConfigError("reconstruction.refine_filter_max_reproj_error must be ≥ 0 (0 = off), "
                              f"got {self.refine_filter_max_reproj_error}")
        if not 0 < self.verify_confidence < 1:
            raise ConfigError(f"reconstruction.verify_confidence must be in (0, 1), got {self.verify_confidence}")
        if not 0 <= self.abs_pose_min_inlier_ratio <= 1:
            raise ConfigError(f"reconstruction.abs_pose_min_inlier_ratio must be in [0, 1], "
                              f"got {self.abs_pose_min_inlier_ratio}")
        if self.num_threads == 0 or self.num_threads < -1:
            raise ConfigError(f"reconstruction.num_threads must be -1 (all cores) or ≥ 1, got {self.num_threads}")
        if self.seed < 0:
            raise ConfigError(f"reconstruction.seed must be ≥ 0, got {self.seed}")
        if not self.remap_min_obs_per_match >= 0:
            raise ConfigError("reconstruction.remap_min_obs_per_match must be ≥ 0 (0 = off), "
                              f"got {self.remap_min_obs_per_match}")
        if self.remap_seeds < 1:
            raise ConfigError(f"reconstruction.remap_seeds must be ≥ 1, got {self.remap_seeds}")

    @property
    def threads(self) -> int:
        """Thread count handed to pycolmap's mappers and adjustments: 1 when deterministic, else ``num_threads``."""
        return 1 if self.deterministic else self.num_threads


default_conf = ReconstructionConfig()

#: keys that only the mapper and the final adjustment read: the database (import + verification) does not depend on
#: them, so :func:`database_conf` leaves them out. A key not listed here counts for the database (safe by default).
MAPPING_ONLY_KEYS = frozenset({
    "mapper", "min_model_size", "max_num_models", "min_num_matches", "num_threads", "init_min_num_inliers",
    "init_max_error", "init_num_trials", "abs_pose_min_num_inliers", "abs_pose_min_inlier_ratio", "abs_pose_max_error",
    "filter_max_reproj_error", "max_model_overlap", "map_components", "ba_refine_focal", "ba_refine_principal_point",
    "ba_refine_extra_params", "ba_local_num_images", "ba_global_images_ratio", "ba_global_points_ratio",
    "ba_global_max_refinements", "ba_global_ignore_redundant_points", "ba_local_function_tolerance",
    "ba_global_function_tolerance", "tri_max_transitivity", "structure_less_fallback", "max_runtime_s",
    "remap_min_obs_per_match", "remap_seeds",
    "extract_colors", "refine_loss", "refine_loss_scale", "refine_filter_max_reproj_error", "refine_max_iterations",
    "refine_function_tolerance",
})


#: keys that only the final bundle adjustment reads: the mapper's models do not depend on them, so
#: :func:`mapping_conf` leaves them out
REFINE_KEYS = frozenset({"refine_loss", "refine_loss_scale", "refine_filter_max_reproj_error", "refine_max_iterations",
                         "refine_function_tolerance"})


def mapping_conf(conf: ReconstructionConfig) -> dict[str, Any]:
    """The part of ``conf`` that decides the mapper's models (everything but :data:`REFINE_KEYS`).

    Two deterministic calls of :func:`reconstruct` on the same inputs whose ``mapping_conf`` is equal map the same
    models, so the second can read the first's (``keep_mapped``) with ``mapped=`` and go straight to the final
    adjustment.
    """
    return {k: v for k, v in asdict(conf).items() if k not in REFINE_KEYS}


def database_conf(conf: ReconstructionConfig) -> dict[str, Any]:
    """The part of ``conf`` that decides the verified database (cameras, keypoints, matches, two-view geometries).

    Two deterministic calls of :func:`reconstruct` on the same inputs whose ``database_conf`` is equal write the same
    database, so the second can take the first's with ``database=`` (``num_threads`` is left out because a
    deterministic run's verification does not depend on its threads, see :func:`_verify`; a non-deterministic
    database is never reused).
    """
    return {k: v for k, v in asdict(conf).items() if k not in MAPPING_ONLY_KEYS}


@dataclass
class ReconstructionResult:
    """What :func:`reconstruct` returns.

    Attributes:
        poses: pose frame (``docs/formats.md``) with one row per input image, in input order; ``scene`` is the
            cluster name (``cluster0`` = most images) or ``outliers`` with a nan pose.
        n_models: number of clusters (models that kept at least one image).
        models: ``out_dir/models/<k>/`` for cluster ``k``, COLMAP binary models (the mapper's raw model, so an
            image resolved to another cluster may still appear in it).
        log: human-readable lines (pairs verified, models, registrations, resolutions, failures).
        ok: ``False`` when reconstruction failed; then every image is an outlier and ``log`` says why.
        database_verified: ``True`` when ``out_dir/database.db`` holds a finished import and verification (also when
            mapping failed afterwards), so that it can be passed as ``database=`` to a later call.
        steps: seconds per step, in the order they ran (:data:`STEPS`; the steps reached before a failure).
        error: why reconstruction failed (``ok=False``), the reason ``log`` ends with; ``None`` when it did not.
    """

    poses: pd.DataFrame
    n_models: int
    models: list[Path]
    log: list[str]
    ok: bool
    database_verified: bool = False
    steps: dict[str, float] = field(default_factory=dict)
    error: str | None = None


#: the steps :attr:`ReconstructionResult.steps` can name, in run order (import and verification, or the reuse;
#: mapping, or the reuse of its models)
STEPS = ("inputs read", "database import", "geometric verification", "verified database reused", "mapping",
         "mapped models reused", "final bundle adjustment", "models written")
#: in ``out_dir`` of a ``keep_mapped`` call, and in a ``mapped=`` folder: the mapper's models ``models/<k>/`` (mapper
#: order, before the final adjustment) and the mapping's log lines
MAPPED_DIR = "mapped"
MAPPED_LOG = "mapping.log"


# ---------------------------------------------------------------------------------------------------- h5 inputs


def _read_keypoints(features_path: Path, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """Read keypoints and image sizes of ``names`` from ``features.h5``.

    Args:
        features_path: hloc-layout features file (one group per image name).
        names: image names to read.

    Returns:
        ``(keypoints, sizes)``: ``keypoints[name]`` is ``(N, 2)`` float32 in the features.h5 convention (top-left
        pixel centre at ``(0, 0)``), ``sizes[name]`` is ``(W, H)``.

    Raises:
        InputError: the file is missing or unreadable, or an image group / dataset is missing or malformed.
    """
    import h5py

    keypoints: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[int, int]] = {}
    try:
        with h5py.File(features_path, "r") as f:
            for name in names:
                if name not in f or "keypoints" not in f[name] or "image_size" not in f[name]:
                    raise InputError(features_path, f"no keypoints/image_size for image {name!r}")
                kp = np.asarray(f[name]["keypoints"][()], dtype=np.float32)
                if kp.ndim != 2 or kp.shape[1] != 2 or not np.isfinite(kp).all():
                    raise InputError(features_path, f"keypoints of {name!r} must be finite N×2, got {kp.shape}")
                size = np.asarray(f[name]["image_size"][()]).reshape(-1)
                if size.shape != (2,) or (size <= 0).any():
                    raise InputError(features_path, f"image_size of {name!r} must be 2 positive ints (W, H)")
                keypoints[name] = kp
                sizes[name] = (int(size[0]), int(size[1]))
    except OSError as err:
        raise InputError(features_path, f"cannot read features file: {err}") from None
    return keypoints, sizes


def _read_matches(f: Any, a: str, b: str, path: Path) -> np.ndarray | None:
    """Matches of pair ``(a, b)`` from an open ``matches.h5`` (either key order), or ``None`` when absent.

    Returns:
        ``(M, 2)`` int64 indices into a's and b's keypoints.
    """
    for key, swap in ((names_to_pair(a, b), False), (names_to_pair(b, a), True)):
        if key in f and "matches" in f[key]:
            m = np.asarray(f[key]["matches"][()])
            if m.size == 0:
                return np.zeros((0, 2), np.int64)
            if m.ndim != 2 or m.shape[1] != 2:
                raise InputError(path, f"matches of pair {key!r} must be M×2, got {m.shape}")
            m = m.astype(np.int64)
            return m[:, ::-1].copy() if swap else m
    return None


def _distinct_pairs(pairs: list[tuple[str, str]], names: set[str], path: Path) -> list[tuple[str, str]]:
    """``pairs`` without self-pairs and without a pair already listed in either order; :class:`InputError` (naming
    ``path``, the matches file) for a pair that names an image not in ``names``."""
    out: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for a, b in pairs:
        key = frozenset((a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        if a not in names or b not in names:
            raise InputError(path, f"pair ({a!r}, {b!r}) names an image not in the input list")
        out.append((a, b))
    return out


def _load_pair_matches(matches_path: Path, pairs: list[tuple[str, str]], n_kpts: dict[str, int]
                       ) -> dict[tuple[str, str], np.ndarray]:
    """Matches of every pair in ``pairs`` that has ≥ 1 match (duplicates and self-pairs skipped).

    Raises:
        InputError: unreadable file, unknown image in a pair, or a match index out of range.
    """
    import h5py

    out: dict[tuple[str, str], np.ndarray] = {}
    try:
        with h5py.File(matches_path, "r") as f:
            for a, b in _distinct_pairs(pairs, set(n_kpts), matches_path):
                m = _read_matches(f, a, b, matches_path)
                if m is None or len(m) == 0:
                    continue
                if (m < 0).any() or (m[:, 0] >= n_kpts[a]).any() or (m[:, 1] >= n_kpts[b]).any():
                    raise InputError(matches_path, f"match index out of range in pair ({a!r}, {b!r})")
                out[(a, b)] = m
    except OSError as err:
        raise InputError(matches_path, f"cannot read matches file: {err}") from None
    return out


def _pair_match_counts(matches_path: Path, pairs: list[tuple[str, str]],
                       names: set[str]) -> dict[tuple[str, str], int]:
    """How many matches each pair of ``pairs`` that :func:`_load_pair_matches` keeps has, in its order, from the
    stored shapes alone (no match is read: a re-run on a verified database needs no more; 0.1 s of ETs' re-run)."""
    from .matching import match_counts

    counts = match_counts(matches_path, _distinct_pairs(pairs, names, matches_path))
    return {pair: n for pair, n in counts.items() if n > 0}


def _exif_focal(image_dir: Path, name: str) -> float | None:
    """EXIF focal length in pixels via :func:`imc_core.images.exif_focal_px`, ``None`` when unknown/unavailable."""
    path = image_dir / name
    if not path.is_file():
        return None
    try:
        from ..images import exif_focal_px
    except ImportError:  # images.py not there yet: no EXIF prior
        return None
    try:
        focal = exif_focal_px(path)
    except Exception:  # a broken EXIF block must not stop reconstruction
        return None
    return float(focal) if focal is not None and np.isfinite(focal) and focal > 0 else None


# ------------------------------------------------------------------------------------------------------ database


def make_camera(camera_id: int, conf: ReconstructionConfig, size: tuple[int, int],
                exif_focal: float | None) -> pycolmap.Camera:
    """One camera for one image.

    Args:
        camera_id: COLMAP camera id (1-based).
        conf: stage config (``camera_model``, ``focal_prior``).
        size: ``(W, H)`` in pixels.
        exif_focal: focal length in pixels from EXIF, or ``None``.

    Returns:
        A camera with principal point at ``(W/2, H/2)``, zero distortion, focal ``exif_focal`` (then
        ``has_prior_focal_length``) or ``focal_prior · max(W, H)``.
    """
    import pycolmap

    w, h = size
    focal = exif_focal if exif_focal is not None else conf.focal_prior * max(w, h)
    cam = pycolmap.Camera.create_from_model_name(camera_id, conf.camera_model, float(focal), int(w), int(h))
    cam.has_prior_focal_length = exif_focal is not None
    return cam


def build_database(db_path: Path, images: list[str], keypoints: dict[str, np.ndarray],
                   sizes: dict[str, tuple[int, int]], matches: dict[tuple[str, str], np.ndarray],
                   conf: ReconstructionConfig, image_dir: Path) -> dict[str, int]:
    """Write cameras, images, keypoints (+0.5 px) and raw matches into a fresh COLMAP database.

    Args:
        db_path: database file to create (removed first when present).
        images: image names, N; image ``i`` gets camera and image id ``i + 1``.
        keypoints: ``(K_i, 2)`` float32 per image, features.h5 convention (top-left pixel centre at ``(0, 0)``).
        sizes: ``(W, H)`` per image.
        matches: ``(M, 2)`` indices per pair ``(a, b)``.
        conf: stage config.
        image_dir: where the images lie (read for EXIF only).

    Returns:
        Image name → COLMAP image id.
    """
    import pycolmap

    if db_path.exists():
        db_path.unlink()
    ids: dict[str, int] = {}
    db = pycolmap.Database.open(db_path)
    try:
        with pycolmap.DatabaseTransaction(db):
            shared: dict[tuple[int, int, float | None], int] = {}  # camera_mode=per_size: (W, H, EXIF f) → id
            for i, name in enumerate(images):
                focal = _exif_focal(image_dir, name)
                group = (*sizes[name], focal)
                if conf.camera_mode == "per_size" and group in shared:
                    camera_id = shared[group]
                else:
                    cam = make_camera(len(shared) + 1 if conf.camera_mode == "per_size" else i + 1, conf,
                                      sizes[name], focal)
                    camera_id = db.write_camera(cam, use_camera_id=True)
                    shared[group] = camera_id
                image_id = db.write_image(pycolmap.Image(name=name, camera_id=camera_id, image_id=i + 1),
                                          use_image_id=True)
                ids[name] = image_id
                db.write_keypoints(image_id, keypoints[name].astype(np.float32) + np.float32(0.5))
            for (a, b), m in matches.items():
                db.write_matches(ids[a], ids[b], np.ascontiguousarray(m, dtype=np.uint32))
    finally:
        db.close()
    return ids


def _verify(db_path: Path, conf: ReconstructionConfig, token: pycolmap.CancellationToken, threads: int) -> None:
    """RANSAC-verify every matched pair of the database (the imported pairs) on ``threads`` threads (-1 = all cores),
    seeded when deterministic.

    COLMAP's RANSAC takes its seed afresh for each pair (``ransac.random_seed``), so a pair's two-view geometry does
    not depend on the thread that verifies it nor on the pairs before it: a deterministic run verifies on several
    threads and writes the same database as on one (unit test; ETs, toy_fb82 and strecha_mix bit for bit on 1-8
    threads with ``bench/bench_verify_threads.py``, BENCHMARKS.md).
    """
    import pycolmap

    tvg = pycolmap.TwoViewGeometryOptions()
    tvg.min_num_inliers = conf.verify_min_num_inliers
    tvg.ransac.max_error = conf.verify_max_error
    tvg.ransac.max_num_trials = conf.verify_max_num_trials
    tvg.ransac.confidence = conf.verify_confidence
    if conf.deterministic:
        tvg.ransac.random_seed = conf.seed
    verifier = pycolmap.GeometricVerifierOptions()
    verifier.num_threads = threads
    pycolmap.geometric_verification(db_path, verifier_options=verifier, two_view_geometry_options=tvg,
                                    cancellation_token=token)


def _db_stats(db_path: Path) -> tuple[int, int]:
    """``(matched pairs, verified pairs)`` of a database: a verified pair has inliers, as :func:`pair_inliers` and
    the match graph count them (COLMAP's ``num_verified_image_pairs`` also counts the pairs it found degenerate,
    with none: the log said "75 of 75 verified" where the match graph had 63)."""
    con = read_only_sqlite(db_path)
    try:
        matched = con.execute("SELECT COUNT(*) FROM matches WHERE rows > 0").fetchone()[0]
        verified = con.execute("SELECT COUNT(*) FROM two_view_geometries WHERE rows > 0").fetchone()[0]
    finally:
        con.close()
    return int(matched), int(verified)


# ------------------------------------------------------------------------------------------------------- mapping


def incremental_options(conf: ReconstructionConfig) -> pycolmap.IncrementalPipelineOptions:
    """``IncrementalPipelineOptions`` from the config (seeded and single-threaded when deterministic)."""
    import pycolmap

    o = pycolmap.IncrementalPipelineOptions()
    o.min_model_size = conf.min_model_size
    o.max_num_models = conf.max_num_models
    o.min_num_matches = conf.min_num_matches
    o.max_model_overlap = conf.max_model_overlap
    o.init_num_trials = conf.init_num_trials
    o.max_runtime_seconds = conf.max_runtime_s
    o.structure_less_registration_fallback = conf.structure_less_fallback
    o.num_threads = conf.threads
    o.extract_colors = conf.extract_colors
    o.ba_refine_focal_length = conf.ba_refine_focal
    o.ba_refine_principal_point = conf.ba_refine_principal_point
    o.ba_refine_extra_params = conf.ba_refine_extra_params
    o.mapper.init_min_num_inliers = conf.init_min_num_inliers
    o.mapper.init_max_error = conf.init_max_error
    o.mapper.abs_pose_min_num_inliers = conf.abs_pose_min_num_inliers
    o.mapper.abs_pose_min_inlier_ratio = conf.abs_pose_min_inlier_ratio
    o.mapper.abs_pose_max_error = conf.abs_pose_max_error
    o.mapper.abs_pose_refine_focal_length = conf.ba_refine_focal
    o.mapper.filter_max_reproj_error = conf.filter_max_reproj_error
    o.mapper.ba_local_num_images = conf.ba_local_num_images
    o.ba_global_frames_ratio = conf.ba_global_images_ratio  # one image = one frame here (no rigs)
    o.ba_global_points_ratio = conf.ba_global_points_ratio
    o.ba_global_max_refinements = conf.ba_global_max_refinements
    o.mapper.ba_global_ignore_redundant_points3D = conf.ba_global_ignore_redundant_points
    o.ba_local_function_tolerance = conf.ba_local_function_tolerance
    o.ba_global_function_tolerance = conf.ba_global_function_tolerance
    o.triangulation.max_transitivity = conf.tri_max_transitivity
    if conf.deterministic:
        o.random_seed = conf.seed
        o.mapper.random_seed = conf.seed
        o.triangulation.random_seed = conf.seed
    return o


def global_options(conf: ReconstructionConfig) -> pycolmap.GlobalPipelineOptions:
    """``GlobalPipelineOptions`` (GLOMAP) from the config (seeded and single-threaded when deterministic)."""
    import pycolmap

    o = pycolmap.GlobalPipelineOptions()
    o.min_model_size = conf.min_model_size
    o.min_num_matches = conf.min_num_matches
    o.num_threads = conf.threads
    o.mapper.num_threads = conf.threads
    ba = o.mapper.bundle_adjustment
    ba.refine_focal_length = conf.ba_refine_focal
    ba.refine_principal_point = conf.ba_refine_principal_point
    ba.refine_extra_params = conf.ba_refine_extra_params
    ba.ceres.use_gpu = False  # CPU solvers: same results on every machine (PyPI pycolmap is CPU-only anyway)
    o.mapper.global_positioning.use_gpu = False
    if conf.deterministic:
        ba.ceres.solver_options.num_threads = 1
        for opts in (o, o.mapper, o.mapper.rotation_averaging, o.mapper.global_positioning,
                     o.mapper.retriangulation):
            opts.random_seed = conf.seed
    return o


class _Registered:
    """Mapper callbacks: count registered images for progress (+2 per initial pair, +1 per next image, capped at
    ``total``) and poll for cancellation. They never raise into pycolmap: ``poll`` cancels the token instead."""

    def __init__(self, total: int, progress: ProgressFn | None, poll: Callable[[], None]) -> None:
        self.total, self.count, self.progress, self.poll = total, 0, progress, poll
        self.lock = threading.Lock()  # components map in parallel threads

    def _bump(self, n: int) -> None:
        with self.lock:
            self.count = min(self.count + n, self.total)
            if self.progress is not None:
                self.progress(self.count, self.total, f"mapping: {self.count}/{self.total} images registered")
        self.poll()

    def initial_pair(self) -> None:
        self._bump(2)

    def next_image(self) -> None:
        self._bump(1)


@contextmanager
def _cancel_watch(token: pycolmap.CancellationToken, should_cancel: CancelFn | None,
                  period_s: float = 0.1) -> Iterator[None]:
    """Poll ``should_cancel`` in a daemon thread while pycolmap runs (it releases the GIL) and cancel ``token``."""
    if should_cancel is None:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(period_s):
            if should_cancel():
                token.cancel()
                return

    thread = threading.Thread(target=watch, name="reconstruction-cancel-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _run_mapper(db_path: Path, image_dir: Path, sfm_dir: Path, conf: ReconstructionConfig,
                token: pycolmap.CancellationToken, counter: _Registered,
                image_names: list[str] | None = None) -> list[pycolmap.Reconstruction]:
    """Run the configured mapper (incremental: on ``image_names`` only, when given); models in the mapper's order."""
    import pycolmap

    sfm_dir.mkdir(parents=True, exist_ok=True)
    if conf.deterministic:
        pycolmap.set_random_seed(conf.seed)  # COLMAP's generator is per thread: seed the one that maps
    if conf.mapper == "global":
        recs = pycolmap.global_mapping(db_path, image_dir, sfm_dir, global_options(conf))
    else:
        options = incremental_options(conf)
        if image_names is not None:
            options.image_names = image_names
        recs = pycolmap.incremental_mapping(db_path, image_dir, sfm_dir, options,
                                            initial_image_pair_callback=counter.initial_pair,
                                            next_image_callback=counter.next_image, cancellation_token=token)
    return [recs[k] for k in sorted(recs)]


def match_graph_components(db_path: Path, min_num_matches: int, min_size: int = 1) -> list[list[str]]:
    """Connected components of a verified database's match graph, as the incremental mapper sees it.

    Args:
        db_path: a verified ``database.db``.
        min_num_matches: a pair links its images when it has at least this many verified inliers (the mapper
            ignores the others: ``reconstruction.min_num_matches``).
        min_size: components with fewer images are left out (no model can hold them: ``min_model_size``).

    Returns:
        The components' sorted image names, most images first (ties: first name); images without a linking pair
        are in none.
    """
    # (a union-find over the pairs, not scipy's csgraph: importing scipy.sparse took 0.3-0.6 s of every run's
    # process here, where no other stage of a run imports scipy, for a graph of a few thousand edges at most)
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]  # (path halving)
            name = parent[name]
        return name

    for (a, b), n in pair_inliers(db_path).items():
        if a < b and n >= min_num_matches:
            ra, rb = root(parent.setdefault(a, a)), root(parent.setdefault(b, b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for name in sorted(parent):
        groups.setdefault(root(name), []).append(name)
    return sorted((g for g in groups.values() if len(g) >= min_size), key=lambda g: (-len(g), g[0]))


def _map_components(db_path: Path, image_dir: Path, sfm_dir: Path, conf: ReconstructionConfig,
                    token: pycolmap.CancellationToken, counter: _Registered, map_jobs: int,
                    log: list[str]) -> list[pycolmap.Reconstruction]:
    """The incremental mapper once per match-graph component, ``map_jobs`` at a time, each on a copy of the database
    (COLMAP fails to open one file from two threads at once: "No registered database factory succeeded"); models by
    component, then in each call's order. When they are more than ``max_num_models`` (or the components are), the
    models are those of the whole-database call, which keeps the first ``max_num_models`` COLMAP builds.

    With one component this is the whole-database call. :func:`_map` calls it only with ``map_jobs > 1``: split calls
    one after the other only cost more (each loads the database). Split or not, a deterministic mapper gives the same
    models, because every seeded estimator draws from a generator of its own (tested exactly; ETs, toy_fb82 and
    mini_imc25 gave the same scores seed for seed), so the poses do not depend on ``map_jobs``.
    """
    groups = match_graph_components(db_path, conf.min_num_matches, conf.min_model_size)
    if len(groups) <= 1 or len(groups) > conf.max_num_models:  # (more components than models: see below)
        return _run_mapper(db_path, image_dir, sfm_dir, conf, token, counter)
    jobs = min(map_jobs, len(groups))
    log.append(f"{len(groups)} components of ≥ {conf.min_model_size} images in the match graph "
               f"({', '.join(str(len(g)) for g in groups)} images), mapped side by side, {jobs} at a time")

    def run(k: int) -> list[pycolmap.Reconstruction]:
        work = sfm_dir / str(k)
        work.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(db_path, work / "database.db")
        return _run_mapper(work / "database.db", image_dir, work / "sparse", conf, token, counter,
                           image_names=groups[k])

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="imc-mapper") as pool:
        futures = [pool.submit(run, k) for k in range(len(groups))]
        try:
            parts = [f.result() for f in futures]
        except BaseException:
            token.cancel()  # one call failed or was interrupted: stop the others too
            raise
    recs = [r for part in parts for r in part]
    if len(recs) > conf.max_num_models:
        # the whole-database call stops at the first max_num_models models COLMAP builds, which no cut of these
        # reproduces: mapped again in one call, so that --jobs (or --dataset, or which run filled the cache) never
        # decides which scenes are reconstructed (a tester's ETs scored 45.63 with one and 82.35 with the other)
        log.append(f"{len(recs)} models over all components, more than reconstruction.max_num_models = "
                   f"{conf.max_num_models}: mapped again in one call, which keeps the first ones COLMAP builds")
        return _run_mapper(db_path, image_dir, sfm_dir / "whole", conf, token, counter)
    return recs


def refine_models(recs: list[pycolmap.Reconstruction], conf: ReconstructionConfig, log: list[str],
                  should_cancel: CancelFn | None = None, jobs: int = 1,
                  token: pycolmap.CancellationToken | None = None) -> None:
    """Final bundle adjustment of every model, in place, with a robust loss (``reconstruction.refine_*``).

    The mapper's own global adjustments use a plain squared loss; one more adjustment under a robust loss (e.g.
    Cauchy at 1 px) lets the few wrong observations left pull less on the poses. With
    ``refine_filter_max_reproj_error > 0`` the observations still above that error afterwards are removed and the
    model is adjusted once more. Same intrinsics switches as the mapper (``ba_refine_*``), gauge fixed by two
    cameras, one thread when deterministic (then the result repeats exactly). A model whose adjustment fails is kept
    as the mapper left it, with the reason in the log.

    With ``jobs > 1`` and several models, ``jobs`` models are adjusted at once in threads. Every adjustment goes
    through ``pycolmap.bundle_adjustment``, the one entry point that releases the GIL (``BundleAdjuster.solve``
    holds it, so threads on it took as long as one after the other, and it stalled whatever else ran beside it:
    another dataset's reconstruction, the next dataset's features). It adjusts all registered images with the
    gauge fixed by two cameras, like the adjuster, and gives the same poses bit for bit (tested). COLMAP prints two
    INFO lines per call there whatever ``minloglevel`` says; the CLI filters them out (:mod:`imc_core.glogfilter`).

    ``should_cancel`` is polled before each model; a cancelled ``token`` stops an adjustment under way, and the
    ``InterruptedError`` pycolmap raises then propagates (:func:`reconstruct` turns it into :class:`Cancelled`).
    """
    import pycolmap

    if conf.refine_loss == "none":
        return
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    opts.refine_focal_length = conf.ba_refine_focal
    opts.refine_principal_point = conf.ba_refine_principal_point
    opts.refine_extra_params = conf.ba_refine_extra_params
    opts.ceres.loss_function_type = getattr(pycolmap.LossFunctionType, conf.refine_loss.upper())
    opts.ceres.loss_function_scale = conf.refine_loss_scale
    opts.ceres.solver_options.num_threads = conf.threads
    opts.ceres.solver_options.max_num_iterations = conf.refine_max_iterations
    opts.ceres.solver_options.function_tolerance = conf.refine_function_tolerance
    todo = [k for k, rec in enumerate(recs) if rec.num_reg_images() >= 2]
    parallel = jobs > 1 and len(todo) > 1

    def adjust(rec: pycolmap.Reconstruction) -> None:
        with _LOG_LEVEL.kept():
            pycolmap.bundle_adjustment(rec, opts, token)
        rec.update_point_3d_errors()

    def refine(k: int) -> str:
        if should_cancel is not None and should_cancel():
            raise Cancelled("reconstruction cancelled")
        rec = recs[k]
        before = rec.compute_mean_reprojection_error()
        try:
            adjust(rec)
            dropped = 0
            if conf.refine_filter_max_reproj_error > 0:
                dropped = pycolmap.ObservationManager(rec).filter_all_points3D(
                    conf.refine_filter_max_reproj_error, REFINE_MIN_TRI_ANGLE)
                adjust(rec)
        except InterruptedError:  # the token was cancelled: the run stops, it is no failure of this model
            raise
        except Exception as err:  # noqa: BLE001 - Ceres/pycolmap failure: keep the mapper's model
            return (f"WARNING: final bundle adjustment of model {k} failed ({type(err).__name__}: {err}); "
                    "kept as mapped")
        return (f"model {k} refined ({conf.refine_loss} loss, {conf.refine_loss_scale:g} px): mean reprojection "
                f"error {before:.3f} → {rec.compute_mean_reprojection_error():.3f} px"
                + (f", {dropped} observations above {conf.refine_filter_max_reproj_error:g} px removed"
                   if conf.refine_filter_max_reproj_error > 0 else ""))

    if not parallel:
        log.extend(refine(k) for k in todo)
        return
    with ThreadPoolExecutor(max_workers=min(jobs, len(todo)), thread_name_prefix="imc-refine") as pool:
        lines = list(pool.map(refine, todo))
    log.append(f"{len(todo)} models adjusted side by side, {min(jobs, len(todo))} at a time")
    log.extend(lines)


class _LogLevelKeeper:
    """Keeps pycolmap's ``logging.minloglevel`` as the caller set it across calls that reset it, from any thread.

    ``pycolmap.bundle_adjustment`` builds a COLMAP ``OptionManager``, which sets glog's process-wide level to 0; the
    level from before the first of the calls under way is put back after each of them.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.level = 0

    @contextmanager
    def kept(self) -> Iterator[None]:
        import pycolmap

        with self.lock:
            if self.calls == 0:
                self.level = pycolmap.logging.minloglevel
            self.calls += 1
        try:
            yield
        finally:
            with self.lock:
                self.calls -= 1
                pycolmap.logging.minloglevel = self.level


_LOG_LEVEL = _LogLevelKeeper()


# ------------------------------------------------------------------------------------------------------ clusters


def resolve_registrations(models: list[dict[str, int]]) -> dict[str, int]:
    """Keep every registered image in exactly one model.

    Args:
        models: per model ``k``, image name → number of 3D points it observes in model ``k`` (its registered images).

    Returns:
        Image name → chosen model index: most 3D points, ties → larger model (more registered images) → the model
        whose first image name comes first (not the index: models come in another order when the components are
        mapped side by side). Images registered nowhere are absent.
    """
    first = _first_names(models)
    best: dict[str, tuple[tuple[int, int, int], int]] = {}
    for k, model in enumerate(models):
        size = len(model)
        for name, n_points in model.items():
            key = (int(n_points), size, -first[k])  # (ranks differ: one model wins)
            if name not in best or key > best[name][0]:
                best[name] = (key, k)
    return {name: k for name, (_, k) in best.items()}


def _first_names(models: list[dict[str, int]]) -> list[int]:
    """Each model's rank by its first image name (the same models rank alike in any order; ties → index)."""
    keys = [min(model, default="") for model in models]
    ranks = sorted(range(len(models)), key=lambda k: (keys[k], k))
    rank = [0] * len(models)
    for r, k in enumerate(ranks):
        rank[k] = r
    return rank


def order_clusters(assignment: dict[str, int], n_models: int) -> list[int]:
    """Model indices that keep ≥ 1 image, most kept images first (ties → the first image name kept);
    position = cluster number. The same models give the same clusters in whatever order they come."""
    kept: dict[int, list[str]] = {}
    for name, k in assignment.items():
        kept.setdefault(k, []).append(name)
    return sorted(kept, key=lambda k: (-len(kept[k]), min(kept[k])))


def _model_observations(rec: pycolmap.Reconstruction) -> dict[str, int]:
    """Registered image name → number of 3D points it observes."""
    return {rec.images[i].name: int(rec.images[i].num_points3D) for i in rec.reg_image_ids()}


def _poses_frame(images: list[str], dataset: str, scenes: dict[str, str],
                 poses: dict[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Pose frame for all ``images`` (input order); images without a scene are ``outliers`` with nan poses."""
    from ..submission import pose_frame

    n = len(images)
    R = np.full((n, 3, 3), np.nan)
    t = np.full((n, 3), np.nan)
    for i, name in enumerate(images):
        if name in poses:
            R[i], t[i] = poses[name]
    return pose_frame(dataset, [scenes.get(name, OUTLIERS) for name in images], images, R, t)


def _collect(recs: list[pycolmap.Reconstruction], images: list[str], dataset: str, models_dir: Path,
             log: list[str]) -> tuple[pd.DataFrame, list[Path]]:
    """Resolve multi-registrations, name clusters, copy poses, write models; returns (poses, model dirs)."""
    observations = [_model_observations(r) for r in recs]
    for k, obs in enumerate(observations):
        log.append(f"model {k}: {len(obs)} images registered, {recs[k].num_points3D()} 3D points")
    assignment = resolve_registrations(observations)
    for name in sorted(assignment):
        where = [k for k, obs in enumerate(observations) if name in obs]
        if len(where) > 1:
            log.append(f"{name} registered in models {where}; kept in model {assignment[name]} "
                       f"({observations[assignment[name]][name]} 3D points)")
    order = order_clusters(assignment, len(recs))
    scenes: dict[str, str] = {}
    poses: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    paths: list[Path] = []
    for c, k in enumerate(order):
        rec = recs[k]
        for i in rec.reg_image_ids():
            image = rec.images[i]
            if assignment.get(image.name) != k:
                continue
            pose = image.cam_from_world()
            scenes[image.name] = f"cluster{c}"
            poses[image.name] = (np.array(pose.rotation.matrix(), dtype=np.float64, copy=True),
                                 np.array(pose.translation, dtype=np.float64, copy=True))
        path = models_dir / str(c)
        path.mkdir(parents=True, exist_ok=True)
        rec.write(path)
        paths.append(path)
        kept = sum(1 for v in assignment.values() if v == k)
        log.append(f"cluster{c} = model {k}: {kept} images")
    n_out = sum(1 for n in images if n not in scenes)
    log.append(f"{len(order)} cluster(s), {len(images) - n_out} images registered, {n_out} outliers")
    return _poses_frame(images, dataset, scenes, poses), paths


def _failed(images: list[str], dataset: str, log: list[str], reason: str, database_verified: bool = False,
            steps: dict[str, float] | None = None) -> ReconstructionResult:
    log.append(f"FAILED: {reason}")
    return ReconstructionResult(_poses_frame(images, dataset, {}, {}), 0, [], log, False, database_verified,
                                dict(steps or {}), reason)


def _cleanup(out_dir: Path) -> None:
    """Remove what this stage wrote into ``out_dir``."""
    for name in ("database.db", "database.db-wal", "database.db-shm", "pairs.txt"):
        (out_dir / name).unlink(missing_ok=True)
    for name in ("sfm", "models", MAPPED_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------- main


class _StepFailed(Exception):
    """A step of :func:`reconstruct` failed; the message is the reason logged with ``ok=False``."""


@contextmanager
def _timed(steps: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds the block took to ``steps[name]`` (also when it raises)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def _step(name: str, log: list[str], token: pycolmap.CancellationToken, should_cancel: CancelFn | None,
          steps: dict[str, float] | None = None) -> Iterator[None]:
    """Run one pycolmap step: watch for cancellation, map pycolmap errors to :class:`_StepFailed`, log seconds (and
    add them to ``steps[name]`` when given, also when the step fails)."""
    t0 = time.perf_counter()
    with _timed({} if steps is None else steps, name), _cancel_watch(token, should_cancel):
        try:
            yield
        except InterruptedError:  # pycolmap's answer to a cancelled token
            raise Cancelled("reconstruction cancelled") from None
        except (Cancelled, InputError, _StepFailed):
            raise
        except Exception as err:  # pycolmap raises ValueError/RuntimeError on bad data or failed checks
            raise _StepFailed(f"{name}: {type(err).__name__}: {err}") from err
    if token.is_cancelled:
        raise Cancelled("reconstruction cancelled")
    log.append(f"{name}: {time.perf_counter() - t0:.2f} s")


def _import_and_verify(db_path: Path, image_dir: Path, images: list[str], keypoints: dict[str, np.ndarray],
                       sizes: dict[str, tuple[int, int]], matches: dict[tuple[str, str], np.ndarray],
                       conf: ReconstructionConfig, token: pycolmap.CancellationToken,
                       should_cancel: CancelFn | None, report: ProgressFn, log: list[str],
                       steps: dict[str, float] | None = None, threads: int = 1) -> None:
    """Database import + geometric verification on ``threads`` threads (their seconds into ``steps``); raises
    :class:`_StepFailed` when no pair survives."""
    report(0, 3, "building database")
    with _step("database import", log, token, should_cancel, steps):
        build_database(db_path, images, keypoints, sizes, matches, conf, image_dir)
    n_threads = threads if threads > 0 else (os.cpu_count() or 1)
    report(1, 3, f"verifying {len(matches)} pairs on {n_threads} thread{'s' * (n_threads > 1)}")
    with _step("geometric verification", log, token, should_cancel, steps):
        _verify(db_path, conf, token, threads)
    _check_verified(db_path, conf, log)


def _reuse_database(src: Path, db_path: Path, conf: ReconstructionConfig, report: ProgressFn, log: list[str]) -> None:
    """Copy an earlier verified database instead of importing and verifying; same checks as after verification."""
    if not src.is_file():
        raise InputError(src, "the verified database to reuse does not exist")
    report(1, 3, "verified database reused")
    shutil.copyfile(src, db_path)
    log.append(f"database import and geometric verification: reused ({src.parent.name})")
    _check_verified(db_path, conf, log)


def _check_verified(db_path: Path, conf: ReconstructionConfig, log: list[str]) -> None:
    """Log how many matched pairs are verified; :class:`_StepFailed` when none is."""
    n_matched, n_verified = _db_stats(db_path)
    log.append(f"{n_verified} of {n_matched} matched pairs verified (≥ {conf.verify_min_num_inliers} inliers)")
    if n_verified == 0:
        raise _StepFailed("no pair passed geometric verification")


def _map(db_path: Path, image_dir: Path, out_dir: Path, n_images: int, conf: ReconstructionConfig,
         token: pycolmap.CancellationToken, should_cancel: CancelFn | None, progress: ProgressFn | None,
         log: list[str], map_jobs: int = 1) -> list[pycolmap.Reconstruction]:
    """Run the mapper in ``out_dir/sfm`` (removed afterwards); the non-empty models, in mapper order."""

    def poll() -> None:
        if should_cancel is not None and should_cancel():
            token.cancel()

    if not image_dir.is_dir():  # COLMAP insists on an existing folder; images are only read for colours
        log.append(f"image folder {image_dir} does not exist: 3D points stay uncoloured")
        image_dir = out_dir
    sfm_dir = out_dir / "sfm"
    shutil.rmtree(sfm_dir, ignore_errors=True)
    counter = _Registered(n_images, progress, poll)
    t0 = time.perf_counter()
    try:
        with _step(f"{conf.mapper} mapping", log, token, should_cancel):
            if conf.mapper == "incremental" and conf.map_components and map_jobs > 1:
                recs = _map_components(db_path, image_dir, sfm_dir, conf, token, counter, map_jobs, log)
            else:
                recs = _run_mapper(db_path, image_dir, sfm_dir, conf, token, counter)
        recs = [r for r in recs if r.num_reg_images() > 0]
        inliers = pair_inliers(db_path) if recs else {}
        if conf.mapper == "incremental" and conf.remap_min_obs_per_match > 0:
            if any(obs_per_match(r, inliers, conf.min_num_matches) < conf.remap_min_obs_per_match for r in recs):
                with _step("mapping again", log, token, should_cancel):
                    recs = _remap_unexplained(recs, inliers, db_path, image_dir, sfm_dir / "again", conf, token,
                                              _Registered(0, None, poll), log)
        if recs:
            log.append("observations per verified match (a sound model explains most of its matches): " + ", ".join(
                f"model {k} {obs_per_match(r, inliers, conf.min_num_matches):.2f}" for k, r in enumerate(recs)))
    finally:
        shutil.rmtree(sfm_dir, ignore_errors=True)
    if conf.mapper == "incremental" and 0 < conf.max_runtime_s <= time.perf_counter() - t0:
        log.append(f"WARNING: mapping stopped at reconstruction.max_runtime_s = {conf.max_runtime_s} s; the models "
                   "are those built until then (unfinished images count as outliers)")
    if not recs:
        raise _StepFailed(f"the mapper built no model with ≥ {conf.min_model_size} images")
    log.extend(unmapped_components(db_path, recs, conf))
    return recs


def _write_mapped(recs: list[pycolmap.Reconstruction], lines: list[str], dst: Path) -> None:
    """The mapper's models (before the final adjustment, which changes them in place) and its log lines into
    ``dst`` (:data:`MAPPED_DIR`): what ``mapped=`` reads back."""
    shutil.rmtree(dst, ignore_errors=True)
    for k, rec in enumerate(recs):
        (dst / "models" / str(k)).mkdir(parents=True)
        rec.write(dst / "models" / str(k))
    (dst / MAPPED_LOG).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _mapped_models(src: Path) -> list[Path]:
    """The model folders of a :data:`MAPPED_DIR` folder, in mapper order."""
    folder = src / "models"
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name))


def mapped_problem(src: Path) -> str | None:
    """``None`` when ``src`` holds mapped models that :func:`reconstruct` can read with ``mapped=``, else what is
    wrong (a ``check`` for the pipeline's cache: a file cut short or removed must be mapped again, not fail)."""
    import pycolmap

    try:
        (src / MAPPED_LOG).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"{MAPPED_LOG} cannot be read ({err})"
    models = _mapped_models(src)
    if not models or [p.name for p in models] != [str(k) for k in range(len(models))]:
        return "models/ does not hold models 0, 1, … in order"
    for model in models:
        try:
            if pycolmap.Reconstruction(str(model)).num_reg_images() == 0:
                return f"models/{model.name} has no registered image"
        except Exception as err:  # pycolmap raises its own types for a file cut short
            return f"models/{model.name} cannot be read ({str(err).splitlines()[0] if str(err) else err})"
    return None


def _read_mapped(src: Path, log: list[str]) -> list[pycolmap.Reconstruction]:
    """The models of an earlier call's :data:`MAPPED_DIR` folder ``src``; its mapping's log lines go to ``log``."""
    if (problem := mapped_problem(src)) is not None:
        raise InputError(src, f"the mapped models to reuse cannot be read: {problem}")
    log.append(f"mapping: reused ({src.name}); the lines of its mapping follow")
    log.extend((src / MAPPED_LOG).read_text(encoding="utf-8").splitlines())
    return _load_models(src)


def _load_models(src: Path) -> list[pycolmap.Reconstruction]:
    import pycolmap

    return [pycolmap.Reconstruction(str(model)) for model in _mapped_models(src)]


def obs_per_match(rec: pycolmap.Reconstruction, inliers: dict[tuple[str, str], int], min_num_matches: int) -> float:
    """Observations of 3-D points in ``rec``'s registered images per verified inlier match among them (pairs of
    ≥ ``min_num_matches`` inliers, the mapper's own); ``inf`` when no such pair links them.

    A sound model triangulates most of those matches (0.41–0.63 on the real datasets); one built on a wrong start (a
    two-view geometry that fits a few matches only) registers its images all the same but explains few (0.06).
    """
    observed = _model_observations(rec)
    matches = sum(n for (a, b), n in inliers.items()
                  if a < b and n >= min_num_matches and a in observed and b in observed)
    return sum(observed.values()) / matches if matches else float("inf")


def _observations(recs: list[pycolmap.Reconstruction]) -> int:
    return sum(sum(_model_observations(rec).values()) for rec in recs)


def _remap_unexplained(recs: list[pycolmap.Reconstruction], inliers: dict[tuple[str, str], int], db_path: Path,
                       image_dir: Path, work: Path, conf: ReconstructionConfig, token: pycolmap.CancellationToken,
                       counter: _Registered, log: list[str]) -> list[pycolmap.Reconstruction]:
    """Map again, with seeds ``seed + 1 … seed + remap_seeds``, each match-graph component that holds a model under
    ``remap_min_obs_per_match`` (:func:`obs_per_match`); the component's models become those of the first try whose
    every model passes, else of the try (the first mapping included) with the most observations. Deterministic: the
    seeds follow from ``seed``."""
    from dataclasses import replace

    groups = match_graph_components(db_path, conf.min_num_matches)
    out = list(recs)
    for n, rec in enumerate(recs):
        if not any(rec is r for r in out):  # (replaced with its component already)
            continue
        ratio = obs_per_match(rec, inliers, conf.min_num_matches)
        if ratio >= conf.remap_min_obs_per_match:
            continue
        names = set(_model_observations(rec))
        group = next((g for g in groups if names & set(g)), sorted(names))
        first = [k for k, r in enumerate(out) if not set(group).isdisjoint(_model_observations(r))]
        tries = [(conf.seed, [out[k] for k in first])]
        shown = name_list(group, 3)
        log.append(f"a model of {len(names)} images ({shown}) explains {ratio:.2f} observations per verified match "
                   f"(< reconstruction.remap_min_obs_per_match = {conf.remap_min_obs_per_match:g}): its component "
                   "is mapped again with other seeds")
        chosen = None
        for j in range(1, conf.remap_seeds + 1):
            seed = (conf.seed + j) % 2**31
            tmp = work / f"{n}-{seed}"  # (a folder per model and seed: no try reads another's files)
            tmp.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db_path, tmp / "database.db")
            models = [r for r in _run_mapper(tmp / "database.db", image_dir, tmp / "sparse", replace(conf, seed=seed),
                                             token, counter, image_names=group) if r.num_reg_images() > 0]
            ratios = [obs_per_match(r, inliers, conf.min_num_matches) for r in models]
            log.append(f"  seed {seed}: {len(models)} model(s), "
                       + (", ".join(f"{r.num_reg_images()} images at {x:.2f}" for r, x in zip(models, ratios))
                          or "none") + " observations per verified match")
            tries.append((seed, models))
            if models and min(ratios) >= conf.remap_min_obs_per_match:
                chosen = tries[-1]
                break
        if chosen is None:
            chosen = max(tries, key=lambda t: _observations(t[1]))  # (the first of equals: the first mapping's)
            low = min(obs_per_match(r, inliers, conf.min_num_matches) for r in chosen[1])
            log.append(f"WARNING: a model of images matched together ({shown}) explains only {low:.2f} observations "
                       f"per verified match after {conf.remap_seeds} other seed(s) (kept: seed {chosen[0]}'s, the "
                       "most observations): a model built on a wrong start explains few of its matches, and so do "
                       "matches of which many are wrong (repeated structures); look at its poses")
        if chosen[0] != conf.seed:
            log.append(f"  kept seed {chosen[0]}'s model(s) ({_observations(chosen[1])} observations against "
                       f"{_observations(tries[0][1])})")
            at = first[0]
            out = out[:at] + chosen[1] + [r for k, r in enumerate(out[at:], at) if k not in first]
    return out


def unmapped_components(db_path: Path, recs: list[pycolmap.Reconstruction], conf: ReconstructionConfig) -> list[str]:
    """A ``WARNING:`` line for each match-graph component of at least ``min_model_size`` images of which no model
    registered any image: a scene the mapper lost, whose images count as outliers (COLMAP only says "Failed to create
    any sparse model" on its own log, which reads as the whole dataset failing, and the run said nothing)."""
    registered = {rec.images[i].name for rec in recs for i in rec.reg_image_ids()}
    out = []
    for group in match_graph_components(db_path, conf.min_num_matches, conf.min_model_size):
        if registered.isdisjoint(group):
            shown = name_list(group, 3)
            out.append(f"WARNING: no model holds any image of a group of {len(group)} images matched together "
                       f"({shown}): the mapper could not start or grow a model there, so they count as outliers")
    return out


def reconstruct(image_dir: Path, images: list[str], features_path: Path, matches_path: Path,
                pairs: list[tuple[str, str]], conf: ReconstructionConfig, out_dir: Path, *, dataset: str = "",
                progress: ProgressFn | None = None, should_cancel: CancelFn | None = None,
                database: Path | None = None, map_jobs: int = 1, mapped: Path | None = None,
                keep_mapped: bool = False) -> ReconstructionResult:
    """Database import, geometric verification and mapping of one dataset; models become clusters.

    Args:
        image_dir: folder of the images (EXIF focal, point colours; the files are optional).
        images: the dataset's image names, N; the result has one row per name, in this order.
        features_path: ``features.h5`` (keypoints ``(K, 2)``, top-left pixel centre at ``(0, 0)``; ``image_size``).
        matches_path: ``matches.h5`` (``matches`` ``(M, 2)`` per ``names_to_pair(a, b)`` group).
        pairs: the pairs to import and verify; pairs without matches are skipped.
        conf: stage config.
        out_dir: gets ``database.db``, ``pairs.txt`` (the imported pairs) and ``models/<k>/`` (cluster ``k``).
        dataset: value of the pose frame's ``dataset`` column.
        progress: ``progress(done, total, message)``; during mapping ``done`` counts registered images.
        should_cancel: polled between steps, in mapper callbacks and by a watcher thread during pycolmap calls.
        database: a ``database.db`` that an earlier deterministic call wrote (``database_verified``) for the same
            images, features, matches, pairs and :func:`database_conf`: copied instead of import and verification.
            The caller vouches that it matches; nothing here can tell.
        map_jobs: the cores this call may use when deterministic: match-graph components mapped at once
            (``map_components``) and threads of the geometric verification; the poses do not depend on it.
        mapped: a :data:`MAPPED_DIR` folder that an earlier deterministic ``keep_mapped`` call wrote for the same
            images, features, matches, pairs and :func:`mapping_conf`: its models are read instead of mapping (the
            final adjustment still runs). The caller vouches that it matches, as for ``database``.
        keep_mapped: also write the mapper's models, before the final adjustment, and the mapping's log lines to
            ``out_dir/mapped/`` (what ``mapped=`` reads).

    Returns:
        A :class:`ReconstructionResult` (``ok=False`` with all images outliers when reconstruction failed).

    Raises:
        InputError: unreadable or inconsistent h5 inputs.
        Cancelled: ``should_cancel()`` became true (partial outputs removed).
    """
    import pycolmap

    out_dir, image_dir, images = Path(out_dir), Path(image_dir), list(images)
    log: list[str] = [f"{len(images)} images, {len(pairs)} candidate pairs, mapper={conf.mapper}, "
                      f"camera={conf.camera_model}, deterministic={conf.deterministic} (seed {conf.seed}, "
                      f"threads {conf.threads})"]
    if len(set(images)) != len(images):
        raise InputError(None, "duplicate image names in the reconstruction input")
    steps: dict[str, float] = {}
    with _timed(steps, "inputs read"):
        if database is None:
            keypoints, sizes = _read_keypoints(Path(features_path), images)
            matches = _load_pair_matches(Path(matches_path), pairs, {n: len(k) for n, k in keypoints.items()})
            counts = {pair: len(m) for pair, m in matches.items()}
        else:  # (the verified database holds what the import makes of them: which pairs have matches is enough)
            keypoints, sizes, matches = {}, {}, {}
            counts = _pair_match_counts(Path(matches_path), pairs, set(images))
    log.append(f"{len(counts)} of {len(pairs)} pairs have matches ({sum(counts.values())} matches in total)")
    if should_cancel is not None and should_cancel():
        raise Cancelled("reconstruction cancelled")
    report: ProgressFn = progress or (lambda done, total, message: None)
    token = pycolmap.CancellationToken()
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / "database.db"
    verified = False
    try:
        if len(images) < 2 or not counts:
            raise _StepFailed("fewer than 2 images" if len(images) < 2 else "no pair has any match")
        (out_dir / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in counts))
        if database is not None:
            with _timed(steps, "verified database reused"):
                _reuse_database(Path(database), db_path, conf, report, log)
        else:
            _import_and_verify(db_path, image_dir, images, keypoints, sizes, matches, conf, token, should_cancel,
                               report, log, steps, max(1, map_jobs) if conf.deterministic else conf.threads)
        verified = True
        if mapped is not None:
            report(len(images), len(images), "mapped models reused")
            with _timed(steps, "mapped models reused"):
                recs = _read_mapped(Path(mapped), log)
        else:
            report(0, len(images), "mapping")
            first = len(log)
            with _timed(steps, "mapping"):  # (writing and reading the models counts as mapping: 0.02 s on ETs)
                recs = _map(db_path, image_dir, out_dir, len(images), conf, token, should_cancel, progress, log,
                            map_jobs)
                # the final adjustment always starts from the models as read from their files: read back, a
                # model's points come in another order than the mapper's, which moves the adjusted poses by
                # ~1e-15, so that adjusting the mapper's own objects would make a run's poses depend on whether
                # its mapping came from the cache
                _write_mapped(recs, log[first:], out_dir / MAPPED_DIR)
                recs = _load_models(out_dir / MAPPED_DIR)
                if not keep_mapped:
                    shutil.rmtree(out_dir / MAPPED_DIR)
        if conf.refine_loss != "none":
            report(len(images), len(images), "final bundle adjustment")
            with _step("final bundle adjustment", log, token, should_cancel, steps):
                refine_models(recs, conf, log, should_cancel, jobs=map_jobs, token=token)
        with _timed(steps, "models written"):
            shutil.rmtree(out_dir / "models", ignore_errors=True)
            poses, paths = _collect(recs, images, dataset, out_dir / "models", log)
    except _StepFailed as err:
        return _failed(images, dataset, log, str(err), verified, steps)
    except Cancelled:
        _cleanup(out_dir)
        raise
    report(len(images), len(images), f"{len(paths)} model(s)")
    return ReconstructionResult(poses, len(paths), paths, log, True, verified, steps)


def pair_inliers(db_path: Path) -> dict[tuple[str, str], int]:
    """Geometrically verified inlier counts per image pair, read from a COLMAP database.

    Args:
        db_path: the ``database.db`` written by :func:`reconstruct`.

    Returns:
        ``{(name_a, name_b): n_inliers}`` with both name orders present; pairs that failed verification are absent.
    """
    max_id = PAIR_ID_BASE
    con = read_only_sqlite(db_path)  # (a cached file: nothing beside it touched)
    try:
        names = dict(con.execute("SELECT image_id, name FROM images"))
        rows = con.execute("SELECT pair_id, rows FROM two_view_geometries WHERE rows > 0").fetchall()
    finally:
        con.close()
    out: dict[tuple[str, str], int] = {}
    for pair_id, n in rows:
        a, b = names.get(pair_id // max_id), names.get(pair_id % max_id)
        if a is not None and b is not None:
            out[(a, b)] = out[(b, a)] = int(n)
    return out


#: COLMAP's pair id: ``id1 * PAIR_ID_BASE + id2`` with ``id1 < id2``
PAIR_ID_BASE = 2147483647


def pair_inlier_matches(db_path: Path, a: str, b: str) -> np.ndarray | None:
    """Verified inlier matches of one pair, as ``(K, 2)`` indices into ``a``'s and ``b``'s keypoints.

    Args:
        db_path: the ``database.db`` written by :func:`reconstruct`.
        a, b: image names.

    Returns:
        The inlier matches, or ``None`` when the pair was not verified (or an image is unknown).
    """
    # read-only and immutable: pycolmap's Database.open wrote into the file (a cached artifact, whose checksum then
    # no longer matched, so the next run rebuilt the reconstruction after the Pairs tab had only looked at it)
    con = read_only_sqlite(db_path)
    try:
        ids = dict(con.execute("SELECT name, image_id FROM images WHERE name IN (?, ?)", (a, b)))
        if a not in ids or b not in ids:
            return None
        swap = ids[a] > ids[b]
        id1, id2 = (ids[b], ids[a]) if swap else (ids[a], ids[b])
        row = con.execute("SELECT rows, cols, data FROM two_view_geometries WHERE pair_id = ?",
                          (id1 * PAIR_ID_BASE + id2,)).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    n, cols, data = row
    if not n:
        return np.zeros((0, 2), np.int64)
    m = np.frombuffer(data, dtype=np.uint32).reshape(int(n), int(cols))[:, :2].astype(np.int64)
    return m[:, ::-1].copy() if swap else m
