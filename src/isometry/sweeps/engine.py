"""Run a grid of independent, resumable tasks on a local process pool or a Ray cluster.

A *run* is a picklable configuration with a stable id (``config.run_id``, or for a mapping
``config["run_id"]``, else a hash of its JSON); a top-level function ``fn(config, out_dir) ->
record`` writes the record of that run atomically to ``out_dir/runs/<run_id>.json`` (the layout
of :mod:`isometry.sweeps.records`). With ``batch_key``, runs with the same key are grouped into
*batches* (at most ``max_batch`` runs each) and ``fn(list_of_configs, out_dir) -> list_of_records``
runs a whole batch in one task (the training experiments train a batch as one stacked model).

The driver

1. drops duplicate ids and every id whose record already exists (and passes ``valid``), so
   re-running the same sweep resumes and never runs a finished configuration again;
2. runs the rest as independent tasks, the most expensive first (``cost``): ``engine="local"``
   on a ``spawn`` process pool (:mod:`concurrent.futures`, no Ray needed; with one worker, in
   this process), ``engine="ray"`` as Ray core tasks with the stated resources
   (``num_cpus``/``num_gpus`` per task), or ``engine="sequential"`` one after the other in this
   process;
3. when a task returns, makes sure each record is present in the driver's ``out_dir`` (a worker
   on another node without a shared file system wrote it on its own disk; the driver then writes
   the returned record atomically itself);
4. shows a bar over the runs (with an ETA), advanced as each run's record appears (a batch
   writes its runs' records as they finish).

What a crash loses: every finished run is a complete file under its final name (temp file +
rename), so a killed worker, a killed driver (``kill -9``) or a restarted cluster loses at most the
runs in flight; a run that happens to finish twice rewrites the same file atomically, so there are
never two records of one run. Workers of the local pool exit when their driver dies.

Nothing here imports torch: the driver of a sweep of training runs needs only the record layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from .records import check_run_id, load_record, run_path, write_record

ENGINES = ("local", "ray", "sequential")

TaskFn = Callable[[Any, str], Any]


@dataclass(frozen=True)
class SweepResult:
    """What one call of :func:`run_tasks` did.

    ``total``: distinct runs in the grid; ``skipped``: already finished before the call;
    ``completed``: ids finished by this call; ``failed``: id -> error message (their records are
    absent, so the next call retries them); ``seconds``: wall time of the call; ``workers``: the
    number of tasks allowed in flight at once (``None``: as many as the Ray cluster's resources fit);
    ``batches``: the number of tasks (batches of runs, or single runs) started.
    """

    engine: str
    total: int
    skipped: int
    completed: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int | None = None
    batches: int = 0

    @property
    def runs_per_minute(self) -> float:
        """Runs finished by this call per minute of wall time (0 when none ran)."""
        n = len(self.completed)
        return 60.0 * n / self.seconds if n and self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "total": self.total,
            "skipped": self.skipped,
            "completed": len(self.completed),
            "failed": dict(self.failed),
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "batches": self.batches,
            "runs_per_minute": round(self.runs_per_minute, 3),
        }

    def merge(self, later: "SweepResult") -> "SweepResult":
        """This call followed by ``later``, a call on the same directory with a grid that contains
        this one's (a grid extended between them): the runs of the final grid, those finished before
        the first call, the runs either call completed, ``later``'s failures, the times added."""
        return SweepResult(engine=later.engine, total=later.total, skipped=self.skipped,
                           completed=tuple(dict.fromkeys(self.completed + later.completed)),
                           failed=dict(later.failed), seconds=self.seconds + later.seconds,
                           workers=later.workers, batches=self.batches + later.batches)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex SHA-256 of ``obj`` as canonical JSON (sorted keys), truncated to ``length`` digits."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_key(config: Any) -> str:
    """The stable id of a task: ``config.run_id``, ``config["run_id"]``, or :func:`stable_hash`."""
    rid = getattr(config, "run_id", None)
    if rid is None and isinstance(config, Mapping):
        rid = config.get("run_id")
    if rid is None:
        if not isinstance(config, Mapping):
            raise ValueError(
                f"config must have a run_id or be a JSON-able mapping, got {type(config).__name__}")
        rid = stable_hash(dict(config))
    return check_run_id(rid)


def _ensure_record(out_dir: str, run_id: str, record: Any, valid: Callable[[dict], bool] | None = None) -> None:
    """Write ``record`` on the driver's side when the worker's copy is not visible here (or what is
    here does not pass ``valid``)."""
    if _finished(out_dir, run_id, valid) or not isinstance(record, Mapping):
        return
    rec = {k: v for k, v in record.items() if k != "skipped"}
    if rec.get("run_id") != run_id:
        raise RuntimeError(f"task for run {run_id} returned a record of run {rec.get('run_id')!r}")
    write_record(out_dir, rec)


# ----------------------------------------------------------------------------------- workers


def _limit_threads(n: int) -> None:
    """Cap BLAS/OpenMP/torch threads of this worker at ``n`` (the CPUs it was given)."""
    n = max(int(n), 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except Exception:  # pragma: no cover  # noqa: BLE001
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _execute(fn: TaskFn, config: Any, out_dir: str, threads: int) -> Any:
    """Run one task in a worker (local pool or Ray)."""
    _limit_threads(threads)
    return fn(config, out_dir)


def _watch_parent(parent_pid: int, period: float = 0.5) -> None:
    while True:
        time.sleep(period)
        if os.getppid() != parent_pid:  # the driver died (we were re-parented): stop at once
            os._exit(70)


def _local_worker_init(parent_pid: int, threads: int) -> None:
    _limit_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="watch-driver").start()


# ------------------------------------------------------------------------------------ driver


class _Bar:
    """The bar over the runs: a ``tqdm`` bar on stderr (``progress=True``), nothing (``False``), or a
    bar-like object the caller owns (anything with ``update(n)``; left open)."""

    def __init__(self, progress: Any, total: int, initial: int, desc: str):
        self._lock = threading.Lock()
        if progress is True or progress is False:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not progress,
                            mininterval=1.0, dynamic_ncols=True, file=sys.stderr, leave=False)
            self.owned = True
        elif hasattr(progress, "update"):
            self.bar, self.owned = progress, False
        else:
            raise ValueError(f"progress must be True, False or a progress bar (with update()), got {progress!r}")

    def update(self, n: int) -> None:
        if n:
            with self._lock:
                self.bar.update(n)

    def close(self) -> None:
        if self.owned:
            self.bar.close()


