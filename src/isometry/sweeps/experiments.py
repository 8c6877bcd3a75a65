"""The training experiments' grids as sweeps: :func:`sweep_experiment`, :func:`sweep_configs`.

Each :class:`~isometry.experiments.RunConfig` is one task; the task function is
:func:`isometry.experiments.run_one`, which writes ``DIR/runs/<run_id>.json`` atomically (``run_id``
is a hash of the configuration) and resumes a long run from ``DIR/checkpoints/<run_id>.pt``. The
directory is laid out exactly as ``isometry train`` lays it out, so either command can continue
the other's run: ``DIR/grid.json`` (the configurations with their ids, written before the first
run), ``DIR/runs/``, and after the runs ``DIR/summary.json``/``summary.csv``
(:func:`isometry.experiments.summarise`, restricted to this grid); for a named experiment whose
runs all finished, also ``DIR/analysis.json`` and the figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .engine import SweepResult, driver_lock, run_tasks


def _experiments():
    try:
        from .. import experiments
    except ImportError as exc:  # torch (or the data packages) missing
        raise ModuleNotFoundError(
            f"the training experiments need torch and the data packages: pip install \"isometry[torch,data]\" "
            f"({exc})") from exc
    return experiments


def load_grid(path: str | os.PathLike) -> list:
    """Run configurations from a JSON file: a list of RunConfig field dicts (extra keys such as
    ``run_id`` are ignored), e.g. the ``grid.json`` that ``isometry train``/``sweep`` write."""
    import json

    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if isinstance(data, Mapping):
        data = data.get("configs")
    if not isinstance(data, list) or not all(isinstance(d, Mapping) for d in data):
        raise ValueError(f"grid file {os.fspath(path)!r} must hold a JSON list of run configurations")
    RunConfig = _experiments().RunConfig
    return [RunConfig.from_dict(dict(d)) for d in data]


def sweep_configs(
    configs: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    engine: str = "local",
    max_parallel: int | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 2,
    device: str | None = None,
    progress: bool = True,
    name: str = "custom",
    ray_init: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run the training configurations ``configs`` as a resumable sweep into ``out_dir``.

    ``device`` (e.g. ``"cpu"``, ``"cuda"``) replaces each config's device; it is not part of the run
    id, so a sweep started on CPUs can be finished on GPUs. See :func:`~isometry.sweeps.run_tasks`
    for the other arguments. Returns the :class:`SweepResult`; the summary covers every finished
    run of the grid, including those of earlier calls.
    """
    ex = _experiments()
    configs = [ex.RunConfig.from_dict(dict(c)) if isinstance(c, Mapping) else c for c in configs]
    if device is not None:
        configs = [c.replace(device=device) for c in configs]
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    from ..experiments import records

    with driver_lock(out_dir):
        records.atomic_write_json(os.path.join(out_dir, "grid.json"),
                                  [c.to_dict() | {"run_id": c.run_id} for c in configs])
        result = run_tasks(configs, ex.run_one, out_dir, engine=engine, max_parallel=max_parallel, address=address,
                           num_cpus=num_cpus, num_gpus=num_gpus, retries=retries, progress=progress,
                           desc=name, ray_init=ray_init, lock=False)
        ex.summarise(out_dir, configs)
    return result


def sweep_experiment(
    name: str,
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    paper_scale: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    target_accuracy: float | None = None,
    analyse: bool = True,
    plots: bool = True,
    **kwargs: Any,
) -> SweepResult:
    """Run experiment ``name`` (``"E1"``, ``"E2"``, ``"E3"``; :func:`isometry.experiments.experiment_grid`)
    as a resumable sweep. Grid sizes: default, ``quick`` or ``paper_scale``; ``data``, ``data_dir``,
    ``seeds``, ``steps``, ``target_accuracy`` are passed to the grid. When every run has finished,
    ``analyse`` writes ``analysis.json`` (:func:`isometry.experiments.analysis.analyse`) and
    ``plots`` the figures, as ``isometry train`` does. The rest (``engine``, ``max_parallel``, ``address``,
    ``num_cpus``, ``num_gpus``, ``device``, ...) to :func:`sweep_configs`.

        >>> res = sweep_experiment("E2", "out/E2", quick=True, engine="ray")  # doctest: +SKIP
    """
    ex = _experiments()
    configs = ex.experiment_grid(name, quick=quick, paper_scale=paper_scale, data=data, data_dir=data_dir,
                                 seeds=seeds, steps=steps, target_accuracy=target_accuracy)
    result = sweep_configs(configs, out_dir, name=name, **kwargs)
    if result.ok and analyse:
        from ..experiments import analysis, records, summarise

        rows = summarise(out_dir, configs)
        records.atomic_write_json(os.path.join(os.fspath(out_dir), "analysis.json"), analysis.analyse(name, rows))
        if plots:
            from ..experiments.plots import plot_experiment

            plot_experiment(name, os.fspath(out_dir))
    return result
