"""Run a grid of independent, resumable tasks on a local process pool or a Ray cluster.

A *task* is a picklable configuration with a stable id (``config.run_id``, or for a mapping
``config["run_id"]``, else a hash of its JSON) and a top-level function
``fn(config, out_dir) -> record`` that writes the record of that run atomically to
``out_dir/runs/<run_id>.json`` (the layout of :mod:`isometry.sweeps.records`).

The driver

1. drops duplicate ids and every id whose record already exists (so re-running the same sweep
   resumes and never runs a finished configuration again);
2. runs the rest as independent tasks: ``engine="local"`` on a ``spawn`` process pool
   (:mod:`concurrent.futures`, no Ray needed; with one worker, in this process),
   ``engine="ray"`` as Ray core tasks with the stated resources (``num_cpus``/``num_gpus`` per
   run), or ``engine="sequential"`` one after the other in this process;
3. when a task returns, makes sure the record is present in the driver's ``out_dir`` (a worker on
   another node without a shared file system wrote it on its own disk; the driver then writes the
   returned record atomically itself).

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

from .records import check_run_id, load_record, record_exists, write_record

ENGINES = ("local", "ray", "sequential")

TaskFn = Callable[[Any, str], Mapping[str, Any]]


@dataclass(frozen=True)
class SweepResult:
    """What one call of :func:`run_tasks` did.

    ``total``: distinct runs in the grid; ``skipped``: already finished before the call;
    ``completed``: ids finished by this call; ``failed``: id -> error message (their records are
    absent, so the next call retries them); ``seconds``: wall time of the call; ``workers``: the
    number of runs allowed in flight at once (``None``: as many as the Ray cluster's resources fit).
    """

    engine: str
    total: int
    skipped: int
    completed: tuple[str, ...]
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int | None = None

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
            "runs_per_minute": round(self.runs_per_minute, 3),
        }


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


def _ensure_record(out_dir: str, run_id: str, record: Any) -> None:
    """Write ``record`` on the driver's side when the worker's copy is not visible here."""
    if load_record(out_dir, run_id) is not None or not isinstance(record, Mapping):
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


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not enabled, mininterval=1.0,
                dynamic_ncols=True)


def _check_int(name: str, value: Any, lo: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{' or None' if allow_none else ''}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pending_tasks(configs: Iterable[Any], out_dir: str | os.PathLike,
                  key: Callable[[Any], str] = run_key) -> tuple[list[tuple[str, Any]], int, int]:
    """``(todo, n_distinct, n_done)``: the distinct configs whose record is absent, in grid order."""
    seen: set[str] = set()
    todo, n_done = [], 0
    for cfg in configs:
        rid = key(cfg)
        if rid in seen:
            continue
        seen.add(rid)
        if record_exists(out_dir, rid):
            n_done += 1
        else:
            todo.append((rid, cfg))
    return todo, len(seen), n_done


def check_options(engine: str = "local", *, max_parallel: int | None = None, address: str | None = None,
                  num_cpus: float = 1, num_gpus: float = 0, retries: int = 2) -> None:
    """Raise ``ValueError`` naming the first invalid execution option of :func:`run_tasks`."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    _check_int("max_parallel", max_parallel, 1, allow_none=True)
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
    progress: bool = True,
    desc: str = "runs",
    ray_init: Mapping[str, Any] | None = None,
    lock: bool = True,
) -> SweepResult:
    """Run ``fn(config, out_dir)`` for every config whose record is absent; resumable.

    ``engine``: ``"local"`` (a ``spawn`` process pool of ``max_parallel`` workers, default
    ``cpu_count // num_cpus``; with one worker the runs go one after the other in this process, as
    with ``"sequential"``), ``"ray"`` (Ray core tasks, each asking for ``num_cpus`` CPUs and
    ``num_gpus`` GPUs; at most ``max_parallel`` in flight, default: as many as the cluster fits)
    or ``"sequential"`` (in this process, with its thread settings; a run that crashes the
    process ends the sweep, which the next call resumes).
    With Ray, ``address=None`` starts a local cluster (``ray.init()``), ``"auto"`` or
    ``"ray://host:10001"``/``"host:6379"`` joins a running one; if Ray is already initialised in
    this process it is used as it is and left running, otherwise it is shut down at the end.
    ``retries``: how often a run whose worker died (not one that raised) is started again.
    Each pool or Ray worker caps its BLAS/torch threads at ``max(1, int(num_cpus))``. ``lock``: hold
    :class:`driver_lock` on ``out_dir`` meanwhile (``False`` when the caller already holds it).

    A task that raises is reported in ``SweepResult.failed`` and the sweep goes on; the next call
    retries it. Example::

        >>> res = run_tasks(configs, run_one, "out/E2", engine="local", max_parallel=2)  # doctest: +SKIP
        >>> res.total, res.skipped, len(res.completed), res.failed                       # doctest: +SKIP
    """
    check_options(engine, max_parallel=max_parallel, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                  retries=retries)
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    with driver_lock(out_dir, enabled=lock):
        return _run_tasks_locked(configs, fn, out_dir, engine, max_parallel, address, num_cpus, num_gpus, retries,
                                 key, progress, desc, ray_init)


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


