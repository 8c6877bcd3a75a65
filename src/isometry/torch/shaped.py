"""The torch module of a shaped activation (DKS/TAT): output_scale * (base(input_scale * h + input_shift) + output_shift).

:func:`isometry.dks_transform` and :func:`isometry.tat_transform` return an :class:`isometry.Activation`
whose ``torch_module`` names :class:`ShapedActivation` with the base unit's own torch module and the
four numbers, so :func:`isometry.torch.activation_module` and :func:`isometry.torch.mlp` build it
like any registry unit, and :func:`isometry.torch.detect_activation` maps it back to the shaped
record (its ``isometry_activation``).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["ShapedActivation"]


def _module_from_spec(spec) -> nn.Module:
    try:
        path, cls_name, kwargs = spec
    except (TypeError, ValueError):
        raise TypeError(f"base must be an nn.Module or a (module path, class name, kwargs) tuple, got {spec!r}") from None
    try:
        cls = getattr(importlib.import_module(path), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"base module {path}.{cls_name} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"base {path}.{cls_name} is not a torch.nn.Module class")
    return cls(**dict(kwargs))


def _number(value, name: str, nonzero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
        isinstance(value, torch.Tensor) and value.numel() == 1
    ):
        try:
            import numpy as np

            if isinstance(value, (np.integer, np.floating)):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be a real number, got {value!r}") from None
    v = float(value)
    if not math.isfinite(v) or (nonzero and v == 0.0):
        raise ValueError(f"{name} must be finite{' and nonzero' if nonzero else ''}, got {value!r}")
    return v


class ShapedActivation(nn.Module):
    """phi_hat(h) = output_scale * (base(input_scale * h + input_shift) + output_shift), elementwise.

    Args:
        base: the unit phi: an ``nn.Module`` or a ``(module path, class name, kwargs)`` record
            (the ``torch_module`` field of an :class:`isometry.Activation`).
        input_scale, input_shift, output_scale, output_shift: the affine maps around phi (python
            floats, so the module computes in the input's dtype).
        name: the name of the shaped activation (as in the NumPy record, e.g. ``"tat(tanh)"``).

    Example:
        >>> m = ShapedActivation(("torch.nn", "Tanh", {}), input_scale=0.5, output_scale=2.0)
        >>> m(torch.zeros(2))
        tensor([0., 0.])
    """

    def __init__(self, base: nn.Module | tuple[str, str, Mapping[str, Any]], input_scale: float = 1.0,
                 input_shift: float = 0.0, output_scale: float = 1.0, output_shift: float = 0.0,
                 name: str | None = None) -> None:
        super().__init__()
        self.base = base if isinstance(base, nn.Module) else _module_from_spec(base)
        self.input_scale = _number(input_scale, "input_scale", nonzero=True)
        self.input_shift = _number(input_shift, "input_shift")
        self.output_scale = _number(output_scale, "output_scale", nonzero=True)
        self.output_shift = _number(output_shift, "output_shift")
        self.name = None if name is None else str(name)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.output_scale * (self.base(self.input_scale * h + self.input_shift) + self.output_shift)

    def extra_repr(self) -> str:
        return (f"input_scale={self.input_scale!r}, input_shift={self.input_shift!r}, "
                f"output_scale={self.output_scale!r}, output_shift={self.output_shift!r}")

    @property
    def isometry_activation(self):
        """The :class:`isometry.Activation` this module computes (None when its base unit is not recognised)."""
        from ..shaping import shaped_activation
        from .modules import detect_activation

        found = detect_activation(self.base)
        if found is None:
            return None
        return shaped_activation(found[0], input_scale=self.input_scale, input_shift=self.input_shift,
                                 output_scale=self.output_scale, output_shift=self.output_shift, name=self.name)
