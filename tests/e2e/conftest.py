"""Fixtures for the browser tests: the bundled data, a live ``streamlit run`` server, Debian Chromium via Playwright.

The server runs ``dashboard/app.py`` headless on 127.0.0.1 and a free port, with ``IMC_RUNS_DIR``, ``IMC_CACHE_DIR``
and ``IMC_ROOTS_FILE`` pointing at a temporary folder, so the tests never touch ``data/runs`` or ``data/cache``.
Tests skip (never fail) when Chromium is missing, unless ``CI`` is set: in CI a missing browser is a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DATA_ROOT, REPO, VIEWPORT, Server, browser_missing_reason,
                    free_port, kill_jobs, wait_health)


@pytest.fixture(scope="session")
def synthetic_data() -> Path:
    """The bundled synthetic benchmark (generated with ``python -m imc_core synth`` when missing)."""
    if not (DATA_ROOT / "train_labels.csv").is_file():
        subprocess.run([sys.executable, "-m", "imc_core", "synth", "--out", str(DATA_ROOT), "--seed", "0"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return DATA_ROOT


@pytest.fixture(scope="session")
def server(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``streamlit run dashboard/app.py`` on a free port with private runs/cache folders; killed at teardown."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("e2e_server")
    runs, cache, log = base / "runs", base / "cache", base / "server.log"
    runs.mkdir()
    port = free_port()
    env = dict(os.environ, IMC_RUNS_DIR=str(runs), IMC_CACHE_DIR=str(cache), IMC_ROOTS_FILE=str(base / "roots.json"),
               PYTHONUNBUFFERED="1")
    env.pop("IMC_DEFAULT_ROOT", None)
    streamlit = Path(sys.executable).with_name("streamlit")
    cmd = [str(streamlit), "run", "dashboard/app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_health(url, proc, log)
        yield Server(url, runs, cache, log)
    finally:
        kill_jobs(runs)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def browser(server: Server) -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never Playwright's own download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies, own Streamlit session) with downloads enabled."""
    ctx = browser.new_context(viewport=dict(VIEWPORT), accept_downloads=True)
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture()
def page(context: Any) -> Any:
    """A page in a fresh context."""
    return context.new_page()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``tests/artifacts/`` (git-ignored): full-page screenshots of every flow."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
