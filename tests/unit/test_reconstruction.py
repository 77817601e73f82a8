"""Reconstruction stage on synthetic COLMAP scenes (exact poses from ``pycolmap.synthesize_dataset``)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

pycolmap = pytest.importorskip("pycolmap")

from imc_core.errors import Cancelled, ConfigError, InputError  # noqa: E402
from imc_core.stages import reconstruction as rc  # noqa: E402
from imc_core.stages.reconstruction import (  # noqa: E402
    ReconstructionConfig,
    build_database,
    make_camera,
    order_clusters,
    reconstruct,
    resolve_registrations,
)
from imc_core.submission import POSE_COLS, R_COLS, T_COLS  # noqa: E402

W, H = 1024, 768


# ---------------------------------------------------------------------------------------------------- fixtures


def synth_scene(seed: int, n_images: int = 6, n_points: int = 200) -> pycolmap.Reconstruction:
    """A small exact scene: one camera rig, ``n_images`` frames, every point seen by every image."""
    pycolmap.set_random_seed(seed)
    opts = pycolmap.SyntheticDatasetOptions(num_rigs=1, num_cameras_per_rig=1, num_frames_per_rig=n_images,
                                            num_points3D=n_points, camera_width=W, camera_height=H)
    return pycolmap.synthesize_dataset(opts)


def gt_poses(rec: pycolmap.Reconstruction, prefix: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for image in rec.images.values():
        pose = image.cam_from_world()
        out[prefix + image.name] = (np.array(pose.rotation.matrix()), np.array(pose.translation))
    return out


def write_inputs(tmp: Path, scenes: list[tuple[str, pycolmap.Reconstruction]], noise_px: float = 0.0
                 ) -> tuple[list[str], Path, Path, list[tuple[str, str]]]:
    """features.h5 / matches.h5 from synthetic scenes (names prefixed per scene); exhaustive pairs over all images.

    Keypoints are the synthetic observations moved to the features.h5 convention (−0.5 px), plus Gaussian noise of
    ``noise_px`` (seeded); matches are the correspondences through shared 3D point ids, within a scene only
    (cross-scene pairs get no group).
    """
    rng = np.random.default_rng(0)
    features, matches = tmp / "features.h5", tmp / "matches.h5"
    names: list[str] = []
    per_scene: list[list[tuple[str, pycolmap.Image]]] = []
    with h5py.File(features, "w") as f:
        for prefix, rec in scenes:
            items = sorted(((prefix + im.name, im) for im in rec.images.values()), key=lambda x: x[0])
            per_scene.append(items)
            for name, im in items:
                kp = np.array([p.xy for p in im.points2D], dtype=np.float32) - 0.5
                kp += rng.normal(0.0, noise_px, kp.shape).astype(np.float32) if noise_px else 0.0
                g = f.create_group(name)
                g["keypoints"] = kp
                g["descriptors"] = np.zeros((len(kp), 8), np.float32)
                g["scores"] = np.ones(len(kp), np.float32)
                g["image_size"] = np.array([W, H], np.int64)
                names.append(name)
    with h5py.File(matches, "w") as f:
        for items in per_scene:
            for (na, a), (nb, b) in combinations(items, 2):
                idx = {p.point3D_id: i for i, p in enumerate(a.points2D) if p.has_point3D()}
                m = np.array([(idx[p.point3D_id], j) for j, p in enumerate(b.points2D)
                              if p.has_point3D() and p.point3D_id in idx], dtype=np.int32)
                g = f.create_group(f"{na}/{nb}")
                g["matches"] = m
                g["scores"] = np.ones(len(m), np.float32)
    pairs = [(a, b) for a, b in combinations(names, 2)]
    return names, features, matches, pairs


def centers(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N,3,3), (N,3) world→camera → (N,3) camera centres."""
    return -np.einsum("nji,nj->ni", R, t)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> object:
    """scikit-image's least-squares similarity ``src → dst`` for (N, 3) points (new and old API)."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):
        return SimilarityTransform.from_estimate(src, dst)
    sim = SimilarityTransform(dimensionality=3)
    assert sim.estimate(src, dst)
    return sim


def assert_poses_match(poses: pd.DataFrame, gt: dict[str, tuple[np.ndarray, np.ndarray]], tol: float = 1e-3) -> None:
    """Predicted poses equal GT up to one similarity (Umeyama on camera centres), rotations included."""
    names = list(poses["image"])
    R = poses[R_COLS].to_numpy().reshape(-1, 3, 3)
    t = poses[T_COLS].to_numpy()
    Rg = np.stack([gt[n][0] for n in names])
    tg = np.stack([gt[n][1] for n in names])
    sim = fit_similarity(centers(R, t), centers(Rg, tg))
    scale = np.cbrt(np.linalg.det(sim.params[:3, :3]))
    rot = sim.params[:3, :3] / scale
    mapped = sim(centers(R, t))
    spread = np.linalg.norm(centers(Rg, tg) - centers(Rg, tg).mean(0), axis=1).max()
    assert np.abs(mapped - centers(Rg, tg)).max() < tol * spread
    # world→camera rotation of the aligned prediction: R_pred @ rotᵀ must equal R_gt
    rel = np.einsum("nij,kj->nik", R, rot)
    assert np.abs(rel - Rg).max() < tol


def fast_conf(**kw: object) -> ReconstructionConfig:
    return ReconstructionConfig(extract_colors=False, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scene_a() -> pycolmap.Reconstruction:
    return synth_scene(1)


@pytest.fixture(scope="module")
def scene_b() -> pycolmap.Reconstruction:
    return synth_scene(2, n_images=5)


# --------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("kw", [{"mapper": "glomap2"}, {"camera_model": "FISHEYE"}, {"verify": "none"},
                                {"focal_prior": 0.0}, {"min_model_size": 0}, {"num_threads": 0},
                                {"verify_confidence": 1.0}, {"seed": -1}, {"refine_loss": "l2"},
                                {"refine_loss_scale": 0.0}, {"refine_filter_max_reproj_error": -1.0},
                                {"ba_global_images_ratio": 0.9}, {"ba_global_max_refinements": 0},
                                {"refine_max_iterations": 0}, {"refine_function_tolerance": -1e-7},
                                {"refine_function_tolerance": 1.0}, {"ba_local_function_tolerance": -1e-7},
                                {"ba_global_function_tolerance": 1.0}, {"max_model_overlap": 0},
                                {"ba_local_num_images": 1}, {"ba_global_images_ratio": 1.0},
                                {"ba_global_points_ratio": 1.0}, {"remap_min_obs_per_match": -0.1},
                                {"remap_min_obs_per_match": float("nan")}, {"remap_seeds": 0}])
def test_config_rejects_bad_values(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="reconstruction\\."):
        ReconstructionConfig(**kw)  # type: ignore[arg-type]


#: the least value the config takes for each of the mapper's bounded keys
LEAST_ACCEPTED = {"min_model_size": 1, "max_num_models": 1, "min_num_matches": 1, "init_min_num_inliers": 1,
                  "init_num_trials": 1, "abs_pose_min_num_inliers": 1, "ba_local_num_images": 2,
                  "ba_global_max_refinements": 1, "tri_max_transitivity": 1, "max_model_overlap": 1,
                  "ba_global_images_ratio": 1.000001, "ba_global_points_ratio": 1.000001, "init_max_error": 1e-9,
                  "abs_pose_max_error": 1e-9, "filter_max_reproj_error": 1e-9, "abs_pose_min_inlier_ratio": 0.0,
                  "ba_local_function_tolerance": 0.0, "ba_global_function_tolerance": 0.0, "max_runtime_s": 0}


@pytest.mark.parametrize("key", sorted(LEAST_ACCEPTED))
def test_every_value_the_config_takes_passes_colmaps_own_check(key: str) -> None:
    """``max_model_overlap=-1``, ``ba_local_num_images=1`` and ``ba_global_images_ratio=1`` passed the config and
    failed COLMAP's ``options_->Check()`` once mapping began: the run scored 0 with a reason that named no key."""
    below = LEAST_ACCEPTED[key] - (1 if isinstance(LEAST_ACCEPTED[key], int) else 1e-6)
    conf = ReconstructionConfig(**{key: LEAST_ACCEPTED[key]})  # type: ignore[arg-type]
    assert rc.incremental_options(conf).check()
    if key not in ("abs_pose_min_inlier_ratio", "ba_local_function_tolerance", "ba_global_function_tolerance",
                   "max_runtime_s"):  # (bounded by the config more tightly than by COLMAP, or not at all)
        with pytest.raises(ConfigError, match=f"reconstruction\\.{key} must be"):
            ReconstructionConfig(**{key: below})  # type: ignore[arg-type]


