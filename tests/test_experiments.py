"""The training harness: run ids, determinism, divergence, resume, checkpoints, grids, the pipeline,
analysis, CLI."""

import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from isometry.experiments import (  # noqa: E402
    RunConfig,
    build_mlp,
    eval_steps,
    experiment_grid,
    measure_jacobian,
    run_experiment,
    run_one,
    summarise,
)
from isometry.experiments import SCALES, analysis, summary  # noqa: E402
from isometry.experiments import pipeline as P  # noqa: E402
from isometry.experiments import stacked as S  # noqa: E402
from isometry.experiments import train as T  # noqa: E402
from isometry.experiments.models import critical_stack, input_scale, predicted_variance  # noqa: E402
from isometry.sweeps import records  # noqa: E402

TINY = dict(data="digits", depth=2, width=16, batch_size=16, steps=40, n_evals=6, jacobian_inputs=1,
            target_accuracy=0.3, device="cpu", learning_rate=0.05)


def _strip(rec):
    return [(p["step"], p["train_loss"], p["test_accuracy"]) for p in rec["curve"]]


def test_runconfig_validation_and_stable_id():
    c = RunConfig(**TINY)
    assert c.run_id == RunConfig(**TINY).run_id == RunConfig.from_dict(c.to_dict()).run_id
    assert RunConfig.from_dict(c.to_dict() | {"run_id": "ignored"}).run_id == c.run_id
    assert len(c.run_id) == 16
    assert c.replace(device="cuda", data_dir="/x", checkpoint_every=1.0).run_id == c.run_id
    # the names a grid gives a run are not part of it: experiments whose grids overlap share runs
    assert c.replace(experiment="E3", label="L=2").run_id == c.run_id
    assert c.replace(learning_rate=0.1).run_id != c.run_id
    assert c.replace(seed=1).run_id != c.run_id
    # numbers from a JSON file (1 for 1.0) and registry aliases give the same configuration
    assert c.replace(learning_rate=1).run_id == c.replace(learning_rate=1.0).run_id
    assert c.replace(activation="swish").activation == "silu"
    for ok in ("silu", "gelu", "erf", "shifted_relu", "leaky_relu", "sigmoid"):  # any activation with a torch module
        assert c.replace(activation=ok).activation == ok
    for bad, match in [(dict(optimizer="lbfgs"), "optimizer"), (dict(depth=0), "depth"),
                       (dict(learning_rate=-1.0), "learning_rate"), (dict(weights="uniform"), "weights"),
                       (dict(weights="orth"), "weights"), (dict(target_accuracy=1.5), "target_accuracy"),
                       (dict(data="mnist"), "data"), (dict(activation="swishy"), "activation"),
                       (dict(device="tpu"), "device"), (dict(device="cuda:x"), "device"),
                       (dict(q_star=float("nan")), "q_star"), (dict(data="cifar10"), "data_dir")]:
        with pytest.raises(ValueError, match=match):
            c.replace(**bad)
    for bad, match in [(dict(depth=True), "depth"), (dict(width=16.0), "width"), (dict(learning_rate="0.1"),
                                                                                  "learning_rate")]:
        with pytest.raises(TypeError, match=match):
            c.replace(**bad)
    with pytest.raises(ValueError, match="unknown run configuration field.*lr.*valid fields: activation"):
        RunConfig.from_dict(c.to_dict() | {"lr": 0.1})


def test_eval_steps_log_spaced():
    s = eval_steps(1000, 10)
    assert s[0] == 0 and s[1] == 1 and s[-1] == 1000 and s == sorted(set(s))
    ratios = np.diff(np.log(s[2:]))
    assert np.all(ratios > 0.3) and np.all(ratios < 1.2)
    assert eval_steps(1, 5) == [0, 1]


