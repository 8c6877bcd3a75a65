"""isometry.torch Jacobians: exact eigenvalues vs autograd and the NumPy core; ARPACK vs exact."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import isometry  # noqa: E402
from isometry.empirical import jacobian_product  # noqa: E402
from isometry.torch import jacobian, jacobian_eigenvalues, top_singular_values  # noqa: E402


def _mlp(widths, seed=0, act=torch.nn.Tanh, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        lin = torch.nn.Linear(a, b).to(dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=dtype) * (1.5 / a) ** 0.5)
            lin.bias.copy_(torch.randn(b, generator=g, dtype=dtype) * 0.1)
        layers += [lin, act()]
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("widths", [(20, 15, 7), (7, 15, 20), (12, 12, 12)])
def test_exact_jacobian_matches_autograd(widths):
    """Reverse mode (m <= n), forward mode (m > n), and chunking agree with autograd.functional."""
    net = _mlp(widths)
    x = torch.randn(1, widths[0], dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda v: net(v.reshape(1, -1)).reshape(-1), x.reshape(-1))
    for chunk in (1, 5, 64):
        assert torch.allclose(jacobian(net, x, chunk_size=chunk), ref, atol=1e-12)
    lam = jacobian_eigenvalues(net, x, chunk_size=4)
    m, n = widths[-1], widths[0]
    assert lam.shape == (m,)
    assert np.sum(lam == 0) == max(0, m - n)
    s = np.linalg.svd(ref.numpy(), compute_uv=False)
    assert np.allclose(np.sort(lam)[m - s.size:], np.sort(s**2), rtol=1e-10, atol=1e-14)


def test_matches_numpy_random_network():
    """A torch network built from the NumPy core's random stream has the same spectrum."""
    n, depth, sw, sb, q = 16, 3, 1.7, 0.05, 0.6
    g = np.random.default_rng(11)
    x0 = np.tanh(g.standard_normal(n) * np.sqrt(q))
    layers = []
    for _ in range(depth):
        w = np.sqrt(sw) * isometry.haar_orthogonal(n, g)  # consumes g's stream as the core's layers do
        b = g.standard_normal(n) * np.sqrt(sb)
        lin = torch.nn.Linear(n, n).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers)
    j = jacobian_product("tanh", depth, n, sigma_w2=sw, sigma_b2=sb, q0=q, weights="orthogonal", seed=11)
    ref = np.sort(np.linalg.svd(j, compute_uv=False) ** 2)
    lam = jacobian_eigenvalues(net, torch.from_numpy(x0))
    assert np.allclose(lam, ref, rtol=1e-10)


def test_float64_evaluation_of_float32_model():
    net = _mlp((10, 10, 10), dtype=torch.float32)
    x = torch.randn(10)
    a = jacobian_eigenvalues(net, x)
    b = jacobian_eigenvalues(net, x, dtype=torch.float64)
    assert next(net.parameters()).dtype == torch.float32  # the model is not changed
    assert np.allclose(a, b, rtol=1e-4)


def test_top_singular_values_match_exact():
    net = _mlp((24, 22, 20))
    x = torch.randn(1, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    s = np.sqrt(jacobian_eigenvalues(net, x))  # 20 values, all non-zero (m <= n, no bottleneck)
    top = top_singular_values(net, x, 5)
    assert np.allclose(top, s[::-1][:5], rtol=1e-8)
    low = top_singular_values(net, x, 3, which="smallest")
    assert np.allclose(low, s[:3], rtol=1e-6)
    wide = _mlp((12, 16, 18))  # m > n: the Gram matrix is J^T J
    xw = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    sw = np.sqrt(jacobian_eigenvalues(wide, xw))[18 - 12:]
    assert np.allclose(top_singular_values(wide, xw, 2, which="smallest"), sw[:2], rtol=1e-6)
    assert np.allclose(top_singular_values(wide, xw, 2), sw[::-1][:2], rtol=1e-8)
    assert np.all(np.diff(top) <= 0) and np.all(np.diff(low) >= 0)


def test_bad_input():
    net = _mlp((6, 6))
    x = torch.randn(6, dtype=torch.float64)
    with pytest.raises(ValueError, match="k must"):
        top_singular_values(net, x, 6)
    with pytest.raises(TypeError, match="k must"):  # booleans are not numbers
        top_singular_values(net, x, True)
    with pytest.raises(ValueError, match="which"):
        top_singular_values(net, x, 2, which="middle")
    with pytest.raises(TypeError, match="generator"):
        top_singular_values(net, x, 2, generator="0")
    with pytest.raises(ValueError, match="chunk_size"):
        jacobian_eigenvalues(net, x, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        jacobian_eigenvalues(net, x, chunk_size=2.0)
    with pytest.raises(TypeError, match="dtype"):
        jacobian_eigenvalues(net, x, dtype=torch.int32)
    with pytest.raises(TypeError, match="model"):
        jacobian_eigenvalues(3, x)
    with pytest.raises(TypeError, match="dtype"):  # compared by identity: an array is not a dtype
        jacobian_eigenvalues(net, x, dtype=np.array([]))
    with pytest.raises(TypeError, match="boolean"):
        jacobian_eigenvalues(net, True)
    with pytest.raises(ValueError, match=r"model\(x\) failed for x of shape \(6,\) and dtype torch.float32"):
        jacobian_eigenvalues(net, x.float())  # a float64 model fed float32
    # the theory law keeps the name jacobian_spectrum; the torch function that returns eigenvalues does not
    assert not hasattr(isometry.torch, "jacobian_spectrum") and hasattr(isometry, "jacobian_spectrum")


def test_top_singular_values_generator_is_reproducible():
    net = _mlp((30, 30, 30))
    x = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = top_singular_values(net, x, 3, generator=5)
    b = top_singular_values(net, x, 3, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(a, b)
    assert np.allclose(a, top_singular_values(net, x, 3), rtol=1e-8)  # the start vector does not change the answer


def test_a_jacobian_that_cannot_fit_is_refused_before_it_is_formed(monkeypatch):
    from isometry.torch import _common

    net = torch.nn.Linear(200, 300).double()
    monkeypatch.setattr(_common, "available_memory", lambda: 100_000)  # J alone is 480 kB
    with pytest.raises(ValueError, match=r"200 inputs \(x\) and 300 outputs.*needs about"):
        jacobian_eigenvalues(net, torch.zeros(200, dtype=torch.float64))
    with pytest.raises(ValueError, match="top_singular_values"):
        jacobian(net, torch.zeros(200, dtype=torch.float64))


def test_smallest_singular_values_of_an_ill_conditioned_jacobian_are_exact():
    """A critical 16-layer tanh MLP at q* = 0.5 has cond(J) ~ 1e8: the iterative shift-invert route
    returned 0.0 after minutes; up to EXACT_SMALLEST_DIM the formed J gives the exact values."""
    from isometry.torch import critical_init_, mlp

    net = mlp(16, 128, "tanh")
    critical_init_(net, q_star=0.5, generator=0)
    x = torch.randn(1, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.5**0.5
    s = top_singular_values(net, x, k=3, which="smallest", dtype=torch.float64)
    exact = np.sqrt(jacobian_eigenvalues(net, x, dtype=torch.float64)[:3])
    assert exact[0] < 1e-6 * exact[-1] or exact[0] < 1e-4  # the situation: a tiny smallest singular value
    np.testing.assert_allclose(s, exact, rtol=1e-6)
