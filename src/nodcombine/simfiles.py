"""Assemble simulated slit arrays into ``_cal`` datamodels and write them.

Used by `nodcombine.simulate`; the metadata are those a real ``calwebb_spec2``
product of a nodded visit carries.
"""

import json
from pathlib import Path

from stdatamodels.jwst import datamodels

__all__ = ["build_exposure_model", "shutter_state", "slit_name", "write_association", "write_visit"]

#: (primary_type, nod_type) written to meta.dither, as real products carry them
NOD_TYPES = {
    ("NRS_MSASPEC", 2): ("NONE", "2-SHUTTER-SLITLET"),
    ("NRS_MSASPEC", 3): ("NONE", "3-SHUTTER-SLITLET"),
    ("NRS_FIXEDSLIT", 2): ("2-POINT-NOD", "NONE"),
    ("NRS_FIXEDSLIT", 3): ("3-POINT-NOD", "NONE"),
    ("NRS_FIXEDSLIT", 5): ("5-POINT-NOD", "NONE"),
    ("MIR_LRS-FIXEDSLIT", 2): ("ALONG-SLIT-NOD", "NONE"),
}


def slit_name(mode, k):
    """Slit name as jwst writes it: slitlet number (MOS) or aperture name."""
    if mode.exp_type == "NRS_MSASPEC":
        return str(100 + k)
    return "S200A1" if mode.instrument == "NIRSPEC" else "LRS"


def shutter_state(offset, mode):
    """MSA shutter state string with 'x' at the source's shutter (middle = index 1)."""
    step = round(offset / (mode.shutter_pitch * mode.slit_unit_arcsec))
    state = ["1", "1", "1"]
    state[1 - step] = "x"
    return "".join(state)


def _set_exposure_meta(model, mode, i, position, offset, n_points):
    """Metadata a real ``_cal`` product of exposure ``i`` carries."""
    meta = model.meta
    meta.instrument.name = mode.instrument
    meta.instrument.detector = mode.detector
    if mode.instrument == "NIRSPEC":
        meta.instrument.grating = mode.grating
    meta.instrument.filter = mode.filter
    meta.exposure.type = mode.exp_type
    meta.exposure.effective_exposure_time = mode.exposure_time
    meta.exposure.exposure_time = mode.exposure_time
    meta.exposure.start_time = 60000.0 + 0.02 * i
    days = mode.exposure_time / 86400.0
    meta.exposure.mid_time = meta.exposure.start_time + days / 2.0
    meta.exposure.end_time = meta.exposure.start_time + days
    meta.exposure.measurement_time = mode.exposure_time
    meta.exposure.duration = mode.exposure_time
    meta.exposure.elapsed_exposure_time = mode.exposure_time
    meta.observation.program_number = "09999"
    meta.observation.observation_number = "001"
    meta.observation.visit_number = "001"
    meta.observation.visit_group = "03"
    meta.observation.sequence_id = "1"
    meta.observation.activity_id = "01"
    meta.observation.exposure_number = str(i + 1)
    meta.observation.date = "2026-01-01"
    meta.observation.time = "00:00:00"
    meta.dither.position_number = int(position) + 1
    meta.dither.total_points = int(n_points)
    meta.dither.primary_type, meta.dither.nod_type = NOD_TYPES[(mode.exp_type, n_points)]
    along, across = float(offset), 0.0
    meta.dither.x_offset = along if mode.instrument == "MIRI" else across
    meta.dither.y_offset = across if mode.instrument == "MIRI" else along
    if mode.instrument == "MIRI":
        meta.wcsinfo.dispersion_direction = mode.dispersion_direction
    meta.bunit_data = "MJy/sr"
    meta.bunit_err = "MJy/sr"
    for name in ("assign_wcs", "flat_field", "photom", "srctype"):
        setattr(meta.cal_step, name, "COMPLETE")
    meta.cal_step.bkg_subtract = "SKIPPED"
    if mode.instrument == "NIRSPEC":
        meta.cal_step.extract_2d = "COMPLETE"
        if mode.shutter_pitch is not None:
            meta.cal_step.barshadow = "COMPLETE"
    stem = f"jw09999001001_03101_{i + 1:05d}_{mode.detector.lower()}"
    meta.filename = f"{stem}_cal.fits"


def _fill_slit(slit, mode, entry, k, offset):
    """Arrays and per-slit metadata of one cutout."""
    for key in ("data", "dq", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength"):
        setattr(slit, key, entry[key])
    if "barshadow" in entry:
        slit.barshadow = entry["barshadow"]
    slit.meta.wcs = entry["wcs"]
    slit.meta.wcsinfo.dispersion_direction = mode.dispersion_direction
    # per slit, as photom writes them; in surface brightness even for point
    # sources (photom would write MJy), so the data stay self-consistent
    slit.meta.bunit_data = slit.meta.bunit_err = "MJy/sr"
    slit.meta.photometry.pixelarea_steradians = (mode.pixel_scale / 206264.806) ** 2
    slit.meta.photometry.pixelarea_arcsecsq = mode.pixel_scale**2


def build_exposure_model(mode, i, position, offset, n_points, exposure):
    """Assemble the datamodel of exposure ``i`` from its slits."""
    if mode.instrument == "MIRI":
        entry = exposure[0]
        model = datamodels.ImageModel(validate_on_assignment=False)
        _fill_slit(model, mode, entry, 0, offset)
        model.meta.subarray.name = "FULL"
        model.meta.subarray.xstart = 300 + entry["origin"][1]
        model.meta.subarray.ystart = 10 + entry["origin"][0]
        model.meta.subarray.xsize = entry["data"].shape[1]
        model.meta.subarray.ysize = entry["data"].shape[0]
        model.meta.target.ra = entry["ra"]
        model.meta.target.dec = entry["dec"]
        model.meta.target.source_type = "POINT"
        _set_exposure_meta(model, mode, i, position, offset, n_points)
        model.validate()
        return model
    # Validating each assignment re-reads the schemas (~5 ms each); validate once at the end.
    model = datamodels.MultiSlitModel(validate_on_assignment=False)
    _set_exposure_meta(model, mode, i, position, offset, n_points)
    for k, entry in enumerate(exposure):
        slit = datamodels.SlitModel(validate_on_assignment=False)
        _fill_slit(slit, mode, entry, k, offset)
        slit.name = slit_name(mode, k)
        slit.source_id = entry["truth"].source_id
        slit.source_name = f"9999_{slit.source_id}"
        slit.source_type = "POINT"
        slit.source_xpos = float(entry["source_xpos"])
        slit.source_ypos = float(entry["source_ypos"])
        slit.source_ra = entry["ra"]
        slit.source_dec = entry["dec"]
        slit.xstart = 1 + 100 + entry["origin"][0]
        slit.ystart = 1 + 40 * k + entry["origin"][1]
        slit.ysize, slit.xsize = entry["data"].shape
        if mode.shutter_pitch is not None:
            slit.slitlet_id = 100 + k
            slit.shutter_state = shutter_state(offset, mode)
            slit.quadrant = 1 + k % 4
            slit.xcen, slit.ycen = 100 + k, 50 + k
            slit.slit_ymin, slit.slit_ymax = -2.2, 2.2
        else:
            slit.slitlet_id = 0
            slit.slit_ymin, slit.slit_ymax = -0.55, 0.55
        model.slits.append(slit)
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
