"""The `isometry` command itself: defaults in every --help, one-line errors, a closed pipe."""

import argparse

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
    assert "(default: report)" in text and "phase, densities, moments, dphi, universal, training" in text


def test_formatter_is_kept_when_a_verb_asks_for_another():
    parser = cli._Parser(prog="x", formatter_class=argparse.RawDescriptionHelpFormatter, description="a\n  b")
    parser.add_argument("--n", type=int, default=3, help="count")
    text = parser.format_help()
    assert "a\n  b" in text and "count (default: 3)" in text


def test_errors_are_one_line_with_exit_2(capsys, monkeypatch):
    assert cli.main(["sweep", "--experiment", "E9", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err

    def raises(exc):
        def run(args):
            raise exc
        return run

    parser = cli.build_parser()
    for exc, code in [(TypeError("depth must be an integer"), 2), (ModuleNotFoundError("pip install isometry[ray]"), 2),
                      (OSError(28, "could not write x: No space left on device"), 2), (BrokenPipeError(), 0)]:
        monkeypatch.setattr(cli, "build_parser", lambda: parser)
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                            lambda self, argv=None, namespace=None, f=raises(exc): argparse.Namespace(func=f))
        assert cli.main([]) == code
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == (0 if code == 0 else 1)
        if code:
            assert err.startswith("isometry: error: ")

