"""The options of one simulated visit, validated once and passed around as one object.

`simulate_nodded_visit` takes its options as keyword arguments; `VisitOptions`
holds them after validation (per-slit values broadcast to one per slit), and
`VisitOptions.slit` hands out the `SlitSource` of one slit.  The values keep
the arithmetic of the arguments they come from, so a seeded visit is the same
bit for bit whichever way the options travel.
"""

import operator
from dataclasses import dataclass

import numpy as np

from nodcombine.simulate.modes import check_nod_pattern
from nodcombine.simulate.profiles import PSF_LAW, SourceProfile, profiles_per_slit

__all__ = ["SlitSource", "VisitOptions", "as_per_slit"]

# options given as a scalar or as one value per slit, in the order they are checked
_PER_SLIT = ("source_peak", "source_offset_arcsec", "source_sigma_arcsec", "position_error_arcsec")


def as_per_slit(value, n_slits, name):
    """Broadcast a scalar or a sequence to one value per slit.

    Parameters
    ----------
    value : float or sequence of float
        The option as given.
    n_slits : int
        Slits per exposure.
    name : str
        Option name, for the error message.

    Returns
    -------
    tuple of float
        One value per slit.

    Raises
    ------
    ValueError
        When a sequence does not have one value per slit.
    """
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n_slits, float(arr))
    if arr.shape != (n_slits,):
        raise ValueError(f"{name} must be a scalar or have one value per slit ({n_slits})")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True, slots=True)
class SlitSource:
    """The source in one slit and the MSA defects simulated there.

    Attributes
    ----------
    index : int
        Slit number ``k`` in the exposure.
    peak : float
        Peak surface brightness of the continuum at mid-band, MJy/sr.
    offset_arcsec : float
        Planned along-slit offset from the shutter (MOS) or slit centre, arcsec;
        what ``source_ypos`` and the WCS say.
    sigma_arcsec : float
        Intrinsic Gaussian sigma along the slit, arcsec.
    position_error_arcsec : float
        True minus planned position along the slit, arcsec.
    stuck_closed_shutter : int or None
        Shutter (-1, 0 or +1 from the middle) stuck closed, MOS only.
    failed_open : bool
        Whether light from a failed-open shutter crosses the slit.
    profile : SourceProfile
        Family of the source's profile along the slit and its parameters.
    """

    index: int
    peak: float
    offset_arcsec: float
    sigma_arcsec: float
    position_error_arcsec: float
    stuck_closed_shutter: int | None = None
    failed_open: bool = False
    profile: SourceProfile = PSF_LAW

    @property
    def true_offset_arcsec(self):
        """Where the source really sits along the slit, arcsec."""
        return self.offset_arcsec + self.position_error_arcsec


@dataclass(frozen=True, slots=True)
class VisitOptions:
    """Validated options of one visit; see `simulate_nodded_visit` for their meaning.

    Attributes
    ----------
    n_slits, n_points, exposures_per_position : int
        Visit layout.
    source_peak, source_offset_arcsec, source_sigma_arcsec, position_error_arcsec : tuple of float
        Per-slit source options, one value per slit.
    trace_wobble_pix : tuple of float
        Legendre coefficients of the true trace's deviation, pixels, as given.
    source_xpos : float
        Source position across the slit, slit widths.
    slit_loss, emission_lines, noise, failed_open, jitter_cutouts : bool
        Switches.
    sky_scale : float
        Multiplier of the mode's sky.
    cosmic_ray_fraction : float
        Fraction of pixels hit by unflagged cosmic rays per exposure.
    n_snowballs : int
        Snowballs per slit and exposure.
    stuck_closed_shutter : int or None
        Stuck-closed shutter of slit 0, as given.
    source_profile : tuple of SourceProfile
        Profile family of each slit's source.
    """

    n_slits: int
    n_points: int
    exposures_per_position: int
    source_peak: tuple[float, ...]
    source_offset_arcsec: tuple[float, ...]
    source_sigma_arcsec: tuple[float, ...]
    position_error_arcsec: tuple[float, ...]
    trace_wobble_pix: tuple[float, ...]
    source_xpos: float
    slit_loss: bool
    emission_lines: bool
    sky_scale: float
    noise: bool
    cosmic_ray_fraction: float
    n_snowballs: int
    stuck_closed_shutter: int | None
    failed_open: bool
    jitter_cutouts: bool
    source_profile: tuple[SourceProfile, ...]

    @classmethod
    def build(cls, mode, **options):
        """Check the options of a visit in ``mode`` and freeze them.

        Parameters
        ----------
        mode : InstrumentMode
            Observing mode.
        **options
            Every field of `VisitOptions`, by name, as `simulate_nodded_visit`
            received it (``source_profile`` may be left out: ``psf_law``).

        Returns
        -------
        VisitOptions
            The options, per-slit ones broadcast to one value per slit.

        Raises
        ------
        ValueError
            For several slits outside MOS, fewer than one exposure per position,
            a nod pattern the mode has not, per-slit values of the wrong length,
            or an unknown source profile (checked last).
        """
        n_slits = options["n_slits"]
        if mode.exp_type != "NRS_MSASPEC" and n_slits != 1:
            raise ValueError(f"n_slits must be 1 for {mode.name}, got {n_slits}")
        if options["exposures_per_position"] < 1:
            raise ValueError(
                f"exposures_per_position must be >= 1, got {options['exposures_per_position']}"
            )
        check_nod_pattern(mode, options["n_points"])
        per_slit = {name: as_per_slit(options[name], n_slits, name) for name in _PER_SLIT}
        return cls(
            n_slits=operator.index(n_slits),
            n_points=operator.index(options["n_points"]),
            exposures_per_position=operator.index(options["exposures_per_position"]),
            **per_slit,
            # kept as given: Legendre evaluation follows the coefficients' dtype
            trace_wobble_pix=tuple(options["trace_wobble_pix"]),
            source_xpos=float(options["source_xpos"]),
            slit_loss=bool(options["slit_loss"]),
            emission_lines=bool(options["emission_lines"]),
            sky_scale=float(options["sky_scale"]),
            noise=bool(options["noise"]),
            cosmic_ray_fraction=float(options["cosmic_ray_fraction"]),
            n_snowballs=operator.index(options["n_snowballs"]),
            # kept as given, as before: any shutter index (or none) is accepted
            stuck_closed_shutter=options["stuck_closed_shutter"],
            failed_open=bool(options["failed_open"]),
            jitter_cutouts=bool(options["jitter_cutouts"]),
            source_profile=profiles_per_slit(options.get("source_profile", "psf_law"), n_slits),
        )

    def positions(self):
        """Nod position index (0-based) of each exposure.

        Returns
        -------
        numpy.ndarray of int
            Exposures run through the pattern, then repeat it: 0 1 2 0 1 2.
        """
        return np.tile(np.arange(self.n_points), self.exposures_per_position)

    def slit(self, k):
        """The source and defects of slit ``k``.

        Parameters
        ----------
        k : int
            Slit number.

        Returns
        -------
        SlitSource
            Slit ``k``'s options; the MSA defects are simulated in slit 0 only.
        """
        return SlitSource(
            index=k,
            peak=self.source_peak[k],
            offset_arcsec=self.source_offset_arcsec[k],
            sigma_arcsec=self.source_sigma_arcsec[k],
            position_error_arcsec=self.position_error_arcsec[k],
            stuck_closed_shutter=self.stuck_closed_shutter if k == 0 else None,
            failed_open=self.failed_open and k == 0,
            profile=self.source_profile[k],
        )
