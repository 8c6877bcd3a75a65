"""Sweeps: run a grid of independent, resumable tasks on a process pool, a Ray cluster or in order.

``engine="local"`` runs them on a ``spawn`` process pool (no Ray needed), ``engine="ray"`` as Ray
core tasks with stated resources, on a local cluster (``ray.init()``) or a running one
(``address``), ``engine="sequential"`` one after the other in this process. Every finished run is
one atomically written ``DIR/runs/<run_id>.json`` (:mod:`isometry.sweeps.records`); re-running a
sweep skips those, so a killed driver or worker loses at most the runs in flight and no run is
ever duplicated. Importing this package does not import torch.

A task is one run, or (with ``batch_key``) a batch of runs of one kind that ``fn`` executes
together, writing each run's record as it finishes; tasks start most expensive first (``cost``),
and a :class:`LocalPool` keeps the local workers across several calls. The training experiments
run on this engine through :func:`isometry.experiments.run_experiment`, one batch of same-shaped
networks per task.

    >>> from isometry.sweeps import run_tasks
    >>> res = run_tasks(configs, task, "out/grid", engine="local", max_parallel=2)  # doctest: +SKIP
    >>> res.to_dict()                                                               # doctest: +SKIP
"""

from .engine import (
    ENGINES,
    LocalPool,
    SweepResult,
    check_options,
    driver_lock,
    import_ray,
    pending_tasks,
    plan_batches,
    run_key,
    run_tasks,
    stable_hash,
    workers_for,
)
from .records import checkpoint_path, load_record, load_records, record_exists, run_path, write_record

__all__ = [
    "ENGINES", "LocalPool", "SweepResult", "check_options", "driver_lock", "import_ray", "pending_tasks",
    "plan_batches", "run_key", "run_tasks", "stable_hash", "workers_for", "checkpoint_path", "load_record",
    "load_records", "record_exists", "run_path", "write_record",
]
