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



def _moments(sp, k):
    """E[lambda^j], j = 1..k."""
    return np.array([sp.moment(j) for j in range(1, k + 1)])

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
    np.testing.assert_allclose(sp.pdf(lam), rho, rtol=1e-7)
    # singular value density p(s) = 2 s rho(s^2)
    s = np.sqrt(lam[::37])
    np.testing.assert_allclose(sp.singular_values.pdf(s), 2 * s * rho[::37], rtol=1e-7)


@pytest.mark.parametrize(
    "act,q,L,w",
    [("relu", 1.0, 3, "orthogonal"), ("relu", 1.0, 2, "gaussian"), ("hard_tanh", 2.0, 4, "orthogonal"),
     ("hard_tanh", 2.0, 3, "gaussian"), ("shifted_relu", 1.0, 5, "orthogonal")],
)
def test_polynomial_baseline(act, q, L, w):
    """Bernoulli D^2: the density equals the one from roots of the degree-(L+1) polynomial."""
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    p = float(isometry.get_activation(act).d2_atoms(q)[1][1])
    scale = sp.mean()
    lt = np.exp(sp.log_max_eigenvalue - sp.log_mean())  # normalised edge (or top atom)
    bands = sp._bands
    top = bands[0].t_top
    lam = np.exp(top) * np.linspace(0.02, 0.98, 25)
    ours = sp.pdf(lam * scale) * scale
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
        m = _moments(sp, 3)
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
    assert sp.cdf(0.0) == pytest.approx(sp.zero_mass, abs=1e-15)
    assert sp.cdf(sp.max_eigenvalue * 1.000001) == pytest.approx(1.0, abs=1e-5)
    lam = np.linspace(0, sp.max_eigenvalue, 60)
    F = sp.cdf(lam)
    assert np.all(np.diff(F) >= -1e-12)
    p = np.array([0.05, 0.3, 0.5, 0.7, 0.95])
    p = p[p > sp.zero_mass + 1e-6]
    qs = sp.ppf(p)
    F = sp.cdf(qs)
    assert np.all(F >= p - 1e-9)  # = p, or p falls inside an atom's jump
    cont = np.array([not any(abs(x - a) <= 1e-12 * a for a, _ in sp.atoms if a > 0) for x in qs])
    np.testing.assert_allclose(F[cont], p[cont], atol=1e-9)
    assert np.all(sp.cdf(qs * (1 - 1e-9)) <= p + 1e-9)
    assert np.all(np.isfinite(sp.pdf(lam)))


def test_top_atom_cdf_jump():
    sp = jacobian_spectrum("hard_tanh", 5, q_star=0.2, weights="orthogonal")
    (lam_top, mass), = [a for a in sp.atoms if a[0] > 0]
    p = float(isometry.get_activation("hard_tanh").d2_atoms(0.2)[1][1])
    assert mass == pytest.approx(1 - 5 * (1 - p), rel=1e-12)
    assert sp.cdf(lam_top) - sp.cdf(lam_top * (1 - 1e-9)) == pytest.approx(mass, abs=1e-6)
    assert sp.max_eigenvalue == pytest.approx(lam_top, rel=1e-12)
    assert sp.ppf(1 - mass / 2) == pytest.approx(lam_top, rel=1e-9)


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
    assert np.mean(lam) == pytest.approx(sp.mean(), rel=0.05)


# ----------------------------------------------------------------------- universal limits
def test_universal_bernoulli():
    s2 = 0.5
    sp = universal_spectrum("bernoulli", s2)
    (loc, mass), = sp.atoms
    assert loc == pytest.approx(np.exp(s2), rel=1e-14) and mass == pytest.approx(1 - s2, rel=1e-14)
    assert np.exp(sp._bands[0].t_top) == pytest.approx(np.e * s2, rel=1e-10)
    assert sp.continuous_mass == pytest.approx(s2, abs=1e-8)
    assert sp.mean() == 1.0 and sp.var() == pytest.approx(s2)
    assert _moments(sp, 2)[1] == pytest.approx(1 + s2, rel=1e-12)


