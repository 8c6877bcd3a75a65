"""Kernel-shaped modes of critical_init_ (DKS, TAT) and per-example input normalisation.

Each shaped network is measured against its prediction: the eigenvalues of J J^T of the body
(exact, ``jacobian_eigenvalues``) against ``KernelShaping.isometry`` over the body, the output
kernel of input pairs against ``KernelShaping.network_c_map`` (the architecture derived from the
graph), and the replaced activation modules against the NumPy phi. dks's own PyTorch front-end
(``dks==0.1.2``, test-only) gives the same activation and the same initial weight statistics.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import isometry  # noqa: E402
from isometry.shaping import Chain, Composed, ResidualChain, network_c_map  # noqa: E402
from isometry.torch import (  # noqa: E402
    InputNormalization,
    ShapedActivation,
    critical_init_,
    jacobian_eigenvalues,
    mlp,
)


# ------------------------------------------------------------------ helpers
def unit_inputs(n: int, k: int, seed: int) -> torch.Tensor:
    """k inputs of dimension n with mean(x^2) = 1 each (seeds >= 1000: never the stream of a model's
    generator, whose Haar matrices would be aligned with inputs drawn from the same numbers)."""
    x = torch.randn(k, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.pow(2).mean(1, keepdim=True).sqrt()


def input_pair(n: int, c: float, seed: int) -> torch.Tensor:
    """Two inputs of mean square 1 with correlation (cosine) exactly c."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, n, generator=g, dtype=torch.float64)
    b = b - (a @ b) / (a @ a) * a
    a, b = a / a.norm(), b / b.norm()
    return torch.stack([a, c * a + math.sqrt(1.0 - c * c) * b]) * math.sqrt(n)


def cosine(y: torch.Tensor) -> float:
    return float(y[0] @ y[1] / (y[0].norm() * y[1].norm()))


def body_stats(report, model, xs) -> tuple[float, float]:
    """Mean over inputs of the mean and of the variance of the eigenvalues of J J^T over the body."""
    body = report.body(model)
    m, v = [], []
    for x in xs:
        lam = jacobian_eigenvalues(body, report.body_input(model, x[None]))
        m.append(lam.mean())
        v.append(lam.var())
    return float(np.mean(m)), float(np.mean(v))


def amax(t: torch.Tensor) -> float:
    return float(t.detach().abs().max())


def shaped_modules(model):
    return [m for m in model.modules() if isinstance(m, ShapedActivation)]


