"""E4, the initialiser benchmark: the wrappers of every initialiser, the networks, the protocol
(grid, tuning seed, extensions, reported seeds), the analysis, the figure, the pipeline and the CLI."""

import importlib.metadata
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dks")
pytest.importorskip("lsuv")
pytest.importorskip("anyinit")

import isometry  # noqa: E402
from isometry.cli import main  # noqa: E402
from isometry.experiments import INITIALIZERS, RunConfig, experiment_grid, run_experiment, run_one  # noqa: E402
from isometry.experiments import benchmark as B  # noqa: E402
from isometry.experiments.config import OUR_INITIALIZERS, batch_key  # noqa: E402
from isometry.experiments.data import load_digits  # noqa: E402
from isometry.experiments.grids import select_configs  # noqa: E402
from isometry.experiments.initializers import initialize, prepare_inputs  # noqa: E402
from isometry.experiments.networks import build_network, measure_body, split_network  # noqa: E402
from isometry.experiments.stacked import StackedMLP  # noqa: E402
from isometry.torch import InputNormalization, ShapedActivation, choose_critical_point  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# ------------------------------------------------------------------------------ configurations
def test_runconfig_initializer_fields_and_ids():
    c = RunConfig(data="digits", depth=4, width=16)
    d = c.to_dict()
    old = {k: v for k, v in d.items() if k not in ("initializer", "normalize_input", "architecture")}
    assert RunConfig.from_dict(old).run_id == c.run_id  # records written before the fields existed keep their ids
    ids = {c.run_id, c.replace(initializer="lsuv").run_id, c.replace(normalize_input=True).run_id,
           c.replace(architecture="cnn").run_id}
    assert len(ids) == 4
    with pytest.raises(ValueError, match="initializer"):
        c.replace(initializer="kaiming")
    with pytest.raises(ValueError, match="architecture"):
        c.replace(architecture="transformer")
    with pytest.raises(ValueError, match="normalize_input"):
        c.replace(initializer="lsuv", normalize_input=True)
    with pytest.raises(TypeError, match="normalize_input"):
        c.replace(normalize_input=1)
    # weight-only initialisers share a batched model; those that change the unit or the inputs do not
    assert batch_key(c.replace(initializer="lsuv")) == batch_key(c.replace(initializer="anyinit"))
    assert batch_key(c.replace(initializer="dks:tat")) != batch_key(c.replace(initializer="isometry:tat"))
    assert batch_key(c.replace(normalize_input=True)) != batch_key(c)


