"""How the pose-convention check names scenes written each its own way, on random small files.

Each case: one or two datasets of two or three scenes (4–10 cameras; some flat, some on an arc around a far point),
submitted as the GT under one similarity with camera-centre noise of a random size (0 to 2 m against thresholds of
1–50 cm), each scene written with one of the four slips of ``bench_convention.SLIPS`` with probability one half,
some scenes partly unregistered, an image now and then in a cluster of its own. The check as ``score`` runs it
(:func:`imc_core.convention.check_scored`) names datasets and scenes; each scene's truth is the reading whose
rotations and then centres fit the GT best (:func:`imc_core.convention.fit_table`; the rotations carry no noise).
A scene is *right* when named with its truth, *wrong* when named with another reading (or named at all while written
right), *missed* when slipped and not named. ``--tree DIR`` imports ``imc_core`` from another checkout (e.g. a
``git worktree`` of an older commit) to compare; a case whose check raises is counted apart.

Run: ``.venv/bin/python bench/bench_convention_mixed.py [--cases 300] [--seed 0] [--tree DIR]``
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tree", type=Path, help="a checkout whose imc_core to use")
    args = ap.parse_args()
    sys.path.insert(0, str((args.tree or HERE).resolve()))
    # (imc_core first, from the tree: the helpers below put this checkout on sys.path too)
    from imc_core.convention import EITHER, TWINS, check_scored, fit_table
    from imc_core.metric import score
    from imc_core.submission import R_COLS, T_COLS, cam_to_world, rotations, translations, world_to_cam

    sys.path.insert(1, str(HERE / "tests" / "unit"))
    sys.path.insert(1, str(HERE / "bench"))
    import pandas as pd
    from bench_convention import SLIPS
    from test_metric import TH, frame, scene_poses, submit

    import imc_core.convention

    print(f"imc_core from {Path(imc_core.convention.__file__).parents[1]}", file=sys.stderr)

    def case(rng: np.random.Generator) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
        rows, th = [], {}
        for d in range(int(rng.integers(1, 3))):
            for s in range(int(rng.integers(2, 4))):
                m = int(rng.choice([4, 5, 6, 8, 10]))
                R, c = scene_poses(rng, m)
                if rng.random() < 0.3:  # flat
                    c[:, 2] *= 0.02
                if rng.random() < 0.2:  # an arc around a far point
                    a = np.linspace(0, 1.5, m)
                    c = np.stack([10 * np.cos(a), 10 * np.sin(a), np.zeros(m)], 1) + 20
                rows += [(f"d{d}", f"s{s}", f"d{d}_s{s}_{i:03d}.png", R[i], c[i]) for i in range(m)]
                th[(f"d{d}", f"s{s}")] = TH.copy()
        gt = frame(rows)
        sub = submit(gt, dict(zip(gt["image"], gt["scene"], strict=True)), seed=int(rng.integers(1 << 30)))
        Rc, c = cam_to_world(rotations(sub), translations(sub))
        c = c + rng.normal(size=c.shape) * float(rng.choice([0.0, 0.02, 0.1, 0.3, 0.8, 2.0]))
        R, t = world_to_cam(Rc, c)
        for _, idx in gt.groupby(["dataset", "scene"]).groups.items():
            idx = np.asarray(idx)
            if rng.random() < 0.5:
                R[idx], t[idx] = SLIPS[list(SLIPS)[int(rng.integers(4))]](R[idx], t[idx])
            if rng.random() < 0.25:  # partly unregistered
                drop = rng.choice(idx, int(rng.integers(1, max(2, len(idx) - 3))), replace=False)
                R[drop], t[drop] = np.nan, np.nan
            if rng.random() < 0.15:  # one image in a cluster of its own
                sub.loc[int(rng.choice(idx)), "scene"] = "x"
        sub[R_COLS], sub[T_COLS] = R.reshape(-1, 9), t
        return gt, th, sub

    rng = np.random.default_rng(args.seed)
    tally = {"right": 0, "wrong": 0, "missed": 0, "written right, left alone": 0}
    failed = 0
    for _ in range(args.cases):
        gt, th, sub = case(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                check = check_scored(gt, th, sub, score(gt, th, sub, details=False))
            except Exception:  # noqa: BLE001  (an older tree's fault: counted)
                failed += 1
                continue
            fits = fit_table(gt, sub)
        truth = {key: g.assign(r=g["rot"].round(1)).sort_values(["r", "fit"]).iloc[0]["reading"]
                 for key, g in fits.dropna(subset=["rot"]).groupby(["dataset", "scene"])}
        named: dict[tuple[str, str], str] = {}
        if check is not None and not getattr(check, "failed", None):
            for d, reading, *_ in check.findings():
                named.update({key: reading for key in truth if key[0] == d})
            named.update({(d, s): reading for d, s, reading, *_ in check.scene_findings()})
        for key, t in truth.items():
            r = named.get(key)
            if t == "as written":
                tally["wrong" if r is not None else "written right, left alone"] += 1
            elif r is None:
                tally["missed"] += 1
            else:
                tally["right" if r == t or (r == EITHER and t in TWINS) else "wrong"] += 1
    print(f"`.venv/bin/python bench/bench_convention_mixed.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    print("| scenes named right | named wrong | slipped, not named | written right, left alone | checks that raised |")
    print("|---|---|---|---|---|")
    print(f"| {tally['right']} | {tally['wrong']} | {tally['missed']} | {tally['written right, left alone']} | "
          f"{failed} |")


if __name__ == "__main__":
    main()
