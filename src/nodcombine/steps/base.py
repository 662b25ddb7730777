"""Base class of the nodcombine steps."""

from jwst.stpipe import Step

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
