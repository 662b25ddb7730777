"""Diagnostic figures (matplotlib is imported only when a figure is made).

Figures are drawn on `matplotlib.figure.Figure` objects, not through pyplot:
no backend is chosen (a caller's interactive session is left alone) and no
figure is left open in a global registry.

A source whose centre the trace fit did not measure is drawn in grey under a
title that says so (`fit_title`): an empty slit must not look like a detection.
"""

from dataclasses import dataclass

import numpy as np

from nodcombine.contract import ExtractionExtras, RectifyRecord
from nodcombine.rectify.nearest_bin import bin_edges
from nodcombine.trace_fit.tracemodel import rows_at

__all__ = [
    "NodPanel",
    "fit_title",
    "require_matplotlib",
    "save_nod_figure",
    "save_s2d_figure",
    "save_spectrum_figure",
    "save_trace_fit_figure",
    "save_x1d_figure",
    "trace_fit_figure_name",
]

_BIN = 0.25  # pixels per bin of the collapsed profile
_GREY = "0.45"  # lines and titles of sources that are not detections
_ACCENT = {True: "C2", False: _GREY}  # profile and trace: green only for a detection
_DPI = 100


def require_matplotlib():
    """Raise `ImportError` with the remedy if matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "figures need matplotlib, which is not installed: "
            "pip install 'nodcombine[plots]' (or matplotlib)"
        ) from err


def _figure(**kwargs):
    """A new figure that belongs to no backend's window list."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _framed(width, height, *, hspace=0.25, wspace=0.04, right=0.2):
    """A figure with fixed margins (inches; ``right`` holds a colour bar's labels)."""
    # a layout engine would draw each figure twice: half its cost, for nothing here
    fig = _figure(figsize=(width, height))
    fig.subplots_adjust(
        left=0.8 / width,
        right=1.0 - right / width,
        bottom=0.55 / height,
        top=1.0 - 0.75 / height,
        hspace=hspace,
        wspace=wspace,
    )
    return fig


def fit_title(source, record):
    """A figure title: the source, and what the trace fit found, in words.

    Parameters
    ----------
    source : str
        The source, first line of the title.
    record : TraceFitRecord or None
        Its trace fit.

    Returns
    -------
    title : str
        Two lines; a source whose centre was not measured says ``NOT DETECTED``
        (or why there is no fit) before anything else.
    detected : bool
        Whether the fit measured the source (status ``FIT`` with a fitted
        centre); figures of other sources are grey.
    """
    if record is None:
        return f"{source}\nNO TRACE FIT: no profile", False
    status, message = str(record.status), record.message or ""
    if status == "FIT" and (record.degree is None or record.degree >= 0):
        width = record.source_sigma_arcsec
        extra = f'; source σ {width:.3f}"' if width is not None else ""
        if record.chi2 is not None and record.dof:
            extra += f", χ²/dof {record.chi2 / record.dof:.2f}"
        return f"{source}\nFIT {message}{extra}", True
    if status == "FIT":  # below min_snr: centre predicted, width held by its prior
        snr = f" (S/N {record.snr:.1f})" if record.snr is not None else ""
        return f"{source}\nNOT DETECTED{snr}: predicted position, width from prior", False
    if status == "FALLBACK":
        return f"{source}\nNOT FITTED (fallback): {message}", False
    if status == "FORCED":
        return f"{source}\nNOT FITTED HERE: {message}", False
    return f"{source}\n{status}: {message}".rstrip(": "), False


def trace_fit_figure_name(exposure_stem, key):
    """File name of ``trace_fit``'s diagnostic figure of one source (a `SourceKey`).

    The source's first exposure (``exposure_stem``: no extension or suffix),
    slit and id: unique in a visit and between visits sharing an output folder
    (program, observation and visit numbers alone repeat).
    """
    name = f"{exposure_stem}_slit{key.slit}_source{key.source}_trace_fit.png"
    return name.replace("/", "-").replace(" ", "-")


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


def _limit(image):
    """Half the range of a symmetric colour scale: the 99th percentile of ``|image|``."""
    finite = np.abs(image[np.isfinite(image)])
    limit = float(np.percentile(finite, 99)) if finite.size else 0.0
    return limit if limit > 0 else 1.0


def _image_panel(ax, diff, along, centre, e):
    limit = _limit(diff)
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


