"""Activation functions phi, their derivatives phi', and exact Gaussian forms.

Every activation is an :class:`Activation`: ``phi`` and ``dphi`` (vectorised
NumPy callables), the points where phi' jumps (``kinks``, used to split
quadrature panels), and, where they exist, exact forms of

* ``e_phi2(q)``     = E[phi(h)^2],            h ~ N(0, q),
* ``mu_exact(q, k)`` = E[phi'(h)^(2k)]         (the paper's mu_k),
* ``kernel(q, c)``  = E[phi(u1) phi(u2)],      Var u_i = q, Corr = c,
* ``d2_atoms(q)``   = the law of D^2 = phi'(h)^2 when it is discrete
  (values, probabilities), e.g. Bernoulli(1/2) for ReLU.

Each record is the one owner of its unit's facts: ``homogeneous`` (positively
homogeneous of degree 1, so E[phi(h)^2] is linear in q and nothing but the length
depends on q), ``dphi_complex`` with ``dphi_strip`` (a phi' that accepts complex h,
analytic for |Im h| < dphi_strip: the D^2 law integrates along a complex contour),
and ``torch_module`` (the ``torch.nn`` module computing it, named here so the core
never imports torch). Adding an activation is one entry in :data:`ACTIVATIONS`.

Use :func:`get_activation` to resolve a name (``"tanh"``, ``"leaky_relu"`` with
``alpha=``), an :class:`Activation`, or any callable phi (with optional phi').
The paper's erf convention is phi(h) = erf(sqrt(pi) h / 2) so that phi'(0) = 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy import special

__all__ = ["Activation", "get_activation", "ACTIVATIONS", "complex_step_derivative"]

ArrayFn = Callable[[np.ndarray], np.ndarray]
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True, eq=False)
class Activation:
    """A pointwise nonlinearity with what mean-field theory needs of it."""

    name: str
    phi: ArrayFn
    dphi: ArrayFn
    kinks: tuple[float, ...] = ()
    e_phi2: Callable[[np.ndarray], np.ndarray] | None = None
    mu_exact: Callable[[np.ndarray, int], np.ndarray] | None = None
    kernel: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    d2_atoms: Callable[[float], tuple[np.ndarray, np.ndarray]] | None = None
    bounded: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    homogeneous: bool = False
    dphi_complex: ArrayFn | None = None
    dphi_strip: float = 0.0
    torch_module: tuple[str, str, Mapping[str, Any]] | None = None
    """``(module path, class name, constructor keyword arguments)``, e.g.
    ``("torch.nn", "LeakyReLU", {"negative_slope": 0.2})``; None when torch has no such module."""

    def __call__(self, h):
        return self.phi(np.asarray(h, dtype=float))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Activation({self.name!r}{extra})"

    @property
    def piecewise_linear(self) -> bool:
        """True when phi' takes finitely many values (D^2 has a discrete law)."""
        return self.d2_atoms is not None


# --------------------------------------------------------------------------- helpers
def _Phi(x):
    return special.ndtr(x)


def _npdf(x):
    x = np.minimum(np.abs(np.asarray(x, dtype=float)), 1e3)  # exp(-5e5) == 0; avoids overflow in x^2
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _inv_sqrt(q):
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(q > 0, 1.0 / np.sqrt(np.where(q > 0, q, 1.0)), np.inf)


def _sech2(h):
    e = np.exp(-2.0 * np.abs(h))
    return 4.0 * e / np.square(1.0 + e)


def _sig_even(h):
    """sigmoid'(h) = e^{-h}/(1+e^{-h})^2, even, evaluated on Re h >= 0 (no overflow); complex h."""
    h = np.where(h.real < 0, -h, h)
    e = np.exp(-h)
    return e / (1.0 + e) ** 2


def _sigmoid_c(h):
    """sigmoid(h) for complex h without overflow."""
    pos = h.real >= 0
    hp = np.where(pos, h, -h)
    e = np.exp(-hp)
    s = 1.0 / (1.0 + e)
    return np.where(pos, s, e / (1.0 + e))


