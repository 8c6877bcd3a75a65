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

import numpy as np
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
    lam = isometry.empirical_eigenvalues(act, depth, WIDTH, q_star=q, weights=weights, n_samples=NETS, seed=depth)
    lam = lam.reshape(NETS, WIDTH)
    right = isometry.compare(isometry.jacobian_spectrum(act, depth, q_star=q, weights=weights), lam, n_boot=200)
    wrong = isometry.compare(isometry.jacobian_spectrum(act, depth, q_star=q, weights=OTHER[weights]), lam, n_boot=200)
    threshold = 0.05
    assert right.ks < threshold, right.table()
    assert wrong.ks > 2 * threshold or (act == "relu" and wrong.ks_nonzero > 2 * threshold), wrong.table()
    if act == "relu":
        assert right.ks_nonzero < threshold, right.table()
    # mass at 0 and the bulk's quantiles
    assert abs(right.zero_mass - right.theory_zero_mass) < (0.1 if act == "relu" else 0.03) + (0.3 if depth == 32 and weights == "gaussian" else 0)
    assert right.mean == pytest.approx(right.theory_mean, rel=0.15)
    assert right.to_dict()["theory"].startswith(f"{act}, L = {depth}, {weights} weights")
    # the spectrum verbs are used: quantiles from ppf, moments from mean() and var()
    assert np.all(np.isfinite(right.theory_quantiles)) and right.theory_variance == right.theory.var()


@pytest.mark.parametrize("act,weights,depth", [("relu", "orthogonal", 4), ("hard_tanh", "orthogonal", 2), ("erf", "gaussian", 8)])
def test_compare_accepts_exact_samples_of_the_law(act, weights, depth):
    """Samples drawn from the law itself (rvs, atoms included) are i.i.d.: their KS distance is that of n = 4000
    uniform draws (below 0.035 at the 99.9% level), the masses at 0 and the mean agree."""
    law = isometry.jacobian_spectrum(act, depth, q_star=Q[act], weights=weights)
    c = isometry.compare(law, law.rvs(4000, random_state=depth), n_boot=200)
    assert c.ks < 0.035, c.table()
    assert abs(c.zero_mass - c.theory_zero_mass) < 4 * 0.5 / 4000**0.5
    assert c.mean_covered or abs(c.mean - c.theory_mean) < 0.1 * c.theory_mean


def test_compare_with_a_universal_law_and_its_atom():
    """The double-scaling Bernoulli law has an atom at e^{sigma0_2} of mass 1 - sigma0_2: exact samples match it
    (atoms counted), the plot names the law and draws the atom as a marker with both masses."""
    import matplotlib.pyplot as plt

    law = isometry.universal_spectrum("bernoulli", 0.5)
    x = np.exp(law.log_eigenvalues.rvs(3000, random_state=1))  # the bulk reaches below 1e-300: those count as 0
    c = isometry.compare(law, x, n_boot=100)
    assert c.ks < 0.04, c.table()
    ax = c.plot().axes[0]
    assert ax.get_title().startswith("bernoulli limit, sigma0_2 = 0.5")
    (atom,) = [line for line in ax.lines if "theory 0.500" in line.get_label()]
    assert atom.get_xdata()[0] == pytest.approx(np.exp(0.5))
    measured = float(atom.get_label().split("mass ")[1].split(" ")[0])
    assert abs(measured - 0.5) < 4 * 0.5 / 3000**0.5
    plt.close("all")