def _run_tasks_locked(configs, fn, out_dir, engine, max_parallel, address, num_cpus, num_gpus, retries, key,
                      progress, desc, ray_init) -> SweepResult:
    t0 = time.perf_counter()
    todo, total, n_done = pending_tasks(configs, out_dir, key)
    threads = max(1, int(num_cpus))
    completed: list[str] = []
    failed: dict[str, str] = {}
    with _progress(total, n_done, desc, progress) as bar:
        if engine == "sequential":
            workers = 1
            _run_sequential(todo, fn, out_dir, completed, failed, bar)
        elif engine == "local":
            workers = max_parallel or max(1, (os.cpu_count() or 1) // threads)
            if workers == 1:
                _run_sequential(todo, fn, out_dir, completed, failed, bar)
            elif todo:
                _run_local(todo, fn, out_dir, workers, threads, retries, completed, failed, bar)
        else:
            workers = max_parallel
            if todo:
                _run_ray(todo, fn, out_dir, workers, address, num_cpus, num_gpus, threads, retries,
                         completed, failed, bar, ray_init)
    return SweepResult(engine=engine, total=total, skipped=n_done, completed=tuple(completed),
                       failed=failed, seconds=time.perf_counter() - t0, workers=workers)


def _finish(out_dir: str, rid: str, record: Any, completed: list, failed: dict, bar) -> None:
    try:
        _ensure_record(out_dir, rid, record)
    except Exception as exc:  # noqa: BLE001
        failed[rid] = f"{type(exc).__name__}: {exc}"
        return
    completed.append(rid)
    bar.update(1)


def _run_sequential(todo, fn, out_dir, completed, failed, bar) -> None:
    for rid, cfg in todo:
        try:
            record = fn(cfg, out_dir)
        except Exception as exc:  # noqa: BLE001  (reported; the next call retries it)
            failed[rid] = f"{type(exc).__name__}: {exc}"
        else:
            _finish(out_dir, rid, record, completed, failed, bar)


def _run_local(todo, fn, out_dir, workers, threads, retries, completed, failed, bar) -> None:
    ctx = multiprocessing.get_context("spawn")
    crashes: dict[str, int] = {}
    queue = list(todo)
    while queue:
        pool = ProcessPoolExecutor(max_workers=min(workers, len(queue)), mp_context=ctx,
                                   initializer=_local_worker_init, initargs=(os.getpid(), threads))
        futures = {pool.submit(_execute, fn, cfg, out_dir, threads): (rid, cfg) for rid, cfg in queue}
        queue = []
        try:
            not_done = set(futures)
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for fut in done:
                    rid, cfg = futures[fut]
                    try:
                        record = fut.result()
                    except BrokenProcessPool:  # a worker died (killed, out of memory): run again
                        crashes[rid] = crashes.get(rid, 0) + 1
                        if crashes[rid] <= retries:
                            queue.append((rid, cfg))
                        else:
                            failed[rid] = f"worker died {crashes[rid]} times"
                    except Exception as exc:  # noqa: BLE001
                        failed[rid] = f"{type(exc).__name__}: {exc}"
                    else:
                        _finish(out_dir, rid, record, completed, failed, bar)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


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


def _run_ray(todo, fn, out_dir, max_parallel, address, num_cpus, num_gpus, threads, retries,
             completed, failed, bar, ray_init) -> None:
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
        queue = list(reversed(todo))
        inflight: dict[Any, str] = {}
        while queue or inflight:
            while queue and (max_parallel is None or len(inflight) < max_parallel):
                rid, cfg = queue.pop()
                inflight[task.remote(fn_ref, cfg, out_dir, threads)] = rid
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                rid = inflight.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the task raised
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    failed[rid] = f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}"
                except ray.exceptions.RayError as exc:  # worker/node died after all retries
                    failed[rid] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                else:
                    _finish(out_dir, rid, record, completed, failed, bar)
    finally:
        if started:
            ray.shutdown()
