"""The contract between the steps: every key, status and record passed from one to the next.

What a step writes for a later one lives on the slits (and spectra) of its
product, in entries that the jwst schemas do not know; stdatamodels keeps them
in the ASDF extension of the FITS file, so they survive save and open.  Each
entry is written and read only through the frozen records below
(``to_tree``/``from_tree``); no other module spells a key.

Every key's record, writer and readers: ``docs/architecture.md``.  Per-pixel
arrays lie on the slit's cutout, oriented like its ``data``; 1-D arrays run along
its dispersion pixels (x, or y for MIRI LRS).  Pure Python and numpy: adapters
hand a record an ``instance`` dict and put its ``to_tree()`` into it.
"""

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from nodcombine.recordnodes import from_node as _from_node
from nodcombine.recordnodes import to_node as _to_node
from nodcombine.recordnodes import tree_value as _tree_value
from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = [
    "COMPLETE",
    "FITTED_STATUSES",
    "SKIPPED",
    "ExtractionExtras",
    "NodSlitRecord",
    "RectifyRecord",
    "SlitGeometry",
    "TraceFitRecord",
    "TraceProfile",
    "skipped",
]

COMPLETE = "COMPLETE"
SKIPPED = "SKIPPED"

#: trace-fit statuses that leave a profile on the slit (see `TraceFitRecord`)
FITTED_STATUSES = ("FIT", "FORCED", "FALLBACK")

_NOD_STATUS = "nod_diff_status"
_NOD_POSITION = "nod_position"
_REF_VARIANCE = {c: f"nod_ref_{c}" for c in VARIANCE_COMPONENTS}
_SEPARATION = "nod_separation_pix"
_SCALE_DEFAULTS = {"measured": math.nan, "uncertainty": math.nan, "applied": 1.0}
_GEOMETRY = "nod_geometry"
_TRACE_FIT = "trace_fit_record"
_CENTRE = "trace_fit_centre"
_CENTRE_ALONG = "trace_fit_centre_along"
_SIGMA = "trace_fit_sigma"
_RECTIFY = "rectify_record"
_PROFILE = "rectified_profile"
_EXTRAS = "extract_1d_extras"


def skipped(reason):
    """The status string of a slit a step left out: ``SKIPPED: <reason>``."""
    return f"{SKIPPED}: {reason}"


def _array(tree, key):  # a stored list or array as floats; None if absent
    return None if tree.get(key) is None else np.asarray(tree[key], dtype=float)


@dataclass(frozen=True)
class SlitGeometry:
    """The WCS of one slit, evaluated once by ``nod_diff`` for the later steps.

    Attributes
    ----------
    wavelength : numpy.ndarray, shape (n_disp,)
        Wavelength at the predicted source position per dispersion pixel, micron.
    trace : numpy.ndarray or None, shape (n_disp,)
        Predicted source position along the slit, in cutout pixels (row, or
        column for MIRI LRS); None where the WCS gives none.
    along : numpy.ndarray or None, shape of the slit's ``data``
        Every pixel's distance along the slit from the predicted source
        position, pixels; NaN off the slit.  None without a trace.
    pixel_scale : float
        Arcsec between neighbouring pixels along the slit at the source (or NaN).
    """

    wavelength: np.ndarray
    trace: np.ndarray | None = None
    along: np.ndarray | None = None
    pixel_scale: float = math.nan

    KEY: ClassVar[str] = _GEOMETRY

    def to_tree(self):
        """The ``nod_geometry`` entry (maps that are None left out)."""
        tree = {"wavelength_um": self.wavelength, "trace_pix": self.trace, "along_pix": self.along}
        tree = {k: v for k, v in tree.items() if v is not None}
        return {_GEOMETRY: tree | {"pixel_scale_arcsec": float(self.pixel_scale)}}

    @classmethod
    def from_tree(cls, tree):
        """The geometry of a slit's ``instance``, or None if ``nod_diff`` wrote none."""
        node = tree.get(_GEOMETRY)
        if not node:
            return None
        return cls(
            wavelength=_array(node, "wavelength_um"),
            trace=_array(node, "trace_pix"),
            along=_array(node, "along_pix"),
            pixel_scale=float(node.get("pixel_scale_arcsec", math.nan)),
        )


