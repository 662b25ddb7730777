"""What the visit benchmarks share: a cached simulated visit, a command timed in a child.

Imported by ``bench_visit_memory.py`` and ``bench_real_geometry.py`` (run as
scripts from this folder, which Python puts on the path).
"""

import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path


def simulated_prism_visit(n_slits, folder):
    """A 3-point MOS PRISM visit of ``n_slits`` slits, simplified gwcs, written once."""
    asn = Path(folder) / "nodcombine_sim_asn.json"
    if not asn.exists():
        from nodcombine.simulate import simulate_nodded_visit, write_visit

        models, _ = simulate_nodded_visit(
            "nrs_msa_prism", n_slits=n_slits, n_points=3, seed=n_slits, emission_lines=False
        )
        write_visit(models, folder)
    return asn


def run_in_child(command):
    """Run ``command`` under a forked child: (return code, peak RSS MB, seconds, output).

    The child's ``RUSAGE_CHILDREN`` maximum is the command's alone, not any
    earlier run's.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        start = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
            log.write(completed.stdout + completed.stderr)
        os.write(write, f"{completed.returncode} {peak_kb} {seconds} {log.name}".encode())
        os._exit(0)
    os.close(write)
    returncode, peak_kb, seconds, log = os.read(read, 500).decode().split()
    os.waitpid(pid, 0)
    text = Path(log).read_text()
    Path(log).unlink()
    return int(returncode), int(peak_kb) / 1024, float(seconds), text