def test_threads_forced_to_one_when_deterministic() -> None:
    assert ReconstructionConfig(num_threads=8, deterministic=True).threads == 1
    assert ReconstructionConfig(num_threads=8, deterministic=False).threads == 8
    opts = rc.incremental_options(ReconstructionConfig(seed=7, min_model_size=4, max_num_models=3))
    assert (opts.num_threads, opts.random_seed, opts.min_model_size, opts.max_num_models) == (1, 7, 4, 3)
    assert opts.get_mapper().random_seed == 7
    assert opts.max_runtime_seconds == -1
    assert rc.incremental_options(ReconstructionConfig(max_runtime_s=90)).max_runtime_seconds == 90


def test_global_adjustment_keys_reach_the_mapper() -> None:
    opts = rc.incremental_options(ReconstructionConfig(ba_global_images_ratio=1.4, ba_global_points_ratio=1.3,
                                                       ba_global_max_refinements=2,
                                                       ba_global_ignore_redundant_points=True))
    assert (opts.ba_global_frames_ratio, opts.ba_global_points_ratio) == pytest.approx((1.4, 1.3))
    assert opts.ba_global_max_refinements == 2
    assert opts.get_mapper().ba_global_ignore_redundant_points3D
    plain = rc.incremental_options(ReconstructionConfig())  # COLMAP's own defaults unless a variant says otherwise
    assert (plain.ba_global_frames_ratio, plain.ba_global_max_refinements) == (pytest.approx(1.1), 5)
    assert not plain.get_mapper().ba_global_ignore_redundant_points3D


def test_mapper_adjustment_tolerances_reach_ceres() -> None:
    """The mapper's local and global adjustments stop at the configured relative cost change; 0 is COLMAP's own
    choice (Ceres never stops on the cost)."""
    opts = rc.incremental_options(ReconstructionConfig(ba_local_function_tolerance=2e-7,
                                                       ba_global_function_tolerance=1e-7))
    assert opts.get_local_bundle_adjustment().ceres.solver_options.function_tolerance == pytest.approx(2e-7)
    assert opts.get_global_bundle_adjustment().ceres.solver_options.function_tolerance == pytest.approx(1e-7)
    plain = rc.incremental_options(ReconstructionConfig())
    assert plain.get_local_bundle_adjustment().ceres.solver_options.function_tolerance == 0
    assert plain.get_global_bundle_adjustment().ceres.solver_options.function_tolerance == 0
    assert {"ba_local_function_tolerance", "ba_global_function_tolerance"} <= rc.MAPPING_ONLY_KEYS


def test_triangulation_transitivity_reaches_the_triangulator() -> None:
    assert rc.incremental_options(ReconstructionConfig(tri_max_transitivity=3)).triangulation.max_transitivity == 3
    assert rc.incremental_options(ReconstructionConfig()).triangulation.max_transitivity == 1  # COLMAP's default
    with pytest.raises(ConfigError, match="tri_max_transitivity must be ≥ 1"):
        ReconstructionConfig(tri_max_transitivity=0)
    # mapping-only: a change re-maps on the cached verified database
    assert "tri_max_transitivity" not in rc.database_conf(ReconstructionConfig(tri_max_transitivity=3))


def test_structure_less_fallback_reaches_the_mapper() -> None:
    """COLMAP's structure-less registration stays on by default; a variant can switch it off, which re-maps on the
    cached verified database, and the global mapper does not read it."""
    import dataclasses

    from imc_core.config import resolve_config, unread_keys

    assert rc.incremental_options(ReconstructionConfig()).structure_less_registration_fallback is True
    off = ReconstructionConfig(structure_less_fallback=False)
    assert rc.incremental_options(off).structure_less_registration_fallback is False
    assert "structure_less_fallback" not in rc.database_conf(off)
    cfg = resolve_config("default", ["reconstruction.mapper=global"])
    assert "reconstruction.structure_less_fallback" in unread_keys(cfg)
    assert "reconstruction.structure_less_fallback" not in unread_keys(dataclasses.replace(
        cfg, reconstruction=dataclasses.replace(cfg.reconstruction, mapper="incremental")))


# ------------------------------------------------------------------------------------------------ resolution


def test_resolver_keeps_each_image_once_by_points_then_size_then_index() -> None:
    models = [
        {"a": 50, "b": 10, "c": 30},  # model 0: 3 images
        {"b": 40, "c": 30, "d": 5, "e": 5},  # model 1: 4 images → wins the tie on "c" by size
        {"a": 50, "f": 1, "g": 1, "h": 1, "i": 1},  # model 2: 5 images, ties "a" with model 0 on points
        {"e": 5, "j": 1, "k": 1, "l": 1, "m": 1},  # model 3: 5 images, ties "e" with model 1 on points, larger
    ]
    got = resolve_registrations(models)
    assert got["b"] == 1  # more points
    assert got["c"] == 1  # equal points → larger model
    assert got["a"] == 2  # equal points → larger model (5 > 3)
    assert got["e"] == 3  # equal points → larger model (5 > 4)
    assert got["d"] == 1 and got["f"] == 2
    assert set(got) == set("abcdefghijklm")


def test_resolver_tie_on_points_and_size_goes_to_lower_index() -> None:
    assert resolve_registrations([{"x": 3, "y": 1}, {"x": 3, "z": 1}]) == {"x": 0, "y": 0, "z": 1}
    assert resolve_registrations([]) == {}


def test_order_clusters_by_kept_images_and_drops_empty_models() -> None:
    assignment = {"a": 1, "b": 1, "c": 0, "d": 2, "e": 2}
    assert order_clusters(assignment, 4) == [1, 2, 0]  # 2, 2, 1 images; model 3 kept nothing


