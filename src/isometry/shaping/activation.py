"""The shaped activation phi_hat(h) = output_scale * (phi(input_scale * h + input_shift) + output_shift).

Deep kernel shaping (Martens et al. 2021) and tailored activation transformation (Zhang et al.
2022) replace a network's activation phi by this affine reshaping of it. :func:`shaped_activation`
builds it as an :class:`isometry.Activation`, so the mean field, the spectrum engine and the torch
adapters use it unchanged. What the record carries, with a = input_scale, b = input_shift,
g = output_scale, d = output_shift:

* ``phi``, ``dphi`` = g a phi'(a h + b), ``kinks`` = (k - b) / a for every kink k of phi;
* ``dphi_complex`` = g a phi'_c(a h + b), analytic for |Im h| < strip / |a|, when phi has one;
* exact forms where they transform exactly: with b = d = 0, E[phi_hat(h)^2] = g^2 E[phi(h')^2]
  and the kernel g^2 K(a^2 q, c) (h' ~ N(0, a^2 q)); with b = 0, mu_k = (g a)^(2k) mu_k(a^2 q);
  for piecewise-linear phi (``d2_atoms``), the law of phi_hat'^2 is discrete for every shift:
  on each linear piece between the images of the kinks it is (g a s_i)^2 with the Gaussian mass
  of that piece, and mu_k is its k-th moment;
* ``homogeneous`` when phi is and b = d = 0; ``bounded`` as phi;
* ``torch_module`` = ("isometry.torch.shaped", "ShapedActivation", {base module and the four
  numbers}) when phi has a torch module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from .._checks import check_real
from ..activations import Activation, get_activation

__all__ = ["shaped_activation"]

PARAMETERS = ("input_scale", "input_shift", "output_scale", "output_shift")


def _nonzero(value, name: str) -> float:
    v = check_real(name, value)
    if v == 0.0:
        raise ValueError(f"{name} must be finite and nonzero, got {value!r}")
    return v


def _pieces(base: Activation, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Break points t_i (sorted, in h) between which phi(a h + b) is linear, and phi'(a h + b) on each piece."""
    t = np.sort(np.array([(k - b) / a for k in base.kinks], dtype=float))
    if t.size:
        mids = np.concatenate([[t[0] - 1.0], 0.5 * (t[1:] + t[:-1]), [t[-1] + 1.0]])
    else:
        mids = np.array([0.0])
    slopes = a * np.asarray(base.dphi(a * mids + b), dtype=float)
    return t, slopes


def _piece_masses(t: np.ndarray, q) -> np.ndarray:
    """P(h in piece i), h ~ N(0, q): shape q.shape + (len(t) + 1,); q = 0 puts all mass on the piece of 0."""
    q = np.asarray(q, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(q > 0, t / np.sqrt(np.where(q > 0, q, 1.0)), np.where(t > 0, np.inf, np.where(t < 0, -np.inf, 0.0)))
    cdf = special.ndtr(z)
    # a kink exactly at 0 with q = 0: the mass sits on the right piece (h = 0 is read as 0+)
    cdf = np.where((q == 0) & (t == 0), 1.0, cdf) if t.size else cdf
    lo = np.concatenate([np.zeros(cdf.shape[:-1] + (1,)), cdf], axis=-1)
    hi = np.concatenate([cdf, np.ones(cdf.shape[:-1] + (1,))], axis=-1)
    return np.clip(hi - lo, 0.0, 1.0)


def shaped_activation(
    activation,
    *,
    input_scale: float = 1.0,
    input_shift: float = 0.0,
    output_scale: float = 1.0,
    output_shift: float = 0.0,
    name: str | None = None,
) -> Activation:
    """The activation h -> output_scale * (phi(input_scale * h + input_shift) + output_shift).

    Args:
        activation: phi: a registry name, an :class:`isometry.Activation` or a callable.
        input_scale, input_shift, output_scale, output_shift: the affine maps around phi
            (``input_scale`` and ``output_scale`` nonzero).
        name: the record's name (default ``"shaped(<phi>)"``).

    Returns:
        An :class:`isometry.Activation` with the exact forms that transform exactly (see the
        module docstring) and a ``torch_module`` when phi has one.

    Example:
        >>> a = shaped_activation("tanh", input_scale=0.5, input_shift=0.2, output_scale=3.0, output_shift=-0.1)
        >>> round(float(a.phi(1.0)), 12), round(3.0 * (float(np.tanh(0.7)) - 0.1), 12)
        (1.513103331351, 1.513103331351)
    """
    base = get_activation(activation)
    a = _nonzero(input_scale, "input_scale")
    b = check_real("input_shift", input_shift)
    g = _nonzero(output_scale, "output_scale")
    d = check_real("output_shift", output_shift)
    phi0, dphi0 = base.phi, base.dphi

    def phi(h):
        return g * (phi0(a * np.asarray(h, dtype=float) + b) + d)

    def dphi(h):
        return (g * a) * np.asarray(dphi0(a * np.asarray(h, dtype=float) + b), dtype=float)

    kinks = tuple(sorted((k - b) / a for k in base.kinks))
    centred = b == 0.0 and d == 0.0
    e_phi2 = kernel = mu_exact = d2_atoms = None
    if centred and base.e_phi2 is not None:
        be = base.e_phi2

        def e_phi2(q):
            return g * g * np.asarray(be(a * a * np.asarray(q, dtype=float)), dtype=float)

    if centred and base.kernel is not None:
        bk = base.kernel

        def kernel(q, c):
            return g * g * np.asarray(bk(a * a * np.asarray(q, dtype=float), c), dtype=float)

    if base.d2_atoms is not None:
        t, slopes = _pieces(base, a, b)
        values = (g * slopes) ** 2

        def d2_atoms(q):
            p = _piece_masses(t, float(q))
            keep = p > 0
            v, pk = values[keep], p[keep]
            uniq, inv = np.unique(v, return_inverse=True)
            return uniq, np.bincount(inv, weights=pk, minlength=uniq.size)

        def mu_exact(q, k):
            return _piece_masses(t, q) @ (values ** int(k))

    elif b == 0.0 and base.mu_exact is not None:
        bm = base.mu_exact

        def mu_exact(q, k):
            return (g * a) ** (2 * int(k)) * np.asarray(bm(a * a * np.asarray(q, dtype=float), k), dtype=float)

    dphi_complex, strip = None, 0.0
    if base.dphi_complex is not None:
        bc = base.dphi_complex

        def dphi_complex(h):
            return (g * a) * bc(a * h + b)

        strip = float(base.dphi_strip) / abs(a)

    torch_module = None
    label = f"shaped({base.name})" if name is None else str(name)
    if base.torch_module is not None:
        kwargs: dict[str, Any] = {"base": base.torch_module, "input_scale": a, "input_shift": b,
                                  "output_scale": g, "output_shift": d, "name": label}
        torch_module = ("isometry.torch.shaped", "ShapedActivation", kwargs)
    return Activation(
        label,
        phi=phi,
        dphi=dphi,
        kinks=kinks,
        e_phi2=e_phi2,
        mu_exact=mu_exact,
        kernel=kernel,
        d2_atoms=d2_atoms,
        bounded=base.bounded,
        params={"base": base.name, **dict(base.params), "input_scale": a, "input_shift": b, "output_scale": g,
                "output_shift": d},
        homogeneous=base.homogeneous and centred,
        dphi_complex=dphi_complex,
        dphi_strip=strip,
        torch_module=torch_module,
    )
