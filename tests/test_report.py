import json

import pytest

from isometry.cli import main
from isometry.report.core import Context, PartResult, check, run_parts, write_report


def _part_ok(ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from isometry.plotting import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    p = save_figure(fig, ctx.figure_path("ok"))
    return PartResult("ok", "An OK part", "text", [str(p)], [check("one is one", 1.0, 1.0, 0.0)])


def test_check_rules():
    assert check("x", 1.0, 1.05, 0.1).passed
    assert not check("x", 1.0, 1.2, 0.1).passed
    assert check("rel", 100.0, 104.0, 0.05, rel=True).passed
    assert not check("nan", 1.0, float("nan"), 1.0).passed
    d = check("inf", float("inf"), float("nan"), 1.0).to_dict()  # one rule for non-finite values: null
    assert d["theory"] is None and d["measured"] is None and d["passed"] is False


def test_parts_cached_and_failures_recorded(tmp_path):
    calls = []

    def counting(ctx):
        calls.append(1)
        return _part_ok(ctx)

    def broken(ctx):
        raise RuntimeError("boom")

    ctx = Context(out=tmp_path, scale="quick", progress=False)
    res = run_parts(ctx, [("ok", counting), ("broken", broken)], log=lambda m: None)
    assert [r.name for r in res] == ["ok", "broken"]
    assert not res[1].checks[0].passed and "boom" in res[1].checks[0].measured
    summary = write_report(ctx, res)
    assert summary["n_checks"] == 2 and summary["n_failed"] == 1
    d = json.loads((tmp_path / "checks.json").read_text())
    assert {"claim", "theory", "measured", "tolerance", "passed"} <= set(d["checks"][0])
    html = (tmp_path / "index.html").read_text()
    assert "data:image/png;base64" in html and "boom" in html
    assert "**NO**" in (tmp_path / "report.md").read_text()
    # second run reuses the finished part; a different scale recomputes it
    run_parts(ctx, [("ok", counting)], log=lambda m: None)
    assert len(calls) == 1
    run_parts(Context(out=tmp_path, scale="cpu", progress=False), [("ok", counting)], log=lambda m: None)
    assert len(calls) == 2
    # a part that raised is reported but not cached: the next run tries it again
    assert not (tmp_path / "parts" / "broken.json").exists()
    again = run_parts(ctx, [("broken", broken)], log=lambda m: None)
    assert again[0].failed and "boom" in again[0].checks[0].measured


def test_relative_out_from_another_directory(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["reproduce", "--quick", "--out", "rel/report", "--only", "phase", "--no-progress"]) == 0
    out = work / "rel" / "report"
    cached = json.loads((out / "parts" / "phase.json").read_text())
    assert cached["result"]["figures"] == ["figures/fig1_phase_tanh.png"]  # relative to the report folder
    md = (out / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert links and all((out / link).is_file() for link in links)
    assert (out / "index.html").read_text().count("data:image/png;base64") == 1
    # the same folder named from elsewhere: the finished part is reused, not recomputed
    monkeypatch.chdir(work / "rel")
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", "report", "--only", "phase", "--no-progress"]) == 0
    assert "[phase] reused" in capsys.readouterr().out
    assert (out / "index.html").read_text().count("data:image/png;base64") == 1


def test_reproduce_cli_phase_only(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--only", "phase", "dphi", "--no-progress"]) == 0
    d = json.loads((tmp_path / "checks.json").read_text())
    assert d["n_checks"] >= 10 and d["n_failed"] == 0
    assert (tmp_path / "figures" / "fig1_phase_tanh.png").exists()
    # re-running one part keeps the other finished parts in the report
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--only", "dphi", "--force", "--no-progress"]) == 0
    d2 = json.loads((tmp_path / "checks.json").read_text())
    assert {c["part"] for c in d2["checks"]} == {"phase", "dphi"}
    assert d2["n_checks"] == d["n_checks"]


@pytest.mark.parametrize("argv,needle", [
    (["reproduce", "--quick", "--paper-scale"], "not allowed"),
    (["reproduce", "--only", "nope"], "unknown report part"),
    (["reproduce", "--address", "auto"], "address is for engine='ray' only"),
])
def test_reproduce_bad_input(argv, needle, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
