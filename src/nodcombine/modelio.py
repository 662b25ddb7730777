"""Opening the ``_cal`` exposures of a visit quickly, as the same datamodels.

``stdatamodels`` finds every array of a FITS datamodel by ``(EXTNAME, EXTVER)``,
and astropy answers each such lookup by scanning the HDU list from the start,
reading a header keyword per HDU. A MOS exposure has eight or more HDUs per
slit, so opening it costs time quadratic in the number of slits: for 200 slits
that scan is most of the opening time. `IndexedHDUList` answers the lookups from
a dictionary built in one pass; everything else, including the ASDF schema
validation of the tree and the WCS, is stdatamodels' own reading, so the models
are the ones `stdatamodels.jwst.datamodels.open` returns.

New slits and spectra are built as entries of a product's list (`new_entry`),
not as ``SlitModel``/``SpecModel`` instances: a new model loads its schema, and
validates each assignment, which costs 25 ms for a ``SpecModel`` with its table,
more than the extraction.  The entries are validated when the product holding
them is saved.
"""

import copy
import functools
import logging
import operator
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from jwst.associations import load_asn
from jwst.datamodels import ModelContainer
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import JwstDataModel

from nodcombine.asdfshare import share_repeated_wcs
from nodcombine.contract import COMPLETE
from nodcombine.errors import RefusedError

__all__ = [
    "ASDF_COLUMN",
    "ASDF_HDU",
    "IndexedHDUList",
    "NotOpenedHere",
    "asdf_hdu",
    "new_entry",
    "open_exposure",
    "open_visit",
    "product_history",
    "sort_asdf_extension_history",
    "write_array",
]

log = logging.getLogger(__name__)

#: seconds an exposure takes to open beyond which it is logged (a 50-slit one takes ~17 s)
_SLOW_OPEN = 1.0

#: where a FITS datamodel keeps its ASDF tree (stdatamodels' ``fits_support``)
ASDF_HDU, ASDF_COLUMN = "ASDF", "ASDF_METADATA"

#: association member fields that jwst's ModelContainer copies into ``meta``
_MEMBER_FIELDS = ("tweakreg_catalog", "group_id")


class NotOpenedHere(Exception):
    """An opener of `open_visit` declines a file: the caller opens the visit another way."""


class IndexedHDUList(fits.HDUList):
    """An `~astropy.io.fits.HDUList` that finds ``(name, ver)`` keys in O(1).

    Lookups by anything else (index, name alone, HDU) behave as in astropy.
    Open it with ``IndexedHDUList.fromfile(path)``; the index is built on the
    first ``(name, ver)`` lookup, once the whole file has been read.
    """

    _name_index = None

    def index_of(self, key):
        """Index of an HDU; ``(name, ver)`` pairs come from a dictionary.

        Parameters
        ----------
        key : int, str, tuple of (str, int) or BaseHDU
            As for `astropy.io.fits.HDUList.index_of`.

        Returns
        -------
        int
        """
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
            index = self._names().get((key[0].strip().upper(), int(key[1])))
            if index is not None:
                return index
        # unknown pairs too, so that the error is astropy's own
        return super().index_of(key)

    def _names(self):
        if self._name_index is None:
            self.readall()
            names = {}
            for index, hdu in enumerate(self):
                # first match wins, as in astropy's scan
                names.setdefault((hdu.name.strip().upper(), hdu.ver), index)
            self._name_index = names
        return self._name_index


def open_exposure(path):
    """Open one ``_cal`` FITS file as the datamodel its ``DATAMODL`` names.

    Parameters
    ----------
    path : str or os.PathLike
        A FITS datamodel file.

    Returns
    -------
    JwstDataModel
        The model `stdatamodels.jwst.datamodels.open` would return, with its
        arrays in memory and the file closed. Files without a ``DATAMODL``
        keyword, or not FITS, are opened by `~stdatamodels.jwst.datamodels.open`.
    """
    path = Path(path)
    if path.suffix.lower() not in (".fits", ".fit"):
        return datamodels.open(path)
    with IndexedHDUList.fromfile(path, memmap=False) as hdulist:
        model_class = getattr(datamodels, str(hdulist[0].header.get("DATAMODL", "")), None)
        if not (isinstance(model_class, type) and issubclass(model_class, JwstDataModel)):
            return datamodels.open(path)
        try:
            model = model_class(_with_shared_wcs(hdulist))
        except Exception as err:  # bad input: let the stock open say what is wrong
            log.debug("%s: opening it the stock way after %r", path.name, err)
            return datamodels.open(path)
    # as datamodels.open does for a path (an HDUList carries its file name too)
    model.meta.filename = path.name
    return model


