"""Independent subsets of a visit: a check of the extracted errors that needs no truth.

`own_difference_spectra` extracts each exposure's own nod difference alone:
``nod_diff`` and ``trace_fit`` have run on the whole visit (a difference needs
the other positions, a profile fit two exposures); ``rectify`` and
``optimal_extract_1d`` then see one exposure, the others flagged
``DO_NOT_USE``.  With a window of less than half the nod throw each spectrum
takes pixels no other one takes (a difference holds the other exposures too,
but at the rows of its own image, where the other spectra take nothing), so
the spectra are independent and their scatter about their weighted mean must
match FLUX_ERROR: `subset_chi2` has ``n_subsets − 1`` degrees of freedom per
wavelength bin.

What the subsets can differ by besides noise, and the combined spectrum does
not carry (``additive_degree``, ``exclude``):

- a background residual of each exposure, smooth in wavelength and uniform
  along the slit (the sky of one exposure brighter than the others'): in a
  3-point nod with one exposure per position it enters the differences as
  ``δ_e − mean(δ_others)``, which sums to zero over the exposures, so it
  cancels in the combined extraction but not in one exposure's.
  ``additive_degree`` fits each subset a Legendre polynomial in wavelength,
  the polynomials summing to zero (the combination keeps their mean);
- the throughput of the shutter each exposure puts the source in, and the
  sampling of unresolved lines at a different sub-pixel phase in each: bins
  of high S/N disagree in proportion to their flux.  ``exclude`` leaves such
  bins out (`bright_bins`).

Used by ``tests/test_error_scale.py`` and ``benchmarks/bench_ceers_errors.py``
on the CEERS 933 triplet (docs/benchmarks.md, profile fidelity 5).
"""

import numpy as np
from jwst.datamodels import ModelContainer
from numpy.polynomial import legendre
from stdatamodels.jwst import datamodels

from nodcombine.extract_1d.step import OptimalExtract1dStep
from nodcombine.rectify.step import RectifyStep

__all__ = ["bright_bins", "own_difference_spectra", "subset_chi2", "subset_pulls"]

_DO_NOT_USE = datamodels.dqflags.pixel["DO_NOT_USE"]


def own_difference_spectra(traced, *, window=2.5):
    """Per exposure, the spectra extracted from its own difference alone.

    Parameters
    ----------
    traced : list of DataModel
        ``trace_fit``'s products of one visit (not modified).
    window : float, optional
        Half-width of the extraction window, pixels; keep it below half the
        nod throw so that the subsets take disjoint pixels.

    Returns
    -------
    flux, error : numpy.ndarray, shape (n_exposures, n_spectra, n_wave)
        FLUX and FLUX_ERROR, one row per exposure.

    Raises
    ------
    ValueError
        If the subsets' spectra do not share one wavelength grid.
    """
    flux, error, wave = [], [], []
    for keep in range(len(traced)):
        subset = ModelContainer([model.copy() for model in traced])
        for i, model in enumerate(subset):
            if i != keep:
                for slit in getattr(model, "slits", [model]):
                    slit.dq = slit.dq | _DO_NOT_USE
        spectra = OptimalExtract1dStep.call(
            RectifyStep.call(subset), apply_pathloss=False, window=window
        ).spec
        columns = [[np.asarray(s.spec_table[c], float) for s in spectra] for c in _COLUMNS]
        for out, values in zip((flux, error, wave), columns, strict=True):
            out.append(values)
    if not all(_same_grid(w, wave[0]) for w in wave):
        raise ValueError("the subsets' spectra do not share one wavelength grid")
    return np.array(flux), np.array(error)


def _same_grid(spectra, reference):
    return len(spectra) == len(reference) and all(
        np.array_equal(a, b, equal_nan=True) for a, b in zip(spectra, reference, strict=True)
    )


_COLUMNS = ("FLUX", "FLUX_ERROR", "WAVELENGTH")


def bright_bins(flux, error, *, snr=6.0, grow=3):
    """Bins where the subsets' weighted mean exceeds ``snr``, grown by ``grow`` bins.

    Parameters
    ----------
    flux, error : numpy.ndarray, shape (n_subsets, n_spectra, n_wave)
    snr : float, optional
    grow : int, optional

    Returns
    -------
    numpy.ndarray of bool, shape (n_spectra, n_wave)
    """
    mean, weight = _weighted_mean(flux, error)
    with np.errstate(invalid="ignore"):
        bright = np.nan_to_num(mean * np.sqrt(weight)) > snr
    kernel = np.ones(2 * grow + 1)
    return np.array([np.convolve(row, kernel, mode="same") > 0 for row in bright])


