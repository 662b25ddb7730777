"""Multi-slit ``_cal`` files whose every slit is a real one (real gwcs, arrays, metadata).

Real MOS exposures with many slits are large; the shared test data hold one
slit per exposure (CEERS 933).  `write_mos_exposures` repeats such a slit N
times per exposure, each copy with its own slitlet, source id and a planned
position shifted by up to a tenth of a shutter, so that a visit of N sources on
the real NIRSpec transform chain can be reduced and timed.

In a real exposure each slit's WCS differs from the others' in its
slit-specific parts (bounding box, the slit's place in the MSA) and equals
them elsewhere.  ``distinct_wcs=True`` gives each copy its own bounding box and
its own ``slit_frame → msa_frame`` transform (a shift of a few 1e-9 slit units,
far below anything measurable) so that only the common sub-trees repeat.
"""

import copy
from pathlib import Path

from astropy.modeling.models import Identity, Shift
from stdatamodels.jwst import datamodels

__all__ = ["write_mos_exposures"]


def write_mos_exposures(slit_paths, n_slits, folder, distinct_wcs=False):
    """Write one ``MultiSlitModel`` ``_cal`` file of ``n_slits`` copies per slit file.

    Parameters
    ----------
    slit_paths : list of path-like
        Single-slit ``SlitModel`` files, one per exposure (e.g. CEERS 933 ``_phot``).
    n_slits : int
        Slits per exposure.
    folder : path-like
        Where to write; created if needed.
    distinct_wcs : bool
        Give each copy its own slit-specific WCS parts (see the module notes).

    Returns
    -------
    list of pathlib.Path
        The written files, named ``<exposure>_cal.fits``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source_path in sorted(map(Path, slit_paths)):
        with datamodels.open(source_path) as slit_model:
            exposure = datamodels.MultiSlitModel()
            exposure.update(slit_model)
            for k in range(n_slits):
                exposure.slits.append(_renumbered(slit_model, k, distinct_wcs))
            name = source_path.name.split("_phot")[0].split("_cal")[0] + "_cal.fits"
            exposure.meta.filename = name
            exposure.save(folder / name)
            paths.append(folder / name)
    return paths


def _renumbered(slit_model, k, distinct_wcs):
    """The slit as slit ``k`` of a MOS exposure: its own source, shifted a little."""
    slit = slit_model.copy()
    slit.name = str(100 + k)
    slit.slitlet_id = 100 + k
    slit.source_id = 1000 + k
    slit.source_name = f"bench_{1000 + k}"
    # up to a tenth of a shutter: every source fitted, none at the same predicted row
    slit.source_ypos = float(slit_model.source_ypos) + 0.1 * ((k % 5) - 2) / 2
    if distinct_wcs:
        slit.meta.wcs = _own_slit_wcs(slit.meta.wcs, k)
    return slit


def _own_slit_wcs(wcs, k):
    wcs = copy.deepcopy(wcs)
    to_msa = wcs.get_transform("slit_frame", "msa_frame")
    wcs.set_transform("slit_frame", "msa_frame", (Shift(1e-9 * k) & Identity(2)) | to_msa)
    (x0, x1), (y0, y1) = wcs.bounding_box.bounding_box(order="F")
    # a different box that holds the same pixels
    wcs.bounding_box = ((x0, x1 + 1e-4 * k), (y0, y1))
    return wcs