def test_clusters_do_not_depend_on_the_order_models_come_in() -> None:
    """Components mapped side by side return the same models in another order than one whole-database call: the
    labels cluster1/cluster2 of two 9-image scenes swapped with --jobs (submission.csv differed byte for byte)."""
    models = [{"b1": 5, "b2": 5, "s": 7}, {"a1": 5, "a2": 5, "s": 7}, {"c1": 1, "c2": 1, "c3": 1}]
    for perm in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        shuffled = [models[k] for k in perm]
        assignment = resolve_registrations(shuffled)
        clusters = [sorted(n for n, k in assignment.items() if k == m) for m in order_clusters(assignment, 3)]
        assert clusters == [["a1", "a2", "s"], ["c1", "c2", "c3"], ["b1", "b2"]], perm


# -------------------------------------------------------------------------------------------------- database


def test_camera_prior_from_exif_or_focal_prior() -> None:
    conf = ReconstructionConfig(camera_model="PINHOLE", focal_prior=1.5)
    cam = make_camera(3, conf, (640, 480), None)
    assert cam.model_name == "PINHOLE" and not cam.has_prior_focal_length
    np.testing.assert_allclose(cam.params, [960, 960, 320, 240])
    cam = make_camera(3, conf, (640, 480), 500.0)
    assert cam.has_prior_focal_length and cam.focal_length_x == 500.0


def test_database_keypoints_shifted_half_pixel(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    kps, sizes = rc._read_keypoints(features, names)
    m = rc._load_pair_matches(matches, pairs, {n: len(k) for n, k in kps.items()})
    ids = build_database(tmp_path / "db.db", names, kps, sizes, m, fast_conf(), tmp_path)
    db = pycolmap.Database.open(tmp_path / "db.db")
    try:
        np.testing.assert_allclose(db.read_keypoints(ids[names[0]])[:, :2], kps[names[0]] + 0.5)
        assert db.num_images() == len(names) and db.num_cameras() == len(names)
        assert db.num_matched_image_pairs() == len(pairs)
        cam = db.read_camera(db.read_image(ids[names[0]]).camera_id)
        assert cam.model_name == "SIMPLE_RADIAL" and cam.focal_length == pytest.approx(1.2 * W)
    finally:
        db.close()


def test_reversed_pair_key_is_read_with_swapped_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["b.png/a.png/matches"] = np.array([[0, 5], [1, 6]], np.int32)
    got = rc._load_pair_matches(path, [("a.png", "b.png")], {"a.png": 10, "b.png": 3})
    np.testing.assert_array_equal(got[("a.png", "b.png")], [[5, 0], [6, 1]])


def test_bad_inputs_raise_input_error(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    with pytest.raises(InputError, match="missing.png"):
        reconstruct(tmp_path, [*names, "missing.png"], features, matches, pairs, fast_conf(), tmp_path / "o")
    with pytest.raises(InputError, match="out of range"):
        rc._load_pair_matches(matches, pairs[:1], {names[0]: 2, names[1]: 2})
    with pytest.raises(InputError, match="cannot read"):
        reconstruct(tmp_path, names, tmp_path / "nope.h5", matches, pairs, fast_conf(), tmp_path / "o")


# --------------------------------------------------------------------------------------------------- mapping


def test_reconstruct_registers_all_images_with_exact_poses(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    calls: list[tuple[int, int, str]] = []
    res = reconstruct(tmp_path / "images", names, features, matches, pairs, fast_conf(), tmp_path / "out",
                      dataset="synth", progress=lambda d, t, m: calls.append((d, t, m)))
    assert res.ok and res.n_models == 1, res.log
    assert list(res.poses["image"]) == names and set(res.poses["scene"]) == {"cluster0"}
    assert set(res.poses["dataset"]) == {"synth"}
    assert np.isfinite(res.poses[POSE_COLS].to_numpy()).all()
    assert_poses_match(res.poses, gt_poses(scene_a))
    # the written model opens in COLMAP and holds the same images
    model = pycolmap.Reconstruction(res.models[0])
    assert res.models[0] == tmp_path / "out" / "models" / "0"
    assert sorted(model.images[i].name for i in model.reg_image_ids()) == sorted(names)
    assert not (tmp_path / "out" / "sfm").exists()
    mapping = [d for d, t, m in calls if m.startswith("mapping:")]
    assert mapping and mapping == sorted(mapping) and mapping[-1] == len(names)
    assert any("verified" in line for line in res.log)


class _MappingKeysForbidden:
    """A config proxy that fails on any key :data:`MAPPING_ONLY_KEYS` claims the database does not read."""

    def __init__(self, conf: ReconstructionConfig) -> None:
        self._conf = conf

    def __getattr__(self, name: str) -> object:
        assert name not in rc.MAPPING_ONLY_KEYS, f"the database step reads the mapping-only key {name!r}"
        return getattr(self._conf, name)


def test_database_conf_holds_every_key_the_database_reads(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    fields = set(ReconstructionConfig.__dataclass_fields__)
    assert rc.MAPPING_ONLY_KEYS <= fields
    conf = fast_conf(camera_mode="per_size")
    assert set(rc.database_conf(conf)) == fields - rc.MAPPING_ONLY_KEYS
    assert rc.database_conf(fast_conf(filter_max_reproj_error=1.5, refine_loss="cauchy")) == rc.database_conf(fast_conf())
    assert rc.database_conf(fast_conf(seed=1)) != rc.database_conf(fast_conf(seed=2))  # RANSAC seed
    # import + verification never read a mapping-only key (a new key used there must leave MAPPING_ONLY_KEYS)
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    kps, sizes = rc._read_keypoints(features, names)
    pair_matches = rc._load_pair_matches(matches, pairs, {n: len(k) for n, k in kps.items()})
    log: list[str] = []
    rc._import_and_verify(tmp_path / "database.db", tmp_path, names, kps, sizes, pair_matches,
                          _MappingKeysForbidden(conf), pycolmap.CancellationToken(), None,  # type: ignore[arg-type]
                          lambda d, t, m: None, log)
    assert any("verified" in line for line in log)


def test_reused_database_gives_the_same_poses_without_verifying(tmp_path: Path,
                                                                 scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    first = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(seed=3), tmp_path / "first")
    assert first.ok and first.database_verified
    # a mapping-only change: fresh import + verification vs the first call's database
    conf = fast_conf(seed=3, abs_pose_min_num_inliers=15, refine_loss="cauchy")
    fresh = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "fresh")
    reused = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "reused",
                         database=tmp_path / "first" / "database.db")
    assert reused.ok and reused.database_verified
    pd.testing.assert_frame_equal(fresh.poses, reused.poses, check_exact=True)
    # without reading a match (only which pairs have some, and how many), the same pairs.txt and the same count
    assert (tmp_path / "reused" / "pairs.txt").read_text() == (tmp_path / "fresh" / "pairs.txt").read_text()
    assert [ln for ln in reused.log if "pairs have matches" in ln] == [ln for ln in fresh.log if "pairs have matches" in ln]
    assert not any(line.startswith("geometric verification") for line in reused.log)
    assert any("reused (first)" in line for line in reused.log)
    # the steps' seconds, in run order: import and verification, or the reuse
    assert list(fresh.steps) == ["inputs read", "database import", "geometric verification", "mapping",
                                 "final bundle adjustment", "models written"]
    assert list(reused.steps) == ["inputs read", "verified database reused", "mapping", "final bundle adjustment",
                                  "models written"]
    assert set(fresh.steps) | set(reused.steps) <= set(rc.STEPS)
    assert all(v >= 0 for v in fresh.steps.values()) and fresh.steps["mapping"] > 0
    assert (tmp_path / "first" / "database.db").is_file()  # copied, not moved
    with pytest.raises(InputError, match="does not exist"):
        reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "gone",
                    database=tmp_path / "nowhere" / "database.db")


def test_mapping_conf_leaves_out_only_the_final_adjustment() -> None:
    conf = fast_conf()
    fields = set(rc.asdict(conf))
    assert rc.REFINE_KEYS <= rc.MAPPING_ONLY_KEYS <= fields
    assert set(rc.mapping_conf(conf)) == fields - rc.REFINE_KEYS
    assert rc.mapping_conf(fast_conf(refine_loss="cauchy", refine_loss_scale=0.5)) == rc.mapping_conf(conf)
    assert rc.mapping_conf(fast_conf(filter_max_reproj_error=1.5)) != rc.mapping_conf(conf)  # a mapper key


def test_kept_mapped_models_give_the_same_poses_without_mapping(tmp_path: Path,
                                                                 scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    first = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(seed=4), tmp_path / "first",
                        keep_mapped=True)
    kept = tmp_path / "first" / rc.MAPPED_DIR
    assert first.ok and rc.mapped_problem(kept) is None
    assert (kept / rc.MAPPED_LOG).read_text().count("incremental mapping") == 1
    # a final-adjustment change: mapped afresh vs the first call's models (read from disk, then adjusted)
    conf = fast_conf(seed=4, refine_loss="cauchy", refine_loss_scale=0.7, refine_filter_max_reproj_error=1.0)
    fresh = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "fresh")
    reused = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "reused",
                         database=tmp_path / "first" / "database.db", mapped=kept)
    assert fresh.ok and reused.ok
    pd.testing.assert_frame_equal(fresh.poses, reused.poses, check_exact=True)
    assert not (tmp_path / "fresh" / rc.MAPPED_DIR).exists()  # kept only when asked
    assert list(reused.steps) == ["inputs read", "verified database reused", "mapped models reused",
                                  "final bundle adjustment", "models written"]
    assert any(line.startswith("mapping: reused (mapped)") for line in reused.log)
    assert any(line.startswith("incremental mapping: ") for line in reused.log)  # the first call's lines follow
    assert not any("refined" in line for line in first.log)  # (the first call had no final adjustment)
    assert any("refined (cauchy loss, 0.7 px)" in line for line in reused.log)
    # the kept models are those before the final adjustment: reading them again adjusts them the same way
    again = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "again", mapped=kept)
    pd.testing.assert_frame_equal(fresh.poses, again.poses, check_exact=True)


