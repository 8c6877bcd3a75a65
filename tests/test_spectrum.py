"""The free-probability spectrum engine against independent routes.

Closed forms (Fuss-Catalan, Bernoulli edges), the polynomial-root method, exact
moments, boundary values of M_{D^2} from the exact law of D^2, Monte Carlo on
random matrix products, and the universal L -> infinity limits.
"""

import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss

import isometry
from isometry.spectrum import (
    fuss_catalan_density,
    jacobian_spectrum,
    polynomial_density,
    q_star_for_variance,
    universal_spectrum,
)
from isometry.spectrum.d2 import d2_law


def _gl(a, b, n=40, panels=20):
    x, w = leggauss(n)
    br = np.linspace(a, b, panels + 1)
    lo, hi = br[:-1, None], br[1:, None]
    return (0.5 * (lo + hi) + 0.5 * (hi - lo) * x).ravel(), (0.5 * (hi - lo) * w).ravel()


# ----------------------------------------------------------------------- densities
@pytest.mark.parametrize("L", [1, 2, 5])
def test_fuss_catalan_density(L):
    sp = jacobian_spectrum("linear", L, q_star=1.0, weights="gaussian")
    lam, rho = fuss_catalan_density(L, 300)
    np.testing.assert_allclose(sp.density(lam), rho, rtol=1e-7)
    # singular value density p(s) = 2 s rho(s^2)
    s = np.sqrt(lam[::37])
    np.testing.assert_allclose(sp.singular_value_density(s), 2 * s * rho[::37], rtol=1e-7)


@pytest.mark.parametrize(
    "act,q,L,w",
    [("relu", 1.0, 3, "orthogonal"), ("relu", 1.0, 2, "gaussian"), ("hard_tanh", 2.0, 4, "orthogonal"),
     ("hard_tanh", 2.0, 3, "gaussian"), ("shifted_relu", 1.0, 5, "orthogonal")],
)
def test_polynomial_baseline(act, q, L, w):
    """Bernoulli D^2: the density equals the one from roots of the degree-(L+1) polynomial."""
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    p = float(isometry.get_activation(act).d2_atoms(q)[1][1])
    scale = sp.mean
    lt = np.exp(sp.log_max_eigenvalue - sp.log_scale)  # normalised edge (or top atom)
    bands = sp._bands
    top = bands[0].t_top
    lam = np.exp(top) * np.linspace(0.02, 0.98, 25)
    ours = sp.density(lam * scale) * scale
    ref = polynomial_density(lam, L, p, w)
    np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-9 * ref.max())
    assert lt >= np.exp(top) * (1 - 1e-12)


def test_density_moments_match_closed_forms():
    """E[lambda^k] integrated from the computed cdf equals the exact moments (atoms included)."""
    for act, q, L, w in [("tanh", 0.5, 4, "orthogonal"), ("erf", 1.0, 3, "gaussian"), ("relu", 1.0, 3, "orthogonal"),
                         ("hard_tanh", 0.2, 5, "orthogonal")]:
        sp = jacobian_spectrum(act, L, q_star=q, weights=w)
        lmax = sp.max_eigenvalue * (1 + 1e-12)
        u, wu = _gl(0.0, 1.0, 24, 60)
        x, wt = lmax * u**4, 4 * lmax * u**3 * wu  # lambda = lmax u^4 smooths the lambda -> 0 cusp
        surv = 1.0 - sp.cdf(x)
        m = sp.moments(3)
        for k in (1, 2, 3):
            mk = np.sum(wt * k * x ** (k - 1) * surv)
            assert mk == pytest.approx(m[k - 1], rel=2e-6), (act, k)


@pytest.mark.parametrize(
    "act,q,L,w",
    [("tanh", 0.5, 3, "orthogonal"), ("erf", 2.0, 10, "gaussian"), ("relu", 1.0, 2, "orthogonal"),
     ("leaky_relu", 1.0, 2, "orthogonal"), ("silu", 1.0, 4, "gaussian"), ("gelu", 0.5, 6, "orthogonal"),
     ("elu", 1.0, 3, "orthogonal"), ("hard_tanh", 0.3, 3, "orthogonal")],
)
def test_cdf_mass_and_quantiles(act, q, L, w):
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    assert sp.continuous_mass + sum(m for _, m in sp.atoms) == pytest.approx(1.0, abs=1e-5)
    assert sp.cdf(0.0) == pytest.approx(sp.atom, abs=1e-15)
    assert sp.cdf(sp.max_eigenvalue * 1.000001) == pytest.approx(1.0, abs=1e-5)
    lam = np.linspace(0, sp.max_eigenvalue, 60)
    F = sp.cdf(lam)
    assert np.all(np.diff(F) >= -1e-12)
    p = np.array([0.05, 0.3, 0.5, 0.7, 0.95])
    p = p[p > sp.atom + 1e-6]
    qs = sp.quantile(p)
    F = sp.cdf(qs)
    assert np.all(F >= p - 1e-9)  # = p, or p falls inside an atom's jump
    cont = np.array([not any(abs(x - a) <= 1e-12 * a for a, _ in sp.atoms if a > 0) for x in qs])
    np.testing.assert_allclose(F[cont], p[cont], atol=1e-9)
    assert np.all(sp.cdf(qs * (1 - 1e-9)) <= p + 1e-9)
    assert np.all(np.isfinite(sp.density(lam)))


