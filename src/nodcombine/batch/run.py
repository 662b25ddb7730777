"""`run_batch`: every visit of a survey through ``strun``, as Dask tasks."""

import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from nodcombine.batch.engine import batch_client, outcomes
from nodcombine.batch.inputs import find_visits
from nodcombine.batch.parts import count_sources, part_jobs
from nodcombine.batch.record import record_rows, summary, write_record
from nodcombine.batch.task import VisitJob, completed_outcome, reduce_visit
from nodcombine.offline import configure_offline_crds
from nodcombine.parallel import core_count

__all__ = ["BatchResult", "run_batch"]

log = logging.getLogger(__name__)

#: the variables a worker gets from the batch (CRDS's, and stpipe's switch for pars- files)
PASSED_VARIABLES = ("CRDS_", "STPIPE_")


@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    outcomes : list of VisitOutcome
        One per visit, in the order the visits were given.
    resumed : frozenset of str
        Visits complete from an earlier run (not reduced again).
    record_paths : list of pathlib.Path
        The batch record files.
    wall_s : float
    summary : list of str
        The lines printed at the end.
    """

    outcomes: list
    resumed: frozenset
    record_paths: list
    wall_s: float
    summary: list

    @property
    def failed(self):
        """Names of the visits that failed."""
        return [o.name for o in self.outcomes if o.status == "failed"]


def run_batch(
    inputs,
    output_dir,
    *,
    pipeline="nodcombine",
    strun_args=(),
    scheduler=None,
    n_workers="all",
    memory_limit="auto",
    retries=2,
    resume=False,
    sources_per_task=50,
    crds_path=None,
    dashboard=":8787",
    show_progress=True,
    reducer=reduce_visit,
):
    """Reduce every visit in ``inputs``, each as ``strun`` would, on Dask.

    Parameters
    ----------
    inputs : list of str or os.PathLike
        Associations, ``_cal`` files (grouped into visits) or folders of either
        (`~nodcombine.batch.inputs.find_visits`).
    output_dir : str or os.PathLike
        Each visit's products go into ``<output_dir>/<product name>/``; the
        batch record, the logs (``logs/``) and the bookkeeping (``.batch/``)
        beside them.
    pipeline : str
        ``nodcombine``, ``calwebb_spec3_nod`` or an ASDF parameter file.
    strun_args : sequence of str
        Further ``strun`` arguments, the same for every visit.
    scheduler : str, optional
        Address of a running Dask scheduler; without it a `LocalCluster` is started.
    n_workers : int or str
        Local worker processes: a count or ``maximum_cores`` words
        (``all``, ``half``, ``quarter``, ``none`` = 1).
    memory_limit : str or int
        Per local worker; ``auto`` shares the machine's memory equally.
    retries : int
        Further starts of a visit whose worker died (local cluster).
    resume : bool
        Skip visits whose outcome from an earlier run is complete with all
        its products (and parts of a split visit that are).
    sources_per_task : int
        A MOS visit of more sources is split into that many per task, and
        merged (`~nodcombine.batch.parts`); 0: a task per visit.
    crds_path : str or os.PathLike, optional
        Serverless CRDS cache for the workers when the environment names no
        CRDS server (default ``<output_dir>/.batch/crds``).
    dashboard : str or None
        The local cluster's dashboard address.
    show_progress : bool
        Draw the progress bar on stderr.
    reducer : callable
        Run on each `VisitJob` in a worker (default `reduce_visit`).

    Returns
    -------
    BatchResult
    """
    start = time.perf_counter()
    output_dir = Path(output_dir).resolve()
    bookkeeping = output_dir / ".batch"
    bookkeeping.mkdir(parents=True, exist_ok=True)
    visits = find_visits(inputs, bookkeeping / "associations")
    template = VisitJob(
        name="",
        association="",
        output_dir=str(output_dir),
        pipeline=str(pipeline),
        strun_args=tuple(strun_args),
        environment=_worker_environment(crds_path or bookkeeping / "crds"),
        batch_id=uuid.uuid4().hex[:12],
    )
    jobs = [replace(template, name=v.name, association=str(v.association)) for v in visits]
    done = _complete_before(jobs) if resume else {}
    todo = [job for job in jobs if job.name not in done]
    log.info(
        "batch %s: %d visits, %d complete from an earlier run, %d to reduce",
        template.batch_id, len(jobs), len(done), len(todo),
    )  # fmt: skip
    results, workers = dict(done), core_count(n_workers) if not scheduler else None
    if todo:
        parts = {job.name: _parts(job, sources_per_task, resume) for job in todo}
        options = {"memory_limit": memory_limit, "retries": retries, "dashboard": dashboard}
        with batch_client(scheduler=scheduler, n_workers=workers, **options) as client:
            workers = workers or len(client.scheduler_info()["workers"])
            if client.dashboard_link:
                log.info("Dask dashboard: %s", client.dashboard_link)
            stream = outcomes(client, todo, reducer, parts=parts, show_progress=show_progress)
            results.update((outcome.name, outcome) for outcome in stream)
    ordered = [results[job.name] for job in jobs]
    rows = [row for o in ordered for row in record_rows(o, resumed=o.name in done)]
    paths = write_record(rows, output_dir)
    wall = time.perf_counter() - start
    lines = summary(ordered, set(done), wall, workers or 0)
    lines.append(f"  record: {', '.join(str(p) for p in paths)}")
    return BatchResult(ordered, frozenset(done), paths, wall, lines)


def _complete_before(jobs):
    """The outcomes of the visits an earlier run completed, by name."""
    outcomes_before = {job.name: completed_outcome(job) for job in jobs}
    return {name: outcome for name, outcome in outcomes_before.items() if outcome is not None}


def _parts(job, sources_per_task, resume):
    """The visit's part jobs (those complete from an earlier run as their outcomes), or []."""
    if sources_per_task <= 0 or job.pipeline != "nodcombine":  # only nodcombine has `part`
        return []
    pieces = part_jobs(job, count_sources(job.association), sources_per_task)
    if pieces:
        log.info("%s: split into %d tasks of up to %d sources", job.name, len(pieces),
                 sources_per_task)  # fmt: skip
    if resume:
        pieces = [completed_outcome(piece) or piece for piece in pieces]
    return pieces


def _worker_environment(crds_path):
    """The CRDS and stpipe variables of this process, made serverless if it names no server."""
    if not os.environ.get("CRDS_SERVER_URL") or not os.environ.get("CRDS_PATH"):
        settings = configure_offline_crds(Path(crds_path), environ={})
        log.info("CRDS: no server configured; workers run offline on %s", crds_path)
        return settings
    return {k: v for k, v in os.environ.items() if k.startswith(PASSED_VARIABLES)}
