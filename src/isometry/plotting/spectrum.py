"""Figures of spectrum laws (:class:`isometry.spectrum.Spectrum`): density of the continuous part,
atoms as markers labelled with their mass on a second axis (never as density spikes).

On a linear axis the density of s = sqrt(lambda) (or of lambda) is drawn. On a log axis the
density of log10 s (or log10 lambda) is drawn, which is what a reader sees as area on that
axis; laws whose values do not fit a double are drawn against log10 s on a linear axis.
"""

from __future__ import annotations

import math

import numpy as np

from . import finish, new_axes

__all__ = ["plot_spectrum", "is_heavy_tailed"]

_LN10 = math.log(10.0)
_LOG_RANGE = (-700.0, 700.0)  # log lambda where lambda (and sqrt) is comfortably a double
_WINDOW_DECADES = 30.0  # a log axis shows at most this many decades of a long thin tail


def is_heavy_tailed(spectrum, decades: float = 2.0) -> bool:
    """True when the continuous part spans more than ``decades`` decades of lambda between its 1%
    and 99% points (or the law needs log scale to be represented at all): a log axis shows it."""
    t_lo, t_hi = _bulk_range(spectrum, 0.01)
    if not (np.isfinite(t_lo) and np.isfinite(t_hi)):
        return True
    return (t_hi - t_lo) / _LN10 > decades or t_hi > _LOG_RANGE[1] or t_lo < _LOG_RANGE[0]


def _bulk_range(spectrum, tail: float) -> tuple[float, float]:
    """log lambda at the ``tail`` and 1 - ``tail`` points of the continuous part (atoms excluded)."""
    le = spectrum.log_eigenvalues
    z = spectrum.zero_mass
    cont = max(spectrum.continuous_mass, 0.0)
    if cont < 1e-9:
        ts = [t for t, m in le.atoms if np.isfinite(t)]
        return (min(ts), max(ts)) if ts else (-np.inf, -np.inf)
    p = np.array([z + tail * cont, z + (1.0 - tail) * cont])
    t = np.asarray(le.ppf(np.clip(p, 0.0, 1.0)), dtype=float)
    return float(t[0]), float(t[1])


def plot_spectrum(spectrum, ax=None, path=None, *, log: bool | None = None, singular_values: bool = True,
                  n: int = 600):
    """Draw ``spectrum`` into ``ax`` (or a new figure) and return the Figure (also written to ``path``).

    Args:
        log: log-scaled value axis; None chooses it when :func:`is_heavy_tailed` says so.
        singular_values: the law of s = sqrt(lambda) (True) or of lambda (False).
        n: points on the density curve.
    """
    fig, ax = new_axes(ax)
    if log is None:
        log = is_heavy_tailed(spectrum)
    sym = "s" if singular_values else r"\lambda"
    power = 0.5 if singular_values else 1.0  # value = lambda ** power
    t_top = spectrum.log_max_eigenvalue
    cut = 0.0  # continuous mass left of the drawn range
    if spectrum.continuous_mass > 1e-9:
        lo_t, hi_t = _bulk_range(spectrum, 1e-4)
        hi_t = max(hi_t, t_top)
        window = _WINDOW_DECADES * _LN10 / power
        if hi_t - lo_t > window and hi_t - _bulk_range(spectrum, 0.05)[0] < window:
            # a long thin lower tail (e.g. the universal Bernoulli law): draw the top decades, say what is left out
            lo_t = hi_t - window
            cut = float(spectrum.log_eigenvalues.cdf(lo_t)) - spectrum.zero_mass
    else:
        lo_t = hi_t = t_top
    representable = _LOG_RANGE[0] < lo_t and hi_t < _LOG_RANGE[1]
    atoms = spectrum.log_eigenvalues.atoms
    cont = spectrum.continuous_mass > 1e-9

    if log or not representable:
        # density of u = log10(value): g_t(t) dt/du with t = log lambda = u ln10 / power
        if cont:
            span = max(hi_t - lo_t, 1e-9 * max(1.0, abs(hi_t)))
            t = np.linspace(lo_t - 0.02 * span, hi_t, n)
            t = np.unique(np.concatenate([t, hi_t - span * np.geomspace(1e-6, 0.02, 40)]))
            dens = spectrum.log_eigenvalues.pdf(t) * _LN10 / power
            u = t * power / _LN10
            x = 10.0**u if representable else u
            ax.plot(x, dens, color="C0", lw=1.6, label="continuous part")
            ax.fill_between(x, dens, color="C0", alpha=0.15, lw=0)
        ax.set_ylabel(rf"density of $\log_{{10}} {sym}$")
        if representable:
            ax.set_xscale("log")
            ax.autoscale_view()
            _tidy_log_axis(ax.xaxis)
            ax.set_xlabel(rf"${sym}$" + (" (singular value of $J$)" if singular_values else r" (eigenvalue of $JJ^T$)"))
        else:
            ax.set_xlabel(rf"$\log_{{10}} {sym}$" + (" (singular values of $J$)" if singular_values
                                                     else r" (eigenvalues of $JJ^T$)"))
        to_x = (lambda tt: math.exp(tt * power)) if representable else (lambda tt: tt * power / _LN10)
    else:
        hi_v = math.exp(hi_t * power)
        if cont:
            x = np.linspace(0.0, hi_v * 1.04, n)
            x = np.unique(np.concatenate([x, hi_v * (1.0 - np.geomspace(1e-7, 0.02, 40))]))
            dens = spectrum.singular_values.pdf(x) if singular_values else spectrum.pdf(x)
            ax.plot(x, dens, color="C0", lw=1.6, label="continuous part")
            ax.fill_between(x, dens, color="C0", alpha=0.15, lw=0)
        ax.set_xlim(0.0, hi_v * 1.06 if hi_v > 0 else 1.0)
        ax.set_ylabel(rf"density $p({sym})$")
        ax.set_xlabel(rf"${sym}$" + (" (singular value of $J$)" if singular_values else r" (eigenvalue of $JJ^T$)"))
        to_x = lambda tt: math.exp(tt * power)  # noqa: E731
    ax.set_ylim(bottom=0.0)
    if cont:
        _clip_edge_singularity(ax, np.log10(x) if (log and representable) else x, dens, sym)
    if cut > 1e-4:
        ax.annotate(f"mass {cut:.2g} lies further left", xy=(0.0, 0.0), xycoords="axes fraction", xytext=(6, 8),
                    textcoords="offset points", fontsize=8, color="0.25")
    _draw_atoms(ax, atoms, to_x, log or not representable, sym, representable, power)
    ax.set_title(f"{spectrum._title()}\nlaw of the large-width limit $N\\to\\infty$ (free probability)", fontsize=9)
    if atoms:
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return finish(fig, path)


