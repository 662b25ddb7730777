"""Assemble simulated slit cutouts into ``_cal`` datamodels and write them.

The metadata are those a real ``calwebb_spec2`` product of a nodded visit
carries, so the pipeline reads a simulated visit as it reads a real one.
"""

import json
from pathlib import Path

from stdatamodels.jwst import datamodels

from nodcombine.simulate.modes import NOD_TYPES

__all__ = ["build_exposure_model", "shutter_state", "slit_name", "write_association", "write_visit"]

# the arrays every cutout carries (barshadow only MOS ones)
_SLIT_ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength")


def slit_name(mode, k):
    """Slit name as jwst writes it: slitlet number (MOS) or aperture name.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    k : int
        Slit number in the exposure.

    Returns
    -------
    str
        The name.
    """
    if mode.exp_type == "NRS_MSASPEC":
        return str(100 + k)
    return "S200A1" if mode.instrument == "NIRSPEC" else "LRS"


def shutter_state(offset, mode):
    """MSA shutter state string with 'x' at the source's shutter (middle = index 1).

    Parameters
    ----------
    offset : float
        Along-slit nod offset, arcsec (a whole number of shutter pitches).
    mode : InstrumentMode
        MOS observing mode.

    Returns
    -------
    str
        E.g. ``"1x1"``.
    """
    step = round(offset / (mode.shutter_pitch * mode.slit_unit_arcsec))
    state = ["1", "1", "1"]
    state[1 - step] = "x"
    return "".join(state)


def _set_instrument_meta(meta, mode, index):
    """Instrument and exposure times of exposure ``index``."""
    # TELESCOP is what specutils and jdaviz recognise a JWST product by
    meta.telescope = "JWST"
    meta.instrument.name = mode.instrument
    meta.instrument.detector = mode.detector
    if mode.is_nirspec:
        meta.instrument.grating = mode.grating
    meta.instrument.filter = mode.filter
    meta.exposure.type = mode.exp_type
    meta.exposure.effective_exposure_time = mode.exposure_time
    meta.exposure.exposure_time = mode.exposure_time
    # exposures 0.02 d apart, MJD
    meta.exposure.start_time = 60000.0 + 0.02 * index
    days = mode.exposure_time / 86400.0
    meta.exposure.mid_time = meta.exposure.start_time + days / 2.0
    meta.exposure.end_time = meta.exposure.start_time + days
    meta.exposure.measurement_time = mode.exposure_time
    meta.exposure.duration = mode.exposure_time
    meta.exposure.elapsed_exposure_time = mode.exposure_time
    # one integration (NINTS, EFFINTTM): combine_1d's exptime_key='integration_time' weights by it
    meta.exposure.nints = 1
    meta.exposure.integration_time = mode.exposure_time


def _set_observation_meta(meta, index):
    """Program, observation and visit of exposure ``index`` (one made-up visit)."""
    meta.observation.program_number = "09999"
    meta.observation.observation_number = "001"
    meta.observation.visit_number = "001"
    meta.observation.visit_group = "03"
    meta.observation.sequence_id = "1"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = str(index + 1)
    meta.observation.date = "2026-01-01"
    meta.observation.time = "00:00:00"


def _set_dither_meta(meta, mode, position, offset, n_points):
    """Nod pattern and offset, along the slit: detector y (NIRSpec) or x (MIRI)."""
    meta.dither.position_number = int(position) + 1
    meta.dither.total_points = int(n_points)
    meta.dither.primary_type, meta.dither.nod_type = NOD_TYPES[(mode.exp_type, n_points)]
    along, across = float(offset), 0.0
    meta.dither.x_offset = along if mode.instrument == "MIRI" else across
    meta.dither.y_offset = across if mode.instrument == "MIRI" else along


def _set_cal_steps(meta, mode):
    """Units and the ``calwebb_spec2`` steps run, background subtraction skipped."""
    if mode.instrument == "MIRI":
        meta.wcsinfo.dispersion_direction = mode.dispersion_direction
    meta.bunit_data = "MJy/sr"
    meta.bunit_err = "MJy/sr"
    for name in ("assign_wcs", "flat_field", "photom", "srctype"):
        setattr(meta.cal_step, name, "COMPLETE")
    meta.cal_step.bkg_subtract = "SKIPPED"
    if mode.is_nirspec:
        meta.cal_step.extract_2d = "COMPLETE"
        if mode.is_mos:
            meta.cal_step.barshadow = "COMPLETE"


def _set_exposure_meta(model, mode, *, index, position, offset, n_points):
    """Metadata a real ``_cal`` product of exposure ``index`` carries."""
    _set_instrument_meta(model.meta, mode, index)
    _set_observation_meta(model.meta, index)
    _set_dither_meta(model.meta, mode, position, offset, n_points)
    _set_cal_steps(model.meta, mode)
    stem = f"jw09999001001_03101_{index + 1:05d}_{mode.detector.lower()}"
    model.meta.filename = f"{stem}_cal.fits"


def _fill_slit(slit, mode, cutout):
    """Arrays, WCS and photometric metadata of one cutout."""
    for key in _SLIT_ARRAYS:
        setattr(slit, key, cutout.arrays[key])
    if "barshadow" in cutout.arrays:
        slit.barshadow = cutout.arrays["barshadow"]
    slit.meta.wcs = cutout.wcs
    slit.meta.wcsinfo.dispersion_direction = mode.dispersion_direction
    # per slit, as photom writes them; in surface brightness even for point
    # sources (photom would write MJy), so the data stay self-consistent
    slit.meta.bunit_data = slit.meta.bunit_err = "MJy/sr"
    slit.meta.photometry.pixelarea_steradians = (mode.pixel_scale / 206264.806) ** 2
    slit.meta.photometry.pixelarea_arcsecsq = mode.pixel_scale**2


