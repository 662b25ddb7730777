"""``nodcombine batch``: visits on Dask give what serial ``strun`` runs give, and survive faults."""

import json
import os
import signal
import sys
from functools import partial
from pathlib import Path

import cloudpickle  # comes with distributed (the survey extra, installed by make test)
import numpy as np
import pytest
from astropy.io import fits
from stpipe import Step

from nodcombine import cli
from nodcombine.batch import run_batch
from nodcombine.batch.inputs import BatchInputError, find_visits
from nodcombine.batch.record import record_rows, summary
from nodcombine.batch.task import VisitOutcome, reduce_visit
from nodcombine.simulate import simulate_nodded_visit, write_association, write_visit

# the fault injectors below run in the workers, which cannot import this module
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _kill_worker(job, attempt, *, crash_once, crash_always, ran):
    """Kill the worker: at the first start of ``crash_once``, at every start of ``crash_always``."""
    with open(ran, "a") as log:
        log.write(f"{job.name}\n")
    if (job.name == crash_once and attempt == 1) or job.name == crash_always:
        os.kill(os.getpid(), signal.SIGKILL)


def _batch(inputs, out, *, ran, crash_once=None, crash_always=None, **options):
    """`run_batch` without dashboard or progress bar, every start logged to ``ran``."""
    injector = partial(
        _kill_worker, crash_once=crash_once, crash_always=crash_always, ran=ran
    )  # fmt: skip
    return run_batch(
        inputs,
        out,
        dashboard=":0",
        show_progress=False,
        reducer=partial(reduce_visit, on_start=injector),
        **options,
    )


def _write_visit(folder, name, *, seed, visit_number="001", n_slits=2):
    models, _ = simulate_nodded_visit(n_slits=n_slits, seed=seed)
    for model in models:
        model.meta.observation.visit_number = visit_number
    asn, paths = write_visit(models, folder)
    write_association(paths, asn, product_name=name)
    return asn, paths


