"""Synthetic benchmark generator (imc_core.synth): layout, determinism, exact GT, stamps."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from imc_core.data import read_labels, read_thresholds
from imc_core.errors import ConfigError, InputError
from imc_core.submission import OUTLIERS, camera_centers, rotations, translations
from imc_core.synth import (
    BUNDLED,
    META_FILE,
    PHOTOS,
    STAMP_FILE,
    THRESHOLD_RATIOS,
    Quad,
    Scene,
    SynthConfig,
    config_hash,
    ensure,
    generate,
    look_at,
    project,
    read_meta,
    render_view,
    scene_from_meta,
)

TINY = SynthConfig(
    seed=7,
    datasets=2,
    scenes_per_dataset=(2, 3),
    images_per_scene=(3, 4),
    outliers_per_dataset=2,
    width=160,
    height=120,
    roll_fraction=0.25,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "root", TINY)


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def load_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img[..., ::-1]


def meta_images(meta: dict) -> dict[tuple[str, str], dict]:
    return {(m["dataset"], m["image"]): m for m in meta["images"]}


# ------------------------------------------------------------------------------------------------- layout and CSVs


def test_layout_and_csvs_read_back(tiny: Path) -> None:
    labels = read_labels(tiny / "train_labels.csv")
    thresholds = read_thresholds(tiny / "train_thresholds.csv")
    assert sorted(labels["dataset"].unique()) == ["synth_boxes", "synth_rooms"]
    for ds, df in labels.groupby("dataset"):
        on_disk = sorted(p.name for p in (tiny / "train" / ds).iterdir())
        assert on_disk == sorted(df["image"]), ds
        scenes = set(df["scene"]) - {OUTLIERS}
        assert 2 <= len(scenes) <= 3
        assert (df["scene"] == OUTLIERS).sum() == 2
        for sc in scenes:
            assert 3 <= (df["scene"] == sc).sum() <= 4
            th = thresholds[(ds, sc)]
            assert th.shape == (6,) and np.all(np.diff(th) > 0) and th[0] > 0
    assert set(thresholds) == {(d, s) for d, s in zip(labels["dataset"], labels["scene"]) if s != OUTLIERS}
    assert (tiny / META_FILE).is_file() and (tiny / STAMP_FILE).is_file()


def test_thresholds_scale_with_scene_extent(tiny: Path) -> None:
    meta = read_meta(tiny)
    thresholds = read_thresholds(tiny / "train_thresholds.csv")
    for ds, entry in meta["datasets"].items():
        for sc, geo in entry["scenes"].items():
            np.testing.assert_allclose(thresholds[(ds, sc)], geo["extent"] * np.array(THRESHOLD_RATIOS), rtol=1e-5)


def test_image_names_do_not_reveal_scenes(tiny: Path) -> None:
    labels = read_labels(tiny / "train_labels.csv")
    scenes = set(labels["scene"])
    for ds, name in zip(labels["dataset"], labels["image"]):
        short = ds.removeprefix("synth_")
        assert re.fullmatch(rf"{short}_[0-9a-f]{{6}}\.png", name), name
        assert not any(sc in name for sc in scenes), name
    # rows are shuffled: scenes are interleaved within each dataset, not in blocks
    for _, df in labels.groupby("dataset", sort=False):
        seq = df["scene"].tolist()
        blocks = 1 + sum(a != b for a, b in zip(seq, seq[1:]))
        assert blocks > len(set(seq))


def test_outliers_have_nan_poses_and_scene_poses_are_rotations(tiny: Path) -> None:
    labels = read_labels(tiny / "train_labels.csv")
    out = (labels["scene"] == OUTLIERS).to_numpy()
    R, t = rotations(labels), translations(labels)
    assert np.isnan(R[out]).all() and np.isnan(t[out]).all()
    Rs = R[~out]
    assert np.isfinite(Rs).all() and np.isfinite(t[~out]).all()
    np.testing.assert_allclose(Rs @ np.swapaxes(Rs, 1, 2), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(Rs), 1.0, atol=1e-12)


def test_scenes_and_outliers_share_no_texture(tiny: Path) -> None:
    meta = read_meta(tiny)
    for ds, entry in meta["datasets"].items():
        photos = [{q["photo"] for q in geo["quads"] if "photo" in q} for geo in entry["scenes"].values()]
        for i in range(len(photos)):
            for j in range(i + 1, len(photos)):
                assert not photos[i] & photos[j], ds
        outlier_crops = [(q["photo"], tuple(q["crop"])) for g in entry["outliers"].values() for q in g["quads"]]
        assert not {p for p, _ in outlier_crops} & set().union(*photos), ds
        assert len(set(outlier_crops)) == len(outlier_crops)  # crops of a shared outlier photo are disjoint
        for p, (x0, y0, x1, y1) in outlier_crops:
            assert p in PHOTOS and x1 > x0 and y1 > y0
            others = [c for q, c in outlier_crops if q == p and c != (x0, y0, x1, y1)]
            assert all(x1 <= a or a2 <= x0 or y1 <= b or b2 <= y0 for a, b, a2, b2 in others)


# --------------------------------------------------------------------------------------------------- GT consistency


def test_red_marker_is_where_the_gt_pose_projects_it(tiny: Path) -> None:
    labels = read_labels(tiny / "train_labels.csv")
    meta = read_meta(tiny)
    info = meta_images(meta)
    seen: dict[tuple[str, str], int] = {}
    for ds, sc, name, R, t in zip(labels["dataset"], labels["scene"], labels["image"], rotations(labels),
                                  translations(labels)):  # fmt: skip
        if sc == OUTLIERS:
            continue
        marker = np.asarray(meta["datasets"][ds]["scenes"][sc]["markers"])
        assert marker.shape == (1, 3)
        img = load_rgb(tiny / "train" / ds / name)
        (x, y), = project(np.asarray(info[(ds, name)]["K"]), R, t, marker)
        h, w = img.shape[:2]
        if not (2 <= x < w - 2 and 2 <= y < h - 2):
            continue
        r, g, b = img[int(y), int(x)].astype(int)
        assert r > 150 and g < 90 and b < 90, (ds, sc, name, (x, y), (r, g, b))
        seen[(ds, sc)] = seen.get((ds, sc), 0) + 1
    scenes = {(d, s) for d, s in zip(labels["dataset"], labels["scene"]) if s != OUTLIERS}
    assert set(seen) == scenes  # every scene has views that show the marker


def test_rerendering_from_meta_and_csv_matches_the_png(tiny: Path) -> None:
    labels = read_labels(tiny / "train_labels.csv")
    meta = read_meta(tiny)
    info = meta_images(meta)
    rows = labels[labels["scene"] != OUTLIERS].groupby("dataset").head(2)
    for (_, row), R, t in zip(rows.iterrows(), rotations(rows), translations(rows)):
        m = info[(row["dataset"], row["image"])]
        scene = scene_from_meta(meta["datasets"][row["dataset"]]["scenes"][row["scene"]])
        png = load_rgb(tiny / "train" / row["dataset"] / row["image"]).astype(float)
        again = render_view(scene, np.asarray(m["K"]), R, t, m["width"], m["height"]).astype(float)
        assert again.shape == png.shape
        corr = np.corrcoef(png.ravel(), again.ravel())[0, 1]
        assert corr > 0.97, (row["image"], corr)
        # a 1° error in the pose is visible: the check can fail
        a = math.radians(1.0)
        Rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
        off = render_view(scene, np.asarray(m["K"]), Rz @ R, t, m["width"],
                          m["height"]).astype(float)  # fmt: skip
        assert np.corrcoef(png.ravel(), off.ravel())[0, 1] < corr - 0.02


def test_roll_views_have_swapped_shapes_and_rolled_rotations(tiny: Path) -> None:
    meta = read_meta(tiny)
    rolls = [m for m in meta["images"] if m["roll_deg"]]
    assert rolls, "TINY should contain rolled views"
    for m in meta["images"]:
        img = cv2.imread(str(tiny / "train" / m["dataset"] / m["image"]), cv2.IMREAD_COLOR)
        swapped = m["roll_deg"] in (90, 270)
        assert img.shape[:2] == ((TINY.width, TINY.height) if swapped else (TINY.height, TINY.width))
        assert (m["width"], m["height"]) == (img.shape[1], img.shape[0])
        K = np.asarray(m["K"])
        assert K[0, 2] == m["width"] / 2 and K[1, 2] == m["height"] / 2 and K[0, 0] == K[1, 1]
        f = K[0, 0] / max(TINY.width, TINY.height)
        assert TINY.focal_range[0] <= f <= TINY.focal_range[1]
    for m in rolls:
        # the camera's x axis is no longer horizontal (+z up): it is vertical for 90/270 and flipped for 180
        x_axis = np.asarray(m["R"])[0]
        if m["roll_deg"] == 180:
            assert x_axis[2] == pytest.approx(0, abs=1e-9) and np.asarray(m["R"])[1, 2] > 0
        else:
            assert abs(x_axis[2]) > 0.5


def test_render_roll_is_an_exact_image_rotation() -> None:
    scene = checker_scene()
    K = np.array([[60.0, 0, 40], [0, 60.0, 30], [0, 0, 1]])
    Kr = np.array([[60.0, 0, 30], [0, 60.0, 40], [0, 0, 1]])
    c, target = np.array([0.1, -2.0, 0.4]), np.array([0.0, 0.0, 0.0])
    base = render_view(scene, K, *look_at(c, target), 80, 60).astype(int)
    r90 = render_view(scene, Kr, *look_at(c, target, 90), 60, 80).astype(int)
    r180 = render_view(scene, K, *look_at(c, target, 180), 80, 60).astype(int)
    assert r90.shape == (80, 60, 3)
    candidates = [np.abs(np.rot90(base, k) - r90).max() for k in (1, 3)]
    assert min(candidates) <= 2 < max(candidates)
    assert np.abs(np.rot90(base, 2) - r180).max() <= 2


# ------------------------------------------------------------------------------------------------ renderer / project


def checker_scene() -> Scene:
    """An 8 × 4 m vertical board at y = 0 facing -y: left half (x < 0) black, right half white."""
    tex = np.zeros((64, 128, 3), np.float32)
    tex[:, 64:] = 255.0
    board = Quad(np.array([-4.0, 0.0, 2.0]), np.array([8.0, 0, 0]), np.array([0, 0, -4.0]), tex, name="board")
    return Scene("checker", [board], extent=8.0)


def test_render_edge_lands_where_project_puts_it() -> None:
    scene = checker_scene()
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    R, t = look_at(np.array([0.23, -3.0, 0.1]), np.array([0.0, 0.0, 0.0]))
    img = render_view(scene, K, R, t, 128, 96, supersample=4).astype(float)[..., 0]
    for z in (-0.3, 0.0, 0.3):
        (xe, ye), = project(K, R, t, np.array([[0.0, 0.0, z]]))
        row = img[int(ye)]
        # sub-pixel edge: the 50 % crossing of the row profile (pixel j covers [j, j + 1))
        j = int(np.argmax(row > 127.5))
        x_cross = j - 0.5 + (127.5 - row[j - 1]) / (row[j] - row[j - 1])
        assert abs(x_cross - xe) < 0.2, (z, x_cross, xe)


def test_back_faces_are_culled_and_points_behind_are_nan() -> None:
    scene = checker_scene()
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    R, t = look_at(np.array([0.0, 3.0, 0.0]), np.zeros(3))  # behind the board: it is culled, only sky remains
    img = render_view(scene, K, R, t, 64, 48)
    assert np.all(img == np.rint(scene.background).astype(np.uint8))
    uv = project(K, R, t, np.array([[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.isnan(uv[0]).all() and np.allclose(uv[1], [32, 24])


# ------------------------------------------------------------------------------------------- determinism and stamps


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", TINY)
    first, second = all_files(tiny), all_files(again)
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    other = all_files(generate(tmp_path / "other", SynthConfig(**{**TINY.__dict__, "seed": 8})))
    assert other["train_labels.csv"] != first["train_labels.csv"]
    assert set(other) != set(first)  # different random image names


def test_ensure_is_a_noop_on_a_complete_folder(tmp_path: Path) -> None:
    conf = SynthConfig(seed=1, datasets=1, scenes_per_dataset=1, images_per_scene=2, outliers_per_dataset=1,
                       width=48, height=32)  # fmt: skip
    root = ensure(tmp_path / "r", conf)
    labels = root / "train_labels.csv"
    ino = labels.stat().st_ino
    assert ensure(root, conf) == root
    assert labels.stat().st_ino == ino  # not rewritten (atomic writes would give a new inode)
    generate(root, conf, overwrite=True)
    assert labels.stat().st_ino != ino
    # a missing file makes the folder incomplete: ensure regenerates it
    png = next((root / "train").rglob("*.png"))
    png.unlink()
    ensure(root, conf)
    assert png.is_file()


def test_new_config_in_same_folder_removes_stale_images(tmp_path: Path) -> None:
    a = SynthConfig(seed=1, datasets=1, scenes_per_dataset=1, images_per_scene=3, outliers_per_dataset=1,
                    width=48, height=32)  # fmt: skip
    b = SynthConfig(**{**a.__dict__, "seed": 2, "images_per_scene": 2})
    assert config_hash(a) != config_hash(b)
    root = generate(tmp_path / "r", a)
    generate(root, b)
    labels = read_labels(root / "train_labels.csv")
    assert sorted(p.name for p in (root / "train" / "synth_rooms").iterdir()) == sorted(labels["image"])


def test_fewer_datasets_in_same_folder_remove_the_emptied_folders(tmp_path: Path) -> None:
    """Two datasets, then one: the second's folder stayed, empty, and every run refused the root ("no images")."""
    from imc_core.data import DataRoot

    a = SynthConfig(seed=1, datasets=2, scenes_per_dataset=1, images_per_scene=3, outliers_per_dataset=1,
                    width=48, height=32)  # fmt: skip
    root = generate(tmp_path / "r", a)
    assert len([p for p in (root / "train").iterdir()]) == 2
    (root / "train" / "mine").mkdir()  # a folder of the user's, emptied or not, is not synth's to remove
    generate(root, SynthConfig(**{**a.__dict__, "datasets": 1}))
    assert sorted(p.name for p in (root / "train").iterdir()) == ["mine", "synth_rooms"]
    (root / "train" / "mine").rmdir()
    assert list(DataRoot(root).load_for_run(None, "train")[1]) == ["synth_rooms"]


