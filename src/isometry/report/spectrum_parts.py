"""Report parts on Jacobian spectra: densities (paper Fig. 2 / follow-up Fig. 2), moments against depth
(Fig. 3) and the universal double-scaling limits (follow-up Fig. 4).

Sizes and statistical power. Every comparison of a simulation with the theory is also run against
the nearest wrong prediction, the same network with the other weight law (orthogonal <-> Gaussian),
and must reject it: a check that could not fail is not a check. The widths are the smallest that
keep both sides of that test sound at the deepest simulated depth L:

* densities: the Kolmogorov-Smirnov distance of a width-N simulation to its own law (finite-width
  error and sampling noise) must stay below the threshold 0.05 with room to spare, while the law
  with the other weights is at KS 0.07 (ReLU, L = 128) to 0.97 (linear). Keeping L/N <= 0.13 at
  the deepest panel (N = 1000 for L <= 128; N = 400 with two networks for L <= 32 at --quick) keeps
  the measured distance to the own law at or below 0.036.
* moments: the deterministic part 10% + 2 (L/N)(1 + sigma^2) of the tolerance must stay below half
  the gap L between the orthogonal and Gaussian predictions of Var(lambda) (s_1 = 0 vs -1): with
  sigma^2 <= 2 L (ReLU, Gaussian) this needs N >= 14 L. Whether the whole tolerance (with its
  4 s.e. term) rejects the other weight law is recorded per point (``rejects_other_weights``) and
  counted in the text, not made a check: the variance of a Gaussian network's eigenvalues is carried
  by its few largest ones, and four networks cannot pin it at L >= 16.
"""

from __future__ import annotations

import math

import numpy as np

from ..empirical import compare, empirical_eigenvalues, ks_distance, ks_distance_nonzero
from ..plotting import pyplot, save_figure
from ..plotting.empirical import plot_comparison
from ..spectrum import jacobian_spectrum, q_star_for_variance, universal_spectrum
from .core import Context, PartResult, check, single_threaded

# (activation, weights, q*) panels of the follow-up paper's Fig. 2
DENSITY_CASES = [("linear", "gaussian", 0.5), ("relu", "orthogonal", 0.5), ("hard_tanh", "orthogonal", 0.25),
                 ("erf", "orthogonal", 0.25)]
KS_THRESHOLD = 0.05

_OTHER = {"orthogonal": "gaussian", "gaussian": "orthogonal"}


def _shared_legend(fig, handles, ncol=None, loc="outside lower center"):
    fig.legend(handles=handles, loc=loc, ncol=ncol or len(handles), fontsize=8, frameon=False)


