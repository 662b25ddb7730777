"""Issue 12 acceptance: fluxes and errors when the source is not the fit's model.

Run with ``python benchmarks/bench_profiles.py`` (full; ``--quick`` for a few draws per
row, ``--sections 1234`` to pick parts, ``--jobs N`` worker processes, default 2).  Every
figure is measured in this run, on visits of `nodcombine.simulate` whose source profiles
come from the families of ``nodcombine.simulate.FAMILIES`` (only ``psf_law`` follows the
width law the trace fit assumed before issue 12).  Plain-text tables go to stdout, every
number also to ``benchmarks/output/bench_profiles.csv`` (long format: section, row,
metric, value, bar, pass).

Chain and truth
---------------
Each visit runs ``NodDiffStep -> TraceFitStep -> RectifyStep -> OptimalExtract1dStep``
in memory with ``apply_pathloss=False`` (so FLUX is the flux the extraction attributes
to the source inside the slit).  Spectra are matched to simulated slits by
``source_id``.  Continuum only (``emission_lines=False``), cutouts not jittered, no
cosmic rays, no slit loss across the slit, so "in slit" means on the pixels of the
slitlet's length that receive light.  The ``EDGE`` = 5 bins at each end of every
spectrum are left out of every statistic (they are partly covered by the nods; the
same convention as ``tests/helpers.extraction_pulls``).

* TRUE flux T (Jy) of a bin: the simulator's in-slit flux (``SlitTruth.in_slit_flux``,
  MJy/sr x pixels per cutout column) averaged over the visit's exposures, interpolated
  linearly in wavelength at the bin's WAVELENGTH, times the pixel solid angle
  (``meta.photometry.pixelarea_steradians``) x 1e6.  For a compact source the exposures'
  in-slit fluxes agree to < 0.1 %; for the extended sources of section 4 they do not
  (a source in an outer shutter loses its wing past the slitlet's end) and the average
  over exposures is the reference (the per-position fractions are printed).
* TRUE profile of exposure j (pixels of the cutout, per column): the simulator's own
  shape, ``truth.shape.pixel_fractions(rows, truth.trace_row)`` (exact for every
  family, checked to 1e-7 against noiseless data), times the light mask (pixels
  without ``NON_SCIENCE`` in DQ: the illuminated slitlet), divided by the mean over the
  exposures of its in-slit sum, so that flux x profile is each exposure's source image
  in units of the reference flux T.
* Cramer-Rao bound: ``nodcombine.extract_1d.optimal.flux_information`` of those true
  profiles with the simulator's true (expected) variances ``var_poisson + var_rnoise +
  var_flat`` of every exposure (a free sky per pixel, common to the exposures), summed
  over the rows of a column; sigma_CR = 1/sqrt(information), in Jy like T, interpolated
  at each bin's wavelength (PRISM bins are the detector columns).

Peak S/N (sections 2 and 4, and the brightness of section 1)
-------------------------------------------------------------
``source_peak`` is calibrated per mode, family and width so that the brightest source
pixel of one exposure (the largest value of noiseless-with-source minus
noiseless-without-source, exposure 0, slit of a 1-slit seed-0 visit) has signal /
sqrt(var_poisson + var_rnoise + var_flat) equal to the target (30 or 60); the
variances are the simulator's expected ones at that pixel, including the source's own
Poisson term.  A secant iteration in log-log space converges to 0.5 %.  For PRISM the
brightest pixel is at the blue end (column 0); the S/N of the brightest pixel of the
middle column is printed beside it (roughly half).  The S/N is per exposure, so two
exposures per position observe the same source with more total S/N.

Section 1 (noiseless bias)
--------------------------
``noise=False`` visits (expected values, true variances), point sources of every
family at the peak S/N 30 and 60 brightness, 2- and 3-point nods, PRISM and G395M.
The band between the first and last kept bin is cut into 10 equal wavelength
intervals; in each, bias = sum(FLUX) / sum(T) - 1.  Bar: max |bias| < 0.5 %.

Section 2 (noise: errors, independence, efficiency)
---------------------------------------------------
PRISM, every family (point sources), peak S/N 30 and 60, 1 and 2 exposures per
position, 2- and 3-point nods.  Each visit holds 12 slits (6 families x 2 S/N), so
each row (family, S/N, exposures, nod) gets one spectrum per visit; ``--visits`` (10)
visits per (exposures, nod) configuration.  ``--configs 2x1`` runs only 2-point nods with
1 exposure per position (visit seeds do not depend on it, so a longer run of one
configuration contains the default run's visits).

* z = (FLUX - T) / FLUX_ERROR per bin, pooled over the row's spectra and bins: mean
  and std.  Bars: |mean z| < 0.05, std z = 1 +- 0.03.
* lag-1 = sum z_i z_(i+1) / sum (z_i^2 + z_(i+1)^2)/2 over neighbouring bins of the
  same spectrum, pooled; z is NOT re-centred per spectrum, so a per-spectrum flux-scale
  error (all bins of a spectrum off together) counts.  Bar: |lag-1| < 0.05.  "lag-1 c"
  is the same with each spectrum's mean z removed first (the convention of
  ``tests/helpers.lag1``); the difference between the two shows errors common to a
  whole spectrum.
* Empirical Cramer-Rao efficiency: per spectrum and bin u = (FLUX - T) / sigma_CR (the
  bound of that realisation: slits differ in sub-pixel phase); per bin (detector column
  of the PRISM grid) over the row's N realisations s^2 = sample variance of u (ddof=1,
  about the sample mean: the bias is section 1's business), efficiency e_b = 1/s^2,
  i.e. (CRB variance) / (empirical variance of FLUX).  Reported: the median over bins
  multiplied by median(chi2_(N-1))/(N-1), which removes the bias of the median of 1/s^2
  for N Gaussian draws (e.g. x0.93 at N = 10); "eff pool" = 1 / mean_b s^2 (no
  correction needed).  Bar: median efficiency >= 0.9.  "eff err" is what the pipeline
  claims, the median over bins of (sigma_CR / FLUX_ERROR)^2: eff err ~ eff with std z ~
  1 means the errors are right and the loss is real.
* Statistical errors: leave-one-spectrum-out jackknife of each row's metrics (in the
  CSV as ``*_jackknife_error``; the median over rows is printed under the table).  It
  includes whatever a spectrum's bins share (a flux-scale error of its profile fit).

Section 3 (faint compact sources)
---------------------------------
PRISM 3-point, 1 exposure per position, two families: ``constant`` with
sigma_arcsec = 0.08 and ``psf_law`` with source_sigma_arcsec = 0.05.  Each visit holds
10 slits whose ``source_peak`` is drawn log-uniformly so that the expected trace S/N
(``snr`` of the ``trace_fit_record``; its ratio to source_peak is calibrated on a
noiseless visit) spans 8-30; every draw is binned by the MEASURED trace S/N of its
fit, and draws that land outside 8-30 are counted but left out (13 visits x 10 slits
per family = 260 draws, so that more than 200 land inside).

* TRUE-profile extraction of the same data: from the ``_nod`` differences the chain
  itself produced, per column, the Horne estimate sum(G D / V) / sum(G^2 / V) over every
  exposure's pixels within half the nod separation of that exposure's true trace (the
  pipeline's default window), with G the exact expected difference of a unit source
  (true profile of the exposure minus the mean over the other nod positions of their
  true profiles, as nod_diff forms the references; checked against noiseless
  differences) and V the difference's total variance; pixels any exposure lacks are
  left out.  It is unbiased whatever the profile, and it shares the pipeline's noise.
* Per draw the band flux scale s = sum_b w_b F_b / sum_b w_b T_b with w_b = T_b /
  FLUX_ERROR_b^2 (the optimal weights for a common scale factor), for the pipeline
  (s_pipe) and, with the same weights on the same columns, for the true-profile
  extraction (s_true).  Reported per S/N bin: medians of s_pipe, s_true and of the
  paired ratio s_pipe / s_true (bar: within +-3 %; its error is 1.2533 x MAD-std /
  sqrt(n)), the std of the per-bin z (bar: 1 +- 0.05) and of the band z = (sum w F -
  sum w T) / sqrt(sum w^2 FLUX_ERROR^2) (does FLUX_ERROR carry the flux-scale error?),
  and the step of the paired median between the bins on either side of
  ``min_snr`` = 10 and ``width_snr`` = 20 (flagged when beyond 3 sigma of its error).
* 3b: the same sources without noise at 12 trace S/N from 8 to 30 (one visit per
  family): s_pipe - 1 is then the pure bias at that S/N (s_true is exactly 1), so a
  cliff at a threshold shows without Monte Carlo noise.

Section 4 (extended sources, overlapping nods)
----------------------------------------------
PRISM MOS nods move the source one shutter, +-5.06 px.  Intrinsic sigma 1.5 and 2.5 px
(source_sigma_arcsec = sigma x 0.1045) with the ``psf_law`` family (Gaussian, total
width from the PSF law) and the ``constant`` family (the same width at mid-band,
constant in wavelength).  Noiseless, 2- and 3-point: the band scale (weights T /
FLUX_ERROR^2 as in section 3), the unweighted sum(FLUX)/sum(T) and the worst tenth of
the band (as section 1); bar: band scale and worst tenth within 2 %.  With noise
(3-point, peak S/N 30 calibrated for each extended source): the median band scale over
``--extended-visits`` visits; bar: within 2 %.

Draw counts of the full run (about 15 min on 2 free cores; the trace fit dominates):
section 1 one noiseless visit per (mode, nod), section 2 10 visits per (exposures, nod)
= 10 spectra per row, 480 spectra; section 3 13 visits x 10 slits per family = 260
draws; section 4 2 noiseless visits and 5 noisy visits x 4 slits.
"""

