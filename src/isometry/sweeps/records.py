"""Run records on disk (no torch here): the layout every sweep and training experiment shares.

Layout of an output directory ``DIR``::

    DIR/runs/<run_id>.json         one finished run (written atomically by :mod:`isometry._io`)
    DIR/checkpoints/<run_id>.pt    state of an unfinished long training run (removed when it finishes)

A run is finished iff its JSON exists, parses to an object and names its own ``run_id``, so a
killed sweep resumes by skipping exactly those runs; a half-written file never appears under its
final name, and a file that does not parse is treated as absent (the run is done again).

    >>> write_record("out", {"run_id": "abc", "value": 1.0})  # doctest: +SKIP
    >>> record_exists("out", "abc")                           # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .._io import atomic_write_json

__all__ = ["check_run_id", "run_path", "checkpoint_path", "load_record", "load_records", "record_exists",
           "write_record"]


def check_run_id(run_id: Any) -> str:
    """``run_id`` as a string, or ``ValueError`` when it cannot be a file name of ``DIR/runs``."""
    rid = str(run_id)
    if not rid or os.sep in rid or (os.altsep and os.altsep in rid) or rid.startswith(".") or "\0" in rid:
        raise ValueError(f"run id must be a non-empty file name not starting with '.', got {rid!r}")
    return rid


def run_path(out_dir: str | os.PathLike, run_id: str) -> str:
    """``out_dir/runs/<run_id>.json``."""
    return os.path.join(os.fspath(out_dir), "runs", f"{check_run_id(run_id)}.json")


def checkpoint_path(out_dir: str | os.PathLike, run_id: str) -> str:
    """``out_dir/checkpoints/<run_id>.pt``."""
    return os.path.join(os.fspath(out_dir), "checkpoints", f"{check_run_id(run_id)}.pt")


def load_record(out_dir: str | os.PathLike, run_id: str) -> dict | None:
    """The finished record of ``run_id``, or None when it is absent or unreadable (then it reruns)."""
    try:
        with open(run_path(out_dir, run_id), encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("run_id") == run_id else None


def record_exists(out_dir: str | os.PathLike, run_id: str) -> bool:
    """Whether ``out_dir/runs/<run_id>.json`` holds a complete record of ``run_id``."""
    return load_record(out_dir, run_id) is not None


def load_records(out_dir: str | os.PathLike, run_ids: Iterable[str] | None = None) -> list[dict]:
    """The finished records under ``out_dir/runs`` (all, or those of ``run_ids``), sorted by run id.

    Unreadable files and temporary files (names starting with ``.``) are skipped.
    """
    if run_ids is None:
        d = os.path.join(os.fspath(out_dir), "runs")
        try:
            names = os.listdir(d)
        except OSError:
            return []
        run_ids = [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]
    out = []
    for rid in sorted(set(run_ids)):
        rec = load_record(out_dir, rid)
        if rec is not None:
            out.append(rec)
    return out


def write_record(out_dir: str | os.PathLike, record: Mapping[str, Any]) -> str:
    """Write ``record`` (a mapping with a ``run_id``) to ``out_dir/runs/<run_id>.json`` atomically.

    Values go through :func:`isometry._io.to_jsonable` (NumPy values made Python, NaN/inf made
    null). Returns the path.
    """
    if not isinstance(record, Mapping) or "run_id" not in record:
        raise ValueError("record must be a mapping with a 'run_id'")
    return atomic_write_json(run_path(out_dir, record["run_id"]), dict(record))
