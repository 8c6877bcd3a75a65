"""The one experiment pipeline: grid -> runs -> summary -> analysis -> figures.

:func:`run_experiment` is what ``isometry train``, ``isometry sweep`` and the reproduction report
call. It writes into ``out_dir``:

- ``grid.json``: the configurations with their run ids (before the first run);
- ``runs/<run_id>.json``: one record per finished run (:func:`isometry.experiments.run_one`, run
  as independent tasks by :func:`isometry.sweeps.run_tasks`: a process pool, a Ray cluster or
  in order in this process; finished runs are skipped, so a call resumes the previous one);
- ``summary.json`` / ``summary.csv``: one row per finished run of the grid, written once;
- for a named experiment whose runs all finished: ``analysis.json`` and its figure.

One driver at a time per ``out_dir`` (:class:`isometry.sweeps.driver_lock`). The driver does not
import torch; the runs do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._io import atomic_write_json
from ..sweeps import SweepResult, check_options, driver_lock, load_records, run_tasks
from .analysis import analyse
from .config import RunConfig
from .grids import EXPERIMENTS, experiment_grid
from .summary import summary_rows, write_summary

__all__ = ["ExperimentResult", "run_experiment", "load_grid", "FIGURES"]

#: The figure file of each named experiment.
FIGURES = {"E1": "E1_learning_curves.png", "E2": "E2_speed_vs_isometry.png", "E3": "E3_tau_vs_eta_L.png"}


@dataclass(frozen=True)
class ExperimentResult:
    """What one call of :func:`run_experiment` did and found.

    ``experiment``: the experiment's name (``"E1"``, ``"E2"``, ``"E3"``, or the name given to a list
    of configurations); ``out_dir``; ``sweep``: the :class:`isometry.sweeps.SweepResult` (runs
    total, skipped because already finished, completed, failed); ``rows``: the summary rows of the
    grid's finished runs; ``analysis``: :func:`isometry.experiments.analysis.analyse` of the rows
    (None unless a named experiment finished every run); ``figures``: paths written;
    ``records``: the full run records (learning curves), not part of :meth:`to_dict`.
    """

    experiment: str
    out_dir: str
    sweep: SweepResult
    rows: tuple[dict, ...]
    analysis: dict | None = None
    figures: tuple[str, ...] = ()
    records: tuple[dict, ...] = field(default=(), repr=False)

    @property
    def complete(self) -> bool:
        """Every run of the grid has a record."""
        return len(self.rows) == self.sweep.total

    @property
    def ok(self) -> bool:
        """No run failed in this call."""
        return self.sweep.ok

    @property
    def summary_path(self) -> str:
        return os.path.join(self.out_dir, "summary.json")

    def to_dict(self) -> dict:
        """The sweep's counts, the paths written and the analysis (the rows are in ``summary.json``)."""
        return {
            "experiment": self.experiment,
            **self.sweep.to_dict(),
            "finished": len(self.rows),
            "out": self.out_dir,
            "summary": self.summary_path,
            "analysis": self.analysis,
            "figures": list(self.figures),
        }

    def plot(self, ax=None, path=None):
        """The experiment's figure (:mod:`isometry.plotting.experiments`); returns the Figure."""
        from ..plotting import experiments as plots

        if self.experiment == "E2":
            return plots.speed_vs_isometry(self.rows, ax=ax, path=path)
        if self.experiment == "E3":
            return plots.tau_vs_eta_depth(self.rows, ax=ax, path=path)
        first = self.rows[0] if self.rows else {}
        title = f"{self.experiment} ({first.get('data')}, L={first.get('depth')}, N={first.get('width')})"
        return plots.learning_curves(self.records, ax=ax, path=path, title=title)


