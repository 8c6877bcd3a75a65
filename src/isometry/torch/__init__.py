"""PyTorch adapters (``pip install "isometry[torch]"``): thin wrappers over the NumPy core.

Importing :mod:`isometry` never imports torch; importing :mod:`isometry.torch` requires it.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError('isometry.torch needs PyTorch: pip install "isometry[torch]"') from exc

__all__: list[str] = []

# --- jacobians (issue 4): exact model Jacobian spectra, top singular values --------------
from .jacobian import jacobian, jacobian_spectrum, top_singular_values  # noqa: E402

__all__ += ["jacobian", "jacobian_spectrum", "top_singular_values"]

# --- initialisation (issue 5): critical_init_, InitReport -----------------------------------
from .init import (  # noqa: E402
    DEFAULT_SIGMA0_2,
    ISOMETRY_RULE,
    InitReport,
    LayerInit,
    choose_critical_point,
    critical_init_,
    delta_orthogonal_,
)
from .modules import Erf, LinearActivation, ShiftedReLU, activation_module, detect_activation, mlp  # noqa: E402

__all__ += [
    "critical_init_",
    "InitReport",
    "LayerInit",
    "choose_critical_point",
    "delta_orthogonal_",
    "DEFAULT_SIGMA0_2",
    "ISOMETRY_RULE",
    "Erf",
    "ShiftedReLU",
    "LinearActivation",
    "activation_module",
    "detect_activation",
    "mlp",
]
