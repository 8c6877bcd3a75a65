"""Argument checks, random-state resolution and memory estimates shared by :mod:`isometry.torch`.

Wrong types raise ``TypeError`` and wrong values ``ValueError``, both naming the parameter
(booleans are not numbers). :func:`check_fits` refuses, before any work starts, a request whose
estimated memory exceeds what the machine has available, saying how much it would need.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _checks
# the package's one set of validators and resource helpers, under the names isometry.torch uses
from .._checks import available_memory, check_int, check_positive, format_bytes, format_seconds

__all__ = ["as_generator", "check_int", "check_positive", "available_memory", "format_bytes", "format_seconds", "check_fits"]


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """``generator`` as torch's random state: a ``torch.Generator`` as is, an int seeds a new CPU
    generator, None means torch's global generator (as in ``torch.nn.init``)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        if not 0 <= int(generator) < 2**64:
            raise ValueError(f"generator must be a seed in [0, 2**64), got {generator!r}")
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def check_fits(need: float, what: str, advice: str) -> None:
    """Raise ``ValueError`` when ``need`` bytes exceed :func:`available_memory` (:func:`isometry._checks.check_fits`).

    ``what`` names the request and its parameters (``"depth=10000000, width=64"``); ``advice``
    says what to change. Nothing is checked when the available memory cannot be read.
    """
    _checks.check_fits(need, what, advice, have=available_memory())
