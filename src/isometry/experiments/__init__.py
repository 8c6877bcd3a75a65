"""Training experiments: does dynamical isometry speed up learning?

A grid is a list of independent :class:`RunConfig`; :func:`run_experiment` runs it on the sweeps
engine (:mod:`isometry.sweeps`; a process pool, Ray, or in order in this process), one record per
run in ``DIR/runs/<run_id>.json``, then writes ``DIR/summary.json`` / ``summary.csv``, the
analysis and the figure. The runs need torch (``pip install "isometry[torch,data]"``); importing
this package, configuring grids, summarising and analysing do not: :func:`run_one`,
:func:`build_mlp` and :func:`measure_jacobian` import it when first used.

    >>> from isometry.experiments import experiment_grid, run_experiment
    >>> len(experiment_grid("E1", quick=True))
    24
    >>> res = run_experiment("E1", "out/E1", quick=True)        # doctest: +SKIP
"""

from .config import DATASETS, OPTIMIZERS, RunConfig, eval_steps
from .data import Dataset, cache_dir, load_cifar10, load_dataset, load_digits, load_mnist1d
from .grids import EXPERIMENTS, experiment_grid
from .pipeline import ExperimentResult, load_grid, run_experiment
from .summary import SUMMARY_KEYS, summarise, summary_row

_TORCH = {"run_one": "train", "resolve_device": "train", "build_mlp": "models", "measure_jacobian": "models"}

__all__ = [
    "DATASETS", "OPTIMIZERS", "RunConfig", "eval_steps",
    "Dataset", "cache_dir", "load_cifar10", "load_dataset", "load_digits", "load_mnist1d",
    "EXPERIMENTS", "experiment_grid",
    "ExperimentResult", "load_grid", "run_experiment",
    "SUMMARY_KEYS", "summarise", "summary_row",
    *_TORCH,
]


def __getattr__(name: str):
    if name in _TORCH:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
