import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import special

import isometry as iso

SMOOTH_WITH_CRITICAL = ["tanh", "erf", "hard_tanh", "shifted_relu", "elu", "selu"]


def test_known_tanh_critical_points():
    cp = iso.critical_point("tanh", 0.0259)
    assert cp.sigma_w2 == pytest.approx(1.05, abs=1e-3)
    assert cp.sigma_b2 == pytest.approx(2.0e-5, rel=0.05)
    cp2 = iso.critical_point("tanh", 0.82)
    assert cp2.sigma_w2 == pytest.approx(2.0, abs=5e-3)
    assert cp2.sigma_b2 == pytest.approx(0.10, abs=0.01)
    # and back: q* of those (sigma_w2, sigma_b2) is the q* we started from
    assert iso.q_star("tanh", cp.sigma_w2, cp.sigma_b2) == pytest.approx(0.0259, rel=1e-10)


@pytest.mark.parametrize("q", [1e-3, 0.1, 1.0, 5.0])
def test_closed_form_critical_lines(q):
    assert iso.critical_point("hard_tanh", q).sigma_w2 == pytest.approx(1 / special.erf(1 / np.sqrt(2 * q)), rel=1e-13)
    assert iso.critical_point("erf", q).sigma_w2 == pytest.approx(np.sqrt(1 + np.pi * q), rel=1e-13)
    r = iso.critical_point("relu", q)
    assert (r.sigma_w2, r.sigma_b2) == (2.0, 0.0)
    lin = iso.critical_point("linear", q)
    assert (lin.sigma_w2, lin.sigma_b2) == (1.0, 0.0)


def test_relu_fixed_points_and_errors():
    assert iso.q_star("relu", 1.5, 0.1) == pytest.approx(0.1 / (1 - 0.75))
    with pytest.raises(ValueError, match="diverges"):
        iso.q_star("relu", 2.5, 0.0)
    with pytest.raises(ValueError, match="q0"):
        iso.q_star("relu", 2.0, 0.0)
    assert iso.q_star("relu", 2.0, 0.0, q0=0.7) == 0.7
    with pytest.raises(ValueError, match="diverges"):
        iso.q_star("silu", 8.0, 0.1)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf, "x", True])
def test_critical_point_rejects_bad_q_star(bad):
    with pytest.raises((TypeError, ValueError), match="q_star"):
        iso.critical_point("tanh", bad)


def test_critical_point_rejects_negative_bias_variance():
    with pytest.raises(ValueError, match="sigma_b2"):
        iso.critical_point("sigmoid", 0.5)
    with pytest.raises(ValueError, match="sigma_w2"):
        iso.q_map("tanh", 1.0, -1.0, 0.0)


def _mc_layer(act, q, sigma_w2, sigma_b2, width, rng, orthogonal=False):
    """One random layer applied to inputs of length q: returns empirical q^{l+1} and chi."""
    a = iso.get_activation(act)
    h = rng.standard_normal(width) * np.sqrt(q)
    if orthogonal:
        Q, R = np.linalg.qr(rng.standard_normal((width, width)))
        W = np.sqrt(sigma_w2) * Q * np.sign(np.diag(R))
    else:
        W = rng.standard_normal((width, width)) * np.sqrt(sigma_w2 / width)
    b = rng.standard_normal(width) * np.sqrt(sigma_b2)
    h2 = W @ a.phi(h) + b
    J = W * a.dphi(h)[None, :]
    return np.mean(h2**2), np.sum(J**2) / width, sigma_w2 * np.std(a.dphi(h) ** 2) / np.sqrt(width)


