"""Report part on residual networks (Tarnowski et al. 2019): spectra at several depths beside plain networks,
and the universality of the large-depth law.

The residual networks x^{l+1} = x^l + a phi(W^l x^l) use the branch scale a(L) that puts the
normalised variance of J J^T at ``SIGMA0_2`` at every depth (:func:`isometry.residual_branch_scale`,
a ~ 1/sqrt(L)). Their law (:func:`isometry.residual_spectrum`) is compared with width-N random
networks; the nearest wrong prediction, the plain network of the same unit at the same depth, must be
rejected by the same tolerance (plain ReLU: normalised variance L whatever its initialisation).
"""

from __future__ import annotations

import numpy as np

from ..plotting import pyplot, save_figure
from ..plotting.residual import plot_residual_vs_plain, plot_universality
from ..residual import residual_branch_scale, residual_eigenvalues
from ..spectrum import jacobian_spectrum, q_star_for_variance
from ..spectrum.residual import residual_spectrum
from .core import Context, PartResult, check, single_threaded

SIGMA0_2 = 0.5  # the residual networks' normalised variance in the depth figure
KS_THRESHOLD = 0.05
UNIVERSAL_SIGMA0_2 = 1.0
UNIVERSAL_ACTIVATIONS = ("tanh", "relu", "erf")


def _ks(law, lam: np.ndarray) -> float:
    lam = np.sort(lam)
    emp = (np.arange(lam.size) + 0.5) / lam.size
    return float(np.max(np.abs(law.cdf(lam) - emp))) + 0.5 / lam.size


