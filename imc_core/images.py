"""Image decoding: one place that turns any image file into an upright ``H×W×3`` uint8 RGB array.

Every stage that reads pixels goes through :func:`load_image`, so EXIF orientation, odd pixel modes (grayscale,
RGBA, palette, 16-bit, CMYK) and broken files are handled the same way everywhere. :func:`image_size` reads only
the header, and :func:`exif_focal_px` gives the focal-length prior COLMAP would derive from EXIF.
"""

from __future__ import annotations

import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

#: PIL's guard against decompression bombs from the web refuses images over 179 MP and warns, without a file name,
#: over 89 MP; a dataset's aerial or panoramic images can be larger. imc-lab (PIL, process-wide, once imported)
#: warns over this many pixels and refuses twice as many, naming the file (:func:`decode_reason`)
MAX_PIXELS = 1_000_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# EXIF tag ids (TIFF/EXIF 2.3)
_TAG_ORIENTATION = 0x0112
_IFD_EXIF = 0x8769
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_35MM = 0xA405
_TAG_FOCAL_PLANE_X_RES = 0xA20E
_TAG_FOCAL_PLANE_UNIT = 0xA210
_TAG_PIXEL_X_DIM = 0xA002
# FocalPlaneResolutionUnit → millimetres per unit (1 = no unit, 2 = inch, 3 = cm, 4 = mm, 5 = µm)
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
# Orientation values that swap width and height (transpose, rotate 90, transverse, rotate 270)
_SWAPS_AXES = {5, 6, 7, 8}
#: held while imc-lab parses an EXIF block: :func:`exif_problem` records PIL's warnings process-wide, and a
#: thread reading a focal length or an orientation at that moment must not lend it its warnings
_EXIF_LOCK = threading.Lock()


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only) with PIL, turning any failure into :class:`InputError`."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(path, f"cannot read image: {decode_reason(err, path)}") from None


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a 16-bit / 32-bit integer or float array to uint8.

    Args:
        arr: ``(H, W)`` or ``(H, W, C)`` array of any numeric dtype.

    Returns:
        Array of the same shape, dtype uint8. Integers up to 65535 are read at the smallest bit depth that holds
        their maximum (8, 10, 12, 14 or 16 bits: 12-bit sensor data in a 16-bit PNG, divided by 257, came out
        almost black, max 16, and its image went unregistered); floats with max ≤ 1 are taken as [0, 1]; anything
        else is min-clipped at 0 and scaled by its maximum.
    """
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(a.max()) if a.size else 0.0
        scale = 255.0 if peak <= 1.0 else 255.0 / peak
    else:
        peak = float(a.max()) if a.size else 0.0
        bits = next((b for b in (8, 10, 12, 14, 16) if peak <= 2**b - 1), None)
        scale = 255.0 / peak if bits is None else 255.0 / (2**bits - 1)
    return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)


def rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to ``(H, W, 3)`` uint8 RGB (alpha dropped, 16-bit and float scaled,
    where PIL's own ``convert("RGB")`` clips them). EXIF orientation is the caller's (:func:`load_image` applies
    it)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode != "RGB":
        # RGBA / LA / P (+ transparency) / L / 1 / CMYK / YCbCr / LAB / HSV: PIL's converters drop alpha for "RGB"
        img = img.convert("RGBA").convert("RGB") if img.mode == "P" else img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file once, upright, as RGB.

    EXIF orientation is applied (``PIL.ImageOps.exif_transpose``); grayscale is replicated to three channels,
    alpha is dropped, palette and CMYK images are converted, 16-bit images are scaled to 8 bits.

    Args:
        path: image file (anything PIL can decode: JPEG, PNG, TIFF, WebP, BMP, ...).

    Returns:
        ``(H, W, 3)`` uint8 RGB array, C-contiguous, in the displayed (EXIF-corrected) orientation.

    Raises:
        InputError: the file is missing, truncated, corrupt or not an image (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with Image.open(path) as img:
            exif_read = _exif_readable(img)  # (before load: a PNG's EXIF after its pixels is then in img.info)
            img.load()
            img = (ImageOps.exif_transpose(img) or img) if exif_read else img
            return np.ascontiguousarray(rgb_array(img))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(path, f"cannot decode image: {decode_reason(err, path)}") from None


def image_problem(path: str | Path) -> str | None:
    """None when ``path`` decodes as an image, else ``"missing"`` or ``"unreadable: <decoder's reason>"``.

    JPEGs decode at reduced scale (``Image.draft``), so checking a whole dataset costs a fraction of extracting
    features from it; a truncated or corrupt file still fails (the decoder reads every byte).
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:  # (PIL says "cannot identify image file")
        return "unreadable: empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            img.draft("RGB", (128, 128))
            img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"unreadable: {decode_reason(err, path)}"
    return None


