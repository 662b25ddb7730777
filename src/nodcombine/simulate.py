"""Seeded simulator of nodded JWST slit exposures, written as real ``_cal`` datamodels.

The simulator stands in for a ``calwebb_spec2`` run without background
subtraction: it returns `~stdatamodels.jwst.datamodels.MultiSlitModel` (NIRSpec MOS
and fixed slit) or `~stdatamodels.jwst.datamodels.ImageModel` (MIRI LRS slit)
instances in MJy/sr with a gwcs per slit, the nod metadata real files carry, and
noise whose true variances are what is written to ``var_poisson``,
``var_rnoise`` and ``var_flat``.  The truth (source trace rows, widths, fluxes,
injected cosmic rays) comes back beside the models, as photutils'
``make_psf_model_image`` does.

Geometry follows the real products (checked against ``shared/data/ceers_933``):
NIRSpec MOS slitlets are three shutters of pitch 1.15 slit units (0.529″) with
bars between them, one detector row is 0.227 slit units, ``slit_frame`` y = 0 is
the centre of the shutter holding the source (so it moves one pitch between nod
positions) and the WCS takes cutout pixel coordinates.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr
from stdatamodels.jwst.datamodels import dqflags

from nodcombine.psf import psf_fwhm_arcsec
from nodcombine.simfiles import (
    NOD_TYPES,
    build_exposure_model,
    slit_name,
    write_association,
    write_visit,
)
from nodcombine.simwcs import miri_slit_wcs, nirspec_slit_wcs

__all__ = [
    "MODES",
    "SLIT_WIDTH_ARCSEC",
    "InstrumentMode",
    "NodTruth",
    "SlitTruth",
    "nod_offsets",
    "simulate_nodded_visit",
    "write_association",
    "write_visit",
]

_DO_NOT_USE = dqflags.pixel["DO_NOT_USE"]
_NON_SCIENCE = dqflags.pixel["NON_SCIENCE"]
_FAILED_OPEN = dqflags.pixel["MSA_FAILED_OPEN"]


@dataclass(frozen=True, slots=True)
class InstrumentMode:
    """Geometry and detector properties of one observing mode.

    Attributes
    ----------
    name : str
        Key in `MODES`.
    instrument, exp_type, detector, grating, filter : str
        Values written to ``meta.instrument`` / ``meta.exposure``.
    n_spatial, n_dispersion : int
        Cutout size along and across the dispersion direction, pixels.
    wave_nodes_um : tuple of float
        Wavelength at the first, middle and last dispersion pixel (a quadratic
        through them; PRISM is strongly non-linear, gratings nearly linear).
    pixel_scale : float
        Arcsec per pixel along the slit.
    slit_unit_arcsec : float
        Length of one ``slit_frame`` y unit in arcsec (one open shutter for MOS,
        the slit length for fixed slits).
    shutter_pitch : float or None
        Shutter pitch in slit units (MOS only).
    slit_half_length : float
        Half length of the illuminated slit(let), slit units.
    curvature : tuple of float
        Trace row offset per column and per column squared (about the centre).
    dispersion_direction : int
        1 when dispersion runs along detector x, 2 along y.
    sky_mjysr : tuple of float
        Sky surface brightness at the blue and red ends, MJy/sr.
    conversion : float
        MJy/sr per (electron / s).
    read_noise : float
        Effective read noise of one ramp, electrons.
    exposure_time : float
        Effective exposure time, s.
    """

    name: str
    instrument: str
    exp_type: str
    detector: str
    grating: str
    filter: str
    n_spatial: int
    n_dispersion: int
    wave_nodes_um: tuple
    pixel_scale: float
    slit_unit_arcsec: float
    shutter_pitch: float | None
    slit_half_length: float
    curvature: tuple
    dispersion_direction: int
    sky_mjysr: tuple
    conversion: float
    read_noise: float
    exposure_time: float

    @property
    def rows_per_unit(self):
        """Detector rows per slit unit."""
        return self.slit_unit_arcsec / self.pixel_scale


#: open width across the slit, arcsec (NIRSpec MSA 0.20″ of a 0.27″ pitch; S200A1; MIRI LRS)
SLIT_WIDTH_ARCSEC = {
    "nrs_msa_prism": 0.20,
    "nrs_msa_g395m": 0.20,
    "nrs_fs_prism": 0.20,
    "miri_lrs": 0.51,
}

MODES = {
    "nrs_msa_prism": InstrumentMode(
        "nrs_msa_prism",
        "NIRSPEC",
        "NRS_MSASPEC",
        "NRS2",
        "PRISM",
        "CLEAR",
        25,
        341,
        (1.367, 3.894, 5.372),
        0.1045,
        0.46,
        1.15,
        1.725 + 0.075,
        (0.006, 1.0e-5),
        1,
        (0.06, 0.5),
        4.0,
        5.0,
        1021.2,
    ),
    "nrs_msa_g395m": InstrumentMode(
        "nrs_msa_g395m",
        "NIRSPEC",
        "NRS_MSASPEC",
        "NRS1",
        "G395M",
        "F290LP",
        25,
        1400,
        (2.87, 3.98, 5.10),
        0.1045,
        0.46,
        1.15,
        1.725 + 0.075,
        (0.0015, 1.0e-6),
        1,
        (0.2, 0.5),
        40.0,
        5.0,
        1021.2,
    ),
    "nrs_fs_prism": InstrumentMode(
        "nrs_fs_prism",
        "NIRSPEC",
        "NRS_FIXEDSLIT",
        "NRS1",
        "PRISM",
        "CLEAR",
        40,
        341,
        (1.367, 3.894, 5.372),
        0.1045,
        3.3,
        None,
        0.5,
        (0.006, 1.0e-5),
        1,
        (0.06, 0.5),
        4.0,
        5.0,
        1021.2,
    ),
    "miri_lrs": InstrumentMode(
        "miri_lrs",
        "MIRI",
        "MIR_LRS-FIXEDSLIT",
        "MIRIMAGE",
        "P750L",
        "P750L",
        50,
        388,
        (5.0, 9.5, 14.0),
        0.11,
        4.7,
        None,
        0.5,
        (0.004, 0.0),
        2,
        (0.5, 40.0),
        0.2,
        14.0,
        1000.0,
    ),
}


def nod_offsets(mode, n_points):
    """Along-slit nod offsets of a pattern, arcsec.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    n_points : int
        Number of nod positions (2 or 3 for MOS, 2, 3 or 5 for NIRSpec fixed
        slits, 2 for MIRI LRS).

    Returns
    -------
    numpy.ndarray
        Offset of each position along the slit, arcsec.
    """
    if (mode.exp_type, n_points) not in NOD_TYPES:
        allowed = sorted(n for (e, n) in NOD_TYPES if e == mode.exp_type)
        raise ValueError(f"n_points must be one of {allowed} for {mode.name}, got {n_points}")
    if mode.shutter_pitch is not None:
        # MOS nods move the source by one shutter pitch: 1x1, x11, 11x
        steps = {2: [1.0, -1.0], 3: [0.0, 1.0, -1.0]}[n_points]
        return np.array(steps) * mode.shutter_pitch * mode.slit_unit_arcsec
    if mode.instrument == "MIRI":
        return np.array([-1.2, 1.2])
    return {
        2: np.array([0.75, -0.75]),
        3: np.array([0.0, 0.9, -0.9]),
        5: np.array([0.0, 0.5, -0.5, 1.0, -1.0]),
    }[n_points]


@dataclass(frozen=True)
class SlitTruth:
    """What was put into one slit of one exposure.

    Attributes
    ----------
    name : str
        Slit name.
    source_id : int
        Source identifier.
    trace_row : numpy.ndarray, shape (n_dispersion,)
        True source centre along the slit, in cutout pixel coordinates (rows of
        the kernel orientation: spatial first).
    sigma_pix : numpy.ndarray, shape (n_dispersion,)
        True Gaussian sigma of the profile, pixels.
    column_flux : numpy.ndarray, shape (n_dispersion,)
        Source signal summed over the slit, data units (MJy/sr) times pixels.
    total_flux : numpy.ndarray, shape (n_dispersion,)
        The same before the slit's loss across its width (``slit_loss``); equal
        to ``column_flux`` without it.
    wavelength : numpy.ndarray, shape (n_dispersion,)
        Wavelength of each dispersion pixel, micron.
    cosmic_rays : numpy.ndarray of bool, shape of the cutout (data orientation)
        Pixels hit by injected, unflagged cosmic rays or snowballs.
    cosmic_ray_excess : numpy.ndarray, shape of the cutout
        Signal added by them, MJy/sr.
    stuck_closed : bool
        Whether a stuck-closed shutter was simulated in this slit.
    """

    name: str
    source_id: int
    trace_row: np.ndarray
    sigma_pix: np.ndarray
    column_flux: np.ndarray
    total_flux: np.ndarray
    wavelength: np.ndarray
    cosmic_rays: np.ndarray
    cosmic_ray_excess: np.ndarray
    stuck_closed: bool = False


@dataclass(frozen=True)
class NodTruth:
    """Truth of a simulated visit.

    Attributes
    ----------
    mode : InstrumentMode
        Observing mode.
    positions : numpy.ndarray of int
        Nod position index (0-based) of each exposure.
    offsets_arcsec : numpy.ndarray
        Along-slit offset of each exposure, arcsec.
    slits : list of list of SlitTruth
        ``slits[i][k]`` is slit ``k`` of exposure ``i``.
    """

    mode: InstrumentMode
    positions: np.ndarray
    offsets_arcsec: np.ndarray
    slits: list = field(default_factory=list)


def _wavelength_solution(mode):
    """Quadratic through the mode's three wavelength nodes, per dispersion pixel."""
    n = mode.n_dispersion
    x_nodes = np.array([0.0, (n - 1) / 2.0, n - 1.0])
    coeffs = np.polyfit(x_nodes, np.asarray(mode.wave_nodes_um), 2)
    return np.polyval(coeffs, np.arange(n, dtype=float))


