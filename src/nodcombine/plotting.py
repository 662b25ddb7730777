"""Diagnostic figures (matplotlib is imported only when a figure is made).

Figures are drawn on `matplotlib.figure.Figure` objects, not through pyplot:
no backend is chosen (a caller's interactive session is left alone) and no
figure is left open in a global registry.
"""

import numpy as np

from nodcombine.contract import RectifyRecord
from nodcombine.rectify.nearest_bin import bin_edges
from nodcombine.trace_fit.tracemodel import rows_at

__all__ = ["save_spectrum_figure", "save_trace_fit_figure"]

_BIN = 0.25  # pixels per bin of the collapsed profile


def _figure(**kwargs):
    """A new figure that belongs to no backend's window list."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_trace_fit_figure(source, solution, path, title=""):
    """Nod differences with the fitted trace, and the collapsed profile with residuals.

    One row per exposure: left, the difference on the common grid with the
    fitted centre of its own (positive) image; right, the profile in bins of the
    along-slit coordinate, each column weighted by its fitted flux
    (``Σ D A w / Σ A² w``), against the model (positive and negative images).

    Parameters
    ----------
    source : nodcombine.nodsource.NodSource
        The nod differences on their grid (kernel orientation), each exposure's
        own variance (the weights of the collapsed profile) and every pixel's
        along-slit coordinate from the predicted source position.
    solution : TraceSolution
        The fit.
    path : str or pathlib.Path
        PNG to write.
    title : str, optional
        Figure title.
    """
    data, variance, along = source.stack.data, source.own_variance, source.along
    n_exp = data.shape[0]
    fig = _figure(figsize=(11, 2.2 * n_exp))
    axes = fig.subplots(n_exp, 2, squeeze=False, width_ratios=(3, 1))
    for e in range(n_exp):
        _image_panel(axes[e, 0], data[e], along[e], solution.centre[e], e)
        _profile_panel(axes[e, 1], data[e], variance[e], along[e], solution, e)
    fig.suptitle(f"{title}  {solution.status}: {solution.message}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _image_panel(ax, diff, along, centre, e):
    finite = diff[np.isfinite(diff)]
    limit = np.percentile(np.abs(finite), 99) if finite.size else 1.0
    ax.imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.plot(rows_at(along, centre), color="k", lw=0.8)
    ax.set_ylabel(f"exp {e}: row")


def _profile_panel(ax, diff, variance, along, solution, e):
    """Profile estimate per along-slit bin: Σ D A w / Σ A² w over the columns."""
    amplitude = np.nan_to_num(solution.amplitudes[e])[None, :]
    weight = np.where(np.isfinite(variance) & (variance > 0), 1.0 / variance, 0.0)
    good = np.isfinite(diff) & np.isfinite(along) & np.isfinite(solution.model[e]) & (weight > 0)
    if not good.any() or not np.any(amplitude):
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    bins = np.round(along[good] / _BIN).astype(int)
    a, w = np.broadcast_to(amplitude, diff.shape)[good], weight[good]
    norm = np.bincount(bins - bins.min(), a * a * w)
    keep = norm > 0
    centres = (np.arange(norm.size) + bins.min())[keep] * _BIN
    data = np.bincount(bins - bins.min(), diff[good] * a * w)[keep] / norm[keep]
    model = np.bincount(bins - bins.min(), solution.model[e][good] * a * w)[keep] / norm[keep]
    ax.plot(centres, data, ".", ms=3, label="data")
    ax.plot(centres, model, "-", lw=1, label="model")
    ax.plot(centres, data - model, "-", lw=0.6, label="residual")
    ax.set_xlabel("pixels from predicted position")
    ax.legend(fontsize=6)


def save_spectrum_figure(slit, spec, path, title):
    """The rectified 2-D spectrum of one source above its 1-D spectrum with errors.

    Parameters
    ----------
    slit : SlitModel
        A rectified slit (``_s2d``).
    spec : SpecModel
        Its extracted spectrum (``_x1d``).
    path : str or pathlib.Path
        PNG to write.
    title : str
        Figure title.
    """
    table = spec.spec_table
    wave = np.asarray(table["WAVELENGTH"], dtype=float)
    data = np.asarray(slit.data, dtype=float)
    finite = data[np.isfinite(data)]
    scale = np.percentile(np.abs(finite), 99) if finite.size else 1.0
    fig = _figure(figsize=(9, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.6))
    record = RectifyRecord.from_tree(slit.instance)
    offset0 = record.offset0_pix if record is not None else -(data.shape[0] - 1) / 2.0
    rows = offset0 - 0.5 + np.arange(data.shape[0] + 1)
    # the PRISM grid is not uniform: draw each bin between its edges
    top.pcolormesh(bin_edges(wave), rows, data, cmap="RdBu_r", vmin=-scale, vmax=scale)
    top.set_ylabel("offset (pixels)")
    top.set_title(title)
    flux = np.asarray(table["FLUX"], dtype=float) * 1e6
    error = np.asarray(table["FLUX_ERROR"], dtype=float) * 1e6
    bottom.fill_between(wave, flux - error, flux + error, step="mid", color="0.75", lw=0)
    bottom.step(wave, flux, where="mid", color="k", lw=0.8)
    bottom.axhline(0.0, color="0.5", lw=0.5)
    bottom.set_xlabel("wavelength (µm)")
    bottom.set_ylabel("flux (µJy)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