@pytest.mark.parametrize("act,q", [("tanh", 0.5), ("hard_tanh", 0.8), ("selu", 1.0), ("gelu", 2.0)])
def test_q_map_and_chi_against_wide_random_layers(act, q, rng):
    sw, sb = 1.7, 0.05
    width = 1200
    qs, chis, ses = zip(*[_mc_layer(act, q, sw, sb, width, rng) for _ in range(4)])
    assert np.mean(qs) == pytest.approx(iso.q_map(act, q, sw, sb), rel=0.04)
    # chi = sigma_w2 mu_1 estimated from 4 x 1200 units: within 4 standard errors (+0.5% for W)
    tol = 4 * np.mean(ses) / 2 + 0.005 * np.mean(chis)
    assert abs(np.mean(chis) - sw * iso.mu(act, q, 1)) < tol


def test_q_star_against_deep_random_network(rng):
    # iterate a width-1500 tanh network 30 layers: the length converges to q*
    sw, sb, width = 2.0, 0.1, 1500
    a = iso.get_activation("tanh")
    h = rng.standard_normal(width) * 3.0
    for _ in range(30):
        W = rng.standard_normal((width, width)) * np.sqrt(sw / width)
        h = W @ a.phi(h) + rng.standard_normal(width) * np.sqrt(sb)
    assert np.mean(h**2) == pytest.approx(iso.q_star("tanh", sw, sb), rel=0.08)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(SMOOTH_WITH_CRITICAL), logq=st.floats(-6, 0.5))
def test_property_critical_points_are_critical_fixed_points(name, logq):
    q = 10.0**logq
    try:
        cp = iso.critical_point(name, q)
    except ValueError as e:
        assert "sigma_b2" in str(e)
        return
    assert cp.sigma_b2 >= 0
    assert cp.sigma_w2 * iso.mu(name, q, 1) == pytest.approx(1.0, rel=1e-12)
    assert iso.q_map(name, q, cp.sigma_w2, cp.sigma_b2) == pytest.approx(q, rel=1e-9, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(["tanh", "erf", "hard_tanh", "sigmoid", "softplus", "elu"]),
       sw=st.floats(0.3, 1.9), sb=st.floats(0.0, 0.5))
@example(name="hard_tanh", sw=0.5, sb=2.2250738585e-313)  # denormal q*: once overflowed in the pdf
def test_property_q_star_is_a_fixed_point(name, sw, sb):
    q = iso.q_star(name, sw, sb)
    assert iso.q_map(name, q, sw, sb) == pytest.approx(q, rel=1e-10, abs=1e-14)


def test_vectorised_q_star_and_phase_diagram_agree_with_scalar():
    sw = np.linspace(0.5, 3, 40)
    sb = np.linspace(0, 0.25, 30)
    pd = iso.phase_diagram("tanh", sw, sb)
    assert pd.q_star.shape == (30, 40)
    for j, i in [(0, 0), (0, 39), (7, 12), (29, 20), (15, 5)]:
        assert pd.q_star[j, i] == pytest.approx(float(iso.q_star("tanh", sw[i], sb[j])), rel=1e-9, abs=1e-30)
    # chaotic region to the lower right, ordered to the upper left
    assert pd.chi[0, -1] > 1 > pd.chi[-1, 0]


def test_tabulated_phase_diagram_matches_exact():
    sw = np.linspace(0.5, 3, 20)
    sb = np.linspace(0, 0.25, 20)
    pd = iso.phase_diagram("tanh", sw, sb)  # 400 points: the tabulated path
    ex = iso.q_star("tanh", pd.sigma_w2, pd.sigma_b2)
    assert np.allclose(pd.q_star, ex, rtol=1e-9, atol=1e-30)
    assert np.allclose(pd.chi, iso.chi("tanh", pd.sigma_w2, pd.sigma_b2), rtol=1e-9)


def test_critical_line_marks_invalid_points():
    line = iso.critical_line("tanh", [0.01, 0.5, 2.0])
    assert line.valid.all()
    assert np.allclose(line.sigma_w2 * line.mu1, 1.0)
    s = iso.critical_line("sigmoid", [0.5])
    assert not s.valid.any()


