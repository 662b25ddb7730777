"""One slit's exposures: the nodded source on the sky, detector noise and defects.

Noise is drawn in electrons and returned in MJy/sr with the true variances as
``var_poisson``, ``var_rnoise`` and ``var_flat``; cosmic rays and snowballs are
added unflagged, hot pixels flagged, as a ``calwebb_spec2`` product has them.
"""

from dataclasses import dataclass

import numpy as np
from stdatamodels.jwst.datamodels import dqflags

from nodcombine.simulate.cutouts import cut_out
from nodcombine.simulate.window import build_window

__all__ = ["Exposure", "expose", "inject_cosmic_rays", "noisy_exposure", "simulate_slit"]

_DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]
_NON_SCIENCE = dqflags.pixel["NON_SCIENCE"]
_FAILED_OPEN = dqflags.pixel["MSA_FAILED_OPEN"]


@dataclass(frozen=True)
class Exposure:
    """One exposure of a slit on its window, before cutting out.

    Attributes
    ----------
    offset : float
        Along-slit nod offset, arcsec.
    arrays : dict of str to numpy.ndarray
        ``data``, ``var_poisson``, ``var_rnoise``, ``var_flat``, ``err``, ``dq``,
        and the truth's ``cr`` (hit mask) and ``cr_signal`` (their signal).
    source_row : numpy.ndarray
        True source centre row in each window column.
    column_flux : numpy.ndarray
        Source signal summed over the slit in each column, before slit loss.
    """

    offset: float
    arrays: dict
    source_row: np.ndarray
    column_flux: np.ndarray


def inject_cosmic_rays(shape, fraction, n_snowballs, rng):
    """Pixels hit by cosmic rays and snowballs, and their amplitude.

    Parameters
    ----------
    shape : tuple of int
        Window shape.
    fraction : float
        Fraction of pixels hit by cosmic rays.
    n_snowballs : int
        Snowballs to add.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    hits : numpy.ndarray of bool
        Pixels hit.
    amplitude : numpy.ndarray
        Signal of each hit in units of the pixel's noise (0 elsewhere).
    """
    hits = rng.random(shape) < fraction
    # cosmic rays leave a hit pixel plus, sometimes, a neighbour along a short track
    extra = np.roll(hits & (rng.random(shape) < 0.3), 1, axis=int(rng.integers(0, 2)))
    hits = hits | extra
    amplitude = np.where(hits, np.exp(rng.uniform(np.log(10.0), np.log(500.0), shape)), 0.0)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n_snowballs):
        r0, c0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radius = rng.uniform(2.0, 4.0)
        disc = (rows - r0) ** 2 + (cols - c0) ** 2 <= radius**2
        hits |= disc
        amplitude = np.where(disc, np.maximum(amplitude, 60.0), amplitude)
    return hits, amplitude


def _flag(window, shape, rng):
    """DQ of an exposure: the slit's outside, and random hot pixels inside it."""
    dq = np.zeros(shape, dtype=np.uint32)
    dq[~window.illuminated] = _DO_NOT_USE | _NON_SCIENCE
    hot = (rng.random(shape) < 1e-3) & window.illuminated
    dq[hot] |= _DO_NOT_USE | dqflags.pixel["HOT"]
    return dq


def noisy_exposure(mode, scene, window, options, rng):
    """Detector-level noise and defects on a scene, returned bar-shadow corrected.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    scene : numpy.ndarray
        Expected surface brightness, MJy/sr.
    window : SlitWindow
        The slit (its bar shadow and open region).
    options : VisitOptions
        ``noise``, ``cosmic_ray_fraction`` and ``n_snowballs`` are used.
    rng : numpy.random.Generator
        Random generator: photon, read and flat noise (with ``noise``), cosmic
        rays, then hot pixels, in that order.

    Returns
    -------
    dict of str to numpy.ndarray
        See `Exposure.arrays`; bad pixels are NaN in the float arrays.
    """
    gain = mode.exposure_time / mode.conversion * window.bar  # electrons per MJy/sr
    electrons = np.maximum(scene, 0.0) * gain
    var_poisson = electrons / gain**2
    var_rnoise = mode.read_noise**2 / gain**2
    var_flat = (0.003 * scene) ** 2
    data = scene.copy()
    if options.noise:
        counts = rng.poisson(electrons) - electrons + rng.normal(0.0, mode.read_noise, scene.shape)
        data = data + counts / gain + rng.normal(0.0, 1.0, scene.shape) * np.sqrt(var_flat)
    hits, excess = inject_cosmic_rays(
        scene.shape, options.cosmic_ray_fraction, options.n_snowballs, rng
    )
    hits &= window.illuminated
    cr_signal = np.where(hits, excess * np.sqrt(var_poisson + var_rnoise), 0.0)
    data = data + cr_signal
    dq = _flag(window, scene.shape, rng)
    bad = dq & _DO_NOT_USE > 0
    out = {
        "data": data,
        "var_poisson": var_poisson,
        "var_rnoise": var_rnoise + 0 * data,
        "var_flat": var_flat,
    }
    out = {key: np.where(bad, np.nan, val).astype(np.float32) for key, val in out.items()}
    out["err"] = np.sqrt(out["var_poisson"] + out["var_rnoise"] + out["var_flat"])
    out["dq"] = dq
    out["cr"] = hits & ~bad
    out["cr_signal"] = np.where(hits & ~bad, cr_signal, 0.0)
    return out


def expose(mode, window, options, offset, rng):
    """Simulate one exposure of a slit at nod offset ``offset``.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    window : SlitWindow
        The slit.
    options : VisitOptions
        Options of the visit.
    offset : float
        Along-slit nod offset, arcsec.
    rng : numpy.random.Generator
        Random generator (a failed-open leak's brightness, then the noise).

    Returns
    -------
    Exposure
        The exposure on the slit's window.
    """
    src_row = window.source_row(mode, offset)
    profile = window.shape.pixel_fractions(window.rows, src_row[None, :])
    source = window.amplitude * (window.spectrum * window.kept)[None, :] * profile
    scene = np.where(window.light, window.sky + source, 0.0)
    band = window.failed_band
    if band is not None:
        # a failed-open shutter's light: a broad hump of a random brightness
        hump = np.exp(-0.5 * ((window.wave - window.wave.mean()) / 1.0) ** 2)
        leak = rng.uniform(0.5, 3.0) * window.sky_red * hump
        scene[band[0] : band[1]] += leak[None, :]
    arrays = noisy_exposure(mode, scene, window, options, rng)
    if band is not None:
        arrays["dq"][band[0] + 1 : band[1] - 1] |= _FAILED_OPEN
    lit_profile = np.where(window.light, profile, 0).sum(axis=0)
    column_flux = window.amplitude * window.spectrum * lit_profile
    return Exposure(offset=offset, arrays=arrays, source_row=src_row, column_flux=column_flux)


def simulate_slit(mode, source, options, offsets, rng):
    """Every exposure of one slit, cut out, with its WCS and truth.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    source : SlitSource
        The slit's source and defects.
    options : VisitOptions
        Options of the visit.
    offsets : numpy.ndarray
        Along-slit nod offset of each exposure, arcsec.
    rng : numpy.random.Generator
        Random generator; all of this slit's draws are made here, before the
        next slit's.

    Returns
    -------
    list of SlitCutout
        One per exposure, in exposure order.
    """
    window = build_window(mode, source, options, len(offsets), rng)
    return [
        cut_out(mode, window, options, expose(mode, window, options, offset, rng), cutout)
        for offset, cutout in zip(offsets, window.cutouts, strict=True)
    ]
