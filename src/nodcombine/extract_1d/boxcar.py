"""Boxcar extraction with the apertures of a JSON ``extract1d`` reference.

Pure numpy/scipy.  Images are ``(n_offset, n_wave)``: dispersion along the
second axis, the layout of our ``_s2d`` (``dispaxis = 1``).

The aperture follows jwst's ``extract_1d`` conventions (jwst 3.0,
``extract.box_profile`` and ``extract1d.extract1d``), so that the same aperture
on the same image gives the same spectrum:

* ``ystart``/``ystop`` (``xstart``/``xstop``) are inclusive pixel indices: the
  aperture covers ``[ystart − ½, ystop + ½]`` in pixel-centre coordinates, and a
  pixel at the edge counts with the fraction of it inside.
* ``extract_width`` centres a window of that many pixels on ``(ystart + ystop)/2``.
* ``src_coeff``/``bkg_coeff`` are pairs of polynomials (constant term first) in
  the column index, or in wavelength (``independent_var = "wavelength"``), giving
  the lower and upper edges of each region in pixel-centre coordinates.
* The background is fitted column by column to the pixels of the ``bkg_coeff``
  regions: a polynomial of order ``bkg_order`` in ``linspace(-1, 1, n_offset)``
  with unit weights (``poly``; ``mean`` is order 0), or their median.  Before the
  fit the image may be smoothed along the dispersion with a boxcar of
  ``smoothing_length`` columns (edges extended, NaNs interpolated).
* The median's variance is jwst's approximation, 1.2² times that of the mean.

Three things differ from jwst, each because jwst's errors are not those of its
estimate:

1. With smoothing, the background variance is that of the smoothed image (the
   average of ``smoothing_length`` columns), not of the raw pixels.
2. The background's contribution to the flux variance counts the aperture
   pixels actually summed (jwst also counts pixels that are NaN in the data).
3. A column whose background cannot be fitted has no flux (jwst subtracts 0).

Fluxes are sums in the data unit times pixels, as in jwst before its unit
conversion.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "BoxExtraction",
    "BoxSpectrum",
    "aperture_profile_fraction",
    "background_fit",
    "boxcar_extract",
    "extract_box",
    "smoothing_matrix",
]

#: jwst's factor between the standard error of a median and of a mean
_MEDIAN_ERROR_FACTOR = 1.2
#: condition number above which a column's background fit is refused (as jwst)
_MAX_CONDITION = 1.0e10


def smoothing_matrix(n, length):
    """Boxcar smoothing of ``n`` columns with extended edges, as a sparse matrix.

    Row ``k`` holds the weight of each input column in output column ``k``
    before normalisation: 1 per kernel tap, so an edge column repeated by the
    extension counts that many times.

    Parameters
    ----------
    n : int
    length : int
        Odd kernel length.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n)
    """
    half = length // 2
    rows = np.repeat(np.arange(n), length)
    cols = np.clip(rows + np.tile(np.arange(-half, half + 1), n), 0, n - 1)
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))


def _smoothed(data, variances, length):
    """Smoothed image and its per-pixel variances (NaNs interpolated over)."""
    # a pixel with a NaN variance adds nothing to the smoothed variance (as
    # jwst's nansum), though its value is smoothed in
    finite = np.isfinite(data) & np.isfinite(sum(variances.values()))
    taps = smoothing_matrix(data.shape[1], length)
    norm = (taps @ np.isfinite(data).T.astype(float)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = (taps @ np.where(np.isfinite(data), data, 0.0).T).T / norm
        taps2 = taps.multiply(taps)
        smooth_var = {
            c: (taps2 @ np.where(finite, v, 0.0).T).T / norm**2 for c, v in variances.items()
        }
    return smooth, smooth_var


@dataclass(frozen=True)
class _Background:
    image: np.ndarray
    sum_variances: dict


def background_fit(data, variances, bkg_weights, src_weights, aperture):
    """Background of each column, and the variance of its sum over the aperture.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_offset, n_wave)
        Image (NaN: no data).
    variances : dict of str to numpy.ndarray
        Its variance components.
    bkg_weights : numpy.ndarray
        Background regions (`BoxAperture.background_weights`); pixels with a
        weight above 0 are used, with unit weight.
    src_weights : numpy.ndarray
        Source aperture weights of the pixels that are summed.
    aperture : BoxAperture

    Returns
    -------
    image : numpy.ndarray
        Background at every pixel (NaN where a column cannot be fitted).
    sum_variances : dict of str to numpy.ndarray
        Variance of ``Σ_rows src_weights · image`` per column, per component.
    """
    total = sum(variances.values())
    region = bkg_weights > 0
    usable = np.isfinite(data) & np.isfinite(total) & region
    if aperture.smoothing_length:
        smooth, smooth_var = _smoothed(data, variances, aperture.smoothing_length)
        usable &= np.isfinite(smooth)
    else:
        smooth, smooth_var = data, variances
    if aperture.bkg_fit == "median":
        # as jwst, the median takes a NaN pixel's smoothed (interpolated) value
        level = _nanmedian_columns(np.where(region, smooth, np.nan))
        return _median_background(level, smooth_var, usable, src_weights)
    return _polynomial_background(smooth, smooth_var, usable, src_weights, aperture.bkg_order)


def _nanmedian_columns(image):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
        return np.nanmedian(image, axis=0)


def _median_background(level, variances, usable, src_weights):
    n_used = usable.sum(axis=0)
    scale = _MEDIAN_ERROR_FACTOR**2 * src_weights.sum(axis=0) ** 2
    sum_variances = {
        c: scale * np.where(usable, v, 0.0).sum(axis=0) / np.maximum(n_used, 1) ** 2
        for c, v in variances.items()
    }
    return _Background(np.broadcast_to(level, usable.shape), sum_variances)


def _polynomial_background(data, variances, usable, src_weights, order):
    ny = data.shape[0]
    design = np.vander(np.linspace(-1.0, 1.0, ny), order + 1, increasing=True)
    mask = usable.T.astype(float)  # (n_wave, ny)
    normal = np.einsum("wr,ri,rj->wij", mask, design, design)
    ok = np.linalg.cond(normal) < _MAX_CONDITION
    inverse = np.zeros_like(normal)
    inverse[ok] = np.linalg.inv(normal[ok])
    target = np.where(usable, data, 0.0).T  # (n_wave, ny)
    coeffs = np.einsum("wij,rj,wr->wi", inverse, design, mask * target)
    image = np.where(ok, design @ coeffs.T, np.nan)
    # the aperture sum of the fit is linear in the used pixels: Σ_p c_p d_p
    summed = src_weights.T @ design  # (n_wave, order + 1): Σ_rows w · y^k
    pixel_coeffs = np.einsum("wi,wij,rj->wr", summed, inverse, design) * mask
    sum_variances = {
        c: np.where(ok, (pixel_coeffs**2 * np.where(usable, v, 0.0).T).sum(axis=1), 0.0)
        for c, v in variances.items()
    }
    return _Background(image, sum_variances)


@dataclass(frozen=True)
class BoxSpectrum:
    """Boxcar sums per wavelength column.

    Attributes
    ----------
    flux : numpy.ndarray, shape (n_wave,)
        Background-subtracted sum of the aperture, data unit times pixels; NaN
        where no pixel was summed.
    variances : dict of str to numpy.ndarray
        Variance of ``flux`` per component, the background's included.
    background : numpy.ndarray
        Background summed over the aperture (0 without background regions).
    background_variances : dict of str to numpy.ndarray
        Variance of ``background`` per component.
    npixels : numpy.ndarray
        Aperture weight summed (fractional pixels count by their fraction).
    weights : numpy.ndarray, shape (n_offset, n_wave)
        Weight of each pixel in the sum.
    limits : tuple of float
        Mean lower and upper row, first and last column of the aperture
        (inclusive, 0-based; columns None if the aperture is empty).
    """

    flux: np.ndarray
    variances: dict
    background: np.ndarray
    background_variances: dict
    npixels: np.ndarray
    weights: np.ndarray
    limits: tuple

    @property
    def error(self):
        """Total 1σ error of ``flux``."""
        return np.sqrt(sum(self.variances.values()))


def boxcar_extract(data, variances, usable, wavelength, aperture):
    """Sum a rectified image over a box aperture, minus a fitted background.

    Parameters
    ----------
    data : numpy.ndarray, shape (n_offset, n_wave)
    variances : dict of str to numpy.ndarray
        Variance components (`VARIANCE_COMPONENTS`).
    usable : numpy.ndarray of bool
        Bins not flagged; the rest count as NaN (as jwst's ``match_nans_and_flags``).
    wavelength : numpy.ndarray, shape (n_wave,), or None
        For ``independent_var = 'wavelength'``; columns without a wavelength
        are not extracted.
    aperture : BoxAperture

    Returns
    -------
    BoxSpectrum
    """
    data = np.where(usable, data, np.nan)
    variances = {c: np.asarray(variances[c], dtype=float) for c in VARIANCE_COMPONENTS}
    shape = data.shape
    weights = aperture.source_weights(shape, wavelength)
    if wavelength is not None:
        weights[:, ~np.isfinite(np.asarray(wavelength, dtype=float))] = 0.0
    columns = np.flatnonzero(weights.sum(axis=0) > 0)
    limits = (
        *aperture.row_limits(shape, wavelength),
        int(columns[0]) if columns.size else None,
        int(columns[-1]) if columns.size else None,
    )
    if aperture.subtracts_background:
        bkg_weights = aperture.background_weights(shape, wavelength)
        summed = np.where(np.isfinite(data), weights, 0.0)
        background = background_fit(data, variances, bkg_weights, summed, aperture)
        data = data - background.image
    else:
        background = None
    weights = np.where(np.isfinite(data), weights, 0.0)
    npixels = weights.sum(axis=0)
    flux = np.where(npixels > 0, (np.where(weights > 0, data, 0.0) * weights).sum(axis=0), np.nan)
    # a NaN variance under a summed pixel adds nothing, as in jwst (nansum)
    flux_variances = {
        c: np.nansum(np.where(weights > 0, v, 0.0) * weights**2, axis=0)
        for c, v in variances.items()
    }
    if background is None:
        zeros = np.zeros(shape[1])
        return BoxSpectrum(
            flux, flux_variances, zeros, {c: zeros for c in variances}, npixels, weights, limits
        )
    level = (np.where(weights > 0, background.image, 0.0) * weights).sum(axis=0)
    return BoxSpectrum(
        flux=flux,
        variances={c: flux_variances[c] + background.sum_variances[c] for c in variances},
        background=level,
        background_variances=background.sum_variances,
        npixels=npixels,
        weights=weights,
        limits=limits,
    )


def aperture_profile_fraction(weights, profile):
    """Fraction of the source's profile a box aperture holds, per column.

    Parameters
    ----------
    weights : numpy.ndarray, shape (n_offset, n_wave)
        The aperture's pixel weights (`BoxSpectrum.weights`).
    profile : numpy.ndarray or None, shape (n_offset, n_wave)
        Fraction of the source's flux in each bin.

    Returns
    -------
    numpy.ndarray, shape (n_wave,)
        NaN everywhere without a profile.
    """
    if profile is None:
        return np.full(weights.shape[1], np.nan)
    return np.nansum(weights * np.nan_to_num(profile), axis=0)


@dataclass(frozen=True)
class BoxExtraction:
    """A box extraction of one source and how its aperture was placed.

    Attributes
    ----------
    spectrum : BoxSpectrum
    aperture : BoxAperture
        The aperture used (moved onto the source, if asked).
    shift : float
        Rows the aperture was moved (0 if not).
    profile_fraction : numpy.ndarray, shape (n_wave,)
        Fraction of the source's profile inside the aperture (NaN without one).
    reaches_negative_images : bool
        Whether a background region lies near a negative nod image.
    """

    spectrum: BoxSpectrum
    aperture: object
    shift: float
    profile_fraction: np.ndarray
    reaches_negative_images: bool


def extract_box(
    data, variances, usable, wavelength, aperture, *, offset, profile, nod_separation, on_source
):
    """Place a box aperture (on the source, if asked), check it and extract.

    Parameters
    ----------
    data, variances, usable, wavelength
        As for `boxcar_extract`.
    aperture : BoxAperture
    offset : numpy.ndarray, shape (n_offset,)
        Pixels along the slit from the source of each row.
    profile : numpy.ndarray or None, shape (n_offset, n_wave)
        Fraction of the source's flux in each bin.
    nod_separation : float
        Distance of the negative nod images from the source, pixels.
    on_source : bool
        Move the aperture and its background regions to centre it on the source.

    Returns
    -------
    BoxExtraction
    """
    shift = 0.0
    if on_source:
        aperture, shift = aperture.on_source(offset, data.shape, wavelength)
    reaches = aperture.background_reaches(offset, data.shape, wavelength, nod_separation)
    spectrum = boxcar_extract(data, variances, usable, wavelength, aperture)
    return BoxExtraction(
        spectrum=spectrum,
        aperture=aperture,
        shift=shift,
        profile_fraction=aperture_profile_fraction(spectrum.weights, profile),
        reaches_negative_images=reaches,
    )
