"""Free-probability spectra of deep-network Jacobians (issue 3).

Public API: :func:`jacobian_spectrum`, :class:`JacobianSpectrum`,
:func:`q_star_for_variance`, :func:`universal_spectrum`, :class:`WeightLaw`,
:func:`weight_law`, and the closed forms in :mod:`isometry.spectrum.closed_forms`.
"""

from .closed_forms import (
    bernoulli_lambda_max,
    fuss_catalan_density,
    fuss_catalan_lambda_max,
    fuss_catalan_moments,
    polynomial_density,
)
from .core import JacobianSpectrum, jacobian_spectrum, q_star_for_variance, universal_spectrum
from .s_transforms import WeightLaw, weight_law

__all__ = [
    "JacobianSpectrum",
    "jacobian_spectrum",
    "q_star_for_variance",
    "universal_spectrum",
    "WeightLaw",
    "weight_law",
    "bernoulli_lambda_max",
    "fuss_catalan_density",
    "fuss_catalan_lambda_max",
    "fuss_catalan_moments",
    "polynomial_density",
]