@dataclass(frozen=True)
class NodSlitRecord:
    """What ``nod_diff`` says about one slit of one exposure.

    Attributes
    ----------
    status : str or None
        ``COMPLETE``: a nod difference; ``SKIPPED: <reason>``: its input data; None: not seen.
    position : int or None
        Nod position label of the exposure.
    ref_variances : dict of str to numpy.ndarray or None
        Variance per component of the subtracted reference (shared with its position's exposures).
    nod_separation, error_scale_measured, error_scale_uncertainty, error_scale_applied : float
        Pixels between the images of two nod positions; the exposure's scatter over its errors
        off the source and its standard error (NaN: not measured), and the factor applied to
        them (``nod_error_scale``).
    """

    status: str | None
    position: int | None = None
    ref_variances: dict | None = None
    nod_separation: float = math.inf
    error_scale_measured: float = math.nan
    error_scale_uncertainty: float = math.nan
    error_scale_applied: float = 1.0

    STATUS_KEY: ClassVar[str] = _NOD_STATUS
    POSITION_KEY: ClassVar[str] = _NOD_POSITION
    REF_VARIANCE_KEYS: ClassVar[dict] = _REF_VARIANCE
    ERROR_SCALE_KEY: ClassVar[str] = "nod_error_scale"

    @property
    def differenced(self):
        """Whether the slit holds a nod difference."""
        return self.status == COMPLETE

    def to_tree(self):
        """The slit entries: status, position, reference variances, separation, error scale."""
        tree = {_NOD_STATUS: self.status}
        if self.position is not None:
            tree[_NOD_POSITION] = int(self.position)
            tree[_SEPARATION] = float(self.nod_separation)
            scale = {k: getattr(self, f"error_scale_{k}") for k in _SCALE_DEFAULTS}
            tree[self.ERROR_SCALE_KEY] = {k: float(v) for k, v in scale.items()}
        for c, values in (self.ref_variances or {}).items():
            tree[_REF_VARIANCE[c]] = values
        return tree

    @classmethod
    def from_tree(cls, tree):
        """The record of a slit's ``instance`` (fields absent there are None)."""
        refs = {c: _array(tree, key) for c, key in _REF_VARIANCE.items()}
        position, scale = tree.get(_NOD_POSITION), tree.get(cls.ERROR_SCALE_KEY) or {}
        return cls(
            status=tree.get(_NOD_STATUS),
            position=None if position is None else int(position),
            ref_variances=refs if all(v is not None for v in refs.values()) else None,
            nod_separation=float(tree.get(_SEPARATION, math.inf)),
            **{f"error_scale_{k}": float(scale.get(k, v)) for k, v in _SCALE_DEFAULTS.items()},
        )


