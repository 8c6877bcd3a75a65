"""isometry: dynamical isometry in deep networks (Pennington, Schoenholz & Ganguli, NIPS 2017).

The whole public API is re-exported here; importing ``isometry`` never imports torch
(``isometry.torch`` is a separate subpackage, imported only when torch is installed).

* activations: :func:`get_activation`, :class:`Activation`, :data:`ACTIVATIONS`;
* mean field: :func:`q_star`, :func:`chi`, :func:`critical_point`, :func:`phase_diagram`, ...;
* free-probability spectra of J J^T: :func:`jacobian_spectrum`, :func:`universal_spectrum`
  (laws with the scipy.stats verbs), :func:`jacobian_variance`, :func:`q_star_for_variance`;
* random networks: :func:`empirical_eigenvalues`, :func:`compare`;
* kernel shaping (DKS/TAT): :func:`dks_transform`, :func:`tat_transform`.
"""

from .activations import ACTIVATIONS, Activation, get_activation
from .meanfield import (
    CriticalLine,
    CriticalPoint,
    PhaseDiagram,
    c_map,
    c_star,
    chi,
    critical_line,
    critical_point,
    e_phi2,
    mu,
    network_parameters,
    phase_diagram,
    q_map,
    q_star,
    xi_c,
    xi_q,
)
from .spectrum import (
    JacobianSpectrum,
    Spectrum,
    UniversalSpectrum,
    WeightLaw,
    jacobian_spectrum,
    jacobian_variance,
    q_star_for_variance,
    universal_spectrum,
    weight_law,
)
from .empirical import Comparison, compare, empirical_eigenvalues, haar_orthogonal, log_singular_values
from .shaping import KernelShaping, ShapingIsometry, dks_transform, tat_transform

__version__ = "0.2.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "get_activation",
    "CriticalLine",
    "CriticalPoint",
    "PhaseDiagram",
    "c_map",
    "c_star",
    "chi",
    "critical_line",
    "critical_point",
    "e_phi2",
    "mu",
    "network_parameters",
    "phase_diagram",
    "q_map",
    "q_star",
    "xi_c",
    "xi_q",
    "JacobianSpectrum",
    "Spectrum",
    "UniversalSpectrum",
    "WeightLaw",
    "jacobian_spectrum",
    "jacobian_variance",
    "q_star_for_variance",
    "universal_spectrum",
    "weight_law",
    "Comparison",
    "compare",
    "empirical_eigenvalues",
    "haar_orthogonal",
    "log_singular_values",
    "KernelShaping",
    "ShapingIsometry",
    "dks_transform",
    "tat_transform",
]

from .residual import ResidualMeanField, residual_branch_scale, residual_eigenvalues, residual_mean_field  # noqa: E402
from .spectrum import ResidualSpectrum, residual_spectrum  # noqa: E402

__all__ += ["ResidualMeanField", "ResidualSpectrum", "residual_branch_scale", "residual_eigenvalues",
            "residual_mean_field", "residual_spectrum"]