def test_damaged_mapped_models_are_named(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "first", keep_mapped=True)
    kept = tmp_path / "first" / rc.MAPPED_DIR
    images_bin = kept / "models" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:50])
    assert "models/0 cannot be read" in (rc.mapped_problem(kept) or "")
    with pytest.raises(InputError, match="mapped models to reuse cannot be read"):
        reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "second", mapped=kept)
    (kept / rc.MAPPED_LOG).unlink()
    assert "mapping.log cannot be read" in (rc.mapped_problem(kept) or "")
    assert rc.mapped_problem(tmp_path / "nowhere") is not None


def test_obs_per_match_counts_observations_over_the_verified_matches_among_a_models_images(
        tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "out")
    rec = pycolmap.Reconstruction(res.models[0])
    inliers = rc.pair_inliers(tmp_path / "out" / "database.db")
    reg = {rec.images[i].name for i in rec.reg_image_ids()}
    observations = sum(rec.images[i].num_points3D for i in rec.reg_image_ids())
    verified = sum(n for (a, b), n in inliers.items() if a < b and a in reg and b in reg)
    assert rc.obs_per_match(rec, inliers, 1) == pytest.approx(observations / verified)
    assert 0.3 < rc.obs_per_match(rec, inliers, 1) < 3  # (a sound model)
    # pairs the mapper ignores (fewer than min_num_matches inliers) are not counted; none left: inf
    assert rc.obs_per_match(rec, inliers, max(inliers.values()) + 1) == float("inf")
    assert any(line.startswith("observations per verified match (a sound model explains most of its matches): "
                               "model 0 ") for line in res.log)


def _degrade_the_first_seed(monkeypatch: pytest.MonkeyPatch, seed: int, keep: int = 3) -> None:
    """The mapper at ``seed`` returns models that keep only ``keep`` of their 3-D points (a model built on a wrong
    start explains few of its matches); other seeds map as usual."""
    run_mapper = rc._run_mapper

    def degraded(db_path, image_dir, sfm_dir, conf, token, counter, image_names=None):  # type: ignore[no-untyped-def]
        recs = run_mapper(db_path, image_dir, sfm_dir, conf, token, counter, image_names)
        if conf.seed == seed:
            for rec in recs:
                for point_id in sorted(rec.point3D_ids())[keep:]:
                    rec.delete_point3D(point_id)
        return recs

    monkeypatch.setattr(rc, "_run_mapper", degraded)


def test_a_model_that_explains_few_of_its_matches_is_mapped_again(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    _degrade_the_first_seed(monkeypatch, seed=5)
    off = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(seed=5), tmp_path / "off")
    assert not any("mapped again" in line for line in off.log)  # (0 = off: the degraded model stays)
    conf = fast_conf(seed=5, remap_min_obs_per_match=0.2)
    on = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "on")
    assert on.ok
    said = "\n".join(on.log)
    assert "observations per verified match (< reconstruction.remap_min_obs_per_match = 0.2): its component is " \
           "mapped again with other seeds" in said
    assert "  seed 6: 1 model(s), 6 images at" in said and "kept seed 6's model(s)" in said
    assert "seed 7" not in said  # (stops at the first seed whose models pass)
    assert "WARNING" not in said
    kept = pycolmap.Reconstruction(on.models[0])
    assert kept.num_points3D() > 100 and rc.obs_per_match(kept, rc.pair_inliers(tmp_path / "on" / "database.db"),
                                                            conf.min_num_matches) > 0.2
    # deterministic: the same seeds again give the same poses
    again = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "again")
    pd.testing.assert_frame_equal(on.poses, again.poses, check_exact=True)


def test_a_model_no_seed_explains_better_is_a_warning(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    _degrade_the_first_seed(monkeypatch, seed=2)
    conf = fast_conf(seed=2, remap_min_obs_per_match=50.0, remap_seeds=2)  # (a bound no model reaches)
    res = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "out")
    assert res.ok and res.n_models == 1
    said = "\n".join(res.log)
    assert "  seed 3: " in said and "  seed 4: " in said and "seed 5" not in said
    (warning,) = [line for line in res.log if line.startswith("WARNING: ")]
    assert "observations per verified match after 2 other seed(s) (kept: seed 3's, the most observations): a model " \
           "built on a wrong start explains few of its matches" in warning
    assert "kept seed 3's model(s)" in said  # (the degraded first mapping had fewer observations)