@single_threaded
def densities_part(ctx: Context) -> PartResult:
    """Singular-value densities at criticality, theory vs simulation, on a log axis."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    depths = ctx.pick([2, 8, 32], [2, 8, 32, 128])
    width = ctx.pick(400, 1000)
    n_samples = ctx.pick(2, 1)
    nets = f"{n_samples} network{'s' if n_samples != 1 else ''}"
    fig, axes = plt.subplots(len(DENSITY_CASES), len(depths), figsize=(3.4 * len(depths), 2.7 * len(DENSITY_CASES) + 0.8),
                             squeeze=False, layout="constrained")
    checks = []
    data = {}
    panels = [(i, j) for i in range(len(DENSITY_CASES)) for j in range(len(depths))]
    for i, j in ctx.track(panels, desc="densities", unit="panel"):
        act, w, q = DENSITY_CASES[i]
        L = depths[j]
        sp = jacobian_spectrum(act, L, q_star=q, weights=w)
        lam = empirical_eigenvalues(act, L, width, q_star=q, weights=w, n_samples=n_samples,
                                    seed=ctx.seed + 1000 * i + j, progress=False).reshape(n_samples, -1)
        c = compare(sp, lam, n_boot=200)
        ax = axes[i][j]
        plot_comparison(c, ax=ax, log=True, singular_values=True, legend=False,
                        title=f"{act}, {w} weights, L = {L}, N = {width}\nq* = {q:g}, KS = {c.ks:.3f}")
        ax.title.set_fontsize(8.5)
        ax.set_ylabel(r"density per unit $\log_{10} s$", fontsize=8.5)
        # ReLU's mass at 0 has an O(N^-1/2) finite-width excess (the rank of a finite ReLU network is the
        # smallest number of active units in any layer): it is measured and added to the threshold
        excess = abs(c.zero_mass - c.theory_zero_mass) if sp.zero_mass > 0 and act == "relu" else 0.0
        threshold = KS_THRESHOLD + excess
        checks.append(check(f"KS(theory, width-{width} simulation) {act} {w} L={L}", 0.0, c.ks, threshold,
                            rule=f"KS <= {KS_THRESHOLD} + |empirical - theory mass at 0|"))
        # power: the same simulation against the law with the other weights must fail the same test
        other = jacobian_spectrum(act, L, q_star=q, weights=_OTHER[w])
        if excess:  # the mass at 0 is allowed to be off: compare the shapes of the non-zero parts
            ks_other = ks_distance_nonzero(other.cdf, lam, atoms=other.atoms)
            ks_own = c.ks_nonzero
            how = "KS of the non-zero parts"
        else:
            ks_other = ks_distance(other.cdf, lam, atoms=other.atoms)
            ks_own = c.ks
            how = "KS"
        checks.append(check(f"the simulation rejects the {_OTHER[w]}-weights law: {act} {w} L={L}", ks_own, ks_other,
                            0.0, passed=ks_other > max(KS_THRESHOLD, 2 * ks_own),
                            rule=f"{how}(simulation, law with the other weights) > max({KS_THRESHOLD}, "
                                 f"2 x theory column: the {how} to its own law)"))
        data[f"{act}-{w}-{L}"] = {"ks": c.ks, "ks_nonzero": c.ks_nonzero, "ks_other_weights": ks_other,
                                  "zero_mass": c.zero_mass, "theory_zero_mass": c.theory_zero_mass, "mean": c.mean,
                                  "theory_mean": c.theory_mean, "variance": c.variance,
                                  "theory_variance": c.theory_variance}
    _shared_legend(fig, [
        Patch(color="C0", alpha=0.35, label=f"simulation (N = {width}, {nets} per panel)"),
        Line2D([], [], color="C3", lw=1.5, label=r"theory (free probability, $N\to\infty$)"),
        Line2D([], [], ls="none", marker="<", ms=8, color="k", mfc="white", mew=1.5,
               label="atom at s = 0, with s < 1e-10 (unresolved in float64): measured mass (theory)"),
        Line2D([], [], ls="none", marker="D", ms=7, color="k", mfc="white", mew=1.5,
               label="atom at s > 0: measured mass (theory)"),
    ], ncol=2)
    fig.suptitle("Singular values of the input-output Jacobian at criticality ($\\chi = 1$)", fontsize=11)
    path = save_figure(fig, ctx.figure_path("fig2_singular_value_densities"))
    text = (f"Densities of the singular values s of the input-output Jacobian at criticality (chi = 1), theory (free "
            f"probability, line) against width-{width} random networks (histogram), log axis as in the papers: linear "
            "Gaussian networks follow the Fuss-Catalan law and spread with depth; ReLU (orthogonal) keeps an atom at 0 and "
            "spreads; hard-tanh and erf with orthogonal weights at small q* stay concentrated near s = 1 (dynamical "
            "isometry) until depth makes them spread. Checks: the Kolmogorov-Smirnov distance with atoms counted, and "
            "the same simulation against the law with the other weight law, which it must reject.")
    caption = ("Rows: activation and weight law; columns: depth L. Look at how the histogram (one simulated network "
               "per panel at this width) follows the red line at every depth, and at the spread: linear-Gaussian and "
               "ReLU networks spread over many decades as L grows, hard-tanh and erf with orthogonal weights stay within "
               "a decade of s = 1 up to L = 32. Atoms are markers on the axis with their measured mass (theory in "
               "brackets): ReLU's mass at s = 0, hard tanh's atoms at 0 and near s = 1.")
    return PartResult("densities", "Fig. 2: singular-value densities, theory vs simulation", text, [str(path)], checks,
                      data, captions=[caption])


MOMENT_CASES = [("linear", 0.5), ("relu", 0.5), ("hard_tanh", 0.25), ("erf", 0.25), ("tanh", 0.25)]


@single_threaded
def moments_part(ctx: Context) -> PartResult:
    """sigma^2_{JJ^T} and s_max against depth, theory lines and simulation points."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    sim_depths = ctx.pick([2, 8, 16], [2, 4, 8, 16, 32])
    width = ctx.pick(250, 600)
    n_samples = ctx.pick(3, 4)
    Ls = np.unique(np.geomspace(2, 64, ctx.pick(7, 11)).astype(int))
    fig, (ax_v, ax_s) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    checks = []
    data = {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"orthogonal": ("-", "o"), "gaussian": ("--", "s")}
    cases = [(k, act, q, w) for k, (act, q) in enumerate(MOMENT_CASES) for w in ("orthogonal", "gaussian")]
    bar = ctx.track(total=len(cases) * len(sim_depths), desc="moments", unit="net")
    power = {"orthogonal": [], "gaussian": []}
    for k, act, q, w in cases:
        ls, mk = styles[w]
        col = colours[k % len(colours)]
        laws = {int(L): jacobian_spectrum(act, int(L), q_star=q, weights=w) for L in Ls}
        var_t = [laws[int(L)].var() for L in Ls]
        smax_t = [math.sqrt(laws[int(L)].max_eigenvalue) for L in Ls]
        if max(var_t) > 0:  # linear orthogonal is exactly isometric: nothing to draw on a log axis
            ax_v.plot(Ls, var_t, ls, color=col, lw=1.3)
        ax_s.plot(Ls, smax_t, ls, color=col, lw=1.3)
        for L in sim_depths:
            sp = jacobian_spectrum(act, L, q_star=q, weights=w)
            lam = empirical_eigenvalues(act, L, width, q_star=q, weights=w, n_samples=n_samples,
                                        seed=ctx.seed + 7919 * k + L + (0 if w == "orthogonal" else 1), progress=False)
            per = lam.reshape(n_samples, -1)
            v_nets = per.var(axis=1)
            v = float(v_nets.mean())
            se = float(v_nets.std(ddof=1) / math.sqrt(n_samples))
            smax_meas = math.sqrt(float(per.max(axis=1).mean()))
            if sp.var() > 0:
                ax_v.plot(L, v, mk, color=col, ms=5, mfc="white" if w == "gaussian" else col)
            ax_s.plot(L, smax_meas, mk, color=col, ms=5, mfc="white" if w == "gaussian" else col)
            tol = 4 * se + 0.1 * sp.var() + 2 * L / width * (1 + sp.var())
            checks.append(check(f"Var(lambda) = L(mu2/mu1^2 - 1 - s1): {act} {w} L={L}, width {width}", sp.var(), v, tol,
                                rule="|measured - theory| <= 4 s.e. + 10% + 2(L/N)(1 + theory) (finite-width)"))
            # power: would the same tolerance reject the other weight law's prediction (Var differs by L)?
            var_other = jacobian_spectrum(act, L, q_star=q, weights=_OTHER[w]).var()
            rejects = abs(v - var_other) > tol
            power[w].append(rejects)
            data[f"{act}-{w}-{L}"] = {"variance": v, "se": se, "theory": sp.var(), "other_weights": var_other,
                                      "tolerance": tol, "rejects_other_weights": rejects,
                                      "max_singular_value": smax_meas,
                                      "theory_max_singular_value": math.sqrt(sp.max_eigenvalue)}
            if L >= 8:
                smax_theory = math.sqrt(sp.max_eigenvalue)
                tol_rel = 0.15 + 0.5 * math.sqrt(L / width)  # the edge of a finite product converges slowly
                checks.append(check(f"s_max edge: {act} {w} L={L}, width {width}", smax_theory, smax_meas, tol_rel,
                                    rel=True, rule="|measured - theory| <= (0.15 + 0.5 sqrt(L/N)) theory"))
            bar.update(1)
    bar.close()
    ax_v.set(xscale="log", yscale="log", xlabel="depth L", ylabel=r"variance $\sigma^2_{JJ^T}$ of the eigenvalues")
    ax_s.set(xscale="log", yscale="log", xlabel="depth L", ylabel=r"largest singular value $s_{max}$ of $J$")
    ax_s.set_yticks([1, 2, 5, 10, 20])
    ax_s.yaxis.set_major_formatter(ScalarFormatter())
    ax_s.yaxis.set_minor_formatter(NullFormatter())
    for ax in (ax_v, ax_s):
        ax.set_xticks([2, 4, 8, 16, 32, 64])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", color="0.92", lw=0.6)
    ax_v.set_title("variance of the spectrum of $JJ^T$\n(linear orthogonal: exactly 0, not drawn)", fontsize=9)
    ax_s.set_title("largest singular value (right edge of the support)", fontsize=9)
    handles = [Line2D([], [], color=colours[k % len(colours)], lw=2, label=act) for k, (act, _) in enumerate(MOMENT_CASES)]
    handles += [Line2D([], [], color="k", ls="-", marker="o", ms=5, label="orthogonal weights"),
                Line2D([], [], color="k", ls="--", marker="s", ms=5, mfc="white", label="Gaussian weights")]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False,
               title=f"lines: theory\npoints: simulation,\nN = {width}, mean of\n{n_samples} networks", title_fontsize=8)
    fig.suptitle("Spread of the Jacobian spectrum against depth at criticality (q* = 0.5 for linear and ReLU, "
                 "0.25 otherwise)", fontsize=10)
    path = save_figure(fig, ctx.figure_path("fig3_moments_vs_depth"))
    text = ("At criticality the spectrum of J J^T has mean 1 and variance L (mu2/mu1^2 - 1 - s1) with s1 = -1 (Gaussian) "
            "or 0 (orthogonal): ReLU (mu2/mu1^2 = 2) spreads linearly with depth whatever the weights, orthogonal tanh-like "
            "units at small q* stay close to isometry. Points are random networks; s_max is compared with the right edge "
            "of the theoretical support (finite width pulls the largest singular value inside the edge, hence a "
            "tolerance of 15% + 0.5 sqrt(L/N)). Power: the same tolerance rejects the other weight law's prediction "
            f"for {sum(power['orthogonal'])} of {len(power['orthogonal'])} orthogonal and {sum(power['gaussian'])} of "
            f"{len(power['gaussian'])} Gaussian networks (data: rejects_other_weights); the variance of one Gaussian "
            "network is dominated by its few largest eigenvalues, whose network-to-network fluctuations make its "
            "4 s.e. term large at L >= 16, where the densities part's KS test tells the weight laws apart instead.")
    caption = ("Left: the variance of the eigenvalues of J J^T grows linearly in L for every network; look at the gap "
               "of a factor ~10 between orthogonal (solid) and Gaussian (dashed) weights for the tanh-like units at "
               "small q*, against a factor 2 for ReLU. Right: the largest singular value; at L = 8 orthogonal hard tanh, "
               "erf and tanh stay near 2 or below while ReLU and every Gaussian network exceed 4.")
    return PartResult("moments", "Fig. 3: spectrum variance and s_max against depth", text, [str(path)], checks, data,
                      captions=[caption])


