"""DKS/TAT against the reference implementation, the ``dks`` package (0.1.2) of Martens et al.

A test-only dependency (``pip install dks==0.1.2`` with its undeclared ``absl-py``); skipped when
absent. Its parameters are computed by ``dks.base.activation_transform`` (the NumPy solve behind
every front-end); its PyTorch front-end's activation is compared with our torch module. Both use
the architecture as a subnetwork maximising function, so our :class:`Chain` and
:class:`ResidualChain` are passed to dks unchanged.

dks returns one of several equivalent solutions: the sign of input_scale changes no local map,
and for point-symmetric phi (phi(-u) = 2 m - phi(u)) the mirror (input_shift, output_shift) ->
(-input_shift, -2 m - output_shift) has the same kernel; its result is put in our canonical form
(input_scale > 0, input_shift >= 0 for point-symmetric phi) before comparing.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("dks")
pytest.importorskip("absl")
pytest.importorskip("autograd")
from dks.base import activation_transform as dks_at  # noqa: E402

from isometry.shaping import Chain, ResidualChain, dks_transform, tat_transform  # noqa: E402

pytestmark = pytest.mark.slow  # the reference solves take 0.1-2 s each

# our registry names -> dks's names (dks's "gelu" is the tanh approximation, "erf" the plain erf)
DKS_NAME = {"tanh": "tanh", "softplus": "softplus", "silu": "swish", "gelu": "gelu_exact", "sigmoid": "sigmoid",
            "elu": "elu", "leaky_relu": "leaky_relu", "relu": "relu", "selu": "selu"}
POINT_SYMMETRIC = {"tanh": 0.0, "sigmoid": 0.5}  # m with phi(-u) = 2 m - phi(u)


def dks_params(name: str, method: str, subnet, **targets) -> dict[str, float]:
    kw = {"dks_params": {"c_slope_1_target": targets["zeta"]}} if method == "DKS" else {
        "tat_params": {k: v for k, v in (("c_curve_target", targets.get("tau")), ("c_val_0_target", targets.get("eta")))
                       if v is not None}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autograd's overflow warnings in the tails of the quadrature
        out = dks_at._get_activations_params([DKS_NAME[name]], method=method, subnet_max_func=subnet, **kw)
    p = {k: float(v) for k, v in out[DKS_NAME[name]].items()}
    if "input_scale" in p:
        p["input_scale"] = abs(p["input_scale"])
    m = POINT_SYMMETRIC.get(name)
    if m is not None and p.get("input_shift", 0.0) < 0:
        p["input_shift"] = -p["input_shift"]
        p["output_shift"] = -2.0 * m - p["output_shift"]
    return p


def assert_same(ours, ref: dict, rel: float, abs_shift: float = 0.0):
    got = ours.parameters
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=rel, abs=abs_shift), (k, got[k], v)


@pytest.mark.parametrize("name, depth, zeta", [
    ("tanh", 4, 1.5), ("tanh", 100, 1.5), ("softplus", 16, 1.5), ("silu", 100, 1.5), ("gelu", 16, 1.2),
    ("sigmoid", 4, 3.0), ("elu", 16, 1.5), ("tanh", 16, 10.0),
])
def test_dks_matches_the_reference(name, depth, zeta):
    ours = dks_transform(name, depth, zeta=zeta)
    assert_same(ours, dks_params(name, "DKS", Chain(depth), zeta=zeta), rel=1e-6)


@pytest.mark.parametrize("depth", [4, 16, 100])
def test_dks_leaky_relu_matches_the_reference(depth):
    ours = dks_transform("leaky_relu", depth)
    ref = dks_params("leaky_relu", "DKS", Chain(depth), zeta=1.5)
    assert_same(ours, ref, rel=1e-6, abs_shift=1e-9)  # input_shift = 0 (dks: ~1e-12)


@pytest.mark.parametrize("name, depth, tau", [
    ("tanh", 4, 0.3), ("tanh", 100, 0.3), ("softplus", 16, 0.3), ("silu", 100, 0.3), ("gelu", 4, 0.3),
    ("gelu", 16, 1.0), ("softplus", 100, 0.1),
])
def test_tat_matches_the_reference(name, depth, tau):
    ours = tat_transform(name, depth, tau=tau)
    assert_same(ours, dks_params(name, "TAT", Chain(depth), tau=tau), rel=1e-6)


@pytest.mark.parametrize("depth, eta", [(16, 0.9), (100, 0.9), (32, 0.7), (8, 0.5)])
def test_tat_leaky_relu_matches_the_reference(depth, eta):
    ours = tat_transform("leaky_relu", depth, eta=eta)
    assert_same(ours, dks_params("leaky_relu", "TAT", Chain(depth), eta=eta), rel=1e-6)


def test_residual_architectures_match_the_reference():
    sub = ResidualChain(8, 0.8, branch_depth=2)
    assert_same(tat_transform("leaky_relu", subnet=sub, eta=0.7), dks_params("leaky_relu", "TAT", sub, eta=0.7),
                rel=1e-6)
    assert_same(tat_transform("softplus", subnet=sub), dks_params("softplus", "TAT", sub, tau=0.3), rel=1e-6)
    assert_same(dks_transform("tanh", subnet=sub), dks_params("tanh", "DKS", sub, zeta=1.5), rel=1e-6)


def test_where_the_reference_quadrature_is_coarse():
    """dks integrates with one 10^5-node Gauss-Legendre rule on [-10, 10], which converges only at first
    order across a jump of the integrand: phi'^2 of ReLU and SELU (C'(1)), phi''^2 of ELU (C''(1)).
    There it agrees to its own accuracy; our values are checked against exact moments and adaptive
    quadrature in test_shaping.py."""
    for depth in (4, 16, 100):
        ref = dks_params("relu", "DKS", Chain(depth), zeta=1.5)
        assert_same(dks_transform("relu", depth), ref, rel=3e-4)
        assert not dks_transform("relu", depth).parameters["input_scale"] == pytest.approx(ref["input_scale"],
                                                                                            rel=1e-6)
    for depth in (16, 100):
        assert_same(tat_transform("elu", depth), dks_params("elu", "TAT", Chain(depth), tau=0.3), rel=3e-5)
    assert_same(dks_transform("selu", 8), dks_params("selu", "DKS", Chain(8), zeta=1.5), rel=1e-3)


def test_torch_front_end_gives_the_same_activation():
    torch = pytest.importorskip("torch")
    from dks.pytorch import activation_transform as dks_torch

    from isometry.torch import activation_module

    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    cases = [("tanh", "TAT", dict(tat_params={"c_curve_target": 0.3}), tat_transform("tanh", 16)),
             ("gelu", "DKS", dict(dks_params={"c_slope_1_target": 1.5}), dks_transform("gelu", 16)),
             ("leaky_relu", "TAT", dict(tat_params={"c_val_0_target": 0.9}), tat_transform("leaky_relu", 16))]
    for name, method, kw, ours in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = dks_torch.get_transformed_activations([DKS_NAME[name]], method=method, subnet_max_func=Chain(16),
                                                       **kw)[DKS_NAME[name]]
        ref = fn(x)
        got = activation_module(ours.activation)(x)
        if name in POINT_SYMMETRIC and not torch.allclose(got, ref, rtol=1e-4, atol=1e-4):
            ref = -fn(-x)  # the mirror solution: the same kernel
        scale = float(ref.abs().max())
        assert float((got - ref).abs().max()) <= 1e-6 * scale, name
        assert math.isfinite(float(got.sum()))
        np.testing.assert_allclose(got.numpy(), ours.activation.phi(x.numpy()), rtol=1e-14, atol=1e-14 * scale)
