"""Report parts that need only the mean-field core: the phase diagram (paper Fig. 1) and the
law of phi'(h) (follow-up paper Fig. 3)."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from ..activations import get_activation
from ..meanfield import critical_point, mu, phase_diagram, q_star
from ..plotting import pyplot, save_figure
from .core import Check, Context, PartResult, check, single_threaded


def _simulate_length(act, sw2, sb2, width, depth, rng, q0=1.0, n_nets=12, batch=8):
    """Forward ``batch`` inputs through ``n_nets`` independent width-N Gaussian networks of ``depth`` layers.

    Returns (q^L, its standard error across networks, chi at the last layer, its standard error).
    """
    a = get_activation(act)
    qs, chis = [], []
    for _ in range(n_nets):
        h = rng.standard_normal((width, batch)) * np.sqrt(q0)
        for _ in range(depth):
            W = rng.standard_normal((width, width)) * np.sqrt(sw2 / width)
            h = W @ a.phi(h) + rng.standard_normal((width, 1)) * np.sqrt(sb2)
        qs.append(np.mean(h**2))
        chis.append(sw2 * np.mean(a.dphi(h) ** 2))
    se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))  # noqa: E731
    return float(np.mean(qs)), se(qs), float(np.mean(chis)), se(chis)


@single_threaded
def phase_part(ctx: Context) -> PartResult:
    """Fig. 1: tanh order/chaos phase diagram; critical points against closed forms and simulation."""
    n = ctx.pick(80, 200)
    pd = phase_diagram("tanh", np.linspace(0.5, 3.0, n), np.linspace(0.0, 0.25, n))
    fig = pd.plot()
    ax = fig.axes[0]
    checks: list[Check] = []
    # the paper's two tanh networks
    for sw2, q_paper, sb2_paper in [(1.05, 0.025, 2.0e-5), (2.0, 0.82, 0.10)]:
        # find the critical q* with sigma_w2 = sw2 by bisection along the critical line
        lo, hi = 1e-6, 5.0
        for _ in range(80):
            mid = np.sqrt(lo * hi)
            (lo, hi) = (mid, hi) if critical_point("tanh", mid).sigma_w2 < sw2 else (lo, mid)
        cp = critical_point("tanh", lo)
        ax.plot([cp.sigma_w2], [cp.sigma_b2], marker="o", ms=9, mfc="none", mec="k", mew=1.6, ls="none", zorder=6,
                clip_on=False)
        ax.annotate(f"paper: $\\sigma_w^2$ = {sw2:g}, q* = {cp.q_star:.2g}", (cp.sigma_w2, cp.sigma_b2),
                    xytext=(16, 24 if sw2 < 1.5 else -4), textcoords="offset points", fontsize=8, zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.9})
        checks.append(check(f"tanh critical point at sigma_w2={sw2}: q* (paper ~{q_paper})", q_paper, cp.q_star, 0.1, rel=True))
        checks.append(check(f"tanh critical point at sigma_w2={sw2}: sigma_b2 (paper ~{sb2_paper:g})", sb2_paper, cp.sigma_b2,
                            0.1, rel=True))
    q = 0.5
    checks.append(check("hard_tanh: sigma_w2 = 1/erf(1/sqrt(2 q*)) at q*=0.5", 1 / float(erf(1 / np.sqrt(2 * q))),
                        critical_point("hard_tanh", q).sigma_w2, 1e-12, rel=True))
    checks.append(check("erf: sigma_w2 = sqrt(1 + pi q*) at q*=0.5", np.sqrt(1 + np.pi * q), critical_point("erf", q).sigma_w2,
                        1e-12, rel=True))
    r = critical_point("relu", q)
    checks.append(check("relu: critical point (sigma_w2, sigma_b2) = (2, 0)", 2.0, r.sigma_w2 + r.sigma_b2, 0.0))
    # q* and chi against a wide random network
    rng = np.random.default_rng(ctx.seed)
    width = ctx.pick(600, 1000)
    for sw2, sb2 in [(2.0, 0.1), (1.3, 0.05)]:
        qs = float(q_star("tanh", sw2, sb2))
        qm, qse, chim, cse = _simulate_length("tanh", sw2, sb2, width, 20, rng)
        checks.append(check(f"tanh q* at ({sw2}, {sb2}) vs width-{width} network after 20 layers (4 s.e. + 1%)", qs, qm,
                            4 * qse + 0.01 * qs))
        chi_t = sw2 * float(mu("tanh", qs, 1))
        checks.append(check(f"tanh chi at ({sw2}, {sb2}) vs width-{width} network (4 s.e. + 1%)", chi_t, chim,
                            4 * cse + 0.01 * chi_t))
    path = save_figure(fig, ctx.figure_path("fig1_phase_tanh"))
    text = ("The paper's Fig. 1: for tanh the critical line chi = 1 separates the ordered phase (chi < 1, gradients vanish) "
            "from the chaotic phase (chi > 1, gradients explode). Each point of the line is a critical initialisation, "
            "coloured by its fixed point q*; the paper's two tanh networks sit at sigma_w^2 = 1.05 (q* ~ 0.025) and "
            "sigma_w^2 = 2 (q* ~ 0.82). Measured: the critical points from the mean-field core and simulated random networks.")
    caption = ("Look at the critical line (coloured by log10 q*, q* marked at each decade): it starts at sigma_w^2 = 1, "
               "sigma_b^2 = 0 for "
               "q* -> 0 and bends up; left of it signals shrink (ordered, blue), right of it they are scrambled "
               "(chaotic, red). The circles are the paper's two critical tanh networks; the one at sigma_w^2 = 1.05 "
               "has the small q* that dynamical isometry needs.")
    return PartResult("phase", "Fig. 1: order/chaos phase diagram (tanh)", text, [str(path)], checks, captions=[caption])


@single_threaded
def dphi_part(ctx: Context) -> PartResult:
    """Follow-up Fig. 3: the distribution of phi'(h), h ~ N(0, q*), for q* in {0.2, 0.5, 1, 2}."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    acts = ["relu", "hard_tanh", "erf", "tanh"] if ctx.quick else ["relu", "hard_tanh", "shifted_relu", "erf", "tanh", "silu"]
    qs = [0.2, 0.5, 1.0, 2.0]
    rng = np.random.default_rng(ctx.seed + 1)
    n = ctx.pick(100_000, 400_000)
    ncol = 2 if len(acts) == 4 else 3
    nrow = -(-len(acts) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.9 * nrow + 0.5), squeeze=False, layout="constrained")
    checks = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in ctx.track(list(zip(axes.ravel(), acts)), desc="dphi", unit="activation"):
        a = get_activation(name)
        discrete = a.d2_atoms is not None
        for i, q in enumerate(qs):
            d = a.dphi(rng.standard_normal(n) * np.sqrt(q))
            col = colours[i % len(colours)]
            if discrete:  # a discrete law: its atoms as markers at their probability
                vals, counts = np.unique(np.round(d, 12), return_counts=True)
                ax.vlines(vals + (i - 1.5) * 0.012, 0, counts / n, color=col, lw=1.2, alpha=0.7)
                ax.plot(vals + (i - 1.5) * 0.012, counts / n, "o", color=col, ms=5)
            else:
                ax.hist(d, bins=80, density=True, histtype="step", color=col, lw=1.1)
            for k in (1, 2):
                m_t = float(mu(a, q, k))
                m_s = float(np.mean(d ** (2 * k)))
                se = float(np.std(d ** (2 * k)) / np.sqrt(n))
                checks.append(check(f"{name}: mu_{k}(q*={q}) quadrature/closed form vs {n} samples (5 s.e.)", m_t, m_s,
                                    5 * se + 1e-12))
        ax.set_title(f"{name}: $\\phi'(h)$, $h \\sim N(0, q^*)$", fontsize=9)
        ax.set_xlabel(r"$\phi'(h)$")
        if discrete:
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("probability (atoms)")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("density (log scale)")
    for ax in axes.ravel()[len(acts):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[i % len(colours)], lw=1.5, marker="o", ms=4, label=f"q* = {q:g}")
               for i, q in enumerate(qs)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(qs), fontsize=8, frameon=False,
               title=f"{n:,} samples of h per q*; atoms of a discrete law drawn as markers at their probability "
                     "(offset sideways per q* so that none hides another)", title_fontsize=8)
    fig.suptitle(r"Distribution of $\phi'(h)$ at the fixed point: what enters the Jacobian $J = \prod_l D^l W^l$",
                 fontsize=10)
    path = save_figure(fig, ctx.figure_path("fig_dphi_distribution"))
    text = ("The law of phi'(h) for h ~ N(0, q*) decides the Jacobian spectrum: ReLU-like units give a Bernoulli law "
            "(two atoms) at every q*, so their spectrum spreads with depth; smooth units (erf, tanh) concentrate phi' near 1 "
            "as q* -> 0, which is what makes isometry possible. Checks: the moments mu_1, mu_2 used everywhere in the "
            "theory against sampled h.")
    caption = ("ReLU puts half of the mass at phi' = 0 whatever q*; hard tanh and shifted ReLU move mass from 1 to 0 as "
               "q* grows. For erf and tanh, look at the blue curve (q* = 0.2): phi' is piled up near 1, the condition for "
               "an isometric Jacobian; at q* = 2 it spreads down to 0.")
    return PartResult("dphi", "Follow-up Fig. 3: distribution of phi'(h)", text, [str(path)], checks, captions=[caption])
