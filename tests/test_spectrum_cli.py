"""`isometry spectrum` command line."""

import json

import pytest

from isometry.cli import main


def test_spectrum_text(capsys):
    assert main(["spectrum", "tanh", "--depth", "4", "--q-star", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "mean      = 1" in out and "max eig" in out and "0.5:" in out


def test_spectrum_json_and_plot(tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["spectrum", "relu", "--depth", "3", "--q-star", "1", "--weights", "gaussian", "-o", str(png), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["zero_mass"] == pytest.approx(0.5) and d["var"] == pytest.approx(6.0)
    assert png.stat().st_size > 1000


def test_spectrum_off_criticality_log_form(capsys):
    assert main(["spectrum", "tanh", "--depth", "100000", "--sigma-w2", "3", "--sigma-b2", "0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mean"] is None and d["log_mean"] > 1e4


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["spectrum", "tanh", "--depth", "0", "--q-star", "1"], "--depth"),
        (["spectrum", "tanh", "--depth", "3"], "q_star"),
        (["spectrum", "tanh", "--depth", "3", "--q-star", "1", "--sigma-w2", "1", "--sigma-b2", "0"], "not both"),
        (["spectrum", "tanh", "--depth", "3", "--q-star", "-1"], "--q-star"),
        (["spectrum", "relu", "--depth", "3", "--sigma-w2", "3", "--sigma-b2", "0"], "sigma_w2"),
        (["spectrum", "tanh", "--depth", "3", "--q-star", "1", "--weights", "uniform"], "weights"),
    ],
)
def test_spectrum_bad_input(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and msg in err


def test_spectrum_plot_log_axis_choice(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    seen = []
    orig = matplotlib.figure.Figure.savefig

    def spy(self, *a, **k):
        seen.append(self.axes[0].get_xscale())
        return orig(self, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    base = ["spectrum", "tanh", "--depth", "4", "--q-star", "0.5", "-o"]
    assert main(base + [str(tmp_path / "a.png")]) == 0  # heavy lower tail: log by itself
    assert main(base + [str(tmp_path / "b.png"), "--no-log"]) == 0
    assert main(["spectrum", "tanh", "--depth", "100", "--q-star", "0.01", "-o", str(tmp_path / "c.png")]) == 0
    assert main(["spectrum", "tanh", "--depth", "100", "--q-star", "0.01", "-o", str(tmp_path / "d.png"), "--log",
                 "--eigenvalues"]) == 0
    assert seen == ["log", "linear", "linear", "log"]
    capsys.readouterr()


def test_spectrum_depth_beyond_the_documented_range(capsys):
    assert main(["spectrum", "tanh", "--depth", "100000000", "--q-star", "0.01"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "depth" in err and "1e+07" in err
