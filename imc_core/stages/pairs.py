"""Stage ``pairs``: which image pairs get matched.

``exhaustive`` matches every pair (the right choice below a few dozen images, and what the 1st-place IMC-2025 team
effectively did inside each retrieval union). The Retrieval issue adds shortlisting methods (``retrieval``:
top-k neighbours in the fused global-descriptor space); they plug in here through :func:`make_pairs` and receive the
descriptors as ``descriptors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from ..errors import ConfigError

METHODS = ("exhaustive",)


@dataclass
class PairsConfig:
    method: str = "exhaustive"  # exhaustive (all N·(N−1)/2 pairs); retrieval methods come with global descriptors
    k: int = 20  # shortlist size per image for retrieval methods (unused by exhaustive)
    min_pairs_per_image: int = 0  # retrieval methods: guarantee at least this many pairs per image

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"pairs.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.k < 1:
            raise ConfigError(f"pairs.k must be ≥ 1, got {self.k}")


def make_pairs(
    names: list[str], conf: PairsConfig, descriptors: np.ndarray | None = None
) -> list[tuple[str, str]]:
    """Return the image pairs to match, each pair once, in a deterministic order.

    Args:
        names: image names of one dataset, N of them.
        conf: the stage config.
        descriptors: N×D global descriptors (retrieval methods only).

    Returns:
        Pairs ``(a, b)`` with ``names.index(a) < names.index(b)``, sorted by those indices.
    """
    if conf.method == "exhaustive":
        return [(names[i], names[j]) for i, j in combinations(range(len(names)), 2)]
    raise ConfigError(f"pairs.method {conf.method!r} is not implemented")


def write_pairs(pairs: list[tuple[str, str]], path: Path) -> Path:
    """Write ``name0 name1`` lines (hloc / COLMAP ``pairs.txt`` format)."""
    path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    return path


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Read a ``pairs.txt`` written by :func:`write_pairs` (its format cannot hold names with spaces; the pipeline
    hands pairs on in memory and writes the file for people and hloc)."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            a, b = line.split()
            out.append((a, b))
    return out
