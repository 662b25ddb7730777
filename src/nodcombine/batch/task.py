"""One visit of a batch, as a Dask worker runs it: ``strun`` in the worker's process.

`reduce_visit` sets the CRDS variables the batch was started with, runs the
pipeline through stpipe's own command line (``Step.from_cmdline``, what
``strun`` calls) into the visit's folder, and returns a `VisitOutcome`.
Bookkeeping stays out of that folder, which holds what ``strun`` writes and
nothing else: under ``<output>/.batch/`` each visit has an attempts file (one
line per start, so a task that starts again after its worker died knows it)
and, once done, its outcome, written atomically.  A visit counts as done only
when its outcome says so; ``--resume`` reads nothing else.
"""

import functools
import json
import logging
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "VisitJob",
    "VisitOutcome",
    "completed_outcome",
    "outcome_in_this_batch",
    "read_outcome",
    "reduce_visit",
    "starts_in_batch",
    "write_outcome",
]

log = logging.getLogger(__name__)

#: outcome statuses
COMPLETE, FAILED = "complete", "failed"


@dataclass(frozen=True)
class VisitJob:
    """What a worker needs to reduce one visit (picklable).

    Attributes
    ----------
    name : str
        The visit's product name.
    association : str
        Its spec3 association.
    output_dir : str
        The batch's output folder; the visit's products go into ``<output_dir>/<name>``.
    pipeline : str
        What ``strun`` runs: an alias (``nodcombine``, ``calwebb_spec3_nod``) or
        an ASDF parameter file.
    strun_args : tuple of str
        Further ``strun`` arguments (``--steps.trace_fit.maximum_cores=1``).
    environment : dict
        Variables set in the worker first (the CRDS settings).
    batch_id : str
        Tells this batch's attempts from an earlier batch's.
    part : str
        ``K/N``: only the K-th of the visit's N source groups (the pipeline's
        ``part``), written into ``<visit folder>/.parts/K`` for
        `~nodcombine.batch.parts.merge_parts`; empty: the whole visit.
    """

    name: str
    association: str
    output_dir: str
    pipeline: str = "nodcombine"
    strun_args: tuple = ()
    environment: dict = field(default_factory=dict)
    batch_id: str = ""
    part: str = ""

    @property
    def visit_dir(self):
        """Where ``strun`` writes: the visit's folder (a part's: ``.parts/K`` in it)."""
        folder = Path(self.output_dir) / self.name
        return folder / ".parts" / self.part.split("/")[0] if self.part else folder

    @property
    def label(self):
        """The visit's name, with ``.partKofN`` for a part."""
        return f"{self.name}.part{self.part.replace('/', 'of')}" if self.part else self.name

    @property
    def outcome_path(self):
        """``<output_dir>/.batch/<label>.json``: the outcome, once the task ended."""
        return Path(self.output_dir) / ".batch" / f"{self.label}.json"

    @property
    def attempts_path(self):
        """``<output_dir>/.batch/<label>.attempts``: a line per start of the task."""
        return Path(self.output_dir) / ".batch" / f"{self.label}.attempts"


@dataclass(frozen=True)
class VisitOutcome:
    """How one visit went.

    Attributes
    ----------
    name : str
    status : str
        ``complete`` (the pipeline ran to its end; sources may be skipped) or ``failed``.
    reason : str
        Why it failed (the exception), or what happened to earlier attempts.
    wall_s : float
        Seconds of the last attempt.
    worker : str
        The Dask worker (or ``host:pid``) that ran the last attempt.
    attempts : int
        Starts of the task in this batch (more than 1: a worker died under it).
    sources : list of dict
        The visit record's sources (status, reason, trace_snr, model, median_snr).
    products : list of str
        Files in the visit's folder when it ended.
    batch_id : str
        The batch that ran it.
    """

    name: str
    status: str
    reason: str = ""
    wall_s: float = 0.0
    worker: str = ""
    attempts: int = 1
    sources: list = field(default_factory=list)
    products: list = field(default_factory=list)
    batch_id: str = ""

    def to_json(self):
        """The outcome file's text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def reduce_visit(job, *, on_start=None):
    """Reduce one visit with ``strun``'s own entry point; never raises for the visit's faults.

    Parameters
    ----------
    job : VisitJob
    on_start : callable, optional
        Called as ``on_start(job, attempt)`` once the attempt is on record and
        before the pipeline runs (fault injection in the benchmark and tests).

    Returns
    -------
    VisitOutcome
        Also written to ``<output_dir>/.batch/<name>.json``.  If this batch
        already wrote one (Dask starts a finished task again when the worker
        holding its result died before the result was fetched), that one,
        without reducing the visit again.
    """
    earlier = outcome_in_this_batch(job)
    if earlier is not None:
        return earlier
    os.environ.update(job.environment)
    _warn_of_malloc_trim()
    attempt = _register_attempt(job)
    if on_start is not None:
        on_start(job, attempt)
    job.visit_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status, reason = COMPLETE, ""
    try:
        _run_strun(job)
    except Exception as err:
        status, reason = FAILED, _describe(err)
    if attempt > 1:
        note = f"started {attempt} times: the worker of each earlier start died"
        reason = f"{reason}; {note}" if reason else note
    outcome = VisitOutcome(
        name=job.name,
        status=status,
        reason=reason,
        wall_s=round(time.perf_counter() - start, 3),
        worker=_worker_name(),
        attempts=attempt,
        sources=_sources_on_record(job.visit_dir, job.name),
        products=sorted(p.name for p in job.visit_dir.iterdir() if not p.name.startswith(".")),
        batch_id=job.batch_id,
    )
    return write_outcome(job, outcome)


def completed_outcome(job):
    """The outcome of an earlier run of this visit if it completed and its products are all there.

    Returns
    -------
    VisitOutcome or None
    """
    outcome = read_outcome(job)
    if outcome is None or outcome.status != COMPLETE:
        return None
    if not all((job.visit_dir / name).exists() for name in outcome.products):
        return None
    return outcome


def write_outcome(job, outcome):
    """Write ``outcome`` as ``job``'s (atomically); returns it."""
    _write_atomically(job.outcome_path, outcome.to_json())
    return outcome


