"""Training runs as pure functions of their configurations, one at a time or many at once.

``run_batch(configs, out_dir) -> records`` trains the critically initialised MLPs of ``configs``
(:mod:`isometry.experiments.models`; configurations with the same :func:`batch_key`) together as
one batched model (:mod:`isometry.experiments.stacked`) with cross-entropy, evaluating each run's
test accuracy at its log-spaced steps, and writes each record atomically to
``out_dir/runs/<run_id>.json`` (:mod:`isometry.sweeps.records`) as soon as that run finishes; the
batch shrinks as runs stop. ``run_one(config, out_dir)`` is the same for one configuration.

Networks other than MLPs (``architecture="cnn"`` / ``"resnet"``) are trained one at a time with
``torch.optim`` (same schedule, minibatches, evaluations and record; not checkpointed). A run's
record is a function of its configuration alone: its initialisation and minibatches are
seeded by its own seed, and nothing in the batched step mixes runs, so a run trained alone and the
same run trained beside others give the same curve (bitwise on CPU, tested; on a GPU the matrix
kernels may depend on the batch size, so curves agree to rounding). A finished record is never
recomputed: a run whose record exists is skipped, so a killed grid resumes where it stopped. Long
runs also checkpoint (``out_dir/checkpoints/<run_id>.pt``, atomically, per run) and continue from
there; a checkpoint is used whole (weights, optimiser state, minibatch generator, curve) or not at
all (then the run starts again from its initialisation).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._io import atomic_write, to_jsonable
from ..sweeps import records
from .config import DATA_SHAPES, RunConfig, batch_key, eval_steps, run_memory
from .summary import valid_record
from .data import Dataset, load_dataset
from .models import build_mlp, input_scale, measure_jacobian, predicted_max_singular_value, predicted_variance
from .stacked import BUFFERS, StackedMLP, StackedOptimizer

__all__ = ["run_one", "run_batch", "resolve_device", "CHECKPOINT_FORMAT"]

#: Version of the checkpoint layout; a checkpoint of another version is not used.
CHECKPOINT_FORMAT = 3

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


_log = logging.getLogger("isometry")


def _discarded(path: str, reason: str, run_id: str) -> None:
    """Say that a stored file could not be used (the CLI shows warnings of the "isometry" logger)."""
    _log.warning("isometry: %s is unreadable (%s); training run %s from its start", path, reason, run_id)


def _load_finished(out_dir: str, run_id: str) -> dict | None:
    """The finished record of ``run_id``; None when there is none or it is not a complete record
    (then the run is trained again, and a file that could not be used is reported)."""
    rec = records.load_record(out_dir, run_id)
    if rec is not None and valid_record(rec, run_id):
        return rec
    path = records.run_path(out_dir, run_id)
    if os.path.exists(path):
        _discarded(path, "not a complete record of this run", run_id)
    return None


# ------------------------------------------------------------------------------ initialisation
def _init_key(cfg: RunConfig) -> tuple:
    return (cfg.activation, cfg.weights, cfg.q_star, cfg.depth, cfg.width, cfg.seed, cfg.data, cfg.data_dir,
            cfg.data_size, cfg.data_seed, cfg.jacobian_inputs, cfg.initializer, cfg.normalize_input, cfg.architecture,
            cfg.batch_size if _batch_dependent(cfg) else None)


def _batch_dependent(cfg: RunConfig) -> bool:
    """Whether the initialisation reads the first training minibatch (LSUV; calibration of conv nets)."""
    return cfg.initializer == "lsuv" or (cfg.architecture != "mlp" and cfg.initializer.startswith("isometry:"))


def _paper_model(cfg: RunConfig) -> bool:
    """The model of the named experiments E1-E3: a critical MLP whose stem is scaled by the data's
    average mean square (:func:`isometry.experiments.build_mlp`)."""
    return cfg.initializer == "isometry:critical" and not cfg.normalize_input and cfg.architecture == "mlp"


#: ``init`` blocks already computed in this process, by :func:`_init_key`.
_INIT_CACHE: dict[tuple, dict] = {}

#: Initialised models of the other initialisers (LSUV, dks, calibration may take seconds), by
#: :func:`_init_key`: a run's learning rates and optimisers start from one initialisation.
_MODEL_CACHE: dict[tuple, tuple[nn.Module, dict]] = {}
_MODEL_CACHE_SIZE = 8


def prepare_dataset(cfg: RunConfig, ds: Dataset) -> Dataset:
    """The data as ``cfg``'s initialiser feeds them to its network
    (:func:`isometry.experiments.initializers.prepare_inputs`: dks's per-location normalisation for
    the ``dks:*`` initialisers; the data themselves otherwise)."""
    if not cfg.initializer.startswith("dks:"):
        return ds
    from .initializers import prepare_inputs

    shape = None if cfg.architecture == "mlp" else DATA_SHAPES[cfg.data]
    return Dataset(ds.name, prepare_inputs(cfg.initializer, ds.x_train, shape), ds.y_train,
                   prepare_inputs(cfg.initializer, ds.x_test, shape), ds.y_test, ds.n_classes)


def _build_other(cfg: RunConfig, ds: Dataset) -> tuple[nn.Module, dict]:
    """A network of ``cfg.architecture`` initialised by ``cfg.initializer``
    (:mod:`isometry.experiments.initializers`) and its record's ``init`` block: the initialiser's
    record, this package's prediction where it has one, and the measured spectrum of the body's
    J J^T at ``jacobian_inputs`` training inputs."""
    import copy

    from .initializers import initialize
    from .networks import build_network, input_shape, measure_body

    key = _init_key(cfg)
    hit = _MODEL_CACHE.get(key)
    if hit is not None:
        return copy.deepcopy(hit[0]), dict(hit[1])
    shape = None if cfg.architecture == "mlp" else input_shape(ds.input_dim, DATA_SHAPES[cfg.data])
    model = build_network(cfg.architecture, d_in=ds.input_dim, n_classes=ds.n_classes, depth=cfg.depth,
                          width=cfg.width, activation=cfg.activation, shape=shape, generator=cfg.seed)
    batch = torch.from_numpy(ds.x_train[: cfg.batch_size])
    model, rec = initialize(cfg.initializer, model, activation=cfg.activation, architecture=cfg.architecture,
                            depth=cfg.depth, seed=cfg.seed, batch=batch, q_star=cfg.q_star, weights=cfg.weights,
                            normalize_input=cfg.normalize_input)
    init = {"initializer": {k: rec[k] for k in ("name", "package", "version", "call", "notes")}}
    init.update({k: rec.get(k) for k in ("q_star", "input_q", "predicted_mean", "predicted_variance")})
    if "shaping" in rec:
        init["initializer"]["shaping"] = rec["shaping"]
    if cfg.jacobian_inputs > 0:
        init.update(measure_body(model, cfg.architecture, cfg.depth, torch.from_numpy(ds.x_train[: cfg.jacobian_inputs])))
    init = to_jsonable(init)
    if len(_MODEL_CACHE) >= _MODEL_CACHE_SIZE:
        _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
    _MODEL_CACHE[key] = (copy.deepcopy(model), dict(init))
    return model, init


def _isometry_version() -> str:
    from .. import __version__

    return __version__


def _build(cfg: RunConfig, ds: Dataset, mean_square: float) -> tuple[nn.Module, dict]:
    """The run's freshly initialised model (seeded by ``cfg.seed``) and its record's ``init`` block:
    the critical point, the input scaling, and the predicted and measured spectrum of the critical
    stack at initialisation (the same for every learning rate and optimiser, so computed once per
    initialisation and process)."""
    if not _paper_model(cfg):
        return _build_other(cfg, ds)
    model, report = build_mlp(ds.input_dim, ds.n_classes, depth=cfg.depth, width=cfg.width,
                              activation=cfg.activation, weights=cfg.weights, q_star=cfg.q_star,
                              input_mean_square=mean_square, generator=torch.Generator().manual_seed(cfg.seed))
    key = _init_key(cfg) + (mean_square,)
    init = _INIT_CACHE.get(key)
    if init is None:
        init = {
            "sigma_w2": float(report.sigma_w2), "sigma_b2": float(report.sigma_b2), "q_star": float(report.q_star),
            "input_q": float(report.input_q), "input_mean_square": mean_square,
            "input_scale": input_scale(report.input_q, mean_square),
            "predicted_variance": predicted_variance(cfg.activation, cfg.depth, cfg.q_star, cfg.weights),
            "predicted_max_singular_value": predicted_max_singular_value(cfg.activation, cfg.depth, cfg.q_star,
                                                                         cfg.weights),
            "initializer": {
                "name": cfg.initializer, "package": "isometry", "version": _isometry_version(),
                "call": (f"isometry.torch.critical_init_(model, q_star={cfg.q_star!r}, weights={cfg.weights!r}, "
                         f"activation={cfg.activation!r}, generator={cfg.seed}); then the stem's weights times "
                         f"input_scale = sqrt(input_q / input_mean_square) = {input_scale(report.input_q, mean_square):.6g}"),
                "notes": [],
            },
        }
        if cfg.jacobian_inputs > 0:
            init.update(measure_jacobian(model, cfg.depth, torch.from_numpy(ds.x_train[: cfg.jacobian_inputs])))
        if len(_INIT_CACHE) >= 1024:
            _INIT_CACHE.clear()
        _INIT_CACHE[key] = init
    return model, dict(init)


# ------------------------------------------------------------------------------ per-run state
@dataclass
class _Run:
    cfg: RunConfig
    init: dict
    gen: torch.Generator
    evals: frozenset
    step: int = 0
    curve: list = field(default_factory=list)
    steps_to_target: int | None = None
    seconds_to_target: float | None = None
    diverged_at: int | None = None
    train_seconds: float = 0.0
    loss_sum: float = 0.0
    loss_n: int = 0
    t_start: float = 0.0

    @property
    def run_id(self) -> str:
        return self.cfg.run_id

    def state(self) -> dict:
        return {"step": self.step, "curve": self.curve, "steps_to_target": self.steps_to_target,
                "seconds_to_target": self.seconds_to_target, "diverged_at": self.diverged_at,
                "train_seconds": self.train_seconds, "loss_sum": self.loss_sum, "loss_n": self.loss_n}

    def add_eval(self, step: int, train_loss: float | None, acc: float) -> None:
        self.curve.append({"step": step, "train_loss": train_loss, "test_accuracy": acc,
                           "seconds": self.train_seconds})
        if self.steps_to_target is None and acc >= self.cfg.target_accuracy:
            self.steps_to_target = step
            self.seconds_to_target = self.train_seconds

    @property
    def done(self) -> bool:
        return (self.diverged_at is not None or self.step >= self.cfg.steps
                or (self.cfg.stop_at_target and self.steps_to_target is not None))


def _batch_seed(cfg: RunConfig) -> int:
    return 10_007 * cfg.seed + 1


# ------------------------------------------------------------------------------ checkpoints
def _save_checkpoint(out_dir: str, run: _Run, model: StackedMLP, opt: StackedOptimizer, r: int) -> None:
    state = {"format": CHECKPOINT_FORMAT, "run_id": run.run_id, "params": model.run_state(r),
             "optimizer": opt.run_state(r), "batch_gen": run.gen.get_state(), "state": run.state()}
    atomic_write(records.checkpoint_path(out_dir, run.run_id), lambda fh: torch.save(state, fh))


def _valid_tensor(t, shape: tuple[int, ...]) -> bool:
    return isinstance(t, torch.Tensor) and tuple(t.shape) == shape and t.dtype == torch.float32


def _read_checkpoint(out_dir: str, run: _Run, shapes: dict[str, tuple[int, ...]], kind: str
                     ) -> tuple[dict | None, str]:
    """``(checkpoint, "")`` when every part of ``run``'s checkpoint is present and consistent, else
    ``(None, reason)`` (reason "" when there is no checkpoint)."""
    path = records.checkpoint_path(out_dir, run.run_id)
    if not os.path.exists(path):
        return None, ""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (unreadable, truncated or foreign)
        return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    checks = [
        ("not a checkpoint of this run", lambda: isinstance(saved, dict) and saved.get("format") == CHECKPOINT_FORMAT
         and saved.get("run_id") == run.run_id),
        ("weights missing or of the wrong shape", lambda: isinstance(saved["params"], dict) and all(
            _valid_tensor(saved["params"].get(k), s) for k, s in shapes.items())),
        ("optimiser state missing or of the wrong shape", lambda: isinstance(saved["optimizer"], dict)
         and saved["optimizer"].get("kind") == kind and isinstance(saved["optimizer"].get("buffers"), dict)
         and all(isinstance(saved["optimizer"]["buffers"].get(k), dict)
                 and all(_valid_tensor(saved["optimizer"]["buffers"][k].get(b), s) for b in BUFFERS[kind])
                 for k, s in shapes.items())),
        ("training state missing or inconsistent", lambda: _valid_state(saved["state"], saved["optimizer"], run)),
        ("minibatch generator state missing", lambda: _valid_generator(saved["batch_gen"])),
    ]
    for reason, ok in checks:
        try:
            if not ok():
                return None, reason
        except Exception:  # noqa: BLE001  (a missing key or a value of the wrong type)
            return None, reason
    return saved, ""


def _valid_state(st, opt, run: _Run) -> bool:
    return (isinstance(st, dict) and isinstance(st.get("step"), int) and 0 < st["step"] < run.cfg.steps
            and isinstance(opt.get("steps"), int) and opt["steps"] == st["step"]
            and isinstance(st.get("curve"), list) and bool(st["curve"])
            and all(isinstance(p, dict) and isinstance(p.get("step"), int) and p["step"] <= st["step"]
                    and isinstance(p.get("test_accuracy"), float) for p in st["curve"])
            and all(isinstance(st.get(k), (int, float)) and not isinstance(st.get(k), bool)
                    for k in ("train_seconds", "loss_sum", "loss_n"))
            and st.get("diverged_at") is None)


def _valid_generator(state) -> bool:
    if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8):
        return False
    torch.Generator().set_state(state)  # raises for a state the generator does not accept
    return True


def _resume(out_dir: str, runs: list[_Run], model: StackedMLP, opt: StackedOptimizer) -> None:
    """Continue every run whose checkpoint is complete; the others start from their initialisation
    (their checkpoint, if any, is removed: it could not be used)."""
    shapes = model.run_shapes()
    for r, run in enumerate(runs):
        saved, reason = _read_checkpoint(out_dir, run, shapes, opt.kind)
        if saved is None:
            path = records.checkpoint_path(out_dir, run.run_id)
            if reason:
                _discarded(path, reason, run.run_id)
                try:
                    os.unlink(path)
                except OSError:
                    pass
            continue
        model.load_run_state(r, saved["params"])
        opt.load_run_state(r, saved["optimizer"])
        run.gen.set_state(saved["batch_gen"])
        st = saved["state"]
        run.step, run.curve = st["step"], list(st["curve"])
        run.steps_to_target, run.seconds_to_target = st.get("steps_to_target"), st.get("seconds_to_target")
        run.train_seconds, run.loss_sum = float(st["train_seconds"]), float(st["loss_sum"])
        run.loss_n = int(st["loss_n"])


# ------------------------------------------------------------------------------ records
def _record(run: _Run, device: torch.device, n_train: int, n_test: int) -> dict:
    accs = [c["test_accuracy"] for c in run.curve]
    rec = {
        "run_id": run.run_id,
        "config": run.cfg.to_dict(),
        "seed": run.cfg.seed,
        "initializer": run.init.get("initializer"),
        "init": run.init,
        "curve": run.curve,
        "steps_to_target": run.steps_to_target,
        "seconds_to_target": run.seconds_to_target,
        "target_accuracy": run.cfg.target_accuracy,
        "final_test_accuracy": accs[-1],
        "best_test_accuracy": max(accs),
        "diverged_at": run.diverged_at,
        "steps_run": run.curve[-1]["step"],
        "seconds": time.perf_counter() - run.t_start,
        "train_seconds": run.train_seconds,
        "device": str(device),
        "torch_version": torch.__version__,
        "n_train": int(n_train),
        "n_test": int(n_test),
    }
    return to_jsonable(rec)  # as stored: NaN/inf -> None


def _memory_budget(device: torch.device) -> float | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.8 * free
    from .._checks import available_memory

    have = available_memory()
    return None if have is None else 0.5 * have


# ------------------------------------------------------------------------------ training
def run_batch(configs: Sequence[RunConfig | dict], out_dir: str | os.PathLike, *, progress: bool = False,
              dataset: Dataset | None = None, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``configs`` together and write each run's record; return the records in order.

    The configurations must share their :func:`isometry.experiments.batch_key` (data, depth, width,
    activation, optimiser, minibatch size, device); they may differ in everything else (learning
    rate, momentum, seed, weights, q*, steps, evaluations, target). Runs whose record exists are
    not trained (their stored record is returned, with ``"skipped": True``); duplicates run once.
    The batch is split into parts that fit in memory (half the available memory on a CPU, 80% of
    the free memory of a GPU); ``ValueError`` if one run alone does not fit. ``on_record`` is
    called with each record as it is written; ``progress`` shows a bar over the steps.
    See :func:`run_one` for the record.
    """
    cfgs = [RunConfig.from_dict(c) if not isinstance(c, RunConfig) else c for c in configs]
    if not cfgs:
        return []
    keys = {batch_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("configurations trained as one batch must share data, depth, width, activation, optimizer, "
                         f"batch_size and device; got {len(keys)} different combinations")
    out_dir = os.fspath(out_dir)
    done: dict[str, dict] = {}
    todo: list[RunConfig] = []
    seen: set[str] = set()
    for c in cfgs:
        if c.run_id in seen:
            continue
        seen.add(c.run_id)
        rec = _load_finished(out_dir, c.run_id)
        if rec is not None:
            done[c.run_id] = dict(rec, skipped=True)
        else:
            todo.append(c)
    if todo:
        first = todo[0]
        ds = dataset if dataset is not None else _cached_dataset(first.data, first.data_dir, first.data_size,
                                                                 first.data_seed)
        ds = prepare_dataset(first, ds)
        device = resolve_device(first.device)
        n_test = len(ds.y_test) if first.max_test is None else min(first.max_test, len(ds.y_test))
        per_run = max(run_memory(c, ds.input_dim, ds.n_classes, n_test) for c in todo)
        budget = _memory_budget(device)
        if budget is not None:
            from .._checks import check_fits

            check_fits(per_run, f"training run depth={first.depth}, width={first.width}", "use a smaller depth or "
                       "width", have=int(budget), limit="the memory available to a run")
        size = len(todo) if budget is None else max(1, min(len(todo), int(budget // per_run)))
        for i in range(0, len(todo), size):
            for rec in _train(todo[i: i + size], out_dir, ds, device, n_test, progress):
                done[rec["run_id"]] = rec
                if on_record is not None:
                    on_record(rec)
    return [done[c.run_id] for c in cfgs]


def _train(cfgs: list[RunConfig], out_dir: str, ds: Dataset, device: torch.device, n_test: int,
           progress: bool) -> list[dict]:
    if cfgs[0].architecture != "mlp":
        out = []
        for c in cfgs:
            out += _train_module(c, out_dir, ds, device, n_test)
        return out
    t_start = time.perf_counter()
    mean_square = float(np.mean(ds.x_train.astype(np.float64) ** 2))
    models, runs = [], []
    for c in cfgs:
        model, init = _build(c, ds, mean_square)
        models.append(model)
        runs.append(_Run(c, init, torch.Generator().manual_seed(_batch_seed(c)), frozenset(eval_steps(c.steps,
                                                                                                      c.n_evals)),
                         t_start=t_start))
    depth = cfgs[0].depth
    net = StackedMLP.from_models(models, depth, device)
    del models
    opt = StackedOptimizer(cfgs[0].optimizer, net, [c.learning_rate for c in cfgs], [c.momentum for c in cfgs])
    _resume(out_dir, runs, net, opt)

    xtr = torch.from_numpy(ds.x_train).to(device)
    ytr = torch.from_numpy(ds.y_train).to(device)
    xte = torch.from_numpy(ds.x_test[:n_test]).to(device)
    yte = torch.from_numpy(ds.y_test[:n_test]).to(device)
    n, bsz = len(ytr), cfgs[0].batch_size

    fresh = [r for r, run in enumerate(runs) if run.step == 0 and not run.curve]
    if fresh:
        accs = net.accuracy(xte, yte, torch.tensor(fresh, device=device))
        for r, acc in zip(fresh, accs):
            runs[r].add_eval(0, None, acc)
    finished: list[dict] = []
    active = list(range(len(runs)))  # runs[active[i]] is row i of the stacked tensors

    def retire() -> None:
        """Write the records of finished runs and drop them from the batch."""
        nonlocal active
        keep = [i for i, r in enumerate(active) if not runs[r].done]
        if len(keep) == len(active):
            return
        for r in active:
            if runs[r].done:
                rec = _record(runs[r], device, n, n_test)
                records.write_record(out_dir, rec)
                ckpt = records.checkpoint_path(out_dir, runs[r].run_id)
                if os.path.exists(ckpt):
                    os.unlink(ckpt)
                finished.append(rec)
        if keep:
            idx = torch.tensor(keep, device=device)
            net.keep(idx)
            opt.keep(idx)
        active = [active[i] for i in keep]

    retire()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(runs[r].cfg.steps - runs[r].step for r in active) if active else 0, unit="step",
                   desc=f"{len(active)} runs", mininterval=2.0, leave=False)
    last_ckpt = time.perf_counter()
    every = min(c.checkpoint_every for c in cfgs)
    try:
        while active:
            t0 = time.perf_counter()
            idx = torch.stack([torch.randint(n, (bsz,), generator=runs[r].gen) for r in active]).to(device)
            for r in active:
                runs[r].step += 1
            for p in net.params.values():
                p.grad = None
            logits = net.forward(xtr[idx])
            losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ytr[idx].reshape(-1),
                                                 reduction="none").view(len(active), bsz).mean(1)
            lv = losses.detach().tolist()
            bad = [i for i, v in enumerate(lv) if not math.isfinite(v)]
            if bad:  # a non-finite loss ends that run: evaluate it as it is, before any update
                accs = net.accuracy(xte, yte, torch.tensor(bad, device=device))
                for i, acc in zip(bad, accs):
                    run = runs[active[i]]
                    run.diverged_at = run.step
                    run.add_eval(run.step, lv[i], acc)
            bad_set = set(bad)
            good = [i for i in range(len(active)) if i not in bad_set]
            if good:
                loss = losses.sum() if not bad else losses[torch.tensor(good, device=device)].sum()
                loss.backward()
                opt.step(net)
            share = (time.perf_counter() - t0) / len(active)
            due = []
            for i in good:
                run = runs[active[i]]
                run.train_seconds += share
                run.loss_sum += lv[i]
                run.loss_n += 1
                if run.step in run.evals:
                    due.append(i)
            if due:
                accs = net.accuracy(xte, yte, torch.tensor(due, device=device))
                for i, acc in zip(due, accs):
                    run = runs[active[i]]
                    run.add_eval(run.step, run.loss_sum / max(run.loss_n, 1), acc)
                    run.loss_sum, run.loss_n = 0.0, 0
            if bar is not None:
                bar.update(1)
            retire()
            if due and active and time.perf_counter() - last_ckpt > every:  # every unfinished run of the batch
                for i, r in enumerate(active):
                    _save_checkpoint(out_dir, runs[r], net, opt, i)
                last_ckpt = time.perf_counter()
            if bar is not None:
                bar.set_description_str(f"{len(active)} runs", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return finished


def _optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """``torch.optim``'s optimiser of ``cfg`` (the rules :class:`StackedOptimizer` reproduces)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate)
    return torch.optim.RMSprop(params, lr=cfg.learning_rate)


@torch.no_grad()
def _module_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from .config import EVAL_CHUNK

    correct = 0
    for i in range(0, len(y), EVAL_CHUNK):
        out = model(x[i: i + EVAL_CHUNK])
        correct += int(((out.argmax(-1) == y[i: i + EVAL_CHUNK]) & torch.isfinite(out).all(-1)).sum())
    return correct / max(len(y), 1)


def _train_module(cfg: RunConfig, out_dir: str, ds: Dataset, device: torch.device, n_test: int) -> list[dict]:
    """Train one network that is not a stacked MLP (the convolutional architectures) alone, with
    ``torch.optim``; the same schedule, minibatches, evaluations, divergence rule and record as a
    run of :func:`run_batch`. Such runs are not checkpointed: an interrupted one starts again from
    its initialisation."""
    t_start = time.perf_counter()
    model, init = _build(cfg, ds, float(np.mean(ds.x_train.astype(np.float64) ** 2)))
    model = model.to(device).train()
    run = _Run(cfg, init, torch.Generator().manual_seed(_batch_seed(cfg)), frozenset(eval_steps(cfg.steps, cfg.n_evals)),
               t_start=t_start)
    opt = _optimizer(cfg, model.parameters())
    xtr, ytr = torch.from_numpy(ds.x_train).to(device), torch.from_numpy(ds.y_train).to(device)
    xte, yte = torch.from_numpy(ds.x_test[:n_test]).to(device), torch.from_numpy(ds.y_test[:n_test]).to(device)
    n = len(ytr)
    run.add_eval(0, None, _module_accuracy(model, xte, yte))
    while not run.done:
        t0 = time.perf_counter()
        idx = torch.randint(n, (cfg.batch_size,), generator=run.gen).to(device)
        run.step += 1
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        lv = float(loss.detach())
        if not math.isfinite(lv):
            run.diverged_at = run.step
            run.add_eval(run.step, lv, _module_accuracy(model, xte, yte))
            break
        loss.backward()
        opt.step()
        run.train_seconds += time.perf_counter() - t0
        run.loss_sum += lv
        run.loss_n += 1
        if run.step in run.evals:
            run.add_eval(run.step, run.loss_sum / max(run.loss_n, 1), _module_accuracy(model, xte, yte))
            run.loss_sum, run.loss_n = 0.0, 0
    rec = _record(run, device, n, n_test)
    records.write_record(out_dir, rec)
    return [rec]


def run_one(config: RunConfig | dict, out_dir: str | os.PathLike, *, progress: bool = False,
            dataset: Dataset | None = None) -> dict:
    """Train one run and write its record to ``out_dir/runs/<run_id>.json`` (skipped if present).

    The record holds ``config``, ``run_id``, ``initializer`` (how the network was initialised:
    the initialiser's ``name``, ``package``, ``version``, the ``call`` made and ``notes``; see
    :mod:`isometry.experiments.initializers`), ``init`` (for the paper's model: sigma_w2,
    sigma_b2, q*, ``input_q``, the data's ``input_mean_square`` and the ``input_scale`` of the
    stem's weights, the predicted variance of the eigenvalues of J J^T over the critical stack,
    ``predicted_variance`` (:func:`isometry.jacobian_variance`), and its largest singular value,
    ``predicted_max_singular_value``, with their measured values at ``jacobian_inputs`` training
    inputs; for the other initialisers and architectures: the initialiser's record, this
    package's ``predicted_mean`` / ``predicted_variance`` where it has them, and the body's
    measured ``measured_mean_eigenvalue``, ``measured_variance``, ``measured_max_singular_value``
    and ``jacobian_method``: :func:`isometry.experiments.networks.measure_body`), ``curve`` (list
    of {step, train_loss, test_accuracy, seconds}; train_loss is the mean minibatch loss since the
    previous evaluation), ``steps_to_target``/``seconds_to_target`` (first evaluation at or above
    the target, None if never; seconds count training only: the run's share of the wall time of
    the batched steps it took part in), ``final_test_accuracy``, ``best_test_accuracy``,
    ``diverged_at`` (first step with a non-finite loss, else None; training stops there),
    ``steps_run``, ``seconds``, ``device``, ``torch_version``.
    Non-finite numbers are stored as null.

    The same as ``run_batch([config], out_dir)[0]``: the record does not depend on whether the run
    was trained alone or in a batch.

    >>> rec = run_one(RunConfig(data="digits", depth=4, width=32, steps=50), "out")  # doctest: +SKIP
    >>> rec["steps_to_target"], rec["init"]["predicted_variance"]                     # doctest: +SKIP
    """
    return run_batch([config], out_dir, progress=progress, dataset=dataset)[0]
