"""isometry.compare against closed-form laws (Marchenko-Pastur, scipy.stats frozen laws), and its figures."""

import json

import numpy as np
import pytest
from scipy import integrate, optimize, stats

import isometry
from isometry._io import to_jsonable
from isometry.empirical.compare import ks_distance
from isometry.plotting.empirical import log_edges, plot_eigenvalues


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


class MarchenkoPastur:
    """Eigenvalues of W W^T, W N x M with N(0, 1/M) entries, ratio y = N / M (the linear
    Gaussian L = 1 Jacobian when y = 1). Atom 1 - 1/y at 0 when y > 1; mean 1, variance y.
    Speaks the spectrum verbs compare() uses: cdf, pdf, ppf, mean(), var(), atoms, zero_mass."""

    def __init__(self, y: float):
        self.y = y
        self.a, self.b = (1 - np.sqrt(y)) ** 2, (1 + np.sqrt(y)) ** 2
        self.zero_mass = max(0.0, 1.0 - 1.0 / y)
        self.atoms = ((0.0, self.zero_mass),) if self.zero_mass > 0 else ()

    def mean(self):
        return 1.0

    def var(self):
        return self.y

    def pdf(self, lam):
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
        return np.where(lam >= 0, self.zero_mass + cont, 0.0)

    def _ppf1(self, p):
        if p <= self.zero_mass:
            return 0.0
        return optimize.brentq(lambda v: float(self.cdf(v)[0]) - p, self.a, self.b, xtol=1e-13)

    def ppf(self, p):
        return np.vectorize(self._ppf1, otypes=[float])(p)


class _LogView:
    """The law of t = log lambda of a law with a pdf (what Spectrum.log_eigenvalues provides)."""

    def __init__(self, law):
        self.law = law

    def pdf(self, t):
        lam = np.exp(np.asarray(t, dtype=float))
        return self.law.pdf(lam) * lam


class _SingularView:
    """The law of s = sqrt(lambda) (what Spectrum.singular_values provides)."""

    def __init__(self, law):
        self.law = law

    def pdf(self, s):
        s = np.asarray(s, dtype=float)
        return 2 * s * self.law.pdf(s * s)


class MarchenkoPasturViews(MarchenkoPastur):
    """The same law with the log_eigenvalues and singular_values views the plot prefers."""

    def __init__(self, y: float):
        super().__init__(y)
        self.log_eigenvalues, self.singular_values = _LogView(self), _SingularView(self)


def _mp_samples(n, m, k, rng):
    out = []
    for _ in range(k):
        w = rng.standard_normal((n, m)) / np.sqrt(m)
        s = np.linalg.svd(w, compute_uv=False) ** 2
        out.append(np.sort(np.concatenate([s, np.zeros(n - s.size)])))
    return np.array(out)


