import numpy as np
import pytest

from isometry import ACTIVATIONS, get_activation
from isometry.gaussian import expect, expect_with_error

EXACT = ["linear", "relu", "leaky_relu", "hard_tanh", "shifted_relu", "erf"]


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("q", [1e-6, 0.03, 0.5, 2.0, 40.0])
def test_exact_second_moment_matches_kink_split_quadrature(name, q):
    a = get_activation(name)
    quad = expect(lambda h: a.phi(h) ** 2, q, a.kinks)
    assert np.isclose(a.e_phi2(np.array(q)), quad, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_exact_mu_matches_quadrature(name, k):
    a = get_activation(name)
    for q in (1e-4, 0.3, 3.0):
        quad = expect(lambda h: np.abs(a.dphi(h)) ** (2 * k), q, a.kinks)
        assert np.isclose(a.mu_exact(np.array(q), k), quad, rtol=1e-12)


def test_exact_kernels_match_monte_carlo(rng):
    z = rng.standard_normal((2, 400_000))
    for name in ["relu", "leaky_relu", "erf", "linear"]:
        a = get_activation(name)
        for q, c in [(0.7, 0.3), (2.0, -0.6), (1.0, 0.95)]:
            u1 = np.sqrt(q) * z[0]
            u2 = np.sqrt(q) * (c * z[0] + np.sqrt(1 - c * c) * z[1])
            mc = np.mean(a.phi(u1) * a.phi(u2))
            se = np.std(a.phi(u1) * a.phi(u2)) / np.sqrt(z.shape[1])
            assert abs(a.kernel(q, c) - mc) < 5 * se, (name, q, c)


def test_quadrature_beats_gauss_hermite_at_kinks():
    # plain Gauss-Hermite with 60 nodes on the hard-tanh second moment vs our rule
    a = get_activation("hard_tanh")
    q = 0.7
    exact = a.e_phi2(np.array(q))
    x, w = np.polynomial.hermite_e.hermegauss(60)
    gh = np.dot(w, a.phi(np.sqrt(q) * x) ** 2) / np.sqrt(2 * np.pi)
    ours, err = expect_with_error(lambda h: a.phi(h) ** 2, q, a.kinks)
    assert abs(ours - exact) < 1e-14
    assert err < 1e-12
    assert abs(gh - exact) > 1e3 * abs(ours - exact)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivatives_match_finite_differences(name):
    a = get_activation(name)
    x = np.linspace(-3.3, 3.1, 57)
    x = x[np.min(np.abs(x[:, None] - np.array((0.0,) + a.kinks)[None, :]), axis=1) > 1e-2]
    e = 1e-6
    fd = (a.phi(x + e) - a.phi(x - e)) / (2 * e)
    assert np.allclose(a.dphi(x), fd, atol=1e-7)


def test_erf_convention_and_smooth_derivatives_are_stable():
    a = get_activation("erf")
    assert a.dphi(np.array(0.0)) == 1.0
    t = get_activation("tanh")
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        d = t.dphi(np.array([800.0, -800.0, 30.0]))
    assert np.all(d >= 0) and d[2] > 0


def test_custom_callable_complex_step_and_rejection():
    a = get_activation(np.sin)
    assert np.allclose(a.dphi(np.array([0.3, -1.2])), np.cos([0.3, -1.2]), rtol=1e-14)
    with pytest.raises(ValueError, match="dphi"):
        get_activation(lambda h: np.abs(h) ** 1.5)
    b = get_activation(lambda h: np.abs(h), dphi=np.sign, kinks=(0.0,))
    assert b.kinks == (0.0,)


def test_bad_names_and_params():
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("sine")
    with pytest.raises(ValueError, match="alpha"):
        get_activation("leaky_relu", alpha=2.0)
    with pytest.raises(ValueError, match="parameters"):
        get_activation("tanh", alpha=0.1)
    assert get_activation("leaky_relu", alpha=0.2).params == {"alpha": 0.2}


def test_non_elementwise_callables_are_refused():
    with pytest.raises(ValueError, match="not elementwise"):
        get_activation(lambda h: np.tanh(h - np.mean(h)), dphi=lambda h: 1 / np.cosh(h) ** 2)
    with pytest.raises(ValueError, match="not elementwise"):
        get_activation(lambda h: h / np.sqrt(np.mean(h * h)))
    with pytest.raises(ValueError, match="dphi is not elementwise"):
        get_activation(np.tanh, dphi=lambda h: np.full_like(h, np.mean(1 / np.cosh(h) ** 2)))


def test_wrong_user_derivative_is_refused():
    with pytest.raises(ValueError, match="finite differences"):
        get_activation(np.tanh, dphi=lambda h: 1 / np.cosh(h))  # sech, not sech^2
    ok = get_activation(lambda h: np.abs(h), dphi=np.sign, kinks=(0.0,))
    assert ok.dphi(np.array(-2.0)) == -1.0


def test_user_complex_derivative_gives_the_built_in_law():
    """A user tanh whose phi' accepts complex input, declared through get_activation, reproduces the
    built-in tanh D^2 law (deformed contour) and spectrum; without it the real-axis rule is used."""
    from isometry.spectrum import jacobian_spectrum
    from isometry.spectrum.d2 import d2_law

    def sech2(h):
        return 1 / np.cosh(h) ** 2

    user = get_activation(np.tanh, dphi=sech2, dphi_complex=True, dphi_strip=np.pi / 2, name="my_tanh")
    assert user.dphi_complex is not None and user.dphi_strip == pytest.approx(np.pi / 2)
    law_u, law_b = d2_law(user, 0.5), d2_law(get_activation("tanh"), 0.5)
    assert law_u.deformed and law_b.deformed
    w = np.array([0.5 + 1e-12j, 1.2 + 1e-12j, 0.9 + 0.1j])
    np.testing.assert_allclose(law_u.m_and_dm(w)[0], law_b.m_and_dm(w)[0], rtol=1e-10)
    lam = np.array([0.3, 1.0, 2.5])
    np.testing.assert_allclose(jacobian_spectrum(user, 3, q_star=0.5).pdf(lam),
                               jacobian_spectrum("tanh", 3, q_star=0.5).pdf(lam), rtol=1e-9)
    plain = get_activation(np.tanh, dphi=sech2)
    assert plain.dphi_complex is None and not d2_law(plain, 0.5).deformed
    with pytest.raises(ValueError, match="dphi_complex"):
        get_activation(np.tanh, dphi=lambda h: np.asarray(sech2(np.real(h)), dtype=float), dphi_complex=True)
    with pytest.raises(ValueError, match="need dphi"):
        get_activation(np.tanh, dphi_complex=True)
    with pytest.raises(ValueError, match="callables"):
        get_activation("tanh", dphi_complex=True)


def test_homogeneity_is_a_record_field():
    homogeneous = {n for n in ACTIVATIONS if get_activation(n).homogeneous}
    assert homogeneous == {"linear", "relu", "leaky_relu"}
    # the mean field takes it from the record: a user-made homogeneous unit behaves like its registry twin
    import dataclasses

    import isometry as iso

    twin = dataclasses.replace(get_activation("leaky_relu", alpha=0.3), name="my_leaky")
    assert iso.network_parameters(twin, sigma_w2=2 / 1.09, sigma_b2=0.0)[2] == 1.0
    with pytest.raises(ValueError, match="diverges"):
        iso.q_star(twin, 2.0, 0.1)
