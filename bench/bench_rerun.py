"""Re-runs after a mapping change, the way a user makes them: ``python -m imc_core run`` with features and matches
cached, one process per run, for one or several checkouts of the code taking turns (A/B on a noisy machine).

    .venv/bin/python bench/bench_rerun.py --datasets ets toy_fb82 --code . /tmp/old --reps 6 \
        --out bench/results/rerun_ab.md

Every checkout runs with this interpreter and one shared, fresh cache (``IMC_CACHE_DIR``), primed by one cold run of
the first checkout. Each re-run sets ``reconstruction.max_runtime_s`` to a value of its own (far above any mapping
here, so the poses do not change): a mapping key, so the reconstruction misses the cache and everything before it
hits. The table gives each checkout's seconds per run, the process's wall time (start-up and imports included)
and the pipeline's own ``timings.json`` total, as medians with every value listed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._cmd import write_report  # noqa: E402
from bench.bench_pipeline import markdown_table  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
FAR = 100_000  # s: max_runtime_s values start here, far above any mapping


def cli_run(code: Path, root: Path, overrides: list[str], env: dict[str, str], runs: Path) -> tuple[float, dict]:
    """One ``python -m imc_core run`` in checkout ``code``: (wall seconds, the run's timings.json)."""
    out = runs / f"r{len(list(runs.iterdir()))}"
    cmd = [sys.executable, "-m", "imc_core", "run", "--data-root", str(root), "--quiet", "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{code}: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return wall, json.loads((out / "timings.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["ets"], help="data roots under --root-dir")
    ap.add_argument("--root-dir", type=Path, default=SHARED)
    ap.add_argument("--code", nargs="+", type=Path, default=[REPO], help="checkouts to compare (git worktrees)")
    ap.add_argument("--reps", type=int, default=5, help="re-runs per checkout and dataset")
    ap.add_argument("--set", action="append", default=[], help="override for every run (section.key=value)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    codes = [c.resolve() for c in args.code]
    rows = []
    with tempfile.TemporaryDirectory(prefix="imc-rerun-") as td:
        env = {**os.environ, "IMC_CACHE_DIR": str(Path(td) / "cache"), "IMC_RUNS_DIR": str(Path(td) / "runs")}
        runs = Path(td) / "out"
        runs.mkdir()
        for name in args.datasets:
            root = (args.root_dir / name).resolve()
            cold_wall, cold = cli_run(codes[0], root, args.set, env, runs)
            print(f"{name}: cold run {cold_wall:.2f} s (timings total {cold['total']:.2f} s)", flush=True)
            walls: dict[Path, list[float]] = {c: [] for c in codes}
            totals: dict[Path, list[float]] = {c: [] for c in codes}
            value = FAR
            for _ in range(args.reps):
                for code in codes:  # the checkouts take turns, so a slow spell of the machine hits them alike
                    value += 1
                    wall, t = cli_run(code, root, [*args.set, f"reconstruction.max_runtime_s={value}"], env, runs)
                    walls[code].append(wall)
                    totals[code].append(t["total"])
            for code in codes:
                rows.append({"data": name, "code": _describe(code), "cold wall s": cold_wall if code == codes[0] else None,
                             "re-run wall s (median)": statistics.median(walls[code]),
                             "re-run pipeline s (median)": statistics.median(totals[code]),
                             "wall s, every run": " / ".join(f"{w:.2f}" for w in walls[code]),
                             "pipeline s, every run": " / ".join(f"{w:.2f}" for w in totals[code])})
                print(rows[-1], flush=True)
    write_report("bench_rerun.py", [], markdown_table(pd.DataFrame(rows)), args.out)


def _describe(code: Path) -> str:
    """A checkout as ``<folder> (<commit>)``."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "?"
    return f"{code.name} ({rev})"


if __name__ == "__main__":
    main()
