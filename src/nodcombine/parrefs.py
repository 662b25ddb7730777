"""Packaged parameter references: CRDS ``pars-*`` selection, but local.

CRDS picks a step's ``pars-*`` file from the input's metadata through an
rmap.  Here `SELECTION` plays the rmap: its first row whose selectors all
match the input names the observing mode, and the step's file is
``<alias>_<mode>.asdf`` (or ``<alias>.asdf`` for one that does not depend on
the mode) in the package's ``config`` folder.  The order of precedence is
stpipe's own: the packaged file, then a parameter file the user passes
(``strun my_pars.asdf ...`` or ``config_file=``), then parameters on the
command line or as keywords.

The metadata come from the first science member's primary header, read with
astropy: opening the datamodel of a 200-slit MOS exposure to read four
keywords would take seconds.

``override_extract1d`` names a JSON ``extract1d`` reference directly, as in
jwst; its aperture beats every file and keyword (`override_box`).
"""

import fnmatch
import functools
import json
import logging
from importlib import resources
from pathlib import Path

import asdf
from astropy.io import fits

from nodcombine.errors import RefusedError
from nodcombine.extract_1d.aperture import APERTURE_PARAMETERS
from nodcombine.parfiles import aperture_ids, box_parameters, read_extract1d_json

__all__ = [
    "SELECTION",
    "SELECTORS",
    "mode_differences",
    "override_box",
    "override_parameters",
    "packaged_directory",
    "packaged_parameter_file",
    "packaged_values",
    "select_mode",
    "selection_parameters",
]

log = logging.getLogger(__name__)

#: metadata the selection reads: CRDS parameter name -> FITS primary-header keyword
SELECTORS = {
    "meta.instrument.name": "INSTRUME",
    "meta.exposure.type": "EXP_TYPE",
    "meta.instrument.grating": "GRATING",
    "meta.instrument.filter": "FILTER",
}

#: rmap-like table, first match wins: selectors (fnmatch patterns) -> mode
SELECTION = (
    (
        {
            "meta.instrument.name": "NIRSPEC",
            "meta.exposure.type": "NRS_MSASPEC",
            "meta.instrument.grating": "PRISM",
        },
        "nrs_msaspec_prism",
    ),
    (
        {
            "meta.instrument.name": "NIRSPEC",
            "meta.exposure.type": "NRS_MSASPEC",
            "meta.instrument.grating": "G*",
        },
        "nrs_msaspec_grating",
    ),
    ({"meta.instrument.name": "NIRSPEC", "meta.exposure.type": "NRS_FIXEDSLIT"}, "nrs_fixedslit"),
    ({"meta.instrument.name": "MIRI", "meta.exposure.type": "MIR_LRS-FIXEDSLIT"}, "miri_lrs"),
)


def packaged_directory():
    """The folder of the packaged parameter files.

    Returns
    -------
    pathlib.Path
    """
    return Path(str(resources.files("nodcombine") / "config"))


def select_mode(parameters):
    """The mode `SELECTION` gives for an input's metadata.

    Parameters
    ----------
    parameters : dict
        CRDS-style metadata (``meta.exposure.type`` -> value), as
        `selection_parameters` returns.

    Returns
    -------
    str or None
        None when no row matches.
    """
    for selectors, mode in SELECTION:
        if all(
            fnmatch.fnmatchcase(str(parameters.get(key) or "").upper(), pattern)
            for key, pattern in selectors.items()
        ):
            return mode
    return None


def packaged_parameter_file(alias, parameters):
    """The packaged parameter file of a step or pipeline for an input.

    Parameters
    ----------
    alias : str
        The step's or pipeline's ``class_alias``.
    parameters : dict
        The input's metadata (`selection_parameters`).

    Returns
    -------
    path : pathlib.Path or None
        ``<alias>_<mode>.asdf``, else ``<alias>.asdf``, else None.
    mode : str or None
    """
    mode = select_mode(parameters)
    directory = packaged_directory()
    candidates = ([f"{alias}_{mode}.asdf"] if mode else []) + [f"{alias}.asdf"]
    for name in candidates:
        if (directory / name).is_file():
            return directory / name, mode
    return None, mode


@functools.lru_cache(maxsize=64)
def packaged_values(alias, mode):
    """The parameters of ``<alias>_<mode>.asdf`` (empty if there is none).

    Parameters
    ----------
    alias : str
    mode : str

    Returns
    -------
    dict
    """
    path = packaged_directory() / f"{alias}_{mode}.asdf"
    if not path.is_file():
        return {}
    with asdf.open(path, lazy_load=False) as af:
        return dict(af.tree.get("parameters", {}))


