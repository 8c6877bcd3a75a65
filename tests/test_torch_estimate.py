"""isometry.torch.spectrum_estimate (stochastic Lanczos quadrature) against exact routes.

Exact routes: NumPy SVD of an explicit J, ``isometry.torch.jacobian_eigenvalues`` for models, and
closed forms (Hutchinson variances, Gauss-quadrature exactness on diagonal operators, the
Chebyshev-Markov-Stieltjes bracket).
"""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import isometry  # noqa: E402
from isometry.torch import jacobian_eigenvalues  # noqa: E402
from isometry.torch.estimate import SpectrumEstimate, spectrum_estimate  # noqa: E402

F64 = torch.float64


def _linear(j: np.ndarray):
    """The map x -> J x (float64) and its exact eigenvalues of J J^T (ascending, m of them)."""
    jt = torch.from_numpy(j)
    m = j.shape[0]
    s = np.linalg.svd(j, compute_uv=False)
    lam = np.zeros(m)
    lam[: s.size] = s**2
    return (lambda x: jt @ x), np.sort(lam)


def _ks(est: SpectrumEstimate, ev: np.ndarray) -> float:
    """Kolmogorov distance between the quadrature law and the exact eigenvalues (right and left
    limits at every jump of either cdf)."""
    ev = np.sort(ev)
    x, _, _ = est._rule
    pts = np.unique(np.concatenate([ev, x, [0.0]]))
    d = 0.0
    for p in (pts, np.nextafter(pts, -np.inf)):
        d = max(d, float(np.max(np.abs(est.cdf(p) - np.searchsorted(ev, p, side="right") / ev.size))))
    return d


def _assert_moments_agree(est: SpectrumEstimate, ev: np.ndarray, z: float = 4.0):
    assert abs(est.mean() - ev.mean()) < z * est.mean_se(), (est.mean(), ev.mean(), est.mean_se())
    assert abs(est.var() - ev.var()) < z * est.var_se(), (est.var(), ev.var(), est.var_se())


# ------------------------------------------------------------------ agreement with the exact route
@pytest.mark.parametrize("m,n", [(120, 160), (160, 120)])
def test_product_of_gaussians_matches_exact(m, n):
    """J = W2 W1 (Gaussian, variance 1/n): E[mean] = 1; the realised spectrum by SVD."""
    g = np.random.default_rng(3)
    j = (g.standard_normal((m, n)) / math.sqrt(n)) @ (g.standard_normal((n, n)) / math.sqrt(n))
    f, ev = _linear(j)
    est = spectrum_estimate(f, torch.zeros(n, dtype=F64), n_probes=16, n_lanczos=30, generator=0)
    assert (est.n_out, est.n_in, est.gram) == (m, n, "J J^T" if m <= n else "J^T J")
    _assert_moments_agree(est, ev)
    assert abs(ev.mean() - 1) < 0.2 and abs(est.mean() - 1) < 0.2  # E tr(J J^T)/m = 1
    assert est.mean_se() < 0.1 * ev.mean() and est.var_se() < 0.15 * ev.var()  # an informative comparison
    assert _ks(est, ev) < 0.1
    # the top Ritz value converges fast and never overshoots; the residual bounds its error
    assert est.max_eigenvalue <= ev.max() * (1 + 1e-12)
    assert abs(est.max_eigenvalue - ev.max()) <= max(est.max_eigenvalue_residual, 1e-9 * ev.max())
    assert abs(est.max_eigenvalue - ev.max()) < 1e-8 * ev.max()
    # structural zeros: (m - n)/m when m > n, as an atom
    assert est.zero_mass == pytest.approx(max(m - n, 0) / m)
    assert est.cdf(0.0) == pytest.approx(np.mean(ev == 0))
    if m > n:
        assert est.atoms == ((0.0, pytest.approx((m - n) / m)),)
        assert est.ppf(0.2) == 0.0 and est.support()[0] == 0.0
        assert est.min_eigenvalue >= ev[m - n] * (1 - 1e-9)  # smallest Ritz value: an upper bound
    else:
        assert est.atoms == ()
        assert est.min_eigenvalue >= ev[0] * (1 - 1e-9)


