"""Benchmark of the header reads a features build makes of every image (:func:`imc_core.images.image_size` and
:func:`imc_core.images.exif_focal_px`) on a large PNG: PIL decoded a whole PNG when asked for its EXIF, unless the
``eXIf`` chunk came before the pixels; imc-lab now reads a PNG's EXIF only in that case.

Run: ``.venv/bin/python bench/bench_png_header.py [--repeat 7] [--out FILE]``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imc_core.images import exif_focal_px, image_size  # noqa: E402

from bench._cmd import median_seconds, timing_parser, write_report  # noqa: E402


def main() -> None:
    args = timing_parser(__doc__, 7).parse_args()
    rng = np.random.default_rng(0)
    lines = ["| image | median ms (image_size + exif_focal_px) |", "|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((640, 360), (1920, 1440), (4000, 3000)):
            path = Path(tmp) / f"{w}x{h}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
            med = median_seconds(lambda path=path: (image_size(path), exif_focal_px(path)), args.repeat)
            lines.append(f"| PNG {w} × {h} | {1000 * med:.1f} |")
    write_report("bench_png_header.py", [f"Median of {args.repeat}, one process."], "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
