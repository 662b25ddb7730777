"""Figures for nod_diff: error calibration, outlier rejection, real data, speed and memory.

Run with ``make bench`` (or ``python benchmarks/bench_nod_diff.py [--slits N]``).  Every
figure is measured in this run; timings and peak memory come from separate child
processes so that one measurement does not warm or bloat another.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the shared measurement helpers
CEERS = sorted((REPO.parent / "shared" / "data" / "ceers_933").glob("*.fits"))

_CHILD = r"""
import json, sys, time
import jwst.datamodels  # imports are not part of any timing
import nodcombine.nod_diff.step, nodcombine.trace_fit.step
import nodcombine.rectify.step, nodcombine.extract_1d.step
from nodcombine.offline import configure_offline_crds
configure_offline_crds(sys.argv[3])
task, target = sys.argv[1], sys.argv[2]
from stdatamodels.jwst import datamodels
from jwst.datamodels import ModelContainer
t0 = time.perf_counter()
if task == "baseline":
    n = 0
elif task == "open":
    container = ModelContainer(target)
    n = sum(len(getattr(m, "slits", [m])) for m in container)
else:
    from nodcombine.nod_diff import step as nod_diff_step
    # time the per-source work (everything but opening) inside the same run
    per_source = nod_diff_step.NodDiffStep._difference
    def timed(self, *args):
        t = time.perf_counter()
        done = per_source(self, *args)
        work.append(time.perf_counter() - t)
        return done
    work = []
    nod_diff_step.NodDiffStep._difference = timed
    container = nod_diff_step.NodDiffStep.call(target)
    n = sum(len(getattr(m, "slits", [m])) for m in container)
elapsed = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter keeps the peak of the forked parent image
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
end = int(status.split("VmRSS:")[1].split()[0]) / 1024
work_s = sum(work) if task == "nod_diff" else 0.0
print(json.dumps({"seconds": elapsed, "peak_mib": peak, "end_mib": end, "work_s": work_s,
                  "slits": n}))
