"""What the simulator put into a visit, returned beside the models.

As photutils' ``make_psf_model_image`` does, the truth (source trace rows,
widths, fluxes, injected cosmic rays) comes back with the simulated data so
tests can score what the pipeline recovers.
"""

from dataclasses import dataclass, field

import numpy as np

from nodcombine.simulate.modes import InstrumentMode

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
        the kernel orientation: spatial first).
    sigma_pix : numpy.ndarray, shape (n_dispersion,)
        True Gaussian sigma of the profile, pixels.
    column_flux : numpy.ndarray, shape (n_dispersion,)
        Source signal summed over the slit, data units (MJy/sr) times pixels.
    total_flux : numpy.ndarray, shape (n_dispersion,)
        The same before the slit's loss across its width (``slit_loss``); equal
        to ``column_flux`` without it.
    wavelength : numpy.ndarray, shape (n_dispersion,)
        Wavelength of each dispersion pixel, micron.
    cosmic_rays : numpy.ndarray of bool, shape of the cutout (data orientation)
        Pixels hit by injected, unflagged cosmic rays or snowballs.
    cosmic_ray_excess : numpy.ndarray, shape of the cutout
        Signal added by them, MJy/sr.
    stuck_closed : bool
        Whether a stuck-closed shutter was simulated in this slit.
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