def mode_differences(alias, configured_mode, mode, current):
    """What a step configured for one mode changes to work on a source of another.

    A parameter changes where the step still holds the packaged value of the
    mode it was configured for and ``mode``'s packaged value differs; a value
    the user set (different from the packaged one) is kept.

    Parameters
    ----------
    alias : str
        The step's alias.
    configured_mode, mode : str or None
        The mode of the input the step was configured for, and of the source.
    current : dict
        The step's parameter values.

    Returns
    -------
    dict
        Parameter -> value for ``mode``; empty when nothing changes.
    """
    if None in (configured_mode, mode) or mode == configured_mode:
        return {}
    configured, wanted = packaged_values(alias, configured_mode), packaged_values(alias, mode)
    return {
        name: value
        for name, value in wanted.items()
        if name in configured
        and value != configured[name]
        and current.get(name) == configured[name]
    }


def selection_parameters(dataset):
    """The metadata `SELECTION` reads, taken cheaply from any stpipe input.

    Parameters
    ----------
    dataset : dict, str, os.PathLike, DataModel or sequence of DataModel
        A dict of CRDS parameters is returned as it is; an association
        gives its first science member's header; a FITS file its primary
        header; models their ``meta``.

    Returns
    -------
    dict
        The `SELECTORS` keys found; empty when the input cannot be read (the
        step's own checks then say why).
    """
    if isinstance(dataset, dict):  # CRDS parameters (some 200 keys online), or an association
        return {key: dataset[key] for key in SELECTORS if dataset.get(key) is not None}
    if isinstance(dataset, (str, Path)):
        return _from_path(Path(dataset))
    if isinstance(dataset, (list, tuple)) or _is_container(dataset):
        return selection_parameters(dataset[0]) if len(dataset) else {}
    meta = getattr(dataset, "meta", None)
    if meta is None:
        return {}
    values = {key: _attribute(dataset, key) for key in SELECTORS}
    return {key: value for key, value in values.items() if value is not None}


def _is_container(dataset):
    return hasattr(dataset, "asn_table") and hasattr(dataset, "__getitem__")


def _attribute(model, dotted):
    value = model
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _from_path(path):
    try:
        if path.suffix.lower() == ".json":
            path = _first_science_member(path)
        header = fits.getheader(path, 0)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        log.debug("no selection metadata from %s: %s", path, err)
        return {}
    return {key: header[card] for key, card in SELECTORS.items() if card in header}


def _first_science_member(asn_path):
    table = json.loads(asn_path.read_text())
    for product in table.get("products", []):
        for member in product.get("members", []):
            if str(member.get("exptype", "science")).lower() == "science":
                expname = Path(member["expname"])
                return expname if expname.is_absolute() else asn_path.parent / expname
    raise KeyError("no science member")


def override_parameters(path, model):
    """The box parameters an ``override_extract1d`` reference gives for ``model``.

    The aperture is the one named after the model's slits, else after its
    ``EXP_TYPE``, else the reference's only one, as jwst's ``extract_1d``
    chooses apertures; one box serves the whole ``_s2d``, so slits that name
    different apertures are refused.

    Parameters
    ----------
    path : str or Path
        A JSON ``extract1d`` reference.
    model : DataModel
        The ``_s2d`` to extract.

    Returns
    -------
    dict

    Raises
    ------
    RefusedError
        Naming ``override_extract1d``, if the file cannot be read or names no
        aperture for the model.
    """
    try:
        reference = read_extract1d_json(path)
        ids = aperture_ids(reference)
        names = [getattr(slit, "name", None) for slit in getattr(model, "slits", [model])]
        named = sorted({name for name in names if name in ids})
        if len(named) > 1:  # one box for the whole _s2d, not one per slit
            raise ValueError(f"its slits name different apertures {named}; extract them apart")
        wanted = [*named, model.meta.exposure.type]
        chosen = next((name for name in wanted if name in ids), ids[0] if len(ids) == 1 else None)
        if chosen is None:
            raise ValueError(f"no aperture for {sorted({str(w) for w in names})} among {ids}")
        parameters = box_parameters(reference, chosen)
    except ValueError as err:
        raise RefusedError(str(path), "override_extract1d", str(err)) from err
    log.info("override_extract1d: aperture %s of %s: %s", chosen, Path(path).name, parameters)
    return parameters


def override_box(path, model, step_class):
    """The whole box ``override_extract1d`` sets; every box parameter it lacks at its default.

    Parameters
    ----------
    path : str or None
        The step's ``override_extract1d``; None or empty: no change.
    model : DataModel
        The ``_s2d`` to extract.
    step_class : type
        ``OptimalExtract1dStep``, for the defaults of its spec.

    Returns
    -------
    dict
        Parameter -> value, empty without a reference.
    """
    if not path:
        return {}
    box, default = override_parameters(path, model), step_class()
    names = ("extraction_type", "use_source_posn", *APERTURE_PARAMETERS)
    return {name: box.get(name, getattr(default, name)) for name in names}
