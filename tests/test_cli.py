import json
import re
from pathlib import Path

import pytest

from isometry.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_critical_json(capsys):
    assert main(["critical", "erf", "--q-star", "0.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) >= {"sigma_w2", "sigma_b2", "mu1", "mu2", "chi"}
    assert d["chi"] == pytest.approx(1.0)
    assert d["sigma_w2"] == pytest.approx((1 + 3.141592653589793 * 0.5) ** 0.5)


def test_critical_text(capsys):
    assert main(["critical", "tanh", "--q-star", "0.0259"]) == 0
    out = capsys.readouterr().out
    assert "sigma_w2" in out and "1.04996" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["critical", "nope", "--q-star", "1"], "unknown activation"),
        (["critical", "tanh", "--q-star", "-1"], "--q-star"),
        (["critical", "tanh", "--q-star", "nan"], "--q-star"),
        (["critical", "tanh"], "--q-star"),
        (["critical", "sigmoid", "--q-star", "0.5"], "sigma_b2"),
        (["phase", "tanh", "--sigma-w2", "3", "1"], "--sigma-w2"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert needle in err
    assert "Traceback" not in err


def test_phase_plot(tmp_path, capsys):
    out = tmp_path / "p.png"
    assert main(["phase", "tanh", "-o", str(out), "--grid", "40"]) == 0
    assert out.stat().st_size > 10_000


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert len(blocks) == 2, "README must have exactly two set-up commands"
    assert "isometry reproduce" in blocks[0]
    test_cmd = blocks[1].strip()
    assert test_cmd in ci.splitlines()


@pytest.mark.parametrize("act", ["relu", "linear", "leaky_relu"])
def test_phase_homogeneous_units(act, tmp_path, capsys):
    out = tmp_path / f"{act}.png"
    assert main(["phase", act, "-o", str(out), "--grid", "30", "--json"]) == 0
    captured = capsys.readouterr()
    d = json.loads(captured.out)  # stdout is JSON only; the status line went to stderr
    assert "wrote" in captured.err and out.stat().st_size > 10_000
    lo, hi = d["sigma_w2_range"]
    crit = 2.0 if act == "relu" else 1.0 if act == "linear" else 2 / (1 + 0.01**2)
    assert lo < crit < hi  # the default grid shows the critical point and where q* stops existing
    assert d["critical_line"] and all(p["sigma_w2"] == pytest.approx(crit, rel=1e-12) and p["sigma_b2"] == 0.0
                                      for p in d["critical_line"])


def test_phase_json_is_the_critical_line(tmp_path, capsys):
    assert main(["phase", "tanh", "-o", str(tmp_path / "p.png"), "--grid", "30", "--json"]) == 0
    text = capsys.readouterr().out
    d = json.loads(text)
    assert len(text) < 20_000 and set(d) == {"activation", "sigma_w2_range", "sigma_b2_range", "critical_line"}
    pts = d["critical_line"]
    assert len(pts) > 10 and set(pts[0]) == {"q_star", "sigma_w2", "sigma_b2"}
    for p in pts[::5]:
        cp = __import__("isometry").critical_point("tanh", p["q_star"])
        assert (p["sigma_w2"], p["sigma_b2"]) == (pytest.approx(cp.sigma_w2), pytest.approx(cp.sigma_b2))
        assert 0.5 <= p["sigma_w2"] <= 3.0 and 0.0 <= p["sigma_b2"] <= 0.25


def test_critical_hint_names_a_q_star_that_exists(capsys):
    assert main(["critical", "sigmoid", "--q-star", "1"]) == 2
    err = capsys.readouterr().err
    q_min = float(re.search(r"q_star >= ([0-9.]+)", err).group(1))
    assert main(["critical", "sigmoid", "--q-star", str(q_min * 1.01), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sigma_b2"] >= 0
    assert main(["critical", "softplus", "--q-star", "1"]) == 2
    assert "no q_star in" in capsys.readouterr().err


# ------------------------------------------------------------------ conventions shared by the theory verbs
THEORY_VERBS = ["critical", "phase", "spectrum", "empirical", "init-report"]


def _subparser(verb):
    import argparse

    from isometry.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[verb]


@pytest.mark.parametrize("verb", THEORY_VERBS)
def test_every_option_documented_and_one_output_flag(verb):
    p = _subparser(verb)
    for a in p._actions:
        assert a.help and a.help.strip(), (verb, a.option_strings or a.dest)
    positional = [a for a in p._actions if not a.option_strings]
    assert [a.metavar for a in positional] == ["ACTIVATION"]
    flags = {s for a in p._actions for s in a.option_strings}
    assert not flags & {"--output", "--plot"}  # the one output flag is -o/--out
    if verb != "critical":
        (out,) = [a for a in p._actions if "--out" in a.option_strings]
        assert out.option_strings == ["-o", "--out"] and out.metavar == "PATH" and out.dest == "out"
    text = " ".join(p.format_help().split())
    assert "ACTIVATION" in text and "--json" in text and "status lines go to stderr" in text


@pytest.mark.parametrize("argv", [
    ["phase", "tanh", "--grid", "6"],
    ["spectrum", "relu", "--depth", "3", "--q-star", "1"],
    ["empirical", "relu", "-L", "2", "-N", "30", "--q-star", "1", "--compare", "--no-progress"],
    ["init-report", "tanh", "--depth", "3", "--width", "8"],
])
def test_json_with_a_figure_keeps_stdout_pure(argv, tmp_path, capsys):
    if argv[0] == "init-report":
        pytest.importorskip("torch")
    png = tmp_path / "fig.png"
    assert main([*argv, "-o", str(png), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout is one JSON document, nothing else
    assert f"wrote {png}" in captured.err and png.stat().st_size > 5000


def test_phase_json_alone_writes_no_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["phase", "tanh", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["critical_line"] and list(tmp_path.iterdir()) == []
    assert main(["phase", "tanh", "--grid", "6"]) == 0  # without --json the figure goes to phase.png
    assert (tmp_path / "phase.png").is_file() and "wrote phase.png" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["critical", "tanh", "--q-star", "0.5"],
    ["phase", "tanh"],
    ["spectrum", "tanh", "--depth", "4", "--q-star", "0.5"],
    ["empirical", "tanh", "-L", "2", "-N", "20", "--q-star", "0.5"],
    ["init-report", "tanh", "--depth", "3", "--width", "8"],
])
@pytest.mark.parametrize("json_flag", [True, False])
def test_closed_pipe_exits_quietly(argv, json_flag, tmp_path):
    """`isometry VERB ... | head -1`: the reader is gone before the command writes; it ends with status 0 and
    says nothing on stderr (no traceback, no 'Exception ignored')."""
    import subprocess
    import sys

    if argv[0] == "init-report":
        pytest.importorskip("torch")
    if argv[0] == "phase" and not json_flag:
        argv = [*argv, "--grid", "5", "-o", str(tmp_path / "p.png")]
    code = "import sys; from isometry.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv, *(["--json"] if json_flag else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # like `head` after its line, before the command has printed anything
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""
