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


def test_erf_convention_has_unit_slope_at_zero():
    h = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    Erf()(h).backward()
    assert h.grad.item() == pytest.approx(1.0, abs=1e-15)


def test_mlp_layout_and_bad_input():
    net = mlp(3, 16, "erf", d_in=8, d_out=2)
    assert [type(m).__name__ for m in net] == ["Linear", "Erf", "Linear", "Erf", "Linear", "Erf", "Linear"]
    assert net[0].in_features == 8 and net[-1].out_features == 2
    assert net(torch.zeros(5, 8)).shape == (5, 2)
    assert mlp(2, 4, nn.Tanh())[1] is not mlp(2, 4, nn.Tanh())[1]
    assert net[0].weight.dtype == torch.float32 and mlp(1, 4, dtype=torch.float64)[0].weight.dtype == torch.float64
    assert mlp(2, 4, "leaky_relu", alpha=0.1)[1].negative_slope == 0.1
    assert mlp(1, 4, device="meta")[0].weight.is_meta
    with pytest.raises(ValueError, match="depth"):
        mlp(0, 4)
    with pytest.raises(ValueError, match="width"):
        mlp(2, 2.5)
    with pytest.raises(ValueError, match="d_out"):
        mlp(2, 4, d_out=0)
    with pytest.raises(ValueError, match="unknown activation"):
        mlp(2, 4, "tanhh")
