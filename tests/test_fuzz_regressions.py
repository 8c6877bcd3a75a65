"""The bad inputs and faults an audit found, one test each, named by their class, and what the fuzzers
found beyond them.

Classes: (1) a transient fault becomes permanent, (2) partial files under final names, (3)
tracebacks from the CLI, (4) silent wrong answers, (5) unbounded work, (6) half-done changes.
Classes 1 and 2 are covered by tests/test_faults.py and tests/test_io.py; class 6 by
tests/test_torch_init.py (all-or-nothing ``critical_init_``).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
import tracemalloc

import numpy as np
import pytest

import isometry
from isometry.cli import main


def _one_line_exit_2(capsys, argv, needle: str = "", seconds: float = 30.0) -> str:
    t = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t < seconds
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("isometry") and "Traceback" not in err, err
    assert needle in err, err
    return err


# ------------------------------------------------------------------ class 3: tracebacks from the CLI
def test_class3_memory_error_from_an_absurd_grid_is_one_line(capsys):
    err = _one_line_exit_2(capsys, ["phase", "tanh", "--grid", "100000", "-o", "x.png"], "phase_diagram")
    assert "needs about" in err and "TiB" in err and not os.path.exists("x.png")


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "cuda:-1", "gpu0", ""])
def test_class3_bad_device_strings_are_one_line(capsys, tmp_path, device):
    pytest.importorskip("torch")
    err = _one_line_exit_2(capsys, ["sweep", "--experiment", "E2", "--quick", "--device", device, "-o",
                                    str(tmp_path / "out"), "--engine", "sequential", "--no-progress"])
    assert "device" in err


@pytest.mark.parametrize("grid,needle", [
    ('[{"depth": "3"}]', "depth"),
    ('[{"width": 8.5}]', "width"),
    ('[{"depth": true}]', "depth"),
    ('[{"q_star": "abc"}]', "q_star"),
    ('[{"learning_rate": null}]', "learning_rate"),
    ('[{"deptj": 3}]', "deptj"),  # class 4: a typo is refused naming the key and the valid ones
    ("[null]", "configuration"),
    ('{"depth": 3}', "list"),
    ('[{"depth": 3}', "JSON"),
    ("\xff\xfe", "UTF-8"),
    ("[" * 100000 + "]" * 100000, "nested"),
])
def test_class3_wrong_types_in_a_grid_file_are_one_line(capsys, tmp_path, grid, needle):
    path = tmp_path / "grid.json"
    path.write_bytes(grid.encode("latin-1") if grid.startswith("\xff") else grid.encode())
    err = _one_line_exit_2(capsys, ["sweep", "--grid", str(path), "-o", str(tmp_path / "out"), "--engine",
                                    "sequential", "--no-progress"], needle)
    if needle == "deptj":
        assert "valid fields" in err and "depth" in err
    assert not os.path.exists(tmp_path / "out" / "runs")


def test_class3_absent_device_is_refused_up_front(capsys, tmp_path):
    pytest.importorskip("torch")
    _one_line_exit_2(capsys, ["sweep", "--experiment", "E2", "--quick", "--device", "cuda:99", "-o",
                              str(tmp_path / "out"), "--engine", "sequential", "--no-progress"], "cuda:99")


def test_class3_record_with_null_config_is_not_a_traceback(capsys, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "x.json").write_text('{"run_id": "x", "config": null}')
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"data": "digits", "depth": 2, "width": 8, "steps": 2, "n_evals": 1,
                                 "jacobian_inputs": 0, "max_test": 32}]))
    code = main(["sweep", "--grid", str(grid), "-o", str(out), "--engine", "sequential", "--no-progress"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and "internal error" not in err, err


def _pickle_bytearray(n: int) -> bytes:
    b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x80\x02cbuiltins\nbytearray\n\x8a" + bytes([len(b)]) + b + b"\x85R."


@pytest.mark.parametrize("attack", ["bytearray", "bytes8", "reconstruct", "object_array", "code", "oversized"])
def test_class3_and_5_malicious_cifar_pickles_are_refused_before_allocating(tmp_path, monkeypatch, attack):
    """A small pickle must not make the loader allocate 10^12 bytes, crash the interpreter (an object
    array whose state holds a short list) or run code; each is a ValueError naming the file."""
    from isometry.experiments import data as D

    if attack == "bytearray":
        raw = _pickle_bytearray(10**12)
    elif attack == "bytes8":  # a length field claiming 10^12 bytes
        raw = b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc."
    elif attack == "reconstruct":
        b = (10**12).to_bytes(6, "little")
        raw = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x06" + b
               + b"\x85C\x01b\x87R.")
    elif attack == "object_array":
        raw = pickle.dumps({b"data": np.array([1, 2], dtype=object), b"labels": [0]}, protocol=2)
    elif attack == "code":
        raw = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x85R."
    else:  # a file larger than any batch (the limit lowered to keep the test small)
        monkeypatch.setattr(D, "MAX_CIFAR_FILE_BYTES", 4096)
        raw = b"\x80\x02" + b"N" * 4096
    for name in D.CIFAR_FILES:
        (tmp_path / name).write_bytes(raw)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="data_batch_1"):
            D.load_cifar10(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(raw) + 2**26


def test_class3_cli_flags_debug_and_internal_errors(capsys, monkeypatch):
    """--debug shows the traceback; an internal error is one line naming its type (exit 1)."""
    import isometry.meanfield as mf

    def bug(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'sigma_w2'")

    monkeypatch.setattr(mf, "critical_point", bug)
    assert main(["critical", "tanh", "--q-star", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error: AttributeError" in err and "--debug" in err
    with pytest.raises(AttributeError):
        main(["--debug", "critical", "tanh", "--q-star", "0.5"])


# ------------------------------------------------------------------ class 4: silent wrong answers
def test_class4_user_activation_with_nan_raises_instead_of_nan(capsys):
    with pytest.raises(ValueError, match="not finite"):
        isometry.get_activation(lambda h: np.where(h > 3, np.nan, np.tanh(h)))
    far = isometry.get_activation(lambda h: np.where(np.abs(h) > 20, np.nan, np.tanh(h)), name="nan_far")
    assert np.isfinite(isometry.critical_point(far, 0.5).sigma_b2)  # fine where phi is finite
    with pytest.raises(ValueError, match="nan_far.*not finite"):
        isometry.critical_point(far, 100.0)  # h reaches |h| > 20: an error, never sigma_b2 = nan


def test_class4_non_elementwise_callable_is_refused():
    with pytest.raises(ValueError, match="elementwise"):
        isometry.get_activation(lambda h: h / np.linalg.norm(h))
    with pytest.raises(ValueError, match="elementwise"):
        isometry.get_activation(lambda h: np.tanh(h - np.mean(h)))


@pytest.mark.parametrize("call", [
    lambda: isometry.jacobian_spectrum("tanh", True, q_star=0.5),
    lambda: isometry.empirical_eigenvalues("tanh", True, 8, q_star=0.5),
    lambda: isometry.empirical_eigenvalues("tanh", 2, 8, q_star=0.5, n_samples=np.bool_(True)),
    lambda: isometry.critical_point("tanh", True),
    lambda: isometry.mu("tanh", 1.0, k=True),
    lambda: isometry.jacobian_spectrum("relu", 3, q_star=0.5).moment(True),
    lambda: isometry.jacobian_spectrum("relu", 3, q_star=0.5).rvs(size=True),
    lambda: isometry.compare(isometry.jacobian_spectrum("relu", 3, q_star=0.5), [1.0, 2.0], n_boot=True),
    lambda: isometry.haar_orthogonal(True),
    lambda: isometry.empirical_eigenvalues("tanh", 2, 8, q_star=0.5, stable=1),
])
def test_class4_booleans_are_not_numbers(call):
    with pytest.raises(TypeError):
        call()


def test_class4_spectrum_at_depth_1e7_has_bands_a_cdf_and_quantiles():
    sp = isometry.jacobian_spectrum("erf", 10**7, q_star=0.1)
    t = sp.log_eigenvalues.ppf([0.1, 0.5, 0.9])
    assert np.all(np.isfinite(t)) and t[0] < t[1] < t[2]
    f = sp.log_eigenvalues.cdf(t)
    assert np.allclose(f, [0.1, 0.5, 0.9], atol=1e-6)


def test_class4_singular_value_density_is_never_negative():
    sp = isometry.jacobian_spectrum("erf", 10, q_star=0.5)
    s = np.array([-5.0, -1e-300, 0.0, 0.5, 1.0, 3.0])
    p = sp.singular_values.pdf(s)
    assert np.all(p >= 0) and np.all(p[:3] == 0)


# ------------------------------------------------------------------ class 5: unbounded work
def test_class5_init_report_at_depth_1e7_is_refused_at_once(capsys):
    pytest.importorskip("torch")
    err = _one_line_exit_2(capsys, ["init-report", "tanh", "--depth", "10000000", "--width", "64"], "depth",
                           seconds=20)
    assert "GiB" in err or "would take" in err


def test_class5_empirical_width_1e6_is_refused_before_allocating(capsys):
    tracemalloc.start()
    try:
        err = _one_line_exit_2(capsys, ["empirical", "tanh", "--depth", "2", "--width", "1000000", "--q-star", "0.5"],
                               "width=1000000 would need about 25.5 TiB")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**26 and "available" in err


@pytest.mark.parametrize("call,needle", [
    (lambda: isometry.phase_diagram("tanh", np.linspace(0.5, 3, 10**5), np.linspace(0, 0.2, 10**5)), "phase_diagram"),
    (lambda: isometry.jacobian_spectrum("relu", 3, q_star=0.5).rvs(size=10**12), "rvs"),
    (lambda: isometry.jacobian_spectrum("relu", 3, q_star=0.5).rvs(size=(10**6, 10**6)), "rvs"),
    (lambda: isometry.compare(isometry.jacobian_spectrum("relu", 3, q_star=0.5), [1.0, 2.0], n_boot=10**13),
     "n_boot"),
    (lambda: isometry.haar_orthogonal(10**7), "haar_orthogonal"),
    (lambda: isometry.empirical.gaussian_matrix(10**7), "gaussian_matrix"),
])
def test_class5_requests_that_cannot_fit_are_refused_saying_how_much(call, needle):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=rf"{needle}.*needs about [\d.]+ [KMGTP]iB of memory"):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**26 and time.perf_counter() - t < 10


def test_class5_q_star_on_a_large_array_has_bounded_temporaries():
    """The Gaussian expectations run in chunks: a million points need ~50 doubles each, not ~600."""
    sw = np.linspace(0.5, 1.5, 2 * 10**5)
    tracemalloc.start()
    try:
        q = isometry.q_star("erf", sw, 0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.all(np.isfinite(q)) and peak < 64 * 8 * sw.size + 2**25


def test_class5_rvs_memory_does_not_grow_with_the_hooks():
    """Samples are drawn through the quantile function in chunks: the peak stays near the output."""
    sp = isometry.jacobian_spectrum("relu", 4, q_star=0.5)
    sp.rvs(10, random_state=0)
    tracemalloc.start()
    try:
        x = sp.rvs(20000, random_state=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (20000,) and np.all(x >= 0) and peak < 2**26


def test_class5_mnist1d_size_is_checked():
    pytest.importorskip("mnist1d")
    from isometry.experiments import data as D

    with pytest.raises(ValueError, match="num_samples.*needs about"):
        D.load_mnist1d(10**13, cache=False)
    with pytest.raises(TypeError, match="num_samples"):
        D.load_mnist1d(True)


# ------------------------------------------------------------------ class 6: half-done changes
def test_class6_a_module_applied_twice_counts_as_two_layers():
    torch = pytest.importorskip("torch")
    from torch import nn

    import isometry.torch as it

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(8, 8), nn.Tanh()

        def forward(self, x):
            return self.act(self.lin(self.act(self.lin(x))))

    rep = it.critical_init_(Twice(), q_star=0.5, example_input=torch.randn(4, 8, generator=torch.Generator().manual_seed(0)))
    assert rep.depth == 2 and [layer.name for layer in rep.layers] == ["lin", "lin"]


def test_class6_critical_init_is_all_or_nothing():
    torch = pytest.importorskip("torch")
    from torch import nn

    import isometry.torch as it

    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Softsign())  # no registry unit: refused
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((ValueError, TypeError)):
        it.critical_init_(model, q_star=0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------ found by the fuzzers (not in the audit's list)
def test_fuzz_found_q0_that_does_not_broadcast_names_it():
    with pytest.raises(ValueError, match="q0 of shape"):
        isometry.chi("erf", [1.5, 2.0, 2.5], 0.1, q0=[1.0, 2.0])
    with pytest.raises(ValueError, match="q0 of shape"):
        isometry.q_star("erf", [], 0.1, q0=[0.0, 0.0])


@pytest.mark.parametrize("kw", [{"sigma_w2": 1e308}, {"sigma_b2": 1e308}])
def test_fuzz_found_huge_variances_diverge_without_overflow_warnings(kw):
    args = {"sigma_w2": 2.0, "sigma_b2": 0.1, "q0": None, **kw}
    with pytest.raises(ValueError, match="diverges|not finite"):
        isometry.xi_q("erf", **args)
    # a huge starting length is fine for a bounded unit: q comes down to q*
    assert np.isfinite(isometry.xi_q("erf", 2.0, 0.1, q0=1e308))


def test_fuzz_found_compare_with_text_samples_names_them():
    sp = isometry.jacobian_spectrum("relu", 3, q_star=0.5)
    with pytest.raises(TypeError, match="samples"):
        isometry.compare(sp, "")
    with pytest.raises(TypeError, match="quantiles"):
        isometry.compare(sp, [1.0, 2.0], quantiles="abc")


def test_fuzz_found_rvs_size_of_the_wrong_type_names_size():
    sp = isometry.jacobian_spectrum("relu", 3, q_star=0.5)
    for size in (2.5, "3", [1.5]):
        with pytest.raises(TypeError, match="size"):
            sp.rvs(size=size)


def test_fuzz_found_wrong_subnet_callable_names_subnet():
    with pytest.raises(TypeError, match="subnet must"):
        isometry.tat_transform("leaky_relu", 3, subnet=np.tanh)


@pytest.mark.timeout(5)
def test_fuzz_found_shaping_at_a_huge_depth_is_refused_at_once():
    with pytest.raises(ValueError, match="depth"):
        isometry.tat_transform("leaky_relu", 10**9, eta=0.5)


# the torch adapter (isometry.torch): found by tests/test_fuzz_torch.py
@pytest.mark.parametrize("x", [True, "float64"])
def test_fuzz_found_jacobian_of_an_input_the_model_rejects_names_x(x):
    torch = pytest.importorskip("torch")
    import isometry.torch as it

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    x = torch.zeros(2, 4, dtype=torch.float64) if x == "float64" else x
    with pytest.raises((TypeError, ValueError), match=r"\bx\b"):
        it.jacobian(model, x)


def test_fuzz_found_array_dtype_names_dtype():
    torch = pytest.importorskip("torch")
    import isometry.torch as it

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    with pytest.raises(TypeError, match="dtype"):
        it.jacobian_eigenvalues(model, torch.zeros(2, 4), dtype=np.array([]))


def test_fuzz_found_critical_init_says_why_a_prediction_is_missing():
    """At a q* where the law cannot be traced, the missing prediction is explained in the notes."""
    torch = pytest.importorskip("torch")
    import isometry.torch as it

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4), torch.nn.Tanh())
    try:
        rep = it.critical_init_(model, q_star=947.0)
    except ValueError as exc:
        assert "q_star" in str(exc)
        return
    assert np.isfinite(rep.predicted_max_singular_value) or any("q*" in n for n in rep.notes)


# the training pipeline (isometry.experiments, isometry.sweeps)
@pytest.mark.parametrize("case", ["too_wide", "corrupt_cifar"])
def test_input_that_no_retry_can_fix_is_refused_up_front(capsys, tmp_path, case):
    pytest.importorskip("torch")
    if case == "too_wide":
        cfg = {"data": "digits", "depth": 2, "width": 10**8, "steps": 2, "n_evals": 1, "jacobian_inputs": 0}
    else:
        for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
            (tmp_path / name).write_bytes(_pickle_bytearray(10**12))
        cfg = {"data": "cifar10", "data_dir": str(tmp_path), "depth": 2, "width": 8, "steps": 2, "n_evals": 1,
               "jacobian_inputs": 0}
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([cfg]))
    _one_line_exit_2(capsys, ["sweep", "--grid", str(grid), "-o", str(tmp_path / "out"), "--engine", "sequential",
                              "--no-progress"])


@pytest.mark.parametrize("x", [float("nan"), 1j])
def test_fuzz_found_spectrum_estimate_of_a_scalar_names_x(x):
    torch = pytest.importorskip("torch")
    import isometry.torch as it

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    with pytest.raises((TypeError, ValueError), match=r"\bx\b"):
        it.spectrum_estimate(model, x, n_probes=2, n_lanczos=3)


@pytest.mark.parametrize("tol", [2**64, 1e308])
def test_fuzz_found_huge_tol_names_tol(tol):
    torch = pytest.importorskip("torch")
    import isometry.torch as it

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    try:
        s = it.top_singular_values(model, x, k=2, tol=tol)
    except ValueError as exc:
        assert "tol" in str(exc)
    else:
        assert np.all(np.isfinite(np.asarray(s)))