def test_pair_match_counts_agree_with_the_matches_read(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    kps, _ = rc._read_keypoints(features, names)
    asked = [*pairs, pairs[0][::-1], pairs[1], (names[0], names[0])]  # a reversed pair, a repeated one, a self-pair
    read = rc._load_pair_matches(matches, asked, {n: len(k) for n, k in kps.items()})
    counts = rc._pair_match_counts(matches, asked, set(names))
    assert list(counts) == list(read) and counts == {pair: len(m) for pair, m in read.items()}
    with pytest.raises(InputError, match="names an image not in the input list"):
        rc._pair_match_counts(matches, [(names[0], "elsewhere.png")], set(names))


def _verified_geometries(db_path: Path) -> dict[int, tuple[int, bytes, bytes, bytes, bytes]]:
    """Every two-view geometry of a database, bit for bit: config, inlier matches, F, E, H."""
    out = {}
    with pycolmap.Database.open(db_path) as db:
        for pair_id, g in zip(*db.read_two_view_geometries()):
            out[pair_id] = (int(g.config), np.asarray(g.inlier_matches).tobytes(),
                            *(np.asarray(m).tobytes() for m in (g.F, g.E, g.H)))
    return out


def test_verification_on_several_threads_writes_the_database_of_one(tmp_path: Path,
                                                                     scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    kps, sizes = rc._read_keypoints(features, names)
    pair_matches = rc._load_pair_matches(matches, pairs, {n: len(k) for n, k in kps.items()})

    def verify(seed: int, threads: int) -> dict[int, tuple[int, bytes, bytes, bytes, bytes]]:
        db = tmp_path / f"seed{seed}-threads{threads}.db"
        rc._import_and_verify(db, tmp_path, names, kps, sizes, pair_matches, fast_conf(seed=seed),
                              pycolmap.CancellationToken(), None, lambda d, t, m: None, [], threads=threads)
        return _verified_geometries(db)

    one = verify(3, 1)
    assert len(one) == len(pairs)
    # the data is seed-sensitive (1 px noise: RANSAC's samples move the estimated matrices) ...
    assert verify(4, 1) != one
    # ... yet each pair's RANSAC is seeded on its own, so neither the threads nor the order they take pairs in matter
    for threads in (2, 4):
        assert verify(3, threads) == one


def test_database_not_verified_when_nothing_to_verify(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, _ = write_inputs(tmp_path, [("", scene_a)])
    res = reconstruct(tmp_path, names, features, matches, [], fast_conf(), tmp_path / "out")
    assert not res.ok and not res.database_verified
    assert list(res.steps) == ["inputs read"]  # a failure keeps the steps it reached


@pytest.mark.parametrize("mapper", ["incremental", "global"])
def test_deterministic_runs_are_identical(tmp_path: Path, scene_a: pycolmap.Reconstruction, mapper: str) -> None:
    # 1 px keypoint noise: RANSAC and BA outcomes depend on the seed (measured: with deterministic=False runs
    # differ by ~1e-7 (incremental) and ~1e-3 (global) here), so bit-identical poses show everything is seeded
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    conf = fast_conf(seed=3, num_threads=2, mapper=mapper)
    runs = [reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / f"o{k}") for k in range(2)]
    assert runs[0].ok and runs[1].ok
    pd.testing.assert_frame_equal(runs[0].poses, runs[1].poses, check_exact=True)
    assert_poses_match(runs[0].poses, gt_poses(scene_a), tol=1e-2)


def test_two_disconnected_scenes_become_two_clusters(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                     scene_b: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "out")
    assert res.ok and res.n_models == 2 and len(res.models) == 2, res.log
    scene_of = dict(zip(res.poses["image"], res.poses["scene"], strict=True))
    assert {scene_of[n] for n in names if n.startswith("a_")} == {"cluster0"}  # 6 images: the larger one first
    assert {scene_of[n] for n in names if n.startswith("b_")} == {"cluster1"}
    for cluster, rec, prefix in (("cluster0", scene_a, "a_"), ("cluster1", scene_b, "b_")):
        assert_poses_match(res.poses[res.poses["scene"] == cluster], gt_poses(rec, prefix))
    for path in res.models:
        assert pycolmap.Reconstruction(path).num_reg_images() in (5, 6)


def test_match_graph_components_follow_the_mappers_view(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                       scene_b: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    lonely = "a_" + sorted(im.name for im in scene_a.images.values())[-1]
    keep = [p for p in pairs if lonely not in p]  # one image without any pair: in no component
    res = reconstruct(tmp_path, names, features, matches, keep, fast_conf(map_components=False), tmp_path / "out")
    db = tmp_path / "out" / "database.db"
    comps = rc.match_graph_components(db, 15)
    assert res.ok and comps == [sorted(n for n in names if n.startswith("a_") and n != lonely),  # 5 images each:
                                sorted(n for n in names if n.startswith("b_"))]  # ties go by the first name
    assert rc.match_graph_components(db, 15, min_size=6) == []
    assert rc.match_graph_components(db, 10**6) == []  # no pair has that many inliers: no link at all


def test_match_graph_components_agree_with_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The components are found by a union-find (importing scipy.sparse took 0.3-0.6 s of every run): the same
    components as scipy's csgraph on random graphs, chains joined in any order included."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(3)
    for trial in range(40):
        n = int(rng.integers(2, 60))
        names = [f"img{k:03d}.png" for k in rng.permutation(n)]
        pairs = {}
        for _ in range(int(rng.integers(0, 2 * n))):
            a, b = rng.choice(names, 2, replace=False)
            pairs[(a, b)] = pairs[(b, a)] = int(rng.integers(0, 40))
        monkeypatch.setattr(rc, "pair_inliers", lambda db, pairs=pairs: pairs)
        links = [(a, b) for (a, b), m in pairs.items() if a < b and m >= 15]
        linked = sorted({x for link in links for x in link})
        index = {x: i for i, x in enumerate(linked)}
        graph = coo_matrix((np.ones(len(links)), ([index[a] for a, _ in links], [index[b] for _, b in links])),
                           shape=(len(linked),) * 2)
        labels = connected_components(graph, directed=False)[1] if linked else []
        groups: dict[int, list[str]] = {}
        for name, label in zip(linked, labels, strict=True):
            groups.setdefault(int(label), []).append(name)
        for min_size in (1, 3):
            want = sorted((g for g in groups.values() if len(g) >= min_size), key=lambda g: (-len(g), g[0]))
            assert rc.match_graph_components(Path("unused.db"), 15, min_size) == want, (trial, min_size)


def test_components_mapped_in_parallel_give_the_poses_of_one_call(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                                  scene_b: pycolmap.Reconstruction) -> None:
    # 1 px noise: outcomes depend on every random draw, so equal poses show that each component is seeded alike
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)], noise_px=1.0)
    conf = fast_conf(seed=5)
    runs = {jobs: reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / f"j{jobs}", map_jobs=jobs)
            for jobs in (1, 2, 3)}
    again = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "again", map_jobs=2)
    whole = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(seed=5, map_components=False),
                        tmp_path / "whole", map_jobs=2)
    for res in (*runs.values(), again, whole):
        assert res.ok and res.n_models == 2, res.log
    for jobs in (2, 3):  # never more threads than components
        assert "2 components of ≥ 3 images in the match graph (6, 5 images), mapped side by side, 2 at a time" \
            in runs[jobs].log
    assert not any("components" in line for line in runs[1].log + whole.log)  # one job: the whole-database call
    pd.testing.assert_frame_equal(runs[1].poses, runs[2].poses, check_exact=True)
    pd.testing.assert_frame_equal(runs[2].poses, runs[3].poses, check_exact=True)
    pd.testing.assert_frame_equal(runs[2].poses, again.poses, check_exact=True)
    pd.testing.assert_frame_equal(runs[2].poses, whole.poses, check_exact=True)
    for cluster, rec, prefix in (("cluster0", scene_a, "a_"), ("cluster1", scene_b, "b_")):
        assert_poses_match(runs[2].poses[runs[2].poses["scene"] == cluster], gt_poses(rec, prefix), tol=1e-2)
    assert not (tmp_path / "j2" / "sfm").exists()  # the per-component databases went with the mapper's folder