def test_universal_smooth_edges():
    sp = universal_spectrum("smooth", 0.25)
    b = sp._bands[0]
    assert np.sqrt(np.exp(b.t_top)) == pytest.approx(1.557, abs=1e-3)
    assert np.sqrt(np.exp(b.t_bottom)) == pytest.approx(0.567, abs=1e-3)
    assert sp.continuous_mass == pytest.approx(1.0, abs=1e-9)
    x, wt = _gl(np.exp(b.t_bottom), np.exp(b.t_top), 20, 40)
    assert np.sum(wt * x * x * sp.pdf(x)) == pytest.approx(1.25, rel=1e-6)


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
    d, F = sp.pdf(lam), sp.cdf(lam)
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(F))
    assert F[-1] == pytest.approx(1.0, abs=1e-6) and F[0] < 1e-6
    gs = jacobian_spectrum("erf", 10**5, q_star=1.0, weights="gaussian")
    assert np.isfinite(gs.log_max_eigenvalue)
    assert np.all(np.isfinite(gs.pdf(np.geomspace(1e-300, gs.max_eigenvalue, 40))))
    # most of the mass sits below the smallest double: the log form still resolves it
    assert gs.cdf(1e-300) > 0.5
    assert np.isfinite(gs.log_eigenvalues.ppf(0.5)) and gs.log_eigenvalues.ppf(0.5) < -700


def test_far_off_criticality():
    sp = jacobian_spectrum("tanh", 10**5, sigma_w2=3.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="overflows"):
        _ = sp.mean()
    with pytest.raises(ValueError, match="overflows"):
        _ = sp.max_eigenvalue
    assert np.isfinite(sp.log_max_eigenvalue)
    assert sp.log_eigenvalues.cdf(sp.log_max_eigenvalue + 1.0) == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isfinite(sp.pdf([1.0, 2.0])))


def test_custom_weight_law_matches_gaussian():
    g = jacobian_spectrum("tanh", 4, q_star=0.5, weights="gaussian")
    c = jacobian_spectrum("tanh", 4, q_star=0.5, weights=lambda z: 2.0 / (1.0 + z))
    np.testing.assert_allclose(_moments(c, 4), _moments(g, 4), rtol=1e-8)
    assert c.max_eigenvalue == pytest.approx(g.max_eigenvalue, rel=1e-8)


def test_bad_probabilities():
    sp = jacobian_spectrum("tanh", 3, q_star=0.5)
    with pytest.raises(ValueError, match="q must"):
        sp.ppf(1.5)
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
    g = sp.log_eigenvalues.pdf(np.linspace(top - 50.0, top, 200))
    assert np.all(np.isfinite(g)) and g.max() > 0
    assert sp.log_eigenvalues.cdf(top + 1e-9) == pytest.approx(1.0, abs=1e-8)


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
    assert np.all(np.isfinite(sp.pdf(lam))) and np.all(np.diff(F) > -1e-7)


