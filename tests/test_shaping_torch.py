"""The torch module of shaped activations: the same function as the NumPy record, built from its torch_module."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isometry.shaping import dks_transform, shaped_activation, tat_transform  # noqa: E402
from isometry.torch import activation_module, detect_activation, mlp  # noqa: E402
from isometry.torch.shaped import ShapedActivation  # noqa: E402

CASES = [lambda: tat_transform("tanh", 16), lambda: dks_transform("softplus", 8), lambda: tat_transform("leaky_relu", 32),
         lambda: dks_transform("relu", 8), lambda: dks_transform("gelu", 8), lambda: tat_transform("silu", 8),
         lambda: dks_transform("elu", 8), lambda: tat_transform("sigmoid", 8), lambda: dks_transform("erf", 8)]


@pytest.mark.parametrize("make", CASES)
def test_forward_matches_phi_and_round_trips(make):
    s = make()
    m = activation_module(s.activation)
    assert isinstance(m, ShapedActivation)
    x = np.linspace(-6.0, 6.0, 2001)
    ref = s.activation.phi(x)
    got = m(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, ref, rtol=4e-15, atol=4e-15 * np.abs(ref).max())
    found, note = detect_activation(m)
    assert note == "" and found.name == s.activation.name
    np.testing.assert_allclose(found.phi(x), ref, rtol=0, atol=0)
    np.testing.assert_allclose(found.dphi(x), s.activation.dphi(x), rtol=0, atol=0)
    assert m.name == s.activation.name


def test_module_in_an_mlp_and_in_float32():
    s = tat_transform("tanh", 8)
    net = mlp(8, 32, s.activation, d_in=5, d_out=3)
    acts = [layer for layer in net if isinstance(layer, ShapedActivation)]
    assert len(acts) == 8
    y = net(torch.randn(4, 5))
    assert y.shape == (4, 3) and y.dtype == torch.float32 and torch.isfinite(y).all()
    x = torch.linspace(-3, 3, 7, requires_grad=True, dtype=torch.float64)
    acts[0](x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), s.activation.dphi(x.detach().numpy()), rtol=1e-13)


def test_constructor_accepts_a_module_and_validates():
    m = ShapedActivation(torch.nn.Tanh(), input_scale=0.5, input_shift=0.1, output_scale=2.0, output_shift=-0.3)
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), 2.0 * (torch.tanh(0.5 * x + 0.1) - 0.3))
    a = shaped_activation("tanh", input_scale=0.5, input_shift=0.1, output_scale=2.0, output_shift=-0.3)
    np.testing.assert_allclose(m.isometry_activation.phi(x.numpy()), a.phi(x.numpy()), rtol=1e-15)
    assert ShapedActivation(torch.nn.ReLU6()).isometry_activation is None  # an unknown base unit
    with pytest.raises(ValueError, match="input_scale"):
        ShapedActivation(torch.nn.Tanh(), input_scale=0.0)
    with pytest.raises(TypeError, match="output_shift"):
        ShapedActivation(torch.nn.Tanh(), output_shift="1")
    with pytest.raises(TypeError, match="base"):
        ShapedActivation("tanh")
    with pytest.raises(ValueError, match="cannot be imported"):
        ShapedActivation(("torch.nn", "NoSuchUnit", {}))