import argparse
import csv
import itertools
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread per worker process
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "benchmarks" / "output" / "bench_profiles.csv"
EDGE = 5  # bins left out at each end of every spectrum
FAMILY_NAMES = ("psf_law", "constant", "steep", "moffat", "core_halo", "asymmetric")
PRISM, G395M = "nrs_msa_prism", "nrs_msa_g395m"
PIXEL_ARCSEC = 0.1045  # NIRSpec, along the slit
PEAK_SNR = (30, 60)
FAINT_SNR = (8.0, 30.0)  # expected trace S/N drawn in this range
FAINT_BINS = (8.0, 10.0, 12.5, 16.0, 20.0, 25.0, 30.0)
THRESHOLDS = (10.0, 20.0)  # min_snr, width_snr of TraceFitSettings
EXTENDED_SIGMA_PIX = (1.5, 2.5)

_NON_SCIENCE = 1 << 9
_DO_NOT_USE = 1

# ----------------------------------------------------------------------------- helpers


def _provenance():
    """The commit and the source files that differ from it (read-only git)."""
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")

    def git(*args):
        try:
            run = subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, env=env
            )
        except OSError:
            return ""
        return run.stdout.strip()

    changed = git("diff", "--name-only", "HEAD", "--", "src").split()
    return git("rev-parse", "--short", "HEAD") or "?", changed


def _preload():
    """Import the package before the workers fork: every task then runs the same code."""
    from scipy.stats import chi2  # noqa: F401

    import nodcombine
    import nodcombine.extract_1d.optimal
    import nodcombine.simulate

    for name in ("NodDiffStep", "TraceFitStep", "RectifyStep", "OptimalExtract1dStep"):
        getattr(nodcombine, name)


def _silence():
    """Worker start: no log chatter below ERROR, no numpy/astropy warnings."""
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


def _profile(family, sigma_arcsec=None):
    """A `SourceProfile` (a name, or a name and its sigma_arcsec)."""
    from nodcombine.simulate import SourceProfile

    return SourceProfile(family) if sigma_arcsec is None else SourceProfile(family, sigma_arcsec)


def _simulate(mode, *, seed, noise=True, **options):
    from nodcombine.simulate import simulate_nodded_visit

    return simulate_nodded_visit(mode, seed=seed, noise=noise, emission_lines=False, **options)


def _chain(models):
    """nod_diff -> trace_fit -> rectify -> optimal_extract_1d (apply_pathloss=False)."""
    from nodcombine import NodDiffStep, OptimalExtract1dStep, RectifyStep, TraceFitStep

    nod = NodDiffStep.call(models)
    trace = TraceFitStep.call(nod)
    x1d = OptimalExtract1dStep.call(RectifyStep.call(trace), apply_pathloss=False)
    return nod, trace, x1d


def _records(trace):
    """The trace-fit record of each source of exposure 0, by source_id."""
    out = {}
    for slit in trace[0].slits:
        record = slit.instance.get("trace_fit_record") or {}
        out[int(slit.source_id)] = dict(record)
    return out