def test_mp_law_is_self_consistent():
    law = MarchenkoPastur(1.0)
    assert abs(integrate.quad(law.pdf, 0, 4, limit=200)[0] - 1) < 1e-6
    assert abs(float(law.cdf(law.ppf(0.3))[0]) - 0.3) < 1e-10


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
    lam = isometry.empirical_eigenvalues("linear", 1, 400, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", n_samples=3, seed=0)
    c = isometry.compare(law, lam.reshape(3, -1))
    assert c.ks < 0.02
    assert c.n == 1200 and c.n_networks == 3
    assert np.allclose(c.empirical_quantiles[2:-2], c.theory_quantiles[2:-2], rtol=0.05, atol=0.01)
    assert abs(c.mean - 1) < 0.05 and abs(c.variance - 1) < 0.1
    two = isometry.empirical_eigenvalues("linear", 2, 400, sigma_w2=1.0, sigma_b2=0.0, weights="gaussian", seed=0)
    assert isometry.compare(law, two).ks > 0.1
    orth = isometry.empirical_eigenvalues("linear", 1, 400, sigma_w2=1.0, sigma_b2=0.0, weights="orthogonal", seed=0)
    assert isometry.compare(law, orth).ks > 0.3


def test_compare_counts_atoms_and_bootstrap_covers(rng):
    law = MarchenkoPastur(2.0)  # atom 1/2
    x = _mp_samples(300, 150, 6, rng)
    c = isometry.compare(law, x, n_boot=400, seed=1)
    assert c.theory_zero_mass == 0.5 and c.zero_mass == 0.5
    assert c.ks < 0.03
    assert c.mean_covered and c.variance_covered
    assert c.mean_ci[0] < c.mean < c.mean_ci[1]
    assert isometry.compare(MarchenkoPastur(1.0), x).ks > 0.3
    d = c.to_dict()
    json.dumps(d)
    assert d["theory"] == "MarchenkoPastur" and d["width"] == 300
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


def test_compare_accepts_a_scipy_frozen_law(rng):
    """A scipy.stats frozen law speaks the verbs compare() uses (cdf, ppf, mean(), var(), pdf)."""
    law = stats.expon()
    x = law.rvs(size=(4, 500), random_state=rng)
    c = isometry.compare(law, x, n_boot=400, seed=2)
    assert c.ks < 0.045  # 99.9% point of the KS statistic at n = 2000 (i.i.d. samples)
    assert c.theory_mean == 1.0 and c.theory_variance == 1.0 and c.theory_zero_mass == 0.0
    assert np.allclose(c.theory_quantiles, -np.log1p(-c.quantiles), rtol=1e-12)
    assert np.allclose(c.empirical_quantiles[1:-1], c.theory_quantiles[1:-1], rtol=0.15)
    assert c.mean_covered and c.variance_covered
    assert c.to_dict()["theory"] == "scipy.stats.expon()" and c.width == 500
    # the wrong scale is rejected: sup |e^{-x/2} - e^{-x}| = 1/4 at x = 2 log 2
    wrong = isometry.compare(stats.expon(scale=2.0), x, n_boot=50)
    assert wrong.ks == pytest.approx(0.25, abs=0.045) and wrong.to_dict()["theory"] == "scipy.stats.expon(scale=2)"
    # a gamma law, its mean and variance (shape k: mean k, variance k)
    g = stats.gamma(3.0)
    cg = isometry.compare(g, g.rvs(size=3000, random_state=rng), n_boot=50)
    assert cg.ks < 0.04 and cg.theory_mean == pytest.approx(3.0) and cg.theory_variance == pytest.approx(3.0)


def test_compare_needs_only_a_cdf(rng):
    """A law with nothing but a cdf: KS computed; quantiles and moments it cannot give are NaN (None in JSON)."""

    class CdfOnly:
        def cdf(self, x):
            return np.clip(np.asarray(x, dtype=float), 0.0, 1.0)

    x = rng.uniform(0, 1, 1000)
    c = isometry.compare(CdfOnly(), x, n_boot=50)
    assert c.ks == pytest.approx(isometry.compare(stats.uniform(), x, n_boot=50).ks, abs=1e-15) and c.ks < 0.05
    assert np.all(np.isnan(c.theory_quantiles)) and np.isnan(c.theory_mean) and np.isnan(c.theory_variance)
    assert not c.mean_covered and c.theory_zero_mass == 0.0
    d = to_jsonable(c.to_dict())
    assert d["theory_mean"] is None and d["quantiles"][0]["theory"] is None
    json.dumps(d, allow_nan=False)
    with pytest.raises(TypeError, match="cdf"):
        isometry.compare(object(), x)
    with pytest.raises(TypeError, match="floor"):
        isometry.compare(CdfOnly(), x, floor=True)
    with pytest.raises(TypeError, match="n_boot"):
        isometry.compare(CdfOnly(), x, n_boot=True)
    with pytest.raises(ValueError, match="n_boot"):
        isometry.compare(CdfOnly(), x, n_boot=5)


def _hist(ax):
    return [p for p in ax.patches if hasattr(p, "get_data")][0].get_data()[:2]


@pytest.mark.parametrize("log,sv", [(False, False), (True, True), (True, False), (False, True)])
def test_plot_writes_png(tmp_path, rng, log, sv):
    law = MarchenkoPasturViews(1.0)
    c = isometry.compare(law, _mp_samples(100, 100, 2, rng), n_boot=50)
    path = tmp_path / "cmp.png"
    fig = c.plot(log=log, singular_values=sv, path=path)
    assert path.stat().st_size > 1000
    ax = fig.axes[0]
    values, edges = _hist(ax)
    widths = np.diff(np.log10(edges)) if log else np.diff(edges)
    assert np.sum(values * widths) == pytest.approx(1.0, rel=1e-9)  # no atom: histogram has unit mass
    x, y = ax.lines[0].get_data()
    u = np.log10(x) if log else x
    assert np.sum((y[1:] + y[:-1]) / 2 * np.diff(u)) == pytest.approx(1.0, abs=0.1)
    assert "MarchenkoPasturViews, N = 100, 2 networks" in ax.get_title() and f"KS = {c.ks:.3f}" in ax.get_title()
    assert ax.get_ylabel() and ax.get_xlabel()
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"


@pytest.mark.parametrize("log,sv", [(False, False), (True, True), (True, False), (False, True)])
def test_plot_views_give_the_pdf_route(rng, log, sv):
    """The theory curve drawn through log_eigenvalues.pdf / singular_values.pdf is the one from pdf alone."""
    x = _mp_samples(80, 80, 2, rng)
    a = isometry.compare(MarchenkoPastur(1.0), x, n_boot=50).plot(log=log, singular_values=sv).axes[0].lines[0]
    b = isometry.compare(MarchenkoPasturViews(1.0), x, n_boot=50).plot(log=log, singular_values=sv).axes[0].lines[0]
    assert np.array_equal(a.get_xdata(), b.get_xdata())
    assert np.allclose(a.get_ydata(), b.get_ydata(), rtol=1e-10, atol=1e-14)


def test_log_histogram_bins_every_sample():
    """np.logspace(log10(lo), log10(hi)) rounds its ends past lo = 5.13245964538816 and hi = 7.5819305135407165
    and the histogram loses both; the edges start and end on the extreme samples exactly."""
    lo, hi = 5.13245964538816, 7.5819305135407165
    old = np.logspace(np.log10(lo), np.log10(hi), 81)
    assert old[0] > lo and old[-1] < hi  # the rounding that dropped samples
    e = log_edges(lo, hi, 80)
    assert e[0] == lo and e[-1] == hi and np.all(np.diff(e) > 0) and e.size == 81
    x = np.concatenate([[lo, hi], np.linspace(lo, hi, 50)[1:-1]])
    for fig in (plot_eigenvalues(x, log=True), isometry.compare(stats.uniform(5, 3), x, n_boot=50).plot(log=True)):
        values, edges = _hist(fig.axes[0])
        assert np.sum(values * np.diff(np.log10(edges))) == pytest.approx(1.0, rel=1e-12)
    values, edges = _hist(plot_eigenvalues(np.full(7, 2.5), log=True).axes[0])  # a single value: one bin
    assert np.sum(values * np.diff(np.log10(edges))) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="lo"):
        log_edges(0.0, 1.0, 10)


