"""What the package's steps and pipelines share: logging, suffixes, the error policy."""

import contextlib
import logging
import math
import os
import re
import time

from jwst.datamodels import ModelContainer
from jwst.stpipe import Step
from stpipe import config_parser
from stpipe.exceptions import StpipeExitException, ValidationError
from stpipe.step import get_disable_crds_steppars

from nodcombine.errors import InputError, RefusedError
from nodcombine.modelio import sort_asdf_extension_history
from nodcombine.parallel import core_count
from nodcombine.parrefs import (
    SELECTORS,
    mode_differences,
    packaged_parameter_file,
    select_mode,
    selection_parameters,
)
from nodcombine.progress import StepProgress
from nodcombine.visit import group_by_source

__all__ = ["OWN_SUFFIXES", "NodcombineMixin", "NodcombineStep", "RunRefused"]

log = logging.getLogger(__name__)

#: suffixes of this package's products, replaced (not stacked) by the next step's
OWN_SUFFIXES = ("nod", "trace", "s2d", "x1d")

_OWN_SUFFIX_REGEX = re.compile(rf"^(?P<root>.+?)[_-]({'|'.join(OWN_SUFFIXES)})$")


class RunRefused(RefusedError, StpipeExitException):
    """A `RefusedError` already logged: ``strun`` exits with its status, no traceback."""

    def __init__(self, where, field, problem):
        super().__init__(where, field, problem)
        self._exit_status = RefusedError.exit_status


