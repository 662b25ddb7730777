"""Peak memory of ``strun nodcombine`` on simulated MOS visits of 10 and 40 slits.

Each visit (PRISM, 3-point nod, simplified WCS) is written once into
``benchmarks/output/memory/`` and reduced by ``strun nodcombine`` in a child
process; its peak resident set size is the child's ``ru_maxrss``.  Printed side
by side with the wall time and the growth per slit.  Usage::

    python benchmarks/bench_visit_memory.py [--slits 10 40]
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from nodcombine.offline import configure_offline_crds
from nodcombine.simulate import simulate_nodded_visit, write_visit

OUTPUT = Path(__file__).parent / "output" / "memory"


def make_visit(n_slits):
    """The visit's association, simulated and written on first use."""
    folder = OUTPUT / f"visit_{n_slits}"
    asn = folder / "nodcombine_sim_asn.json"
    if not asn.exists():
        models, _ = simulate_nodded_visit(
            "nrs_msa_prism", n_slits=n_slits, n_points=3, seed=n_slits, emission_lines=False
        )
        write_visit(models, folder)
    return asn


def _run_in_child(asn):
    """``strun nodcombine`` under a forked child; (return code, peak RSS in kB, seconds).

    The child's ``RUSAGE_CHILDREN`` maximum is the strun process alone, not
    any earlier run's.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        strun = Path(sys.executable).parent / "strun"
        start = time.perf_counter()
        command = [str(strun), "nodcombine", str(asn), f"--output_dir={asn.parent / 'out'}"]
        completed = subprocess.run(command, capture_output=True, check=False)
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        os.write(write, f"{completed.returncode} {peak_kb} {seconds}".encode())
        os._exit(0)
    os.close(write)
    returncode, peak_kb, seconds = os.read(read, 200).decode().split()
    os.waitpid(pid, 0)
    return int(returncode), int(peak_kb), float(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slits", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args(argv)
    configure_offline_crds(OUTPUT / "crds")
    rows = []
    for n_slits in args.slits:
        asn = make_visit(n_slits)
        returncode, peak_kb, seconds = _run_in_child(asn)
        rows.append((n_slits, returncode, peak_kb / 1024, seconds))
    print("| slits | strun rc | peak RSS (MB) | wall (s) |")
    print("|---|---|---|---|")
    for n_slits, returncode, peak_mb, seconds in rows:
        print(f"| {n_slits} | {returncode} | {peak_mb:.0f} | {seconds:.1f} |")
    if len(rows) >= 2:
        (n0, _, m0, _), (n1, _, m1, _) = rows[0], rows[-1]
        print(f"\ngrowth: {(m1 - m0) / (n1 - n0):.2f} MB per slit ({n0} -> {n1} slits)")


if __name__ == "__main__":
    main()
