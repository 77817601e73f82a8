"""Compute device selection: CUDA when present, CPU always, overridable with ``IMC_DEVICE``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

ENV_VAR = "IMC_DEVICE"
CHOICES = ("auto", "cuda", "cpu")


def check_device_name(value: str, key: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` names a device :func:`resolve_device` understands (``auto``,
    ``cpu``, ``cuda``, ``cuda:N``). Whether CUDA exists is checked when a stage runs: a config may be written on a
    CPU machine for a GPU host."""
    choice = (value or "").strip().lower()
    if choice in CHOICES or (choice.startswith("cuda:") and choice[5:].isdigit()):
        return
    raise ConfigError(f"{key} must be one of {', '.join(CHOICES)} or cuda:N, got {value!r}")


def resolve_device(pref: str = "auto") -> torch.device:
    """Turn a device preference into a ``torch.device``.

    Args:
        pref: ``"auto"`` (``$IMC_DEVICE`` when set, else CUDA when available, else CPU), ``"cuda"``,
            ``"cuda:N"`` or ``"cpu"``.

    Returns:
        The device to run on.

    Raises:
        ConfigError: unknown preference, or CUDA requested (by ``pref`` or ``$IMC_DEVICE``) but not available.
    """
    import torch

    source = "device"
    choice = (pref or "auto").strip().lower()
    if choice == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env and env != "auto":
            choice, source = env, f"${ENV_VAR}"
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{source}={choice!r} but CUDA is not available here (use 'cpu' or 'auto')")
        dev = torch.device(choice)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{source}={choice!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev
    raise ConfigError(f"{source} must be one of {', '.join(CHOICES)} (or cuda:N), got {choice!r}")


def colmap_uses_gpu(pref: str = "auto") -> bool:
    """Whether a COLMAP step (SIFT matching) runs on the GPU for device preference ``pref``.

    Only when the device is CUDA *and* the installed pycolmap was built with CUDA: PyPI's pycolmap wheels are
    CPU-only, and asking them for the GPU fails with ``Cannot use GPU feature matching without CUDA`` (seen on an
    H200 machine with torch's CUDA build beside the PyPI pycolmap). With such a pycolmap, ``auto`` and ``cpu`` are
    answered without importing torch (over a second); an explicit ``cuda`` (here or in ``$IMC_DEVICE``) is still
    checked, so that a missing GPU is an error as for the other stages.

    Raises:
        ConfigError: as :func:`resolve_device`.
    """
    import pycolmap

    has_cuda = bool(getattr(pycolmap, "has_cuda", False))
    choice = (pref or "auto").strip().lower()
    if choice == "cpu" or (choice == "auto" and not has_cuda
                           and os.environ.get(ENV_VAR, "").strip().lower() in ("", "auto", "cpu")):
        return False
    return resolve_device(pref).type == "cuda" and has_cuda
