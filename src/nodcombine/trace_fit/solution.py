"""What the trace fit is told and what it finds: settings, forced profiles, solutions.

Pure numpy.  `TraceFitSettings` holds the thresholds, priors and bounds of
`~nodcombine.trace_fit.tracefit.fit_trace`; `TraceSolution` is its result;
`ForcedProfile` carries one source's fitted centre and width to the same
source seen with another disperser (`transfer_profile`).
"""

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre

__all__ = ["ForcedProfile", "TraceFitSettings", "TraceSolution", "transfer_profile"]


@dataclass(frozen=True, slots=True)
class TraceFitSettings:
    """Thresholds, priors and bounds of the trace fit (pixels along the slit).

    Attributes
    ----------
    min_snr : float
        Below this S/N the centre stays at the predicted position (the width is
        still fitted, held by its prior).
    width_snr : float
        From this S/N the width may vary with wavelength (a polynomial of
        degree up to ``max_width_degree`` in s², the degree chosen by the BIC).
    degree_snr : tuple of float
        S/N from which each further degree of the offset polynomial may be
        chosen (by the BIC).
    max_width_degree : int
        Highest degree of the source width² polynomial in wavelength.
    halo_snr : float
        From this S/N a halo (a second, wider Gaussian) may be added, if the
        BIC takes it.
    width_prior_arcsec, width_prior_sigma_arcsec : float
        Gaussian prior on the intrinsic source width (sigma) of a compact
        source and its spread, arcsec; it holds the width of faint sources
        (no switch to the bare PSF) and fades as the S/N grows.
    max_offset : float
        Bound on every offset coefficient; also limited to 0.45 of the
        smallest nod throw so the profile cannot jump onto another image.
    centre_prior, shape_prior : float
        Gaussian prior widths of the constant and of the higher offset terms.
    max_source_sigma : float
        Upper bound of the intrinsic source width.
    huber_scale : float
        Residual (in σ) beyond which the loss grows linearly.
    clip_sigma : float
        Residual (in σ) beyond which a pixel is rejected before the next round.
    iterations : int
        Rounds of fitting and rejection.
    block_snr : float
        S/N per exposure that a flux block should reach: at low S/N per column,
        neighbouring columns share one flux per exposure while the profile is
        fitted, so that hundreds of poorly measured fluxes do not bias the fit
        or make its errors too small (the incidental-parameter problem).
    background_degree : int
        Degree of the polynomial in wavelength of each exposure's background
        (uniform along the slit), which the BIC may add; -1: never.
    """

    min_snr: float = 10.0
    width_snr: float = 20.0
    degree_snr: tuple = (40.0, 80.0)
    max_width_degree: int = 3
    halo_snr: float = 50.0
    width_prior_arcsec: float = 0.08
    width_prior_sigma_arcsec: float = 0.08
    max_offset: float = 3.0
    centre_prior: float = 1.5
    shape_prior: float = 0.5
    max_source_sigma: float = 8.0
    huber_scale: float = 2.0
    clip_sigma: float = 5.0
    iterations: int = 3
    block_snr: float = 5.0
    background_degree: int = 3

    def __post_init__(self):
        for name in (
            "max_offset",
            "centre_prior",
            "shape_prior",
            "max_source_sigma",
            "huber_scale",
            "clip_sigma",
            "block_snr",
            "width_prior_sigma_arcsec",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if list(self.degree_snr) != sorted(self.degree_snr):
            raise ValueError(f"degree_snr must increase, got {self.degree_snr}")


@dataclass(frozen=True, slots=True)
class ForcedProfile:
    """A profile fitted elsewhere (another disperser), in this source's pixels.

    Attributes
    ----------
    coeffs : numpy.ndarray
        Legendre coefficients of the centre offset, pixels.
    wave_range : tuple of float
        Wavelengths (micron) mapped to ``t = −1, 1`` when they were fitted;
        wavelengths outside are clipped to it.
    width_coeffs : numpy.ndarray
        Legendre coefficients of the intrinsic width² in wavelength, pixels².
    label : str
        Where the profile comes from, for the log.
    coeffs_err, width_coeffs_err : numpy.ndarray, optional
        Errors of ``coeffs`` and ``width_coeffs``, carried into the solution.
    halo : tuple
        The halo's flux fraction and relative width, and the wings' Moffat
        power if any (`nodcombine.profile`).
    """

    coeffs: np.ndarray
    wave_range: tuple
    width_coeffs: np.ndarray
    label: str = ""
    coeffs_err: np.ndarray | None = None
    width_coeffs_err: np.ndarray | None = None
    halo: tuple = (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class TraceSolution:
    """The fitted profile of one source.

    Attributes
    ----------
    status : {"FIT", "FORCED", "FALLBACK"}
        What was done.
    message : str
        Why, in words (S/N, model, or the reason for the fallback).
    snr, snr_column : float
        S/N of the source's total flux, and the median S/N per column.
    degree : int
        Degree of the offset polynomial (-1: the predicted centre was kept).
    width_degree : int
        Degree of the source width² polynomial in wavelength (-1: not fitted).
    coeffs, coeffs_err : numpy.ndarray, shape (degree + 1,)
        Legendre coefficients of the offset from the predicted position, pixels,
        and their 1σ errors (NaN when not fitted), from the Gauss–Newton
        covariance scaled by ``sqrt(max(1, chi2/dof))``.
    wave_range : tuple of float
        Wavelengths (micron) mapped to ``t = −1, 1``.
    width_coeffs, width_coeffs_err : numpy.ndarray, shape (width_degree + 1,)
        Legendre coefficients of the intrinsic width² ``s²(t)`` (pixels²), the
        total width being ``σ² = σ_PSF² + s²``, and their 1σ errors.
    width_covariance : numpy.ndarray, shape (width_degree + 1, width_degree + 1)
        Their covariance (for the width's error at each wavelength).
    halo_fraction, halo_scale : float
        The halo's share of the flux and its width over the core's (0 and 1:
        no halo).
    wings_beta, skew : float
        Moffat power of core and halo (``inf``: Gaussians); their skew (0: symmetric).
    chi2 : float
        χ² of the final fit (no Huber down-weighting).
    dof : int
        Degrees of freedom: residuals − skies − fluxes − parameters.
    centre, sigma : numpy.ndarray, shape (n_exp, nx)
        Offset from the predicted position and total width per exposure and
        column, pixels; NaN where the exposure has no wavelength.
    amplitudes, amplitude_variance : numpy.ndarray, shape (n_exp, nx)
        Source flux per exposure and column (the profile sums to 1 over an
        infinite slit) and its variance; NaN where the exposure has no data.
    profile : numpy.ndarray, shape (n_exp, ny, nx)
        Unit-flux image of each exposure's source.
    model : numpy.ndarray, shape (n_exp, ny, nx)
        Model of the nod differences (positive and negative images), data units.
    clipped : numpy.ndarray of bool, shape (n_exp, ny, nx)
        Pixels rejected by the fit.
    """

    status: str
    message: str
    snr: float
    snr_column: float
    degree: int
    width_degree: int
    coeffs: np.ndarray
    coeffs_err: np.ndarray
    wave_range: tuple
    width_coeffs: np.ndarray
    width_coeffs_err: np.ndarray
    width_covariance: np.ndarray
    halo_fraction: float
    halo_scale: float
    wings_beta: float
    skew: float
    chi2: float
    dof: int
    centre: np.ndarray
    sigma: np.ndarray
    amplitudes: np.ndarray
    amplitude_variance: np.ndarray
    profile: np.ndarray
    model: np.ndarray
    clipped: np.ndarray

    @property
    def width_free(self):
        """Whether the source width was fitted."""
        return self.width_degree >= 0

    @property
    def source_sigma2(self):
        """Intrinsic width², pixels²: ``s²`` at the middle of the band (``t = 0``).

        The middle, not the band's mean (the series' constant term), so that the
        number does not move with the degree of the width law: a cubic term that
        widens the red end changes the mean, not the middle.
        """
        return float(self._middle() @ self.width_coeffs)

    @property
    def source_sigma2_err(self):
        """Error of `source_sigma2`, from the width coefficients' covariance."""
        middle = self._middle()
        covariance = np.asarray(self.width_covariance, dtype=float)
        if covariance.shape != (middle.size, middle.size) or not np.all(np.isfinite(covariance)):
            return float(self.width_coeffs_err[0]) if middle.size == 1 else math.nan
        return float(np.sqrt(max(middle @ covariance @ middle, 0.0)))

    def _middle(self):
        """The Legendre polynomials of the width law at ``t = 0``."""
        return legendre.legvander(np.zeros(1), np.size(self.width_coeffs) - 1)[0]

    @property
    def source_sigma(self):
        """Intrinsic source width, pixels (0 when the fit prefers less than the PSF)."""
        return float(np.sqrt(max(self.source_sigma2, 0.0)))

    def summary(self, pixel_scale):
        """One line for the log: status, reason, offset, width, χ²/dof.

        Parameters
        ----------
        pixel_scale : float
            Arcsec per pixel along the slit, to give the width on the sky.
        """
        return (
            f"{self.status} {self.message}; offset {float(np.nanmedian(self.centre)):+.3f} px, "
            f'source sigma {self.source_sigma:.3f} px ({self.source_sigma * pixel_scale:.3f}"), '
            f"chi2/dof {self.chi2 / max(self.dof, 1):.3f}"
        )


def transfer_profile(solution, *, scale_ratio, label=""):
    """The centre and width of one fit, to force on the same source in other pixels.

    Parameters
    ----------
    solution : TraceSolution
        A fit of the source (usually the highest-S/N disperser).
    scale_ratio : float
        Pixel scale along the slit of the fitted data over that of the target
        (arcsec per pixel / arcsec per pixel): offsets scale by it, widths² by
        its square, so the profile is the same on the sky.
    label : str, optional
        Where the profile comes from, for the log.

    Returns
    -------
    ForcedProfile
    """
    return ForcedProfile(
        coeffs=np.asarray(solution.coeffs, dtype=float) * scale_ratio,
        wave_range=solution.wave_range,
        width_coeffs=np.asarray(solution.width_coeffs, dtype=float) * scale_ratio**2,
        label=label,
        coeffs_err=np.asarray(solution.coeffs_err, dtype=float) * scale_ratio,
        width_coeffs_err=np.asarray(solution.width_coeffs_err, dtype=float) * scale_ratio**2,
        halo=(solution.halo_fraction, solution.halo_scale, solution.wings_beta, solution.skew),
    )