"""


def _child(task, target, crds):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, task, str(target), str(crds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def calibration_table():
    from helpers import sky_only_z

    print("\n1. Sky-only error calibration: std and mean of diff / propagated error")
    print(f"{'mode':15s} {'nod':>4s} {'exp/pos':>8s} {'pixels':>8s} {'std':>7s} {'mean':>8s}")
    for mode, n_points in [
        ("nrs_msa_prism", 2),
        ("nrs_msa_prism", 3),
        ("nrs_msa_g395m", 3),
        ("nrs_fs_prism", 2),
        ("nrs_fs_prism", 3),
        ("nrs_fs_prism", 5),
        ("miri_lrs", 2),
    ]:
        for repeats in (1, 2, 3):
            z = sky_only_z(mode, n_points, repeats, seeds=range(3))
            print(
                f"{mode:15s} {n_points:4d} {repeats:8d} {z.size:8d} {np.std(z):7.4f} "
                f"{np.mean(z):+8.4f}"
            )


def real_data_table(crds):
    if not CEERS:
        print("\n2. Real CEERS 933 triplet: ../shared/data/ceers_933 not found, skipped")
        return
    from stdatamodels.jwst import datamodels

    from nodcombine import NodDiffStep
    from nodcombine.nod_diff.io import outlier_pixels
    from nodcombine.nodsource import read_nod_source
    from nodcombine.visit import group_by_source

    print("\n2. Real CEERS 933 triplet (NIRSpec MOS PRISM, 3-shutter nod)")
    result = NodDiffStep.call([str(f) for f in CEERS])
    groups, _ = group_by_source(list(result))
    source = read_nod_source(groups[0].members)
    stack, trace_rows = source.stack, source.trace_rows
    rows = np.arange(stack.data.shape[1])[None, :, None]
    away = np.all(np.abs(rows - trace_rows[:, None, :]) > 3, axis=0)[None]
    with np.errstate(invalid="ignore"):
        z = stack.data / np.sqrt(sum(stack.variances.values()))
    zz = z[np.isfinite(z) & away]
    mad = 1.4826 * np.median(np.abs(zz - np.median(zz)))
    print(
        f"  away from all traces (> 3 px): {zz.size} pixels, median diff/err {np.median(zz):+.4f},"
        f" std {np.std(zz):.3f}, MAD-std {mad:.3f}"
    )
    y_offsets = [datamodels.open(f).meta.dither.y_offset for f in CEERS]
    cols = np.arange(60, 300)
    grid = np.arange(-12.0, 12.01, 0.25)
    for e in range(3):
        diff = stack.data[e]
        profile = np.array(
            [
                np.nanmedian(
                    [
                        np.interp(
                            trace_rows[e][c] + o,
                            np.arange(diff.shape[0]),
                            diff[:, c],
                            left=np.nan,
                            right=np.nan,
                        )
                        for c in cols
                    ]
                )
                for o in grid
            ]
        )
        for f in range(3):
            if f == e:
                continue
            predicted = (y_offsets[f] - y_offsets[e]) / 0.1045
            near = np.abs(grid - predicted) <= 2.5
            weight = np.clip(-profile[near], 0, None)
            measured = np.sum(grid[near] * weight) / np.sum(weight)
            wcs_sep = np.median(trace_rows[f][cols] - trace_rows[e][cols])
            print(
                f"  exposure {e + 1}: negative image of exposure {f + 1} at {measured:+6.2f} px;"
                f" dither offsets predict {predicted:+6.2f}, WCS traces {wcs_sep:+6.2f}"
            )
    outliers = sum(int(outlier_pixels(m).sum()) for m in result)
    print(f"  cross-exposure outliers flagged: {outliers} pixels in 3 exposures")


def outlier_table():
    from helpers import outlier_recovery

    print("\n3. Unflagged cosmic rays (0.3 % of pixels, 10-500 sigma) and one snowball per slit")
    for n_points in (2, 3):
        for peak in (1.0, 0.2):
            c = outlier_recovery(n_points, n_slits=20, source_peak=peak)
            print(
                f"  {n_points}-point nod, source peak {peak} MJy/sr: {c['found']}/{c['hits']} hit "
                f"pixels flagged ({100 * c['found'] / c['hits']:.1f} %), "
                f"{c['false_on_trace']}/{c['trace_pixels']} source-trace pixels (within 2 px) "
                f"wrongly flagged ({100 * c['false_on_trace'] / c['trace_pixels']:.3f} %)"
            )


def source_safety_table():
    from helpers import flagged_fraction
    from nodcombine import NodDiffStep
    from nodcombine.simulate import simulate_nodded_visit

    print("\n4. Source pixels flagged as outliers with no cosmic rays injected")
    cases = [
        ("nrs_msa_prism", 3, 1.0, 0.2, True),
        ("nrs_msa_prism", 3, 2.0, 0.3, True),
        ("nrs_fs_prism", 2, 5.0, 0.0, False),
        ("nrs_fs_prism", 3, 20.0, 0.0, False),
        ("nrs_msa_prism", 3, 20.0, 0.0, False),
    ]
    for mode, n_points, peak, sigma, noise in cases:
        models, _ = simulate_nodded_visit(
            mode,
            n_points=n_points,
            source_peak=peak,
            source_sigma_arcsec=sigma,
            noise=noise,
            seed=5,
        )
        fraction = flagged_fraction(NodDiffStep.call(models))
        kind = f'sigma {sigma}"' if sigma else "point"
        print(
            f"  {mode} {n_points}-point, peak {peak} MJy/sr, {kind}, "
            f"{'noisy' if noise else 'noise-free'}: {100 * fraction:.3f} % of pixels flagged"
        )


def speed(n_slits, workdir, crds):
    from nodcombine.simulate import simulate_nodded_visit, write_visit

    print(f"\n5. Speed and memory: simulated {n_slits}-slit, 3-exposure MOS PRISM visit")
    t0 = time.perf_counter()
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=n_slits,
        n_points=3,
        source_peak=0.3,
        cosmic_ray_fraction=0.003,
        seed=1,
    )
    asn, _paths = write_visit(models, workdir / "visit")
    del models
    print(f"  (simulated and written in {time.perf_counter() - t0:.1f} s)")
    rows = [
        ("import only (baseline)", _child("baseline", asn, crds)),
        ("open inputs (ModelContainer)", _child("open", asn, crds)),
        ("nod_diff (open + difference)", _child("nod_diff", asn, crds)),
    ]
    if CEERS:
        from nodcombine.simulate import write_association

        real = write_association(CEERS, workdir / "ceers_asn.json")
        rows += [
            ("CEERS 933: open inputs", _child("open", real, crds)),
            ("CEERS 933: nod_diff", _child("nod_diff", real, crds)),
        ]
    for label, r in rows:
        print(
            f"  {label:30s} {r['seconds']:6.2f} s  peak RSS {r['peak_mib']:4.0f} MiB, "
            f"at the end {r['end_mib']:4.0f} MiB  ({r['slits']} slits)"
        )
    base, full = rows[1][1], rows[2][1]
    print(
        f"  nod_diff / open = {full['seconds'] / base['seconds']:.2f}; per-source work "
        f"(masks, outliers, differences, write-back) {full['work_s']:.1f} s in all, "
        f"{full['work_s'] / n_slits * 1e3:.0f} ms per source"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slits", type=int, default=200)
    parser.add_argument("--sections", default="12345", help="which sections to run, e.g. 5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        crds = Path(tmp) / "crds"
        configure_offline_crds(crds)
        if "1" in args.sections:
            calibration_table()
        if "2" in args.sections:
            real_data_table(crds)
        if "3" in args.sections:
            outlier_table()
        if "4" in args.sections:
            source_safety_table()
        if "5" in args.sections:
            speed(args.slits, Path(tmp), crds)


if __name__ == "__main__":
    main()
