"""Monte-Carlo checks over many realisations (``make test-slow``)."""

import numpy as np
import pytest

from helpers import away_from_traces, sky_only_z
from nodcombine import NodDiffStep
from nodcombine.simulate import simulate_nodded_visit

pytestmark = pytest.mark.slow

CONFIGURATIONS = [
    (mode, n_points, repeats)
    for mode, patterns in [
        ("nrs_msa_prism", (2, 3)),
        ("nrs_msa_g395m", (2, 3)),
        ("nrs_fs_prism", (2, 3, 5)),
        ("miri_lrs", (2,)),
    ]
    for n_points in patterns
    for repeats in (1, 2, 3)
]


@pytest.mark.parametrize(("mode", "n_points", "repeats"), CONFIGURATIONS)
def test_error_calibration_many_realisations(mode, n_points, repeats):
    z = sky_only_z(mode, n_points, repeats, seeds=range(8))
    assert np.std(z) == pytest.approx(1.0, abs=0.01)
    assert np.mean(z) == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("n_points", [2, 3])
def test_outlier_rejection_keeps_errors_calibrated(n_points):
    # with rejection on, sky-only differences of cosmic-ray-free pixels stay N(0, 1):
    # the rejection removes hits, not noise
    zs = []
    for seed in range(6):
        models, truth = simulate_nodded_visit(
            "nrs_msa_prism",
            n_slits=4,
            n_points=n_points,
            source_peak=0.3,
            cosmic_ray_fraction=0.003,
            seed=100 + seed,
        )
        result = NodDiffStep.call(models)
        for i, model in enumerate(result):
            for k, slit in enumerate(model.slits):
                hits = truth.slits[i][k].cosmic_rays
                zs.append(away_from_traces(slit, models, truth, k, exclude=hits))
    z = np.concatenate(zs)
    assert z.size > 20_000
    assert np.std(z) == pytest.approx(1.0, abs=0.03)
    assert np.mean(np.abs(z) > 5) < 1e-3
