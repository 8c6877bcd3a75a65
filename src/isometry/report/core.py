"""The reproduction report: parts, checks, progress, caching and the written artefacts.

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

Progress: :func:`run_parts` shows a bar over the parts (on stderr) and prints one
status line per finished part with its checks. Inside a part, ``ctx.track(items)``
shows a bar with an ETA over the part's own steps (panels, networks, training
runs) and ``ctx.status(msg)`` prints a status line without breaking the bars.
Status lines go to ``ctx.log`` (default: stdout; ``isometry reproduce --json``
sends them to stderr), bars always to stderr, and nothing is shown when
``ctx.progress`` is false except the status lines.

The written report: ``index.html`` (one self-contained page: figures embedded,
no external resources, a summary at the top, failing checks first, sortable
tables), ``report.md`` (the same content as Markdown, figures linked) and
``checks.json`` (the summary and every check, for programs).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .._io import atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["Check", "PartResult", "Context", "check", "load_cached", "run_parts", "write_report", "machine_info",
           "single_threaded", "SCALES"]

TITLE = "isometry: reproduction of Pennington, Schoenholz & Ganguli (NIPS 2017)"

SCALES = ("quick", "default", "full", "paper")
"""Scales a :class:`Context` knows: ``quick`` (CI, a few minutes), ``default`` (minutes on 2 cores),
``full`` (larger grids on a CPU) and ``paper`` (the paper's sizes, for a GPU)."""


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
    """Build a :class:`Check`; by default passes when |measured - theory| <= tolerance (x |theory| if ``rel``).

    Example:
        >>> check("one is one", 1.0, 1.05, 0.1).passed
        True
    """
    theory_f, measured_f = float(theory), float(measured)
    tol = float(tolerance) * (abs(theory_f) if rel else 1.0)
    ok = bool(np.isfinite(measured_f) and abs(measured_f - theory_f) <= tol) if passed is None else bool(passed)
    default_rule = "abs(measured - theory) <= tolerance * |theory|" if rel else "abs(measured - theory) <= tolerance"
    return Check(claim, theory_f, measured_f, float(tolerance), ok, rule=rule or default_rule, kind=kind)


@dataclass
class PartResult:
    """What one part of the report found: its text, figures (paths) with their captions, checks and data.

    ``captions[i]`` says what to look at in ``figures[i]`` (shown under the figure in the report).
    ``reused`` is true when the part was read back from ``OUT/parts`` instead of computed.
    """

    name: str
    title: str
    text: str
    figures: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0
    failed: bool = False  # the part raised (then it is reported but not cached)
    captions: list[str] = field(default_factory=list)
    reused: bool = False

    def to_dict(self) -> dict:
        """JSON-ready fields (NumPy values made Python; NaN/inf made None)."""
        d = asdict(self)
        d["checks"] = [c.to_dict() for c in self.checks]
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: dict) -> "PartResult":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        return cls(**d)

    @property
    def n_passed(self) -> int:
        return sum(bool(c.passed) for c in self.checks)

    def caption(self, i: int) -> str:
        """The caption of figure ``i`` ("" when the part gave none)."""
        return self.captions[i] if i < len(self.captions) else ""


