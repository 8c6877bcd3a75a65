"""`isometry empirical` command line."""

import errno
import json
import os

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
    lam = isometry.empirical_eigenvalues("tanh", 3, 60, q_star=0.5, weights="gaussian", n_samples=2, seed=5)
    assert d["mean"] == pytest.approx(lam.mean()) and d["variance"] == pytest.approx(lam.var())
    assert d["sigma_w2"] == pytest.approx(isometry.critical_point("tanh", 0.5).sigma_w2)
    assert d["q_star"] == pytest.approx(0.5) and d["q0"] == pytest.approx(0.5) and d["save"] == str(npy)
    assert np.array_equal(np.load(npy), lam.reshape(2, 60))
    assert d["memory_estimate"] == isometry.empirical.memory_estimate(60, n_samples=2, weights="gaussian")


def test_q0_flag_is_the_input_length(capsys):
    argv = ["empirical", "tanh", "-L", "3", "-N", "40", "--q-star", "0.5", "--q0", "2.0", "--seed", "1", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    lam = isometry.empirical_eigenvalues("tanh", 3, 40, q_star=0.5, q0=2.0, seed=1)
    assert d["q0"] == 2.0 and d["q_star"] == pytest.approx(0.5) and d["mean"] == pytest.approx(lam.mean())


def test_save_writes_exactly_the_name_given(capsys, tmp_path):
    """No suffix is appended: the .npy-format array lands under exactly the path given."""
    path = tmp_path / "sub" / "eigenvalues.dat"
    assert main(["empirical", "relu", "-L", "2", "-N", "30", "--q-star", "1", "--save", str(path)]) == 0
    assert "eigenvalues written to " + str(path) in capsys.readouterr().out
    assert sorted(os.listdir(path.parent)) == ["eigenvalues.dat"]
    assert np.load(path).shape == (1, 30)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_full_disk_leaves_no_partial_file(capsys, tmp_path, monkeypatch):
    """ENOSPC while the array is written: exit 2, one line naming the file and the cause; the old file is untouched
    and no temporary file is left behind."""
    path = tmp_path / "lam.npy"
    path.write_bytes(b"old content")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(isometry._io.os, "fsync", no_space)
    assert main(["empirical", "tanh", "-L", "2", "-N", "30", "--q-star", "0.5", "--save", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "No space left on device" in err
    assert path.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["lam.npy"]


def test_unwritable_outputs_are_refused_before_computing(capsys, tmp_path):
    assert main(["empirical", "tanh", "-L", "2", "-N", "10", "--q-star", "0.5", "--save", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            assert main(["empirical", "tanh", "-L", "2", "-N", "10", "--q-star", "0.5", "-o", str(locked / "a.png")]) == 2
            assert "permission denied" in capsys.readouterr().err
        finally:
            locked.chmod(0o700)


def test_absurd_width_is_refused_on_one_line(capsys):
    """Width 10^6 would need ~25 TiB: one line saying so, exit 2, at once."""
    import time

    t = time.perf_counter()
    assert main(["empirical", "tanh", "-L", "2", "-N", "1000000", "--q-star", "0.5", "--save", "never.npy"]) == 2
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("isometry: error: width=1000000 would need about 25.5 TiB of memory"), err
    assert not os.path.exists("never.npy")


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
        (["empirical", "tanh", "--depth", "2", "--width", "10"], "q_star"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--sigma-w2", "1"], "not both"),
        (["empirical", "tanh", "--depth", "0", "--width", "10", "--q-star", "1"], "--depth"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--weights", "haar"], "invalid choice"),
        (["empirical", "relu", "--depth", "2", "--width", "10", "--sigma-w2", "3", "--sigma-b2", "0"], "sigma_w2"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--seed", "-1"], "seed"),
        (["empirical", "tanh", "--depth", "2", "--width", "10", "--q-star", "1", "--q0", "0"], "--q0"),
    ],
)
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_fuzz_arguments_never_traceback(tmp_path):
    """Random (mostly bad) argument lists: exit 0, or exit 2 with one line on stderr; never a traceback or a
    partial file."""
    import contextlib
    import io

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    numbers = st.sampled_from(["0", "-1", "1", "2", "3", "2.5", "1e400", "nan", "inf", "-inf", "abc", "", "True", "1e6"])
    optional = st.one_of(st.none(), numbers)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(act=st.sampled_from(["tanh", "relu", "erf", "linear", "nope", ""]), depth=numbers,
           width=st.sampled_from(["1", "3", "0", "-2", "2.5", "1000000", "x", "1e9"]), q_star=optional, sw=optional,
           sb=optional, q0=optional, weights=st.sampled_from(["orthogonal", "gaussian", "orth", "haar"]),
           samples=st.sampled_from(["1", "2", "0", "1000000000000", "y"]), seed=st.sampled_from(["0", "-5", "z", "7"]),
           extra=st.lists(st.sampled_from(["--stable", "--compare", "--log", "--json", "--singular-values"]),
                          max_size=3, unique=True))
    def run(act, depth, width, q_star, sw, sb, q0, weights, samples, seed, extra):
        argv = ["empirical", act, "-L", depth, "-N", width, "--weights", weights, "--samples", samples, "--seed", seed,
                "--save", str(tmp_path / "out.npy"), *extra]
        for flag, v in (("--q-star", q_star), ("--sigma-w2", sw), ("--sigma-b2", sb), ("--q0", q0)):
            if v is not None:
                argv += [flag, v]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
        assert rc in (0, 2), (argv, rc)
        if rc == 2:
            assert len(err.getvalue().strip().splitlines()) == 1, (argv, err.getvalue())
        assert [p for p in os.listdir(tmp_path) if p != "out.npy"] == []  # no temporary files left

    run()