@dataclass(frozen=True)
class NodPanel:
    """One exposure's nod difference and the fitted trace of its positive image.

    Attributes
    ----------
    label : str
        The exposure (file name, nod position).
    data : numpy.ndarray, shape (n_along, n_disp)
        The difference cutout, dispersion along x; NaN where masked.
    centre, sigma : numpy.ndarray or None, shape (n_disp,)
        Fitted centre (fractional row) and total width (pixels); None: no fit.
    """

    label: str
    data: np.ndarray
    centre: np.ndarray | None = None
    sigma: np.ndarray | None = None


def save_nod_figure(panels, path, title, *, unit="", detected=True):
    """Each exposure's unrectified nod difference with the fitted trace (centre ± width).

    Parameters
    ----------
    panels : list of NodPanel
        One per exposure.
    path, title : str or pathlib.Path, str
        PNG to write; its title (`fit_title`).
    unit, detected : str, bool, optional
        The data's unit (colour bar); False: grey (the trace is only the predicted one).
    """
    fig = _framed(10, 1.3 + 1.7 * len(panels), hspace=0.35, right=0.9)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    limit = max(_limit(p.data) for p in panels)
    cmap, line = ("RdBu_r", "k") if detected else ("gray", "orange")
    for ax, panel in zip(axes, panels, strict=True):
        image = ax.imshow(
            panel.data, origin="lower", aspect="auto", cmap=cmap, vmin=-limit, vmax=limit
        )
        if panel.centre is not None:
            x = np.arange(panel.centre.size)
            ax.plot(x, panel.centre, color=line, lw=0.8, label="fitted centre")
            for sign in (-1, 1):
                ax.plot(x, panel.centre + sign * panel.sigma, color=line, lw=0.6, ls="--")
        ax.set_title(panel.label, fontsize=8, loc="left")
        ax.set_ylabel("row")
    axes[-1].set_xlabel("dispersion pixel (unrectified cutout); dashed: centre ± σ")
    _colour_bar(fig, image, list(axes), unit)
    _finish(fig, path, title, detected)


def save_s2d_figure(slit, path, title, *, window, unit="", detected=True):
    """The rectified 2-D spectrum, its extraction profile and window, and the collapsed profile.

    Parameters
    ----------
    slit : SlitModel or ObjectNode
        A rectified slit of ``rectify`` (with its `RectifyRecord`).
    path, title : str or pathlib.Path, str
        PNG to write; its title (`fit_title`).
    window : tuple of float
        Lowest and highest offset (pixels from the source) the extraction used.
    unit, detected : str, bool, optional
        The data's unit (colour bar); False: grey colour map and lines.
    """
    record = RectifyRecord.from_tree(slit.instance)
    data = np.asarray(slit.data, dtype=float)
    fig = _framed(11, 4.4, wspace=0.17)
    image_ax, side = fig.subplots(1, 2, sharey=True, width_ratios=(5, 1))
    if record is not None:
        wave = record.wavelength_grid_um
    else:  # a stock _s2d: its columns' mean wavelength
        wave = np.nanmean(np.asarray(slit.wavelength, dtype=float), axis=0)
    image = _s2d_panel(image_ax, data, wave, record, detected=detected)
    line, accent = ("k", "C2") if detected else (_GREY, _GREY)
    for edge in window:
        for ax in (image_ax, side):
            ax.axhline(edge, color=line, ls="--", lw=0.8)
    image_ax.set_title(
        "green: trace (dotted) and profile core FWHM; dashed: extraction window",
        fontsize=8,
        loc="left",
    )
    image_ax.set_xlabel("wavelength (µm)")
    image_ax.set_ylabel("offset from the trace (pixels)")
    _colour_bar(fig, image, image_ax, unit)
    if record is not None:
        # the profile's collapse, scaled to the data's by least squares
        good = np.isfinite(data) & np.isfinite(record.profile)
        collapsed = np.where(good, data, 0.0).sum(axis=1)
        model = np.where(good, record.profile, 0.0).sum(axis=1)
        scale = (collapsed @ model) / (model @ model) if np.any(model) else 0.0
        side.step(collapsed, record.offsets, where="mid", color=line, lw=0.8, label="data")
        side.plot(scale * model, record.offsets, color=accent, lw=1.2, label="profile")
        side.legend(fontsize=7, loc="upper right")
    side.axhspan(*window, color=accent, alpha=0.12, lw=0)
    side.set_xlabel("sum over λ")
    _finish(fig, path, title, detected)


