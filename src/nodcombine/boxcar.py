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
from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from nodcombine.noddiff import VARIANCE_COMPONENTS

__all__ = [
    "BACKGROUND_FITS",
    "BoxAperture",
    "BoxSpectrum",
    "background_fit",
    "boxcar_extract",
    "region_weights",
    "smoothing_matrix",
]

#: accepted ``bkg_fit`` values
BACKGROUND_FITS = ("poly", "mean", "median")

#: jwst's factor between the standard error of a median and of a mean
_MEDIAN_ERROR_FACTOR = 1.2
#: condition number above which a column's background fit is refused (as jwst)
_MAX_CONDITION = 1.0e10


@dataclass(frozen=True)
class BoxAperture:
    """A boxcar aperture on a rectified image (dispersion along x).

    Attributes mirror the JSON ``extract1d`` keys; ``None`` means "not given".

    Attributes
    ----------
    xstart, xstop : float or None
        First and last column (inclusive); default the whole image.
    ystart, ystop : float or None
        First and last row (inclusive); default the whole image.
    extract_width : float or None
        Rows of the aperture, centred on ``(ystart + ystop) / 2``.
    src_coeff : tuple of tuple of float or None
        Lower and upper edge polynomials of source regions, alternating.
    bkg_coeff : tuple of tuple of float or None
        The same for background regions; given, a background is subtracted.
    bkg_fit : {'poly', 'mean', 'median'}
        How the background of a column is estimated.
    bkg_order : int
        Polynomial order of a ``poly`` fit (``mean`` is 0).
    smoothing_length : int
        Boxcar length (odd, >= 3) smoothing the image along the dispersion
        before the background fit; 0: none.
    independent_var : {'pixel', 'wavelength'}
        Variable of the ``src_coeff``/``bkg_coeff`` polynomials.
    """

    xstart: float | None = None
    xstop: float | None = None
    ystart: float | None = None
    ystop: float | None = None
    extract_width: float | None = None
    src_coeff: tuple | None = None
    bkg_coeff: tuple | None = None
    bkg_fit: str = "poly"
    bkg_order: int = 0
    smoothing_length: int = 0
    independent_var: str = "pixel"

    def __post_init__(self):
        for name in ("src_coeff", "bkg_coeff"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _coefficient_pairs(name, value))
        if self.bkg_fit not in BACKGROUND_FITS:
            raise ValueError(f"bkg_fit={self.bkg_fit!r}; expected one of {BACKGROUND_FITS}")
        if self.bkg_fit == "mean":
            object.__setattr__(self, "bkg_fit", "poly")
            object.__setattr__(self, "bkg_order", 0)
        if int(self.bkg_order) != self.bkg_order or self.bkg_order < 0:
            raise ValueError(f"bkg_order={self.bkg_order!r}; expected an integer >= 0")
        sm = self.smoothing_length
        if sm != 0 and (int(sm) != sm or sm < 3 or sm % 2 == 0):
            raise ValueError(f"smoothing_length={sm!r}; expected 0 or an odd integer >= 3")
        if self.independent_var not in ("pixel", "wavelength"):
            raise ValueError(
                f"independent_var={self.independent_var!r}; expected 'pixel' or 'wavelength'"
            )
        if self.extract_width is not None and self.extract_width <= 0:
            raise ValueError(f"extract_width={self.extract_width!r}; expected > 0")

    @property
    def subtracts_background(self):
        """Whether background regions are given."""
        return self.bkg_coeff is not None

    def centre(self, shape, wavelength):
        """Nominal centre row of the source aperture, from its limits.

        The mean of the regions' mid-lines (for ``src_coeff``, over the columns
        with a value), not clipped to the image: an aperture partly or wholly
        outside still has its own centre.

        Raises
        ------
        ValueError
            If no column gives the aperture a finite position.
        """
        if self.src_coeff is None:
            centre = float(np.mean(self._row_limits(shape[0])))
        else:
            intervals = self._polynomial_intervals(self.src_coeff, shape, wavelength)
            mids = [np.asarray((lo + hi) / 2.0)[0] for lo, hi in intervals]
            finite = [m[np.isfinite(m)] for m in mids]
            centre = (
                float(np.mean([m.mean() for m in finite]))
                if all(m.size for m in finite)
                else np.nan
            )
        if not np.isfinite(centre):
            raise ValueError(f"the box aperture has no finite position ({self})")
        return centre

    def shifted(self, rows, ny):
        """The same aperture moved by ``rows`` along the cross-dispersion axis.

        Parameters
        ----------
        rows : float
            Shift, positive towards higher rows.
        ny : int
            Rows of the image (an open ``ystart``/``ystop`` is its edge).

        Returns
        -------
        BoxAperture
        """
        ystart, ystop = (0.0, ny - 1.0)
        return replace(
            self,
            ystart=(ystart if self.ystart is None else self.ystart) + rows,
            ystop=(ystop if self.ystop is None else self.ystop) + rows,
            src_coeff=_shift_constant(self.src_coeff, rows),
            bkg_coeff=_shift_constant(self.bkg_coeff, rows),
        )

    def source_weights(self, shape, wavelength):
        """Fraction of each pixel inside the source aperture.

        Parameters
        ----------
        shape : tuple of int
            ``(n_offset, n_wave)``.
        wavelength : numpy.ndarray, shape (n_wave,) or shape
            Used with ``independent_var = 'wavelength'``.

        Returns
        -------
        numpy.ndarray, shape ``shape``
        """
        ny, nx = shape
        if self.src_coeff is not None:
            intervals = self._polynomial_intervals(self.src_coeff, shape, wavelength)
        else:
            lower, upper = self._row_limits(ny)
            intervals = [(lower - 0.5, upper + 0.5)]
        return self._clip_columns(region_weights(shape, intervals), nx)

    def background_weights(self, shape, wavelength):
        """Pixels of the background regions: fractions (``poly``) or 0/1 (``median``)."""
        if self.bkg_coeff is None:
            return None
        intervals = self._polynomial_intervals(self.bkg_coeff, shape, wavelength)
        weights = region_weights(shape, intervals, partial=self.bkg_fit != "median")
        return self._clip_columns(weights, shape[1])

    def row_limits(self, shape, wavelength):
        """Mean lower and upper row (inclusive) of the source aperture, as jwst reports."""
        if self.src_coeff is None:
            return self._row_limits(shape[0])
        intervals = self._polynomial_intervals(self.src_coeff, shape, wavelength)
        return (
            min(float(np.mean(lo)) + 0.5 for lo, _ in intervals),
            max(float(np.mean(hi)) - 0.5 for _, hi in intervals),
        )

    def _row_limits(self, ny):
        ystart = 0.0 if self.ystart is None else float(self.ystart)
        ystop = ny - 1.0 if self.ystop is None else float(self.ystop)
        if self.extract_width is None:
            return ystart, ystop
        lower = (ystart + ystop) / 2.0 - (self.extract_width - 1.0) / 2.0
        return lower, lower + self.extract_width - 1.0

    def _polynomial_intervals(self, polynomials, shape, wavelength):
        nx = shape[1]
        if self.independent_var == "wavelength":
            if wavelength is None:
                raise ValueError("independent_var='wavelength' needs the wavelengths")
            variable = np.broadcast_to(np.asarray(wavelength, dtype=float), shape)
        else:
            variable = np.broadcast_to(np.arange(nx, dtype=float), shape)
        return [
            (
                np.polynomial.polynomial.polyval(variable, lo),
                np.polynomial.polynomial.polyval(variable, hi),
            )
            for lo, hi in zip(polynomials[::2], polynomials[1::2], strict=True)
        ]

    def _clip_columns(self, weights, nx):
        first = 0 if self.xstart is None else int(np.ceil(self.xstart))
        last = nx - 1 if self.xstop is None else int(np.floor(self.xstop))
        weights[:, : max(first, 0)] = 0.0
        weights[:, max(last + 1, 0) :] = 0.0
        return weights


