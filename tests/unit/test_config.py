"""Typed configs, variants, overrides and stable hashing."""

from __future__ import annotations

import pytest

from imc_core.config import (
    PipelineConfig,
    bare_variant_note,
    dump_config,
    list_variants,
    load_config,
    load_variant,
    parse_overrides,
    resolve_config,
    stable_hash,
)
from imc_core.errors import ConfigError


def test_every_variant_loads_and_is_valid() -> None:
    names = list_variants()
    for required in ("default", "colmap_sift", "aliked_lightglue", "aliked_n16rot_lightglue", "disk_lightglue",
                     "sift_nn"):
        assert required in names
    for name in names:
        v = load_variant(name)
        assert v.description, name
        v.config()


def test_extends_merges_parent_overrides() -> None:
    cfg = load_variant("aliked_n16rot_lightglue").config()
    assert cfg.features.model == "aliked-n16rot"
    assert cfg.features.method == "aliked"  # from the parent
    assert cfg.matching.method == "lightglue"


def test_variants_that_extend_each_other_in_a_cycle_are_an_error(tmp_path) -> None:
    """It was a RecursionError traceback."""
    (tmp_path / "a.toml").write_text(f'extends = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'extends = "{tmp_path / "a.toml"}"\n')
    with pytest.raises(ConfigError, match="variants extend each other in a cycle: .*a.toml → .*b.toml → .*a.toml"):
        load_variant(str(tmp_path / "a.toml"))


def test_a_variant_file_that_cannot_be_read_or_extends_nonsense_names_itself(tmp_path) -> None:
    """A folder or a binary file given as --variant was a traceback (and `run --json` printed nothing); a bad
    `extends` named no file."""
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "bin.toml").write_bytes(b"\xe1\xff\x00 not text")
    for name in ("dir.toml", "bin.toml"):
        with pytest.raises(ConfigError, match=rf"{tmp_path / name}: cannot read variant file: "):
            load_variant(str(tmp_path / name))
    (tmp_path / "five.toml").write_text("extends = 5\n")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'five.toml'}: extends must name a variant .* got 5"):
        load_variant(str(tmp_path / "five.toml"))
    (tmp_path / "gone.toml").write_text('extends = "nope"\n')
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'gone.toml'}: extends unknown variant 'nope'; available: "):
        load_variant(str(tmp_path / "gone.toml"))
    (tmp_path / "mine.toml").write_text('extends = "default"\n[features]\nmax_keypoints = 500\n')
    (tmp_path / "bare.toml").write_text("[features]\nmax_keypoints = 500\n")
    assert load_variant(str(tmp_path / "mine.toml")).extends == "default"
    assert load_variant(str(tmp_path / "bare.toml")).extends is None and load_variant("default").extends
    assert bare_variant_note(str(tmp_path / "bare.toml")) == (
        f"the variant file {tmp_path / 'bare.toml'} extends no variant, so it starts from the built-in defaults "
        "(features.method = aliked, matching.method = lightglue), not from the 'default' variant; add extends = "
        '"default" to change only what the file sets')
    assert bare_variant_note(str(tmp_path / "mine.toml")) is None and bare_variant_note("colmap_sift") is None


def test_booleans_take_1_and_0_as_the_cli_gives_them() -> None:
    """`--set key=1` parses as a TOML integer: it was refused while "yes" and "True" were taken."""
    assert resolve_config("default", ["reconstruction.deterministic=0"]).reconstruction.deterministic is False
    assert resolve_config("default", ["reconstruction.deterministic=1"]).reconstruction.deterministic is True
    with pytest.raises(ConfigError, match="must be true/false, got 2"):
        resolve_config("default", ["reconstruction.deterministic=2"])


def test_overrides_are_typed() -> None:
    cfg = resolve_config("aliked_lightglue", ["features.max_keypoints=1024", "matching.min_matches=30",
                                              "reconstruction.deterministic=false", "matching.filter_threshold=0.2"])
    assert cfg.features.max_keypoints == 1024 and isinstance(cfg.features.max_keypoints, int)
    assert cfg.matching.min_matches == 30
    assert cfg.reconstruction.deterministic is False
    assert cfg.matching.filter_threshold == pytest.approx(0.2)


