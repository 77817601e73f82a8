"""Synthetic multi-scene SfM benchmark with exact ground truth, in the IMC-2025 layout.

Every scene is a small "stage": a textured floor, two or three walls and several boxes at different depths, all
rectangles textured with **real photographs shipped inside the scikit-image wheel** (``skimage/data/*.png|jpg``,
never anything that needs a download). Within a dataset every scene (and every outlier) uses its own photographs,
so scenes share no texture and cannot be merged by a correct pipeline; outliers are single views of yet other small
scenes. Cameras are exact pinholes (principal point at the image centre, square pixels, no distortion) on an arc in
front of the scene, looking at it; a fraction of the views can be rolled by 90/180/270 degrees in the image plane.

Rendering is ray casting in numpy: one ray per (supersampled) pixel, intersected analytically with every front-facing
rectangle, nearest hit wins; textures are sampled bilinearly from a mip level matched to the on-screen size
(``cv2.remap``) and the supersampled image is area-averaged. Mild per-image gain, white balance, vignetting and noise
come from the seed, so the same config gives byte-identical files.

Output of :func:`generate` (see ``docs/formats.md`` for the CSV columns and the pose convention)::

    OUT/
      train/<dataset>/<short>_<6 hex>.png   image names do not reveal the scene
      train_labels.csv                      shuffled rows; outliers in scene ``outliers`` with nan poses
      train_thresholds.csv                  six thresholds per scene, scaled to the scene size
      synth_meta.json                       config, per-image K/R/t/size/roll, scene geometry (rebuild with
                                            :func:`scene_from_meta`)
      synth_stamp.json                      config hash + file list; makes :func:`ensure` a no-op when complete

Pixel convention: ``K`` and :func:`project` use COLMAP's continuous coordinates (the top-left image corner is
``(0, 0)``, the centre of pixel ``[row i, col j]`` is ``(j + 0.5, i + 0.5)``), so ``cx = W / 2``, ``cy = H / 2``.

Example::

    from imc_core.synth import BUNDLED, ensure
    root = ensure(Path("data/synthetic"), BUNDLED)
"""

from __future__ import annotations

import hashlib
import heapq
import importlib.util
import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .fsutil import atomic_write_bytes, atomic_write_json

__all__ = [
    "SynthConfig",
    "BUNDLED",
    "Quad",
    "Scene",
    "generate",
    "ensure",
    "render_view",
    "project",
    "look_at",
    "scene_from_meta",
    "read_meta",
    "config_hash",
    "PHOTOS",
    "THRESHOLD_RATIOS",
    "META_FILE",
    "STAMP_FILE",
]

SYNTH_VERSION = 1
"""Bumped whenever the generator's output changes for the same config (part of the config hash)."""
META_FILE = "synth_meta.json"
STAMP_FILE = "synth_stamp.json"

PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)
"""Real photographs from ``skimage/data`` used as textures. Left out: synthetic or featureless images (chessboard,
phantom, horse, logo, color, microaneurysms), the motion-blurred ``clock_motion`` and ``motorcycle_right`` (the same
scene as ``motorcycle_left``: two scenes would share content)."""

_REPETITIVE = frozenset({"brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "page.png", "text.png",
                         "coins.png", "cell.png"})
"""Self-similar photos: never cut into several outlier views (the pieces would match each other)."""

