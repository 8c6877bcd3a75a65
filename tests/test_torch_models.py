"""critical_init_ on the networks people train: the measured Jacobian of the named body against the
report's prediction, PyTorch's default initialisation of the same model beside it.

Every model is initialised with an example batch; the body is then measured at *other* inputs of
the same distribution (exactly, by jacobian_eigenvalues, for small bodies; by spectrum_estimate for
a 16 x 32 x 32 feature map). The mean eigenvalue of J J^T must be within 10% of 1 and the variance
within the report's stated tolerance; the default initialisation's numbers are printed in every
assertion message.
"""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from isometry.torch import critical_init_, jacobian_eigenvalues, spectrum_estimate  # noqa: E402


# ------------------------------------------------------------------ the models
def cnn(channels=16, depth=6):
    """Conv2d + Tanh x (1 + depth), global average pooling, a linear head (3 -> 16 input layer)."""
    layers = [nn.Conv2d(3, channels, 3, padding=1), nn.Tanh()]
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def strided_cnn(channels=16, size=32):
    """A conv net with two stride-2 convolutions inside the body."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.Tanh(),
        nn.Conv2d(c, c, 3, padding=1, stride=2), nn.Tanh(), nn.Conv2d(c, c, 3, padding=1), nn.Tanh(),
        nn.Conv2d(c, c, 3, padding=1, stride=2), nn.Tanh(), nn.Conv2d(c, c, 3, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(c * (size // 4) ** 2, 10),
    )


class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    """ResNet-style: conv + BatchNorm2d + ReLU stem, BasicBlocks, global average pooling, linear head."""

    def __init__(self, c=16, blocks=3):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.layer = nn.Sequential(*[BasicBlock(c) for _ in range(blocks)])
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.layer(F.relu(self.bn(self.stem(x))))
        return self.fc(x.mean((2, 3)))


class PreActBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, x):
        return x + self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class PreActResNet(nn.Module):
    """Pre-activation ResNet: the identity path is clean, a BatchNorm + ReLU after the last block."""

    def __init__(self, c=16, blocks=6):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.layer = nn.Sequential(*[PreActBlock(c) for _ in range(blocks)])
        self.bn, self.fc = nn.BatchNorm2d(c), nn.Linear(c, 10)

    def forward(self, x):
        x = self.layer(self.stem(x))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


def transformer(d=32, layers=3, norm_first=False):
    return nn.Sequential(*[nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.1, batch_first=True,
                                                      norm_first=norm_first) for _ in range(layers)])


class FunctionalMLP(nn.Module):
    """Activations as function calls in forward (torch.tanh), a linear input layer and a head."""

    def __init__(self, d_in=16, width=64, depth=8):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.out = nn.Linear(width, 4)

    def forward(self, x):
        x = self.inp(x)
        for layer in self.hidden:
            x = torch.tanh(layer(x))
        return self.out(x)


class Tied(nn.Module):
    """Six tanh layers; the last three share the first one's weight."""

    def __init__(self, width=64, depth=6):
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        for layer in self.hidden[depth // 2:]:
            layer.weight = self.hidden[0].weight
        self.out = nn.Linear(width, 4)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.tanh(layer(x))
        return self.out(x)


class Twice(nn.Module):
    """Two tanh layers, each applied twice (a, b, a, b)."""

    def __init__(self, width=64):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, 4)

    def forward(self, x):
        for _ in range(2):
            x = torch.tanh(self.b(torch.tanh(self.a(x))))
        return self.out(x)


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, the recorded route must."""

    def __init__(self, width=64, depth=6):
        super().__init__()
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.act = nn.Tanh()

    def forward(self, x):
        if x.dim() == 1:
            x = x[None]
        for layer in self.hidden:
            x = self.act(layer(x))
        return x


# ------------------------------------------------------------------ measuring
def _normalise(x):
    """Every example scaled to mean square 1 (over its features)."""
    return x / x.pow(2).flatten(1).mean(1).sqrt().reshape(-1, *[1] * (x.dim() - 1))


def _body_moments(model, report, x, n=4, estimate=False):
    """Mean over n inputs of the mean and variance of the eigenvalues of J J^T over the body."""
    model.eval()
    body, z = report.body(model), report.body_input(model, x[:n])
    means, variances = [], []
    for k in range(n):
        with warnings.catch_warnings():  # functorch's vmap fallback for attention warns about speed
            warnings.filterwarnings("ignore", message=".*performance drop.*", category=UserWarning)
            if estimate:
                est = spectrum_estimate(body, z[k:k + 1], generator=k)
                means.append(est.mean())
                variances.append(est.var())
            else:
                lam = jacobian_eigenvalues(body, z[k:k + 1], dtype=torch.float64)
                means.append(lam.mean())
                variances.append(lam.var())
    return float(np.mean(means)), float(np.mean(variances))


def _check(make, x, x_test, *, estimate=False, n=4, mean_target=1.0, **kw):
    """critical_init_ ``make()`` on x; the body at x_test against the prediction; the default beside it."""
    torch.manual_seed(0)
    model = make()
    report = critical_init_(model, example_input=x, generator=0, **kw)
    mean, var = _body_moments(model, report, x_test, n, estimate)
    torch.manual_seed(0)
    default = make()
    d_mean, d_var = _body_moments(default, report, x_test, n, estimate)
    msg = (f"critical_init_: mean {mean:.4g}, variance {var:.4g} (predicted {report.predicted_mean:.4g}, "
           f"{report.predicted_variance:.4g} +- {report.variance_tolerance:.3g}, {report.prediction}); "
           f"PyTorch default: mean {d_mean:.4g}, variance {d_var:.4g}")
    print(msg)
    target = report.predicted_mean if mean_target is None else mean_target
    assert abs(mean / target - 1.0) < 0.1, msg
    assert abs(var - report.predicted_variance) <= report.variance_tolerance, msg
    for b in report.blocks:
        if b.method == "calibrated":
            assert b.converged and 1 <= b.passes <= 16, (b, msg)  # the stated bound
    assert report.calibration_passes == sum(b.passes for b in report.blocks)
    return report, (mean, var), (d_mean, d_var)


def _data(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the checks
def test_cnn_with_pooling_and_a_linear_head():
    x, xt = _data((8, 3, 8, 8), 1), _data((8, 3, 8, 8), 2)
    report, _, (d_mean, _) = _check(cnn, x, xt)
    assert report.prediction == "theory" and report.depth == 6 and report.width == 16
    assert report.body_span == ("2", "13") and [b.role for b in report.blocks][:2] == ["stem", "body"]
    assert [layer.method for layer in report.layers][:2] == ["orthogonal", "delta-orthogonal"]
    assert report.predicted_variance == pytest.approx(0.25, rel=1e-9)
    assert d_mean < 0.01  # PyTorch's default: the gradient vanishes through the body
    # the sub-map from the model's input (3 -> 16 layer included) is not what the theory describes:
    # its J J^T has 13 zero eigenvalues per position of 16, so a normalised variance >= 16/3 - 1
    model = cnn()
    critical_init_(model, example_input=x, generator=0)
    model.eval()
    lam = jacobian_eigenvalues(model[:14], xt[:1], dtype=torch.float64)
    assert lam.var() / lam.mean() ** 2 > 4 and np.mean(lam < 1e-10 * lam.max()) >= 13 / 16


def test_conv_net_with_stride_two_on_32x32_feature_maps():
    # the body's input is 16 x 32 x 32 (16384 numbers): measured by stochastic Lanczos quadrature
    x, xt = _data((4, 3, 32, 32), 1), _data((2, 3, 32, 32), 2)
    report, _, (d_mean, _) = _check(strided_cnn, x, xt, estimate=True, n=2)
    assert report.depth == 4 and sum("stride" in layer.note for layer in report.layers) == 2
    assert d_mean < 0.05


def test_resnet_with_batchnorm_is_calibrated():
    x, xt = _data((16, 3, 8, 8), 1), _data((8, 3, 8, 8), 2)
    with pytest.raises(ValueError, match=r"'layer.0' \(a residual block of Conv2d, BatchNorm2d.*example_input="):
        critical_init_(ResNet(), generator=0)
    report, _, (d_mean, _) = _check(ResNet, x, xt)
    assert report.prediction == "measured on example_input" and report.depth == 3 and report.width == 16
    kinds = [(b.kind, b.role, b.method) for b in report.blocks]
    assert kinds[0] == ("normalised", "stem", "calibrated")
    assert kinds[1:4] == [("residual", "body", "calibrated")] * 3
    assert all(b.knob.endswith("bn2") for b in report.blocks[1:4])  # the branch's last BatchNorm
    assert any("BatchNorm running statistics" in note for note in report.notes)
    assert abs(d_mean - 1) > 0.2  # the default's body shrinks the gradient by a third


def test_preactivation_resnet_with_batchnorm_is_calibrated():
    x, xt = _data((16, 3, 8, 8), 1), _data((8, 3, 8, 8), 2)
    report, (mean, var), (d_mean, d_var) = _check(PreActResNet, x, xt)
    kinds = [(b.kind, b.role) for b in report.blocks]
    assert kinds[1:7] == [("residual", "body")] * 6 and kinds[7] == ("norm", "body")  # the final BatchNorm
    assert kinds[8] == ("map", "head")  # ... and its ReLU is the head's
    assert d_mean > 1.1  # every default block adds to the gradient


def _tokens(shape, seed):
    """Token vectors of mean square 1 each (as an embedding followed by a normalisation gives)."""
    x = _data(shape, seed)
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_of_transformer_encoder_layers(norm_first):
    x, xt = _tokens((8, 6, 32), 1), _tokens((8, 6, 32), 2)
    report, (mean, var), (d_mean, d_var) = _check(lambda: transformer(norm_first=norm_first), x, xt)
    assert [b.kind for b in report.blocks] == ["transformer"] * 3 and report.depth == 3
    assert all(b.knob.startswith(f"{i}") for i, b in enumerate(report.blocks))
    if norm_first:  # every default block adds to the gradient
        assert d_mean > 1.2
    else:  # the default keeps the mean near 1 but spreads the spectrum five times more
        assert all(b.knob == f"{i} (+ {i}.norm2)" for i, b in enumerate(report.blocks))
        assert d_var > 3 * var


def test_mlp_with_functional_activations():
    x, xt = _normalise(_data((16, 16), 1)), _normalise(_data((8, 16), 2))
    report, _, (d_mean, _) = _check(FunctionalMLP, x, xt)
    assert report.activation == "tanh" and report.depth == 8 and report.body_span == ("hidden.0", "tanh_7")
    assert report.blocks[0].method == "calibrated" and report.blocks[0].kind == "linear"  # the stem absorbs the data
    assert d_mean < 0.01


class ResidualMLP(nn.Module):
    """x + alpha_l tanh(W_l x + b_l) (learnable alpha) or x + c tanh(W_l x + b_l) (a constant c)."""

    def __init__(self, width=128, depth=16, learnable=True, c=0.5):
        super().__init__()
        self.inp = nn.Linear(16, width)
        self.blocks = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.alpha = nn.ParameterList([nn.Parameter(torch.tensor(1.0)) for _ in range(depth)]) if learnable else None
        self.c, self.out = c, nn.Linear(width, 4)

    def forward(self, x):
        x = self.inp(x)
        for i, block in enumerate(self.blocks):
            scale = self.alpha[i] if self.alpha is not None else self.c
            x = x + scale * torch.tanh(block(x))
        return self.out(x)


@pytest.mark.parametrize("learnable", [True, False])
def test_residual_blocks_are_set_from_the_residual_theory(learnable):
    from isometry import residual_mean_field

    x, xt = _normalise(_data((16, 16), 1)), _normalise(_data((8, 16), 2))
    report, (mean, var), (d_mean, d_var) = _check(lambda: ResidualMLP(learnable=learnable), x, xt, mean_target=None)
    assert report.prediction == "theory (residual)" and report.depth == 16 and report.calibration_passes == 0
    assert [b.method for b in report.blocks[1:17]] == ["theory"] * 16
    if learnable:  # the learnable scale takes residual_branch_scale's a, sigma_w2 = 1
        assert report.sigma_w2 == 1.0 and 0.05 < report.branch_scale < 0.3
    else:  # the constant 0.5 stays, sigma_w2 solves the variance equation
        assert report.branch_scale == 0.5 and report.sigma_w2 < 0.1
    mf = residual_mean_field("tanh", 16, branch_scale=report.branch_scale, sigma_w2=report.sigma_w2, q0=report.input_q)
    assert mf.normalised_variance() == pytest.approx(0.25, rel=1e-9)
    assert report.predicted_mean == pytest.approx(math.exp(mf.log_mean()), rel=1e-12)
    assert report.spectrum().var() == pytest.approx(report.predicted_variance, rel=1e-6)
    assert d_var > 3 * var  # PyTorch's default: branches of full size


def _at_input_q(width, seed, n=8):
    def make(report):
        return _normalise(_data((n, width), seed)) * math.sqrt(report.input_q)
    return make


@pytest.mark.parametrize("make, shared", [(Tied, "tied"), (Twice, "applied 2 times")])
def test_tied_weights_and_a_module_applied_twice(make, shared):
    torch.manual_seed(0)
    probe = critical_init_(make(), generator=0)  # no stem: the data must come at input_q
    x, xt = _at_input_q(64, 1)(probe), _at_input_q(64, 2)(probe)
    report, _, (d_mean, _) = _check(make, x, xt)
    assert any(shared in note for note in report.notes)
    assert report.depth == (6 if make is Tied else 4)
    assert d_mean < 0.05


def test_a_model_that_does_not_trace_is_recorded_by_hooks():
    with pytest.raises(ValueError, match="torch.fx cannot trace Untraceable.*example_input="):
        critical_init_(Untraceable(), generator=0)
    probe_model = Untraceable()
    probe = critical_init_(probe_model, example_input=torch.zeros(2, 64), generator=0)
    assert probe.traced == "hooks" and probe.depth == 6
    x, xt = _at_input_q(64, 1)(probe), _at_input_q(64, 2)(probe)
    report, _, _ = _check(Untraceable, x, xt)
    assert report.traced == "hooks" and any("forward hooks" in note for note in report.notes)
    # the recorded body computes the same sub-map as the model
    model = Untraceable()
    r = critical_init_(model, example_input=x, generator=0)
    assert torch.allclose(r.body(model)(r.body_input(model, xt)), model(xt), atol=1e-6)


def test_calibration_failure_leaves_the_model_bit_identical(monkeypatch):
    from isometry.torch import calibrate

    real, calls = calibrate.measure, []

    def fragile(*args, **kwargs):  # fails in the middle of calibrating the second block
        calls.append(1)
        if len(calls) > 6:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(calibrate, "measure", fragile)
    model = ResNet(blocks=2)
    torch.nn.init.constant_(model.layer[0].bn2.weight, 0.7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    with pytest.raises(RuntimeError, match="disk on fire"):
        critical_init_(model, example_input=torch.randn(4, 3, 8, 8), generator=0)
    assert len(calls) == 7
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert model.training and model.layer[1].bn1.training  # modes restored


def test_reliability_flag_follows_the_stated_rule():
    from isometry.torch import RELIABILITY_RULE, mlp

    deep_tanh = critical_init_(mlp(128, 64, "tanh", device="meta"))
    assert deep_tanh.reliable and deep_tanh.fluctuation == pytest.approx(3 * 0.25 / 64, rel=1e-9)
    assert deep_tanh.depth_to_width == 2.0  # depth > width, yet reliable: the per-layer spread is small
    relu = critical_init_(mlp(20, 16, "relu", device="meta"))
    assert not relu.reliable and relu.fluctuation == pytest.approx(3 * 20 / 16, rel=1e-9)
    gauss = critical_init_(mlp(16, 64, "tanh", device="meta"), weights="gaussian")
    assert gauss.fluctuation == pytest.approx((3 * gauss.predicted_variance - 16) / 64, rel=1e-9)
    assert "0.1" in RELIABILITY_RULE and "L / N" in RELIABILITY_RULE


def test_reliability_rule_estimates_the_fluctuation_of_the_log_gain():
    # Var log(|J v|^2 / |v|^2) over networks, inputs and directions against the stated estimate
    from torch.func import jvp

    from isometry.torch import mlp

    for act, depth, width, weights, slack in [("relu", 8, 64, "orthogonal", 1.6), ("tanh", 16, 64, "gaussian", 1.6)]:
        logs = []
        for seed in range(40):
            model = mlp(depth, width, act, dtype=torch.float64)
            report = critical_init_(model, weights=weights, generator=seed)
            g = torch.Generator().manual_seed(1000 + seed)
            x = torch.randn(width, dtype=torch.float64, generator=g)
            x = x * math.sqrt(report.input_q * width) / x.norm()
            v = torch.randn(width, dtype=torch.float64, generator=g)
            _, jv = jvp(model, (x,), (v,))
            logs.append(math.log(float(jv.detach().pow(2).sum() / v.pow(2).sum())))
        measured = float(np.var(logs, ddof=1))
        assert report.fluctuation / slack < measured < report.fluctuation * slack, (act, measured, report.fluctuation)


def test_blocks_without_theory_need_an_example_input():
    mha = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 8), nn.Tanh())
    with pytest.raises(ValueError, match=r"'2' \(a normalisation of LayerNorm\).*example_input="):
        critical_init_(mha)
    with pytest.raises(ValueError, match="'0' .*transformer layer.*example_input="):
        critical_init_(transformer(layers=1))
    with pytest.raises(TypeError, match="example_input"):
        critical_init_(mha, example_input=[[0.0] * 8])
    with pytest.raises(ValueError, match="example_input"):
        critical_init_(mha, example_input=torch.zeros(0, 8))