def _critical_tanh_mlp(width: int, depth: int, q_star: float = 0.5, seed: int = 0):
    cp = isometry.critical_point("tanh", q_star)
    g = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(depth):
        lin = torch.nn.Linear(width, width).to(F64)
        with torch.no_grad():
            torch.nn.init.orthogonal_(lin.weight, gain=math.sqrt(cp.sigma_w2), generator=g)
            lin.bias.copy_(torch.randn(width, generator=g, dtype=F64) * math.sqrt(cp.sigma_b2))
        layers += [lin, torch.nn.Tanh()]
    # an input whose first pre-activation has variance q*
    x = torch.randn(1, width, generator=g, dtype=F64) * math.sqrt((q_star - cp.sigma_b2) / cp.sigma_w2)
    return torch.nn.Sequential(*layers), x


def test_critical_tanh_mlp_matches_exact():
    net, x = _critical_tanh_mlp(96, 6)
    ev = jacobian_eigenvalues(net, x, dtype=F64)
    est = spectrum_estimate(net, x, n_probes=16, n_lanczos=30, generator=1)
    _assert_moments_agree(est, ev)
    assert _ks(est, ev) < 0.1
    assert abs(est.max_eigenvalue - ev.max()) < 1e-8 * ev.max()
    lo, hi = est.ppf_bounds([0.1, 0.5, 0.9])
    qe = np.quantile(ev, [0.1, 0.5, 0.9], method="inverted_cdf")
    assert np.all(lo <= qe * (1 + 1e-9)) and np.all(qe <= hi * (1 + 1e-9))


def _cnn(c_in: int, c_mid: int, layers: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    mods, c = [], c_in
    for _ in range(layers):
        conv = torch.nn.Conv2d(c, c_mid, 3, padding=1).to(F64)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=F64) * math.sqrt(1.5 / (9 * c)))
            conv.bias.copy_(torch.randn(c_mid, generator=g, dtype=F64) * 0.1)
        mods += [conv, torch.nn.Tanh()]
        c = c_mid
    mods.append(torch.nn.AvgPool2d(2))
    return torch.nn.Sequential(*mods)


@pytest.mark.parametrize("c_in,c_mid,layers", [(3, 8, 2), (2, 16, 1)])
def test_cnn_with_pooling_matches_exact(c_in, c_mid, layers):
    """conv + tanh + average pooling on 8 x 8 maps: m = 128 < n = 192, and m = 256 > n = 128."""
    net = _cnn(c_in, c_mid, layers, seed=5)
    x = torch.randn(1, c_in, 8, 8, generator=torch.Generator().manual_seed(6), dtype=F64)
    ev = jacobian_eigenvalues(net, x, dtype=F64)
    m, n = ev.size, x.numel()
    assert m != n
    est = spectrum_estimate(net, x, n_probes=24, n_lanczos=30, generator=2)
    assert (est.n_out, est.n_in) == (m, n)
    _assert_moments_agree(est, ev)
    assert _ks(est, ev) < 0.1
    assert est.zero_mass == pytest.approx(np.mean(ev <= 1e-12 * ev.max()))
    assert abs(est.max_eigenvalue - ev.max()) < 1e-6 * ev.max()


# ------------------------------------------------------------------ exact moments and standard errors
def _designed(d: int, seed: int):
    """A d x d J = U diag(sqrt(lam)) V^T with a known, spread spectrum lam."""
    g = np.random.default_rng(seed)
    lam = np.geomspace(0.05, 5.0, d)
    u, _ = np.linalg.qr(g.standard_normal((d, d)))
    v, _ = np.linalg.qr(g.standard_normal((d, d)))
    return u @ np.diag(np.sqrt(lam)) @ v.T, lam


