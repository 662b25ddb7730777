"""The Dask side of a batch: a cluster (or a scheduler's address), the tasks, their results.

Workers are processes with one thread each: the science code holds the GIL,
and the trace fits already pin BLAS to one thread.  A task is one visit.  When
a worker dies under a task (killed, or restarted by its nanny for going over
its memory limit) Dask's scheduler starts the task again on another worker, up
to ``distributed.scheduler.allowed-failures`` times, then gives up with
`~distributed.KilledWorker`; the batch sets that bound for the cluster it
starts (a scheduler started elsewhere keeps its own configuration).  Dask
counts a death against every task the worker held, the ones queued behind
the running one too, so a visit that kills its worker again and again takes
an innocent visit queued behind it down with it.  Neither abstract resources
nor ``worker-saturation`` prevent that queuing: the scheduler checks a task's
resources against what a worker has, not against what it has free (the
worker holds the task back), and it queues only "root-ish" tasks, which one
visit per task group is not (seen in CI, under load, on a one-worker
cluster).  So `outcomes` submits again, under a new key, a task that Dask
gave up on although it started fewer times than the workers died under it:
it was a bystander at least once.  The local cluster's workers still hold one
`VISIT_RESOURCE` each and every task asks for one, so that a worker started
by hand with several threads (``--resources visit=1``, docs/survey.md) runs
one visit at a time.

Two of Dask's worker defaults cost the science code, and are turned off for
the local cluster (`WORKER_CONFIG`; docs/survey.md shows the same for workers
started by hand).  The nanny starts each worker with
``MALLOC_TRIM_THRESHOLD_=65536``, which in glibc also freezes the mmap
threshold, so every temporary array above 128 kB is mapped and unmapped
afresh: a 20-source real-geometry visit took 45 s in such a worker against
26 s without it (and 25 s in a plain process).  The statistical profiler,
sampling the task's stack every 10 ms, cost another 4 %.
"""

import contextlib
import logging
import sys
import time
from collections import Counter

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed

from nodcombine.batch.parts import merge_parts
from nodcombine.batch.task import FAILED, VisitOutcome, completed_outcome, starts_in_batch

__all__ = ["VISIT_RESOURCE", "WORKER_CONFIG", "batch_client", "outcomes"]

log = logging.getLogger(__name__)

#: the abstract resource a local worker has one of and every task needs one of
VISIT_RESOURCE = "visit"
#: Dask settings of the local cluster (see the module notes)
WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.worker-saturation": 1.0,
}


@contextlib.contextmanager
def batch_client(*, scheduler=None, n_workers=1, memory_limit="auto", retries=2, dashboard=":8787"):
    """A Dask client: of the scheduler at ``scheduler``, or of a new `LocalCluster`.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    n_workers : int
        Worker processes of the local cluster.
    memory_limit : str or int
        Per local worker (``"auto"``: the machine's memory shared equally).
    retries : int
        Starts of a task after the first when its worker dies (local cluster).
    dashboard : str or None
        Address of the local cluster's dashboard (``":0"``: any free port; None: none).

    Yields
    ------
    distributed.Client
    """
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    settings = {**WORKER_CONFIG, "distributed.scheduler.allowed-failures": int(retries)}
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard,
            resources={VISIT_RESOURCE: 1},
        )
    with cluster, Client(cluster) as client:
        yield client