def _coefficient_pairs(name, value):
    regions = tuple(tuple(float(c) for c in np.atleast_1d(poly)) for poly in value)
    if len(regions) % 2 or not regions or any(len(poly) == 0 for poly in regions):
        raise ValueError(
            f"{name} must alternate lower and upper edge polynomials (got {len(regions)} lists)"
        )
    return regions


def _shift_constant(polynomials, rows):
    if polynomials is None:
        return None
    return tuple((poly[0] + rows, *poly[1:]) for poly in polynomials)


def region_weights(shape, intervals, *, partial=True):
    """Fraction of each row's pixel inside the union of intervals along the column.

    Parameters
    ----------
    shape : tuple of int
        ``(n_offset, n_wave)``.
    intervals : list of (lower, upper)
        Edges in pixel-centre coordinates (row ``i`` spans ``[i − ½, i + ½]``),
        scalars or arrays broadcasting to ``(ny, n_wave)``.
    partial : bool
        Count edge pixels by the fraction inside; else only whole pixels.

    Returns
    -------
    numpy.ndarray, shape ``shape``
        The largest weight any interval gives a pixel.
    """
    rows = np.arange(shape[0], dtype=float)[:, None]
    weights = None
    for lower, upper in intervals:
        # jwst's rule: 1 for rows within [lower + ½, upper − ½], and the pixel
        # fraction beyond either edge
        inside = np.minimum(rows - np.asarray(lower) + 0.5, np.asarray(upper) - rows + 0.5)
        inside = np.nan_to_num(inside, nan=0.0)  # a column without a limit: no pixel
        inside = np.clip(inside, 0.0, 1.0) if partial else (inside >= 1.0).astype(float)
        weights = inside if weights is None else np.maximum(weights, inside)
    return np.array(np.broadcast_to(weights, shape), dtype=float)


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