def _trace_polynomial(mode, centre_row):
    """Coefficients (c0, c1, c2) of the slit-centre row as a polynomial in column."""
    xc = (mode.n_dispersion - 1) / 2.0
    c1, c2 = mode.curvature
    return (centre_row - c1 * xc + c2 * xc**2, c1 - 2 * c2 * xc, c2)


def _bar_throughput(y_middle, mode):
    """Bar-shadow throughput of a 3-shutter slitlet versus slit y of the middle shutter."""
    if mode.shutter_pitch is None:
        return np.ones_like(y_middle)
    pitch = mode.shutter_pitch
    throughput = np.ones_like(y_middle)
    for bar in (-1.5 * pitch, -0.5 * pitch, 0.5 * pitch, 1.5 * pitch):
        throughput -= 0.58 * np.exp(-0.5 * ((y_middle - bar) / 0.09) ** 2)
    return np.clip(throughput, 0.05, 1.0)


def _as_per_slit(value, n_slits, name):
    """Broadcast a scalar or a sequence to one value per slit."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n_slits, float(arr))
    if arr.shape != (n_slits,):
        raise ValueError(f"{name} must be a scalar or have one value per slit ({n_slits})")
    return arr


def _source_spectrum(wave_um, lines, rng):
    """Smooth continuum plus Gaussian emission lines, normalised to 1 at mid-band."""
    mid = wave_um[wave_um.size // 2]
    spectrum = (wave_um / mid) ** -1.0
    if lines:
        lo, hi = wave_um.min(), wave_um.max()
        dlam = np.abs(np.gradient(wave_um))
        for frac in (0.3, 0.55, 0.8):
            centre = lo + frac * (hi - lo) + rng.uniform(-0.01, 0.01) * (hi - lo)
            width = 1.2 * np.interp(centre, wave_um, dlam)
            spectrum = spectrum + 3.0 * np.exp(-0.5 * ((wave_um - centre) / width) ** 2)
    return spectrum


def _pixel_integrated_gaussian(rows, centre, sigma):
    """Fraction of a unit Gaussian falling in each pixel (rows are pixel centres)."""
    return ndtr((rows + 0.5 - centre) / sigma) - ndtr((rows - 0.5 - centre) / sigma)


def _inject_cosmic_rays(shape, fraction, n_snowballs, rng):
    """Boolean mask and relative amplitude (in units of the local noise) of hits."""
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


def _slit_geometry(mode, offsets, rng, jitter):
    """Window centre row and per-exposure cutouts ``(x0, y0, nx, ny)`` in window coordinates.

    With ``jitter``, real cutouts' habit of differing by a pixel or two in origin
    and size between exposures is imitated.
    """
    pad = 2
    centre_row = pad + (mode.n_spatial - 1) / 2.0 + rng.uniform(-0.3, 0.3)
    cutouts = []
    for _ in offsets:
        dx, dy = rng.integers(-1, 2, size=2) if jitter else (0, 0)
        trim_x, trim_y = rng.integers(0, 2, size=2) if jitter else (0, 0)
        cutouts.append(
            (
                pad + int(dx),
                pad + int(dy),
                mode.n_dispersion - int(trim_x),
                mode.n_spatial - int(trim_y),
            )
        )
    return centre_row, cutouts


def simulate_nodded_visit(
    mode="nrs_msa_prism",
    *,
    n_slits=1,
    n_points=3,
    exposures_per_position=1,
    source_peak=1.0,
    source_offset_arcsec=0.0,
    source_sigma_arcsec=0.0,
    position_error_arcsec=0.0,
    trace_wobble_pix=(),
    source_xpos=0.0,
    slit_loss=False,
    emission_lines=True,
    sky_scale=1.0,
    noise=True,
    cosmic_ray_fraction=0.0,
    n_snowballs=0,
    stuck_closed_shutter=None,
    failed_open=False,
    jitter_cutouts=False,
    seed=0,
):
    """Simulate the ``_cal`` exposures of one nodded visit.

    Parameters
    ----------
    mode : str or InstrumentMode
        Observing mode, a key of `MODES` (``nrs_msa_prism``, ``nrs_msa_g395m``,
        ``nrs_fs_prism``, ``miri_lrs``).
    n_slits : int
        Slits per exposure (MOS: slitlets, one source each; fixed slit and MIRI
        LRS: must be 1).
    n_points : int
        Nod positions in the pattern.
    exposures_per_position : int
        Exposures (dithers or repeats) at each nod position.
    source_peak : float or sequence of float
        Peak surface brightness of the source continuum at mid-band, MJy/sr, per
        slit; 0 gives an empty slit.
    source_offset_arcsec : float or sequence of float
        Along-slit offset of the source from the shutter (MOS) or slit centre,
        arcsec, per slit.
    source_sigma_arcsec : float or sequence of float
        Intrinsic Gaussian sigma of the source along the slit, arcsec (0 for a
        point source), per slit.
    position_error_arcsec : float or sequence of float
        True minus planned source position along the slit, arcsec, per slit:
        the source sits at ``source_offset_arcsec + position_error_arcsec``
        while ``source_ypos`` (and so the WCS-predicted trace) says
        ``source_offset_arcsec``, as an astrometric or MSA-placement error does.
    trace_wobble_pix : sequence of float
        Legendre coefficients (degree 0, 1, ...) of a further deviation of the
        true trace from the predicted one, in pixels along the slit (towards
        increasing cutout row, or column for MIRI LRS), of the wavelength scaled
        to −1 … 1 over the mode's range; the same in every slit and exposure.
    source_xpos : float
        Planned (and true) source position across the slit, in slit widths from
        its middle (jwst's ``source_xpos``), the same for every slit.
    slit_loss : bool
        Remove the light a Gaussian image of the source's width, at
        ``source_xpos``, loses outside the slit's open width (`SLIT_WIDTH_ARCSEC`),
        integrated numerically; the truth keeps the flux before the loss.
    emission_lines : bool
        Add three emission lines to the continuum.
    sky_scale : float
        Multiplier of the mode's sky.
    noise : bool
        Draw photon, read and flat noise; ``False`` writes the expected values
        (with the same variances) for exactness tests.
    cosmic_ray_fraction : float
        Fraction of pixels hit by unflagged cosmic rays in each exposure.
    n_snowballs : int
        Unflagged snowballs per slit and exposure.
    stuck_closed_shutter : int or None
        MOS only: shutter of slit 0 (-1, 0 or +1 relative to the middle one)
        that is stuck closed in every exposure.
    failed_open : bool
        MOS only: light from a failed-open shutter crosses slit 0, flagged
        ``MSA_FAILED_OPEN`` in DQ one row short of its full extent.
    jitter_cutouts : bool
        Shift each exposure's cutout by up to one pixel, as real cutouts differ.
    seed : int
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    models : list of DataModel
        One model per exposure, in exposure order.
    truth : NodTruth
        What was simulated.
    """
    mode = MODES[mode] if isinstance(mode, str) else mode
    if mode.exp_type != "NRS_MSASPEC" and n_slits != 1:
        raise ValueError(f"n_slits must be 1 for {mode.name}, got {n_slits}")
    if exposures_per_position < 1:
        raise ValueError(f"exposures_per_position must be >= 1, got {exposures_per_position}")
    rng = np.random.default_rng(seed)
    offsets_pos = nod_offsets(mode, n_points)
    # exposures run through the pattern, then repeat it: 1 2 3 1 2 3
    positions = np.tile(np.arange(n_points), exposures_per_position)
    offsets = offsets_pos[positions]
    peaks = _as_per_slit(source_peak, n_slits, "source_peak")
    intra = _as_per_slit(source_offset_arcsec, n_slits, "source_offset_arcsec")
    widths = _as_per_slit(source_sigma_arcsec, n_slits, "source_sigma_arcsec")
    errors = _as_per_slit(position_error_arcsec, n_slits, "position_error_arcsec")

    per_slit = []
    for k in range(n_slits):
        options = {
            "peak": peaks[k],
            "intra": intra[k],
            "width": widths[k],
            "error": errors[k],
            "wobble": tuple(trace_wobble_pix),
            "xpos": float(source_xpos),
            "slit_loss": bool(slit_loss),
            "lines": emission_lines,
            "sky_scale": sky_scale,
            "noise": noise,
            "cr_fraction": cosmic_ray_fraction,
            "n_snowballs": n_snowballs,
            "stuck": stuck_closed_shutter if k == 0 else None,
            "failed_open": failed_open and k == 0,
            "jitter": jitter_cutouts,
        }
        per_slit.append(_simulate_slit(mode, k, offsets, options, rng))

    models_out, truth_slits = [], []
    for i in range(len(offsets)):
        exposure = [slit[i] for slit in per_slit]
        models_out.append(
            build_exposure_model(mode, i, positions[i], offsets[i], n_points, exposure)
        )
        truth_slits.append([entry["truth"] for entry in exposure])
    truth = NodTruth(mode=mode, positions=positions, offsets_arcsec=offsets, slits=truth_slits)
    return models_out, truth


def _simulate_slit(mode, k, offsets, opt, rng):
    """Arrays, WCS and truth of slit ``k`` in every exposure (kernel orientation)."""
    centre_row, origins = _slit_geometry(mode, offsets, rng, opt["jitter"])
    pad = 2
    n_rows, n_cols = mode.n_spatial + 2 * pad, mode.n_dispersion + 2 * pad
    rows = np.arange(n_rows, dtype=float)[:, None]
    cols = np.arange(n_cols, dtype=float)
    wave_cut = _wavelength_solution(mode)
    coeffs = np.polyfit(np.arange(mode.n_dispersion) + pad, wave_cut, 2)
    wave = np.polyval(coeffs, cols)
    # slit-centre row versus window column (the polynomial is about the cutout centre)
    c0, c1, c2 = _trace_polynomial(mode, centre_row)
    mid_row = c0 + c1 * (cols - pad) + c2 * (cols - pad) ** 2
    trace = (c0 - c1 * pad + c2 * pad**2, c1 - 2 * c2 * pad, c2)
    rpu = mode.rows_per_unit
    y_middle = (mid_row[None, :] - rows) / rpu
    illuminated = np.abs(y_middle) <= mode.slit_half_length
    bar = _bar_throughput(y_middle, mode)
    light = illuminated.copy()
    if opt["stuck"] is not None and mode.shutter_pitch is not None:
        closed = np.abs(y_middle - opt["stuck"] * mode.shutter_pitch) < 0.5 * mode.shutter_pitch
        light &= ~closed

    sky_lo, sky_hi = np.asarray(mode.sky_mjysr) * opt["sky_scale"]
    t = (wave - wave.min()) / np.ptp(wave)
    sky = (sky_lo * (sky_hi / sky_lo) ** t)[None, :] * np.ones((n_rows, 1))
    fwhm = psf_fwhm_arcsec(mode.instrument, wave)
    sigma_pix = np.hypot(fwhm / 2.3548, opt["width"]) / mode.pixel_scale
    spectrum = _source_spectrum(wave, opt["lines"], rng)
    kept = _slit_fraction(mode, sigma_pix * mode.pixel_scale, opt) if opt["slit_loss"] else 1.0
    mid = n_cols // 2
    peak_fraction = _pixel_integrated_gaussian(np.array([0.0]), 0.0, sigma_pix[mid])[0]
    amplitude = opt["peak"] / (spectrum[mid] * peak_fraction)

    failed_band = None
    if opt["failed_open"]:
        r0 = round(centre_row) + 6
        failed_band = (r0 - 2, r0 + 3)  # light in 5 rows, flagged in the inner 3

    geometry = {
        "wave": wave,
        "bar": bar,
        "illuminated": illuminated,
        "trace": trace,
        "sigma_pix": sigma_pix,
    }
    entries = []
    scaled = 2.0 * (wave - wave.min()) / np.ptp(wave) - 1.0
    wobble = np.polynomial.legendre.legval(scaled, opt["wobble"]) if opt["wobble"] else 0.0
    true_intra = opt["intra"] + opt["error"]
    for i, offset in enumerate(offsets):
        src_row = mid_row - true_intra / mode.pixel_scale + offset / mode.pixel_scale + wobble
        profile = _pixel_integrated_gaussian(rows, src_row[None, :], sigma_pix[None, :])
        source = amplitude * (spectrum * kept)[None, :] * profile
        scene = np.where(light, sky + source, 0.0)
        if failed_band is not None:
            leak = rng.uniform(0.5, 3.0) * sky_hi * np.exp(-0.5 * ((wave - wave.mean()) / 1.0) ** 2)
            scene[failed_band[0] : failed_band[1]] += leak[None, :]
        arrays = _noisy_exposure(mode, scene, bar, illuminated, opt, rng)
        if failed_band is not None:
            arrays["dq"][failed_band[0] + 1 : failed_band[1] - 1] |= _FAILED_OPEN
        entries.append(
            _cut_out(
                mode,
                k,
                offset,
                opt,
                origins[i],
                geometry,
                arrays,
                src_row,
                amplitude * spectrum * np.where(light, profile, 0).sum(axis=0),
                kept,
            )
        )
    return entries


def _noisy_exposure(mode, scene, bar, illuminated, opt, rng):
    """Detector-level noise on a scene in MJy/sr, returned bar-shadow corrected."""
    gain = mode.exposure_time / mode.conversion * bar  # electrons per MJy/sr
    electrons = np.maximum(scene, 0.0) * gain
    var_poisson = electrons / gain**2
    var_rnoise = mode.read_noise**2 / gain**2
    var_flat = (0.003 * scene) ** 2
    data = scene.copy()
    if opt["noise"]:
        counts = rng.poisson(electrons) - electrons + rng.normal(0.0, mode.read_noise, scene.shape)
        data = data + counts / gain + rng.normal(0.0, 1.0, scene.shape) * np.sqrt(var_flat)
    hits, excess = _inject_cosmic_rays(scene.shape, opt["cr_fraction"], opt["n_snowballs"], rng)
    hits &= illuminated
    cr_signal = np.where(hits, excess * np.sqrt(var_poisson + var_rnoise), 0.0)
    data = data + cr_signal
    dq = np.zeros(scene.shape, dtype=np.uint32)
    dq[~illuminated] = _DO_NOT_USE | _NON_SCIENCE
    hot = (rng.random(scene.shape) < 1e-3) & illuminated
    dq[hot] |= _DO_NOT_USE | dqflags.pixel["HOT"]
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


def _slit_fraction(mode, sigma_arcsec, opt):
    """Fraction of a Gaussian image inside the open width, by numerical quadrature."""
    width = SLIT_WIDTH_ARCSEC[mode.name]
    x = np.linspace(-0.5 * width, 0.5 * width, 2001)[:, None] - opt["xpos"] * width
    density = np.exp(-0.5 * (x / sigma_arcsec[None, :]) ** 2) / (np.sqrt(2 * np.pi) * sigma_arcsec)
    return np.trapezoid(density, dx=width / 2000, axis=0)


def _cut_out(mode, k, offset, opt, origin, geometry, arrays, src_row, column_flux, kept=1.0):
    """Cut one exposure's window of slit ``k`` to its cutout; attach WCS and truth.

    ``geometry`` holds what the exposures of a slit share: ``wave``, ``bar``,
    ``illuminated``, ``trace`` (slit-centre polynomial) and ``sigma_pix``.
    """
    wave, bar, illuminated = geometry["wave"], geometry["bar"], geometry["illuminated"]
    trace, sigma_pix = geometry["trace"], geometry["sigma_pix"]
    ox, oy, nx, ny = origin
    cut = (slice(oy, oy + ny), slice(ox, ox + nx))
    out = {key: val[cut] for key, val in arrays.items()}
    out["wavelength"] = np.where(illuminated, wave[None, :], np.nan)[cut].astype(np.float32)
    if mode.shutter_pitch is not None:
        out["barshadow"] = bar[cut].astype(np.float32)
    ra, dec = 214.86 + 0.001 * k, 52.88 + 0.002 * k
    nirspec = mode.instrument == "NIRSPEC"
    shift = offset / mode.pixel_scale if mode.shutter_pitch is not None else 0.0
    ref_trace = (trace[0] + shift, trace[1], trace[2])
    if nirspec:
        ypos = opt["intra"] - (0.0 if mode.shutter_pitch is not None else offset)
        ypos = ypos / mode.slit_unit_arcsec
        out["wcs"] = nirspec_slit_wcs(
            mode, wave, ref_trace, (ox, oy), (ny, nx), (0.0, ypos), (ra, dec)
        )
        out["source_ypos"] = ypos
    else:
        along = offset - opt["intra"]
        out["wcs"] = miri_slit_wcs(
            mode, wave, trace, (oy, ox), (nx, ny), (ra, dec), dec - along / 3600.0
        )
        # the MIRI slit runs along detector x and disperses along y: transpose
        out = {key: (val.T if isinstance(val, np.ndarray) else val) for key, val in out.items()}
        out["source_ypos"] = along / mode.slit_unit_arcsec
    out.update(origin=(ox, oy), ra=ra, dec=dec, source_xpos=opt["xpos"])
    truth = SlitTruth(
        name=slit_name(mode, k),
        source_id=1000 + k,
        trace_row=src_row[ox : ox + nx] - oy,
        sigma_pix=sigma_pix[ox : ox + nx],
        column_flux=(column_flux * kept)[ox : ox + nx],
        total_flux=column_flux[ox : ox + nx],
        wavelength=wave[ox : ox + nx],
        cosmic_rays=out.pop("cr"),
        cosmic_ray_excess=out.pop("cr_signal"),
        stuck_closed=opt["stuck"] is not None,
    )
    out["truth"] = truth
    return out
