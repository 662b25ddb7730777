"""Base class of the nodcombine steps."""

from jwst.stpipe import Step
from stpipe.step import get_disable_crds_steppars

__all__ = ["NodcombineStep"]


class NodcombineStep(Step):
    """A `jwst.stpipe.Step` whose package logger reaches the stpipe log.

    stpipe only configures the loggers a step names; without ``nodcombine`` in
    that list the INFO lines of this package would vanish.
    """

    spec = """
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