def test_model_cap_holds_over_all_components(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                             scene_b: pycolmap.Reconstruction,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    """Side by side or not, the cap keeps the same models (the components' N largest differed from the first N of
    the whole-database call: --jobs decided which scenes were reconstructed, ETs 45.63 against 82.35)."""
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(max_num_models=1), tmp_path / "out",
                      map_jobs=2)
    assert res.ok and res.n_models == 1, res.log
    assert not [line for line in res.log if "mapped side by side" in line]  # (more components than models)
    one = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(max_num_models=1), tmp_path / "one")
    pd.testing.assert_frame_equal(res.poses, one.poses)
    # components no more than the cap, but more models than it over them (a component mapped as two models)
    real = rc._run_mapper

    def twice(*args: object, image_names: list[str] | None = None, **kwargs: object) -> object:
        recs = real(*args, image_names=image_names, **kwargs)
        return recs * 2 if image_names else recs

    monkeypatch.setattr(rc, "_run_mapper", twice)
    split = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(max_num_models=3), tmp_path / "split",
                        map_jobs=2)
    assert split.ok and [line for line in split.log if "mapped again in one call" in line], split.log
    pd.testing.assert_frame_equal(split.poses, reconstruct(tmp_path, names, features, matches, pairs,
                                                           fast_conf(max_num_models=3), tmp_path / "whole").poses)


def test_a_failing_component_fails_the_reconstruction(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                      scene_b: pycolmap.Reconstruction,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    real = rc._run_mapper

    def flaky(*args: object, image_names: list[str] | None = None, **kwargs: object) -> object:
        if image_names and image_names[0].startswith("b_"):
            raise RuntimeError("boom in b")
        return real(*args, image_names=image_names, **kwargs)

    monkeypatch.setattr(rc, "_run_mapper", flaky)
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "out", map_jobs=2)
    assert not res.ok and (res.poses["scene"] == "outliers").all()
    assert res.log[-1].startswith("FAILED") and "boom in b" in res.log[-1]


@pytest.mark.parametrize("map_jobs", [1, 2])
def test_a_group_of_images_no_model_holds_is_a_warning(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                        scene_b: pycolmap.Reconstruction,
                                                        monkeypatch: pytest.MonkeyPatch, map_jobs: int) -> None:
    """One of two scenes gave no model (COLMAP: "Failed to create any sparse model"): its images went to outliers,
    the run said done without a word (the log named one component and one model)."""
    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    real = rc._run_mapper

    def lose_b(*args: object, image_names: list[str] | None = None, **kwargs: object) -> object:
        recs = real(*args, image_names=image_names, **kwargs)
        return [r for r in recs if not any(r.images[i].name.startswith("b_") for i in r.reg_image_ids())]

    monkeypatch.setattr(rc, "_run_mapper", lose_b)
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / f"out{map_jobs}",
                      map_jobs=map_jobs)
    assert res.ok and res.n_models == 1, res.log
    lost = sorted(n for n in names if n.startswith("b_"))
    assert (res.poses.set_index("image").loc[lost, "scene"] == "outliers").all()
    said = [line for line in res.log if line.startswith("WARNING: ")]
    assert said == [f"WARNING: no model holds any image of a group of {len(lost)} images matched together "
                    f"({', '.join(lost[:3])}, … ({len(lost) - 3} more)): the mapper could not start or grow a model "
                    "there, so they count as outliers"], res.log
    monkeypatch.setattr(rc, "_run_mapper", real)
    both = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / f"both{map_jobs}",
                       map_jobs=map_jobs)
    assert both.ok and both.n_models == 2 and not [line for line in both.log if line.startswith("WARNING")]


def test_the_log_counts_as_verified_the_pairs_with_inliers(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                            scene_b: pycolmap.Reconstruction) -> None:
    """COLMAP's num_verified_image_pairs also counts pairs it found degenerate (no inliers): the log said "75 of 75
    matched pairs verified" where the match graph had 63."""
    import h5py

    names, features, matches, pairs = write_inputs(tmp_path, [("a_", scene_a), ("b_", scene_b)])
    rng = np.random.default_rng(1)
    cross = [(a, b) for a, b in pairs if a[0] != b[0]][:4]  # random matches across the scenes: verification fails
    with h5py.File(matches, "a") as f:
        for a, b in cross:
            g = f.create_group(f"{a}/{b}")
            g["matches"] = np.stack([rng.permutation(40), rng.permutation(40)], axis=1).astype(np.int32)
            g["scores"] = np.ones(40, np.float32)
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "out")
    inliers = rc.pair_inliers(tmp_path / "out" / "database.db")
    assert not {(a, b) for a, b in cross} & set(inliers)
    n_matched = sum(1 for a, b in pairs if a[0] == b[0]) + len(cross)
    [line] = [ln for ln in res.log if "matched pairs verified" in ln]
    assert line.startswith(f"{len(inliers) // 2} of {n_matched} matched pairs verified"), line


