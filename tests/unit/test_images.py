"""imc_core.images: decoding, EXIF orientation, pixel modes, header-only size, EXIF focal prior, bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imc_core.errors import InputError
from imc_core.images import exif_focal_px, image_size, load_image

EXIF_IFD = 0x8769


def _halves(w: int = 40, h: int = 20) -> np.ndarray:
    """``(h, w, 3)`` image: left half red, right half blue."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    return img


def _save_jpeg_with_exif(path: Path, arr: np.ndarray, ifd0: dict[int, object], exif_ifd: dict[int, object]) -> Path:
    exif = Image.Exif()
    for tag, value in ifd0.items():
        exif[tag] = value
    if exif_ifd:
        sub = exif.get_ifd(EXIF_IFD)
        sub.update(exif_ifd)
    Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    return path


def test_plain_rgb_roundtrip(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (12, 17, 3)
    np.testing.assert_array_equal(out, arr)
    assert image_size(tmp_path / "a.png") == (17, 12)


def test_exif_orientation_6_rotates(tmp_path: Path) -> None:
    path = _save_jpeg_with_exif(tmp_path / "rot.jpg", _halves(40, 20), {0x0112: 6}, {})
    out = load_image(path)
    assert out.shape == (40, 20, 3)  # stored 40×20 (W×H), displayed rotated 90° clockwise
    assert image_size(path) == (20, 40)
    # 90° clockwise: the stored left (red) half becomes the top half
    assert out[:15, :, 0].mean() > 200 and out[:15, :, 2].mean() < 50
    assert out[25:, :, 2].mean() > 200 and out[25:, :, 0].mean() < 50


def test_a_pngs_exif_is_read_before_its_pixels_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL decoded a whole PNG to look for EXIF past its pixels: three more decodes of every PNG on a features build
    (a tester). EXIF before the pixels (as PIL and most writers put it) is read without decoding; after them, it is
    not read by any reader here, so size and pixels agree."""
    import struct
    import zlib

    from PIL import ImageFile

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_halves(40, 20)).save(tmp_path / "before.png", exif=exif.tobytes())
    loads = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1) or real(self))
    assert image_size(tmp_path / "before.png") == (20, 40) and loads == []  # read from the header alone
    assert load_image(tmp_path / "before.png").shape == (40, 20, 3)
    # the same file with its eXIf chunk moved after IDAT
    data = (tmp_path / "before.png").read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        chunks.append(data[pos:pos + 12 + n])
        pos += 12 + n
    kinds = [c[4:8] for c in chunks]
    exif_chunk = chunks.pop(kinds.index(b"eXIf"))
    chunks.insert(len(chunks) - 1, exif_chunk)  # before IEND, after IDAT
    assert zlib.crc32(exif_chunk[4:-4]) == struct.unpack(">I", exif_chunk[-4:])[0]
    (tmp_path / "after.png").write_bytes(data[:8] + b"".join(chunks))
    loads.clear()
    assert image_size(tmp_path / "after.png") == (40, 20) and loads == []
    assert load_image(tmp_path / "after.png").shape == (20, 40, 3)  # as image_size says: not rotated


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (6, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 0  # fully transparent: the colour must survive, not be composited to black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (5, 7, 3)
    assert (out[..., 1] == 200).all() and (out[..., [0, 2]] == 0).all()


def test_16bit_png_is_scaled(tmp_path: Path) -> None:
    arr16 = np.array([[0, 257, 65535], [32896, 1000, 60000]], dtype=np.uint16)
    Image.fromarray(arr16).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = load_image(tmp_path / "d.png")
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.rint(arr16 / 257).astype(np.uint8))
    # 12-bit sensor data in a 16-bit PNG: read as 12 bits (divided by 257 it came out almost black, max 16, and the
    # image went unregistered; a tester)
    arr12 = np.array([[0, 16, 4080], [4095, 2048, 100]], dtype=np.uint16)
    Image.fromarray(arr12).save(tmp_path / "d12.png")
    out = load_image(tmp_path / "d12.png")
    np.testing.assert_array_equal(out[..., 0], np.rint(arr12 * 255.0 / 4095).astype(np.uint8))
    assert out.max() == 255
    # 10-bit and 14-bit likewise; 8-bit data in a 16-bit file stays as it is
    for bits, peak in ((10, 1000), (14, 12000), (8, 200)):
        arr = np.array([[0, peak]], dtype=np.uint16)
        Image.fromarray(arr).save(tmp_path / f"d{bits}.png")
        assert load_image(tmp_path / f"d{bits}.png")[0, 1, 0] == round(peak * 255 / (2**bits - 1)), bits


def test_palette_and_cmyk(tmp_path: Path) -> None:
    Image.fromarray(_halves()).convert("P").save(tmp_path / "p.png")
    Image.fromarray(_halves()).convert("CMYK").save(tmp_path / "c.jpg")
    for name in ("p.png", "c.jpg"):
        out = load_image(tmp_path / name)
        assert out.shape == (20, 40, 3)
        assert out[:, :15, 0].mean() > 200 and out[:, 25:, 2].mean() > 200


@pytest.mark.parametrize("content", [b"definitely not an image", b""])
def test_corrupt_file_raises_input_error_naming_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken_image.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken_image.jpg"):
        load_image(path)
    with pytest.raises(InputError, match="broken_image.jpg"):
        image_size(path)


def test_truncated_jpeg_raises(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="nope.png"):
        image_size(tmp_path / "nope.png")


def test_exif_focal_from_35mm_equivalent(tmp_path: Path) -> None:
    path = _save_jpeg_with_exif(tmp_path / "f.jpg", _halves(40, 20), {}, {0xA405: 70})
    assert exif_focal_px(path) == pytest.approx(70 / 35 * 40)


def test_exif_focal_from_focal_plane_resolution(tmp_path: Path) -> None:
    # 4 mm lens, 100 px/mm on a 40 px wide image → sensor 0.4 mm wide → focal = 4 / 0.4 · 40 = 400 px
    tags = {0x920A: 4.0, 0xA20E: 100.0, 0xA210: 4}
    path = _save_jpeg_with_exif(tmp_path / "f.jpg", _halves(40, 20), {}, tags)
    assert exif_focal_px(path) == pytest.approx(400.0)


def test_exif_focal_absent(tmp_path: Path) -> None:
    Image.fromarray(_halves()).save(tmp_path / "n.png")
    assert exif_focal_px(tmp_path / "n.png") is None
    only_focal = _save_jpeg_with_exif(tmp_path / "o.jpg", _halves(), {}, {0x920A: 4.0})
    assert exif_focal_px(only_focal) is None  # focal in mm without a sensor width: unknown


def test_check_images_names_every_bad_file_at_once(tmp_path: Path) -> None:
    """A dataset with several bad files fails once, naming them all (not one file per run); truncated JPEGs and
    PNGs are caught although JPEGs are decoded at reduced scale."""
    from imc_core.images import check_images, image_problem

    rng = np.random.default_rng(2)
    good = []
    for k, ext in enumerate(("jpg", "png", "jpg")):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(tmp_path / f"ok{k}.{ext}")
        good.append(tmp_path / f"ok{k}.{ext}")
    check_images(good)
    for src, cut in (("ok0.jpg", "cut.jpg"), ("ok1.png", "cut.png")):
        data = (tmp_path / src).read_bytes()
        (tmp_path / cut).write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_bytes(b"not an image")
    bad = [tmp_path / n for n in ("cut.jpg", "cut.png", "text.jpg", "gone.png")]
    assert image_problem(tmp_path / "gone.png") == "missing"
    (tmp_path / "empty.png").write_bytes(b"")
    assert image_problem(tmp_path / "empty.png") == "unreadable: empty file (0 bytes)"
    assert all(image_problem(p).startswith("unreadable") for p in bad[:3])
    with pytest.raises(InputError, match=r"4 of 7 images cannot be used \(cut\.jpg: unreadable.*; cut\.png: "
                                         r"unreadable.*; text\.jpg: unreadable.*; gone\.png: missing\)"):
        check_images(good + bad)
    with pytest.raises(InputError, match=r"; and 2 more\)"):
        check_images(good + bad, limit=2)


def test_images_of_one_file_name_in_two_sub_folders_are_named_apart(tmp_path: Path) -> None:
    """A dataset's labelled names may sit in sub-folders: `a/x.jpg` and `b/x.jpg` were both called `x.jpg`."""
    from imc_core.images import check_images, exif_problems

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _save_jpeg_with_exif(tmp_path / sub / "x.jpg", _halves(), {0x0112: 0}, {})
    (tmp_path / "b" / "y.jpg").write_bytes(b"not an image")
    paths = [tmp_path / n for n in ("a/x.jpg", "b/x.jpg", "b/y.jpg")]
    note = exif_problems(paths[:2], names=["a/x.jpg", "b/x.jpg"])
    assert note is not None and "a/x.jpg: EXIF orientation 0" in note and "b/x.jpg: EXIF orientation 0" in note
    with pytest.raises(InputError) as err:
        check_images(paths, names=["a/x.jpg", "b/x.jpg", "b/y.jpg"])
    assert str(err.value).startswith(f"{tmp_path}: 1 of 3 images cannot be used (b/y.jpg: unreadable")


def test_a_large_image_is_decoded_and_one_too_large_is_named_as_such(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL refuses images over 179 MP as a "decompression bomb DOS attack": a dataset's 182 MP aerial image was
    called unreadable. imc-lab raises the cap (to 2,000 MP) and calls what is over it too large."""
    from PIL import Image

    import imc_core.images as images

    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS == 1_000_000_000
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # (64 × 64 is more than twice 1,000 pixels)
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    problem = images.image_problem(path)
    assert problem.startswith("unreadable: too large to decode (") and "attack" not in problem
    with pytest.raises(InputError, match="big.png.*too large to decode"):
        images.load_image(path)
    with pytest.raises(InputError, match="too large to decode"):
        images.image_size(path)


def _damaged_exif(src: Path, dst: Path) -> Path:
    """``src`` saved as ``dst`` with its EXIF block cut in half and padded: PIL warns while it reads it."""
    img = Image.open(src)
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x0110] = "Camera model"
    raw = exif.tobytes()
    img.save(dst, exif=raw[: len(raw) // 2] + b"\xff" * 10)
    return dst


def test_exif_problem_names_a_damaged_block_and_a_bad_orientation(tmp_path: Path) -> None:
    from imc_core.images import exif_problem, exif_problems

    plain = tmp_path / "plain.png"
    Image.fromarray(_halves()).save(plain)
    fine = _save_jpeg_with_exif(tmp_path / "fine.jpg", _halves(), {0x0112: 6}, {0x920A: 4.2})
    zero = _save_jpeg_with_exif(tmp_path / "zero.jpg", _halves(), {0x0112: 0}, {})
    damaged = _damaged_exif(plain, tmp_path / "damaged.png")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert exif_problem(plain) is None and exif_problem(fine) is None
        assert exif_problem(not_an_image) is None  # (image_problem says what is wrong with it)
        assert exif_problem(zero) == "EXIF orientation 0 is none of 1–8, read as upright"
        said = exif_problem(damaged)
    assert said is not None and said.startswith("damaged EXIF (") and said.endswith("), its unreadable tags taken as absent")
    assert len(said) > len("damaged EXIF (), its unreadable tags taken as absent")  # PIL's words inside
    assert not caught  # PIL's own warning, without the file's name, is not passed on
    load_image(zero)  # read as upright, as said
    assert image_size(zero) == (40, 20)
    note = exif_problems([plain, zero, damaged, fine])
    assert note is not None and note.startswith("2 of 4 images have EXIF that cannot be read as written (")
    assert "zero.jpg: EXIF orientation 0" in note and "damaged.png: damaged EXIF" in note
    assert "plain.png" not in note and "fine.jpg" not in note
    assert exif_problems([plain, fine]) is None
    many = exif_problems([zero] * 7, limit=2)
    assert many is not None and many.endswith("; and 5 more)")


def test_exif_problem_blames_only_pils_exif_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """catch_warnings records the whole process's warnings: a worker thread's warning raised while an EXIF block
    is read (21 of 200 images with --jobs 2) was called damaged EXIF and swallowed; PIL's warning about the image
    (a decompression bomb) too. They go on as they would have; PIL's EXIF warnings are still the image's."""
    import PIL.Image
    import imc_core.images as images

    plain = tmp_path / "plain.png"
    Image.fromarray(_halves()).save(plain)
    damaged = _damaged_exif(plain, tmp_path / "damaged.png")
    real_open = PIL.Image.open

    def noisy_open(*args: object, **kwargs: object) -> PIL.Image.Image:
        warnings.warn("a worker's warning", RuntimeWarning)  # (what another thread may raise meanwhile)
        warnings.warn("a warning its filters silence", UserWarning)  # (and they still do)
        warnings.warn_explicit("Image size exceeds limit", PIL.Image.DecompressionBombWarning,
                               PIL.Image.__file__, 1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(images.Image, "open", noisy_open)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # (by module, as pytest.ini silences pycolmap's: a warning passed on by file name lost its module)
        warnings.filterwarnings("ignore", message="a warning its filters silence", module=r"(tests\.unit\.)?test_images$")
        assert images.exif_problem(plain) is None
        said = images.exif_problem(damaged)
    assert said is not None and said.startswith("damaged EXIF (") and "worker" not in said and "limit" not in said
    assert sorted(str(w.message) for w in caught) == ["Image size exceeds limit"] * 2 + ["a worker's warning"] * 2


def test_colmap_gets_an_image_with_a_bad_orientation_as_it_is(tmp_path: Path) -> None:
    """An orientation tag of none of 1–8 is read as upright by COLMAP and imc-lab alike: the file is linked, not
    decoded (a 4000×3000 photo took 3.2 s and a 20 MB PNG for the same keypoints); a rotating tag is decoded."""
    from imc_core.stages.features import _stage_colmap_image

    zero = _save_jpeg_with_exif(tmp_path / "zero.jpg", _halves(), {0x0112: 0}, {})
    upright = _save_jpeg_with_exif(tmp_path / "upright.jpg", _halves(), {0x0112: 1}, {})
    rotated = _save_jpeg_with_exif(tmp_path / "rotated.jpg", _halves(), {0x0112: 6}, {})
    _stage_colmap_image(zero, tmp_path / "000000.jpg")
    _stage_colmap_image(upright, tmp_path / "000001.jpg")
    _stage_colmap_image(rotated, tmp_path / "000002.jpg")
    assert (tmp_path / "000000.jpg").is_symlink() and (tmp_path / "000001.jpg").is_symlink()
    assert (tmp_path / "000002.png").is_file() and not (tmp_path / "000002.jpg").exists()
