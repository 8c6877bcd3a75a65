"""The networks of the initialiser benchmark (E4): MLPs, deep CNNs and residual networks.

Every network is an ``nn.Sequential`` read from left to right as

* *front*: ``nn.Unflatten`` for the convolutional networks (the data sets store examples flat,
  channel-major) and, when an initialiser puts one there, an
  :class:`isometry.torch.InputNormalization` before it;
* *stem*: one affine layer from the data to ``width`` units or channels, with no activation;
* *body*: ``depth`` blocks of one width, the sub-map whose input-output Jacobian the theory
  describes and whose spectrum is measured at initialisation for every run
  (:func:`isometry.experiments.measure_body`):

  - ``mlp``: ``[Linear(N, N), phi]`` x depth (the MLP of :func:`isometry.torch.mlp`);
  - ``cnn``: ``[Conv(N, N, 3, padding=1), phi]`` x depth (1-d or 2-d convolutions, by the data);
  - ``resnet``: ``depth`` residual blocks ``w x + v Conv(phi(Conv(x)))`` with constant weights
    w^2 + v^2 = 1 (the "normalised sums" kernel shaping needs; w = :data:`SHORTCUT_WEIGHT`), in a
    :class:`ResidualNetwork` (the other two are ``nn.Sequential``);

* *head*: ``Linear(N, C)`` for the MLP; global average pooling, ``Flatten`` and ``Linear(N, C)``
  for the convolutional networks.

The layers keep PyTorch's default initialisation (drawn from torch's global generator); build
them under a seed (:func:`build_network` does) and let an initialiser overwrite them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..torch import InputNormalization, activation_module
from .config import SHORTCUT_WEIGHT

__all__ = ["ResidualNetwork", "build_network", "split_network", "SHORTCUT_WEIGHT", "input_shape"]

class ResidualNetwork(nn.Module):
    """front -> stem -> ``depth`` blocks x -> w x + v conv2(phi(conv1(x))) -> head.

    The blocks are written out in :meth:`body` (the convolutions of block k are
    ``blocks[k][0]`` and ``blocks[k][2]``, its unit ``blocks[k][1]``), not hidden in a block
    module, so that graph readers (``torch.fx``; :func:`isometry.torch.critical_init_`) see every
    layer. w^2 + v^2 = 1: the normalised sums kernel shaping needs (Martens et al. 2021).

    Args:
        front: the modules before the stem (``nn.Unflatten``, an optional InputNormalization).
        stem: the convolution from the data's channels to ``width``.
        width, depth: channels and blocks; ``activation``: the unit (deep-copied per block).
        dims: 1 or 2 (``Conv1d`` or ``Conv2d``; 3 x 3 kernels, padding 1).
        head: the modules after the blocks (pooling, flatten, readout).
        shortcut_weight: w in [0, 1].
    """

    def __init__(self, front: nn.Sequential, stem: nn.Module, width: int, depth: int, activation: nn.Module,
                 dims: int, head: nn.Sequential, shortcut_weight: float = SHORTCUT_WEIGHT):
        super().__init__()
        if not 0.0 <= shortcut_weight <= 1.0:
            raise ValueError(f"shortcut_weight must lie in [0, 1], got {shortcut_weight!r}")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.front = front
        self.stem = stem
        self.blocks = nn.ModuleList(
            nn.ModuleList([conv(width, width, 3, padding=1), _copy(activation), conv(width, width, 3, padding=1)])
            for _ in range(depth))
        self.head = head
        self.shortcut_weight = float(shortcut_weight)
        self.residual_weight = math.sqrt(1.0 - self.shortcut_weight ** 2)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The residual blocks."""
        for conv1, act, conv2 in self.blocks:
            x = self.shortcut_weight * x + self.residual_weight * conv2(act(conv1(x)))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(self.front(x))))