def test_unmatched_image_is_an_outlier(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    lonely = names[-1]
    keep = [p for p in pairs if lonely not in p]
    res = reconstruct(tmp_path, names, features, matches, keep, fast_conf(), tmp_path / "out")
    assert res.ok, res.log
    row = res.poses.set_index("image").loc[lonely]
    assert row["scene"] == "outliers" and row[POSE_COLS].isna().all()
    assert (res.poses["scene"] == "cluster0").sum() == len(names) - 1


@pytest.mark.parametrize("case", ["no_matches", "no_model", "pycolmap_error"])
def test_failure_gives_all_outliers_and_a_reason(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                 monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    reason = {"no_matches": "no pair has any match", "no_model": "no model", "pycolmap_error": "boom"}[case]
    if case == "no_matches":
        pairs = [(a, b) for a, b in pairs if False]
    elif case == "no_model":
        pairs = pairs[:1]  # one pair → a 2-image model, below min_model_size=3
    else:
        def boom(*args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")
        monkeypatch.setattr(rc, "_run_mapper", boom)
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "out")
    assert not res.ok and res.n_models == 0 and res.models == []
    assert list(res.poses["image"]) == names
    assert (res.poses["scene"] == "outliers").all() and res.poses[POSE_COLS].isna().all().all()
    assert res.log[-1].startswith("FAILED") and reason in res.log[-1]


def test_mapping_time_limit_is_reported(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A mapping that reaches ``max_runtime_s`` keeps its models and says so in the log (slow mapper simulated)."""
    import time as _time

    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    real = rc._run_mapper

    def slow(*args: object, **kwargs: object) -> object:
        _time.sleep(1.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(rc, "_run_mapper", slow)
    conf = fast_conf()
    conf.max_runtime_s = 1
    res = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "out")
    assert res.ok and res.n_models >= 1
    assert any(line.startswith("WARNING: mapping stopped at reconstruction.max_runtime_s = 1 s") for line in res.log)
    conf.max_runtime_s = -1
    res = reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / "out2")
    assert not any("max_runtime_s" in line for line in res.log)


def _centre_error(rec: pycolmap.Reconstruction, gt: pycolmap.Reconstruction) -> float:
    """Largest camera-centre error of ``rec`` against ``gt`` after one similarity, relative to the scene's spread."""
    ids = sorted(gt.reg_image_ids())
    pred = np.array([rec.images[i].projection_center() for i in ids])
    true = np.array([gt.images[i].projection_center() for i in ids])
    sim = fit_similarity(pred, true)
    spread = np.linalg.norm(true - true.mean(0), axis=1).max()
    return float(np.linalg.norm(sim(pred) - true, axis=1).max() / spread)


def test_final_robust_adjustment_resists_wrong_observations() -> None:
    """5% of observations moved by 35 px: a squared-loss adjustment follows them, Cauchy mostly does not, and the
    filter removes them so that the second adjustment recovers the exact poses."""
    gt = synth_scene(1)

    def corrupted() -> tuple[pycolmap.Reconstruction, int]:
        rec, rng, n = synth_scene(1), np.random.default_rng(0), 0
        for image_id in rec.reg_image_ids():
            for p in rec.images[image_id].points2D:
                if p.has_point3D() and rng.random() < 0.05:
                    p.xy = p.xy + np.array([25.0, -25.0])
                    n += 1
        rec.update_point_3d_errors()
        return rec, n

    (plain, n_bad), (robust, _), (filtered, _), (untouched, _) = (corrupted() for _ in range(4))
    log: list[str] = []
    rc.refine_models([plain], fast_conf(refine_loss="trivial"), log)
    rc.refine_models([robust], fast_conf(refine_loss="cauchy"), log)
    rc.refine_models([filtered], fast_conf(refine_loss="cauchy", refine_filter_max_reproj_error=2.0), log)
    # refine_loss = "none" switches the whole final step off, its filter included
    rc.refine_models([untouched], fast_conf(refine_filter_max_reproj_error=2.0), log)
    assert len(log) == 3 and all(line.startswith("model 0 refined") for line in log)
    removed = int(log[2].rsplit(", ", 1)[1].split()[0])
    assert n_bad <= removed < 2 * n_bad  # the moved observations go, few good ones with them
    e_plain, e_robust, e_filtered = (_centre_error(r, gt) for r in (plain, robust, filtered))
    assert e_robust < e_plain / 3
    assert e_filtered < 1e-6 < e_plain
    assert filtered.compute_mean_reprojection_error() < 1e-6 < plain.compute_mean_reprojection_error()
    assert _centre_error(untouched, gt) < 1e-9


def _spy_solver_option(monkeypatch: pytest.MonkeyPatch, option: str) -> list[object]:
    """The Ceres solver ``option`` of every ``pycolmap.bundle_adjustment`` call from now on, in call order."""
    seen: list[object] = []
    real = pycolmap.bundle_adjustment

    def spy(rec: pycolmap.Reconstruction, opts: pycolmap.BundleAdjustmentOptions, *args: object) -> None:
        seen.append(getattr(opts.ceres.solver_options, option))
        real(rec, opts, *args)

    monkeypatch.setattr(pycolmap, "bundle_adjustment", spy)
    return seen


def test_final_adjustment_iterations_come_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refine_max_iterations`` caps Ceres in every final adjustment (the default, 50, is COLMAP's for its global
    adjustments); from moved 3-D points, one iteration leaves the model further from the truth than 50."""
    seen = _spy_solver_option(monkeypatch, "max_num_iterations")
    errors = {}
    for n in (1, 50):
        rec, rng = synth_scene(1), np.random.default_rng(1)
        for point in rec.points3D.values():
            point.xyz = point.xyz + rng.normal(0, 0.05, 3)
        rec.update_point_3d_errors()
        rc.refine_models([rec], fast_conf(refine_loss="cauchy", refine_max_iterations=n), [])
        errors[n] = rec.compute_mean_reprojection_error()
    assert seen == [1, 50]
    assert ReconstructionConfig().refine_max_iterations == 50
    assert errors[50] < errors[1]


def test_final_adjustment_function_tolerance_comes_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refine_function_tolerance`` reaches Ceres (0, COLMAP's choice, never stops on the cost); a tolerance stops
    the adjustment earlier, close to where the full run ends."""
    seen = _spy_solver_option(monkeypatch, "function_tolerance")
    models = {}
    for tol in (0.0, 1e-7):
        models[tol] = _noisy_models(1)
        rc.refine_models(models[tol], fast_conf(refine_loss="cauchy", refine_filter_max_reproj_error=1.0,
                                                refine_function_tolerance=tol), [])
    assert seen == [0.0, 0.0, 1e-7, 1e-7]  # the adjustment, then again after the filter
    full, early = models[0.0][0], models[1e-7][0]
    for image_id in full.reg_image_ids():
        np.testing.assert_allclose(early.images[image_id].projection_center(),
                                   full.images[image_id].projection_center(), atol=1e-4)


def _noisy_models(n: int) -> list[pycolmap.Reconstruction]:
    """``n`` exact scenes with their 3-D points moved and a few observations shifted: work for the adjustment."""
    recs = []
    for seed in range(1, n + 1):
        rec, rng = synth_scene(seed), np.random.default_rng(seed)
        for point in rec.points3D.values():
            point.xyz = point.xyz + rng.normal(0, 0.05, 3)
        for image_id in rec.reg_image_ids():
            for p in rec.images[image_id].points2D:
                if p.has_point3D() and rng.random() < 0.03:
                    p.xy = p.xy + np.array([20.0, -20.0])
        rec.update_point_3d_errors()
        recs.append(rec)
    return recs


def _assert_same_models(a_models: list[pycolmap.Reconstruction], b_models: list[pycolmap.Reconstruction]) -> None:
    for a, b in zip(a_models, b_models, strict=True):
        assert a.reg_image_ids() == b.reg_image_ids() and a.num_points3D() == b.num_points3D()
        for image_id in a.reg_image_ids():
            np.testing.assert_array_equal(a.images[image_id].cam_from_world().matrix(),
                                          b.images[image_id].cam_from_world().matrix())
        for point_id, point in a.points3D.items():
            np.testing.assert_array_equal(point.xyz, b.points3D[point_id].xyz)


def test_final_adjustment_is_the_bundle_adjusters() -> None:
    """``pycolmap.bundle_adjustment`` (which releases the GIL) adjusts like ``BundleAdjuster.solve`` with every
    registered image and the gauge fixed by two cameras (which holds it): the same models bit for bit."""
    conf = fast_conf(refine_loss="cauchy", refine_filter_max_reproj_error=0)
    ours, theirs = _noisy_models(2), _noisy_models(2)
    rc.refine_models(ours, conf, [])
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    opts.ceres.loss_function_scale = conf.refine_loss_scale
    opts.ceres.solver_options.num_threads = 1
    opts.ceres.solver_options.max_num_iterations = conf.refine_max_iterations
    for rec in theirs:
        ba_conf = pycolmap.BundleAdjustmentConfig()
        for image_id in rec.reg_image_ids():
            ba_conf.add_image(image_id)
        ba_conf.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        pycolmap.create_default_bundle_adjuster(opts, ba_conf, rec).solve()
    _assert_same_models(ours, theirs)


@pytest.mark.parametrize("jobs", [2, 3])
def test_models_adjusted_side_by_side_equal_one_after_the_other(jobs: int) -> None:
    """With ``jobs > 1`` the models are adjusted in threads: the same poses, points and log lines, bit for bit, and
    COLMAP's log level is put back (``pycolmap.bundle_adjustment`` resets it)."""
    conf = fast_conf(refine_loss="cauchy", refine_filter_max_reproj_error=2.0)
    one, side = _noisy_models(3), _noisy_models(3)
    log_one: list[str] = []
    log_side: list[str] = []
    rc.refine_models(one, conf, log_one, jobs=1)
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        rc.refine_models(side, conf, log_side, jobs=jobs)
        assert pycolmap.logging.minloglevel == 2  # COLMAP's OptionManager had set it to 0
    finally:
        pycolmap.logging.minloglevel = level
    assert log_side[0] == f"3 models adjusted side by side, {jobs} at a time"
    assert log_side[1:] == log_one and all(line.startswith("model ") for line in log_one)
    _assert_same_models(one, side)
    assert all(rec.compute_mean_reprojection_error() < 1.0 for rec in one)


def test_side_by_side_adjustment_stops_when_cancelled() -> None:
    recs = _noisy_models(2)
    with pytest.raises(Cancelled):
        rc.refine_models(recs, fast_conf(refine_loss="cauchy"), [], should_cancel=lambda: True, jobs=2)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_cancelled_token_stops_the_adjustment_under_way(jobs: int) -> None:
    """pycolmap's answer to the token propagates: a cancelled run, not a model whose adjustment "failed"."""
    token = pycolmap.CancellationToken()
    token.cancel()
    log: list[str] = []
    with pytest.raises(InterruptedError):
        rc.refine_models(_noisy_models(2), fast_conf(refine_loss="cauchy"), log, jobs=jobs, token=token)
    assert not any("failed" in line for line in log)


def test_cancellation_during_the_final_adjustment(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    stage: list[str] = []
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        reconstruct(tmp_path, names, features, matches, pairs, fast_conf(refine_loss="cauchy"), out,
                    progress=lambda done, total, message: stage.append(message),
                    should_cancel=lambda: "final bundle adjustment" in stage)
    assert stage[-1] == "final bundle adjustment"
    assert not (out / "database.db").exists() and not (out / "models").exists()


def test_final_adjustment_in_reconstruct_is_logged_and_deterministic(tmp_path: Path,
                                                                    scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)], noise_px=1.0)
    conf = fast_conf(seed=3, refine_loss="cauchy", refine_filter_max_reproj_error=3.0)
    runs = [reconstruct(tmp_path, names, features, matches, pairs, conf, tmp_path / f"o{k}") for k in range(2)]
    assert runs[0].ok and any(line.startswith("model 0 refined (cauchy loss, 1 px)") for line in runs[0].log)
    assert any(line.startswith("final bundle adjustment:") for line in runs[0].log)
    pd.testing.assert_frame_equal(runs[0].poses, runs[1].poses, check_exact=True)
    assert_poses_match(runs[0].poses, gt_poses(scene_a), tol=1e-2)


@pytest.mark.parametrize("components", [1, 2])  # 2: two scenes mapped side by side, both stopped
def test_cancellation_during_mapping_raises_and_cleans_up(tmp_path: Path, scene_a: pycolmap.Reconstruction,
                                                          scene_b: pycolmap.Reconstruction, components: int) -> None:
    scenes = [("a_", scene_a), ("b_", scene_b)][:components]
    names, features, matches, pairs = write_inputs(tmp_path, scenes)
    registered: list[int] = []

    def progress(done: int, total: int, message: str) -> None:
        if message.startswith("mapping:"):
            registered.append(done)

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), out, progress=progress,
                    should_cancel=lambda: len(registered) > 0, map_jobs=components)
    assert registered and registered[-1] < len(names)  # stopped inside the mapper, not after it
    assert not (out / "database.db").exists() and not (out / "models").exists() and not (out / "sfm").exists()


