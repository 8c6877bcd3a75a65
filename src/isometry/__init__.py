"""isometry: dynamical isometry in deep networks (Pennington, Schoenholz & Ganguli, NIPS 2017).

The whole public API is re-exported here; importing ``isometry`` never imports torch.
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

__version__ = "0.1.0"

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
]

# --- spectrum (issue 3): free-probability Jacobian spectra -------------------------------
from .spectrum import (  # noqa: E402
    JacobianSpectrum,
    WeightLaw,
    jacobian_spectrum,
    q_star_for_variance,
    universal_spectrum,
    weight_law,
)

__all__ += ["JacobianSpectrum", "WeightLaw", "jacobian_spectrum", "q_star_for_variance", "universal_spectrum", "weight_law"]

# --- empirical (issue 4): random-network spectra and theory-vs-simulation ------------------
from .empirical import Comparison, compare, empirical_spectrum, haar_orthogonal, log_singular_values  # noqa: E402

__all__ += ["Comparison", "compare", "empirical_spectrum", "haar_orthogonal", "log_singular_values"]

# (isometry.torch is a separate subpackage, imported only when torch is installed)
