"""ASDF parameter files, and the converter from JSON ``extract1d`` references.

The ASDF files stand in for CRDS ``pars-*`` files: ``strun`` and
``Step.from_config_file`` read them directly.  A JSON ``extract1d`` reference
(jwst's format for boxcar apertures) converts to the box parameters of
``optimal_extract_1d``::

    nodcombine extract1d jwst_miri_extract1d_0005.json MIR_LRS-FIXEDSLIT out.asdf
    strun out.asdf jw..._s2d.fits

Two things change on the way, both logged:

* Axes.  Our ``_s2d`` disperses along x.  An aperture of a vertical-dispersion
  reference (``dispaxis = 2``, MIRI LRS) has its x and y keys swapped.
* Position.  The reference's cross-dispersion numbers are pixels of the stock
  jwst product it was made for, where the source sits at a known column.  Our
  rows are centred on the fitted trace, so by default the converted aperture
  has ``use_source_posn = True``: it keeps its width and the background
  regions' distances from it, and is moved onto the source.  ``--keep-position``
  keeps the numbers as absolute rows instead.

Limits along the dispersion in pixels (``ystart``/``ystop`` of a vertical
reference) do not carry over to our wavelength grid: unless ``--keep-position``
says the reference is in the ``_s2d``'s own pixels, they are dropped with a
warning (limit wavelengths with ``src_coeff`` and ``independent_var =
'wavelength'``, or set ``xstart``/``xstop`` in columns of the ``_s2d``).
"""

import argparse
import json
import logging
from pathlib import Path

import asdf

from nodcombine.integration import get_steps

__all__ = [
    "aperture_ids",
    "box_parameters",
    "main",
    "parameter_tree",
    "read_extract1d_json",
    "write_parameter_file",
]

log = logging.getLogger(__name__)

#: keys of an aperture that select it, not parameters
_SELECTION_KEYS = ("id", "region_type", "spectral_order", "dispaxis")
#: keys jwst no longer reads (old references still carry them)
_OBSOLETE_KEYS = ("nod2_offset",)
#: keys copied as they are
_COPIED_KEYS = ("extract_width", "src_coeff", "bkg_coeff", "bkg_fit", "bkg_order")


def parameter_tree(step_class, step_name, parameters, *, instrument, exp_type, description):
    """The ASDF tree of a step's parameter file (a CRDS ``pars-*`` stand-in).

    Parameters
    ----------
    step_class : str
        Class name of one of the package's steps or pipelines (`nodcombine.integration`).
    step_name : str
        The step's alias.
    parameters : dict
        Parameter values.
    instrument, exp_type : str
        What the file is for (CRDS selection keywords).
    description : str

    Returns
    -------
    dict
    """
    paths = {path.rsplit(".", 1)[1]: path for path, _, _ in get_steps()}
    return {
        "class": paths[step_class],
        "name": step_name,
        "meta": {
            "author": "nodcombine",
            "date": "2026-11-21T00:00:00",
            "description": description,
            "instrument": {"name": instrument},
            "exposure": {"type": exp_type},
            "origin": "nodcombine",
            "pedigree": "GROUND",
            "reftype": f"pars-{step_class.lower()}",
            "telescope": "JWST",
            "useafter": "2022-01-01T00:00:00",
        },
        "parameters": dict(parameters),
    }


def read_extract1d_json(path):
    """Read a JSON ``extract1d`` reference.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        Naming the file, if it is not JSON or has no ``apertures`` list.
    """
    path = Path(path)
    try:
        reference = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON extract1d reference ({err})") from err
    if not isinstance(reference.get("apertures"), list):
        raise ValueError(f"{path}: no 'apertures' list")
    reference.setdefault("_path", str(path))
    return reference


def aperture_ids(reference):
    """Ids of the target apertures of a reference, in file order."""
    return [
        aperture.get("id")
        for aperture in reference["apertures"]
        if aperture.get("region_type", "target") == "target" and aperture.get("id") != "dummy"
    ]


def box_parameters(reference, aperture_id=None, *, keep_position=False):
    """``optimal_extract_1d`` box parameters equivalent to one aperture of a reference.

    Parameters
    ----------
    reference : dict
        From `read_extract1d_json`.
    aperture_id : str, optional
        Which aperture; needed if the reference has more than one.
    keep_position : bool
        Keep the cross-dispersion numbers as absolute rows of the ``_s2d``
        (else the aperture is moved onto the source: ``use_source_posn``).

    Returns
    -------
    dict
        Parameter name to value (only the keys the reference sets).

    Raises
    ------
    ValueError
        Naming the file, aperture and key, for an unknown key or a missing or
        ambiguous aperture.
    """
    where = reference.get("_path", "extract1d reference")
    aperture = _select(reference, aperture_id, where)
    where = f"{where}[{aperture.get('id')}]"
    unknown = set(aperture) - {
        *_SELECTION_KEYS,
        *_OBSOLETE_KEYS,
        *_COPIED_KEYS,
        "xstart",
        "xstop",
        "ystart",
        "ystop",
        "smoothing_length",
        "independent_var",
        "use_source_posn",
    }
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    for key in _OBSOLETE_KEYS:
        if key in aperture:
            log.warning("%s: %r is not used by jwst's extract_1d; ignored", where, key)
    parameters = {"extraction_type": "box"}
    parameters.update(_limits(aperture, keep_position, where))
    for key in _COPIED_KEYS:
        if aperture.get(key) is not None:
            parameters[key] = aperture[key]
    if aperture.get("independent_var") is not None:
        parameters["independent_var"] = str(aperture["independent_var"]).lower()
    if aperture.get("smoothing_length") is not None:
        parameters["smoothing_length"] = _smoothing_length(aperture["smoothing_length"], where)
    parameters["use_source_posn"] = _use_source_posn(aperture, keep_position, where)
    if not keep_position:
        _warn_on_stock_geometry(parameters, where)
    return parameters


