"""Reduce many visits on Dask: ``nodcombine batch``, from a workstation to a cluster.

Each visit is one Dask task that runs the pipeline exactly as ``strun`` does
(`~nodcombine.batch.task.reduce_visit`); a `~distributed.LocalCluster` of
single-threaded worker processes by default, or the workers of a scheduler
whose address is given.  Modules: `~nodcombine.batch.inputs` (which visits),
`~nodcombine.batch.task` (one visit, in a worker), `~nodcombine.batch.engine`
(Dask), `~nodcombine.batch.record` (the batch record) and
`~nodcombine.batch.run` (`run_batch`).  Needs the ``survey`` extra
(``pip install nodcombine[survey]``).
"""

from nodcombine.batch.run import BatchResult, run_batch

__all__ = ["BatchResult", "run_batch"]
