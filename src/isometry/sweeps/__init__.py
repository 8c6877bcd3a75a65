"""Sweeps: run a grid of independent, resumable tasks on a process pool, a Ray cluster or in order.

``engine="local"`` runs them on a ``spawn`` process pool (no Ray needed), ``engine="ray"`` as Ray
core tasks with stated resources, on a local cluster (``ray.init()``) or a running one
(``address``), ``engine="sequential"`` one after the other in this process. Every finished run is
one atomically written ``DIR/runs/<run_id>.json`` (:mod:`isometry.sweeps.records`); re-running a
sweep skips those, so a killed driver or worker loses at most the runs in flight and no run is
ever duplicated. Importing this package does not import torch.

The training experiments run on this engine through :func:`isometry.experiments.run_experiment`.

    >>> from isometry.sweeps import run_tasks
    >>> res = run_tasks(configs, task, "out/grid", engine="local", max_parallel=2)  # doctest: +SKIP
    >>> res.to_dict()                                                               # doctest: +SKIP
"""

from .engine import (
    ENGINES,
    SweepResult,
    check_options,
    driver_lock,
    import_ray,
    pending_tasks,
    run_key,
    run_tasks,
    stable_hash,
)
from .records import checkpoint_path, load_record, load_records, record_exists, run_path, write_record

__all__ = [
    "ENGINES", "SweepResult", "check_options", "driver_lock", "import_ray", "pending_tasks", "run_key", "run_tasks",
    "stable_hash", "checkpoint_path", "load_record", "load_records", "record_exists", "run_path", "write_record",
]