VISITS = ("good_a", "good_b", "corrupt", "crash", "big")


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """Five visits: two good, one whose every exposure is truncated, one that kills its
    worker, and one of 5 sources (split into 3 tasks at 2 sources per task)."""
    root = tmp_path_factory.mktemp("survey")
    asns = {}
    for seed, name in enumerate(VISITS):
        n_slits = 5 if name == "big" else 2
        asns[name], paths = _write_visit(root / name, name, seed=seed, n_slits=n_slits)
        if name == "corrupt":  # a download that stopped half way, every exposure
            for path in paths:
                os.truncate(path, path.stat().st_size // 3)
    return asns


def _arrays(path):
    """Every array of a product but the ASDF tree (which holds dates)."""
    with fits.open(path) as hdus:
        return {
            (hdu.name, i): np.array(hdu.data)
            for i, hdu in enumerate(hdus)
            if hdu.data is not None and hdu.name != "ASDF"
        }


def _same_arrays(left, right):
    a, b = _arrays(left), _arrays(right)
    assert a.keys() == b.keys(), (left, right)
    for key in a:
        if a[key].dtype.names:  # a table: compare column by column
            for column in a[key].dtype.names:
                np.testing.assert_array_equal(a[key][column], b[key][column], err_msg=str(key))
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{left} {key}")


@pytest.fixture(scope="module")
def batch(visits, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    ran = out / "ran.txt"
    result = _batch(
        [visits[name].parent for name in VISITS],
        out,
        ran=ran,
        crash_once="crash",
        n_workers=2,
        retries=1,
        sources_per_task=2,
    )
    return out, result, ran


def test_batch_products_equal_serial_strun(visits, batch, tmp_path):
    out, _, _ = batch
    for name in ("good_a", "good_b", "crash", "big"):
        serial = tmp_path / name
        Step.from_cmdline(["nodcombine", str(visits[name]), f"--output_dir={serial}"])
        products = sorted(p.name for p in serial.glob("*.fits"))
        n_sources = 5 if name == "big" else 2
        assert len(products) == 2 * n_sources + 1  # each source's _s2d and _x1d, the visit's
        assert sorted(p.name for p in (out / name).glob("*.fits")) == products
        for product in products:
            _same_arrays(out / name / product, serial / product)
    # the batch's visit folder holds what strun writes, nothing else (the split one too)
    for name in ("good_a", "big"):
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            p.name for p in (tmp_path / name).iterdir()
        )
    # the split visit's record: that of one strun run, but for the dates
    merged, whole = (
        json.loads((d / "big" / "big_visit.json").read_text()) for d in (out, tmp_path)
    )
    assert merged == whole


def test_bad_visit_is_recorded_and_the_rest_complete(batch):
    out, result, _ = batch
    by_name = {o.name: o for o in result.outcomes}
    assert [o.name for o in result.outcomes] == list(VISITS)
    assert result.failed == ["corrupt"]
    reason = by_name["corrupt"].reason
    assert "no exposure could be opened" in reason and "started" not in reason
    assert "jw09999001001_03101_00001_nrs2_cal.fits" in reason
    for name in ("good_a", "good_b", "crash", "big"):
        assert by_name[name].status == "complete"
        assert {s["status"] for s in by_name[name].sources} == {"COMPLETE"}
    assert len(by_name["big"].sources) == 5
    record = (out / "batch_record.csv").read_text().splitlines()
    assert record[0].startswith("visit,source,status,reason,trace_snr,model,median_snr")
    assert len(record) == 1 + 2 + 2 + 1 + 2 + 5  # a row per source, one for the failed visit
    failed_row = [line for line in record if line.startswith("corrupt,")]
    assert len(failed_row) == 1 and ",FAILED," in failed_row[0]
    assert any("FAILED corrupt" in line for line in result.summary)


def test_record_carries_the_science_columns(batch):
    out, _, _ = batch
    import pyarrow.parquet

    columns = pyarrow.parquet.read_table(out / "batch_record.parquet").to_pydict()
    keep = np.array(columns["status"]) == "COMPLETE"
    good = {name: np.array(values)[keep] for name, values in columns.items()}
    assert keep.sum() == 11
    # bright simulated sources: a real fit, a trace S/N in the hundreds, spectra S/N ~ 27
    assert np.all(good["trace_snr"] > 100)
    assert all(str(m).startswith("FIT: offset deg") for m in good["model"])
    assert np.all((good["median_snr"] > 15) & (good["median_snr"] < 40))
    assert set(good["worker"]) <= {o.worker for o in _outcomes(out)}


def _outcomes(out):
    return [VisitOutcome(**json.loads(p.read_text())) for p in (out / ".batch").glob("*.json")]


def test_killed_worker_is_retried_and_recorded(batch):
    _, result, ran = batch
    crash = {o.name: o for o in result.outcomes}["crash"]
    assert crash.attempts == 2 and crash.status == "complete"
    assert "started 2 times" in crash.reason
    assert ran.read_text().splitlines().count("crash") == 2
    assert any(line.startswith("  retried crash") for line in result.summary)


def test_resume_runs_only_what_is_not_complete(visits, batch):
    out, _, _ = batch
    ran = out / "ran_again.txt"
    result = _batch(
        [visits[name].parent for name in VISITS],
        out,
        ran=ran,
        n_workers=1,
        resume=True,
        sources_per_task=2,
    )
    assert result.resumed == {"good_a", "good_b", "crash", "big"}
    assert ran.read_text().splitlines() == ["corrupt"]  # the failed visit is tried again
    assert result.failed == ["corrupt"]
    rows = [r for o in result.outcomes for r in record_rows(o, resumed=o.name in result.resumed)]
    assert sum(r["resumed"] for r in rows) == 11


def test_resume_of_a_split_visit_runs_only_its_missing_part(visits, batch, tmp_path):
    """Parts 1 and 3 done before a kill (no merge yet): --resume runs part 2, then the merge."""
    from nodcombine.batch.parts import part_jobs
    from nodcombine.batch.task import VisitJob

    out = tmp_path / "out"
    job = VisitJob("big", str(visits["big"]), str(out), batch_id="killed")
    pieces = part_jobs(job, 5, 2)
    assert [p.part for p in pieces] == ["1/3", "2/3", "3/3"]
    for piece in (pieces[0], pieces[2]):
        assert reduce_visit(piece).status == "complete"
    ran = tmp_path / "ran.txt"
    result = _batch(
        [visits["big"].parent], out, ran=ran, n_workers=1, resume=True, sources_per_task=2
    )
    assert ran.read_text().splitlines() == ["big"]  # one start: part 2's
    assert result.outcomes[0].status == "complete" and len(result.outcomes[0].sources) == 5
    reference = batch[0] / "big"
    products = sorted(p.name for p in reference.glob("*.fits"))
    assert sorted(p.name for p in (out / "big").glob("*.fits")) == products
    for product in products:
        _same_arrays(out / "big" / product, reference / product)


def test_calwebb_spec3_nod_in_a_batch(visits, tmp_path):
    """The stock-spec3 pipeline: strun's products, and sources read from them (no visit record)."""
    result = _batch(
        [visits["good_a"]],
        tmp_path / "out",
        ran=tmp_path / "ran.txt",
        pipeline="calwebb_spec3_nod",
        n_workers=1,
    )
    (outcome,) = result.outcomes
    assert outcome.status == "complete"
    assert [s["source"] for s in outcome.sources] == ["good_a_s000001000", "good_a_s000001001"]
    assert all(s["trace_snr"] > 100 and 15 < s["median_snr"] < 40 for s in outcome.sources)
    serial = tmp_path / "serial"
    Step.from_cmdline(["calwebb_spec3_nod", str(visits["good_a"]), f"--output_dir={serial}"])
    products = sorted(p.name for p in serial.glob("*.fits"))
    assert len(products) == 6  # per source _s2d, _x1d and _c1d
    assert sorted(p.name for p in (tmp_path / "out" / "good_a").glob("*.fits")) == products
    for product in products:
        _same_arrays(tmp_path / "out" / "good_a" / product, serial / product)


def test_local_workers_take_one_visit_at_a_time():
    # a task queued on a worker dies with it: the local cluster's tasks wait at the scheduler
    from distributed import Client, LocalCluster

    from nodcombine.batch.engine import VISIT_RESOURCE, _one_at_a_time, batch_client

    with batch_client(n_workers=1, dashboard=None) as client:
        assert _one_at_a_time(client) == {"resources": {VISIT_RESOURCE: 1}}
    # workers started without the resource: no constraint, or no task would ever run
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        assert _one_at_a_time(client) == {}


def test_worker_dying_at_every_start_fails_only_its_visit(visits, tmp_path):
    # the killer first: on one worker the other visit's tasks (a visit split into parts)
    # wait behind it, Dask counts both deaths against them too and gives up on them; the
    # batch submits such a bystander again
    ran = tmp_path / "ran.txt"
    result = _batch(
        [visits["crash"].parent, visits["big"].parent],
        tmp_path / "out",
        ran=ran,
        crash_always="crash",
        n_workers=1,
        retries=1,
        sources_per_task=2,
    )
    outcome = {o.name: o for o in result.outcomes}
    assert outcome["big"].status == "complete", outcome["big"].reason
    assert len(outcome["big"].sources) == 5
    assert outcome["crash"].status == "failed" and outcome["crash"].attempts == 2
    assert "worker died" in outcome["crash"].reason
    assert ran.read_text().splitlines().count("crash") == 2  # retries=1: two starts, no more


# ----------------------------------------------------------------- inputs, without Dask


def test_loose_cal_files_are_grouped_by_visit_with_asn_from_list(tmp_path):
    _, first = _write_visit(tmp_path / "one", "x", seed=0, visit_number="001")
    _, second = _write_visit(tmp_path / "two", "y", seed=1, visit_number="002")
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in (*first, *second):
        os.link(path, loose / f"{path.parent.name}_{path.name}")
    visits = find_visits([loose], tmp_path / "asn")
    assert [v.name for v in visits] == ["jw09999-o001-v001", "jw09999-o001-v002"]
    for visit, paths in zip(visits, (first, second), strict=True):
        table = json.loads(visit.association.read_text())
        assert table["asn_type"] == "None"  # what jwst's asn_from_list writes
        members = [Path(m["expname"]).name for m in table["products"][0]["members"]]
        assert sorted(members) == sorted(f"{p.parent.name}_{p.name}" for p in paths)


def test_inputs_that_cannot_be_used_are_refused_naming_them(visits, tmp_path):
    with pytest.raises(BatchInputError, match="nowhere"):
        find_visits([tmp_path / "nowhere"], tmp_path)
    note = tmp_path / "note.json"
    note.write_text('{"hello": 1}')
    with pytest.raises(BatchInputError, match=r"note\.json: not a spec3 association"):
        find_visits([note], tmp_path)
    twin = tmp_path / "twin_asn.json"
    twin.write_text(visits["good_a"].read_text())
    with pytest.raises(BatchInputError, match="both name the product 'good_a'"):
        find_visits([visits["good_a"], twin], tmp_path)


def test_cli_passes_what_follows_the_double_dash_to_strun(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run_batch(inputs, output_dir, **options):
        seen.update(options, inputs=inputs, output_dir=output_dir)
        outcome = VisitOutcome("v", "complete", sources=[{"status": "COMPLETE"}])
        return _Result([outcome], ["batch: 1 visits"])

    monkeypatch.setattr("nodcombine.batch.run_batch", fake_run_batch)
    argv = ["batch", "a.json", "-o", "out", "--workers", "2", "--", "--steps.rectify.skip=true"]
    assert cli.main(argv) == 0
    assert seen["inputs"] == ["a.json"] and seen["n_workers"] == "2"
    assert seen["strun_args"] == ["--steps.rectify.skip=true"]
    assert "batch: 1 visits" in capsys.readouterr().out


class _Result:
    def __init__(self, outcomes, lines):
        self.outcomes, self.summary, self.failed = outcomes, lines, []


def test_summary_counts_visits_and_sources():
    done = VisitOutcome("a", "complete", sources=[{"status": "COMPLETE"}, {"status": "SKIPPED"}])
    failed = VisitOutcome("b", "failed", reason="OSError: truncated")
    lines = summary([done, failed], set(), 10.0, 2)
    assert lines[0] == (
        "batch: 2 visits: 1 complete (0 from an earlier run), 1 failed; "
        "2 sources: 1 complete, 1 skipped"
    )
    assert "5.00 s per source" in lines[1] and lines[2] == "  FAILED b: OSError: truncated"
