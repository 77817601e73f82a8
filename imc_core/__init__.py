"""imc-lab core library: data layout, exact IMC-2025 metric, cached SfM stages, run directories.

The public API is small and imports lazily (no heavy imports at ``import imc_core``)::

    from imc_core import run_pipeline, load_run, resolve_config
    run_dir = run_pipeline("data/synthetic", variant="default", overrides=["reconstruction.seed=1"])
    run = load_run(run_dir)
    print(run.status, run.scores)          # a failed run returns too: its status says so (or raise_errors=True)

    cfg = resolve_config("default")        # a typed config to edit; run_pipeline(config=cfg) checks it again
    cfg.reconstruction.mapper = "global"

COLMAP prints INFO lines on the process's stderr from its final adjustment; the CLI drops them, and a script can
too: ``with imc_core.glogfilter.glog_lines_dropped(): run_pipeline(...)``.
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


def __dir__() -> list[str]:  # (tab completion in a notebook lists the lazy names too)
    return sorted([*globals(), *_LAZY])