@dataclass(frozen=True)
class TraceFitRecord:
    """The fitted profile of one source (the ``trace_fit_record`` entry of each of its slits).

    Offsets: Legendre coefficients (pixels along the slit) of the wavelength
    scaled to −1 … 1 over ``wave_range_um``, added to the position the WCS
    predicts from ``source_ypos`` (MIRI LRS: the target's RA/Dec).  Width²: the
    nominal PSF's (`nodcombine.psf`) plus the Legendre series ``width_coeffs_pix2``
    (covariance flattened in ``width_covariance_pix4``; ``source_sigma2_pix2`` its
    value mid-band).  Shape (`nodcombine.profile`, `halo`): ``halo_fraction`` of the
    flux in a halo ``halo_scale`` times wider, Moffat wings of power ``wings_beta``,
    halves ``1 ∓ skew`` as wide.  Errors 1σ; NaN: not fitted.  SKIPPED: ``message``.
    """

    status: str
    message: str = ""
    snr: float | None = None
    snr_column: float | None = None
    degree: int | None = None
    width_free: bool | None = None
    width_degree: int | None = None
    offset_coeffs_pix: tuple | None = None
    offset_coeffs_err_pix: tuple | None = None
    wave_range_um: tuple | None = None
    width_coeffs_pix2: tuple | None = None
    width_coeffs_err_pix2: tuple | None = None
    width_covariance_pix4: tuple | None = None
    halo_fraction: float | None = None
    halo_scale: float | None = None
    wings_beta: float | None = None
    skew: float | None = None
    source_sigma2_pix2: float | None = None
    source_sigma2_err_pix2: float | None = None
    source_sigma_pix: float | None = None
    source_sigma_err_pix: float | None = None
    source_sigma_arcsec: float | None = None
    pixel_scale_arcsec: float | None = None
    chi2: float | None = None
    dof: int | None = None
    n_clipped: int | None = None
    forced_from: str | None = None

    KEY: ClassVar[str] = _TRACE_FIT

    @property
    def fitted(self):
        """Whether the record carries a profile (fitted, forced or the fallback)."""
        return self.status in FITTED_STATUSES

    @property
    def halo(self):
        """The image's shape ``(f, k, β, a)`` for `nodcombine.profile` (None fields: no term)."""
        beta = math.inf if self.wings_beta is None else float(self.wings_beta)
        return (self.halo_fraction or 0.0, self.halo_scale or 1.0, beta, self.skew or 0.0)

    def to_tree(self):
        """The ``trace_fit_record`` entry (fields that are None left out)."""
        return {_TRACE_FIT: _to_node(self)}

    @classmethod
    def from_tree(cls, tree):
        """The record of a slit's ``instance``, or None if it has no ``trace_fit_record``."""
        return _from_node(cls, tree.get(_TRACE_FIT))


@dataclass(frozen=True)
class TraceProfile:
    """The fitted profile of one slit, per dispersion pixel of its cutout.

    Attributes
    ----------
    centre_along : numpy.ndarray, shape (n_disp,)
        Fitted centre, pixels from the predicted position (`SlitGeometry.along`).
    centre_rows : numpy.ndarray, shape (n_disp,)
        The same as a fractional row (MIRI LRS: column) of the cutout, for users.
    sigma : numpy.ndarray, shape (n_disp,)
        Total Gaussian width (of the core, with a halo), pixels.
    """

    centre_along: np.ndarray
    centre_rows: np.ndarray
    sigma: np.ndarray

    CENTRE_ALONG_KEY: ClassVar[str] = _CENTRE_ALONG

    def to_tree(self):
        """The per-slit arrays (centre and width for users in float32, as the data)."""
        return {
            _CENTRE_ALONG: np.asarray(self.centre_along, dtype=float),
            _CENTRE: np.asarray(self.centre_rows, dtype=np.float32),
            _SIGMA: np.asarray(self.sigma, dtype=np.float32),
        }

    @classmethod
    def from_tree(cls, tree):
        """The profile of a slit's ``instance``, or None if it lacks one."""
        arrays = [_array(tree, key) for key in (_CENTRE_ALONG, _CENTRE, _SIGMA)]
        if any(a is None for a in arrays):
            return None
        return cls(*arrays)