def test_model_critical_init_and_measured_jacobian():
    model, report = build_mlp(64, 10, depth=6, width=48, activation="tanh", weights="orthogonal", q_star=0.0259,
                              generator=0)
    assert abs(report.sigma_w2 - 1.0499609555855225) < 1e-6 and report.q_star == 0.0259 and report.depth == 6
    # a linear stem (64 features -> width 48), 6 critical layers, the readout
    assert len(model) == 1 + 2 * 6 + 1 and isinstance(model[1], torch.nn.Linear) and isinstance(model[2], torch.nn.Tanh)
    assert predicted_variance("tanh", 6, 0.0259, "orthogonal") == pytest.approx(
        6 * (0.9109636355364161 / 0.9524163681327928**2 - 1), rel=1e-6)
    # the stem, scaled by sqrt(input_q / mean square), puts the first critical layer's pre-activations at q*
    x = torch.randn(4000, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        q1 = float(model[1](model[0](x)).pow(2).mean())
    assert q1 == pytest.approx(0.0259, rel=0.06)
    m = measure_jacobian(model, 6, x[:2])
    # independent route: full Jacobian of the critical stack by autograd, in float64
    import copy

    m64 = copy.deepcopy(model).double()
    stack = m64[1:13]
    lam = []
    for v in x[:2].double():
        h0 = m64[0](v)
        s = torch.linalg.svdvals(torch.autograd.functional.jacobian(stack, h0))
        lam.append((s**2).numpy())
    assert m["measured_variance"] == pytest.approx(np.concatenate(lam).var(), rel=1e-8)
    assert m["measured_max_singular_value"] == pytest.approx(np.mean([np.sqrt(v.max()) for v in lam]), rel=1e-8)
    assert m["jacobian_inputs"] == 2
    assert m["measured_mean_eigenvalue"] == pytest.approx(1.0, abs=0.15)  # chi = 1
    assert m["measured_variance"] < 0.3 and 0.9 < m["measured_max_singular_value"] < 1.6
    model_g, _ = build_mlp(64, 10, depth=6, width=48, activation="tanh", weights="gaussian", q_star=0.0259, generator=0)
    assert predicted_variance("tanh", 6, 0.0259, "gaussian") > 5
    assert measure_jacobian(model_g, 6, x[:2])["measured_variance"] > m["measured_variance"]
    # as many features as units: the same stem in front; data of mean square 4 still start at q*
    square, rep = build_mlp(32, 10, depth=3, width=32, activation="erf", weights="orthogonal", q_star=0.5,
                            input_mean_square=4.0, generator=1)
    stem, stack = critical_stack(square, 3)
    assert len(square) == 8 and isinstance(stem, torch.nn.Linear) and len(stack) == 6 and rep.depth == 3
    assert input_scale(rep.input_q, 4.0) == pytest.approx(np.sqrt(rep.input_q) / 2)
    x2 = 2 * torch.randn(4000, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert float(stack[0](stem(x2)).pow(2).mean()) == pytest.approx(0.5, rel=0.06)
    with pytest.raises(ValueError, match="3 critical layers"):
        critical_stack(model, 3)


def test_run_one_record_and_determinism(tmp_path):
    c = RunConfig(**TINY)
    a = run_one(c, tmp_path / "a")
    b = run_one(c, tmp_path / "b")
    assert _strip(a) == _strip(b)
    assert a["init"]["measured_variance"] == b["init"]["measured_variance"]
    assert os.path.exists(records.run_path(tmp_path / "a", c.run_id))
    assert [p["step"] for p in a["curve"]] == eval_steps(c.steps, c.n_evals)
    assert a["diverged_at"] is None and 0 <= a["final_test_accuracy"] <= 1
    for k in ("sigma_w2", "sigma_b2", "q_star", "input_q", "input_mean_square", "input_scale", "predicted_variance",
              "measured_variance", "predicted_max_singular_value", "measured_max_singular_value"):
        assert k in a["init"]
    assert a["init"]["input_scale"] ** 2 * a["init"]["input_mean_square"] == pytest.approx(a["init"]["input_q"])
    assert a["init"]["measured_mean_eigenvalue"] == pytest.approx(1.0, abs=0.3)  # the stack starts at q*, chi = 1
    if a["steps_to_target"] is not None:
        first = next(p for p in a["curve"] if p["test_accuracy"] >= c.target_accuracy)
        assert a["steps_to_target"] == first["step"] and a["seconds_to_target"] is not None
    c2 = c.replace(seed=1)
    assert _strip(run_one(c2, tmp_path / "a")) != _strip(a)
    json.loads((tmp_path / "a" / "runs" / f"{c.run_id}.json").read_text())  # strict JSON


def test_divergence_is_recorded_not_raised(tmp_path):
    c = RunConfig(**{**TINY, "activation": "relu", "q_star": 1.0, "learning_rate": 1e8, "steps": 60})
    rec = run_one(c, tmp_path)
    assert rec["diverged_at"] is not None and 1 <= rec["diverged_at"] <= 60
    assert rec["curve"][-1]["step"] == rec["diverged_at"]
    assert rec["curve"][-1]["train_loss"] is None  # NaN/inf stored as null
    row = summary.summary_row(records.load_record(tmp_path, c.run_id))
    assert row["diverged_at"] == rec["diverged_at"]


def test_stop_at_target(tmp_path):
    c = RunConfig(**{**TINY, "target_accuracy": 0.15, "stop_at_target": True, "steps": 200})
    rec = run_one(c, tmp_path)
    assert rec["steps_to_target"] is not None and rec["steps_run"] == rec["steps_to_target"] < 200


def test_resume_skips_finished_runs_no_duplicates(tmp_path, monkeypatch):
    grid = [RunConfig(**{**TINY, "seed": s, "steps": 20}) for s in range(3)]
    calls = []
    real = T.run_batch

    def counting(configs, out_dir, **kw):
        calls.append([c.seed for c in configs])
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the second batch
        return real(configs, out_dir, **kw)

    monkeypatch.setattr(T, "run_batch", counting)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(grid, tmp_path, engine="sequential", progress=False, max_batch=1)
    # a stray temp file from a killed write is ignored
    (tmp_path / "runs" / ".tmp-xyz.json").write_text("{")
    first = records.load_records(tmp_path)
    assert [r["config"]["seed"] for r in first] == [0]
    mtime = os.path.getmtime(records.run_path(tmp_path, grid[0].run_id))
    calls.clear()
    monkeypatch.setattr(T, "run_batch", lambda configs, out_dir, **kw: (calls.append([c.seed for c in configs]),
                                                                      real(configs, out_dir, **kw))[1])
    res = run_experiment(grid, tmp_path, engine="sequential", progress=False)
    assert calls == [[1, 2]]  # only the unfinished runs trained, together as one batch
    assert res.sweep.skipped == 1 and sorted(res.sweep.completed) == sorted(c.run_id for c in grid[1:])
    assert os.path.getmtime(records.run_path(tmp_path, grid[0].run_id)) == mtime
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    assert len({r["run_id"] for r in rows}) == 3
    assert (tmp_path / "summary.csv").read_text().count("\n") == 4


def _interrupt_at_evaluation(monkeypatch, n: int):
    """Make the n-th evaluation raise KeyboardInterrupt (a run killed mid-way)."""
    real = S.StackedMLP.accuracy
    count = []

    def dies(self, *a, **k):
        count.append(1)
        if len(count) == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(S.StackedMLP, "accuracy", dies)
    return real


def test_checkpoint_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch):
    c = RunConfig(**{**TINY, "steps": 60, "n_evals": 8, "checkpoint_every": 0.0, "optimizer": "adam",
                     "learning_rate": 3e-3})
    full = run_one(c, tmp_path / "full")
    real = _interrupt_at_evaluation(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_one(c, tmp_path / "cut")
    assert os.path.exists(records.checkpoint_path(tmp_path / "cut", c.run_id))
    monkeypatch.setattr(S.StackedMLP, "accuracy", real)
    resumed = run_one(c, tmp_path / "cut")
    assert _strip(resumed) == _strip(full)
    assert not os.path.exists(records.checkpoint_path(tmp_path / "cut", c.run_id))
    # checkpoints are per run: a batch cut short resumes in another batch (here: alone, and the rest together)
    others = [c.replace(seed=s, learning_rate=1e-3 * s) for s in (1, 2)]
    _interrupt_at_evaluation(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        T.run_batch([c, *others], tmp_path / "batch")
    assert all(os.path.exists(records.checkpoint_path(tmp_path / "batch", x.run_id)) for x in [c, *others])
    monkeypatch.setattr(S.StackedMLP, "accuracy", real)
    assert _strip(run_one(c, tmp_path / "batch")) == _strip(full)
    assert [_strip(r) for r in T.run_batch(others, tmp_path / "batch")] == [
        _strip(run_one(x, tmp_path / "clean")) for x in others]


def test_checkpoint_is_used_whole_or_not_at_all(tmp_path, monkeypatch):
    """A checkpoint whose weights load but whose optimiser state (or generator, or curve) does not is
    not used at all: the run starts again from its initialisation and gives the clean run's curve."""
    c = RunConfig(**{**TINY, "steps": 60, "n_evals": 8, "checkpoint_every": 0.0, "optimizer": "momentum",
                     "learning_rate": 0.01})
    clean = run_one(c, tmp_path / "clean")
    real = _interrupt_at_evaluation(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_one(c, tmp_path / "cut")
    monkeypatch.setattr(S.StackedMLP, "accuracy", real)
    ckpt = records.checkpoint_path(tmp_path / "cut", c.run_id)
    good = torch.load(ckpt, weights_only=True)
    assert good["state"]["step"] > 0 and good["optimizer"]["kind"] == "momentum"
    breakages = {
        "optimizer buffer of the wrong shape": lambda s: s["optimizer"]["buffers"]["hidden_w"].update(
            momentum_buffer=torch.zeros(3, 3)),
        "optimizer of another kind": lambda s: s["optimizer"].update(kind="adam"),
        "optimizer steps out of step": lambda s: s["optimizer"].update(steps=s["optimizer"]["steps"] + 1),
        "no generator state": lambda s: s.pop("batch_gen"),
        "curve not a list": lambda s: s["state"].update(curve=None),
        "another run's checkpoint": lambda s: s.update(run_id="0" * 16),
    }
    for what, breaks in breakages.items():
        import copy

        bad = copy.deepcopy(good)
        breaks(bad)
        torch.save(bad, ckpt)
        out = tmp_path / "cut"
        rec = run_one(c, out)
        assert _strip(rec) == _strip(clean), what  # started over: the clean run's curve, not a hybrid
        assert not os.path.exists(ckpt), what
        os.unlink(records.run_path(out, c.run_id))
    (tmp_path / "cut" / "checkpoints").mkdir(exist_ok=True)
    with open(ckpt, "wb") as fh:
        fh.write(b"\x80truncated")
    assert _strip(run_one(c, tmp_path / "cut")) == _strip(clean)


def test_batched_runs_equal_runs_alone(tmp_path):
    """Same run id, same record, whether the run is trained alone or beside others (bitwise on CPU):
    every optimiser, mixed weights, q*, learning rates, seeds, steps, targets, one run that diverges."""
    for opt, lrs in [("sgd", (0.01, 0.3)), ("momentum", (0.003, 0.03)), ("adam", (1e-3, 1e-2)),
                     ("rmsprop", (1e-4, 3e-3))]:
        grid = [RunConfig(**{**TINY, "optimizer": opt, "learning_rate": lr, "seed": s, "weights": w, "q_star": q,
                             "steps": 30 + 10 * s, "stop_at_target": s == 1, "target_accuracy": 0.3})
                for lr in lrs for s in (0, 1) for w, q in (("orthogonal", 0.0259), ("gaussian", 0.5))]
        batches = [grid]
        if opt == "sgd":  # ReLU runs, one of them diverging in the middle of its batch
            batches.append([RunConfig(**{**TINY, "activation": "relu", "q_star": 1.0, "learning_rate": lr,
                                         "seed": s, "steps": 30}) for lr in (0.05, 1e8) for s in (0, 1)])
        for k, grid in enumerate(batches):
            batch = T.run_batch(grid, tmp_path / f"batch-{opt}-{k}")
            for c, b in zip(grid, batch):
                alone = run_one(c, tmp_path / f"alone-{opt}")
                assert _strip(alone) == _strip(b), (opt, c.learning_rate, c.seed, c.weights)
                assert alone["init"] == b["init"] and alone["steps_to_target"] == b["steps_to_target"]
                assert alone["diverged_at"] == b["diverged_at"]
            assert any(r["diverged_at"] is not None for r in batch) == (k == 1)
            assert k == 1 or any(r["steps_run"] < r["config"]["steps"] for r in batch)  # a run stopped at its target
    with pytest.raises(ValueError, match="must share"):
        T.run_batch([RunConfig(**TINY), RunConfig(**{**TINY, "depth": 3})], tmp_path / "x")


def test_stacked_optimizers_follow_torch_optim():
    """Independent route: one stacked run against nn.Sequential + torch.optim on the same minibatches."""
    from isometry.experiments.stacked import StackedMLP, StackedOptimizer

    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(10, (64,), generator=torch.Generator().manual_seed(1))
    for kind, lr in [("sgd", 0.1), ("momentum", 0.02), ("adam", 3e-3), ("rmsprop", 1e-3)]:
        ref, _ = build_mlp(64, 10, depth=3, width=16, activation="tanh", weights="orthogonal", q_star=0.3,
                           generator=2)
        net = StackedMLP.from_models([ref], 3)
        opt = StackedOptimizer(kind, net, [lr], [0.9])
        torch_opt = {"sgd": lambda p: torch.optim.SGD(p, lr=lr), "momentum": lambda p: torch.optim.SGD(p, lr=lr,
                     momentum=0.9), "adam": lambda p: torch.optim.Adam(p, lr=lr),
                     "rmsprop": lambda p: torch.optim.RMSprop(p, lr=lr)}[kind](ref.parameters())
        for step in range(15):
            idx = torch.arange(16) + 16 * (step % 4)
            torch_opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            torch_opt.step()
            for p in net.params.values():
                p.grad = None
            torch.nn.functional.cross_entropy(net.forward(x[idx][None])[0], y[idx]).backward()
            opt.step(net)
        got = net.params["hidden_w"][2, 0].detach()
        assert torch.allclose(got, ref[5].weight.detach().t(), rtol=1e-4, atol=1e-6), kind
        assert torch.allclose(net.params["out_b"][0, 0].detach(), ref[-1].bias.detach(), rtol=1e-4, atol=1e-6), kind


def test_invalid_records_are_not_reused(tmp_path):
    """A record file that is not a finished run of its id (config null, edited, truncated) is trained
    again instead of crashing the summary or being trusted."""
    c = RunConfig(**TINY)
    good = run_one(c, tmp_path)
    path = records.run_path(tmp_path, c.run_id)
    for broken in ({**good, "config": None}, {**good, "config": {**good["config"], "seed": 5}},
                   {**good, "curve": []}, {k: v for k, v in good.items() if k != "init"}):
        with open(path, "w") as fh:
            json.dump(broken, fh)
        assert not summary.valid_record(broken)
        res = run_experiment([c], tmp_path, engine="sequential", progress=False)
        assert res.ok and len(res.sweep.completed) == 1 and res.rows[0]["label"] == c.label
        assert _strip(records.load_record(tmp_path, c.run_id)) == _strip(good)


def test_experiment_grids():
    for name in ("E1", "E2", "E3"):
        g = {s: experiment_grid(name, **({"scale": s} | ({"data_dir": "/cifar"} if s == "paper" else {})))
             for s in SCALES}
        for grid in g.values():
            assert len({c.run_id for c in grid}) == len(grid) > 0
            assert all(c.experiment == name for c in grid)
        assert len(g["quick"]) <= len(g["default"])
        assert {c.seed for c in g["default"]} == {0, 1, 2}  # 3 seeds wherever a Mann-Whitney test is made
        assert all(c.width == 400 and c.steps == 100_000 and c.data == "cifar10" for c in g["paper"])
        assert all(c.width == 64 and c.data == "digits" and c.steps == 400 for c in g["default"] + g["full"])
        assert name == "E3" or all(c.depth == 200 for c in g["paper"])
        with pytest.raises(ValueError, match="data_dir"):  # CIFAR-10 is read from a directory
            experiment_grid(name, scale="paper")
    # the 0.1 CPU grids, unchanged, at --scale full
    assert len(experiment_grid("E1", scale="full")) == 144 and len(experiment_grid("E3", scale="full")) == 56
    assert sorted({c.learning_rate for c in experiment_grid("E2", scale="full")}) == [0.01, 0.03, 0.1]
    e1 = experiment_grid("E1")
    assert {c.optimizer for c in e1} == {"sgd", "momentum", "adam", "rmsprop"}
    assert {c.weights for c in e1} == {"orthogonal", "gaussian"}
    assert {(c.activation, round(c.q_star, 3)) for c in e1} == {("tanh", 0.026), ("tanh", 0.821), ("relu", 1.0)}
    assert len(experiment_grid("E1", seeds=5)) == len(e1) // 3 * 5
    assert {c.data for c in experiment_grid("E2", scale="quick", data="mnist1d")} == {"mnist1d"}
    for bad, exc, match in [(dict(scale="cpu"), ValueError, "scale must be one of quick, default, full, paper"),
                            (dict(seeds=0), ValueError, "seeds"), (dict(seeds=True), TypeError, "seeds"),
                            (dict(target_accuracy=1.5), ValueError, "target_accuracy"),
                            (dict(device="gpu0"), ValueError, "device")]:
        with pytest.raises(exc, match=match):
            experiment_grid("E1", **bad)
    with pytest.raises(ValueError, match="experiment"):
        experiment_grid("E5")


def test_centred_learning_rate_grids_share_runs():
    """The default grids are centred on eta0 = c/L on one lattice, so overlapping grids share runs."""
    from isometry.experiments.grids import LR_TIMES_DEPTH, lattice_rate

    e1, e2, e3 = (experiment_grid(n) for n in ("E1", "E2", "E3"))
    for opt, c in LR_TIMES_DEPTH.items():
        rates = sorted({x.learning_rate for x in e1 if x.optimizer == opt})
        # centred, half a decade apart
        assert rates == pytest.approx([c / 32 / 10 ** 0.5, c / 32, c / 32 * 10 ** 0.5], rel=1e-3)
    for depth in (4, 8, 16, 32):
        eta_l = sorted(x.learning_rate * depth for x in e3 if x.depth == depth and x.seed == 0)
        # the same eta L at every depth
        assert eta_l == pytest.approx([2 * 10 ** (k / 4) for k in range(-2, 3)], rel=1e-3)
    ids3 = {x.run_id for x in e3}
    ref = [x for x in e1 if x.label == "tanh sw2=1.05" and x.weights == "orthogonal" and x.optimizer == "sgd"]
    assert len(ref) == 9 and all(x.run_id in ids3 for x in ref)  # E1's reference SGD runs are E3's at L = 32
    ids2 = {x.run_id for x in e2}
    tanh_sgd = [x for x in e1 if x.activation == "tanh" and x.optimizer == "sgd"]
    assert len(tanh_sgd) == 36 and all(x.run_id in ids2 for x in tanh_sgd)  # and E2's at q* = 0.0259, 0.821
    assert lattice_rate("sgd", 32, 0) == 0.0625


def test_extend_learning_rates_rule():
    from isometry.experiments.grids import extend_learning_rates, lattice_rate

    grid = [c for c in experiment_grid("E3", scale="quick") if c.depth == 4]
    rates = sorted({c.learning_rate for c in grid})

    def rows(best):
        return [{"depth": 4, "learning_rate": c.learning_rate, "seed": c.seed, "final_test_accuracy": 0.9,
                 "steps_to_target": 10 if c.learning_rate == best else 50} for c in grid]

    assert extend_learning_rates("E3", grid, rows(rates[2])) == []  # interior: nothing to add
    top = extend_learning_rates("E3", grid, rows(rates[-1]))
    assert [c.learning_rate for c in top] == [lattice_rate("sgd", 4, 3)] * 3 and {c.seed for c in top} == {0, 1, 2}
    low = extend_learning_rates("E3", grid, rows(rates[0]))
    assert [c.learning_rate for c in low] == [lattice_rate("sgd", 4, -3)] * 3
    # at most max_extra rates per side, counted against the grid before any extension
    grown = grid + top + extend_learning_rates("E3", grid + top, [
        {"depth": 4, "learning_rate": c.learning_rate, "seed": c.seed, "final_test_accuracy": 0.9,
         "steps_to_target": 5 if c.learning_rate == top[0].learning_rate else 50} for c in grid + top], grid)
    assert max(c.learning_rate for c in grown) == lattice_rate("sgd", 4, 4)
    last = [{"depth": 4, "learning_rate": c.learning_rate, "seed": c.seed, "final_test_accuracy": 0.9,
             "steps_to_target": 1 if c.learning_rate == lattice_rate("sgd", 4, 4) else 50} for c in grown]
    assert extend_learning_rates("E3", grown, last, grid, max_extra=2) == []
    assert extend_learning_rates("E3", grown, last, grid, max_extra=3) != []
    assert extend_learning_rates("E3", grid, rows(rates[-1]), max_extra=0) == []


def test_experiments_share_runs(tmp_path):
    """E1 and E3 run together: a run both grids hold is trained once; each keeps its own names."""
    from isometry.experiments import run_experiments

    res = run_experiments(["E1", "E3"], tmp_path, scale="quick", steps=3, seeds=1, engine="sequential",
                          progress=False, plots=False, lr_extensions=0)
    e1 = {r["run_id"]: r for r in res["E1"].rows}
    e3 = {r["run_id"]: r for r in res["E3"].rows}
    shared = set(e1) & set(e3)
    assert len(shared) == 3  # orthogonal tanh at q* = 0.0259, SGD, L = 8, three rates
    assert len(records.load_records(tmp_path)) == len(set(e1) | set(e3))
    for rid in shared:
        assert e1[rid]["label"] == "tanh sw2=1.05" and e1[rid]["experiment"] == "E1"
        assert e3[rid]["label"] == "L=8" and e3[rid]["experiment"] == "E3"
    assert (tmp_path / "E1" / "analysis.json").exists() and (tmp_path / "E3" / "summary.csv").exists()


def _row(label, weights, opt, lr, seed, t, acc=0.9):
    return {"label": label, "weights": weights, "optimizer": opt, "learning_rate": lr, "seed": seed,
            "steps_to_target": t, "final_test_accuracy": acc, "target_accuracy": 0.9, "data": "digits"}


def test_analysis_best_lr_and_comparison():
    rows = []
    for s in range(4):
        rows += [_row("tanh sw2=1.05", "orthogonal", "sgd", 0.1, s, 10 + s),
                 _row("tanh sw2=1.05", "orthogonal", "sgd", 0.01, s, 100 + s),
                 _row("relu sw2=2", "orthogonal", "sgd", 0.1, s, None, 0.3),
                 _row("relu sw2=2", "orthogonal", "sgd", 0.01, s, 50 + s)]
    best = analysis.best_learning_rates(rows)
    assert best == {("tanh sw2=1.05", "orthogonal", "sgd"): 0.1, ("relu sw2=2", "orthogonal", "sgd"): 0.01}
    res = analysis.e1_comparison(rows)["sgd"]
    assert res["networks"]["tanh sw2=1.05 orthogonal"]["median_tau"] == 11.5
    c = res["reference_vs"]["relu sw2=2 orthogonal"]
    assert c["median_ratio"] == pytest.approx(51.5 / 11.5) and c["reference_faster_every_seed"]
    assert c["p_value"] == pytest.approx(1 / 70)  # exact one-sided Mann-Whitney, 4 vs 4, complete separation
    comb = analysis.combined_over_optimizers({"sgd": {"reference_vs": {"x": c}}, "adam": {"reference_vs": {"x": c}}})
    assert comb["x"]["reference_faster_every_seed"] == 2
    assert comb["x"]["fisher_p_value"] == pytest.approx(0.0019381613, rel=1e-6)  # chi2_4 tail at -2 ln(70^-2)
    # never reaching the target counts as slowest
    rows2 = [_row("a", "orthogonal", "adam", 1e-3, s, None) for s in range(3)]
    assert analysis.e1_comparison(rows2)["adam"]["networks"]["a orthogonal"]["median_tau"] is None
    e3 = analysis.e3_table([{"depth": 4, "learning_rate": lr, "steps_to_target": t}
                            for lr, t in [(0.1, 40), (0.01, 90), (1.0, None)]])
    assert e3[0]["best_learning_rate"] == 0.1 and e3[0]["tau_over_sqrt_depth"] == 20.0
    assert e3[0]["eta_times_depth"] == pytest.approx(0.4)


def test_summary_json_strict_and_keys(tmp_path):
    run_one(RunConfig(**TINY), tmp_path)
    rows = summarise(tmp_path)
    needed = {"activation", "weights", "q_star", "sigma_w2", "optimizer", "learning_rate", "depth", "width",
              "steps_to_target", "target_accuracy", "final_test_accuracy", "diverged_at", "predicted_variance",
              "measured_variance", "input_q"}
    assert needed <= set(rows[0])
    assert json.loads((tmp_path / "summary.json").read_text()) == rows
    assert math.isfinite(rows[0]["sigma_w2"])


def test_pipeline_summarises_once_and_analyses_finished_experiments(tmp_path, monkeypatch):
    writes = []
    real = P.write_summary
    monkeypatch.setattr(P, "write_summary", lambda out, rows: (writes.append(len(rows)), real(out, rows))[1])
    grid = experiment_grid("E3", scale="quick", steps=30)[:2]
    # what no retry can fix is refused before any run starts: data that cannot be loaded, a run too large
    for bad, match in [(grid[1].replace(data="mnist1d", data_size=5), "num_samples"),
                       (grid[1].replace(width=10**7), "needs about .* of memory")]:
        with pytest.raises(ValueError, match=match):
            run_experiment([grid[0], bad], tmp_path / "refused", engine="sequential", progress=False)
        assert not records.load_records(tmp_path / "refused")
    failing = grid[1].replace(seed=7)  # fails inside its run: reported, the rest goes on
    real_batch = T.run_batch

    def batch(configs, out_dir, **kw):
        if any(c.run_id == failing.run_id for c in configs):
            raise RuntimeError("num_samples: a run that fails")
        return real_batch(configs, out_dir, **kw)

    monkeypatch.setattr(T, "run_batch", batch)
    res = run_experiment([grid[0], failing], tmp_path, engine="sequential", progress=False, max_batch=1)
    assert writes == [1]  # one summary per call
    assert not res.ok and list(res.sweep.failed) == [failing.run_id]
    assert "num_samples" in res.sweep.failed[failing.run_id]
    assert not res.complete and res.analysis is None and res.figures == ()  # incomplete: no analysis, no figure
    assert not (tmp_path / "analysis.json").exists()
    d = res.to_dict()
    assert (d["total"], d["skipped"], d["completed"], d["finished"]) == (2, 0, 1, 1)
    json.dumps(d, allow_nan=False)
    grid_file = json.loads((tmp_path / "grid.json").read_text())
    assert [g["run_id"] for g in grid_file] == [grid[0].run_id, failing.run_id]
    with pytest.raises(ValueError, match="scale.*named experiment"):
        run_experiment(grid, tmp_path, scale="quick")
    with pytest.raises(ValueError, match="engine"):
        run_experiment(grid, tmp_path, engine="dask")
    with pytest.raises(ValueError, match="address"):
        run_experiment(grid, tmp_path, engine="sequential", address="auto")


def test_cli_quick_writes_summary_and_plots(tmp_path, capsys):
    from isometry.cli import main

    out = tmp_path / "E3"
    argv = ["train", "--experiment", "E3", "--quick", "--out", str(out), "--no-progress", "--steps", "60",
            "--engine", "sequential"]
    assert main(argv) == 0
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) >= len(experiment_grid("E3", scale="quick"))
    assert {"steps_to_target", "final_test_accuracy", "diverged_at", "target_accuracy"} <= set(rows[0])
    assert (out / "E3_tau_vs_eta_L.png").stat().st_size > 1000
    assert "tau/sqrt(L)" in capsys.readouterr().out
    assert json.loads((out / "analysis.json").read_text())["experiment"] == "E3"
    # rerun resumes: nothing retrains, same rows
    assert main(argv + ["--no-plots"]) == 0
    assert json.loads((out / "summary.json").read_text()) == rows
    assert f"0 trained now, {len(rows)} finished earlier and reused" in capsys.readouterr().out
    # the library's validation, printed as one line
    for bad, message in [(["--experiment", "E1", "--data", "cifar10"], "data='cifar10' needs data_dir"),
                         (["--experiment", "E1", "--target", "1.5"], "target_accuracy must be in (0, 1]"),
                         (["--experiment", "E1", "--device", "gpu"], "device must be"),
                         (["--experiment", "E1", "--seeds", "0"], "seeds must be an integer >= 1")]:
        assert main(["train", *bad, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing written for invalid input


def test_plots_from_records(tmp_path):
    from isometry.plotting import pyplot
    from isometry.plotting.experiments import learning_curves, speed_vs_isometry, tau_vs_eta_depth

    recs = []
    for w in ("orthogonal", "gaussian"):
        for opt in ("sgd", "adam"):
            c = RunConfig(**{**TINY, "weights": w, "optimizer": opt, "steps": 10, "n_evals": 3,
                             "learning_rate": 0.05 if opt == "sgd" else 1e-3, "label": "tanh sw2=1.05"})
            recs.append(run_one(c, tmp_path))
    fig = learning_curves(recs, path=tmp_path / "curves.png", title="E1 test")
    assert len(fig.axes) == 2 and os.path.getsize(tmp_path / "curves.png") > 1000
    assert all(ax.get_ylabel() for ax in fig.axes)
    rows = [summary.summary_row(r) for r in recs]
    fig2 = speed_vs_isometry(rows, path=tmp_path / "e2.png")
    assert os.path.getsize(tmp_path / "e2.png") > 1000 and len(fig2.axes) == 4
    _, axes = pyplot().subplots(1, 4)
    assert speed_vs_isometry(rows, ax=axes) is axes[0].figure  # draws into the given axes
    with pytest.raises(ValueError, match="4 Axes"):
        speed_vs_isometry(rows, ax=axes[:2])
    fig3 = tau_vs_eta_depth(rows)
    assert fig3.axes[0].get_xlabel().endswith(r"$\eta L$")
    # fit for a paper: y-labels everywhere, one legend for panels that share it, titles that say what ran,
    # unlabelled minor ticks on log axes (no overlapping labels)
    from matplotlib.ticker import NullFormatter

    for f in (fig, fig2, fig3):
        assert all(a.get_ylabel() for a in f.axes)
        assert all(isinstance(a.xaxis.get_minor_formatter(), NullFormatter) for a in f.axes)
    assert len(fig.legends) == 1 and len(fig2.legends) == 1 and not any(a.get_legend() for a in fig.axes)
    for text in (fig._suptitle.get_text(), fig2._suptitle.get_text()):
        assert "digits" in text and "L=2" in text and "N=16" in text
    assert "tanh" in fig2._suptitle.get_text() and "N=16" in fig3.axes[0].get_title()
    pyplot().close("all")
