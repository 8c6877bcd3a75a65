"""Run records on disk: atomic JSON per run, a JSON + CSV summary, resume bookkeeping.

Layout of an experiment directory ``DIR``::

    DIR/runs/<run_id>.json         one finished run (written atomically: temp file + rename)
    DIR/checkpoints/<run_id>.pt    state of an unfinished long run (removed when it finishes)
    DIR/summary.json, summary.csv  one row per finished run (:func:`summarise`)

A run is finished iff its JSON exists and parses, so a killed experiment resumes by skipping
exactly the runs whose JSON is there; a half-written file can never appear under its final name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .._io import atomic_write_json, atomic_write_text, to_jsonable  # noqa: F401  (re-exported)

#: Keys of one summary row, in CSV column order (the first twelve are the ones issue 6 asks for).
SUMMARY_KEYS = (
    "activation",
    "weights",
    "q_star",
    "sigma_w2",
    "optimizer",
    "learning_rate",
    "depth",
    "width",
    "steps_to_target",
    "target_accuracy",
    "final_test_accuracy",
    "diverged_at",
    "sigma_b2",
    "seed",
    "batch_size",
    "steps",
    "data",
    "seconds_to_target",
    "best_test_accuracy",
    "predicted_sigma2",
    "measured_sigma2",
    "predicted_s_max",
    "measured_s_max",
    "seconds",
    "label",
    "experiment",
    "run_id",
)


def run_path(out_dir: str | os.PathLike, run_id: str) -> str:
    return os.path.join(os.fspath(out_dir), "runs", f"{run_id}.json")


def checkpoint_path(out_dir: str | os.PathLike, run_id: str) -> str:
    return os.path.join(os.fspath(out_dir), "checkpoints", f"{run_id}.pt")


def load_record(out_dir: str | os.PathLike, run_id: str) -> dict | None:
    """The finished record of ``run_id``, or None when absent or unreadable (then it reruns)."""
    p = run_path(out_dir, run_id)
    try:
        with open(p, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("run_id") == run_id else None


def load_records(out_dir: str | os.PathLike) -> list[dict]:
    """All finished run records under ``out_dir/runs`` (sorted by run id; unreadable files skipped)."""
    d = os.path.join(os.fspath(out_dir), "runs")
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".json") and not name.startswith("."):
            rec = load_record(out_dir, name[:-5])
            if rec is not None:
                out.append(rec)
    return out


def summary_row(rec: Mapping[str, Any]) -> dict:
    """Flatten one run record into a summary row (keys :data:`SUMMARY_KEYS`)."""
    cfg = rec.get("config", {})
    init = rec.get("init", {})
    row = {
        "activation": cfg.get("activation"),
        "weights": cfg.get("weights"),
        "q_star": init.get("q_star", cfg.get("q_star")),
        "sigma_w2": init.get("sigma_w2"),
        "sigma_b2": init.get("sigma_b2"),
        "optimizer": cfg.get("optimizer"),
        "learning_rate": cfg.get("learning_rate"),
        "depth": cfg.get("depth"),
        "width": cfg.get("width"),
        "steps_to_target": rec.get("steps_to_target"),
        "target_accuracy": cfg.get("target_accuracy"),
        "final_test_accuracy": rec.get("final_test_accuracy"),
        "diverged_at": rec.get("diverged_at"),
        "seed": cfg.get("seed"),
        "batch_size": cfg.get("batch_size"),
        "steps": cfg.get("steps"),
        "data": cfg.get("data"),
        "seconds_to_target": rec.get("seconds_to_target"),
        "best_test_accuracy": rec.get("best_test_accuracy"),
        "predicted_sigma2": init.get("predicted_sigma2"),
        "measured_sigma2": init.get("measured_sigma2"),
        "predicted_s_max": init.get("predicted_s_max"),
        "measured_s_max": init.get("measured_s_max"),
        "seconds": rec.get("seconds"),
        "label": cfg.get("label"),
        "experiment": cfg.get("experiment"),
        "run_id": rec.get("run_id"),
    }
    return row


def write_summary(out_dir: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """Write ``summary.json`` (a list of rows) and ``summary.csv`` atomically; return both paths."""
    rows = [dict(r) for r in rows]
    keys = list(SUMMARY_KEYS) + sorted({k for r in rows for k in r} - set(SUMMARY_KEYS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    out_dir = os.fspath(out_dir)
    pj = atomic_write_json(os.path.join(out_dir, "summary.json"), rows)
    pc = atomic_write_text(os.path.join(out_dir, "summary.csv"), buf.getvalue())
    return pj, pc
