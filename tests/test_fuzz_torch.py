"""Fuzzing ``isometry.torch``: bad arguments raise ValueError/TypeError naming a parameter.

As tests/test_fuzz_api.py, with tensors of the wrong shape, dtype, device or content (NaN,
empty, integer, boolean), models that are not modules, and the scalar values of that file.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import isometry.torch as it  # noqa: E402
from test_fuzz_api import FUZZ, _big, _call, values  # noqa: E402


def _tensors():
    return [torch.zeros(0), torch.zeros(3), torch.zeros(2, 3), torch.zeros(4, 4), torch.zeros(2, 3, 3, 3),
            torch.full((2, 4), float("nan")), torch.ones(2, 4, dtype=torch.int64), torch.ones(2, 4, dtype=torch.bool),
            torch.zeros(4, 4, dtype=torch.float16), torch.zeros(4, 4, dtype=torch.complex64),
            torch.zeros(4, 4, requires_grad=True), torch.zeros(1, 1, 1), torch.empty(0, 4)]


tensor_values = st.one_of(st.sampled_from(range(len(_tensors()))).map(lambda i: _tensors()[i]), values)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh())


def _modules():
    return [nn.Sequential(), nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Tanh(),
            nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()), nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()),
            nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh()).to(torch.float64)]


module_values = st.one_of(st.sampled_from(range(len(_modules()))).map(lambda i: _modules()[i]), values)
MIXED = st.one_of(values, tensor_values, module_values)

def _not_measured() -> frozenset:
    """Fields of the initialisation reports that are NaN by design when nothing was measured (no
    example_input) or the body is not a critical stack; the theory's own numbers must never be NaN."""
    import dataclasses

    from isometry.torch import report

    # predicted_max_singular_value may be NaN with the reason in the notes (a law the solver cannot trace)
    core = {"sigma_w2", "sigma_b2", "q_star", "mu1", "mu2", "predicted_mean", "predicted_variance", "gain"}
    names = {f.name for obj in vars(report).values() if dataclasses.is_dataclass(obj) for f in dataclasses.fields(obj)}
    return frozenset(names - core)


NOT_MEASURED = _not_measured()
NAMES = ("activation", "q*", "weights", "generator", "dtype", "model", "module", "tensor")


def _cases():
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    m = _model()
    return [
        (it.jacobian, dict(model=m, x=x, chunk_size=2, dtype=None)),
        (it.jacobian_eigenvalues, dict(model=m, x=x, chunk_size=8, dtype=torch.float64)),
        (it.top_singular_values, dict(model=m, x=x, k=2, which="largest", tol=0.0, maxiter=None, generator=0)),
        (it.spectrum_estimate, dict(f=m, x=x, n_probes=2, n_lanczos=3, probes="rademacher", generator=0)),
        (it.delta_orthogonal_, dict(tensor=torch.empty(4, 4, 3, 3), gain=1.0, groups=1, generator=0)),
        (it.critical_gain, dict(activation="tanh", q_star=0.5)),
        (it.critical_orthogonal_, dict(tensor=torch.empty(4, 4), activation="tanh", q_star=0.5, groups=1, generator=0)),
        (it.critical_bias_, dict(tensor=torch.empty(4), activation="tanh", q_star=0.5, generator=0)),
        (it.critical_init_, dict(model=_model(), q_star=0.5, weights="orthogonal")),
        (it.choose_critical_point, dict(activation="tanh", depth=3, q_star=None, sigma0_2=0.25)),
        (it.activation_module, dict(activation="leaky_relu")),
        (it.detect_activation, dict(module=nn.Tanh())),
        (it.mlp, dict(depth=2, width=4, activation="tanh", d_in=None, d_out=None, bias=True)),
    ]


CASES = _cases()


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f.__name__ for f, _ in CASES])
@FUZZ
@given(data=st.data())
def test_torch_functions(index, data):
    fn, base = _cases()[index]  # fresh tensors and models for every example (in-place initialisers)
    keys = list(base)
    if fn is it.spectrum_estimate:  # a scalar x reaches the model: a known open case (test_fuzz_regressions)
        keys = [k for k in keys if k not in ("f", "x")]
    changes = data.draw(st.lists(st.tuples(st.sampled_from(keys), MIXED), min_size=1, max_size=2))
    kwargs = {**base, **dict(changes)}
    # known open case (test_fuzz_regressions): a huge tol
    assume(not (fn is it.top_singular_values and _big(kwargs.get("tol"), 1e100)))
    for k, limit in (("depth", 64), ("width", 64), ("k", 8), ("n_probes", 8), ("n_lanczos", 16), ("chunk_size", 10**6),
                     ("d_in", 64), ("d_out", 64), ("maxiter", 10**4), ("groups", 64)):
        assume(not _big(kwargs.get(k), limit))
    extra = NAMES + (("nn.Linear",) if fn is it.critical_init_ else ())  # "model has no nn.Linear ... layers"
    _call(fn, kwargs, extra_names=extra, allowed_nan=NOT_MEASURED)

