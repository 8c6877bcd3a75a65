"""Kernel shaping (DKS/TAT) in the NumPy core, checked by routes independent of the solver.

* local maps: closed forms (ReLU, erf) and the Hermite (Mehler) expansion C(c) = sum_n a_n^2 c^n,
  which needs phi only (no phi', phi''), on Gauss-Hermite nodes (not the library's quadrature);
* the network-level targets: the local C-map from that expansion, composed through the
  architecture with its first two derivatives (a jet), to 1e-10;
* Monte Carlo: wide random networks (width 1000) with the shaped activation reach the predicted
  output correlation; the eigenvalues of J J^T at width 400 match the predicted law.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special

import isometry as iso
from isometry.shaping import (
    Chain,
    Composed,
    KernelShaping,
    ResidualChain,
    dks_transform,
    local_c_map,
    local_maps,
    network_c_map,
    shaped_activation,
    tat_transform,
)

# ------------------------------------------------------------------ independent helpers
_Z, _W = hermegauss(300)
_W = _W / math.sqrt(2.0 * math.pi)


def pair_expectation(phi, q: float, c: float) -> float:
    """E[phi(u) phi(v)], Var u = Var v = q, Corr = c: a tensor Gauss-Hermite rule (smooth phi)."""
    s = math.sqrt(q)
    z, w = hermegauss(160)
    w = w / math.sqrt(2.0 * math.pi)
    u = s * z[:, None]
    v = s * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
    return float(w @ (phi(u) * phi(v)) @ w)


def hermite_power(phi, n: int = 120) -> np.ndarray:
    """p_n = a_n^2 with a_n = E[phi(z) He_n(z)] / sqrt(n!): C(c) Q(1) = sum_n p_n c^n (Mehler)."""
    f = phi(_Z)
    out = np.empty(n + 1)
    hm, h = np.zeros_like(_Z), np.ones_like(_Z)
    for k in range(n + 1):
        out[k] = _W @ (f * h)
        hm, h = h, (_Z * h - math.sqrt(k) * hm) / math.sqrt(k + 1)
    return out * out


def hermite_jet(p: np.ndarray):
    """The local C-map of the power series p as a jet c -> (C, C', C'') (normalised by Q(1) = sum p)."""
    n = np.arange(p.size)
    q = p.sum()

    def jet(c):
        c = min(c, 1.0)
        pw = c ** np.maximum(n - 2, 0)
        return ((p * c ** n).sum() / q, (n * p * c ** np.maximum(n - 1, 0)).sum() / q, (n * (n - 1) * p * pw).sum() / q)

    return jet


def compose_chain(jet, depth: int, c: float):
    """(C_f, C_f', C_f'') of a chain at c: the jets of the layers composed (chain rule)."""
    v, d1, d2 = c, 1.0, 0.0
    for _ in range(depth):
        f, f1, f2 = jet(v)
        v, d1, d2 = f, f1 * d1, f2 * d1 * d1 + f1 * d2
    return v, d1, d2


def compose_residual(jet, blocks: int, w: float, branch: int, c: float):
    """The same through residual blocks c -> w^2 c + (1 - w^2) C_branch(c)."""
    v, d1, d2 = c, 1.0, 0.0
    for _ in range(blocks):
        b, b1, b2 = v, 1.0, 0.0
        for _ in range(branch):
            f, f1, f2 = jet(b)
            b, b1, b2 = f, f1 * b1, f2 * b1 * b1 + f1 * b2
        v, d1, d2 = w * w * v + (1 - w * w) * b, w * w * d1 + (1 - w * w) * b1 * d1, \
            w * w * d2 + (1 - w * w) * (b2 * d1 * d1 + b1 * d2)
    return v, d1, d2


def q_and_slope(phi) -> tuple[float, float]:
    """Q(1) = E[phi^2] and Q'(1) = (E[phi^2 z^2] - E[phi^2]) / 2 (derivative-free, Gauss-Hermite)."""
    f2 = phi(_Z) ** 2
    q = _W @ f2
    return q, 0.5 * (_W @ (f2 * _Z * _Z) - q)


def leaky_cmap(c: float, s: float) -> float:
    """The leaky-ReLU C-map (Zhang et al. 2022, eq. 8), written out independently of the library."""
    return ((1 - s) ** 2 * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi + 2 * s * c) / (1 + s * s)


# ------------------------------------------------------------------ the shaped activation record
def test_shaped_activation_values_derivative_and_kinks():
    a = shaped_activation("elu", input_scale=0.7, input_shift=-0.3, output_scale=2.5, output_shift=0.1)
    h = np.linspace(-4, 4, 101)
    base = iso.get_activation("elu")
    np.testing.assert_allclose(a.phi(h), 2.5 * (base.phi(0.7 * h - 0.3) + 0.1), rtol=1e-15)
    fd = (a.phi(h + 1e-6) - a.phi(h - 1e-6)) / 2e-6
    far = np.abs(h - 0.3 / 0.7) > 1e-3
    np.testing.assert_allclose(a.dphi(h)[far], fd[far], rtol=1e-7)
    assert a.kinks == pytest.approx((0.3 / 0.7,))
    assert a.dphi_strip == np.inf and not a.homogeneous
    hc = h + 0.2j
    np.testing.assert_allclose(a.dphi_complex(h + 0j).real, a.dphi(h), rtol=1e-14)
    assert np.all(np.isfinite(a.dphi_complex(hc)))
    assert a.torch_module[0:2] == ("isometry.torch.shaped", "ShapedActivation")
    assert a.torch_module[2]["base"] == base.torch_module


@pytest.mark.parametrize("name, kw", [("erf", dict(input_scale=0.6, output_scale=1.7)),
                                      ("leaky_relu", dict(input_scale=1.3, output_scale=0.8)),
                                      ("relu", dict(input_scale=0.7, input_shift=0.9, output_scale=1.4,
                                                    output_shift=-0.5)),
                                      ("hard_tanh", dict(input_scale=2.0, input_shift=0.5, output_scale=1.1))])
def test_exact_forms_of_the_shaped_record_match_quadrature(name, kw):
    a = shaped_activation(name, **kw)
    plain = iso.get_activation(a.phi, dphi=a.dphi, kinks=a.kinks)  # the same unit without exact forms
    for q in (0.3, 1.0, 4.0):
        if a.e_phi2 is not None:
            assert float(a.e_phi2(q)) == pytest.approx(float(iso.e_phi2(plain, q)), rel=1e-12)
        if a.kernel is not None:
            if a.kinks:  # leaky ReLU: g^2 a^2 q (1 + s^2) / 2 C_s(c), with the C-map written out below
                want = 0.8 ** 2 * 1.3 ** 2 * q * (1 + 0.01 ** 2) / 2 * leaky_cmap(0.4, 0.01)
            else:
                want = pair_expectation(plain.phi, q, 0.4)
            assert float(a.kernel(q, 0.4)) == pytest.approx(want, rel=1e-12)
        for k in (1, 2, 3):
            assert float(a.mu_exact(q, k)) == pytest.approx(float(iso.mu(plain, q, k)), rel=1e-12)
        if a.d2_atoms is not None:
            v, p = a.d2_atoms(q)
            assert p.sum() == pytest.approx(1.0, abs=1e-14)
            assert (p * v).sum() == pytest.approx(float(iso.mu(plain, q, 1)), rel=1e-12)
    assert a.homogeneous == ("input_shift" not in kw and name == "leaky_relu")


def test_shaped_activation_rejects_bad_parameters():
    with pytest.raises(ValueError, match="input_scale"):
        shaped_activation("tanh", input_scale=0.0)
    with pytest.raises(ValueError, match="output_shift"):
        shaped_activation("tanh", output_shift=math.inf)
    with pytest.raises(TypeError, match="output_scale"):
        shaped_activation("tanh", output_scale="2")


# ------------------------------------------------------------------ local maps
def test_local_maps_relu_and_erf_closed_forms():
    m = local_maps("relu")
    assert (m.q, m.q_slope, m.c_slope, m.c_curvature) == (0.5, 0.5, 1.0, math.inf)
    assert m.c_zero == pytest.approx(1 / math.pi, rel=1e-14)
    assert m.c_slope_zero == pytest.approx(0.5, rel=1e-14)  # E[phi']^2 / Q(1) = (1/4) / (1/2)
    # erf(sqrt(pi) h / 2): Q(q) = (2/pi) arcsin(k q), k q = g / (1 + g), g = pi q / 2
    g = math.pi / 2
    q1 = 2 / math.pi * math.asin(g / (1 + g))
    dq = 2 / math.pi / math.sqrt(1 - (g / (1 + g)) ** 2) * (math.pi / 2) / (1 + g) ** 2
    k = g / (1 + g)  # C(c) = (2/pi) arcsin(k c) / Q(1)
    m = local_maps("erf")
    assert m.q == pytest.approx(q1, rel=1e-14)
    assert m.q_slope == pytest.approx(dq, rel=1e-12)
    assert m.c_zero == pytest.approx(0.0, abs=1e-30)
    assert m.c_slope == pytest.approx(2 / math.pi * k / math.sqrt(1 - k * k) / q1, rel=1e-13)
    assert m.c_curvature == pytest.approx(2 / math.pi * k ** 3 / (1 - k * k) ** 1.5 / q1, rel=1e-12)
    assert m.c_slope_zero == pytest.approx(2 / math.pi * k / q1, rel=1e-13)


@pytest.mark.parametrize("name", ["tanh", "softplus", "silu", "gelu", "sigmoid"])
def test_local_maps_match_the_hermite_expansion(name):
    a = iso.get_activation(name)
    p = hermite_power(a.phi, 160)
    n = np.arange(p.size)
    m = local_maps(a)
    q, dq = q_and_slope(a.phi)
    assert m.q == pytest.approx(q, rel=1e-13) and m.q == pytest.approx(p.sum(), rel=1e-12)
    assert m.q_slope == pytest.approx(dq, rel=1e-12)
    assert m.c_zero == pytest.approx(p[0] / q, rel=1e-12, abs=1e-15)
    assert m.c_slope == pytest.approx((n * p).sum() / q, rel=1e-11)
    assert m.c_slope_zero == pytest.approx(p[1] / q, rel=1e-12)
    assert m.c_curvature == pytest.approx((n * (n - 1) * p).sum() / q, rel=1e-8)


def test_local_c_map_and_network_composition():
    c = np.array([-0.5, 0.0, 0.3, 0.9, 1.0])
    relu = np.array([leaky_cmap(x, 0.0) for x in c])
    np.testing.assert_allclose(local_c_map("relu", c), relu, rtol=1e-14)
    p = hermite_power(np.tanh, 160)
    jet = hermite_jet(p)
    np.testing.assert_allclose(local_c_map("tanh", c), [jet(x)[0] for x in c], rtol=1e-9, atol=1e-12)
    # composed: two ReLU layers, and residual blocks
    assert float(network_c_map("relu", 0.0, Chain(2))) == pytest.approx(leaky_cmap(1 / math.pi, 0.0), rel=1e-14)
    w = 0.8
    x = 0.2
    for _ in range(3):
        x = w * w * x + (1 - w * w) * leaky_cmap(leaky_cmap(x, 0.0), 0.0)
    sub = ResidualChain(3, w, branch_depth=2)
    assert float(network_c_map("relu", 0.2, sub)) == pytest.approx(x, rel=1e-13)  # the whole network
    relu_c = (lambda y: float(local_c_map("relu", y)))
    assert sub(0.2, relu_c) == pytest.approx(max(x, leaky_cmap(leaky_cmap(0.2, 0.0), 0.0)), rel=1e-13)  # maximum
    assert Composed((Chain(1), sub)).compose(0.2, relu_c) == pytest.approx(sub.compose(relu_c(0.2), relu_c), rel=1e-15)


def test_local_maps_and_composition_reject_bad_input():
    with pytest.raises(ValueError, match="c must lie"):
        local_c_map("tanh", 1.5)
    with pytest.raises(TypeError, match="subnet"):
        network_c_map("tanh", 0.1, 3)
    with pytest.raises(ValueError, match="depth"):
        Chain(0)
    with pytest.raises(TypeError, match="depth"):
        Chain(2.5)
    with pytest.raises(ValueError, match="shortcut_weight"):
        ResidualChain(4, 1.5)
    with pytest.raises(ValueError, match="residual_weight"):
        ResidualChain(4, 0.6, residual_weight=0.6)
    assert ResidualChain(4, 0.6).residual_weight == pytest.approx(0.8)
    assert ResidualChain(4, 0.6, branch_depth=3).depth == 12


# ------------------------------------------------------------------ the transforms hit their targets
DKS_CASES = [("tanh", 4, 1.5), ("softplus", 16, 1.5), ("silu", 100, 1.5), ("gelu", 16, 1.2), ("sigmoid", 100, 3.0),
             ("tanh", 100, 10.0)]
TAT_CASES = [("tanh", 4, 0.3), ("softplus", 16, 0.3), ("silu", 100, 0.3), ("gelu", 16, 0.5), ("sigmoid", 100, 0.3),
             ("erf", 32, 1.0)]


@pytest.mark.parametrize("name, depth, zeta", DKS_CASES)
def test_dks_network_slope_is_zeta(name, depth, zeta):
    s = dks_transform(name, depth, zeta=zeta)
    phi = s.activation.phi
    q, dq = q_and_slope(phi)
    assert q == pytest.approx(1.0, abs=1e-12) and dq == pytest.approx(1.0, abs=1e-11)
    p = hermite_power(phi, 160)
    assert p[0] == pytest.approx(0.0, abs=1e-13)  # C(0) = 0
    jet = hermite_jet(p)
    v, d1, _ = compose_chain(jet, depth, 1.0)
    assert v == pytest.approx(1.0, abs=1e-12)
    assert d1 == pytest.approx(zeta, abs=1e-10)  # C_f'(1) = zeta
    assert s.achieved["zeta"] == pytest.approx(zeta, abs=1e-10)
    assert s.residual <= 1e-10 and s.input_scale > 0
    assert s.depth == depth and s.method == "dks" and s.negative_slope is None


@pytest.mark.parametrize("name, depth, tau", TAT_CASES)
def test_tat_network_curvature_is_tau(name, depth, tau):
    s = tat_transform(name, depth, tau=tau)
    phi = s.activation.phi
    q, dq = q_and_slope(phi)
    assert q == pytest.approx(1.0, abs=1e-12) and dq == pytest.approx(1.0, abs=1e-11)
    v, d1, d2 = compose_chain(hermite_jet(hermite_power(phi, 160)), depth, 1.0)
    assert d1 == pytest.approx(1.0, abs=1e-10)  # C_f'(1) = 1
    assert d2 == pytest.approx(tau, abs=1e-10)  # C_f''(1) = tau
    assert s.achieved["tau"] == pytest.approx(tau, abs=1e-10)


def test_dks_and_tat_through_residual_blocks():
    sub = ResidualChain(6, 0.6, branch_depth=2)
    s = dks_transform("tanh", subnet=sub, zeta=2.0)
    jet = hermite_jet(hermite_power(s.activation.phi, 160))
    assert s.depth == 12
    # the maximal slope: the stack (the branch alone has a smaller one)
    assert compose_residual(jet, 6, 0.6, 2, 1.0)[1] == pytest.approx(2.0, abs=1e-10)
    t = tat_transform("softplus", subnet=sub, tau=0.4)
    _, d1, d2 = compose_residual(hermite_jet(hermite_power(t.activation.phi, 160)), 6, 0.6, 2, 1.0)
    assert d1 == pytest.approx(1.0, abs=1e-10) and d2 == pytest.approx(0.4, abs=1e-10)
    # residual blocks are more linear than the chain of their 12 layers: a less shaped unit suffices
    assert t.local.c_curvature > tat_transform("softplus", 12, tau=0.4).local.c_curvature


@pytest.mark.parametrize("base, depth, eta", [("leaky_relu", 16, 0.9), ("relu", 100, 0.9), ("leaky_relu", 32, 0.7),
                                              ("relu", 8, 0.5)])
def test_tat_leaky_relu_network_c0_is_eta(base, depth, eta):
    s = tat_transform(base, depth, eta=eta)
    slope = s.negative_slope
    assert 0.0 <= slope < 1.0 and s.output_scale == pytest.approx(math.sqrt(2 / (1 + slope ** 2)), rel=1e-15)
    c = 0.0
    for _ in range(depth):
        c = leaky_cmap(c, slope)
    assert c == pytest.approx(eta, abs=1e-10)  # C_f(0) = eta
    assert s.activation.homogeneous and s.activation.name == f"tat({base})"
    h = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(s.activation.phi(h), s.output_scale * np.where(h > 0, h, slope * h), rtol=1e-15)
    sub = ResidualChain(10, 0.7)
    r = tat_transform(base, subnet=sub, eta=0.6)
    assert float(sub(0.0, lambda x: leaky_cmap(x, r.negative_slope))) == pytest.approx(0.6, abs=1e-10)


def test_dks_relu_and_leaky_relu():
    for depth in (4, 16, 100):
        s = dks_transform("relu", depth)
        t = 1.5 ** (1 / depth)
        # exact moments of relu(a z + b) = a relu(z + k), k = b / a
        k = s.input_shift / s.input_scale
        m1 = k * special.ndtr(k) + math.exp(-k * k / 2) / math.sqrt(2 * math.pi)
        m2 = (k * k + 1) * special.ndtr(k) + k * math.exp(-k * k / 2) / math.sqrt(2 * math.pi)
        assert special.ndtr(k) / (m2 - m1 * m1) == pytest.approx(t, rel=1e-13)  # C'(1)
        assert s.input_shift == 1.0 and s.negative_slope is None
        assert s.output_scale == pytest.approx(1 / (s.input_scale * math.sqrt(m2 - m1 * m1)), rel=1e-12)
    assert dks_transform("relu", 1, zeta=2.0).input_shift == -1.0  # beyond C'(1) = pi / (pi - 1)
    s = dks_transform("leaky_relu", 16)
    sl = s.negative_slope
    # zero input shift: Q(1) = Q'(1) holds for every slope; C'(1) = ((1 + s^2)/2) / ((1 + s^2)/2 - (1 - s)^2/(2 pi))
    assert s.input_shift == pytest.approx(0.0, abs=1e-12)
    var = (1 + sl * sl) / 2 - (1 - sl) ** 2 / (2 * math.pi)
    assert ((1 + sl * sl) / 2) / var == pytest.approx(1.5 ** (1 / 16), rel=1e-13)


@pytest.mark.parametrize("name, method", [("selu", "dks"), ("elu", "dks"), ("elu", "tat")])
def test_kinked_units_by_adaptive_quadrature(name, method):
    """Units with a kink at 0: the local maps by adaptive quadrature on each side of the kink."""
    s = dks_transform(name, 8) if method == "dks" else tat_transform(name, 8)
    a = s.activation
    k = a.kinks[0]

    def e(f):
        g = lambda z: f(np.array(z)) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return sum(integrate.quad(g, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
                   for lo, hi in ((-40, k), (k, 40)))

    q = e(lambda z: a.phi(z) ** 2)
    assert q == pytest.approx(1.0, abs=1e-11)
    assert e(lambda z: a.phi(z) * a.dphi(z) * z) == pytest.approx(1.0, abs=1e-10)  # Q'(1)
    if method == "dks":
        assert e(lambda z: a.dphi(z) ** 2) == pytest.approx(1.5 ** (1 / 8), abs=1e-10)  # C'(1)
        assert e(a.phi) == pytest.approx(0.0, abs=1e-10)  # C(0) = 0
    else:
        d2 = lambda z: s.input_scale ** 2 * s.output_scale * np.where(  # noqa: E731
            s.input_scale * z + s.input_shift < 0, np.exp(s.input_scale * z + s.input_shift), 0.0)
        assert e(lambda z: a.dphi(z) ** 2) == pytest.approx(1.0, abs=1e-10)
        assert e(lambda z: d2(z) ** 2) == pytest.approx(0.3 / 8, abs=1e-10)  # C''(1) of ELU (alpha = 1)


def test_canonical_solution_and_mirror_symmetry():
    s = tat_transform("tanh", 4)
    assert s.input_shift > 0 and s.input_scale > 0
    mirror = shaped_activation("tanh", input_scale=s.input_scale, input_shift=-s.input_shift,
                               output_scale=s.output_scale, output_shift=-s.output_shift)
    a, b = local_maps(mirror), s.local
    for f in ("q", "q_slope", "c_zero", "c_slope", "c_curvature"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-12, abs=1e-15)
    # the sigmoid is a rescaled tanh: sigmoid(x) = (1 + tanh(x / 2)) / 2, so TAT gives the same network
    g = tat_transform("sigmoid", 16)
    t = tat_transform("tanh", 16)
    assert g.input_scale == pytest.approx(2 * t.input_scale, rel=1e-9)
    assert g.input_shift == pytest.approx(2 * t.input_shift, rel=1e-9)
    h = np.linspace(-5, 5, 21)
    np.testing.assert_allclose(g.activation.phi(h), t.activation.phi(h), rtol=1e-8, atol=1e-9)


def test_result_record_and_custom_activation():
    s = dks_transform(np.sin, 8, zeta=1.3)
    assert isinstance(s, KernelShaping) and s.base == "sin"
    d = s.to_dict()
    assert d["method"] == "dks" and d["subnet"] == {"kind": "chain", "depth": 8}
    assert d["targets"] == {"zeta": 1.3} and set(s.parameters) == {"input_scale", "input_shift", "output_scale",
                                                                  "output_shift"}
    assert d["local"]["q"] == pytest.approx(1.0, abs=1e-12)
    assert tat_transform("leaky_relu", 16).parameters["negative_slope"] > 0


def test_transform_errors_name_the_parameter():
    with pytest.raises(ValueError, match="zeta must be"):
        dks_transform("tanh", 8, zeta=1.0)
    with pytest.raises(ValueError, match="tau must be"):
        tat_transform("tanh", 8, tau=0.0)
    for eta in (0.0, 1.0, 1.2):
        with pytest.raises(ValueError, match=r"eta must lie in \(0, 1\)"):
            tat_transform("leaky_relu", 8, eta=eta)
    with pytest.raises(ValueError, match=r"eta=0.9 is out of reach with depth=4.*valid range 0 < eta <= 0.68"):
        tat_transform("leaky_relu", 4, eta=0.9)
    with pytest.raises(ValueError, match="C''\\(1\\) is infinite"):
        tat_transform("selu", 8)
    with pytest.raises(ValueError, match="C''\\(1\\) is infinite"):
        tat_transform("hard_tanh", 8)
    with pytest.raises(ValueError, match="identity"):
        tat_transform("linear", 8)
    with pytest.raises(ValueError, match="identity"):
        dks_transform("linear", 8)
    with pytest.raises(ValueError, match=r"no input_scale, input_shift.*zeta=10.0 with depth=1"):
        dks_transform("softplus", 1, zeta=10.0)
    with pytest.raises(ValueError, match=r"depth must be an integer in \[1, "):
        dks_transform("tanh", 0)
    with pytest.raises(TypeError, match="depth must be an integer"):
        tat_transform("tanh", 2.5)
    with pytest.raises(ValueError, match="depth"):
        dks_transform("tanh")
    with pytest.raises(ValueError, match="disagrees"):
        dks_transform("tanh", 8, subnet=Chain(4))
    with pytest.raises(TypeError, match="zeta"):
        dks_transform("tanh", 8, zeta="1.5")


# ------------------------------------------------------------------ Monte Carlo: wide random networks
def _output_correlation(s: KernelShaping, depth: int, width: int, c0: float, n_nets: int, pairs: int, seed: int):
    """Per-network mean correlation of phi(h^depth) for input pairs of correlation c0 and unit length."""
    rng = np.random.default_rng(seed)
    phi = s.activation.phi
    out = []
    for _ in range(n_nets):
        z = rng.standard_normal((width, 2 * pairs))
        x = np.empty_like(z)
        for p in range(pairs):
            e1 = z[:, 2 * p] / np.linalg.norm(z[:, 2 * p])
            v = z[:, 2 * p + 1] - (z[:, 2 * p + 1] @ e1) * e1
            e2 = v / np.linalg.norm(v)
            x[:, 2 * p], x[:, 2 * p + 1] = math.sqrt(width) * e1, math.sqrt(width) * (c0 * e1 + math.sqrt(1 - c0 * c0) * e2)
        h = x
        for layer in range(depth):
            w = rng.standard_normal((width, width)) / math.sqrt(width)  # variance 1 / fan_in
            h = w @ (phi(h) if layer else h)
        a = phi(h)
        u, v = a[:, 0::2], a[:, 1::2]
        out.append(np.mean(np.sum(u * v, 0) / np.sqrt(np.sum(u * u, 0) * np.sum(v * v, 0))))
    out = np.asarray(out)
    return out.mean(), out.std(ddof=1) / math.sqrt(n_nets)


@pytest.mark.slow
@pytest.mark.parametrize("make, depth", [(lambda: dks_transform("tanh", 4), 4), (lambda: tat_transform("gelu", 4), 4),
                                         (lambda: tat_transform("leaky_relu", 8, eta=0.6), 8)])
def test_wide_network_has_the_predicted_output_kernel(make, depth):
    s = make()
    for c0 in (0.0, 0.6):
        pred = float(s.network_c_map(c0))
        mean, se = _output_correlation(s, depth, 1000, c0, n_nets=10, pairs=32, seed=7)
        assert abs(mean - pred) <= 4 * se, (c0, pred, mean, se)
        assert 4 * se < 0.04  # resolves a kernel that is wrong by 0.04


# ------------------------------------------------------------------ the Jacobian spectrum of a shaped chain
def test_isometry_summary_matches_the_spectrum_law():
    s = tat_transform("tanh", 16)
    sp = s.jacobian_spectrum()
    r = s.isometry()
    assert sp.q_star == pytest.approx(1.0, abs=1e-12) and sp.sigma_w2 == 1.0 and sp.sigma_b2 == 0.0
    assert r.mean == pytest.approx(sp.mean(), rel=1e-12) and r.mean == pytest.approx(1.0, rel=1e-12)
    assert r.variance == pytest.approx(sp.var(), rel=1e-12)
    assert r.variance == pytest.approx(iso.jacobian_variance(s.activation, 16, q_star=1.0), rel=1e-12)
    assert r.s_max == pytest.approx(math.sqrt(sp.max_eigenvalue), rel=1e-10)
    g = s.isometry(weights="gaussian")
    assert g.variance == pytest.approx(r.variance + 16, rel=1e-12)  # s1 = -1 for Gaussian weights
    d = dks_transform("tanh", 16).isometry()
    assert d.mean == pytest.approx(1.5, rel=1e-12) and d.chi == pytest.approx(1.5 ** (1 / 16), rel=1e-12)
    assert d.to_dict()["depth"] == 16 and "s_max" in str(d)
    with pytest.raises(ValueError, match="subnet"):
        tat_transform("tanh", subnet=lambda x, r: r(r(x))).isometry()
    with pytest.raises(ValueError, match="not both"):
        s.isometry(8, subnet=Chain(8))
    assert tat_transform("tanh", subnet=ResidualChain(4, 0.5)).isometry(8).depth == 8


@pytest.mark.slow
def test_isometry_matches_random_networks():
    s = dks_transform("tanh", 8)
    pred = s.isometry()
    lam = iso.empirical_eigenvalues(s.activation, 8, 400, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal", q0=1.0,
                                    n_samples=6, seed=11).reshape(6, -1)
    means, variances = lam.mean(1), lam.var(1)
    assert abs(means.mean() - pred.mean) <= 4 * means.std(ddof=1) / math.sqrt(6) + 0.01
    assert abs(variances.mean() - pred.variance) <= 4 * variances.std(ddof=1) / math.sqrt(6) + 0.05 * pred.variance
    t = tat_transform("tanh", 8)
    lam = iso.empirical_eigenvalues(t.activation, 8, 400, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal", q0=1.0,
                                    n_samples=4, seed=12).reshape(4, -1)
    c = iso.compare(t.jacobian_spectrum(), lam)
    assert c.ks < 0.04
    assert c.variance_ci[0] - 0.05 <= t.isometry().variance <= c.variance_ci[1] + 0.05


def _residual_jacobian_eigenvalues(s, sub: ResidualChain, width: int, seed: int) -> np.ndarray:
    """Eigenvalues of J J^T of a random residual network x -> w x + v f(x), f = (phi o W)^branch_depth,
    Haar orthogonal W, input of unit mean square (the forward pass and the Jacobian built in NumPy)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(width)
    x /= np.sqrt(np.mean(x * x))
    J = np.eye(width)
    w, v = sub.shortcut_weight, sub.residual_weight
    for _ in range(sub.blocks):
        h, Jf = x, np.eye(width)
        for _ in range(sub.branch_depth):
            W = iso.haar_orthogonal(width, seed=rng)
            pre = W @ h
            Jf = (s.activation.dphi(pre)[:, None] * W) @ Jf
            h = s.activation.phi(pre)
        J = (w * np.eye(width) + v * Jf) @ J
        x = w * x + v * h
    return np.linalg.eigvalsh(J @ J.T)


@pytest.mark.parametrize("sub", [ResidualChain(6, 0.8), ResidualChain(4, 0.7, branch_depth=2)])
def test_residual_isometry_matches_random_networks(sub):
    """KernelShaping.isometry of residual blocks (free product of w I + v J_f) against width-400 networks."""
    s = dks_transform("tanh", subnet=sub)  # a centred unit: lengths stay 1 in every block
    pred = s.isometry()
    assert pred.architecture == sub.to_dict() and math.isnan(pred.s_max)
    lam = np.array([_residual_jacobian_eigenvalues(s, sub, 400, seed) for seed in range(4)])
    means, variances = lam.mean(1), lam.var(1)
    assert abs(means.mean() - pred.mean) <= 4 * means.std(ddof=1) / 2 + 0.02 * pred.mean, (means, pred.mean)
    assert abs(variances.mean() - pred.variance) <= 4 * variances.std(ddof=1) / 2 + 0.1 * pred.variance, (
        variances, pred.variance)
    # the other architectures' predictions are told apart
    chain = s.isometry(sub.depth)
    assert abs(chain.variance - pred.variance) > 0.3 * pred.variance
    both = s.isometry(subnet=Composed((Chain(2), sub)))
    assert both.mean == pytest.approx(s.isometry(2).mean * pred.mean, rel=1e-12)
    assert both.normalised_variance == pytest.approx(s.isometry(2).normalised_variance + pred.normalised_variance,
                                                     rel=1e-12)