def _with_shared_wcs(hdulist):
    """``hdulist`` (in memory) with repeated WCS sub-trees of its ASDF tree read once.

    See `nodcombine.asdfshare`; the file itself is not touched.
    """
    if ASDF_HDU not in hdulist:
        return hdulist
    original = hdulist[ASDF_HDU].data[ASDF_COLUMN][0].tobytes()
    shared = share_repeated_wcs(original)
    if shared is not original:
        hdulist[hdulist.index_of(ASDF_HDU)] = asdf_hdu(shared)
    return hdulist


def asdf_hdu(asdf_bytes):
    """The extension in which a FITS datamodel keeps its ASDF tree, holding ``asdf_bytes``."""
    cell = [np.frombuffer(asdf_bytes, np.uint8)]
    column = fits.Column(name=ASDF_COLUMN, format=f"{len(asdf_bytes)}B", array=cell)
    return fits.BinTableHDU.from_columns([column], name=ASDF_HDU)


def open_visit(input_data, opener=None):
    """Open a visit's exposures with `open_exposure`, as jwst's ModelContainer would.

    Parameters
    ----------
    input_data : str, os.PathLike, list or ModelContainer
        An association file, or a list of file names.
    opener : callable, optional
        Opens one exposure from its path instead of `open_exposure`
        (`nodcombine.lazyvisit`): returns the model, or None to leave the
        exposure out; a `NotOpenedHere` it raises ends the opening.

    Returns
    -------
    ModelContainer or None
        The opened exposures with the association's bookkeeping
        (``asn_table``, table and pool names, member ``exptype`` and
        ``group_id``). None for anything else (models, containers, a single
        datamodel file), which the step opens the stock way.
    """
    if isinstance(input_data, (list, tuple)) and input_data:
        if all(isinstance(item, (str, Path)) for item in input_data):
            return _from_paths(input_data, opener or open_exposure)
        return None
    if isinstance(input_data, (str, Path)) and Path(input_data).suffix.lower() == ".json":
        return _from_association(Path(input_data), opener or open_exposure)
    return None


def _from_paths(paths, opener):
    _refuse_duplicates([Path(str(p)).name for p in paths], "input list")
    log.info("opening %d exposures", len(paths))
    container, failures = ModelContainer(), []
    for path in paths:
        model = _open_member(Path(str(path)), failures, opener)
        if model is not None:
            container.append(model)
    _refuse_if_none_opened(container, "input list", failures)
    # the names ModelContainer gives a list: the first file's stem without its suffix
    stem = Path(str(paths[0])).name.split(".")[0]
    container.asn_table_name = "_".join(stem.split("_")[:-1])
    container.asn_table["products"][0]["name"] = container.asn_table_name
    return container


def _from_association(asn_path, opener):
    where = asn_path.name
    try:
        with asn_path.open() as handle:
            asn = load_asn(handle)
    except Exception as err:  # missing, unreadable, not JSON, not an association
        raise RefusedError(where, "file", f"cannot be read as an association: {err}") from err
    products = asn.get("products") or []
    if not products or not products[0].get("members"):
        raise RefusedError(where, "products", "list no members; nothing to reduce")
    members = products[0]["members"]
    _refuse_duplicates([member["expname"] for member in members], where)
    log.info("opening %d members of %s", len(members), where)
    container, failures = ModelContainer(), []
    for member in members:
        exptype = str(member.get("exptype", "science")).lower()
        if exptype != "science":
            # dedicated background exposures are not nod positions of the source
            log.warning("SKIPPED %s: member %r has exptype %r", where, member["expname"], exptype)
            continue
        model = _open_member(asn_path.parent / member["expname"], failures, opener)
        if model is None:
            continue
        model.meta.asn.exptype = member["exptype"]
        for name in _MEMBER_FIELDS:
            if name in member:
                value = member[name]
                if name == "tweakreg_catalog":
                    value = str(asn_path.parent / value) if value.strip() else None
                setattr(model.meta, name, value)
        container.append(model)
    _refuse_if_none_opened(container, where, failures)
    container.asn_table = asn
    container.asn_file_path = str(asn_path)
    container.asn_table_name = asn_path.name
    container.asn_pool_name = asn.get("asn_pool")
    for model in container:
        model.meta.asn.table_name = container.asn_table_name
        model.meta.asn.pool_name = container.asn_pool_name
    return container


def _refuse_duplicates(names, where):
    """Refuse a member listed twice: its noise would count twice, its errors not."""
    seen = set()
    for name in names:
        if name in seen:
            raise RefusedError(where, "members", f"list {name!r} twice; list each exposure once")
        seen.add(name)


def _refuse_if_none_opened(container, where, failures):
    """Refuse a visit none of whose exposures opened, naming each file and why."""
    if len(container) == 0 and failures:
        raise RefusedError(where, "members", "no exposure could be opened: " + "; ".join(failures))


