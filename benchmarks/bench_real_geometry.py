"""Cost of a visit on the real NIRSpec geometry: ``strun nodcombine`` against stdatamodels' open.

Simulated files carry the package's simplified gwcs; real ``_cal`` files carry
the whole NIRSpec transform chain in every slit, and reading and evaluating it
is most of the work.  This benchmark builds, once, multi-slit ``_cal`` files of
N slits x 3 nod exposures whose every slit is a CEERS 933 slit (real gwcs,
WAVELENGTH, variances and metadata, from ``../shared/data/ceers_933``) with its
own source id and a planned position shifted by up to a tenth of a shutter
(`nodcombine.simulate.realslits`); the same with each slit's own bounding box
and ``slit_frame → msa_frame`` transform, as in a real MOS exposure, where only
the common parts of the chain repeat from slit to slit; and the same N slits
simulated with the simplified gwcs.  Each is cached in
``benchmarks/output/real_geometry/`` (never committed).

For each visit it runs, each in a fresh process and ``--repeats`` times:

* ``open``: stdatamodels' ``datamodels.open`` of the three files, each slit's
  arrays touched (what any reduction must at least do);
* ``chain``: ``strun nodcombine`` on the association, once per ``--cores``
  value: ``1``, ``all`` (``trace_fit``'s ``maximum_cores``: the fits in worker
  processes) or ``parts=all`` (the pipeline's ``maximum_cores``: whole parts of
  the visit in worker processes), its stages split from the log's timestamps
  (the step lines, and the per-source products saved after the last step; not
  for ``parts=``, whose workers' lines are logged when each part is done);

and prints medians side by side: seconds, seconds per source, the chain over
the open, and peak RSS (of the largest process: with ``--cores`` above 1 the
trace fits run in worker processes, whose memory is not added).  Usage::

    python benchmarks/bench_real_geometry.py [--slits 10 50 200] [--repeats 3]
        [--cores 1 all parts=all]
"""

import argparse
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

from childrun import run_in_child, simulated_prism_visit

OUTPUT = Path(__file__).parent / "output" / "real_geometry"
CEERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ceers_933"
STEPS = ("nod_diff", "trace_fit", "rectify", "optimal_extract_1d")

_OPEN_SCRIPT = """
import sys
from stdatamodels.jwst import datamodels
for path in sys.argv[1:]:
    model = datamodels.open(path)
    for slit in model.slits:
        slit.data, slit.err, slit.dq, slit.wavelength, slit.meta.wcs
    model.close()
"""


def build_real_visit(n_slits, folder, distinct_wcs=False):
    """N CEERS slits per exposure, 3 exposures, and their association (cached)."""
    asn = folder / "real_asn.json"
    if asn.exists():
        return asn
    from nodcombine.simulate import write_association
    from nodcombine.simulate.realslits import write_mos_exposures

    paths = write_mos_exposures(sorted(CEERS.glob("*.fits")), n_slits, folder, distinct_wcs)
    return write_association(paths, asn, product_name="real")


def build_own_wcs_visit(n_slits, folder):
    """As `build_real_visit`, each slit with its own bounding box and MSA transform."""
    return build_real_visit(n_slits, folder, distinct_wcs=True)


#: the visits compared, by the WCS their slits carry
GEOMETRIES = {
    "real": build_real_visit,
    "real, own slit WCS": build_own_wcs_visit,
    "simplified": simulated_prism_visit,
}

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - (\S+) - \w+ - (.*)$")


def stage_seconds(log_text):
    """Seconds per stage from ``strun``'s log, summed over the parts a visit is reduced in.

    Each step's runs (``Step ... running`` to ``done``), the opening before the
    first step, and the per-source products (each ``saved`` line, from the
    line before it).
    """
    events = []
    for line in log_text.splitlines():
        match = _STAMP.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            events.append((stamp.timestamp(), match.group(3)))
    stages, started = dict.fromkeys(STEPS, 0.0), {}
    stages["save products"] = 0.0
    previous = None
    for t, message in events:
        if message.startswith("Step nodcombine running"):
            started["nodcombine"] = t
        for step in STEPS:
            if message.startswith(f"Step {step} running"):
                started.setdefault(f"first {step}", t)
                started[step] = t
            elif message.startswith(f"Step {step} done") and step in started:
                stages[step] += t - started[step]
        if message.startswith("saved ") and previous is not None:
            stages["save products"] += t - previous
        previous = t
    if "nodcombine" in started and "first nod_diff" in started:
        # the pipeline opens the visit itself, before its first step
        stages["open inputs"] = started["first nod_diff"] - started["nodcombine"]
    if events:
        stages["whole log"] = events[-1][0] - events[0][0]
    return stages


