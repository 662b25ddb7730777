"""Base class of the nodcombine steps."""

import logging
import re

from jwst.datamodels import ModelContainer
from jwst.stpipe import Step
from stpipe.step import get_disable_crds_steppars

__all__ = ["OWN_SUFFIXES", "NodcombineMixin", "NodcombineStep"]

log = logging.getLogger(__name__)

#: suffixes of this package's products, replaced (not stacked) by the next step's
OWN_SUFFIXES = ("nod", "trace", "s2d", "x1d")

_OWN_SUFFIX_REGEX = re.compile(rf"^(?P<root>.+?)[_-]({'|'.join(OWN_SUFFIXES)})$")


class NodcombineMixin:
    """What the package's steps and pipelines share (mixed in before `Step`/`Pipeline`).

    stpipe only configures the loggers a step names; without ``nodcombine`` in
    that list the INFO lines of this package would vanish.
    """

    @staticmethod
    def get_stpipe_loggers():
        """Names of the loggers stpipe configures: jwst's and this package's.

        Returns
        -------
        tuple of str
        """
        return (*Step.get_stpipe_loggers(), "nodcombine")

    @classmethod
    def _get_crds_parameters(cls, dataset):
        # stpipe reads the first input's metadata to look up a pars-* reference
        # before it checks whether that look-up is disabled; parsing the ASDF tree
        # of a 200-slit MultiSlitModel takes seconds, for nothing when offline.
        if get_disable_crds_steppars():
            return {}, "jwst"
        return super()._get_crds_parameters(dataset)

    def remove_suffix(self, name):
        """Strip a product suffix, this package's or jwst's, from a file stem.

        Without this, ``trace_fit`` on ``x_nod.fits`` would write
        ``x_nod_trace.fits``; jwst-style names replace the suffix: ``x_trace.fits``.

        Parameters
        ----------
        name : str
            File name without extension.

        Returns
        -------
        name, separator : str
        """
        match = _OWN_SUFFIX_REGEX.match(name)
        return super().remove_suffix(match.group("root") if match else name)


class NodcombineStep(NodcombineMixin, Step):
    """A `jwst.stpipe.Step` of this package (see `NodcombineMixin`)."""

    spec = """
    """

    def _skip(self, result, reason):
        """Log why the step cannot run and mark every model ``SKIPPED``.

        The ``meta.cal_step`` entry is named after the step's alias.
        """
        log.warning("SKIPPED %s: %s", self.class_alias, reason)
        for model in result if isinstance(result, ModelContainer) else [result]:
            setattr(model.meta.cal_step, self.class_alias, "SKIPPED")
        return result
