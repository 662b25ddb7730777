"""The figures ``save_plots`` writes for each source of a visit, next to its products.

Per source, named from the stem of its products (`plan_products`):

* ``<stem>_nod.png``: each exposure's unrectified nod difference with the fitted
  trace (centre ± width), `nodcombine.plotting.save_nod_figure`;
* ``<stem>_s2d.png``: the rectified spectrum with the extraction profile and
  window, `nodcombine.plotting.save_s2d_figure`;
* ``<stem>_x1d.png``: the spectrum, its S/N per bin and path loss,
  `nodcombine.plotting.save_x1d_figure`.

Each title gives the trace fit's status and model (`nodcombine.plotting.fit_title`).
A figure that cannot be made costs a warning, never the products.
"""

import logging
import time
from pathlib import Path

import numpy as np
from stdatamodels.jwst.datamodels import dqflags

from nodcombine import plotting
from nodcombine.contract import NodSlitRecord, RectifyRecord, TraceFitRecord, TraceProfile
from nodcombine.extract_1d.optimal import default_half_width
from nodcombine.pipelines.products import per_source_products
from nodcombine.visit import group_by_source

__all__ = ["save_visit_figures"]

log = logging.getLogger(__name__)

_DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]


def save_visit_figures(plan, trace, s2d, x1d, output_dir, *, window=None, x1d_suffix="x1d"):
    """Write the figures of every source of a visit.

    Parameters
    ----------
    plan : list of PlannedSource
        The visit's sources and the stems of their products.
    trace : ModelContainer
        The ``trace_fit`` product: nod differences with the fitted trace.
    s2d : MultiSlitModel
        The rectified slits.
    x1d : MultiSpecModel
        The spectra.
    output_dir : str or os.PathLike
        Where the PNGs go.
    window : float or None, optional
        ``optimal_extract_1d``'s ``window`` parameter (None: its default).
    x1d_suffix : str, optional
        The spectra's suffix; for box spectra (``box_x1d``) the figures are
        ``<stem>_box_*.png``, so they never replace the optimal run's.

    Returns
    -------
    list of pathlib.Path
        The figures written.
    """
    start = time.perf_counter()
    groups, _ = group_by_source(trace)
    try:
        products = dict(per_source_products(plan, s2d, x1d, x1d_suffix=x1d_suffix))
    except ValueError as err:  # a rectified slit of no planned source: nod figures only
        log.warning("no figures of the rectified slits: %s", err)
        products = {}
    written = []
    for planned in plan:
        group = next((g for g in groups if planned.members & {r.label for r in g.members}), None)
        members = group.members if group is not None else []
        records = (TraceFitRecord.from_tree(ref.slit.instance) for ref in members)
        record = next(filter(None, records), None)
        title, detected = plotting.fit_title(f"{planned.stem}   ({planned.label})", record)
        s2d_model, x1d_model = (products.get(f"{planned.stem}_{k}") for k in ("s2d", x1d_suffix))
        figures = {
            "nod": _nod_figure(members, title, detected),
            "s2d": _s2d_figure(s2d_model, x1d_model, title, detected, window),
            "x1d": _x1d_figure(x1d_model, title, detected),
        }
        for kind, draw in figures.items():
            tag = "" if x1d_suffix == "x1d" else "box_"
            path = Path(output_dir) / f"{planned.stem}_{tag}{kind}.png"
            if draw is not None and _saved(draw, path, planned.label):
                written.append(path)
    seconds = time.perf_counter() - start
    log.info("%d figures of %d sources in %s, %.1f s", len(written), len(plan), output_dir, seconds)
    return written


def _saved(draw, path, label):
    try:
        draw(path)
    except Exception as err:  # a full disk, a degenerate image: never the products
        log.warning("%s: no figure %s (%s: %s)", label, path.name, type(err).__name__, err)
        return False
    log.debug("%s: figure %s", label, path)
    return True


def _nod_figure(members, title, detected):
    """The nod figure's drawing function, or None if no slit holds a difference."""
    differenced = [r for r in members if NodSlitRecord.from_tree(r.slit.instance).differenced]
    panels = [_nod_panel(ref) for ref in differenced]
    if not panels:
        return None
    unit = _unit(members[0].slit, members[0].model)
    return lambda path: plotting.save_nod_figure(panels, path, title, unit=unit, detected=detected)


def _nod_panel(ref):
    """One exposure's difference, dispersion along x (MIRI LRS cutouts are transposed)."""
    data = np.asarray(ref.slit.data, dtype=float)
    dq = np.asarray(ref.slit.dq) if ref.slit.dq is not None else np.zeros(data.shape, int)
    data = np.where(dq & _DO_NOT_USE, np.nan, data)
    if ref.dispersion_is_vertical:
        data = data.T
    profile = TraceProfile.from_tree(ref.slit.instance)
    position = NodSlitRecord.from_tree(ref.slit.instance).position
    label = f"{ref.filename} [slit {ref.slit_name}], nod position {position}"
    if profile is None:
        return plotting.NodPanel(label, data)
    return plotting.NodPanel(label, data, profile.centre_rows, profile.sigma)


def _s2d_figure(model, spectra, title, detected, window):
    if model is None:
        return None
    slit = model.slits[0]
    extent = _extraction_window(slit, spectra.spec[0] if spectra is not None else None, window)
    unit = _unit(slit, model)
    return lambda path: plotting.save_s2d_figure(
        slit, path, title, window=extent, unit=unit, detected=detected
    )


def _x1d_figure(model, title, detected):
    if model is None:
        return None
    return lambda path: plotting.save_x1d_figure(model.spec[0], path, title, detected=detected)


def _extraction_window(slit, spec, window):
    """Lowest and highest offset from the source the extraction used, pixels.

    A box aperture is recorded in the spectrum (``extraction_ystart/ystop``,
    1-based rows); the optimal window is not, and is the step's: ``window``, or
    half the nod separation (`default_half_width`).
    """
    record = RectifyRecord.from_tree(slit.instance)
    offset0 = record.offset0_pix if record is not None else -(slit.data.shape[0] - 1) / 2.0
    start = getattr(spec, "extraction_ystart", None) if spec is not None else None
    stop = getattr(spec, "extraction_ystop", None) if spec is not None else None
    if start is not None and stop is not None:
        return offset0 + start - 1.0, offset0 + stop - 1.0
    separation = record.nod_separation_pix if record is not None else np.inf
    half = window or default_half_width(separation)
    return -half, half


def _unit(slit, model):
    """The data's unit: the slit's own, else the product's."""
    for node in (slit, model):
        meta = getattr(node, "meta", None)
        unit = getattr(meta, "bunit_data", None) if meta is not None else None
        if unit:
            return str(unit)
    return ""