@single_threaded
def residual_part(ctx: Context) -> PartResult:
    """Residual against plain spectra along the depth (theory and simulation), and universality."""
    depths = ctx.pick([4, 16], [4, 16, 64])
    width = ctx.pick(200, 400)
    L_univ = ctx.pick(64, 256)
    checks, data = [], {}
    rows = []
    cases = [(act, L) for act in ("tanh", "relu") for L in depths]
    done = {}
    for act, L in ctx.track(cases, desc="residual", unit="panel"):
        a = residual_branch_scale(act, L, sigma0_2=SIGMA0_2)
        law = residual_spectrum(act, L, branch_scale=a)
        lam = residual_eigenvalues(act, L, width, branch_scale=a, seed=ctx.seed + 31 * L + (act == "relu"))
        if abs(law.mean_field.mean[-1]) > 1e-12:  # E[phi] != 0: the common-mode outlier is not part of the bulk law
            lam = lam[:-1]
        ks = _ks(law, lam)
        var_n = float(lam.var() / lam.mean() ** 2)
        if act == "relu":
            plain = jacobian_spectrum("relu", L, q_star=1.0)
        else:
            plain = jacobian_spectrum(act, L, q_star=q_star_for_variance(act, L, SIGMA0_2))
        plain_var = plain.var() / plain.mean() ** 2
        # finite width: the variance of a width-N network is off by O(L/N) of the law's (measured <= 12% at L/N = 0.16)
        tol_v = 0.1 * SIGMA0_2 + 0.5 * SIGMA0_2 * L / width
        checks.append(check(f"KS(theory, width-{width} simulation): residual {act}, L={L}, a={a:.3g}", 0.0, ks,
                            KS_THRESHOLD, rule=f"KS <= {KS_THRESHOLD}"))
        checks.append(check(f"normalised variance of residual {act}, L={L} (theory {SIGMA0_2} at every depth)",
                            SIGMA0_2, var_n, tol_v, rule="|measured - theory| <= 10% + 50% L/N of theory"))
        checks.append(check(f"mean eigenvalue of residual {act}, L={L}", law.mean(), float(lam.mean()),
                            0.03 + 0.5 / width, rel=True))
        rejects = abs(var_n - plain_var) > tol_v
        if act == "relu":
            checks.append(check(f"plain ReLU at L={L} (normalised variance {plain_var:.3g}) is rejected by the same "
                                "tolerance", plain_var, var_n, tol_v, passed=rejects,
                                rule="|measured - plain theory| > tolerance"))
        data[f"{act}-{L}"] = {"branch_scale": a, "ks": ks, "variance_normalised": var_n, "mean": float(lam.mean()),
                              "theory_mean": law.mean(), "plain_variance_normalised": plain_var,
                              "rejects_plain": bool(rejects)}
        done[act, L] = {"depth": L, "residual": law, "plain": plain, "samples": lam}
    for act in ("tanh", "relu"):
        rows.append({"activation": act, "weights": "orthogonal", "sigma0_2": SIGMA0_2,
                     "panels": [done[act, L] for L in depths]})
    fig = plot_residual_vs_plain(rows, width=width)
    path1 = save_figure(fig, ctx.figure_path("residual_vs_plain"))

    # universality: equal normalised variance, different units, a shallow and a deep network each
    laws, shallow = {}, {}
    x = np.linspace(0.05, 6.0, 240)
    for act in ctx.track(UNIVERSAL_ACTIVATIONS, desc="universality", unit="law"):
        for L, into in ((L_univ, laws), (4, shallow)):
            a = residual_branch_scale(act, L, sigma0_2=UNIVERSAL_SIGMA0_2)
            into[act] = residual_spectrum(act, L, branch_scale=a)
    limit = next(iter(laws.values())).limit
    cdfs = {k: law.cdf(x * law.mean()) for k, law in laws.items()}
    lim_cdf = limit.cdf(x)
    pair = max(float(np.max(np.abs(cdfs[p] - cdfs[q]))) for p in cdfs for q in cdfs)
    tol = 0.5 / L_univ  # the distance to the limit is O(1/L): measured 0.25/L at sigma0^2 = 1
    for k in cdfs:
        checks.append(check(f"sup|F - F_limit| of residual {k}, L={L_univ}, sigma0^2={UNIVERSAL_SIGMA0_2}", 0.0,
                            float(np.max(np.abs(cdfs[k] - lim_cdf))), tol, rule="measured <= 0.5 / L"))
    checks.append(check(f"largest sup|F_i - F_j| between {', '.join(laws)} at L={L_univ}", 0.0, pair, tol,
                        rule="measured <= 0.5 / L"))
    shallow_pair = max(float(np.max(np.abs(p.cdf(x * p.mean()) - q.cdf(x * q.mean()))))
                       for p in shallow.values() for q in shallow.values())
    checks.append(check(f"at L=4 the same units still differ: largest sup|F_i - F_j| > 0.5 / {L_univ}", tol,
                        shallow_pair, 0.0, passed=shallow_pair > tol, rule="measured > theory (the deep tolerance)"))
    data["universality"] = {"depth": L_univ, "pairwise": pair, "pairwise_depth_4": shallow_pair,
                            "branch_scales": {k: law.branch_scale for k, law in laws.items()}}
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.0), layout="constrained")
    plot_universality(shallow, limit, ax=axes[0])
    plot_universality(laws, limit, ax=axes[1])
    path2 = save_figure(fig, ctx.figure_path("residual_universality"))

    text = (
        "Residual networks x^{l+1} = x^l + a phi(W^l x^l) with orthogonal weights. Their Jacobian "
        "J = prod (I + a D W) has a law computed blockwise by free probability: each block I + a D W is a shifted "
        "R-diagonal element whose symmetrised singular values are the free convolution of those of a D W with +-1 "
        "(Haagerup & Larsen), and the blocks multiply by S-transforms. With a ~ 1/sqrt(L) (here the a giving "
        f"normalised variance {SIGMA0_2} at every depth) tanh and ReLU residual networks stay near isometry at every "
        "depth; plain critical ReLU networks cannot (normalised variance L whatever their initialisation, and half "
        "their singular values are 0), while plain tanh networks need a tuned q*. Lines: theory; histograms: one "
        f"random network of width {width} (for ReLU without its one outlier, the common-mode direction that "
        f"E[relu] > 0 creates). At large depth and equal normalised variance ({UNIVERSAL_SIGMA0_2}, L = {L_univ}) "
        "every activation gives the same law, the smooth universal law S(m) = exp(-sigma0^2 m) "
        "(Tarnowski et al. 2019).")
    captions = [
        "Columns: depth; rows: activation. Blue: residual network (line theory, histogram simulation); red "
        "dashed: the plain critical network at the same depth (tanh at the q* of the same variance, ReLU at q* = 1).",
        "Normalised singular-value densities of residual networks with different activations at equal normalised "
        f"variance, and the large-depth limit (grey): at L = 4 (left) the units still differ, at L = {L_univ} (right) "
        "the curves lie on top of each other."]
    return PartResult("residual", "Residual networks: isometry for any activation", text, [str(path1), str(path2)],
                      checks, data, captions=captions)