@dataclass(frozen=True)
class RectifyRecord:
    """The grid of one rectified slit (``_s2d``) and what extraction needs from it.

    Attributes
    ----------
    wavelength_grid_um : numpy.ndarray, shape (n_wave,)
        Bin centres.
    offset0_pix : float
        Offset of row 0 from the fitted trace, pixels (row ``i``: ``offset0_pix + i``).
    nod_separation_pix, pixel_scale_arcsec : float
        Distance between the images of two nod positions; arcsec per pixel.
    sigma_arcsec, in_slit_fraction : numpy.ndarray, shape (n_wave,)
        Width of the image's core per bin (its shape: ``halo``, see
        `TraceFitRecord.halo`); its light's fraction on the illuminated slit.
    weight_type : str
    linear_grid : bool
    members : tuple of str
        The slits rectified (``file[slit name]``).
    profile : numpy.ndarray, shape (n_offset, n_wave)
        Fraction of the source's flux (infinite slit) in each bin of the nod
        differences: positive image minus negative images (``rectified_profile``).
    """

    wavelength_grid_um: np.ndarray
    offset0_pix: float
    nod_separation_pix: float
    pixel_scale_arcsec: float
    sigma_arcsec: np.ndarray
    in_slit_fraction: np.ndarray
    halo: tuple
    weight_type: str
    linear_grid: bool
    members: tuple
    profile: np.ndarray

    @property
    def offsets(self):
        """Offset of every row from the source, pixels."""
        return self.offset0_pix + np.arange(self.profile.shape[0])

    #: the per-wavelength fields, stored as float arrays (lists in earlier products)
    _ARRAYS: ClassVar[tuple] = ("wavelength_grid_um", "sigma_arcsec", "in_slit_fraction")

    def to_tree(self):
        """The ``rectify_record`` entry and the ``rectified_profile`` array."""
        node = {
            f.name: _tree_value(getattr(self, f.name), f.name in self._ARRAYS)
            for f in fields(self)
            if f.name != "profile"
        }
        return {_RECTIFY: node, _PROFILE: np.asarray(self.profile, dtype=np.float32)}

    @classmethod
    def from_tree(cls, tree):
        """The record of a rectified slit's ``instance``; None for a stock jwst ``_s2d``."""
        node, profile = tree.get(_RECTIFY), tree.get(_PROFILE)
        if not node or profile is None:
            return None
        known = {f.name for f in fields(cls)} - {"profile"}
        values = {k: v for k, v in node.items() if k in known}
        for key in values:
            if key in cls._ARRAYS:
                values[key] = np.asarray(values[key], dtype=float)
            elif isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values, profile=np.asarray(profile, dtype=float))


@dataclass(frozen=True)
class ExtractionExtras:
    """Per-wavelength quantities of one spectrum that the standard columns cannot hold.

    Attributes
    ----------
    pathloss : tuple of float or None
        Fraction of the source's flux held per wavelength (slit transmission;
        times the in-slit fraction, or for a box the profile in the aperture).
    pathloss_applied : bool
        Whether ``FLUX`` was divided by it.
    profile_used : tuple of float or None
        Sum of the profile over the bins the optimal estimate used.
    sigma_arcsec : tuple of float
        Width of the source image's core.
    x_offset_arcsec, slit_width_arcsec : float
        Planned source position across the slit from its middle; open width.
    profile_origin : str
        ``trace_fit``, ``trace_model`` or ``none`` (a stock ``_s2d``).
    aperture_profile_fraction, in_slit_fraction : tuple of float or None
        Box: the profile inside the aperture; optimal: the light on the slit.
    flux_scale_error : tuple of float or None
        Relative error of FLUX, common to all bins, from the width's (not in FLUX_ERROR).
    """

    pathloss_applied: bool
    sigma_arcsec: tuple
    x_offset_arcsec: float
    profile_origin: str
    pathloss: tuple | None = None
    profile_used: tuple | None = None
    slit_width_arcsec: float | None = None
    aperture_profile_fraction: tuple | None = None
    in_slit_fraction: tuple | None = None
    flux_scale_error: tuple | None = None

    #: the per-wavelength fields, stored as float arrays
    _ARRAYS: ClassVar[tuple] = (
        "sigma_arcsec",
        "pathloss",
        "profile_used",
        "aperture_profile_fraction",
        "in_slit_fraction",
        "flux_scale_error",
    )

    def to_tree(self):
        """The ``extract_1d_extras`` entry (fields that are None left out)."""
        return {_EXTRAS: _to_node(self, arrays=self._ARRAYS)}

    @classmethod
    def from_tree(cls, tree):
        """The extras of a spectrum's ``instance``, or None."""
        return _from_node(cls, tree.get(_EXTRAS))
