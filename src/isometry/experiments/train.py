"""One training run as a pure function of its configuration.

``run_one(config, out_dir) -> record``: trains the critically initialised MLP of ``config``
(:mod:`isometry.experiments.models`) with cross-entropy, evaluating the test accuracy at
log-spaced steps, and writes the record atomically to ``out_dir/runs/<run_id>.json``
(:mod:`isometry.sweeps.records`). If that record already exists the run is skipped and the stored
record returned, so a killed grid resumes where it stopped; long runs also checkpoint
(``out_dir/checkpoints/<run_id>.pt``, atomically) and continue from there. Given the same
configuration the learning curve is the same (seeded init and batch order; on CPU).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time

import numpy as np
import torch
from torch import nn

from .._io import atomic_write, to_jsonable
from ..sweeps import records
from .config import RunConfig, eval_steps
from .data import Dataset, load_dataset
from .models import build_mlp, input_scale, measure_jacobian, predicted_max_singular_value, predicted_variance

__all__ = ["run_one", "resolve_device", "make_optimizer", "test_accuracy"]


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device of a run: ``"auto"`` is CUDA when available, else CPU.

    Raises ``ValueError`` when the device named is not present on this machine.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ValueError(f"device {device!r} is not available here ({n} CUDA device(s)); use 'auto' or 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} is not available here; use 'auto' or 'cpu'")
    return dev


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
    atomic_write(path, lambda fh: torch.save(state, fh))


def _fresh_state() -> dict:
    return {"step": 0, "curve": [], "steps_to_target": None, "seconds_to_target": None, "diverged_at": None,
            "train_seconds": 0.0}


def _resume(ckpt: str, cfg: RunConfig, model: nn.Module, device: torch.device, batch_gen: torch.Generator):
    """``(model, optimizer, state)`` restored from the checkpoint ``ckpt``, or None when it is absent or
    cannot be restored completely (then the run starts over from its initialisation)."""
    if not os.path.exists(ckpt):
        return None
    try:
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        restored = copy.deepcopy(model)
        restored.load_state_dict(saved["model"])
        opt = make_optimizer(cfg, restored.parameters())
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        if not (isinstance(state, dict) and set(_fresh_state()) <= set(state) and isinstance(state["curve"], list)):
            raise ValueError("incomplete run state")
        batch_gen.set_state(saved["batch_gen"])  # last: only once everything else loaded
    except Exception:  # noqa: BLE001  (any unreadable or partial checkpoint: start over)
        return None
    return restored, opt, state


def run_one(config: RunConfig | dict, out_dir: str | os.PathLike, *, progress: bool = False,
            dataset: Dataset | None = None) -> dict:
    """Train one run and write its record to ``out_dir/runs/<run_id>.json`` (skipped if present).

    The record holds ``config``, ``run_id``, ``init`` (sigma_w2, sigma_b2, q*, ``input_q``, the
    data's ``input_mean_square`` and the ``input_scale`` of the stem's weights, the predicted
    variance of the eigenvalues of J J^T over the critical stack, ``predicted_variance``
    (:func:`isometry.jacobian_variance`), and its largest singular value,
    ``predicted_max_singular_value``, with their measured values at ``jacobian_inputs`` training
    inputs), ``curve`` (list of {step, train_loss, test_accuracy, seconds}; train_loss is the
    mean minibatch loss since the previous evaluation), ``steps_to_target``/``seconds_to_target``
    (first evaluation at or above the target, None if never; seconds count training only),
    ``final_test_accuracy``, ``best_test_accuracy``, ``diverged_at`` (first step with a
    non-finite loss, else None; training stops there), ``seconds``, ``device``,
    ``torch_version``. Non-finite numbers are stored as null.

    >>> rec = run_one(RunConfig(data="digits", depth=4, width=32, steps=50), "out")  # doctest: +SKIP
    >>> rec["steps_to_target"], rec["init"]["predicted_variance"]                     # doctest: +SKIP
    """
    cfg = RunConfig.from_dict(config) if not isinstance(config, RunConfig) else config
    out_dir = os.fspath(out_dir)
    run_id = cfg.run_id
    done = records.load_record(out_dir, run_id)
    if done is not None:
        done["skipped"] = True
        return done
    t_start = time.perf_counter()
    ds = dataset if dataset is not None else _cached_dataset(cfg.data, cfg.data_dir, cfg.data_size, cfg.data_seed)
    device = resolve_device(cfg.device)
    mean_square = float(np.mean(ds.x_train.astype(np.float64) ** 2))
    model, report = build_mlp(ds.input_dim, ds.n_classes, depth=cfg.depth, width=cfg.width,
                              activation=cfg.activation, weights=cfg.weights, q_star=cfg.q_star,
                              input_mean_square=mean_square, generator=torch.Generator().manual_seed(cfg.seed))
    init = {
        "sigma_w2": float(report.sigma_w2), "sigma_b2": float(report.sigma_b2), "q_star": float(report.q_star),
        "input_q": float(report.input_q), "input_mean_square": mean_square,
        "input_scale": input_scale(report.input_q, mean_square),
        "predicted_variance": predicted_variance(cfg.activation, cfg.depth, cfg.q_star, cfg.weights),
        "predicted_max_singular_value": predicted_max_singular_value(cfg.activation, cfg.depth, cfg.q_star,
                                                                     cfg.weights),
    }
    if cfg.jacobian_inputs > 0:
        init.update(measure_jacobian(model, cfg.depth, torch.from_numpy(ds.x_train[: cfg.jacobian_inputs])))
    model = model.to(device)
    xtr = torch.from_numpy(ds.x_train).to(device)
    ytr = torch.from_numpy(ds.y_train).to(device)
    n_test = len(ds.y_test) if cfg.max_test is None else min(cfg.max_test, len(ds.y_test))
    xte = torch.from_numpy(ds.x_test[:n_test]).to(device)
    yte = torch.from_numpy(ds.y_test[:n_test]).to(device)
    batch_gen = torch.Generator().manual_seed(10_007 * cfg.seed + 1)
    evals = eval_steps(cfg.steps, cfg.n_evals)
    eval_set = set(evals)

    ckpt = records.checkpoint_path(out_dir, run_id)
    resumed = _resume(ckpt, cfg, model, device, batch_gen)
    if resumed is not None:
        model, opt, state = resumed
    else:
        opt, state = make_optimizer(cfg, model.parameters()), _fresh_state()
        batch_gen.manual_seed(10_007 * cfg.seed + 1)

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
    rec = to_jsonable(rec)  # as stored: NaN/inf -> None
    records.write_record(out_dir, rec)
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    return rec