def outcome_in_this_batch(job):
    """The outcome ``job``'s task already wrote in this batch, or None.

    Dask starts a finished task again when the worker holding its result died
    before the result was fetched; the task then returns this instead of
    doing the work twice.
    """
    earlier = read_outcome(job)
    return earlier if earlier is not None and earlier.batch_id == job.batch_id else None


def read_outcome(job):
    """The outcome ``job``'s task wrote (in this batch or an earlier one), or None."""
    try:
        return VisitOutcome(**json.loads(job.outcome_path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _run_strun(job):
    """``strun <pipeline> <association> --output_dir=<visit folder>``, logging into ``logs/``."""
    from stpipe import Step  # in the worker, after the CRDS variables are set

    log_dir = Path(job.output_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    arguments = [
        job.pipeline,
        str(job.association),
        f"--output_dir={job.visit_dir}",
        f"--log-file={log_dir / (job.label + '.log')}",
        "--log-stream=null",  # the worker's terminal is not the user's
        *job.strun_args,
        *([f"--part={job.part}"] if job.part else []),
    ]
    Step.from_cmdline(arguments)


@functools.cache
def _warn_of_malloc_trim():
    """Say once per worker if it runs with Dask's malloc trim setting (docs/survey.md)."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ:
        log.warning(
            "worker %s runs with MALLOC_TRIM_THRESHOLD_=%s (Dask's default for workers): the "
            "reductions run ~1.7x slower; start the workers without it (docs/survey.md)",
            _worker_name(), os.environ["MALLOC_TRIM_THRESHOLD_"],
        )  # fmt: skip


def _describe(err):
    """The exception in one line, with where it was raised."""
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(err).__name__}: {err}{where}"


def _register_attempt(job):
    """Note this start; the number of starts of ``job`` in this batch, this one included."""
    job.attempts_path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"batch": job.batch_id, "worker": _worker_name(), "start": time.time()})
    with open(job.attempts_path, "a") as attempts:
        attempts.write(line + "\n")
    return starts_in_batch(job)


def starts_in_batch(job):
    """How many times ``job``'s task started in this batch (from its attempts file)."""
    try:
        lines = job.attempts_path.read_text().splitlines()
    except OSError:
        return 0
    return sum(1 for text in lines if text.strip() and json.loads(text)["batch"] == job.batch_id)


def _sources_on_record(visit_dir, name):
    """The sources of the visit record the pipeline wrote, else those its products show."""
    for path in sorted(visit_dir.glob(f"{name}*_visit.json")):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        return document.get("sources", [])
    return _sources_from_products(visit_dir)


def _sources_from_products(visit_dir):
    """A source per ``_x1d`` of a run that writes no visit record (``calwebb_spec3_nod``)."""
    from stdatamodels.jwst import datamodels

    from nodcombine.pipelines.products import product_stem, source_summary

    sources = []
    for spectrum in sorted(visit_dir.glob("*_x1d.fits")):
        stem = product_stem(spectrum.name[: -len(".fits")])
        entry = {"source": stem, "stem": stem, "status": "COMPLETE"}
        for path in (visit_dir / f"{stem}_s2d.fits", spectrum):
            if path.exists():
                with datamodels.open(path) as model:
                    entry.update(source_summary(model))
        entry["products"] = sorted(p.name for p in visit_dir.glob(f"{stem}_*.fits"))
        sources.append(entry)
    return sources


def _worker_name():
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _write_atomically(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
