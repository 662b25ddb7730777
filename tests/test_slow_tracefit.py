"""Monte-Carlo checks of the trace fit (``make test-slow``)."""

import numpy as np
import pytest

from helpers import fit_simulated_trace, trace_pulls
from nodcombine import NodDiffStep
from nodcombine.simulate import simulate_nodded_visit
from nodcombine.trace_fit import io as trace_io
from nodcombine.trace_fit.solution import TraceFitSettings
from nodcombine.trace_fit.tracefit import fit_trace
from nodcombine.visit import group_by_source

pytestmark = pytest.mark.slow

SHUTTER = 0.46 * 1.15
# peaks (MJy/sr) giving a median S/N of at least 20 per column at every intra-shutter position
BRIGHT = {("nrs_msa_prism", 3): 1.2, ("nrs_msa_prism", 2): 1.5}
BRIGHT |= {("nrs_msa_g395m", 3): 7.0, ("nrs_msa_g395m", 2): 11.0}


@pytest.mark.parametrize("intra", [-0.3 * SHUTTER, 0.0, 0.3 * SHUTTER], ids=["-0.3", "0", "+0.3"])
@pytest.mark.parametrize(("mode", "n_points"), list(BRIGHT), ids=lambda v: str(v))
def test_acceptance_grid_centre_and_width(mode, n_points, intra):
    fits = fit_simulated_trace(
        mode,
        n_points,
        source_peak=BRIGHT[mode, n_points],
        source_offset_arcsec=intra,
        position_error_arcsec=0.03,
        trace_wobble_pix=(0.0, 0.2, -0.1),
        seed=41,
    )
    for record, slit, truth in fits:
        assert record["snr_column"] >= 20
        assert np.nanmax(np.abs(slit.instance["trace_fit_centre"] - truth.trace_row)) < 0.05
        ratio = np.nanmedian(slit.instance["trace_fit_sigma"] / truth.sigma_pix)
        assert ratio == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(("n_points", "repeats"), [(2, 1), (3, 1), (2, 2), (3, 2)])
def test_kernel_pulls_and_chi2_many_realisations(n_points, repeats):
    pulls, chi2, counted = trace_pulls(
        400, n_points=n_points, repeats=repeats, flux=20.0, shape=(25, 60)
    )
    assert counted == 1.0
    # 400 draws: the mean of the pulls is known to 0.05, their std to 0.035,
    # the mean chi2/dof (dof ~1400) to 0.002; the bars are about 4 sigma
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.2)
    assert np.all(np.abs(pulls.std(axis=0) - 1.0) < 0.14)
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.008)


def test_simulated_visit_centre_pulls():
    # realistic data: bar shadows, Poisson variances, three shutters; 100 draws
    # know the pull std to 0.07
    pulls = []
    for seed in range(100):
        models, truth = simulate_nodded_visit(
            "nrs_msa_prism", n_points=3, source_peak=0.3, position_error_arcsec=0.03, seed=seed
        )
        nod = NodDiffStep.call(models)
        inputs = trace_io.read_source(group_by_source(nod)[0][0].members)
        settings = TraceFitSettings(degree_snr=(1e9, 1e10))
        solution = fit_trace(**inputs.fit_arguments(), settings=settings)
        row0, col0, _, n_cols = inputs.source.stack.windows[0]
        true_offset = truth.slits[0][0].trace_row - (
            inputs.source.trace_rows[0, col0 : col0 + n_cols] - row0
        )
        pulls.append((solution.coeffs[0] - np.median(true_offset)) / solution.coeffs_err[0])
    assert abs(np.mean(pulls)) < 0.3
    assert np.std(pulls) == pytest.approx(1.0, abs=0.2)


def test_low_snr_pulls_with_flux_blocks():
    # S/N 1.3 per column (CEERS 933 has 1.9): 200 draws know the std to 0.05
    pulls, _, counted = trace_pulls(200, flux=2.0, shape=(25, 340))
    assert counted > 0.75
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.25)
    assert np.all(np.abs(pulls.std(axis=0) - 1.0) < 0.25)
