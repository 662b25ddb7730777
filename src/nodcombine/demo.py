"""``make demo``: simulate a nodded NIRSpec MOS visit and run the nodcombine chain on it.

Usage::

    python -m nodcombine.demo [--output-dir DIR] [ASSOCIATION]

Without an association, a 3-point-nod PRISM visit of a few slitlets (with
unflagged cosmic rays, and sources a little off their planned positions) is
simulated into ``DIR/input``; the ``nodcombine`` pipeline (``nod_diff``,
``trace_fit``, ``rectify``, ``optimal_extract_1d``) writes an ``_s2d`` and an
``_x1d`` per source to ``DIR/products``, with the pipeline's figures
(``save_plots``: nod differences, rectified 2-D and 1-D spectrum) and a
trace-fit diagnostic per source.  CRDS is put offline unless the environment
already says otherwise.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from nodcombine.contract import ExtractionExtras
from nodcombine.offline import configure_offline_crds

__all__ = ["main"]

log = logging.getLogger("nodcombine.demo")


def _simulate(input_dir):
    from nodcombine.simulate import simulate_nodded_visit, write_visit

    models, _ = simulate_nodded_visit(
        "nrs_msa_prism",
        n_slits=5,
        n_points=3,
        source_peak=[0.5, 0.2, 0.1, 0.05, 0.0],
        source_offset_arcsec=[0.0, 0.05, -0.08, 0.1, 0.0],
        position_error_arcsec=[0.03, -0.02, 0.0, 0.04, 0.0],
        cosmic_ray_fraction=0.003,
        jitter_cutouts=True,
        seed=2026,
    )
    asn, _ = write_visit(models, input_dir)
    return asn


def _summarise_spectra(x1d):
    """One line per source: how its profile was fitted and what was extracted."""
    lines = []
    for spec in x1d.spec:
        table = spec.spec_table
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = np.nanmedian(table["FLUX"] / table["FLUX_ERROR"])
        extras = ExtractionExtras.from_tree(spec.instance)
        lines.append(
            f"  slit {spec.name} source {spec.source_id}: median flux "
            f"{np.nanmedian(table['FLUX']) * 1e6:8.3f} uJy, median S/N {snr:6.1f}, "
            f"path loss {np.nanmedian((extras and extras.pathloss) or [np.nan]):.3f}"
        )
    return "\n".join(lines)


def main(argv=None):
    """Run the demo; returns a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("association", nargs="?", help="spec3 association of _cal files")
    parser.add_argument("--output-dir", default="demo_output", type=Path)
    args = parser.parse_args(argv)

    if "CRDS_SERVER_URL" not in os.environ:
        configure_offline_crds(args.output_dir / "crds")
    from nodcombine.pipelines import NodCombinePipeline

    asn = args.association or _simulate(args.output_dir / "input")
    products_dir = args.output_dir / "products"
    products_dir.mkdir(parents=True, exist_ok=True)
    x1d = NodCombinePipeline.call(
        str(asn),
        output_dir=str(products_dir),
        save_results=True,
        save_plots=True,
        steps={"trace_fit": {"save_diagnostics": True}},
    )
    print(f"\nnodcombine products (_s2d, _x1d per source) in {products_dir.resolve()}")
    print(_summarise_spectra(x1d))
    for png in sorted(products_dir.glob("*.png")):
        print(f"  figure {png.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
