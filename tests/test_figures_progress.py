"""The pipeline's figures (``save_plots``) and the steps' progress lines and summaries."""

import io
import logging
import re
import sys

import pytest
from stdatamodels.jwst import datamodels

from nodcombine import NodCombinePipeline, NodDiffStep, progress
from nodcombine.contract import TraceFitRecord
from nodcombine.errors import RefusedError
from nodcombine.plotting import fit_title
from nodcombine.progress import Progress
from nodcombine.simulate import simulate_nodded_visit, write_visit

pytest.importorskip("matplotlib")

STEPS = ("nod_diff", "trace_fit", "rectify", "optimal_extract_1d")
KINDS = ("nod", "s2d", "x1d")


def _visit(number=1, seed=61):
    """Two sources, a detection and an empty slit, in visit ``number``."""
    models, _ = simulate_nodded_visit(
        "nrs_msa_prism", n_slits=2, n_points=2, source_peak=[0.3, 0.0], seed=seed
    )
    for model in models:
        # another visit of the same programme: its exposures have names of their own
        model.meta.observation.visit_number = f"{number:03d}"
        model.meta.filename = model.meta.filename.replace("001001_", f"001{number:03d}_")
    return models


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An association run with save_plots from an empty working directory: (cwd, out, log)."""
    root = tmp_path_factory.mktemp("figures")
    cwd, out = root / "cwd", root / "out"
    cwd.mkdir()
    asn, _ = write_visit(_visit(), root / "in")
    records = _Records()
    logger = logging.getLogger("nodcombine")
    logger.addHandler(records)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        # every tenth of the sources gets its line, however fast this machine is
        patch.setattr(progress, "_QUIET", 0.0)
        try:
            NodCombinePipeline.call(
                str(asn), output_dir=str(out), save_results=True, save_plots=True
            )
        finally:
            logger.removeHandler(records)
    return cwd, out, records.lines


def test_save_plots_writes_three_figures_per_source_into_output_dir(saved):
    cwd, out, _ = saved
    stems = sorted(p.name.removesuffix("_x1d.fits") for p in out.glob("*_s?????????_x1d.fits"))
    assert stems == ["nodcombine_sim_s000001000", "nodcombine_sim_s000001001"]
    expected = {f"{stem}_{kind}.png" for stem in stems for kind in KINDS}
    assert {p.name for p in out.glob("*.png")} == expected
    assert all((out / name).stat().st_size > 10_000 for name in expected)
    assert not list(cwd.iterdir())


def test_the_empty_slit_is_titled_not_detected(saved):
    _, out, _ = saved
    with datamodels.open(out / "nodcombine_sim_s000001001_s2d.fits") as empty:
        record = TraceFitRecord.from_tree(empty.slits[0].instance)
    title, detected = fit_title("s000001001", record)
    assert not detected
    assert title.splitlines()[1].startswith("NOT DETECTED")


@pytest.mark.parametrize(
    ("fields", "first_words"),
    [
        (
            {"status": "FIT", "degree": -1, "snr": 2.4, "message": "S/N 2.4: predicted centre"},
            "NOT DETECTED (S/N 2.4): predicted position, width from prior",
        ),
        ({"status": "FALLBACK", "message": "S/N 30 but no fit converged"}, "NOT FITTED"),
        ({"status": "FORCED", "message": "centre and width forced from G395M"}, "NOT FITTED HERE"),
        ({"status": "SKIPPED", "message": "no usable pixel"}, "SKIPPED: no usable pixel"),
    ],
)
def test_a_source_without_a_measured_centre_is_not_a_detection(fields, first_words):
    title, detected = fit_title("s000000007", TraceFitRecord(**fields))
    assert not detected
    assert title.splitlines() == ["s000000007", title.splitlines()[1]]
    assert title.splitlines()[1].startswith(first_words)
    assert fit_title("s000000007", None) == ("s000000007\nNO TRACE FIT: no profile", False)


def test_a_fitted_source_is_titled_with_its_model():
    record = TraceFitRecord(
        status="FIT",
        degree=1,
        snr=85.0,
        message="S/N 85.0: offset degree 1, width² degree 0",
        source_sigma_arcsec=0.05,
        chi2=990.0,
        dof=1000,
    )
    title, detected = fit_title("s000000007", record)
    assert detected
    assert title.splitlines()[1] == (
        'FIT S/N 85.0: offset degree 1, width² degree 0; source σ 0.050", χ²/dof 0.99'
    )


def test_two_visits_in_one_output_dir_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    names = []
    for number in (1, 2):
        NodCombinePipeline.call(
            _visit(number, seed=70 + number),
            output_dir=str(out),
            save_plots=True,
            steps={"trace_fit": {"save_diagnostics": True}},
        )
        names.append({p.name for p in out.glob("*.png")} - set().union(*names))
    # per visit and source: nod, s2d, x1d and trace_fit's diagnostic, none overwritten
    assert [len(n) for n in names] == [8, 8]
    assert all(name.startswith("jw09999001002_") for name in names[1])
    assert {p.name for p in tmp_path.iterdir()} == {"out"}
    diagnostics = sorted(n for n in names[0] if n.endswith("_trace_fit.png"))
    assert diagnostics == [
        "jw09999001001_03101_00001_nrs2_slit100_source1000_trace_fit.png",
        "jw09999001001_03101_00001_nrs2_slit101_source1001_trace_fit.png",
    ]


def test_save_plots_without_matplotlib_is_refused_before_any_work(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(RefusedError, match=r"save_plots.*pip install"):
        NodCombinePipeline.call(_visit(), save_plots=True)
    assert "Step nod_diff running" not in caplog.text


def test_progress_lines_and_a_summary_per_step(saved):
    *_, lines = saved
    assert "opening 2 members of nodcombine_sim_asn.json" in lines
    for step in STEPS:
        noun = "slits" if step == "optimal_extract_1d" else "sources"
        assert any(re.fullmatch(rf"{step}: 1/2 {noun}, .+ elapsed, ~.+ left", x) for x in lines)
        summary = rf"{step}: 2 of 2 {noun} \w+, 0 skipped, [\d.]+ (s|min)"
        assert len([x for x in lines if re.fullmatch(summary, x)]) == 1, (step, lines)


def test_progress_cadence_and_time_left():
    clock = _Clock()
    records = _Records()
    logger = logging.getLogger("test_progress")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        bar = Progress("trace_fit", 200, logger=logger, clock=clock, stream=io.StringIO())
        for _ in bar.each(range(200)):
            clock.now += 0.5  # 10 s per tenth: one line per tenth, none in between
        assert records.lines[0] == "trace_fit: 20/200 sources, 10 s elapsed, ~90 s left"
        assert len(records.lines) == 9
        assert bar.summary(198, 200, "fitted") == (
            "trace_fit: 198 of 200 sources fitted, 2 skipped, 100 s"
        )
        records.lines.clear()
        quick = Progress("rectify", 50, logger=logger, clock=clock)
        for _ in quick.each(range(50)):
            clock.now += 0.001  # done in 0.05 s: nothing to say until the summary
        assert records.lines == []
        slow = Progress("trace_fit", 3, logger=logger, clock=clock)
        for _ in slow.each(range(3)):
            clock.now += 15.0
        assert records.lines == [
            "trace_fit: 1/3 sources, 15 s elapsed, ~30 s left",
            "trace_fit: 2/3 sources, 30 s elapsed, ~15 s left",
        ]
    finally:
        logger.removeHandler(records)


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        super().isatty()  # a closed stream raises, as a real one does
        return True


def test_no_progress_bar_unless_stderr_is_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    plain, terminal = io.StringIO(), _Terminal()
    for stream in (plain, terminal):
        list(Progress("nod_diff", 4, stream=stream, clock=_Clock()).each(range(4)))
    assert plain.getvalue() == ""
    drawn = terminal.getvalue()
    assert drawn.startswith("\rnod_diff [") and "4/4 sources" in drawn
    assert drawn.endswith("\r\033[K")  # the bar is cleared at the end
    # a terminal in CI, a closed stream: no bar
    monkeypatch.setenv("CI", "true")
    assert not progress.wants_bar(_Terminal())
    monkeypatch.delenv("CI")
    closed = _Terminal()
    closed.close()
    assert not progress.wants_bar(closed)
    # a step run with stderr captured (not a terminal) draws nothing
    NodDiffStep.call(_visit())
    assert "\r" not in capsys.readouterr().err