@dataclass
class Context:
    """Where and how the parts run.

    ``out`` (made absolute), ``scale`` (one of :data:`SCALES`), ``seed``, ``progress`` (show bars),
    ``log`` (where status lines go: a callable taking one line; None prints to stdout), and how the
    training runs are executed (``engine``, ``max_parallel``, ``address``, ``num_cpus``,
    ``num_gpus``, ``retries``: see :func:`isometry.experiments.run_experiment`).

    A part reports progress through :meth:`track` (a bar over its steps, with an ETA, nested under
    the report's bar) and :meth:`status` (a line of text that does not break the bars).
    """

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
    log: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    part: str = ""  # the part now running (set by run_parts)

    def __post_init__(self):
        self.out = Path(os.path.abspath(os.fspath(self.out)))
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")

    @property
    def quick(self) -> bool:
        return self.scale == "quick"

    def pick(self, quick, default, paper=None, *, full=None):
        """The setting for the current scale (``full`` defaults to ``default``, ``paper`` to ``full``)."""
        full = default if full is None else full
        return {"quick": quick, "default": default, "full": full, "paper": full if paper is None else paper}[self.scale]

    def run_options(self) -> dict:
        """The execution options of the training runs, as keyword arguments of ``run_experiment``."""
        return dict(engine=self.engine, max_parallel=self.max_parallel, address=self.address, num_cpus=self.num_cpus,
                    num_gpus=self.num_gpus, retries=self.retries)

    def figure_path(self, name: str) -> Path:
        p = self.out / "figures" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def status(self, msg: str) -> None:
        """Print one status line (to ``log``, default stdout) without breaking the progress bars."""
        from tqdm.auto import tqdm

        with tqdm.external_write_mode():
            if self.log is None:
                print(msg, flush=True)
            else:
                self.log(msg)

    def track(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
              unit: str = "step"):
        """A progress bar (``tqdm``, on stderr) over ``iterable`` or ``total`` steps of the running part.

        It shows the steps done, the rate and an ETA, sits under the report's bar and is removed when
        finished; with ``progress`` off, or when stderr is not a terminal, it draws nothing (and still
        iterates). Use it as an iterator
        (``for case in ctx.track(cases, desc="densities")``) or by hand (``bar = ctx.track(total=n);
        bar.update(1); bar.close()``).
        """
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc or self.part or None, unit=unit, leave=False,
                    disable=True if not self.progress else None, file=sys.stderr, dynamic_ncols=True)


def single_threaded(part: Callable[[Context], PartResult]) -> Callable[[Context], PartResult]:
    """Run ``part`` with one BLAS/OpenMP thread (``threadpoolctl``).

    For the theory parts, whose matrices have N <= 1000: threads gain little there, and on shared
    cores an OpenBLAS pool that waits for its busy siblings makes the same product an order of
    magnitude slower (measured: 11 s with one thread, 130 s with two, on 2 cores under a load of 8).
    """
    import functools

    @functools.wraps(part)
    def run(ctx: Context) -> PartResult:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return part(ctx)

    return run


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
            res = PartResult.from_dict(d["result"])
            res.reused = True
            return res
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # unreadable cache: recompute
        ctx.status(f"[{name}] {cache} is unreadable ({type(exc).__name__}: {exc}); computing the part again")
    return None


