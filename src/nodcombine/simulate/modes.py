"""Observing modes of the simulator: detector geometry, the mode table and nod patterns.

NIRSpec MOS slitlets are three shutters of pitch 1.15 slit units (0.529″) with
bars between them and one detector row is 0.227 slit units, as in the real
products (checked against ``shared/data/ceers_933``).
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MODES",
    "NOD_TYPES",
    "SLIT_WIDTH_ARCSEC",
    "InstrumentMode",
    "check_nod_pattern",
    "nod_offsets",
]


@dataclass(frozen=True, slots=True)
class InstrumentMode:
    """Geometry and detector properties of one observing mode.

    Attributes
    ----------
    name : str
        Key in `MODES`.
    instrument, exp_type, detector, grating, filter : str
        Values written to ``meta.instrument`` / ``meta.exposure``.
    n_spatial, n_dispersion : int
        Cutout size along and across the dispersion direction, pixels.
    wave_nodes_um : tuple of float
        Wavelength at the first, middle and last dispersion pixel (a quadratic
        through them; PRISM is strongly non-linear, gratings nearly linear).
    pixel_scale : float
        Arcsec per pixel along the slit.
    slit_unit_arcsec : float
        Length of one ``slit_frame`` y unit in arcsec (one open shutter for MOS,
        the slit length for fixed slits).
    shutter_pitch : float or None
        Shutter pitch in slit units (MOS only).
    slit_half_length : float
        Half length of the illuminated slit(let), slit units.
    curvature : tuple of float
        Trace row offset per column and per column squared (about the centre).
    dispersion_direction : int
        1 when dispersion runs along detector x, 2 along y.
    sky_mjysr : tuple of float
        Sky surface brightness at the blue and red ends, MJy/sr.
    conversion : float
        MJy/sr per (electron / s).
    read_noise : float
        Effective read noise of one ramp, electrons.
    exposure_time : float
        Effective exposure time, s.
    """

    name: str
    instrument: str
    exp_type: str
    detector: str
    grating: str
    filter: str
    n_spatial: int
    n_dispersion: int
    wave_nodes_um: tuple[float, float, float]
    pixel_scale: float
    slit_unit_arcsec: float
    shutter_pitch: float | None
    slit_half_length: float
    curvature: tuple[float, float]
    dispersion_direction: int
    sky_mjysr: tuple[float, float]
    conversion: float
    read_noise: float
    exposure_time: float

    @property
    def rows_per_unit(self):
        """Detector rows per slit unit."""
        return self.slit_unit_arcsec / self.pixel_scale

    @property
    def is_mos(self):
        """Whether the slit is an MSA slitlet (shutters, bars, one-pitch nods)."""
        return self.shutter_pitch is not None

    @property
    def is_nirspec(self):
        """Whether the mode is a NIRSpec one (``slit_frame`` WCS, dispersion along x)."""
        return self.instrument == "NIRSPEC"


#: open width across the slit, arcsec (NIRSpec MSA 0.20″ of a 0.27″ pitch; S200A1; MIRI LRS)
SLIT_WIDTH_ARCSEC = {
    "nrs_msa_prism": 0.20,
    "nrs_msa_g395m": 0.20,
    "nrs_fs_prism": 0.20,
    "miri_lrs": 0.51,
}

#: (primary_type, nod_type) written to meta.dither, as real products carry them;
#: its keys are also the nod patterns each exposure type allows
NOD_TYPES = {
    ("NRS_MSASPEC", 2): ("NONE", "2-SHUTTER-SLITLET"),
    ("NRS_MSASPEC", 3): ("NONE", "3-SHUTTER-SLITLET"),
    ("NRS_FIXEDSLIT", 2): ("2-POINT-NOD", "NONE"),
    ("NRS_FIXEDSLIT", 3): ("3-POINT-NOD", "NONE"),
    ("NRS_FIXEDSLIT", 5): ("5-POINT-NOD", "NONE"),
    ("MIR_LRS-FIXEDSLIT", 2): ("ALONG-SLIT-NOD", "NONE"),
}

# the NIRSpec PRISM and G395M MOS modes share their slitlet geometry: three
# shutters of 1.15 units (1.725 half length) plus a little light past the bars
_MSA_SLITLET = {
    "exp_type": "NRS_MSASPEC",
    "n_spatial": 25,
    "pixel_scale": 0.1045,
    "slit_unit_arcsec": 0.46,
    "shutter_pitch": 1.15,
    "slit_half_length": 1.725 + 0.075,
    "dispersion_direction": 1,
    "read_noise": 5.0,
    "exposure_time": 1021.2,
}

MODES = {
    "nrs_msa_prism": InstrumentMode(
        name="nrs_msa_prism",
        instrument="NIRSPEC",
        detector="NRS2",
        grating="PRISM",
        filter="CLEAR",
        n_dispersion=341,
        wave_nodes_um=(1.367, 3.894, 5.372),
        curvature=(0.006, 1.0e-5),
        sky_mjysr=(0.06, 0.5),
        conversion=4.0,
        **_MSA_SLITLET,
    ),
    "nrs_msa_g395m": InstrumentMode(
        name="nrs_msa_g395m",
        instrument="NIRSPEC",
        detector="NRS1",
        grating="G395M",
        filter="F290LP",
        n_dispersion=1400,
        wave_nodes_um=(2.87, 3.98, 5.10),
        curvature=(0.0015, 1.0e-6),
        sky_mjysr=(0.2, 0.5),
        conversion=40.0,
        **_MSA_SLITLET,
    ),
    "nrs_fs_prism": InstrumentMode(
        name="nrs_fs_prism",
        instrument="NIRSPEC",
        exp_type="NRS_FIXEDSLIT",
        detector="NRS1",
        grating="PRISM",
        filter="CLEAR",
        n_spatial=40,
        n_dispersion=341,
        wave_nodes_um=(1.367, 3.894, 5.372),
        pixel_scale=0.1045,
        slit_unit_arcsec=3.3,
        shutter_pitch=None,
        slit_half_length=0.5,
        curvature=(0.006, 1.0e-5),
        dispersion_direction=1,
        sky_mjysr=(0.06, 0.5),
        conversion=4.0,
        read_noise=5.0,
        exposure_time=1021.2,
    ),
    "miri_lrs": InstrumentMode(
        name="miri_lrs",
        instrument="MIRI",
        exp_type="MIR_LRS-FIXEDSLIT",
        detector="MIRIMAGE",
        grating="P750L",
        filter="P750L",
        n_spatial=50,
        n_dispersion=388,
        wave_nodes_um=(5.0, 9.5, 14.0),
        pixel_scale=0.11,
        slit_unit_arcsec=4.7,
        shutter_pitch=None,
        slit_half_length=0.5,
        curvature=(0.004, 0.0),
        dispersion_direction=2,
        sky_mjysr=(0.5, 40.0),
        conversion=0.2,
        read_noise=14.0,
        exposure_time=1000.0,
    ),
}


def check_nod_pattern(mode, n_points):
    """Raise unless the mode has an ``n_points`` nod pattern.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    n_points : int
        Number of nod positions.

    Raises
    ------
    ValueError
        When ``(mode.exp_type, n_points)`` is not a pattern of `NOD_TYPES`.
    """
    if (mode.exp_type, n_points) not in NOD_TYPES:
        allowed = sorted(n for (e, n) in NOD_TYPES if e == mode.exp_type)
        raise ValueError(f"n_points must be one of {allowed} for {mode.name}, got {n_points}")


def nod_offsets(mode, n_points):
    """Along-slit nod offsets of a pattern, arcsec.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    n_points : int
        Number of nod positions (2 or 3 for MOS, 2, 3 or 5 for NIRSpec fixed
        slits, 2 for MIRI LRS).

    Returns
    -------
    numpy.ndarray
        Offset of each position along the slit, arcsec.
    """
    check_nod_pattern(mode, n_points)
    if mode.is_mos:
        # MOS nods move the source by one shutter pitch: 1x1, x11, 11x
        steps = {2: [1.0, -1.0], 3: [0.0, 1.0, -1.0]}[n_points]
        return np.array(steps) * mode.shutter_pitch * mode.slit_unit_arcsec
    if mode.instrument == "MIRI":
        return np.array([-1.2, 1.2])
    return {
        2: np.array([0.75, -0.75]),
        3: np.array([0.0, 0.9, -0.9]),
        5: np.array([0.0, 0.5, -0.5, 1.0, -1.0]),
    }[n_points]