def test_unquoted_string_override() -> None:
    assert parse_overrides(["reconstruction.mapper=global"]) == {"reconstruction": {"mapper": "global"}}


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("features.no_such_key=1", "features.no_such_key"),
        ("nosection.key=1", "nosection"),
        ("features.max_keypoints=many", "integer"),
        ("features.max_keypoints", "section.key=value"),
        ("reconstruction.deterministic=maybe", "true/false"),
        # every integer reaches a C library as a 32-bit int (this seed made COLMAP's verification fail)
        ("reconstruction.seed=2147483648", "seed = 2147483648 does not fit a 32-bit integer \\(at most 2147483647"),
        # (not "between -2147483648 and 2147483647": a seed is refused below 0 one value later)
        ("reconstruction.seed=-2147483649", "seed = -2147483649 does not fit a 32-bit integer \\(at least"),
        ("reconstruction.seed=-1", "reconstruction.seed must be ≥ 0, got -1"),
        ("features.max_keypoints=inf", "integer"),
        # nan passes every range check and inf most: COLMAP's matcher then failed mid-run on a Check()
        ("matching.max_distance=nan", "matching.max_distance must be a finite number, got nan"),
        ("reconstruction.focal_prior=inf", "must be a finite number"),
        ("reconstruction.refine_filter_max_reproj_error=-inf", "must be a finite number"),
        ("matching.max_distance=-0.1", "matching.max_distance must be > 0"),
        ("matching.filter_threshold=1.5", "matching.filter_threshold must be in \\[0, 1\\]"),
        ("features.detection_threshold=-1", "features.detection_threshold must be ≥ 0"),
        # a list: what it holds and how to write it ("must be a number, got 'abc'" named no list)
        ("fusion.weights=abc", "fusion.weights must be a list of numbers \\(on the command line: a,b,c\\)"),
        ("fusion.weights=1,x", "must be a list of numbers \\(on the command line: a,b,c\\), got \\['1', 'x'\\]"),
    ],
)
def test_bad_overrides_are_clear_errors(item: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        resolve_config("default", [item])


def test_a_number_given_to_a_list_is_a_list_of_one() -> None:
    assert resolve_config("default", ["fusion.weights=1.0"]).fusion.weights == [1.0]
    assert resolve_config("default", ["fusion.weights=1.0,0.5"]).fusion.weights == [1.0, 0.5]


def test_the_largest_32_bit_integer_is_accepted() -> None:
    assert resolve_config("default", ["reconstruction.seed=2147483647"]).reconstruction.seed == 2**31 - 1


def test_unknown_variant_lists_available() -> None:
    with pytest.raises(ConfigError, match="colmap_sift"):
        load_variant("nope")


def test_hash_is_stable_and_sensitive() -> None:
    a = resolve_config("default")
    b = resolve_config("default")
    assert a.hash() == b.hash()
    c = resolve_config("default", ["reconstruction.min_model_size=4"])
    assert c.hash() != a.hash()
    assert c.section_hash("features") == a.section_hash("features")
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})


def test_dump_and_load_round_trip(tmp_path) -> None:
    cfg = resolve_config("aliked_lightglue", ["features.max_keypoints=512"])
    p = tmp_path / "config.toml"
    p.write_text(dump_config(cfg, {"variant": "aliked_lightglue"}))
    back = load_config(p)
    assert back.to_dict() == cfg.to_dict()
    assert back.hash() == cfg.hash()


def test_from_dict_rejects_unknown_section() -> None:
    with pytest.raises(ConfigError, match="unknown config section"):
        PipelineConfig.from_dict({"feature": {}})


def test_unknown_key_suggests_the_close_one_and_lists_its_section() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['features.max_keypoint'\] \(did you mean "
                                          r"features.max_keypoints\?\); \[features\] has: .*max_keypoints"):
        resolve_config("default", ["features.max_keypoint=5"])
    with pytest.raises(ConfigError) as err:
        resolve_config("default", ["features.zzz=5"])
    assert "did you mean" not in str(err.value)