def assert_modules_compute_phi(report, model):
    """Every replaced module is a ShapedActivation computing the NumPy phi of the shaped record."""
    mods = shaped_modules(model)
    assert mods and len({id(m) for m in mods}) == len(mods)
    h = np.linspace(-5.0, 5.0, 401)
    ref = report.shaping.activation.phi(h)
    for name in report.replaced:
        m = model.get_submodule(name)
        assert isinstance(m, ShapedActivation)
        got = m(torch.tensor(h, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13 * np.abs(ref).max())
        for k, v in report.shaping.parameters.items():
            if k != "negative_slope":
                assert getattr(m, k) == v


# ------------------------------------------------------------------ MLPs in the shaped modes
@pytest.mark.parametrize("mode, activation, depth", [
    ("tat", "tanh", 32), ("dks", "softplus", 16), pytest.param("dks", "gelu", 24, marks=pytest.mark.slow),
    pytest.param("tat", "softplus", 48, marks=pytest.mark.slow),
])
def test_shaped_mlp_matches_its_prediction(mode, activation, depth):
    width = 256
    model = mlp(depth, width, activation, d_in=64, d_out=10).double()
    report = critical_init_(model, mode=mode, generator=0)
    s = report.shaping
    assert report.mode == mode and s.method == mode and isinstance(s.subnet, Chain) and s.subnet.depth == depth
    assert (report.q_star, report.sigma_w2, report.sigma_b2, report.input_q) == (1.0, 1.0, 0.0, 1.0)
    assert len(report.replaced) == depth and report.prediction == "theory (shaped)"
    assert_modules_compute_phi(report, model)
    # weights: orthogonal with sigma_w2 = 1, zero biases (critical layers, stem and readout)
    for layer in (model[0], model[1], model[2 * depth - 1], model[-1]):
        w = layer.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w * (w.shape[1] / w.shape[0])
        torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=w.dtype), atol=1e-12, rtol=0)
        assert amax(layer.bias) == 0.0
    # the prediction is KernelShaping.isometry over the body, and the law's moments agree
    iso = s.isometry(depth)
    assert report.predicted_mean == iso.mean and report.predicted_variance == iso.variance
    assert report.predicted_max_singular_value == iso.s_max
    law = report.spectrum()
    assert law.mean() == pytest.approx(iso.mean, rel=1e-9) and law.var() == pytest.approx(iso.variance, rel=1e-6)
    # measured Jacobian of the body at three inputs of mean square 1
    mean, var = body_stats(report, model, unit_inputs(64, 3, seed=1001))
    assert mean == pytest.approx(report.predicted_mean, rel=0.15), (mean, report.predicted_mean)
    assert abs(var - report.predicted_variance) <= report.variance_tolerance, (var, report.predicted_variance)
    # the output kernel of input pairs: the network's C-map (mean over pairs of two networks)
    body = report.body(model)
    for c0 in (0.3, 0.7):
        got = []
        for seed in range(2):
            m = mlp(depth, width, activation, d_in=64, d_out=10).double()
            r = critical_init_(m, mode=mode, generator=10 + seed)
            for k in range(3):
                with torch.no_grad():
                    got.append(cosine(r.body(m)(r.body_input(m, input_pair(64, c0, 1000 + 100 * seed + k)))))
        want = float(s.network_c_map(c0))
        assert want == pytest.approx(float(network_c_map(s.activation, c0, Chain(depth))), abs=1e-12)
        assert abs(np.mean(got) - want) <= 0.05, (c0, np.mean(got), want)
    assert body is not None


def test_tat_leaky_relu_sets_the_slope_and_reaches_eta():
    """A ReLU MLP under TAT: the ReLU modules become sqrt(2/(1+s^2)) LeakyReLU(s); the output kernel of
    orthogonal inputs is eta (C_f(0) = eta)."""
    depth, width, eta = 48, 256, 0.9
    model = mlp(depth, width, "relu", d_out=10).double()
    report = critical_init_(model, mode="tat", generator=0)
    s = report.shaping
    assert s.base == "relu" and 0.0 < s.negative_slope < 1.0 and s.targets == {"eta": eta}
    assert s.output_scale == pytest.approx(math.sqrt(2.0 / (1.0 + s.negative_slope ** 2)), rel=1e-14)
    for name in report.replaced:
        m = model.get_submodule(name)
        assert isinstance(m.base, nn.LeakyReLU) and m.base.negative_slope == s.negative_slope
    assert_modules_compute_phi(report, model)
    got = []
    for seed in range(3):
        m = mlp(depth, width, "relu", d_out=10).double()
        r = critical_init_(m, mode="tat", generator=seed)
        with torch.no_grad():
            got.append(cosine(r.body(m)(input_pair(width, 0.0, 1000 + seed))))
    assert float(network_c_map(s.activation, 0.0, Chain(depth))) == pytest.approx(eta, abs=1e-9)
    assert abs(np.mean(got) - eta) <= 0.03, got
    # the Jacobian: mean 1 with a spread of L (1 - s^2)^2 / (1 + s^2)^2 (a leaky ReLU cannot shrink it)
    per_layer = (1 - s.negative_slope ** 2) ** 2 / (1 + s.negative_slope ** 2) ** 2
    assert report.predicted_variance == pytest.approx(depth * per_layer, rel=1e-9)
    assert not report.isometric and "relative variance" in report.reason
    mean, var = body_stats(report, model, unit_inputs(width, 4, seed=1005))
    assert mean == pytest.approx(1.0, rel=0.35) and var == pytest.approx(report.predicted_variance, rel=0.6)


