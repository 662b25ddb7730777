"""Parts of a MOS visit reduced in worker processes (the pipeline's ``maximum_cores``).

A visit opened part by part (`nodcombine.lazyvisit`) needs nothing of the
parent to reduce one part but the pipeline's parameters, the files' layouts
and the positions of the part's slits: a few kB.  Each worker (spawned, one
BLAS thread) opens its part, runs the four steps on it with the pipeline's
own code (`NodCombinePipeline._reduce`), writes the part's products and sends
back what the parent records: the part's spectra, the skip reasons, the
products written and their summaries, each step's counts, and the log lines,
which the parent logs again in the order of the parts.  A part is reduced
exactly as the serial run reduces it, so the products are the same, bit for
bit (``tests/test_lazyvisit.py``).
"""

import io
import logging
from dataclasses import dataclass, field

import asdf
import numpy as np
from astropy.io import fits
from gwcs import WCS
from stdatamodels.jwst import datamodels

from nodcombine.lazyvisit import open_part
from nodcombine.pipelines.families import sub_visit

__all__ = ["PartResult", "PartTask", "reduce_part", "replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartTask:
    """What a worker needs to reduce one part.

    Attributes
    ----------
    parameters : dict
        The pipeline's ``get_pars()``.
    input_data : str or list
        The association or files the visit was given as.
    files : dict
        `~nodcombine.lazyvisit.ExposureFile` by file name.
    parts : list of dict
        Consecutive parts of the visit, each as its slits' positions by file
        name; opened together, reduced one after the other.
    plan : list or None
        The visit's product plan (None: no per-source products).
    product : str
        The visit's product name.
    """

    parameters: dict
    input_data: object
    files: dict
    parts: list
    plan: list | None
    product: str


@dataclass
class PartResult:
    """What the parent records of a part reduced in a worker."""

    spectra: list
    model_class: str
    reasons: dict
    written: dict
    details: dict
    tallies: dict = field(default_factory=dict)
    records: list = field(default_factory=list)


class _Recorder:
    """Stands in for a step's visit tally in a worker: keeps what the step adds."""

    def __init__(self):
        self.adds = []

    @staticmethod
    def each(items):
        yield from items

    def add(self, counts, verb, seconds):
        self.adds.append((counts, verb, seconds))


class _Collector(logging.Handler):
    def __init__(self, records):
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record):
        self.records.append((record.levelno, record.name, record.getMessage()))


def reduce_part(task):
    """Reduce a task's parts in this (worker) process; returns a `PartResult`."""
    # the pipeline module imports this one
    from nodcombine.pipelines.nodcombine_pipeline import NodCombinePipeline

    records = []
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [_Collector(records)]
    root.setLevel(logging.INFO)
    try:
        pipeline = NodCombinePipeline(**task.parameters)
        pipeline.maximum_cores = "1"
        pipeline.trace_fit.maximum_cores = "1"  # this process is one of the cores
        pipeline._written, pipeline._details = {}, {}
        pipeline._reasons = {name: {} for name in pipeline.step_defs}
        steps = {name: getattr(pipeline, name) for name in pipeline.step_defs}
        for step in steps.values():
            step._tally = _Recorder()
        names = task.parts[0].keys()
        union = {name: sorted(set().union(*(part[name] for part in task.parts))) for name in names}
        opened = open_part(task.input_data, task.files, union)
        spectra = []
        for part in task.parts:
            slits = [
                {union[model.meta.filename].index(p) for p in part[model.meta.filename]}
                for model in opened
            ]
            spectra.append(pipeline._reduce(sub_visit(opened, slits), task.plan, task.product))
        return PartResult(
            [_portable(product.instance) for product in spectra],
            type(spectra[0]).__name__,
            pipeline._reasons,
            pipeline._written,
            pipeline._details,
            {name: step._tally.adds for name, step in steps.items()},
            records,
        )
    finally:
        handlers, level = saved
        root.handlers[:] = handlers
        root.setLevel(level)


def replay(result, pipeline):
    """Record a worker's part in the parent: its log lines, reasons, products and counts.

    Returns
    -------
    list of DataModel
        The spectra of each of the task's parts.
    """
    for level, name, message in result.records:
        logging.getLogger(name).log(level, "%s", message)
    for name, reasons in result.reasons.items():
        pipeline._reasons[name].update(reasons)
    for label, files in result.written.items():
        pipeline._written.setdefault(label, []).extend(files)
    for label, details in result.details.items():
        pipeline._details.setdefault(label, {}).update(details)
    for name, adds in result.tallies.items():
        tally = getattr(pipeline, name)._tally
        for counts, verb, seconds in adds:
            if tally is not None:
                tally.add(counts, verb, seconds)
                for _ in range(counts[1]):
                    tally.progress.advance()
    model_class = getattr(datamodels, result.model_class)
    return [model_class(_restored(tree)) for tree in result.spectra]


def _portable(tree):
    """``tree`` made picklable: gwcs objects serialised as ASDF, FITS tables as plain arrays.

    The model the parent makes of it casts the arrays back to the schema's
    tables, as it does any assigned array.
    """
    if isinstance(tree, fits.FITS_rec):
        return _plain_table(tree)
    if isinstance(tree, dict):
        return {key: _portable(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_portable(value) for value in tree]
    if isinstance(tree, WCS):
        buffer = io.BytesIO()
        asdf.AsdfFile({"wcs": tree}).write_to(buffer)
        return _SerialisedWcs(buffer.getvalue())
    return tree


def _plain_table(table):
    """A FITS table as a structured array of its values (unsigned columns unsigned).

    The table's own buffer holds a ``uint32`` column as ``int32`` offset by
    ``TZERO``; its fields give the values.
    """
    columns = {name: np.asarray(table.field(name)) for name in table.columns.names}
    dtype = [(name, values.dtype, values.shape[1:]) for name, values in columns.items()]
    plain = np.empty(len(table), dtype=dtype)
    for name, values in columns.items():
        plain[name] = values
    return plain


def _restored(tree):
    if isinstance(tree, dict):
        return {key: _restored(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [_restored(value) for value in tree]
    if isinstance(tree, _SerialisedWcs):
        with asdf.open(io.BytesIO(tree.data), lazy_load=False, memmap=False) as af:
            return af.tree["wcs"]
    return tree


@dataclass(frozen=True)
class _SerialisedWcs:
    data: bytes
