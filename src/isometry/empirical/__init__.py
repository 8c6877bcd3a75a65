"""Empirical Jacobian spectra of random networks and theory-vs-simulation comparison.

NumPy/SciPy only (no torch). The main names are re-exported from :mod:`isometry`:
:func:`empirical_eigenvalues`, :func:`log_singular_values`, :func:`haar_orthogonal`,
:func:`compare` and its result :class:`Comparison`.
"""

from .compare import Comparison, compare, ks_distance, ks_distance_nonzero
from .networks import empirical_eigenvalues, jacobian_product, log_singular_values, memory_estimate
from .sampling import gaussian_matrix, haar_orthogonal

__all__ = [
    "Comparison",
    "compare",
    "ks_distance",
    "ks_distance_nonzero",
    "empirical_eigenvalues",
    "jacobian_product",
    "log_singular_values",
    "memory_estimate",
    "gaussian_matrix",
    "haar_orthogonal",
]