def _open_member(path, failures, opener):
    """``opener(path)``, or None after a ``SKIPPED`` warning naming the file and why.

    The file's name and the reason are appended to ``failures``.
    """
    start = time.perf_counter()
    try:
        model = opener(path)
    except NotOpenedHere:
        raise
    except Exception as err:  # truncated, garbage, missing, a corrupt ASDF tree ...
        log.warning("SKIPPED %s: cannot be opened: %s: %s", path, type(err).__name__, err)
        failures.append(f"{path.name}: {type(err).__name__}: {err}")
        return None
    seconds = time.perf_counter() - start
    if seconds >= _SLOW_OPEN:  # a many-slit exposure: say where the time goes
        log.info("opened %s in %.1f s", path.name, seconds)
    return model


@functools.cache
def _scratch(model_class):
    # only a factory of list entries; never returned or saved
    return model_class(validate_on_assignment=False)


def new_entry(model_class, key):
    """An empty entry of the list ``key`` of ``model_class``, as a schema-aware node.

    Parameters
    ----------
    model_class : type
        E.g. ``MultiSlitModel``.
    key : str
        E.g. ``"slits"``.

    Returns
    -------
    stdatamodels.properties.ObjectNode
        Assignments are cast as in a model (a table becomes a ``FITS_rec``) but
        not validated; append its ``instance`` to the product's tree.
    """
    return getattr(_scratch(model_class), key).item()


def write_array(node, name, values):
    """Set a schema array of a model or slit, in place when shape and dtype allow.

    Assigning a new array to a datamodel attribute re-validates it against the
    schema, which costs ~15 ms an array (schema files are re-read); writing
    into the existing buffer does not.

    Parameters
    ----------
    node : DataModel or ObjectNode
        The model or slit.
    name : str
        A schema array (``data``, ``var_rnoise``, ``trace_model`` ...).
    values : numpy.ndarray
    """
    current = getattr(node, name, None)
    if isinstance(current, np.ndarray) and current.shape == values.shape:
        current[...] = values.astype(current.dtype, copy=False)
    elif current is None:
        # a new array: validated when the model is saved
        node.instance[name] = values
    else:
        setattr(node, name, values)


_EXTENSIONS_START = b"\nhistory:\n  extensions:\n"
_EXTENSION_ITEM = b"  - !core/extension_metadata"


def sort_asdf_extension_history(path):
    """Sort the ``history.extensions`` entries of a FITS file's ASDF tree, in place.

    The entries are permuted, not changed, so the tree keeps its length and
    the file is rewritten where it lies.  A file without such a list (or not
    a FITS datamodel) is left alone.
    """
    with fits.open(path, mode="update", memmap=False) as hdulist:
        if "ASDF" not in hdulist:
            return
        cell = hdulist["ASDF"].data["ASDF_METADATA"][0]
        text = cell.tobytes()
        start = text.find(_EXTENSIONS_START)
        if start < 0:
            return
        start += len(_EXTENSIONS_START)
        end = start
        lines = text[start:].split(b"\n")
        for line in lines:  # the list: its items and their indented fields
            if not (line.startswith(_EXTENSION_ITEM) or line.startswith(b"    ")):
                break
            end += len(line) + 1
        block = text[start:end]
        items = [_EXTENSION_ITEM + item for item in block.split(_EXTENSION_ITEM) if item]
        ordered = b"".join(sorted(items))
        if ordered != block and len(ordered) == len(block):
            cell[start:end] = np.frombuffer(ordered, dtype=np.uint8)
            hdulist.flush()


def product_history(models):
    """``meta.cal_step`` and exposure times of a product made from ``models`` (each once).

    ``update`` copies only metadata with a FITS keyword: the ``cal_step``
    entries of this package's steps (``nod_diff``, ``trace_fit``; the schema
    takes any key) would be lost.  A step is ``COMPLETE`` if it was for any
    model.  Exposure times add up and start/end are the extremes, as in
    jwst's resampling: ``combine_1d`` weights a spectrum by ``exposure_time``.

    Returns
    -------
    cal_step, exposure : dict
    """
    cal_step, times = {}, {}
    for model in models:
        for step, status in (model.meta.instance.get("cal_step") or {}).items():
            if cal_step.get(step) != COMPLETE:
                cal_step[step] = status
        for key, value in (model.meta.instance.get("exposure") or {}).items():
            if value is not None and key in _TIME_TOTALS:
                times[key] = _TIME_TOTALS[key](times[key], value) if key in times else value
    if "duration" in times:
        times["elapsed_exposure_time"] = times["duration"]
    return copy.deepcopy(cal_step), {key: float(value) for key, value in times.items()}


_SUMMED = ("exposure_time", "effective_exposure_time", "measurement_time", "duration")
_TIME_TOTALS = {**dict.fromkeys(_SUMMED, operator.add), "start_time": min, "end_time": max}
