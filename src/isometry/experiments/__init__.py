"""Training experiments (issue 6): does dynamical isometry speed up learning?

Needs torch (``pip install "isometry[torch,data]"``). A grid is a list of independent
:class:`RunConfig`; :func:`run_one` maps one config to one record written atomically to
``DIR/runs/<run_id>.json``; :func:`summarise` collects ``DIR/summary.json`` / ``summary.csv``.

    >>> from isometry.experiments import experiment_grid, run_grid
    >>> configs = experiment_grid("E1", quick=True)
    >>> records = run_grid(configs, "out/E1")        # doctest: +SKIP
"""

from .data import DATASETS, Dataset, cache_dir, load_cifar10, load_dataset, load_digits, load_mnist1d
from .grids import EXPERIMENTS, experiment_grid
from .models import build_mlp, measure_jacobian
from .train import OPTIMIZERS, RunConfig, eval_steps, resolve_device, run_grid, run_one, summarise

__all__ = [
    "DATASETS", "Dataset", "cache_dir", "load_cifar10", "load_dataset", "load_digits", "load_mnist1d",
    "EXPERIMENTS", "experiment_grid", "build_mlp", "measure_jacobian",
    "OPTIMIZERS", "RunConfig", "eval_steps", "resolve_device", "run_grid", "run_one", "summarise",
]