def test_top_atom_cdf_jump():
    sp = jacobian_spectrum("hard_tanh", 5, q_star=0.2, weights="orthogonal")
    (lam_top, mass), = [a for a in sp.atoms if a[0] > 0]
    p = float(isometry.get_activation("hard_tanh").d2_atoms(0.2)[1][1])
    assert mass == pytest.approx(1 - 5 * (1 - p), rel=1e-12)
    assert sp.cdf(lam_top) - sp.cdf(lam_top * (1 - 1e-9)) == pytest.approx(mass, abs=1e-6)
    assert sp.max_eigenvalue == pytest.approx(lam_top, rel=1e-12)
    assert sp.quantile(1 - mass / 2) == pytest.approx(lam_top, rel=1e-9)


# ----------------------------------------------------------------------- the law of D^2
def test_contour_boundary_values_erf():
    """Im M_{D^2}(x0 + i0) = -pi x0 rho_x(x0): the deformed contour gives the boundary value on the support."""
    q = 1.3
    law = d2_law(isometry.get_activation("erf"), q)
    mu1 = law.mu1
    x0 = np.array([0.05, 0.3, 0.7, 0.95]) / mu1
    m, _, _ = law.m_and_dm(x0 + 1e-13j)
    h = np.sqrt(-2.0 * np.log(x0 * mu1) / np.pi)
    pdf = np.exp(-h * h / (2 * q)) / np.sqrt(2 * np.pi * q)
    rho = 2 * pdf / (np.pi * h * x0)  # two branches, |dx/dh| = pi h x
    np.testing.assert_allclose(m.imag, -np.pi * x0 * rho, rtol=1e-6)
    # away from the support it agrees with the plain real-axis rule
    w = np.array([2.0 + 1.0j, -0.5 + 0.3j, 0.5 + 2j])
    ref = d2_law(isometry.get_activation("erf"), q, kappa=0.0, order=30).m_and_dm(w)[0]
    np.testing.assert_allclose(law.m_and_dm(w)[0], ref, rtol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "erf", "silu", "gelu", "elu", "selu", "sigmoid", "softplus"])
def test_d2_law_normalised(act):
    a = isometry.get_activation(act)
    for q in (1e-8, 0.7, 20.0):
        law = d2_law(a, q)
        total = law.nodes_p.sum() + law.atoms_p.sum()
        mean = (law.nodes_p * law.nodes_x).sum() + (law.atoms_p * law.atoms_x).sum()
        assert abs(total - 1) < 1e-12 and abs(mean - 1) < 1e-10, (act, q)


# ----------------------------------------------------------------------- Monte Carlo
def _sample(act, L, q, w, N, rng, n=2):
    """Eigenvalues of J J^T, J = prod D_l W_l, D_l = diag phi'(h_l), h_l ~ N(0, q) (the free model)."""
    a = isometry.get_activation(act)
    cp = isometry.critical_point(a, q)
    out = []
    for _ in range(n):
        J = np.eye(N)
        for _ in range(L):
            if w == "orthogonal":
                Q, R = np.linalg.qr(rng.standard_normal((N, N)))
                W = Q * np.sign(np.diag(R)) * np.sqrt(cp.sigma_w2)
            else:
                W = rng.standard_normal((N, N)) * np.sqrt(cp.sigma_w2 / N)
            d = a.dphi(np.sqrt(q) * rng.standard_normal(N))
            J = (d[:, None] * W) @ J
        out.append(np.linalg.eigvalsh(J @ J.T))
    return np.concatenate(out)


