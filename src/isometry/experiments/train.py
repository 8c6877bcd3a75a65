"""One training run as a pure function of its configuration, and a resumable grid runner.

``run_one(config, out_dir) -> record``: trains the critically initialised MLP of ``config`` with
cross-entropy, evaluating the test accuracy at log-spaced steps, and writes the record atomically
to ``out_dir/runs/<run_id>.json`` (``run_id`` = a stable hash of the configuration). If that file
already exists the run is skipped and the stored record returned, so a killed grid resumes where it
stopped; long runs also checkpoint (``out_dir/checkpoints/<run_id>.pt``) and continue from there.
Given the same configuration the learning curve is the same (seeded init and batch order; on CPU).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import records
from .data import DATASETS, Dataset, load_dataset
from .models import ACTIVATION_MODULES, build_mlp, measure_jacobian

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")

#: Fields that do not change what is computed (where, how often to checkpoint): not in the run id.
_NOT_IN_ID = ("data_dir", "device", "checkpoint_every")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on. ``run_id`` hashes all fields except where/how it runs.

    ``q_star``: the fixed point of the critical initialisation (sigma_w2, sigma_b2 follow from
    chi = 1); ``optimizer``: sgd | momentum (heavy ball, ``momentum``) | adam | rmsprop;
    evaluation at ``n_evals`` log-spaced steps in [1, steps] (and step 0); ``target_accuracy``:
    the test accuracy whose first crossing defines ``steps_to_target``; ``stop_at_target``: stop
    there (for grids that need only the time to target); ``max_test``: evaluate on the first
    ``max_test`` test examples (None: all).
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

    def __post_init__(self):
        _check(self.activation in ACTIVATION_MODULES, "activation", self.activation, f"one of {ACTIVATION_MODULES}")
        _check(self.weights in ("orthogonal", "gaussian"), "weights", self.weights, "'orthogonal' or 'gaussian'")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _check(self.data in DATASETS, "data", self.data, f"one of {DATASETS}")
        _check(_pos(self.q_star), "q_star", self.q_star, "a finite number > 0")
        _check(_pos(self.learning_rate), "learning_rate", self.learning_rate, "a finite number > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "[0, 1)")
        for name in ("depth", "width", "batch_size", "steps", "n_evals"):
            v = getattr(self, name)
            _check(isinstance(v, (int, np.integer)) and v >= 1, name, v, "an integer >= 1")
        _check(0 < self.target_accuracy <= 1, "target_accuracy", self.target_accuracy, "(0, 1]")
        _check(self.device == "auto" or self.device.startswith(("cpu", "cuda")), "device", self.device,
               "'auto', 'cpu' or 'cuda[:i]'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def run_id(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_ID}
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _check(ok: bool, name: str, value, valid: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def eval_steps(steps: int, n_evals: int) -> list[int]:
    """0 and ``n_evals`` log-spaced integer steps in [1, steps] (deduplicated; always ends at steps)."""
    s = np.unique(np.round(np.geomspace(1, steps, max(int(n_evals), 1))).astype(int))
    return [0] + sorted(set(int(v) for v in s) | {int(steps)})


@functools.lru_cache(maxsize=4)
def _cached_dataset(name: str, data_dir: str | None, size: int | None, seed: int) -> Dataset:
    return load_dataset(name, data_dir=data_dir, size=size, seed=seed)


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    lr = cfg.learning_rate
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


@torch.no_grad()
def test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> float:
    """Fraction of correct argmax predictions; rows with non-finite logits count as wrong."""
    correct = 0
    for i in range(0, len(y), chunk):
        out = model(x[i : i + chunk])
        ok = (out.argmax(1) == y[i : i + chunk]) & torch.isfinite(out).all(1)
        correct += int(ok.sum())
    return correct / max(len(y), 1)


def _save_checkpoint(path: str, state: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_one(config: RunConfig | dict, out_dir: str | os.PathLike, *, progress: bool = False,
            dataset: Dataset | None = None) -> dict:
    """Train one run and write its record to ``out_dir/runs/<run_id>.json`` (skip if present).

    The record holds ``config``, ``run_id``, ``init`` (sigma_w2, sigma_b2, q*, predicted and
    measured sigma^2_{JJ^T} and s_max), ``curve`` (list of {step, train_loss, test_accuracy,
    seconds}; train_loss is the mean minibatch loss since the previous evaluation),
    ``steps_to_target``/``seconds_to_target`` (first evaluation at or above the target, None if
    never; seconds count training only, not evaluation), ``final_test_accuracy``,
    ``best_test_accuracy``, ``diverged_at`` (first step with a non-finite loss, else None;
    training stops there), ``seconds``, ``device``, ``torch_version``.
    """
    cfg = RunConfig.from_dict(config) if isinstance(config, dict) else config
    out_dir = os.fspath(out_dir)
    run_id = cfg.run_id
    done = records.load_record(out_dir, run_id)
    if done is not None:
        done["skipped"] = True
        return done
    t_start = time.perf_counter()
    ds = dataset if dataset is not None else _cached_dataset(cfg.data, cfg.data_dir, cfg.data_size, cfg.data_seed)
    device = resolve_device(cfg.device)
    model, info = build_mlp(ds.input_dim, ds.n_classes, depth=cfg.depth, width=cfg.width,
                            activation=cfg.activation, weights=cfg.weights, q_star=cfg.q_star, seed=cfg.seed,
                            sigma0_2=float(np.mean(ds.x_train.astype(np.float64) ** 2)))
    init = info.as_dict()
    if cfg.jacobian_inputs > 0:
        init.update(measure_jacobian(model, cfg.depth, torch.from_numpy(ds.x_train[: cfg.jacobian_inputs])))
    model = model.to(device)
    xtr = torch.from_numpy(ds.x_train).to(device)
    ytr = torch.from_numpy(ds.y_train).to(device)
    n_test = len(ds.y_test) if cfg.max_test is None else min(cfg.max_test, len(ds.y_test))
    xte = torch.from_numpy(ds.x_test[:n_test]).to(device)
    yte = torch.from_numpy(ds.y_test[:n_test]).to(device)
    opt = make_optimizer(cfg, model.parameters())
    batch_gen = torch.Generator().manual_seed(10_007 * cfg.seed + 1)
    evals = eval_steps(cfg.steps, cfg.n_evals)
    eval_set = set(evals)

    state = {"step": 0, "curve": [], "steps_to_target": None, "seconds_to_target": None,
             "diverged_at": None, "train_seconds": 0.0}
    ckpt = records.checkpoint_path(out_dir, run_id)
    if os.path.exists(ckpt):
        try:
            saved = torch.load(ckpt, map_location=device, weights_only=True)
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            batch_gen.set_state(saved["batch_gen"])
            state = saved["state"]
        except Exception:  # unreadable checkpoint: start over  # noqa: BLE001
            state = {"step": 0, "curve": [], "steps_to_target": None, "seconds_to_target": None,
                     "diverged_at": None, "train_seconds": 0.0}

    def evaluate(step: int, train_loss: float | None) -> None:
        model.eval()
        acc = test_accuracy(model, xte, yte)
        model.train()
        state["curve"].append({"step": step, "train_loss": train_loss, "test_accuracy": acc,
                               "seconds": state["train_seconds"]})
        if state["steps_to_target"] is None and acc >= cfg.target_accuracy:
            state["steps_to_target"] = step
            state["seconds_to_target"] = state["train_seconds"]

    if state["step"] == 0 and not state["curve"]:
        evaluate(0, None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=state["step"], desc=run_id[:8], mininterval=5.0, leave=False)
    loss_sum, loss_n = 0.0, 0
    last_ckpt = time.perf_counter()
    n = len(ytr)
    step = state["step"]
    try:
        while step < cfg.steps and state["diverged_at"] is None:
            if cfg.stop_at_target and state["steps_to_target"] is not None:
                break
            step += 1
            t0 = time.perf_counter()
            idx = torch.randint(n, (cfg.batch_size,), generator=batch_gen).to(device)
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            lv = float(loss.detach())
            if not math.isfinite(lv):
                state["diverged_at"] = step
                state["step"] = step
                evaluate(step, lv)
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["train_seconds"] += time.perf_counter() - t0
            loss_sum += lv
            loss_n += 1
            if bar is not None:
                bar.update(1)
            if step in eval_set:
                state["step"] = step
                evaluate(step, loss_sum / max(loss_n, 1))
                loss_sum, loss_n = 0.0, 0
                if time.perf_counter() - last_ckpt > cfg.checkpoint_every and step < cfg.steps:
                    _save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                            "batch_gen": batch_gen.get_state(), "state": state})
                    last_ckpt = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()
    curve = state["curve"]
    accs = [c["test_accuracy"] for c in curve]
    rec = {
        "run_id": run_id,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "init": init,
        "curve": curve,
        "steps_to_target": state["steps_to_target"],
        "seconds_to_target": state["seconds_to_target"],
        "target_accuracy": cfg.target_accuracy,
        "final_test_accuracy": accs[-1],
        "best_test_accuracy": max(accs),
        "diverged_at": state["diverged_at"],
        "steps_run": curve[-1]["step"],
        "seconds": time.perf_counter() - t_start,
        "train_seconds": state["train_seconds"],
        "device": str(device),
        "torch_version": torch.__version__,
        "n_train": int(n),
        "n_test": int(n_test),
    }
    rec = records.to_jsonable(rec)  # NaN/inf -> None, as stored
    records.atomic_write_json(records.run_path(out_dir, run_id), rec)
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    return rec


def run_grid(configs: Sequence[RunConfig], out_dir: str | os.PathLike, *, progress: bool = True,
             step_progress: bool = False) -> list[dict]:
    """Run every configuration in order (finished ones are skipped), then :func:`summarise`."""
    from tqdm.auto import tqdm

    out_dir = os.fspath(out_dir)
    os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    recs = []
    with tqdm(total=len(configs), desc="runs", disable=not progress, mininterval=2.0) as bar:
        for cfg in configs:
            rec = run_one(cfg, out_dir, progress=step_progress)
            recs.append(rec)
            bar.set_postfix_str(f"{cfg.label or cfg.activation} {cfg.optimizer} lr={cfg.learning_rate:g} "
                                f"-> {rec['steps_to_target']}", refresh=False)
            bar.update(1)
    summarise(out_dir)
    return recs


def summarise(out_dir: str | os.PathLike, configs: Sequence[RunConfig] | None = None) -> list[dict]:
    """Write ``summary.json`` / ``summary.csv`` from the finished runs in ``out_dir`` (restricted to
    ``configs`` when given) and return the rows."""
    recs = records.load_records(out_dir)
    if configs is not None:
        ids = {c.run_id for c in configs}
        recs = [r for r in recs if r["run_id"] in ids]
    rows = [records.summary_row(r) for r in recs]
    rows.sort(key=lambda r: tuple(str(r.get(k)) for k in ("experiment", "label", "activation", "weights",
                                                          "optimizer", "learning_rate", "depth", "seed")))
    records.write_summary(out_dir, rows)
    return rows
