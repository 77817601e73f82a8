"""A tiny synthetic benchmark shared by the integration tests (generated once per session)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imc_core.synth import BUNDLED, generate

    conf = replace(BUNDLED, seed=3, datasets=1, scenes_per_dataset=2, images_per_scene=8, outliers_per_dataset=1,
                   width=384, height=288, roll_fraction=0.0)
    return generate(tmp_path_factory.mktemp("synth") / "root", conf)


@pytest.fixture()
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dirs = {"cache": tmp_path / "cache", "runs": tmp_path / "runs"}
    monkeypatch.setenv("IMC_CACHE_DIR", str(dirs["cache"]))
    monkeypatch.setenv("IMC_RUNS_DIR", str(dirs["runs"]))
    return dirs