def _float(array):
    return np.asarray(array, dtype=float)


def slit_truth(models, truth, k, *, template=False):
    """What the simulator put into slit ``k``, per cutout column.

    Computed before the chain runs (the steps may touch their inputs).

    Returns
    -------
    dict
        ``wave``, ``flux`` (reference in-slit flux, MJy/sr x pixels: mean over the
        exposures), ``kappa`` (in-slit fraction per exposure), ``crb`` (1 sigma bound on
        ``flux``), ``area``, ``source_id``, ``name``; with ``template``: ``profile``
        (n_exp, ny, nx; each exposure's source image per unit infinite-slit flux),
        ``observed`` (pixels every exposure has), ``trace_rows``, ``positions``.
    """
    from nodcombine.extract_1d.optimal import flux_information

    first = models[0].slits[k]
    rows = np.arange(first.data.shape[0], dtype=float)[:, None]
    profiles, variances = [], []
    for model, slits in zip(models, truth.slits, strict=True):
        slit, st = model.slits[k], slits[k]
        if (slit.xstart, slit.ystart) != (first.xstart, first.ystart):
            raise RuntimeError("cutouts differ between exposures; the bound needs one grid")
        dq = np.asarray(slit.dq)
        light = (dq & _NON_SCIENCE) == 0
        profiles.append(np.where(light, st.shape.pixel_fractions(rows, st.trace_row[None, :]), 0))
        total = _float(slit.var_poisson) + _float(slit.var_rnoise) + _float(slit.var_flat)
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(total) & (total > 0) & ((dq & _DO_NOT_USE) == 0)
        variances.append(np.where(usable, total, np.nan))
    profiles, variances = np.stack(profiles), np.stack(variances)
    kappa = profiles.sum(axis=1)
    kappa_mean = kappa.mean(axis=0)
    info = flux_information(profiles / kappa_mean, variances).sum(axis=0)
    st0 = truth.slits[0][k]
    with np.errstate(divide="ignore"):
        crb = 1.0 / np.sqrt(info)
    out = {
        "wave": _float(st0.wavelength),
        "flux": np.mean([_float(s[k].in_slit_flux) for s in truth.slits], axis=0),
        "kappa": kappa,
        "crb": crb,
        "area": float(first.meta.photometry.pixelarea_steradians),
        "source_id": int(st0.source_id),
        "name": str(st0.name),
    }
    if template:
        out.update(
            profile=profiles,
            observed=np.isfinite(variances).all(axis=0),
            trace_rows=np.stack([_float(s[k].trace_row) for s in truth.slits]),
            positions=np.asarray(truth.positions),
        )
    return out


def spectrum(spec, st):
    """A spectrum against its truth, edge bins dropped; per-bin arrays in Jy."""
    table = spec.spec_table
    wave = _float(table["WAVELENGTH"])[EDGE:-EDGE]
    flux = _float(table["FLUX"])[EDGE:-EDGE]
    err = _float(table["FLUX_ERROR"])[EDGE:-EDGE]
    jy = st["area"] * 1.0e6
    columns = np.arange(st["wave"].size, dtype=float)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(wave) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    wave, flux, err = wave[good], flux[good], err[good]
    return {
        "wave": wave,
        "flux": flux,
        "err": err,
        "truth": np.interp(wave, st["wave"], st["flux"]) * jy,
        "crb": np.interp(wave, st["wave"], st["crb"]) * jy,
        "column": np.rint(np.interp(wave, st["wave"], columns)).astype(int),
    }


def _visit_spectra(models, truth, *, template=False):
    """Run the chain on a visit; one entry per simulated slit (None if not extracted)."""
    truths = [slit_truth(models, truth, k, template=template) for k in range(len(truth.slits[0]))]
    nod, trace, x1d = _chain(models)
    records = _records(trace)
    by_id = {int(spec.source_id): spec for spec in x1d.spec}
    out = []
    for st in truths:
        spec = by_id.get(st["source_id"])
        record = records.get(st["source_id"], {})
        entry = None
        if spec is not None:
            entry = spectrum(spec, st)
            entry["status"] = str(record.get("status", "?"))
            entry["snr"] = float(record.get("snr", np.nan))
            entry["kappa"] = np.median(st["kappa"], axis=1)
        out.append(entry)
    return out, truths, nod


def tenths(entry):
    """sum(FLUX)/sum(T) - 1 in each tenth of the band (equal wavelength intervals)."""
    wave = entry["wave"]
    edges = np.linspace(wave.min(), wave.max(), 11)
    index = np.clip(np.searchsorted(edges, wave, side="right") - 1, 0, 9)
    return np.array(
        [
            entry["flux"][index == i].sum() / entry["truth"][index == i].sum() - 1.0
            if (index == i).any()
            else np.nan
            for i in range(10)
        ]
    )


def band_scale(entry, flux=None):
    """Scale sum(w F)/sum(w T), w = T / FLUX_ERROR^2; and the band z of the pipeline."""
    w = entry["truth"] / entry["err"] ** 2
    f = entry["flux"] if flux is None else flux
    ok = np.isfinite(f)
    scale = np.sum(w[ok] * f[ok]) / np.sum(w[ok] * entry["truth"][ok])
    z = np.sum(w[ok] * (f[ok] - entry["truth"][ok])) / np.sqrt(np.sum((w * entry["err"])[ok] ** 2))
    return scale, z


# ----------------------------------------------------------------------- calibration


def _brightest_pixel_snr(mode, profile, sigma_arcsec, peak, off):
    on, _ = _simulate(
        mode,
        seed=0,
        noise=False,
        n_slits=1,
        n_points=3,
        source_peak=peak,
        source_profile=profile,
        source_sigma_arcsec=sigma_arcsec,
    )
    slit = on[0].slits[0]
    signal = _float(slit.data) - off
    var = _float(slit.var_poisson) + _float(slit.var_rnoise) + _float(slit.var_flat)
    snr = signal / np.sqrt(var)
    flat = np.nanargmax(signal)
    mid = signal.shape[1] // 2
    return float(snr.flat[flat]), float(snr[np.nanargmax(signal[:, mid]), mid])


