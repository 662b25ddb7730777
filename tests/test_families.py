"""A visit reduced family by family: the products of a whole-visit run, bit for bit."""

import json
import logging
import re

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from nodcombine import NodCombinePipeline
from nodcombine.modelio import open_visit
from nodcombine.pipelines import families, nodcombine_pipeline
from nodcombine.simulate import simulate_nodded_visit, write_visit


@pytest.fixture(scope="module")
def visit_files(tmp_path_factory):
    models, _ = simulate_nodded_visit("nrs_msa_prism", n_slits=3, n_points=3, seed=43)
    return write_visit(models, tmp_path_factory.mktemp("in"))


def _run(asn, output_dir, monkeypatch, whole):
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 2)  # parts of 2 and 1 families
    if whole:  # the name the pipeline calls
        monkeypatch.setattr(nodcombine_pipeline, "family_visits", lambda visit: [visit])
    output_dir.mkdir()
    return NodCombinePipeline.call(str(asn), output_dir=str(output_dir), save_results=True)


def test_family_by_family_writes_what_the_whole_visit_writes(visit_files, tmp_path, monkeypatch):
    asn, _ = visit_files
    by_family = _run(asn, tmp_path / "families", monkeypatch, whole=False)
    with monkeypatch.context() as patch:
        whole = _run(asn, tmp_path / "whole", patch, whole=True)
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.fits"))
    assert len(names) == 7  # 3 x (_s2d, _x1d) and the visit's _x1d
    assert names == sorted(p.name for p in (tmp_path / "families").glob("*.fits"))
    for name in names:
        with (
            datamodels.open(tmp_path / "whole" / name) as one,
            datamodels.open(tmp_path / "families" / name) as two,
        ):
            # the log lines stpipe keeps (cal_logs) are those of more step runs
            flat_one, flat_two = (
                {k: v for k, v in m.to_flat_dict().items() if not k.startswith("cal_logs")}
                for m in (one, two)
            )
            assert flat_one.keys() == flat_two.keys(), name
            for key, value in flat_one.items():
                if hasattr(value, "shape"):  # arrays, tables, asdf's lazy arrays
                    np.testing.assert_array_equal(
                        np.asarray(flat_two[key]), np.asarray(value), err_msg=f"{name} {key}"
                    )
                elif not key.endswith((".date", ".wcs", "_fits_hash")) and "history" not in key:
                    assert flat_two[key] == value, (name, key)
    assert [s.source_id for s in by_family.spec] == [s.source_id for s in whole.spec]
    records = [
        json.loads(next((tmp_path / d).glob("*_visit.json")).read_text())["sources"]
        for d in ("whole", "families")
    ]
    assert records[0] == records[1]


def test_parts_hold_whole_families(visit_files):
    asn, _ = visit_files
    visit = open_visit(str(asn))
    parts = families.family_visits(visit, per_part=2)
    assert [len(part[0].slits) for part in parts] == [2, 1]
    assert [s.source_id for part in parts for s in part[0].slits] == [
        s.source_id for s in visit[0].slits
    ]


def test_families_share_the_opened_slits(visit_files):
    asn, _ = visit_files
    visit = open_visit(str(asn))
    assert families.family_visits(visit) == [visit]  # 3 families: one part
    parts = families.family_visits(visit, per_part=1)
    assert len(parts) == 3
    for k, part in enumerate(parts):
        assert [m.meta.filename for m in part] == [m.meta.filename for m in visit]
        for model, whole in zip(part, visit, strict=True):
            assert len(model.slits) == 1
            assert model.slits[0].instance is whole.slits[k].instance
            # the exposure's own tree is the family's: a step marking it leaves the visit alone
            assert model.meta.instance is not whole.meta.instance


def _families_per_part(tasks):
    return [[len(part[0].slits) for part in task] for task in tasks]


def test_worker_tasks_share_the_families_evenly(visit_files, monkeypatch):
    visit = open_visit(str(visit_files[0]))
    # 3 families on 2 workers: 2 and 1, however many a task may hold
    assert _families_per_part(families.worker_tasks(visit, 2, most=50)) == [[2], [1]]
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 1)
    assert _families_per_part(families.worker_tasks(visit, 2, most=2)) == [[1, 1], [1]]
    # at most 1 family a task: 4 tasks for 2 workers would be even, 3 families make 3
    assert _families_per_part(families.worker_tasks(visit, 2, most=1)) == [[1], [1], [1]]
    tasks = families.worker_tasks(visit, 3, most=50)
    assert [s.source_id for task in tasks for part in task for s in part[0].slits] == [
        s.source_id for s in visit[0].slits
    ]
    assert families.worker_tasks(visit, 1, most=50) == [[visit]]
    del visit[1].slits[2]  # a visit that cannot be cut is one task
    assert families.worker_tasks(visit, 2, most=50) == [[visit]]


def test_a_visit_that_cannot_be_cut_is_reduced_whole(visit_files):
    asn, _ = visit_files
    visit = open_visit(str(asn))
    del visit[1].slits[2]  # source 1002 is missing from one exposure
    assert families.family_visits(visit, per_part=1) == [visit]
    one = open_visit(str(asn))
    assert families.family_visits(one[:1], per_part=1) == [one[:1]]


def test_one_summary_per_step_over_the_parts(visit_files, tmp_path, monkeypatch, caplog):
    asn, _ = visit_files
    monkeypatch.setattr(families, "FAMILIES_PER_PART", 1)
    with caplog.at_level(logging.INFO, logger="nodcombine"):
        NodCombinePipeline.call(str(asn), output_dir=str(tmp_path), save_results=True)
    lines = [r.getMessage() for r in caplog.records]
    assert "reducing 3 source families in 3 parts of up to 1" in lines
    for step, noun, verb in (
        ("nod_diff", "sources", "differenced"),
        ("trace_fit", "sources", "fitted"),
        ("rectify", "sources", "rectified"),
        ("optimal_extract_1d", "slits", "extracted"),
    ):
        summaries = [x for x in lines if x.startswith(f"{step}: ") and " of " in x]
        assert len(summaries) == 1, (step, summaries)
        assert re.fullmatch(rf"{step}: 3 of 3 {noun} {verb}, 0 skipped, [\d.]+ s", summaries[0])
