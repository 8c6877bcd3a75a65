"""The named experiments E1, E2, E3 as flat lists of independent :class:`RunConfig`.

Each grid has three sizes: the CPU default (each finishes in <= 10 minutes on 2 shared cores),
``quick`` (about a minute; for CI) and ``paper_scale`` (depth 200, width 400, CIFAR-10, 10^5
steps, as in the paper; for a GPU).

- **E1** (paper Fig. 4): {tanh sigma_w^2 = 1.05 (q* = 0.0259), tanh sigma_w^2 = 2 (q* = 0.82),
  ReLU (sigma_w^2 = 2)} x {orthogonal, Gaussian} x {SGD, Momentum, Adam, RMSProp} x 3 learning
  rates per optimiser (half a decade apart) x seeds. The learning rate is tuned afterwards, per
  (network, optimiser), by :func:`isometry.experiments.analysis.best_learning_rates`.
- **E2** (learning speed vs isometry): orthogonal and Gaussian tanh over a q* grid (SGD):
  steps to target against q*, sigma^2_{JJ^T} and s_max.
- **E3** (paper Fig. 6): orthogonal tanh, depth L in a range x learning rate eta (SGD): the
  time to target tau, plotted as tau / sqrt(L) against eta L.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from .config import DATASETS, RunConfig

EXPERIMENTS = ("E1", "E2", "E3")

#: Seeds of the CPU defaults (sized to finish in about 10 minutes on 2 idle cores; pass
#: ``seeds=`` / ``--seeds`` for more: the README's E1 numbers use 3).
CPU_DEFAULT_SEEDS = {"E1": 2, "E2": 3, "E3": 2}

#: Default target test accuracy per dataset (what an MLP reaches comfortably).
TARGETS = {"digits": 0.9, "mnist1d": 0.5, "cifar10": 0.4}

#: The tanh fixed points of the paper's two tanh networks (chi = 1 at sigma_w^2 = 1.05 and 2).
TANH_Q_STAR_SW105 = 0.0259


@functools.lru_cache(maxsize=16)
def q_star_for_sigma_w2(activation: str, sigma_w2: float) -> float:
    """The q* on the critical line of ``activation`` where sigma_w^2 takes the given value."""
    from scipy.optimize import brentq

    from isometry.meanfield import critical_point

    f = lambda lq: critical_point(activation, float(np.exp(lq))).sigma_w2 - sigma_w2  # noqa: E731
    return float(np.exp(brentq(f, np.log(1e-6), np.log(1e2), xtol=1e-12)))


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _e1_networks() -> list[tuple[str, str, float]]:
    return [
        ("tanh sw2=1.05", "tanh", TANH_Q_STAR_SW105),
        ("tanh sw2=2", "tanh", round(q_star_for_sigma_w2("tanh", 2.0), 6)),
        ("relu sw2=2", "relu", 1.0),
    ]


def _sizes(quick: bool, paper_scale: bool, data: str | None) -> dict:
    if quick and paper_scale:
        raise ValueError("quick and paper_scale are exclusive: choose one")
    if paper_scale:
        return dict(data=data or "cifar10", depth=200, width=400, batch_size=128, steps=100_000, n_evals=40,
                    seeds=1, stop_at_target=False, jacobian_inputs=2, checkpoint_every=600.0)
    if quick:
        return dict(data=data or "digits", depth=8, width=32, batch_size=32, steps=300, n_evals=12,
                    seeds=1, stop_at_target=True, jacobian_inputs=1, checkpoint_every=600.0)
    return dict(data=data or "digits", depth=32, width=64, batch_size=64, steps=400, n_evals=30,
                seeds=3, stop_at_target=True, jacobian_inputs=2, checkpoint_every=600.0)


# learning-rate grids per optimiser: (cpu/quick, paper scale)
_LR = {
    "sgd": ((0.01, 0.03, 0.1), (1e-4, 1e-3, 1e-2)),
    "momentum": ((0.001, 0.003, 0.01), (1e-5, 1e-4, 1e-3)),
    "adam": ((3e-4, 1e-3, 3e-3), (1e-5, 1e-4, 1e-3)),
    "rmsprop": ((1e-4, 3e-4, 1e-3), (1e-5, 1e-4, 1e-3)),
}


def experiment_grid(name: str, *, quick: bool = False, paper_scale: bool = False, data: str | None = None,
                    data_dir: str | None = None, seeds: int | None = None, steps: int | None = None,
                    target_accuracy: float | None = None, device: str = "auto") -> list[RunConfig]:
    """The run configurations of experiment ``name`` (one of :data:`EXPERIMENTS`).

    ``data``/``data_dir`` replace the dataset (mnist1d | digits | cifar10; cifar10 needs
    ``data_dir``); ``seeds`` the number of seeds; ``steps`` the training steps;
    ``target_accuracy`` the target (default per dataset, :data:`TARGETS`); ``device`` the device
    of every run. The list is deterministic, so its run ids are stable across invocations.
    Invalid values raise ``ValueError`` (from :class:`RunConfig`) naming the field.

    >>> len(experiment_grid("E3", quick=True))
    6
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got {name!r}")
    if data is not None and data not in DATASETS:
        raise ValueError(f"data must be one of {', '.join(DATASETS)}, got {data!r}")
    z = _sizes(quick, paper_scale, data)
    if seeds is not None:
        z["seeds"] = _positive_int("seeds", seeds)
    if steps is not None:
        z["steps"] = _positive_int("steps", steps)
    target = TARGETS[z["data"]] if target_accuracy is None else target_accuracy
    base = RunConfig(
        experiment=name, data=z["data"], data_dir=data_dir, depth=z["depth"], width=z["width"],
        batch_size=z["batch_size"], steps=z["steps"], n_evals=z["n_evals"], target_accuracy=target,
        stop_at_target=z["stop_at_target"], jacobian_inputs=z["jacobian_inputs"], device=device,
        checkpoint_every=z["checkpoint_every"],
    )
    if name in CPU_DEFAULT_SEEDS and seeds is None and not quick and not paper_scale:
        z["seeds"] = CPU_DEFAULT_SEEDS[name]
    seed_list = range(z["seeds"])
    out: list[RunConfig] = []
    if name == "E1":
        for (label, act, q), weights, opt in itertools.product(
            _e1_networks(), ("orthogonal", "gaussian"), ("sgd", "momentum", "adam", "rmsprop")
        ):
            lrs = _LR[opt][1] if paper_scale else _LR[opt][0][1:2] if quick else _LR[opt][0]
            for lr, seed in itertools.product(lrs, seed_list):
                out.append(base.replace(label=label, activation=act, q_star=q, weights=weights, optimizer=opt,
                                        learning_rate=lr, seed=seed))
    elif name == "E2":
        q_grid = (1e-3, 1e-2, 0.1, 1.0, 10.0) if paper_scale else (0.01, 1.0) if quick else \
            (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
        lrs = (1e-4, 1e-3, 1e-2) if paper_scale else (0.03,) if quick else (0.01, 0.03, 0.1)
        for q, weights, lr, seed in itertools.product(q_grid, ("orthogonal", "gaussian"), lrs, seed_list):
            out.append(base.replace(label=f"tanh q*={q:g}", activation="tanh", q_star=q, weights=weights,
                                    optimizer="sgd", learning_rate=lr, seed=seed, stop_at_target=True))
    else:  # E3
        if paper_scale:
            depths, lrs = (25, 50, 100, 200), tuple(np.geomspace(1e-5, 1e-2, 7))
        elif quick:
            depths, lrs = (2, 4), (0.01, 0.03, 0.1)
        else:
            depths, lrs = (4, 8, 16, 32), tuple(np.geomspace(0.003, 0.3, 7))
        for depth, lr, seed in itertools.product(depths, lrs, seed_list):
            out.append(base.replace(label=f"L={depth}", activation="tanh", q_star=TANH_Q_STAR_SW105,
                                    weights="orthogonal", optimizer="sgd", learning_rate=float(f"{lr:.6g}"),
                                    depth=depth, seed=seed, stop_at_target=True))
    return out
