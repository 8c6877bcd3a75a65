"""`isometry empirical` command line."""

import json

import numpy as np
import pytest

import isometry
from isometry.cli import main


def test_json_matches_api(capsys, tmp_path):
    npy = tmp_path / "lam.npy"
    argv = ["empirical", "tanh", "--depth", "3", "--width", "60", "--q-star", "0.5", "--weights", "gaussian",
            "--samples", "2", "--seed", "5", "--json", "--save", str(npy)]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    lam = isometry.empirical_spectrum("tanh", 3, 60, q_star=0.5, weights="gaussian", n_samples=2, seed=5)
    assert d["mean"] == pytest.approx(lam.mean()) and d["variance"] == pytest.approx(lam.var())
    assert d["sigma_w2"] == pytest.approx(isometry.critical_point("tanh", 0.5).sigma_w2)
    assert np.array_equal(np.load(npy), lam.reshape(2, 60))


def test_compare_and_plot(capsys, tmp_path):
    png = tmp_path / "h.png"
    argv = ["empirical", "linear", "--depth", "2", "--width", "150", "--sigma-w2", "1", "--sigma-b2", "0",
            "--weights", "gaussian", "--compare", "-o", str(png), "--log"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "KS distance" in out and png.stat().st_size > 1000
    png2 = tmp_path / "h2.png"
    assert main(["empirical", "relu", "-L", "2", "-N", "40", "--q-star", "1", "-o", str(png2), "--singular-values", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plot"] == str(png2) and png2.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["empirical", "tanh", "--depth", "2", "--width", "10"], "--q-star"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--sigma-w2", "1"], "not both"),
        (["empirical", "tanh", "--depth", "0", "--width", "10", "--q-star", "1"], "--depth"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--weights", "haar"], "invalid choice"),
        (["empirical", "relu", "--depth", "2", "--width", "10", "--sigma-w2", "3", "--sigma-b2", "0"], "sigma_w2"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
