"""Activation modules and the MLP builder of isometry.torch against the NumPy registry."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import isometry as iso  # noqa: E402
from isometry.torch import Erf, LinearActivation, ShiftedReLU, activation_module, detect_activation, mlp  # noqa: E402


@pytest.mark.parametrize("name", list(iso.ACTIVATIONS))
def test_module_matches_registry_phi_and_is_detected(name):
    act = iso.get_activation(name)
    mod = activation_module(name)
    h = np.linspace(-4.0, 4.0, 81)
    out = mod(torch.tensor(h, dtype=torch.float64)).numpy()
    # Softplus is linear above its threshold 20, irrelevant here; everything else exact
    np.testing.assert_allclose(out, act.phi(h), rtol=1e-12, atol=1e-12)
    det, note = detect_activation(mod)
    assert det.name == act.name and note == ""


@pytest.mark.parametrize("name", ["erf", "shifted_relu", "tanh", "gelu"])
def test_module_derivative_matches_registry_dphi(name):
    act = iso.get_activation(name)
    h = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64).add_(0.013).requires_grad_(True)
    activation_module(name)(h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), act.dphi(h.detach().numpy()), rtol=1e-12, atol=1e-14)


def test_torch_modules_come_from_the_registry_records():
    for name in iso.ACTIVATIONS:
        path, cls, kwargs = iso.get_activation(name).torch_module
        mod = activation_module(name)
        assert type(mod).__name__ == cls and type(mod).__module__.startswith(path.rsplit(".", 1)[0])
        assert all(getattr(mod, k) == v for k, v in kwargs.items())
    gelu_tanh = detect_activation(nn.GELU(approximate="tanh"))
    assert gelu_tanh[0].name == "gelu" and "approximate='tanh'" in gelu_tanh[1]
    assert detect_activation(nn.LeakyReLU(1.5)) is None  # outside the registry's alpha range
    assert detect_activation(nn.ELU(alpha=1.0))[0].params == {}
    with pytest.raises(TypeError, match="module"):
        detect_activation("tanh")


def test_parameterised_modules_keep_their_parameters():
    assert detect_activation(nn.LeakyReLU(0.2))[0].params == {"alpha": 0.2}
    assert detect_activation(nn.ELU(alpha=0.5))[0].params == {"alpha": 0.5}
    assert activation_module("leaky_relu", alpha=0.3).negative_slope == 0.3
    h = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(
        nn.ELU(alpha=0.5)(torch.tensor(h)).numpy(), iso.get_activation("elu", alpha=0.5).phi(h), rtol=1e-12
    )
    # same shape, different function: not recognised
    assert detect_activation(nn.Hardtanh(-2.0, 2.0)) is None
    assert detect_activation(nn.Softplus(beta=2.0)) is None
    assert detect_activation(nn.ReLU6()) is None
    assert detect_activation(nn.BatchNorm1d(3)) is None
    assert detect_activation(nn.Identity()) is None  # a placeholder, not an activation
    assert "tanh" in detect_activation(nn.GELU(approximate="tanh"))[1]


def test_isometry_activation_attribute_is_recognised():
    class Cube(nn.Module):
        isometry_activation = iso.get_activation(lambda h: h + h**3 / 3, dphi=lambda h: 1 + h**2, name="cube")

        def forward(self, h):
            return h + h**3 / 3

    assert detect_activation(Cube())[0].name == "cube"
    assert detect_activation(Erf())[0].name == "erf" and detect_activation(ShiftedReLU())[0].name == "shifted_relu"
    assert detect_activation(LinearActivation())[0].name == "linear"


def test_a_new_registry_entry_reaches_critical_init(monkeypatch):
    """One registry entry (here CELU, which the registry lacks) adds an activation to
    activation_module, detect_activation, mlp and critical_init_."""
    from isometry import activations
    from isometry.torch import critical_init_

    def _celu(alpha: float = 1.0):
        a = float(alpha)
        return iso.Activation(
            "celu",
            phi=lambda h: np.where(np.asarray(h) > 0, h, a * np.expm1(np.minimum(h, 0.0) / a)),
            dphi=lambda h: np.where(np.asarray(h) > 0, 1.0, np.exp(np.minimum(h, 0.0) / a)),
            kinks=(0.0,), params={} if a == 1.0 else {"alpha": a}, torch_module=("torch.nn", "CELU", {"alpha": a}),
        )

    monkeypatch.setitem(activations.ACTIVATIONS, "celu", _celu)
    mod = activation_module("celu", alpha=0.5)
    assert type(mod) is nn.CELU and mod.alpha == 0.5
    h = np.linspace(-4.0, 4.0, 41)
    np.testing.assert_allclose(mod(torch.tensor(h)).numpy(), iso.get_activation("celu", alpha=0.5).phi(h), rtol=1e-12)
    det, note = detect_activation(nn.CELU(alpha=0.5))
    assert det.name == "celu" and det.params == {"alpha": 0.5} and note == ""
    assert detect_activation(nn.CELU())[0].params == {}
    assert type(mlp(2, 4, "celu")[1]) is nn.CELU
    assert critical_init_(mlp(3, 8, "celu", alpha=0.5), q_star=0.5, generator=0).activation == "celu(alpha=0.5)"
    monkeypatch.delitem(activations.ACTIVATIONS, "celu")
    assert detect_activation(nn.CELU(alpha=0.5)) is None  # the index follows the registry



def test_a_new_registry_entry_is_a_torch_module_and_is_detected(monkeypatch):
    """One registry entry adds an activation to activation_module, detect_activation and mlp."""
    from isometry import activations

    def _cube(c: float = 1.0 / 3.0):
        return iso.Activation(
            "cube", phi=lambda h: np.asarray(h) + c * np.asarray(h) ** 3, dphi=lambda h: 1 + 3 * c * np.asarray(h) ** 2,
            params={} if c == 1.0 / 3.0 else {"c": c}, torch_module=("torch.nn", "Hardshrink", {"lambd": c}),
        )

    monkeypatch.setitem(activations.ACTIVATIONS, "cube", _cube)
    mod = activation_module("cube", c=0.25)
    assert type(mod) is nn.Hardshrink and mod.lambd == 0.25
    det, note = detect_activation(nn.Hardshrink(0.25))
    assert det.name == "cube" and det.params == {"c": 0.25} and note == ""
    assert detect_activation(nn.Hardshrink())[0].params == {"c": 0.5}  # Hardshrink's own default lambd
    assert type(mlp(2, 4, "cube")[1]) is nn.Hardshrink
    monkeypatch.delitem(activations.ACTIVATIONS, "cube")
    assert detect_activation(nn.Hardshrink(0.25)) is None  # the index follows the registry


def test_erf_convention_has_unit_slope_at_zero():
    h = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    Erf()(h).backward()
    assert h.grad.item() == pytest.approx(1.0, abs=1e-15)


def test_mlp_layout_and_bad_input():
    # depth counts the critical (Linear(width, width), phi) layers; d_in != width adds a linear stem
    net = mlp(3, 16, "erf", d_in=8, d_out=2)
    assert [type(m).__name__ for m in net] == ["Linear", "Linear", "Erf", "Linear", "Erf", "Linear", "Erf", "Linear"]
    assert (net[0].in_features, net[0].out_features) == (8, 16)
    assert all((net[i].in_features, net[i].out_features) == (16, 16) for i in (1, 3, 5))
    assert net[-1].out_features == 2
    assert net(torch.zeros(5, 8)).shape == (5, 2)
    assert [type(m).__name__ for m in mlp(2, 16, "erf", d_in=16)] == ["Linear", "Erf", "Linear", "Erf"]
    assert mlp(2, 4, nn.Tanh())[1] is not mlp(2, 4, nn.Tanh())[1]
    assert net[0].weight.dtype == torch.float32 and mlp(1, 4, dtype=torch.float64)[0].weight.dtype == torch.float64
    assert mlp(2, 4, "leaky_relu", alpha=0.1)[1].negative_slope == 0.1
    assert mlp(1, 4, device="meta")[0].weight.is_meta
    with pytest.raises(ValueError, match="depth"):
        mlp(0, 4)
    with pytest.raises(TypeError, match="width"):
        mlp(2, 2.5)
    with pytest.raises(TypeError, match="depth"):  # booleans are not numbers
        mlp(True, 4)
    with pytest.raises(TypeError, match="d_in"):
        mlp(2, 4, d_in=False)
    with pytest.raises(ValueError, match="d_out"):
        mlp(2, 4, d_out=0)
    with pytest.raises(ValueError, match="unknown activation"):
        mlp(2, 4, "tanhh")
    with pytest.raises(ValueError, match="no torch module"):
        mlp(2, 4, iso.get_activation(np.sin))


def test_mlp_refuses_what_cannot_fit_before_building(monkeypatch):
    from isometry.torch import _common, modules

    # 10^7 layers of module objects alone: tens of GiB (measured about 5.8 KB per layer pair)
    need, seconds, n_mod = modules.mlp_cost(10**7, 64, device="meta")
    assert n_mod == 2 * 10**7 and need > 5e10 and seconds > 600
    monkeypatch.setattr(_common, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match=r"depth=10000000.*GiB.*8 GiB is available"):
        mlp(10**7, 64, device="meta")
    with pytest.raises(ValueError, match=r"width=100000"):  # 10^10 float32 parameters = 37 GiB
        mlp(1, 100_000)
    assert len(mlp(3, 4, device="meta")) == 6  # small requests are unaffected
