"""Boxcar apertures with the keys of a JSON ``extract1d`` reference, on a rectified image.

Pure numpy.  Images are ``(n_offset, n_wave)``: dispersion along the second
axis.  The conventions are jwst's (see `nodcombine.extract_1d.boxcar`):
``ystart``/``ystop`` are inclusive pixel indices covering
``[ystart − ½, ystop + ½]``, ``extract_width`` centres a window on
``(ystart + ystop)/2``, and ``src_coeff``/``bkg_coeff`` are pairs of edge
polynomials (constant term first) in the column index or the wavelength.
"""

import json
from dataclasses import dataclass, fields, replace

import numpy as np

__all__ = ["APERTURE_PARAMETERS", "BACKGROUND_FITS", "BoxAperture", "region_weights"]

#: accepted ``bkg_fit`` values
BACKGROUND_FITS = ("poly", "mean", "median")


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

    @classmethod
    def from_parameters(cls, **parameters):
        """The aperture of step parameters, as ASDF files or a command line give them.

        ``src_coeff``/``bkg_coeff`` may come as lists (ASDF), a JSON string, or
        the pieces configobj splits ``"[[1, 2], [3, 4]]"`` into at the commas.
        """
        for name in ("src_coeff", "bkg_coeff"):
            value = parameters.get(name)
            if isinstance(value, str):
                value = json.loads(value)
            if value is not None and all(isinstance(v, str) for v in value):
                value = json.loads(",".join(value))
            parameters[name] = value
        return cls(**parameters)

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

    def on_source(self, offset, shape, wavelength):
        """The aperture (and its background regions) moved to centre it on the source.

        Parameters
        ----------
        offset : numpy.ndarray, shape (n_offset,)
            Pixels along the slit from the source of each row, increasing.
        shape : tuple of int
            ``(n_offset, n_wave)``.
        wavelength : numpy.ndarray, shape (n_wave,)

        Returns
        -------
        aperture : BoxAperture
        shift : float
            Rows it moved.
        """
        source_row = float(np.interp(0.0, offset, np.arange(shape[0])))
        shift = source_row - self.centre(shape, wavelength)
        return self.shifted(shift, shape[0]), shift

    def background_reaches(self, offset, shape, wavelength, distance, *, tolerance=2.0):
        """Whether a background region lies within ``tolerance`` of ``distance`` from the source.

        A nod difference holds negative images of the source at the nod
        separation: a background region there biases the background low and
        the flux high.
        """
        weights = self.background_weights(shape, wavelength)
        if weights is None or not np.isfinite(distance):
            return False
        rows = weights.max(axis=1) > 0
        return bool(np.any(np.abs(np.abs(np.asarray(offset)[rows]) - distance) < tolerance))

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


#: the step parameters (JSON ``extract1d`` keys) that define a `BoxAperture`
APERTURE_PARAMETERS = tuple(f.name for f in fields(BoxAperture))