def _fmt_seconds(s: float) -> str:
    """``42.1 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(round(s % 60)):02d} s"
    return f"{int(s // 3600)} h {int(round(s % 3600 / 60)):02d} min"


def _part_lines(res: PartResult, out: Path, max_failed: int = 5) -> list[str]:
    """The status line of a finished part, then one indented line per failed check (at most ``max_failed``)."""
    n, ok = len(res.checks), res.n_passed
    reused = f" reused from {out / 'parts' / (res.name + '.json')}:" if res.reused else ""
    lines = [f"[{res.name}]{reused} {ok}/{n} checks passed" + (f", {n - ok} FAILED" if ok < n else "")
             + f" (computed in {_fmt_seconds(res.seconds)})"]
    bad = [c for c in res.checks if not c.passed]
    for c in bad[:max_failed]:
        lines.append(f"    FAILED: {c.claim} (theory {_fmt(c.theory)}, measured {_fmt(c.measured)}, "
                     f"tolerance {_fmt(c.tolerance)})")
    if len(bad) > max_failed:
        lines.append(f"    ... and {len(bad) - max_failed} more failed checks (see the report)")
    return lines


def run_parts(ctx: Context, parts: list[tuple[str, Callable[[Context], PartResult]]], *, force: bool = False,
              log: Callable[[str], None] | None = None) -> list[PartResult]:
    """Run (or reuse from ``OUT/parts``) every part; a part that raises becomes a failed check.

    A bar over the parts (stderr, when ``ctx.progress``) names the part running; each finished part
    prints one status line with its checks (and one line per failed check) through ``log`` (which
    then also becomes ``ctx.log`` for the parts' own status lines; default: ``ctx.log``).
    """
    from tqdm.auto import tqdm

    if log is not None:
        ctx.log = log
    results = []
    # bars only on a terminal (disable=None): a log file gets the status lines alone
    with tqdm(total=len(parts), desc="reproduce", unit="part", disable=True if not ctx.progress else None,
              file=sys.stderr, dynamic_ncols=True) as bar:
        for name, fn in parts:
            bar.set_postfix_str(name)
            ctx.part = name
            cached = None if force else load_cached(ctx, name)
            if cached is not None:
                results.append(cached)
                for line in _part_lines(cached, ctx.out):
                    ctx.status(line)
                bar.update(1)
                continue
            t0 = time.perf_counter()
            try:
                res = fn(ctx)
            except Exception as exc:  # the report records the failure instead of dying
                res = PartResult(name, name, f"This part failed: {type(exc).__name__}: {exc}", checks=[
                    Check(f"part '{name}' runs", "runs", f"{type(exc).__name__}: {exc}", "-", False,
                          rule="runs without error")
                ], failed=True)
            res.seconds = time.perf_counter() - t0
            res.reused = False
            for c in res.checks:
                c.part = name
            # relative to the report folder (a part's relative path is relative to the working directory)
            res.figures = [os.path.relpath(os.path.abspath(f), ctx.out) for f in res.figures]
            if not res.failed:
                atomic_write_json(ctx.out / "parts" / f"{name}.json",
                                  {"scale": ctx.scale, "seed": ctx.seed, "result": res.to_dict()})
            results.append(res)
            for line in _part_lines(res, ctx.out):
                ctx.status(line)
            bar.update(1)
        ctx.part = ""
    return results


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def _version(dist: str) -> str | None:
    """The installed version of ``dist`` without importing it (None when absent)."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _isometry_version() -> str:
    from .. import __version__

    return __version__


def machine_info() -> dict:
    """Where the report was made: CPUs (those this process may use, and the machine's), Python,
    NumPy, SciPy, matplotlib, torch (None when not installed) and isometry versions, the platform."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover  (not Linux)
        usable = os.cpu_count()
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpus": usable, "cpus_machine": os.cpu_count(), "cpu_model": cpu_model or None,
            "python": platform.python_version(), "numpy": np.__version__, "scipy": _version("scipy"),
            "matplotlib": _version("matplotlib"), "torch": _version("torch"), "isometry": _isometry_version(),
            "platform": platform.platform(terse=True)}


def _sorted_checks(checks: list[Check]) -> list[Check]:
    """Failing checks first, otherwise in the order the part made them."""
    return sorted(checks, key=lambda c: bool(c.passed))


def write_report(ctx: Context, results: list[PartResult], header: str = "", *,
                 wall_seconds: float | None = None) -> dict:
    """Write ``report.md``, ``index.html`` and ``checks.json`` into ``ctx.out``; return the summary.

    The summary (also the top of ``checks.json``): ``scale``, ``seed``, ``generated``, ``n_checks``,
    ``n_passed``, ``n_failed``, ``n_theory_failed``, ``seconds`` (compute time of the parts, summed;
    reused parts count with the time they took when computed), ``wall_seconds`` (this invocation,
    when given), ``machine`` (:func:`machine_info`), ``parts`` (per part: name, title, checks,
    passed, failed, seconds, reused, figures) and ``checks`` (every check, with its ``part``).
    """
    checks = [c.to_dict() for r in results for c in r.checks]
    n_pass = sum(bool(c["passed"]) for c in checks)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    theory = [c for c in checks if c.get("kind") == "theory"]
    machine = machine_info()
    seconds = float(sum(r.seconds for r in results))
    parts = [{"name": r.name, "title": r.title, "n_checks": len(r.checks), "n_passed": r.n_passed,
              "n_failed": len(r.checks) - r.n_passed, "seconds": r.seconds, "reused": r.reused,
              "failed": r.failed, "figures": [Path(f).as_posix() for f in r.figures]} for r in results]
    summary = {"scale": ctx.scale, "seed": ctx.seed, "generated": stamp, "n_checks": len(checks),
               "n_passed": n_pass, "n_failed": len(checks) - n_pass,
               "n_theory_failed": sum(not c["passed"] for c in theory), "seconds": seconds,
               "wall_seconds": wall_seconds, "machine": machine, "parts": parts, "checks": checks}
    atomic_write_json(ctx.out / "checks.json", summary)
    atomic_write_text(ctx.out / "report.md", _markdown(ctx, results, summary, header))
    atomic_write_text(ctx.out / "index.html", _html_page(ctx, results, summary, header))
    return summary


def _time_text(summary: dict, results: list[PartResult]) -> str:
    n_reused = sum(r.reused for r in results)
    text = f"{_fmt_seconds(summary['seconds'])} of computation"
    if n_reused:
        text += f" ({n_reused} of {len(results)} parts reused from an earlier run)"
    if summary.get("wall_seconds") is not None:
        text += f"; this run took {_fmt_seconds(summary['wall_seconds'])}"
    return text


def _machine_text(m: dict) -> str:
    cpus = f"{m['cpus']} CPU{'s' if m['cpus'] != 1 else ''}"
    if m.get("cpus_machine") and m["cpus_machine"] != m["cpus"]:
        cpus += f" (of {m['cpus_machine']})"
    if m.get("cpu_model"):
        cpus += f", {m['cpu_model']}"
    vers = ", ".join(f"{k} {m[k]}" for k in ("python", "numpy", "scipy", "matplotlib", "torch", "isometry")
                     if m.get(k))
    if not m.get("torch"):
        vers += ", torch not installed"
    return f"{cpus}; {vers}; {m['platform']}"


def _verdict(summary: dict) -> str:
    n, ok = summary["n_checks"], summary["n_passed"]
    if n == 0:
        return "no checks"
    return f"{ok} of {n} checks passed" + (f", {n - ok} failed" if ok < n else ": all passed")


def _split_note(summary: dict) -> str:
    """`` (failed: 1 theory check, 2 training outcomes)`` when training outcomes are among the failures."""
    n_fail, n_theory = summary["n_failed"], summary["n_theory_failed"]
    if n_fail == 0 or n_theory == n_fail:
        return ""
    return (f" (failed: {n_theory} theory check{'s' if n_theory != 1 else ''}, {n_fail - n_theory} training "
            f"outcome{'s' if n_fail - n_theory != 1 else ''})")


# --------------------------------------------------------------------------- Markdown
def _markdown(ctx: Context, results: list[PartResult], summary: dict, header: str) -> str:
    esc = lambda t: str(t).replace("|", "\\|").replace("\n", " ")  # noqa: E731  (a pipe would end the table cell)
    md = [f"# {TITLE}", "",
          f"**{_verdict(summary)}**{_split_note(summary)}", "",
          f"- Time: {_time_text(summary, results)}",
          f"- Scale: {ctx.scale}, seed {ctx.seed}",
          f"- Machine: {_machine_text(summary['machine'])}",
          f"- Generated: {summary['generated']}", ""]
    if header:
        md += [header, ""]
    md += ["| part | checks passed | failed | time |", "|---|---|---|---|"]
    md += [f"| {esc(r.title)} | {r.n_passed} / {len(r.checks)} | {len(r.checks) - r.n_passed} | "
           f"{_fmt_seconds(r.seconds)}{' (reused)' if r.reused else ''} |" for r in results]
    md += [""]
    header_row = ["| claim | theory | measured | tolerance | rule | passed |", "|---|---|---|---|---|---|"]

    def row(c: Check, part: bool = False) -> str:
        cells = ([esc(c.part)] if part else []) + [esc(c.claim), _fmt(c.theory), _fmt(c.measured), _fmt(c.tolerance),
                                                   esc(c.rule), "yes" if c.passed else "**NO**"]
        return "| " + " | ".join(cells) + " |"

    failed = [c for r in results for c in r.checks if not c.passed]
    if failed:
        md += ["## Failing checks", "", "| part " + header_row[0], "|---" + header_row[1]]
        md += [row(c, part=True) for c in failed] + [""]
    for r in results:
        md += [f"## {r.title}", "", r.text, ""]
        for i, f in enumerate(r.figures):
            md += [f"![{esc(r.caption(i) or r.name)}]({Path(f).as_posix()})", ""]
            if r.caption(i):
                md += [f"_{r.caption(i)}_", ""]
        if r.checks:
            md += header_row + [row(c) for c in _sorted_checks(r.checks)] + [""]
        md += [f"{r.n_passed} / {len(r.checks)} checks passed; computed in {_fmt_seconds(r.seconds)}"
               + (" (reused from an earlier run)" if r.reused else "") + ".", ""]
    return "\n".join(md)


def _paragraphs(text: str) -> str:
    """A part's text as HTML paragraphs (a blank line separates two, as in the Markdown report)."""
    return "".join(f"<p>{html.escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def _anchor(name: str) -> str:
    return "part-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


# --------------------------------------------------------------------------- HTML
_CSS = """
:root{--ok:#1a7f37;--bad:#b42318;--badbg:#fdecea;--line:#d0d7de;--muted:#57606a}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:0 auto;padding:1em 1.5em;
color:#1f2328;line-height:1.45}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid var(--line)}
.summary{border:1px solid var(--line);border-radius:8px;padding:.8em 1.2em;margin-bottom:1em}
.verdict{font-size:1.3em;font-weight:600}.verdict.ok{color:var(--ok)}.verdict.bad{color:var(--bad)}
.summary dl{display:grid;grid-template-columns:max-content 1fr;gap:.15em 1em;margin:.6em 0 0}
.summary dt{color:var(--muted)}.summary dd{margin:0}
table{border-collapse:collapse;font-size:.88em;margin:.6em 0;width:100%}
td,th{border:1px solid var(--line);padding:3px 7px;vertical-align:top;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f6f8fa}th button{all:unset;cursor:pointer;font-weight:600}
th button:focus-visible{outline:2px solid #0969da}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
tr.bad{background:var(--badbg)}td.pass{color:var(--ok);font-weight:600}tr.bad td.pass{color:var(--bad)}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:var(--muted);font-size:.92em;margin-top:.3em}
.missing{color:var(--bad);font-weight:600}.t{color:var(--muted);font-size:.9em}
"""

# sorts a table by the clicked column (numbers by value, text alphabetically); click again to reverse
_JS = """
(function(){
function key(td){var v=td.getAttribute("data-v");if(v===null)v=td.textContent.trim();
var n=Number(v);return (v!==""&&!isNaN(n))?[0,n]:[1,v.toLowerCase()];}
function cmp(a,b){if(a[0]!==b[0])return a[0]-b[0];return a[1]<b[1]?-1:a[1]>b[1]?1:0;}
document.querySelectorAll("table.sortable").forEach(function(t){
var ths=t.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th,i){th.querySelector("button").addEventListener("click",function(){
var asc=th.getAttribute("aria-sort")!=="ascending";
Array.prototype.forEach.call(ths,function(h){h.removeAttribute("aria-sort");});
th.setAttribute("aria-sort",asc?"ascending":"descending");
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
rows.sort(function(x,y){return cmp(key(x.cells[i]),key(y.cells[i]))*(asc?1:-1);});
rows.forEach(function(r){body.appendChild(r);});});});});
})();
"""


def _cell(v, cls: str = "num") -> str:
    """A table cell whose sort key (``data-v``) is the full value and whose text is the rounded one."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and np.isfinite(v):
        return f'<td class="{cls}" data-v="{float(v)!r}">{html.escape(_fmt(v))}</td>'
    return f"<td>{html.escape(_fmt(v))}</td>"


def _checks_table(checks: list[Check], *, part_column: bool, table_id: str) -> str:
    cols = (["part"] if part_column else []) + ["claim", "theory", "measured", "tolerance", "rule", "passed"]
    head = "".join(f'<th scope="col"><button type="button">{c}</button></th>' for c in cols)
    rows = []
    for c in _sorted_checks(checks):
        part = (f'<td><a href="#{_anchor(c.part)}">{html.escape(c.part)}</a></td>' if part_column else "")
        rows.append(
            f'<tr class="{"ok" if c.passed else "bad"}">{part}<td>{html.escape(c.claim)}</td>{_cell(c.theory)}'
            f"{_cell(c.measured)}{_cell(c.tolerance)}<td>{html.escape(c.rule)}</td>"
            f'<td class="pass" data-v="{int(bool(c.passed))}">{"yes" if c.passed else "NO"}</td></tr>')
    return (f'<table class="sortable checks" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _html_page(ctx: Context, results: list[PartResult], summary: dict, header: str) -> str:
    e = html.escape
    n_fail = summary["n_failed"]
    verdict_cls = "bad" if n_fail else "ok"
    theory_note = _split_note(summary)
    summary_html = (
        f'<section class="summary" id="summary"><div class="verdict {verdict_cls}" id="verdict">'
        f'<span id="n-passed">{summary["n_passed"]}</span> of <span id="n-checks">{summary["n_checks"]}</span> '
        f'checks passed, <span id="n-failed">{n_fail}</span> failed{e(theory_note)}</div><dl>'
        f"<dt>Time</dt><dd id=\"time\">{e(_time_text(summary, results))}</dd>"
        f"<dt>Scale</dt><dd id=\"scale\">{e(ctx.scale)}, seed {ctx.seed}</dd>"
        f"<dt>Machine</dt><dd id=\"machine\">{e(_machine_text(summary['machine']))}</dd>"
        f"<dt>Generated</dt><dd>{e(summary['generated'])}</dd></dl>"
        + (f"<p>{e(header)}</p>" if header else "") + "</section>")
    part_rows = "".join(
        f'<tr class="{"bad" if r.n_passed < len(r.checks) else "ok"}"><td><a href="#{_anchor(r.name)}">{e(r.title)}</a>'
        f'</td><td class="num" data-v="{len(r.checks)}">{r.n_passed} / {len(r.checks)}</td>'
        f'<td class="num" data-v="{len(r.checks) - r.n_passed}">{len(r.checks) - r.n_passed}</td>'
        f'<td class="num" data-v="{r.seconds!r}">{e(_fmt_seconds(r.seconds))}{" (reused)" if r.reused else ""}</td></tr>'
        for r in results)
    contents = ('<table class="sortable" id="parts"><thead><tr>'
                + "".join(f'<th scope="col"><button type="button">{c}</button></th>'
                          for c in ("part", "checks passed", "failed", "time"))
                + f"</tr></thead><tbody>{part_rows}</tbody></table>")
    failed = [c for r in results for c in r.checks if not c.passed]
    failed_html = (f'<section id="failing"><h2>Failing checks ({len(failed)})</h2>'
                   f"{_checks_table(failed, part_column=True, table_id='failing-checks')}</section>" if failed else "")
    sections = []
    for r in results:
        figs = []
        for i, f in enumerate(r.figures):
            p = ctx.out / f
            cap = r.caption(i)
            if p.is_file():
                b64 = base64.b64encode(p.read_bytes()).decode()
                figs.append(f'<figure><img alt="{e(cap or r.title)}" src="data:image/png;base64,{b64}">'
                            + (f"<figcaption>{e(cap)}</figcaption>" if cap else "") + "</figure>")
            else:
                figs.append(f'<p class="missing">Figure file missing: {e(Path(f).as_posix())}</p>')
        table = _checks_table(r.checks, part_column=False, table_id=f"checks-{_anchor(r.name)}") if r.checks else ""
        done = f"computed in {_fmt_seconds(r.seconds)}" + (" (reused from an earlier run)" if r.reused else "")
        sections.append(f'<section id="{_anchor(r.name)}"><h2>{e(r.title)}</h2>{_paragraphs(r.text)}{"".join(figs)}'
                        f'{table}<p class="t">{r.n_passed} / {len(r.checks)} checks passed; {e(done)}.</p></section>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(TITLE)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{e(TITLE)}</h1>{summary_html}"
            f"<nav><h2>Parts</h2>{contents}</nav>{failed_html}{''.join(sections)}"
            f"<script>{_JS}</script></body></html>")