@pytest.mark.parametrize("log", [False, True])
def test_atom_at_zero_is_a_marker_with_its_mass(rng, log):
    """MP(2) has mass 1/2 at 0: a marker on the axis whose legend gives both masses; the histogram holds the rest."""
    c = isometry.compare(MarchenkoPastur(2.0), _mp_samples(300, 150, 2, rng), n_boot=50)
    fig = c.plot(log=log)
    ax = fig.axes[0]
    values, edges = _hist(ax)
    widths = np.diff(np.log10(edges)) if log else np.diff(edges)
    assert np.sum(values * widths) == pytest.approx(0.5, rel=1e-9)
    assert values.max() < 5  # no spike: the atom is not in the histogram
    labels = ax.get_legend_handles_labels()[1]
    assert any("= 0$: mass 0.500 (theory 0.500)" in lab for lab in labels), labels
    (marker,) = [line for line in ax.lines if "mass 0.500" in line.get_label()]
    assert marker.get_xdata()[0] == 0.0 and marker.get_marker() != "None"
    if log:  # 0 is not on a log axis: the marker sits just inside the left spine, whatever the data limits
        at = marker.get_transform().transform([[0.0, 0.0]])[0] - ax.transAxes.transform([[0.0, 0.0]])[0]
        assert 0 < at[0] < 20 and 0 < at[1] < 20  # pixels right of and above the lower left corner