THRESHOLD_RATIOS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""Thresholds as fractions of the scene extent (metres per metre of scene size). IMC-2025 uses 0.002..0.04 m for the
~0.3 m ETs objects (≈ 0.007..0.13 of the size) and 0.025..1.0 m for ~10–20 m Strecha/heritage scenes
(≈ 0.0025..0.1); our ratios sit in that band, a little looser at the top so that the last thresholds reward a
roughly right reconstruction and the first counted one (2 %) still demands a good one."""

_KINDS: tuple[str, ...] = ("rooms", "boxes")
_SCENE_WORDS: tuple[str, ...] = (
    "atrium", "cellar", "depot", "gallery", "hangar", "kiosk", "lobby", "parlor", "quay", "vault", "attic", "nook",
)  # fmt: skip
_BACKGROUND = (178.0, 186.0, 196.0)  # featureless sky (RGB) where a ray hits nothing
_MARKER_RGB = (255.0, 0.0, 0.0)


# ------------------------------------------------------------------------------------------------------------ config


def _range(value: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ConfigError(f"synth.{name} must be an int or a (min, max) pair, got {value!r}")
    if isinstance(value, int):
        lo = hi = value
    else:
        try:
            lo, hi = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"synth.{name} must be an int or a (min, max) pair, got {value!r}") from None
    if lo < minimum or hi < lo:
        raise ConfigError(f"synth.{name} must satisfy {minimum} <= min <= max, got {value!r}")
    return lo, hi


#: the largest image side ``synth`` draws (IMC-2025's own images are at most about 4,000 px a side)
MAX_SIDE = 4096


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`generate` builds. Ranges are inclusive ``(min, max)`` pairs drawn per dataset/scene."""

    seed: int = 0  # everything (geometry, textures, cameras, names, noise) derives from it
    datasets: int = 2  # kinds alternate: rooms (2–3 walls, a few boxes), boxes (more and taller boxes)
    scenes_per_dataset: int | tuple[int, int] = (2, 3)  # each scene uses its own photos
    images_per_scene: int | tuple[int, int] = (8, 12)  # views on an arc, 60–80 % overlap between neighbours
    outliers_per_dataset: int | tuple[int, int] = (2, 3)  # single views of unrelated scenes, scene "outliers"
    width: int = 640  # image size before roll (a 90° roll swaps width and height)
    height: int = 480
    focal_range: tuple[float, float] = (0.8, 1.4)  # focal length as a fraction of max(width, height), per image
    roll_fraction: float = 0.0  # fraction of scene views rolled in-plane by 90, 180 or 270 degrees
    scale_range: tuple[float, float] = (1.0, 8.0)  # scene extent in metres (log-uniform per scene)
    supersample: int = 2  # rays per pixel side; the image is area-averaged down (anti-aliasing)
    noise_sigma: float = 1.0  # Gaussian pixel noise, grey levels
    gain_jitter: float = 0.12  # per-image exposure gain in 1 ± gain_jitter (plus ±4 % white balance)
    name_prefix: str = "synth"  # dataset names are f"{name_prefix}_{kind}" (a number added after the first two)

    def __post_init__(self) -> None:
        _range(self.scenes_per_dataset, "scenes_per_dataset", 1)
        _range(self.images_per_scene, "images_per_scene", 2)
        _range(self.outliers_per_dataset, "outliers_per_dataset", 0)
        if not 1 <= self.datasets <= 8:
            raise ConfigError(f"synth.datasets must be in 1..8, got {self.datasets}")
        if self.width < 16 or self.height < 16:
            raise ConfigError(f"synth image size must be at least 16×16, got {self.width}×{self.height}")
        if max(self.width, self.height) > MAX_SIDE:  # (60000×60000 failed allocating 107 GiB, with a traceback)
            raise ConfigError(f"synth image size must be at most {MAX_SIDE} px a side, got {self.width}×{self.height}")
        if not 0 <= self.seed < 2**32:  # (numpy's generators refuse -1, with a traceback)
            raise ConfigError(f"synth.seed must be in 0..{2**32 - 1}, got {self.seed}")
        lo, hi = self.focal_range
        if not 0.2 <= lo <= hi <= 10:
            raise ConfigError(f"synth.focal_range must satisfy 0.2 <= min <= max <= 10, got {self.focal_range}")
        if not 0.0 <= self.roll_fraction <= 1.0:
            raise ConfigError(f"synth.roll_fraction must be in [0, 1], got {self.roll_fraction}")
        slo, shi = self.scale_range
        if not 0 < slo <= shi:
            raise ConfigError(f"synth.scale_range must satisfy 0 < min <= max, got {self.scale_range}")
        if self.supersample not in (1, 2, 3, 4):
            raise ConfigError(f"synth.supersample must be 1..4, got {self.supersample}")
        if self.noise_sigma < 0 or not 0 <= self.gain_jitter < 0.5:
            raise ConfigError("synth.noise_sigma must be >= 0 and synth.gain_jitter in [0, 0.5)")
        if not self.name_prefix or not self.name_prefix.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"synth.name_prefix must be a non-empty [A-Za-z0-9_-] name, got {self.name_prefix!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


BUNDLED = SynthConfig(
    seed=0,
    datasets=2,
    scenes_per_dataset=(2, 3),
    images_per_scene=(8, 12),
    outliers_per_dataset=(2, 3),
    width=640,
    height=480,
    roll_fraction=0.1,
)
"""The small default benchmark the app opens on: 2 datasets × 2–3 scenes × 8–12 views + 2–3 outliers, 640×480."""


