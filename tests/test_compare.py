"""isometry.compare against closed-form laws (Marchenko-Pastur), before any free-probability theory."""

import json

import numpy as np
import pytest
from scipy import integrate, optimize

import isometry
from isometry.empirical.compare import ks_distance


class MarchenkoPastur:
    """Eigenvalues of W W^T, W N x M with N(0, 1/M) entries, ratio y = N / M (the linear
    Gaussian L = 1 Jacobian when y = 1). Atom 1 - 1/y at 0 when y > 1; mean 1, variance y."""

    def __init__(self, y: float):
        self.y = y
        self.a, self.b = (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2
        self.atom = max(0.0, 1.0 - 1.0 / y)
        self.mean, self.variance = 1.0, y
        self.max_eigenvalue = self.b

    def density(self, lam):
        lam = np.asarray(lam, dtype=float)
        inside = (lam > self.a) & (lam < self.b)
        safe = np.where(inside, lam, 1.0)
        return np.where(inside, np.sqrt(np.abs((self.b - safe) * (safe - self.a))) / (2 * np.pi * self.y * safe), 0.0)

    def cdf(self, lam):
        lam = np.atleast_1d(np.asarray(lam, dtype=float))
        # lam = c - r cos t (t in [0, pi]) makes the integrand smooth: r^2 sin^2 t / (2 pi y lam) dt
        c, r = (self.a + self.b) / 2, (self.b - self.a) / 2
        t = np.arccos(np.clip((c - lam) / r, -1, 1))
        if self.y == 1:  # closed form: lam = 4 sin^2(theta), F = (2/pi)(theta + sin cos)
            th = np.arcsin(np.sqrt(np.clip(lam, 0, 4)) / 2)
            cont = 2 / np.pi * (th + np.sin(th) * np.cos(th))
        else:
            tg = np.linspace(0, np.pi, 20001)
            f = r * r * np.sin(tg) ** 2 / (2 * np.pi * self.y * (c - r * np.cos(tg)))
            cum = np.concatenate([[0], np.cumsum((f[1:] + f[:-1]) / 2 * np.diff(tg))])
            cont = np.interp(t, tg, cum)
        return np.where(lam >= 0, self.atom + cont, 0.0)

    def quantile(self, p):
        if p <= self.atom:
            return 0.0
        return optimize.brentq(lambda v: float(self.cdf(v)[0]) - p, self.a, self.b, xtol=1e-13)


def _mp_samples(n, m, k, rng):
    out = []
    for _ in range(k):
        w = rng.standard_normal((n, m)) / np.sqrt(m)
        s = np.linalg.svd(w, compute_uv=False) ** 2
        out.append(np.sort(np.concatenate([s, np.zeros(n - s.size)])))
    return np.array(out)


def test_mp_law_is_self_consistent():
    law = MarchenkoPastur(1.0)
    assert abs(integrate.quad(law.density, 0, 4, limit=200)[0] - 1) < 1e-6
    assert abs(float(law.cdf(law.quantile(0.3))[0]) - 0.3) < 1e-10


def test_ks_distance_exact_cases():
    unif = lambda x: np.clip(np.asarray(x, dtype=float), 0, 1)  # noqa: E731
    assert ks_distance(unif, [0.5]) == pytest.approx(0.5)
    x = (np.arange(10) + 0.5) / 10
    assert ks_distance(unif, x) == pytest.approx(0.05)
    # an atom of 1/2 at 0: samples half zeros (some tiny, below the floor) match it exactly
    half = lambda v: np.where(np.asarray(v) >= 0, 0.5 + 0.5 * np.clip(np.asarray(v, dtype=float), 0, 1), 0.0)  # noqa: E731
    x = np.concatenate([np.zeros(5), [1e-30, -1e-25, 0, 0, 0], (np.arange(10) + 0.5) / 10])
    assert ks_distance(half, x) == pytest.approx(0.025)
    assert ks_distance(half, x, floor=0.0) == pytest.approx(0.05)  # 1e-30 no longer counts as a zero
    assert ks_distance(unif, x) == pytest.approx(0.5, abs=1e-12)  # atom missed: half the mass


def test_compare_gaussian_layer_with_mp(rng):
    """L = 1 linear Gaussian network = MP(1): small KS, moments covered; the L = 2 product
    (or an orthogonal layer, all eigenvalues 1) is rejected."""
    law = MarchenkoPastur(1.0)
    lam = isometry.empirical_spectrum("linear", 1, 400, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", n_samples=3)
    c = isometry.compare(law, lam.reshape(3, -1))
    assert c.ks < 0.02
    assert c.n == 1200 and c.n_networks == 3
    assert np.allclose(c.empirical_quantiles[2:-2], c.theory_quantiles[2:-2], rtol=0.05, atol=0.01)
    assert abs(c.mean - 1) < 0.05 and abs(c.variance - 1) < 0.1
    two = isometry.empirical_spectrum("linear", 2, 400, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian")
    assert isometry.compare(law, two).ks > 0.1
    orth = isometry.empirical_spectrum("linear", 1, 400, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal")
    assert isometry.compare(law, orth).ks > 0.3


def test_compare_counts_atoms_and_bootstrap_covers(rng):
    law = MarchenkoPastur(2.0)  # atom 1/2
    x = _mp_samples(300, 150, 6, rng)
    c = isometry.compare(law, x, n_boot=400, seed=1)
    assert c.atom == 0.5 and c.zero_fraction == 0.5
    assert c.ks < 0.03
    assert c.mean_covered and c.variance_covered
    assert c.mean_ci[0] < c.mean < c.mean_ci[1]
    assert isometry.compare(MarchenkoPastur(1.0), x).ks > 0.3
    d = c.as_dict()
    json.dumps(d)
    assert d["quantiles"][0]["theory"] == 0.0
    assert "KS distance" in c.table()


def test_compare_reproducible_and_bad_input(rng):
    law = MarchenkoPastur(1.0)
    x = _mp_samples(50, 50, 4, rng)
    a, b = isometry.compare(law, x, seed=3), isometry.compare(law, x, seed=3)
    assert a.mean_ci == b.mean_ci and a.variance_ci == b.variance_ci
    with pytest.raises(ValueError, match="floor"):
        isometry.compare(law, x, floor=-1.0)
    with pytest.raises(ValueError, match="quantiles"):
        isometry.compare(law, x, quantiles=[0.5, 1.0])
    with pytest.raises(ValueError, match="confidence"):
        isometry.compare(law, x, confidence=1.5)
    with pytest.raises(ValueError, match="samples"):
        isometry.compare(law, [])
    with pytest.raises(ValueError, match="finite"):
        isometry.compare(law, [1.0, np.nan])


@pytest.mark.parametrize("log,sv", [(False, False), (True, True)])
def test_plot_writes_png(tmp_path, rng, log, sv):
    law = MarchenkoPastur(1.0)
    c = isometry.compare(law, _mp_samples(100, 100, 2, rng), n_boot=50)
    path = tmp_path / "cmp.png"
    ax = c.plot(log=log, singular_values=sv, path=path)
    assert path.stat().st_size > 1000
    hist = [p for p in ax.patches if hasattr(p, "get_data")][0]
    values, edges = hist.get_data()[:2]
    widths = np.diff(np.log10(edges)) if log else np.diff(edges)
    assert np.sum(values * widths) == pytest.approx(1.0, rel=1e-9)  # no atom: histogram has unit mass
    x, y = ax.lines[0].get_data()
    u = np.log10(x) if log else x
    assert np.sum((y[1:] + y[:-1]) / 2 * np.diff(u)) == pytest.approx(1.0, abs=0.1)


class _TwoPoint:
    """Atoms 1/4 at 0 and 1/4 at 2, uniform(0, 1) with mass 1/2."""

    atom, atoms, mean = 0.25, ((0.0, 0.25), (2.0, 0.25)), 0.75
    variance = 0.5 * (1 / 3) + 0.25 * 4 - 0.75**2

    def cdf(self, lam):
        lam = np.asarray(lam, dtype=float)
        return np.where(lam >= 0, 0.25 + 0.5 * np.clip(lam, 0, 1) + np.where(lam >= 2, 0.25, 0.0), 0.0)

    def quantile(self, p):
        return 0.0 if p <= 0.25 else (2 * (p - 0.25) if p <= 0.75 else 2.0)

    def density(self, lam):
        lam = np.asarray(lam, dtype=float)
        return np.where((lam > 0) & (lam < 1), 0.5, 0.0)


def test_positive_atoms_are_counted(rng):
    """Samples scattered by round-off around a positive atom still match it; a missing atom does not."""
    k = 4000
    x = np.concatenate([np.zeros(k // 4), rng.uniform(0, 1, k // 2), 2 + 1e-13 * rng.standard_normal(k // 4)])
    c = isometry.compare(_TwoPoint(), x, n_boot=50)
    assert c.ks < 0.03
    assert ks_distance(_TwoPoint().cdf, x) > 0.1  # without the atom list the jump at 2 is missed
    ax = c.plot()
    assert any(np.allclose(line.get_xdata(), 2.0) for line in ax.lines)  # the atom at 2 is a line, not a bar
    assert "0.250" in ax.texts[0].get_text()
    moved = np.where(x > 1.5, 1.9, x)
    assert isometry.compare(_TwoPoint(), moved, n_boot=50).ks > 0.2
