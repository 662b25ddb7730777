"""Peak memory of ``strun nodcombine`` on simulated MOS visits of 10 and 40 slits.

Each visit (PRISM, 3-point nod, simplified WCS) is written once into
``benchmarks/output/memory/`` and reduced by ``strun nodcombine`` in a child
process; its peak resident set size is the child's ``ru_maxrss``.  Printed side
by side with the wall time and the growth per slit.  Usage::

    python benchmarks/bench_visit_memory.py [--slits 10 40]
"""

import argparse
import sys
from pathlib import Path

from childrun import run_in_child, simulated_prism_visit

from nodcombine.offline import configure_offline_crds

OUTPUT = Path(__file__).parent / "output" / "memory"


def make_visit(n_slits):
    """The visit's association, simulated and written on first use."""
    return simulated_prism_visit(n_slits, OUTPUT / f"visit_{n_slits}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slits", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args(argv)
    configure_offline_crds(OUTPUT / "crds")
    rows = []
    for n_slits in args.slits:
        asn = make_visit(n_slits)
        strun = Path(sys.executable).parent / "strun"
        command = [str(strun), "nodcombine", str(asn), f"--output_dir={asn.parent / 'out'}"]
        returncode, peak_mb, seconds, _ = run_in_child(command)
        rows.append((n_slits, returncode, peak_mb, seconds))
    print("| slits | strun rc | peak RSS (MB) | wall (s) |")
    print("|---|---|---|---|")
    for n_slits, returncode, peak_mb, seconds in rows:
        print(f"| {n_slits} | {returncode} | {peak_mb:.0f} | {seconds:.1f} |")
    if len(rows) >= 2:
        (n0, _, m0, _), (n1, _, m1, _) = rows[0], rows[-1]
        print(f"\ngrowth: {(m1 - m0) / (n1 - n0):.2f} MB per slit ({n0} -> {n1} slits)")


if __name__ == "__main__":
    main()