def decode_reason(err: BaseException | str, path: str | Path) -> str:
    """A decoder's message without the file's path (whoever shows it names the image already)."""
    if isinstance(err, Image.DecompressionBombError):  # (PIL's words call a large image an attack)
        size = re.search(r"(\d+) pixels", str(err))
        return (f"too large to decode ({int(size.group(1)) / 1e6:,.0f} MP; " if size else "too large to decode (") \
            + f"imc-lab decodes up to {2 * MAX_PIXELS / 1e6:,.0f} MP)"
    text = str(err).replace(f"'{path}'", "").replace(str(path), "").strip()
    return text or (type(err).__name__ if isinstance(err, BaseException) else "cannot decode")


def unusable_images(paths: list[Path], names: list[str] | None = None) -> list[tuple[str, str]]:
    """``(name, why)`` of every image of ``paths`` that is missing or cannot be decoded (:func:`image_problem`), in
    order. ``names``: how to name each image (its dataset's name for it, ``sub/x.png``), else the file's name."""
    return [(name, why) for p, name in zip(paths, names or [p.name for p in paths], strict=True)
            if (why := image_problem(p))]


def describe_unusable(bad: list[tuple[str, str]], limit: int = 5) -> str:
    """``a.jpg: unreadable: …; b.png: missing; and 3 more``: the first ``limit`` of :func:`unusable_images`."""
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return "; ".join(f"{name}: {why}" for name, why in bad[:limit]) + more


def check_images(paths: list[Path], limit: int = 5, names: list[str] | None = None) -> None:
    """Raise one :class:`InputError` naming every image of ``paths`` that is missing or cannot be decoded (the first
    ``limit`` with their reasons, and how many more), so a dataset is fixed in one go rather than one file per run.
    ``names``: how to name each image (its dataset's name for it, ``sub/x.png``), else the file's name.
    """
    names = names or [p.name for p in paths]
    if bad := unusable_images(paths, names):
        raise unusable_error(paths, names, bad, limit)


def unusable_error(paths: list[Path], names: list[str], bad: list[tuple[str, str]], limit: int = 5) -> InputError:
    """The error of :func:`check_images` for the ``bad`` images :func:`unusable_images` found among ``paths``."""
    first = paths[names.index(bad[0][0])]
    folder = first.parents[len(Path(bad[0][0]).parts) - 1]  # (the dataset's folder, for a name in a sub-folder too)
    return InputError(folder, f"{len(bad)} of {len(paths)} images cannot be used ({describe_unusable(bad, limit)})")


def exif_problem(path: str | Path) -> str | None:
    """What is wrong with an image's EXIF block, or ``None`` (no EXIF, or a sound one, or not an image at all:
    :func:`image_problem` says that).

    PIL reads a damaged block as far as it can and warns without naming the file ("Corrupt EXIF data. Expecting to
    read 12 bytes but only got 10."); COLMAP logs "Unknown EXIF orientation: 0" the same way. Here both become one
    sentence a run can put beside the image's name. The tags the damage spoils are read as absent: no rotation,
    no EXIF focal length. A PNG's EXIF is looked for where PNG writers put it, before the pixels: a block after
    them is not checked (PIL would decode the whole image to find it: 40 ms per 1440×1920 PNG).
    """
    path = Path(path)
    orientation, unparsed, said = None, None, []
    with _EXIF_LOCK, warnings.catch_warnings():
        shown = warnings.showwarning

        def keep(message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: Any) -> None:
            """PIL's EXIF warnings are this image's; every other warning (another thread's, under its own filters and
            registry) goes on as it would have."""
            if _is_exif_warning(filename, message):
                said.append(" ".join(str(message).split()).rstrip("."))
            else:
                shown(message, category, filename, lineno, *args)

        warnings.showwarning = keep
        warnings.filterwarnings("always", module=r"PIL(\.|$)")  # (each image's, not once per line of PIL)
        try:
            with Image.open(path) as img:
                if _exif_readable(img):  # (PIL decodes a whole PNG to look further)
                    exif = img.getexif()
                    orientation = exif.get(_TAG_ORIENTATION)
                    exif.get_ifd(_IFD_EXIF)
        except (UnidentifiedImageError, FileNotFoundError):
            pass
        except Exception as err:  # (PIL raises a variety of errors for a block it cannot parse at all)
            unparsed = f"EXIF that cannot be parsed ({decode_reason(err, path)}), taken as absent"
    if unparsed:
        return unparsed
    said = list(dict.fromkeys(said))
    problems = [f"damaged EXIF ({'; '.join(said)}), its unreadable tags taken as absent"] if said else []
    if orientation is not None and orientation not in range(1, 9):
        problems.append(f"EXIF orientation {orientation!r} is none of 1–8, read as upright")
    return "; ".join(problems) or None


