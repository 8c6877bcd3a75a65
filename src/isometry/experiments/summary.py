"""One row per finished training run: ``DIR/summary.json`` and ``DIR/summary.csv`` (no torch here).

The rows flatten the run records of ``DIR/runs`` (:mod:`isometry.sweeps.records`): the
configuration, the critical point, the Jacobian statistics at initialisation and the outcome.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._io import atomic_write_json, atomic_write_text
from ..sweeps.records import load_records
from .config import RunConfig

__all__ = ["SUMMARY_KEYS", "RECORD_KEYS", "summary_row", "summary_rows", "write_summary", "summarise", "valid_record"]

#: Keys every finished training record has (see :func:`isometry.experiments.run_one`).
RECORD_KEYS = ("run_id", "config", "init", "curve", "steps_to_target", "final_test_accuracy", "diverged_at",
               "steps_run")

#: Keys of one summary row, in CSV column order.
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
    "predicted_variance",
    "measured_variance",
    "predicted_max_singular_value",
    "measured_max_singular_value",
    "input_q",
    "input_mean_square",
    "seconds",
    "label",
    "experiment",
    "run_id",
    "initializer",
    "architecture",
    "normalize_input",
    "stop_at_target",
    "predicted_mean",
    "measured_mean_eigenvalue",
)

_FROM_CONFIG = ("activation", "weights", "optimizer", "learning_rate", "depth", "width", "target_accuracy", "seed",
                "batch_size", "steps", "data", "label", "experiment", "initializer", "architecture", "normalize_input",
                "stop_at_target")
_FROM_INIT = ("sigma_w2", "sigma_b2", "predicted_variance", "measured_variance", "predicted_max_singular_value",
              "measured_max_singular_value", "input_q", "input_mean_square", "predicted_mean",
              "measured_mean_eigenvalue")
_DEFAULTS = {"initializer": "isometry:critical", "architecture": "mlp", "normalize_input": False}
_FROM_RECORD = ("steps_to_target", "final_test_accuracy", "diverged_at", "seconds_to_target", "best_test_accuracy",
                "seconds", "run_id")


def valid_record(rec: Any, run_id: str | None = None) -> bool:
    """Whether ``rec`` is a complete training record (of ``run_id`` when given): its keys, a
    configuration whose run id is the record's, and a non-empty learning curve. Anything else
    (a truncated, edited or foreign file) is not a finished run: it is trained again."""
    try:
        if not isinstance(rec, dict) or any(k not in rec for k in RECORD_KEYS):
            return False
        if run_id is not None and rec["run_id"] != run_id:
            return False
        if not isinstance(rec["config"], dict) or RunConfig.from_dict(rec["config"]).run_id != rec["run_id"]:
            return False
        curve = rec["curve"]
        if not (isinstance(curve, list) and curve and all(isinstance(p, dict) and isinstance(p.get("step"), int)
                                                           for p in curve)):
            return False
        return isinstance(rec["init"], dict) and (rec["steps_to_target"] is None
                                                  or isinstance(rec["steps_to_target"], int))
    except (TypeError, ValueError):
        return False


def summary_row(rec: Mapping[str, Any], config: Any = None) -> dict:
    """Flatten one run record into a summary row (keys :data:`SUMMARY_KEYS`; missing values None).

    ``config``: the grid's configuration of this run, whose ``experiment`` and ``label`` name the
    row (a run shared by two grids is recorded under the names of the grid that trained it first).
    """
    cfg = rec.get("config") if isinstance(rec.get("config"), Mapping) else {}
    if config is not None:
        cfg = dict(cfg, experiment=config.experiment, label=config.label)
    init = rec.get("init") if isinstance(rec.get("init"), Mapping) else {}
    row = {k: cfg.get(k, _DEFAULTS.get(k)) for k in _FROM_CONFIG}
    row.update({k: init.get(k) for k in _FROM_INIT})
    row.update({k: rec.get(k) for k in _FROM_RECORD})
    row["q_star"] = init.get("q_star", cfg.get("q_star"))
    return {k: row.get(k) for k in SUMMARY_KEYS}


def summary_rows(records: Iterable[Mapping[str, Any]], configs: Iterable[Any] | None = None) -> list[dict]:
    """The rows of ``records`` (named by ``configs``, the grid's configurations, when given: see
    :func:`summary_row`), sorted by experiment, label, activation, weights, optimiser, learning
    rate, depth and seed (a stable order for the files)."""
    by_id = {} if configs is None else {c.run_id: c for c in configs}
    rows = [summary_row(r, by_id.get(r.get("run_id"))) for r in records]
    order = ("experiment", "label", "activation", "weights", "optimizer", "learning_rate", "depth", "seed")
    rows.sort(key=lambda r: tuple(str(r.get(k)) for k in order))
    return rows


def write_summary(out_dir: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> tuple[str, str]:
    """Write ``summary.json`` (a list of rows; NaN/inf as null) and ``summary.csv`` (empty cell for
    a missing value) atomically; return both paths."""
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


def summarise(out_dir: str | os.PathLike, configs: Sequence[Any] | None = None) -> list[dict]:
    """Write ``summary.json`` / ``summary.csv`` from the finished runs in ``out_dir`` (those of
    ``configs`` when given, else all) and return the rows."""
    ids = None if configs is None else [c.run_id for c in configs]
    rows = summary_rows([r for r in load_records(out_dir, ids) if valid_record(r)], configs)
    write_summary(out_dir, rows)
    return rows