def test_cancel_before_start(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    with pytest.raises(Cancelled):
        reconstruct(tmp_path, names, features, matches, pairs, fast_conf(), tmp_path / "o", should_cancel=lambda: True)


def test_global_mapper_registers_all_images(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    names, features, matches, pairs = write_inputs(tmp_path, [("", scene_a)])
    res = reconstruct(tmp_path, names, features, matches, pairs, fast_conf(mapper="global"), tmp_path / "out")
    assert res.ok and res.n_models == 1, res.log
    assert (res.poses["scene"] == "cluster0").all()
    assert_poses_match(res.poses, gt_poses(scene_a), tol=1e-2)


def test_image_in_two_models_is_kept_once(tmp_path: Path, scene_a: pycolmap.Reconstruction) -> None:
    # model 0 and model 1 both register every image of scene_a; in model 0 image X lost 10 observations, so X goes
    # to model 1 (more 3D points) and every other image ties on points and size → lower index (model 0)
    model0, model1 = pycolmap.Reconstruction(scene_a), pycolmap.Reconstruction(scene_a)
    x_id = sorted(model0.reg_image_ids())[2]
    x = model0.images[x_id].name
    for idx in [k for k, p in enumerate(model0.images[x_id].points2D) if p.has_point3D()][:10]:
        model0.delete_observation(x_id, idx)
    names = sorted(im.name for im in scene_a.images.values()) + ["lonely.png"]
    log: list[str] = []
    poses, paths = rc._collect([model0, model1], names, "d", tmp_path / "models", log)
    assert list(poses["image"]) == names and poses["image"].is_unique
    scene = dict(zip(poses["image"], poses["scene"], strict=True))
    assert scene.pop(x) == "cluster1" and scene.pop("lonely.png") == "outliers"
    assert set(scene.values()) == {"cluster0"}
    assert paths == [tmp_path / "models" / "0", tmp_path / "models" / "1"]
    assert sum("registered in models [0, 1]" in line for line in log) == len(names) - 1
    assert any(line.startswith(f"{x} registered in models [0, 1]; kept in model 1") for line in log)
    assert_poses_match(poses.iloc[:-1], gt_poses(scene_a))
