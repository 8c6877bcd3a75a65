"""PyTorch adapters (``pip install "isometry[torch]"``): thin wrappers over the NumPy core.

Importing :mod:`isometry` never imports torch; importing :mod:`isometry.torch` requires it.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError('isometry.torch needs PyTorch: pip install "isometry[torch]"') from exc

__all__: list[str] = []

# --- jacobians (issue 4): exact model Jacobian spectra, top singular values --------------

# --- initialisation (issue 5): critical_init_, InitReport -----------------------------------
