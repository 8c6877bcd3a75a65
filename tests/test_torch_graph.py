"""The structure isometry.torch reads from a model's graph: functional activations, cut points,
blocks, gains of parameter-free maps, modules applied twice, unrolled encoders, the recorded route."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import isometry as iso  # noqa: E402
from isometry.torch import critical_init_, detect_activation, jacobian  # noqa: E402
from isometry.torch.graph import read_structure  # noqa: E402
from isometry.torch.modules import functional_activation_module  # noqa: E402


# ------------------------------------------------------------------ functional activations
@pytest.mark.parametrize("fn, args, kwargs, name, params", [
    (torch.tanh, (), {}, "tanh", {}),
    (F.tanh, (), {}, "tanh", {}),
    ("tanh", (), {}, "tanh", {}),
    (torch.Tensor.tanh, (), {}, "tanh", {}),
    (torch.relu, (), {}, "relu", {}),
    (F.relu, (), {"inplace": True}, "relu", {}),
    (F.leaky_relu, (0.2,), {}, "leaky_relu", {"alpha": 0.2}),
    (F.elu, (), {"alpha": 0.5}, "elu", {"alpha": 0.5}),
    (F.selu, (), {}, "selu", {}),
    (F.silu, (), {}, "silu", {}),
    (torch.sigmoid, (), {}, "sigmoid", {}),
    (F.gelu, (), {}, "gelu", {}),
    (F.softplus, (), {}, "softplus", {}),
    (F.hardtanh, (), {}, "hard_tanh", {}),
])
def test_functional_activations_are_the_registry_units(fn, args, kwargs, name, params):
    mod = functional_activation_module(fn, args, kwargs)
    act, note = detect_activation(mod)
    assert act.name == name and dict(act.params) == params and note == ""
    h = torch.linspace(-4, 4, 41, dtype=torch.float64)
    call = (lambda x: getattr(x, fn)(*args)) if isinstance(fn, str) else (lambda x: fn(x.clone(), *args, **kwargs))
    np.testing.assert_allclose(mod(h).numpy(), call(h).numpy(), rtol=1e-14)
    np.testing.assert_allclose(mod(h).numpy(), act.phi(h.numpy()), rtol=1e-12, atol=1e-14)


def test_functional_look_alikes_are_not_registry_units():
    assert detect_activation(functional_activation_module(F.softplus, (2.0,))) is None  # beta = 2
    assert detect_activation(functional_activation_module(F.hardtanh, (-2.0, 2.0))) is None
    assert "approximate='tanh'" in detect_activation(functional_activation_module(F.gelu, (), {"approximate": "tanh"}))[1]
    assert functional_activation_module(torch.sin) is None
    assert functional_activation_module(F.leaky_relu, (torch.tensor(0.2),)) is None  # a tensor slope
    assert functional_activation_module(F.relu, (), {"bogus": 1}) is None


# ------------------------------------------------------------------ structure
class Block(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


def test_cut_points_make_a_residual_block_one_unit():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Block(), Block(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    s = read_structure(model)
    assert s.traced == "fx"
    kinds = [u.kind for u in s.units]
    assert kinds == ["critical", "residual", "residual", "map", "map", "linear"]
    res = s.units[1]
    assert s.ops[res.start].label == "1" and s.ops[res.knobs[0]].label == "2.bn"  # branch output: the BatchNorm
    assert "relu" in res.note  # the ReLU after the addition belongs to the block
    inner = {s.ops[i].label for i in res.ops}
    assert {"2.conv", "2.bn"} <= inner and not inner & {"3.conv", "1"}
    assert res.width_in == res.width_out == 4


def test_gains_of_parameter_free_maps():
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)

    class Pools(nn.Module):
        def forward(self, x):
            x = F.avg_pool2d(x, 2)
            x = nn.functional.adaptive_avg_pool2d(x, 2)
            x = x * 3.0
            return x.mean((2, 3))

    s = read_structure(Pools(), x)
    gains = {op.name: op.gain2 for op in s.ops if op.gain2 is not None}
    assert gains == {"avg_pool2d": 0.25, "adaptive_avg_pool2d": 0.25, "mul": 9.0, "mean": 0.25}
    # each is the mean eigenvalue of J J^T of its map, (1/m) tr(J J^T)
    for f, g2 in [(lambda z: F.avg_pool2d(z, 2), 0.25), (lambda z: z.mean((2, 3)), 1 / 64)]:
        j = jacobian(f, x[:1])
        assert float((j @ j.T).trace()) / j.shape[0] == pytest.approx(g2, rel=1e-12)
    s = read_structure(nn.Sequential(nn.AvgPool2d(3), nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten()))
    assert [op.gain2 for op in s.ops[1:5]] == [1 / 9, 1.0, 1.0, 1.0]


def test_a_pool_between_critical_layers_is_compensated():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.Tanh())
    r = critical_init_(net, q_star=0.5, generator=0)
    assert r.layers[1].sigma_w2 == pytest.approx(4 * r.sigma_w2, rel=1e-12) and "compensates" in r.layers[1].note
    w = net[3].weight[:, :, 1, 1]
    assert torch.allclose(w @ w.T, 4 * r.sigma_w2 * torch.eye(4), atol=1e-5)
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Conv2d(4, 4, 1), nn.Tanh())
    with pytest.raises(ValueError, match="gain of .*AdaptiveAvgPool2d.*example_input="):
        critical_init_(net)
    r = critical_init_(net, example_input=torch.randn(2, 4, 8, 8), generator=0)
    assert r.layers[1].sigma_w2 == pytest.approx(16 * r.sigma_w2, rel=0.02)  # measured: 16 positions per output


def test_a_module_applied_twice_is_two_ops():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return torch.tanh(self.a(torch.tanh(self.a(x))))

    s = read_structure(Twice())
    calls = [(op.label, op.call) for op in s.ops if op.op == "call_module"]
    assert calls == [("a", 0), ("a", 1)] and [u.kind for u in s.units] == ["critical", "critical"]


def test_transformer_encoder_is_unrolled_into_its_layers():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(8, 16), nn.TransformerEncoder(layer, 3, enable_nested_tensor=False))
    x = torch.randn(4, 5, 8)
    r = critical_init_(model, example_input=x, generator=0)
    assert [b.kind for b in r.blocks] == ["linear", "transformer", "transformer", "transformer"]
    assert r.body_span == ("1.layers.0", "1.layers.2") and r.depth == 3
    model.eval()
    assert torch.allclose(r.body(model)(r.body_input(model, x)), model(x), atol=1e-5)


def test_extra_forward_arguments_take_their_defaults_and_tuples_are_outputs():
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x, mask=None, scale=1.0):
            if mask is not None:
                x = x * mask
            h = torch.tanh(self.a(x * scale))
            y = torch.tanh(self.b(h))
            return y, 2 * y

    r = critical_init_(Masked(), generator=0)
    assert r.depth == 2 and r.body_span == ("a", "tanh_1")

    class Features(Masked):  # returns a hidden value too: the body ends where it is still the whole state
        def forward(self, x):
            h = torch.tanh(self.a(x))
            return torch.tanh(self.b(h)), h

    r = critical_init_(Features(), generator=0)
    assert r.depth == 1 and r.body_span == ("a", "tanh")

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x + y

    with pytest.raises(ValueError, match="argument 'y'"):
        critical_init_(TwoInputs())


def test_the_recorded_route_reads_the_same_structure_as_the_traced_one():
    from isometry.torch.graph import _build_units, _classify, _cuts, _mark_live, _record

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(6, 8)
            self.hidden = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
            self.res = nn.Linear(8, 8)
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            x = self.inp(x)
            for layer in self.hidden:
                x = F.gelu(layer(x))
            x = x + torch.tanh(self.res(x))
            return self.out(x).softmax(-1)

    x = torch.randn(3, 6)
    traced = read_structure(Net())
    with torch.no_grad():
        ops = _record(Net(), x)
    for op in ops:
        _classify(op)
    _mark_live(ops)
    units = _build_units(ops, _cuts(ops), None)
    assert [u.kind for u in units] == [u.kind for u in traced.units] == [
        "linear", "critical", "critical", "critical", "residual", "linear", "map"]
    assert units[4].theory is not None and traced.units[4].theory is not None  # x + tanh(W x + b)


def test_embeddings_feed_the_body_at_its_input_scale():
    model = nn.Sequential(nn.Embedding(50, 64), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
    tokens = torch.randint(0, 50, (4, 7))
    r = critical_init_(model, example_input=tokens, generator=0)
    assert [b.kind for b in r.blocks] == ["embedding", "critical", "critical"] and r.body_span == ("1", "4")
    assert model[0].weight.var().item() == pytest.approx(r.input_q, rel=0.1)  # 3200 draws
    critical_init_(model, generator=0)  # no example needed: embeddings are theory's stem


def test_unknown_parameter_free_function_after_a_layer_needs_an_activation_or_an_example():
    class Sine(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return torch.sin(self.b(torch.sin(self.a(x))))

    with pytest.raises(ValueError, match="sin call.*not a recognised activation.*activation="):
        critical_init_(Sine())
    r = critical_init_(Sine(), activation=iso.get_activation(np.sin, name="sine"), q_star=0.5, generator=0)
    assert r.activation == "sine" and r.depth == 2
    r = critical_init_(Sine(), example_input=torch.randn(8, 8), generator=0)  # calibrated instead
    assert [b.method for b in r.blocks] == ["calibrated", "calibrated"]
    assert all(abs(b.chi_cumulative - 1) < 0.03 for b in r.blocks)  # the body up to each block
    assert math.isfinite(r.measured_mean)


# ------------------------------------------------------------------ residual branches
class _Res(nn.Module):
    def __init__(self, n=8, kind="phi"):
        super().__init__()
        self.kind = kind
        self.lin, self.act, self.out = nn.Linear(n, n), nn.Tanh(), nn.Linear(n, n)

    def forward(self, x):
        if self.kind == "phi":  # x + tanh(W x): the residual theory's block
            return x + self.act(self.lin(x))
        if self.kind == "scaled":  # 0.8 x + 0.6 tanh(W x)
            return 0.8 * x + 0.6 * self.act(self.lin(x))
        if self.kind == "linear_end":  # 0.6 x + 0.8 W2 tanh(W1 x)
            return x * 0.6 + 0.8 * self.out(self.act(self.lin(x)))
        return torch.relu(x + self.act(self.lin(x)))  # an activation after the sum


def test_residual_branches_and_scaled_shortcuts():
    units = {kind: [u for u in read_structure(nn.Sequential(_Res(kind=kind), _Res(kind=kind))).units
                    if u.kind == "residual"] for kind in ("phi", "scaled", "linear_end", "after")}
    assert all(len(v) == 2 for v in units.values())
    u = units["phi"][0]
    assert u.theory is not None and u.skip_gain2 == 1.0 and u.branch == ((u.theory[0],), (u.theory[1],), None)
    u = units["scaled"][0]
    assert u.theory is not None and u.skip_gain2 == pytest.approx(0.64) and u.branch[2] is not None
    u = units["linear_end"][0]
    assert u.theory is None and u.skip_gain2 == pytest.approx(0.36) and len(u.branch[0]) == 2 and len(u.branch[1]) == 1
    u = units["after"][0]  # relu(x + f(x)) is neither the theory's block nor a chain branch
    assert u.theory is None and u.branch is None and u.calibrated
    # the residual theory is of x + a phi(W x): a scaled shortcut is calibrated
    with pytest.raises(ValueError, match="example_input"):
        critical_init_(nn.Sequential(_Res(kind="scaled"), _Res(kind="scaled")))
    assert critical_init_(nn.Sequential(_Res(kind="phi"), _Res(kind="phi"))).prediction == "theory (residual)"


def test_input_normalization_is_an_op_of_its_own():
    from isometry.torch import InputNormalization
    from isometry.torch.graph import INPUT_NORM

    s = read_structure(nn.Sequential(InputNormalization(), nn.Linear(4, 4), nn.Tanh()))
    assert [op.kind for op in s.ops if op.op == "call_module"][0] == INPUT_NORM
    assert s.units[0].kind == "map"
