"""A MOS visit opened part by part: memory bounded by a part, not by the visit.

Opened whole, a 200-slit visit holds 600 slits' arrays and transform chains
before the first source is reduced.  `LazyVisit` first opens an *index* of the
visit: every exposure as a ``MultiSlitModel`` whose slits carry their scalar
fields only (names, source ids, planned positions: what grouping needs), read
from the ASDF tree without an array or a WCS (`nodcombine.asdfslits`).  The
pipeline cuts that index into parts of a few source families
(`nodcombine.pipelines.families.family_visits`), and `LazyVisit.load` opens the
slits of one part, whole, just before the part is reduced; the part is dropped
after its products are written.

A part is opened from a small FITS file made in memory of the exposure's
primary header, the extensions the part's slits read and the part's ASDF
tree, so stdatamodels reads exactly those slits, as it reads them from the
whole file: the same arrays, keywords and WCS (``tests/test_lazyvisit.py``).
Only exposures stdatamodels itself would read from their tree alone are
opened so: a FITS ``MultiSlitModel`` whose tree is laid out as stdatamodels
writes it and whose ``_fits_hash`` matches its headers (a file whose headers
were edited after it was written is read from its headers, the whole way),
every extension inside the file.  For anything else `LazyVisit.open` returns
None and the visit is opened whole (`nodcombine.modelio.open_visit`), with its
messages.
"""

import ctypes
import ctypes.util
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits
from stdatamodels.fits_support import fits_hash
from stdatamodels.jwst.datamodels import MultiSlitModel

from nodcombine.asdfshare import share_repeated_wcs
from nodcombine.asdfslits import SlitLayout, fits_sources, with_fits_hash
from nodcombine.modelio import ASDF_COLUMN, ASDF_HDU, NotOpenedHere, asdf_hdu, open_visit

__all__ = ["ExposureFile", "LazyVisit", "open_part", "release_freed_memory"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExposureFile:
    """What is needed to open any choice of an exposure's slits.

    Attributes
    ----------
    path : pathlib.Path
    layout : nodcombine.asdfslits.SlitLayout
        The ASDF tree and where each slit lies in it.
    extents : dict of (str, int) to (int, int)
        Byte range of each extension (header and data), by ``(EXTNAME, EXTVER)``.
    primary : tuple of int
        Byte range of the primary HDU.
    """

    path: Path
    layout: SlitLayout
    extents: dict
    primary: tuple

    @classmethod
    def read(cls, path):
        """The file's layout, or None when it is not to be opened part by part."""
        path = Path(path)
        if path.suffix.lower() not in (".fits", ".fit"):
            return None
        size = path.stat().st_size
        with fits.open(path, memmap=False) as hdulist:
            hdulist.readall()
            if hdulist[0].header.get("DATAMODL") != MultiSlitModel.__name__:
                return None
            if ASDF_HDU not in hdulist:
                return None
            layout = SlitLayout(
                hdulist[ASDF_HDU].data[ASDF_COLUMN][0].tobytes(), _cell_reader(path, hdulist)
            )
            if layout.fits_hash != fits_hash(hdulist):
                return None  # headers edited since: stdatamodels reads them, not the tree
            extents = {}
            for hdu in hdulist:
                # what HDUList.fileinfo reports, without the check for resized
                # HDUs it makes on every call (quadratic in the HDUs; nothing
                # here is resized)
                extent = (hdu._header_offset, hdu._data_offset + hdu._data_size)
                if extent[1] > size:
                    return None  # truncated: let the whole open say so
                extents.setdefault((hdu.name.strip().upper(), hdu.ver), extent)
        return cls(path, layout, extents, extents.pop(("PRIMARY", 1)))

    def open_slits(self, positions):
        """The exposure with only the slits at ``positions`` (None: each slit's scalars only).

        Returns
        -------
        MultiSlitModel
        """
        tree = self.layout.index() if positions is None else self.layout.select(positions)
        if tree is None:
            raise NotOpenedHere(f"{self.path.name}: an anchor is shared between slits")
        if positions is not None:
            tree = share_repeated_wcs(tree)
        wanted = fits_sources(tree)
        missing = wanted - self.extents.keys()
        if missing:
            raise NotOpenedHere(f"{self.path.name}: no extension {sorted(missing)[0]}")
        extents = sorted([self.primary, *(self.extents[key] for key in wanted)])
        with self.path.open("rb") as handle:
            chunks = []
            for start, end in extents:
                handle.seek(start)
                chunks.append(handle.read(end - start))
        # read from a file object, the arrays are copies the steps may write
        # into (HDUList.fromstring would give read-only views of the bytes)
        hdulist = fits.open(io.BytesIO(b"".join(chunks)), memmap=False, lazy_load_hdus=False)
        tree = with_fits_hash(tree, fits_hash(hdulist))
        if tree is None:
            raise NotOpenedHere(f"{self.path.name}: no top-level _fits_hash")
        hdulist.append(asdf_hdu(tree))
        model = MultiSlitModel(hdulist)
        model.meta.filename = self.path.name
        return model


def release_freed_memory():
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; else nothing).

    Reading thousands of FITS headers, and reducing a part, leave many small
    freed objects between live ones; glibc keeps those pages, so the process
    would grow from part to part by what it has already freed.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


