"""What the package's steps and pipelines share: logging, suffixes, the error policy."""

import logging
import re

from jwst.datamodels import ModelContainer
from jwst.stpipe import Step
from stpipe.step import get_disable_crds_steppars

from nodcombine.errors import InputError
from nodcombine.visit import group_by_source

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
    """A `jwst.stpipe.Step` of this package, with its error policy.

    Input a step cannot use raises `~nodcombine.errors.InputError`.  For a
    whole input, `skip_input` logs a ``SKIPPED`` warning and marks every model; for
    one source, `per_source` confines the failure to that source: a warning
    starting ``SKIPPED`` that names the file, slit and field, the source's
    slits marked by the step's own ``on_skip``, and the rest of the visit goes on.
    """

    spec = """
    """

    @staticmethod
    def group_sources(models):
        """`~nodcombine.visit.group_by_source`, logging the exposures that cannot be used."""
        groups, problems = group_by_source(models)
        for err in problems.values():
            log.warning("SKIPPED %s", err)
        return groups, problems

    def record_status(self, models, status_of, counts, done):
        """Log how many sources were done and set each model's ``meta.cal_step``.

        Parameters
        ----------
        models : iterable of DataModel
        status_of : callable
            ``COMPLETE`` or ``SKIPPED`` for a model.
        counts : tuple of (int, int)
            Sources done, sources seen.
        done : str
            What was done to them, for the log (``differenced``).
        """
        log.info("%s: %d of %d sources %s", self.class_alias, *counts, done)
        for model in models:
            setattr(model.meta.cal_step, self.class_alias, status_of(model))
        return models

    def skip_input(self, result, reason):
        """Log why the step cannot run and mark every model ``SKIPPED``.

        The ``meta.cal_step`` entry is named after the step's alias.
        """
        log.warning("SKIPPED %s: %s", self.class_alias, reason)
        for model in result if isinstance(result, ModelContainer) else [result]:
            setattr(model.meta.cal_step, self.class_alias, "SKIPPED")
        return result

    @staticmethod
    def per_source(label, work, on_skip=None):
        """``work()``, or None after logging and recording why it could not be done.

        Parameters
        ----------
        label : str
            The source, for messages about failures that do not name it.
        work : callable
            Does the step's work for one source.
        on_skip : callable, optional
            Called with the reason (a string) when ``work`` fails.

        Returns
        -------
        object or None
            What ``work`` returned.
        """
        try:
            return work()
        except InputError as err:
            reason = str(err)
            log.warning("SKIPPED %s", reason)
        except ValueError as err:  # a kernel found the source's arrays unusable
            reason = f"{label}: {err}"
            log.warning("SKIPPED source %s", reason)
        except Exception as err:  # one bad source never stops a visit
            reason = f"{label}: unexpected {type(err).__name__}: {err}"
            log.exception("SKIPPED source %s", reason)
        if on_skip is not None:
            on_skip(reason)
        return None