@single_threaded
def universal_part(ctx: Context) -> PartResult:
    """Follow-up Fig. 4: convergence to the universal limits at sigma0^2 = 1/4 as L grows."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter
    from matplotlib.transforms import blended_transform_factory

    s02 = 0.25
    depths = ctx.pick([2, 8, 64, 1024], [2, 8, 32, 128, 1024, 10**4])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6), layout="constrained")
    checks = []
    data = {}
    cmap = plt.get_cmap("viridis")
    colours = [cmap(0.9 * i / max(len(depths) - 1, 1)) for i in range(len(depths))]
    ln10 = math.log(10.0)
    # hard tanh (Bernoulli class): atoms and a continuous part over many decades, on a log10 s axis;
    # erf (smooth class): a compact law, on a linear axis as in the paper
    panels = [(axes[0], "hard_tanh", "bernoulli", True, (1e-6, 1.6)), (axes[1], "erf", "smooth", False, (0.3, 1.8))]
    for ax, act, kind, log, xr in ctx.track(panels, desc="universal", unit="panel"):
        lim = universal_spectrum(kind, s02)
        s = np.geomspace(*xr, 700) if log else np.linspace(*xr, 600)

        def density(law):
            if log:  # per unit log10 s: p_t(2 ln s) d(2 ln s)/d(log10 s)
                return law.log_eigenvalues.pdf(2.0 * np.log(s)) * 2.0 * ln10
            return law.singular_values.pdf(s)

        grid = np.linspace(0.05, 4.0, 400)
        prev = None
        qs = {}
        laws = []
        for L, col in zip(depths, colours):
            q = q_star_for_variance(act, L, s02)
            qs[L] = q
            sp = jacobian_spectrum(act, L, q_star=q)
            ax.plot(s, density(sp), lw=1.1, color=col)
            laws.append((f"L = {L:g}", sp, col))
            dist = float(np.max(np.abs(sp.cdf(grid) - lim.cdf(grid))))
            if prev is not None:
                checks.append(check(f"{act}: sup|F_L - F_inf| decreases, L={L}", prev, dist, 0.0, passed=dist <= prev + 1e-9,
                                    rule="measured <= theory (distance at the previous depth)"))
            prev = dist
        ax.plot(s, density(lim), "k", lw=2.2)
        laws.append(("limit", lim, "k"))
        checks.append(check(f"{act}: sup|F_L - F_inf| at L={depths[-1]}", 0.0, prev, 0.02))
        if any(m > 1e-9 for _, law, _ in laws for _, m in law.atoms):
            # atoms as markers at their mass on a right-hand axis; at 0 (not on a log axis) on the left spine
            twin = ax.twinx()
            twin.set_ylim(0.0, 1.05)
            twin.set_ylabel("atom mass (markers)")
            spine = blended_transform_factory(twin.transAxes, twin.transData)
            lines = {"zero": [], "top": []}
            for n, (label, law, col) in enumerate(laws):
                ms = 9 if col == "k" else 6
                for lam_atom, m in law.atoms:
                    if lam_atom == 0 and m > 1e-9:
                        twin.plot([0.0], [m], ls="none", marker="<", ms=ms, color=col, transform=spine, clip_on=False,
                                  zorder=5)
                        lines["zero"].append(f"{m:.3g}")
                    elif lam_atom > 0 and m > 1e-9:
                        twin.plot([math.sqrt(lam_atom)], [m], ls="none", marker="D", ms=ms, color=col, mfc="none"
                                  if col != "k" else "k", mew=1.4, clip_on=False, zorder=5)
                        lines["top"].append(f"{m:.4g}")
                if not any(lam_atom == 0 and m > 1e-9 for lam_atom, m in law.atoms):
                    lines["zero"].append("0")
            top = [lam_atom for lam_atom, m in lim.atoms if lam_atom > 0]
            where = f"{math.sqrt(top[0]):.4f}" if top else "?"
            note = "atom masses, L = " + ", ".join(f"{L:g}" for L in depths) + r", $\infty$:" \
                + f"\nat s = 0: {', '.join(lines['zero'])}\nnear s = {where}: {', '.join(lines['top'])}"
            if log:
                note += f"\n(limit: continuous mass {float(lim.cdf(xr[0] ** 2) - lim.zero_mass):.2g} lies left of the axis)"
            ax.text(0.04, 0.97, note, transform=ax.transAxes, va="top", fontsize=7.5,
                    bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.7", "alpha": 0.9})
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ylabel = r"density of the continuous part per unit $\log_{10} s$"
        else:
            ylabel = "density p(s) of the continuous part"
        ax.set_xlim(*xr)
        ax.set_ylim(bottom=0.0)
        ax.set(xlabel="singular value s of J", ylabel=ylabel,
               title=f"{act}, orthogonal weights, $N\\to\\infty$: $\\sigma^2_{{JJ^T}} = 1/4$ at every depth\n"
                     f"(q* from {qs[depths[0]]:.2g} at L = {depths[0]} to {qs[depths[-1]]:.2g} at L = {depths[-1]:g})")
        ax.title.set_fontsize(9)
        data[act] = {"q_star": {str(L): q for L, q in qs.items()}, "sup_distance_last": prev}
    handles = [Line2D([], [], color=c, lw=1.5, label=f"L = {L:g}") for L, c in zip(depths, colours)]
    handles.append(Line2D([], [], color="k", lw=2.2, label=r"$L\to\infty$ (universal limit)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
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
    caption = ("Left, hard tanh (log axis): the continuous part (lines) and the atoms (markers on the right axis, masses "
               "listed in the box: at s = 0 and near s = 1.13) approach the Bernoulli-class limit, whose atom at "
               "s = e^{1/8} holds 3/4 of the mass and whose continuous part reaches down over many decades. "
               "Right, erf: the density moves from a peak near s = 1.3 at L = 2 to the smooth-class limit with edges "
               "0.567 and 1.557.")
    return PartResult("universal", "Follow-up Fig. 4: universal limits at sigma0^2 = 1/4", text, [str(path)], checks, data,
                      captions=[caption])