def test_correlation_map_and_depth_scales():
    # relu c-map at sigma_w2 = 2, sigma_b2 = 0: c=1 fixed, arc-cosine form at c=0 is 1/pi
    assert iso.c_map("relu", 0.0, 2.0, 0.0, q0=1.0) == pytest.approx(1 / np.pi, rel=1e-12)
    assert iso.c_map("tanh", 1.0, 2.0, 0.1) == pytest.approx(1.0, rel=1e-9)
    # quadrature kernel agrees with the exact erf kernel
    a = iso.get_activation("erf")
    from isometry.meanfield import _kernel
    from dataclasses import replace

    b = replace(a, kernel=None)
    assert np.allclose(_kernel(b, 0.7, np.array([0.2, 0.9])), a.kernel(0.7, np.array([0.2, 0.9])), rtol=1e-8)
    # ordered phase: c* = 1, xi_c = -1/log chi; chaotic: c* < 1
    assert iso.c_star("tanh", 0.8, 0.05) == 1.0
    x = iso.xi_c("tanh", 0.8, 0.05)
    assert x == pytest.approx(-1 / np.log(iso.chi("tanh", 0.8, 0.05)), rel=1e-9)
    assert iso.c_star("tanh", 3.0, 0.05) < 1.0
    # depth scale diverges at criticality
    cp = iso.critical_point("tanh", 0.3)
    assert iso.xi_c("tanh", cp.sigma_w2, cp.sigma_b2) > 1e6 or np.isinf(iso.xi_c("tanh", cp.sigma_w2, cp.sigma_b2))
    assert np.isfinite(iso.xi_q("tanh", 2.0, 0.1)) and iso.xi_q("tanh", 2.0, 0.1) > 0


def test_tiny_q_star_is_finite():
    cp = iso.critical_point("tanh", 1e-8)
    assert np.isfinite([cp.sigma_w2, cp.sigma_b2, cp.mu1, cp.mu2]).all()
    assert cp.sigma_w2 == pytest.approx(1 + 2e-8, rel=1e-12)


def test_network_parameters_resolves_both_ways():
    sw, sb, q = iso.network_parameters("tanh", q_star=0.3)
    cp = iso.critical_point("tanh", 0.3)
    assert (sw, sb, q) == (cp.sigma_w2, cp.sigma_b2, cp.q_star)
    sw, sb, q = iso.network_parameters("tanh", sigma_w2=2.0, sigma_b2=0.1)
    assert q == pytest.approx(float(iso.q_star("tanh", 2.0, 0.1)))
    assert iso.network_parameters("relu", sigma_w2=2.0, sigma_b2=0.0) == (2.0, 0.0, 1.0)  # marginal: q0 = 1
    with pytest.raises(ValueError, match="not both"):
        iso.network_parameters("tanh", q_star=0.3, sigma_w2=1.0)
    with pytest.raises(ValueError, match="sigma_w2"):
        iso.network_parameters("tanh", sigma_w2=-1.0, sigma_b2=0.0)


# ----------------------------------------------------------------------- correlations: an independent route
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(120)
_GH_W = _GH_W / np.sqrt(2 * np.pi)


def _gh_q_star(phi, sw, sb):
    """q* by plain fixed-point iteration of the length map with a 120-node Gauss-Hermite rule."""
    q = 1.0
    for _ in range(20000):
        qn = sw * np.dot(_GH_W, phi(np.sqrt(q) * _GH_Z) ** 2) + sb
        if abs(qn - q) < 1e-16 * q:
            break
        q = qn
    return qn


def _gh_c_map(phi, c, sw, sb, q):
    """(sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q with a Gauss-Hermite tensor rule."""
    z1, z2 = _GH_Z[:, None], _GH_Z[None, :]
    u1 = np.sqrt(q) * z1
    u2 = np.sqrt(q) * (c * z1 + np.sqrt(1 - c * c) * z2)
    return (sw * (_GH_W @ (phi(u1) * phi(u2)) @ _GH_W) + sb) / q


