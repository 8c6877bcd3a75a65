"""The reproduction report: parts, checks, caching and the written artefacts.

A report is a list of *parts* (one per figure of the paper). Each part is a
function ``part(ctx) -> PartResult`` that draws its figures into ``ctx.out`` and
returns the checks it made. A finished part is cached in ``OUT/parts/NAME.json``
(written atomically) together with the settings it ran with, so an interrupted
``isometry reproduce`` resumes where it stopped and reuses finished parts; a part
that raised is reported as a failed check but not cached (the next run tries it
again). Figure paths are stored relative to ``OUT``, so the report folder can be
moved and a relative ``OUT`` works from any working directory.
Every check carries ``claim, theory, measured, tolerance, passed``; a failed
check is written to the report like any other, never hidden.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._io import atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["Check", "PartResult", "Context", "check", "load_cached", "run_parts", "write_report"]


@dataclass
class Check:
    """One checked claim: |measured - theory| <= tolerance (or a custom rule stated in ``rule``)."""

    claim: str
    theory: Any
    measured: Any
    tolerance: Any
    passed: bool
    part: str = ""
    rule: str = "abs(measured - theory) <= tolerance"
    kind: str = "theory"  # "theory": a claim of the analytic theory; "experiment": a training outcome

    def to_dict(self) -> dict:
        """JSON-ready fields (NumPy values made Python; NaN/inf made None)."""
        return to_jsonable(asdict(self))


def check(claim: str, theory: float, measured: float, tolerance: float, *, rel: bool = False, rule: str | None = None,
          passed: bool | None = None, kind: str = "theory") -> Check:
    """Build a :class:`Check`; by default passes when |measured - theory| <= tolerance (x |theory| if ``rel``)."""
    theory_f, measured_f = float(theory), float(measured)
    tol = float(tolerance) * (abs(theory_f) if rel else 1.0)
    ok = bool(np.isfinite(measured_f) and abs(measured_f - theory_f) <= tol) if passed is None else bool(passed)
    default_rule = "abs(measured - theory) <= tolerance * |theory|" if rel else "abs(measured - theory) <= tolerance"
    return Check(claim, theory_f, measured_f, float(tolerance), ok, rule=rule or default_rule, kind=kind)


@dataclass
class PartResult:
    """What one part of the report found: its text, figures (paths), checks and data."""

    name: str
    title: str
    text: str
    figures: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0
    failed: bool = False  # the part raised (then it is reported but not cached)

    def to_dict(self) -> dict:
        """JSON-ready fields (NumPy values made Python; NaN/inf made None)."""
        d = asdict(self)
        d["checks"] = [c.to_dict() for c in self.checks]
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: dict) -> "PartResult":
        d = dict(d)
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        return cls(**d)


@dataclass
class Context:
    """Where and how the parts run: ``out`` (made absolute), ``scale`` ("quick", "cpu" or
    "paper"), ``seed``, ``progress`` bars, and how the training runs are executed (``engine``,
    ``max_parallel``, ``address``, ``num_cpus``, ``num_gpus``, ``retries``: see
    :func:`isometry.experiments.run_experiment`)."""

    out: Path
    scale: str
    seed: int = 0
    progress: bool = True
    engine: str = "local"
    max_parallel: int | None = None
    address: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    retries: int = 2

    def __post_init__(self):
        self.out = Path(os.path.abspath(os.fspath(self.out)))

    @property
    def quick(self) -> bool:
        return self.scale == "quick"

    def pick(self, quick, cpu, paper=None):
        """The setting for the current scale."""
        return {"quick": quick, "cpu": cpu, "paper": cpu if paper is None else paper}[self.scale]

    def run_options(self) -> dict:
        """The execution options of the training runs, as keyword arguments of ``run_experiment``."""
        return dict(engine=self.engine, max_parallel=self.max_parallel, address=self.address, num_cpus=self.num_cpus,
                    num_gpus=self.num_gpus, retries=self.retries)

    def figure_path(self, name: str) -> Path:
        p = self.out / "figures" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def load_cached(ctx: Context, name: str) -> PartResult | None:
    """The finished part ``name`` from ``OUT/parts`` if it ran at this scale and seed and its figures exist."""
    cache = ctx.out / "parts" / f"{name}.json"
    if not cache.exists():
        return None
    try:
        d = json.loads(cache.read_text(encoding="utf-8"))
        figures = d["result"]["figures"]
        if (d.get("scale") == ctx.scale and d.get("seed") == ctx.seed and not d["result"].get("failed")
                and all(isinstance(f, str) and not os.path.isabs(f) and (ctx.out / f).is_file() for f in figures)):
            return PartResult.from_dict(d["result"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # unreadable cache: recompute
    return None


def run_parts(ctx: Context, parts: list[tuple[str, Callable[[Context], PartResult]]], *, force: bool = False,
              log: Callable[[str], None] = print) -> list[PartResult]:
    """Run (or reuse from ``OUT/parts``) every part; a part that raises becomes a failed check."""
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(parts, desc="reproduce", unit="part", disable=not ctx.progress)
    for name, fn in bar:
        bar.set_postfix_str(name)
        cached = None if force else load_cached(ctx, name)
        if cached is not None:
            results.append(cached)
            log(f"[{name}] reused from {ctx.out / 'parts' / (name + '.json')}")
            continue
        t0 = time.perf_counter()
        try:
            res = fn(ctx)
        except Exception as exc:  # the report records the failure instead of dying
            res = PartResult(name, name, f"This part failed: {type(exc).__name__}: {exc}", checks=[
                Check(f"part '{name}' runs", "runs", f"{type(exc).__name__}: {exc}", "-", False, rule="runs without error")
            ], failed=True)
        res.seconds = time.perf_counter() - t0
        for c in res.checks:
            c.part = name
        # relative to the report folder (a part's relative path is relative to the working directory)
        res.figures = [os.path.relpath(os.path.abspath(f), ctx.out) for f in res.figures]
        if not res.failed:
            atomic_write_json(ctx.out / "parts" / f"{name}.json",
                              {"scale": ctx.scale, "seed": ctx.seed, "result": res.to_dict()})
        results.append(res)
        log(f"[{name}] {sum(c.passed for c in res.checks)}/{len(res.checks)} checks passed in {res.seconds:.1f} s")
    return results


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_report(ctx: Context, results: list[PartResult], header: str = "") -> dict:
    """Write ``report.md``, ``index.html`` and ``checks.json`` into ``ctx.out``; return a summary."""
    checks = [c.to_dict() for r in results for c in r.checks]
    n_pass = sum(c["passed"] for c in checks)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    theory = [c for c in checks if c.get("kind") == "theory"]
    summary = {"scale": ctx.scale, "seed": ctx.seed, "generated": stamp, "n_checks": len(checks),
               "n_passed": n_pass, "n_failed": len(checks) - n_pass,
               "n_theory_failed": sum(not c["passed"] for c in theory), "checks": checks}
    atomic_write_json(ctx.out / "checks.json", summary)

    md = ["# isometry: reproduction of Pennington, Schoenholz & Ganguli (NIPS 2017)", "",
          f"Scale: **{ctx.scale}**, seed {ctx.seed}, generated {stamp}. "
          f"Checks passed: **{n_pass} / {len(checks)}**.", ""]
    if header:
        md += [header, ""]
    for r in results:
        md += [f"## {r.title}", "", r.text, ""]
        md += [f"![{r.name}]({Path(f).as_posix()})" for f in r.figures] + [""]
        if r.checks:
            md += ["| claim | theory | measured | tolerance | rule | passed |", "|---|---|---|---|---|---|"]
            esc = lambda t: str(t).replace("|", "\\|")  # noqa: E731  (a pipe would end the table cell)
            md += [f"| {esc(c.claim)} | {_fmt(c.theory)} | {_fmt(c.measured)} | {_fmt(c.tolerance)} | {esc(c.rule)} | "
                   f"{'yes' if c.passed else '**NO**'} |" for c in r.checks]
            md += [""]
        md += [f"_{r.seconds:.1f} s_", ""]
    atomic_write_text(ctx.out / "report.md", "\n".join(md))

    parts_html = []
    for r in results:
        imgs = []
        for f in r.figures:
            p = ctx.out / f
            if p.exists():
                b64 = base64.b64encode(p.read_bytes()).decode()
                imgs.append(f'<img alt="{html.escape(r.name)}" src="data:image/png;base64,{b64}">')
        rows = "".join(
            f"<tr class={'ok' if c.passed else 'bad'}><td>{html.escape(c.claim)}</td><td>{html.escape(_fmt(c.theory))}</td>"
            f"<td>{html.escape(_fmt(c.measured))}</td><td>{html.escape(_fmt(c.tolerance))}</td>"
            f"<td>{html.escape(c.rule)}</td>"
            f"<td>{'yes' if c.passed else 'NO'}</td></tr>" for c in r.checks)
        table = (f"<table><tr><th>claim</th><th>theory</th><th>measured</th><th>tolerance</th><th>rule</th><th>passed</th></tr>{rows}</table>"
                 if rows else "")
        parts_html.append(f"<section><h2>{html.escape(r.title)}</h2><p>{html.escape(r.text)}</p>{''.join(imgs)}{table}"
                          f"<p class=t>{r.seconds:.1f} s</p></section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>isometry reproduction report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}img{{max-width:100%}}
table{{border-collapse:collapse;font-size:90%}}td,th{{border:1px solid #ccc;padding:2px 6px}}
tr.bad{{background:#fdd}}tr.ok td:last-child{{color:#070}}.t{{color:#888}}</style></head><body>
<h1>isometry: reproduction of Pennington, Schoenholz &amp; Ganguli (NIPS 2017)</h1>
<p>Scale: <b>{ctx.scale}</b>, seed {ctx.seed}, generated {stamp}. Checks passed: <b>{n_pass} / {len(checks)}</b>.</p>
<p>{html.escape(header)}</p>{''.join(parts_html)}</body></html>"""
    atomic_write_text(ctx.out / "index.html", page)
    return summary
