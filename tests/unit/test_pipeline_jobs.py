"""How many datasets reconstruct at once (``imc_core.pipeline.reconstruction_jobs``)."""

from __future__ import annotations

import os

import pytest

from imc_core.config import resolve_config
from imc_core.errors import ImcError
from imc_core.pipeline import reconstruction_jobs


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMC_JOBS", raising=False)


def test_automatic_jobs_follow_the_cores_when_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    det = resolve_config("default")
    free = resolve_config("default", ["reconstruction.deterministic=false"])
    assert reconstruction_jobs(det, 13) == 13
    assert reconstruction_jobs(det, 40) == 16
    assert reconstruction_jobs(det, 1) == 1
    assert reconstruction_jobs(free, 13) == 1  # COLMAP's own threads take the cores


def test_explicit_and_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = resolve_config("default")
    assert reconstruction_jobs(cfg, 5, 2) == 2
    assert reconstruction_jobs(cfg, 2, 8) == 2
    monkeypatch.setenv("IMC_JOBS", "3")
    assert reconstruction_jobs(cfg, 5) == 3
    assert reconstruction_jobs(cfg, 5, 1) == 1  # the argument wins over the environment
    monkeypatch.setenv("IMC_JOBS", "many")
    with pytest.raises(ImcError, match="IMC_JOBS"):
        reconstruction_jobs(cfg, 5)
    with pytest.raises(ImcError, match="jobs must be"):
        reconstruction_jobs(cfg, 5, 0)


def test_mapping_jobs_share_the_cores_left_per_reconstruction(monkeypatch: pytest.MonkeyPatch) -> None:
    from imc_core.pipeline import mapping_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    det = resolve_config("default")
    assert mapping_jobs(det, 1) == 16  # one dataset: its match-graph components take every core
    assert mapping_jobs(det, 2) == 8
    assert mapping_jobs(det, 16) == 1
    assert mapping_jobs(resolve_config("default", ["reconstruction.deterministic=false"]), 1) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert mapping_jobs(det, 1) == 1


def test_a_failed_reconstructions_reason_comes_from_its_result_or_its_log(tmp_path) -> None:
    """``run.json`` warns about each failed dataset with the reason: from ``result.json`` or, in an artifact cached
    before it held one, from the log's last ``FAILED:`` line; one line, at most 300 characters."""
    import json

    from imc_core.pipeline import _reconstruction_error

    art = tmp_path / "rec"
    art.mkdir()
    assert _reconstruction_error(art) is None  # nothing to read: the warning says "see the log"
    (art / "reconstruction.log").write_text("5 images\nFAILED: fewer than 2 images\n")
    (art / "result.json").write_text(json.dumps({"ok": False, "n_models": 0, "steps": {}}))
    assert _reconstruction_error(art) == "fewer than 2 images"
    (art / "result.json").write_text(json.dumps({"ok": False, "error": "geometric verification: TypeError: "
                                                 + "x" * 400 + "\nsecond line"}))
    error = _reconstruction_error(art)
    assert error.startswith("geometric verification: TypeError: xxx") and len(error) == 300 and "\n" not in error
