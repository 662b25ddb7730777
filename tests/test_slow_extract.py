"""Monte-Carlo checks of the extracted errors (slow: ``make test-slow``)."""

import numpy as np
import pytest

from helpers import extraction_pulls, lag1

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "n_points, repeats, peak",
    [(2, 1, 1.0), (3, 1, 0.07), (2, 2, 0.0), (3, 3, 1.0), (2, 3, 0.07)],
)
def test_flux_errors_are_calibrated_and_bins_independent(n_points, repeats, peak):
    pulls = extraction_pulls(6, n_points=n_points, repeats=repeats, peak=peak)
    z = np.concatenate(pulls)
    z = z[np.isfinite(z)]
    # ~8000 bins: the std of z scatters by 0.8 %, its mean by 0.011
    assert abs(z.std() - 1.0) < 0.03
    assert abs(z.mean()) < 0.05
    assert abs(lag1(pulls)) < 0.05


@pytest.mark.parametrize(("n_points", "peak"), [(3, 1.0), (2, 1.0), (2, 0.07)])
def test_unflagged_cosmic_rays_leave_few_outlying_bins(n_points, peak):
    # with two positions nod_diff cannot tell which exposure a hit is in; the
    # extraction's outlier rejection has to catch it
    pulls = extraction_pulls(6, n_points=n_points, repeats=1, peak=peak, cosmic_ray_fraction=0.003)
    z = np.concatenate(pulls)
    z = z[np.isfinite(z)]
    assert np.mean(np.abs(z) > 5) < 0.001