@pytest.mark.parametrize("probes", ["rademacher", "gaussian"])
def test_mean_is_unbiased_with_hutchinson_standard_error(probes):
    """Each probe's mean is q^T G q; its variance is 2/(d+2) (tr G^2/d - (tr G/d)^2) for a
    normalised Gaussian probe and (2/d^2) sum_{i != j} G_ij^2 for a Rademacher one. The estimate
    is unbiased, reports that standard error, and the error shrinks like 1/sqrt(P)."""
    d = 48
    j, lam = _designed(d, 7)
    gmat = j @ j.T
    if probes == "gaussian":
        sd = math.sqrt(2 / (d + 2) * (np.mean(lam**2) - np.mean(lam) ** 2))
    else:
        off = gmat - np.diag(np.diag(gmat))
        sd = math.sqrt(2 * np.sum(off**2)) / d
    f, ev = _linear(j)
    x = torch.zeros(d, dtype=F64)
    big = spectrum_estimate(f, x, n_probes=1600, n_lanczos=3, probes=probes, generator=11)
    assert abs(big.mean() - lam.mean()) < 4 * sd / math.sqrt(1600)
    assert big.mean_se() == pytest.approx(sd / math.sqrt(1600), rel=0.12)
    small = spectrum_estimate(f, x, n_probes=100, n_lanczos=3, probes=probes, generator=12)
    assert abs(small.mean() - lam.mean()) < 4 * sd / math.sqrt(100)
    assert small.mean_se() / big.mean_se() == pytest.approx(4.0, rel=0.3)
    # E[lambda^2] is exact quadrature too (degree 2 <= 2k - 1): unbiased within its own error
    assert abs(big.moment(2) - np.mean(lam**2)) < 4 * big.moment_se(2)
    assert abs(big.var() - lam.var()) < 4 * big.var_se()


def test_gauss_rule_is_exact_to_degree_2k_minus_1():
    """Rademacher probes on a diagonal G weigh every eigenvalue 1/d: the probe's own measure is the
    spectrum, so moments up to 2k - 1 are exact (no noise) and the standard error is 0."""
    lam = np.linspace(0.1, 3.0, 40) ** 2
    s = torch.from_numpy(np.sqrt(lam))
    k = 5
    est = spectrum_estimate(lambda x: s * x, torch.ones(40, dtype=F64), n_probes=3, n_lanczos=k, generator=0)
    for p in range(1, 2 * k):
        assert est.moment(p) == pytest.approx(np.mean(lam**p), rel=1e-10)
        assert est.moment_se(p) <= 1e-10 * est.moment(p)
    assert est.moment(2 * k - 1) != pytest.approx(0)
    with pytest.raises(ValueError, match="order"):
        est.moment(2 * k)  # beyond the rule's exactness
    # the degree-2k moment of a k-point Gauss rule is below the true one (a positive remainder)
    x, w, _ = est._rule
    assert np.sum(w * x ** (2 * k)) / 3 < np.mean(lam ** (2 * k))


def test_cdf_bracket_holds_exactly_without_probe_noise():
    """Chebyshev-Markov-Stieltjes: with the probe's measure equal to the spectrum (Rademacher on a
    diagonal G) the exact cdf lies inside cdf_bounds everywhere, for every k."""
    g = np.random.default_rng(4)
    lam = np.sort(g.exponential(size=60))
    s = torch.from_numpy(np.sqrt(lam))
    pts = np.concatenate([lam, np.nextafter(lam, -np.inf), [-1.0, 0.0, 100.0]])
    exact = np.searchsorted(lam, pts, side="right") / lam.size
    for k in (2, 6, 15):
        est = spectrum_estimate(lambda x: s * x, torch.ones(60, dtype=F64), n_probes=1, n_lanczos=k, generator=1)
        lo, hi = est.cdf_bounds(pts)
        assert np.all(lo <= exact + 1e-9) and np.all(exact <= hi + 1e-9)
        c = est.cdf(pts)
        assert np.all(lo <= c + 1e-12) and np.all(c <= hi + 1e-12)
        a, b = est.ppf_bounds([0.25, 0.5, 0.75])
        qe = np.quantile(lam, [0.25, 0.5, 0.75], method="inverted_cdf")
        assert np.all(a <= qe) and np.all(qe <= b)


def test_quadrature_law_resolves_with_more_steps():
    """The Kolmogorov distance to the exact eigenvalues falls with k (< 0.1 for k >= 30), while a
    three-point rule cannot resolve the law."""
    g = np.random.default_rng(8)
    j = (g.standard_normal((200, 200)) / math.sqrt(200)) @ (g.standard_normal((200, 200)) / math.sqrt(200))
    f, ev = _linear(j)
    x = torch.zeros(200, dtype=F64)
    ks = {k: _ks(spectrum_estimate(f, x, n_probes=16, n_lanczos=k, generator=3), ev) for k in (3, 10, 30)}
    assert ks[3] > 0.25 and ks[3] > ks[10] > ks[30] and ks[30] < 0.1, ks
    est = spectrum_estimate(f, x, n_probes=16, n_lanczos=30, generator=3)
    q = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    assert np.all(np.abs(est.cdf(np.quantile(ev, q)) - q) < 0.1)
    se = est.ppf_se(q)
    assert np.all(se > 0) and np.all(np.isfinite(se))
    assert est.median() == est.ppf(0.5)