def calibrate_peak(task):
    """``source_peak`` giving the brightest pixel of one exposure S/N ``target``."""
    mode, profile, sigma_arcsec, target = task
    _silence()
    off_models, _ = _simulate(
        mode,
        seed=0,
        noise=False,
        n_slits=1,
        n_points=3,
        source_peak=0.0,
        source_profile=profile,
        source_sigma_arcsec=sigma_arcsec,
    )
    off = _float(off_models[0].slits[0].data)
    p0, (s0, _) = 1.0, _brightest_pixel_snr(mode, profile, sigma_arcsec, 1.0, off)
    p1 = p0 * target / s0
    s1, mid = _brightest_pixel_snr(mode, profile, sigma_arcsec, p1, off)
    for _ in range(8):
        if abs(s1 / target - 1.0) < 0.005:
            break
        slope = np.log(s1 / s0) / np.log(p1 / p0)
        p0, s0 = p1, s1
        p1 = p0 * (target / s0) ** (1.0 / slope)
        s1, mid = _brightest_pixel_snr(mode, profile, sigma_arcsec, p1, off)
    return task, {"peak": p1, "snr": s1, "snr_mid": mid}


def calibrate_trace_snr(task):
    """Trace S/N per unit source_peak of the faint families (noiseless, 3-point PRISM)."""
    from nodcombine import NodDiffStep, TraceFitStep

    _silence()
    reference = 0.02
    models, truth = _simulate(
        PRISM,
        seed=0,
        noise=False,
        n_slits=len(FAINT_FAMILIES),
        n_points=3,
        source_peak=reference,
        source_profile=[_profile(*f[1]) for f in FAINT_FAMILIES],
        source_sigma_arcsec=[f[2] for f in FAINT_FAMILIES],
    )
    records = _records(TraceFitStep.call(NodDiffStep.call(models)))
    ids = [int(s.source_id) for s in truth.slits[0]]
    return task, {
        f[0]: records[i]["snr"] / reference for f, i in zip(FAINT_FAMILIES, ids, strict=True)
    }


# ----------------------------------------------------------------------- tasks


def noiseless_task(task):
    """Section 1: one noiseless visit, 6 families x 2 peak S/N."""
    _, mode, n_points, peaks = task
    _silence()
    slits = [(f, s) for s in PEAK_SNR for f in FAMILY_NAMES]
    models, truth = _simulate(
        mode,
        seed=7,
        noise=False,
        n_slits=len(slits),
        n_points=n_points,
        source_peak=[peaks[(mode, f, s)] for f, s in slits],
        source_profile=[f for f, _ in slits],
    )
    entries, _, _ = _visit_spectra(models, truth)
    return task, dict(zip(slits, entries, strict=True))


def noisy_task(task):
    """Section 2: one noisy PRISM visit, 6 families x 2 peak S/N."""
    _, n_points, repeats, seed, peaks = task
    _silence()
    slits = [(f, s) for s in PEAK_SNR for f in FAMILY_NAMES]
    models, truth = _simulate(
        PRISM,
        seed=seed,
        n_slits=len(slits),
        n_points=n_points,
        exposures_per_position=repeats,
        source_peak=[peaks[(PRISM, f, s)] for f, s in slits],
        source_profile=[f for f, _ in slits],
    )
    entries, _, _ = _visit_spectra(models, truth)
    for entry in entries:  # the per-bin arrays are all section 2 needs
        if entry is not None:
            entry.pop("wave")
    return task, dict(zip(slits, entries, strict=True))


#: section 3's families: (label, (family, sigma_arcsec), source_sigma_arcsec)
FAINT_FAMILIES = (
    ('constant 0.08"', ("constant", 0.08), 0.0),
    ('psf_law s=0.05"', ("psf_law", None), 0.05),
)


def true_profile_flux(st, nod, half_width):
    """Horne extraction of the chain's own differences with the exact difference profile.

    Returns the in-slit flux per cutout column, MJy/sr x pixels (NaN where no pixel).
    """
    profile, positions = st["profile"], st["positions"]
    # nod_diff's reference: the mean over the other positions of their position means
    means = {q: profile[positions == q].mean(axis=0) for q in np.unique(positions)}
    num = np.zeros(profile.shape[2])
    den = np.zeros(profile.shape[2])
    rows = np.arange(profile.shape[1], dtype=float)[:, None]
    for e, model in enumerate(nod):
        slit = next(s for s in model.slits if str(s.name) == st["name"])
        others = [means[q] for q in means if q != positions[e]]
        g = profile[e] - np.mean(others, axis=0)
        d = _float(slit.data)
        v = _float(slit.var_poisson) + _float(slit.var_rnoise) + _float(slit.var_flat)
        with np.errstate(invalid="ignore"):
            use = (
                st["observed"]
                & np.isfinite(d)
                & np.isfinite(v)
                & (v > 0)
                & ((np.asarray(slit.dq) & _DO_NOT_USE) == 0)
                & (np.abs(rows - st["trace_rows"][e][None, :]) <= half_width)
            )
        v = np.where(use, v, 1.0)
        num += np.where(use, g * d / v, 0.0).sum(axis=0)
        den += np.where(use, g * g / v, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        infinite = np.where(den > 0, num / den, np.nan)
    return infinite * st["kappa"].mean(axis=0)


def faint_task(task):
    """Section 3: one noisy 3-point PRISM visit of 10 faint compact sources."""
    _, _, profile, source_sigma, seed, peaks, noise = task
    _silence()
    models, truth = _simulate(
        PRISM,
        seed=seed,
        noise=noise,
        n_slits=len(peaks),
        n_points=3,
        source_peak=list(peaks),
        source_profile=_profile(*profile),
        source_sigma_arcsec=source_sigma,
    )
    half_width = 0.5 * np.min(np.abs(np.diff(np.sort(np.unique(truth.offsets_arcsec)))))
    half_width /= PIXEL_ARCSEC
    entries, truths, nod = _visit_spectra(models, truth, template=True)
    draws = []
    for entry, st in zip(entries, truths, strict=True):
        if entry is None:
            draws.append(None)
            continue
        jy = st["area"] * 1.0e6
        flux = true_profile_flux(st, nod, half_width) * jy
        true_flux = flux[np.clip(entry["column"], 0, flux.size - 1)]
        t_col = st["flux"][np.clip(entry["column"], 0, flux.size - 1)] * jy
        s_pipe, z_band = band_scale(entry)
        # the same weights on the same columns, against the column truth
        w = entry["truth"] / entry["err"] ** 2
        ok = np.isfinite(true_flux)
        s_true = np.sum(w[ok] * true_flux[ok]) / np.sum(w[ok] * t_col[ok])
        z = (entry["flux"] - entry["truth"]) / entry["err"]
        draws.append(
            {
                "snr": entry["snr"],
                "status": entry["status"],
                "s_pipe": s_pipe,
                "s_true": s_true,
                "z_band": z_band,
                "z": z,
            }
        )
    return task, draws


def extended_task(task):
    """Section 4: a visit of extended sources (psf_law and constant, sigma 1.5 and 2.5 px)."""
    _, n_points, noise, seed, peaks = task
    _silence()
    slits = [(f, s) for f in ("psf_law", "constant") for s in EXTENDED_SIGMA_PIX]
    models, truth = _simulate(
        PRISM,
        seed=seed,
        noise=noise,
        n_slits=len(slits),
        n_points=n_points,
        source_peak=[peaks[(PRISM, f, s)] for f, s in slits],
        source_profile=[f for f, _ in slits],
        source_sigma_arcsec=[s * PIXEL_ARCSEC for _, s in slits],
    )
    entries, _, _ = _visit_spectra(models, truth)
    out = {}
    for key, entry in zip(slits, entries, strict=True):
        if entry is None:
            out[key] = None
            continue
        scale, z_band = band_scale(entry)
        out[key] = {
            "scale": scale,
            "unweighted": entry["flux"].sum() / entry["truth"].sum(),
            "tenths": tenths(entry),
            "kappa": entry["kappa"],
            "status": entry["status"],
            "z_band": z_band,
        }
    return task, out


def _run(task):
    """Dispatch one task in a worker; returns (task, result, seconds of CPU, error).

    A task that raises (the science code is edited while benchmarks run) gives
    result None and the error's text; the tables then miss its spectra.
    """
    start = time.process_time()
    kind = task[0]
    function = {
        "noiseless": noiseless_task,
        "noisy": noisy_task,
        "faint": faint_task,
        "extended": extended_task,
        "peak": calibrate_peak,
        "trace_snr": calibrate_trace_snr,
    }[kind]
    args = task[1:] if kind == "peak" else task
    try:
        _, result = function(args)
    except Exception as exc:  # reported; the other tasks go on
        return task, None, time.process_time() - start, f"{type(exc).__name__}: {exc}"
    return task, result, time.process_time() - start, ""


def run_tasks(tasks, jobs):
    """Run the tasks (longest first is the caller's order) on ``jobs`` processes."""
    if jobs <= 1:
        _silence()
        return [_run(t) for t in tasks]
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs, initializer=_silence) as pool:
        return list(pool.imap_unordered(_run, tasks, chunksize=1))


