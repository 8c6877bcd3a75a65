"""critical_init_ and the tensor initialisers: measured Jacobian spectra, weights, refusals,
all-or-nothing validation, determinism, errors, the report and the init-report command."""

import json
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import isometry as iso  # noqa: E402
from isometry.torch import (  # noqa: E402
    ISOMETRY_RULE,
    InitReport,
    choose_critical_point,
    critical_bias_,
    critical_gain,
    critical_init_,
    critical_orthogonal_,
    delta_orthogonal_,
    jacobian,
    jacobian_eigenvalues,
    mlp,
)
from isometry.torch.initializers import _haar  # noqa: E402


def _jjt_eigenvalues(model, x):
    """Eigenvalues of J J^T, J = d model(x) / d x, exact (isometry.torch.jacobian_eigenvalues)."""
    return jacobian_eigenvalues(model, x)


def _input_at_q_star(report, n, seed):
    """An input with mean(x^2) = report.input_q, so that the first layer sits at q^1 = q*."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x * math.sqrt(report.input_q * n) / x.norm()


# ------------------------------------------------------------------ the spectrum it predicts
def test_deep_tanh_mlp_spectrum_matches_prediction_and_default_init_does_not():
    depth, width, seeds = 128, 64, 8
    var, mean, top = [], [], []
    for seed in range(seeds):
        model = mlp(depth, width, "tanh", dtype=torch.float64)
        report = critical_init_(model, generator=seed)
        lam = _jjt_eigenvalues(model, _input_at_q_star(report, width, 1000 + seed))
        var.append(lam.var())
        mean.append(lam.mean())
        top.append(math.sqrt(lam.max()))
    assert report.isometric and report.depth == depth and report.width == width
    assert report.body_span == ("0", str(2 * depth - 1))  # the whole model is the body
    assert report.predicted_variance == pytest.approx(0.25, rel=1e-9)
    assert report.predicted_variance == iso.jacobian_variance("tanh", depth, q_star=report.q_star)
    assert report.predicted_mean == pytest.approx(1.0, rel=1e-9)
    # sampling error of the seed average, estimated from the seeds themselves
    se_var = np.std(var, ddof=1) / math.sqrt(seeds)
    se_mean = np.std(mean, ddof=1) / math.sqrt(seeds)
    assert se_var < 0.05 and se_mean < 0.05  # the test has power: a 2x error in sigma^2 is >> 4 se
    assert abs(np.mean(var) - report.predicted_variance) < 4 * se_var + 0.02
    assert abs(np.mean(mean) - 1.0) < 4 * se_mean + 0.02
    # the largest singular value sits near the free-probability edge (predicted 1.508; at N = 64
    # the largest of 64 eigenvalues falls short of the N -> infinity edge by a few per cent)
    sv = report.predicted_max_singular_value
    with np.errstate(all="ignore"):  # the band tracer discards NaN trial points
        lam_max = iso.jacobian_spectrum("tanh", depth, q_star=report.q_star).max_eigenvalue
    assert sv == pytest.approx(lam_max**0.5, rel=1e-9)
    assert 0.9 * sv < np.mean(top) < 1.03 * sv

    # PyTorch's default init (U(+-1/sqrt(fan_in)): sigma_w2 = 1/3) of the same model: chi << 1
    torch.manual_seed(0)
    default = mlp(depth, width, "tanh", dtype=torch.float64)
    lam = _jjt_eigenvalues(default, _input_at_q_star(report, width, 7))
    assert lam.mean() < 1e-30  # vanishing gradients
    assert np.var(lam / lam.mean()) > 40 * report.predicted_variance  # and far from isometric in shape


def test_spread_follows_the_requested_sigma0_2():
    depth, width = 64, 64
    v = {}
    for s in (0.05, 2.0):
        var = []
        for seed in range(4):
            model = mlp(depth, width, "erf", dtype=torch.float64)
            report = critical_init_(model, sigma0_2=s, generator=seed)
            assert report.predicted_variance == pytest.approx(s, rel=1e-9)
            var.append(_jjt_eigenvalues(model, _input_at_q_star(report, width, 50 + seed)).var())
        v[s] = np.mean(var)
    assert v[0.05] == pytest.approx(0.05, rel=0.3)
    assert v[2.0] == pytest.approx(2.0, rel=0.3)
    assert report.isometric is False  # sigma^2 = 2 >= 1


def test_gaussian_weights_spread_like_the_prediction():
    # same q* as orthogonal, but s_1 = -1: sigma^2_JJT = L (mu2/mu1^2) = L + 0.25 instead of 0.25
    depth, width, seeds = 4, 128, 6
    var = []
    for seed in range(seeds):
        model = mlp(depth, width, "tanh", dtype=torch.float64)
        report = critical_init_(model, weights="gaussian", generator=seed)
        var.append(_jjt_eigenvalues(model, _input_at_q_star(report, width, 300 + seed)).var())
    assert report.predicted_variance == pytest.approx(depth + 0.25, rel=1e-9)
    se = np.std(var, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(var) - report.predicted_variance) < 4 * se + 0.05 * report.predicted_variance


# ------------------------------------------------------------------ choosing q*
def _mu_quad(phi_prime, q, k):
    from scipy.integrate import quad

    f = lambda z: phi_prime(math.sqrt(q) * z) ** (2 * k) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return quad(f, -12, 12, epsabs=1e-15, epsrel=1e-13, limit=200)[0]


def test_double_scaling_q_star_solves_the_variance_equation():
    sech2 = lambda h: 1.0 / math.cosh(h) ** 2  # noqa: E731
    for depth, t in [(10, 0.25), (300, 0.25), (50, 0.6)]:
        cp, note = choose_critical_point("tanh", depth, sigma0_2=t)
        m1, m2 = _mu_quad(sech2, cp.q_star, 1), _mu_quad(sech2, cp.q_star, 2)  # independent quadrature
        assert depth * (m2 / m1**2 - 1) == pytest.approx(t, rel=1e-6)
        assert cp.sigma_w2 * m1 == pytest.approx(1.0, rel=1e-10)
        assert "sigma^2_JJT" in note
    # tanh: sech^4 h = 1 - 2h^2 + 7h^4/3 + ..., so mu2/mu1^2 - 1 = 8 q^2 (1 - 10 q) + O(q^4) and
    # q* = q0 (1 + 5 q0 + O(q0^2)), q0 = sqrt(t / 8L), deep in the double-scaling limit
    cp, _ = choose_critical_point("tanh", 100_000, sigma0_2=0.25)
    q0 = math.sqrt(0.25 / 8e5)
    assert cp.q_star == pytest.approx(q0 * (1 + 5 * q0), rel=1e-4)
    # erf: exact mu_k = (1 + k pi q)^(-1/2)  =>  mu2/mu1^2 - 1 = (1 + pi q) / sqrt(1 + 2 pi q) - 1
    cp, _ = choose_critical_point("erf", 40, sigma0_2=0.25)
    g = math.pi * cp.q_star
    assert 40 * ((1 + g) / math.sqrt(1 + 2 * g) - 1) == pytest.approx(0.25, rel=1e-9)


def test_given_q_star_is_used_as_is():
    report = critical_init_(mlp(5, 8, "tanh"), q_star=0.5, generator=0)
    cp = iso.critical_point("tanh", 0.5)
    assert (report.q_star, report.sigma_w2, report.sigma_b2) == (0.5, cp.sigma_w2, cp.sigma_b2)
    assert report.predicted_variance == pytest.approx(5 * (cp.mu2 / cp.mu1**2 - 1), rel=1e-12)
    assert report.input_q == pytest.approx((0.5 - cp.sigma_b2) / cp.sigma_w2, rel=1e-12)


def test_activations_whose_target_is_unreachable_get_the_least_spread():
    cp, note = choose_critical_point("selu", 100)  # SELU has a kink: spread >= ~0.17 per layer
    assert "not reachable" in note
    line = iso.critical_line("selu", np.logspace(-3, 1, 200))
    r = line.mu2 / line.mu1**2 - 1
    assert cp.mu2 / cp.mu1**2 - 1 <= np.nanmin(r) + 1e-9
    cp, note = choose_critical_point("linear", 50)
    assert (cp.q_star, cp.sigma_w2, cp.sigma_b2) == (1.0, 1.0, 0.0) and "homogeneous" in note
    cp, note = choose_critical_point("relu", 50, sigma0_2=3.0)
    assert (cp.q_star, cp.sigma_w2, cp.sigma_b2) == (1.0, 2.0, 0.0) and "does not depend on q*" in note
    with pytest.raises(ValueError, match="no critical point"):
        choose_critical_point("softplus", 10)


# ------------------------------------------------------------------ weights and biases
def test_orthogonal_weights_biases_stem_and_rectangular_layers():
    # mlp: a linear stem Linear(8, 32) (not counted in depth), 3 critical layers, a readout
    model = mlp(3, 32, "tanh", d_in=8, d_out=4, dtype=torch.float64)
    report = critical_init_(model, q_star=1.0, generator=3)
    sw2 = report.sigma_w2
    assert report.depth == 3 and report.body_span == ("1", "6") and report.width == 32
    w_stem, w_hid, w_out = model[0].weight, model[3].weight, model[7].weight
    # expanding stem: sigma_w2 = 1, orthonormal columns scaled so rows have squared norm 1 on average
    assert torch.allclose(w_stem.T @ w_stem, 32 / 8 * torch.eye(8, dtype=torch.float64), atol=1e-12)
    assert (w_stem**2).sum(1).mean().item() == pytest.approx(1.0, rel=1e-12)
    assert torch.all(model[0].bias == 0)
    assert torch.allclose(w_hid @ w_hid.T, sw2 * torch.eye(32, dtype=torch.float64), atol=1e-12)
    # readout: orthonormal rows, gain 1, zero bias
    assert torch.allclose(w_out @ w_out.T, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.all(model[7].bias == 0)
    assert [layer.role for layer in report.layers] == ["stem", "input", "hidden", "hidden", "readout"]
    assert report.layers[-1].activation is None and report.layers[0].method == "orthogonal"

    # a rectangular (expanding) critical layer: rows of squared norm sigma_w2 on average; it changes the
    # width, so it is a stem before the body (its J J^T would have 24 zero eigenvalues of 32)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh()).double()
    r = critical_init_(net, q_star=1.0, generator=3)
    w_in = net[0].weight
    assert torch.allclose(w_in.T @ w_in, r.sigma_w2 * 32 / 8 * torch.eye(8, dtype=torch.float64), atol=1e-12)
    assert (w_in**2).sum(1).mean().item() == pytest.approx(r.sigma_w2, rel=1e-12)
    assert r.width == 32 and [layer.role for layer in r.layers] == ["stem", "input"] and r.depth == 1
    assert r.layers[0].activation == "tanh" and r.body_span == ("2", "3")

    # biases ~ N(0, sigma_b2): pooled over a wide layer
    wide = mlp(40, 200, "tanh", d_in=1)
    r = critical_init_(wide, q_star=1.0, generator=0)
    crit = [m for m in wide if isinstance(m, nn.Linear) and m.in_features == 200 and m.out_features == 200]
    b = torch.cat([m.bias for m in crit]).double()
    assert len(crit) == 40
    assert b.var().item() == pytest.approx(r.sigma_b2, rel=0.1)  # 8000 draws: se of var ~ 1.6%
    assert abs(b.mean().item()) < 4 * math.sqrt(r.sigma_b2 / 8000)


def test_input_q_puts_the_first_critical_layer_at_q_star_through_the_stem():
    # the stem keeps the mean squared coordinate (sigma_w2 = 1), expanding or contracting
    for d_in in (500, 2000):
        model = mlp(2, 1000, "tanh", d_in=d_in, dtype=torch.float64)
        report = critical_init_(model, q_star=0.3, generator=0)
        x = torch.randn(20, d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        x = x / x.pow(2).mean(1, keepdim=True).sqrt() * math.sqrt(report.input_q)
        h1 = model[1](model[0](x))  # pre-activations of the first critical layer: 20000 of them
        assert h1.pow(2).mean().item() == pytest.approx(report.q_star, rel=0.03)
        assert report.input_q == pytest.approx((0.3 - report.sigma_b2) / report.sigma_w2, rel=1e-12)


def test_the_prediction_describes_the_named_body():
    depth, width, seeds = 32, 64, 6
    var = []
    for seed in range(seeds):
        model = mlp(depth, width, "erf", d_in=20, d_out=5, dtype=torch.float64)
        report = critical_init_(model, generator=seed)
        names = [n for n, _ in model.named_children()]
        sliced = model[names.index(report.body_span[0]) : names.index(report.body_span[1]) + 1]
        assert len(sliced) == 2 * depth
        body = report.body(model)  # the same sub-map, computed from the traced graph
        x = _input_at_q_star(report, width, 80 + seed)
        assert torch.allclose(body(x), sliced(x), rtol=0, atol=0)
        x_model = torch.randn(3, 20, dtype=torch.float64)
        assert torch.allclose(report.body_input(model, x_model), model[0](x_model))
        var.append(_jjt_eigenvalues(body, x).var())
    se = np.std(var, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(var) - report.predicted_variance) < 4 * se + 0.03
    assert "'1' (Linear)" in report.body_description and str(2 * depth) in report.body_description


def test_gaussian_weights_have_the_mean_field_variance():
    model = mlp(2, 300, "tanh", d_in=200, dtype=torch.float64)
    report = critical_init_(model, q_star=1.0, weights="gaussian", generator=1)
    w = model[1].weight  # the first critical layer, fan_in 300
    assert w.var().item() == pytest.approx(report.sigma_w2 / 300, rel=0.02)  # 90000 draws
    assert model[0].weight.var().item() == pytest.approx(1.0 / 200, rel=0.02)  # stem: sigma_w2 = 1, 60000 draws
    assert [layer.method for layer in report.layers] == ["gaussian"] * 3


def test_haar_orthogonal_is_haar():
    # for Haar Q in O(n): E tr Q = 0, E (tr Q)^2 = 1; a QR without the sign fix fails this
    g = torch.Generator().manual_seed(0)
    tr = np.array([torch.trace(_haar(6, 6, g, torch.float64)).item() for _ in range(2000)])
    assert abs(tr.mean()) < 0.1 and tr.var() == pytest.approx(1.0, abs=0.12)
    q = _haar(3, 7, g, torch.float64)
    assert torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-14)


# ------------------------------------------------------------------ convolutions
def test_delta_orthogonal_convolutions_are_orthogonal_maps():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    gain = 1.3
    # square channels, circular padding: ||conv x|| = gain ||x||
    c2 = nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular", bias=False).double()
    assert delta_orthogonal_(c2.weight, gain, generator=g) is c2.weight
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    assert torch.allclose(c2(x).flatten(1).norm(dim=1), gain * x.flatten(1).norm(dim=1), rtol=1e-12)
    assert torch.count_nonzero(c2.weight[:, :, [0, 2]]) == 0  # zeros off the centre tap
    # expanding 1-d: J^T J = gain^2 I ; contracting 3-d: J J^T = gain^2 I
    c1 = nn.Conv1d(4, 8, 5, padding=2, bias=False).double()
    delta_orthogonal_(c1.weight, gain, generator=g)
    J = _conv_jacobian(c1, (1, 4, 9))
    assert torch.allclose(J.T @ J, gain**2 * torch.eye(36, dtype=torch.float64), atol=1e-12)
    c3 = nn.Conv3d(8, 4, 3, padding=1, bias=False).double()
    delta_orthogonal_(c3.weight, gain, generator=g)
    J = _conv_jacobian(c3, (1, 8, 3, 3, 2))
    assert torch.allclose(J @ J.T, gain**2 * torch.eye(J.shape[0], dtype=torch.float64), atol=1e-12)
    # grouped
    cg = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False).double()
    delta_orthogonal_(cg.weight, gain, groups=2, generator=g)
    J = _conv_jacobian(cg, (1, 4, 3, 3))
    assert torch.allclose(J.T @ J, gain**2 * torch.eye(36, dtype=torch.float64), atol=1e-12)
    # critical_orthogonal_ on an expanding kernel: rows of squared norm sigma_w2, J^T J = sigma_w2 (c_out/c_in) I
    sw2 = iso.critical_point("erf", 0.7).sigma_w2
    critical_orthogonal_(c1.weight, "erf", q_star=0.7, generator=g)
    J = _conv_jacobian(c1, (1, 4, 9))
    assert torch.allclose(J.T @ J, sw2 * 2 * torch.eye(36, dtype=torch.float64), atol=1e-12)
    assert (c1.weight[:, :, 2] ** 2).sum(1).mean().item() == pytest.approx(sw2, rel=1e-12)


def test_tensor_initialisers_follow_torch_nn_init():
    for name, q in [("tanh", 0.5), ("erf", 2.0), ("relu", 1.0), ("hard_tanh", 0.1)]:
        cp = iso.critical_point(name, q)
        assert critical_gain(name, q) == pytest.approx(math.sqrt(cp.sigma_w2), rel=1e-15)
    # erf: sigma_w2 = sqrt(1 + pi q*) in closed form (mu_1 = (1 + pi q)^(-1/2))
    assert critical_gain("erf", 2.0) ** 2 == pytest.approx(math.sqrt(1 + 2 * math.pi), rel=1e-12)
    assert critical_gain("relu", 3.0) ** 2 == pytest.approx(2.0, rel=1e-15)  # the He gain
    w = torch.empty(300, 200, dtype=torch.float64)
    assert critical_orthogonal_(w, "tanh", q_star=0.5, generator=0) is w
    sw2 = critical_gain("tanh", 0.5) ** 2
    assert torch.allclose(w.T @ w, sw2 * 1.5 * torch.eye(200, dtype=torch.float64), atol=1e-12)  # expanding
    assert (w**2).sum(1).mean().item() == pytest.approx(sw2, rel=1e-12)  # rows of squared norm sigma_w2
    v = critical_orthogonal_(torch.empty(100, 250, dtype=torch.float64), "tanh", q_star=0.5, generator=1)
    assert torch.allclose(v @ v.T, sw2 * torch.eye(100, dtype=torch.float64), atol=1e-12)  # contracting
    b = torch.empty(50_000, dtype=torch.float64)
    assert critical_bias_(b, "tanh", q_star=1.0, generator=0) is b
    assert b.var().item() == pytest.approx(iso.critical_point("tanh", 1.0).sigma_b2, rel=0.03)  # se 0.6%
    assert torch.all(critical_bias_(torch.ones(5), "relu", q_star=1.0) == 0)  # sigma_b2 = 0
    a = critical_orthogonal_(torch.empty(8, 8), "tanh", q_star=0.5, generator=7)
    assert torch.equal(a, critical_orthogonal_(torch.empty(8, 8), "tanh", q_star=0.5,
                                               generator=torch.Generator().manual_seed(7)))
    meta = torch.empty(4, 4, device="meta")
    assert critical_orthogonal_(meta, "tanh", q_star=0.5) is meta  # nothing to fill

    with pytest.raises(TypeError, match="gain"):
        delta_orthogonal_(torch.empty(4, 4, 3), True)
    with pytest.raises(ValueError, match="3 dimensions"):
        delta_orthogonal_(torch.empty(4, 4))
    with pytest.raises(ValueError, match="groups=3"):
        delta_orthogonal_(torch.empty(4, 2, 3), groups=3)
    with pytest.raises(TypeError, match="floating"):
        critical_orthogonal_(torch.zeros(4, 4, dtype=torch.int64), "tanh", q_star=0.5)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        critical_orthogonal_(torch.empty(4), "tanh", q_star=0.5)
    with pytest.raises(ValueError, match="groups must be 1"):
        critical_orthogonal_(torch.empty(4, 4), "tanh", q_star=0.5, groups=2)
    with pytest.raises(TypeError, match="q_star"):
        critical_gain("tanh", True)
    with pytest.raises(ValueError, match="q_star"):
        critical_bias_(torch.empty(3), "tanh", q_star=-1.0)
    with pytest.raises(ValueError, match="no critical point"):
        critical_gain("softplus", 1.0)
    with pytest.raises(TypeError, match="generator"):
        critical_bias_(torch.empty(3), "tanh", q_star=1.0, generator=1.5)


def _conv_jacobian(conv, shape):
    return jacobian(conv, torch.randn(shape, dtype=torch.float64))


def test_conv_net_is_initialised_critically():
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 16, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(16 * 4, 10),
    )
    report = critical_init_(net, generator=0)
    # the 3 -> 16 input layer is a stem: orthogonal over its whole fan-in (3 x 3 x 3), rows of squared norm sigma_w2
    assert report.depth == 1 and [layer.method for layer in report.layers] == [
        "orthogonal", "delta-orthogonal", "orthogonal"]
    assert [layer.role for layer in report.layers] == ["stem", "input", "readout"]
    w0 = net[0].weight.reshape(16, 27)
    assert torch.allclose(w0 @ w0.T, report.sigma_w2 * torch.eye(16), atol=1e-5)
    w = net[2].weight[:, :, 1, 1]
    assert torch.allclose(w @ w.T, report.sigma_w2 * torch.eye(16), atol=1e-5)
    assert net(torch.randn(2, 3, 2, 2)).shape == (2, 10)
    gauss = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Tanh())
    r = critical_init_(gauss, q_star=1.0, weights="gaussian", generator=0)
    assert gauss[0].weight.var().item() == pytest.approx(r.sigma_w2 / (64 * 9), rel=0.03)  # 36864 draws
    strided = nn.Sequential(nn.Conv1d(4, 4, 3, stride=2), nn.Tanh())
    assert "stride" in critical_init_(strided, generator=0).layers[0].note
    widening = critical_init_(nn.Sequential(nn.Conv1d(2, 4, 3), nn.Tanh()), generator=0)  # no layer keeps its width
    assert widening.width is None and not widening.reliable and "change width" in " ".join(widening.notes)


# ------------------------------------------------------------------ refusals
def test_relu_and_gaussian_are_flagged_and_strict_refuses():
    depth = 20
    model = mlp(depth, 16, "relu")
    report = critical_init_(model, generator=0)
    assert (report.sigma_w2, report.sigma_b2) == (2.0, 0.0)
    assert report.predicted_variance == pytest.approx(depth, rel=1e-12)  # sigma^2 = L for orthogonal ReLU
    assert report.isometric is False and "relu" in report.reason
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="strict=True.*relu"):
        critical_init_(model, strict=True, generator=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # untouched

    g = critical_init_(mlp(depth, 16, "tanh"), weights="gaussian", generator=0)
    o = critical_init_(mlp(depth, 16, "tanh"), generator=0)
    assert g.q_star == o.q_star and g.predicted_variance == pytest.approx(o.predicted_variance + depth, rel=1e-12)
    assert g.isometric is False and "Gaussian" in g.reason
    with pytest.raises(ValueError, match="Gaussian"):
        critical_init_(mlp(depth, 16, "tanh"), weights="gaussian", strict=True)
    assert critical_init_(mlp(depth, 16, "tanh"), strict=True).isometric
    with pytest.raises(ValueError, match="selu"):  # SELU's kink: the target spread is out of reach
        critical_init_(mlp(100, 8, "selu"), strict=True)


# ------------------------------------------------------------------ walking models
def test_general_modules_and_activation_override():
    class Functional(nn.Module):  # nonlinearity applied in forward(), no activation modules
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))

    r = critical_init_(Functional(), generator=0)  # torch.tanh in forward is found in the traced graph
    assert r.depth == 2 and [layer.name for layer in r.layers] == ["a", "b", "out"] and r.activation == "tanh"
    assert r.body_span == ("a", "tanh_1") and [layer.role for layer in r.layers] == ["input", "hidden", "readout"]
    r = critical_init_(Functional(), activation="tanh", generator=0)
    assert r.depth == 2 and [layer.name for layer in r.layers] == ["a", "b", "out"]

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), iso_erf()) for _ in range(3)])
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            for block in self.body:
                x = block(x)
            return self.head(self.drop(x))

    from isometry.torch import Erf as iso_erf

    r = critical_init_(Nested(), generator=0)
    assert r.activation == "erf" and r.depth == 3 and r.layers[-1].role == "readout"
    r = critical_init_(mlp(4, 8, "leaky_relu", alpha=0.2), generator=0)
    assert r.activation == "leaky_relu(alpha=0.2)" and not r.isometric
    assert critical_init_(Functional(), activation=nn.Tanh(), generator=0).activation == "tanh"

    # placeholders and a softmax after the readout are skipped; a deep linear net is exactly isometric
    net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Identity(), nn.Linear(8, 3), nn.LogSoftmax(dim=-1))
    r = critical_init_(net, generator=0)
    assert r.depth == 1 and r.layers[-1].role == "readout"
    r = critical_init_(mlp(30, 8, "linear"), generator=0)
    assert (r.depth, r.sigma_w2, r.sigma_b2, r.predicted_variance, r.isometric) == (30, 1.0, 0.0, 0.0, True)

    # a linear bottleneck (no activation after it) is a sigma_w2 = 1, sigma_b2 = 0 layer
    net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    r = critical_init_(net, generator=0)
    assert [layer.role for layer in r.layers] == ["input", "linear", "hidden", "readout"] and r.depth == 2
    assert torch.allclose(net[2].weight @ net[2].weight.T, torch.eye(8), atol=1e-6)
    assert torch.all(net[2].bias == 0)


def test_errors_name_the_problem():
    class Weird(nn.Module):
        def forward(self, x):
            return torch.sin(x)

    net = nn.Sequential(nn.Linear(4, 4), Weird(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"'1' \(Weird\).*activation="):
        critical_init_(net)
    assert critical_init_(net, activation=lambda h: np.sin(h), generator=0).depth == 1
    with pytest.raises(ValueError, match="mixed activations"):
        critical_init_(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU()))
    with pytest.raises(ValueError, match="BatchNorm1d"):
        critical_init_(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Tanh()))
    with pytest.raises(ValueError, match="no nn.Linear"):
        critical_init_(nn.Sequential(nn.Tanh()))
    with pytest.raises(ValueError, match="weights"):
        critical_init_(mlp(2, 4), weights="uniform")
    with pytest.raises(ValueError, match="not both"):
        critical_init_(mlp(2, 4), q_star=0.1, sigma0_2=0.2)
    with pytest.raises(ValueError, match="sigma0_2"):
        critical_init_(mlp(2, 4), sigma0_2=-1.0)
    with pytest.raises(ValueError, match="q_star"):
        critical_init_(mlp(2, 4), q_star=0.0)
    with pytest.raises(ValueError, match="no critical point"):
        critical_init_(mlp(2, 4, "softplus"))
    with pytest.raises(TypeError, match="generator"):
        critical_init_(mlp(2, 4), generator="seed")
    with pytest.raises(TypeError, match="q_star"):  # booleans are not numbers
        critical_init_(mlp(2, 4), q_star=True)
    with pytest.raises(TypeError, match="sigma0_2"):
        critical_init_(mlp(2, 4), sigma0_2=False)
    with pytest.raises(TypeError, match="strict"):
        critical_init_(mlp(2, 4), strict="yes")
    with pytest.raises(TypeError, match="model"):
        critical_init_(lambda x: x)
    with pytest.raises(ValueError, match="weights"):
        critical_init_(mlp(2, 4), weights="orth")  # no aliases


# ------------------------------------------------------------------ determinism and the report
def test_deterministic_with_a_generator():
    def params(gen):
        m = mlp(3, 8, "tanh", d_out=2)
        critical_init_(m, generator=gen)
        return [p.detach().clone() for p in m.parameters()]

    a, b = params(torch.Generator().manual_seed(11)), params(11)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = params(12)
    assert not torch.equal(a[0], c[0])


def test_report_is_readable_serialisable_and_frozen():
    report = critical_init_(mlp(30, 8, "tanh", d_out=2), generator=0)
    assert isinstance(report, InitReport)
    text = str(report)
    assert "tanh" in text and "depth L = 30" in text and "isometric: yes" in text and "readout" in text
    assert ISOMETRY_RULE in text
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["q_star"] == report.q_star and len(d["layers"]) == 31 and d["body_span"] == ["0", "59"]
    assert d["layers"][0]["method"] == "orthogonal" and d["weights"] == "orthogonal" and d["width"] == 8
    with pytest.raises(Exception):
        report.q_star = 1.0
    assert "isometric: NO" in str(critical_init_(mlp(3, 8, "relu"), generator=0))
    # meta tensors: nothing to fill, the report is still built
    meta = critical_init_(mlp(200, 4096, "tanh", device="meta"))
    assert meta.depth == 200 and meta.layers[0].shape == (4096, 4096)
    # a NaN prediction (no law at depth 1 for SiLU's non-monotone phi'^2) is None in JSON
    one = critical_init_(mlp(1, 8, "silu"), q_star=1.0, generator=0)
    assert math.isnan(one.predicted_max_singular_value) and one.to_dict()["predicted_max_singular_value"] is None


def test_report_plot_shows_the_predicted_singular_value_density(tmp_path):
    from matplotlib.figure import Figure

    from isometry.plotting import new_axes

    report = critical_init_(mlp(50, 8, "erf"), generator=0)
    fig = report.plot(path=tmp_path / "density.png")
    assert isinstance(fig, Figure) and (tmp_path / "density.png").stat().st_size > 1000
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    # the plotted curve is a density of singular values: it integrates to 1 (no atoms for erf)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    assert np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) == pytest.approx(1.0, abs=0.02)
    assert x[np.argmax(y)] == pytest.approx(1.0, abs=0.3)
    title = ax.get_title()
    assert all(s in title for s in ("erf", "L = 50", "N = 8", "orthogonal", "0.25"))
    assert ax.get_ylabel() and ax.get_xlabel()

    # Bernoulli D^2 (hard tanh): the atoms are markers at their mass on a labelled second axis
    report = critical_init_(mlp(50, 8, "hard_tanh"), generator=0)
    spec = report.spectrum()
    fig = report.plot()
    twin = fig.axes[1]
    assert twin.get_ylabel() == "atom mass"
    marks = sorted((float(x[0]), float(y[0])) for x, y in (line.get_data() for line in twin.lines))
    lam, mass = max(spec.atoms)
    (s_top, m_top) = marks[-1]  # the atom at s > 0
    assert s_top == pytest.approx(math.sqrt(lam), rel=1e-12) and m_top == pytest.approx(mass, rel=1e-12)
    # the zero atom is a marker too (at s = 0, or on the left spine of a log axis) with its mass
    assert len(marks) == 2 and marks[0][1] == pytest.approx(spec.zero_mass, rel=1e-12)
    # into given axes, a law spanning hundreds of decades (Gaussian weights, L = 300)
    fig, given = new_axes()
    out = critical_init_(mlp(300, 8, "tanh"), weights="gaussian", generator=0).plot(ax=given)
    assert out is fig and "log" in given.get_xlabel() and "gaussian" in given.get_title()


# ------------------------------------------------------------------ command line
def test_cli_init_report(capsys, tmp_path):
    from isometry.cli import main

    assert main(["init-report", "tanh", "--depth", "200", "--width", "1000", "--d-out", "10"]) == 0
    out = capsys.readouterr().out
    assert "depth L = 200" in out and "isometric: yes" in out and "10x1000" in out
    assert main(["init-report", "tanh", "--depth", "5", "--width", "64", "--d-in", "784", "--json",
                 "--out", str(tmp_path / "r.png")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["depth"] == 5 and d["layers"][0]["role"] == "stem" and d["layers"][0]["shape"] == [64, 784]
    assert d["body_span"] == ["1", "10"] and (tmp_path / "r.png").stat().st_size > 1000
    assert main(["init-report", "erf", "--depth", "40", "--width", "64", "--sigma0-2", "0.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["predicted_variance"] == pytest.approx(0.5, rel=1e-9) and d["depth"] == 40
    assert 1.0 < d["predicted_max_singular_value"] < 3.0
    cp = iso.critical_point("erf", d["q_star"])
    assert d["sigma_w2"] == pytest.approx(cp.sigma_w2, rel=1e-12)
    assert main(["init-report", "relu", "--depth", "30", "--width", "8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["isometric"] is False and d["predicted_variance"] == pytest.approx(30.0)
    for argv, needle in [
        (["init-report", "relu", "--depth", "30", "--width", "8", "--strict"], "cannot be isometric"),
        (["init-report", "tanh", "--depth", "0", "--width", "8"], "--depth"),
        (["init-report", "tanh", "--depth", "3", "--width", "8", "--q-star", "1", "--sigma0-2", "1"], "not allowed"),
        (["init-report", "softplus", "--depth", "3", "--width", "8"], "no critical point"),
        (["init-report", "tanh", "--depth", "100000000", "--width", "8"], "--depth"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1


def test_init_report_estimates_the_request_and_refuses_what_cannot_fit(capsys, monkeypatch):
    import time

    from isometry.cli import main
    from isometry.torch import _common

    # 10^7 layers: tens of GiB of module objects; refused up front, saying how much it would need
    monkeypatch.setattr(_common, "available_memory", lambda: 8 * 2**30)
    t = time.perf_counter()
    assert main(["init-report", "tanh", "--depth", "10000000", "--width", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - t < 10
    assert len(err.splitlines()) == 1 and "--depth 10000000" in err and "GiB" in err and "8 GiB is available" in err
    # enough memory but hours of work: refused by the time estimate
    monkeypatch.setattr(_common, "available_memory", lambda: 2**50)
    assert main(["init-report", "tanh", "--depth", "10000000", "--width", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"would take about [\d.]+ (min|hours)", err)


# ------------------------------------------------------------------ all or nothing
def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if not isinstance(v, nn.parameter.UninitializedParameter)}


def _unchanged(model, before):
    now = _snapshot(model)
    return now.keys() == before.keys() and all(torch.equal(v, before[k]) for k, v in now.items())


@pytest.mark.parametrize("late, match", [
    ("lazy", "lazy module"), ("batchnorm", "BatchNorm1d"), ("mixed", "mixed activations"),
    ("unknown", "Softsign.*not a recognised activation"), ("parametrised", "no weight parameter of its own"),
    ("int-bias", "dtype torch.int64"), ("knob-twice", "applied in two calibrated blocks"),
])
def test_a_late_unsupported_layer_leaves_every_parameter_bit_identical(late, match):
    torch.manual_seed(0)
    body = [nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8)]
    if late == "lazy":
        tail = [nn.Tanh(), nn.LazyLinear(4)]
    elif late == "batchnorm":
        tail = [nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 4)]
    elif late == "mixed":
        tail = [nn.ReLU(), nn.Linear(8, 4)]
    elif late == "unknown":
        tail = [nn.Softsign(), nn.Linear(8, 4)]
    elif late == "parametrised":
        tail = [nn.Tanh(), nn.utils.parametrizations.weight_norm(nn.Linear(8, 4))]
    elif late == "int-bias":
        last = nn.Linear(8, 4)
        last.bias = nn.Parameter(torch.zeros(4, dtype=torch.int64), requires_grad=False)
        tail = [nn.Tanh(), last]
    else:  # one normalisation in two calibrated blocks: scaling it for one would change the other
        norm = nn.LayerNorm(8)
        tail = [norm, nn.Tanh(), nn.Linear(8, 8), norm, nn.Tanh()]
    model = nn.Sequential(*body, *tail)
    before = _snapshot(model)
    with pytest.raises(ValueError, match=match):
        critical_init_(model, generator=0, example_input=torch.randn(4, 8) if late == "knob-twice" else None)
    assert _unchanged(model, before)


def test_refusals_after_the_walk_leave_the_model_unchanged(monkeypatch):
    from isometry.torch import _common

    for model, kw, match in [
        (mlp(20, 8, "relu"), {"strict": True}, "strict"),
        (mlp(3, 8, "softplus"), {}, "no critical point"),
        (mlp(3, 8, "sigmoid"), {"q_star": 0.1}, "no critical point with q_star"),  # sigma_b2 < 0 there
    ]:
        before = _snapshot(model)
        with pytest.raises(ValueError, match=match):
            critical_init_(model, generator=0, **kw)
        assert _unchanged(model, before)
    # the fills' memory is checked before the first fill (a 2000 x 2000 Haar sample: ~100 MB)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(2000, 2000), nn.Tanh())
    before = _snapshot(model)
    monkeypatch.setattr(_common, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(ValueError, match=r"layer '2'.*MiB"):
        critical_init_(model, generator=0)
    assert _unchanged(model, before)


def test_shared_modules_are_counted_where_they_are_used():
    act = nn.Tanh()  # one activation instance used after every layer: each use counts
    net = nn.Sequential(nn.Linear(8, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 8), act)
    r = critical_init_(net, generator=0)
    assert r.depth == 3 and [layer.role for layer in r.layers] == ["input", "hidden", "hidden"]
    lin = nn.Linear(8, 8)  # one affine layer registered twice: applied twice with the same weights
    shared = nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh())
    r = critical_init_(shared, generator=0)
    assert r.depth == 2 and len(r.layers) == 2 and "application 2" in r.layers[1].note
    assert any("applied 2 times" in note for note in r.notes)
    w = lin.weight.detach()
    assert torch.allclose(w @ w.T, r.sigma_w2 * torch.eye(8), atol=1e-5)  # filled once, critically
    # tied weights in two modules: filled once, said so
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    b.weight = a.weight
    r = critical_init_(nn.Sequential(a, nn.Tanh(), b, nn.Tanh()), generator=0)
    assert r.depth == 2 and "tied to 0.weight" in r.layers[1].note and any("tied" in n for n in r.notes)


# ------------------------------------------------------------------ fuzzing the public API
def test_bad_arguments_raise_type_or_value_errors_naming_the_parameter():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=4), st.lists(st.integers(), max_size=2))
    model = mlp(2, 4, "tanh")
    calls = {
        "q_star": lambda v: critical_init_(model, q_star=v, generator=0),
        "sigma0_2": lambda v: critical_init_(model, sigma0_2=v, generator=0),
        "generator": lambda v: critical_init_(model, generator=v),
        "strict": lambda v: critical_init_(model, strict=v, generator=0),
        "depth": lambda v: mlp(v, 4),
        "width": lambda v: mlp(2, v),
        "d_in": lambda v: mlp(2, 4, d_in=v),
        "gain": lambda v: delta_orthogonal_(torch.empty(4, 4, 3), v),
        "groups": lambda v: delta_orthogonal_(torch.empty(4, 4, 3), groups=v),
        "chunk_size": lambda v: jacobian_eigenvalues(model, torch.zeros(4), chunk_size=v),
    }

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(sorted(calls)), junk)
    def check(name, value):
        try:
            calls[name](value)
        except (TypeError, ValueError) as exc:
            assert name in str(exc) or "critical point" in str(exc) or "no torch module" in str(exc), (name, exc)

    check()


def test_init_report_argument_lists_exit_0_or_2_with_one_line(capsys):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from isometry.cli import main

    token = st.sampled_from(["tanh", "relu", "softplus", "bogus", "--depth", "--width", "--q-star", "--sigma0-2",
                             "--d-in", "--d-out", "--weights", "gaussian", "orth", "0", "-1", "3", "7", "1e9",
                             "100000000", "nan", "inf", "x", "--strict", "--json", "--alpha", "0.2"])

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(token, max_size=8))
    def check(tail):
        rc = main(["init-report", *tail])
        err = capsys.readouterr().err
        assert rc in (0, 2)
        if rc == 2:
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err

    check()


def test_report_says_when_the_measurement_disagrees_with_the_prediction():
    """Data at the wrong scale (q = 1 where the critical layers assume q* ~ 0.05): the measured mean
    eigenvalue is far from 1 and the report says so; at input_q the same network agrees."""
    torch.manual_seed(0)
    m = nn.Sequential(*[mod for _ in range(8) for mod in (nn.Linear(64, 64), nn.Tanh())])
    r = critical_init_(m, example_input=torch.randn(32, 64), generator=0)
    assert r.measured_mean < 0.5 and "mean" in r.measurement_disagrees
    assert "NOT as predicted" in str(r)
    r = critical_init_(m, example_input=torch.randn(32, 64) * math.sqrt(r.input_q), generator=0)
    assert abs(r.measured_mean - 1) < 0.1 and r.measurement_disagrees == ""
    assert "NOT as predicted" not in str(r)
    assert critical_init_(m, generator=0).measurement_disagrees == ""  # nothing measured
