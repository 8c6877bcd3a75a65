"""Mean field of residual networks, the exact moments of their Jacobians and the branch scale,
against random networks (Monte Carlo, width >= 500)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import isometry
from isometry.activations import get_activation
from isometry.empirical.sampling import _householder_haar
from isometry.residual import (
    _network_jacobian,
    _stream_eigenvalues,
    _stream_moments,
    residual_branch_scale,
    residual_eigenvalues,
    residual_mean_field,
)


def _forward(activation, depth, width, a, sigma_w2, sigma_b2, q0, weights, seed):
    """Q^l and M^l (l = 0..L) of one random residual network, forward pass only (O(N^2) per block)."""
    act = get_activation(activation)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(width)
    x *= math.sqrt(q0 * width) / np.linalg.norm(x)  # exactly Q^0 = q0: fluctuations are amplified along the depth
    Q, M = [np.mean(x * x)], [np.mean(x)]
    buf = np.empty((width, width))
    for _ in range(depth):
        if weights == "orthogonal":
            wx = _householder_haar(width, rng, buffer=buf).apply(np.asfortranarray(x[:, None]).copy(),
                                                                  math.sqrt(sigma_w2))[:, 0]
        else:
            rng.standard_normal(out=buf)
            wx = buf @ x * math.sqrt(sigma_w2 / width)
        h = wx + rng.standard_normal(width) * math.sqrt(sigma_b2)
        x = x + a * act.phi(h)
        Q.append(np.mean(x * x))
        M.append(np.mean(x))
    return np.array(Q), np.array(M)


@pytest.mark.parametrize("activation, weights, a, sigma_b2, q0", [
    ("tanh", "orthogonal", 0.7, 0.1, 1.0),
    ("relu", "gaussian", 0.5, 0.0, 1.0),
    ("gelu", "orthogonal", 0.6, 0.05, 0.5),
])
def test_mean_field_against_random_networks(activation, weights, a, sigma_b2, q0):
    L, N, n = 10, 1500, 6
    mf = residual_mean_field(activation, L, branch_scale=a, sigma_w2=1.2, sigma_b2=sigma_b2, q0=q0)
    runs = [_forward(activation, L, N, a, 1.2, sigma_b2, q0, weights, s) for s in range(n)]
    Q = np.array([r[0] for r in runs])
    M = np.array([r[1] for r in runs])
    se_q = Q.std(axis=0, ddof=1) / math.sqrt(n)
    se_m = M.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(Q.mean(axis=0) - mf.second_moment) <= 4 * se_q + 2e-3 * mf.second_moment)
    assert np.all(np.abs(M.mean(axis=0) - mf.mean) <= 4 * se_m + 2e-3 * (1 + np.abs(mf.mean)))
    # the common component is what a non-odd unit adds: without the 2 a M E[phi] term Q would be far off
    if activation != "tanh":
        q = q0
        for _ in range(L):
            q = q + a * a * float(isometry.e_phi2(activation, 1.2 * q + sigma_b2))
        assert abs(q - Q.mean(axis=0)[-1]) > 0.5 * Q.mean(axis=0)[-1]
    else:
        assert np.all(np.abs(mf.mean) < 1e-12)


def test_mean_field_closed_forms():
    # linear units: Q^{l+1} = Q^l (1 + a^2 sigma_w2) + a^2 sigma_b2, no mean
    mf = residual_mean_field("linear", 5, branch_scale=0.3, sigma_w2=2.0, sigma_b2=0.5, q0=1.5)
    q = [1.5]
    for _ in range(5):
        q.append(q[-1] + 0.09 * (2.0 * q[-1] + 0.5))
    assert np.allclose(mf.second_moment, q, rtol=1e-13)
    assert np.allclose(mf.q_h, 2.0 * np.array(q[:-1]) + 0.5, rtol=1e-13)
    # relu: E[phi] = sqrt(q/(2 pi)), E[phi^2] = q/2
    mf = residual_mean_field("relu", 3, branch_scale=0.5)
    Q, M = 1.0, 0.0
    for l in range(3):
        e1 = math.sqrt(Q / (2 * math.pi))
        Q, M = Q + 2 * 0.5 * M * e1 + 0.25 * Q / 2, M + 0.5 * e1
        assert mf.second_moment[l + 1] == pytest.approx(Q, rel=1e-12)
        assert mf.mean[l + 1] == pytest.approx(M, rel=1e-12)
    assert mf.variance[0] == pytest.approx(1.0)
    assert mf.to_dict()["depth"] == 3
    # the Jacobian's moments: E[lambda] = prod (1 + c_l); relu mu1 = 1/2, mu2/mu1^2 = 2
    c = 0.25 * 0.5
    assert math.exp(mf.log_mean()) == pytest.approx((1 + c) ** 3, rel=1e-13)
    assert mf.normalised_variance("orthogonal") == pytest.approx(3 * (2 * c + c * c) / (1 + c) ** 2, rel=1e-13)
    assert mf.normalised_variance("gaussian") == pytest.approx(3 * (2 * c + 2 * c * c) / (1 + c) ** 2, rel=1e-13)


def _bulk(lam: np.ndarray, width: int, outlier: bool) -> np.ndarray:
    """Per network, the eigenvalues without the top one when the unit has E[phi] != 0 (the outlier)."""
    per = lam.reshape(-1, width)
    return per[:, :-1] if outlier else per


@pytest.mark.parametrize("activation, depth, a, weights", [
    ("tanh", 2, 1.0, "gaussian"),
    ("relu", 2, 1.0, "orthogonal"),
    ("tanh", 8, 0.5, "orthogonal"),
    ("relu", 8, 0.4, "gaussian"),
])
def test_exact_moments_against_random_networks(activation, depth, a, weights):
    N, n = 500, 6
    sp = isometry.residual_spectrum(activation, depth, branch_scale=a, weights=weights)
    lam = residual_eigenvalues(activation, depth, N, branch_scale=a, weights=weights, n_samples=n, seed=11)
    bulk = _bulk(lam, N, activation == "relu")
    means, vars_ = bulk.mean(axis=1), bulk.var(axis=1)
    se_m, se_v = means.std(ddof=1) / math.sqrt(n), vars_.std(ddof=1) / math.sqrt(n)
    # finite width: O(1/N) corrections, measured below 1% of the mean and 3% of the variance here
    tol_v = 4 * se_v + 0.03 * sp.var()
    assert abs(means.mean() - sp.mean()) <= 4 * se_m + 0.01 * sp.mean()
    assert abs(vars_.mean() - sp.var()) <= tol_v
    if depth == 2:  # large blocks: without each block's c^2 term the variance is far outside the tolerance
        mf = sp.mean_field
        c = mf.branch_gain
        wrong = math.exp(2 * mf.log_mean()) * float(np.sum(2 * c / (1 + c) ** 2))
        assert abs(vars_.mean() - wrong) > tol_v


def test_signal_gain_is_the_input_direction_gain():
    # relu without biases: x^L = J x^0 exactly, so |J x^0|^2/|x^0|^2 = Q^L/q0; an eigenvalue above the bulk
    act = get_activation("relu")
    N, L, a = 600, 8, 0.5
    sp = isometry.residual_spectrum("relu", L, branch_scale=a)
    gains, tops = [], []
    for s in range(3):
        rng = np.random.default_rng(s)
        x0 = np.random.default_rng(s).standard_normal(N)
        j, xl = _network_jacobian(act, L, N, a, 1.0, 0.0, 1.0, "orthogonal", rng)
        assert np.allclose(j @ x0, xl, rtol=1e-10, atol=1e-10)
        gains.append(float(xl @ xl / (x0 @ x0)))
        tops.append(float(np.linalg.svd(j, compute_uv=False)[0] ** 2))
    assert np.mean(gains) == pytest.approx(sp.signal_gain, rel=0.08)
    assert min(tops) > 1.15 * sp.max_eigenvalue  # the outlier (measured 21-26 against a bulk edge 16.7)
    assert isometry.residual_spectrum("tanh", L, branch_scale=a).signal_gain is None


def test_branch_scale_root_and_depth_rule():
    for act in ("tanh", "relu"):
        scales = []
        for L in (10, 100, 1000):
            a = residual_branch_scale(act, L, sigma0_2=0.5)
            mf = residual_mean_field(act, L, branch_scale=a)
            assert mf.normalised_variance() == pytest.approx(0.5, rel=1e-9)
            scales.append(a * math.sqrt(L))
            # small blocks: sigma0^2 ~= 2 a^2 sigma_w2 sum_l mu_1(q_h^l), to O(c) = O(1/L)
            small = math.sqrt(0.5 / (2.0 * float(np.sum(mf.mu1)))) * math.sqrt(L)
            assert scales[-1] == pytest.approx(small, rel=3.0 / L)
        assert abs(scales[2] - scales[1]) < abs(scales[1] - scales[0])  # a sqrt(L) converges: the 1/sqrt(L) rule
    # relu: mu_1 = 1/2 at every length, so a sqrt(L) -> sqrt(sigma0^2) exactly
    assert residual_branch_scale("relu", 10**4, sigma0_2=0.5) * 100 == pytest.approx(math.sqrt(0.5), rel=1e-3)
    a_g = residual_branch_scale("tanh", 50, sigma0_2=0.3, weights="gaussian")
    assert residual_mean_field("tanh", 50, branch_scale=a_g).normalised_variance("gaussian") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unreachable"):  # linear, orthogonal: each block's variance is <= 1/2
        residual_branch_scale("linear", 2, sigma0_2=2.0)
    with pytest.raises(ValueError, match="sigma0_2"):
        residual_branch_scale("tanh", 2, sigma0_2=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_stream_form_naive_law_underestimates_the_variance(activation):
    # h^{l+1} = h^l + a (W phi(h^l) + b): D^l correlated along the depth, the blocks are not free.
    # Measured at a^2 L = 2 (L = 8, 32; width 500; 6 networks): the naive free product's variance is
    # 14%-19% (tanh) and 14%-22% (relu) below the networks', its mean within 2%.
    L, a, N, n = 8, 0.5, 500, 6
    mean_t, var_t = _stream_moments(activation, L, branch_scale=a, weights="gaussian")
    lams = [_stream_eigenvalues(activation, L, N, branch_scale=a, weights="gaussian", seed=s) for s in range(n)]
    means = np.array([x.mean() for x in lams])
    vars_ = np.array([x.var() for x in lams])
    gap = 1.0 - var_t / vars_.mean()
    se = vars_.std(ddof=1) / math.sqrt(n) / vars_.mean()
    assert 0.08 - 3 * se <= gap <= 0.25 + 3 * se
    assert abs(means.mean() - mean_t) <= 0.03 * mean_t


def test_sampler_and_arguments():
    lam = residual_eigenvalues("tanh", 3, 40, branch_scale=0.5, n_samples=2, seed=3)
    assert lam.shape == (80,) and np.all(np.diff(lam[:40]) >= 0)
    assert np.array_equal(lam, residual_eigenvalues("tanh", 3, 40, branch_scale=0.5, n_samples=2, seed=3))
    assert np.allclose(residual_eigenvalues("tanh", 3, 30, branch_scale=0.0, seed=0), 1.0)
    with pytest.raises(TypeError, match="depth"):
        residual_mean_field("tanh", True, branch_scale=0.5)
    with pytest.raises(ValueError, match="depth"):
        residual_mean_field("tanh", 0, branch_scale=0.5)
    with pytest.raises(ValueError, match="depth"):
        residual_mean_field("tanh", 10**5 + 1, branch_scale=0.5)
    with pytest.raises(ValueError, match="branch_scale"):
        residual_mean_field("tanh", 3, branch_scale=-0.1)
    with pytest.raises(TypeError, match="branch_scale"):
        residual_mean_field("tanh", 3, branch_scale="0.1")
    with pytest.raises(ValueError, match="sigma_w2"):
        residual_mean_field("tanh", 3, branch_scale=0.1, sigma_w2=0.0)
    with pytest.raises(ValueError, match="q0"):
        residual_mean_field("tanh", 3, branch_scale=0.1, q0=-1.0)
    with pytest.raises(ValueError, match="weights"):
        residual_eigenvalues("tanh", 3, 10, branch_scale=0.1, weights="orth")
    with pytest.raises(ValueError, match="custom"):
        residual_eigenvalues("tanh", 3, 10, branch_scale=0.1, weights=lambda z: 1.0 / (1.0 + z))
    with pytest.raises(ValueError, match="second moment"):
        residual_mean_field("relu", 2000, branch_scale=3.0)
