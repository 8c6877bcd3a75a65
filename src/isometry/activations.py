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

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from scipy import special

from ._checks import check_real

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
    a = check_real("leaky_relu alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
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


def _elu(alpha: float = 1.0, scale: float = 1.0, name: str = "elu", torch_module=None) -> Activation:
    a = check_real(f"{name} alpha", alpha, lo=0.0, lo_open=True)

    def phi(h):
        h = np.asarray(h, float)
        return scale * np.where(h > 0, h, a * np.expm1(np.minimum(h, 0.0)))

    def dphi(h):
        h = np.asarray(h, float)
        return scale * np.where(h > 0, 1.0, a * np.exp(np.minimum(h, 0.0)))

    def dphi_c(h):
        return np.where(h.real > 0, scale + 0 * h, scale * a * np.exp(h))

    if torch_module is None:  # the parametrised ELU
        torch_module = ("torch.nn", "ELU", {"alpha": a})
        params = {"alpha": a} if a != 1.0 else {}
    else:
        params = {}
    return Activation(name, phi=phi, dphi=dphi, kinks=(0.0,), params=params,
                      dphi_complex=dphi_c, dphi_strip=np.inf, torch_module=torch_module)


def _selu() -> Activation:
    return _elu(SELU_ALPHA, SELU_SCALE, "selu", torch_module=("torch.nn", "SELU", {}))


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
    "elu": lambda alpha=1.0: _elu(alpha),
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


# irregular points (no pattern a sorting or centring function could keep) for the checks below
_PROBE = np.sort(np.random.default_rng(20170601).uniform(-3.3, 3.1, 48))
_RANGE = np.linspace(-10.0, 10.0, 401) + 0.0123


def _quiet(fn: ArrayFn) -> ArrayFn:
    """``fn`` with NumPy's floating-point warnings off: non-finite values are reported by the checks."""

    def wrapped(h):
        with np.errstate(all="ignore"):
            return fn(h)

    return wrapped


def _check_elementwise(fn: ArrayFn, name: str, what: str, complex_input: bool = False) -> None:
    """Refuse a callable that is not applied element by element (the mean field needs phi(h_i) per unit)."""
    x = _PROBE + (1e-3j if complex_input else 0.0)
    try:
        whole = np.asarray(fn(x))
        single = np.array([np.asarray(fn(x[i : i + 1])).ravel()[0] for i in range(x.size)])
        square = np.asarray(fn(x.reshape(6, 8)))
    except Exception as exc:
        raise ValueError(f"activation {name!r}: {what} fails on an array of values ({type(exc).__name__}: {exc})") from None
    if whole.shape != x.shape or square.shape != (6, 8):
        raise ValueError(f"activation {name!r}: {what} must return an array of its input's shape (elementwise), "
                         f"got shape {whole.shape} for input {x.shape}")
    ok = np.isclose(whole, single, rtol=1e-12, atol=1e-300, equal_nan=True)
    ok &= np.isclose(square.ravel(), whole, rtol=1e-12, atol=1e-300, equal_nan=True)
    if not np.all(ok):
        i = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"activation {name!r}: {what} is not elementwise: on a vector it gives {complex(whole[i]):.6g} at "
            f"h={x[i].real:.4g}, applied to that value alone {complex(single[i]):.6g}"
        )


def _check_finite(fn: ArrayFn, name: str, what: str) -> None:
    v = np.asarray(fn(_RANGE), dtype=float)
    bad = ~np.isfinite(v)
    if np.any(bad):
        xs = _RANGE[bad]
        raise ValueError(f"activation {name!r}: {what} is not finite at h in [{xs.min():.4g}, {xs.max():.4g}] "
                         f"(e.g. h={xs[0]:.4g}); it must be finite on the real line")


def _fd_derivative(phi: ArrayFn, x: np.ndarray) -> np.ndarray:
    e = 1e-3
    return (-phi(x + 2 * e) + 8 * phi(x + e) - 8 * phi(x - e) + phi(x - 2 * e)) / (12 * e)


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
    if cs.shape != x.shape or not np.allclose(cs, _fd_derivative(phi, x), rtol=1e-4, atol=1e-6):
        raise ValueError(
            f"activation {name!r}: the complex-step derivative disagrees with finite differences "
            "(phi is not analytic in its code, e.g. uses abs/maximum); pass its derivative as dphi="
        )
    return d


def _check_given_derivative(phi: ArrayFn, dphi: ArrayFn, kinks: tuple[float, ...], name: str) -> None:
    """A user's phi' must agree with finite differences of phi away from the declared kinks."""
    x = _PROBE
    if kinks:
        x = x[np.min(np.abs(x[:, None] - np.asarray(kinks)[None, :]), axis=1) > 1e-2]
    fd = _fd_derivative(phi, x)
    d = np.asarray(dphi(x), dtype=float)
    bad = ~np.isclose(d, fd, rtol=1e-4, atol=1e-6)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"activation {name!r}: dphi({x[i]:.4g}) = {d[i]:.6g} but finite differences of phi give {fd[i]:.6g}; "
            "pass the derivative of phi (and its kinks= where phi' jumps)"
        )


