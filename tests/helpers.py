"""Shared test helpers: pull arrays out of simulated models in kernel orientation."""

from dataclasses import dataclass

import numpy as np

from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "TraceTruth",
    "away_from_traces",
    "fit_simulated_trace",
    "kernel_arrays",
    "normalised_differences",
    "outlier_recovery",
    "prism_and_grating_nods",
    "sky_only_z",
    "synthetic_trace",
    "trace_pulls",
]


def _slit(model, k):
    return model.slits[k] if hasattr(model, "slits") else model


def kernel_arrays(models, k=0):
    """(data, variances, dq) of slit ``k`` of each exposure, (n_exp, spatial, dispersion)."""
    vertical = getattr(getattr(models[0].meta, "wcsinfo", None), "dispersion_direction", 1) == 2

    def stack(name):
        arrays = [np.asarray(getattr(_slit(m, k), name), dtype=float) for m in models]
        return np.stack([a.T for a in arrays] if vertical else arrays)

    return stack("data"), {c: stack(c) for c in VARIANCE_COMPONENTS}, stack("dq").astype(np.uint32)


def normalised_differences(result):
    """Valid differences divided by their propagated error."""
    error = np.sqrt(sum(result.variances.values()))
    z = result.data / error
    return z[np.isfinite(z)]


def sky_only_z(mode, n_points, repeats, seeds):
    """Normalised sky-only differences of simulated visits, pooled over ``seeds``."""
    from nodcombine.nod_diff.noddiff import nod_difference
    from nodcombine.simulate import simulate_nodded_visit

    zs = []
    for seed in seeds:
        models, truth = simulate_nodded_visit(
            mode, n_points=n_points, exposures_per_position=repeats, source_peak=0.0, seed=seed
        )
        data, variances, _ = kernel_arrays(models)
        result = nod_difference(data, variances, truth.positions, n_sigma_outlier=0)
        zs.append(normalised_differences(result))
    return np.concatenate(zs)


def outlier_recovery(n_points, *, n_slits, source_peak=1.0, seed=3, trace_distance=2.0):
    """Injected hit pixels, those flagged, and wrongly flagged source-trace pixels.

    Returns
    -------
    dict
        ``hits``, ``found``, ``false_on_trace``, ``trace_pixels``.
    """
    from nodcombine.nod_diff.noddiff import nod_difference
    from nodcombine.simulate import simulate_nodded_visit

    models, truth = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=n_slits,
        n_points=n_points,
        source_peak=source_peak,
        cosmic_ray_fraction=0.003,
        n_snowballs=1,
        seed=seed,
    )
    counts = dict.fromkeys(("hits", "found", "false_on_trace", "trace_pixels"), 0)
    n_exp = len(models)
    for k in range(n_slits):
        data, variances, _ = kernel_arrays(models, k)
        rows = np.stack([truth.slits[i][k].trace_row for i in range(n_exp)])
        result = nod_difference(data, variances, truth.positions, trace_rows=rows)
        injected = np.stack([truth.slits[i][k].cosmic_rays for i in range(n_exp)])
        near = np.abs(np.arange(data.shape[1])[None, :, None] - rows[:, None, :]) <= trace_distance
        counts["hits"] += int(injected.sum())
        counts["found"] += int((result.outliers & injected).sum())
        counts["false_on_trace"] += int((result.outliers & ~injected & near).sum())
        counts["trace_pixels"] += int((near & np.isfinite(data)).sum())
    return counts


def away_from_traces(slit, models, truth, k, distance=2.2, exclude=None):
    """diff/err of one slit more than ``distance`` rows from every exposure's true trace."""
    rows = np.arange(slit.data.shape[0])[:, None]
    cols = np.arange(slit.data.shape[1])
    away = np.ones(slit.data.shape, bool)
    for j, other in enumerate(models):
        # exposure j's true trace in this cutout's coordinates
        dx = slit.xstart - other.slits[k].xstart
        dy = other.slits[k].ystart - slit.ystart
        trace = truth.slits[j][k].trace_row
        trace_here = np.interp(cols + dx, np.arange(trace.size), trace) + dy
        away &= np.abs(rows - trace_here[None, :]) > distance
    if exclude is not None:
        away &= ~exclude
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (slit.data / slit.err)[away]
    return z[np.isfinite(z)]


def flagged_fraction(result):
    """Fraction of the valid pixels of all slits of a ``nod_diff`` result flagged OUTLIER."""
    from nodcombine.nod_diff.io import outlier_pixels

    slits = [s for m in result for s in getattr(m, "slits", [m])]
    flagged = sum(int(outlier_pixels(s).sum()) for s in slits)
    valid = sum(int(np.isfinite(s.data).sum()) for s in slits)
    return flagged / valid


