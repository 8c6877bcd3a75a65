"""Matplotlib figures for every result object (imported lazily; Agg backend when there is no display).

Result objects hold data; the functions here draw them. Every drawing function takes ``ax=None``
(draw into this Axes; a new Figure otherwise) and ``path=None`` (also write the figure there,
atomically) and returns the matplotlib ``Figure``. One module per area: :mod:`.meanfield`
(phase diagrams), :mod:`.spectrum` (theory laws), :mod:`.empirical` (theory vs simulation),
:mod:`.init` (initialisation reports), :mod:`.experiments` (training experiments).
"""

from __future__ import annotations

import os

__all__ = ["pyplot", "new_axes", "finish", "save_figure"]


def pyplot():
    """``matplotlib.pyplot``, switched to the Agg backend when there is no display."""
    import matplotlib

    if not os.environ.get("DISPLAY") and matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_axes(ax=None, figsize=(5.5, 4.0)):
    """(fig, ax): ``ax`` and its figure, or a new constrained-layout figure with one Axes."""
    if ax is not None:
        return ax.figure, ax
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def save_figure(fig, path: str | os.PathLike, dpi: int = 130, *, close: bool = True) -> str:
    """Write ``fig`` to ``path`` atomically (format from the suffix, PNG by default) and close it
    (unless ``close=False``: figures drawn for a file should not pile up in pyplot's registry)."""
    from .._io import atomic_write

    path = os.fspath(path)
    fmt = os.path.splitext(path)[1][1:].lower() or "png"
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi, bbox_inches="tight"))
    finally:
        if close:
            pyplot().close(fig)


def finish(fig, path: str | os.PathLike | None = None):
    """Save ``fig`` to ``path`` when given (kept open, since the caller gets it back). Returns ``fig``."""
    if path is not None:
        save_figure(fig, path, close=False)
    return fig


# compatibility name used inside the package while modules move to the helpers above
_plt = pyplot