def subset_chi2(flux, error, *, edge=5, additive_degree=-1, exclude=None):
    """chi2/dof of independent spectra about their weighted mean, and its dof.

    Parameters
    ----------
    flux, error : numpy.ndarray, shape (n_subsets, n_spectra, n_wave)
    edge : int, optional
        Bins left out at each end of every spectrum (partly covered by the nods).
    additive_degree : int, optional
        ``≥ 0``: each subset's spectrum may differ by a Legendre polynomial of
        this degree in wavelength (bin index), the subsets' polynomials
        summing to zero; fitted by linear least squares, their
        ``(n_subsets − 1)(degree + 1)`` parameters per spectrum taken from
        the dof.  ``-1`` (default): none.
    exclude : numpy.ndarray of bool, shape (n_spectra, n_wave), optional
        Bins to leave out (`bright_bins`).

    Returns
    -------
    chi2_dof : float
    dof : int
    """
    good = _usable(flux, error, edge, exclude)
    chi2, dof = 0.0, 0
    for k in range(flux.shape[1]):
        if not good[k].any():
            continue
        f, e = flux[:, k, good[k]], error[:, k, good[k]]
        residual, n_params = _residuals(f, e, additive_degree)
        chi2 += float(np.sum(residual**2))
        dof += (f.shape[0] - 1) * f.shape[1] - n_params
    return chi2 / max(dof, 1), dof


def subset_pulls(flux, error, *, edge=5):
    """Each subset against the weighted mean of the others, and the bins' S/N.

    Returns
    -------
    z : numpy.ndarray, shape (n_subsets, n_bins)
        ``(f_k − mean of the others) / sqrt(σ_k² + σ_others²)`` over the
        usable bins of all spectra.
    snr : numpy.ndarray, shape (n_bins,)
        S/N of the weighted mean of all subsets in those bins.
    """
    good = _usable(flux, error, edge, None)
    f, e = flux[:, good], error[:, good]
    weight = 1.0 / e**2
    z = []
    for k in range(len(f)):
        w = np.delete(weight, k, axis=0)
        others = np.sum(np.delete(f, k, axis=0) * w, 0) / w.sum(0)
        z.append((f[k] - others) / np.sqrt(e[k] ** 2 + 1.0 / w.sum(0)))
    mean = np.sum(f * weight, 0) / weight.sum(0)
    return np.array(z), mean * np.sqrt(weight.sum(0))


def _usable(flux, error, edge, exclude):
    good = np.all(np.isfinite(flux) & np.isfinite(error) & (error > 0), axis=0)
    if edge:
        good[..., :edge] = good[..., -edge:] = False
    if exclude is not None:
        good &= ~np.asarray(exclude, bool)
    return good


def _weighted_mean(flux, error):
    good = np.isfinite(flux) & np.isfinite(error) & (error > 0)
    weight = np.where(good, 1.0 / np.where(good, error, 1.0) ** 2, 0.0)
    total = weight.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.sum(np.where(good, flux, 0.0) * weight, axis=0) / total
    return mean, total


def _residuals(flux, error, degree):
    """Whitened residuals about the weighted mean after the additive terms, and their count.

    The model ``f_e = F + A_e`` with ``A_e = B c_e`` and ``Σ_e c_e = 0`` is
    linear: with ``F`` profiled out, the whitened residual is ``M (f − B c)``
    for a fixed projection ``M``, so ``c`` follows from one least-squares solve.
    """
    n_sub, n = flux.shape
    sqrt_w = 1.0 / error

    def whitened(values):  # residuals about the weighted mean, whitened
        weight = sqrt_w**2
        mean = np.sum(values * weight, 0) / weight.sum(0)
        return ((values - mean) * sqrt_w).ravel()

    base = whitened(flux)
    if degree < 0:
        return base, 0
    basis = legendre.legvander(np.linspace(-1.0, 1.0, n), degree)
    columns = []
    for e in range(n_sub - 1):  # the last subset's terms are minus the sum of the others
        for j in range(degree + 1):
            shift = np.zeros_like(flux)
            shift[e], shift[-1] = basis[:, j], -basis[:, j]
            columns.append(whitened(shift))
    design = np.array(columns).T
    coeffs = np.linalg.lstsq(design, base, rcond=None)[0]
    return base - design @ coeffs, design.shape[1]