@dataclass(frozen=True)
class TraceTruth:
    """What `synthetic_trace` put in: offset coefficients, width², fluxes, exposures."""

    coeffs: tuple
    source_sigma2: float
    flux: np.ndarray
    exposures: np.ndarray


def synthetic_trace(
    *,
    n_points=3,
    repeats=1,
    shape=(25, 150),
    throw=5.0,
    coeffs=(0.3, 0.1, -0.05),
    source_sigma=0.8,
    curvature=0.0,
    flux=100.0,
    read_noise=1.0,
    noise=True,
    hits=(),
    seed=0,
):
    """Kernel inputs of a nodded point or extended source, straight from numpy.

    Exposures hold a sky that varies along the slit plus the source, a
    pixel-integrated Gaussian whose centre is the predicted trace (curved when
    ``curvature`` is set) plus a Legendre offset in scaled wavelength.  They are
    differenced by `nod_difference`, as ``nod_diff`` does.  ``hits`` are
    ``(exposure, rows, cols, excess)`` cosmic rays added to the raw exposures
    and missed by the differencing (its outlier rejection is off).

    Returns
    -------
    inputs : dict
        Keyword arguments of `nodcombine.tracefit.fit_trace`.
    truth : TraceTruth
    """
    from nodcombine.nod_diff.noddiff import nod_difference
    from nodcombine.profile import pixel_integrated_gaussian

    rng = np.random.default_rng(seed)
    n_rows, n_cols = shape
    positions = np.tile(np.arange(n_points), repeats)
    cols = np.arange(n_cols)
    wave = np.linspace(1.0, 5.0, n_cols)
    t = (wave - 1.0) / 2.0 - 1.0
    sigma_psf = 1.0 + 0.3 * t
    trace = n_rows / 2.0 + curvature * ((cols - n_cols / 2.0) / (n_cols / 2.0)) ** 2
    shifts = {2: [-throw / 2.0, throw / 2.0], 3: [0.0, throw, -throw]}[n_points]
    traces = np.stack([trace + shifts[p] for p in positions])
    along = np.arange(n_rows)[None, :, None] - traces[:, None, :]
    offset = np.polynomial.legendre.legval(t, coeffs)
    sigma = np.hypot(sigma_psf, source_sigma)
    profile = pixel_integrated_gaussian(along, offset, sigma)[0]
    column_flux = flux * (1.0 + 0.5 * np.sin(cols / 20.0))
    sky = 50.0 + 10.0 * np.cos(np.arange(n_rows) / 3.0)[:, None] + 0.0 * cols
    exposures = sky[None] + column_flux * profile
    variance = np.full(exposures.shape, read_noise**2)
    if noise:
        exposures = exposures + rng.normal(0.0, read_noise, exposures.shape)
    for exposure, rows, columns, excess in hits:
        exposures[exposure, rows, columns] += excess
    zero = np.zeros_like(variance)
    variances = {"var_poisson": zero, "var_rnoise": variance, "var_flat": zero}
    result = nod_difference(exposures, variances, positions, n_sigma_outlier=0)
    own = sum(result.variances.values()) - sum(result.ref_variances.values())
    inputs = {
        "data": result.data,
        "variance": own,
        "valid": result.valid,
        "positions": positions,
        "along": along,
        "wavelength": np.tile(wave, (positions.size, 1)),
        "sigma_psf": np.tile(sigma_psf, (positions.size, 1)),
    }
    return inputs, TraceTruth(tuple(coeffs), source_sigma**2, column_flux, exposures)


def trace_pulls(draws, *, settings=None, offset=0.3, **options):
    """Pulls of a constant offset and of the width² over seeded `synthetic_trace` draws.

    Only fits that end ``FIT`` with a free width count.

    Returns
    -------
    pulls : numpy.ndarray, shape (n_counted, 2)
        ``(fitted − true) / error`` of the offset and of s².
    chi2 : numpy.ndarray, shape (n_counted,)
        χ²/dof of each counted fit.
    counted : float
        Fraction of the draws counted.
    """
    from nodcombine.trace_fit.solution import TraceFitSettings
    from nodcombine.trace_fit.tracefit import fit_trace

    settings = settings or TraceFitSettings(degree_snr=(1e9, 1e10))
    pulls, chi2 = [], []
    for seed in range(draws):
        inputs, truth = synthetic_trace(coeffs=(offset,), seed=seed, **options)
        fit = fit_trace(**inputs, settings=settings)
        if fit.status == "FIT" and fit.width_free and fit.degree == 0:
            pulls.append(
                [
                    (fit.coeffs[0] - offset) / fit.coeffs_err[0],
                    (fit.source_sigma2 - truth.source_sigma2) / fit.source_sigma2_err,
                ]
            )
            chi2.append(fit.chi2 / fit.dof)
    return np.array(pulls), np.array(chi2), len(pulls) / draws


