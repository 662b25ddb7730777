"""``calwebb_spec2_nod``: stock ``calwebb_spec2`` making the inputs of the nod chain.

The same steps as ``calwebb_spec2``; only defaults differ, set in the packaged
parameter file ``calwebb_spec2_nod.asdf`` (picked automatically, like a CRDS
``pars-spec2pipeline``):

* ``bkg_subtract`` and ``master_background_mos`` never run: the nod
  differences of ``nod_diff`` remove the background, and subtracting it here
  would subtract it twice.  Asked for, they are skipped with a warning.
* ``pathloss`` is skipped: ``optimal_extract_1d`` corrects the path loss with
  the fitted profile (jwst's correction, if applied, is undone there).
* ``resample_spec`` and ``extract_1d`` are skipped: ``calwebb_spec3_nod``
  rectifies and extracts per source from the ``_cal`` files.

So ``strun calwebb_spec2_nod <rate or spec2 asn>`` followed by
``strun calwebb_spec3_nod <spec3 asn>`` goes from ``_rate`` to ``_x1d``.
"""

import logging

from jwst.pipeline.calwebb_spec2 import Spec2Pipeline

from nodcombine.stepbase import NodcombineMixin

__all__ = ["Spec2NodPipeline"]

log = logging.getLogger(__name__)

#: stock steps that must not run before nod differencing
_BACKGROUND_STEPS = ("bkg_subtract", "master_background_mos")


class Spec2NodPipeline(NodcombineMixin, Spec2Pipeline):
    """``calwebb_spec2`` without background subtraction, for ``calwebb_spec3_nod``."""

    class_alias = "calwebb_spec2_nod"
    #: stock spec2's steps read CRDS references: stpipe fetches them with the full metadata
    reads_reference_files = True

    spec = """
    """

    def run(self, *args):
        """Stock ``calwebb_spec2``, the background steps kept off.

        Checked here rather than in ``process``: stpipe fetches the reference
        files of every step that will run before ``process`` starts.
        """
        for name in _BACKGROUND_STEPS:
            step = getattr(self, name)
            if not step.skip:
                log.warning(
                    "%s skipped: nod_diff removes the background by differencing the nod "
                    "positions; subtracting it here as well would subtract it twice",
                    name,
                )
                step.skip = True
        return super().run(*args)