@dataclass(frozen=True)
class _CellReader:
    """Reads an exposure's ASDF cell again from its file (picklable, for worker processes)."""

    path: Path
    offset: int
    size: int

    def __call__(self):
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.size)


def _cell_reader(path, hdulist):
    """A `_CellReader` of the ASDF cell, or None if it is not stored plainly.

    The cell of a one-row table with one fixed-width byte column is the
    table's data, byte for byte.
    """
    hdu = hdulist[ASDF_HDU]
    cell = hdu.data[ASDF_COLUMN][0]
    if len(hdu.columns) != 1 or hdu.columns[0].format != f"{len(cell)}B" or len(hdu.data) != 1:
        return None
    reader = _CellReader(Path(path), hdu._data_offset, len(cell))
    return reader if reader() == cell.tobytes() else None


def open_part(input_data, files, wanted):
    """The exposures of a visit with only the slits ``wanted``, as `open_visit` opens them.

    Parameters
    ----------
    input_data : str, os.PathLike or list
        The association or files the visit was given as.
    files : dict of str to ExposureFile
        By file name.
    wanted : dict of str to list of int
        Slit positions by file name; a file not named is left out.

    Returns
    -------
    ModelContainer

    Raises
    ------
    NotOpenedHere
        When a wanted slit does not open (a corrupt tree): the caller opens
        the visit whole, for stdatamodels' own message.
    """

    def slits_of(path):
        name = Path(path).name
        if name not in wanted:
            return None
        try:
            return files[name].open_slits(wanted[name])
        except NotOpenedHere:
            raise
        except Exception as err:  # the whole open says what is wrong with it
            raise NotOpenedHere(f"{name}: {type(err).__name__}: {err}") from err

    return open_visit(input_data, opener=slits_of)


class LazyVisit:
    """A visit's index, and its slits opened part by part.

    Use `LazyVisit.open`; ``index`` is a ``ModelContainer`` with the bookkeeping
    of `nodcombine.modelio.open_visit` whose slits have their scalar fields only.
    """

    def __init__(self, input_data, files, index):
        self.input_data = input_data
        self.files = files
        self.index = index
        # a slit of the index, or of a part cut from it (which shares its
        # slits), names its position in its file by its identity
        self._positions = {}
        for model in index:
            for position, slit in enumerate(model.instance["slits"]):
                self._positions[id(slit)] = position

    @classmethod
    def open(cls, input_data):
        """The visit's index, or None when it is to be opened whole.

        Parameters
        ----------
        input_data : str, os.PathLike or list
            An association file or a list of ``_cal`` file names.
        """
        files = {}

        def index_of(path):
            try:
                exposure = ExposureFile.read(path)
            except Exception as err:  # the whole open says what is wrong with it
                raise NotOpenedHere(f"{Path(path).name}: {err}") from err
            if exposure is None:
                raise NotOpenedHere(f"{Path(path).name}: not a multi-slit FITS datamodel")
            files[exposure.path.name] = exposure
            return exposure.open_slits(None)

        try:
            index = open_visit(input_data, opener=index_of)
        except NotOpenedHere as err:
            log.debug("opening the visit whole: %s", err)
            return None
        if index is None or len(index) < 2:
            return None
        release_freed_memory()
        return cls(input_data, files, index)

    def positions(self, part):
        """Positions in its file of each slit of ``part`` (the index or a part cut from it)."""
        return {
            model.meta.filename: [self._positions[id(slit)] for slit in model.instance["slits"]]
            for model in part
        }

    def load(self, part):
        """The exposures of ``part`` with their slits whole (`open_part`)."""
        return open_part(self.input_data, self.files, self.positions(part))
