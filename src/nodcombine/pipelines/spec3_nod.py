"""``calwebb_spec3_nod``: stock ``calwebb_spec3`` with the nod chain in place of resampling.

Stock ``calwebb_spec3`` on slit data groups the exposures by source
(``exp_to_source``), then per source detects outliers, resamples the
exposures onto one 2-D grid (``resample_spec``, ``_s2d``) and extracts it
(``extract_1d``, ``_x1d``).  Here the two last are replaced, per source, by
``nod_diff → trace_fit → rectify → optimal_extract_1d``, followed by stock
``combine_1d`` (``_c1d``).  Everything before is jwst's own code; the
products are named as stock ``calwebb_spec3`` names them
(``<product>_s000000933_s2d.fits``).

What differs from stock, and why:

* Background members of the association (``exptype: background``) are left
  out and ``master_background`` is not a step here: the nod differences remove
  the background, and subtracting a master background first would subtract it
  twice (inputs with ``bkg_subtract`` COMPLETE are refused by ``nod_diff``).
* ``outlier_detection`` is stock, but its packaged parameter file skips it:
  ``nod_diff`` rejects outliers across the exposures of each nod position.
  ``--steps.outlier_detection.skip=False`` runs it first.  (The packaged file
  comes with ``strun`` and ``call()``; an instance made by hand has stpipe's
  defaults.)
* The per-source ``_cal`` (stock spec3's source-based exposures) is not saved.
"""

import logging
import time
from pathlib import Path
from typing import ClassVar

from jwst.associations.lib.rules_level3_base import format_product
from jwst.datamodels import ModelContainer
from jwst.exp_to_source import multislit_to_container
from jwst.master_background.master_background_step import split_container
from jwst.pipeline.calwebb_spec3 import Spec3Pipeline
from stdatamodels.jwst import datamodels

from nodcombine.errors import RefusedError
from nodcombine.extract_1d.step import OptimalExtract1dStep
from nodcombine.nod_diff.step import NodDiffStep
from nodcombine.parrefs import override_parameters
from nodcombine.rectify.step import RectifyStep
from nodcombine.stepbase import NodcombineMixin
from nodcombine.trace_fit.step import TraceFitStep

__all__ = ["Spec3NodPipeline"]

log = logging.getLogger(__name__)

#: exposure types of nodded slit spectroscopy, the only ones this pipeline takes
NODDED_SLIT_EXPTYPES = ("NRS_MSASPEC", "NRS_FIXEDSLIT", "MIR_LRS-FIXEDSLIT")

#: suffixes of the products saved per source, as stock spec3 names them
_SUFFIXES = {"rectify": "s2d", "optimal_extract_1d": "x1d", "combine_1d": "c1d"}

#: stock steps kept, by their stock alias
_STOCK_KEPT = ("assign_mtwcs", "outlier_detection", "pixel_replace")


