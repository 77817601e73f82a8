"""What the pose-convention check of ``score`` costs, on three kinds of submission of one labels file.

The files, made from the labels (default: IMC-2025's training labels): the labels themselves; the labels written
camera→world (every dataset re-read); and a pipeline-like file, each scene in a frame of its own with every camera
centre moved by ``--sigma`` × its scene's largest threshold, 2° of rotation noise, and ``--lost`` of the images
unregistered (every dataset ends under 50 mAA, as a pipeline's do, so every one is re-read). Each file is scored by
``python -m imc_core score`` in a fresh process, with the check and with ``--no-convention-check``, for each code
tree given (``--tree``, default this checkout: e.g. a ``git worktree`` of an older commit, to compare), the trees
taking turns within each repeat. Prints a markdown table of medians and the command line.

Run: ``.venv/bin/python bench/bench_convention_cost.py [--tree DIR ...] [--repeat 3] [--sigma 0.5] [--lost 0.05]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bench"))

from bench_convention import noisy  # noqa: E402

from imc_core.data import read_thresholds  # noqa: E402
from imc_core.submission import R_COLS, T_COLS, cam_to_world, read_pose_csv, rotations, translations, write_pose_csv  # noqa: E402,E501


def files(labels: Path, thresholds: Path, sigma: float, lost: float, out: Path) -> dict[str, Path]:
    gt = read_pose_csv(labels)
    th = read_thresholds(thresholds)
    c2w = gt.copy()
    R, c = cam_to_world(rotations(gt), translations(gt))
    c2w[R_COLS], c2w[T_COLS] = R.reshape(-1, 9), c
    pipeline = noisy(gt, th, sigma, 0, frames=True, rot_deg=2.0)
    rng = np.random.default_rng(1)
    gone = rng.random(len(pipeline)) < lost
    pipeline.loc[gone, R_COLS + T_COLS] = np.nan
    return {"the labels as written": write_pose_csv(gt, out / "labels.csv"),
            "written camera→world": write_pose_csv(c2w, out / "c2w.csv"),
            f"pipeline-like (own frames, {sigma:g}× threshold noise, {lost:.0%} unregistered)":
                write_pose_csv(pipeline, out / "pipeline.csv")}


def timed(tree: Path, labels: Path, thresholds: Path, sub: Path, check: bool) -> float:
    cmd = [sys.executable, "-m", "imc_core", "score", "--gt", str(labels), "--thresholds", str(thresholds),
           "--submission", str(sub), "--json"] + ([] if check else ["--no-convention-check"])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    # (run from the tree: `-m` puts the working folder first on sys.path)
    subprocess.run(cmd, env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=HERE.parent / "shared" / "imc25" / "train_labels.csv")
    ap.add_argument("--thresholds", type=Path, default=HERE.parent / "shared" / "imc25" / "train_thresholds.csv")
    ap.add_argument("--tree", type=Path, action="append", help="a checkout whose imc_core to time (repeatable)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--lost", type=float, default=0.05)
    args = ap.parse_args()
    trees = [t.resolve() for t in (args.tree or [HERE])]
    with tempfile.TemporaryDirectory() as tmp:
        subs = files(args.labels, args.thresholds, args.sigma, args.lost, Path(tmp))
        times: dict[tuple[str, str, bool], list[float]] = {}
        for _ in range(args.repeat):
            for name, sub in subs.items():
                for check in (True, False):
                    for tree in trees if check else trees[:1]:  # without the check every tree does the same
                        times.setdefault((name, str(tree), check), []).append(
                            timed(tree, args.labels, args.thresholds, sub, check))
    print(f"`.venv/bin/python bench/bench_convention_cost.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    head = " | ".join(f"check on, {Path(t).name}" for t in trees)
    print(f"| submission | {head} | `--no-convention-check` |")
    print("|---|" + "---|" * (len(trees) + 1))
    for name in subs:
        cells = [" / ".join(f"{x:.2f}" for x in times[(name, str(t), True)])
                 + f" (median {statistics.median(times[(name, str(t), True)]):.2f} s)" for t in trees]
        off = statistics.median(times[(name, str(trees[0]), False)])
        print(f"| {name} | {' | '.join(cells)} | {off:.2f} s |")


if __name__ == "__main__":
    main()
