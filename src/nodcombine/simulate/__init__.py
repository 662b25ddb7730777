"""Seeded simulator of nodded JWST slit exposures, written as real ``_cal`` datamodels.

The simulator stands in for a ``calwebb_spec2`` run without background
subtraction: it returns `~stdatamodels.jwst.datamodels.MultiSlitModel` (NIRSpec MOS
and fixed slit) or `~stdatamodels.jwst.datamodels.ImageModel` (MIRI LRS slit)
instances in MJy/sr with a gwcs per slit, the nod metadata real files carry, and
noise whose true variances are what is written to ``var_poisson``,
``var_rnoise`` and ``var_flat``.  The truth (source trace rows, widths, fluxes,
injected cosmic rays) comes back beside the models, as photutils'
``make_psf_model_image`` does.

Geometry follows the real products (checked against ``shared/data/ceers_933``):
NIRSpec MOS slitlets are three shutters of pitch 1.15 slit units (0.529″) with
bars between them, one detector row is 0.227 slit units, ``slit_frame`` y = 0 is
the centre of the shutter holding the source (so it moves one pitch between nod
positions) and the WCS takes cutout pixel coordinates.

Modules: `~nodcombine.simulate.modes` (the mode table and nod patterns),
`~nodcombine.simulate.options` (a visit's validated options),
`~nodcombine.simulate.profiles` and `~nodcombine.simulate.shapes` (the source's
profile families along the slit),
`~nodcombine.simulate.visit` (`simulate_nodded_visit`),
`~nodcombine.simulate.window`, `~nodcombine.simulate.scene`,
`~nodcombine.simulate.exposures` and `~nodcombine.simulate.cutouts` (one slit's
light, noise and cutouts), `~nodcombine.simulate.truth`,
`~nodcombine.simulate.files` (datamodels and association files) and
`~nodcombine.simulate.wcs`.
"""

from nodcombine.simulate.files import write_association, write_visit
from nodcombine.simulate.modes import MODES, SLIT_WIDTH_ARCSEC, InstrumentMode, nod_offsets
from nodcombine.simulate.profiles import FAMILIES, SourceProfile
from nodcombine.simulate.truth import NodTruth, SlitTruth
from nodcombine.simulate.visit import simulate_nodded_visit

__all__ = [
    "FAMILIES",
    "MODES",
    "SLIT_WIDTH_ARCSEC",
    "InstrumentMode",
    "NodTruth",
    "SlitTruth",
    "SourceProfile",
    "nod_offsets",
    "simulate_nodded_visit",
    "write_association",
    "write_visit",
]
