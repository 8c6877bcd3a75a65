"""Random-network Jacobian spectra: Haar sampling, the product, reproducibility, stable mode."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

import isometry
from isometry.empirical import (
    empirical_eigenvalues,
    gaussian_matrix,
    haar_orthogonal,
    jacobian_product,
    log_singular_values,
    memory_estimate,
)
from isometry.empirical.sampling import _householder_haar as householder_haar


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
    assert np.array_equal(haar_orthogonal(6, seed=1), haar_orthogonal(6, np.random.default_rng(1)))
    q32 = haar_orthogonal(5, seed=2, dtype="float32")
    assert q32.dtype == np.float32 and np.abs(q32.T @ q32 - np.eye(5)).max() < 1e-5
    w = gaussian_matrix(300, 2, sigma_w2=2.0)
    assert abs(w.var() * 300 - 2.0) < 0.05
    with pytest.raises(ValueError, match="dtype"):
        householder_haar(3, rng, dtype="float16")
    with pytest.raises(ValueError, match="dtype"):
        haar_orthogonal(3, dtype="int8")
    with pytest.raises(ValueError, match="n must be"):
        haar_orthogonal(0)
    with pytest.raises(TypeError, match="n must be"):
        haar_orthogonal(True)
    with pytest.raises(TypeError, match="seed"):
        haar_orthogonal(3, seed=True)
    with pytest.raises(ValueError, match="sigma_w2"):
        gaussian_matrix(3, sigma_w2=-1.0)


def test_haar_orthogonal_is_the_draw_the_networks_use():
    """haar_orthogonal(n, seed=g) consumes a Generator's stream exactly as one orthogonal layer does."""
    g1, g2 = np.random.default_rng(4), np.random.default_rng(4)
    assert np.array_equal(haar_orthogonal(9, seed=g1), householder_haar(9, g2).dense())
    assert np.array_equal(haar_orthogonal(9, seed=g1), householder_haar(9, g2).dense())  # streams stay in step


# ------------------------------------------------------------------------- networks
def test_reproducible_and_sample_independent():
    a = empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=3, seed=7)
    b = empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=3, seed=7)
    c = empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=1, seed=7)
    d = empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=1, seed=8)
    assert a.shape == (120,) and np.array_equal(a, b)
    assert np.array_equal(a[:40], c)
    assert not np.allclose(c, d)
    assert np.all(np.diff(a[:40]) >= 0)
    g = np.random.default_rng(7)  # a fresh Generator gives what its int seed gives; reusing it moves on
    assert np.array_equal(empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=3, seed=g), a)
    assert not np.allclose(empirical_eigenvalues("tanh", 3, 40, q_star=0.5, n_samples=3, seed=g), a)


