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
