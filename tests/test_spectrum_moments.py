"""Closed forms of the Jacobian spectrum: moments, variance, q* for a variance, lambda_max."""

import numpy as np
import pytest

import isometry
from isometry.spectrum import (
    bernoulli_lambda_max,
    fuss_catalan_lambda_max,
    fuss_catalan_moments,
    jacobian_spectrum,
    q_star_for_variance,
)



def _moments(sp, k):
    """E[lambda^j], j = 1..k."""
    return np.array([sp.moment(j) for j in range(1, k + 1)])

@pytest.mark.parametrize("L", [1, 3, 10, 1000])
def test_fuss_catalan_moments(L):
    sp = jacobian_spectrum("linear", L, q_star=1.0, weights="gaussian")
    np.testing.assert_allclose(_moments(sp, 6), fuss_catalan_moments(L, 6), rtol=1e-9)
    assert sp.mean() == pytest.approx(1.0, abs=1e-14)
    assert sp.var() == pytest.approx(L, rel=1e-12)


def test_fuss_catalan_numbers():
    # binom(4k, k) / (3k + 1): 1, 4, 22, 140, 969
    np.testing.assert_allclose(fuss_catalan_moments(3, 5), [1, 4, 22, 140, 969], rtol=1e-12)


@pytest.mark.parametrize(
    "act,q,w",
    [("tanh", 0.3, "orthogonal"), ("erf", 2.0, "gaussian"), ("hard_tanh", 0.5, "orthogonal"), ("relu", 1.0, "gaussian")],
)
def test_variance_closed_form(act, q, w):
    L = 7
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    cp = isometry.critical_point(act, q)
    s1 = 0.0 if w == "orthogonal" else -1.0
    expect = L * (cp.mu2 / cp.mu1**2 - 1.0 - s1)
    assert sp.var() == pytest.approx(expect, rel=1e-10)
    m = _moments(sp, 2)
    assert m[0] == pytest.approx(1.0, rel=1e-12)
    assert m[1] - m[0] ** 2 == pytest.approx(expect, rel=1e-9)


def test_moments_relu_orthogonal_exact():
    # ReLU, orthogonal: x in {0, 2} (normalised), S_D(z) = (1 + z)/(1/2 + z) ... check m2 = 1 + L
    for L in (2, 5):
        sp = jacobian_spectrum("relu", L, q_star=1.0, weights="orthogonal")
        assert _moments(sp, 2)[1] == pytest.approx(1.0 + L, rel=1e-12)


def test_mean_off_criticality_log_form():
    sw, sb = 1.5, 0.1
    sp = jacobian_spectrum("tanh", 1000, sigma_w2=sw, sigma_b2=sb)
    q = isometry.q_star("tanh", sw, sb)
    chi = sw * isometry.mu("tanh", q, 1)
    assert sp.log_mean() == pytest.approx(1000 * np.log(chi), rel=1e-12)
    assert sp.mean() == pytest.approx(chi**1000, rel=1e-9)
    sp2 = jacobian_spectrum("relu", 10**5, sigma_w2=1.99, sigma_b2=0.0)
    assert sp2.q_star == 0.0
    assert sp2.mean() == pytest.approx(np.exp(1e5 * np.log(0.995)), rel=1e-9)
    # far in the chaotic phase the mean overflows
    sp3 = jacobian_spectrum("tanh", 10**5, sigma_w2=3.0, sigma_b2=0.0)
    with pytest.raises(ValueError, match="overflows"):
        _ = sp3.mean()
    assert np.isfinite(sp3.log_mean())


@pytest.mark.parametrize("L", [2, 4, 10])
def test_max_eigenvalue_linear_gaussian(L):
    sp = jacobian_spectrum("linear", L, q_star=1.0, weights="gaussian")
    assert sp.max_eigenvalue == pytest.approx(fuss_catalan_lambda_max(L), rel=1e-12)


@pytest.mark.parametrize("act,q,L", [("relu", 1.0, 5), ("relu", 1.0, 40), ("hard_tanh", 1.0, 3), ("shifted_relu", 0.7, 6)])
def test_max_eigenvalue_bernoulli_orthogonal(act, q, L):
    a = isometry.get_activation(act)
    p = float(a.d2_atoms(q)[1][1])
    sp = jacobian_spectrum(act, L, q_star=q, weights="orthogonal")
    cp = isometry.critical_point(act, q)
    expect = bernoulli_lambda_max(p, L, cp.sigma_w2, "orthogonal")
    assert sp.max_eigenvalue == pytest.approx(expect, rel=1e-10)
    if L * (1 - p) < 1:
        assert any(m == pytest.approx(1 - L * (1 - p)) for lam, m in sp.atoms if lam > 0)


def test_max_eigenvalue_bernoulli_gaussian_asymptotics():
    # (sigma_w2 p)^L e L / p, relative corrections O(1/L)
    for L in (100, 1000):
        sp = jacobian_spectrum("relu", L, q_star=1.0, weights="gaussian")
        assert sp.max_eigenvalue / bernoulli_lambda_max(0.5, L, 2.0, "gaussian") == pytest.approx(1.0, abs=3.0 / L)


