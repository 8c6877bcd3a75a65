"""PyTorch adapters (``pip install "isometry[torch]"``): thin wrappers over the NumPy core.

Importing :mod:`isometry` never imports torch; importing :mod:`isometry.torch` requires it.

* Jacobians of models: :func:`jacobian`, :func:`jacobian_eigenvalues` (the eigenvalues of
  J J^T at one input), :func:`top_singular_values` (ARPACK, J never formed).
* Initialisers shaped like ``torch.nn.init``: :func:`delta_orthogonal_`, :func:`critical_gain`,
  :func:`critical_orthogonal_`, :func:`critical_bias_`; the model-level :func:`critical_init_`,
  which reads a model's structure from its graph (``torch.fx``, or forward hooks on an example
  input), sets critical layers and residual blocks from theory, calibrates the blocks no theory
  covers (normalised, attention, transformer layers) on an example input, and returns an
  :class:`InitReport` (per-layer :class:`LayerInit`, per-block :class:`BlockInit`) whose
  ``body(model)`` is the sub-map its prediction describes. Its :data:`MODES`: ``"critical"``
  (the paper's), ``"dks"`` and ``"tat"`` (kernel shaping: the activation modules are replaced by
  :class:`ShapedActivation`).
* Measured spectra of large Jacobians: :func:`spectrum_estimate` (stochastic Lanczos quadrature,
  J never formed) returning a :class:`SpectrumEstimate`.
* Modules: :class:`Erf`, :class:`ShiftedReLU`, :class:`LinearActivation`, :func:`activation_module`,
  :func:`detect_activation` (both derived from ``Activation.torch_module``),
  :func:`functional_activation_module` (``torch.tanh``, ``F.relu``, ... as modules),
  :class:`InputNormalization` (each example to one mean square) and the MLP builder :func:`mlp`.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError('isometry.torch needs PyTorch: pip install "isometry[torch]"') from exc

from .estimate import SpectrumEstimate, spectrum_estimate
from .init import choose_critical_point, critical_init_
from .modes import MODES
from .initializers import critical_bias_, critical_gain, critical_orthogonal_, delta_orthogonal_
from .jacobian import jacobian, jacobian_eigenvalues, top_singular_values
from .modules import (
    Erf,
    InputNormalization,
    LinearActivation,
    ShiftedReLU,
    activation_module,
    detect_activation,
    functional_activation_module,
    mlp,
)
from .report import (
    DEFAULT_SIGMA0_2,
    ISOMETRY_RULE,
    RELIABILITY_RULE,
    VARIANCE_TOLERANCE_RULE,
    BlockInit,
    InitReport,
    LayerInit,
)
from .shaped import ShapedActivation

__all__ = [
    "jacobian",
    "jacobian_eigenvalues",
    "top_singular_values",
    "spectrum_estimate",
    "SpectrumEstimate",
    "delta_orthogonal_",
    "critical_gain",
    "critical_orthogonal_",
    "critical_bias_",
    "critical_init_",
    "choose_critical_point",
    "MODES",
    "InitReport",
    "LayerInit",
    "BlockInit",
    "DEFAULT_SIGMA0_2",
    "ISOMETRY_RULE",
    "RELIABILITY_RULE",
    "VARIANCE_TOLERANCE_RULE",
    "Erf",
    "ShiftedReLU",
    "LinearActivation",
    "ShapedActivation",
    "InputNormalization",
    "activation_module",
    "detect_activation",
    "functional_activation_module",
    "mlp",
]

from .conv import conv_orthogonal_  # noqa: E402

__all__ += ["conv_orthogonal_"]