def _ks(sp, lam):
    lam = np.sort(np.where(lam < 1e-12 * lam.max(), 0.0, lam))  # eigvalsh of J J^T: rounding ~1e-16 lambda_max
    for loc, _ in sp.atoms:  # snap rounding onto positive atoms
        if loc > 0:
            lam = np.where(np.abs(lam - loc) < 1e-8 * loc, loc, lam)
    F = sp.cdf(lam)
    Fm = np.where(lam > 0, sp.cdf(lam * (1 - 1e-12)), 0.0)  # left limits (atoms jump)
    n = lam.size
    right = np.searchsorted(lam, lam, side="right") / n
    left = np.searchsorted(lam, lam, side="left") / n
    return max(np.max(np.abs(right - F)), np.max(np.abs(Fm - left))), n


@pytest.mark.parametrize(
    "act,q,L,w",
    [("tanh", 0.5, 3, "orthogonal"), ("relu", 1.0, 2, "gaussian"), ("hard_tanh", 0.1, 2, "orthogonal"),
     ("erf", 1.0, 3, "gaussian"), ("silu", 1.0, 2, "orthogonal"), ("leaky_relu", 1.0, 2, "orthogonal")],
)
def test_monte_carlo_ks(act, q, L, w, rng):
    N = 500
    lam = _sample(act, L, q, w, N, rng)
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    ks, _ = _ks(sp, lam)
    assert ks < (0.02 if w == "orthogonal" else 0.035), ks  # Gaussian products: slow finite-N effects near 0
    assert np.mean(lam) == pytest.approx(sp.mean, rel=0.05)


# ----------------------------------------------------------------------- universal limits
def test_universal_bernoulli():
    s2 = 0.5
    sp = universal_spectrum("bernoulli", s2)
    (loc, mass), = sp.atoms
    assert loc == pytest.approx(np.exp(s2), rel=1e-14) and mass == pytest.approx(1 - s2, rel=1e-14)
    assert np.exp(sp._bands[0].t_top) == pytest.approx(np.e * s2, rel=1e-10)
    assert sp.continuous_mass == pytest.approx(s2, abs=1e-8)
    assert sp.mean == 1.0 and sp.variance == pytest.approx(s2)
    assert sp.moments(2)[1] == pytest.approx(1 + s2, rel=1e-12)


def test_universal_smooth_edges():
    sp = universal_spectrum("smooth", 0.25)
    b = sp._bands[0]
    assert np.sqrt(np.exp(b.t_top)) == pytest.approx(1.557, abs=1e-3)
    assert np.sqrt(np.exp(b.t_bottom)) == pytest.approx(0.567, abs=1e-3)
    assert sp.continuous_mass == pytest.approx(1.0, abs=1e-9)
    x, wt = _gl(np.exp(b.t_bottom), np.exp(b.t_top), 20, 40)
    assert np.sum(wt * x * x * sp.density(x)) == pytest.approx(1.25, rel=1e-6)


def test_finite_depth_converges_to_universal():
    """Double scaling: at fixed Var[lambda] the finite-depth law approaches the universal one as L grows."""
    s2 = 0.5
    grid = np.linspace(0.1, 1.6, 13)
    q = q_star_for_variance("hard_tanh", 2000, s2)
    fin = jacobian_spectrum("hard_tanh", 2000, q_star=q)
    uni = universal_spectrum("bernoulli", s2)
    assert np.max(np.abs(fin.cdf(grid) - uni.cdf(grid))) < 5e-4  # O(1/L)
    uni = universal_spectrum("smooth", 0.25)
    grid = np.linspace(0.35, 2.4, 13)
    d = []
    for L in (200, 20000):
        q = q_star_for_variance("tanh", L, 0.25)
        d.append(np.max(np.abs(jacobian_spectrum("tanh", L, q_star=q).cdf(grid) - uni.cdf(grid))))
    assert d[1] < 0.01 and d[1] < d[0] / 3


# ----------------------------------------------------------------------- extremes
def test_extreme_depth_and_q():
    sp = jacobian_spectrum("tanh", 10**5, q_star=1e-8)
    lam = np.linspace(0.5, 1.5, 50)
    d, F = sp.density(lam), sp.cdf(lam)
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(F))
    assert F[-1] == pytest.approx(1.0, abs=1e-6) and F[0] < 1e-6
    gs = jacobian_spectrum("erf", 10**5, q_star=1.0, weights="gaussian")
    assert np.isfinite(gs.log_max_eigenvalue)
    assert np.all(np.isfinite(gs.density(np.geomspace(1e-300, gs.max_eigenvalue, 40))))
    # most of the mass sits below the smallest double: the log form still resolves it
    assert gs.cdf(1e-300) > 0.5
    assert np.isfinite(gs.log_quantile(0.5)) and gs.log_quantile(0.5) < -700


