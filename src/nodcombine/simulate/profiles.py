"""The families a simulated source's profile along the slit is drawn from.

The pipeline's trace fit assumes the ``psf_law`` family: a Gaussian whose
sigma follows ``σ(λ)² = σ_PSF(λ)² + s²`` (`nodcombine.psf`).  The other
families break that assumption on purpose, so that a fit can be judged on
data it does not model.  Each family's width is anchored on the PSF law's
total sigma, ``σ_law(λ) = √(σ_PSF(λ)² + s²)`` (``s`` = ``source_sigma_arcsec``;
``σ_PSF = psf_fwhm_arcsec / 2.3548``, as the simulator has always used), and
``λ_mid`` is the wavelength at the middle of the mode's band (its middle
wavelength node).  With ``u`` the distance from the profile's centre (its mean)
along the slit:

``psf_law``
    Gaussian of sigma ``σ_law(λ)`` (the default, and what the simulator always drew).
``constant``
    Gaussian of constant sigma ``σ₀`` = ``sigma_arcsec`` (default ``σ_law(λ_mid)``).
``steep``
    Gaussian of sigma ``√(σ_law(λ)² + (s₀ (λ / λ_mid)^p)²)``: an intrinsic width
    growing as a power of wavelength (colour gradients), never narrower than
    the PSF law; ``s₀`` = ``sigma_arcsec`` (default ``σ_law(λ_mid)``), ``p`` =
    ``power`` (default 1.5; the PSF law's log slope never exceeds 1).
``moffat``
    ``[1 + (u/α)²]^(−β)``, ``β`` = ``beta`` (default 2.5), ``α`` from its FWHM
    ``2 α √(2^(1/β) − 1)`` = ``fwhm_arcsec`` (default ``2.3548 σ_law(λ)``, the PSF
    law's FWHM).
``core_halo``
    ``(1 − f) N(u; σ_c) + f N(u; k σ_c)``: ``σ_c`` = ``sigma_arcsec`` (default
    ``σ_law(λ)``), ``f`` = ``halo_fraction`` (default 0.25), ``k`` =
    ``halo_scale`` (default 3).
``asymmetric``
    Split normal, sigma ``σ_lo`` towards decreasing and ``σ_hi = r σ_lo``
    towards increasing row (``r`` = ``sigma_ratio``, default 1.3), *mean-centred*
    (the mode lies ``√(2/π)(σ_hi − σ_lo)`` below the centre), scaled so that its
    second-moment width is ``sigma_arcsec`` (default ``σ_law(λ)``).

A parameter set to anything but its default in a family that does not use it
is an error.
"""

import math
from dataclasses import dataclass, fields

import numpy as np

from nodcombine.simulate.scene import source_sigma_pix
from nodcombine.simulate.shapes import CoreHaloShape, GaussianShape, MoffatShape, SplitNormalShape

__all__ = ["FAMILIES", "PSF_LAW", "SourceProfile", "profiles_per_slit"]

#: the parameters each family uses (the others must keep their defaults)
FAMILIES = {
    "psf_law": (),
    "constant": ("sigma_arcsec",),
    "steep": ("sigma_arcsec", "power"),
    "moffat": ("fwhm_arcsec", "beta"),
    "core_halo": ("sigma_arcsec", "halo_fraction", "halo_scale"),
    "asymmetric": ("sigma_arcsec", "sigma_ratio"),
}

#: FWHM per sigma as `source_sigma_pix` converts the PSF's FWHM
_FWHM_PER_SIGMA = 2.3548


