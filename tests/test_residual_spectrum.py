"""The law of the Jacobian's eigenvalues of residual networks (isometry.residual_spectrum): against an
independent free convolution, random networks, its exact moments, and its large-depth limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss

import isometry
import isometry.spectrum.residual as residual_module
from isometry.activations import get_activation
from isometry import ResidualSpectrum, residual_branch_scale, residual_eigenvalues, residual_spectrum
from isometry.spectrum.base import _log_moment_by_quadrature


def _ks(law, lam: np.ndarray) -> float:
    lam = np.sort(lam)
    emp = (np.arange(lam.size) + 0.5) / lam.size
    return float(np.max(np.abs(law.cdf(lam) - emp))) + 0.5 / lam.size


# ----------------------------------------------------------------------------- one block, directly
def _subordination_density(activation: str, a: float, q: float, s: np.ndarray, eps: float) -> np.ndarray:
    """-Im G_sigma(s + i eps) / pi for sigma = nu (+) beta (nu: symmetrised law of a |phi'(h)|, h ~ N(0, q);
    beta: symmetric Bernoulli), by the Belinschi-Bercovici fixed point on a plain Gauss-Legendre rule in h."""
    act = get_activation(activation)
    zn, wn = leggauss(200)
    br = np.linspace(-9.0, 9.0, 61)
    z = (0.5 * (br[:-1, None] + br[1:, None]) + 0.5 * (br[1:, None] - br[:-1, None]) * zn).ravel()
    w = (0.5 * (br[1:, None] - br[:-1, None]) * wn).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    x = a * a * np.asarray(act.dphi(math.sqrt(q) * z), float) ** 2

    def g_nu(om):
        return (w[None, :] * om[:, None] / (om[:, None] ** 2 - x[None, :])).sum(axis=1)

    def g_beta(om):
        return om / (om * om - 1.0)

    zz = s + 1j * eps
    om1 = zz.copy()
    for _ in range(3000):
        om2 = zz + 1.0 / g_beta(om1) - om1
        new = zz + 1.0 / g_nu(om2) - om2
        if np.max(np.abs(new - om1)) < 1e-13:
            om1 = new
            break
        om1 = 0.5 * (om1 + new)
    return -g_beta(om1).imag / np.pi


def test_depth_one_against_an_independent_free_convolution():
    # the symmetrised singular values of I + a D W: Poisson-smoothed theory density vs the subordination
    # fixed point at s + i eps (exactly the Poisson smoothing of the true density)
    a, eps = 0.7, 0.03
    sp = residual_spectrum("tanh", 1, branch_scale=a)
    s = np.linspace(0.35, 1.4, 12)
    direct = _subordination_density("tanh", a, 1.0, s, eps)
    lo, hi = (math.sqrt(v) for v in sp.support())
    nodes, weights = leggauss(400)
    sp_ = lo + (hi - lo) * 0.5 * (nodes + 1.0)
    wp = (hi - lo) * 0.5 * weights
    rho_sym = 0.5 * sp.singular_values.pdf(sp_)  # symmetrised: half the density of s on each side

    def poisson(t):
        k = (eps / np.pi / ((t[:, None] - sp_[None, :]) ** 2 + eps * eps)
             + eps / np.pi / ((t[:, None] + sp_[None, :]) ** 2 + eps * eps))
        return (k * rho_sym[None, :] * wp[None, :]).sum(axis=1)

    smoothed = poisson(s)
    assert np.max(np.abs(smoothed - direct)) < 1e-5 * np.max(direct)  # measured 8e-8
    # the theory's band edges are square-root edges: the support holds all the mass
    assert sp.cdf(sp.support()[1]) == pytest.approx(1.0, abs=1e-12)
    assert sp.continuous_mass == pytest.approx(1.0, abs=1e-9)


def test_depth_one_against_a_large_random_matrix():
    # one block, Gaussian weights: eigenvalues of (I + a D W)(I + a D W)^T, N = 1200
    act = get_activation("tanh")
    rng = np.random.default_rng(5)
    N, a = 1200, 1.0
    w = rng.standard_normal((N, N)) / math.sqrt(N)
    d = act.dphi(w @ rng.standard_normal(N))
    f = np.eye(N) + a * d[:, None] * w
    lam = np.linalg.svd(f, compute_uv=False) ** 2
    sp = residual_spectrum("tanh", 1, branch_scale=a, weights="gaussian")
    assert _ks(sp, lam) < 0.01


# ----------------------------------------------------------------------------- random networks
@pytest.mark.slow
@pytest.mark.parametrize("activation, depth, a, weights",
                         [("tanh", 8, 0.5, "orthogonal"), ("relu", 6, 0.6, "gaussian")])
def test_law_against_width_1000_networks(activation, depth, a, weights):
    sp = residual_spectrum(activation, depth, branch_scale=a, weights=weights)
    lam = residual_eigenvalues(activation, depth, 1000, branch_scale=a, weights=weights, seed=2)
    if activation == "relu":  # E[relu(h)] > 0: one outlier above the bulk, not part of the law
        assert lam[-1] > sp.max_eigenvalue
        lam = lam[:-1]
    ks = _ks(sp, lam)
    assert ks <= 0.03  # measured 0.0042 (tanh), 0.0047 (relu)
    assert lam[-1] <= sp.max_eigenvalue * 1.05 and lam[0] >= sp.support()[0] * 0.9


# ----------------------------------------------------------------------------- exact moments
@pytest.mark.parametrize("activation, depth, a, weights, quadrature", [
    ("tanh", 20, 0.3, "orthogonal", False), ("relu", 8, 0.5, "gaussian", True), ("gelu", 5, 0.4, "orthogonal", False),
    ("tanh", 2, 0.8, "orthogonal", True)])
def test_moments_three_routes(activation, depth, a, weights, quadrature):
    sp = residual_spectrum(activation, depth, branch_scale=a, weights=weights)
    mf = sp.mean_field
    c = mf.branch_gain
    # closed forms (mean field) = S-transform series = quadrature of the traced law
    assert sp.mean() == pytest.approx(float(np.prod(1.0 + c)), rel=1e-13)
    assert sp.moment(1) == pytest.approx(sp.mean(), rel=1e-12)
    assert sp.moment(2) - sp.mean() ** 2 == pytest.approx(sp.var(), rel=1e-10)
    assert sp.moment(3) > sp.moment(2) ** 1.5  # (a moment recursion that lost precision would not say so)
    if quadrature:  # the quadrature of the traced law's quantile function (slow: hundreds of quantiles)
        for k in (2, 3):
            assert math.exp(_log_moment_by_quadrature(sp, k)) == pytest.approx(sp.moment(k), rel=2e-5)


def test_depth_quadrature_against_every_block(monkeypatch):
    sp = residual_spectrum("tanh", 20, branch_scale=0.3)
    monkeypatch.setattr(residual_module, "_EXACT_BLOCKS", 64)
    exact = residual_spectrum("tanh", 20, branch_scale=0.3)
    x = np.exp(np.linspace(*exact.log_eigenvalues.support(), 200))
    assert np.max(np.abs(sp.cdf(x) - exact.cdf(x))) < 1e-7
    assert sp.max_eigenvalue == pytest.approx(exact.max_eigenvalue, rel=1e-7)


# ----------------------------------------------------------------------------- large depth
def test_large_depth_limit_at_fixed_a2L():
    x = np.linspace(0.05, 6.0, 300)
    for act in ("tanh", "relu"):
        dist = []
        for L in (4, 16, 64, 256):
            sp = residual_spectrum(act, L, branch_scale=math.sqrt(0.5 / L))
            lim = sp.limit
            assert lim.sigma0_2 == pytest.approx(sp.var() / sp.mean() ** 2, rel=1e-12)
            dist.append(float(np.max(np.abs(sp.cdf(x * sp.mean()) - lim.cdf(x)))))
        # measured: 0.03, 0.008, 0.002, 0.0005 (O(1/L))
        assert all(d1 < 0.3 * d0 for d0, d1 in zip(dist, dist[1:]))
        assert dist[-1] < 1e-3
    # the limit is the smooth universal law of the plain networks: S(m) = exp(-sigma0^2 m)
    u = isometry.universal_spectrum("smooth", 1.0)
    sp = residual_spectrum("relu", 2048, branch_scale=residual_branch_scale("relu", 2048, sigma0_2=1.0))
    assert np.max(np.abs(sp.cdf(x * sp.mean()) - u.cdf(x))) < 3e-4  # measured 1.2e-4


@pytest.mark.slow
def test_universality_at_equal_variance():
    # tanh, relu, erf and linear at sigma0^2 = 1, L = 256: the same law (measured pairwise sup|dF| < 5e-4)
    x = np.linspace(0.05, 6.0, 300)
    cdfs = []
    for act in ("tanh", "relu", "erf", "linear"):
        a = residual_branch_scale(act, 256, sigma0_2=1.0)
        sp = residual_spectrum(act, 256, branch_scale=a)
        cdfs.append(sp.cdf(x * sp.mean()))
    assert max(float(np.max(np.abs(f - g))) for f in cdfs for g in cdfs) < 2e-3
    # while at depth 4 (the same sigma0^2) the laws still differ by activation
    laws = [residual_spectrum(act, 4, branch_scale=residual_branch_scale(act, 4, sigma0_2=1.0))
            for act in ("tanh", "relu")]
    assert np.max(np.abs(laws[0].cdf(x * laws[0].mean()) - laws[1].cdf(x * laws[1].mean()))) > 5e-3


# ----------------------------------------------------------------------------- the object
def test_identity_branch_and_scipy_verbs():
    sp = residual_spectrum("tanh", 5, branch_scale=0.0)
    assert sp.atoms == ((1.0, 1.0),) and sp.var() == 0.0 and sp.mean() == 1.0
    assert sp.cdf([0.999, 1.0]).tolist() == [0.0, 1.0] and sp.ppf(0.3) == 1.0 and sp.moment(3) == 1.0

    sp = residual_spectrum("tanh", 6, branch_scale=0.4, sigma_b2=0.05, q0=0.5)
    assert isinstance(sp, ResidualSpectrum) and isinstance(sp, isometry.Spectrum)
    q = np.array([0.01, 0.3, 0.5, 0.9, 0.99])
    assert np.allclose(sp.cdf(sp.ppf(q)), q, atol=1e-10)
    t = np.linspace(*sp.log_eigenvalues.support(), 4001)
    assert np.trapezoid(sp.log_eigenvalues.pdf(t), t) == pytest.approx(1.0, abs=1e-3)
    assert sp.rvs(50, random_state=0).shape == (50,)
    assert sp.singular_values.cdf(math.sqrt(sp.median())) == pytest.approx(0.5, abs=1e-10)
    d = sp.to_dict()
    assert d["branch_scale"] == 0.4 and d["depth"] == 6 and d["mean"] == pytest.approx(sp.mean())
    assert "residual tanh" in sp._title()
    fig = sp.plot()
    assert fig.axes and fig.axes[0].get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_custom_weight_law_is_the_gaussian_law():
    g = residual_spectrum("tanh", 3, branch_scale=0.6, weights="gaussian")
    c = residual_spectrum("tanh", 3, branch_scale=0.6, weights=lambda z: 1.0 / (1.0 + z))
    x = np.linspace(0.1, 5.0, 50)
    assert np.max(np.abs(g.cdf(x) - c.cdf(x))) < 1e-6
    assert c.var() == pytest.approx(g.var(), rel=1e-9)


def test_refused_arguments():
    with pytest.raises(ValueError, match="depth=1"):
        residual_spectrum("relu", 1, branch_scale=0.5)  # P(phi' = 0) = 1/2: singular density at lambda = 1
    with pytest.raises(ValueError, match="depth=1"):
        residual_spectrum("linear", 1, branch_scale=0.5)
    with pytest.raises(ValueError, match="weights"):
        residual_spectrum("tanh", 2, branch_scale=0.5, weights="orth")
    with pytest.raises(ValueError, match="branch_scale"):
        residual_spectrum("tanh", 2, branch_scale=-1.0)
    with pytest.raises(ValueError, match="depth"):
        residual_spectrum("tanh", 2.5, branch_scale=0.5)
    with pytest.raises(TypeError, match="depth"):
        residual_spectrum("tanh", "2", branch_scale=0.5)
    with pytest.raises(ValueError, match="atom of mass"):  # hard tanh at q_h = 16: P(phi' = 0) = 0.8 per block
        residual_spectrum("hard_tanh", 2, branch_scale=0.5, q0=16.0)
    assert residual_spectrum("relu", 2, branch_scale=0.5).continuous_mass == pytest.approx(1.0, abs=1e-9)


def test_public_names():
    import isometry.spectrum

    assert isometry.spectrum.residual_spectrum is residual_spectrum
    assert isometry.spectrum.ResidualSpectrum is ResidualSpectrum
    for name in ("residual_spectrum", "residual_branch_scale", "residual_mean_field", "residual_eigenvalues",
                 "ResidualSpectrum", "ResidualMeanField"):
        assert name in isometry.__all__ and hasattr(isometry, name)
