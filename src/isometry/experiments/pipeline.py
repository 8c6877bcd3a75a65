"""The one experiment pipeline: grids -> runs -> summary -> analysis -> figures.

:func:`run_experiment` (one experiment, or a list of configurations) and :func:`run_experiments`
(several named experiments sharing their runs) are what ``isometry train``, ``isometry sweep`` and
the reproduction report call. For an experiment written to ``out_dir``:

- ``grid.json``: the configurations with their run ids (before the first run; rewritten when the
  learning-rate grid is extended);
- ``runs/<run_id>.json``: one record per finished run, in the *store* directory (``out_dir``
  itself, or the directory shared by several experiments). The runs are trained by
  :func:`isometry.experiments.run_batch`, in batches of runs of one shape
  (:func:`isometry.experiments.batch_key`), as independent tasks of
  :func:`isometry.sweeps.run_tasks` (a process pool, a Ray cluster or in order in this process);
  finished runs are skipped, so a call resumes the previous one, and a run two experiments share
  (same configuration, same run id) is trained once;
- for a named experiment whose grid has run: the learning-rate grid is extended where a group's
  best rate is at its edge (:func:`isometry.experiments.grids.extend_learning_rates`) and the new
  runs are trained, until no group's best rate is at an edge (or the limit of extra rates);
- ``summary.json`` / ``summary.csv``: one row per finished run of the grid, written once;
- for a named experiment whose runs all finished: ``analysis.json`` and its figure.

Before any run starts, what no retry could fix is refused with a ``ValueError``: an absent device,
a dataset that cannot be loaded, a run too large for the memory (local and sequential engines).
One driver at a time per store (:class:`isometry.sweeps.driver_lock`). The driver does not
import torch (except to check that a CUDA or MPS device named for runs on this machine is present);
the runs do.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._io import atomic_write_json
from ..sweeps import LocalPool, SweepResult, check_options, driver_lock, load_records, run_tasks, workers_for
from .analysis import analyse
from .benchmark import TUNING_SEED
from .config import RunConfig, batch_key, run_cost, run_memory
from .grids import EXPERIMENTS, MAX_EXTRA_RATES, check_scale, experiment_grid, extend_learning_rates
from .summary import summary_rows, valid_record, write_summary

__all__ = ["ExperimentResult", "run_experiment", "run_experiments", "load_grid", "FIGURES"]

#: The figure file of each named experiment.
FIGURES = {"E1": "E1_learning_curves.png", "E2": "E2_speed_vs_isometry.png", "E3": "E3_tau_vs_eta_L.png",
           "E4": "E4_steps_vs_depth.png"}


@dataclass(frozen=True)
class ExperimentResult:
    """What one call of :func:`run_experiment` did and found.

    ``experiment``: the experiment's name (``"E1"``, ``"E2"``, ``"E3"``, or the name given to a list
    of configurations); ``out_dir``; ``sweep``: the :class:`isometry.sweeps.SweepResult` of the
    runs of this experiment's grid (runs total, skipped because already finished, completed,
    failed; with :func:`run_experiments`, the counts of the shared call); ``rows``: the summary rows
    of the grid's finished runs; ``analysis``: :func:`isometry.experiments.analysis.analyse` of the
    rows (None unless a named experiment finished every run); ``figures``: paths written;
    ``extended``: runs added by the learning-rate extension; ``records``: the full run records
    (learning curves), not part of :meth:`to_dict`.
    """

    experiment: str
    out_dir: str
    sweep: SweepResult
    rows: tuple[dict, ...]
    analysis: dict | None = None
    figures: tuple[str, ...] = ()
    records: tuple[dict, ...] = field(default=(), repr=False)
    extended: int = 0

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
            "extended": self.extended,
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
        if self.experiment == "E4":
            from .benchmark import analyse as analyse_e4

            return plots.steps_vs_depth(self.analysis or analyse_e4(self.rows), ax=ax, path=path)
        return plots.learning_curves(self.records, ax=ax, path=path, title=self.experiment)


def load_grid(path: str | os.PathLike) -> list[RunConfig]:
    """Run configurations from a JSON file: a list of :class:`RunConfig` field mappings (a
    ``run_id`` key is ignored), such as the ``grid.json`` that :func:`run_experiment` writes.

    Raises ``ValueError`` naming the file and the entry that is not a valid configuration (an
    unknown key is named with the valid ones; a value of the wrong type is named with the type it
    needs).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"grid file {path!r} is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"grid file {path!r} is not UTF-8 text: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"grid file {path!r} must hold a JSON list of run configurations, got "
                         f"{type(data).__name__}")
    if not data:
        raise ValueError(f"grid file {path!r} holds no run configurations")
    out = []
    for i, d in enumerate(data):
        try:
            out.append(RunConfig.from_dict(d))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"grid file {path!r}, entry {i}: {exc}") from None
    return out


