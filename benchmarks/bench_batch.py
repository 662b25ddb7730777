"""``nodcombine batch`` on a small survey of real-geometry visits: faults, throughput, resume.

The survey (built once into ``benchmarks/output/batch/visits``, never
committed): 20 visits of 1 to 50 sources whose every slit is a CEERS 933 slit
with its own bounding box and MSA transform (`nodcombine.simulate.realslits`,
as the real-geometry benchmark builds them), plus one visit whose three
exposures are truncated to a third (a download that stopped) and one whose
worker is killed (SIGKILL) at the visit's first start.

Runs, in this order, in one process:

1. ``serial``: ``strun nodcombine`` on each visit in turn (``Step.from_cmdline``,
   what ``strun`` calls), the reference products;
2. ``batch, 1 worker`` and ``batch, 2 workers``: `run_batch` on a
   `LocalCluster`, the crash injected, the 50-source visit split into two
   tasks of 25 sources and merged;
3. ``batch, --scheduler``: a ``dask scheduler`` and a ``dask worker --nworkers 2``
   started as separate processes, as a cluster's would be, the crash injected;
4. ``kill + --resume``: ``nodcombine batch --workers 2`` as a command, its whole
   process group killed (SIGKILL) once a third of the visits are done, then
   ``nodcombine batch --resume``.

It prints, per run: wall seconds, visits and sources reduced, seconds per
source, core-seconds per source, the speed-up of 2 workers over 1; whether
every product of every good visit equals the serial run's, bit for bit in
every array; the corrupt visit's recorded reason; the crashed visit's starts;
for the resume, which visits ran again.  Usage::

    python benchmarks/bench_batch.py [--skip-serial-check]
"""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

OUTPUT = Path(__file__).parent / "output" / "batch"
CEERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ceers_933"
#: sources per visit: mixed, 1 to 50
SIZES = (1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6, 8, 10, 12, 16, 20, 50)
CORRUPT, CRASH = "v21_corrupt", "v22_crash"
#: the 50-source visit is split in two tasks (and merged)
SOURCES_PER_TASK = 25


