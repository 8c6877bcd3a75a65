"""Report parts on Jacobian spectra: densities (paper Fig. 2 / follow-up Fig. 2), moments against depth
(Fig. 3) and the universal double-scaling limits (follow-up Fig. 4)."""

from __future__ import annotations

import math

import numpy as np

from ..empirical import compare, empirical_eigenvalues
from ..plotting import pyplot, save_figure
from ..spectrum import jacobian_spectrum, q_star_for_variance, universal_spectrum
from .core import Context, PartResult, check

# (activation, weights, q*) panels of the follow-up paper's Fig. 2
DENSITY_CASES = [("linear", "gaussian", 0.5), ("relu", "orthogonal", 0.5), ("hard_tanh", "orthogonal", 0.25),
                 ("erf", "orthogonal", 0.25)]
KS_THRESHOLD = 0.05


def densities_part(ctx: Context) -> PartResult:
    """Singular-value densities at criticality, theory vs simulation, on a log axis."""
    plt = pyplot()
    depths = ctx.pick([2, 8, 32], [2, 8, 32, 128])
    width = ctx.pick(400, 1000)
    n_samples = ctx.pick(2, 1)
    rng_seed = ctx.seed
    fig, axes = plt.subplots(len(DENSITY_CASES), len(depths), figsize=(3.2 * len(depths), 2.6 * len(DENSITY_CASES)),
                             squeeze=False, layout="constrained")
    checks = []
    data = {}
    for i, (act, w, q) in enumerate(DENSITY_CASES):
        for j, L in enumerate(depths):
            sp = jacobian_spectrum(act, L, q_star=q, weights=w)
            lam = empirical_eigenvalues(act, L, width, q_star=q, weights=w, n_samples=n_samples,
                                     seed=rng_seed + 1000 * i + j, progress=False).reshape(n_samples, -1)
            c = compare(sp, lam, n_boot=200)
            ax = axes[i][j]
            c.plot(ax=ax, log=True, singular_values=True, bins=60)
            ax.set_title(f"{act} {w[:5]}, L={L}", fontsize=9)
            ax.legend().remove() if ax.get_legend() else None
            # ReLU's mass at 0 has an O(N^-1/2) finite-width excess (the rank of a finite ReLU network is the
            # smallest number of active units in any layer): it is measured and added to the threshold
            excess = abs(c.zero_mass - c.theory_zero_mass) if act == "relu" else 0.0
            checks.append(check(f"KS(theory, width-{width} simulation) {act} {w} L={L}", 0.0, c.ks, KS_THRESHOLD + excess,
                                rule=f"KS <= {KS_THRESHOLD} + |empirical - theory mass at 0|"))
            data[f"{act}-{w}-{L}"] = {"ks": c.ks, "ks_nonzero": c.ks_nonzero, "mean": c.mean, "theory_mean": c.theory_mean,
                                      "variance": c.variance, "theory_variance": c.theory_variance}
    path = save_figure(fig, ctx.figure_path("fig2_singular_value_densities"))
    text = (f"Densities of the singular values s of the input-output Jacobian at criticality (chi = 1), theory (free "
            f"probability, line) against width-{width} random networks (histogram), log axis as in the papers: linear "
            "Gaussian networks follow the Fuss-Catalan law and spread with depth; ReLU (orthogonal) keeps an atom at 0 and "
            "spreads; hard-tanh and erf with orthogonal weights at small q* stay concentrated near s = 1 (dynamical isometry) "
            "until depth makes them spread. Checks: Kolmogorov-Smirnov distance with atoms counted.")
    return PartResult("densities", "Fig. 2: singular-value densities, theory vs simulation", text, [str(path)], checks, data)


MOMENT_CASES = [("linear", 0.5), ("relu", 0.5), ("hard_tanh", 0.25), ("erf", 0.25), ("tanh", 0.25)]


