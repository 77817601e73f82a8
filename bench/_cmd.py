"""The command line a benchmark prints above its results, with the interpreter that really ran it."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_line(script: str) -> str:
    """``<python> bench/<script> <args>``: the project's ``.venv/bin/python`` when that ran it, else ``python3``
    (e.g. the system interpreter of a GPU host)."""
    exe = Path(sys.executable)
    venv = REPO / ".venv"
    python = ".venv/bin/python" if os.path.commonpath([exe.absolute(), venv]) == str(venv) else "python3"
    return " ".join([python, f"bench/{script}", *sys.argv[1:]])


def write_report(script: str, notes: list[str], table: str, out: Path | None) -> str:
    """A benchmark's report: its command line, then ``notes`` (one paragraph each), then ``table``; printed, and
    written to ``out`` when given. Returns the text."""
    text = "\n\n".join([f"`{command_line(script)}`", *notes, table])
    print("\n" + text)
    if out:
        out.write_text(text)
    return text


def timing_parser(doc: str, repeat: int) -> argparse.ArgumentParser:
    """A benchmark's parser with ``--repeat`` (timed calls per case) and ``--out`` (report file); ``doc``'s first
    line describes it."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--out", type=Path)
    return ap


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` calls of ``fn`` (warm it up first where that matters)."""
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)