def test_far_off_criticality():
    sp = jacobian_spectrum("tanh", 10**5, sigma_w2=3.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="overflows"):
        _ = sp.mean
    with pytest.raises(ValueError, match="overflows"):
        _ = sp.max_eigenvalue
    assert np.isfinite(sp.log_max_eigenvalue)
    assert sp.log_cdf(sp.log_max_eigenvalue + 1.0) == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isfinite(sp.density([1.0, 2.0])))


def test_custom_weight_law_matches_gaussian():
    g = jacobian_spectrum("tanh", 4, q_star=0.5, weights="gaussian")
    c = jacobian_spectrum("tanh", 4, q_star=0.5, weights=lambda z: 2.0 / (1.0 + z))
    np.testing.assert_allclose(c.moments(4), g.moments(4), rtol=1e-8)
    assert c.max_eigenvalue == pytest.approx(g.max_eigenvalue, rel=1e-8)


def test_bad_probabilities():
    sp = jacobian_spectrum("tanh", 3, q_star=0.5)
    with pytest.raises(ValueError, match="p must"):
        sp.quantile(1.5)
    with pytest.raises(ValueError, match="kind"):
        universal_spectrum("cauchy", 0.5)


def test_depth_one_orthogonal_is_the_law_of_d2():
    """L = 1, orthogonal: J J^T = sigma_w2 diag(phi'(h)^2), so the cdf is P(sigma_w2 phi'(h)^2 <= lambda)."""
    a = isometry.get_activation("tanh")
    q = 0.5
    cp = isometry.critical_point(a, q)
    sp = jacobian_spectrum(a, 1, q_star=q)
    z = np.random.default_rng(3).standard_normal(400_000)
    x = cp.sigma_w2 * a.dphi(np.sqrt(q) * z) ** 2
    lam = np.array([0.2, 0.6, 1.0, 1.4, 1.65])
    np.testing.assert_allclose(sp.cdf(lam), [np.mean(x <= v) for v in lam], atol=3e-3)
    assert sp.max_eigenvalue == pytest.approx(cp.sigma_w2, rel=1e-9)  # phi'(0)^2 = 1
    with pytest.raises(ValueError, match="depth=1"):
        jacobian_spectrum("silu", 1, q_star=1.0)


def test_off_critical_no_nan_and_underflow_raises():
    """Far in the ordered phase chi^L underflows: log forms work, plain values raise, no NaN anywhere."""
    sp = jacobian_spectrum("sigmoid", 1000, sigma_w2=1.0, sigma_b2=0.1)
    assert sp.chi < 0.1
    with pytest.raises(ValueError, match="underflows"):
        _ = sp.max_eigenvalue
    top = sp.log_max_eigenvalue
    g = sp.log_lambda_density(np.linspace(top - 50.0, top, 200))
    assert np.all(np.isfinite(g)) and g.max() > 0
    assert sp.log_cdf(top + 1e-9) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    "act,w,L,q",
    [("silu", "orthogonal", 20, 0.0017), ("silu", "gaussian", 2, 0.058), ("gelu", "orthogonal", 100, 1e-3),
     ("elu", "gaussian", 300, 3.0), ("hard_tanh", "gaussian", 5000, 0.05), ("selu", "orthogonal", 2, 1.0)],
)
def test_sampled_configurations(act, w, L, q):
    """A sampled (not crossed) set of awkward cases: soft edges of D^2 (silu at small q*), narrow laws,
    deep Gaussian products, an atom of D^2 inside its continuous range (selu)."""
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    total = sp.continuous_mass + sum(m for _, m in sp.atoms)
    assert total == pytest.approx(1.0, abs=2e-4 if act == "selu" else 1e-7)
    lam = np.exp(sp.log_max_eigenvalue) * np.linspace(1e-4, 1.0, 120)
    F = sp.cdf(lam)
    assert np.all(np.isfinite(sp.density(lam))) and np.all(np.diff(F) > -1e-7)


def test_marginal_homogeneous_units_need_no_q0():
    # ReLU at (2, 0) and linear at (1, 0): every q is fixed, the spectrum does not depend on it
    import isometry as iso

    r = iso.jacobian_spectrum("relu", 6, sigma_w2=2.0, sigma_b2=0.0)
    assert r.variance == pytest.approx(iso.jacobian_spectrum("relu", 6, q_star=0.3).variance, rel=1e-12)
    lin = iso.jacobian_spectrum("linear", 3, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian")
    assert lin.variance == pytest.approx(3.0, rel=1e-12)
    t = iso.jacobian_spectrum("tanh", 3, sigma_w2=1.5, sigma_b2=0.05, q0=0.7)
    assert t.q_star == pytest.approx(float(iso.q_star("tanh", 1.5, 0.05)), rel=1e-10)