def moments_part(ctx: Context) -> PartResult:
    """sigma^2_{JJ^T} and s_max against depth, theory lines and simulation points."""
    plt = pyplot()
    sim_depths = ctx.pick([2, 8, 16], [2, 4, 8, 16, 32])
    width = ctx.pick(250, 600)
    n_samples = ctx.pick(3, 4)
    Ls = np.unique(np.geomspace(2, 64, ctx.pick(8, 20)).astype(int))
    fig, (ax_v, ax_s) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    checks = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (act, q) in enumerate(MOMENT_CASES):
        for w, ls, mk in [("orthogonal", "-", "o"), ("gaussian", "--", "s")]:
            col = colours[k % len(colours)]
            var_t = [jacobian_spectrum(act, int(L), q_star=q, weights=w).var() for L in Ls]
            smax_t = [math.sqrt(jacobian_spectrum(act, int(L), q_star=q, weights=w).max_eigenvalue) for L in Ls]
            lab = f"{act} {w}"
            if max(var_t) > 0:  # linear orthogonal is exactly isometric: nothing to draw on a log axis
                ax_v.plot(Ls, var_t, ls, color=col, label=lab)
            ax_s.plot(Ls, smax_t, ls, color=col, label=lab)
            for L in sim_depths:
                sp = jacobian_spectrum(act, L, q_star=q, weights=w)
                lam = empirical_eigenvalues(act, L, width, q_star=q, weights=w, n_samples=n_samples,
                                         seed=ctx.seed + 7919 * k + L + (0 if w == "orthogonal" else 1), progress=False)
                per = lam.reshape(n_samples, -1)
                v_nets = per.var(axis=1)
                v = float(v_nets.mean())
                se = float(v_nets.std(ddof=1) / math.sqrt(n_samples))
                if sp.var() > 0:
                    ax_v.plot(L, v, mk, color=col, ms=4)
                ax_s.plot(L, math.sqrt(float(per.max(axis=1).mean())), mk, color=col, ms=4)
                tol = 4 * se + 0.1 * sp.var() + 2 * L / width * (1 + sp.var())
                checks.append(check(f"Var(lambda) = L(mu2/mu1^2 - 1 - s1): {act} {w} L={L}, width {width}", sp.var(), v, tol,
                                    rule="|measured - theory| <= 4 s.e. + 10% + 2(L/N)(1 + theory) (finite-width)"))
                if L >= 8:
                    smax_theory = math.sqrt(sp.max_eigenvalue)
                    smax_meas = math.sqrt(float(per.max(axis=1).mean()))
                    tol_rel = 0.15 + 0.5 * math.sqrt(L / width)  # the edge of a finite product converges slowly
                    checks.append(check(f"s_max edge: {act} {w} L={L}, width {width}", smax_theory, smax_meas, tol_rel,
                                        rel=True, rule="|measured - theory| <= (0.15 + 0.5 sqrt(L/N)) theory"))
    ax_v.set(xscale="log", yscale="log", xlabel="depth L", ylabel=r"$\sigma^2_{JJ^T}$")
    ax_s.set(xscale="log", yscale="log", xlabel="depth L", ylabel=r"$s_{max}$")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax in (ax_v, ax_s):
        ax.set_xticks([2, 4, 8, 16, 32, 64])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax_v.legend(fontsize=6, ncol=2)
    ax_v.set_title("variance of the spectrum (lines: theory, points: simulation;\nlinear orthogonal: exactly 0)",
                   fontsize=9)
    ax_s.set_title("largest singular value", fontsize=9)
    path = save_figure(fig, ctx.figure_path("fig3_moments_vs_depth"))
    text = ("At criticality the spectrum of J J^T has mean 1 and variance L (mu2/mu1^2 - 1 - s1) with s1 = -1 (Gaussian) "
            "or 0 (orthogonal): ReLU (mu2/mu1^2 = 2) spreads linearly with depth whatever the weights, orthogonal tanh-like "
            "units at small q* stay close to isometry. Points are random networks; s_max is compared with the right edge "
            "of the theoretical support (finite width pulls the largest singular value inside the edge, hence a tolerance of 15% + 0.5 sqrt(L/N)).")
    return PartResult("moments", "Fig. 3: spectrum variance and s_max against depth", text, [str(path)], checks)


def universal_part(ctx: Context) -> PartResult:
    """Follow-up Fig. 4: convergence to the universal limits at sigma0^2 = 1/4 as L grows."""
    plt = pyplot()
    s02 = 0.25
    depths = ctx.pick([2, 8, 64, 1024], [2, 8, 32, 128, 1024, 10**4])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    checks = []
    s = np.linspace(0.3, 2.0, 500)
    for ax, act, kind in [(axes[0], "hard_tanh", "bernoulli"), (axes[1], "erf", "smooth")]:
        lim = universal_spectrum(kind, s02)
        grid = np.linspace(0.05, 4.0, 400)
        prev = None
        for L in depths:
            q = q_star_for_variance(act, L, s02)
            sp = jacobian_spectrum(act, L, q_star=q)
            ax.plot(s, sp.singular_values.pdf(s), lw=1, label=f"L={L} (q*={q:.2g})")
            dist = float(np.max(np.abs(sp.cdf(grid) - lim.cdf(grid))))
            if prev is not None:
                checks.append(check(f"{act}: sup|F_L - F_inf| decreases, L={L}", prev, dist, 0.0, passed=dist <= prev + 1e-9,
                                    rule="measured <= theory (distance at the previous depth)"))
            prev = dist
        ax.plot(s, lim.singular_values.pdf(s), "k", lw=2, label=f"L = inf ({kind})")
        checks.append(check(f"{act}: sup|F_L - F_inf| at L={depths[-1]}", 0.0, prev, 0.02))
        ax.set(xlabel="singular value s", ylabel="p(s)", title=f"{act}, orthogonal, $\\sigma_0^2$ = 1/4")
        ax.legend(fontsize=7)
    b = universal_spectrum("bernoulli", s02)
    top = [(lam, m) for lam, m in b.atoms if lam > 0]
    checks.append(check("Bernoulli limit: atom at e^{sigma0^2}", math.exp(s02), top[0][0] if top else float("nan"), 1e-6, rel=True))
    checks.append(check("Bernoulli limit: atom mass 1 - sigma0^2", 1 - s02, top[0][1] if top else float("nan"), 1e-6))
    sm = universal_spectrum("smooth", s02)
    checks.append(check("smooth limit: upper singular-value edge ~1.557 at sigma0 = 1/2", 1.557, math.sqrt(sm.max_eigenvalue), 0.005))
    checks.append(check("smooth limit: lower singular-value edge ~0.567 at sigma0 = 1/2", 0.567,
                        math.sqrt(float(sm.ppf(1e-9))), 0.005))
    path = save_figure(fig, ctx.figure_path("fig4_universal_limits"))
    text = ("Double scaling: choosing q* so that sigma^2_{JJ^T} = 1/4 at every depth, the spectra converge as L grows to "
            "universal laws that depend only on the class of the activation: the Bernoulli class (hard tanh, S = "
            "exp(-sigma0^2 z/(1+z)), with an atom at e^{sigma0^2}) and the smooth class (erf, tanh, S = exp(-sigma0^2 z)).")
    return PartResult("universal", "Follow-up Fig. 4: universal limits at sigma0^2 = 1/4", text, [str(path)], checks)
