"""Training experiments: does dynamical isometry speed up learning?

A grid is a list of independent :class:`RunConfig`; :func:`run_experiment` runs it on the sweeps
engine (:mod:`isometry.sweeps`; a process pool, Ray, or in order in this process), training runs
of one shape together as one batched model (:func:`run_batch`), one record per run in
``DIR/runs/<run_id>.json``, then writes ``DIR/summary.json`` / ``summary.csv``, the analysis and
the figure; :func:`run_experiments` runs several named experiments sharing their runs. The grids
come at four sizes (:data:`SCALES`: quick, default, full, paper). E4 puts this package's
initialisations beside the initialisers people use (:data:`INITIALIZERS`, each called as its
authors document: :mod:`isometry.experiments.initializers`) on MLPs, CNNs and residual networks
(:data:`ARCHITECTURES`, :mod:`isometry.experiments.networks`), with its own protocol and analysis
(:mod:`isometry.experiments.benchmark`). The runs need torch
(``pip install "isometry[torch,data]"``); importing this package, configuring grids, summarising
and analysing do not: :func:`run_one`, :func:`run_batch`, :func:`build_mlp` and
:func:`measure_jacobian` import it when first used.

    >>> from isometry.experiments import experiment_grid, run_experiment
    >>> len(experiment_grid("E1", scale="quick"))
    216
    >>> res = run_experiment("E1", "out/E1", scale="quick")        # doctest: +SKIP
"""

from .config import (ARCHITECTURES, DATASETS, INITIALIZERS, OPTIMIZERS, OUR_INITIALIZERS, RunConfig, batch_key,
                     eval_steps, run_cost)
from .data import Dataset, cache_dir, load_cifar10, load_dataset, load_digits, load_mnist1d
from .grids import EXPERIMENTS, LR_TIMES_DEPTH, SCALES, experiment_grid, extend_learning_rates, select_configs
from .pipeline import ExperimentResult, load_grid, run_experiment, run_experiments
from .summary import SUMMARY_KEYS, summarise, summary_row

_TORCH = {"run_one": "train", "run_batch": "train", "resolve_device": "train", "build_mlp": "models",
          "measure_jacobian": "models", "build_network": "networks", "measure_body": "networks",
          "initialize": "initializers"}

__all__ = [
    "DATASETS", "OPTIMIZERS", "INITIALIZERS", "OUR_INITIALIZERS", "ARCHITECTURES", "RunConfig", "batch_key",
    "eval_steps", "run_cost",
    "Dataset", "cache_dir", "load_cifar10", "load_dataset", "load_digits", "load_mnist1d",
    "EXPERIMENTS", "LR_TIMES_DEPTH", "SCALES", "experiment_grid", "extend_learning_rates", "select_configs",
    "ExperimentResult", "load_grid", "run_experiment", "run_experiments",
    "SUMMARY_KEYS", "summarise", "summary_row",
    *_TORCH,
]


def __getattr__(name: str):
    if name in _TORCH:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