def outcomes(client, jobs, reducer, *, parts=None, show_progress=True):
    """Submit the tasks of each visit and yield each visit's `VisitOutcome` as it arrives.

    Parameters
    ----------
    client : distributed.Client
    jobs : list of VisitJob
    reducer : callable
        Run on each job (or part job) in a worker.
    parts : dict, optional
        Per visit name, its parts: a part job, or the `VisitOutcome` of a part
        already complete (resumed); such a visit's last task is `merge_parts`.
    show_progress : bool

    A task that ends in an exception (the worker died too often, or the
    reducer itself failed) gives a ``failed`` outcome naming it; the rest go on.
    """
    parts = parts or {}
    submit = _Submitter(client, reducer, {"pure": False, **_one_at_a_time(client)})
    futures = {submit.visit(job, parts.get(job.name)): job for job in jobs}
    progress = _Progress(len(futures), enabled=show_progress)
    stream = as_completed(futures)
    for future in stream:
        job = futures.pop(future)
        try:
            outcome = future.result()
        except KilledWorker as err:
            if submit.bystander(err) and submit.count[job.name] <= err.allowed_failures:
                log.warning("%s: its task was queued on workers that another task killed; "
                            "submitted again", job.name)  # fmt: skip
                again = submit.visit(job, parts.get(job.name))
                futures[again] = job
                stream.add(again)
                future.release()
                continue
            outcome = VisitOutcome(
                name=job.name,
                status=FAILED,
                reason=f"its worker died at every start, the last time: {err}",
                attempts=starts_in_batch(job),
            )
        except Exception as err:
            outcome = VisitOutcome(job.name, FAILED, f"{type(err).__name__}: {err}")
        future.release()
        progress.advance(outcome)
        yield outcome
    progress.close()


class _Submitter:
    """Submits visits (whole, or as parts and their merge) under keys never used before.

    Remembers which job or part each key runs, so that a `~distributed.KilledWorker`
    can be traced to the task it names.
    """

    def __init__(self, client, reducer, options):
        self.client, self.reducer, self.options = client, reducer, options
        self.count = Counter()  # submissions per visit
        self.units = {}  # key -> the job or part job it runs

    def visit(self, job, pieces):
        """The future of ``job``'s outcome; a part completed in this batch is not rerun."""
        self.count[job.name] += 1
        again = self.count[job.name] - 1
        suffix = f"-{job.batch_id}" + (f"-again{again}" if again else "")
        if not pieces:
            return self._submit(job, f"visit-{job.name}{suffix}")
        inputs = [self._part(piece, suffix, again) for piece in pieces]
        return self.client.submit(
            merge_parts, job, *inputs, key=f"visit-{job.name}{suffix}", **self.options
        )

    def _part(self, piece, suffix, again):
        """A part's future, or its outcome if it is complete (resumed, or done before)."""
        if isinstance(piece, VisitOutcome):  # complete from an earlier run, resumed
            return piece
        if again:  # a part of this visit this batch already completed is not rerun
            outcome = completed_outcome(piece)
            if outcome is not None and outcome.batch_id == piece.batch_id:
                return outcome
        return self._submit(piece, f"part-{piece.label}{suffix}")

    def _submit(self, unit, key):
        self.units[key] = unit
        return self.client.submit(self.reducer, unit, key=key, **self.options)

    def bystander(self, err):
        """Whether the task Dask gave up on started fewer times than its workers died."""
        unit = self.units.get(err.task)
        return unit is not None and starts_in_batch(unit) <= err.allowed_failures


def _one_at_a_time(client):
    """``resources`` for `Client.submit` if every worker has a `VISIT_RESOURCE`, else none."""
    workers = client.scheduler_info().get("workers", {}).values()
    if workers and all(VISIT_RESOURCE in w.get("resources", {}) for w in workers):
        return {"resources": {VISIT_RESOURCE: 1}}
    return {}


class _Progress:
    """A one-line progress bar on a terminal, a log line per visit otherwise."""

    width = 30

    def __init__(self, total, *, enabled=True):
        self.total, self.done, self.failed = total, 0, 0
        self.start = time.monotonic()
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()

    def advance(self, outcome):
        self.done += 1
        self.failed += outcome.status == FAILED
        level = logging.WARNING if outcome.status == FAILED else logging.INFO
        log.log(
            level,
            "visit %s %s in %.1f s on %s%s",
            outcome.name,
            outcome.status,
            outcome.wall_s,
            outcome.worker or "?",
            f": {outcome.reason}" if outcome.reason else "",
        )
        if self.enabled:
            self._draw()

    def _draw(self):
        filled = round(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.start
        line = f"[{bar}] {self.done}/{self.total} visits, {self.failed} failed, {elapsed:.0f} s"
        sys.stderr.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\n")