def _train_batch(configs: list[RunConfig], store: str) -> list[dict]:
    """The sweep task of one batch of configurations (imports torch in the worker, not in the driver)."""
    from .train import run_batch

    return run_batch(configs, store)


@dataclass
class _Job:
    name: str
    kind: str | None  # the named experiment of every configuration, else None
    out_dir: str
    configs: list[RunConfig]
    initial: list[RunConfig]
    extended: int = 0
    seeds: int = 3  # E4: the reported seeds
    to_budget: bool = True  # E4: the reported runs train for the whole step budget
    named: bool = True  # a named experiment's grid (grows by rounds); False: a list run as given


class _CountBar:
    """The pipeline's bar over the runs of every round: a ``tqdm`` on stderr, none, or one made by
    the caller's ``progress(total=, desc=, unit=)`` (such as the report's ``Context.track``)."""

    def __init__(self, progress: Any, desc: str):
        self.progress, self.desc, self.bar = progress, desc, None

    def open(self, total: int, done: int):
        if self.progress is False or self.progress is None:
            return False
        if self.bar is None:
            if callable(self.progress):
                self.bar = self.progress(total=total, desc=self.desc, unit="run")
            else:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=self.desc, unit="run", mininterval=1.0, dynamic_ncols=True,
                                file=sys.stderr, leave=False)
            self.bar.update(done)
        else:
            self.bar.total = total
            self.bar.refresh()
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_up_front(configs: Sequence[RunConfig], engine: str) -> None:
    """Refuse, before any task starts, what no retry can fix, when the runs are to run on this machine
    (local and sequential engines; a Ray cluster's workers may have devices, data and memory the
    driver lacks): a CUDA or MPS device this machine does not have, a dataset that cannot be loaded
    (each distinct one is loaded once here; only a device check needs torch), and a run that alone
    needs more memory than is available (:func:`isometry.experiments.run_memory`). ``ValueError``."""
    if engine == "ray":
        return
    named = sorted({c.device for c in configs} - {"auto", "cpu"})
    if named:
        from .train import resolve_device

        for device in named:
            resolve_device(device)
    from .._checks import check_fits
    from .data import load_dataset

    for key in sorted({(c.data, c.data_dir, c.data_size, c.data_seed) for c in configs}, key=str):
        ds = load_dataset(key[0], data_dir=key[1], size=key[2], seed=key[3])
        shape = (ds.input_dim, ds.n_classes, len(ds.y_test))
        del ds
        mine = [c for c in configs if (c.data, c.data_dir, c.data_size, c.data_seed) == key]
        worst = max(mine, key=lambda c: run_memory(c, *shape))
        check_fits(run_memory(worst, *shape), f"training run depth={worst.depth}, width={worst.width}",
                   "use a smaller depth or width")


