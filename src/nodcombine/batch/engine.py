"""The Dask side of a batch: a cluster (or a scheduler's address), the tasks, their results.

Workers are processes with one thread each: the science code holds the GIL,
and the trace fits already pin BLAS to one thread.  A task is one visit.  When
a worker dies under a task (killed, or restarted by its nanny for going over
its memory limit) Dask's scheduler starts the task again on another worker, up
to ``distributed.scheduler.allowed-failures`` times, then gives up with
`~distributed.KilledWorker`; the batch sets that bound for the cluster it
starts (a scheduler started elsewhere keeps its own configuration).  Dask
counts a death against every task the worker held, the ones queued behind
the running one too, so a visit that kills its worker twice could take an
innocent queued visit down with it.  The local cluster's workers therefore
hold one `VISIT_RESOURCE` each and every task asks for it: the scheduler keeps
a task until a worker is free (abstract resources, Dask's worker-side limit),
so no task waits on a worker.  ``worker-saturation`` 1.0 alone did not do
that: it queues only "root-ish" tasks, and one visit per task group is not,
so on a one-worker cluster both tasks were assigned to the same worker and
died with it (seen once in CI, under load).  Workers started by hand need
``--resources visit=1`` for the same guarantee (docs/survey.md); without it
the tasks run unconstrained.

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

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed

from nodcombine.batch.parts import merge_parts
from nodcombine.batch.task import FAILED, VisitOutcome, starts_in_batch

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
    futures = {}
    options = {"pure": False, **_one_at_a_time(client)}
    for job in jobs:
        key = f"visit-{job.name}-{job.batch_id}"
        if parts.get(job.name):
            inputs = [_submitted(client, reducer, piece, options) for piece in parts[job.name]]
            future = client.submit(merge_parts, job, *inputs, key=key, **options)
        else:
            future = client.submit(reducer, job, key=key, **options)
        futures[future] = job
    progress = _Progress(len(futures), enabled=show_progress)
    for future in as_completed(futures):
        job = futures[future]
        try:
            outcome = future.result()
        except KilledWorker as err:
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


def _one_at_a_time(client):
    """``resources`` for `Client.submit` if every worker has a `VISIT_RESOURCE`, else none."""
    workers = client.scheduler_info().get("workers", {}).values()
    if workers and all(VISIT_RESOURCE in w.get("resources", {}) for w in workers):
        return {"resources": {VISIT_RESOURCE: 1}}
    return {}


def _submitted(client, reducer, piece, options):
    if isinstance(piece, VisitOutcome):  # a part complete from an earlier run
        return piece
    return client.submit(reducer, piece, key=f"part-{piece.label}-{piece.batch_id}", **options)


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
