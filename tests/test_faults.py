"""Fault injection for every writer: a full disk, kill -9 in the middle of a write, corrupt caches.

Every file the package writes goes through :func:`isometry._io.atomic_write`. A full disk is
simulated by making ``os.fsync`` (or ``os.write``) fail with ENOSPC for the writer under test, and
for real by a file-size rlimit in a subprocess (the kernel then refuses the write with EFBIG).
kill -9 is real: a subprocess rewrites a file in a loop and is killed at random moments. After a
fault the target is the old file or the complete new one (never partial), no temporary file is
left for a rerun to mistake for finished work, and a rerun recomputes what a fault broke instead
of reusing it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from isometry import _io
from isometry.cli import main


def _no_temporaries(root) -> list[str]:
    """Files under ``root`` that look like a writer's temporary file."""
    return [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs if f.startswith(".") and ".tmp" in f]


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(suffix)``: from now on, atomic writes of files ending in ``suffix`` fail with ENOSPC
    when they fsync (after the content went to the temporary file: the realistic moment)."""
    real_fsync = os.fsync
    state = {"suffix": None}

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if state["suffix"] is not None and ".tmp" in name and name.endswith(state["suffix"]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)

    def set_suffix(suffix):
        state["suffix"] = suffix

    return set_suffix


# ------------------------------------------------------------------ the writer itself
def test_full_disk_at_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    _io.atomic_write_json(target, {"v": 1})
    real_write = os.write

    def write(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match=rf"could not write {target}: No space left on device"):
        _io.atomic_write(target, lambda fh: os.write(fh.fileno(), b'{"v": 2}'))
    monkeypatch.setattr(os, "write", real_write)
    assert json.loads(target.read_text()) == {"v": 1} and not _no_temporaries(tmp_path)


def test_a_real_file_size_limit_is_a_clean_error(tmp_path):
    """RLIMIT_FSIZE: the kernel refuses to grow the temporary file (EFBIG), as a full disk would."""
    target = tmp_path / "big.json"
    target.write_text('{"old": true}\n')
    code = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from isometry._io import atomic_write_json
        try:
            atomic_write_json({str(target)!r}, {{"x": list(range(100000))}})
        except OSError as exc:
            print(str(exc))
            sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert f"could not write {target}" in r.stdout and "too large" in r.stdout.lower()
    assert json.loads(target.read_text()) == {"old": True} and not _no_temporaries(tmp_path)


_KILLED_WRITER = """
import json, os, sys
from isometry._io import atomic_write_json
target = sys.argv[1]
n = json.load(open(target))["n"] if os.path.exists(target) else 0  # resumes from what is there
while True:
    n += 1
    atomic_write_json(target, {"n": n, "payload": [n] * 200000})