class Spec3NodPipeline(NodcombineMixin, Spec3Pipeline):
    """Stock ``calwebb_spec3`` for nodded slits, the nod chain replacing resampling.

    Steps, in order: ``assign_mtwcs``, ``outlier_detection``, ``pixel_replace``
    (stock), ``nod_diff``, ``trace_fit``, ``rectify``, ``optimal_extract_1d``
    (this package), ``combine_1d`` (stock).  Per source it saves the
    ``_s2d``, ``_x1d`` and ``_c1d`` products, named like stock spec3 products.
    """

    class_alias = "calwebb_spec3_nod"

    spec = """
    """

    step_defs: ClassVar[dict] = {
        **{name: Spec3Pipeline.step_defs[name] for name in _STOCK_KEPT},
        "nod_diff": NodDiffStep,
        "trace_fit": TraceFitStep,
        "rectify": RectifyStep,
        "optimal_extract_1d": OptimalExtract1dStep,
        "combine_1d": Spec3Pipeline.step_defs["combine_1d"],
    }

    def process(self, input_data):
        """Run the pipeline on a spec3 association of nodded ``_cal`` exposures.

        Parameters
        ----------
        input_data : str, dict or ModelContainer
            A spec3 association (a file, or one made with jwst's association
            tools) or the ``_cal`` models of one visit.

        Returns
        -------
        None
            Like stock ``calwebb_spec3``, the products are saved, not returned.
        """
        log.info("Starting calwebb_spec3_nod ...")
        if not self.save_results:  # strun saves by default; call() does not
            log.warning(
                "save_results is False: like calwebb_spec3 this pipeline returns nothing, "
                "so no product will be kept; pass save_results=True"
            )
        for step in (self, *(getattr(self, name) for name in self.step_defs)):
            if isinstance(step, NodcombineMixin):
                step.check_parameters()
        self._set_step_defaults()
        input_models = self.prepare_output(input_data, asn_exptypes=["science", "background"])
        asn_name = Path(input_models.asn_table_name or "").name
        for model in input_models:
            model.meta.asn.table_name = asn_name
        science = _science_only(input_models)
        if not len(science):
            raise RefusedError(str(input_data), "members", "no science member to reduce")
        product = input_models.asn_table["products"][0]["name"]
        exptype = science[0].meta.exposure.type
        if exptype not in NODDED_SLIT_EXPTYPES:
            raise RefusedError(
                science[0].meta.filename,
                "meta.exposure.type",
                f"is {exptype}; calwebb_spec3_nod reduces nodded slits "
                f"({', '.join(NODDED_SLIT_EXPTYPES)}); use calwebb_spec3",
            )
        if self.optimal_extract_1d.override_extract1d:  # refused before any work
            override_parameters(self.optimal_extract_1d.override_extract1d, science[0])
        sources = self._sources(science)
        started = time.monotonic()
        for k, (source_id, models) in enumerate(sources, start=1):
            self.output_file = self._product_of(product, exptype, source_id, models)
            log.info("source %d of %d: %s", k, len(sources), self.output_file)
            self._reduce_source(models)
        elapsed = time.monotonic() - started
        log.info("Ending calwebb_spec3_nod: %d sources in %.1f s", len(sources), elapsed)
        if input_models is not input_data:
            input_models.close()

    def _set_step_defaults(self):
        """Suffixes and saving as stock spec3 sets them for its own steps."""
        self.outlier_detection.suffix = "crf"
        self.outlier_detection.mode = "spec"
        self.pixel_replace.suffix = "pixel_replace"
        self.pixel_replace.output_use_model = True
        for name, suffix in _SUFFIXES.items():
            step = getattr(self, name)
            step.suffix = suffix
            step.save_results = self.save_results
        for name in ("nod_diff", "trace_fit"):
            getattr(self, name).output_use_model = True

    def _sources(self, science):
        """The exposures of each source: ``exp_to_source``'s containers, or the visit."""
        if isinstance(science[0], datamodels.MultiSlitModel):
            log.info("Convert from exposure-based to source-based data.")
            return list(multislit_to_container(science).items())
        return [(None, science)]

    def _product_of(self, product, exptype, source_id, models):
        """Stock spec3's product name of one source."""
        if source_id is None:
            return product
        if exptype == "NRS_FIXEDSLIT":
            return format_product(
                product,
                source_id=f"s{source_id:>09s}",
                slit_name=self._create_nrsfs_slit_name(models),
            )
        if exptype == "NRS_MSASPEC":
            return format_product(product, source_id=self._create_nrsmos_source_id(models))
        return format_product(product, source_id=f"s{source_id:>09s}")

    def _reduce_source(self, models):
        models = self.outlier_detection.run(models)
        models = self.pixel_replace.run(models)
        nod = self.nod_diff.run(models)
        trace = self.trace_fit.run(nod)
        s2d = self.rectify.run(trace)
        x1d = self.optimal_extract_1d.run(s2d)
        if x1d is None or not len(getattr(x1d, "spec", ())):
            log.warning("SKIPPED %s: no spectrum to combine", self.output_file)
            return
        self.combine_1d.run(x1d)


def _science_only(input_models):
    """The science members; background members are left out, with a log line."""
    table = input_models.asn_table or {}
    exptypes = [
        str(member.get("exptype", "science")).lower()
        for member in table.get("products", [{}])[0].get("members", [])
    ]
    if "background" not in exptypes:
        return input_models
    science, background = split_container(input_models)
    log.info(
        "%d background members left out: the nod differences remove the background",
        len(background),
    )
    background.close()
    science.asn_table = input_models.asn_table
    return science if isinstance(science, ModelContainer) else ModelContainer(science)
