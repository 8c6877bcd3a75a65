"""Kernel shaping: DKS (Martens et al. 2021) and TAT (Zhang et al. 2022) in the NumPy/SciPy core.

* :func:`dks_transform`, :func:`tat_transform` -> :class:`KernelShaping` (the shaped
  :class:`isometry.Activation` and its parameters; ``.isometry()`` -> :class:`ShapingIsometry`);
* :func:`shaped_activation`: phi_hat(h) = output_scale * (phi(input_scale * h + input_shift) + output_shift);
* local maps at unit length: :func:`local_maps` -> :class:`LocalMaps` (Q(1), Q'(1), C(0), C'(1),
  C'(0), C''(1)), :func:`local_c_map`; the Q-map is :func:`isometry.q_map` with sigma_w2 = 1, sigma_b2 = 0;
* architectures (subnetwork maximising functions): :class:`Chain`, :class:`ResidualChain`,
  :class:`Composed`, and
  :func:`network_c_map` composing the local C-map through them.

No torch here; the torch module of a shaped activation is :class:`isometry.torch.shaped.ShapedActivation`.
"""

from .activation import shaped_activation
from .local import Chain, Composed, LocalMaps, ResidualChain, local_c_map, local_maps, network_c_map
from .transforms import KernelShaping, ShapingIsometry, dks_transform, tat_transform

__all__ = [
    "dks_transform",
    "tat_transform",
    "KernelShaping",
    "ShapingIsometry",
    "shaped_activation",
    "LocalMaps",
    "local_maps",
    "local_c_map",
    "network_c_map",
    "Chain",
    "ResidualChain",
    "Composed",
]
