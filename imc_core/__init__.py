"""imc-lab core library: data layout, exact IMC-2025 metric, cached SfM stages, run directories.

The public API is small and imports lazily (no heavy imports at ``import imc_core``)::

    from imc_core import run_pipeline, load_run, score_files
    run_dir = run_pipeline("data/synthetic", variant="default")
    print(load_run(run_dir).scores)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run_pipeline", "load_run", "list_runs", "score", "score_files", "resolve_config", "DataRoot"]

_LAZY = {
    "run_pipeline": "pipeline",
    "load_run": "runs",
    "list_runs": "runs",
    "score": "metric",
    "score_files": "metric",
    "resolve_config": "config",
    "DataRoot": "data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'imc_core' has no attribute {name!r}")