def _miri_model(mode, cutout, exposure_meta):
    """The ``ImageModel`` of a MIRI LRS exposure (one slit on a subarray)."""
    model = datamodels.ImageModel(validate_on_assignment=False)
    _fill_slit(model, mode, cutout)
    model.meta.subarray.name = "FULL"
    model.meta.subarray.xstart = 300 + cutout.origin[1]
    model.meta.subarray.ystart = 10 + cutout.origin[0]
    model.meta.subarray.xsize = cutout.arrays["data"].shape[1]
    model.meta.subarray.ysize = cutout.arrays["data"].shape[0]
    model.meta.target.ra = cutout.ra
    model.meta.target.dec = cutout.dec
    model.meta.target.source_type = "POINT"
    _set_exposure_meta(model, mode, **exposure_meta)
    model.validate()
    return model


def _slit_model(mode, cutout, k, offset):
    """The ``SlitModel`` of slit ``k`` of a NIRSpec exposure."""
    slit = datamodels.SlitModel(validate_on_assignment=False)
    _fill_slit(slit, mode, cutout)
    slit.name = slit_name(mode, k)
    slit.source_id = cutout.truth.source_id
    slit.source_name = f"9999_{slit.source_id}"
    slit.source_type = "POINT"
    slit.source_xpos = float(cutout.source_xpos)
    slit.source_ypos = float(cutout.source_ypos)
    slit.source_ra = cutout.ra
    slit.source_dec = cutout.dec
    # made-up detector positions, one slit every 40 rows
    slit.xstart = 1 + 100 + cutout.origin[0]
    slit.ystart = 1 + 40 * k + cutout.origin[1]
    slit.ysize, slit.xsize = cutout.arrays["data"].shape
    if mode.is_mos:
        slit.slitlet_id = 100 + k
        slit.shutter_state = shutter_state(offset, mode)
        slit.quadrant = 1 + k % 4
        slit.xcen, slit.ycen = 100 + k, 50 + k
        slit.slit_ymin, slit.slit_ymax = -2.2, 2.2
    else:
        slit.slitlet_id = 0
        slit.slit_ymin, slit.slit_ymax = -0.55, 0.55
    return slit


def build_exposure_model(mode, cutouts, *, index, position, offset, n_points):
    """Assemble the datamodel of one exposure from its slits.

    Parameters
    ----------
    mode : InstrumentMode
        Observing mode.
    cutouts : list of SlitCutout
        The exposure's slits, in slit order.
    index : int
        Exposure number (0-based) in the visit.
    position : int
        Nod position index (0-based).
    offset : float
        Along-slit nod offset, arcsec.
    n_points : int
        Nod positions in the pattern.

    Returns
    -------
    DataModel
        ``ImageModel`` (MIRI LRS) or ``MultiSlitModel`` (NIRSpec), validated.
    """
    exposure_meta = {"index": index, "position": position, "offset": offset, "n_points": n_points}
    if mode.instrument == "MIRI":
        return _miri_model(mode, cutouts[0], exposure_meta)
    # Validating each assignment re-reads the schemas (~5 ms each); validate once at the end.
    model = datamodels.MultiSlitModel(validate_on_assignment=False)
    _set_exposure_meta(model, mode, **exposure_meta)
    # TARG_RA/TARG_DEC, as real files: combine_1d falls back on them for a spectrum's position
    model.meta.target.ra, model.meta.target.dec = cutouts[0].ra, cutouts[0].dec
    for k, cutout in enumerate(cutouts):
        model.slits.append(_slit_model(mode, cutout, k, offset))
    model.validate()
    return model


def write_visit(models, output_dir):
    """Save simulated exposures and a spec3 association next to them.

    Parameters
    ----------
    models : list of DataModel
        Exposures from `simulate_nodded_visit`.
    output_dir : str or os.PathLike
        Directory to write to (created if needed).

    Returns
    -------
    asn_path : pathlib.Path
        The association file.
    paths : list of pathlib.Path
        The ``_cal`` files, in exposure order.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in models:
        path = output_dir / model.meta.filename
        model.save(path)
        paths.append(path)
    asn_path = write_association(paths, output_dir / "nodcombine_sim_asn.json")
    return asn_path, paths


def write_association(paths, asn_path, *, product_name="nodcombine_sim"):
    """Write a minimal level-3 (spec3) association of ``_cal`` files.

    Parameters
    ----------
    paths : list of str or os.PathLike
        Member files; written relative to the association's directory.
    asn_path : str or os.PathLike
        Where to write the JSON file.
    product_name : str, optional
        Product name, the stem of the pipeline's output files.

    Returns
    -------
    pathlib.Path
        The association file.
    """
    asn_path = Path(asn_path)
    members = [
        {
            "expname": Path(p).name if Path(p).parent == asn_path.parent else str(p),
            "exptype": "science",
        }
        for p in paths
    ]
    asn = {
        "asn_type": "spec3",
        "asn_rule": "candidate_Asn_Lv3NRSMSA",
        "version_id": None,
        "code_version": "nodcombine",
        "degraded_status": "No known degraded exposures in association.",
        "program": "09999",
        "constraints": "simulated by nodcombine.simulate",
        "asn_id": "o001",
        "target": "none",
        "asn_pool": "none",
        "products": [{"name": product_name, "members": members}],
    }
    asn_path.write_text(json.dumps(asn, indent=2))
    return asn_path