def _tanh_d_c(h):
    """sech^2(h) for complex h without overflow."""
    h = np.where(h.real < 0, -h, h)
    e = np.exp(-2.0 * h)
    return 4.0 * e / (1.0 + e) ** 2


def _relu_kernel(q, c):
    c = np.clip(c, -1.0, 1.0)
    return q / (2.0 * np.pi) * (np.sqrt(1.0 - c * c) + (np.pi - np.arccos(c)) * c)


# --------------------------------------------------------------------------- registry
def _linear() -> Activation:
    return Activation(
        "linear",
        phi=lambda h: np.asarray(h, dtype=float) * 1.0,
        dphi=lambda h: np.ones_like(np.asarray(h, dtype=float)),
        e_phi2=lambda q: np.asarray(q, dtype=float) * 1.0,
        mu_exact=lambda q, k: np.ones_like(np.asarray(q, dtype=float)),
        kernel=lambda q, c: np.asarray(q, float) * np.asarray(c, float),
        d2_atoms=lambda q: (np.array([1.0]), np.array([1.0])),
        homogeneous=True,
        torch_module=("isometry.torch.modules", "LinearActivation", {}),
    )


def _leaky_relu(alpha: float = 0.01) -> Activation:
    a = float(alpha)
    if not (np.isfinite(a) and 0.0 <= a < 1.0):
        raise ValueError(f"leaky_relu alpha must be in [0, 1), got {alpha!r}")
    name = "relu" if a == 0.0 else "leaky_relu"
    return Activation(
        name,
        phi=lambda h: np.where(h > 0, h, a * h) * 1.0,
        dphi=lambda h: np.where(np.asarray(h) > 0, 1.0, a),
        kinks=(0.0,),
        e_phi2=lambda q: 0.5 * (1.0 + a * a) * np.asarray(q, dtype=float),
        mu_exact=lambda q, k: np.full_like(np.asarray(q, dtype=float), 0.5 * (1.0 + a ** (2 * k))),
        kernel=lambda q, c: a * np.asarray(q, float) * np.asarray(c, float) + (1 - a) ** 2 * _relu_kernel(q, c),
        d2_atoms=lambda q: (np.array([a * a, 1.0]), np.array([0.5, 0.5])),
        params={} if a == 0.0 else {"alpha": a},
        homogeneous=True,
        torch_module=("torch.nn", "ReLU", {}) if a == 0.0 else ("torch.nn", "LeakyReLU", {"negative_slope": a}),
    )


def _hard_tanh() -> Activation:
    def p_lin(q):  # P(|h| < 1)
        return special.erf(_inv_sqrt(q) / np.sqrt(2.0))

    def e_phi2(q):
        q = np.asarray(q, dtype=float)
        t = _inv_sqrt(q)
        with np.errstate(invalid="ignore"):
            tpdf = np.where(np.isfinite(t), t * _npdf(np.where(np.isfinite(t), t, 0.0)), 0.0)
        return q * (p_lin(q) - 2.0 * tpdf) + special.erfc(t / np.sqrt(2.0))

    return Activation(
        "hard_tanh",
        phi=lambda h: np.clip(h, -1.0, 1.0) * 1.0,
        dphi=lambda h: (np.abs(h) < 1.0) * 1.0,
        kinks=(-1.0, 1.0),
        e_phi2=e_phi2,
        mu_exact=lambda q, k: p_lin(q),
        d2_atoms=lambda q: (np.array([0.0, 1.0]), np.array([1.0 - float(p_lin(q)), float(p_lin(q))])),
        bounded=True,
        torch_module=("torch.nn", "Hardtanh", {"min_val": -1.0, "max_val": 1.0}),
    )


