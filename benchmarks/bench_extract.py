"""Figures for rectify + optimal_extract_1d: error calibration, independence, optimality,
cosmic rays, path loss, the real CEERS triplet against msaexp, and speed.

Run with ``make bench-extract`` (or ``python benchmarks/bench_extract.py [--sections 1234567]``).
Every figure is measured in this run.
"""

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the shared measurement helpers
CEERS = sorted((REPO.parent / "shared" / "data" / "ceers_933").glob("*.fits"))
MSAEXP_SPECTRUM = Path("/work/scratch/msaexp_ceers933_1d.ecsv")
BRIGHT, FAINT = 1.0, 0.07  # MJy/sr at mid-band: median S/N per bin ~28 and ~3


def _finite(series):
    """The finite values of several arrays, as one array."""
    z = np.concatenate(series)
    return z[np.isfinite(z)]


def calibration_grid(draws):
    from helpers import extraction_pulls, lag1

    print(f"\n## 1-2. Error calibration and bin independence ({draws} visits x 4 slits each)")
    print("| nod | exposures/position | source | bins | mean z | std z | lag-1 |")
    print("|---|---|---|---|---|---|---|")
    for n_points in (2, 3):
        for repeats in (1, 2, 3):
            for label, peak in (("bright", BRIGHT), ("faint", FAINT), ("empty", 0.0)):
                pulls = extraction_pulls(draws, n_points=n_points, repeats=repeats, peak=peak)
                z = _finite(pulls)
                print(
                    f"| {n_points} | {repeats} | {label} | {z.size} | {z.mean():+.3f} |"
                    f" {z.std():.3f} | {lag1(pulls):+.3f} |",
                    flush=True,
                )


def drizzled(draws):
    """Noise correlation between neighbouring wavelength bins: nearest-bin vs drizzle.

    Empty slits (sky only) of the same visits, rectified by ``rectify`` and
    drizzled by jwst's ``resample_spec`` from the same ``nod_diff`` products;
    lag-1 along the dispersion of data/err in every row, averaged.
    """
    from jwst.resample import ResampleSpecStep

    from helpers import lag1, run_chain
    from nodcombine import NodDiffStep
    from nodcombine.simulate import simulate_nodded_visit

    print(f"\n## 2b. Bin-to-bin noise correlation, sky only ({draws} visits x 4 slits)")
    print("| data | product | rows | std data/err | lag-1 along the dispersion | across the slit |")
    print("|---|---|---|---|---|---|")
    _ceers_correlation()
    for n_points in (2, 3):
        rows = {"nodcombine rectify": [], "jwst resample_spec": []}
        columns = {key: [] for key in rows}
        for seed in range(draws):
            models, _ = simulate_nodded_visit(
                "nrs_msa_prism", n_slits=4, n_points=n_points, source_peak=0.0, seed=seed
            )
            s2d, _ = run_chain([m.copy() for m in models])
            drizzled_s2d = ResampleSpecStep.call(NodDiffStep.call(models))
            for key, product in (("nodcombine rectify", s2d), ("jwst resample_spec", drizzled_s2d)):
                for slit in product.slits:
                    z = np.asarray(slit.data, float) / np.asarray(slit.err, float)
                    rows[key].extend(r for r in z if np.isfinite(r).sum() > 50)
                    columns[key].extend(c for c in z.T if np.isfinite(c).sum() > 10)
        for key, series in rows.items():
            z = _finite(series)
            print(
                f"| sim {n_points}-point | {key} | {len(series)} | {z.std():.3f} |"
                f" {lag1(series):+.3f} | {lag1(columns[key]):+.3f} |",
                flush=True,
            )


