"""Random-network Jacobian spectra: Haar sampling, the product, reproducibility, stable mode."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

import isometry
from isometry.empirical import (
    empirical_spectrum,
    gaussian_matrix,
    haar_orthogonal,
    householder_haar,
    jacobian_product,
    log_singular_values,
)


# ------------------------------------------------------------------------- Haar sampling
def test_haar_is_orthogonal_and_apply_matches_dense(rng):
    h = householder_haar(37, rng)
    q = h.dense()
    assert np.abs(q.T @ q - np.eye(37)).max() < 1e-13
    c = rng.standard_normal((37, 5))
    out = h.apply(np.asfortranarray(c), scale=2.0)
    assert np.allclose(out, 2.0 * q @ c, atol=1e-13)


def test_haar_law_first_entry_and_trace(rng):
    """Q_11^2 ~ Beta(1/2, (n-1)/2) with a symmetric sign; tr Q has mean 0, E tr(Q)^2 = 1,
    E tr(Q^2) = 1 for Haar O(n). A QR without the sign fix has Q_11 < 0 always."""
    n, k = 4, 3000
    qs = np.array([householder_haar(n, rng).dense() for _ in range(k)])
    q11 = qs[:, 0, 0]
    assert stats.kstest(q11**2, stats.beta(0.5, (n - 1) / 2).cdf).pvalue > 1e-3
    assert abs(np.mean(q11 > 0) - 0.5) < 4 * 0.5 / np.sqrt(k)
    tr = np.trace(qs, axis1=1, axis2=2)
    assert abs(tr.mean()) < 4 / np.sqrt(k)
    assert abs(np.mean(tr**2) - 1) < 0.12
    assert abs(np.mean(np.trace(qs @ qs, axis1=1, axis2=2)) - 1) < 0.15
    ref = stats.ortho_group.rvs(n, size=k, random_state=rng)
    assert stats.ks_2samp(tr, np.trace(ref, axis1=1, axis2=2)).pvalue > 1e-3


def test_haar_float32_and_helpers(rng):
    q = householder_haar(20, rng, dtype="float32").dense()
    assert q.dtype == np.float32 and np.abs(q.T @ q - np.eye(20)).max() < 1e-5
    assert haar_orthogonal(6, 1).shape == (6, 6)
    w = gaussian_matrix(300, 2, sigma_w2=2.0)
    assert abs(w.var() * 300 - 2.0) < 0.05
    with pytest.raises(ValueError, match="dtype"):
        householder_haar(3, rng, dtype="float16")
    with pytest.raises(ValueError, match="width"):
        householder_haar(0, rng)


# ------------------------------------------------------------------------- networks
def test_reproducible_and_sample_independent():
    a = empirical_spectrum("tanh", 3, 40, q_star=0.5, n_samples=3, seed=7)
    b = empirical_spectrum("tanh", 3, 40, q_star=0.5, n_samples=3, seed=7)
    c = empirical_spectrum("tanh", 3, 40, q_star=0.5, n_samples=1, seed=7)
    d = empirical_spectrum("tanh", 3, 40, q_star=0.5, n_samples=1, seed=8)
    assert a.shape == (120,) and np.array_equal(a, b)
    assert np.array_equal(a[:40], c)
    assert not np.allclose(c, d)
    assert np.all(np.diff(a[:40]) >= 0)


def test_linear_orthogonal_is_isometric():
    lam = empirical_spectrum("linear", 6, 50, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal")
    assert np.allclose(lam, 1.0, atol=1e-12)


def test_jacobian_matches_finite_differences(rng):
    """J from the product equals a central difference of the network built from the same draw."""
    n, depth, sw, sb, q = 12, 3, 1.5, 0.1, 0.7
    for weights in ("orthogonal", "gaussian"):
        j = jacobian_product("tanh", depth, n, sigma_w2=sw, sigma_b2=sb, q_star=q, weights=weights, rng=3)
        # replay the same random stream to get weights, biases and the input
        g = np.random.default_rng(3)
        x0 = np.tanh(g.standard_normal(n) * np.sqrt(q))
        ws, bs = [], []
        for _ in range(depth):
            if weights == "orthogonal":
                ws.append(np.sqrt(sw) * householder_haar(n, g).dense())
            else:
                ws.append(g.standard_normal((n, n)) * np.sqrt(sw / n))
            bs.append(g.standard_normal(n) * np.sqrt(sb))

        def net(x):
            for w, b in zip(ws, bs):
                x = np.tanh(w @ x + b)
            return x

        eps = 1e-6
        fd = np.column_stack([(net(x0 + eps * e) - net(x0 - eps * e)) / (2 * eps) for e in np.eye(n)])
        assert np.abs(fd - j).max() < 1e-8


def test_linear_gaussian_moments():
    """Product of L Gaussian N(0, 1/N) matrices: E lambda = 1, E lambda^2 = L + 1 (Fuss-Catalan)."""
    for depth in (1, 3):
        lam = empirical_spectrum("linear", depth, 300, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", n_samples=3)
        assert abs(lam.mean() - 1) < 0.06
        assert abs(np.mean(lam**2) - (depth + 1)) < 0.15 * (depth + 1)


@pytest.mark.parametrize("act,q", [("tanh", 0.5), ("hard_tanh", 0.5)])
def test_critical_mean_and_variance(act, q):
    """At chi = 1: mean 1 and variance L (mu2/mu1^2 - 1) (orthogonal), L mu2/mu1^2 (Gaussian) (paper eqs. 15-16)."""
    cp = isometry.critical_point(act, q)
    depth = 4
    for weights, extra in (("orthogonal", 0.0), ("gaussian", 1.0)):
        lam = empirical_spectrum(act, depth, 300, q_star=q, weights=weights, n_samples=4, seed=1)
        var = depth * (cp.mu2 / cp.mu1**2 - 1 + extra)
        assert abs(lam.mean() - 1) < 0.08
        assert abs(lam.var() - var) < 0.25 * var


def test_float32_product_keeps_the_bulk():
    a = empirical_spectrum("erf", 4, 80, q_star=0.3, seed=2)
    b = empirical_spectrum("erf", 4, 80, q_star=0.3, seed=2, dtype="float32")
    big = a > 1e-3 * a.max()
    assert np.allclose(a[big], b[big], rtol=1e-3)


def test_stable_mode_agrees_with_plain():
    a = empirical_spectrum("relu", 6, 60, q_star=1.0, weights="gaussian", seed=4)
    b = empirical_spectrum("relu", 6, 60, q_star=1.0, weights="gaussian", seed=4, stable=True)
    big = a > 1e-8 * a.max()
    assert np.allclose(a[big], b[big], rtol=1e-8)


def test_stable_mode_resolves_lyapunov_spectrum():
    """Linear Gaussian product, N = 8: (1/L) log s_i -> 1/2 (log(2/N) + psi((N - i + 1)/2)) (Newman 1986).
    The smallest is ~e^{-250} s_max at L = 150, invisible to the plain route."""
    n, depth, k = 8, 150, 4
    logs = np.mean([log_singular_values("linear", depth, n, sigma_w2=1.0, sigma_b2=0.0, q_star=1.0, weights="gaussian", rng=s)
                    for s in range(k)], axis=0) / depth
    i = np.arange(1, n + 1)
    exact = np.sort(0.5 * (np.log(2.0 / n) + digamma((n - i + 1) / 2)))
    assert np.abs(logs - exact).max() < 0.1
    plain = empirical_spectrum("linear", depth, n, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian")
    with np.errstate(divide="ignore"):
        assert np.log(plain[0]) / (2 * depth) > exact[0] + 0.5  # plain route is stuck at eps * s_max


def test_bad_input():
    with pytest.raises(ValueError, match="weights"):
        empirical_spectrum("tanh", 2, 10, q_star=0.5, weights="unitary")
    with pytest.raises(ValueError, match="depth"):
        empirical_spectrum("tanh", 0, 10, q_star=0.5)
    with pytest.raises(ValueError, match="width"):
        empirical_spectrum("tanh", 2, 2.5, q_star=0.5)
    with pytest.raises(ValueError, match="n_samples"):
        empirical_spectrum("tanh", 2, 10, q_star=0.5, n_samples=0)
    with pytest.raises(ValueError, match="not both"):
        empirical_spectrum("tanh", 2, 10, q_star=0.5, sigma_w2=1.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        empirical_spectrum("tanh", 2, 10)
    with pytest.raises(ValueError, match="sigma_b2"):
        empirical_spectrum("tanh", 2, 10, sigma_w2=1.0, sigma_b2=-1.0)
    with pytest.raises(ValueError, match="stable"):
        empirical_spectrum("tanh", 2, 10, q_star=0.5, dtype="float32", stable=True)


def test_memory_does_not_grow_with_depth():
    """O(N^2) memory whatever L: the traced peak at L = 24 is that of L = 2."""
    import tracemalloc

    peaks = []
    for depth in (2, 24):
        for weights in ("orthogonal", "gaussian"):
            tracemalloc.start()
            empirical_spectrum("tanh", depth, 120, q_star=0.5, weights=weights)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    assert max(peaks[2:]) < 1.3 * max(peaks[:2])
    assert max(peaks) < 12 * 120 * 121 * 8  # a dozen N x N float64 buffers at most


def test_progress_bar_goes_to_stderr(capsys):
    empirical_spectrum("relu", 2, 20, q_star=1.0, n_samples=3, progress=True)
    assert "networks" in capsys.readouterr().err
    empirical_spectrum("relu", 2, 20, q_star=1.0, n_samples=3, progress=False)
    assert capsys.readouterr().err == ""
