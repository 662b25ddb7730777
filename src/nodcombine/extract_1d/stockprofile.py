"""The source profile of a stock jwst ``_s2d``, which carries none of ours.

Pure numpy/scipy.  A drizzled ``_s2d`` from ``calwebb_spec2``/``spec3`` has
either a ``trace_model`` (a model image of the source: `profile_from_model`)
or nothing, and then a pixel-integrated Gaussian is fitted to its mean spatial
profile (`fit_rectified_profile`).  Images are ``(n_offset, n_wave)``.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from nodcombine.profile import pixel_fraction

__all__ = ["RectifiedProfileFit", "fit_rectified_profile", "profile_from_model"]


def profile_from_model(model):
    """Unit profile and centre row of a model image of the source (a stock ``trace_model``).

    Parameters
    ----------
    model : numpy.ndarray, shape (n_offset, n_wave)
        Model of the data; negative values (the negative nod images) and NaN
        are left out.

    Returns
    -------
    centre : float
        Flux-weighted mean row of the positive image.
    profile : numpy.ndarray, shape (n_offset, n_wave)
        Fraction of each column's positive flux in each bin.
    """
    positive = np.clip(np.nan_to_num(np.asarray(model, dtype=float)), 0.0, None)
    column = positive.sum(axis=0)
    profile = positive / np.where(column > 0, column, 1.0)
    centre = np.average(np.arange(model.shape[0]), weights=positive.sum(axis=1))
    return float(centre), profile


@dataclass(frozen=True)
class RectifiedProfileFit:
    """Gaussian profile fitted to a rectified image without one.

    Attributes
    ----------
    centre, sigma : float
        Row offset of the centre and Gaussian width, pixels.
    profile : numpy.ndarray, shape (n_offset, n_wave)
        Pixel-integrated unit Gaussian, the same in every column.
    """

    centre: float
    sigma: float
    profile: np.ndarray


def fit_rectified_profile(data, variance, offset):
    """Fit one Gaussian (centre, width) to the inverse-variance mean spatial profile.

    For a stock jwst ``_s2d`` that carries no profile: the columns are averaged
    with inverse-variance weights and a pixel-integrated Gaussian plus a constant
    is fitted to the positive source.

    Parameters
    ----------
    data, variance : numpy.ndarray, shape (n_offset, n_wave)
        Rectified image and its total variance.
    offset : numpy.ndarray, shape (n_offset,)
        Nominal row offsets (the fit starts at the brightest row).

    Returns
    -------
    RectifiedProfileFit

    Raises
    ------
    ValueError
        If no row has data or the mean profile has no positive peak.
    """
    data = np.asarray(data, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = np.isfinite(data) & np.isfinite(variance) & (variance > 0)
        weight = np.where(good, 1.0 / np.where(good, variance, 1.0), 0.0)
        row_weight = weight.sum(axis=1)
        mean = np.where(good, data, 0.0) * weight
        collapsed = mean.sum(axis=1) / np.where(row_weight > 0, row_weight, 1.0)
        row_error = 1.0 / np.sqrt(np.where(row_weight > 0, row_weight, np.inf))
    rows = row_weight > 0
    if rows.sum() < 4 or not np.any(collapsed[rows] > 0):
        raise ValueError("the rectified image has no positive source to fit a profile to")
    x = np.asarray(offset, dtype=float)[rows]
    y, e = collapsed[rows], row_error[rows]
    start = x[np.argmax(y)]

    def residuals(p):
        amplitude, centre, sigma, level = p
        return (amplitude * pixel_fraction(x, centre, sigma) + level - y) / e

    fit = least_squares(
        residuals,
        [y.max() * 2.5, start, 1.0, 0.0],
        bounds=([0, x.min(), 0.2, -np.inf], [np.inf, x.max(), np.ptp(x) / 2 + 1, np.inf]),
    )
    _, centre, sigma, _ = fit.x
    profile = pixel_fraction(np.asarray(offset, float), centre, sigma)
    return RectifiedProfileFit(
        centre=float(centre),
        sigma=float(sigma),
        profile=np.broadcast_to(profile[:, None], data.shape).copy(),
    )