def _run_jobs(jobs: list[_Job], store: str, *, engine: str, max_parallel, max_batch, address, num_cpus, num_gpus,
              retries, progress, desc: str, ray_init, lr_extensions: int, analysis: bool, plots: bool,
              status: Callable[[str], None] | None) -> list[ExperimentResult]:
    """Train the union of the jobs' grids in ``store``, extend the learning-rate grids of the named
    experiments round by round, then write each job's summary, analysis and figure."""
    _check_up_front(list({c.run_id: c for job in jobs for c in job.configs}.values()), engine)
    store = os.path.abspath(store)
    os.makedirs(os.path.join(store, "runs"), exist_ok=True)
    bar = _CountBar(progress, desc)
    sweep: SweepResult | None = None
    workers = workers_for(engine, max_parallel, num_cpus)
    pool = LocalPool(workers, int(num_cpus)) if engine == "local" and workers and workers > 1 else None
    with driver_lock(store), (pool or contextlib.nullcontext()):
        for job in jobs:
            os.makedirs(job.out_dir, exist_ok=True)
            atomic_write_json(os.path.join(job.out_dir, "grid.json"),
                              [c.to_dict() | {"run_id": c.run_id} for c in job.configs])
        try:
            for _round in range(2 + 2 * max(lr_extensions, 0)):
                union = list({c.run_id: c for job in jobs for c in job.configs}.values())
                done_before = sum(1 for r in load_records(store, [c.run_id for c in union]) if valid_record(r))
                b = bar.open(len(union), done_before)
                res = run_tasks(union, _train_batch, store, engine=engine, max_parallel=max_parallel,
                                address=address, num_cpus=num_cpus, num_gpus=num_gpus, retries=retries,
                                progress=b, desc=desc, ray_init=ray_init, lock=False, batch_key=batch_key,
                                max_batch=max_batch, cost=run_cost, valid=valid_record, pool=pool)
                sweep = res if sweep is None else sweep.merge(res)
                added, extended, reported = 0, 0, 0
                for job in jobs:
                    if job.kind is None or not job.named or (lr_extensions <= 0 and job.kind != "E4"):
                        continue
                    recs = [r for r in load_records(store, [c.run_id for c in job.configs]) if valid_record(r)]
                    if len(recs) != len({c.run_id for c in job.configs}):
                        continue  # runs missing: extend once they have finished
                    if job.kind == "E4":  # extensions on the tuning seed, then the reported seeds
                        from .benchmark import next_round

                        new = next_round(job.configs, summary_rows(recs, job.configs), job.initial, seeds=job.seeds,
                                         max_extra=lr_extensions, to_budget=job.to_budget)
                    else:
                        new = extend_learning_rates(job.kind, job.configs, summary_rows(recs, job.configs),
                                                    job.initial, max_extra=lr_extensions)
                    if new:
                        job.configs += new
                        job.extended += len(new)
                        added += len(new)
                        n_rep = sum(1 for c in new if job.kind == "E4" and c.seed != TUNING_SEED)
                        reported += n_rep
                        extended += len(new) - n_rep
                        atomic_write_json(os.path.join(job.out_dir, "grid.json"),
                                          [c.to_dict() | {"run_id": c.run_id} for c in job.configs])
                if not added:
                    break
                if status is not None and extended:
                    status(f"{desc}: learning-rate grids extended by {extended} run(s), one step beyond each best "
                           "rate at a grid edge")
                if status is not None and reported:
                    status(f"{desc}: {reported} run(s) of the reported seeds added at the learning rates chosen on "
                           "the tuning seed")
        finally:
            bar.close()
        results = []
        for job in jobs:
            ids = [c.run_id for c in job.configs]
            records = [r for r in load_records(store, ids) if valid_record(r)]
            rows = summary_rows(records, job.configs)
            write_summary(job.out_dir, rows)
            job_sweep = _job_sweep(sweep, set(ids))
            res, figures = None, ()
            if job.kind is not None and len(rows) == len(set(ids)):
                if analysis:
                    res = analyse(job.kind, rows)
                    atomic_write_json(os.path.join(job.out_dir, "analysis.json"), res)
                    if job.kind == "E4":
                        _write_e4_table(job.out_dir, res)
                if plots:
                    from ..plotting import save_figure

                    tmp = ExperimentResult(job.kind, job.out_dir, job_sweep, tuple(rows), res,
                                           records=tuple(_annotated(records, job.configs)))
                    figures = (save_figure(tmp.plot(), os.path.join(job.out_dir, FIGURES[job.kind])),)
            results.append(ExperimentResult(job.kind or job.name, job.out_dir, job_sweep, tuple(rows), res, figures,
                                            tuple(_annotated(records, job.configs)), job.extended))
    return results


def _write_e4_table(out_dir: str, analysis: dict) -> None:
    """``E4_table.md`` and ``E4_table.csv`` (:func:`isometry.experiments.benchmark.table_rows`)."""
    import csv
    import io

    from .._io import atomic_write_text
    from .benchmark import TABLE_KEYS, markdown_table, table_rows

    atomic_write_text(os.path.join(out_dir, "E4_table.md"), markdown_table(analysis))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(TABLE_KEYS), lineterminator="\n")
    w.writeheader()
    for row in table_rows(analysis):
        w.writerow({k: "" if row[k] is None else (" ".join("-" if t is None else f"{t:g}" for t in row[k])
                                                  if k == "steps_per_seed" else row[k]) for k in TABLE_KEYS})
    atomic_write_text(os.path.join(out_dir, "E4_table.csv"), buf.getvalue())


def _job_sweep(sweep: SweepResult, ids: set[str]) -> SweepResult:
    """The shared call's counts restricted to one job's runs."""
    completed = tuple(r for r in sweep.completed if r in ids)
    failed = {k: v for k, v in sweep.failed.items() if k in ids}
    return SweepResult(engine=sweep.engine, total=len(ids), skipped=len(ids) - len(completed) - len(failed),
                       completed=completed, failed=failed, seconds=sweep.seconds, workers=sweep.workers,
                       batches=sweep.batches)


