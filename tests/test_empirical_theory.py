"""Theory vs simulation: isometry.jacobian_spectrum against empirical spectra of random networks.

A sampled grid over {linear, relu, hard_tanh, tanh, erf} x {orthogonal, gaussian} x
L in {2, 8, 32}, width 400, two networks each: every activation appears with both
weight laws and every depth appears several times. The KS distance (atoms counted,
eigenvalues below 1e-20 lumped at 0) must be small, and the *other* weight law's
theory (a wrong formula: Gaussian theory for an orthogonal network or vice versa)
must fail the same threshold. ReLU's mass at 0 has an O(N^-1/2) finite-width error
(the rank of J is the fewest active units in any layer), so for ReLU the shape test
uses the KS distance of the non-zero part.
"""

import pytest

import isometry

WIDTH, NETS = 400, 2
Q = {"linear": 1.0, "relu": 1.0, "hard_tanh": 0.5, "tanh": 0.5, "erf": 0.25}
OTHER = {"orthogonal": "gaussian", "gaussian": "orthogonal"}

GRID = [
    ("linear", "gaussian", 32),
    ("linear", "orthogonal", 8),
    ("relu", "orthogonal", 2),
    ("relu", "gaussian", 32),
    ("hard_tanh", "orthogonal", 2),  # theory has an atom at sigma_w2^2 of mass 1 - 2 (1 - p)
    ("hard_tanh", "gaussian", 8),
    ("tanh", "orthogonal", 8),
    ("tanh", "gaussian", 2),
    ("erf", "orthogonal", 32),
    ("erf", "gaussian", 8),
]


@pytest.mark.parametrize("act,weights,depth", GRID)
def test_theory_matches_simulation(act, weights, depth):
    q = Q[act]
    lam = isometry.empirical_spectrum(act, depth, WIDTH, q_star=q, weights=weights, n_samples=NETS, seed=depth)
    lam = lam.reshape(NETS, WIDTH)
    right = isometry.compare(isometry.jacobian_spectrum(act, depth, q_star=q, weights=weights), lam, n_boot=200)
    wrong = isometry.compare(isometry.jacobian_spectrum(act, depth, q_star=q, weights=OTHER[weights]), lam, n_boot=200)
    threshold = 0.05
    assert right.ks < threshold, right.table()
    assert wrong.ks > 2 * threshold or (act == "relu" and wrong.ks_nonzero > 2 * threshold), wrong.table()
    if act == "relu":
        assert right.ks_nonzero < threshold, right.table()
    # mass at 0 and the bulk's quantiles
    assert abs(right.zero_fraction - right.atom) < (0.1 if act == "relu" else 0.03) + (0.3 if depth == 32 and weights == "gaussian" else 0)
    assert right.mean == pytest.approx(right.theory_mean, rel=0.15)