class _Call(nn.Module):
    """A bound method as a module (the residual network's body, for Jacobian measurements)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def input_shape(d_in: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The (channels, *spatial) shape of a flat example of ``d_in`` features for data whose examples
    have ``shape``; the channels grow when a preprocessing step appended coordinates (dks's
    per-location normalisation adds one channel)."""
    spatial = int(math.prod(shape[1:]))
    if d_in % spatial:
        raise ValueError(f"{d_in} features are not a whole number of channels of {shape[1:]} positions")
    return (d_in // spatial, *shape[1:])


def build_network(architecture: str, *, d_in: int, n_classes: int, depth: int, width: int,
                  activation: str | nn.Module, shape: tuple[int, ...] | None = None,
                  generator: torch.Generator | int | None = None) -> nn.Sequential:
    """The ``architecture`` network (``"mlp"``, ``"cnn"`` or ``"resnet"``) with PyTorch's default
    initialisation, drawn under ``generator`` (an int seed or a ``torch.Generator``; None: torch's
    global state, as ``nn.Linear`` does); ``shape``: the (channels, *spatial) shape of one example
    (convolutional networks; the data are stored flat).

    >>> net = build_network("cnn", d_in=64, n_classes=10, depth=3, width=8, activation="tanh", shape=(1, 8, 8))
    >>> net(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
    """
    act = activation if isinstance(activation, nn.Module) else activation_module(activation)
    seed = None
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(2 ** 62, (1,), generator=generator))
    elif generator is not None:
        seed = int(generator)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if architecture == "mlp":
            layers: list[nn.Module] = [nn.Linear(d_in, width)]
            for _ in range(depth):
                layers += [nn.Linear(width, width), _copy(act)]
            layers.append(nn.Linear(width, n_classes))
            return nn.Sequential(*layers)
        if architecture not in ("cnn", "resnet"):
            raise ValueError(f"architecture must be 'mlp', 'cnn' or 'resnet', got {architecture!r}")
        if shape is None:
            raise ValueError("a convolutional network needs shape, the (channels, *spatial) shape of an example")
        shape = input_shape(d_in, tuple(shape))
        dims = len(shape) - 1
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        if architecture == "resnet":
            return ResidualNetwork(nn.Sequential(nn.Unflatten(1, shape)), conv(shape[0], width, 3, padding=1), width,
                                   depth, act, dims, nn.Sequential(pool, nn.Flatten(), nn.Linear(width, n_classes)))
        layers = [nn.Unflatten(1, shape), conv(shape[0], width, 3, padding=1)]
        for _ in range(depth):
            layers += [conv(width, width, 3, padding=1), _copy(act)]
        layers += [pool, nn.Flatten(), nn.Linear(width, n_classes)]
        return nn.Sequential(*layers)


def _copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def split_network(model: nn.Module, architecture: str, depth: int) -> tuple[nn.Module, nn.Module]:
    """``(front_and_stem, body)`` of a :func:`build_network` model (an InputNormalization an
    initialiser put first included in the front): the body's input is ``front_and_stem(x)``."""
    if isinstance(model, ResidualNetwork):
        return nn.Sequential(model.front, model.stem), _Call(model.body)
    i = 0
    while i < len(model) and isinstance(model[i], (InputNormalization, nn.Unflatten)):
        i += 1
    n_body = depth if architecture == "resnet" else 2 * depth
    if len(model) < i + 1 + n_body + 1:
        raise ValueError(f"a model of {len(model)} modules has no stem and body of depth {depth}")
    return model[: i + 1], model[i + 1: i + 1 + n_body]


#: Largest body input (features x positions) whose Jacobian is formed exactly; larger bodies are
#: measured by stochastic Lanczos quadrature (:func:`isometry.torch.spectrum_estimate`).
EXACT_JACOBIAN_LIMIT = 2048


def measure_body(model: nn.Module, architecture: str, depth: int, x: torch.Tensor) -> dict:
    """The spectrum of J J^T at initialisation, J the Jacobian of the body of a
    :func:`build_network` model at the body inputs of the examples ``x`` (the measured isometry).

    Returns ``measured_mean_eigenvalue`` and ``measured_variance`` (mean and variance of the
    eigenvalues of J J^T, pooled over the inputs), ``measured_max_singular_value`` (the largest
    singular value of J, mean over the inputs), ``jacobian_inputs`` and ``jacobian_method``
    (``"exact"``: J formed, in float64; ``"lanczos"``: a stochastic Lanczos estimate in float64,
    for bodies with more than :data:`EXACT_JACOBIAN_LIMIT` inputs). The model is not changed (a
    float64 copy is measured).
    """
    import copy

    import numpy as np

    from ..torch import jacobian_eigenvalues, spectrum_estimate

    model64 = copy.deepcopy(model).double().cpu().eval()
    pre, body = split_network(model64, architecture, depth)
    with torch.no_grad():
        h0 = pre(x.double().cpu())
    means, variances, smax, pooled = [], [], [], []
    exact = h0[0].numel() <= EXACT_JACOBIAN_LIMIT
    for i, v in enumerate(h0):
        if exact:
            lam = np.asarray(jacobian_eigenvalues(body, v[None], dtype=torch.float64), dtype=np.float64).ravel()
            pooled.append(lam)
            smax.append(float(np.sqrt(max(lam.max(), 0.0))))
        else:
            est = spectrum_estimate(body, v[None], generator=i, dtype=torch.float64)
            means.append(float(est.mean()))
            variances.append(float(est.var()))
            smax.append(float(np.sqrt(max(float(est.support()[1]), 0.0))))
    if exact:
        lam = np.concatenate(pooled)
        mean, var = float(lam.mean()), float(lam.var())
    else:  # pool the per-input laws: mean of means, mean of (variance + mean^2) minus the mean squared
        mean = float(np.mean(means))
        var = float(np.mean(np.asarray(variances) + np.asarray(means) ** 2) - mean ** 2)
    return {"measured_mean_eigenvalue": mean, "measured_variance": var,
            "measured_max_singular_value": float(np.mean(smax)), "jacobian_inputs": int(len(h0)),
            "jacobian_method": "exact" if exact else "lanczos"}