@dataclass(frozen=True, slots=True)
class SourceProfile:
    """A source's profile family along the slit and its parameters.

    See the module docstring for the formulas.

    Attributes
    ----------
    family : str
        One of `FAMILIES`.
    sigma_arcsec : float or None
        ``constant``: the sigma; ``steep``: the intrinsic sigma at mid-band;
        ``core_halo``: the core's sigma; ``asymmetric``: the second-moment
        width.  None: the PSF law's total sigma (at mid-band for ``constant``
        and ``steep``, at each wavelength otherwise).
    power : float
        ``steep``: exponent of ``λ / λ_mid``.
    fwhm_arcsec : float or None
        ``moffat``: the FWHM (None: the PSF law's, at each wavelength).
    beta : float
        ``moffat``: the power β (> 1.5).
    halo_fraction : float
        ``core_halo``: fraction of the flux in the halo (0 ≤ f < 1).
    halo_scale : float
        ``core_halo``: halo sigma over core sigma.
    sigma_ratio : float
        ``asymmetric``: ``σ_hi / σ_lo``, the sigma towards increasing row over
        the one towards decreasing row.
    """

    family: str = "psf_law"
    sigma_arcsec: float | None = None
    power: float = 1.5
    fwhm_arcsec: float | None = None
    beta: float = 2.5
    halo_fraction: float = 0.25
    halo_scale: float = 3.0
    sigma_ratio: float = 1.3

    def __post_init__(self):
        """Check the family and its parameters.

        Raises
        ------
        ValueError
            For an unknown family, a parameter the family does not use set to
            anything but its default, or a parameter out of its range.
        """
        if self.family not in FAMILIES:
            raise ValueError(
                f"source profile family must be one of {list(FAMILIES)}, got {self.family!r}"
            )
        unused = [
            f.name
            for f in fields(self)
            if f.name != "family"
            and f.name not in FAMILIES[self.family]
            and getattr(self, f.name) != f.default
        ]
        if unused:
            raise ValueError(f"the {self.family} profile does not use {', '.join(unused)}")
        self._check_values()

    def _check_values(self):
        """Raise for parameters out of their range."""
        checks = {
            "sigma_arcsec": self.sigma_arcsec is None or self.sigma_arcsec > 0,
            "fwhm_arcsec": self.fwhm_arcsec is None or self.fwhm_arcsec > 0,
            "power": math.isfinite(self.power),
            "beta": 1.5 < self.beta < math.inf,
            "halo_fraction": 0.0 <= self.halo_fraction < 1.0,
            "halo_scale": 0.0 < self.halo_scale < math.inf,
            "sigma_ratio": 0.0 < self.sigma_ratio < math.inf,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"source profile parameters out of range: {', '.join(bad)}")

    @classmethod
    def coerce(cls, value):
        """A `SourceProfile` from a family name or a `SourceProfile`.

        Parameters
        ----------
        value : str or SourceProfile
            Family name (default parameters) or a profile.

        Returns
        -------
        SourceProfile
            The profile.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(family=value)
        raise TypeError(f"a source profile is a family name or a SourceProfile, got {value!r}")

    def shape(self, mode, wave, source_sigma_arcsec):
        """The profile's shape at each wavelength, in pixels.

        Parameters
        ----------
        mode : InstrumentMode
            Observing mode (instrument, pixel scale, middle wavelength).
        wave : numpy.ndarray
            Wavelength of each column, micron.
        source_sigma_arcsec : float
            Intrinsic Gaussian sigma ``s`` of the source in the PSF law, arcsec.

        Returns
        -------
        ProfileShape
            Per-column shape; ``psf_law`` gives a `GaussianShape` of sigma
            `source_sigma_pix`, exactly what the simulator always drew.
        """
        law = source_sigma_pix(mode, wave, source_sigma_arcsec)
        if self.family == "psf_law":
            return GaussianShape(sigma=law)
        law_mid = source_sigma_pix(mode, mode.wave_nodes_um[1], source_sigma_arcsec)
        return _SHAPERS[self.family](self, mode, wave, law, law_mid)


#: the default profile: what the simulator always drew
PSF_LAW = SourceProfile()


def _pix(arcsec, mode, wave):
    """An arcsec width in pixels, one value per column."""
    return np.full(np.shape(wave), arcsec / mode.pixel_scale)


def _constant(profile, mode, wave, law, law_mid):
    sigma = law_mid if profile.sigma_arcsec is None else profile.sigma_arcsec / mode.pixel_scale
    return GaussianShape(sigma=np.full(np.shape(wave), float(sigma)))


def _steep(profile, mode, wave, law, law_mid):
    sigma = law_mid if profile.sigma_arcsec is None else profile.sigma_arcsec / mode.pixel_scale
    intrinsic = float(sigma) * (wave / mode.wave_nodes_um[1]) ** profile.power
    return GaussianShape(sigma=np.hypot(law, intrinsic))


def _moffat(profile, mode, wave, law, law_mid):
    fwhm = law * _FWHM_PER_SIGMA
    if profile.fwhm_arcsec is not None:
        fwhm = _pix(profile.fwhm_arcsec, mode, wave)
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / profile.beta) - 1.0))
    return MoffatShape(alpha=alpha, beta=float(profile.beta))


def _core_halo(profile, mode, wave, law, law_mid):
    core = law if profile.sigma_arcsec is None else _pix(profile.sigma_arcsec, mode, wave)
    return CoreHaloShape(
        sigma_core=core,
        sigma_halo=profile.halo_scale * core,
        halo_fraction=float(profile.halo_fraction),
    )


def _asymmetric(profile, mode, wave, law, law_mid):
    width = law if profile.sigma_arcsec is None else _pix(profile.sigma_arcsec, mode, wave)
    r = profile.sigma_ratio
    # variance of a split normal: σ_lo σ_hi + (1 − 2/π)(σ_hi − σ_lo)², σ_hi = r σ_lo
    sigma_lo = width / np.sqrt(r + (1.0 - 2.0 / np.pi) * (r - 1.0) ** 2)
    return SplitNormalShape(sigma_lo=sigma_lo, sigma_hi=r * sigma_lo)


_SHAPERS = {
    "constant": _constant,
    "steep": _steep,
    "moffat": _moffat,
    "core_halo": _core_halo,
    "asymmetric": _asymmetric,
}


def profiles_per_slit(value, n_slits):
    """Broadcast a profile (or one per slit) to one `SourceProfile` per slit.

    Parameters
    ----------
    value : str, SourceProfile or list or tuple of them
        One profile for every slit, or one per slit.
    n_slits : int
        Slits per exposure.

    Returns
    -------
    tuple of SourceProfile
        One per slit.

    Raises
    ------
    ValueError
        When a sequence does not have one profile per slit, or a family or a
        parameter is unknown or out of range.
    """
    if not isinstance(value, (list, tuple)):
        value = [value] * n_slits
    profiles = tuple(SourceProfile.coerce(v) for v in value)
    if len(profiles) != n_slits:
        raise ValueError(f"source_profile must be one profile or one per slit ({n_slits})")
    return profiles
