"""Free-probability spectra of deep-network Jacobians.

Public API: :func:`jacobian_spectrum` (-> :class:`JacobianSpectrum`), :func:`universal_spectrum`
(-> :class:`UniversalSpectrum`), the base class :class:`Spectrum` (scipy.stats verbs),
:func:`jacobian_variance`, :func:`q_star_for_variance`, the weight laws (:class:`WeightLaw`,
:func:`weight_law`), and the closed forms in :mod:`isometry.spectrum.closed_forms`.
"""

from .base import LogEigenvalues, SingularValues, Spectrum
from .closed_forms import (
    bernoulli_lambda_max,
    fuss_catalan_density,
    fuss_catalan_lambda_max,
    fuss_catalan_moments,
    polynomial_density,
)
from .core import (
    MAX_DEPTH,
    BandSpectrum,
    JacobianSpectrum,
    UniversalSpectrum,
    jacobian_spectrum,
    jacobian_variance,
    q_star_for_variance,
    universal_spectrum,
)
from .s_transforms import WeightLaw, weight_law

__all__ = [
    "Spectrum",
    "BandSpectrum",
    "JacobianSpectrum",
    "UniversalSpectrum",
    "LogEigenvalues",
    "SingularValues",
    "MAX_DEPTH",
    "jacobian_spectrum",
    "jacobian_variance",
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

from .residual import ResidualSpectrum, residual_spectrum  # noqa: E402

__all__ += ["ResidualSpectrum", "residual_spectrum"]