def load_grid(path: str | os.PathLike) -> list[RunConfig]:
    """Run configurations from a JSON file: a list of :class:`RunConfig` field mappings (a
    ``run_id`` key is ignored), such as the ``grid.json`` that :func:`run_experiment` writes.

    Raises ``ValueError`` naming the file and the entry that is not a valid configuration.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"grid file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"grid file {path!r} must hold a JSON list of run configurations")
    out = []
    for i, d in enumerate(data):
        try:
            out.append(RunConfig.from_dict(d))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid file {path!r}, entry {i}: {exc}") from None
    return out


def _run_task(config: RunConfig, out_dir: str) -> dict:
    """The sweep task of one configuration (imports torch in the worker, not in the driver)."""
    from .train import run_one

    return run_one(config, out_dir)


def run_experiment(
    experiment: str | Sequence[RunConfig | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    paper_scale: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    target_accuracy: float | None = None,
    device: str | None = None,
    engine: str = "local",
    max_parallel: int | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 2,
    analysis: bool = True,
    plots: bool = True,
    progress: bool = True,
    name: str | None = None,
    ray_init: Mapping[str, Any] | None = None,
) -> ExperimentResult:
    """Run a training experiment into ``out_dir``, resumably, and summarise it once.

    Args:
        experiment: ``"E1"``, ``"E2"`` or ``"E3"`` (the grid of :func:`experiment_grid` with
            ``quick``, ``paper_scale``, ``data``, ``data_dir``, ``seeds``, ``steps``,
            ``target_accuracy``), or a list of :class:`RunConfig` (or their field mappings), run as
            given (the grid options then raise ``ValueError``).
        out_dir: the output directory (created).
        device: replaces every run's device (not part of the run id: a grid started on CPUs can
            be finished on GPUs).
        engine, max_parallel, address, num_cpus, num_gpus, retries, ray_init: how the runs are
            executed (:func:`isometry.sweeps.run_tasks`): ``"local"`` process pool (default;
            one worker runs them in this process), ``"ray"``, or ``"sequential"`` in this process.
        analysis, plots: write ``analysis.json`` and the figure when a named experiment (or a list
            whose configurations all name one experiment) has every run finished.
        name: the name shown in progress and results (default: the experiment's).

    Returns:
        An :class:`ExperimentResult`. Runs that raised are listed in ``result.sweep.failed``
        (their records are absent, so the next call retries them).

    Example::

        >>> res = run_experiment("E3", "out/E3", quick=True, engine="sequential")  # doctest: +SKIP
        >>> res.sweep.total, res.analysis["table"][0]["best_learning_rate"]        # doctest: +SKIP
    """
    check_options(engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                  retries=retries)
    if isinstance(experiment, str):
        configs = experiment_grid(experiment, quick=quick, paper_scale=paper_scale, data=data, data_dir=data_dir,
                                  seeds=seeds, steps=steps, target_accuracy=target_accuracy)
        label = name or experiment
    else:
        given = {k: v for k, v in dict(quick=quick, paper_scale=paper_scale, data=data, data_dir=data_dir,
                                        seeds=seeds, steps=steps, target_accuracy=target_accuracy).items() if v}
        if given:
            raise ValueError(f"{', '.join(given)} choose a named experiment's grid; a list of configurations is "
                             "run as given")
        configs = [c if isinstance(c, RunConfig) else RunConfig.from_dict(c) for c in experiment]
        if not configs:
            raise ValueError("the list of configurations is empty")
        names = {c.experiment for c in configs}
        label = name or (names.pop() if len(names) == 1 else "custom")
    if device is not None:
        configs = [c.replace(device=device) for c in configs]
    kind = {c.experiment for c in configs}
    kind = kind.pop() if len(kind) == 1 and kind <= set(EXPERIMENTS) else None

    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    with driver_lock(out_dir):
        atomic_write_json(os.path.join(out_dir, "grid.json"), [c.to_dict() | {"run_id": c.run_id} for c in configs])
        sweep = run_tasks(configs, _run_task, out_dir, engine=engine, max_parallel=max_parallel, address=address,
                          num_cpus=num_cpus, num_gpus=num_gpus, retries=retries, progress=progress, desc=label,
                          ray_init=ray_init, lock=False)
        records = load_records(out_dir, [c.run_id for c in configs])
        rows = summary_rows(records)
        write_summary(out_dir, rows)
        result = ExperimentResult(label, out_dir, sweep, tuple(rows), records=tuple(records))
        if kind is None or len(rows) != sweep.total:
            return result
        res = analyse(kind, rows) if analysis else None
        if res is not None:
            atomic_write_json(os.path.join(out_dir, "analysis.json"), res)
        result = ExperimentResult(kind, out_dir, sweep, tuple(rows), res, records=tuple(records))
        figures: tuple[str, ...] = ()
        if plots:
            from ..plotting import save_figure

            path = os.path.join(out_dir, FIGURES[kind])
            figures = (save_figure(result.plot(), path),)
    return ExperimentResult(kind, out_dir, sweep, tuple(rows), res, figures, tuple(records))