def fit_simulated_trace(mode, n_points, **options):
    """Simulate a visit, run nod_diff and trace_fit; per exposure: (record, slit, truth)."""
    from nodcombine import NodDiffStep, TraceFitStep
    from nodcombine.simulate import simulate_nodded_visit
    from nodcombine.visit import slits_of

    models, truth = simulate_nodded_visit(mode, n_points=n_points, **options)
    result = TraceFitStep.call(NodDiffStep.call(models))
    out = []
    for model, slits in zip(result, truth.slits, strict=True):
        slit = slits_of(model)[0]
        out.append((slit.instance["trace_fit_record"], slit, slits[0]))
    return out


def prism_and_grating_nods(error=0.04):
    """nod_diff products of one source seen with PRISM (bright) and G395M (faint).

    Both 3-point visits share program, observation, visit and source id, and the
    source sits ``error`` arcsec from its planned position in both.

    Returns
    -------
    nod : ModelContainer
        Three PRISM then three G395M ``_nod`` exposures.
    truths : list of SlitTruth
        The truth of each exposure's slit.
    """
    from nodcombine import NodDiffStep
    from nodcombine.simulate import simulate_nodded_visit

    visits = [
        simulate_nodded_visit(
            mode,
            n_points=3,
            source_peak=peak,
            position_error_arcsec=error,
            seed=seed,
        )
        for mode, peak, seed in (("nrs_msa_prism", 0.8, 1), ("nrs_msa_g395m", 0.3, 2))
    ]
    models = [model for visit in visits for model in visit[0]]
    truths = [slits[0] for visit in visits for slits in visit[1].slits]
    return NodDiffStep.call(models), truths


def run_chain(models, *, apply_pathloss=False, **rectify_options):
    """nod_diff -> trace_fit -> rectify -> optimal_extract_1d in memory; (s2d, x1d)."""
    from nodcombine import NodDiffStep, OptimalExtract1dStep, RectifyStep, TraceFitStep

    nod = NodDiffStep.call(models)
    s2d = RectifyStep.call(TraceFitStep.call(nod), **rectify_options)
    return s2d, OptimalExtract1dStep.call(s2d, apply_pathloss=apply_pathloss)


def true_flux_jy(spec, slit_truth, pixel_area, *, total=False):
    """The simulated source flux (Jy) at the spectrum's wavelengths."""
    flux = slit_truth.total_flux if total else slit_truth.column_flux
    wave = np.asarray(spec.spec_table["WAVELENGTH"], dtype=float)
    return np.interp(wave, slit_truth.wavelength, flux) * pixel_area * 1.0e6


def extraction_pulls(
    draws, *, n_points, repeats, peak, n_slits=4, mode="nrs_msa_prism", edge=5, seed0=0, **sim
):
    """Normalised residuals (FLUX - truth) / FLUX_ERROR, one array per spectrum.

    ``edge`` bins at each end are left out (partly covered by the nods).
    """
    from nodcombine.simulate import simulate_nodded_visit

    pulls = []
    for seed in range(seed0, seed0 + draws):
        models, truth = simulate_nodded_visit(
            mode,
            n_slits=n_slits,
            n_points=n_points,
            exposures_per_position=repeats,
            source_peak=peak,
            emission_lines=False,
            seed=seed,
            **sim,
        )
        s2d, x1d = run_chain(models)
        area = s2d.slits[0].meta.photometry.pixelarea_steradians
        for spec, slit_truth in zip(x1d.spec, truth.slits[0], strict=True):
            table = spec.spec_table
            z = (table["FLUX"] - true_flux_jy(spec, slit_truth, area)) / table["FLUX_ERROR"]
            pulls.append(np.asarray(z[edge:-edge], dtype=float))
    return pulls


def lag1(series):
    """Mean lag-1 autocorrelation of several series (NaNs dropped within each)."""
    values = []
    for z in series:
        z = z[np.isfinite(z)]
        z = z - z.mean()
        values.append(np.sum(z[1:] * z[:-1]) / np.sum(z * z))
    return float(np.mean(values))
