"""What :func:`isometry.torch.critical_init_` did, and what it predicts: :class:`InitReport`.

The prediction is about the Jacobian J of the *body*: a named sub-map of the model, from the
output of one cut point of its graph to the output of a later one (``report.body(model)``
computes it; ``report.body_input(model, x)`` gives its input for the model input x). It is
the longest run of blocks of one width: critical layers (an affine layer followed by the
activation), residual, normalised, attention and transformer blocks; a stem before it (a
width-changing input layer, embeddings) and a head after it (pooling, readout) are not part
of J.

For a body of L critical layers the prediction is the free-probability law of the eigenvalues
lambda of J J^T: at criticality mean 1 and variance (Pennington, Schoenholz & Ganguli 2017,
eq. 16-17)

    sigma^2_{JJ^T} = L (mu_2 / mu_1^2 - 1 - s_1),     mu_k = E[phi'(h)^(2k)], h ~ N(0, q*),

s_1 = 0 for orthogonal and -1 for Gaussian weights (:func:`isometry.jacobian_variance`). A body
with calibrated blocks composes the blocks as free random matrices: the mean is the product of
the blocks' mean eigenvalues chi_b and the normalised variance var / mean^2 is the sum of the
blocks' normalised variances (exact for free factors; the theory's layers are such factors),
each calibrated block contributing the spread measured on ``example_input``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .._io import to_jsonable
from ..activations import Activation, get_activation

__all__ = ["InitReport", "LayerInit", "BlockInit", "ISOMETRY_RULE", "RELIABILITY_RULE", "VARIANCE_TOLERANCE_RULE",
           "DEFAULT_SIGMA0_2", "FLUCTUATION_LIMIT"]

DEFAULT_SIGMA0_2 = 0.25
"""Default target variance sigma^2_{JJ^T} of the eigenvalues of J J^T."""

ISOMETRY_RULE = (
    "isometric = orthogonal weights and predicted Var/E^2 < 1 for the eigenvalues of J J^T (squared singular "
    "values; at criticality E = 1 and Var = sigma^2_{JJ^T}): their standard deviation is below their mean"
)

FLUCTUATION_LIMIT = 0.1
"""Largest finite-width fluctuation index for which the infinite-width prediction is trusted."""

RELIABILITY_RULE = (
    "reliable = fluctuation <= 0.1, fluctuation = (3 Var/E^2 - L_gauss) / N (Var/E^2 of the eigenvalues of J J^T, "
    "sigma^2_JJT at criticality): the variance of "
    "log(|J v|^2 / |v|^2) over random inputs and directions v at width N predicted by the per-layer spread "
    "(3 (mu2/mu1^2 - 1) / N per layer from the diagonal D, 2 / N more per layer with Gaussian weights, "
    "L_gauss the number of such layers); it grows with the depth-to-width ratio L / N (Hanin & Nica 2019), "
    "so a body whose depth is comparable to its width is flagged unless its per-layer spread is small"
)

VARIANCE_TOLERANCE_RULE = (
    "variance_tolerance = predicted_variance x (a + 3 sqrt(2 / N)) + 2 se: a measurement of the variance of the "
    "eigenvalues of J J^T over the body at one input lies this close to the prediction; a = 0.1 for a body of "
    "critical layers (finite-width bias), 0.35 when it contains calibrated blocks (composed as if free); "
    "3 sqrt(2 / N) covers the spread of one measurement at width N; se is the standard error of the calibrated "
    "blocks' measured spreads"
)


@dataclass(frozen=True)
class LayerInit:
    """How one application of an affine layer was initialised.

    ``role``: ``stem`` (before the body), ``input`` (the first critical layer of the body),
    ``hidden`` (the other critical layers of the body), ``linear`` (no activation follows it,
    inside the body), ``readout`` (after the body) or ``block`` (inside a calibrated block,
    later rescaled by calibration). Stem, linear and readout layers without an activation get
    sigma_w2 = 1, sigma_b2 = 0 (the critical point of the linear unit: norm-preserving).

    ``method``: how the weight was filled, ``"orthogonal"`` (Linear), ``"delta-orthogonal"``
    (convolution) or ``"gaussian"``. ``gain`` multiplies the orthonormal rows or columns
    (orthogonal) or is sigma_w (Gaussian: W_ij ~ N(0, gain^2 / fan_in)); ``sigma_w2``,
    ``sigma_b2`` are variances. ``note`` flags approximations and shared weights.
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
class BlockInit:
    """One block of the model: how it was set and its forward and backward signal.

    ``kind``: ``critical``, ``linear``, ``residual``, ``transformer``, ``attention``,
    ``normalised``, ``norm``, ``module``, ``embedding`` or ``map`` (a parameter-free map:
    pooling, reshape, dropout, a scaling). ``role``: ``stem``, ``body`` or ``head``.
    ``method``: ``theory`` (mean field), ``calibrated`` (measured and rescaled) or ``fixed``
    (nothing to set).

    ``q_*``: the forward second moment: for a critical layer the pre-activation length q^l
    (predicted q*), for other blocks the mean squared output coordinate (a calibrated block is
    predicted to keep its input's, ``q_in``). ``chi_*``: the mean eigenvalue of J_b J_b^T of the
    block (the gain of the backward signal; predicted 1, the known gain^2 for fixed maps).
    ``variance_*``: the normalised spread of those eigenvalues (mu2/mu1^2 - 1 - s_1 for a
    critical layer). Measured values are NaN without ``example_input``. ``gain``: the weight
    gain (theory) or the factor calibration applied to ``knob``; ``passes``: the measurements
    calibration took; ``converged``: chi reached its target within the tolerance.
    """

    name: str
    kind: str
    role: str
    method: str
    modules: tuple[str, ...]
    q_in: float
    q_predicted: float
    q_measured: float
    chi_predicted: float
    chi_measured: float
    chi_se: float
    variance_predicted: float
    variance_measured: float
    gain: float
    knob: str = ""
    passes: int = 0
    converged: bool = True
    note: str = ""
    variance_se: float = float("nan")
    chi_cumulative: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (NaN as None)."""
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class InitReport:
    """What :func:`critical_init_` did and what it predicts for the Jacobian of the body.

    ``depth`` L counts the blocks of the body (critical layers, residual and other calibrated
    blocks); ``width`` N is their common width (features or channels). ``body_span`` names the
    ops at its ends (module names, or the node names of function calls); ``body_description``
    says it in words, and :meth:`body` / :meth:`body_input` compute it.

    Theory (critical layers): ``activation``, ``sigma_w2``, ``sigma_b2``, ``q_star``, ``mu1``,
    ``mu2`` and ``input_q`` = (q* - sigma_b2) / sigma_w2, the mean squared coordinate of the
    input of the first critical layer that puts it at q^1 = q* (NaN / None when the model has no
    critical layer). ``choice`` says how q* was chosen. A body of residual blocks
    x + a phi(W x + b) (Tarnowski et al. 2019) is set from the residual mean field instead:
    ``branch_scale`` a, ``sigma_w2`` (biases 0) and ``input_q`` = q0, the mean squared coordinate
    of the body's input the prediction assumes (:func:`isometry.residual_spectrum`).

    Predictions for the eigenvalues of J J^T over the body: ``predicted_mean`` (1 at
    criticality), ``predicted_variance`` (sigma^2_{JJ^T}), ``predicted_max_singular_value``
    (NaN unless the body is a critical stack), ``variance_tolerance`` (:data:`VARIANCE_TOLERANCE_RULE`).
    ``fluctuation`` and ``reliable`` follow :data:`RELIABILITY_RULE`, ``depth_to_width`` = L / N.
    ``isometric`` follows :data:`ISOMETRY_RULE`; ``reason`` says why not.

    Kernel-shaped modes (``mode`` ``"dks"`` or ``"tat"``; ``"critical"`` otherwise): every layer
    at q = 1 (``q_star`` = 1, ``sigma_w2`` = 1, ``sigma_b2`` = 0, ``input_q`` = 1), ``activation``
    is the shaped unit, ``shaping`` the :class:`isometry.shaping.KernelShaping` that solved it
    (its parameters, targets and the network's C-map, ``shaping.network_c_map(c)``), ``replaced``
    the qualified names of the activation modules replaced by its torch module; the prediction
    (``"theory (shaped)"``, or ``"theory (shaped residual)"`` for residual blocks) is
    :meth:`isometry.shaping.KernelShaping.isometry` over the body.

    ``input_normalization``: the :class:`isometry.torch.InputNormalization` modules at the front
    of the model whose ``q`` was set to ``input_q`` (the prediction then holds for every example).

    Measurements (with ``example_input``; NaN otherwise): ``measured_mean``,
    ``measured_variance`` (and its standard error) of the body at the example input, by
    Hutchinson probes. ``prediction`` says where the predicted mean and variance come from:
    ``"theory"`` (a body of critical layers) or ``"measured on example_input"`` (a body with
    calibrated blocks, which need not compose as free factors: the body's own measurement is the
    prediction for other inputs of the same distribution). ``traced`` says how the structure was read (``"fx"`` or ``"hooks"``),
    ``calibration_passes`` how many measurements calibration took in all. Predictions and
    measurements refer to the model in eval mode (dropout off; BatchNorm with running statistics,
    set from ``example_input`` by calibration).
    """

    activation: str | None
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
    body_span: tuple[str, str]
    body_description: str = ""
    branch_scale: float = float("nan")
    variance_tolerance: float = float("nan")
    depth_to_width: float = float("nan")
    fluctuation: float = float("nan")
    reliable: bool = True
    measured_mean: float = float("nan")
    measured_variance: float = float("nan")
    measured_variance_se: float = float("nan")
    traced: str = "fx"
    prediction: str = "theory"
    calibration_passes: int = 0
    mode: str = "critical"
    replaced: tuple[str, ...] = field(default=())
    input_normalization: tuple[str, ...] = field(default=())
    layers: tuple[LayerInit, ...] = field(default=())
    blocks: tuple[BlockInit, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    activation_spec: Activation | None = field(default=None, repr=False, compare=False)
    shaping: Any = field(default=None, repr=False, compare=False)
    _structure: Any = field(default=None, repr=False, compare=False)
    _body: tuple[int, int] = field(default=(0, 0), repr=False, compare=False)
    isometry_rule: ClassVar[str] = ISOMETRY_RULE

    @property
    def predicted_std(self) -> float:
        """sqrt(sigma^2_{JJ^T}): the standard deviation of the eigenvalues of J J^T."""
        return math.sqrt(max(self.predicted_variance, 0.0))

    @property
    def theory_only(self) -> bool:
        """The body is a stack of critical (and linear) layers or of residual blocks x + a phi(W x):
        the theory predicts its whole law."""
        return self.prediction.startswith("theory") and self.activation is not None and (
            self.prediction != "theory (shaped residual)")

    @property
    def predicted_relative_variance(self) -> float:
        """Var / E^2 of the eigenvalues of J J^T over the body (0 for an exact isometry)."""
        m = self.predicted_mean
        return self.predicted_variance / m**2 if math.isfinite(m) and m > 0 else float("nan")

    def body(self, model):
        """The body of ``model`` as a ``torch.nn.Module`` (sharing ``model``'s parameters).

        ``model`` is the model the report was made for, or one of the same structure (a copy,
        the same class re-instantiated). ``jacobian_eigenvalues(report.body(model), z)`` and
        ``spectrum_estimate(report.body(model), z)`` with ``z = report.body_input(model, x)``
        measure the Jacobian the prediction describes.
        """
        from .body import Segment

        self._require_structure()
        return Segment(model, self._structure, *self._body)

    def body_input(self, model, x):
        """The input of the body when ``model`` is applied to ``x`` (the output of the op before it)."""
        import torch

        from .body import run_ops

        self._require_structure()
        with torch.no_grad():
            return run_ops(self._structure, x, model=model, start=0, end=self._body[0])

    def _require_structure(self) -> None:
        if self._structure is None:
            raise ValueError("this report carries no model structure (it was rebuilt from a dict)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the per-layer and per-block tables as lists of dicts; NaN as None)."""
        skip = ("activation_spec", "layers", "blocks", "_structure", "_body", "shaping")
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        d["shaping"] = self.shaping.to_dict() if self.shaping is not None else None
        d["layers"] = [layer.to_dict() for layer in self.layers]
        d["blocks"] = [block.to_dict() for block in self.blocks]
        d["measurement_disagrees"] = self.measurement_disagrees
        d["isometry_rule"] = ISOMETRY_RULE
        d["reliability_rule"] = RELIABILITY_RULE
        d["variance_tolerance_rule"] = VARIANCE_TOLERANCE_RULE
        return to_jsonable(d)

    def spectrum(self):
        """The free-probability law of the eigenvalues of J J^T (:func:`isometry.jacobian_spectrum`).

        Raises:
            ValueError: the body contains calibrated blocks (only its mean and variance are predicted).
        """
        from .. import jacobian_spectrum

        if self.prediction == "theory (shaped residual)":
            raise ValueError("the body is made of shaped residual blocks: only the mean and variance of its spectrum "
                             "are predicted (predicted_mean, predicted_variance)")
        if not self.theory_only:
            raise ValueError("the body contains calibrated blocks: only the mean and variance of its spectrum are "
                             "predicted (predicted_mean, predicted_variance)")
        if self.shaping is not None:
            return self.shaping.jacobian_spectrum(self.depth, weights=self.weights)
        act = self.activation_spec if self.activation_spec is not None else get_activation(self.activation)
        if self.prediction == "theory (residual)":
            from ..spectrum.residual import residual_spectrum

            return residual_spectrum(act, self.depth, branch_scale=self.branch_scale, sigma_w2=self.sigma_w2,
                                     sigma_b2=0.0, q0=self.input_q, weights=self.weights)
        return jacobian_spectrum(act, self.depth, q_star=self.q_star, weights=self.weights)

    def plot(self, ax=None, path=None):
        """The predicted density of the singular values s = sqrt(lambda) of J, atoms as markers
        with their mass; returns the matplotlib Figure (also written to ``path`` if given)."""
        from ..plotting.init import plot_init_report

        return plot_init_report(self, ax=ax, path=path)

    @property
    def measurement_disagrees(self) -> str:
        """Empty when the measurement at ``example_input`` agrees with the prediction (mean within 10%,
        variance within ``variance_tolerance``); else what disagrees, e.g. ``"variance 1.18 against
        0.25 +- 0.29"``. Empty when there is no measurement or the prediction is the measurement."""
        if not (math.isfinite(self.measured_mean) and math.isfinite(self.predicted_mean)):
            return ""
        if self.prediction.startswith("measured"):  # the prediction is the measurement
            return ""
        out = []
        if abs(self.measured_mean - self.predicted_mean) > 0.1 * abs(self.predicted_mean):
            out.append(f"mean {self.measured_mean:.3g} against {self.predicted_mean:.3g} +- 10%")
        if (math.isfinite(self.measured_variance) and math.isfinite(self.variance_tolerance)
                and abs(self.measured_variance - self.predicted_variance) > self.variance_tolerance):
            out.append(f"variance {self.measured_variance:.3g} against {self.predicted_variance:.3g} +- "
                       f"{self.variance_tolerance:.2g}")
        return ", ".join(out)

    def __str__(self) -> str:
        width = "" if self.width is None else f", width N = {self.width}"
        what = ("critical initialisation" if self.mode == "critical"
                else f"{self.mode.upper()} (kernel-shaped) initialisation")
        lines = [f"{what}: {self.activation or 'no critical layers'}, depth L = {self.depth}"
                 f"{width}, {self.weights} weights"]
        if self.activation is not None:
            if self.input_normalization:
                where = ", ".join(repr(n) for n in self.input_normalization)
                inp = (f"  input: InputNormalization {where} scales every example to mean square input_q = "
                       f"{self.input_q:.6g}: the prediction holds for each example")
            else:
                inp = (f"  input: mean squared coordinate input_q = {self.input_q:.6g} puts the first critical layer "
                       "at q* (scale every example to it, e.g. with isometry.torch.InputNormalization first)")
            lines += [
                f"  q* = {self.q_star:.6g}   sigma_w2 = {self.sigma_w2:.6g}   sigma_b2 = {self.sigma_b2:.6g}"
                f"   (mu1 = {self.mu1:.6g}, mu2 = {self.mu2:.6g})",
                f"  chosen: {self.choice}",
                inp,
            ]
        else:
            lines.append(f"  chosen: {self.choice}")
        if self.replaced:
            shown = ", ".join(repr(n) for n in self.replaced[:6]) + (
                f" and {len(self.replaced) - 6} more" if len(self.replaced) > 6 else "")
            lines.append(f"  replaced: {len(self.replaced)} activation modules by ShapedActivation "
                         f"{self.activation}: {shown}")
        lines += [
            f"  body: {self.body_description or repr(self.body_span)} (report.body(model))",
            f"  eigenvalues of J J^T over the body ({self.prediction}): mean {self.predicted_mean:.6g}, "
            f"variance sigma^2_JJT = "
            f"{self.predicted_variance:.6g} (tolerance {self.variance_tolerance:.3g}; Var/E^2 = "
            f"{self.predicted_relative_variance:.4g}), largest singular value of J "
            f"{self.predicted_max_singular_value:.6g}",
        ]
        if math.isfinite(self.measured_mean):
            off = self.measurement_disagrees
            lines.append(f"  measured at the example input: mean {self.measured_mean:.4g}, variance "
                         f"{self.measured_variance:.4g} +- {self.measured_variance_se:.2g}"
                         + (f": NOT as predicted ({off}); the theory's assumptions do not hold for this network "
                            "at this input (see the notes)" if off else ""))
        lines.append(f"  reliable: {'yes' if self.reliable else 'NO'} (fluctuation {self.fluctuation:.3g}, "
                     f"L/N = {self.depth_to_width:.3g})")
        lines.append(f"  isometric: {'yes' if self.isometric else 'NO'}" + ("" if self.isometric else f" ({self.reason})"))
        lines.append(f"  rule: {ISOMETRY_RULE}")
        for note in self.notes:
            lines.append(f"  note: {note}")
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
        blocks = [b for b in self.blocks if b.method != "theory" or math.isfinite(b.chi_measured)]
        if blocks:
            lines.append(f"  {'block':<18}{'kind':<12}{'role':<6}{'method':<11}{'q pred':>9}{'q meas':>9}"
                         f"{'chi pred':>9}{'chi meas':>9}{'gain':>9}{'passes':>7}")
            shown_b: list[BlockInit | None] = list(blocks)
            if len(shown_b) > 12:
                shown_b = shown_b[:6] + [None] + shown_b[-5:]
            for b in shown_b:
                if b is None:
                    lines.append(f"  ... {len(blocks) - 11} more blocks ...")
                    continue
                lines.append(f"  {b.name[:17]:<18}{b.kind[:11]:<12}{b.role:<6}{b.method:<11}{b.q_predicted:>9.4g}"
                             f"{b.q_measured:>9.4g}{b.chi_predicted:>9.4g}{b.chi_measured:>9.4g}{b.gain:>9.4g}"
                             f"{b.passes:>7}" + (f"  ({b.note})" if b.note else ""))
        return "\n".join(lines)