def test_a_shaped_activation_already_in_the_model_is_recognised_in_every_mode():
    shaped = isometry.tat_transform("tanh", 8)
    model = mlp(8, 64, shaped.activation).double()
    crit = critical_init_(model, generator=0)  # the shaped unit is an activation like any other
    assert crit.mode == "critical" and crit.activation == "tat(tanh)"
    assert crit.layers[0].activation.startswith("tat(") and crit.sigma_b2 >= 0.0
    assert crit.predicted_variance == pytest.approx(
        isometry.jacobian_variance(shaped.activation, 8, q_star=crit.q_star), rel=1e-12)
    again = critical_init_(model, mode="tat", generator=0)  # re-shaped from its base unit: the same parameters
    assert again.shaping.base == "tanh" and again.shaping.parameters == shaped.parameters
    dks = critical_init_(model, mode="dks", zeta=2.0, generator=0)
    assert dks.shaping.base == "tanh"
    assert dks.shaping.parameters == isometry.dks_transform("tanh", 8, zeta=2.0).parameters
    assert dks.predicted_mean == pytest.approx(2.0, rel=1e-12)
    assert all(m.name == "dks(tanh)" for m in shaped_modules(model)) and len(shaped_modules(model)) == 8
    assert "dks(tanh)" in str(dks) and "replaced: 8 activation modules" in str(dks)
    d = dks.to_dict()
    assert d["mode"] == "dks" and d["shaping"]["method"] == "dks" and len(d["replaced"]) == 8


def test_modules_applied_twice_and_registered_twice_are_replaced_everywhere():
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(32, 32), act, nn.Linear(32, 32), act, nn.Linear(32, 32), act).double()
    report = critical_init_(model, mode="tat", generator=0)
    assert report.replaced == ("1", "3", "5") and report.shaping.subnet == Chain(3)
    assert model[1] is model[3] is model[5] and isinstance(model[1], ShapedActivation)


def test_the_output_activation_is_left_as_it_is():
    model = nn.Sequential(*mlp(8, 64, "tanh"), nn.Linear(64, 1), nn.Sigmoid()).double()
    report = critical_init_(model, mode="tat", generator=0)
    assert isinstance(model[-1], nn.Sigmoid) and len(report.replaced) == 8
    assert any("output activation" in n for n in report.notes)


# ------------------------------------------------------------------ residual networks
class Block(nn.Module):
    """w x + alpha phi(W x + b): the branch ends in its activation."""

    def __init__(self, n, w, act=nn.Tanh):
        super().__init__()
        self.lin, self.act, self.w = nn.Linear(n, n), act(), w
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.w * x + self.alpha * self.act(self.lin(x))


class LinearEndBlock(nn.Module):
    """w x + alpha W2 phi(W1 x + b1) + ...: the branch ends in a linear layer."""

    def __init__(self, n, w, act=nn.Tanh):
        super().__init__()
        self.lin, self.act, self.out, self.w = nn.Linear(n, n), act(), nn.Linear(n, n), w
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.w * x + self.alpha * self.out(self.act(self.lin(x)))


class ResNet(nn.Module):
    def __init__(self, blocks, n, w, block=LinearEndBlock, d_in=32, stem_act=False):
        super().__init__()
        self.stem = nn.Linear(d_in, n)
        self.stem_act = nn.Tanh() if stem_act else nn.Identity()
        self.blocks = nn.Sequential(*[block(n, w) for _ in range(blocks)])
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem_act(self.stem(x))))