# ------------------------------------------------------------------------------ the wrappers
CALLS = {
    "isometry:critical": "critical_init_(model, mode='critical'",
    "isometry:dks": "critical_init_(model, mode='dks'",
    "isometry:tat": "critical_init_(model, mode='tat'",
    "pytorch:default": "reset_parameters()",
    "pytorch:orthogonal": "torch.nn.init.orthogonal_(m.weight, gain=torch.nn.init.calculate_gain(",
    "lsuv": "lsuv.lsuv_with_singlebatch(model, batch",
    "anyinit": "anyinit.initialize(model, seed=",
    "dks:dks": "get_transformed_activations(['{unit}'], method='DKS'",
    "dks:tat": "get_transformed_activations(['{unit}'], method='TAT'",
}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("name", INITIALIZERS)
def test_every_initializer_runs_and_records_its_call(name, activation, digits):
    x = torch.from_numpy(prepare_inputs(name, digits.x_train[:16]))
    kw = dict(activation=activation, architecture="mlp", depth=16, batch=x, q_star=B.default_q_star(activation, 16),
              normalize_input=name in OUR_INITIALIZERS)

    def make(seed):
        net = build_network("mlp", d_in=x.shape[1], n_classes=10, depth=16, width=16, activation=activation,
                            generator=seed)
        return initialize(name, net, seed=seed, **kw)

    state = torch.get_rng_state()
    model, rec = make(3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    dist = {"isometry": "isometry", "pytorch": "torch"}.get(name.split(":")[0], name.split(":")[0])
    assert rec["name"] == name and rec["package"] == dist
    # this package reports its own __version__ (an editable install's metadata can lag); peers their distribution's
    assert rec["version"] == (isometry.__version__ if dist == "isometry" else importlib.metadata.version(dist))
    unit = "leaky_relu" if activation == "relu" else activation
    assert CALLS[name].format(unit=unit) in rec["call"]
    if name.startswith("dks:") and activation == "relu":  # dks's advice, said in the record
        assert any("leaky_relu" in n for n in rec["notes"])
    out = model(x)
    assert out.shape == (16, 10) and torch.isfinite(out).all()
    # the same seed gives the same network, another seed another
    again, _ = make(3)
    other, _ = make(4)
    w = lambda m: torch.cat([p.detach().ravel() for p in m.parameters()])  # noqa: E731
    assert torch.equal(w(model), w(again)) and not torch.equal(w(model), w(other))
    meas = measure_body(model, "mlp", 16, x[:1])
    assert meas["jacobian_method"] == "exact" and np.isfinite(meas["measured_variance"])
    if name in OUR_INITIALIZERS:
        assert isinstance(model[0], InputNormalization)
        assert rec["predicted_mean"] > 0 and rec["predicted_variance"] >= 0


@pytest.mark.parametrize("name, activation, rel", [("isometry:critical", "tanh", 0.08), ("isometry:tat", "tanh", 0.08),
                                                   ("isometry:dks", "tanh", 0.08), ("isometry:critical", "relu", 0.15)])
def test_our_modes_measured_jacobian_matches_the_prediction(name, activation, rel, digits):
    """The body's J J^T at width 256, measured exactly at 4 inputs, against the InitReport's mean and
    variance (free probability / kernel shaping): they differ by 0.25 vs 1.1 vs 6.2 vs 8 between
    these modes, so a wrong formula or a wrong input scale would be far outside the tolerances
    (ReLU's finite-width fluctuations are the largest: its tolerance is twice the others')."""
    depth, width = 8, 256
    x = torch.from_numpy(digits.x_train[:4])
    net = build_network("mlp", d_in=64, n_classes=10, depth=depth, width=width, activation=activation, generator=0)
    model, rec = initialize(name, net, activation=activation, architecture="mlp", depth=depth, seed=0, batch=x,
                            q_star=B.default_q_star(activation, depth), normalize_input=True)
    meas = measure_body(model, "mlp", depth, x)
    assert meas["measured_mean_eigenvalue"] == pytest.approx(rec["predicted_mean"], rel=rel)
    assert meas["measured_variance"] == pytest.approx(rec["predicted_variance"], rel=3 * rel)


@pytest.mark.parametrize("activation, mode", [("tanh", "tat"), ("tanh", "dks"), ("relu", "tat")])
def test_dks_rows_compute_the_same_unit_as_our_shaped_modes(activation, mode, digits):
    """dks's transformed activation (through its PyTorch front-end, as the wrapper calls it) and this
    package's shaped activation for the same network agree to 1e-5: an independent check that the
    wrapper hands dks the right subnetwork function (and that the ReLU row is dks's Leaky ReLU)."""
    x = torch.from_numpy(prepare_inputs(f"dks:{mode}", digits.x_train[:8]))
    kw = dict(activation=activation, architecture="mlp", depth=24, seed=0, batch=x)
    net = build_network("mlp", d_in=x.shape[1], n_classes=10, depth=24, width=8, activation=activation, generator=0)
    theirs, _ = initialize(f"dks:{mode}", net, **kw)
    net = build_network("mlp", d_in=64, n_classes=10, depth=24, width=8, activation=activation, generator=0)
    ours, _ = initialize(f"isometry:{mode}", net, normalize_input=True, **kw)
    h = torch.linspace(-4, 4, 101, dtype=torch.float64)
    unit_theirs = theirs[2]
    unit_ours = next(m for m in ours.modules() if isinstance(m, ShapedActivation))
    assert torch.allclose(unit_theirs(h), unit_ours(h), rtol=1e-5, atol=1e-6)


def test_dks_non_square_layers_are_noted_as_they_measure(digits):
    """dks 0.1.2's scaled_uniform_orthogonal_ takes a PyTorch weight (out, in) for (in, out): the
    record says by how much each non-square layer scales q, and that is what the layer does."""
    x = torch.from_numpy(prepare_inputs("dks:tat", digits.x_train[:256]))
    net = build_network("mlp", d_in=65, n_classes=10, depth=16, width=128, activation="tanh", generator=0)
    model, rec = initialize("dks:tat", net, activation="tanh", architecture="mlp", depth=16, seed=0, batch=x)
    (note,) = [n for n in rec["notes"] if "scaled_uniform_orthogonal_" in n]
    assert "65 -> 128: q x 0.508" in note and "128 -> 10: q x 12.8" in note
    with torch.no_grad():
        q = model[0](x).pow(2).mean() / x.pow(2).mean()
    assert float(q) == pytest.approx(65 / 128, rel=0.03)


def test_dks_per_location_normalisation(digits):
    x = digits.x_train[:5]
    flat = prepare_inputs("dks:tat", x)
    assert flat.shape == (5, 65) and np.allclose(np.mean(flat ** 2, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(prepare_inputs("lsuv", x), x)
    img = prepare_inputs("dks:tat", x, (1, 8, 8)).reshape(5, 2, 8, 8)  # one channel appended, per position
    assert np.allclose(np.mean(img ** 2, axis=1), 1.0, rtol=1e-5)


def test_convolutional_and_residual_networks(digits):
    for arch in ("cnn", "resnet"):
        net = build_network(arch, d_in=64, n_classes=10, depth=3, width=4, activation="tanh", shape=(1, 8, 8),
                            generator=0)
        pre, body = split_network(net, arch, 3)
        x = torch.from_numpy(digits.x_train[:2])
        h = pre(x)
        assert h.shape == (2, 4, 8, 8) and body(h).shape == h.shape
        assert net(x).shape == (2, 10)
    with pytest.raises(ValueError, match="shape"):
        build_network("cnn", d_in=64, n_classes=10, depth=2, width=4, activation="tanh")


def test_stacked_input_normalisation_matches_the_module():
    models = []
    for seed in range(3):
        net = build_network("mlp", d_in=12, n_classes=3, depth=2, width=8, activation="tanh", generator=seed)
        net.insert(0, InputNormalization(q=0.1 * (seed + 1)))
        models.append(net)
    stacked = StackedMLP.from_models(models, 2)
    x = torch.randn(3, 5, 12) * torch.tensor([0.1, 1.0, 10.0])[:, None, None]
    out = stacked.forward(x)
    for r, m in enumerate(models):
        assert torch.allclose(out[r], m(x[r]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ the protocol
def test_e4_grid_protocol():
    grid = experiment_grid("E4", scale="default")
    assert {c.seed for c in grid} == {B.TUNING_SEED} and all(c.stop_at_target for c in grid)
    cells = {(c.architecture, c.activation, c.optimizer, c.depth) for c in grid}
    assert cells == {("mlp", a, "adam", d) for a in ("tanh", "relu") for d in (32, 128)}
    for cell in cells:  # the same learning-rate grid for every initialiser of a cell
        mine = [c for c in grid if (c.architecture, c.activation, c.optimizer, c.depth) == cell]
        rates = {i: sorted(c.learning_rate for c in mine if c.initializer == i) for i in INITIALIZERS}
        assert len({tuple(r) for r in rates.values()}) == 1 and len(rates["lsuv"]) == 3
        # isometry:critical runs at the q* critical_init_ would choose itself
        cp, _ = choose_critical_point(cell[1], cell[3])
        (q,) = {c.q_star for c in mine}
        assert q == pytest.approx(cp.q_star, rel=1e-5)
    assert {c.normalize_input for c in grid if c.initializer in OUR_INITIALIZERS} == {True}
    # a shaping that cannot reach its target is left out, and said so
    quick = experiment_grid("E4", scale="quick")
    out = B.excluded("quick")
    assert {(e["initializer"], e["activation"], e["depth"]) for e in out} == {("isometry:tat", "relu", 8),
                                                                              ("dks:tat", "relu", 8)}
    assert not any(c.initializer.endswith(":tat") and c.activation == "relu" and c.depth == 8 for c in quick)
    assert len(select_configs(quick, {"depth": ["16"], "activation": "tanh"})) == 27
    with pytest.raises(ValueError, match="no configuration has depth"):
        select_configs(quick, {"depth": [7]})
    with pytest.raises(ValueError, match="unknown field"):
        select_configs(quick, {"layers": [7]})


def _row(c, tau, acc=0.9, **extra):
    return {"seed": c.seed, "learning_rate": c.learning_rate, "steps_to_target": tau, "final_test_accuracy": acc,
            "architecture": c.architecture, "activation": c.activation, "optimizer": c.optimizer, "depth": c.depth,
            "initializer": c.initializer, "steps": c.steps, "diverged_at": None, **extra}


def test_next_round_extends_then_adds_the_reported_seeds():
    grid = select_configs(experiment_grid("E4", scale="quick"),
                          {"depth": [16], "activation": ["tanh"], "initializer": ["lsuv", "isometry:tat"]})
    rates = sorted({c.learning_rate for c in grid})
    # lsuv is best at the largest rate (an edge), TAT in the middle
    rows = [_row(c, 10 if (c.initializer == "lsuv" and c.learning_rate == rates[-1]) or
                 (c.initializer == "isometry:tat" and c.learning_rate == rates[1]) else 40) for c in grid]
    new = B.next_round(grid, rows, grid, seeds=3, max_extra=2)
    assert len(new) == 1 and new[0].initializer == "lsuv" and new[0].learning_rate > rates[-1]
    assert new[0].seed == B.TUNING_SEED
    grid2 = grid + new
    rows2 = rows + [_row(new[0], 30)]
    rep = B.next_round(grid2, rows2, grid, seeds=3, max_extra=2, to_budget=True)
    assert sorted((c.initializer, c.seed) for c in rep) == [(i, s) for i in ("isometry:tat", "lsuv") for s in range(3)]
    assert {c.learning_rate for c in rep if c.initializer == "lsuv"} == {rates[-1]}
    assert not any(c.stop_at_target for c in rep)
    assert all(c.stop_at_target for c in B.next_round(grid2, rows2, grid, seeds=3, to_budget=False))
    assert B.next_round(grid2 + rep, rows2 + [_row(c, 10) for c in rep], grid, seeds=3) == []


def test_e4_analysis_verdicts_and_effect_of_depth():
    rows = []
    steps = {  # (initializer, depth) -> taus of the reported seeds (None: never)
        ("isometry:critical", 32): [20, 22, 24], ("pytorch:default", 32): [60, 80, 70],
        ("dks:tat", 32): [21, 23, 22], ("isometry:critical", 128): [30, 31, 33],
        ("pytorch:default", 128): [None, None, None], ("dks:tat", 128): [10, 11, 12],
        ("isometry:dks", 128): [5, 5, 5],  # fast, but ends below the target: unstable, ranked last
    }
    for (init, depth), taus in steps.items():
        base = RunConfig(experiment="E4", initializer=init, normalize_input=init in OUR_INITIALIZERS, depth=depth,
                         width=8, optimizer="adam", data="digits", steps=150, learning_rate=1e-3)
        rows.append(_row(base.replace(seed=B.TUNING_SEED), 10))
        rows += [_row(base.replace(seed=s, stop_at_target=False), t, 0.2 if init == "isometry:dks" else 0.95,
                      measured_variance=1.0, measured_mean_eigenvalue=2.0, target_accuracy=0.9)
                 for s, t in enumerate(taus)]
    a = B.analyse(rows)
    cells = {c["depth"]: c for c in a["cells"]}
    assert cells[32]["comparison"]["verdict"] == "tie" and cells[32]["fastest"] == "isometry:critical"
    c128 = cells[128]["comparison"]
    unstable = next(e for e in cells[128]["entries"] if e["initializer"] == "isometry:dks")
    assert unstable["unstable"] and unstable["collapsed"] == 3 and cells[128]["fastest"] == "dks:tat"
    assert c128["ours"] == "isometry:critical" and c128["peer"] == "dks:tat"
    assert c128["verdict"] == "peer faster" and c128["ratio"] == pytest.approx(11 / 31)
    assert c128["p_peer_faster"] == pytest.approx(0.05) and not c128["ties_or_beats"]
    assert a["done"] == {"cells": 2, "ties_or_beats": 1, "passed": False}
    (eff,) = a["effect"]
    p32, p128 = eff["points"]
    assert p32["speedup_critical_vs_default"] == pytest.approx(70 / 22)
    assert p128["speedup_critical_vs_default"] == pytest.approx(150 / 31)
    assert p128["speedup_critical_vs_default_is_bound"] and eff["grows"] is True
    entry = next(e for e in cells[32]["entries"] if e["initializer"] == "pytorch:default")
    assert entry["measured_normalised_variance"] == pytest.approx(0.25) and entry["reached"] == 3


def test_e4_figure(tmp_path):
    from isometry.plotting.experiments import steps_vs_depth

    rows = []
    for init in ("isometry:tat", "lsuv"):
        for depth in (8, 16):
            base = RunConfig(experiment="E4", initializer=init, normalize_input=init in OUR_INITIALIZERS, depth=depth,
                             width=8, optimizer="adam", data="digits", steps=60)
            rows.append(_row(base.replace(seed=B.TUNING_SEED), 10))
            rows += [_row(base.replace(seed=s), None if init == "lsuv" else 10 + s, measured_variance=1.0,
                          measured_mean_eigenvalue=1e-30 if init == "lsuv" else 1.0) for s in range(3)]
    fig = steps_vs_depth(B.analyse(rows), path=tmp_path / "e4.png")
    assert (tmp_path / "e4.png").stat().st_size > 0
    assert len([a for a in fig.axes if a.get_visible()]) == 3  # speed, mean, spread for one column


# ------------------------------------------------------------------------------ pipeline and CLI
def test_e4_pipeline_tiny(tmp_path):
    sel = {"depth": [8], "activation": ["tanh"], "initializer": ["isometry:critical", "pytorch:default", "dks:tat"]}
    res = run_experiment("E4", tmp_path, scale="quick", select=sel, steps=25, engine="sequential", progress=False)
    assert res.complete and res.ok and res.analysis["reported_runs"] == 9
    recs = res.records
    assert all(r["initializer"]["name"] == r["config"]["initializer"] for r in recs)
    assert all("call" in r["initializer"] and r["init"]["measured_variance"] is not None for r in recs)
    reported = [r for r in recs if r["config"]["seed"] != B.TUNING_SEED]
    assert {r["config"]["seed"] for r in reported} == {0, 1, 2}
    (cell,) = res.analysis["cells"]
    assert {e["initializer"] for e in cell["entries"]} == set(sel["initializer"])
    assert (tmp_path / "E4_steps_vs_depth.png").stat().st_size > 0
    again = run_experiment("E4", tmp_path, scale="quick", select=sel, steps=25, engine="sequential", progress=False)
    assert not again.sweep.completed and again.sweep.skipped == again.sweep.total


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_convolutional_runs_train_and_record(arch, tmp_path):
    c = RunConfig(data="digits", architecture=arch, depth=2, width=4, batch_size=16, steps=6, n_evals=3,
                  initializer="isometry:critical", normalize_input=True, q_star=0.5, jacobian_inputs=1,
                  optimizer="adam", learning_rate=1e-3, device="cpu")
    rec = run_one(c, tmp_path)
    assert rec["steps_run"] == 6 and rec["initializer"]["name"] == "isometry:critical"
    assert rec["init"]["jacobian_method"] == "exact" and rec["init"]["measured_mean_eigenvalue"] > 0
    assert run_one(c, tmp_path)["skipped"]
    peer = run_one(c.replace(initializer="lsuv", normalize_input=False), tmp_path)
    assert "lsuv_with_singlebatch" in peer["initializer"]["call"]


def test_cli_train_e4(tmp_path, capsys):
    out = tmp_path / "e4"
    code = main(["train", "--experiment", "E4", "--quick", "--select", "depth=8", "--select", "activation=tanh",
                 "--select", "initializer=isometry:tat,anyinit", "--steps", "20", "--engine", "sequential",
                 "--no-progress", "--no-plots", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "E4:" in text and "vs best peer (AnyInit)" in text
    assert json.loads((out / "analysis.json").read_text())["reported_runs"] == 6
    assert main(["train", "--experiment", "E4", "--quick", "--select", "depth", "-o", str(out)]) == 2
    assert "--select takes FIELD=V1,V2" in capsys.readouterr().err
    assert main(["train", "--experiment", "E4", "--quick", "--select", "depth=5", "-o", str(out)]) == 2


def test_normalised_variance_survives_a_vanished_gradient():
    """Deep networks at PyTorch's default measure mean eigenvalues of 1e-200 and below: E^2 underflows
    to 0 in float64, which must not divide by zero, and an underflowed variance is no measurement."""
    assert B.normalised_variance(0.5, 2.0) == 0.125
    assert B.normalised_variance(1e-300, 1e-200) == pytest.approx(1e100)  # E^2 = 0 in float64, the ratio is not
    assert B.normalised_variance(0.0, 1e-200) is None
    assert B.normalised_variance(0.0, 0.5) == 0.0
    for v, m in ((None, 1.0), (1.0, None), (1.0, 0.0), (1.0, -1.0), (float("nan"), 1.0), (1e300, 1e-300)):
        assert B.normalised_variance(v, m) is None
