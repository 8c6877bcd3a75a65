"""What :func:`isometry.torch.critical_init_` did, and what it predicts: :class:`InitReport`.

The prediction is the free-probability law of the eigenvalues lambda of J J^T, with
J = prod_{l=1}^{L} D^l W^l the Jacobian of the *critical stack* (the L affine layers each
followed by the activation, from the input of the first to the output of the last activation;
a stem before it and a readout after it are not part of J). At criticality lambda has mean 1
and variance (Pennington, Schoenholz & Ganguli 2017, eq. 16-17)

    sigma^2_{JJ^T} = L (mu_2 / mu_1^2 - 1 - s_1),     mu_k = E[phi'(h)^(2k)], h ~ N(0, q*),

s_1 = 0 for orthogonal and -1 for Gaussian weights (:func:`isometry.jacobian_variance`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .._io import to_jsonable
from ..activations import Activation, get_activation

__all__ = ["InitReport", "LayerInit", "ISOMETRY_RULE", "DEFAULT_SIGMA0_2"]

DEFAULT_SIGMA0_2 = 0.25
"""Default target variance sigma^2_{JJ^T} of the eigenvalues of J J^T."""

ISOMETRY_RULE = (
    "isometric = orthogonal weights and predicted sigma^2_{JJ^T} < 1, i.e. the eigenvalues of "
    "J J^T (squared singular values, mean 1 at criticality) have a standard deviation below their mean"
)


@dataclass(frozen=True)
class LayerInit:
    """How one affine layer was initialised.

    ``role``: ``stem`` (an affine layer with no activation before the first critical layer),
    ``input`` (the first critical layer), ``hidden`` (the other critical layers), ``linear`` (no
    activation follows it, between critical layers) or ``readout`` (no activation follows it,
    after the last critical layer). Stem, linear and readout layers get sigma_w2 = 1,
    sigma_b2 = 0 (the critical point of the linear unit: norm-preserving).

    ``method``: how the weight was filled, ``"orthogonal"`` (Linear), ``"delta-orthogonal"``
    (convolution) or ``"gaussian"``. ``gain`` multiplies the orthonormal rows or columns
    (orthogonal) or is sigma_w (Gaussian: W_ij ~ N(0, gain^2 / fan_in)); ``sigma_w2``,
    ``sigma_b2`` are variances. ``note`` flags approximations (strided convolutions,
    an approximate GELU).
    """

    name: str
    module: str
    role: str
    shape: tuple[int, ...]
    activation: str | None
    method: str
    sigma_w2: float
    sigma_b2: float
    gain: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class InitReport:
    """What :func:`critical_init_` did and what it predicts for the Jacobian of the critical stack.

    ``depth`` L counts the critical layers (affine layer + activation); the predictions refer to
    J over the critical stack, the modules ``stack[0]`` (its first affine layer) to ``stack[1]``
    (its last module). ``width`` is the common output width (features or channels) of the
    critical layers (None when they differ). ``weights`` is the weight law, ``"orthogonal"`` or
    ``"gaussian"``.

    ``predicted_mean`` = chi^L = 1 and ``predicted_variance`` = sigma^2_{JJ^T} are the mean and
    variance of the eigenvalues of J J^T; ``predicted_max_singular_value`` is
    sqrt(lambda_max) of the free-probability law (NaN where the theory cannot give it).
    ``input_q`` = (q* - sigma_b2) / sigma_w2 is the mean squared coordinate of the input of the
    first critical layer that puts it at q^1 = q* (a stem and the default norm-preserving
    linear layers keep the mean square: scale the data to it). ``isometric`` follows
    :data:`ISOMETRY_RULE`; ``reason`` says why not; ``choice`` how q* was chosen.
    """

    activation: str
    depth: int
    width: int | None
    weights: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    mu1: float
    mu2: float
    input_q: float
    predicted_mean: float
    predicted_variance: float
    predicted_max_singular_value: float
    isometric: bool
    reason: str
    choice: str
    stack: tuple[str, str]
    layers: tuple[LayerInit, ...] = field(default=())
    activation_spec: Activation | None = field(default=None, repr=False, compare=False)
    isometry_rule: ClassVar[str] = ISOMETRY_RULE

    @property
    def predicted_std(self) -> float:
        """sqrt(sigma^2_{JJ^T}): the standard deviation of the eigenvalues of J J^T."""
        return math.sqrt(max(self.predicted_variance, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the per-layer table as a list of dicts; NaN as None)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("activation_spec", "layers")}
        d["layers"] = [layer.to_dict() for layer in self.layers]
        d["isometry_rule"] = ISOMETRY_RULE
        return to_jsonable(d)

    def spectrum(self):
        """The free-probability law of the eigenvalues of J J^T (:func:`isometry.jacobian_spectrum`)."""
        from .. import jacobian_spectrum

        act = self.activation_spec if self.activation_spec is not None else get_activation(self.activation)
        return jacobian_spectrum(act, self.depth, q_star=self.q_star, weights=self.weights)

    def plot(self, ax=None, path=None):
        """The predicted density of the singular values s = sqrt(lambda) of J, atoms as markers
        with their mass; returns the matplotlib Figure (also written to ``path`` if given)."""
        from ..plotting.init import plot_init_report

        return plot_init_report(self, ax=ax, path=path)

    def __str__(self) -> str:
        width = "" if self.width is None else f", width N = {self.width}"
        lines = [
            f"critical initialisation: {self.activation}, depth L = {self.depth}{width}, {self.weights} weights",
            f"  q* = {self.q_star:.6g}   sigma_w2 = {self.sigma_w2:.6g}   sigma_b2 = {self.sigma_b2:.6g}"
            f"   (mu1 = {self.mu1:.6g}, mu2 = {self.mu2:.6g})",
            f"  chosen: {self.choice}",
            f"  input: mean squared coordinate input_q = {self.input_q:.6g} puts the first critical layer at q* "
            "(scale the data to it)",
            f"  predictions for J over the critical stack, modules {self.stack[0]!r} .. {self.stack[1]!r}:",
            f"  eigenvalues of J J^T: mean {self.predicted_mean:.6g}, variance sigma^2_JJT = "
            f"{self.predicted_variance:.6g}, largest singular value of J {self.predicted_max_singular_value:.6g}",
            f"  isometric: {'yes' if self.isometric else 'NO'}" + ("" if self.isometric else f" ({self.reason})"),
            f"  rule: {ISOMETRY_RULE}",
        ]
        if self.layers:
            lines.append(
                f"  {'layer':<18}{'module':<8}{'role':<9}{'shape':<18}{'activation':<13}{'method':<17}"
                f"{'sigma_w2':>10}{'sigma_b2':>11}"
            )
            shown: list[LayerInit | None] = list(self.layers)
            if len(shown) > 10:
                shown = shown[:5] + [None] + shown[-5:]
            for layer in shown:
                if layer is None:
                    lines.append(f"  ... {len(self.layers) - 10} more layers ...")
                    continue
                shape = "x".join(str(s) for s in layer.shape)
                lines.append(
                    f"  {layer.name[:17]:<18}{layer.module[:7]:<8}{layer.role:<9}{shape:<18}"
                    f"{(layer.activation or '-')[:12]:<13}{layer.method:<17}"
                    f"{layer.sigma_w2:>10.5g}{layer.sigma_b2:>11.4g}"
                    + (f"  ({layer.note})" if layer.note else "")
                )
        return "\n".join(lines)