@pytest.mark.slow
@pytest.mark.parametrize("mode, block, c0, tol", [("tat", LinearEndBlock, 0.0, 0.04), ("dks", Block, 0.3, 0.07)])
def test_shaped_residual_network_matches_its_prediction(mode, block, c0, tol):
    """The output kernel against the whole network's C-map (blocks x -> w^2 x + v^2 C(x)) with the
    architecture derived from the graph, told apart from other architectures; the Jacobian of the
    body against the free product of the blocks w I + v D W."""
    blocks, width, w = 8, 512, 0.8
    got, means, variances = [], [], []
    for seed in range(4):
        model = ResNet(blocks, width, w, block).double()
        report = critical_init_(model, mode=mode, generator=seed)
        for k in range(2):
            z = report.body_input(model, input_pair(32, c0, 1000 + 10 * seed + k))
            with torch.no_grad():
                got.append(cosine(report.body(model)(z)))
        lam = jacobian_eigenvalues(report.body(model), z[:1])
        means.append(lam.mean())
        variances.append(lam.var())
    sub = report.shaping.subnet
    assert sub == ResidualChain(blocks, w, residual_weight=0.6) or (
        isinstance(sub, ResidualChain) and sub.blocks == blocks and sub.shortcut_weight == pytest.approx(w))
    assert all(float(b.alpha.detach()) == pytest.approx(0.6, rel=1e-12) for b in model.blocks)
    assert report.prediction == "theory (shaped residual)"
    want = float(network_c_map(report.shaping.activation, c0, sub))
    others = (Chain(blocks),) + ((ResidualChain(blocks, 0.6), ResidualChain(blocks, 0.9)) if mode == "tat" else ())
    wrong = [float(network_c_map(report.shaping.activation, c0, s)) for s in others]
    assert all(abs(x - want) > 1.3 * tol for x in wrong), (want, wrong)  # the check below tells them apart
    assert abs(np.mean(got) - want) <= tol, (np.mean(got), want, wrong)
    iso = report.shaping.isometry(subnet=sub)
    assert (report.predicted_mean, report.predicted_variance) == (iso.mean, iso.variance)
    assert np.mean(means) == pytest.approx(iso.mean, rel=0.1), (means, iso.mean)
    assert np.mean(variances) == pytest.approx(iso.variance, rel=0.3), (variances, iso.variance)
    with pytest.raises(ValueError, match="shaped residual"):
        report.spectrum()


def test_residual_architecture_is_derived_from_the_graph():
    model = ResNet(4, 64, 0.6, LinearEndBlock, stem_act=True)
    report = critical_init_(model, mode="dks", generator=0)
    sub = report.shaping.subnet
    assert isinstance(sub, Composed) and sub.parts[0] == Chain(1) and isinstance(sub.parts[1], ResidualChain)
    assert (sub.parts[1].blocks, sub.parts[1].branch_depth) == (4, 1)
    assert sub.parts[1].shortcut_weight == pytest.approx(0.6) and sub.depth == 5
    assert report.shaping.achieved["zeta"] == pytest.approx(1.5, rel=1e-10)
    assert len(report.replaced) == 5 and all(float(b.alpha.detach()) == pytest.approx(0.8) for b in model.blocks)
    for b in model.blocks:  # the branch's layers: orthogonal, gain 1, no bias
        for lin in (b.lin, b.out):
            torch.testing.assert_close(lin.weight @ lin.weight.T, torch.eye(64), atol=1e-5, rtol=0)
            assert amax(lin.bias) == 0.0
    roles = {layer.name: layer.role for layer in report.layers}
    assert roles["blocks.0.lin"] == "branch" and roles["blocks.0.out"] == "branch"


def test_residual_blocks_the_shaped_modes_refuse():
    class Plain(nn.Module):  # x + alpha f(x): the shortcut has weight 1
        def __init__(self):
            super().__init__()
            self.lin, self.act, self.alpha = nn.Linear(16, 16), nn.Tanh(), nn.Parameter(torch.tensor(0.1))

        def forward(self, x):
            return x + self.alpha * self.act(self.lin(x))

    with pytest.raises(ValueError, match="shortcut of weight 1"):
        critical_init_(nn.Sequential(Plain(), Plain()), mode="dks")

    class Unnormalised(nn.Module):  # 0.8 x + 0.8 f(x)
        def __init__(self):
            super().__init__()
            self.lin, self.act = nn.Linear(16, 16), nn.Tanh()

        def forward(self, x):
            return 0.8 * x + 0.8 * self.act(self.lin(x))

    with pytest.raises(ValueError, match="w\\^2 \\+ v\\^2 = 1.28"):
        critical_init_(nn.Sequential(Unnormalised()), mode="tat")
    # a branch ending in its activation with a unit that has a mean (TAT tanh) is refused; DKS is centred
    with pytest.raises(ValueError, match="ends in its activation"):
        critical_init_(ResNet(3, 16, 0.8, Block), mode="tat")
    assert critical_init_(ResNet(3, 16, 0.8, Block), mode="dks").prediction == "theory (shaped residual)"