@pytest.mark.parametrize("sw", [1.03, 1.06, 1.1, 1.15, 1.2])
def test_c_star_against_independent_quadrature(sw):
    """c* at sigma_b2 = 2e-5 for sigma_w2 in (1, 1.2]: bracketing root of an independent 2-D
    Gauss-Hermite c-map (1.03 is still ordered there: c* = 1), and the residual of the returned c*."""
    from scipy.optimize import brentq

    sb = 2e-5
    q = _gh_q_star(np.tanh, sw, sb)
    assert q == pytest.approx(float(iso.q_star("tanh", sw, sb)), rel=1e-9)
    chi_gh = sw * np.dot(_GH_W, (1 / np.cosh(np.sqrt(q) * _GH_Z)) ** 4)
    cs = iso.c_star("tanh", sw, sb)
    if chi_gh <= 1:
        assert cs == 1.0
        return
    ref = brentq(lambda c: _gh_c_map(np.tanh, c, sw, sb, q) - c, 0.0, 1 - 1e-3, xtol=1e-14)
    assert cs == pytest.approx(ref, abs=1e-8)
    assert abs(float(iso.c_map("tanh", cs, sw, sb)) - cs) < 1e-13  # a fixed point
    assert abs(_gh_c_map(np.tanh, cs, sw, sb, q) - cs) < 1e-9
    # stable: the map contracts towards c* from both sides
    assert float(iso.c_map("tanh", cs - 0.05, sw, sb)) > cs - 0.05
    assert float(iso.c_map("tanh", min(cs + 0.05, 1.0), sw, sb)) < min(cs + 0.05, 1.0)


def test_c_star_just_inside_chaos_and_xi_c():
    """The case a truncated iteration got wrong (0.531, not a fixed point): c* ~ 0.699, and
    xi_c = -1/log(sigma_w2 E[phi'(u1) phi'(u2)]) at that c*."""
    sw, sb = 1.06, 2e-5
    cs = iso.c_star("tanh", sw, sb)
    assert cs == pytest.approx(0.6988573, abs=1e-6)
    q = _gh_q_star(np.tanh, sw, sb)
    z1, z2 = _GH_Z[:, None], _GH_Z[None, :]
    u1, u2 = np.sqrt(q) * z1, np.sqrt(q) * (cs * z1 + np.sqrt(1 - cs * cs) * z2)
    chi_c = sw * (_GH_W @ ((1 / np.cosh(u1)) ** 2 * (1 / np.cosh(u2)) ** 2) @ _GH_W)
    assert iso.xi_c("tanh", sw, sb) == pytest.approx(-1 / np.log(chi_c), rel=1e-6)


def test_c_star_erf_near_criticality_resolved_or_refused():
    cp = iso.critical_point("erf", 0.01)
    cs = iso.c_star("erf", cp.sigma_w2 * (1 + 1e-5), cp.sigma_b2)
    assert 0.99 < cs < 1.0 and abs(float(iso.c_map("erf", cs, cp.sigma_w2 * (1 + 1e-5), cp.sigma_b2)) - cs) < 1e-13
    with pytest.raises(ValueError, match="cannot be resolved"):
        iso.c_star("erf", cp.sigma_w2 * (1 + 1e-9), cp.sigma_b2)


