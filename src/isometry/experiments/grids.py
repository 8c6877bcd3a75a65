"""The named experiments E1, E2, E3 as flat lists of independent :class:`RunConfig`, at four scales.

- **E1** (paper Fig. 4): {tanh sigma_w^2 = 1.05 (q* = 0.0259), tanh sigma_w^2 = 2 (q* = 0.82),
  ReLU (sigma_w^2 = 2)} x {orthogonal, Gaussian} x {SGD, Momentum, Adam, RMSProp} x learning
  rates x seeds. The learning rate is tuned afterwards, per (network, optimiser), by
  :func:`isometry.experiments.analysis.best_learning_rates`.
- **E2** (learning speed vs isometry): orthogonal and Gaussian tanh over a q* grid (SGD):
  steps to target against q*, sigma^2_{JJ^T} and s_max.
- **E3** (paper Fig. 6): orthogonal tanh, depth L x learning rate eta (SGD): the time to target
  tau, plotted as tau / sqrt(L) against eta L.
- **E4** (the initialiser benchmark): every initialiser of :data:`isometry.experiments.INITIALIZERS`
  on the same networks and learning-rate grids, tuned on a seed that is not reported
  (:mod:`isometry.experiments.benchmark`, which defines its grids and scales).

Scales (:data:`SCALES`):

- ``quick``: digits, L = 8, N = 32, 300 steps, 3 seeds (CI; seconds of training).
- ``default``: digits, L = 32, N = 64, 400 steps, 3 seeds, learning-rate grids centred on the
  measured optimum (below); a few minutes on 2 cores for all three experiments.
- ``full``: the larger CPU grids of isometry 0.1 (fixed learning-rate grids half a decade apart,
  E3 over 7 rates in [0.003, 0.3]; E1 and E3 2 seeds, E2 3).
- ``paper``: the paper's sizes: CIFAR-10, L = 200, N = 400, 10^5 steps (for GPUs).

**Centred learning-rate grids** (``quick`` and ``default``). The best learning rate of SGD falls
like 1/L: E3 measured eta* L = 2.1-2.4 for L = 8..32 (digits, orthogonal tanh). Each optimiser's
grid is centred on eta0 = c / L with c = eta* L measured at L = 32 (:data:`LR_TIMES_DEPTH`:
SGD 2, Momentum 0.2, Adam 0.032, RMSProp 0.01) and spaced on the quarter-decade lattice
eta0 x 10^(k/4): E1 and E2 use k = -2, 0, 2 (three rates half a decade apart), E3 k = -2..2 (five
rates, a factor 10^(1/4) apart, so eta L takes the same five values at every depth). The lattice
makes grids that overlap share runs: E1's SGD runs of orthogonal tanh at q* = 0.0259 are E2's and
E3's at L = 32.

**No chosen rate at a grid edge.** After a grid has run, :func:`extend_learning_rates` adds, for
every group (E1: network x optimiser; E2: q* x weights; E3: depth) whose best rate is the smallest
or largest of its grid, the next rate beyond it (one grid step further, every seed), and the choice
is made again; at most ``max_extra`` (default 2) rates per side. A best rate still at an edge after
that is flagged in the analysis (``at_edge``).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from .config import DATASETS, RunConfig

EXPERIMENTS = ("E1", "E2", "E3", "E4")

#: The sizes of the named experiments, smallest first (see the module docstring).
SCALES = ("quick", "default", "full", "paper")

#: Default target test accuracy per dataset (what an MLP reaches comfortably).
TARGETS = {"digits": 0.9, "mnist1d": 0.5, "cifar10": 0.4}

#: The tanh fixed point of the paper's first tanh network (chi = 1 at sigma_w^2 = 1.05).
TANH_Q_STAR_SW105 = 0.0259

#: eta* L of each optimiser, measured at the ``full`` scale (digits, L = 32, N = 64; E1 and E3):
#: the centres eta0 = c / L of the ``quick`` and ``default`` learning-rate grids.
LR_TIMES_DEPTH = {"sgd": 2.0, "momentum": 0.2, "adam": 0.032, "rmsprop": 0.01}

#: The lattice of the centred grids: rates eta0 x 10^(k / LR_STEPS_PER_DECADE).
LR_STEPS_PER_DECADE = 4

#: How many extra rates per side :func:`extend_learning_rates` may add to a group (``run_experiment``'s default).
MAX_EXTRA_RATES = 2


@functools.lru_cache(maxsize=16)
def q_star_for_sigma_w2(activation: str, sigma_w2: float) -> float:
    """The q* on the critical line of ``activation`` where sigma_w^2 takes the given value."""
    from scipy.optimize import brentq

    from isometry.meanfield import critical_point

    f = lambda lq: critical_point(activation, float(np.exp(lq))).sigma_w2 - sigma_w2  # noqa: E731
    return float(np.exp(brentq(f, np.log(1e-6), np.log(1e2), xtol=1e-12)))


def _tanh_q_star_sw2() -> float:
    return round(q_star_for_sigma_w2("tanh", 2.0), 6)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_scale(scale: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else ``ValueError`` naming the valid ones."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    return scale


def _e1_networks() -> list[tuple[str, str, float]]:
    return [
        ("tanh sw2=1.05", "tanh", TANH_Q_STAR_SW105),
        ("tanh sw2=2", "tanh", _tanh_q_star_sw2()),
        ("relu sw2=2", "relu", 1.0),
    ]


def _sizes(scale: str, data: str | None) -> dict:
    if scale == "paper":
        return dict(data=data or "cifar10", depth=200, width=400, batch_size=128, steps=100_000, n_evals=40,
                    seeds=1, stop_at_target=False, jacobian_inputs=2)
    if scale == "quick":
        return dict(data=data or "digits", depth=8, width=32, batch_size=32, steps=300, n_evals=20,
                    seeds=3, stop_at_target=True, jacobian_inputs=1)
    return dict(data=data or "digits", depth=32, width=64, batch_size=64, steps=400, n_evals=30,
                seeds=3 if scale == "default" else 2, stop_at_target=True, jacobian_inputs=2)


#: Seeds per experiment at the ``full`` scale (the 0.1 CPU defaults).
FULL_SEEDS = {"E1": 2, "E2": 3, "E3": 2}

# fixed learning-rate grids per optimiser: (full, paper)
_LR = {
    "sgd": ((0.01, 0.03, 0.1), (1e-4, 1e-3, 1e-2)),
    "momentum": ((0.001, 0.003, 0.01), (1e-5, 1e-4, 1e-3)),
    "adam": ((3e-4, 1e-3, 3e-3), (1e-5, 1e-4, 1e-3)),
    "rmsprop": ((1e-4, 3e-4, 1e-3), (1e-5, 1e-4, 1e-3)),
}


def lattice_rate(optimizer: str, depth: int, k: int) -> float:
    """The rate eta0 x 10^(k/4) of the centred grids, eta0 = :data:`LR_TIMES_DEPTH`[optimizer] / depth,
    to 4 significant digits (every grid computes its rates here, so equal rates are equal floats).

    >>> lattice_rate("sgd", 32, 0), lattice_rate("sgd", 32, 2)
    (0.0625, 0.1976)
    """
    return float(f"{LR_TIMES_DEPTH[optimizer] / depth * 10.0 ** (k / LR_STEPS_PER_DECADE):.4g}")


def _lattice_index(optimizer: str, depth: int, rate: float) -> int | None:
    """k if ``rate`` is :func:`lattice_rate` (optimizer, depth, k) exactly, else None."""
    if optimizer not in LR_TIMES_DEPTH or not rate > 0:
        return None
    k = round(LR_STEPS_PER_DECADE * math.log10(rate * depth / LR_TIMES_DEPTH[optimizer]))
    return k if lattice_rate(optimizer, depth, k) == rate else None


def _centred(optimizer: str, depth: int, ks: Sequence[int]) -> tuple[float, ...]:
    return tuple(lattice_rate(optimizer, depth, k) for k in ks)


def _e2_q_grid(scale: str) -> tuple[float, ...]:
    if scale == "paper":
        return (1e-3, 1e-2, 0.1, 1.0, 10.0)
    if scale == "full":
        return (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    # the two tanh networks of E1 are on the grid, so E2 shares their SGD runs
    return (0.01, TANH_Q_STAR_SW105, 0.1, 0.3, _tanh_q_star_sw2(), 3.0)


def _e3_depths_rates(scale: str, depth: int) -> list[tuple[int, tuple[float, ...]]]:
    if scale == "paper":
        lrs = tuple(float(f"{v:.6g}") for v in np.geomspace(1e-5, 1e-2, 7))
        return [(d, lrs) for d in (25, 50, 100, 200)]
    if scale == "full":
        lrs = tuple(float(f"{v:.6g}") for v in np.geomspace(0.003, 0.3, 7))
        return [(d, lrs) for d in (4, 8, 16, 32)]
    depths = (2, 4, 8) if scale == "quick" else (4, 8, 16, 32)
    return [(d, _centred("sgd", d, range(-2, 3))) for d in depths]


def experiment_grid(name: str, *, scale: str = "default", data: str | None = None, data_dir: str | None = None,
                    seeds: int | None = None, steps: int | None = None, target_accuracy: float | None = None,
                    device: str = "auto", select: Mapping[str, Sequence] | None = None) -> list[RunConfig]:
    """The run configurations of experiment ``name`` (one of :data:`EXPERIMENTS`) at ``scale``
    (one of :data:`SCALES`), before any learning-rate extension (:func:`extend_learning_rates`).

    ``data``/``data_dir`` replace the dataset (mnist1d | digits | cifar10; cifar10 needs
    ``data_dir``); ``seeds`` the number of seeds; ``steps`` the training steps;
    ``target_accuracy`` the target (default per dataset, :data:`TARGETS`); ``device`` the device
    of every run; ``select``: keep only the configurations whose fields take the given values
    (``{"depth": [8, 32], "optimizer": ["adam"]}``; :func:`select_configs`). The list is
    deterministic, so its run ids are stable across invocations. For E4 it holds the tuning runs
    (:func:`isometry.experiments.benchmark.e4_grid`; ``seeds`` counts its reported seeds, added
    later by :func:`isometry.experiments.benchmark.next_round`).
    Invalid values raise ``ValueError`` (``TypeError`` for a wrong type) naming the parameter.

    >>> len(experiment_grid("E3", scale="quick"))
    45
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    check_scale(scale)
    if data is not None and data not in DATASETS:
        raise ValueError(f"data must be one of {', '.join(DATASETS)}, got {data!r}")
    if seeds is not None:
        _positive_int("seeds", seeds)
    if steps is not None:
        _positive_int("steps", steps)
    if name == "E4":
        from .benchmark import e4_grid

        return select_configs(e4_grid(scale, data=data, data_dir=data_dir, steps=steps,
                                      target_accuracy=target_accuracy, device=device), select)
    return select_configs(_named_grid(name, scale, data, data_dir, seeds, steps, target_accuracy, device), select)