def _annotated(records: list[dict], configs: Sequence[RunConfig]) -> list[dict]:
    """The records with the ``experiment`` and ``label`` this grid gives them (a shared run's record
    holds those of the grid that trained it first)."""
    names = {c.run_id: (c.experiment, c.label) for c in configs}
    out = []
    for r in records:
        exp, label = names.get(r.get("run_id"), (None, None))
        cfg = dict(r["config"]) | ({"experiment": exp, "label": label} if exp is not None else {})
        out.append(dict(r, config=cfg))
    return out


def _check_extensions(lr_extensions) -> int:
    if isinstance(lr_extensions, bool) or not isinstance(lr_extensions, int) or lr_extensions < 0:
        raise ValueError(f"lr_extensions must be an integer >= 0, got {lr_extensions!r}")
    return lr_extensions


def _grid_options(scale, data, data_dir, seeds, steps, target_accuracy, select=None) -> dict:
    return dict(scale=scale, data=data, data_dir=data_dir, seeds=seeds, steps=steps, target_accuracy=target_accuracy,
                select=select)


def _e4_options(name: str, scale: str, seeds: int | None) -> dict:
    """E4's reported seeds (the scale's unless given) and whether they train for the whole budget."""
    if name != "E4":
        return {}
    from .benchmark import SIZES

    return {"seeds": SIZES[scale].seeds if seeds is None else int(seeds), "to_budget": SIZES[scale].to_budget}