@pytest.mark.parametrize("act,w,s2,L", [("tanh", "orthogonal", 0.25, 100), ("hard_tanh", "orthogonal", 0.5, 64), ("erf", "gaussian", 130.0, 128)])
def test_q_star_for_variance(act, w, s2, L):
    q = q_star_for_variance(act, L, s2, weights=w)
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    assert sp.var() == pytest.approx(s2, rel=1e-8)


def test_q_star_for_variance_unreachable():
    with pytest.raises(ValueError, match="every q"):
        q_star_for_variance("relu", 10, 1.0)
    with pytest.raises(ValueError, match="unreachable"):
        q_star_for_variance("tanh", 10, 1.0, weights="gaussian")  # Gaussian: Var >= L
    with pytest.raises(ValueError, match="sigma0_2"):
        q_star_for_variance("tanh", 10, -1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        jacobian_spectrum("tanh", 0, q_star=1.0)
    with pytest.raises(ValueError, match="weights"):
        jacobian_spectrum("tanh", 3, q_star=1.0, weights="uniform")
    with pytest.raises(ValueError, match="q_star"):
        jacobian_spectrum("tanh", 3, q_star=-1.0)
    with pytest.raises(ValueError, match="give q_star"):
        jacobian_spectrum("tanh", 3)
    with pytest.raises(ValueError, match="sigma_w2"):
        jacobian_spectrum("tanh", 3, sigma_w2=-1.0, sigma_b2=0.1)
    with pytest.raises(ValueError, match="order must"):
        jacobian_spectrum("tanh", 3, q_star=1.0).moment(0)


# ----------------------------------------------------------------------- the one variance formula
@pytest.mark.parametrize("act,q,w", [("tanh", 0.3, "orthogonal"), ("erf", 2.0, "gaussian"), ("hard_tanh", 0.5, "orthogonal"),
                                     ("silu", 1.0, "gaussian"), ("relu", 1.0, "orthogonal")])
def test_jacobian_variance_against_the_s_series(act, q, w):
    """L (mu2/mu1^2 - 1 - s1) against E[lambda^2] - E[lambda]^2 from the exact S-transform series."""
    L = 9
    v = isometry.jacobian_variance(act, L, q_star=q, weights=w)
    sp = jacobian_spectrum(act, L, q_star=q, weights=w)
    assert v == pytest.approx(sp.moment(2) - sp.moment(1) ** 2, rel=1e-9)
    assert v == pytest.approx(sp.var(), rel=1e-14)  # the spectrum uses the same helper


def test_jacobian_variance_closed_forms_and_monte_carlo(rng):
    assert isometry.jacobian_variance("relu", 10, q_star=0.7) == pytest.approx(10.0, rel=1e-14)
    assert isometry.jacobian_variance("relu", 10, q_star=0.7, weights="gaussian") == pytest.approx(20.0, rel=1e-14)
    assert isometry.jacobian_variance("linear", 4, q_star=1.0) == 0.0
    assert isometry.jacobian_variance("tanh", 6, q_star=0.5, weights=lambda z: 3.0 / (1.0 + z)) == pytest.approx(
        isometry.jacobian_variance("tanh", 6, q_star=0.5, weights="gaussian"), rel=1e-9)
    # a critical tanh network of width 600, depth 3, orthogonal weights: Var of the eigenvalues of J J^T
    a, q, L, N = isometry.get_activation("tanh"), 0.5, 3, 600
    cp = isometry.critical_point(a, q)
    vs = []
    for _ in range(3):
        J = np.eye(N)
        for _ in range(L):
            Q, R = np.linalg.qr(rng.standard_normal((N, N)))
            J = (a.dphi(np.sqrt(q) * rng.standard_normal(N))[:, None] * (Q * np.sign(np.diag(R)) * np.sqrt(cp.sigma_w2))) @ J
        vs.append(np.var(np.linalg.eigvalsh(J @ J.T)))
    assert np.mean(vs) == pytest.approx(isometry.jacobian_variance(a, L, q_star=q), rel=0.08)


@pytest.mark.parametrize("alias", ["orth", "haar", "gauss", "normal", "Gaussian", " orthogonal"])
def test_weight_names_have_one_resolver_and_no_aliases(alias):
    from isometry.spectrum import polynomial_density, weight_law

    for call in (lambda: weight_law(alias), lambda: bernoulli_lambda_max(0.5, 3, 2.0, alias),
                 lambda: jacobian_spectrum("tanh", 3, q_star=0.5, weights=alias),
                 lambda: isometry.jacobian_variance("tanh", 3, q_star=0.5, weights=alias),
                 lambda: q_star_for_variance("tanh", 3, 0.1, weights=alias),
                 lambda: polynomial_density([0.5], 3, 0.5, alias)):
        with pytest.raises(ValueError, match="'orthogonal', 'gaussian'"):
            call()
    assert weight_law("orthogonal").name == "orthogonal" and weight_law("gaussian").name == "gaussian"
    with pytest.raises(TypeError):
        weight_law(3)


def test_bernoulli_lambda_max_orthogonal_is_not_gaussian():
    assert bernoulli_lambda_max(0.5, 40, 2.0, "orthogonal") != pytest.approx(bernoulli_lambda_max(0.5, 40, 2.0, "gaussian"))