def test_refuses_foreign_folder_and_bad_configs(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a synthetic benchmark"):
        generate(tmp_path, SynthConfig(datasets=1, width=32, height=32))
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    with pytest.raises(ConfigError):
        SynthConfig(width=8)
    with pytest.raises(ConfigError):
        SynthConfig(scenes_per_dataset=(3, 2))
    with pytest.raises(ConfigError):
        SynthConfig(roll_fraction=1.5)
    with pytest.raises(ConfigError, match="photos"):
        generate(tmp_path / "big", SynthConfig(datasets=1, scenes_per_dataset=9, width=32, height=32))


def test_bundled_config_is_the_small_default() -> None:
    assert BUNDLED.datasets == 2 and BUNDLED.scenes_per_dataset == (2, 3)
    assert BUNDLED.images_per_scene == (8, 12) and BUNDLED.outliers_per_dataset == (2, 3)
    assert (BUNDLED.width, BUNDLED.height) == (640, 480)
    assert config_hash(BUNDLED) == config_hash(SynthConfig(**BUNDLED.__dict__))


def test_gt_submission_scores_100(tiny: Path, tmp_path: Path) -> None:
    metric = pytest.importorskip("imc_core.metric")
    labels = read_labels(tiny / "train_labels.csv")
    assert np.isfinite(camera_centers(labels[labels["scene"] != OUTLIERS])).all()
    res = metric.score_files(tiny / "train_labels.csv", tiny / "train_thresholds.csv", tiny / "train_labels.csv")
    assert res.score == pytest.approx(100.0)