def test_unused_settings_name_what_no_stage_reads() -> None:
    from imc_core.config import unused_settings

    for name in list_variants():
        assert unused_settings(resolve_config(name)) == [], name
    cfg = resolve_config("default", ["fusion.pca_dim=7", "clustering.threshold=0.3", "pairs.min_pairs_per_image=2",
                                     "matching.fp16=true", "matching.ratio=0.7"])
    assert [w.split()[0] for w in unused_settings(cfg)] == [
        "fusion.pca_dim", "clustering.threshold", "pairs.min_pairs_per_image", "matching.fp16"]
    lg = resolve_config("aliked_lightglue", ["matching.ratio=0.7", "matching.colmap_threads=-1"])
    assert [w.split()[0] for w in unused_settings(lg)] == ["matching.ratio", "matching.colmap_threads"]
    # extractor-only keys, incremental-only keys under the global mapper, the final adjustment's when it is off
    sift = resolve_config("default", ["features.root_sift=false", "features.detection_threshold=0.5",
                                      "features.device=cpu", "features.sift_dsp=true"])
    assert [w.split()[0] for w in unused_settings(sift)] == [
        "features.detection_threshold", "features.root_sift", "features.device"]
    glob = resolve_config("global_mapper", ["reconstruction.init_min_num_inliers=50", "reconstruction.min_model_size=4"])
    assert unused_settings(glob) == ["reconstruction.init_min_num_inliers not read by reconstruction.mapper = global"]
    plain = resolve_config("sift_nn", ["reconstruction.refine_loss=none", "reconstruction.refine_loss_scale=2"])
    assert [w.split()[0] for w in unused_settings(plain)] == ["reconstruction.refine_loss_scale"]
    # against the variant run: what its own file set is not the researcher's doing (the default's incremental keys
    # under mapper=global drew seven warnings); a key the researcher set still is
    assert len(unused_settings(resolve_config("default", ["reconstruction.mapper=global"]))) >= 5
    assert unused_settings(resolve_config("default", ["reconstruction.mapper=global"]), resolve_config("default")) == []
    touched = resolve_config("default", ["reconstruction.mapper=global", "reconstruction.ba_global_images_ratio=2"])
    assert [w.split()[0] for w in unused_settings(touched, resolve_config("default"))] == [
        "reconstruction.ba_global_images_ratio"]


@pytest.mark.parametrize("key", ["features.device", "matching.device", "global_descriptors.device"])
def test_device_names_are_checked_with_the_config(key: str) -> None:
    """A typo fails at once, not after features were extracted; CUDA itself is only needed when a stage runs
    (a config may be written on a CPU machine for a GPU host)."""
    with pytest.raises(ConfigError, match=rf"{key} must be one of auto, cuda, cpu or cuda:N, got 'gpu'"):
        resolve_config("default", [f"{key}=gpu"])
    for ok in ("cuda:1", "CPU", "auto"):
        resolve_config("default", [f"{key}={ok}"])


@pytest.mark.parametrize(("variant", "overrides", "expected"), [
    ("default", [], False),
    ("colmap_sift", [], False),
    ("sift_nn", [], True),  # the nn matcher runs on torch
    ("aliked_lightglue", [], True),
    ("disk_lightglue", [], True),
    ("default", ["matching.method=nn"], True),
    ("default", ['global_descriptors.models=["facebook/dinov2-base"]'], True),
])
def test_uses_torch_names_the_configs_that_need_it(variant: str, overrides: list[str], expected: bool) -> None:
    assert resolve_config(variant, overrides).uses_torch() is expected


def test_a_config_edited_in_place_is_checked_before_a_run(tmp_path) -> None:
    """A notebook's `cfg.reconstruction.mapper = "foo"` skipped every check: the run said done and wrote a
    config.toml that load_config refused; a negative keypoint cap failed inside COLMAP after a run folder was made."""
    from imc_core.pipeline import run_pipeline

    cfg = resolve_config()
    cfg.reconstruction.mapper = "foo"
    with pytest.raises(ConfigError, match="reconstruction.mapper must be one of"):
        cfg.checked()
    runs = tmp_path / "runs"
    with pytest.raises(ConfigError, match="reconstruction.mapper must be one of"):
        run_pipeline(tmp_path / "no data", config=cfg, out=runs / "x")
    assert not runs.exists()
    cfg = resolve_config()
    cfg.features.max_keypoints = "2048"  # a string set in place: typed again, so the hash is the int's
    assert cfg.checked().features.max_keypoints == 2048
    assert cfg.checked().hash() == resolve_config(overrides=["features.max_keypoints=2048"]).hash()


def test_overrides_and_variant_given_oddly_from_python() -> None:
    assert resolve_config("default", "features.max_keypoints=2048").features.max_keypoints == 2048
    with pytest.raises(ConfigError, match="overrides must be a list"):
        resolve_config("default", {"features.max_keypoints": 2048})
    with pytest.raises(ConfigError, match="a variant name is needed"):
        resolve_config(None)
