"""NodCombinePipeline: nod differences to calibrated 1-D spectra."""

import contextlib
import gc
import logging
from pathlib import Path
from typing import ClassVar

from jwst.stpipe import Pipeline

from nodcombine.extract_1d.step import OptimalExtract1dStep
from nodcombine.nod_diff.step import NodDiffStep
from nodcombine.pipelines.products import per_source_products, product_name
from nodcombine.rectify.step import RectifyStep
from nodcombine.stepbase import NodcombineMixin
from nodcombine.trace_fit.step import TraceFitStep

__all__ = ["NodCombinePipeline"]

log = logging.getLogger(__name__)


class NodCombinePipeline(NodcombineMixin, Pipeline):
    """``nod_diff → trace_fit → rectify → optimal_extract_1d`` on one nodded visit.

    Saves, per source, an ``_s2d`` (the rectified slit) and an ``_x1d`` (its
    spectrum) named like ``calwebb_spec3`` products
    (``<product>_s000000933_s2d.fits``), and returns the ``_x1d`` of all sources.
    """

    class_alias = "nodcombine"

    spec = """
    save_sources = boolean(default=True)  # with save_results: write an _s2d and _x1d per source
    """

    step_defs: ClassVar[dict] = {
        "nod_diff": NodDiffStep,
        "trace_fit": TraceFitStep,
        "rectify": RectifyStep,
        "optimal_extract_1d": OptimalExtract1dStep,
    }

    def process(self, input_data):
        """Run the chain.

        Parameters
        ----------
        input_data : str, list or ModelContainer
            A spec3 association or the ``_cal`` products of one visit.

        Returns
        -------
        MultiSpecModel
            One spectrum per source.
        """
        with _imports_frozen():
            nod = self.nod_diff.run(input_data)
            product = product_name(nod)
            trace = self.trace_fit.run(nod)
            s2d = self.rectify.run(trace)
            x1d = self.optimal_extract_1d.run(s2d)
        if self.save_results and self.save_sources:
            self._save_sources(product, s2d, x1d)
        return x1d

    def _save_sources(self, product, s2d, x1d):
        for name, model in per_source_products(product, s2d, x1d):
            path = Path(self.output_dir or ".") / f"{name}.fits"
            model.meta.filename = path.name
            model.save(path)
            log.info("saved %s", path)

    def default_suffix(self):
        """Suffix of the returned product: ``x1d``."""
        return "x1d"


@contextlib.contextmanager
def _imports_frozen():
    """Leave the objects that exist before the run out of its garbage collections.

    stpipe collects garbage at the start of every step run.  With jwst imported
    each collection traverses some 140,000 long-lived objects (modules, classes,
    schemas) for 0.1 s, a third of the work on a one-source visit.  Frozen
    (`gc.freeze`) for the duration of the run, they are skipped; they are
    unfrozen at its end, so nothing is kept alive by it.  A caller that froze
    objects itself is left alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
