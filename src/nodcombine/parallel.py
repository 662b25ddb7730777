"""Per-source work in worker processes: ``maximum_cores`` as jwst spells it.

The kernels take numpy arrays and frozen dataclasses and return frozen
dataclasses, so a source's work can run in another process: its inputs and
its result are pickled, nothing else is shared.  Workers are started with
``spawn`` (no copy of the parent's open models or locks; the same on Linux,
macOS and Windows) and import only the kernel modules they run.  With one
core the work runs in the calling process, as before.

Either way BLAS runs one thread per process while the fits run: a fit's
matrices are small (tens of parameters), and OpenBLAS's threads cost more in
synchronisation than they give — on 10 real NIRSpec sources, 2 cores, the
fits took 7.4 s with two BLAS threads and 5.5 s with one; two workers each
with two threads took 12 s, with one 3.9 s.
"""

import contextlib
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor

from threadpoolctl import threadpool_limits

__all__ = ["MAXIMUM_CORES_SPEC", "core_count", "source_pool", "timed_call"]

#: the stpipe spec line of the parameter (the jwst steps' spelling and values)
MAXIMUM_CORES_SPEC = (
    "maximum_cores = string(default='1')  # worker processes for the per-source fits: "
    "an integer, or 'none' (1), 'quarter', 'half' or 'all' of the available cores"
)

_FRACTIONS = {"none": None, "quarter": 0.25, "half": 0.5, "all": 1.0}


def core_count(maximum_cores):
    """Worker processes asked for by ``maximum_cores``.

    Parameters
    ----------
    maximum_cores : str or int
        A positive integer, or ``none`` (one), ``quarter``, ``half`` or ``all``
        of the cores this process may run on.

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    ValueError
        For anything else, naming the value.
    """
    text = str(maximum_cores).strip().lower()
    if text in _FRACTIONS:
        fraction = _FRACTIONS[text]
        return 1 if fraction is None else max(1, int(_available_cores() * fraction))
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"maximum_cores={maximum_cores!r}: give a positive integer, "
            "or one of 'none', 'quarter', 'half', 'all'"
        )
    return count


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class _Deferred:
    """A call run in this process when its result is first asked for.

    On one core the fits then run where the step waits for them, source by
    source, so that its progress lines follow the work.
    """

    def __init__(self, function, args, kwargs):
        self._call = (function, args, kwargs)
        self._future = None

    def result(self):
        """The call's return value; its exception raised, each time it is asked for."""
        if self._future is None:
            function, args, kwargs = self._call
            self._future, self._call = Future(), None
            try:
                self._future.set_result(function(*args, **kwargs))
            except Exception as err:  # handed to whoever asks for the result
                self._future.set_exception(err)
        return self._future.result()


class _InProcess:
    """An executor whose calls run in this process, when their results are asked for."""

    @staticmethod
    def submit(function, *args, **kwargs):
        return _Deferred(function, args, kwargs)


@contextlib.contextmanager
def source_pool(maximum_cores, n_tasks, shared=None):
    """An executor for ``n_tasks`` per-source calls: processes, or this one.

    Parameters
    ----------
    maximum_cores : str or int
        See `core_count`.
    n_tasks : int
        No more workers are started than there are tasks.
    shared : executor, optional
        One a caller keeps across several runs (a pipeline's): used as it is.

    Yields
    ------
    concurrent.futures.Executor-like
        With ``submit``; its futures hold the result or the exception.
    """
    if shared is not None:
        yield shared
        return
    workers = min(core_count(maximum_cores), n_tasks)
    with threadpool_limits(limits=1, user_api="blas"):
        if workers <= 1:
            yield _InProcess()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_blas_thread) as pool:
            yield pool


#: OpenBLAS, MKL, BLIS and OpenMP: the thread counts they read when loaded
_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "OMP_NUM_THREADS",
)


#: a worker's limit on the libraries already loaded, kept for its life
_worker_limits = []


def _one_blas_thread():
    """A worker's initializer: one BLAS/OpenMP thread, now and for libraries loaded later."""
    # spawn has already imported the parent's main module (numpy with it, for
    # strun): limit what is loaded, and set the variables for what loads later
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, "1"))
    _worker_limits.append(threadpool_limits(limits=1, user_api="blas"))


def timed_call(function, *args, **kwargs):
    """``(function(*args, **kwargs), seconds it took)``, for a worker to report its time."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start
