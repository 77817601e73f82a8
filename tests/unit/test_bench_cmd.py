"""The command line the benchmarks print names the interpreter that really ran them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench._cmd import REPO, command_line, write_report


@pytest.mark.parametrize(("exe", "python"), [(REPO / ".venv" / "bin" / "python", ".venv/bin/python"),
                                             ("/usr/bin/python3", "python3")])
def test_command_line_names_the_interpreter(monkeypatch: pytest.MonkeyPatch, exe: object, python: str) -> None:
    monkeypatch.setattr(sys, "executable", str(exe))
    monkeypatch.setattr(sys, "argv", ["bench/bench_pipeline.py", "--datasets", "ets"])
    assert command_line("bench_pipeline.py") == f"{python} bench/bench_pipeline.py --datasets ets"


def test_report_has_the_command_the_notes_and_the_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    monkeypatch.setattr(sys, "argv", ["bench/bench_x.py", "--repeats", "2"])
    out = tmp_path / "x.md"
    text = write_report("bench_x.py", ["2 CPU cores"], "| a |\n|---|\n| 1 |", out)
    assert text == "`python3 bench/bench_x.py --repeats 2`\n\n2 CPU cores\n\n| a |\n|---|\n| 1 |"
    assert out.read_text() == text
    assert text in capsys.readouterr().out
    assert write_report("bench_x.py", [], "| a |", None) == "`python3 bench/bench_x.py --repeats 2`\n\n| a |"