# ----------------------------------------------------------------------- statistics


class Csv:
    """Long-format rows: section, row, metric, value, bar, pass."""

    def __init__(self):
        self.rows = []

    def add(self, section, row, metric, value, bar="", ok=""):
        self.rows.append((section, row, metric, value, bar, ok))

    def write(self, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("section", "row", "metric", "value", "bar", "pass"))
            writer.writerows(self.rows)


def lag1(series, centre=False):
    """Pooled lag-1 autocorrelation of neighbouring bins within each series."""
    num = den = 0.0
    for z in series:
        z = z[np.isfinite(z)]
        if z.size < 3:
            continue
        if centre:
            z = z - z.mean()
        num += np.sum(z[1:] * z[:-1])
        den += 0.5 * np.sum(z[1:] ** 2 + z[:-1] ** 2)
    return num / den if den > 0 else np.nan


def efficiency(entries, n_columns):
    """Median over bins of CRB variance / empirical variance (corrected), pooled, N."""
    from scipy.stats import chi2

    u = np.full((len(entries), n_columns), np.nan)
    for i, entry in enumerate(entries):
        ok = (entry["column"] >= 0) & (entry["column"] < n_columns)
        u[i, entry["column"][ok]] = ((entry["flux"] - entry["truth"]) / entry["crb"])[ok]
    counts = np.isfinite(u).sum(axis=0)
    n = int(np.median(counts[counts > 0])) if (counts > 0).any() else 0
    use = counts >= max(3, int(0.8 * n))
    if n < 3 or not use.any():
        return np.nan, np.nan, n
    variance = np.nanvar(u[:, use], axis=0, ddof=1)
    median = float(np.median(1.0 / variance)) * chi2.median(n - 1) / (n - 1)
    return median, float(1.0 / np.mean(variance)), n


def _fmt_pass(ok):
    return "ok" if ok else "FAIL"


# ----------------------------------------------------------------------- sections


def section_peaks(rows):
    print("\n## 0. Calibrated source_peak (brightest pixel of one exposure, expected S/N)")
    print(
        "| mode | family | source sigma (px) | target | source_peak (MJy/sr) | S/N reached |",
        end="",
    )
    print(" S/N, brightest pixel of the middle column |")
    print("|---|---|---|---|---|---|---|")
    for (mode, family, sigma, target), value in sorted(rows.items()):
        print(
            f"| {mode} | {family} | {sigma:g} | {target} | {value['peak']:.4f} |"
            f" {value['snr']:.2f} | {value['snr_mid']:.1f} |"
        )


def section_noiseless(results, table):
    print("\n## 1. Noiseless: FLUX / in-slit truth - 1 per tenth of the band (%), bar 0.5 %")
    print(
        "| mode | nod | family | peak S/N | trace status | "
        + " | ".join(f"t{i + 1}" for i in range(10))
        + " | max abs | pass |"
    )
    print("|---|---|---|---|---|" + "---|" * 10 + "---|---|")
    worst = 0.0
    for (mode, n_points), slits in sorted(results.items()):
        for snr in PEAK_SNR:
            for family in FAMILY_NAMES:
                entry = slits[(family, snr)]
                row = f"{mode} {n_points}-pt {family} S/N{snr}"
                if entry is None:
                    print(f"| {mode} | {n_points} | {family} | {snr} | NOT EXTRACTED |")
                    table.add(1, row, "max_abs_bias", np.nan, "<0.005", "FAIL")
                    continue
                bias = tenths(entry)
                peak = float(np.nanmax(np.abs(bias)))
                worst = max(worst, peak)
                ok = peak < 0.005
                cells = " | ".join(f"{100 * b:+.2f}" for b in bias)
                print(
                    f"| {mode} | {n_points} | {family} | {snr} | {entry['status']} | {cells} |"
                    f" {100 * peak:.2f} | {_fmt_pass(ok)} |"
                )
                for i, b in enumerate(bias):
                    table.add(1, row, f"bias_tenth_{i + 1}", b)
                table.add(1, row, "max_abs_bias", peak, "<0.005", _fmt_pass(ok))
    print(f"worst tenth over all rows: {100 * worst:.2f} %")