def build_survey(folder):
    """The survey's associations (cached): the good visits, the corrupt one, the crashing one."""
    from nodcombine.simulate import write_association
    from nodcombine.simulate.realslits import write_mos_exposures

    visits = [(f"v{i + 1:02d}_n{n}", n) for i, n in enumerate(SIZES)]
    visits += [(CORRUPT, 2), (CRASH, 3)]
    associations = []
    for name, n in visits:
        asn = folder / name / f"{name}_asn.json"
        if not asn.exists():
            slits = sorted(CEERS.glob("*.fits"))
            paths = write_mos_exposures(slits, n, asn.parent, distinct_wcs=True)
            if name == CORRUPT:
                for path in paths:
                    os.truncate(path, path.stat().st_size // 3)
            write_association(paths, asn, product_name=name)
        associations.append(asn)
    return associations


def kill_first_start(job, attempt, *, victim):
    """Fault injection: the worker running ``victim`` dies at its first start."""
    if job.name == victim and attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def serial_runs(associations, out):
    from stpipe import Step

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for asn in associations:
        name = asn.parent.name
        try:
            Step.from_cmdline(
                [
                    "nodcombine",
                    str(asn),
                    f"--output_dir={out / name}",
                    f"--log-file={out / (name + '.log')}",
                    "--log-stream=null",
                ]
            )
        except Exception as err:
            print(f"  serial {name}: {type(err).__name__}: {str(err)[:120]}")
    return time.perf_counter() - start


def batch_run(associations, out, **options):
    from nodcombine.batch import run_batch
    from nodcombine.batch.task import reduce_visit

    reducer = functools.partial(
        reduce_visit, on_start=functools.partial(kill_first_start, victim=CRASH)
    )
    result = run_batch(
        [a.parent for a in associations],
        out,
        sources_per_task=SOURCES_PER_TASK,
        reducer=reducer,
        dashboard=":0",
        show_progress=False,
        **options,
    )
    return result


def same_products(reference, out, names):
    """Every array of every product of ``names`` equal in both folders; the mismatches."""
    bad = []
    for name in names:
        products = sorted(p.name for p in (reference / name).glob("*.fits"))
        if sorted(p.name for p in (out / name).glob("*.fits")) != products:
            bad.append(f"{name}: product lists differ")
            continue
        bad += [f"{name}/{p}" for p in products if not _equal(reference / name / p, out / name / p)]
    return bad


def _equal(left, right):
    with fits.open(left) as a, fits.open(right) as b:
        if [h.name for h in a] != [h.name for h in b]:
            return False
        for x, y in zip(a, b, strict=True):
            if x.name == "ASDF" or x.data is None:
                continue
            data_x, data_y = np.asarray(x.data), np.asarray(y.data)
            if data_x.dtype.names:
                if not all(
                    np.array_equal(data_x[c], data_y[c], equal_nan=True) for c in data_x.dtype.names
                ):
                    return False
            elif not np.array_equal(data_x, data_y, equal_nan=True):
                return False
    return True


#: what docs/survey.md tells to put in the workers' Dask configuration
WORKER_YAML = """\
distributed:
  nanny:
    pre-spawn-environ:
      MALLOC_TRIM_THRESHOLD_: null
  worker:
    profile:
      enabled: false
"""


def external_cluster(folder):
    """A ``dask scheduler`` and a ``dask worker --nworkers 2`` as separate processes.

    The workers read the configuration docs/survey.md gives (``DASK_CONFIG``).
    """
    dask = Path(sys.executable).with_name("dask")
    config = folder / "dask-config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "nodcombine-workers.yaml").write_text(WORKER_YAML)
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    environment["DASK_CONFIG"] = str(config)
    scheduler_file = folder / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    logs = open(folder / "cluster.log", "w")
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--scheduler-file", scheduler_file, "--no-dashboard"],
        stdout=logs,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    while not scheduler_file.exists():
        time.sleep(0.2)
    time.sleep(0.5)
    address = json.loads(scheduler_file.read_text())["address"]
    worker = subprocess.Popen(
        [dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
        stdout=logs,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    return address, (worker, scheduler)


def wait_for_workers(address, n):
    from distributed import Client

    with Client(address) as client:
        client.wait_for_workers(n, timeout=120)


def kill_and_resume(associations, out, n_total):
    """``nodcombine batch`` killed (its process group) after a third of the visits, then resumed."""
    command = [
        Path(sys.executable).with_name("nodcombine"),
        "batch",
        *[str(a.parent) for a in associations],
        "-o",
        str(out),
        "--workers",
        "2",
        "--no-progress",
        f"--sources-per-task={SOURCES_PER_TASK}",
    ]
    with open(out.parent / f"{out.name}_first.log", "w") as log:
        first = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        done = []
        while len(done) < n_total // 3 and first.poll() is None:
            time.sleep(0.5)
            done = _done(out)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    time.sleep(1.0)
    before = _done(out)
    start = time.perf_counter()
    with open(out.parent / f"{out.name}_resume.log", "w") as log:
        subprocess.run([*command, "--resume"], stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    record = (out / "batch_record.csv").read_text().splitlines()
    return before, wall, record


def _done(out):
    """Visits (not parts of visits) whose outcome says complete."""
    done = []
    for path in (out / ".batch").glob("*.json"):
        if ".part" in path.name:
            continue
        try:
            if json.loads(path.read_text())["status"] == "complete":
                done.append(path.stem)
        except (OSError, ValueError, KeyError):
            pass
    return sorted(done)


def report(name, result, wall, workers, n_sources):
    per_source = wall / n_sources
    print(
        f"  {name:26s} {wall:7.1f} s  {len(result.outcomes):3d} visits  {n_sources:4d} sources"
        f"  {per_source:5.2f} s/source  {per_source * workers:5.2f} core-s/source"
    )


def main(argv=None):
    os.environ.update(_offline(OUTPUT / "crds"))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    associations = build_survey(OUTPUT / "visits")
    print(
        f"survey: {len(associations)} visits, built/cached in {time.perf_counter() - start:.0f} s"
    )
    good = [a.parent.name for a in associations if a.parent.name != CORRUPT]
    n_sources = sum(SIZES) + 3  # the crashing visit's 3 sources
    runs = OUTPUT / "runs"
    import shutil

    shutil.rmtree(runs, ignore_errors=True)
    figures = {}

    wall = serial_runs(associations, runs / "serial")
    figures["serial"] = wall
    print(f"  {'serial strun, in turn':26s} {wall:7.1f} s  {wall / n_sources:5.2f} s/source")

    results = {}
    for workers in (1, 2):
        out = runs / f"workers_{workers}"
        t0 = time.perf_counter()
        results[workers] = batch_run(associations, out, n_workers=workers, retries=2)
        figures[f"batch_{workers}"] = time.perf_counter() - t0
        report(
            f"batch, {workers} worker(s)",
            results[workers],
            figures[f"batch_{workers}"],
            workers,
            n_sources,
        )
    print(f"  speed-up of 2 workers over 1: {figures['batch_1'] / figures['batch_2']:.2f}x")

    address, processes = external_cluster(runs)
    try:
        wait_for_workers(address, 2)
        out = runs / "scheduler"
        t0 = time.perf_counter()
        results["scheduler"] = batch_run(associations, out, scheduler=address)
        figures["scheduler"] = time.perf_counter() - t0
        report(
            f"batch, --scheduler {address}",
            results["scheduler"],
            figures["scheduler"],
            2,
            n_sources,
        )
    finally:
        for process in processes:
            process.terminate()
            process.wait()

    print("checks:")
    for key, result in results.items():
        outcome = {o.name: o for o in result.outcomes}
        mismatches = same_products(runs / "serial", runs / _folder(key), good)
        print(
            f"  {_folder(key):11s}: failed {result.failed}; {CORRUPT}: "
            f"{outcome[CORRUPT].reason[:110]}..."
        )
        print(
            f"  {'':11s}  {CRASH}: {outcome[CRASH].attempts} starts, {outcome[CRASH].status}; "
            f"products equal to serial, bit for bit: "
            f"{'all ' + str(len(good)) + ' visits' if not mismatches else mismatches[:5]}"
        )

    out = runs / "killed"
    before, wall, record = kill_and_resume(associations, out, len(associations))
    resumed = sorted({line.split(",")[0] for line in record[1:] if line.endswith(",True")})
    print(
        f"  kill after {len(before)} complete visits, then --resume ({wall:.1f} s): "
        f"{len(resumed)} visits taken from the first run, "
        f"{len(associations) - len(resumed)} reduced; resumed == complete before the kill: "
        f"{resumed == before}"
    )
    mismatches = same_products(runs / "serial", out, good)
    print(f"  killed+resumed products equal to serial: {not mismatches} {mismatches[:5]}")
    (OUTPUT / "results.json").write_text(json.dumps(figures, indent=2))
    return 0


def _folder(key):
    return {1: "workers_1", 2: "workers_2"}.get(key, key)


def _offline(crds):
    from nodcombine.offline import configure_offline_crds

    return configure_offline_crds(crds, environ={})


if __name__ == "__main__":
    raise SystemExit(main())