def test_breakdown_and_steps_capped_at_the_dimension():
    """Three distinct eigenvalues: Lanczos stops after three steps with the exact eigenvalues as
    nodes; n_lanczos beyond d is capped at d."""
    s = torch.tensor([1.0, 1.0, 2.0, 2.0, 2.0, 3.0], dtype=F64)
    est = spectrum_estimate(lambda x: s * x, torch.ones(6, dtype=F64), n_probes=4, n_lanczos=40,
                            probes="gaussian", generator=0)
    assert est.n_lanczos == 6
    assert np.all(est.n_steps == 3)
    x, _, _ = est._rule
    assert np.allclose(np.unique(np.round(x, 10)), [1.0, 4.0, 9.0])
    assert est.max_eigenvalue == pytest.approx(9.0) and est.max_eigenvalue_residual < 1e-10
    lam = np.array([1.0, 1.0, 4.0, 4.0, 4.0, 9.0])
    for p in (1, 2, 7, 20):  # the Krylov space is invariant: every degree is exact
        assert est.moment(p) == pytest.approx(np.mean(lam**p), rel=0.5)


# ------------------------------------------------------------------ object behaviour
def test_random_state_dtype_and_views():
    net, x = _critical_tanh_mlp(32, 3)
    a = spectrum_estimate(net, x, n_probes=4, n_lanczos=8, generator=5)
    b = spectrum_estimate(net, x, n_probes=4, n_lanczos=8, generator=torch.Generator().manual_seed(5))
    c = spectrum_estimate(net, x, n_probes=4, n_lanczos=8, generator=6)
    assert np.array_equal(a.nodes, b.nodes) and not np.array_equal(a.nodes, c.nodes)
    assert a.dtype == "float64"
    f32 = spectrum_estimate(net.float(), x.float(), n_probes=4, n_lanczos=8, generator=5)
    f64 = spectrum_estimate(net.float(), x.float(), n_probes=4, n_lanczos=8, generator=5, dtype=F64)
    assert (f32.dtype, f64.dtype) == ("float32", "float64")
    assert f32.mean() == pytest.approx(f64.mean(), rel=1e-5)
    assert f64.mean() == pytest.approx(a.mean(), rel=1e-6)
    # scipy-style verbs and views on the same law
    assert a.std() == pytest.approx(math.sqrt(a.var()))
    lo, hi = a.interval(0.8)
    assert lo == a.ppf(0.1) and hi == a.ppf(0.9)
    assert a.log_eigenvalues.cdf(math.log(a.median())) == pytest.approx(a.cdf(a.median()))
    assert a.singular_values.cdf(math.sqrt(a.median())) == pytest.approx(a.cdf(a.median()))
    draws = a.rvs(200, random_state=0)
    x_nodes, _, _ = a._rule
    assert np.all(np.isin(draws, x_nodes))
    assert np.all(a.cdf(a.ppf(np.linspace(0, 1, 101))) >= np.linspace(0, 1, 101) - 1e-12)
    assert a.sf(a.median()) == pytest.approx(1 - a.cdf(a.median()))
    assert a.support() == (a.min_eigenvalue, a.max_eigenvalue)