def _clip_edge_singularity(ax, pos, dens, sym: str) -> None:
    """An integrable singularity of the density at a band edge (e.g. ReLU, L = 2, orthogonal weights)
    would squash the rest of the curve: cap the y-axis above the rest and say that it diverges."""
    fin = np.isfinite(dens) & np.isfinite(pos)
    if fin.sum() < 20:
        return
    pos, dens = pos[fin], dens[fin]
    i = int(np.argmax(dens))
    span = float(pos.max() - pos.min())
    far = np.abs(pos - pos[i]) > 0.03 * span
    if not np.any(far):
        return
    rest = float(np.max(dens[far]))
    if dens[i] > 4.0 * rest and rest > 0:
        top = 1.6 * rest
        ax.set_ylim(0.0, top)
        x_edge = 10.0 ** pos[i] if ax.get_xscale() == "log" else pos[i]
        ax.annotate("density diverges at this edge\n(integrable; axis cut)", xy=(x_edge, top), xycoords="data",
                    xytext=(14, -6), textcoords="offset points", ha="left", va="top", fontsize=8,
                    arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 0.8})


def _tidy_log_axis(axis) -> None:
    """Major labels at decades (or 1-2-5 within a narrow range), no labels on minor ticks."""
    from matplotlib.ticker import FormatStrFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and hi / lo < 10.0:  # less than a decade: plain ticks, plainly labelled
        axis.set_major_locator(MaxNLocator(nbins=5))
        axis.set_major_formatter(FormatStrFormatter("%.3g"))
    elif lo > 0 and hi / lo < 100.0:  # up to two decades: 1, 2, 5 x 10^k, each labelled
        axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        axis.set_major_locator(LogLocator(base=10.0, numticks=8))
    axis.set_minor_formatter(NullFormatter())


def _draw_atoms(ax, atoms, to_x, log_axis: bool, sym: str, representable: bool, power: float) -> None:
    """Atoms as markers on a right-hand 'atom mass' axis, each labelled with its mass; on a log axis
    the atom at 0 (which has no place there) is stated in the legend."""
    from matplotlib.transforms import blended_transform_factory

    if not atoms:
        return
    twin = ax.twinx()
    twin.set_ylim(0.0, 1.1)
    twin.set_ylabel("atom mass", color="C3")
    twin.tick_params(axis="y", colors="C3")
    handles = []
    for t, m in atoms:
        if t == -math.inf:
            if log_axis:  # lambda = 0 has no place on a log axis: a marker on the left spine
                tr = blended_transform_factory(twin.transAxes, twin.transData)
                twin.plot([0.0], [m], marker="<", ls="none", color="C3", ms=8, transform=tr, clip_on=False)
                twin.annotate(f"{m:.3g} at ${sym}=0$", (0.0, m), xycoords=tr, xytext=(6, 4),
                              textcoords="offset points", color="C3", fontsize=8, annotation_clip=False)
                h = ax.plot([], [], marker="<", ls="none", color="C3", ms=7,
                            label=f"atom at ${sym} = 0$: mass {m:.3g}")[0]
                handles.append(h)
                continue
            x = 0.0
        else:
            x = to_x(t)
        twin.vlines([x], 0.0, m, colors="C3", lw=1.0, ls=":")
        twin.plot([x], [m], marker="D", ls="none", color="C3", ms=6, clip_on=False)
        twin.annotate(f"{m:.3g}", (x, m), xytext=(-6, 5), textcoords="offset points", ha="right", color="C3",
                      fontsize=8)
        where = "0" if x == 0.0 else (f"{x:.4g}" if representable else f"e^{{{t * power:.6g}}}")
        handles.append(ax.plot([], [], marker="D", ls="none", color="C3", ms=6,
                               label=f"atom at ${sym} = {where}$: mass {m:.3g}")[0])
    return