# ----------------------------------------------------------------------- silent wrong answers
def test_nan_activation_raises_naming_it_and_where():
    def holey(h):  # NaN for h > 2.5: refused when resolved (phi must be finite on [-10, 10])
        return np.where(h > 2.5, np.nan, np.tanh(h))

    with pytest.raises(ValueError, match="holey.*not finite at h in"):
        iso.get_activation(holey, dphi=lambda h: 1 / np.cosh(h) ** 2)

    def far_holey(h):  # NaN only beyond |h| = 20: the quadrature at large q* reaches it
        return np.where(np.abs(h) > 20, np.nan, np.tanh(h))

    a = iso.get_activation(far_holey, dphi=lambda h: np.where(np.abs(h) > 20, np.nan, 1 / np.cosh(h) ** 2))
    assert iso.critical_point(a, 0.5).sigma_w2 == pytest.approx(iso.critical_point("tanh", 0.5).sigma_w2, rel=1e-12)
    with pytest.raises(ValueError, match=r"far_holey.*not finite.*h in \["):
        iso.critical_point(a, 10.0)
    with pytest.raises(ValueError, match="far_holey"):
        iso.q_star(a, 1.5, 5.0)


@pytest.mark.parametrize("call", [
    lambda: iso.critical_point("tanh", True),
    lambda: iso.q_star("tanh", True, 0.1),
    lambda: iso.q_map("tanh", 1.0, 1.5, False),
    lambda: iso.network_parameters("tanh", sigma_w2=True, sigma_b2=0.1),
    lambda: iso.mu("tanh", 1.0, True),
    lambda: iso.c_star("tanh", 2.0, True),
])
def test_booleans_are_not_numbers(call):
    with pytest.raises(TypeError):
        call()


def test_phase_diagram_marks_divergence_instead_of_failing():
    pd = iso.phase_diagram("relu", np.linspace(0.5, 3.0, 11), [0.0, 0.1])
    sw = pd.sigma_w2[0]
    assert np.all(np.isinf(pd.q_star[1, sw >= 2])) and np.all(np.isnan(pd.chi[1, sw >= 2]))
    np.testing.assert_allclose(pd.q_star[1, sw < 2], 0.1 / (1 - sw[sw < 2] / 2), rtol=1e-12)
    assert pd.q_star[0, sw == 2.0] == 1.0  # marginal point: every q fixed, q0 = 1
    # unbounded smooth units: the tabulated grid finds the same divergence as the exact solver
    from isometry.meanfield import _q_star_array

    sw_g, sb_g = np.linspace(0.5, 3, 20), np.linspace(0, 0.25, 20)
    pd = iso.phase_diagram("silu", sw_g, sb_g)  # 400 points: the tabulated path
    ex = _q_star_array(iso.get_activation("silu"), pd.sigma_w2, pd.sigma_b2, None, diverged="inf")
    assert np.array_equal(np.isfinite(pd.q_star), np.isfinite(ex)) and np.any(np.isinf(ex))
    fin = np.isfinite(ex)
    np.testing.assert_allclose(pd.q_star[fin], ex[fin], rtol=1e-8, atol=1e-30)
    with pytest.raises(ValueError, match="diverges"):
        iso.q_star("silu", 3.0, 0.0)


def test_no_critical_point_hint_is_true():
    with pytest.raises(ValueError, match="no q_star in"):
        iso.critical_point("softplus", 1.0)
    with pytest.raises(ValueError, match=r"q_star >= (\d+\.\d+)") as info:
        iso.critical_point("sigmoid", 1.0)
    q_min = float(info.value.args[0].split("q_star >= ")[1].rstrip(")"))
    assert iso.critical_point("sigmoid", q_min * 1.01).sigma_b2 >= 0
    with pytest.raises(ValueError, match="sigma_b2"):
        iso.critical_point("sigmoid", q_min * 0.99)


def test_to_dict_of_result_types():
    cp = iso.critical_point("erf", 0.5)
    assert cp.to_dict()["chi"] == pytest.approx(1.0) and not hasattr(cp, "as_dict")
    line = iso.critical_line("sigmoid", [1.0, 100.0]).to_dict()
    assert line["activation"] == "sigmoid" and [p["q_star"] for p in line["points"]] == [100.0]
    pd = iso.phase_diagram("tanh", [1.0, 2.0], [0.0, 0.1, 0.2]).to_dict()
    assert len(pd["sigma_w2"]) == 2 and np.shape(pd["chi"]) == (3, 2)