def test_smoothed_density_integrates_to_continuous_mass():
    g = np.random.default_rng(2)
    j = g.standard_normal((90, 60)) / math.sqrt(60)  # m > n: zero atom of mass 1/3
    f, ev = _linear(j)
    est = spectrum_estimate(f, torch.zeros(60, dtype=F64), n_probes=8, n_lanczos=20, generator=0)
    lam = np.linspace(1e-6, est.max_eigenvalue * 3, 40001)
    for kw in ({}, {"scale": "linear"}, {"scale": "log", "kernel": "gaussian", "bandwidth": 0.1}):
        p = est.pdf(lam, **kw)
        assert np.all(p >= 0) and est.pdf(-1.0, **kw) == 0.0
        assert np.trapezoid(p, lam) == pytest.approx(2 / 3, abs=0.01)
    # the Lorentzian's heavy tails: most, not all, of the mass in this window
    p = est.pdf(lam, kernel="lorentzian", scale="linear")
    assert 0.5 < np.trapezoid(p, lam) < 2 / 3
    # Marchenko-Pastur bulk is resolved: the smoothed density follows the exact histogram
    hist, edges = np.histogram(ev[ev > 0], bins=8, range=(0.05, ev.max()))
    mid = 0.5 * (edges[1:] + edges[:-1])
    exact = hist / (ev.size * np.diff(edges))
    assert np.max(np.abs(est.pdf(mid, scale="linear") - exact)) < 0.25 * exact.max()
    assert est.bandwidth("linear") > 0 and est.bandwidth("log") > 0


def test_to_dict_and_plot(tmp_path):
    net, x = _critical_tanh_mlp(40, 3)
    est = spectrum_estimate(net, x, n_probes=6, n_lanczos=12, generator=0)
    d = est.to_dict()
    json.dumps(d)
    assert d["n_probes"] == 6 and d["n_lanczos"] == 12 and d["probes"] == "rademacher"
    assert d["mean"] == pytest.approx(est.mean()) and d["mean_se"] == pytest.approx(est.mean_se())
    assert d["var_se"] == pytest.approx(est.var_se())
    assert set(d["quantile_se"]) == set(d["quantiles"])
    assert len(d["nodes"]) == 6 and all(len(r) == 12 for r in d["weights"])
    ev = jacobian_eigenvalues(net, x)
    fig = est.plot(path=tmp_path / "est.png", eigenvalues=ev)
    assert (tmp_path / "est.png").stat().st_size > 0
    assert fig.axes[0].get_ylabel()
    fig2 = est.plot(scale="linear")
    assert "lambda" in fig2.axes[0].get_xlabel()
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(fig2)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("name", ["n_probes", "n_lanczos"])
@pytest.mark.parametrize("value,exc", [(2.5, TypeError), (3.0, TypeError), (True, TypeError), ("4", TypeError),
                                       (0, ValueError), (-2, ValueError)])
def test_bad_counts(name, value, exc):
    with pytest.raises(exc, match=name):
        spectrum_estimate(torch.nn.Tanh(), torch.ones(4), **{name: value})


def test_bad_input():
    tanh = torch.nn.Tanh()
    with pytest.raises(ValueError, match="x"):
        spectrum_estimate(tanh, torch.empty(0))
    with pytest.raises(ValueError, match="probes"):
        spectrum_estimate(tanh, torch.ones(4), probes="normal")
    with pytest.raises(TypeError, match="generator"):
        spectrum_estimate(tanh, torch.ones(4), generator="seed")
    with pytest.raises(TypeError, match="f must"):
        spectrum_estimate(3, torch.ones(4))
    with pytest.raises(ValueError, match="empty output"):
        spectrum_estimate(lambda x: x[:0], torch.ones(4))
    est = spectrum_estimate(tanh, torch.ones(4, dtype=F64), n_probes=2, n_lanczos=2, generator=0)
    with pytest.raises(ValueError, match="q"):
        est.ppf(1.5)
    with pytest.raises(ValueError, match="kernel"):
        est.pdf(1.0, kernel="box")
    with pytest.raises(ValueError, match="scale"):
        est.pdf(1.0, scale="sqrt")
    with pytest.raises(ValueError, match="bandwidth"):
        est.pdf(1.0, bandwidth=0.0)
    with pytest.raises(TypeError, match="order"):
        est.moment_se(1.5)


def test_callable_that_vmap_cannot_trace():
    """A callable calling .item() is evaluated probe by probe, with the same answer."""
    x = torch.linspace(-2, 2, 30, dtype=F64)

    def f(v):
        return torch.tanh(v) * (2.0 if v.sum().item() > -100 else 1.0)

    est = spectrum_estimate(f, x, n_probes=3, n_lanczos=30, generator=0)
    lam = (2 * (1 - torch.tanh(x) ** 2)).numpy() ** 2
    assert est.mean() == pytest.approx(lam.mean(), rel=1e-10)  # Rademacher on a diagonal: exact
    assert est.max_eigenvalue == pytest.approx(lam.max(), rel=1e-10)
