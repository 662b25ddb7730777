"""Fits in worker processes (``maximum_cores``): the same products, bit for bit, as one core."""

import logging

import numpy as np
import pytest

from nodcombine import NodCombinePipeline, NodDiffStep, TraceFitStep
from nodcombine.errors import RefusedError
from nodcombine.parallel import core_count
from nodcombine.simulate import simulate_nodded_visit, write_visit


@pytest.fixture(scope="module")
def nodded_visit():
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=4, n_points=3, seed=41)
    return NodDiffStep.call(models)


def _trace_products(container):
    return [
        (slit.trace_model.copy(), dict(slit.instance["trace_fit_record"]))
        for model in container
        for slit in model.slits
    ]


def test_two_workers_fit_what_one_core_fits(nodded_visit):
    serial = _trace_products(TraceFitStep.call(nodded_visit, maximum_cores="1"))
    parallel = _trace_products(TraceFitStep.call(nodded_visit, maximum_cores="2"))
    assert len(serial) == len(parallel) == 12
    for (model_1, record_1), (model_2, record_2) in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(model_2, model_1)
        assert record_2.keys() == record_1.keys()
        for key, value in record_1.items():
            if key != "seconds":
                np.testing.assert_array_equal(record_2[key], value, err_msg=key)


def test_a_source_failing_in_a_worker_is_skipped_alone(nodded_visit, caplog):
    visit = nodded_visit.copy()
    for model in visit:
        model.slits[0].dq[...] |= 1  # slit 0: every pixel DO_NOT_USE
    with caplog.at_level(logging.WARNING, logger="nodcombine"):
        result = TraceFitStep.call(visit, maximum_cores="all")
    statuses = [s.instance["trace_fit_record"]["status"] for s in result[0].slits]
    assert statuses[0] == "SKIPPED" and set(statuses[1:]) == {"FIT"}
    assert "SKIPPED" in caplog.text


def test_whole_chain_products_identical_with_two_workers(tmp_path):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=3, n_points=3, seed=42)
    asn, _ = write_visit(models, tmp_path / "in")
    spectra = []
    for cores in ("1", "2"):
        x1d = NodCombinePipeline.call(
            str(asn), steps={"trace_fit": {"maximum_cores": cores}}, save_results=False
        )
        spectra.append([spec.spec_table.copy() for spec in x1d.spec])
    for one, two in zip(*spectra, strict=True):
        for column in ("FLUX", "FLUX_ERROR", "WAVELENGTH", "SURF_BRIGHT"):
            np.testing.assert_array_equal(two[column], one[column], err_msg=column)


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_maximum_cores_that_names_no_count_is_refused(nodded_visit, value):
    with pytest.raises(RefusedError, match="maximum_cores"):
        TraceFitStep.call(nodded_visit, maximum_cores=value)


def test_core_counts():
    assert core_count("none") == 1
    assert core_count("3") == 3
    assert 1 <= core_count("half") <= core_count("all")


def test_on_one_core_each_fit_runs_when_the_step_collects_it():
    """So that the step's progress lines follow the fits (and one failure stays its own)."""
    from nodcombine.parallel import source_pool

    calls = []
    with source_pool("1", 3) as pool:
        futures = [pool.submit(calls.append, k) for k in range(3)]
        assert calls == []
        futures[1].result()
        futures[1].result()
        assert calls == [1]
        failing = pool.submit(int, "not a number")
        with pytest.raises(ValueError):
            failing.result()