def test_marginal_homogeneous_units_need_no_q0():
    # ReLU at (2, 0) and linear at (1, 0): every q is fixed, the spectrum does not depend on it
    import isometry as iso

    r = iso.jacobian_spectrum("relu", 6, sigma_w2=2.0, sigma_b2=0.0)
    assert r.var() == pytest.approx(iso.jacobian_spectrum("relu", 6, q_star=0.3).var(), rel=1e-12)
    lin = iso.jacobian_spectrum("linear", 3, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian")
    assert lin.var() == pytest.approx(3.0, rel=1e-12)
    t = iso.jacobian_spectrum("tanh", 3, sigma_w2=1.5, sigma_b2=0.05, q0=0.7)
    assert t.q_star == pytest.approx(float(iso.q_star("tanh", 1.5, 0.05)), rel=1e-10)


# ----------------------------------------------------------------------- the scipy.stats verbs
def _ks_atoms(sp, x):
    """sup |F_n - F| for samples x of a law with atoms (right and left limits at every sample)."""
    x = np.sort(x)
    n = x.size
    F = sp.cdf(x)
    Fm = np.where(x > 0, sp.cdf(x * (1 - 1e-12)), 0.0)
    right = np.searchsorted(x, x, side="right") / n
    left = np.searchsorted(x, x, side="left") / n
    return max(np.max(np.abs(right - F)), np.max(np.abs(Fm - left)))


@pytest.mark.parametrize("act,q,L,w", [("hard_tanh", 0.2, 5, "orthogonal"), ("relu", 1.0, 3, "gaussian"),
                                       ("tanh", 0.5, 4, "orthogonal")])
def test_rvs_is_exact_with_atoms(act, q, L, w):
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    n = 4000
    x = sp.rvs(n, random_state=7)
    assert x.shape == (n,) and np.all(x >= 0) and np.all(x <= sp.max_eigenvalue * (1 + 1e-12))
    for loc, m in sp.atoms:  # each atom's frequency within 4.5 binomial standard errors
        frac = np.mean(x == loc)
        assert abs(frac - m) < 4.5 * np.sqrt(m * (1 - m) / n) + 1e-12, (loc, m, frac)
    assert _ks_atoms(sp, x) < 1.63 / np.sqrt(n)  # the KS 1% critical value
    np.testing.assert_array_equal(sp.rvs(5, random_state=3), sp.rvs(5, random_state=np.random.default_rng(3)))
    assert sp.rvs((2, 3), random_state=np.random.RandomState(0)).shape == (2, 3)
    assert np.isscalar(sp.rvs(random_state=1))


def test_scipy_verbs_agree_with_each_other():
    sp = jacobian_spectrum("tanh", 4, q_star=0.5)
    assert sp.median() == pytest.approx(float(sp.ppf(0.5)), rel=1e-14)
    lo, hi = sp.interval(0.9)
    assert sp.cdf(lo) == pytest.approx(0.05, abs=1e-9) and sp.cdf(hi) == pytest.approx(0.95, abs=1e-9)
    assert sp.std() ** 2 == pytest.approx(sp.var(), rel=1e-12)
    assert sp.mean() == pytest.approx(sp.moment(1), rel=1e-12)
    assert sp.var() == pytest.approx(sp.moment(2) - sp.moment(1) ** 2, rel=1e-9)
    x = np.array([0.01, 0.5, 2.0, 4.0])
    np.testing.assert_allclose(sp.sf(x), 1 - sp.cdf(x), atol=1e-15)
    np.testing.assert_allclose(sp.logpdf(x), np.log(sp.pdf(x)), rtol=1e-12)
    assert sp.support() == (0.0, sp.max_eigenvalue) and sp.ppf(1.0) == sp.max_eigenvalue
    assert sp.ppf(0.0) == 0.0 and sp.cdf(-1.0) == 0.0 and sp.pdf(-1.0) == 0.0 and sp.sf(-1.0) == 1.0
    assert sp.log_moment(3) == pytest.approx(np.log(sp.moment(3)), rel=1e-12)
    assert sp.log_var() == pytest.approx(np.log(sp.var()), rel=1e-12)
    uni = universal_spectrum("smooth", 0.25)  # a bulk away from 0: the support starts at its lower edge
    assert uni.support()[0] == pytest.approx(0.567**2, abs=2e-3) and uni.cdf(uni.support()[0] * 0.999) == 0.0


def test_views_log_eigenvalues_and_singular_values():
    sp = jacobian_spectrum("hard_tanh", 5, q_star=0.2)
    lam = np.array([1e-3, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(sp.log_eigenvalues.cdf(np.log(lam)), sp.cdf(lam), atol=1e-15)
    np.testing.assert_allclose(sp.log_eigenvalues.pdf(np.log(lam)), lam * sp.pdf(lam), rtol=1e-12)
    s = np.sqrt(lam)
    np.testing.assert_allclose(sp.singular_values.cdf(s), sp.cdf(lam), atol=1e-15)
    np.testing.assert_allclose(sp.singular_values.pdf(s), 2 * s * sp.pdf(lam), rtol=1e-12)
    neg = sp.singular_values.pdf(np.array([-2.0, -1e-300, 0.0]))
    assert np.all(neg == 0.0) and sp.singular_values.pdf(-1.0) == 0.0
    p = np.array([0.01, 0.3, 0.9, 0.99])
    np.testing.assert_allclose(sp.singular_values.ppf(p) ** 2, sp.ppf(p), rtol=1e-12)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(sp.log_eigenvalues.ppf(p), np.log(sp.ppf(p)), rtol=1e-12)
    assert sp.log_eigenvalues.ppf(0.01) == -np.inf  # inside the atom at 0 (mass 0.025)
    assert sp.log_eigenvalues.support()[0] == -np.inf
    assert sp.singular_values.support()[1] == pytest.approx(np.sqrt(sp.max_eigenvalue), rel=1e-14)
    assert sp.log_eigenvalues.atoms[0] == (-np.inf, sp.zero_mass)
    assert sp.singular_values.atoms[1][0] == pytest.approx(np.sqrt(sp.atoms[1][0]), rel=1e-14)


class _LogUniformWithAtoms(isometry.Spectrum):
    """A law written only through the hooks: atoms at 0 (0.2) and e (0.1), log lambda ~ U[-3, 2] (0.7)."""

    def _atoms_log(self):
        return ((-np.inf, 0.2), (1.0, 0.1))

    def _support_log(self):
        return (-3.0, 2.0)

    def _pdf_log(self, t):
        return np.where((t >= -3) & (t <= 2), 0.7 / 5.0, 0.0)

    def _cdf_log(self, t):
        return 0.2 + 0.7 * np.clip((t + 3.0) / 5.0, 0.0, 1.0) + np.where(t >= 1.0, 0.1, 0.0)


def test_a_new_law_needs_only_the_hooks():
    law = _LogUniformWithAtoms()
    for k in (1, 2, 3):
        exact = 0.1 * np.e**k + 0.7 * (np.exp(2 * k) - np.exp(-3 * k)) / (5 * k)
        assert law.moment(k) == pytest.approx(exact, rel=1e-10)
    m1, m2 = law.moment(1), law.moment(2)
    assert law.var() == pytest.approx(m2 - m1**2, rel=1e-10)
    assert law.ppf(0.1) == 0.0 and law.ppf(0.2) == 0.0
    assert law.ppf(0.2 + 0.7 * 0.8) == pytest.approx(np.exp(1.0), rel=1e-12)  # at the atom's left limit
    assert law.ppf(0.2 + 0.7 * 0.8 + 0.05) == pytest.approx(np.exp(1.0), rel=1e-12)  # inside its jump
    assert law.ppf(0.55) == pytest.approx(np.exp(-3 + 5 * 0.35 / 0.7), rel=1e-12)
    x = law.rvs(3000, random_state=0)
    assert abs(np.mean(x == 0) - 0.2) < 0.035 and abs(np.mean(x == np.e) - 0.1) < 0.025
    assert _ks_atoms(law, x) < 1.63 / np.sqrt(x.size)
    assert law.support() == (0.0, np.exp(2.0)) and law.zero_mass == 0.2
    assert law.continuous_mass == pytest.approx(0.7)


def test_universal_is_a_proper_subclass():
    uni = universal_spectrum("bernoulli", 0.5)
    assert isinstance(uni, isometry.Spectrum) and not isinstance(uni, isometry.JacobianSpectrum)
    assert isinstance(uni, isometry.UniversalSpectrum)
    assert not hasattr(uni, "activation") and not hasattr(uni, "depth")
    d = uni.to_dict()
    assert d["kind"] == "bernoulli" and d["sigma0_2"] == 0.5 and d["mean"] == pytest.approx(1.0)
    assert d["atoms"] == [[pytest.approx(np.exp(0.5)), pytest.approx(0.5)]]


@pytest.mark.parametrize("bad,exc", [(True, TypeError), ("x", TypeError), (np.nan, ValueError), (1.5, ValueError)])
def test_bad_input_to_the_verbs(bad, exc):
    sp = jacobian_spectrum("tanh", 3, q_star=0.5)
    with pytest.raises(exc):
        sp.ppf(bad)
    with pytest.raises((TypeError, ValueError)):
        sp.moment(bad)
    with pytest.raises((TypeError, ValueError)):
        sp.interval(bad)


def test_bad_input_elsewhere():
    sp = jacobian_spectrum("tanh", 3, q_star=0.5)
    with pytest.raises(TypeError):
        sp.pdf("x")
    with pytest.raises(ValueError, match="x must not be NaN"):
        sp.cdf([0.5, np.nan])
    with pytest.raises(ValueError, match="order"):
        sp.moment(21)
    with pytest.raises(ValueError, match="size"):
        sp.rvs(-1)
    with pytest.raises(TypeError, match="depth"):
        jacobian_spectrum("tanh", True, q_star=0.5)
    with pytest.raises(TypeError, match="q_star"):
        jacobian_spectrum("tanh", 3, q_star=True)
    with pytest.raises(ValueError, match="depth"):
        jacobian_spectrum("tanh", 2.5, q_star=0.5)
    with pytest.raises(ValueError, match="depth"):
        jacobian_spectrum("tanh", 10**7 + 1, q_star=0.5)


@pytest.mark.parametrize("act,q,w", [("tanh", 1e-3, "orthogonal"), ("erf", 1.0, "gaussian"), ("relu", 1.0, "orthogonal"),
                                     ("linear", 1.0, "gaussian"), ("silu", 0.5, "orthogonal"),
                                     ("hard_tanh", 1e-3, "orthogonal")])
def test_largest_documented_depth(act, q, w):
    """At depth 1e7 (the top of the documented range) the law has its bands, a valid cdf and quantiles."""
    sp = jacobian_spectrum(act, 10**7, q_star=q, weights=w)
    total = sp.continuous_mass + sum(m for _, m in sp.atoms)
    assert total == pytest.approx(1.0, abs=1e-4)
    le = sp.log_eigenvalues
    lo, hi = le.support()
    assert np.isfinite(hi)
    p = np.array([0.1, 0.5, 0.9])
    t = le.ppf(p)
    assert np.all(np.diff(t[np.isfinite(t)]) > 0) or sp.continuous_mass < 1e-9
    fin = np.isfinite(t) & ~np.isin(t, [a for a, _ in le.atoms])
    np.testing.assert_allclose(le.cdf(t[fin]), p[fin], atol=1e-6)
    grid = np.linspace(t[np.isfinite(t)].min() - 1.0, hi, 50)
    F = le.cdf(grid)
    assert np.all(np.isfinite(F)) and np.all(np.diff(F) >= -1e-9) and le.cdf(hi + 1e-6) == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.isfinite(le.pdf(grid)))


# ----------------------------------------------------------------------- figures
def _marker_lines(fig):
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_marker() not in (None, "None", "") and ln.get_xydata().size]


def test_plot_atoms_as_markers_and_returns_a_figure(tmp_path):
    import matplotlib.pyplot as plt

    from isometry.plotting.spectrum import is_heavy_tailed

    sp = jacobian_spectrum("hard_tanh", 5, q_star=0.2)
    out = tmp_path / "ht.png"
    fig = sp.plot(path=out)
    assert out.stat().st_size > 5000 and isinstance(fig, plt.Figure)
    masses = sorted(float(ln.get_ydata()[0]) for ln in _marker_lines(fig))
    assert masses == pytest.approx(sorted(m for _, m in sp.atoms))  # every atom a marker at its mass
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and is_heavy_tailed(sp)
    assert "hard_tanh" in ax.get_title() and "L=5" in ax.get_title() and "orthogonal" in ax.get_title()
    assert ax.get_ylabel() and fig.get_layout_engine() is not None
    plt.close(fig)
    # a density that diverges at its edge (ReLU, L = 2): the axis is cut, no spike dominates
    fig, ax = plt.subplots()
    assert jacobian_spectrum("relu", 2, q_star=1.0).plot(ax=ax, log=False) is fig
    curve = ax.get_lines()[0].get_ydata()
    assert ax.get_ylim()[1] < 0.2 * np.max(curve[np.isfinite(curve)])
    plt.close(fig)
    fig = jacobian_spectrum("tanh", 100, q_star=0.01).plot(log=True, singular_values=False)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].xaxis.get_minor_formatter().__class__.__name__ == "NullFormatter"
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(labels) >= 3  # a narrow range on a log axis still gets readable major labels
    plt.close(fig)


def test_a_law_the_solver_cannot_trace_raises():
    """erf at q* = 10: phi'(h)^2 = exp(-pi h^2 / 2) underflows over much of the Gaussian; the traced bands
    once held mass 1.001-1.05 silently. Now the masses are checked against 1 - atoms."""
    sp = jacobian_spectrum("erf", 100, q_star=10.0)
    assert sp.mean() == pytest.approx(1.0)  # the moments do not need the bands
    with pytest.raises(ValueError, match="could not be traced"):
        sp.cdf(1.0)


def test_d2_law_counts_underflowing_nodes_in_p_x_zero():
    """erf at large q: phi'(h)^2 underflows to 0 at many quadrature nodes; their mass belongs to
    P(x = 0), so the directly summed 1 + M(w) equals 1 + M(w) (it missed ~2.5e-4 at q = 30)."""

    law = d2_law(isometry.get_activation("erf"), 30.0)
    assert np.count_nonzero(law.nodes_x == 0) > 0  # the situation the identity must survive
    w = np.array([2 + 1j, 0.5 + 0.1j, 10 + 0j, 1e3 + 1j])
    m, _, opm = law.m_and_dm(w)
    assert np.max(np.abs(opm - (1.0 + m))) < 1e-12
