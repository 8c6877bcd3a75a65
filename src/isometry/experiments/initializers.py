"""The initialisers of the benchmark (E4), each called as its authors document it.

:func:`initialize` fills a freshly built network (:func:`isometry.experiments.networks.build_network`,
PyTorch's default initialisation drawn under the run's seed) by one of
:data:`isometry.experiments.INITIALIZERS` and returns the record of how: the initialiser's name,
its package and version, the call made (as text) and notes. Every peer is called through its
documented entry point with its documented defaults:

- ``pytorch:default``: nothing is changed; the layers keep their ``reset_parameters()``
  (``kaiming_uniform_(w, a=sqrt(5))``, biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn under
  ``torch.manual_seed(seed)``.
- ``pytorch:orthogonal``: ``torch.nn.init.orthogonal_(m.weight, gain=torch.nn.init.calculate_gain(
  nonlinearity))`` and ``torch.nn.init.zeros_(m.bias)`` for every ``Linear`` and convolution (the
  usual loop over ``model.modules()``), under ``torch.manual_seed(seed)``.
- ``lsuv`` (0.3.0): ``lsuv.lsuv_with_singlebatch(model, batch, device=torch.device("cpu"),
  verbose=False)`` with the run's first training minibatch of an unshuffled loader (the first
  ``batch_size`` training examples), under ``torch.manual_seed(seed)``: orthonormal weights, then
  each layer's output scaled to unit standard deviation.
- ``anyinit`` (0.4.0): ``anyinit.initialize(model, seed=seed)``: its default analytic mode
  (Gaussian weights whose scale is solved from each activation's moment map, no data).
- ``dks:dks`` and ``dks:tat`` (0.1.2, its PyTorch front-end ``dks.pytorch``): the activation
  transformed by ``dks.pytorch.activation_transform.get_transformed_activations([name],
  method="DKS"|"TAT", subnet_max_func=...)`` with the network's subnetwork maximising function
  (a chain of ``depth`` layers; for the residual network the function of dks's modified-ResNet
  example with one activation per branch), every weight drawn by
  ``dks.pytorch.parameter_sampling_functions.scaled_uniform_orthogonal_`` (delta initialisation
  for convolutions), zero biases, and the data passed through
  ``dks.pytorch.data_preprocessing.per_location_normalization`` (:func:`prepare_inputs`). ReLU
  networks use dks's Leaky ReLU (its README: ReLUs are only partially supported by DKS and not
  by TAT; "one should use Leaky ReLUs"): the record says so.
- ``isometry:critical``, ``isometry:dks``, ``isometry:tat``: :func:`isometry.torch.critical_init_`
  with ``mode="critical"`` (at the run's ``q_star``), ``"dks"`` or ``"tat"``, an
  :class:`isometry.torch.InputNormalization` in front when the run asks for it
  (``normalize_input``), and ``example_input`` for the convolutional networks (their blocks
  without theory are calibrated on it). Under TAT a ReLU network is shaped as a Leaky ReLU.

The peers draw from torch's global generator; they run inside ``torch.random.fork_rng``, so the
caller's random state is untouched and the same seed gives the same weights.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..activations import get_activation
from ..torch import InputNormalization, activation_module, critical_init_
from .config import INITIALIZERS, OUR_INITIALIZERS, SHORTCUT_WEIGHT
from .networks import ResidualNetwork

__all__ = ["initialize", "prepare_inputs", "TransformedActivation", "initializer_package", "dks_activation_name"]

#: The package each initialiser comes from (its version is read from the installed distribution).
PACKAGES = {"isometry:critical": "isometry", "isometry:dks": "isometry", "isometry:tat": "isometry",
            "pytorch:default": "torch", "pytorch:orthogonal": "torch", "lsuv": "lsuv", "anyinit": "anyinit",
            "dks:dks": "dks", "dks:tat": "dks"}

#: dks's own advice for the units it does not fully support (README: "ReLUs are only partially
#: supported by DKS, and unsupported by TAT ... one should use Leaky ReLUs").
_DKS_REPLACES = {"relu": "leaky_relu"}

#: Unit names dks's PyTorch front-end knows (``get_transformed_activations``'s docstring).
_DKS_NAMES = ("tanh", "softplus", "leaky_relu", "relu", "selu", "elu", "swish", "sigmoid", "erf", "bentid", "atan",
              "asinh", "square", "softsign", "gelu", "gelu_exact")


def initializer_package(name: str) -> tuple[str, str | None]:
    """(distribution, installed version or None) of initialiser ``name``."""
    if name not in PACKAGES:
        raise ValueError(f"initializer must be one of {', '.join(INITIALIZERS)}, got {name!r}")
    dist = PACKAGES[name]
    if dist == "isometry":  # this package's version is its own (an editable install's metadata can lag)
        from .. import __version__

        return dist, __version__
    try:
        return dist, importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return dist, None


def _require(name: str) -> None:
    dist, version = initializer_package(name)
    if version is None:
        raise ValueError(f"initializer {name!r} needs the {dist} package: pip install \"isometry[bench]\"")


def dks_activation_name(activation: str) -> str:
    """The name of the unit dks transforms for a network of ``activation`` (a registry name):
    itself where dks knows it, Leaky ReLU for ReLU (dks's advice); ``ValueError`` otherwise."""
    act = get_activation(activation).name
    name = _DKS_REPLACES.get(act, act)
    if name not in _DKS_NAMES:
        raise ValueError(f"dks has no transformation for activation {act!r}; it knows {', '.join(_DKS_NAMES)}")
    return name


class TransformedActivation(nn.Module):
    """A unit given as a function (the transformed activations dks returns), as a module.

    ``name`` says which (e.g. ``"dks TAT leaky_relu"``); ``parameters`` the transformation's
    numbers where known.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str):
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return repr(self.name)


def _chain_subnet(depth: int):
    def subnet_max_func(x, r_fn):
        for _ in range(depth):
            x = r_fn(x)
        return x

    return subnet_max_func


def _resnet_subnet(depth: int, shortcut_weight: float):
    """dks's modified-ResNet subnetwork maximising function for ``depth`` blocks
    w x + v f(x) with one activation in f and no activation after the blocks."""
    def subnet_max_func(x, r_fn):
        res_branch_subnetwork = r_fn(x)
        for _ in range(depth):
            x = shortcut_weight ** 2 * x + (1.0 - shortcut_weight ** 2) * r_fn(x)
        return max(x, res_branch_subnetwork)

    return subnet_max_func


@functools.lru_cache(maxsize=32)
def _dks_function(method: str, name: str, architecture: str, depth: int):
    """dks's transformed activation (solved once per process and network)."""
    from dks.pytorch import activation_transform  # the PyTorch front-end the authors document

    subnet = _resnet_subnet(depth, SHORTCUT_WEIGHT) if architecture == "resnet" else _chain_subnet(depth)
    with warnings.catch_warnings():  # its autograd solver overflows harmlessly while it searches
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return activation_transform.get_transformed_activations([name], method=method,
                                                                    subnet_max_func=subnet)[name]


def prepare_inputs(name: str, x: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The inputs initialiser ``name`` feeds its network: dks's per-location normalisation for
    ``dks:*`` (``per_location_normalization(x)``, default ``homog_mode="one"``: a coordinate 1 is
    appended at every location, then each location is scaled to mean square 1; over the features of
    an MLP's input, over the channels of every position of an image, channels last as dks
    expects), unchanged for the others. ``x``: (n, d) float32, flat; ``shape``: (channels,
    *spatial) of an example for the convolutional networks (None: an MLP). Returns flat float32
    (n, d') (channel-major for images)."""
    if not name.startswith("dks:"):
        return x
    from dks.pytorch.data_preprocessing import per_location_normalization

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if shape is not None and len(shape) > 1:
        t = t.reshape(len(t), *shape).movedim(1, -1)  # channels last
        out = per_location_normalization(t).movedim(-1, 1)
    else:
        out = per_location_normalization(t)
    return out.reshape(len(x), -1).contiguous().numpy().astype(np.float32, copy=False)


def _affine_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]


def _replace_activations(model: nn.Module, make: Callable[[], nn.Module], base: type) -> int:
    """Replace every activation module of type ``base`` by ``make()``; returns how many."""
    n = 0
    for parent in list(model.modules()):
        for key, child in list(parent.named_children()):
            if type(child) is base:
                new = make()
                if isinstance(parent, (nn.Sequential, nn.ModuleList)):
                    parent[int(key)] = new
                else:
                    setattr(parent, key, new)
                n += 1
    return n


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _insert_normalization(model: nn.Module) -> None:
    front = model.front if isinstance(model, ResidualNetwork) else model
    if not (len(front) and isinstance(front[0], InputNormalization)):
        front.insert(0, InputNormalization())


def initialize(name: str, model: nn.Module, *, activation: str, architecture: str, depth: int, seed: int,
               batch: torch.Tensor, q_star: float | None = None, weights: str = "orthogonal",
               normalize_input: bool = False) -> tuple[nn.Module, dict]:
    """Initialise ``model`` (built by :func:`isometry.experiments.networks.build_network`) by
    initialiser ``name`` and return ``(model, record)``.

    ``model`` is changed in place (the ``dks:*`` initialisers also replace its activation modules,
    ``normalize_input`` puts an InputNormalization first); ``batch``: the first training minibatch
    (LSUV's data, the calibration input of this package's modes for convolutional networks; the
    inputs as :func:`prepare_inputs` gives them). ``q_star``, ``weights``: ``isometry:critical`` only.

    The record: ``name``, ``package``, ``version``, ``call`` (the call made, as text), ``notes``
    (what differs from the network as built, e.g. dks's Leaky ReLU for a ReLU network) and, for
    this package's modes, ``predicted_mean`` / ``predicted_variance`` of the eigenvalues of J J^T
    over the body (the :class:`isometry.torch.InitReport`'s), ``q_star``, ``input_q`` and
    ``shaping`` (the shaped activation's parameters).
    """
    if name not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {', '.join(INITIALIZERS)}, got {name!r}")
    if normalize_input and name not in OUR_INITIALIZERS:
        raise ValueError(f"normalize_input applies to {', '.join(OUR_INITIALIZERS)}, not to {name!r}")
    _require(name)
    dist, version = initializer_package(name)
    act = get_activation(activation)
    rec: dict = {"name": name, "package": dist, "version": version, "notes": []}
    conv = architecture != "mlp"
    if name in OUR_INITIALIZERS:
        mode = name.split(":", 1)[1]
        if normalize_input:
            _insert_normalization(model)
        kw = {"q_star": q_star, "weights": weights} if mode == "critical" else {}
        args = "".join(f", {k}={v!r}" for k, v in kw.items())
        if conv:
            args += ", example_input=batch"
        rec["call"] = (f"isometry.torch.critical_init_(model, mode={mode!r}{args}, generator={seed})"
                       + ("  (model with an isometry.torch.InputNormalization first)" if normalize_input else ""))
        report = critical_init_(model, mode=mode, example_input=batch if conv else None, generator=seed, **kw)
        rec.update(predicted_mean=_num(report.predicted_mean), predicted_variance=_num(report.predicted_variance),
                   q_star=_num(report.q_star), input_q=_num(report.input_q), depth=report.depth)
        if report.shaping is not None:
            rec["shaping"] = report.shaping.to_dict()
            shaped = report.shaping.activation.name
            if shaped != act.name:
                rec["notes"].append(f"activation shaped as {shaped}")
        rec["notes"] += list(report.notes)
    elif name == "pytorch:default":
        rec["call"] = (f"torch.manual_seed({seed}); the layers' reset_parameters() (kaiming_uniform_(weight, "
                       "a=math.sqrt(5)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)))")
    elif name == "pytorch:orthogonal":
        nonlinearity = act.name if act.name in ("tanh", "relu", "leaky_relu", "sigmoid", "selu", "linear") else None
        if nonlinearity is None:
            raise ValueError(f"torch.nn.init.calculate_gain has no gain for activation {act.name!r}")
        gain = nn.init.calculate_gain(nonlinearity)
        with _seeded(seed), torch.no_grad():
            for m in _affine_layers(model):
                nn.init.orthogonal_(m.weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        rec["call"] = (f"torch.manual_seed({seed}); for every Linear/Conv m: torch.nn.init.orthogonal_(m.weight, "
                       f"gain=torch.nn.init.calculate_gain({nonlinearity!r})) (= {gain:.6g}); "
                       "torch.nn.init.zeros_(m.bias)")
    elif name == "lsuv":
        import lsuv

        with _seeded(seed), contextlib.redirect_stdout(io.StringIO()):
            lsuv.lsuv_with_singlebatch(model, batch, device=torch.device("cpu"), verbose=False)
        rec["call"] = (f"torch.manual_seed({seed}); lsuv.lsuv_with_singlebatch(model, batch, "
                       f"device=torch.device('cpu'), verbose=False)  (batch: the first {len(batch)} training "
                       "examples; defaults needed_std=1.0, std_tol=0.1, max_attempts=10, do_orthonorm=True)")
    elif name == "anyinit":
        import anyinit

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = anyinit.initialize(model, seed=seed)
        rec["call"] = f"anyinit.initialize(model, seed={seed})  (defaults: mode='analytic', distribution='normal')"
        rec["notes"] += [str(w) for w in getattr(report, "warnings", ())][:3]
    else:  # dks:dks, dks:tat
        method = name.split(":", 1)[1].upper()
        unit = dks_activation_name(act.name)
        fn = _dks_function(method, unit, architecture, depth)
        _replace_activations(model, lambda: TransformedActivation(fn, f"dks {method} {unit}"),
                             type(activation_module(act)))
        from dks.pytorch.parameter_sampling_functions import scaled_uniform_orthogonal_

        with _seeded(seed), torch.no_grad(), warnings.catch_warnings():
            # its delta initialisation indexes with a list (a deprecation warning of torch 2.x; same result)
            warnings.simplefilter("ignore")
            for m in _affine_layers(model):
                scaled_uniform_orthogonal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        subnet = (f"the modified-ResNet function of dks's example ({depth} blocks, shortcut weight "
                  f"{SHORTCUT_WEIGHT}, one activation per branch)" if architecture == "resnet"
                  else f"a chain of {depth} layers: for _ in range({depth}): x = r_fn(x)")
        rec["call"] = (f"dks.pytorch.activation_transform.get_transformed_activations([{unit!r}], method={method!r}, "
                       f"subnet_max_func=...)  (subnet_max_func: {subnet}); torch.manual_seed({seed}); for every "
                       "Linear/Conv m: dks.pytorch.parameter_sampling_functions.scaled_uniform_orthogonal_(m.weight), "
                       "torch.nn.init.zeros_(m.bias); inputs: dks.pytorch.data_preprocessing."
                       "per_location_normalization(x)")
        if unit != act.name:
            rec["notes"].append(f"the {act.name} network uses dks's {unit} (dks: ReLUs are only partially supported "
                                f"by DKS and unsupported by TAT; use Leaky ReLUs)")
        odd = [(m.weight.shape[1], m.weight.shape[0]) for m in _affine_layers(model)
               if m.weight.shape[0] != m.weight.shape[1]]
        if odd:
            rec["notes"].append(
                "scaled_uniform_orthogonal_ reads a PyTorch weight (out, in) as (in, out), so a non-square layer "
                "gets its max(sqrt(out/in), 1) factor from the exchanged sizes and scales q by in/out: "
                + ", ".join(f"{i} -> {o}: q x {i / o:.3g}" for i, o in odd)
                + " (the body then starts away from the q = 1 DKS/TAT assume; called as documented, not corrected)")
    return model, rec


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None