def run_experiment(
    experiment: str | Sequence[RunConfig | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    scale: str = "default",
    data: str | None = None,
    data_dir: str | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    target_accuracy: float | None = None,
    select: Mapping[str, Sequence] | None = None,
    device: str | None = None,
    store: str | os.PathLike | None = None,
    engine: str = "local",
    max_parallel: int | None = None,
    max_batch: int | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 2,
    lr_extensions: int = MAX_EXTRA_RATES,
    analysis: bool = True,
    plots: bool = True,
    progress: Any = True,
    name: str | None = None,
    ray_init: Mapping[str, Any] | None = None,
    status: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Run a training experiment into ``out_dir``, resumably, and summarise it once.

    Args:
        experiment: ``"E1"``, ``"E2"``, ``"E3"`` or ``"E4"`` (the grid of :func:`experiment_grid` at
            ``scale`` with ``data``, ``data_dir``, ``seeds``, ``steps``, ``target_accuracy``,
            ``select``; E4 then adds its reported seeds, :mod:`isometry.experiments.benchmark`), or a list of
            :class:`RunConfig` (or their field mappings), run as given (the grid options then
            raise ``ValueError``).
        out_dir: the output directory (created).
        scale: ``"quick"``, ``"default"``, ``"full"`` or ``"paper"`` (:data:`isometry.experiments.SCALES`).
        device: replaces every run's device (not part of the run id: a grid started on CPUs can
            be finished on GPUs).
        store: the directory whose ``runs/`` holds the records (default ``out_dir``); experiments
            with the same store share runs.
        engine, max_parallel, address, num_cpus, num_gpus, retries, ray_init: how the tasks are
            executed (:func:`isometry.sweeps.run_tasks`): ``"local"`` process pool (default;
            one worker runs them in this process), ``"ray"``, or ``"sequential"`` in this process.
        max_batch: most runs trained together as one batched model (default: about two batches
            per worker, at most 64 runs).
        lr_extensions: most extra learning rates per side of a group's grid when its best rate is
            at an edge (0: none; named experiments only).
        analysis, plots: write ``analysis.json`` and the figure when a named experiment (or a list
            whose configurations all name one experiment) has every run finished.
        progress: a bar over the runs on stderr (True), none (False), or a callable
            ``progress(total=, desc=, unit=)`` returning a ``tqdm``-like bar.
        name: the name shown in progress and results (default: the experiment's).
        status: called with a line of text when the grid is extended.

    Returns:
        An :class:`ExperimentResult`. Runs that raised are listed in ``result.sweep.failed``
        (their records are absent, so the next call retries them).

    Example::

        >>> res = run_experiment("E3", "out/E3", scale="quick", engine="sequential")  # doctest: +SKIP
        >>> res.sweep.total, res.analysis["table"][0]["best_learning_rate"]          # doctest: +SKIP
    """
    check_options(engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                  retries=retries, max_batch=max_batch)
    check_scale(scale)
    _check_extensions(lr_extensions)
    if isinstance(experiment, str):
        configs = experiment_grid(experiment, **_grid_options(scale, data, data_dir, seeds, steps, target_accuracy,
                                                              select))
        label = name or experiment
    else:
        given = {k: v for k, v in dict(data=data, data_dir=data_dir, seeds=seeds, steps=steps,
                                        target_accuracy=target_accuracy, select=select).items() if v is not None}
        if scale != "default":
            given["scale"] = scale
        if given:
            raise ValueError(f"{', '.join(given)} choose a named experiment's grid; a list of configurations is "
                             "run as given")
        if isinstance(experiment, (Mapping, bytes)):
            raise TypeError(f"experiment must be a name or a list of run configurations, got "
                            f"{type(experiment).__name__}")
        configs = [c if isinstance(c, RunConfig) else RunConfig.from_dict(c) for c in experiment]
        if not configs:
            raise ValueError("the list of configurations is empty")
        names = {c.experiment for c in configs}
        label = name or (names.pop() if len(names) == 1 else "custom")
    if device is not None:
        configs = [c.replace(device=device) for c in configs]
    kind = {c.experiment for c in configs}
    kind = kind.pop() if len(kind) == 1 and kind <= set(EXPERIMENTS) else None
    out = os.path.abspath(os.fspath(out_dir))
    job = _Job(label, kind if isinstance(experiment, str) or kind else None, out, list(configs), list(configs),
               named=isinstance(experiment, str), **_e4_options(kind or "", scale, seeds))
    if not isinstance(experiment, str):
        lr_extensions = 0  # a list of configurations is run as given
    (res,) = _run_jobs([job], out if store is None else os.fspath(store), engine=engine, max_parallel=max_parallel,
                       max_batch=max_batch, address=address, num_cpus=num_cpus, num_gpus=num_gpus, retries=retries,
                       progress=progress, desc=label, ray_init=ray_init, lr_extensions=lr_extensions,
                       analysis=analysis, plots=plots, status=status)
    return res


def run_experiments(
    experiments: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    scale: str = "default",
    data: str | None = None,
    data_dir: str | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    target_accuracy: float | None = None,
    select: Mapping[str, Sequence] | None = None,
    device: str | None = None,
    engine: str = "local",
    max_parallel: int | None = None,
    max_batch: int | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 2,
    lr_extensions: int = MAX_EXTRA_RATES,
    analysis: bool = True,
    plots: bool = True,
    progress: Any = True,
    ray_init: Mapping[str, Any] | None = None,
    status: Callable[[str], None] | None = None,
) -> dict[str, ExperimentResult]:
    """Run several named experiments at once, sharing their runs: ``out_dir/runs`` holds every
    record, ``out_dir/<NAME>`` each experiment's ``grid.json``, summary, analysis and figure.

    The union of the grids is trained in one sweep (a run two grids share is trained once, and the
    pool stays busy across experiments); the options are those of :func:`run_experiment`. Returns
    ``{name: ExperimentResult}`` in the order given.

    >>> res = run_experiments(["E1", "E2", "E3"], "out/training", scale="quick")  # doctest: +SKIP
    >>> res["E3"].analysis["table"]                                                # doctest: +SKIP
    """
    check_options(engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                  retries=retries, max_batch=max_batch)
    check_scale(scale)
    _check_extensions(lr_extensions)
    if isinstance(experiments, str):
        experiments = [experiments]
    names = list(dict.fromkeys(experiments))
    if not names:
        raise ValueError(f"experiments must name at least one of {', '.join(EXPERIMENTS)}")
    for n in names:
        if n not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {n!r}")
    out = os.path.abspath(os.fspath(out_dir))
    jobs = []
    for n in names:
        configs = experiment_grid(n, **_grid_options(scale, data, data_dir, seeds, steps, target_accuracy, select))
        if device is not None:
            configs = [c.replace(device=device) for c in configs]
        jobs.append(_Job(n, n, os.path.join(out, n), list(configs), list(configs),
                         **_e4_options(n, scale, seeds)))
    results = _run_jobs(jobs, out, engine=engine, max_parallel=max_parallel, max_batch=max_batch, address=address,
                        num_cpus=num_cpus, num_gpus=num_gpus, retries=retries, progress=progress,
                        desc="+".join(names), ray_init=ray_init, lr_extensions=lr_extensions, analysis=analysis,
                        plots=plots, status=status)
    return dict(zip(names, results))

