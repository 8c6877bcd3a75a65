"""Fuzzing the command line: every verb, random argument lists.

Each example starts from a cheap valid command line of a verb and changes it: an option (taken
from the verb's own parser) set to a drawn token, a token dropped or inserted, the positional
replaced. It runs ``isometry.cli.main`` in a fresh directory and checks the contract of the CLI:
exit status 0 or 2 (1 only as documented: a failed run or check), never a traceback, stderr one
line on error, no temporary or partial file left, no file written outside the output paths given.

The heavy verbs (``train``, ``sweep``, ``reproduce``) are fuzzed up to the point where the work
would start (the task engine and the report's part runner are replaced by a sentinel that stops
the command there); tests/test_fuzz_regressions.py runs a real tiny run of each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from isometry import cli

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

OUTPUT_DESTS = {"out", "output", "save", "plot"}

BASE = {
    "critical": ["tanh", "--q-star", "0.5"],
    "phase": ["erf", "--grid", "6", "-o", "out/phase.png"],
    "spectrum": ["relu", "--depth", "3", "--q-star", "0.5"],
    "empirical": ["tanh", "--depth", "3", "--width", "8", "--q-star", "0.5"],
    "init-report": ["tanh", "--depth", "3", "--width", "8"],
    "train": ["--experiment", "E2", "--quick", "-o", "out/train"],
    "sweep": ["--experiment", "E2", "--quick", "-o", "out/sweep"],
    "reproduce": ["--quick", "-o", "out/report"],
}
HEAVY = {"train", "sweep", "reproduce"}
DEFAULT_OUTPUTS = {"phase": ["phase.png"], "reproduce": ["report"]}  # written when no output flag is given

TOKENS = ["0", "-1", "1", "2", "3", "0.5", "1.5", "1e308", "1e-320", "inf", "-inf", "nan", "NaN", "abc", "",
          " ", "true", "-", "--", "tanh", "relu", "hard_tanh", "linear", "erf", "orthogonal", "gaussian", "orth",
          "10000000", "99999999999999999999", "1e6", "3.0", "0x10", "\x00", "é", "auto", "cpu", "cuda", "cuda:x",
          "cuda:7", "mps", "tpu", "out/x.png", "out/x.pdf", "out/x.svg", "out/x.xyz", "out/x", "out/d/e/x.png",
          "out", ".", "/", "/dev/null", "/proc/nonexistent/x.png", "out/x.npy", "out/x.json", "E1", "E2", "E9",
          "phase", "densities", "nope", "sequential", "local", "ray"]

PLAUSIBLE = ["1", "2", "3", "4", "0.5", "0.25", "1.5", "0.1", "8", "16"]
token = st.one_of(st.sampled_from(PLAUSIBLE), st.sampled_from(TOKENS), st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
                  st.integers(-10**6, 10**6).map(str), st.floats().map(repr))


class _Reached(BaseException):
    """The command got as far as starting the work (a heavy verb's engine)."""


def _options(verb: str) -> list[argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    return [a for a in sub._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _option_tokens(action: argparse.Action):
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return st.tuples(flag).map(list)
    value = st.sampled_from(list(action.choices)) | token if action.choices else token
    if isinstance(action.nargs, int):
        n = st.just(action.nargs)
    elif action.nargs in ("+", "*"):
        n = st.integers(1, 3)
    else:
        n = st.just(1)
    return st.tuples(flag, n.flatmap(lambda k: st.lists(value, min_size=k, max_size=k))).map(
        lambda t: [t[0], *t[1]])


@st.composite
def command_lines(draw, verb: str):
    argv = list(BASE[verb])
    actions = _options(verb)
    for _ in range(draw(st.integers(1, 2))):
        op = draw(st.sampled_from(["option"] * 5 + ["drop", "insert", "positional"]))
        if op == "option" and actions:
            argv += draw(_option_tokens(draw(st.sampled_from(actions))))
        elif op == "drop" and argv:
            del argv[draw(st.integers(0, len(argv) - 1))]
        elif op == "insert":
            argv.insert(draw(st.integers(0, len(argv))), draw(token))
        elif op == "positional" and argv and not argv[0].startswith("-"):
            argv[0] = draw(token)
    return argv


def _cost_ok(verb: str, argv: list[str]) -> bool:
    """Whether a command line that parses asks for little work (valid but expensive requests are skipped)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = cli.build_parser().parse_args([verb, *argv])
    except (cli.UsageError, SystemExit):
        return True
    g = lambda name, default=1: getattr(args, name, default) or default  # noqa: E731
    if verb == "empirical":
        return g("depth") * g("width") ** 2 * g("samples") <= 2e5 and g("width") <= 2000
    if verb == "init-report":
        return g("depth") * (g("width") + g("d_in", 0) + g("d_out", 0)) <= 2e4 and g("depth") <= 500
    if verb == "phase":
        return g("grid") <= 30
    if verb == "spectrum":
        return getattr(args, "activation", "") not in ("tanh", "erf", "selu", "elu", "silu", "gelu", "softplus",
                                                      "sigmoid", "swish")
    return True


def _output_paths(verb: str, argv: list[str], cwd: str) -> list[str]:
    """The output paths the command line names (whether or not it parses), made absolute from ``cwd``."""
    actions = [a for a in _options(verb) if a.dest in OUTPUT_DESTS]
    flags = {s for a in actions for s in a.option_strings}
    paths = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t in flags]
    paths += [a.default for a in actions if isinstance(a.default, str)]  # written when the flag is not given
    paths += DEFAULT_OUTPUTS.get(verb, [])
    paths += [t.split("=", 1)[1] for t in argv if "=" in t and t.split("=", 1)[0] in flags]
    return [os.path.normpath(os.path.join(cwd, p)) for p in paths if p]


def _complete(path: str) -> bool:
    """Whether a file left behind is a complete file of its kind (not a partial write)."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as fh:
        head = fh.read(8)
    try:
        if ext == ".npy":
            np.load(path, allow_pickle=False)
        elif ext == ".json":
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        elif ext == ".png":
            return head.startswith(b"\x89PNG") and os.path.getsize(path) > 64
        elif ext == ".pdf":
            with open(path, "rb") as fh:
                return head.startswith(b"%PDF") and b"%%EOF" in fh.read()[-64:]
    except (OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def _heavy_work_stopped():
    """Replace the task engine and the report's part runner with :class:`_Reached`."""
    import importlib

    for name in ("isometry.sweeps", "isometry.sweeps.engine", "isometry.experiments", "isometry.experiments.pipeline",
                 "isometry.report", "isometry.report.core", "isometry.report.reproduce"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    saved = []

    def stop(*args, **kwargs):
        raise _Reached()

    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("isometry.") or mod is None:
            continue
        for attr in ("run_tasks", "run_parts"):
            if callable(getattr(mod, attr, None)):
                saved.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, stop)
    try:
        yield
    finally:
        for mod, attr, fn in saved:
            setattr(mod, attr, fn)


def run_cli(verb: str, argv: list[str], *, real: bool = False, inputs: dict | None = None):
    """Run ``isometry VERB ARGV`` in a fresh directory holding ``inputs`` ({name: text}): (status or None if
    the work was reached, stdout, stderr, the files left (relative, inputs excluded), that directory).
    Heavy verbs stop where their work would start unless ``real``."""
    old = os.getcwd()
    d = tempfile.mkdtemp(prefix="fuzzcli-")
    for name, text in (inputs or {}).items():
        with open(os.path.join(d, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    env = {"ISOMETRY_CACHE": os.path.join(d, "cache")}
    saved_env = {k: os.environ.get(k) for k in env}
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(d)
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            stop = _heavy_work_stopped() if verb in HEAVY and not real else contextlib.nullcontext()
            with stop:
                try:
                    code = cli.main([verb, *argv])
                except _Reached:
                    code = None
        files = [os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs]
        files = [f for f in files if f not in (inputs or {})]
    finally:
        os.chdir(old)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue(), files, d


def check_contract(verb: str, argv: list[str], **kw) -> int | None:
    code, out, err, files, d = run_cli(verb, argv, **kw)
    try:
        where = f"isometry {verb} {argv!r} -> {code}\nstderr: {err[-2000:]}"
        assert "Traceback" not in err and "Traceback" not in out, where
        assert code in (None, 0, 1, 2), where
        if code == 1:  # documented: a failed run / a failed check under --strict; never an internal error
            assert "internal error" not in err, where
        if code == 2:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("isometry"), where
        outputs = _output_paths(verb, argv, d)
        for f in files:
            path = os.path.join(d, f)
            name = os.path.basename(f)
            assert not (name.startswith(".") and ".tmp" in name), f"temporary file left: {f}\n{where}"
            if f.startswith("cache" + os.sep):
                continue
            inside = any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in outputs)
            assert inside, f"{f} written outside the output paths {outputs}\n{where}"
            assert _complete(path), f"partial file {f}\n{where}"
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    return code


@pytest.mark.parametrize("verb", sorted(BASE))
def test_base_command_lines_run(verb):
    """The starting points of the fuzzers are valid and cheap (heavy verbs reach their engine)."""
    code = check_contract(verb, BASE[verb])
    assert code == (None if verb in HEAVY else 0)


@pytest.mark.parametrize("verb", sorted(BASE))
@FUZZ
@given(data=st.data())
def test_fuzzed_command_lines(verb, data):
    argv = data.draw(command_lines(verb))
    assume(_cost_ok(verb, argv))
    event(f"exit {check_contract(verb, argv)}")


TINY_GRID = json.dumps([{"data": "digits", "depth": 2, "width": 8, "steps": 3, "n_evals": 1, "jacobian_inputs": 0,
                         "max_test": 64, "seed": s} for s in (0, 1)])


@pytest.mark.slow
@pytest.mark.parametrize("verb,argv,inputs", [
    ("train", ["--experiment", "E2", "--quick", "--steps", "3", "--seeds", "1", "--engine", "sequential",
               "--no-progress", "--no-plots", "-o", "out/train"], None),
    ("sweep", ["--grid", "grid.json", "--engine", "sequential", "--no-progress", "-o", "out/sweep"],
     {"grid.json": TINY_GRID}),
    ("reproduce", ["--quick", "--only", "phase", "--no-progress", "-o", "out/report"], None),
])
def test_a_real_tiny_run_of_each_heavy_verb_keeps_the_contract(verb, argv, inputs):
    pytest.importorskip("torch")
    assert check_contract(verb, argv, real=True, inputs=inputs) == 0
