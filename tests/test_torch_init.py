"""critical_init_: measured Jacobian spectra, weights, refusals, determinism, errors."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import isometry as iso  # noqa: E402
from isometry.torch import (  # noqa: E402
    ISOMETRY_RULE,
    InitReport,
    critical_init_,
    delta_orthogonal_,
    jacobian,
    jacobian_spectrum,
    mlp,
)
from isometry.torch.init import choose_critical_point, haar_orthogonal  # noqa: E402


def _jjt_eigenvalues(model, x):
    """Eigenvalues of J J^T, J = d model(x) / d x, exact (isometry.torch.jacobian_spectrum)."""
    return jacobian_spectrum(model, x)


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
    assert report.isometric and report.depth == depth
    assert report.predicted_variance == pytest.approx(0.25, rel=1e-9)
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
    assert (cp.q_star, cp.sigma_w2, cp.sigma_b2) == (1.0, 1.0, 0.0) and "does not depend" in note
    with pytest.raises(ValueError, match="no critical point"):
        choose_critical_point("softplus", 10)


# ------------------------------------------------------------------ weights and biases
def test_orthogonal_weights_biases_and_rectangular_layers():
    model = mlp(3, 32, "tanh", d_in=8, d_out=4, dtype=torch.float64)
    report = critical_init_(model, q_star=1.0, generator=3)
    sw2, sb2 = report.sigma_w2, report.sigma_b2
    w_in, w_hid, w_out = model[0].weight, model[2].weight, model[6].weight
    # expanding input layer: orthonormal columns scaled so rows have squared norm sigma_w2 on average
    assert torch.allclose(w_in.T @ w_in, sw2 * 32 / 8 * torch.eye(8, dtype=torch.float64), atol=1e-12)
    assert (w_in**2).sum(1).mean().item() == pytest.approx(sw2, rel=1e-12)
    assert torch.allclose(w_hid @ w_hid.T, sw2 * torch.eye(32, dtype=torch.float64), atol=1e-12)
    # readout: orthonormal rows, gain 1, zero bias
    assert torch.allclose(w_out @ w_out.T, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.all(model[6].bias == 0)
    assert [layer.role for layer in report.layers] == ["input", "hidden", "hidden", "readout"]
    assert report.layers[-1].activation is None and report.layers[0].weights == "orthogonal"

    # biases ~ N(0, sigma_b2): pooled over a wide layer
    wide = mlp(40, 200, "tanh", d_in=1)
    r = critical_init_(wide, q_star=1.0, generator=0)
    b = torch.cat([wide[i].bias for i in range(0, 80, 2)]).double()
    assert b.var().item() == pytest.approx(r.sigma_b2, rel=0.1)  # 8000 draws: se of var ~ 1.6%
    assert abs(b.mean().item()) < 4 * math.sqrt(r.sigma_b2 / 8000)


def test_gaussian_weights_have_the_mean_field_variance():
    model = mlp(2, 300, "tanh", d_in=200, dtype=torch.float64)
    report = critical_init_(model, q_star=1.0, weights="gaussian", generator=1)
    w = model[0].weight
    assert w.var().item() == pytest.approx(report.sigma_w2 / 200, rel=0.02)  # 60000 draws
    assert report.layers[0].weights == "gaussian"


def test_haar_orthogonal_is_haar():
    # for Haar Q in O(n): E tr Q = 0, E (tr Q)^2 = 1; a QR without the sign fix fails this
    g = torch.Generator().manual_seed(0)
    tr = np.array([torch.trace(haar_orthogonal(6, 6, g)).item() for _ in range(2000)])
    assert abs(tr.mean()) < 0.1 and tr.var() == pytest.approx(1.0, abs=0.12)
    q = haar_orthogonal(3, 7, g)
    assert torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64), atol=1e-14)


# ------------------------------------------------------------------ convolutions
def _conv_jacobian(conv, shape):
    return jacobian(conv, torch.randn(shape, dtype=torch.float64))


def test_delta_orthogonal_convolutions_are_orthogonal_maps():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    sw2 = 1.7
    # square channels, circular padding: ||conv x|| = sigma_w ||x||
    c2 = nn.Conv2d(6, 6, 3, padding=1, padding_mode="circular", bias=False).double()
    delta_orthogonal_(c2.weight, sw2, generator=g)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    assert torch.allclose(c2(x).flatten(1).norm(dim=1), math.sqrt(sw2) * x.flatten(1).norm(dim=1), rtol=1e-12)
    assert torch.count_nonzero(c2.weight[:, :, [0, 2]]) == 0  # zeros off the centre tap
    # expanding 1-d: J^T J = sigma_w2 (c_out / c_in) I ; contracting 3-d: J J^T = sigma_w2 I
    c1 = nn.Conv1d(4, 8, 5, padding=2, bias=False).double()
    delta_orthogonal_(c1.weight, sw2, generator=g)
    J = _conv_jacobian(c1, (1, 4, 9))
    assert torch.allclose(J.T @ J, sw2 * 2 * torch.eye(36, dtype=torch.float64), atol=1e-12)
    c3 = nn.Conv3d(8, 4, 3, padding=1, bias=False).double()
    delta_orthogonal_(c3.weight, sw2, generator=g)
    J = _conv_jacobian(c3, (1, 8, 3, 3, 2))
    assert torch.allclose(J @ J.T, sw2 * torch.eye(J.shape[0], dtype=torch.float64), atol=1e-12)
    # grouped
    cg = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False).double()
    delta_orthogonal_(cg.weight, sw2, groups=2, generator=g)
    J = _conv_jacobian(cg, (1, 4, 3, 3))
    assert torch.allclose(J.T @ J, sw2 * torch.eye(36, dtype=torch.float64), atol=1e-12)


def test_conv_net_is_initialised_critically():
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 16, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(16 * 4, 10),
    )
    report = critical_init_(net, generator=0)
    assert report.depth == 2 and [layer.weights for layer in report.layers] == [
        "delta-orthogonal", "delta-orthogonal", "orthogonal"]
    w = net[2].weight[:, :, 1, 1]
    assert torch.allclose(w @ w.T, report.sigma_w2 * torch.eye(16), atol=1e-5)
    assert net(torch.randn(2, 3, 2, 2)).shape == (2, 10)
    gauss = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Tanh())
    r = critical_init_(gauss, q_star=1.0, weights="gaussian", generator=0)
    assert gauss[0].weight.var().item() == pytest.approx(r.sigma_w2 / (64 * 9), rel=0.03)  # 36864 draws
    strided = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2), nn.Tanh())
    assert "stride" in critical_init_(strided, generator=0).layers[0].note


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

    with pytest.raises(ValueError, match="activation='tanh'"):
        critical_init_(Functional())
    r = critical_init_(Functional(), activation="tanh", generator=0)
    assert r.depth == 2 and [layer.name for layer in r.layers] == ["a", "b", "out"]

    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), iso_erf()) for _ in range(3)])
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(4, 1)

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
    with pytest.raises(ValueError, match="generator"):
        critical_init_(mlp(2, 4), generator="seed")


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
    d = report.as_dict()
    json.dumps(d)
    assert d["q_star"] == report.q_star and len(d["layers"]) == 31
    with pytest.raises(Exception):
        report.q_star = 1.0
    assert "isometric: NO" in str(critical_init_(mlp(3, 8, "relu"), generator=0))
    # meta tensors: nothing to fill, the report is still built
    meta = critical_init_(mlp(200, 4096, "tanh", device="meta"))
    assert meta.depth == 200 and meta.layers[0].shape == (4096, 4096)


def test_report_plot_shows_the_predicted_singular_value_density(tmp_path):
    from isometry.plotting import save_figure

    report = critical_init_(mlp(50, 8, "erf"), generator=0)
    ax = report.plot()
    x, y = ax.lines[0].get_data()
    # the plotted curve is a density of singular values: it integrates to 1 (no atoms for erf);
    # the spectrum solver leaves NaN (plotted as gaps) only deep in the lower tail
    assert np.all(np.isfinite(y[x > 0.2]))
    y = np.nan_to_num(y)
    assert np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) == pytest.approx(1.0, abs=0.02)
    assert x[np.argmax(y)] == pytest.approx(1.0, abs=0.3)
    save_figure(ax.figure, tmp_path / "density.png")
    assert (tmp_path / "density.png").stat().st_size > 1000
    ax = critical_init_(mlp(50, 8, "hard_tanh"), generator=0).plot()  # Bernoulli D^2: atom + bulk
    assert len(ax.lines) >= 1


# ------------------------------------------------------------------ command line
def test_cli_init_report(capsys, tmp_path):
    from isometry.cli import main

    assert main(["init-report", "tanh", "--depth", "200", "--width", "1000", "--d-out", "10"]) == 0
    out = capsys.readouterr().out
    assert "depth L = 200" in out and "isometric: yes" in out and "10x1000" in out
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
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