def _complex_dphi(dphi: ArrayFn, fn, name: str) -> ArrayFn:
    """``fn`` as phi' for complex h, checked to accept complex input, to agree with ``dphi`` (phi' on
    the real line) and to be elementwise."""
    if not callable(fn):
        raise TypeError(f"dphi_complex must be True or a callable, got {fn!r}")
    x = _PROBE

    def f(h):
        return np.asarray(fn(h), dtype=complex)

    try:
        with np.errstate(all="ignore"):
            vc = f(x + 0j)
            vi = f(x + 1e-3j)
    except Exception as exc:
        raise ValueError(f"activation {name!r}: dphi_complex fails on complex input ({type(exc).__name__}: {exc})") from None
    if vc.shape != x.shape or not np.allclose(vc.real, dphi(x), rtol=1e-12, atol=1e-14) or np.all(vi.imag == 0):
        raise ValueError(f"activation {name!r}: dphi_complex must accept complex h and equal dphi on the real line")
    _check_elementwise(f, name, "dphi_complex", complex_input=True)
    return _quiet(f)


def get_activation(
    activation: "str | Activation | Callable",
    dphi: ArrayFn | None = None,
    *,
    name: str | None = None,
    kinks=(),
    dphi_complex: "bool | ArrayFn | None" = None,
    dphi_strip: float | None = None,
    **params: Any,
) -> Activation:
    """Resolve ``activation`` to an :class:`Activation`.

    Args:
        activation: a registry name (see :data:`ACTIVATIONS`; parameters such as ``alpha=``
            as keywords), an :class:`Activation` (returned as is), or a callable phi acting
            elementwise on NumPy arrays.
        dphi: phi' of a callable (default: complex-step derivative of phi, checked against
            finite differences). A given phi' is checked against finite differences of phi.
        name: the name of a callable activation (default its ``__name__``).
        kinks: points where phi' of a callable jumps (quadrature panel breaks).
        dphi_complex: for a callable with ``dphi``: True when ``dphi`` accepts complex h (or a
            separate complex-safe phi'), analytic for |Im h| < ``dphi_strip`` (default 0.5).
            The law of D^2 then integrates along a complex contour, which resolves the
            spectrum's density exactly on its support (otherwise: the real axis only).

    A callable must be elementwise (checked: phi on a vector equals phi on each value) and
    finite on the real line (checked on [-10, 10]).

    >>> get_activation("leaky_relu", alpha=0.2).d2_atoms(1.0)[0]
    array([0.04, 1.  ])
    >>> a = get_activation(np.sin)                      # derivative by complex step
    >>> b = get_activation(np.tanh, dphi=lambda h: 1 / np.cosh(h) ** 2, dphi_complex=True, dphi_strip=1.5)
    """
    custom_only = {"name": name, "dphi_complex": dphi_complex, "dphi_strip": dphi_strip}
    given = sorted(k for k, v in custom_only.items() if v is not None) + (["kinks"] if tuple(kinks) else [])
    if isinstance(activation, Activation):
        if params or dphi is not None or given:
            raise ValueError("parameters cannot be given with an Activation instance")
        return activation
    if isinstance(activation, str):
        if dphi is not None or given:
            raise ValueError(f"dphi, {', '.join(given) or 'name, kinks'} are for callables, not the registry name "
                             f"{activation!r}")
        key = activation.strip().lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid names: {', '.join(ACTIVATIONS)}")
        try:
            inspect.signature(ACTIVATIONS[key]).bind(**params)
        except TypeError:
            raise ValueError(f"activation {key!r} does not take parameters {sorted(params)}") from None
        return ACTIVATIONS[key](**params)
    if callable(activation):
        label = str(name if name is not None else getattr(activation, "__name__", "custom"))
        if params:
            raise ValueError(f"unexpected parameters for a custom activation: {sorted(params)}")
        try:
            kink_t = tuple(float(k) for k in kinks)
        except (TypeError, ValueError):
            raise TypeError(f"kinks must be a sequence of numbers, got {kinks!r}") from None
        user_phi = activation

        def phi(h):
            return np.asarray(user_phi(np.asarray(h, float)), float)

        phi = _quiet(phi)
        _check_elementwise(_quiet(user_phi), label, "phi")
        _check_finite(phi, label, "phi")
        if dphi is None:
            if dphi_complex is not None or dphi_strip is not None:
                raise ValueError("dphi_complex and dphi_strip need dphi (a phi' that accepts complex input)")
            raw = _quiet(user_phi)
            cs = _checked_derivative(raw, label)

            def d(h):
                return np.asarray(cs(h), float)
        else:
            if not callable(dphi):
                raise TypeError(f"dphi must be a callable, got {dphi!r}")
            user_dphi = dphi
            _check_elementwise(_quiet(user_dphi), label, "dphi")

            def d(h):
                return np.asarray(user_dphi(np.asarray(h, float)), float)

            d = _quiet(d)
            _check_finite(d, label, "dphi")
            _check_given_derivative(phi, d, kink_t, label)
        _check_finite(d, label, "phi'")
        dc, strip = None, 0.0
        if dphi_complex is not None and dphi_complex is not False:
            dc = _complex_dphi(d, user_dphi if dphi_complex is True else dphi_complex, label)
            strip = 0.5 if dphi_strip is None else float(dphi_strip)
            if not strip > 0:
                raise ValueError(f"dphi_strip must be > 0 (the half-width of the strip of analyticity), got {dphi_strip!r}")
        elif dphi_strip is not None:
            raise ValueError("dphi_strip needs dphi_complex")
        return Activation(label, phi=phi, dphi=d, kinks=kink_t, dphi_complex=dc, dphi_strip=strip)
    raise TypeError(f"activation must be a name, an Activation or a callable, got {type(activation).__name__}")
