"""The `isometry` command itself: defaults in every --help, one-line errors, a closed pipe."""

import argparse
import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from isometry import cli


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


def test_every_verb_shows_its_defaults():
    verbs = _subparsers(cli.build_parser())
    assert set(verbs) >= {"train", "sweep", "reproduce"}
    for name, p in verbs.items():
        assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
    text = " ".join(verbs["sweep"].format_help().split())
    assert "(default: local)" in text and "(default: 2)" in text and "(default: 1.0)" in text
    assert "(default: False)" not in text and "(default: None)" not in text  # nothing to show: nothing shown
    text = " ".join(verbs["reproduce"].format_help().split())
    from isometry.report.reproduce import PARTS

    assert "(default: report)" in text, text
    assert ", ".join(name for name, _ in PARTS) in text


def test_formatter_is_kept_when_a_verb_asks_for_another():
    parser = cli._Parser(prog="x", formatter_class=argparse.RawDescriptionHelpFormatter, description="a\n  b")
    parser.add_argument("--n", type=int, default=3, help="count")
    text = parser.format_help()
    assert "a\n  b" in text and "count (default: 3)" in text


def _raising(monkeypatch, exc):
    """Make every command raise ``exc`` as soon as it runs."""
    parser = cli.build_parser()

    def run(args):
        raise exc

    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                        lambda self, argv=None, namespace=None: argparse.Namespace(func=run))


def _unicode_error():
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc


def _numpy_memory_error():
    try:
        np.empty(2**62, dtype=np.int8)
    except MemoryError as exc:
        return exc


def _json_error():
    try:
        json.loads('{"a": ')
    except json.JSONDecodeError as exc:
        return exc


USER_ERRORS = [
    (TypeError("depth must be an integer"), "depth must be an integer"),
    (ValueError("width=1000000 would need about 25.5 TiB of memory"), "25.5 TiB"),
    (ModuleNotFoundError("pip install isometry[ray]"), "pip install"),
    (OSError(28, "could not write x: No space left on device"), "No space left"),
    (MemoryError(), "out of memory"),
    (_numpy_memory_error(), "Unable to allocate"),
    (OverflowError("cannot convert float infinity to integer"), "infinity"),
    (RecursionError("maximum recursion depth exceeded"), "too deeply nested"),
    (_unicode_error(), "not UTF-8"),
    (_json_error(), "Expecting value"),
    (pickle.UnpicklingError("invalid load key, 'x'."), "corrupt"),
    (EOFError("Ran out of input"), "ended early"),
    (zipfile.BadZipFile("File is not a zip file"), "corrupt"),
    (ValueError("first line\nsecond line\n  third"), "first line second line third"),
]


@pytest.mark.parametrize("exc,needle", USER_ERRORS, ids=[type(e).__name__ for e, _ in USER_ERRORS])
def test_user_errors_are_one_line_with_exit_2(capsys, monkeypatch, exc, needle):
    _raising(monkeypatch, exc)
    assert cli.main(["critical"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("isometry: error: ")
    assert needle in err and "Traceback" not in err


def test_argument_errors_are_one_line_with_exit_2(capsys):
    assert cli.main(["sweep", "--experiment", "E9", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err


def test_internal_errors_are_one_line_with_exit_1(capsys, monkeypatch):
    for exc in (AttributeError("'NoneType' object has no attribute 'x'"), KeyError("curve"), AssertionError(),
                ZeroDivisionError("division by zero"), RuntimeError("boom")):
        _raising(monkeypatch, exc)
        assert cli.main(["critical"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"internal error: {type(exc).__name__}" in err and "--debug" in err


def test_debug_shows_the_traceback(capsys, monkeypatch):
    _raising(monkeypatch, ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        cli.main(["--debug", "critical"])
    _raising(monkeypatch, KeyError("curve"))
    with pytest.raises(KeyError):
        cli.main(["--debug", "critical"])
    assert cli._debug_requested(["--debug", "critical"]) and not cli._debug_requested(["critical", "--debug"])


def test_interrupt_exits_130_quietly_and_a_closed_pipe_0(capsys, monkeypatch):
    _raising(monkeypatch, KeyboardInterrupt())
    assert cli.main(["critical"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    _raising(monkeypatch, BrokenPipeError())
    assert cli.main(["critical"]) == 0
    assert capsys.readouterr().err == ""


def test_debug_is_a_global_flag_in_help(capsys):
    assert "--debug" in cli.build_parser().format_help()


def test_closed_pipe_in_a_real_process_is_quiet():
    """``isometry spectrum ... | head -1``: the reader goes away; no traceback, no BrokenPipe message."""
    r = subprocess.run(f"{sys.executable} -m isometry.cli phase relu --grid 3 --json -o /dev/null | head -c 1",
                       shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