def _overlaps(fig, labels):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in labels if t.get_visible() and t.get_text()]
    boxes.sort(key=lambda b: b.x0)
    return [(a, b) for a, b in zip(boxes, boxes[1:]) if a.x1 > b.x0], len(boxes)


@pytest.mark.parametrize("lo,hi", [(0.8, 1.3), (1.02, 1.09), (0.3, 9.0), (0.05, 3.0), (1e-3, 50.0), (1e-30, 10.0)])
def test_log_axis_labels_do_not_overlap(lo, hi):
    """Short ranges (less than a decade) label 1, 2, 5 x 10^k, long ones powers of ten; minor ticks unlabelled."""
    x = np.geomspace(lo, hi, 500)
    fig = plot_eigenvalues(x, log=True, singular_values=False)
    ax = fig.axes[0]
    lim = ax.get_xlim()
    majors = [t for t, v in zip(ax.xaxis.get_majorticklabels(), ax.get_xticks()) if lim[0] <= v <= lim[1]]
    overlaps, n = _overlaps(fig, majors)
    assert not overlaps and n >= 2
    assert all(not t.get_text() for t in ax.xaxis.get_minorticklabels())


def test_plot_draws_into_a_given_axes(rng):
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2)
    c = isometry.compare(MarchenkoPastur(1.0), _mp_samples(60, 60, 1, rng), n_boot=50)
    assert c.plot(ax=a2, title="panel") is fig and a2.get_title() == "panel" and not a1.lines
    plt.close(fig)
class _TwoPoint:
    """Atoms 1/4 at 0 and 1/4 at 2, uniform(0, 1) with mass 1/2."""

    zero_mass, atoms = 0.25, ((0.0, 0.25), (2.0, 0.25))

    def mean(self):
        return 0.75

    def var(self):
        return 0.5 * (1 / 3) + 0.25 * 4 - 0.75**2

    def cdf(self, lam):
        lam = np.asarray(lam, dtype=float)
        return np.where(lam >= 0, 0.25 + 0.5 * np.clip(lam, 0, 1) + np.where(lam >= 2, 0.25, 0.0), 0.0)

    def ppf(self, p):
        p = np.asarray(p, dtype=float)
        return np.where(p <= 0.25, 0.0, np.where(p <= 0.75, 2 * (p - 0.25), 2.0))

    def pdf(self, lam):
        lam = np.asarray(lam, dtype=float)
        return np.where((lam > 0) & (lam < 1), 0.5, 0.0)


def test_positive_atoms_are_counted(rng):
    """Samples scattered by round-off around a positive atom still match it; a missing atom does not."""
    k = 4000
    x = np.concatenate([np.zeros(k // 4), rng.uniform(0, 1, k // 2), 2 + 1e-13 * rng.standard_normal(k // 4)])
    c = isometry.compare(_TwoPoint(), x, n_boot=50)
    assert c.ks < 0.03
    assert ks_distance(_TwoPoint().cdf, x) > 0.1  # without the atom list the jump at 2 is missed
    ax = c.plot().axes[0]
    (atom,) = [line for line in ax.lines if np.allclose(line.get_xdata(), 2.0)]  # the atom at 2 is a marker, not a bar
    assert atom.get_marker() != "None" and "mass 0.250 (theory 0.250)" in atom.get_label()
    assert c.theory_variance == pytest.approx(0.5 * (1 / 3) + 0.25 * 4 - 0.75**2) and c.mean_covered
    moved = np.where(x > 1.5, 1.9, x)
    assert isometry.compare(_TwoPoint(), moved, n_boot=50).ks > 0.2