def test_blocks_no_shaped_theory_covers_are_refused():
    bn = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
    with pytest.raises(ValueError, match="mode='critical', which calibrates"):
        critical_init_(bn, mode="tat")

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x):
            return torch.tanh(self.b(torch.tanh(self.a(x))))

    with pytest.raises(ValueError, match="function call in forward"):
        critical_init_(Functional(), mode="dks")
    with pytest.raises(ValueError, match="mixed activations"):
        critical_init_(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.GELU()), mode="tat")


def test_mode_arguments_are_checked():
    m = mlp(4, 16, "tanh")
    with pytest.raises(ValueError, match="mode must be one of 'critical', 'dks', 'tat'"):
        critical_init_(m, mode="DKS")
    with pytest.raises(ValueError, match="zeta applies to the kernel-shaped modes"):
        critical_init_(m, zeta=1.5)
    with pytest.raises(ValueError, match="q_star and sigma0_2 apply to mode='critical'"):
        critical_init_(m, mode="tat", q_star=0.1)
    with pytest.raises(ValueError, match="tau does not apply to mode='dks'"):
        critical_init_(m, mode="dks", tau=0.3)
    with pytest.raises(ValueError, match="zeta must be a finite number > 1"):
        critical_init_(m, mode="dks", zeta=0.5)
    with pytest.raises(ValueError, match="eta must lie in"):
        critical_init_(mlp(4, 16, "relu"), mode="tat", eta=1.5)
    with pytest.raises(TypeError, match="normalize_input"):
        critical_init_(m, normalize_input=1)
    r = critical_init_(m, mode="tat", tau=0.5, strict=False)
    assert r.shaping.targets == {"tau": 0.5}
    with pytest.raises(ValueError, match="cannot be isometric"):
        critical_init_(mlp(32, 16, "relu"), mode="tat", strict=True)


# ------------------------------------------------------------------ all or nothing
def _state(model):
    return ([p.detach().clone() for p in model.parameters()], [type(m) for m in model.modules()],
            [id(m) for m in model.modules()])


def _same_state(model, before):
    params, types, ids = before
    assert [type(m) for m in model.modules()] == types and [id(m) for m in model.modules()] == ids
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p.detach(), q)


def test_a_late_failure_leaves_every_parameter_and_module_untouched(monkeypatch):
    # refused before anything is touched: a late layer the shaped modes do not cover
    model = nn.Sequential(InputNormalization(), *mlp(6, 32, "tanh"), nn.Linear(32, 32), nn.LayerNorm(32), nn.Tanh())
    before = _state(model)
    with pytest.raises(ValueError, match="does not cover"):
        critical_init_(model, mode="dks")
    _same_state(model, before)
    # a failure while filling the last layer, after the activations were replaced: everything restored
    import isometry.torch.init as init_module

    model = nn.Sequential(InputNormalization(q=3.0), *mlp(6, 32, "tanh", d_out=4))
    before = _state(model)
    fill = init_module._fill_weight
    calls = {"n": 0}

    def failing(w, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("fill failed")
        return fill(w, *args, **kwargs)

    monkeypatch.setattr(init_module, "_fill_weight", failing)
    for kwargs in ({"example_input": torch.randn(4, 32)}, {}):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="fill failed"):
            critical_init_(model, mode="tat", **kwargs)
        assert not shaped_modules(model) and model[0].q == 3.0
        if kwargs:
            _same_state(model, before)
    # inserting a normalisation is undone too
    monkeypatch.setattr(init_module, "_fill_weight", fill)
    plain = mlp(3, 16, "tanh")
    n_before = len(plain)
    with pytest.raises(ValueError, match="q_star"):
        critical_init_(plain, mode="tat", q_star=1.0, normalize_input=True)
    assert len(plain) == n_before