def measure(asn, repeats, cores):
    """Medians of ``repeats`` runs: the open alone, and the chain per ``cores``, with stages."""
    files = sorted(asn.parent.glob("*_cal.fits"))
    opens, chains = [], {c: [] for c in cores}
    strun = Path(sys.executable).parent / "strun"
    for _ in range(repeats):
        opening = [sys.executable, "-c", _OPEN_SCRIPT, *map(str, files)]
        rc, rss, seconds, text = run_in_child(opening)
        if rc:
            raise RuntimeError(f"open failed: {text[-2000:]}")
        opens.append((seconds, rss))
        for c in cores:
            command = [str(strun), "nodcombine", str(asn), f"--output_dir={asn.parent / 'out'}"]
            if c.startswith("parts="):
                command.append(f"--maximum_cores={c.removeprefix('parts=')}")
            else:
                command.append(f"--steps.trace_fit.maximum_cores={c}")
            rc, rss, seconds, text = run_in_child(command)
            if rc:
                raise RuntimeError(f"strun failed: {text[-2000:]}")
            stages = {} if c.startswith("parts=") else stage_seconds(text)
            chains[c].append((seconds, rss, stages))
    median = statistics.median
    result = {"open": median(s for s, _ in opens), "open_rss": median(r for _, r in opens)}
    result["chains"] = {
        c: {
            "chain": median(s for s, _, _ in runs),
            "chain_rss": median(r for _, r, _ in runs),
            "stages": {k: median(st[k] for _, _, st in runs if k in st) for k in runs[0][2]},
        }
        for c, runs in chains.items()
    }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slits", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cores",
        nargs="+",
        default=["1", "all", "parts=all"],
        help="trace_fit maximum_cores values, or parts=<value> for the pipeline's, to run",
    )
    parser.add_argument("--geometries", nargs="+", default=list(GEOMETRIES), choices=GEOMETRIES)
    args = parser.parse_args(argv)
    from nodcombine.offline import configure_offline_crds

    configure_offline_crds(OUTPUT / "crds")
    rows = []
    for n_slits in args.slits:
        for geometry in args.geometries:
            folder = OUTPUT / f"{geometry.replace(', ', '_').replace(' ', '_')}_{n_slits}"
            asn = GEOMETRIES[geometry](n_slits, folder)
            rows.append((n_slits, geometry, measure(asn, args.repeats, args.cores)))
    print(f"medians of {args.repeats} runs, each in a fresh process\n")
    print(
        "| slits | WCS | cores | open (s) | chain (s) | per source (s) | chain/open "
        "| peak RSS open / chain (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n_slits, geometry, m in rows:
        for cores, c in m["chains"].items():
            print(
                f"| {n_slits} | {geometry} | {cores} | {m['open']:.1f} | {c['chain']:.1f} | "
                f"{c['chain'] / n_slits:.2f} | {c['chain'] / m['open']:.2f} | "
                f"{m['open_rss']:.0f} / {c['chain_rss']:.0f} |"
            )
    print("\nstages of the chain (s, from the log; 'save products' = the per-source files)\n")
    names = list(next(iter(rows[0][2]["chains"].values()))["stages"])
    rows_with_stages = [
        (n, g, {**m, "chains": {c: v for c, v in m["chains"].items() if v["stages"]}})
        for n, g, m in rows
    ]
    print("| slits | WCS | cores | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for n_slits, geometry, m in rows_with_stages:
        for cores, c in m["chains"].items():
            cells = " | ".join(f"{c['stages'].get(k, 0.0):.1f}" for k in names)
            print(f"| {n_slits} | {geometry} | {cores} | {cells} |")


if __name__ == "__main__":
    main()
