"""What the simulator put into a visit, returned beside the models.

As photutils' ``make_psf_model_image`` does, the truth (source trace rows,
widths, profile, fluxes, injected cosmic rays) comes back with the simulated
data so tests can score what the pipeline recovers.

Fluxes are in the data's units summed over pixels along the slit: MJy/sr
times pixels, per dispersion column (multiply by the pixel solid angle for a
flux density).  The source's image in a column is
``infinite_slit_flux * kept * shape.pixel_fractions(rows, trace_row)`` on the
pixels that receive light and 0 elsewhere (``kept`` the fraction inside the
slit's width with ``slit_loss``, else 1), so that

* ``infinite_slit_flux``: the source's whole flux, slit infinitely long and
  wide (no loss along or across it);
* ``total_flux``: the flux on the pixels that receive light, before the loss
  across the slit's width;
* ``column_flux`` (also `SlitTruth.in_slit_flux`): the flux on the pixels that
  receive light after the loss across the slit's width: the source flux the
  data contain.

"Pixels that receive light" are those whose centre lies inside the open slit
along its length: for MOS the slitlet's three shutters (``|y| ≤ 1.8`` slit
units from the middle shutter's centre, bars included: the data are bar-shadow
corrected), less a stuck-closed shutter (``|y − shutter| < ½ pitch``); for a
fixed slit its whole length.  The edge is at pixel granularity.  These pixels
lie inside the cutout (jittered or not) in every mode.
"""

from dataclasses import dataclass, field

import numpy as np

from nodcombine.simulate.modes import InstrumentMode
from nodcombine.simulate.profiles import PSF_LAW, SourceProfile
from nodcombine.simulate.shapes import ProfileShape

__all__ = ["NodTruth", "SlitTruth"]


@dataclass(frozen=True)
class SlitTruth:
    """What was put into one slit of one exposure.

    Attributes
    ----------
    name : str
        Slit name.
    source_id : int
        Source identifier.
    trace_row : numpy.ndarray, shape (n_dispersion,)
        True source centre along the slit, in cutout pixel coordinates (rows of
        the kernel orientation: spatial first): the mean (first moment) of the
        profile, for every family (for the symmetric ones also its peak).
    sigma_pix : numpy.ndarray, shape (n_dispersion,)
        True second-moment width (standard deviation) of the profile along the
        slit, before pixel integration, infinite slit, pixels; the sigma of the
        Gaussian families (``psf_law``, ``constant``, ``steep``).  Also
        `width_pix`.
    column_flux : numpy.ndarray, shape (n_dispersion,)
        Source signal summed over the slit, data units (MJy/sr) times pixels:
        the in-slit flux (see the module docstring).
    total_flux : numpy.ndarray, shape (n_dispersion,)
        The same before the slit's loss across its width (``slit_loss``); equal
        to ``column_flux`` without it.  Still only what falls on the slit's
        length: `infinite_slit_flux` is the whole source.
    wavelength : numpy.ndarray, shape (n_dispersion,)
        Wavelength of each dispersion pixel, micron.
    cosmic_rays : numpy.ndarray of bool, shape of the cutout (data orientation)
        Pixels hit by injected, unflagged cosmic rays or snowballs.
    cosmic_ray_excess : numpy.ndarray, shape of the cutout
        Signal added by them, MJy/sr.
    stuck_closed : bool
        Whether a stuck-closed shutter was simulated in this slit.
    profile : SourceProfile
        The source's profile family and parameters, as asked for.
    shape : ProfileShape
        The profile resolved at each column of the cutout, pixels: its
        parameters (e.g. ``MoffatShape.alpha``), ``cdf``, ``pixel_fractions``
        and ``width``.
    infinite_slit_flux : numpy.ndarray, shape (n_dispersion,)
        The source's whole flux in each column, no loss along or across the
        slit, MJy/sr times pixels.
    """

    name: str
    source_id: int
    trace_row: np.ndarray
    sigma_pix: np.ndarray
    column_flux: np.ndarray
    total_flux: np.ndarray
    wavelength: np.ndarray
    cosmic_rays: np.ndarray
    cosmic_ray_excess: np.ndarray
    stuck_closed: bool = False
    profile: SourceProfile = PSF_LAW
    shape: ProfileShape | None = None
    infinite_slit_flux: np.ndarray | None = None

    @property
    def in_slit_flux(self):
        """Source flux on the pixels receiving light, after slit loss: `column_flux`."""
        return self.column_flux

    @property
    def width_pix(self):
        """True second-moment width of the profile, pixels: `sigma_pix`."""
        return self.sigma_pix


@dataclass(frozen=True)
class NodTruth:
    """Truth of a simulated visit.

    Attributes
    ----------
    mode : InstrumentMode
        Observing mode.
    positions : numpy.ndarray of int
        Nod position index (0-based) of each exposure.
    offsets_arcsec : numpy.ndarray
        Along-slit offset of each exposure, arcsec.
    slits : list of list of SlitTruth
        ``slits[i][k]`` is slit ``k`` of exposure ``i``.
    """

    mode: InstrumentMode
    positions: np.ndarray
    offsets_arcsec: np.ndarray
    slits: list = field(default_factory=list)
