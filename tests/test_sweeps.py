"""Sweeps: local, sequential and Ray engines, identical results, resume after kill -9, no duplicates,
a torch-free driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from isometry.sweeps import SweepResult, run_key, run_tasks, stable_hash

# ---------------------------------------------------------------- a tiny generic task (no torch)


def fake_task(config: dict, out_dir: str) -> dict:
    """Deterministic toy run: writes its record atomically like run_one (temp file + rename), without
    importing torch; can raise or kill its worker on demand."""
    rid = run_key(config)
    if config.get("fail"):
        raise ValueError(f"bad config {config['x']}")
    marker = os.path.join(out_dir, f"crashed-{rid}")
    if config.get("crash_once") and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)  # the worker dies mid-run
    rec = {"run_id": rid, "config": dict(config), "value": config["x"] ** 2, "pid": os.getpid()}
    if config.get("elsewhere"):  # as on another node without a shared file system
        out_dir = config["elsewhere"]
    path = os.path.join(out_dir, "runs", f"{rid}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp-{os.getpid()}", "w") as fh:
        json.dump(rec, fh)
    os.replace(f"{path}.tmp-{os.getpid()}", path)
    return rec


def _runs(out_dir) -> list[str]:
    return sorted(os.listdir(os.path.join(out_dir, "runs")))


def test_run_key_and_bad_input(tmp_path):
    assert run_key({"b": 1, "a": 2}) == run_key({"a": 2, "b": 1}) == stable_hash({"a": 2, "b": 1})
    assert run_key({"run_id": "abc", "x": 1}) == "abc"
    with pytest.raises(ValueError, match="engine"):
        run_tasks([{"x": 1}], fake_task, tmp_path, engine="dask")
    with pytest.raises(ValueError, match="max_parallel"):
        run_tasks([{"x": 1}], fake_task, tmp_path, max_parallel=0)
    with pytest.raises(ValueError, match="num_gpus"):
        run_tasks([{"x": 1}], fake_task, tmp_path, num_gpus=-1)
    with pytest.raises(ValueError, match="num_gpus is for engine='ray' only"):
        run_tasks([{"x": 1}], fake_task, tmp_path, num_gpus=1)
    with pytest.raises(ValueError, match="num_cpus"):
        run_tasks([{"x": 1}], fake_task, tmp_path, num_cpus=True)
    with pytest.raises(ValueError, match="address"):
        run_tasks([{"x": 1}], fake_task, tmp_path, address="auto")
    with pytest.raises(ValueError, match="address"):
        run_tasks([{"x": 1}], fake_task, tmp_path, engine="sequential", address="auto")
    with pytest.raises(ValueError, match="run id"):
        run_key({"run_id": "../x"})


def test_local_engine_skips_dedups_retries_crashes_and_reports_failures(tmp_path):
    out = str(tmp_path)
    grid = [{"x": i} for i in range(5)] + [{"x": 1}]  # a duplicate of x=1
    grid += [{"x": 10, "crash_once": True}, {"x": 11, "fail": True}, {"x": 12, "elsewhere": str(tmp_path / "node2")}]
    fake_task({"x": 0}, out)  # finished before the sweep: skipped, not rewritten
    before = os.stat(os.path.join(out, "runs", f"{run_key({'x': 0})}.json")).st_mtime_ns
    res = run_tasks(grid, fake_task, out, engine="local", max_parallel=2, progress=False)
    assert isinstance(res, SweepResult)
    assert (res.total, res.skipped) == (8, 1)
    # the crashed worker's run was started again; the one that raised is reported, not written;
    # the record written on "another node" was written here by the driver from the returned record
    assert sorted(res.completed) == sorted(run_key(c) for c in grid[1:5] + [grid[6], grid[8]])
    assert list(res.failed) == [run_key(grid[7])] and "ValueError: bad config 11" in res.failed[run_key(grid[7])]
    assert os.stat(os.path.join(out, "runs", f"{run_key({'x': 0})}.json")).st_mtime_ns == before
    assert _runs(out) == sorted(f"{run_key(c)}.json" for c in grid[:5] + [grid[6], grid[8]])
    for c in grid[:5] + [grid[8]]:
        with open(os.path.join(out, "runs", f"{run_key(c)}.json")) as fh:
            assert json.load(fh)["value"] == c["x"] ** 2
    again = run_tasks(grid, fake_task, out, engine="local", max_parallel=2, progress=False)
    assert (again.skipped, again.completed, list(again.failed)) == (7, (), [run_key(grid[7])])


def test_sequential_engine_runs_in_this_process(tmp_path):
    grid = [{"x": i} for i in range(3)] + [{"x": 7, "fail": True}]
    for kw in ({"engine": "sequential"}, {"engine": "local", "max_parallel": 1}):
        out = tmp_path / kw["engine"]
        res = run_tasks(grid, fake_task, out, progress=False, **kw)
        assert (res.total, res.skipped, len(res.completed), res.workers) == (4, 0, 3, 1)
        assert "ValueError: bad config 7" in res.failed[run_key(grid[3])]
        for c in grid[:3]:
            with open(os.path.join(out, "runs", f"{run_key(c)}.json")) as fh:
                assert json.load(fh)["pid"] == os.getpid()
        assert run_tasks(grid, fake_task, out, progress=False, **kw).skipped == 3


def fake_batch_task(configs: list, out_dir: str) -> list:
    """A batch of toy runs: writes each record as it finishes; raises after the first when one says so."""
    out = []
    for i, c in enumerate(configs):
        if c.get("fail") and i > 0:
            raise ValueError(f"bad batch at {c['x']}")
        out.append(fake_task({k: v for k, v in c.items() if k != "fail"} | {"run_id": run_key(c)}, out_dir))
    return out


class _CountingBar:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_batches_group_runs_by_key_and_count_each_record(tmp_path):
    from isometry.sweeps import plan_batches

    grid = [{"x": i, "g": i % 2} for i in range(9)]
    todo = [(run_key(c), c) for c in grid]
    tasks = plan_batches(todo, lambda c: c["g"], max_batch=3, cost=lambda c: c["x"])
    assert sorted(len(ids) for ids, _ in tasks) == [2, 2, 2, 3]  # 5 and 4 runs, split evenly
    assert all(len({c["g"] for c in payload}) == 1 for _, payload in tasks)  # one key per batch
    costs = [sum(c["x"] for c in payload) for _, payload in tasks]
    assert costs == sorted(costs, reverse=True)  # the most expensive first
    assert sorted(r for ids, _ in tasks for r in ids) == sorted(r for r, _ in todo)
    # default size: about two batches per worker
    assert len(plan_batches(todo, lambda c: 0, workers=2)) == 3
    assert len(plan_batches(todo, lambda c: 0, workers=1)) == 1

    bar = _CountingBar()
    res = run_tasks(grid, fake_batch_task, tmp_path, engine="sequential", batch_key=lambda c: c["g"], max_batch=2,
                    progress=bar)
    assert res.ok and len(res.completed) == 9 and res.batches == 5 and bar.n == 9
    again = run_tasks(grid, fake_batch_task, tmp_path, engine="sequential", batch_key=lambda c: c["g"],
                      progress=False)
    assert (again.skipped, again.batches, again.completed) == (9, 0, ())
    # a batch that raises: the runs it finished count, the others are failed (and retried next time)
    bad = [{"x": 20 + i, "g": 0, "fail": i == 1} for i in range(3)]
    res = run_tasks(bad, fake_batch_task, tmp_path / "bad", engine="sequential", batch_key=lambda c: c["g"],
                    progress=False)
    assert res.completed == (run_key(bad[0]),)
    assert sorted(res.failed) == sorted(run_key(c) for c in bad[1:])
    assert all("bad batch at 21" in m for m in res.failed.values())
    # a record that fails the caller's check is not a finished run: run again, and reported when it stays invalid
    res = run_tasks(grid[:2], fake_batch_task, tmp_path, engine="sequential", batch_key=lambda c: 0,
                    progress=False, valid=lambda rec: rec["value"] > 0)
    assert res.skipped == 1 and res.completed == () and "without a finished record" in res.failed[run_key(grid[0])]


def test_local_pool_is_kept_across_calls(tmp_path):
    from isometry.sweeps import LocalPool

    with LocalPool(2) as pool:
        a = run_tasks([{"x": i} for i in range(4)], fake_task, tmp_path, max_parallel=2, pool=pool, progress=False)
        b = run_tasks([{"x": i} for i in range(4, 8)], fake_task, tmp_path, max_parallel=2, pool=pool,
                      progress=False)
    assert a.ok and b.ok
    pids = lambda ids: {json.loads((tmp_path / "runs" / f"{r}.json").read_text())["pid"] for r in ids}  # noqa: E731
    assert len(pids(a.completed) | pids(b.completed)) <= 2  # the same two workers served both calls
    assert os.getpid() not in pids(a.completed)
    merged = a.merge(b)
    assert (merged.total, len(merged.completed), merged.batches) == (4, 8, 8)


def test_importing_sweeps_and_the_experiment_driver_needs_no_torch(tmp_path):
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
import isometry.sweeps as S
import isometry.experiments as E
assert S.record_exists({str(tmp_path)!r}, "abc") is False
S.write_record({str(tmp_path)!r}, {{"run_id": "abc", "value": float("nan")}})
assert S.record_exists({str(tmp_path)!r}, "abc") and S.load_record({str(tmp_path)!r}, "abc")["value"] is None
grid = E.experiment_grid("E1", scale="quick")
assert len(grid) == 216 and E.summarise({str(tmp_path)!r}, grid) == []
assert E.extend_learning_rates("E1", grid, []) == []
try:
    E.run_one
except ImportError:
    print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_second_driver_on_the_same_directory_is_refused(tmp_path):
    from isometry.sweeps.engine import driver_lock

    with driver_lock(str(tmp_path)):
        with pytest.raises(ValueError, match=f"in use by another sweep driver \\(pid {os.getpid()}\\)"):
            run_tasks([{"x": 1}], fake_task, tmp_path, progress=False)
    assert not os.listdir(tmp_path / "runs")
    with driver_lock(str(tmp_path)):  # released on exit (and by the kernel when a driver dies)
        pass


def test_missing_ray_names_the_extra(tmp_path, monkeypatch):
    from isometry.sweeps import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ModuleNotFoundError, match=r"isometry\[ray\]"):
        import_ray()
    with pytest.raises(ModuleNotFoundError, match=r"isometry\[ray\]"):
        run_tasks([{"x": 1}], fake_task, tmp_path, engine="ray", progress=False)


def test_unreachable_ray_address_fails_fast(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match=f"no Ray cluster reachable at 127.0.0.1:{port}"):
        run_tasks([{"x": 1}], fake_task, tmp_path, engine="ray", address=f"127.0.0.1:{port}", progress=False)
    with pytest.raises(ValueError, match="address must be"):
        run_tasks([{"x": 1}], fake_task, tmp_path, engine="ray", address="nonsense", progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "E2", "--address", "auto"], "address is for engine='ray' only"),
    (["--experiment", "E2", "--num-gpus", "1"], "num_gpus is for engine='ray' only"),
    (["--experiment", "E2", "--max-parallel", "0"], "max_parallel must be an integer >= 1"),
    (["--experiment", "E2", "--retries", "-1"], "retries must be an integer >= 0"),
    (["--experiment", "E2", "--engine", "dask"], "invalid choice"),
    (["--experiment", "E2", "--scale", "paper"], "data='cifar10' needs data_dir"),
    (["--experiment", "E2", "--max-batch", "0"], "max_batch must be an integer >= 1"),
    (["--experiment", "E2", "--scale", "cpu"], "invalid choice"),
    (["--experiment", "E2", "--device", "cuda:x"], "device must be"),
    (["--grid", "GRID", "--quick"], "--scale choose a named experiment's grid"),
    (["--grid", "GRID", "--seeds", "2"], "--seeds choose a named experiment's grid"),
    (["--grid", "BADGRID"], "entry 0: unknown run configuration field(s) lr; valid fields: activation"),
    (["--grid", "BADTYPE"], "entry 1: depth must be an integer >= 1, got str '32'"),
    (["--grid", "NULLCONFIG"], "entry 0: a run configuration must be a mapping of fields, got NoneType"),
    (["--grid", "NOTALIST"], "must hold a JSON list of run configurations, got dict"),
    (["--grid", "NOFILE"], "No such file"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    from isometry.cli import main

    files = {"GRID": [{"data": "digits"}], "BADGRID": [{"data": "digits", "lr": 0.1}],
             "BADTYPE": [{"data": "digits"}, {"data": "digits", "depth": "32"}], "NULLCONFIG": [None],
             "NOTALIST": {"config": None, "run_id": "abc"}}
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    argv = [str(tmp_path / a) if a in files else str(tmp_path / "nope.json") if a == "NOFILE" else a for a in argv]
    assert main(["sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# ------------------------------------------------------------- real training runs (tiny networks)


def _tiny_grid(n: int, steps: int = 40) -> list:
    from isometry.experiments import RunConfig

    base = RunConfig(data="digits", depth=3, width=12, batch_size=32, steps=steps, n_evals=5, target_accuracy=0.3,
                     jacobian_inputs=0, device="cpu", experiment="test-sweep")
    qs, ws = (0.05, 1.0), ("orthogonal", "gaussian")
    return [base.replace(q_star=qs[i % 2], weights=ws[(i // 2) % 2], seed=i // 4, depth=2 + i % 3,
                         label=f"run{i}") for i in range(n)]


_TIMING = {"seconds", "train_seconds", "seconds_to_target", "skipped"}


def _strip(rec: dict) -> dict:
    """A record without its wall-clock fields (what identical seeds must reproduce exactly)."""
    out = {k: v for k, v in rec.items() if k not in _TIMING}
    out["curve"] = [{k: v for k, v in pt.items() if k != "seconds"} for pt in rec["curve"]]
    return out


def _records(out_dir) -> dict[str, dict]:
    from isometry.sweeps import load_records

    return {r["run_id"]: r for r in load_records(out_dir)}


@pytest.mark.slow
def test_local_pool_and_sequential_engines_give_identical_records(tmp_path):
    from isometry.experiments import run_experiment

    grid = _tiny_grid(3)
    ids = sorted(c.run_id for c in grid)
    seq = run_experiment(grid, tmp_path / "seq", engine="sequential", progress=False)
    pool = run_experiment(grid, tmp_path / "pool", engine="local", max_parallel=2, progress=False)
    assert seq.ok and pool.ok and (pool.sweep.workers, len(pool.sweep.completed)) == (2, 3), pool
    a, b = _records(tmp_path / "seq"), _records(tmp_path / "pool")
    assert sorted(a) == sorted(b) == ids
    for rid in ids:
        assert _strip(a[rid]) == _strip(b[rid])
    assert [r["run_id"] for r in seq.rows] == [r["run_id"] for r in pool.rows]


@pytest.mark.slow
def test_ray_and_local_engines_give_identical_records(tmp_path):
    ray = pytest.importorskip("ray")
    from isometry.experiments import run_experiment

    grid = _tiny_grid(4)
    ids = sorted(c.run_id for c in grid)
    res_local = run_experiment(grid, tmp_path / "local", engine="sequential", progress=False)
    assert res_local.ok and len(res_local.sweep.completed) == 4, res_local
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        res_ray = run_experiment(grid, tmp_path / "ray", engine="ray", max_parallel=2, num_cpus=1, progress=False)
        assert ray.is_initialized()  # a cluster the caller started is left to the caller
    finally:
        ray.shutdown()
    assert res_ray.ok and (res_ray.sweep.engine, len(res_ray.sweep.completed)) == ("ray", 4), res_ray
    loc, ray_recs = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert sorted(loc) == sorted(ray_recs) == ids
    for rid in ids:
        assert _strip(loc[rid]) == _strip(ray_recs[rid])
        assert len(loc[rid]["curve"]) >= 3
    with open(tmp_path / "ray" / "summary.json") as fh:
        assert sorted(r["run_id"] for r in json.load(fh)) == ids


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (Linux /proc)."""
    alive = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(name))
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc to watch the worker processes")
def test_kill_driver_then_resume_runs_every_config_exactly_once(tmp_path):
    from isometry.sweeps import records

    grid = _tiny_grid(8, steps=200)
    grid_file = tmp_path / "grid.json"
    grid_file.write_text(json.dumps([c.to_dict() for c in grid]))
    out = tmp_path / "out"
    ids = sorted(c.run_id for c in grid)
    cmd = [sys.executable, "-m", "isometry.cli", "sweep", "--grid", str(grid_file), "--out", str(out),
           "--max-parallel", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if len(records.load_records(out)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"driver ended before it could be killed: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)  # kill -9 the driver mid-sweep
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20  # its pool workers notice and exit on their own
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "orphaned sweep workers still running"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.stderr.close()
    survived = {r["run_id"]: r for r in records.load_records(out)}
    assert 2 <= len(survived) < len(grid)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["total"] == len(grid) and report["skipped"] == len(survived)
    assert report["completed"] == len(grid) - len(survived)
    assert sorted(f for f in _runs(out) if not f.startswith(".")) == [f"{i}.json" for i in ids]
    after = _records(out)
    assert sorted(after) == ids
    for rid, rec in survived.items():  # finished before the kill: kept, not run again
        assert after[rid] == rec
    with open(out / "summary.json") as fh:
        rows = json.load(fh)
    assert sorted(r["run_id"] for r in rows) == ids  # every run exactly once
