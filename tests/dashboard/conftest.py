"""Fixtures for the dashboard tests (builders live in dashkit.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dashkit import DashEnv, make_data_root, write_run


@pytest.fixture()
def dash_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DashEnv:
    env = DashEnv(make_data_root(tmp_path / "root"), tmp_path / "runs", tmp_path / "cache", tmp_path / "roots.json")
    env.runs.mkdir()
    monkeypatch.setenv("IMC_RUNS_DIR", str(env.runs))
    monkeypatch.setenv("IMC_CACHE_DIR", str(env.cache))
    monkeypatch.setenv("IMC_ROOTS_FILE", str(env.roots_file))
    monkeypatch.setenv("IMC_DEFAULT_ROOT", str(env.data_root))
    return env


@pytest.fixture()
def make_run(dash_env: DashEnv) -> Callable[..., Path]:
    """Factory: ``make_run(name, score=..., group=..., seed=...)`` → run directory."""

    def _make(name: str, **kw: Any) -> Path:
        return write_run(dash_env, name, **kw)

    return _make