class _Watcher:
    """Counts on the bar each run of the tasks in flight as soon as its record file appears (a batch
    writes its runs' records one by one), polling ``out_dir/runs`` every ``period`` seconds."""

    def __init__(self, out_dir: str, bar: _Bar, period: float = 0.5):
        self.out_dir, self.bar, self.period = out_dir, bar, period
        self.watched: set[str] = set()
        self.counted: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="watch-records")

    def __enter__(self) -> "_Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, rids: Iterable[str]) -> None:
        with self._lock:
            self.watched.update(rids)

    def count(self, rids: Iterable[str]) -> None:
        """Count ``rids`` as finished now (if not already)."""
        with self._lock:
            new = [r for r in rids if r not in self.counted]
            self.counted.update(new)
            self.watched.difference_update(new)
        self.bar.update(len(new))

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                pending = list(self.watched)
            self.count([r for r in pending if os.path.exists(run_path(self.out_dir, r))])


def _check_int(name: str, value: Any, lo: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{' or None' if allow_none else ''}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finished(out_dir: str, rid: str, valid: Callable[[dict], bool] | None) -> bool:
    rec = load_record(out_dir, rid)
    return rec is not None and (valid is None or bool(valid(rec)))


def pending_tasks(configs: Iterable[Any], out_dir: str | os.PathLike, key: Callable[[Any], str] = run_key,
                  valid: Callable[[dict], bool] | None = None) -> tuple[list[tuple[str, Any]], int, int]:
    """``(todo, n_distinct, n_done)``: the distinct configs without a finished record, in grid order
    (a record counts as finished when it exists, names its run and passes ``valid``)."""
    seen: set[str] = set()
    todo, n_done = [], 0
    for cfg in configs:
        rid = key(cfg)
        if rid in seen:
            continue
        seen.add(rid)
        if _finished(os.fspath(out_dir), rid, valid):
            n_done += 1
        else:
            todo.append((rid, cfg))
    return todo, len(seen), n_done


def check_options(engine: str = "local", *, max_parallel: int | None = None, address: str | None = None,
                  num_cpus: float = 1, num_gpus: float = 0, retries: int = 2, max_batch: int | None = None) -> None:
    """Raise ``ValueError`` naming the first invalid execution option of :func:`run_tasks`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    _check_int("max_parallel", max_parallel, 1, allow_none=True)
    _check_int("max_batch", max_batch, 1, allow_none=True)
    _check_int("retries", retries, 0)
    if not (_is_number(num_cpus) and math.isfinite(num_cpus) and num_cpus > 0):
        raise ValueError(f"num_cpus must be a finite number > 0, got {num_cpus!r}")
    if not (_is_number(num_gpus) and math.isfinite(num_gpus) and num_gpus >= 0):
        raise ValueError(f"num_gpus must be a finite number >= 0, got {num_gpus!r}")
    if engine != "ray" and address is not None:
        raise ValueError(f"address is for engine='ray' only, got address={address!r} with engine={engine!r}")
    if engine != "ray" and num_gpus > 0:
        raise ValueError(f"num_gpus is for engine='ray' only (the {engine} engine does not assign GPUs; set each "
                         f"run's device instead), got num_gpus={num_gpus!r}")


def workers_for(engine: str, max_parallel: int | None = None, num_cpus: float = 1) -> int | None:
    """Tasks in flight at once: 1 for ``sequential``; ``max_parallel``, else CPUs / ``num_cpus``, for
    ``local``; ``max_parallel`` (None: what the cluster fits) for ``ray``."""
    if engine == "sequential":
        return 1
    if engine == "local":
        return max_parallel or max(1, (os.cpu_count() or 1) // max(1, int(num_cpus)))
    return max_parallel


#: The largest batch :func:`plan_batches` makes unless told otherwise.
MAX_BATCH = 64


def plan_batches(todo: Sequence[tuple[str, Any]], batch_key: Callable[[Any], Any] | None,
                 max_batch: int | None = None, workers: int | None = 1,
                 cost: Callable[[Any], float] | None = None) -> list[tuple[list[str], Any]]:
    """The tasks of ``todo`` (``(run_id, config)`` pairs): ``(run_ids, payload)``, most expensive first.

    Without ``batch_key`` every run is its own task (payload: its config). With it, runs with equal
    keys form batches (payload: the list of their configs) of at most ``max_batch`` runs (default:
    enough batches to keep ``workers`` busy, about two per worker, but at most :data:`MAX_BATCH`
    runs each), split evenly. Tasks are ordered by their summed ``cost`` (largest first), which keeps
    the pool busy to the end.
    """
    if batch_key is None:
        tasks = [([rid], cfg) for rid, cfg in todo]
    else:
        groups: dict[Any, list[tuple[str, Any]]] = {}
        for rid, cfg in todo:
            groups.setdefault(batch_key(cfg), []).append((rid, cfg))
        if max_batch is None:
            max_batch = MAX_BATCH
            if workers and workers > 1:
                max_batch = max(1, min(MAX_BATCH, math.ceil(len(todo) / (2 * workers))))
        tasks = []
        for members in groups.values():
            n_parts = math.ceil(len(members) / max_batch)
            size = math.ceil(len(members) / n_parts)
            for i in range(0, len(members), size):
                part = members[i: i + size]
                tasks.append(([rid for rid, _ in part], [cfg for _, cfg in part]))
    if cost is not None:
        def task_cost(task):
            payload = task[1]
            return sum(cost(c) for c in payload) if batch_key is not None else cost(payload)

        tasks.sort(key=task_cost, reverse=True)
    return tasks


def run_tasks(
    configs: Sequence[Any],
    fn: TaskFn,
    out_dir: str | os.PathLike,
    *,
    engine: str = "local",
    max_parallel: int | None = None,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    retries: int = 2,
    key: Callable[[Any], str] = run_key,
    progress: Any = True,
    desc: str = "runs",
    ray_init: Mapping[str, Any] | None = None,
    lock: bool = True,
    batch_key: Callable[[Any], Any] | None = None,
    max_batch: int | None = None,
    cost: Callable[[Any], float] | None = None,
    valid: Callable[[dict], bool] | None = None,
    pool: "LocalPool | None" = None,
) -> SweepResult:
    """Run every config whose record is absent, as independent tasks; resumable.

    ``fn(config, out_dir) -> record``, or with ``batch_key`` ``fn(configs, out_dir) -> records``
    for batches of runs with the same key (:func:`plan_batches`: at most ``max_batch`` runs each,
    ordered by ``cost``, largest first). ``valid(record) -> bool``: whether a stored record counts
    as finished (default: any record naming its run).

    ``engine``: ``"local"`` (a ``spawn`` process pool of ``max_parallel`` workers, default
    ``cpu_count // num_cpus``; with one worker the tasks go one after the other in this process, as
    with ``"sequential"``), ``"ray"`` (Ray core tasks, each asking for ``num_cpus`` CPUs and
    ``num_gpus`` GPUs; at most ``max_parallel`` in flight, default: as many as the cluster fits)
    or ``"sequential"`` (in this process, with its thread settings; a run that crashes the
    process ends the sweep, which the next call resumes).
    With Ray, ``address=None`` starts a local cluster (``ray.init()``), ``"auto"`` or
    ``"ray://host:10001"``/``"host:6379"`` joins a running one; if Ray is already initialised in
    this process it is used as it is and left running, otherwise it is shut down at the end.
    ``retries``: how often a task whose worker died (not one that raised) is started again.
    Each pool or Ray worker caps its BLAS/torch threads at ``max(1, int(num_cpus))``. ``lock``: hold
    :class:`driver_lock` on ``out_dir`` meanwhile (``False`` when the caller already holds it).
    ``progress``: a bar over the runs on stderr (``True``), none (``False``), or the caller's own
    bar (any object with ``update(n)``, e.g. a ``tqdm``), advanced as records appear.
    ``pool``: a :class:`LocalPool` to run the local engine's tasks on (kept across calls; used
    when its workers and threads match this call's).

    A task that raises is reported in ``SweepResult.failed`` (every run of it without a record)
    and the sweep goes on; the next call retries it. Example::

        >>> res = run_tasks(configs, run_one, "out/E2", engine="local", max_parallel=2)  # doctest: +SKIP
        >>> res.total, res.skipped, len(res.completed), res.failed                       # doctest: +SKIP
    """
    check_options(engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                  retries=retries, max_batch=max_batch)
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    with driver_lock(out_dir, enabled=lock):
        return _run_tasks_locked(configs, fn, out_dir, engine, max_parallel, address, num_cpus, num_gpus, retries,
                                 key, progress, desc, ray_init, batch_key, max_batch, cost, valid, pool)


class driver_lock:
    """Exclusive advisory lock on ``out_dir/.sweep.lock`` for one driver at a time (POSIX ``flock``;
    the kernel drops it when the driver dies, even by ``kill -9``). A second driver on the same
    directory gets a ``ValueError`` instead of running the same configs again."""

    def __init__(self, out_dir: str | os.PathLike, enabled: bool = True):
        self.path = os.path.join(os.fspath(out_dir), ".sweep.lock")
        self.enabled = enabled
        self.fd: int | None = None

    def __enter__(self) -> "driver_lock":
        if not self.enabled:
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover  (no flock on Windows: run without the lock)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise ValueError(f"out_dir {os.path.dirname(self.path)!r} is in use by another sweep driver "
                             f"(pid {holder}); wait for it or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


class _Tally:
    """Completed and failed runs of one call, and the watcher that advances the bar."""

    def __init__(self, out_dir: str, valid, watcher: _Watcher):
        self.out_dir, self.valid, self.watcher = out_dir, valid, watcher
        self.completed: list[str] = []
        self.failed: dict[str, str] = {}

    def finish(self, rids: list[str], result: Any, batched: bool) -> None:
        """A task returned ``result`` (a record, or a list of records for a batch)."""
        recs = result if batched else [result]
        by_id = {}
        if isinstance(recs, Sequence) and not isinstance(recs, (str, bytes)):
            by_id = {r.get("run_id"): r for r in recs if isinstance(r, Mapping)}
        if not batched and len(rids) == 1 and isinstance(result, Mapping) and result.get("run_id") != rids[0]:
            self.failed[rids[0]] = (f"RuntimeError: task for run {rids[0]} returned a record of run "
                                    f"{result.get('run_id')!r}")
            return
        for rid in rids:
            try:
                _ensure_record(self.out_dir, rid, by_id.get(rid), self.valid)
            except Exception as exc:  # noqa: BLE001
                self.failed[rid] = f"{type(exc).__name__}: {exc}"
                continue
            if _finished(self.out_dir, rid, self.valid):
                self.completed.append(rid)
                self.failed.pop(rid, None)
            else:
                self.failed[rid] = "the task returned without a finished record of this run"
        self.watcher.count([r for r in rids if r in self.completed])

    def fail(self, rids: list[str], message: str) -> None:
        """A task raised: its runs that finished before count, the others failed."""
        done = [r for r in rids if _finished(self.out_dir, r, self.valid)]
        self.completed.extend(done)
        for rid in rids:
            if rid not in done:
                self.failed[rid] = message
        self.watcher.count(done)


def _run_tasks_locked(configs, fn, out_dir, engine, max_parallel, address, num_cpus, num_gpus, retries, key,
                      progress, desc, ray_init, batch_key, max_batch, cost, valid, pool) -> SweepResult:
    t0 = time.perf_counter()
    todo, total, n_done = pending_tasks(configs, out_dir, key, valid)
    threads = max(1, int(num_cpus))
    workers = workers_for(engine, max_parallel, num_cpus)
    tasks = plan_batches(todo, batch_key, max_batch, workers, cost)
    batched = batch_key is not None
    bar = _Bar(progress, total, n_done, desc)
    try:
        with _Watcher(out_dir, bar) as watcher:
            tally = _Tally(out_dir, valid, watcher)
            if engine == "sequential" or (engine == "local" and workers == 1):
                _run_sequential(tasks, fn, out_dir, tally, batched)
            elif engine == "local":
                if tasks:
                    _run_local(tasks, fn, out_dir, workers, threads, retries, tally, batched, pool)
            elif tasks:
                _run_ray(tasks, fn, out_dir, workers, address, num_cpus, num_gpus, threads, retries, tally,
                         batched, ray_init)
    finally:
        bar.close()
    return SweepResult(engine=engine, total=total, skipped=n_done, completed=tuple(dict.fromkeys(tally.completed)),
                       failed=tally.failed, seconds=time.perf_counter() - t0, workers=workers, batches=len(tasks))


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _run_sequential(tasks, fn, out_dir, tally: _Tally, batched: bool) -> None:
    for rids, payload in tasks:
        tally.watcher.watch(rids)
        try:
            result = fn(payload, out_dir)
        except Exception as exc:  # noqa: BLE001  (reported; the next call retries it)
            tally.fail(rids, _message(exc))
        else:
            tally.finish(rids, result, batched)


class LocalPool:
    """A ``spawn`` process pool kept for several :func:`run_tasks` calls (``pool=``), so the workers'
    imports are paid once (a pipeline that extends its grid runs several rounds). Use it as a
    context manager; the workers start on first use, with ``threads`` BLAS/torch threads each, and
    exit when it closes or their driver dies. A worker that dies takes the pool with it: the next
    round starts a fresh one."""

    def __init__(self, workers: int, threads: int = 1):
        _check_int("workers", workers, 1)
        self.workers, self.threads = workers, max(1, int(threads))
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_local_worker_init, initargs=(os.getpid(), self.threads))
        return self._pool

    def discard(self, wait: bool = True) -> None:
        """Shut the current workers down (a fresh pool starts on the next use)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "LocalPool":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.discard(wait=exc_type is None)


def _run_local(tasks, fn, out_dir, workers, threads, retries, tally: _Tally, batched: bool,
               pool: LocalPool | None = None) -> None:
    own = pool is None or pool.workers != workers or pool.threads != threads
    if own:
        pool = LocalPool(min(workers, len(tasks)), threads)
    crashes: dict[int, int] = {}
    queue = list(enumerate(tasks))
    try:
        while queue:
            executor = pool.executor()
            futures = {}
            for tid, (rids, payload) in queue:
                futures[executor.submit(_execute, fn, payload, out_dir, threads)] = (tid, rids, payload)
                tally.watcher.watch(rids)
            queue = []
            broken = False
            not_done = set(futures)
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for fut in done:
                    tid, rids, payload = futures[fut]
                    try:
                        result = fut.result()
                    except BrokenProcessPool:  # a worker died (killed, out of memory): run again
                        broken = True
                        crashes[tid] = crashes.get(tid, 0) + 1
                        left = [r for r in rids if not _finished(out_dir, r, tally.valid)]
                        tally.completed.extend(r for r in rids if r not in left)
                        tally.watcher.count([r for r in rids if r not in left])
                        if crashes[tid] <= retries and left:
                            queue.append((tid, (rids, payload)))
                        elif left:
                            for rid in left:
                                tally.failed[rid] = f"worker died {crashes[tid]} times"
                    except Exception as exc:  # noqa: BLE001
                        tally.fail(rids, _message(exc))
                    else:
                        tally.finish(rids, result, batched)
            if broken:
                pool.discard()
    except BaseException:
        pool.discard(wait=False)
        raise
    finally:
        if own:
            pool.discard()


def import_ray():
    """``import ray``, or a ``ModuleNotFoundError`` that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ModuleNotFoundError(
            "engine='ray' needs Ray: pip install \"isometry[ray]\" (or \"isometry[all]\")") from exc
    return ray


def check_ray_address(address: str | None, timeout: float = 10.0) -> None:
    """Fail fast (``ConnectionError``) when a ``HOST:PORT`` Ray address accepts no TCP connection;
    ``ray.init`` itself would retry for minutes. ``None``, ``"auto"``, ``"local"`` and ``ray://``
    addresses are left to Ray."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address must be 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    import socket

    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"no Ray cluster reachable at {address} ({exc}); start one with "
                              f"'ray start --head' or check the address") from None


def _run_ray(tasks, fn, out_dir, max_parallel, address, num_cpus, num_gpus, threads, retries, tally: _Tally,
             batched: bool, ray_init) -> None:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        check_ray_address(address)
        kwargs = {"log_to_driver": False}
        kwargs.update(ray_init or {})
        ray.init(address=address, **kwargs)
        started = True
    try:
        task = ray.remote(_execute).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries,
                                            retry_exceptions=False, name="isometry-run")
        fn_ref = ray.put(fn)
        queue = list(reversed(tasks))
        inflight: dict[Any, list[str]] = {}
        while queue or inflight:
            while queue and (max_parallel is None or len(inflight) < max_parallel):
                rids, payload = queue.pop()
                inflight[task.remote(fn_ref, payload, out_dir, threads)] = rids
                tally.watcher.watch(rids)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                rids = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the task raised
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    text = str(cause).strip()
                    tally.fail(rids, f"{type(cause).__name__}: {text.splitlines()[-1] if text else ''}")
                except ray.exceptions.RayError as exc:  # worker/node died after all retries
                    text = str(exc).strip()
                    tally.fail(rids, f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")
                else:
                    tally.finish(rids, result, batched)
    finally:
        if started:
            ray.shutdown()
