"""Figures for trace_fit: accuracy on simulated visits, error calibration, real data, speed.

Run with ``make bench-trace`` (or ``python benchmarks/bench_trace_fit.py [--sections 1234567]``).
Every figure is measured in this run.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the shared measurement helpers
CEERS = sorted((REPO.parent / "shared" / "data" / "ceers_933").glob("*.fits"))
SHUTTER = 0.46 * 1.15  # arcsec
WOBBLE = (0.0, 0.2, -0.1)
BRIGHT = {
    ("nrs_msa_prism", 3): 1.2,
    ("nrs_msa_prism", 2): 1.5,
    ("nrs_msa_g395m", 3): 7.0,
    ("nrs_msa_g395m", 2): 11.0,
}


def _errors(slit, truth):
    delta = slit.instance["trace_fit_centre"] - truth.trace_row
    ratio = slit.instance["trace_fit_sigma"] / truth.sigma_pix
    return np.nanmax(np.abs(delta)), np.nanmedian(np.abs(delta)), np.nanmedian(ratio)


def _fit_rows(mode, n_points, **options):
    from helpers import fit_simulated_trace

    fits = fit_simulated_trace(mode, n_points, **options)
    record = fits[0][0]
    errors = np.array([_errors(slit, truth) for _, slit, truth in fits])
    return record, errors[:, 0].max(), np.median(errors[:, 1]), np.median(errors[:, 2])


def accuracy_table():
    print('\n## 1. Bright point sources (position error 0.03", trace wobble 0.2/-0.1 px)')
    print("| mode | nod | intra (shutter) | S/N per column | model | max abs dc (px) |", end="")
    print(" median abs dc (px) | sigma / truth |")
    print("|---|---|---|---|---|---|---|---|")
    for (mode, n_points), peak in BRIGHT.items():
        for intra in (-0.3, 0.0, 0.3):
            record, worst, typical, ratio = _fit_rows(
                mode,
                n_points,
                source_peak=peak,
                source_offset_arcsec=intra * SHUTTER,
                position_error_arcsec=0.03,
                trace_wobble_pix=WOBBLE,
                seed=41,
            )
            model = f"deg {record['degree']}, {'width' if record['width_free'] else 'PSF'}"
            print(
                f"| {mode} | {n_points} | {intra:+.1f} | {record['snr_column']:.1f} | {model} "
                f"| {worst:.4f} | {typical:.4f} | {ratio:.4f} |"
            )


def extended_table():
    print("\n## 2. Extended sources (intrinsic sigma 2.5 px)")
    print("| mode | nod | fitted source sigma (px) | error | sigma / truth | max abs dc |")
    print("|---|---|---|---|---|---|")
    for mode, n_points, peak in [
        ("nrs_msa_prism", 3, 0.6),
        ("nrs_msa_prism", 2, 0.6),
        ("nrs_fs_prism", 3, 0.6),
        ("nrs_msa_g395m", 3, 3.0),
    ]:
        record, worst, _, ratio = _fit_rows(
            mode, n_points, source_peak=peak, source_sigma_arcsec=2.5 * 0.1045, seed=22
        )
        print(
            f"| {mode} | {n_points} | {record['source_sigma_pix']:.3f} | "
            f"{record['source_sigma_err_pix']:.3f} | {ratio:.4f} | {worst:.3f} |"
        )


def faint_table():
    print('\n## 3. Faint and empty slits (PRISM, position error 0.03" = 0.29 px)')
    print("| nod | peak | S/N per column | S/N total | status | model | max abs dc (px) |")
    print("|---|---|---|---|---|---|---|")
    for n_points in (2, 3):
        for peak in (0.1, 0.05, 0.02, 0.0):
            record, worst, _, _ = _fit_rows(
                "nrs_msa_prism", n_points, source_peak=peak, position_error_arcsec=0.03, seed=24
            )
            model = f"deg {record['degree']}, {'width' if record['width_free'] else 'PSF'}"
            print(
                f"| {n_points} | {peak} | {record['snr_column']:.2f} | {record['snr']:.1f} | "
                f"{record['status']} | {model} | {worst:.3f} |"
            )


def forced_table():
    from helpers import prism_and_grating_nods
    from nodcombine import TraceFitStep

    print('\n## 4. Forced profile: PRISM (bright) then G395M (faint), position error 0.04"')
    nod, truths = prism_and_grating_nods()
    print("| force_profile | disperser | status | max abs dc (px) | median abs dc (px) |")
    print("|---|---|---|---|---|")
    for force in (True, False):
        result = TraceFitStep.call(nod, force_profile=force)
        for k in (0, 3):
            worst, typical, _ = _errors(result[k].slits[0], truths[k])
            status = result[k].slits[0].instance["trace_fit_record"]["status"]
            grating_name = result[k].meta.instrument.grating
            print(f"| {force} | {grating_name} | {status} | {worst:.4f} | {typical:.4f} |")


def calibration_table():
    from helpers import trace_pulls
    from nodcombine.trace_fit.solution import TraceFitSettings

    print("\n## 5. Error calibration (kernel, constant offset + width)")
    print("| nod | exp. per position | columns | S/N per column | flux blocks | draws |", end="")
    print(" pull std (offset) | pull std (s^2) | pull mean (offset) | pull mean (s^2) |", end="")
    print(" mean chi2/dof |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cases = [(n, r, 20.0, (25, 60), 5.0, 400) for n, r in [(2, 1), (3, 1), (2, 2), (3, 2)]]
    cases += [(3, 1, 2.0, (25, 340), snr, 200) for snr in (5.0, 0.01)]
    for n_points, repeats, flux, shape, block_snr, draws in cases:
        settings = TraceFitSettings(degree_snr=(1e9, 1e10), block_snr=block_snr)
        pulls, chi2, _ = trace_pulls(
            draws, settings=settings, n_points=n_points, repeats=repeats, flux=flux, shape=shape
        )
        std, mean = pulls.std(axis=0), pulls.mean(axis=0)
        per_column = {20.0: "12-18", 2.0: "~1.3"}[flux]
        blocks = "on" if block_snr > 1 else "off"
        print(
            f"| {n_points} | {repeats} | {shape[1]} | {per_column} | {blocks} | {len(pulls)} | "
            f"{std[0]:.3f} | {std[1]:.3f} | {mean[0]:+.3f} | {mean[1]:+.3f} | "
            f"{np.mean(chi2):.4f} |"
        )


def ceers_table():
    from nodcombine import NodDiffStep
    from nodcombine.trace_fit.io import read_source, write_source
    from nodcombine.trace_fit.solution import TraceFitSettings
    from nodcombine.trace_fit.tracefit import fit_trace
    from nodcombine.visit import group_by_source

    print("\n## 6. Real CEERS 933 (NIRSpec MOS PRISM, 3-shutter nod)")
    nod = NodDiffStep.call([str(p) for p in CEERS])
    groups, _ = group_by_source(list(nod))
    members = groups[0].members
    start = time.perf_counter()
    inputs = read_source(members)
    prepare = time.perf_counter() - start
    start = time.perf_counter()
    solution = fit_trace(**inputs.fit_arguments(), settings=TraceFitSettings())
    fit = time.perf_counter() - start
    start = time.perf_counter()
    write_source(inputs, solution)
    write = time.perf_counter() - start
    record = members[0].slit.instance["trace_fit_record"]
    source = inputs.source
    rows = np.arange(source.stack.data.shape[1])[None, :, None]
    along_vs_rows = source.along - (rows - source.trace_rows[:, None, :])
    print(f"- model: {record['message']}")
    coeffs = ", ".join(
        f"{c:+.3f} ± {e:.3f}"
        for c, e in zip(record["offset_coeffs_pix"], record["offset_coeffs_err_pix"], strict=True)
    )
    print(f"- offset from the WCS-predicted trace (Legendre coefficients, px): {coeffs}")
    print(f"- median offset over the columns: {np.nanmedian(solution.centre):+.3f} px")
    print(
        f"- source sigma: {record['source_sigma_pix']:.3f} ± {record['source_sigma_err_pix']:.3f}"
        f' px = {record["source_sigma_arcsec"]:.3f}" (pixel {record["pixel_scale_arcsec"]:.4f}")'
    )
    print(f"- PSF sigma over the band: {np.nanmin(inputs.sigma_psf):.2f}-", end="")
    print(f"{np.nanmax(inputs.sigma_psf):.2f} px")
    print(f"- chi2/dof {record['chi2'] / record['dof']:.3f} ({record['dof']} dof)")
    print("- WCS along-slit coordinate minus (row - predicted trace): median ", end="")
    print(f"{np.nanmedian(along_vs_rows):+.4f} px")
    # the WCS maps are evaluated by nod_diff now: reading the inputs no longer evaluates them
    print(f"- time: inputs {prepare:.2f} s, fit {fit:.2f} s, write {write:.3f} s")


def speed(n_slits):
    from nodcombine import NodDiffStep, TraceFitStep
    from nodcombine.simulate import simulate_nodded_visit
    from nodcombine.trace_fit import family as trace_fit_family
    from nodcombine.trace_fit import io as trace_fit_io
    from nodcombine.trace_fit import step as trace_fit_step

    print(f"\n## 7. Speed: {n_slits}-slit PRISM visit, 3 exposures, sources of mixed brightness")
    rng = np.random.default_rng(5)
    peaks = rng.choice([0.0, 0.05, 0.2, 1.0], size=n_slits)
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=n_slits, n_points=3, source_peak=peaks, seed=7
    )
    nod = NodDiffStep.call(models)
    timers = {"inputs": [], "fit": [], "write": []}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = function(*args, **kwargs)
            timers[name].append(time.perf_counter() - start)
            return out

        return wrapper

    # every fit_trace call: the step's own fits and the refits of forced profiles
    patched = [
        (trace_fit_io, "read_source", "inputs"),
        (trace_fit_step, "fit_trace", "fit"),
        (trace_fit_family, "fit_trace", "fit"),
        (trace_fit_io, "write_source", "write"),
    ]
    saved = [getattr(module, name) for module, name, _ in patched]
    for (module, name, timer), function in zip(patched, saved, strict=True):
        setattr(module, name, timed(timer, function))
    try:
        start = time.perf_counter()
        TraceFitStep.call(nod)
        total = time.perf_counter() - start
    finally:
        for (module, name, _), function in zip(patched, saved, strict=True):
            setattr(module, name, function)
    fits = timers["fit"]
    print(f"- trace_fit step: {total:.1f} s for {n_slits} sources = {total / n_slits:.3f} s each")
    for name, values in timers.items():
        print(f"- {name}: {np.sum(values):.1f} s, {np.median(values):.3f} s median per call")
    print(f"- slowest fit: {np.max(fits):.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sections", default="1234567", help="which sections to run")
    parser.add_argument("--slits", type=int, default=50, help="slits in the speed test")
    args = parser.parse_args()
    configure_offline_crds(REPO / ".bench_crds")
    logging.disable(logging.WARNING)
    sections = {
        "1": accuracy_table,
        "2": extended_table,
        "3": faint_table,
        "4": forced_table,
        "5": calibration_table,
        "6": ceers_table,
        "7": lambda: speed(args.slits),
    }
    print("# trace_fit benchmark")
    for key, section in sections.items():
        if key in args.sections:
            section()


if __name__ == "__main__":
    main()