def select_configs(configs: Sequence[RunConfig], select: Mapping[str, Sequence] | None) -> list[RunConfig]:
    """The configurations whose fields take one of the values ``select`` gives them
    (``{field: values}``; numbers compare as numbers). ``ValueError`` for an unknown field, and for
    a selection that keeps nothing (naming the values the grid has).

    >>> len(select_configs(experiment_grid("E3", scale="quick"), {"depth": [2, 8]}))
    30
    """
    configs = list(configs)
    if not select:
        return configs
    if not isinstance(select, Mapping):
        raise TypeError(f"select must map field names to lists of values, got {type(select).__name__}")
    fields = {f for f in RunConfig.__dataclass_fields__}
    for k, values in select.items():
        if k not in fields:
            raise ValueError(f"select: unknown field {k!r}; valid fields: {', '.join(sorted(fields))}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            values = [values]
        want = {_as_key(v) for v in values}
        kept = [c for c in configs if _as_key(getattr(c, k)) in want]
        if not kept:
            have = sorted({str(getattr(c, k)) for c in configs})
            raise ValueError(f"select: no configuration has {k} in {sorted(str(v) for v in values)}; the grid has "
                             f"{', '.join(have)}")
        configs = kept
    return configs


def _as_key(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _named_grid(name, scale, data, data_dir, seeds, steps, target_accuracy, device) -> list[RunConfig]:
    z = _sizes(scale, data)
    if scale == "full":
        z["seeds"] = FULL_SEEDS[name]
    if seeds is not None:
        z["seeds"] = _positive_int("seeds", seeds)
    if steps is not None:
        z["steps"] = _positive_int("steps", steps)
    target = TARGETS[z["data"]] if target_accuracy is None else target_accuracy
    base = RunConfig(
        experiment=name, data=z["data"], data_dir=data_dir, depth=z["depth"], width=z["width"],
        batch_size=z["batch_size"], steps=z["steps"], n_evals=z["n_evals"], target_accuracy=target,
        stop_at_target=z["stop_at_target"], jacobian_inputs=z["jacobian_inputs"], device=device,
    )
    seed_list = range(z["seeds"])
    fixed = scale in ("full", "paper")
    out: list[RunConfig] = []
    if name == "E1":
        for (label, act, q), weights, opt in itertools.product(
            _e1_networks(), ("orthogonal", "gaussian"), ("sgd", "momentum", "adam", "rmsprop")
        ):
            lrs = _LR[opt][scale == "paper"] if fixed else _centred(opt, z["depth"], (-2, 0, 2))
            for lr, seed in itertools.product(lrs, seed_list):
                out.append(base.replace(label=label, activation=act, q_star=q, weights=weights, optimizer=opt,
                                        learning_rate=lr, seed=seed))
    elif name == "E2":
        if scale == "paper":
            lrs = (1e-4, 1e-3, 1e-2)
        elif scale == "full":
            lrs = (0.01, 0.03, 0.1)
        else:
            lrs = _centred("sgd", z["depth"], (-2, 0, 2))
        for q, weights, lr, seed in itertools.product(_e2_q_grid(scale), ("orthogonal", "gaussian"), lrs, seed_list):
            out.append(base.replace(label=f"tanh q*={q:g}", activation="tanh", q_star=q, weights=weights,
                                    optimizer="sgd", learning_rate=lr, seed=seed, stop_at_target=True))
    else:  # E3
        for (depth, lrs), seed in itertools.product(_e3_depths_rates(scale, z["depth"]), seed_list):
            for lr in lrs:
                out.append(base.replace(label=f"L={depth}", activation="tanh", q_star=TANH_Q_STAR_SW105,
                                        weights="orthogonal", optimizer="sgd", learning_rate=lr, depth=depth,
                                        seed=seed, stop_at_target=True))
    return out


#: The fields that make one learning-rate group of each experiment (its rate is tuned per group).
LR_GROUPS = {"E1": ("label", "weights", "optimizer"), "E2": ("q_star", "weights"), "E3": ("depth",),
             "E4": ("architecture", "activation", "optimizer", "depth", "initializer")}


def _next_rate(optimizer: str, depth: int, edge: float, neighbour: float) -> float:
    """The rate one grid step beyond ``edge`` (away from ``neighbour``): on the lattice of the centred
    grids when both are on it, else the same ratio again (6 significant digits)."""
    ke, kn = _lattice_index(optimizer, depth, edge), _lattice_index(optimizer, depth, neighbour)
    if ke is not None and kn is not None:
        return lattice_rate(optimizer, depth, 2 * ke - kn)
    return float(f"{edge * edge / neighbour:.6g}")


def extend_learning_rates(experiment: str, configs: Sequence[RunConfig], rows: Sequence[Mapping],
                          initial: Sequence[RunConfig] | None = None,
                          max_extra: int = MAX_EXTRA_RATES) -> list[RunConfig]:
    """The configurations to add so that no group's chosen learning rate is at an edge of its grid.

    For each learning-rate group of ``experiment`` (:data:`LR_GROUPS`) whose best rate over
    ``rows`` (the finished runs of ``configs``; :func:`isometry.experiments.analysis.best_learning_rates`)
    is the smallest or the largest of the group's rates, the next rate one grid step beyond it, for
    every seed the group has, unless ``max_extra`` rates were already added on that side (counted
    against ``initial``, the grid before any extension; default ``configs``). Returns [] when
    nothing is to be added (or ``max_extra`` is 0). Deterministic: the same rows give the same
    configurations.
    """
    from .analysis import best_learning_rates

    if experiment not in LR_GROUPS or max_extra <= 0:
        return []
    keys = LR_GROUPS[experiment]
    initial = configs if initial is None else initial
    gkey = lambda c: tuple(getattr(c, k) for k in keys)  # noqa: E731
    groups: dict[tuple, list[RunConfig]] = defaultdict(list)
    for c in configs:
        groups[gkey(c)].append(c)
    first: dict[tuple, list[float]] = defaultdict(list)
    for c in initial:
        first[gkey(c)].append(c.learning_rate)
    best = best_learning_rates(rows, keys)
    have = {c.run_id for c in configs}
    out: list[RunConfig] = []
    for g, cs in groups.items():
        if g not in best:
            continue
        rates = sorted({c.learning_rate for c in cs})
        if len(rates) < 2:
            continue
        lo0, hi0 = min(first.get(g, rates)), max(first.get(g, rates))
        b = best[g]
        new = None
        if b == rates[0] and sum(r < lo0 for r in rates) < max_extra:
            new = _next_rate(cs[0].optimizer, cs[0].depth, rates[0], rates[1])
        elif b == rates[-1] and sum(r > hi0 for r in rates) < max_extra:
            new = _next_rate(cs[0].optimizer, cs[0].depth, rates[-1], rates[-2])
        if new is None:
            continue
        template = [c for c in cs if c.learning_rate == b]
        for c in sorted(template, key=lambda c: c.seed):
            e = c.replace(learning_rate=new)
            if e.run_id not in have:
                have.add(e.run_id)
                out.append(e)
    return out