# ------------------------------------------------------------------ input normalisation
def test_input_normalization_module():
    m = InputNormalization(q=0.25)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64) * torch.tensor([0.1, 1.0, 3.0, 10.0, 0.5]).view(5, 1, 1, 1)
    y = m(x)
    torch.testing.assert_close(y.pow(2).mean(dim=(1, 2, 3)), torch.full((5,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(y / x, (y / x)[:, :1, :1, :1].expand_as(x))  # one factor per example
    per_location = InputNormalization(q=2.0, dim=1)(x)
    torch.testing.assert_close(per_location.pow(2).mean(dim=1), torch.full((5, 4, 4), 2.0, dtype=torch.float64))
    assert torch.equal(m(torch.zeros(2, 3)), torch.zeros(2, 3))
    state = m.state_dict()
    other = InputNormalization()
    other.load_state_dict(state)
    assert other.q == 0.25 and "q=0.25" in repr(m)
    with pytest.raises(ValueError, match="q must be a finite number > 0"):
        InputNormalization(q=0.0)
    with pytest.raises(TypeError, match="dim"):
        InputNormalization(dim=1.5)
    with pytest.raises(ValueError, match="batch"):
        m(torch.ones(3))


def test_input_normalization_makes_the_prediction_hold_per_example():
    """Inputs whose mean squares spread by a factor 100: with the module the body's spectrum is the
    predicted one at every input; without it the mean eigenvalue and the variance move far away."""
    depth, width = 32, 256
    model = mlp(depth, width, "tanh", normalize_input=True).double()
    assert isinstance(model[0], InputNormalization) and len(model) == 2 * depth + 1
    report = critical_init_(model, generator=0)
    assert report.input_normalization == ("0",) and model[0].q == report.input_q
    assert "the prediction holds for each example" in str(report)
    body = report.body(model)
    raw = unit_inputs(width, 3, seed=1003) * math.sqrt(report.input_q)
    for scale in (0.3, 1.0, 3.0):
        x = raw[:1] * scale
        z = report.body_input(model, x)
        assert float(z.pow(2).mean()) == pytest.approx(report.input_q, rel=1e-12)
        lam = jacobian_eigenvalues(body, z)
        assert lam.mean() == pytest.approx(1.0, rel=0.1)
        assert abs(lam.var() - report.predicted_variance) <= report.variance_tolerance, (scale, lam.var())
    # the same weights without the module: each input at its own length
    far = []
    for scale in (0.3, 3.0):
        lam = jacobian_eigenvalues(body, raw[:1] * scale)
        far.append((lam.mean(), lam.var()))
    assert far[0][0] > 1.5 and far[1][0] < 0.5, far  # below q* the gradient grows, above it vanishes
    assert far[1][1] < 0.3 * report.predicted_variance


def test_normalize_input_inserts_the_module_and_shaped_modes_set_q_to_one():
    model = mlp(4, 32, "tanh")
    report = critical_init_(model, mode="tat", normalize_input=True, generator=0)
    assert isinstance(model[0], InputNormalization) and model[0].q == 1.0 and report.input_normalization == ("0",)
    assert any("inserted" in n for n in report.notes)
    again = critical_init_(model, normalize_input=True, generator=0)  # already there: not inserted twice
    assert sum(isinstance(m, InputNormalization) for m in model) == 1 and model[0].q == again.input_q

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(3, 8, "tanh")

        def forward(self, x):
            return self.net(x)

    with pytest.raises(ValueError, match="nn.Sequential"):
        critical_init_(Custom(), normalize_input=True)
    deep = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), InputNormalization(q=2.0), nn.Linear(8, 8), nn.Tanh())
    r = critical_init_(deep)
    assert deep[2].q == 2.0 and r.input_normalization == () and any("not applied to the model input" in n
                                                                         for n in r.notes)


def test_input_normalization_in_front_of_a_stem():
    """With a stem Linear(d_in, N), d_in < N, the stem keeps every example's mean square exactly."""
    model = mlp(8, 128, "tanh", d_in=32, normalize_input=True).double()
    report = critical_init_(model, example_input=torch.randn(16, 32, dtype=torch.float64) * 5.0, generator=0)
    x = unit_inputs(32, 4, seed=1002) * torch.tensor([[0.1], [1.0], [4.0], [20.0]], dtype=torch.float64)
    z = report.body_input(model, x)
    torch.testing.assert_close(z.pow(2).mean(1), torch.full((4,), report.input_q, dtype=torch.float64))
    assert all("scaled by" not in b.note for b in report.blocks)  # no stem scaling: the module sets the length


# ------------------------------------------------------------------ against dks's PyTorch front-end
def _dks():
    pytest.importorskip("dks")
    pytest.importorskip("absl")
    pytest.importorskip("autograd")
    from dks.pytorch import activation_transform, parameter_sampling_functions

    return activation_transform, parameter_sampling_functions


@pytest.mark.slow
def test_the_same_activation_as_dks_pytorch_front_end():
    at, _ = _dks()
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    for act, method, kw, name in [("tanh", "TAT", {"tat_params": {"c_curve_target": 0.3}}, "tanh"),
                                  ("relu", "TAT", {"tat_params": {"c_val_0_target": 0.9}}, "leaky_relu"),
                                  ("softplus", "DKS", {"dks_params": {"c_slope_1_target": 1.5}}, "softplus")]:
        model = mlp(16, 32, act).double()
        report = critical_init_(model, mode=method.lower(), generator=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = at.get_transformed_activations([name], method=method, subnet_max_func=report.shaping.subnet,
                                                **kw)[name]
        ref = fn(x)
        got = model[1](x)
        if not torch.allclose(got, ref, rtol=1e-4, atol=1e-4):  # tanh: dks may return the mirror solution
            ref = -fn(-x)
        assert float((got - ref).abs().max()) <= 1e-6 * amax(ref), act


@pytest.mark.slow
def test_the_same_initial_weights_as_dks_suo():
    """dks's scaled uniform orthogonal initialiser (with zero biases) and the shaped modes fill square
    Linear layers and convolutions alike: orthogonal (delta-orthogonal) with gain 1, so every layer keeps
    the length of its input."""
    _, ps = _dks()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
                          nn.Flatten(), nn.Linear(8 * 25, 8 * 25), nn.Tanh()).double()
    critical_init_(model, mode="tat", generator=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dks indexes with a list (deprecated in torch)
        ref_conv = ps.scaled_uniform_orthogonal_(torch.empty(8, 8, 3, 3, dtype=torch.float64))
        ref_lin = ps.scaled_uniform_orthogonal_(torch.empty(200, 200, dtype=torch.float64))
    for ours, ref in ((model[0].weight.detach(), ref_conv), (model[5].weight.detach(), ref_lin)):
        assert ours.shape == ref.shape
        if ours.dim() == 4:  # zero except the centre tap
            mask = torch.zeros(3, 3, dtype=torch.bool)
            mask[1, 1] = True
            for t in (ours, ref):
                assert float(t[:, :, ~mask].abs().max()) == 0.0
            ours, ref = ours[:, :, 1, 1], ref[:, :, 1, 1]
        for t in (ours, ref):
            torch.testing.assert_close(t @ t.T, torch.eye(t.shape[0], dtype=t.dtype), atol=1e-12, rtol=0)
        # the same entry statistics: variance 1 / fan_in, mean 0
        assert float(ours.var()) == pytest.approx(float(ref.var()), rel=0.15)
        assert float(ours.pow(2).sum(1).mean()) == pytest.approx(1.0, rel=1e-12)
    assert amax(model[0].bias) == 0.0 and amax(model[5].bias) == 0.0


# ------------------------------------------------------------------ the command line
def test_init_report_mode(capsys):
    from isometry.cli import main

    assert main(["init-report", "tanh", "--depth", "16", "--width", "64", "--mode", "tat"]) == 0
    out = capsys.readouterr().out
    assert "TAT (kernel-shaped) initialisation" in out and "replaced: 16 activation modules" in out
    assert main(["init-report", "relu", "--depth", "16", "--width", "64", "--mode", "tat", "--eta", "0.8",
                 "--json"]) == 0
    import json

    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "tat" and d["shaping"]["targets"] == {"eta": 0.8} and d["shaping"]["negative_slope"] > 0
    assert main(["init-report", "tanh", "--depth", "16", "--width", "64", "--mode", "dks", "--tau", "0.3"]) == 2
    assert "tau" in capsys.readouterr().err
