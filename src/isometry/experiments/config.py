"""The configuration of one training run (no torch here): :class:`RunConfig` and its checks.

A configuration is everything a run depends on; its ``run_id`` is a hash of every field that
changes what is computed (not of where or how often it checkpoints, nor of the ``experiment`` and
``label`` that name it in a grid), so the same configuration always maps to the same record file
``DIR/runs/<run_id>.json``, and experiments whose grids overlap share those runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RunConfig", "OPTIMIZERS", "DATASETS", "DEVICES", "INITIALIZERS", "OUR_INITIALIZERS", "ARCHITECTURES",
           "DATA_SHAPES", "SHORTCUT_WEIGHT", "model_family", "eval_steps", "batch_key", "run_cost", "run_memory", "EVAL_CHUNK"]

#: Rows of test inputs per evaluation chunk (fixed, so a run's logits do not depend on its batch).
EVAL_CHUNK = 2048

#: Optimiser state tensors per parameter (for memory estimates).
_OPTIMIZER_BUFFERS = {"sgd": 0, "momentum": 1, "adam": 2, "rmsprop": 1}

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
DATASETS = ("mnist1d", "digits", "cifar10")

#: How a run's network is initialised: this package's modes (``isometry:<mode>``, the modes of
#: :func:`isometry.torch.critical_init_`) and the peers it is compared with (package and method; see
#: :mod:`isometry.experiments.initializers`, which calls each as its authors document).
OUR_INITIALIZERS = ("isometry:critical", "isometry:dks", "isometry:tat")
INITIALIZERS = OUR_INITIALIZERS + ("pytorch:default", "pytorch:orthogonal", "lsuv", "anyinit", "dks:dks", "dks:tat")

#: The networks a run can train: ``mlp`` (stem, ``depth`` x [Linear, phi], readout), ``cnn``
#: (stem convolution, ``depth`` x [3 x 3 convolution, phi], global average pooling, readout) and
#: ``resnet`` (stem convolution, ``depth`` residual blocks x + W2 phi(W1 x) with 3 x 3 convolutions,
#: pooling, readout); ``width`` is the number of units or channels.
ARCHITECTURES = ("mlp", "cnn", "resnet")

#: The shortcut weight w of every residual block of the ``resnet`` architecture, x -> w x + v f(x) with
#: v = sqrt(1 - w^2) = 0.436: a shortcut-dominated block, so that a deep stack stays close to the identity.
SHORTCUT_WEIGHT = 0.9

#: The shape of one example of each dataset as the convolutional networks read it (channels, *spatial).
DATA_SHAPES = {"digits": (1, 8, 8), "mnist1d": (1, 40), "cifar10": (3, 32, 32)}

#: Device strings a run accepts: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:I``, ``mps``.
DEVICES = "'auto', 'cpu', 'cuda', 'cuda:I' or 'mps'"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")

#: Part of every run id: changes whenever what a configuration computes changes (the model, the
#: input scaling, the training step, the measurements), so a record computed otherwise is never reused.
_RUN_FORMAT = 3

#: Fields that do not change what is computed: where it runs, how often it checkpoints, and the
#: names a grid gives the run (a run shared by two experiments is one run).
_NOT_IN_ID = ("data_dir", "device", "checkpoint_every", "experiment", "label")

#: Fields added after the run format was fixed: part of the run id only when they differ from their
#: default, so the runs of the experiments that do not set them keep their ids.
_IN_ID_UNLESS_DEFAULT = {"initializer": "isometry:critical", "normalize_input": False, "architecture": "mlp"}

_INT_FIELDS = {"depth": 1, "width": 1, "batch_size": 1, "steps": 1, "n_evals": 1, "jacobian_inputs": 0,
               "seed": 0, "data_seed": 0}
_OPTIONAL_INT_FIELDS = {"data_size": 1, "max_test": 1}
_STR_FIELDS = ("activation", "weights", "optimizer", "data", "experiment", "label", "device", "initializer",
               "architecture")


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run depends on.

    The model is a linear stem from the data's features to ``width``, ``depth`` critical layers
    and a readout (:func:`isometry.experiments.build_mlp`, built with :func:`isometry.torch.mlp`),
    initialised by :func:`isometry.torch.critical_init_` at the critical point with fixed point
    ``q_star`` (sigma_w2, sigma_b2 follow from chi = 1), the stem scaled so that the first
    critical layer starts at q^1 = q*.

    Fields: ``activation`` (any registry activation with a torch module), ``weights``
    (``"orthogonal"`` or ``"gaussian"``), ``optimizer`` (sgd | momentum, heavy ball with
    ``momentum`` | adam | rmsprop) at ``learning_rate``; ``steps`` minibatches of ``batch_size``;
    evaluation at step 0 and ``n_evals`` log-spaced steps in [1, steps]; ``target_accuracy``: the
    test accuracy whose first crossing defines ``steps_to_target``; ``stop_at_target``: stop there;
    ``data`` (mnist1d | digits | cifar10, the last read from ``data_dir``), ``data_size`` (see
    :func:`isometry.experiments.load_dataset`), ``data_seed``; ``max_test``: evaluate on the first
    ``max_test`` test examples (None: all); ``jacobian_inputs``: training inputs at which the
    Jacobian of the critical stack is measured at initialisation (0: none); ``device``;
    ``checkpoint_every``: seconds between checkpoints of a long run.

    ``initializer`` (one of :data:`INITIALIZERS`; default ``"isometry:critical"``, the model
    described above) replaces the initialisation: ``isometry:dks`` / ``isometry:tat`` are the
    kernel-shaped modes of :func:`isometry.torch.critical_init_`, the others the peer initialisers
    of :mod:`isometry.experiments.initializers` (``q_star`` and ``weights`` are then unused).
    ``normalize_input`` (this package's modes only) puts an :class:`isometry.torch.InputNormalization`
    first, scaling each example to the mean square its first layer needs, instead of scaling the
    stem by the data set's average. ``architecture``: one of :data:`ARCHITECTURES` (``width``
    counts channels for the convolutional ones).

    Raises ``ValueError`` (``TypeError`` for a wrong type) naming the field and its valid values.

    >>> c = RunConfig(activation="tanh", depth=8, width=32, data="digits")
    >>> c.replace(seed=1).run_id != c.run_id
    True
    """

    activation: str = "tanh"
    weights: str = "orthogonal"
    q_star: float = 0.0259
    depth: int = 32
    width: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 1e-2
    momentum: float = 0.9
    batch_size: int = 128
    steps: int = 1000
    n_evals: int = 30
    target_accuracy: float = 0.5
    stop_at_target: bool = False
    seed: int = 0
    data: str = "mnist1d"
    data_size: int | None = None
    data_seed: int = 0
    max_test: int | None = None
    jacobian_inputs: int = 2
    experiment: str = "custom"
    label: str = ""
    data_dir: str | None = None
    device: str = "auto"
    checkpoint_every: float = 600.0
    initializer: str = "isometry:critical"
    normalize_input: bool = False
    architecture: str = "mlp"

    def __post_init__(self):
        from ..activations import get_activation
        from ..spectrum import weight_law

        for name in _STR_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__} "
                                f"{getattr(self, name)!r}")
        for name, lo in _INT_FIELDS.items():
            self._set(name, _int(name, getattr(self, name), lo))
        for name, lo in _OPTIONAL_INT_FIELDS.items():
            if getattr(self, name) is not None:
                self._set(name, _int(name, getattr(self, name), lo))
        for name in ("q_star", "learning_rate", "momentum", "target_accuracy", "checkpoint_every"):
            self._set(name, _float(name, getattr(self, name)))
        for name in ("stop_at_target", "normalize_input"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
            self._set(name, bool(getattr(self, name)))

        act = get_activation(self.activation)
        if act.torch_module is None:
            raise ValueError(f"activation {self.activation!r} has no torch module, so it cannot be trained")
        self._set("activation", act.name)
        law = weight_law(self.weights)
        if law.name not in ("orthogonal", "gaussian"):
            raise ValueError(f"weights must be 'orthogonal' or 'gaussian' (the laws a network can be drawn from), "
                             f"got {self.weights!r}")
        self._set("weights", law.name)
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {', '.join(OPTIMIZERS)}")
        _check(self.data in DATASETS, "data", self.data, f"one of {', '.join(DATASETS)}")
        _check(self.initializer in INITIALIZERS, "initializer", self.initializer, f"one of {', '.join(INITIALIZERS)}")
        _check(self.architecture in ARCHITECTURES, "architecture", self.architecture,
               f"one of {', '.join(ARCHITECTURES)}")
        if self.normalize_input and self.initializer not in OUR_INITIALIZERS:
            raise ValueError(f"normalize_input applies to this package's initialisers ({', '.join(OUR_INITIALIZERS)}), "
                             f"not to {self.initializer!r}, which is run as its authors document it")
        _check(self.q_star > 0, "q_star", self.q_star, "a finite number > 0")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "a finite number > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        _check(0 < self.target_accuracy <= 1, "target_accuracy", self.target_accuracy, "in (0, 1]")
        _check(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "a finite number >= 0")
        _check(_DEVICE.fullmatch(self.device) is not None, "device", self.device, DEVICES)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise TypeError(f"data_dir must be a string or None, got {type(self.data_dir).__name__}")
        if self.data == "cifar10" and not self.data_dir:
            raise ValueError("data='cifar10' needs data_dir: a directory holding the CIFAR-10 python batches "
                             "data_batch_1..5 and test_batch")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (:meth:`from_dict` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """A configuration from a mapping of fields; a ``run_id`` key is ignored (it is recomputed).

        Raises ``ValueError`` naming any unknown key and the valid ones.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"a run configuration must be a mapping of fields, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in names and k != "run_id")
        if unknown:
            raise ValueError(f"unknown run configuration field(s) {', '.join(unknown)}; valid fields: "
                             f"{', '.join(names)}")
        return cls(**{k: v for k, v in d.items() if k != "run_id"})

    @functools.cached_property
    def run_id(self) -> str:
        """16 hex digits of the SHA-256 of the fields that change what is computed (every field but
        ``data_dir``, ``device``, ``checkpoint_every``, ``experiment`` and ``label``; ``initializer``,
        ``normalize_input`` and ``architecture`` only when they differ from their defaults)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_ID
             and not (k in _IN_ID_UNLESS_DEFAULT and v == _IN_ID_UNLESS_DEFAULT[k])}
        d["format"] = _RUN_FORMAT
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {lo}, got {type(value).__name__} {value!r}")
    if int(value) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def eval_steps(steps: int, n_evals: int) -> list[int]:
    """0 and ``n_evals`` log-spaced integer steps in [1, steps] (deduplicated; always ends at ``steps``).

    >>> eval_steps(100, 3)
    [0, 1, 10, 100]
    """
    s = np.unique(np.round(np.geomspace(1, steps, max(int(n_evals), 1))).astype(int))
    return [0] + sorted({int(v) for v in s} | {int(steps)})


def batch_key(config: RunConfig) -> tuple:
    """The fields runs must share to be trained together as one batched model
    (:func:`isometry.experiments.run_batch`): the data, the architecture, what the initialiser
    changes besides the weights (:func:`model_family`; the input normalisation), the optimiser, the
    minibatch size and the device.
    Learning rate, momentum, seed, weights, q*, the number of steps and the target may differ
    inside a batch."""
    return (config.data, config.data_dir, config.data_size, config.data_seed, config.max_test, config.depth,
            config.width, config.activation, config.optimizer, config.batch_size, config.device,
            config.architecture, model_family(config), config.normalize_input)


#: Initialisers that set weights only: their networks compute with the activation and the inputs as
#: built, so runs of several of them can share one batched model.
_WEIGHTS_ONLY = ("isometry:critical", "pytorch:default", "pytorch:orthogonal", "lsuv", "anyinit")


def model_family(config: RunConfig) -> str:
    """What, besides the weights, the initialiser changes in the network: ``"weights"`` for those
    that set weights only (this package's critical mode and the conventional peers), else the
    initialiser's name (the kernel-shaped ones replace the activation, dks's also the inputs)."""
    return "weights" if config.initializer in _WEIGHTS_ONLY else config.initializer


def _positions(config: RunConfig) -> int:
    """Spatial positions of a convolutional network's feature maps (1 for an MLP)."""
    if config.architecture == "mlp":
        return 1
    return int(np.prod(DATA_SHAPES[config.data][1:]))


def run_cost(config: RunConfig) -> float:
    """An upper bound of a run's arithmetic, in multiply-adds (depth x width^2 x batch x steps): the
    order in which batches are started, longest first."""
    per_layer = config.width ** 2 * (1 if config.architecture == "mlp" else 9 * _positions(config))
    blocks = config.depth * (2 if config.architecture == "resnet" else 1)
    return float(blocks) * per_layer * config.batch_size * config.steps


def run_memory(config: RunConfig, d_in: int, n_classes: int, n_test: int) -> float:
    """Bytes one run of ``config`` needs in a batch (float32): weights, gradients (twice: the
    stacked copy), optimiser buffers, the activations training keeps (every layer) and those of
    one evaluation chunk; ``d_in``, ``n_classes``, ``n_test``: the data's features, classes and
    test examples."""
    n, pos = config.width, _positions(config)
    depth = config.depth * (2 if config.architecture == "resnet" else 1)
    kernel = 1 if config.architecture == "mlp" else 9
    stem = d_in * n if config.architecture == "mlp" else DATA_SHAPES[config.data][0] * n * kernel
    params = stem + n + depth * (n * n * kernel + n) + n * n_classes + n_classes
    copies = 3 + _OPTIMIZER_BUFFERS[config.optimizer]
    acts = (3 * depth * n * config.batch_size + 2 * n * min(n_test, EVAL_CHUNK)) * pos
    return 4.0 * (float(params) * copies + acts)
