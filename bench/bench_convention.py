"""How often the pose-convention check of ``score`` speaks about a submission written the right way.

Every data root under ``--root-dir`` with ``train_labels.csv`` is submitted as its own ground truth with each camera
centre moved by Gaussian noise of ``sigma`` × its scene's largest threshold (rotations kept), for each sigma and
seed, and :func:`imc_core.convention.convention_check` re-reads every dataset. The poses are world→camera, so every
finding (a dataset, :meth:`~imc_core.convention.ConventionCheck.findings`, or one scene,
:meth:`~imc_core.convention.ConventionCheck.scene_findings`) is a false alarm; the script lists them and counts
them. With ``--slips``, each GT scene in turn (noise of ``--slip-sigma``, seed 0) is also written camera→world, the
usual slip, and the script counts the scenes ``score`` names (as a scene, or through its whole dataset; a dataset
is re-read when it is small, under 50 mAA, or holds a posed and clustered scene under 50 mAA, as ``score`` does;
``--all`` re-reads every dataset). Prints
markdown tables and the command line.

Run: ``.venv/bin/python bench/bench_convention.py [--root-dir ../shared/datasets] [--sigmas 0.5 1 2 5] [--seeds 3]
[--slips [--slip-sigma 0.1] [--all]]``
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imc_core.convention import check_scored, convention_check  # noqa: E402
from imc_core.data import read_thresholds  # noqa: E402
from imc_core.metric import score  # noqa: E402
from imc_core.submission import R_COLS, T_COLS, cam_to_world, read_pose_csv, rotations, translations, world_to_cam  # noqa: E402,E501


def noisy(gt, thresholds, sigma: float, seed: int):
    """``gt`` with each camera centre moved by N(0, (sigma · its scene's largest threshold)²) per axis."""
    rng = np.random.default_rng(seed)
    R_c2w, c = cam_to_world(rotations(gt), translations(gt))
    scale = np.array([thresholds.get((d, s), np.full(1, np.nan))[-1]
                      for d, s in zip(gt["dataset"].astype(str), gt["scene"].astype(str), strict=True)])
    c = c + rng.normal(size=c.shape) * (sigma * np.nan_to_num(scale, nan=1.0))[:, None]
    R, t = world_to_cam(R_c2w, c)
    out = gt.copy()
    out[R_COLS], out[T_COLS] = R.reshape(-1, 9), t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--slips", action="store_true", help="also write each scene camera→world in turn")
    ap.add_argument("--slip-sigma", type=float, default=0.1, help="noise of the --slips submissions")
    ap.add_argument("--all", action="store_true", help="--slips: re-read every dataset, whatever its score")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    rows, alarms, slips = [], [], []
    for root in sorted(p for p in Path(args.root_dir).iterdir() if (p / "train_labels.csv").exists()):
        gt = read_pose_csv(root / "train_labels.csv")
        th = read_thresholds(root / "train_thresholds.csv")
        scenes = gt[gt["scene"].astype(str) != "outliers"].groupby(["dataset", "scene"]).ngroups
        for sigma in args.sigmas:
            n_ds = n_sc = 0
            for seed in range(args.seeds):
                check = convention_check(gt, th, noisy(gt, th, sigma, seed))
                found, per_scene = check.findings(), check.scene_findings()
                n_ds, n_sc = n_ds + len(found), n_sc + len(per_scene)
                alarms += [f"{root.name}, sigma {sigma:g}, seed {seed}: dataset {d}: {r} "
                           f"({w:.2f} as written, {b:.2f} read so)" for d, r, w, b in found]
                alarms += [f"{root.name}, sigma {sigma:g}, seed {seed}: scene {s} of {d}: {r} "
                           f"({w:.2f} as written, {b:.2f} read so)" for d, s, r, w, b in per_scene]
            rows.append((root.name, gt["dataset"].nunique(), scenes, sigma, args.seeds, n_ds, n_sc))
        if args.slips:
            base = noisy(gt, th, args.slip_sigma, 0)
            R_c2w, c = cam_to_world(rotations(base), translations(base))
            for (dataset, scene), idx in base.groupby(["dataset", "scene"]).groups.items():
                if scene == "outliers":
                    continue
                rows_of = np.zeros(len(base), bool)
                rows_of[np.asarray(idx)] = True
                sub = base.copy()
                sub.loc[rows_of, R_COLS], sub.loc[rows_of, T_COLS] = R_c2w.reshape(-1, 9)[rows_of], c[rows_of]
                # as `score` does it: the dataset is re-read only when low or small (low_datasets)
                check = (convention_check(gt, th, sub, [str(dataset)]) if args.all
                         else check_scored(gt, th, sub, score(gt, th, sub, details=False)))
                if check is None or str(dataset) not in check.datasets:
                    named = "not re-read"
                else:
                    named = ("as its dataset" if any(d == dataset for d, *_ in check.findings()) else
                             "as a scene" if any((d, s) == (dataset, scene) for d, s, *_ in check.scene_findings())
                             else "not named")
                slips.append((root.name, str(dataset), str(scene), int(rows_of.sum()), named))
    print(f"`.venv/bin/python bench/bench_convention.py {' '.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    print("| data root | datasets | scenes | sigma (× largest threshold) | seeds | dataset findings | scene findings |")
    print("|---|---|---|---|---|---|---|")
    for name, n_d, n_s, sigma, seeds, n_ds, n_sc in rows:
        print(f"| {name} | {n_d} | {n_s} | {sigma:g} | {seeds} | {n_ds} | {n_sc} |")
    print()
    print("False alarms:" if alarms else "No false alarm.")
    for line in alarms:
        print(f"- {line}")
    if slips:
        print()
        found = sum(named.startswith("as ") for *_, named in slips)
        print(f"One scene written camera→world (sigma {args.slip_sigma:g}, seed 0): {found} of {len(slips)} named.")
        print()
        print("| data root | dataset | scene | images | named |")
        print("|---|---|---|---|---|")
        for row in slips:
            print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
