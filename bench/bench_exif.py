"""What the EXIF check of a features build costs beside the decode check that runs before it.

For every dataset of every data root under ``--root-dir`` (train split), times
:func:`imc_core.images.exif_problems` (each image's EXIF block read under PIL's recorded warnings, in the main
thread) and :func:`imc_core.images.check_images` (each image decoded, JPEGs at reduced scale), both over the
dataset's images in label order, ``--repeats`` times each (medians of one process). Both run once per features
build, never on a cache hit. Prints a markdown table and the command line.

Run: ``.venv/bin/python bench/bench_exif.py [--root-dir ../shared/datasets] [--repeats 5] [--out FILE]``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._cmd import median_seconds, write_report  # noqa: E402
from imc_core.data import DataRoot  # noqa: E402
from imc_core.images import check_images, exif_problems  # noqa: E402


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return 1000.0 * median_seconds(fn, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = ["| data root / dataset | images | EXIF check (ms) | decode check (ms) | EXIF / decode | EXIF problems |",
            "|---|---|---|---|---|---|"]
    for root_dir in sorted(p for p in args.root_dir.iterdir() if (p / "train").is_dir()):
        root = DataRoot(root_dir)
        _, loaded = root.load_for_run(None, "train")
        for name, ds in loaded.items():
            paths = [ds.image_dir / n for n in ds.images]
            note = exif_problems(paths)
            exif = median_ms(lambda: exif_problems(paths), args.repeats)  # noqa: B023
            decode = median_ms(lambda: check_images(paths), args.repeats)  # noqa: B023
            said = note.split(" (")[0] if note else "none"
            rows.append(f"| {root_dir.name} / {name} | {len(paths)} | {exif:.1f} | {decode:.1f} | "
                        f"{exif / decode:.3f} | {said} |")
    write_report("bench_exif.py", [f"Medians of {args.repeats} passes in one process, 2 CPU cores."],
                 "\n".join(rows), args.out)


if __name__ == "__main__":
    main()
