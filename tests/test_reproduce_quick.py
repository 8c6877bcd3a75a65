"""The README's main job at --quick size: every part runs, every file is written, every theory check passes.

(Training outcomes are reported as measured; they are checks of kind "experiment" and may fail
without failing this test: a failed check is reported, never hidden.)
"""

import json

import pytest

from isometry.cli import main
from isometry.report.reproduce import PARTS


@pytest.mark.slow
def test_reproduce_quick(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # --json: only JSON on stdout, the status lines on stderr
    assert summary["n_checks"] > 0 and summary["n_passed"] + summary["n_failed"] == summary["n_checks"]
    assert "[training]" in captured.err
    for f in ("report.md", "index.html", "checks.json"):
        assert (out / f).stat().st_size > 0
    d = json.loads((out / "checks.json").read_text())
    parts = {c["part"] for c in d["checks"]}
    assert parts == {name for name, _ in PARTS}
    for c in d["checks"]:
        assert {"claim", "theory", "measured", "tolerance", "passed", "kind"} <= set(c)
    failed = [c["claim"] for c in d["checks"] if c["kind"] == "theory" and not c["passed"]]
    assert not failed, failed
    assert len(list((out / "figures").glob("*.png"))) >= len(PARTS)
    # the training runs are shared between the experiments and stored once
    training = out / "training"
    assert {p.name for p in training.iterdir()} >= {"runs", "E1", "E2", "E3"}
    for name in ("E1", "E2", "E3"):
        assert (training / name / "analysis.json").exists() and (training / name / "summary.csv").exists()
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64") >= len(PARTS)
    # resumable: a second run reuses every finished part
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("reused") == len(PARTS)