def config_hash(conf: SynthConfig) -> str:
    """sha256 (16 hex) of the config and :data:`SYNTH_VERSION`: equal configs → equal hashes."""
    blob = json.dumps({"v": SYNTH_VERSION, "conf": conf.to_dict()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------- scenes


@dataclass
class Quad:
    """A textured rectangle ``origin + u * e1 + v * e2`` for ``u, v`` in ``[0, 1]``.

    The texture's column axis runs along ``e1`` and its row axis along ``e2``; the visible (front) side is the one
    the normal ``e2 × e1`` points to (seen from there, ``e1`` points right and ``e2`` down, so photos are upright and
    not mirrored). Back faces are culled.

    Args:
        origin: ``(3,)`` world position of texture pixel corner ``(0, 0)``.
        e1: ``(3,)`` edge along the texture's columns.
        e2: ``(3,)`` edge along the texture's rows, orthogonal to ``e1``.
        texture: ``(h, w, 3)`` float32 RGB in ``[0, 255]`` (shading already applied).
        source: where the texture came from, for the meta file (``{"photo", "crop", "shade"}`` or ``{"color"}``).
        name: a label such as ``floor0`` or ``box2_top``.
    """

    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    texture: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    _pyramid: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def normal(self) -> np.ndarray:
        """``(3,)`` unit normal of the visible side."""
        n = np.cross(self.e2, self.e1)
        return n / np.linalg.norm(n)

    @property
    def corners(self) -> np.ndarray:
        """``(4, 3)`` corners in texture order (0,0), (1,0), (1,1), (0,1)."""
        o, a, b = self.origin, self.e1, self.e2
        return np.stack([o, o + a, o + a + b, o + b])

    def level(self, k: int) -> np.ndarray:
        """Mip level ``k`` of the texture (``cv2.pyrDown`` chain, built lazily), ``(h / 2^k, w / 2^k, 3)``."""
        import cv2

        if not self._pyramid:
            self._pyramid.append(np.ascontiguousarray(self.texture, dtype=np.float32))
        while len(self._pyramid) <= k:
            top = self._pyramid[-1]
            if min(top.shape[:2]) < 4:
                return top
            self._pyramid.append(cv2.pyrDown(top))
        return self._pyramid[k]


@dataclass
class Scene:
    """A renderable scene: textured rectangles plus known 3D marker points.

    Args:
        name: scene name (the GT scene in the labels).
        quads: the rectangles.
        extent: scene size in metres (thresholds scale with it).
        markers: ``(M, 3)`` centres of solid red squares lying on the floor, visible from every camera of the arc
            (nothing stands between them and the cameras), for GT checks.
        background: RGB where a ray hits nothing.
    """

    name: str
    quads: list[Quad]
    extent: float = 1.0
    markers: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    background: tuple[float, float, float] = _BACKGROUND

    def to_meta(self) -> dict[str, Any]:
        """Geometry as JSON-friendly dict (textures referenced by photo + crop, not stored)."""
        return {
            "extent": float(self.extent),
            "markers": np.asarray(self.markers, dtype=np.float64).tolist(),
            "background": list(self.background),
            "quads": [
                {"name": q.name, "origin": q.origin.tolist(), "e1": q.e1.tolist(), "e2": q.e2.tolist(), **q.source}
                for q in self.quads
            ],
        }


@lru_cache(maxsize=1)
def _photo_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("scikit-image is not installed: the synthetic benchmark takes its textures from its wheel")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A bundled photo as float32 RGB ``(H, W, 3)`` in [0, 255], contrast-stretched (1–99 % → 8..247)."""
    from PIL import Image  # PIL, not cv2: libpng in cv2 warns about one photo's ICC profile on stderr

    path = _photo_dir() / name
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.float32)  # grey photos replicated to 3 channels
    except OSError as err:
        raise InputError(path, f"cannot read bundled texture photo ({err}); is scikit-image installed?") from None
    if name == "retina.jpg":  # drop the black corners around the fundus
        h, w = img.shape[:2]
        img = img[int(0.2 * h) : int(0.8 * h), int(0.2 * w) : int(0.8 * w)]
    lo, hi = np.percentile(img, [1.0, 99.0])
    img = (img - lo) * (239.0 / max(float(hi - lo), 1.0)) + 8.0
    img = np.clip(img, 0.0, 255.0)
    img.setflags(write=False)
    return img


@dataclass
class _Surface:
    """A rectangle before it has a texture: centre, unit normal (front), unit right vector and size."""

    name: str
    center: np.ndarray
    normal: np.ndarray
    right: np.ndarray
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height


def _face(name: str, center: Any, normal: Any, right: Any, w: float, h: float) -> _Surface:
    return _Surface(name, np.asarray(center, float), np.asarray(normal, float), np.asarray(right, float), w, h)


def _grid(name: str, center: np.ndarray, normal: np.ndarray, right: np.ndarray, w: float, h: float,
          nx: int, ny: int) -> list[_Surface]:  # fmt: skip
    """Split a rectangle into ``nx × ny`` faces (more texture pixels for big surfaces)."""
    down = np.cross(right, normal)
    out = []
    for j in range(ny):
        for i in range(nx):
            c = center + right * w * ((i + 0.5) / nx - 0.5) + down * h * ((j + 0.5) / ny - 0.5)
            out.append(_face(f"{name}{j * nx + i}", c, normal, right, w / nx, h / ny))
    return out


def _box(name: str, cx: float, cy: float, sx: float, sy: float, h: float, yaw: float) -> list[_Surface]:
    """Top and four sides of a box standing on the floor (its bottom is hidden)."""
    a = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    b = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    z = np.array([0.0, 0.0, 1.0])
    c = np.array([cx, cy, 0.0])
    faces = [_face(f"{name}_top", c + z * h, z, a, sx, sy)]
    for tag, m, half, w in (("front", -b, sy, sx), ("back", b, sy, sx), ("left", -a, sx, sy), ("right", a, sx, sy)):
        faces.append(_face(f"{name}_{tag}", c + m * half / 2 + z * h / 2, m, np.cross(z, m), w, h))
    return faces


_Region = tuple[str, int, int, int, int]  # photo file name and crop (x0, y0, x1, y1) in its pixels


def _whole(photo: str) -> _Region:
    h, w = _photo(photo).shape[:2]
    return (photo, 0, 0, w, h)


def _split_regions(regions: list[_Region], n: int) -> list[_Region]:
    """Cut photo regions into ``n`` non-overlapping crops by repeatedly halving the largest along its long side.

    Returns:
        ``n`` crops ``(photo, x0, y0, x1, y1)``, largest first (ties in input order).
    """
    heap: list[tuple[int, int, _Region]] = []
    for counter, r in enumerate(regions):
        heapq.heappush(heap, (-((r[3] - r[1]) * (r[4] - r[2])), counter, r))
    counter = len(regions)
    while len(heap) < n:
        _, _, (p, x0, y0, x1, y1) = heapq.heappop(heap)
        if max(x1 - x0, y1 - y0) < 64:
            raise ConfigError(f"not enough texture photos for {n} surfaces (pieces would be under 32 px)")
        if x1 - x0 >= y1 - y0:
            xm = (x0 + x1) // 2
            parts = [(p, x0, y0, xm, y1), (p, xm, y0, x1, y1)]
        else:
            ym = (y0 + y1) // 2
            parts = [(p, x0, y0, x1, ym), (p, x0, ym, x1, y1)]
        for r in parts:
            heapq.heappush(heap, (-((r[3] - r[1]) * (r[4] - r[2])), counter, r))
            counter += 1
    return [r for _, _, r in sorted(heap)]


def _texture_surfaces(surfaces: list[_Surface], regions: list[_Region], light: np.ndarray) -> list[Quad]:
    """Give every surface its own crop (big surfaces get big crops) and bake Lambert-like shading into it."""
    regions = _split_regions(regions, len(surfaces))
    order = sorted(range(len(surfaces)), key=lambda i: (-surfaces[i].area, i))
    quads: list[Quad] = [None] * len(surfaces)  # type: ignore[list-item]
    for rank, i in enumerate(order):
        s = surfaces[i]
        p, x0, y0, x1, y1 = regions[rank]
        crop = _photo(p)[y0:y1, x0:x1]
        rot = (x1 - x0 > y1 - y0) != (s.width > s.height) and abs(s.width - s.height) > 1e-9
        if rot:
            crop = np.rot90(crop)  # keep the crop's long side along the surface's long side
        shade = round(0.62 + 0.38 * max(0.0, float(s.normal @ light)), 4)
        source = {"photo": p, "crop": [x0, y0, x1, y1], "rot90": bool(rot), "shade": shade}
        quads[i] = _make_quad(s, crop * np.float32(shade), source)
    return quads


def _make_quad(s: _Surface, texture: np.ndarray, source: dict[str, Any]) -> Quad:
    down = np.cross(s.right, s.normal)
    origin = s.center - s.right * s.width / 2 - down * s.height / 2
    return Quad(origin, s.right * s.width, down * s.height, np.ascontiguousarray(texture, np.float32), source, s.name)


def _solid(s: _Surface, rgb: tuple[float, float, float]) -> Quad:
    tex = np.empty((4, 4, 3), np.float32)
    tex[:] = rgb
    return _make_quad(s, tex, {"color": list(rgb)})


@dataclass(frozen=True)
class _Layout:
    """Geometry parameters of a scene kind (in units of the scene extent)."""

    walls: tuple[int, int]  # min/max number of walls
    boxes: tuple[int, int]
    box_size: tuple[float, float]
    box_height: tuple[float, float]
    cam_height: tuple[float, float]
    cam_radius: tuple[float, float]
    arc_half_deg: tuple[float, float]


_LAYOUTS = {
    "rooms": _Layout((2, 3), (3, 4), (0.12, 0.26), (0.08, 0.3), (0.45, 0.6), (0.95, 1.1), (28.0, 38.0)),
    "boxes": _Layout((2, 2), (4, 6), (0.10, 0.2), (0.12, 0.45), (0.35, 0.5), (0.9, 1.05), (30.0, 40.0)),
    "outlier": _Layout((1, 1), (1, 2), (0.15, 0.3), (0.1, 0.3), (0.4, 0.6), (0.95, 1.1), (0.0, 35.0)),
}

# Scene frame (units of the extent s): floor z = 0 over x ∈ ±0.7, y ∈ [-0.7, 0.7]; back wall at y = 0.7 (height
# 0.6), side walls at x = ±0.7 over y ∈ [-0.2, 0.7]; boxes stand in y ∈ [0.02, 0.6]; the red marker lies at
# (0, -0.04); cameras sit on an arc of radius ~1 around the target (0, 0.2, 0.12), so every camera has y < -0.5 and
# the segment to the marker never crosses a box.
_HALF = 0.7
_TARGET = np.array([0.0, 0.2, 0.12])
_MARKER_XY = (0.0, -0.04)
_MARKER_SIZE = 0.05


def _place_boxes(rng: np.random.Generator, lay: _Layout, n: int) -> list[tuple[float, float, float, float, float,
                                                                                  float]]:  # fmt: skip
    boxes: list[tuple[float, float, float, float, float, float]] = []
    for _ in range(400):
        if len(boxes) == n:
            break
        sx, sy = rng.uniform(*lay.box_size, size=2)
        h = rng.uniform(*lay.box_height)
        yaw = rng.uniform(0, math.pi / 2)
        r = 0.5 * math.hypot(sx, sy)
        cx = rng.uniform(-0.55 + r, 0.55 - r)
        cy = rng.uniform(0.02 + r, 0.62 - r)
        if all(math.hypot(cx - b[0], cy - b[1]) > r + 0.5 * math.hypot(b[2], b[3]) + 0.02 for b in boxes):
            boxes.append((cx, cy, sx, sy, h, yaw))
    return boxes


def _build_scene(rng: np.random.Generator, name: str, kind: str, regions: list[_Region], extent: float) -> Scene:
    """Floor + walls + boxes for one scene, textured with crops of ``regions`` (never shared with another scene)."""
    lay = _LAYOUTS[kind]
    s = extent
    ex, ey, ez = np.eye(3)
    big = kind != "outlier"
    surfaces = _grid("floor", np.zeros(3), ez, ex, 2 * _HALF * s, 2 * _HALF * s, 2 if big else 1, 2 if big else 1)
    wall_h = 0.6 * s
    n_walls = int(rng.integers(lay.walls[0], lay.walls[1] + 1))
    surfaces += _grid("back", np.array([0, _HALF * s, wall_h / 2]), -ey, ex, 2 * _HALF * s, wall_h,
                      2 if big else 1, 1)  # fmt: skip
    side_len = 0.9 * s
    side_y = (_HALF - 0.45) * s
    sides = [(-1.0, "left"), (1.0, "right")]
    if n_walls == 2:
        sides = [sides[int(rng.integers(0, 2))]]
    elif n_walls == 1:
        sides = []
    for sign, tag in sides:
        m = -sign * ex  # the wall faces the room
        surfaces.append(_face(tag, np.array([sign * _HALF * s, side_y, wall_h / 2]), m, np.cross(ez, m),
                              side_len, wall_h))  # fmt: skip
    n_boxes = int(rng.integers(lay.boxes[0], lay.boxes[1] + 1))
    for k, (cx, cy, sx, sy, h, yaw) in enumerate(_place_boxes(rng, lay, n_boxes)):
        surfaces += _box(f"box{k}", cx * s, cy * s, sx * s, sy * s, h * s, yaw)
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.9, -0.3), 1.0])
    light /= np.linalg.norm(light)
    quads = _texture_surfaces(surfaces, regions, light)
    markers = np.zeros((0, 3))
    if big:
        mk = np.array([_MARKER_XY[0] * s, _MARKER_XY[1] * s, 0.002 * s])
        quads.append(_solid(_face("marker", mk, ez, ex, _MARKER_SIZE * s, _MARKER_SIZE * s), _MARKER_RGB))
        markers = mk[None]
    return Scene(name, quads, extent=s, markers=markers)


def scene_from_meta(entry: dict[str, Any]) -> Scene:
    """Rebuild a :class:`Scene` from its ``synth_meta.json`` entry (textures re-cut from the bundled photos).

    Args:
        entry: ``meta["datasets"][dataset]["scenes"][scene]`` (or an outlier's ``scene`` entry).

    Returns:
        The scene, rendering exactly like the one that made the images (before photometric jitter).
    """
    quads = []
    for q in entry["quads"]:
        o, e1, e2 = (np.asarray(q[k], dtype=np.float64) for k in ("origin", "e1", "e2"))
        if "color" in q:
            tex = np.empty((4, 4, 3), np.float32)
            tex[:] = q["color"]
            src = {"color": q["color"]}
        else:
            x0, y0, x1, y1 = q["crop"]
            tex = _photo(q["photo"])[y0:y1, x0:x1]
            if q.get("rot90"):
                tex = np.rot90(tex)
            tex = np.ascontiguousarray(tex * np.float32(q["shade"]))
            src = {k: q[k] for k in ("photo", "crop", "rot90", "shade")}
        quads.append(Quad(o, e1, e2, tex, src, q.get("name", "")))
    return Scene(
        entry.get("name", ""),
        quads,
        extent=float(entry["extent"]),
        markers=np.asarray(entry.get("markers", []), dtype=np.float64).reshape(-1, 3),
        background=tuple(entry.get("background", _BACKGROUND)),  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------------------- cameras


def look_at(center: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World→camera pose of a camera at ``center`` looking at ``target`` with world ``+z`` up (OpenCV axes).

    Args:
        center: ``(3,)`` camera centre.
        target: ``(3,)`` point on the optical axis.
        roll_deg: in-plane rotation about the optical axis, applied after (the GT rotation includes it).

    Returns:
        ``R`` ``(3, 3)`` and ``t`` ``(3,)`` with ``x_cam = R @ x_world + t``.
    """
    z = np.asarray(target, float) - np.asarray(center, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    if roll_deg:
        a = math.radians(roll_deg)
        c, s = round(math.cos(a), 15), round(math.sin(a), 15)
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    t = -R @ np.asarray(center, float)
    return R + 0.0, t + 0.0  # + 0.0 turns -0.0 into 0.0 (cleaner CSVs)


def project(K: np.ndarray, R: np.ndarray, t: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Project world points into an image.

    Args:
        K: ``(3, 3)`` intrinsics (COLMAP convention: pixel ``[i, j]`` has its centre at ``(j + 0.5, i + 0.5)``).
        R: ``(3, 3)`` world→camera rotation.
        t: ``(3,)`` world→camera translation.
        X: ``(N, 3)`` world points.

    Returns:
        ``(N, 2)`` pixel coordinates ``(x, y)``; ``nan`` for points at or behind the camera.
    """
    Xc = np.asarray(X, float).reshape(-1, 3) @ np.asarray(R, float).T + np.asarray(t, float)
    uvw = Xc @ np.asarray(K, float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / uvw[:, 2:3]
    uv[Xc[:, 2] <= 0] = np.nan
    return uv


def _intrinsics(f: float, width: int, height: int) -> np.ndarray:
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------------------------------------- renderer


def _quad_bbox(q: Quad, Ks: np.ndarray, R: np.ndarray, t: np.ndarray, Ws: int, Hs: int
               ) -> tuple[tuple[int, int, int, int], float] | None:  # fmt: skip
    """Pixel bounding box ``(x0, x1, y0, y1)`` of a quad in the supersampled image and its projected area."""
    Xc = q.corners @ R.T + t
    z = Xc[:, 2]
    if (z <= 0).all():
        return None
    eps = 1e-6 * float(np.linalg.norm(q.e1) + np.linalg.norm(q.e2))
    if (z <= eps).any():  # straddles the camera plane: test every pixel
        return (0, Ws, 0, Hs), float("inf")
    uv = (Xc @ Ks.T)[:, :2] / z[:, None]
    x0 = max(int(math.floor(uv[:, 0].min())), 0)
    x1 = min(int(math.ceil(uv[:, 0].max())) + 1, Ws)
    y0 = max(int(math.floor(uv[:, 1].min())), 0)
    y1 = min(int(math.ceil(uv[:, 1].max())) + 1, Hs)
    if x0 >= x1 or y0 >= y1:
        return None
    x, y = uv[:, 0], uv[:, 1]
    area = 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))
    return (x0, x1, y0, y1), area


def render_view(
    scene: Scene,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    width: int,
    height: int,
    *,
    supersample: int = 2,
) -> np.ndarray:
    """Ray-cast a scene through an exact pinhole camera.

    Args:
        scene: the scene.
        K: ``(3, 3)`` intrinsics in COLMAP pixel convention (see :func:`project`).
        R: ``(3, 3)`` world→camera rotation.
        t: ``(3,)`` world→camera translation.
        width: image width ``W``.
        height: image height ``H``.
        supersample: rays per pixel side; the result is the area average (anti-aliasing).

    Returns:
        ``(H, W, 3)`` uint8 RGB image, no photometric jitter or noise.
    """
    import cv2

    S = int(supersample)
    Ws, Hs = width * S, height * S
    R = np.asarray(R, float)
    t = np.asarray(t, float).reshape(3)
    Ks = np.asarray(K, float).copy()
    Ks[:2] *= S
    Minv = R.T @ np.linalg.inv(Ks)  # pixel (x, y, 1) → world ray whose camera-z component is 1
    C = -R.T @ t
    xs_all = np.arange(Ws, dtype=np.float64) + 0.5
    ys_all = np.arange(Hs, dtype=np.float64) + 0.5
    invz = np.zeros((Hs, Ws), np.float64)  # 1 / depth of the nearest hit so far (0: nothing)
    qid = np.full((Hs, Ws), -1, np.int32)
    ubuf = np.zeros((Hs, Ws), np.float32)
    vbuf = np.zeros((Hs, Ws), np.float32)
    levels: dict[int, int] = {}
    for k, q in enumerate(scene.quads):
        co = C - q.origin
        n = np.cross(q.e2, q.e1)
        side = float(n @ co)
        if side <= 0:  # back face (or edge-on)
            continue
        box = _quad_bbox(q, Ks, R, t, Ws, Hs)
        if box is None:
            continue
        (x0, x1, y0, y1), area = box
        xs, ys = xs_all[x0:x1][None, :], ys_all[y0:y1][:, None]

        def lin(w: np.ndarray, xs: np.ndarray = xs, ys: np.ndarray = ys) -> np.ndarray:
            a, b, c = w @ Minv  # w · ray(x, y) = a x + b y + c
            return (ys * b + c) + xs * a

        denom = lin(n)  # n · ray; the ray hits the front side at depth s = -side / denom > 0 iff denom < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = denom * (-1.0 / side)  # 1 / s
            s = 1.0 / inv
            e1n, e2n = float(q.e1 @ q.e1), float(q.e2 @ q.e2)
            u = (float(q.e1 @ co) + s * lin(q.e1)) / e1n
            v = (float(q.e2 @ co) + s * lin(q.e2)) / e2n
        win = invz[y0:y1, x0:x1]
        hit = (inv > win) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        if not hit.any():
            continue
        win[hit] = inv[hit]
        qid[y0:y1, x0:x1][hit] = k
        ubuf[y0:y1, x0:x1][hit] = u[hit]
        vbuf[y0:y1, x0:x1][hit] = v[hit]
        if not math.isfinite(area):
            area = float(np.count_nonzero((inv > 0) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)))
        h, w = q.texture.shape[:2]
        ratio = math.sqrt(h * w / max(area, 1.0))  # texels per (supersampled) pixel, along each axis
        levels[k] = max(0, int(math.floor(math.log2(ratio)))) if ratio > 1 else 0

    img = np.empty((Hs * Ws, 3), np.float32)
    flat = qid.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat + 1, minlength=len(scene.quads) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    img[order[: counts[0]]] = scene.background
    uf, vf = ubuf.ravel(), vbuf.ravel()
    for k, q in enumerate(scene.quads):
        a, b = starts[k + 1], starts[k + 2]
        if a == b:
            continue
        idx = order[a:b]
        tex = q.level(levels.get(k, 0))
        th, tw = tex.shape[:2]
        m = b - a
        cols = 1024
        pad = (-m) % cols
        mx = np.concatenate([uf[idx] * tw - 0.5, np.zeros(pad, np.float32)]).reshape(-1, cols)
        my = np.concatenate([vf[idx] * th - 0.5, np.zeros(pad, np.float32)]).reshape(-1, cols)
        sampled = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        img[idx] = sampled.reshape(-1, 3)[:m]
    img = img.reshape(Hs, Ws, 3)
    if S > 1:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _photometric(img: np.ndarray, rng: np.random.Generator, conf: SynthConfig) -> np.ndarray:
    """Per-image exposure gain, white balance, offset, mild vignetting and noise; ``(H, W, 3)`` uint8 → uint8."""
    h, w = img.shape[:2]
    gain = rng.uniform(1 - conf.gain_jitter, 1 + conf.gain_jitter) * rng.uniform(0.96, 1.04, size=3)
    offset = rng.uniform(-4.0, 4.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    vignette = (1.0 - rng.uniform(0.03, 0.1) * r2)[..., None]
    out = img.astype(np.float32) * gain.astype(np.float32) * vignette + offset
    if conf.noise_sigma > 0:
        out += rng.normal(0.0, conf.noise_sigma, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# -------------------------------------------------------------------------------------------------------- planning


@dataclass
class _View:
    dataset: str
    scene: str  # GT scene, "outliers" for outliers
    image: str
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    roll: int
    scene_key: str  # key into _Plan.scenes
    seed: list[int]  # rng seed for the photometric jitter


@dataclass
class _Plan:
    conf: SynthConfig
    scenes: dict[str, Scene]  # "dataset/scene" (outliers: "dataset/outliers/k")
    views: list[_View]
    thresholds: dict[tuple[str, str], np.ndarray]
    meta: dict[str, Any]


def _dataset_names(conf: SynthConfig) -> list[tuple[str, str]]:
    out = []
    for i in range(conf.datasets):
        kind = _KINDS[i % len(_KINDS)]
        suffix = "" if i < len(_KINDS) else str(i // len(_KINDS) + 1)
        out.append((f"{conf.name_prefix}_{kind}{suffix}", kind))
    return out


def _arc_views(rng: np.random.Generator, lay: _Layout, n: int, s: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (centre, target) pairs on an arc in front of the scene, evenly spread with a little jitter."""
    half = math.radians(rng.uniform(*lay.arc_half_deg))
    thetas = np.linspace(-half, half, n) if n > 1 else np.array([rng.uniform(-half, half)])
    step = (2 * half / (n - 1)) if n > 1 else 0.0
    thetas = thetas + rng.uniform(-0.15, 0.15, size=n) * step
    out = []
    for th in thetas:
        r = rng.uniform(*lay.cam_radius) * s
        h = rng.uniform(*lay.cam_height) * s
        target = _TARGET * s + rng.uniform(-0.03, 0.03, size=3) * s
        c = np.array([target[0] + r * math.sin(th), target[1] - r * math.cos(th), h])
        out.append((c, target))
    return out


def _allocate_photos(rng: np.random.Generator, n_scenes: int, n_out: int) -> tuple[list[list[str]], list[list[str]]]:
    """Disjoint photo sets: one per scene and one per outlier (outliers may split one non-repetitive photo)."""
    pool = [PHOTOS[i] for i in rng.permutation(len(PHOTOS))]
    plain = [p for p in pool if p not in _REPETITIVE]
    n_out_photos = min(n_out, max(0, len(pool) - 2 * n_scenes), len(plain)) if n_out else 0
    if n_out and n_out_photos == 0:
        n_out_photos = 1
    out_photos = plain[:n_out_photos]
    rest = [p for p in pool if p not in out_photos]
    if len(rest) < 2 * n_scenes or (n_out and not out_photos):
        raise ConfigError(
            f"{n_scenes} scenes + {n_out} outliers need more than the {len(PHOTOS)} bundled photos; "
            "lower the scenes or the outliers per dataset (synth --scenes / --outliers; scenes_per_dataset / "
            "outliers_per_dataset of a SynthConfig)"
        )
    per_scene = [rest[j::n_scenes] for j in range(n_scenes)]
    # outlier k gets photo k % n_out_photos; a photo shared by several outliers is cut into separate crops
    per_out: list[list[str]] = [[out_photos[k % n_out_photos]] for k in range(n_out)]
    return per_scene, per_out


def _outlier_scene(rng: np.random.Generator, name: str, photo: str, piece: int, pieces: int, s: float) -> Scene:
    """A tiny unrelated scene (floor + wall + a box or two) cut from piece ``piece`` of ``pieces`` of one photo."""
    region = _split_regions([_whole(photo)], pieces)[piece]
    return _build_scene(rng, name, "outlier", [region], s)


def _plan(conf: SynthConfig) -> _Plan:
    scenes: dict[str, Scene] = {}
    views: list[_View] = []
    thresholds: dict[tuple[str, str], np.ndarray] = {}
    meta_ds: dict[str, Any] = {}
    scene_lo, scene_hi = _range(conf.scenes_per_dataset, "scenes_per_dataset", 1)
    img_lo, img_hi = _range(conf.images_per_scene, "images_per_scene", 2)
    out_lo, out_hi = _range(conf.outliers_per_dataset, "outliers_per_dataset", 0)
    fmax = max(conf.width, conf.height)
    for di, (dataset, kind) in enumerate(_dataset_names(conf)):
        rng = np.random.default_rng([conf.seed, di, 0])
        n_scenes = int(rng.integers(scene_lo, scene_hi + 1))
        n_out = int(rng.integers(out_lo, out_hi + 1))
        per_scene, per_out = _allocate_photos(rng, n_scenes, n_out)
        short = dataset[len(conf.name_prefix) + 1 :] or dataset
        used: set[str] = set()

        def new_name(rng: np.random.Generator = rng, short: str = short, used: set[str] = used) -> str:
            while True:
                name = f"{short}_{int(rng.integers(0, 16**6)):06x}.png"
                if name not in used:
                    used.add(name)
                    return name

        ds_views: list[_View] = []
        meta_scenes: dict[str, Any] = {}
        for j in range(n_scenes):
            srng = np.random.default_rng([conf.seed, di, 1, j])
            sname = _SCENE_WORDS[j % len(_SCENE_WORDS)] + ("" if j < len(_SCENE_WORDS) else str(j))
            extent = float(math.exp(srng.uniform(math.log(conf.scale_range[0]), math.log(conf.scale_range[1]))))
            extent = float(f"{extent:.4g}")
            scene = _build_scene(srng, sname, kind, [_whole(p) for p in per_scene[j]], extent)
            key = f"{dataset}/{sname}"
            scenes[key] = scene
            thresholds[(dataset, sname)] = np.array([float(f"{extent * r:.6g}") for r in THRESHOLD_RATIOS])
            n_img = int(srng.integers(img_lo, img_hi + 1))
            for vi, (c, target) in enumerate(_arc_views(srng, _LAYOUTS[kind], n_img, extent)):
                roll = int(srng.choice([90, 180, 270])) if srng.uniform() < conf.roll_fraction else 0
                f = float(srng.uniform(*conf.focal_range)) * fmax
                w, h = (conf.height, conf.width) if roll in (90, 270) else (conf.width, conf.height)
                R, t = look_at(c, target, roll)
                ds_views.append(_View(dataset, sname, new_name(), _intrinsics(f, w, h), R, t, w, h, roll, key,
                                      [conf.seed, di, 1, j, vi]))  # fmt: skip
            meta_scenes[sname] = {"name": sname, **scene.to_meta()}
        meta_out: dict[str, Any] = {}
        photo_uses: dict[str, int] = {}
        for k in range(n_out):
            photo_uses[per_out[k][0]] = photo_uses.get(per_out[k][0], 0) + 1
        seen: dict[str, int] = {}
        for k in range(n_out):
            orng = np.random.default_rng([conf.seed, di, 2, k])
            photo = per_out[k][0]
            piece = seen.get(photo, 0)
            seen[photo] = piece + 1
            extent = float(f"{math.exp(orng.uniform(math.log(conf.scale_range[0]), math.log(conf.scale_range[1]))):.4g}")
            scene = _outlier_scene(orng, f"outlier{k}", photo, piece, photo_uses[photo], extent)
            key = f"{dataset}/outliers/{k}"
            scenes[key] = scene
            (c, target), = _arc_views(orng, _LAYOUTS["outlier"], 1, extent)
            f = float(orng.uniform(*conf.focal_range)) * fmax
            R, t = look_at(c, target)
            name = new_name()
            ds_views.append(_View(dataset, "outliers", name, _intrinsics(f, conf.width, conf.height), R, t,
                                  conf.width, conf.height, 0, key, [conf.seed, di, 2, k]))  # fmt: skip
            meta_out[name] = {"name": f"outlier{k}", **scene.to_meta()}
        order = rng.permutation(len(ds_views))
        views += [ds_views[i] for i in order]
        meta_ds[dataset] = {"kind": kind, "scenes": meta_scenes, "outliers": meta_out}
    meta = {
        "synth_version": SYNTH_VERSION,
        "config": conf.to_dict(),
        "config_hash": config_hash(conf),
        "pixel_convention": "COLMAP: pixel [i, j] centre at (j + 0.5, i + 0.5); cx = W / 2, cy = H / 2",
        "pose_convention": "world to camera: x_cam = R @ x_world + t",
        "datasets": meta_ds,
        "images": [
            {
                "dataset": v.dataset,
                "scene": v.scene,
                "image": v.image,
                "width": v.width,
                "height": v.height,
                "roll_deg": v.roll,
                "K": v.K.tolist(),
                "R": v.R.tolist(),
                "t": v.t.tolist(),
            }
            for v in views
        ],
    }
    return _Plan(conf, scenes, views, thresholds, meta)


def read_meta(root: str | Path) -> dict[str, Any]:
    """Load ``ROOT/synth_meta.json``.

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(root) / META_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found (not a synthetic benchmark folder?)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"cannot read synth metadata: {err}") from None


# ------------------------------------------------------------------------------------------------------ generation


def _read_stamp(out: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((out / STAMP_FILE).read_text())
        return stamp if isinstance(stamp, dict) else None
    except (OSError, json.JSONDecodeError):
        return None


def _is_complete(out: Path, conf_hash: str) -> bool:
    stamp = _read_stamp(out)
    return bool(
        stamp
        and stamp.get("complete")
        and stamp.get("config_hash") == conf_hash
        and all((out / f).is_file() for f in stamp.get("files", []))
    )


def _encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def generate(out: str | Path, conf: SynthConfig = BUNDLED, *, overwrite: bool = False) -> Path:
    """Write a synthetic benchmark in the IMC-2025 layout (see the module docstring).

    Args:
        out: target folder; created if missing. It must be empty, missing or an earlier synthetic benchmark (files of
            an earlier config that the new one does not produce are removed).
        conf: what to generate.
        overwrite: re-render even when ``out`` already holds the complete output of ``conf``.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: ``out`` is a file, or a non-empty folder that is not a synthetic benchmark.
        ConfigError: a config that cannot be built (e.g. more scenes than the bundled photos allow).
    """
    from . import data, submission

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    h = config_hash(conf)
    if not overwrite and _is_complete(out, h):
        return out
    old = _read_stamp(out)
    if old is None and out.is_dir() and any(out.iterdir()):
        raise InputError(out, f"not empty and not a synthetic benchmark (no {STAMP_FILE}); choose a new folder")
    plan = _plan(conf)
    files = [f"train/{v.dataset}/{v.image}" for v in plan.views]
    files += [data.LABELS_FILE, data.THRESHOLDS_FILE, META_FILE]
    old_files = [str(f) for f in (old or {}).get("files", [])]
    atomic_write_json(out / STAMP_FILE, {"config_hash": h, "complete": False,
                                         "files": sorted(set(files) | set(old_files))})  # fmt: skip
    keep = set(files)
    for f in old_files:
        if f not in keep and ".." not in Path(f).parts and not Path(f).is_absolute():
            (out / f).unlink(missing_ok=True)
            try:  # a dataset of the earlier config that this one lacks: its emptied folder goes too (every later
                (out / f).parent.rmdir()  # run refused the root: "no images in this folder")
            except OSError:  # not empty (other images, or a file of the user's), or gone already
                pass
    resume = old is not None and old.get("config_hash") == h and not overwrite
    for v in plan.views:
        path = out / "train" / v.dataset / v.image
        if resume and path.is_file():
            continue  # written atomically by an interrupted run of the same config
        rgb = render_view(plan.scenes[v.scene_key], v.K, v.R, v.t, v.width, v.height, supersample=conf.supersample)
        rgb = _photometric(rgb, np.random.default_rng(v.seed), conf)
        atomic_write_bytes(path, _encode_png(rgb))
    registered = [v.scene != submission.OUTLIERS for v in plan.views]
    R = np.stack([v.R if ok else np.full((3, 3), np.nan) for v, ok in zip(plan.views, registered, strict=True)])
    t = np.stack([v.t if ok else np.full(3, np.nan) for v, ok in zip(plan.views, registered, strict=True)])
    labels = submission.pose_frame(
        [v.dataset for v in plan.views], [v.scene for v in plan.views], [v.image for v in plan.views], R, t
    )
    data.write_labels(labels, out / data.LABELS_FILE)
    data.write_thresholds(plan.thresholds, out / data.THRESHOLDS_FILE)
    atomic_write_json(out / META_FILE, plan.meta)
    atomic_write_json(out / STAMP_FILE, {"config_hash": h, "complete": True, "files": files})
    return out


def ensure(out: str | Path, conf: SynthConfig = BUNDLED) -> Path:
    """Return ``out`` holding the complete benchmark of ``conf``, generating it only when needed (stamp check)."""
    return generate(out, conf, overwrite=False)