class NodcombineMixin:
    """What the package's steps and pipelines share (mixed in before `Step`/`Pipeline`).

    stpipe only configures the loggers a step names; without ``nodcombine`` in
    that list the INFO lines of this package would vanish.
    """

    #: whether stpipe must fetch reference files for the class's steps (`_get_crds_parameters`)
    reads_reference_files = False

    def run(self, *args):
        """`stpipe.Step.run`; a `RefusedError` is logged once, then ends ``strun`` quietly.

        The step that refuses logs ``REFUSED ...`` and raises a `RunRefused`
        (the same error, also an `~stpipe.exceptions.StpipeExitException`):
        ``strun`` exits with status 2 without a traceback, so the log line is
        what the user reads.
        """
        self.skip_reasons = {}  # by source label, this run's (`NodcombineStep.per_source`)
        self._run_start = time.monotonic()
        # the mode of this run's input: the packaged parameters call() and strun give
        # the step are that mode's (`mode_parameters`)
        self._input_mode = select_mode(selection_parameters(args[0])) if args else None
        try:
            if self.parent is None:
                self._check_output_dir()
            return super().run(*args)
        except RunRefused:
            raise
        except RefusedError as err:
            log.error("REFUSED %s", err)
            raise RunRefused(err.where, err.field, err.problem) from None

    @classmethod
    def from_config_section(cls, config, *args, **kwargs):
        """`stpipe.Step.from_config_section`, a parameter the spec refuses ending it quietly.

        stpipe's own check of the spec (``min``, ``max``, types) raises a
        ``ValidationError`` that ``strun`` prints with a traceback; here it is
        logged as one ``REFUSED`` line and ``strun`` exits with status 2.
        """
        try:
            return super().from_config_section(config, *args, **kwargs)
        except ValidationError as err:
            log.error("REFUSED %s: %s", cls.class_alias or cls.__name__, err)
            raise RunRefused(cls.class_alias or cls.__name__, "parameters", str(err)) from None

    def _check_output_dir(self):
        """Refuse an output folder that cannot be made, before any work (not at the end)."""
        if not self.output_dir:
            return
        path = os.path.expandvars(os.path.expanduser(self.output_dir))
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as err:
            raise RefusedError(path, "output_dir", f"cannot be made: {err}") from err

    def save_model(self, model, *args, **kwargs):
        """`stpipe.Step.save_model`, with the ASDF extensions listed in a fixed order.

        Two runs of one visit then write the same bytes, apart from the dates
        (`~nodcombine.modelio.sort_asdf_extension_history`).
        """
        paths = super().save_model(model, *args, **kwargs)
        for path in paths if isinstance(paths, list) else [paths]:
            if isinstance(path, str) and path.endswith(".fits"):
                sort_asdf_extension_history(path)
        return paths

    def check_parameters(self):
        """Refuse parameters outside their meaning, before any work.

        The spec's ``min``/``max`` let NaN through (every comparison with it is
        false): a NaN threshold silently turns a test off.  Every ``float``
        and ``float_list`` parameter must be finite (or None where allowed);
        a ``maximum_cores`` must name a number of cores.

        Raises
        ------
        RefusedError
            Naming the step and the parameter.
        """
        spec = self.load_spec_file()
        for name, check in spec.items():
            if not (isinstance(check, str) and check.startswith(("float(", "float_list("))):
                continue
            value = getattr(self, name, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(v is not None and not math.isfinite(float(v)) for v in values):
                raise RefusedError(self.class_alias, name, f"is {value}; give a finite number")
        if "maximum_cores" in spec:
            try:
                core_count(self.maximum_cores)
            except ValueError as err:
                raise RefusedError(self.class_alias, "maximum_cores", str(err)) from err

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
        # of a 200-slit MultiSlitModel takes seconds.  With that look-up off, a class
        # whose steps read no reference file needs only the keys of the packaged
        # selection: they come from the header.  stpipe uses the same parameters to
        # fetch reference files, so a pipeline whose steps read them keeps jwst's.
        if get_disable_crds_steppars() and not cls.reads_reference_files:
            return selection_parameters(dataset), "jwst"
        return super()._get_crds_parameters(dataset)

    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """The ``pars-*`` look-up of stpipe, then the packaged parameter file merged over it.

        CRDS holds no ``pars-*`` files for this package's classes; the packaged
        file chosen by `nodcombine.parrefs.SELECTION` stands in for them (and, in
        ``calwebb_spec3_nod``, sets the stock sub-steps this package replaces).
        A parameter file the user passes and command-line parameters are merged
        over the result by stpipe, so they win.

        Parameters
        ----------
        dataset : str, dict, DataModel or ModelContainer
            The input, or its CRDS parameters.
        disable : bool, optional
            Disables the CRDS look-up only; the packaged file is local.
        crds_observatory : str, optional

        Returns
        -------
        configobj.ConfigObj
        """
        config = super().get_config_from_reference(
            dataset, disable=disable, crds_observatory=crds_observatory
        )
        parameters = selection_parameters(dataset)
        path, mode = packaged_parameter_file(cls.class_alias, parameters)
        if path is None:
            log.info(
                "%s: no packaged parameter file for %s; the spec defaults apply",
                cls.class_alias,
                {SELECTORS[key]: value for key, value in parameters.items()} or "this input",
            )
            return config
        log.info("%s: packaged parameters %s (mode %s)", cls.class_alias, path.name, mode or "any")
        config_parser.merge_config(config, config_parser.load_config_file(str(path)))
        return config

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


class NodcombineStep(NodcombineMixin, StepProgress, Step):
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

        The log line is the step's `summary`.
        """
        self.log_summary(counts, done)
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

    @contextlib.contextmanager
    def mode_parameters(self, label, model):
        """Within the context, the packaged parameters of ``model``'s mode where they differ.

        Parameters
        ----------
        label : str
            The source, for the log.
        model : DataModel or None
            None, or a model of the input's own mode: nothing changes.
        """
        mode = select_mode(selection_parameters(model)) if model is not None else None
        current = {name: getattr(self, name, None) for name in self.load_spec_file()}
        changes = mode_differences(self.class_alias, self._input_mode, mode, current)
        if changes:
            log.info("%s: %s parameters for %s: %s", self.class_alias, mode, label, changes)
        with self.parameters_changed(changes):
            yield

    @contextlib.contextmanager
    def parameters_changed(self, changes):
        """Within the context, the step's parameters with ``changes``; restored after it.

        A run never leaves a changed parameter behind on the step instance.
        """
        before = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in before.items():
                setattr(self, name, value)

    def per_source(self, label, work, on_skip=None, *, model=None):
        """``work()``, or None after logging and recording why it could not be done.

        The reason is also kept in ``skip_reasons`` (by ``label``) for the
        pipeline's visit record.  A source whose ``model`` is of another
        observing mode than the input's first member (a visit mixing MIRI LRS
        and NIRSpec, say) is worked on with its own mode's packaged parameters
        wherever the step holds the first member's packaged values
        (`mode_parameters`), so that it comes out as if reduced alone.

        Parameters
        ----------
        label : str
            The source, for messages about failures that do not name it.
        work : callable
            Does the step's work for one source.
        on_skip : callable, optional
            Called with the reason (a string) when ``work`` fails.
        model : DataModel, optional
            One of the source's exposures, for its observing mode.

        Returns
        -------
        object or None
            What ``work`` returned.
        """
        try:
            with self.mode_parameters(label, model):
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
        self.skip_reasons[label] = reason
        if on_skip is not None:
            on_skip(reason)
        return None
