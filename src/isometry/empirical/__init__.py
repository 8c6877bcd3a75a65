"""Empirical Jacobian spectra of random networks and theory-vs-simulation comparison.

NumPy/SciPy only (no torch). Public names are re-exported from :mod:`isometry`.
"""

from .compare import Comparison, compare, ks_distance
from .networks import empirical_spectrum, jacobian_product, log_singular_values, network_parameters
from .sampling import HaarOrthogonal, gaussian_matrix, haar_orthogonal, householder_haar

__all__ = [
    "Comparison",
    "compare",
    "ks_distance",
    "empirical_spectrum",
    "jacobian_product",
    "log_singular_values",
    "network_parameters",
    "HaarOrthogonal",
    "gaussian_matrix",
    "haar_orthogonal",
    "householder_haar",
]