def _s2d_panel(ax, data, wave, record, *, detected):
    """The rectified image between its bins' edges, with the trace and the profile's FWHM."""
    n_off = data.shape[0]
    offsets = record.offsets if record is not None else np.arange(n_off) - (n_off - 1) / 2.0
    limit = _limit(data)
    accent = _ACCENT[bool(detected)]
    # the PRISM grid is not uniform: each bin is drawn between its edges
    image = ax.pcolormesh(
        bin_edges(wave),
        np.append(offsets - 0.5, offsets[-1] + 0.5),
        data,
        cmap="RdBu_r" if detected else "gray",
        vmin=-limit,
        vmax=limit,
    )
    if record is not None and record.pixel_scale_arcsec > 0:
        # the core's FWHM per bin (contours of the profile itself wander with its masked bins)
        half = np.sqrt(2.0 * np.log(2.0)) * record.sigma_arcsec / record.pixel_scale_arcsec
        ax.plot(record.wavelength_grid_um, np.outer(half, (-1, 1)), color=accent, lw=0.9)
    ax.axhline(0.0, color=accent, lw=0.5, ls=":")
    return image


def save_x1d_figure(spec, path, title, *, detected=True):
    """The 1-D spectrum with its error band, the S/N per bin and the path-loss curve.

    Parameters
    ----------
    spec : SpecModel or ObjectNode
        A spectrum of ``optimal_extract_1d`` (``FLUX`` in Jy, its extras).
    path, title : str or pathlib.Path, str
        PNG to write; its title (`fit_title`).
    detected : bool, optional
        False: grey lines.
    """
    table = spec.spec_table
    wave = np.asarray(table["WAVELENGTH"], dtype=float)
    flux, error = (np.asarray(table[c], dtype=float) for c in ("FLUX", "FLUX_ERROR"))
    fig = _framed(10, 6.5, hspace=0.08)
    top, middle, bottom = fig.subplots(3, 1, sharex=True, height_ratios=(2, 1, 1))
    _flux_panel(top, wave, flux, error, detected=detected)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(error > 0, flux / error, np.nan)
    middle.step(wave, snr, where="mid", color="k" if detected else _GREY, lw=0.7)
    for level in (0.0, 3.0):
        middle.axhline(level, color="0.6", lw=0.5, ls="-" if level == 0 else ":")
    middle.set_ylabel("S/N per bin")
    middle.text(0.01, 0.85, f"median {np.nanmedian(snr):.1f}", transform=middle.transAxes)
    _pathloss_panel(bottom, wave, ExtractionExtras.from_tree(spec.instance))
    bottom.set_xlabel("wavelength (µm)")
    _finish(fig, path, title, detected)


def _flux_panel(ax, wave, flux, error, *, detected):
    flux, error = flux * 1e6, error * 1e6  # Jy to µJy
    band, line = ("C0", "k") if detected else ("0.8", _GREY)
    ax.fill_between(wave, flux - error, flux + error, step="mid", color=band, alpha=0.4, lw=0)
    ax.step(wave, flux, where="mid", color=line, lw=0.8)
    ax.axhline(0.0, color="0.5", lw=0.5)
    ax.set_ylabel("flux (µJy); band: ±1σ")


def _pathloss_panel(ax, wave, extras):
    if extras is None or extras.pathloss is None:
        ax.text(0.5, 0.5, "no path-loss correction", ha="center", transform=ax.transAxes)
        return
    applied = "applied: FLUX divided by it" if extras.pathloss_applied else "not applied"
    ax.plot(wave, extras.pathloss, color="C3", label=f"path loss ({applied})")
    if extras.in_slit_fraction is not None:
        ax.plot(wave, extras.in_slit_fraction, color="C1", ls="--", label="in-slit fraction")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7, loc="lower right")


def _colour_bar(fig, image, axes, unit):
    label = f"nod difference ({unit})" if unit else "nod difference"
    fig.colorbar(image, ax=axes, label=label, fraction=0.04, pad=0.015)


def _finish(fig, path, title, detected):
    colour = "k" if detected else _GREY
    fig.suptitle(title, fontsize=9, color=colour, ha="left", va="top", x=0.01, y=0.99)
    fig.savefig(path, dpi=_DPI)


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
    flux, error = (np.asarray(table[c], dtype=float) for c in ("FLUX", "FLUX_ERROR"))
    fig = _framed(9, 5.5, hspace=0.08)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1.6))
    record = RectifyRecord.from_tree(slit.instance)
    _s2d_panel(top, np.asarray(slit.data, dtype=float), wave, record, detected=True)
    top.set_ylabel("offset (pixels)")
    top.set_title(title)
    _flux_panel(bottom, wave, flux, error, detected=True)
    bottom.set_xlabel("wavelength (µm)")
    fig.savefig(path, dpi=110)