def row_metrics(got):
    """mean z, std z, lag-1 (raw, centred), efficiency (median, pooled) of some spectra."""
    zs = [(e["flux"] - e["truth"]) / e["err"] for e in got]
    z = np.concatenate(zs)
    n_columns = 1 + max(int(e["column"].max()) for e in got)
    eff, eff_pool, _ = efficiency(got, n_columns)
    return {
        "mean_z": float(z.mean()),
        "std_z": float(z.std()),
        "lag1": lag1(zs),
        "lag1_centred": lag1(zs, centre=True),
        "efficiency_median": eff,
        "efficiency_pooled": eff_pool,
        "bins": z.size,
    }


def jackknife(got, values):
    """Leave-one-spectrum-out errors of `row_metrics` (they carry per-spectrum correlations)."""
    n = len(got)
    if n < 3:
        return {key: np.nan for key in values if key != "bins"}
    drops = [row_metrics(got[:i] + got[i + 1 :]) for i in range(n)]
    return {
        key: float(
            np.sqrt((n - 1) / n * np.sum((np.array([d[key] for d in drops]) - values[key]) ** 2))
        )
        for key in values
        if key != "bins"
    }


def section_noisy(results, table):
    print(
        "\n## 2. With noise, PRISM: z = (FLUX - T)/FLUX_ERROR, lag-1, Cramer-Rao efficiency"
        " (bars: std z 1+-0.03, |mean z|<0.05, |lag-1|<0.05, eff>=0.9)"
    )
    print(
        "| family | peak S/N | exp/pos | nod | spectra | not FIT | bins | mean z | std z |"
        " lag-1 | lag-1 c | eff | eff pool | eff err | fails |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for (n_points, repeats, _seed), slits in results.items():
        for key, entry in slits.items():
            rows.setdefault((key[0], key[1], repeats, n_points), []).append(entry)
    n_fail, errors = 0, []
    for family in FAMILY_NAMES:
        for snr in PEAK_SNR:
            for repeats in (1, 2):
                for n_points in (2, 3):
                    entries = rows.get((family, snr, repeats, n_points), [])
                    got = [e for e in entries if e is not None]
                    label = f"{family} S/N{snr} {repeats}exp {n_points}-pt"
                    if not got:
                        print(f"| {family} | {snr} | {repeats} | {n_points} | 0 |")
                        continue
                    not_fit = sum(e["status"] != "FIT" for e in got) + len(entries) - len(got)
                    m = row_metrics(got)
                    err = jackknife(got, m)
                    errors.append(err)
                    claimed = float(
                        np.median(np.concatenate([(e["crb"] / e["err"]) ** 2 for e in got]))
                    )
                    checks = {
                        "std": abs(m["std_z"] - 1.0) <= 0.03,
                        "mean": abs(m["mean_z"]) < 0.05,
                        "lag1": abs(m["lag1"]) < 0.05,
                        "eff": m["efficiency_median"] >= 0.9,
                    }
                    fails = ",".join(k for k, v in checks.items() if not v) or "-"
                    n_fail += fails != "-"
                    print(
                        f"| {family} | {snr} | {repeats} | {n_points} | {len(got)} | {not_fit} |"
                        f" {m['bins']} | {m['mean_z']:+.3f} | {m['std_z']:.3f} |"
                        f" {m['lag1']:+.3f} | {m['lag1_centred']:+.3f} |"
                        f" {m['efficiency_median']:.3f} | {m['efficiency_pooled']:.3f} |"
                        f" {claimed:.3f} | {fails} |",
                        flush=True,
                    )
                    bars = {
                        "mean_z": ("abs<0.05", checks["mean"]),
                        "std_z": ("1+-0.03", checks["std"]),
                        "lag1": ("abs<0.05", checks["lag1"]),
                        "efficiency_median": (">=0.9", checks["eff"]),
                    }
                    for metric, value in m.items():
                        bar, ok = bars.get(metric, ("", None))
                        table.add(2, label, metric, value, bar, "" if ok is None else _fmt_pass(ok))
                        if metric in err:
                            table.add(2, label, metric + "_jackknife_error", err[metric])
                    table.add(2, label, "efficiency_claimed", claimed)
                    table.add(2, label, "spectra", len(got))
                    table.add(2, label, "not_fit", not_fit)
    print(f"rows failing at least one bar: {n_fail} of {len(rows)}")
    if errors:
        typical = {k: np.nanmedian([e[k] for e in errors]) for k in errors[0]}
        print(
            "statistical errors (jackknife over the spectra of a row, median over rows):"
            + ", ".join(f" {k} +-{v:.3f}" for k, v in typical.items())
        )


def _median_error(values):
    values = np.asarray(values, dtype=float)
    mad = 1.4826 * np.median(np.abs(values - np.median(values)))
    return 1.2533 * mad / np.sqrt(max(values.size, 1))


def section_faint(draws, calibration, table):
    print(
        "\n## 3. Faint compact sources, PRISM 3-point: band flux scale (weights T/FLUX_ERROR^2)"
        " by measured trace S/N; bars: paired median within +-3 %, std z 1+-0.05"
    )
    print(
        "trace S/N per unit source_peak (noiseless calibration): "
        + ", ".join(f"{k}: {v:.0f}" for k, v in calibration.items())
    )
    print(
        "| family | trace S/N | draws | not FIT | median s_pipe | median s_true |"
        " median s_pipe/s_true | err | std z (bins) | std z (band) | mean z (band) | pass |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    labels = [f[0] for f in FAINT_FAMILIES] + ["all"]
    edges = np.array(FAINT_BINS)
    for label in labels:
        chosen = [d for d in draws if d is not None and (label == "all" or d["family"] == label)]
        missing = sum(1 for d in draws if d is None)
        snr = np.array([d["snr"] for d in chosen])
        inside = [d for d, s in zip(chosen, snr, strict=True) if edges[0] <= s < edges[-1]]
        outside = len(chosen) - len(inside)
        medians = {}
        for lo, hi in itertools.pairwise(edges):
            group = [d for d in inside if lo <= d["snr"] < hi]
            name = f"{lo:g}-{hi:g}"
            if not group:
                print(f"| {label} | {name} | 0 |")
                continue
            medians[(lo, hi)] = (*_paired_row(label, name, group, table), len(group))
        _paired_row(label, "8-30", inside, table)
        print(
            f"  ({label}: {len(inside)} draws with trace S/N in 8-30; {outside} outside, left"
            f" out; {missing} not extracted)"
        )
        for threshold in THRESHOLDS:
            below = next(((lo, hi) for lo, hi in medians if hi == threshold), None)
            above = next(((lo, hi) for lo, hi in medians if lo == threshold), None)
            if below is None or above is None:
                continue
            (m1, e1, n1), (m2, e2, n2) = medians[below], medians[above]
            step, error = m2 - m1, float(np.hypot(e1, e2))
            if min(n1, n2) < 5:
                print(f"  {label}: too few draws around S/N {threshold:g} to judge a step")
                continue
            flagged = abs(step) > 3 * error
            print(
                f"  {label}: step of the paired median across S/N {threshold:g}:"
                f" {100 * step:+.2f} +- {100 * error:.2f} % ({'STEP' if flagged else 'no step'})"
            )
            table.add(3, f"{label} step at {threshold:g}", "paired_median_step", step)
            table.add(
                3,
                f"{label} step at {threshold:g}",
                "step_error",
                error,
                "<3 sigma",
                "FAIL" if flagged else "ok",
            )


def _paired_row(label, name, group, table):
    s_pipe = np.array([d["s_pipe"] for d in group])
    s_true = np.array([d["s_true"] for d in group])
    ratio = s_pipe / s_true
    z = np.concatenate([d["z"] for d in group])
    z_band = np.array([d["z_band"] for d in group])
    not_fit = sum(d["status"] != "FIT" for d in group)
    median = float(np.median(ratio))
    error = _median_error(ratio)
    std_z = float(np.nanstd(z))
    ok = abs(median - 1.0) <= 0.03 and abs(std_z - 1.0) <= 0.05
    print(
        f"| {label} | {name} | {len(group)} | {not_fit} | {np.median(s_pipe):.4f} |"
        f" {np.median(s_true):.4f} | {median:.4f} | {error:.4f} | {std_z:.3f} |"
        f" {np.std(z_band):.3f} | {np.mean(z_band):+.3f} | {_fmt_pass(ok)} |"
    )
    row = f"{label} S/N {name}"
    table.add(3, row, "draws", len(group))
    table.add(3, row, "median_s_pipe", float(np.median(s_pipe)))
    table.add(3, row, "median_s_true", float(np.median(s_true)))
    table.add(3, row, "median_paired_ratio", median, "1+-0.03", _fmt_pass(abs(median - 1) <= 0.03))
    table.add(3, row, "median_paired_ratio_error", error)
    table.add(3, row, "std_z_bins", std_z, "1+-0.05", _fmt_pass(abs(std_z - 1) <= 0.05))
    table.add(3, row, "std_z_band", float(np.std(z_band)))
    return median, error


def section_faint_noiseless(draws, table):
    print(
        "\n## 3b. Faint compact sources without noise: band flux scale s_pipe - 1 (%) against"
        " the trace S/N of the fit (s_true is 1 exactly here); a cliff would show as a jump"
    )
    print("| family | trace S/N: s_pipe - 1 (%), trace status if not FIT |")
    print("|---|---|")
    for label, _, _ in FAINT_FAMILIES:
        chosen = sorted(
            (d for d in draws if d is not None and d["family"] == label), key=lambda d: d["snr"]
        )
        cells = []
        for d in chosen:
            status = "" if d["status"] == "FIT" else f" {d['status']}"
            cells.append(f"{d['snr']:.1f}: {100 * (d['s_pipe'] - 1):+.2f}{status}")
            table.add(
                "3b", f"{label} noiseless S/N {d['snr']:.2f}", "s_pipe_minus_1", d["s_pipe"] - 1
            )
        jumps = np.abs(np.diff([d["s_pipe"] for d in chosen]))
        print(f"| {label} | " + ", ".join(cells) + " |")
        if jumps.size:
            print(f"  largest change between neighbouring S/N points: {100 * jumps.max():.2f} %")


def section_extended(noiseless, noisy, table):
    print("\n## 4. Extended sources, PRISM MOS (nods +-5.06 px): FLUX / in-slit truth, bar 2 %")
    print(
        "| family | sigma (px) | nod | noise | trace status | in-slit fraction per position |"
        " band scale | unweighted | worst tenth | pass |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (n_points, _seed), slits in sorted(noiseless.items()):
        for key, entry in slits.items():
            family, sigma = key
            label = f"{family} sigma {sigma} px {n_points}-pt noiseless"
            if entry is None:
                print(f"| {family} | {sigma} | {n_points} | no | NOT EXTRACTED |")
                continue
            worst = float(np.nanmax(np.abs(entry["tenths"])))
            ok = abs(entry["scale"] - 1) < 0.02 and worst < 0.02
            kappa = "/".join(f"{k:.3f}" for k in entry["kappa"][:n_points])
            print(
                f"| {family} | {sigma} | {n_points} | no | {entry['status']} | {kappa} |"
                f" {entry['scale']:.4f} | {entry['unweighted']:.4f} | {100 * worst:.2f} % |"
                f" {_fmt_pass(ok)} |"
            )
            table.add(4, label, "band_scale", entry["scale"], "1+-0.02", _fmt_pass(ok))
            table.add(4, label, "worst_tenth", worst, "<0.02", _fmt_pass(worst < 0.02))
    grouped = {}
    for slits in noisy.values():
        for key, entry in slits.items():
            grouped.setdefault(key, []).append(entry)
    for (family, sigma), entries in grouped.items():
        got = [e for e in entries if e is not None]
        label = f"{family} sigma {sigma} px 3-pt S/N30"
        if not got:
            print(f"| {family} | {sigma} | 3 | S/N 30 | NOT EXTRACTED |")
            continue
        scales = np.array([e["scale"] for e in got])
        median, error = float(np.median(scales)), _median_error(scales)
        not_fit = sum(e["status"] != "FIT" for e in got) + len(entries) - len(got)
        ok = abs(median - 1) < 0.02
        spread = np.std([e["z_band"] for e in got])
        print(
            f"| {family} | {sigma} | 3 | S/N 30 x{len(got)} | {not_fit} not FIT | - |"
            f" {median:.4f} +- {error:.4f} | - | std band z {spread:.2f} | {_fmt_pass(ok)} |"
        )
        table.add(4, label, "median_band_scale", median, "1+-0.02", _fmt_pass(ok))
        table.add(4, label, "median_band_scale_error", error)


# ----------------------------------------------------------------------- main


def _configs(text):
    """``"3x2,2x1"`` -> ((3, 2), (2, 1)): section 2's (nod points, exposures per position)."""
    pairs = []
    for item in text.split(","):
        n_points, repeats = (int(v) for v in item.strip().split("x"))
        pairs.append((n_points, repeats))
    return tuple(pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few draws per row")
    parser.add_argument("--sections", default="1234")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--visits", type=int, default=None, help="section 2 visits per config")
    parser.add_argument(
        "--configs",
        default="3x2,2x2,3x1,2x1",
        help="section 2 (nod points)x(exposures per position) configurations, e.g. 2x1",
    )
    parser.add_argument("--faint-visits", type=int, default=None, help="section 3, per family")
    parser.add_argument("--extended-visits", type=int, default=None, help="section 4 noisy")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    visits = args.visits or (2 if args.quick else 10)
    faint_visits = args.faint_visits or (2 if args.quick else 13)
    extended_visits = args.extended_visits or (1 if args.quick else 5)
    configure_offline_crds(Path(tempfile.mkdtemp()) / "crds")
    _silence()
    _preload()
    start = time.perf_counter()
    sections = args.sections
    commit, changed = _provenance()
    print(
        f"# code: commit {commit}"
        + (f" with uncommitted changes in {', '.join(changed)}" if changed else " (clean src)")
    )
    print(
        f"# bench_profiles: sections {sections}, {'quick' if args.quick else 'full'};"
        f" section 2 {visits} visits per (exposures, nod), section 3 {faint_visits} visits x 10"
        f" slits per family, section 4 {extended_visits} noisy visits; {args.jobs} jobs"
    )

    # phase 1: calibrations
    calib = []
    if set(sections) & {"1", "2"}:
        modes = (PRISM, G395M) if "1" in sections else (PRISM,)
        calib += [("peak", m, f, 0.0, s) for m in modes for f in FAMILY_NAMES for s in PEAK_SNR]
    if "4" in sections:
        calib += [
            ("peak", PRISM, f, s * PIXEL_ARCSEC, 30)
            for f in ("psf_law", "constant")
            for s in EXTENDED_SIGMA_PIX
        ]
    if "3" in sections:
        calib.append(("trace_snr",))
    cpu = {}
    peaks, trace_snr, peak_rows = {}, {}, {}
    failures = []
    for task, result, seconds, error in run_tasks(calib, args.jobs):
        cpu["calibration"] = cpu.get("calibration", 0.0) + seconds
        if error:
            failures.append((task[:2], error))
            continue
        if task[0] == "trace_snr":
            trace_snr = result
            continue
        _, mode, family, sigma, target = task
        sigma_pix = round(sigma / PIXEL_ARCSEC, 2)
        peak_rows[(mode, family, sigma_pix, target)] = result
        # point sources by their target S/N, extended ones (S/N 30) by their sigma
        peaks[(mode, family, sigma_pix if sigma else target)] = result["peak"]
    if peak_rows:
        section_peaks(peak_rows)
    if failures:
        for task, error in failures:
            print(f"calibration {task} failed: {error}")
        if any(task[0] == "peak" for task, _ in failures):
            print("cannot go on without the peak calibration")
            return 1
        sections = sections.replace("3", "")
        print("section 3 left out: no trace S/N calibration")

    # phase 2: measurements, longest tasks first
    tasks = []
    if "2" in sections:
        for n_points, repeats in _configs(args.configs):
            for v in range(visits):
                seed = 1000 * n_points + 100 * repeats + v
                tasks.append(("noisy", n_points, repeats, seed, peaks))
    if "1" in sections:
        tasks += [("noiseless", m, n, peaks) for m in (G395M, PRISM) for n in (3, 2)]
    if "3" in sections:
        rng = np.random.default_rng(12)
        for label, profile, source_sigma in FAINT_FAMILIES:
            for v in range(faint_visits):
                targets = np.exp(rng.uniform(*np.log(FAINT_SNR), size=10))
                peaks_faint = tuple(float(t / trace_snr[label]) for t in targets)
                tasks.append(("faint", label, profile, source_sigma, 500 + v, peaks_faint, True))
            # noiseless: the bias as a function of trace S/N, without noise
            targets = np.geomspace(*FAINT_SNR, 12)
            peaks_faint = tuple(float(t / trace_snr[label]) for t in targets)
            tasks.append(("faint", label, profile, source_sigma, 499, peaks_faint, False))
    if "4" in sections:
        tasks += [("extended", n, False, 3, peaks) for n in (3, 2)]
        tasks += [("extended", 3, True, 800 + v, peaks) for v in range(extended_visits)]
    results = {
        "noiseless": {},
        "noisy": {},
        "faint": [],
        "faint_noiseless": [],
        "extended": {},
        "extended_noisy": {},
    }
    for task, result, seconds, error in run_tasks(tasks, args.jobs):
        kind = task[0]
        cpu[kind] = cpu.get(kind, 0.0) + seconds
        if error:
            failures.append((task[:4], error))
        elif kind == "noiseless":
            results["noiseless"][(task[1], task[2])] = result
        elif kind == "noisy":
            results["noisy"][(task[1], task[2], task[3])] = result
        elif kind == "faint":
            for draw in result:
                if draw is not None:
                    draw["family"] = task[1]
                results["faint" if task[6] else "faint_noiseless"].append(draw)
        elif kind == "extended":
            target = results["extended_noisy" if task[2] else "extended"]
            target[(task[1], task[3])] = result

    table = Csv()
    if "1" in sections:
        section_noiseless(results["noiseless"], table)
    if "2" in sections:
        section_noisy(results["noisy"], table)
    if "3" in sections:
        section_faint(results["faint"], trace_snr, table)
        section_faint_noiseless(results["faint_noiseless"], table)
    if "4" in sections:
        section_extended(results["extended"], results["extended_noisy"], table)
    if failures:
        print(f"\n{len(failures)} tasks failed (their spectra are missing above):")
        for task, error in failures:
            print(f"  {task}: {error}")
    wall = time.perf_counter() - start
    print(
        f"\nruntime: {wall:.0f} s wall, CPU per part: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in cpu.items())
    )
    table.add("runtime", "total", "wall_seconds", wall)
    table.write(args.output)
    print(f"CSV: {args.output}")


if __name__ == "__main__":
    sys.exit(main())