def _shifted_relu() -> Activation:
    a = 0.5

    def p_lin(q):  # P(h > -1/2)
        return _Phi(a * _inv_sqrt(q))

    def e_phi2(q):
        q = np.asarray(q, dtype=float)
        t = a * _inv_sqrt(q)
        tpdf = np.where(np.isfinite(t), t * _npdf(np.where(np.isfinite(t), t, 0.0)), 0.0)
        return q * (_Phi(t) - tpdf) + a * a * _Phi(-t)

    return Activation(
        "shifted_relu",
        phi=lambda h: np.maximum(np.asarray(h, float) + a, 0.0) - a,
        dphi=lambda h: (np.asarray(h) > -a) * 1.0,
        kinks=(-a,),
        e_phi2=e_phi2,
        mu_exact=lambda q, k: p_lin(q),
        d2_atoms=lambda q: (np.array([0.0, 1.0]), np.array([1.0 - float(p_lin(q)), float(p_lin(q))])),
        torch_module=("isometry.torch.modules", "ShiftedReLU", {}),
    )


def _erf() -> Activation:
    c = np.sqrt(np.pi) / 2.0

    def kernel(q, cc):
        g = 0.5 * np.pi * np.asarray(q, float)
        return (2.0 / np.pi) * np.arcsin(g * np.asarray(cc, float) / (1.0 + g))

    return Activation(
        "erf",
        phi=lambda h: special.erf(c * np.asarray(h, float)),
        dphi=lambda h: np.exp(-0.25 * np.pi * np.square(h)),
        e_phi2=lambda q: kernel(q, 1.0),
        mu_exact=lambda q, k: 1.0 / np.sqrt(1.0 + k * np.pi * np.asarray(q, float)),
        kernel=kernel,
        bounded=True,
        dphi_complex=lambda h: np.exp(-0.25 * np.pi * h * h),
        dphi_strip=np.inf,
        torch_module=("isometry.torch.modules", "Erf", {}),
    )


def _tanh() -> Activation:
    return Activation("tanh", phi=np.tanh, dphi=_sech2, bounded=True, dphi_complex=_tanh_d_c, dphi_strip=np.pi / 2,
                      torch_module=("torch.nn", "Tanh", {}))


def _sigmoid() -> Activation:
    def d(h):
        s = special.expit(h)
        return s * special.expit(-np.asarray(h, float))

    return Activation("sigmoid", phi=special.expit, dphi=d, bounded=True, dphi_complex=_sig_even, dphi_strip=np.pi,
                      torch_module=("torch.nn", "Sigmoid", {}))


def _silu() -> Activation:
    def d(h):
        h = np.asarray(h, float)
        s = special.expit(h)
        return s * (1.0 + h * special.expit(-h))

    def d_c(h):
        sg = _sigmoid_c(h)
        return sg * (1.0 + h * (1.0 - sg))

    return Activation("silu", phi=lambda h: np.asarray(h, float) * special.expit(h), dphi=d, dphi_complex=d_c,
                      dphi_strip=np.pi, torch_module=("torch.nn", "SiLU", {}))


def _gelu() -> Activation:
    return Activation(
        "gelu",
        phi=lambda h: np.asarray(h, float) * _Phi(h),
        dphi=lambda h: _Phi(h) + np.asarray(h, float) * _npdf(h),
        dphi_complex=lambda h: 0.5 * special.erfc(-h / np.sqrt(2.0)) + h * np.exp(-0.5 * h * h) / np.sqrt(2.0 * np.pi),
        dphi_strip=np.inf,
        torch_module=("torch.nn", "GELU", {"approximate": "none"}),
    )


def _elu(alpha: float = 1.0, scale: float = 1.0, name: str = "elu") -> Activation:
    a = float(alpha)
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"elu alpha must be > 0, got {alpha!r}")

    def phi(h):
        h = np.asarray(h, float)
        return scale * np.where(h > 0, h, a * np.expm1(np.minimum(h, 0.0)))

    def dphi(h):
        h = np.asarray(h, float)
        return scale * np.where(h > 0, 1.0, a * np.exp(np.minimum(h, 0.0)))

    def dphi_c(h):
        return np.where(h.real > 0, scale + 0 * h, scale * a * np.exp(h))

    module = ("torch.nn", "SELU", {}) if name == "selu" else ("torch.nn", "ELU", {"alpha": a})
    return Activation(name, phi=phi, dphi=dphi, kinks=(0.0,), params={"alpha": a} if name == "elu" and a != 1.0 else {},
                      dphi_complex=dphi_c, dphi_strip=np.inf, torch_module=module)


