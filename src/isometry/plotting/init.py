"""Figures of initialisation reports (:class:`isometry.torch.InitReport`).

:func:`plot_init_report` draws the predicted law of the singular values s = sqrt(lambda) of the
Jacobian of the critical stack with the spectrum's own drawing (:meth:`isometry.spectrum.Spectrum.plot`:
the density of the continuous part, atoms as markers at their mass on a second axis, a log10 s
axis for laws spanning many decades) and titles it with what the report describes: the
activation, depth L, width N, weight law, q*, the predicted variance of the eigenvalues of
J J^T and the largest singular value.
"""

from __future__ import annotations

import math

from . import finish

__all__ = ["plot_init_report"]


def plot_init_report(report, ax=None, path=None):
    """Draw ``report.spectrum()`` as a singular-value law; returns the Figure (written to ``path``).

    Example:
        >>> from isometry.torch import critical_init_, mlp
        >>> fig = critical_init_(mlp(50, 8, "erf"), generator=0).plot()
        >>> fig.axes[0].get_title().splitlines()[0]
        'erf, depth L = 50, width N = 8, orthogonal weights'
    """
    fig = report.spectrum().plot(ax=ax)
    main = ax if ax is not None else fig.axes[0]
    width = "" if report.width is None else f", width N = {report.width}"
    top = report.predicted_max_singular_value
    edge = f", largest singular value {top:.4g}" if math.isfinite(top) else ""
    # residual bodies have no fixed point q*: their law is set by the branch scale a
    where = (f"q* = {report.q_star:.3g}" if math.isfinite(report.q_star)
             else f"branch scale a = {report.branch_scale:.3g}")
    main.set_title(
        f"{report.activation}, depth L = {report.depth}{width}, {report.weights} weights\n"
        f"{where}: predicted $\\sigma^2_{{JJ^T}}$ = {report.predicted_variance:.3g}{edge}",
        fontsize=9,
    )
    return finish(fig, path)