"""


def test_kill_9_mid_write_never_leaves_a_partial_file(tmp_path):
    """A writer killed at random moments: the target always parses and is one complete version; the
    temporary files it leaves are hidden, and the next write into the directory removes them."""
    target = tmp_path / "state.json"
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        before = json.loads(target.read_text())["n"] if target.exists() else 0
        p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)])
        deadline = time.time() + 60
        while time.time() < deadline and (not target.exists() or json.loads(target.read_text())["n"] == before):
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.05, 0.6)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        d = json.loads(target.read_text())
        assert d["payload"] == [d["n"]] * 200000  # complete, not a mixture
        seen.add(d["n"])
        names = [f for f in os.listdir(tmp_path) if f != "state.json"]
        assert all(f.startswith(".state.json.") and ".tmp" in f for f in names), names
    assert len(seen) > 2  # the writers made progress between kills
    _io._swept.discard(str(tmp_path))
    _io.atomic_write_json(tmp_path / "other.json", {})  # the next write here sweeps the dead writers' files
    assert sorted(os.listdir(tmp_path)) == ["other.json", "state.json"]


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    mine = tmp_path / f".x.json.{_io._HOST}-{os.getpid()}.abc123.tmp.json"
    other_host = tmp_path / ".x.json.elsewhere-1.abc123.tmp.json"
    mine.write_text("{")
    other_host.write_text("{")
    assert _io.remove_stale_temporaries(tmp_path) == []
    assert mine.exists() and other_host.exists()


# ------------------------------------------------------------------ run records and summaries
def test_run_record_on_a_full_disk(tmp_path, full_disk):
    from isometry.sweeps import records

    records.write_record(tmp_path, {"run_id": "r1", "v": 1})
    full_disk(".json")
    with pytest.raises(OSError, match=r"could not write .*r1\.json: No space left on device"):
        records.write_record(tmp_path, {"run_id": "r1", "v": 2})
    full_disk(None)
    assert records.load_record(tmp_path, "r1")["v"] == 1 and not _no_temporaries(tmp_path)


def test_truncated_run_record_is_not_finished_work(tmp_path):
    from isometry.sweeps import records

    path = records.write_record(tmp_path, {"run_id": "r1", "curve": [1, 2, 3]})
    with open(path) as fh:
        text = fh.read()
    for cut in (0, 1, len(text) // 2, len(text) - 3):
        with open(path, "w") as fh:
            fh.write(text[:cut])
        assert records.load_record(tmp_path, "r1") is None and not records.record_exists(tmp_path, "r1")
        assert records.load_records(tmp_path) == []
    with open(path, "w") as fh:
        json.dump({"run_id": "other"}, fh)  # a record of another run under this name
    assert records.load_record(tmp_path, "r1") is None


def test_summary_on_a_full_disk(tmp_path, full_disk):
    from isometry.experiments.summary import write_summary

    rows = [{"run_id": "a", "steps_to_target": 3}]
    write_summary(tmp_path, rows)
    before = {f: (tmp_path / f).read_text() for f in ("summary.json", "summary.csv")}
    full_disk(".csv")
    with pytest.raises(OSError, match=r"summary\.csv: No space left on device"):
        write_summary(tmp_path, rows + [{"run_id": "b", "steps_to_target": 5}])
    full_disk(None)
    assert (tmp_path / "summary.csv").read_text() == before["summary.csv"]
    assert json.loads((tmp_path / "summary.json").read_text())  # complete (old or new)
    assert not _no_temporaries(tmp_path)


# ------------------------------------------------------------------ report parts, pages and figures
def _tiny_part(calls: list):
    from isometry.plotting import new_axes, save_figure
    from isometry.report.core import PartResult, check

    def part(ctx):
        calls.append(1)
        fig, ax = new_axes()
        ax.plot([0, 1], [0, 1])
        path = ctx.figure_path("tiny")
        save_figure(fig, path)
        return PartResult("tiny", "Tiny", "a tiny part", figures=[str(path)], checks=[check("one", 1.0, 1.0, 0.0)])

    return part


def _context(out):
    from isometry.report.core import Context

    return Context(out=out, scale="quick", seed=0, progress=False)


def test_report_part_that_hit_a_full_disk_is_recomputed(tmp_path, full_disk):
    from isometry.report.core import run_parts

    calls, lines = [], []
    full_disk(".png")
    res = run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    assert res[0].failed and "No space left on device" in res[0].text
    assert not (tmp_path / "parts" / "tiny.json").exists() and not _no_temporaries(tmp_path)
    assert not (tmp_path / "figures" / "tiny.png").exists()
    full_disk(None)  # space freed: the rerun computes the part (it was not cached as finished)
    res = run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    assert not res[0].failed and not res[0].reused and len(calls) == 2 and res[0].n_passed == 1
    res = run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    assert res[0].reused and len(calls) == 2


@pytest.mark.parametrize("garbage", [b"", b"{\"scale\": \"quick\", \"se", b"\xff\xfe\x00garbage", b"[]",
                                     b'{"scale": "quick", "seed": 0, "result": {"figures": ["../../etc/passwd"]}}'])
def test_corrupt_report_part_cache_is_recomputed(tmp_path, garbage):
    from isometry.report.core import run_parts

    calls, lines = [], []
    run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    (tmp_path / "parts" / "tiny.json").write_bytes(garbage)
    res = run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    assert len(calls) == 2 and not res[0].reused and res[0].n_passed == 1
    assert json.loads((tmp_path / "parts" / "tiny.json").read_text())["result"]["name"] == "tiny"


def test_corrupt_report_part_cache_is_reported(tmp_path):
    from isometry.report.core import run_parts

    calls, lines = [], []
    run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    (tmp_path / "parts" / "tiny.json").write_bytes(b'{"scale": "qu')
    lines.clear()
    run_parts(_context(tmp_path), [("tiny", _tiny_part(calls))], log=lines.append)
    assert any("tiny.json" in ln and "unreadable" in ln for ln in lines), lines


def test_report_pages_on_a_full_disk(tmp_path, full_disk):
    from isometry.report.core import run_parts, write_report

    calls = []
    ctx = _context(tmp_path)
    res = run_parts(ctx, [("tiny", _tiny_part(calls))], log=lambda line: None)
    write_report(ctx, res)
    pages = {f: (tmp_path / f).read_bytes() for f in ("report.md", "index.html", "checks.json")}
    for suffix in (".json", ".md", ".html"):
        full_disk(suffix)
        with pytest.raises(OSError, match="No space left on device"):
            write_report(ctx, res)
        full_disk(None)
        for f, old in pages.items():
            new = (tmp_path / f).read_bytes()
            assert new == old or (f.endswith(".json") and json.loads(new))  # old, or complete new
    assert not _no_temporaries(tmp_path)


# ------------------------------------------------------------------ figures (-o), empirical --save
@pytest.mark.parametrize("argv,suffix", [
    (["spectrum", "relu", "--depth", "3", "--q-star", "0.5", "-o", "{d}/fig.png"], ".png"),
    (["phase", "relu", "--grid", "5", "-o", "{d}/fig.pdf"], ".pdf"),
    (["empirical", "tanh", "--depth", "2", "--width", "6", "--q-star", "0.5", "-o", "{d}/fig.svg"], ".svg"),
    (["empirical", "tanh", "--depth", "2", "--width", "6", "--q-star", "0.5", "--save", "{d}/eig.npy"], ".npy"),
    (["empirical", "tanh", "--depth", "2", "--width", "6", "--q-star", "0.5", "--save", "{d}/eig.data"], ".data"),
])
def test_cli_outputs_on_a_full_disk(tmp_path, full_disk, capsys, argv, suffix):
    argv = [a.format(d=tmp_path) for a in argv]
    path = argv[-1]
    full_disk(suffix)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"could not write {path}: No space left on device" in err, err
    assert not os.path.exists(path) and not _no_temporaries(tmp_path)
    full_disk(None)
    assert main(argv) == 0  # space freed: the same command works
    capsys.readouterr()
    assert os.path.getsize(path) > 0 and not _no_temporaries(tmp_path)
    if suffix in (".npy", ".data"):
        assert np.load(path).shape == (1, 6)


# ------------------------------------------------------------------ the mnist1d cache
@pytest.fixture
def mnist1d_cache(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    monkeypatch.setenv("ISOMETRY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "empty"])
def test_corrupt_mnist1d_cache_is_regenerated_and_said(mnist1d_cache, caplog, damage):
    from isometry.experiments import data as D

    ref = D.load_mnist1d(200, seed=3)
    (path,) = list(mnist1d_cache.iterdir())
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64), x_test=np.zeros((1, 5), np.float32),
                 y_test=np.zeros(1, np.int64))
    with caplog.at_level(logging.WARNING, logger="isometry"):
        again = D.load_mnist1d(200, seed=3)
    assert np.array_equal(again.x_train, ref.x_train) and np.array_equal(again.y_test, ref.y_test)
    assert any(str(path) in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="isometry"):
        D.load_mnist1d(200, seed=3)  # the regenerated cache is complete again: read without a word
    assert not caplog.records and not _no_temporaries(mnist1d_cache)


def test_mnist1d_cache_on_a_full_disk(mnist1d_cache, full_disk, caplog):
    from isometry.experiments import data as D

    full_disk(".npz")
    with caplog.at_level(logging.WARNING, logger="isometry"):
        ds = D.load_mnist1d(100, seed=1)  # the data, even though it could not be cached
    assert ds.x_train.shape == (80, 40)
    assert any("could not cache" in r.getMessage() for r in caplog.records)
    assert not list(mnist1d_cache.glob("*.npz")) and not _no_temporaries(mnist1d_cache)


# ------------------------------------------------------------------ checkpoints and finished runs
def _tiny_config(**kw):
    from isometry.experiments import RunConfig

    base = dict(data="digits", depth=2, width=8, steps=12, n_evals=4, batch_size=16, seed=0, jacobian_inputs=0,
                checkpoint_every=0.0, max_test=64)
    base.update(kw)
    return RunConfig(**base)


class _Stop(Exception):
    pass


def _checkpoint_of_an_interrupted_run(out, cfg, monkeypatch):
    """Train ``cfg`` until its record would be written, stop there: the last checkpoint stays."""
    from isometry.sweeps import records
    from isometry.experiments.train import run_one

    def stop(*args, **kwargs):
        raise _Stop()

    with monkeypatch.context() as m:
        m.setattr(records, "write_record", stop)
        with pytest.raises(_Stop):
            run_one(cfg, out)
    ckpt = records.checkpoint_path(out, cfg.run_id)
    assert os.path.exists(ckpt)
    return ckpt


def test_checkpoint_whose_optimizer_state_does_not_load_restarts_cleanly(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from isometry.experiments.train import run_one

    cfg = _tiny_config(optimizer="adam", learning_rate=1e-3)
    clean = run_one(cfg, tmp_path / "clean")
    ckpt = _checkpoint_of_an_interrupted_run(tmp_path / "broken", cfg, monkeypatch)
    saved = torch.load(ckpt, weights_only=True)
    keys = [k for k in saved if "opt" in str(k)]
    assert keys
    for k in keys:  # the model's part loads, the optimiser's does not
        saved[k] = {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": []}
    torch.save(saved, ckpt)
    rec = run_one(cfg, tmp_path / "broken")
    assert [c["test_accuracy"] for c in rec["curve"]] == [c["test_accuracy"] for c in clean["curve"]]
    assert [c["step"] for c in rec["curve"]] == [c["step"] for c in clean["curve"]]


@pytest.mark.parametrize("cut", [0, 100, "half"])
def test_truncated_checkpoint_restarts_cleanly(tmp_path, monkeypatch, cut):
    pytest.importorskip("torch")
    from isometry.experiments.train import run_one

    cfg = _tiny_config()
    clean = run_one(cfg, tmp_path / "clean")
    ckpt = _checkpoint_of_an_interrupted_run(tmp_path / "broken", cfg, monkeypatch)
    with open(ckpt, "rb") as fh:
        raw = fh.read()
    with open(ckpt, "wb") as fh:
        fh.write(raw[: len(raw) // 2 if cut == "half" else cut])
    rec = run_one(cfg, tmp_path / "broken")
    assert [c["test_accuracy"] for c in rec["curve"]] == [c["test_accuracy"] for c in clean["curve"]]
    assert not os.path.exists(ckpt) and not _no_temporaries(tmp_path)


def test_checkpoint_on_a_full_disk_leaves_no_partial_checkpoint(tmp_path, full_disk):
    pytest.importorskip("torch")
    from isometry.experiments.train import run_one
    from isometry.sweeps import records

    cfg = _tiny_config()
    full_disk(".pt")
    try:
        rec = run_one(cfg, tmp_path)
    except OSError as exc:  # a run may stop on a checkpoint it cannot write; then it names the file
        assert ".pt" in str(exc) and "No space left" in str(exc)
    else:
        assert rec["steps_run"] == cfg.steps
    assert not os.path.exists(records.checkpoint_path(tmp_path, cfg.run_id)) and not _no_temporaries(tmp_path)


def test_truncated_run_record_is_trained_again(tmp_path):
    pytest.importorskip("torch")
    from isometry.experiments.train import run_one
    from isometry.sweeps import records

    cfg = _tiny_config(steps=6)
    first = run_one(cfg, tmp_path)
    path = records.run_path(tmp_path, cfg.run_id)
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
    again = run_one(cfg, tmp_path)
    curve = lambda r: [(c["step"], c["test_accuracy"], c["train_loss"]) for c in r["curve"]]  # noqa: E731
    assert not again.get("skipped") and curve(again) == curve(first)
    assert records.load_record(tmp_path, cfg.run_id) is not None


def test_unusable_checkpoint_and_record_are_reported(tmp_path, monkeypatch, caplog):
    pytest.importorskip("torch")
    from isometry.experiments.train import run_one
    from isometry.sweeps import records

    cfg = _tiny_config()
    ckpt = _checkpoint_of_an_interrupted_run(tmp_path, cfg, monkeypatch)
    with open(ckpt, "wb") as fh:
        fh.write(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="isometry"):
        run_one(cfg, tmp_path)
    assert any(os.path.basename(ckpt) in r.getMessage() for r in caplog.records)
    caplog.clear()
    with open(records.run_path(tmp_path, cfg.run_id), "w") as fh:
        fh.write('{"run_id": ')
    with caplog.at_level(logging.WARNING, logger="isometry"):
        run_one(cfg, tmp_path)
    assert any(cfg.run_id in r.getMessage() for r in caplog.records)