def test_linear_orthogonal_is_isometric():
    lam = empirical_eigenvalues("linear", 6, 50, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal")
    assert np.allclose(lam, 1.0, atol=1e-12)


def test_jacobian_matches_finite_differences(rng):
    """J from the product equals a central difference of the network built from the same draw."""
    n, depth, sw, sb, q = 12, 3, 1.5, 0.1, 0.7
    for weights in ("orthogonal", "gaussian"):
        j = jacobian_product("tanh", depth, n, sigma_w2=sw, sigma_b2=sb, q0=q, weights=weights, seed=3)
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
        lam = empirical_eigenvalues("linear", depth, 300, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", n_samples=3, seed=0)
        assert abs(lam.mean() - 1) < 0.06
        assert abs(np.mean(lam**2) - (depth + 1)) < 0.15 * (depth + 1)


@pytest.mark.parametrize("act,q", [("tanh", 0.5), ("hard_tanh", 0.5)])
def test_critical_mean_and_variance(act, q):
    """At chi = 1: mean 1 and variance L (mu2/mu1^2 - 1) (orthogonal), L mu2/mu1^2 (Gaussian) (paper eqs. 15-16)."""
    cp = isometry.critical_point(act, q)
    depth = 4
    for weights, extra in (("orthogonal", 0.0), ("gaussian", 1.0)):
        lam = empirical_eigenvalues(act, depth, 300, q_star=q, weights=weights, n_samples=4, seed=1)
        var = depth * (cp.mu2 / cp.mu1**2 - 1 + extra)
        assert abs(lam.mean() - 1) < 0.08
        assert abs(lam.var() - var) < 0.25 * var


def test_float32_product_keeps_the_bulk():
    a = empirical_eigenvalues("erf", 4, 80, q_star=0.3, seed=2)
    b = empirical_eigenvalues("erf", 4, 80, q_star=0.3, seed=2, dtype="float32")
    big = a > 1e-3 * a.max()
    assert np.allclose(a[big], b[big], rtol=1e-3)


def test_stable_mode_agrees_with_plain():
    a = empirical_eigenvalues("relu", 6, 60, q_star=1.0, weights="gaussian", seed=4)
    b = empirical_eigenvalues("relu", 6, 60, q_star=1.0, weights="gaussian", seed=4, stable=True)
    big = a > 1e-8 * a.max()
    assert np.allclose(a[big], b[big], rtol=1e-8)


def test_stable_mode_resolves_lyapunov_spectrum():
    """Linear Gaussian product, N = 8: (1/L) log s_i -> 1/2 (log(2/N) + psi((N - i + 1)/2)) (Newman 1986).
    The smallest is ~e^{-250} s_max at L = 150, invisible to the plain route."""
    n, depth, k = 8, 150, 4
    logs = np.mean([log_singular_values("linear", depth, n, sigma_w2=1.0, sigma_b2=0.0, q0=1.0, weights="gaussian", seed=s)
                    for s in range(k)], axis=0) / depth
    i = np.arange(1, n + 1)
    exact = np.sort(0.5 * (np.log(2.0 / n) + digamma((n - i + 1) / 2)))
    assert np.abs(logs - exact).max() < 0.1
    plain = empirical_eigenvalues("linear", depth, n, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", seed=0)
    with np.errstate(divide="ignore"):
        assert np.log(plain[0]) / (2 * depth) > exact[0] + 0.5  # plain route is stuck at eps * s_max


def test_bad_input():
    with pytest.raises(ValueError, match="weights"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, weights="unitary")
    with pytest.raises(ValueError, match="depth"):
        empirical_eigenvalues("tanh", 0, 10, q_star=0.5)
    with pytest.raises(ValueError, match="depth"):
        empirical_eigenvalues("tanh", 1e300, 10, q_star=0.5)
    with pytest.raises(ValueError, match="width"):
        empirical_eigenvalues("tanh", 2, 2.5, q_star=0.5)
    with pytest.raises(ValueError, match="n_samples"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, n_samples=0)
    with pytest.raises(ValueError, match="not both"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, sigma_w2=1.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        empirical_eigenvalues("tanh", 2, 10)
    with pytest.raises(ValueError, match="sigma_b2"):
        empirical_eigenvalues("tanh", 2, 10, sigma_w2=1.0, sigma_b2=-1.0)
    with pytest.raises(ValueError, match="stable"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, dtype="float32", stable=True)
    with pytest.raises(ValueError, match="q0"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, q0=-1.0)
    with pytest.raises(ValueError, match="seed"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, seed=-3)


@pytest.mark.parametrize("name", ["depth", "width", "n_samples", "seed", "q0"])
def test_booleans_are_not_numbers(name):
    kw = {"depth": 2, "width": 10, "n_samples": 1, "seed": 0, "q0": None, name: True}
    with pytest.raises(TypeError, match=name):
        empirical_eigenvalues("tanh", kw.pop("depth"), kw.pop("width"), q_star=0.5, **kw)
    with pytest.raises(TypeError, match="depth"):
        jacobian_product("tanh", True, 10, q_star=0.5)
    with pytest.raises(TypeError, match="width"):
        log_singular_values("tanh", 2, False, q_star=0.5)


def test_weight_laws_resolve_through_the_spectrum_resolver():
    """Only the two laws that can be sampled, by their canonical names; aliases and custom S-transforms raise."""
    from isometry.spectrum import weight_law

    a = empirical_eigenvalues("tanh", 2, 20, q_star=0.5, weights=weight_law("gaussian"), seed=3)
    assert np.array_equal(a, empirical_eigenvalues("tanh", 2, 20, q_star=0.5, weights="gaussian", seed=3))
    for alias in ("orth", "haar", "gauss", "normal"):
        with pytest.raises(ValueError, match="weights"):
            empirical_eigenvalues("tanh", 2, 10, q_star=0.5, weights=alias)

    def gaussian(z):  # an S-transform callable, whatever its name
        return 1.0 / (1.0 + z)

    for custom in (gaussian, weight_law(gaussian)):
        with pytest.raises(ValueError, match="custom S-transform"):
            empirical_eigenvalues("tanh", 2, 10, q_star=0.5, weights=custom)
        with pytest.raises(ValueError, match="custom S-transform"):
            jacobian_product("tanh", 2, 10, q_star=0.5, weights=custom)


def test_q0_is_the_input_length():
    """q0 defaults to the fixed point q*; given, h^0 ~ N(0, q0): the first layer's length is q_map(q0)."""
    cp = isometry.critical_point("tanh", 0.5)
    a = empirical_eigenvalues("tanh", 3, 40, q_star=0.5, seed=5)
    assert np.array_equal(a, empirical_eigenvalues("tanh", 3, 40, q_star=0.5, q0=cp.q_star, seed=5))
    assert not np.allclose(a, empirical_eigenvalues("tanh", 3, 40, q_star=0.5, q0=4.0, seed=5))
    # one linear layer, sigma_b2 = 0: J = sqrt(sigma_w2) Q whatever q0, so all eigenvalues are sigma_w2
    lam = empirical_eigenvalues("linear", 1, 30, sigma_w2=0.6, sigma_b2=0.0, q0=9.0, seed=0)
    assert np.allclose(lam, 0.6, rtol=1e-12)
    # one relu layer: D^1 = 1{h^1 > 0} with h^1 = W x^0, x^0 = relu(h^0), h^0 ~ N(0, q0): the mass at 0 is
    # 1/2 whatever q0, and the non-zero eigenvalues of sigma_w2 D Q Q^T D are sigma_w2
    lam = empirical_eigenvalues("relu", 1, 400, sigma_w2=2.0, sigma_b2=0.0, q0=0.3, n_samples=2, seed=1)
    assert abs(np.mean(lam < 1e-12) - 0.5) < 4 * 0.5 / np.sqrt(800)
    assert np.allclose(lam[lam > 1e-12], 2.0, rtol=1e-10)


# ------------------------------------------------------------------------- memory
def test_memory_estimate_bounds_the_traced_peak():
    """memory_estimate is an upper bound of the tracemalloc peak, and not a loose one."""
    import tracemalloc

    n = 300
    empirical_eigenvalues("tanh", 2, 50, q_star=0.5)  # import-time allocations out of the way
    for weights in ("orthogonal", "gaussian"):
        for stable in (False, True):
            tracemalloc.start()
            empirical_eigenvalues("tanh", 3, n, q_star=0.5, weights=weights, stable=stable, n_samples=2, seed=0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            est = memory_estimate(n, n_samples=2, weights=weights, stable=stable)
            assert peak <= est <= 1.6 * peak, (weights, stable, peak, est)


def test_absurd_sizes_are_refused_before_allocating():
    """Width 10^6 needs ~3.5 N^2 doubles (about 25 TiB): refused at once, naming the width and the estimate."""
    import tracemalloc

    assert 20 * 2**40 < memory_estimate(10**6) < 30 * 2**40
    for f, tib in ((empirical_eigenvalues, "25.5"), (jacobian_product, "25.5"), (log_singular_values, "72.8")):
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=rf"width=1000000 would need about {tib} TiB of memory"):
                f("tanh", 2, 10**6, q_star=0.5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2**20
    with pytest.raises(ValueError, match=r"n_samples=1000000000000 would need about 72\.8 TiB"):
        empirical_eigenvalues("tanh", 2, 10, q_star=0.5, n_samples=10**12)
    # max_memory sets the limit: the estimate itself passes, one byte less does not
    need = memory_estimate(64)
    assert empirical_eigenvalues("tanh", 2, 64, q_star=0.5, max_memory=need).shape == (64,)
    with pytest.raises(ValueError, match="max_memory"):
        empirical_eigenvalues("tanh", 2, 64, q_star=0.5, max_memory=need - 1)
    with pytest.raises(TypeError, match="max_memory"):
        empirical_eigenvalues("tanh", 2, 64, q_star=0.5, max_memory=True)


def test_memory_does_not_grow_with_depth():
    """O(N^2) memory whatever L: the traced peak at L = 24 is that of L = 2."""
    import tracemalloc

    peaks = []
    for depth in (2, 24):
        for weights in ("orthogonal", "gaussian"):
            tracemalloc.start()
            empirical_eigenvalues("tanh", depth, 120, q_star=0.5, weights=weights)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    assert max(peaks[2:]) < 1.3 * max(peaks[:2])
    assert max(peaks) < 12 * 120 * 121 * 8  # a dozen N x N float64 buffers at most


def test_progress_bar_goes_to_stderr(capsys):
    empirical_eigenvalues("relu", 2, 20, q_star=1.0, n_samples=3, progress=True)
    assert "networks" in capsys.readouterr().err
    empirical_eigenvalues("relu", 2, 20, q_star=1.0, n_samples=3, progress=False)
    assert capsys.readouterr().err == ""


def test_fuzz_library_raises_only_type_or_value_errors():
    """Random (mostly bad) arguments: a result, or a TypeError / ValueError naming the problem."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    junk = st.sampled_from([None, True, False, 0, -1, 1, 2, 2.5, float("nan"), float("inf"), "2", [2], np.int64(2),
                            np.float64(0.5), 1e300])

    @settings(max_examples=120, deadline=None)
    @given(depth=junk, width=junk, q_star=junk, sw=junk, sb=junk, q0=junk, n_samples=junk, seed=junk,
           weights=st.sampled_from(["orthogonal", "gaussian", "orth", "", None, 3]), stable=st.booleans())
    def run(depth, width, q_star, sw, sb, q0, n_samples, seed, weights, stable):
        if isinstance(width, (int, float, np.number)) and not isinstance(width, bool) and width > 4:
            width = 4  # keep the valid draws small
        try:
            lam = empirical_eigenvalues("tanh", depth, width, q_star=q_star, sigma_w2=sw, sigma_b2=sb, q0=q0,
                                        n_samples=n_samples, seed=seed, weights=weights, stable=stable)
        except (TypeError, ValueError) as exc:
            assert str(exc)
        else:
            assert lam.shape == (int(n_samples) * int(width),) and np.all(np.isfinite(lam)) and np.all(lam >= 0)

    run()
