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
    run_parts(Context(out=tmp_path, scale="default", progress=False), [("ok", counting)], log=lambda m: None)
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
    for name in ("phase", "dphi"):  # every figure has a caption saying what to look at
        part = json.loads((tmp_path / "parts" / f"{name}.json").read_text())["result"]
        assert len(part["captions"]) == len(part["figures"]) == 1 and len(part["captions"][0]) > 80
    # re-running one part keeps the other finished parts in the report
    assert main(["reproduce", "--quick", "--out", str(tmp_path), "--only", "dphi", "--force", "--no-progress"]) == 0
    d2 = json.loads((tmp_path / "checks.json").read_text())
    assert {c["part"] for c in d2["checks"]} == {"phase", "dphi"}
    assert d2["n_checks"] == d["n_checks"]


@pytest.mark.parametrize("argv,needle", [
    (["reproduce", "--quick", "--scale", "paper"], "not allowed"),
    (["reproduce", "--only", "nope"], "invalid choice: 'nope'"),
    (["reproduce", "--address", "auto"], "address is for engine='ray' only"),
])
def test_reproduce_bad_input(argv, needle, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def _two_checks(ctx):
    for _ in ctx.track(range(3), desc="steps"):
        pass
    ctx.status("inside the part")
    return PartResult("mixed", "A mixed part", "text", [], [check("passes", 1.0, 1.0, 0.0), check("fails", 1.0, 2.0, 0.1)])


def test_status_lines_per_part_with_failed_checks(tmp_path):
    lines = []
    ctx = Context(out=tmp_path, scale="quick", progress=False)
    res = run_parts(ctx, [("ok", _part_ok), ("mixed", _two_checks)], log=lines.append)
    assert res[1].n_passed == 1 and ctx.log == lines.append
    assert lines[0].startswith("[ok] 1/1 checks passed (computed in ")
    assert lines[1] == "inside the part"  # a part's own status line goes through the same log
    assert lines[2].startswith("[mixed] 1/2 checks passed, 1 FAILED (computed in ")
    assert lines[3] == "    FAILED: fails (theory 1, measured 2, tolerance 0.1)"
    lines.clear()
    run_parts(ctx, [("ok", _part_ok)], log=lines.append)
    assert lines == [f"[ok] reused from {tmp_path / 'parts' / 'ok.json'}: 1/1 checks passed (computed in "
                     f"{res[0].seconds:.1f} s)"]


def test_status_default_stdout_and_bars_only_on_a_terminal(tmp_path, capsys):
    ctx = Context(out=tmp_path, scale="quick", progress=True)  # stderr is not a terminal under pytest: no bars
    run_parts(ctx, [("mixed", _two_checks)])
    captured = capsys.readouterr()
    assert "inside the part" in captured.out and "[mixed] 1/2 checks passed" in captured.out
    assert captured.err == ""
    bar = ctx.track(total=2)
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""


def test_theory_parts_run_single_threaded(tmp_path):
    from threadpoolctl import threadpool_info

    from isometry.report.core import single_threaded

    seen = []

    @single_threaded
    def part(ctx):
        seen.extend(p["num_threads"] for p in threadpool_info())
        return PartResult("p", "P", "", [], [])

    part(Context(out=tmp_path, scale="quick"))
    assert seen and set(seen) == {1}


def test_context_scales_and_old_caches(tmp_path):
    ctx = Context(out=tmp_path, scale="full")
    assert ctx.pick(1, 2) == 2 and ctx.pick(1, 2, full=3) == 3 and Context(out=tmp_path, scale="paper").pick(1, 2, full=3) == 3
    with pytest.raises(ValueError, match="scale must be one of quick, default, full, paper"):
        Context(out=tmp_path, scale="huge")
    # a cache written before captions existed, with a key this version does not know, still loads
    old = {"name": "x", "title": "X", "text": "", "figures": [], "checks": [], "data": {}, "seconds": 1.0,
           "failed": False, "future_key": 1}
    r = PartResult.from_dict(old)
    assert r.captions == [] and r.caption(0) == "" and not r.reused


def test_summary_markdown_and_checks_json(tmp_path):
    ctx = Context(out=tmp_path, scale="quick", progress=False)

    def captioned(ctx):
        res = _part_ok(ctx)
        res.captions = ["Look at the diagonal."]
        return res

    res = run_parts(ctx, [("ok", captioned), ("mixed", _two_checks)], log=lambda m: None)
    summary = write_report(ctx, res, wall_seconds=75.0)
    d = json.loads((tmp_path / "checks.json").read_text())
    assert d["n_checks"] == 3 and d["n_failed"] == 1 and d["wall_seconds"] == 75.0
    assert d["seconds"] == pytest.approx(sum(r.seconds for r in res))
    assert set(d["machine"]) >= {"cpus", "python", "numpy", "scipy", "matplotlib", "torch", "isometry", "platform"}
    assert d["machine"]["isometry"] == __import__("isometry").__version__
    assert [(p["name"], p["n_checks"], p["n_failed"], p["reused"]) for p in d["parts"]] == [
        ("ok", 1, 0, False), ("mixed", 2, 1, False)]
    assert d["parts"][0]["figures"] == ["figures/ok.png"] and summary["parts"] == d["parts"]
    md = (tmp_path / "report.md").read_text()
    head = md.split("\n## ", 1)[0]
    assert "**2 of 3 checks passed, 1 failed**" in head and "Machine: " in head and "this run took 1 min 15 s" in head
    assert "Scale: quick, seed 0" in head
    failing = md.split("## Failing checks", 1)[1].split("\n## ", 1)[0]
    assert "| mixed | fails |" in failing and "passes" not in failing
    assert md.index("## Failing checks") < md.index("## An OK part")
    mixed = md.split("## A mixed part", 1)[1]
    assert mixed.index("| fails |") < mixed.index("| passes |")  # failing first within a part
    assert "![Look at the diagonal.](figures/ok.png)" in md and "_Look at the diagonal._" in md
    html = (tmp_path / "index.html").read_text()
    assert html.index('id="summary"') < html.index('id="failing"') < html.index('id="part-ok"')
    assert "<figcaption>Look at the diagonal.</figcaption>" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch: the page works offline


def test_report_panels_write_atom_masses_beside_their_markers():
    """Without a legend (panels of the report's figures) every atom's measured and predicted mass is written
    on the axes; eigenvalues under the floor are said to be so, with the law's mass below it."""
    import isometry
    from isometry.plotting import pyplot
    from isometry.plotting.empirical import plot_comparison

    law = isometry.jacobian_spectrum("hard_tanh", 8, q_star=0.25)
    lam = isometry.empirical_eigenvalues("hard_tanh", 8, 200, q_star=0.25, seed=0).reshape(1, -1)
    c = isometry.compare(law, lam, n_boot=20)
    fig = plot_comparison(c, log=True, singular_values=True, legend=False)
    ax = fig.axes[0]
    assert ax.get_legend() is None
    texts = [t.get_text() for t in ax.texts]
    (top_atom,) = [m for loc, m in law.atoms if loc > 0]
    assert any(f"(theory {top_atom:.3g})" in t for t in texts), texts
    assert any(f"(theory {law.zero_mass:.3g})" in t for t in texts), texts
    pyplot().close(fig)

    deep = isometry.jacobian_spectrum("linear", 32, q_star=0.5, weights="gaussian")
    lam = isometry.empirical_eigenvalues("linear", 32, 200, q_star=0.5, weights="gaussian", seed=1).reshape(1, -1)
    c = isometry.compare(deep, lam, n_boot=20)
    fig = plot_comparison(c, log=True)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    below = float(deep.cdf(c.floor))
    assert deep.zero_mass == 0 and below > 0.1  # a tail too deep for float64, not an atom
    assert any("counted as 0" in lab and f"(theory {below:.3f})" in lab for lab in labels), labels
    pyplot().close(fig)


def test_universal_part_quick(tmp_path):
    from isometry.report.spectrum_parts import universal_part

    res = universal_part(Context(out=tmp_path, scale="quick", progress=False))
    assert len(res.captions) == len(res.figures) == 1 and all(c.passed for c in res.checks)
    assert set(res.data) == {"hard_tanh", "erf"} and res.data["erf"]["sup_distance_last"] < 0.02
