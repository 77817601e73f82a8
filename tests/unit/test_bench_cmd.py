"""The command line the benchmarks print names the interpreter that really ran them."""
from __future__ import annotations

import sys

import pytest

from bench._cmd import REPO, command_line


@pytest.mark.parametrize(("exe", "python"), [(REPO / ".venv" / "bin" / "python", ".venv/bin/python"),
                                             ("/usr/bin/python3", "python3")])
def test_command_line_names_the_interpreter(monkeypatch: pytest.MonkeyPatch, exe: object, python: str) -> None:
    monkeypatch.setattr(sys, "executable", str(exe))
    monkeypatch.setattr(sys, "argv", ["bench/bench_pipeline.py", "--datasets", "ets"])
    assert command_line("bench_pipeline.py") == f"{python} bench/bench_pipeline.py --datasets ets"