def _sky_rows(product, window=15):
    """Rows of data/err without source signal, their spectrum's running median removed."""
    rows = []
    for slit in product.slits if hasattr(product, "slits") else [product]:
        z = np.asarray(slit.data, float) / np.asarray(slit.err, float)
        for row in z:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                if np.isfinite(row).sum() <= 50 or abs(np.nanmedian(row)) >= 0.3:
                    continue  # a row of the source or of a negative image
                padded = np.pad(row, window // 2, constant_values=np.nan)
                windows = np.lib.stride_tricks.sliding_window_view(padded, window)
                rows.append(row - np.nanmedian(windows, axis=1))
    return rows


def _ceers_correlation():
    """The same on real data: CEERS 933 sky rows, before and after resampling."""
    from jwst.resample import ResampleSpecStep

    from helpers import lag1
    from nodcombine import NodDiffStep, RectifyStep, TraceFitStep

    nod = NodDiffStep.call([str(p) for p in CEERS])
    products = {
        "nod_diff (detector pixels)": nod[0],
        "nodcombine rectify": RectifyStep.call(TraceFitStep.call(nod)),
        "jwst resample_spec": ResampleSpecStep.call(nod),
    }
    for key, product in products.items():
        rows = _sky_rows(product)
        z = _finite(rows)
        print(f"| CEERS 933 | {key} | {len(rows)} | {z.std():.3f} | {lag1(rows):+.3f} | - |")


def _cramer_rao_sigma(models, truth, slit_index):
    """1σ bound per column of exposure 0's cutout (Jy) for the true profile and variances."""
    from nodcombine.extract_1d.optimal import flux_information
    from nodcombine.profile import pixel_integrated_gaussian

    profiles, variances = [], []
    for model, slits in zip(models, truth.slits, strict=True):
        slit, slit_truth = model.slits[slit_index], slits[slit_index]
        rows = np.arange(slit.data.shape[0], dtype=float)[:, None]
        profiles.append(
            pixel_integrated_gaussian(rows, slit_truth.trace_row, slit_truth.sigma_pix)[0]
        )
        usable = np.isfinite(slit.data)
        total = slit.var_poisson + slit.var_rnoise + slit.var_flat
        variances.append(np.where(usable, total, np.nan))
    info = flux_information(np.stack(profiles), np.stack(variances)).sum(axis=0)
    area = models[0].slits[slit_index].meta.photometry.pixelarea_steradians
    with np.errstate(divide="ignore"):
        return truth.slits[0][slit_index].wavelength, area * 1e6 / np.sqrt(info)


def efficiency(draws):
    from helpers import run_chain
    from nodcombine.simulate import simulate_nodded_visit

    print("\n## 3. Optimality: extracted error / Cramér–Rao bound (true profile and variances)")
    print("| nod | exposures/position | source | median sigma/sigma_CR | efficiency |")
    print("|---|---|---|---|---|")
    for n_points, repeats in ((2, 1), (3, 1), (3, 2)):
        for label, peak in (("bright", BRIGHT), ("faint", FAINT)):
            ratios = []
            for seed in range(draws):
                models, truth = simulate_nodded_visit(
                    "nrs_msa_prism",
                    n_slits=2,
                    n_points=n_points,
                    exposures_per_position=repeats,
                    source_peak=peak,
                    emission_lines=False,
                    seed=100 + seed,
                )
                _, x1d = run_chain([m.copy() for m in models])
                for k, spec in enumerate(x1d.spec):
                    wave, bound = _cramer_rao_sigma(models, truth, k)
                    table = spec.spec_table
                    expected = np.interp(table["WAVELENGTH"], wave, bound)
                    ratios.append(np.asarray(table["FLUX_ERROR"] / expected)[5:-5])
            ratio = float(np.nanmedian(np.concatenate(ratios)))
            print(f"| {n_points} | {repeats} | {label} | {ratio:.3f} | {1 / ratio**2:.3f} |")


def cosmic_rays(draws):
    from helpers import extraction_pulls

    print("\n## 4. Unflagged cosmic rays at 0.3 % of pixels: bins beyond 5 sigma")
    print("| nod | source | bins | beyond 5 sigma | fraction |")
    print("|---|---|---|---|---|")
    for n_points in (2, 3):
        for label, peak in (("bright", BRIGHT), ("faint", FAINT)):
            pulls = extraction_pulls(
                draws, n_points=n_points, repeats=1, peak=peak, cosmic_ray_fraction=0.003
            )
            z = _finite(pulls)
            bad = int((np.abs(z) > 5).sum())
            print(f"| {n_points} | {label} | {z.size} | {bad} | {bad / z.size:.5f} |")


def pathloss(draws):
    from helpers import run_chain, true_flux_jy
    from nodcombine import OptimalExtract1dStep
    from nodcombine.simulate import simulate_nodded_visit

    print("\n## 5. Path loss: FLUX / true total flux (apply_pathloss=True) and in-slit ratio")
    print("| source_xpos | source sigma (arcsec) | median kept fraction | FLUX/total | in-slit |")
    print("|---|---|---|---|---|")
    for xpos, width in ((0.0, 0.0), (0.25, 0.0), (-0.4, 0.0), (0.25, 0.05)):
        on, off, kept = [], [], []
        for seed in range(draws):
            models, truth = simulate_nodded_visit(
                "nrs_msa_prism",
                n_slits=2,
                n_points=3,
                source_peak=3.0,
                source_xpos=xpos,
                source_sigma_arcsec=width,
                slit_loss=True,
                emission_lines=False,
                seed=200 + seed,
            )
            s2d, x1d_off = run_chain(models)
            x1d_on = OptimalExtract1dStep.call(s2d, apply_pathloss=True)
            area = s2d.slits[0].meta.photometry.pixelarea_steradians
            for spec_on, spec_off, st in zip(
                x1d_on.spec, x1d_off.spec, truth.slits[0], strict=True
            ):
                total = true_flux_jy(spec_on, st, area, total=True)
                inslit = true_flux_jy(spec_on, st, area)
                on.append(np.nanmedian((spec_on.spec_table["FLUX"] / total)[5:-5]))
                off.append(np.nanmedian((spec_off.spec_table["FLUX"] / inslit)[5:-5]))
                kept.append(np.nanmedian(inslit / total))
        print(
            f"| {xpos:+.2f} | {width:.2f} | {np.median(kept):.3f} | {np.median(on):.4f} |"
            f" {np.median(off):.4f} |"
        )


def ceers():
    from stdatamodels.jwst import datamodels

    from nodcombine import NodCombinePipeline
    from nodcombine.plotting import save_spectrum_figure

    print("\n## 6. Real CEERS 933 (3-shutter nod, PRISM)")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        x1d = NodCombinePipeline.call([str(p) for p in CEERS], output_dir=tmp, save_results=True)
        seconds = time.perf_counter() - start
        s2d_path = next(Path(tmp).glob("*_s2d.fits"))
        with datamodels.open(s2d_path) as s2d:
            save_spectrum_figure(
                s2d.slits[0], x1d.spec[0], REPO / "docs/images/ceers933_spectrum.png", "CEERS 933"
            )
    table = x1d.spec[0].spec_table
    extras = x1d.spec[0].instance["extract_1d_extras"]
    wave, flux, err = (np.asarray(table[c], float) for c in ("WAVELENGTH", "FLUX", "FLUX_ERROR"))
    print(f"chain: {seconds:.2f} s; {np.isfinite(flux).sum()} bins")
    print(
        f"median flux {np.nanmedian(flux) * 1e6:.4f} uJy, median S/N {np.nanmedian(flux / err):.2f}"
    )
    print(f"path loss (kept fraction) median {np.nanmedian(extras['pathloss']):.3f}")
    if not MSAEXP_SPECTRUM.exists():
        print(f"(no msaexp spectrum at {MSAEXP_SPECTRUM}; see docs/optimal_extract_1d.md)")
        return
    from astropy.table import Table

    ref = Table.read(MSAEXP_SPECTRUM)
    ref_wave = np.asarray(ref["wave"], float)
    ref_flux = np.asarray(ref["flux"], float) * 1e-6  # microJy -> Jy
    ref_corr = np.asarray(ref["path_corr"], float)
    inside = (wave > ref_wave[2]) & (wave < ref_wave[-3])
    theirs = np.interp(wave[inside], ref_wave, ref_flux)
    theirs_slit = np.interp(wave[inside], ref_wave, ref_flux / ref_corr)
    ours_slit = flux[inside] * np.asarray(extras["pathloss"])[inside]
    ratio_total = np.nanmedian(flux[inside] / theirs)
    ratio_slit = np.nanmedian(ours_slit / theirs_slit)
    # shape: smooth both over 15 bins and correlate
    kernel = np.ones(15) / 15
    smooth = lambda y: np.convolve(np.nan_to_num(y), kernel, mode="same")  # noqa: E731
    shape_r = np.corrcoef(smooth(ours_slit), smooth(theirs_slit))[0, 1]
    scatter = np.nanstd(smooth(ours_slit) / smooth(theirs_slit) / ratio_slit)
    print(f"median FLUX ratio ours/msaexp, both path-loss corrected: {ratio_total:.3f}")
    print(f"median in-slit flux ratio ours/msaexp: {ratio_slit:.3f}")
    print(
        f"shape: correlation of 15-bin smoothed spectra {shape_r:.3f},"
        f" rms of their ratio {scatter:.3f}"
    )
    from stdatamodels.jwst import datamodels as dm

    with dm.open(str(CEERS[0])) as first:
        undone = float(np.nanmedian(first.pathloss_uniform))
    print(
        f"msaexp multiplied the data by PATHLOSS_UN (median {undone:.2f}) as if the pipeline had"
        f" divided by it; ours x that / msaexp in-slit: {ratio_slit * undone:.3f}"
    )
    print(
        f"path-loss factors: ours 1/{np.nanmedian(extras['pathloss']):.3f} = "
        f"{1 / np.nanmedian(extras['pathloss']):.3f}, msaexp {np.nanmedian(ref_corr):.3f}"
    )


def _seconds(function, *args, **kwargs):
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def _median_seconds(repeats, function, *args, **kwargs):
    return float(np.median([_seconds(function, *args, **kwargs) for _ in range(repeats)]))


def speed(n_slits, repeats=1):
    from jwst.datamodels import ModelContainer

    from nodcombine import NodCombinePipeline
    from nodcombine.modelio import open_visit
    from nodcombine.simulate import simulate_nodded_visit, write_visit

    print(
        "\n## 7. Speed (seconds, warm: each file opened once before timing; opening ="
        " stdatamodels' ModelContainer of the _cal files, WCS objects built;"
        f" median of {repeats})"
    )
    print("| data | sources | stdatamodels open | ours | whole chain | chain / open | per source |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        models, _ = simulate_nodded_visit(
            "nrs_msa_prism", n_slits=n_slits, n_points=3, source_peak=0.3, seed=9
        )
        write_visit(models, Path(tmp) / "in")
        del models
        paths = sorted(str(p) for p in (Path(tmp) / "in").glob("*_cal.fits"))
        for label, inputs, sources in (
            ("CEERS 933", [str(p) for p in CEERS], 1),
            (f"sim {n_slits} slits", paths, n_slits),
        ):
            ModelContainer(inputs[:1])  # schemas and converters loaded: not opening's cost
            opening = _median_seconds(repeats, ModelContainer, inputs)
            ours = _median_seconds(repeats, open_visit, inputs)
            chain = _median_seconds(repeats, NodCombinePipeline.call, inputs, output_dir=tmp)
            print(
                f"| {label} | {sources} | {opening:.2f} | {ours:.2f} | {chain:.2f} |"
                f" {chain / opening:.2f} | {chain / sources:.3f} |",
                flush=True,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="1234567")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--slits", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="timings per figure (median)")
    args = parser.parse_args(argv)
    configure_offline_crds(Path(tempfile.mkdtemp()) / "crds")
    for name in ("stpipe", "jwst", "nodcombine", "CRDS"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sections = {
        "1": lambda: calibration_grid(args.draws),
        "2": lambda: drizzled(max(2, args.draws // 3)),
        "3": lambda: efficiency(max(2, args.draws // 3)),
        "4": lambda: cosmic_rays(args.draws),
        "5": lambda: pathloss(max(2, args.draws // 3)),
        "6": ceers,
        "7": lambda: speed(args.slits, args.repeats),
    }
    for key, run in sections.items():
        if key in args.sections:
            run()


if __name__ == "__main__":
    main()