def _selu() -> Activation:
    return _elu(SELU_ALPHA, SELU_SCALE, "selu")


def _softplus() -> Activation:
    return Activation("softplus", phi=lambda h: np.logaddexp(0.0, h), dphi=special.expit, dphi_complex=_sigmoid_c,
                      dphi_strip=np.pi, torch_module=("torch.nn", "Softplus", {"beta": 1.0}))


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "linear": _linear,
    "relu": lambda: _leaky_relu(0.0),
    "leaky_relu": _leaky_relu,
    "hard_tanh": _hard_tanh,
    "tanh": _tanh,
    "erf": _erf,
    "shifted_relu": _shifted_relu,
    "silu": _silu,
    "gelu": _gelu,
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "sigmoid": _sigmoid,
}
_ALIASES = {"hardtanh": "hard_tanh", "identity": "linear", "swish": "silu", "leakyrelu": "leaky_relu"}


# --------------------------------------------------------------------------- user callables
def complex_step_derivative(phi: ArrayFn, h: float = 1e-30) -> ArrayFn:
    """phi'(x) = Im phi(x + i h) / h: exact to rounding for analytic phi."""

    def dphi(x):
        x = np.asarray(x, dtype=float)
        return np.imag(phi(x + 1j * h)) / h

    return dphi


def _checked_derivative(phi: ArrayFn, name: str) -> ArrayFn:
    """Complex-step derivative, verified against a 4th-order central difference."""
    x = np.linspace(-3.1, 2.9, 41)
    try:
        d = complex_step_derivative(phi)
        with np.errstate(all="ignore"):
            cs = np.asarray(d(x), dtype=float)
    except Exception as exc:  # phi does not accept complex input
        raise ValueError(
            f"activation {name!r}: cannot differentiate it automatically ({exc}); pass its derivative as dphi="
        ) from None
    e = 1e-3
    fd = (-phi(x + 2 * e) + 8 * phi(x + e) - 8 * phi(x - e) + phi(x - 2 * e)) / (12 * e)
    if cs.shape != x.shape or not np.allclose(cs, fd, rtol=1e-4, atol=1e-6):
        raise ValueError(
            f"activation {name!r}: the complex-step derivative disagrees with finite differences "
            "(phi is not analytic in its code, e.g. uses abs/maximum); pass its derivative as dphi="
        )
    return d


def get_activation(act: "str | Activation | Callable", dphi: ArrayFn | None = None, **params: Any) -> Activation:
    """Resolve ``act`` to an :class:`Activation`.

    >>> get_activation("leaky_relu", alpha=0.2).d2_atoms(1.0)[0]
    array([0.04, 1.  ])
    >>> act = get_activation(np.sin)        # derivative by complex step
    """
    if isinstance(act, Activation):
        if params or dphi is not None:
            raise ValueError("parameters cannot be given with an Activation instance")
        return act
    if isinstance(act, str):
        key = act.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; valid names: {', '.join(ACTIVATIONS)}")
        try:
            return ACTIVATIONS[key](**params)
        except TypeError:
            raise ValueError(f"activation {key!r} does not take parameters {sorted(params)}") from None
    if callable(act):
        name = params.pop("name", getattr(act, "__name__", "custom"))
        kinks = tuple(float(k) for k in params.pop("kinks", ()))
        if params:
            raise ValueError(f"unexpected parameters for a custom activation: {sorted(params)}")
        phi = act
        d = dphi if dphi is not None else _checked_derivative(phi, name)
        return Activation(str(name), phi=lambda h: np.asarray(phi(np.asarray(h, float)), float), dphi=d, kinks=kinks)
    raise ValueError(f"activation must be a name, an Activation or a callable, got {type(act).__name__}")