def _warn_on_stock_geometry(parameters, where):
    """Say where a moved aperture cannot keep the reference's geometry."""
    if "extract_width" in parameters and "ystart" not in parameters and "bkg_coeff" in parameters:
        log.warning(
            "%s: extract_width without cross-dispersion start/stop is centred on the middle "
            "of the image; the background regions keep their distance from the middle of the "
            "_s2d, not of the stock product (give ystart/ystop to pin it)",
            where,
        )
    pixel_slopes = parameters.get("independent_var", "pixel") == "pixel" and any(
        len(poly) > 1 for key in ("src_coeff", "bkg_coeff") for poly in parameters.get(key) or []
    )
    if pixel_slopes:
        log.warning(
            "%s: src_coeff/bkg_coeff vary with the stock product's dispersion pixel; on the "
            "rectified grid the column index means another wavelength",
            where,
        )


def _select(reference, aperture_id, where):
    ids = aperture_ids(reference)
    if aperture_id is None:
        if len(ids) != 1:
            raise ValueError(f"{where}: {len(ids)} apertures {ids}; name one (aperture_id)")
        aperture_id = ids[0]
    for aperture in reference["apertures"]:
        if aperture.get("id") == aperture_id:
            return aperture
    raise ValueError(f"{where}: no aperture {aperture_id!r}; it has {ids}")


def _limits(aperture, keep_position, where):
    """Start/stop keys in the ``_s2d``'s axes (dispersion along x).

    Dispersion limits are kept only for a reference in the ``_s2d``'s own
    pixels (``keep_position``).
    """
    vertical = aperture.get("dispaxis", 1) == 2
    across = ("xstart", "xstop") if vertical else ("ystart", "ystop")
    along = ("ystart", "ystop") if vertical else ("xstart", "xstop")
    limits = {}
    for ours, theirs in zip(("ystart", "ystop", "xstart", "xstop"), across + along, strict=True):
        if aperture.get(theirs) is not None:
            limits[ours] = float(aperture[theirs])
    dropped = [key for key in along if aperture.get(key) is not None]
    if dropped and not keep_position:
        limits.pop("xstart", None)
        limits.pop("xstop", None)
        log.warning(
            "%s: %s are dispersion pixels of the stock product, not of the rectified "
            "grid; dropped (use src_coeff with independent_var='wavelength')",
            where,
            "/".join(dropped),
        )
    if vertical:
        log.info("%s: dispaxis=2 aperture: x and y swapped (the _s2d disperses along x)", where)
    return limits


def _smoothing_length(value, where):
    """Round as jwst does: below 3 means none, an even length loses one."""
    length = round(float(value))
    if length < 3:
        length = 0
    elif length % 2 == 0:
        length -= 1
    if length != value:
        log.warning("%s: smoothing_length %s used as %d (as jwst)", where, value, length)
    return length


def _use_source_posn(aperture, keep_position, where):
    if keep_position:
        return bool(aperture.get("use_source_posn") or False)
    log.info(
        "%s: aperture positions are pixels of the stock product; moved onto the source "
        "(use_source_posn=True, was %s)",
        where,
        aperture.get("use_source_posn"),
    )
    return True


def write_parameter_file(reference, path, aperture_id=None, *, keep_position=False):
    """Write the ``optimal_extract_1d`` parameter file of one aperture.

    Parameters
    ----------
    reference : dict or str or Path
        A reference (`read_extract1d_json`) or its file.
    path : str or Path
        The ASDF file to write.
    aperture_id : str, optional
    keep_position : bool

    Returns
    -------
    dict
        The parameters written.
    """
    if not isinstance(reference, dict):
        reference = read_extract1d_json(reference)
    parameters = box_parameters(reference, aperture_id, keep_position=keep_position)
    chosen = aperture_id or aperture_ids(reference)[0]
    tree = parameter_tree(
        "OptimalExtract1dStep",
        "optimal_extract_1d",
        parameters,
        instrument=str(reference.get("instrument", "ANY")),
        exp_type=str(chosen),
        description=(
            f"box aperture {chosen} of {Path(reference.get('_path', '?')).name} "
            f"({reference.get('pedigree', '')}), converted by nodcombine"
        ),
    )
    asdf.AsdfFile(tree).write_to(path)
    return parameters


def main(argv=None):
    """Command line: ``nodcombine-extract1d REFERENCE.json [APERTURE_ID] OUT.asdf``."""
    parser = argparse.ArgumentParser(
        prog="nodcombine extract1d",
        description="Convert a JSON extract1d reference aperture to optimal_extract_1d "
        "box parameters (an ASDF parameter file).",
    )
    parser.add_argument("reference", help="JSON extract1d reference file")
    parser.add_argument("aperture_id", nargs="?", help="aperture id (needed if several)")
    parser.add_argument("output", help="ASDF parameter file to write")
    parser.add_argument(
        "--keep-position",
        action="store_true",
        help="keep cross-dispersion numbers as absolute rows (no move onto the source)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        parameters = write_parameter_file(
            args.reference, args.output, args.aperture_id, keep_position=args.keep_position
        )
    except ValueError as err:  # an unreadable file, an unknown key: the message says which
        log.error("%s", err)
        return 2
    log.info("wrote %s: %s", args.output, parameters)
    return 0