def _is_exif_warning(filename: str, message: Warning | str) -> bool:
    """Whether a warning raised while an EXIF block is read is PIL's about that block (its TIFF tag reader's), not
    PIL's about the image (a decompression bomb) nor another thread's."""
    return Path(filename).name == "TiffImagePlugin.py" or "EXIF" in str(message) and "PIL" in Path(filename).parts


def exif_problems(paths: list[Path], limit: int = 5, names: list[str] | None = None) -> str | None:
    """One warning naming the images of ``paths`` whose EXIF :func:`exif_problem` finds fault with (the first
    ``limit`` with their reasons, and how many more), or ``None``. ``names`` as for :func:`check_images`."""
    bad = [(name, why) for p, name in zip(paths, names or [p.name for p in paths], strict=True)
           if (why := exif_problem(p))]
    if not bad:
        return None
    shown = "; ".join(f"{name}: {why}" for name, why in bad[:limit])
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} of {len(paths)} images have EXIF that cannot be read as written ({shown}{more})"


def _exif_readable(img: Image.Image) -> bool:
    """Whether an opened, not yet loaded image's EXIF is read: always, but for a PNG only when its ``eXIf`` chunk
    comes before the pixels (PIL decoded the whole image to look past them: three more decodes of every PNG on a
    features build, 0.1 s each for 2.7 MP; a tester). Every reader of EXIF here applies the same rule, so an image's
    size, orientation and focal length always agree."""
    return img.format != "PNG" or "exif" in img.info


def _orientation_tag(img: Image.Image) -> Any:
    """The EXIF orientation tag of an opened image as it is written (``None`` when absent, unreadable or not read:
    :func:`_exif_readable`)."""
    if not _exif_readable(img):
        return None
    try:
        with _EXIF_LOCK:  # (PIL's warnings of a damaged block are then never lent to the image exif_problem checks)
            return img.getexif().get(_TAG_ORIENTATION)
    except Exception:  # malformed EXIF never makes an image unreadable
        return None


def _orientation(img: Image.Image) -> int:
    """EXIF orientation of an opened image (1 when absent, unreadable or none of 1–8)."""
    value = _orientation_tag(img)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_size(path: str | Path) -> tuple[int, int]:
    """Width and height of an image as :func:`load_image` would return it, without decoding pixels.

    Args:
        path: image file.

    Returns:
        ``(W, H)`` after applying the EXIF orientation (90° rotations swap them).

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(path)
    with _open(path) as img:
        w, h = img.size
        if _orientation(img) in _SWAPS_AXES:
            w, h = h, w
    return int(w), int(h)


def _exif_tags(img: Image.Image) -> dict[int, Any]:
    """IFD0 and Exif sub-IFD tags of an opened image merged into one dict (empty when there is no EXIF, or it is not
    read: :func:`_exif_readable`)."""
    if not _exif_readable(img):
        return {}
    try:
        exif = img.getexif()
        tags = dict(exif)
        tags.update(exif.get_ifd(_IFD_EXIF))
        return tags
    except Exception:
        return {}


def _positive(value: Any) -> float | None:
    """A positive finite float from an EXIF rational/number, else ``None``."""
    try:
        v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def exif_focal_px(path: str | Path) -> float | None:
    """Focal length in pixels from EXIF, following COLMAP's ``Bitmap::ExifFocalLength``.

    In order: ``FocalLengthIn35mmFilm`` → ``f35 / 35 · max(W, H)``; else ``FocalLength`` (mm) with the sensor
    width from ``FocalPlaneXResolution`` / ``FocalPlaneResolutionUnit`` (sensor width = ``PixelXDimension`` (or W)
    / pixels-per-mm) → ``f_mm / sensor_width · max(W, H)``. COLMAP's third source, a camera make/model → sensor
    width table, is not bundled here, so such images return ``None``.

    Args:
        path: image file.

    Returns:
        The focal length in pixels of the image as :func:`load_image` returns it, or ``None`` when EXIF does not
        determine it.

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(path)
    with _open(path) as img, _EXIF_LOCK:
        w, h = img.size
        tags = _exif_tags(img)
    max_size = float(max(w, h))
    f35 = _positive(tags.get(_TAG_FOCAL_35MM))
    if f35 is not None:
        return f35 / 35.0 * max_size
    f_mm = _positive(tags.get(_TAG_FOCAL_LENGTH))
    x_res = _positive(tags.get(_TAG_FOCAL_PLANE_X_RES))
    unit_mm = _UNIT_MM.get(int(tags.get(_TAG_FOCAL_PLANE_UNIT, 2) or 2))
    if f_mm is None or x_res is None or unit_mm is None:
        return None
    pixels_per_mm = x_res / unit_mm
    exif_width = _positive(tags.get(_TAG_PIXEL_X_DIM)) or float(w)
    sensor_width_mm = exif_width / pixels_per_mm
    return f_mm / sensor_width_mm * max_size
