"""The trace fit's model screen: how well the linearised objective predicts a candidate.

Run with ``python benchmarks/bench_model_screen.py [--seeds N]``.  Every figure is
measured in this run, on CEERS 933 and on noisy simulated PRISM visits of every source
family of `nodcombine.simulate` (12 slits per visit, two brightnesses, 2- and 3-point
nods, ``--seeds`` visits each).

`nodcombine.trace_fit.modelfit` does not fit a candidate model when the linearised
objective already decides against it (docs/trace_fit.md).  Here every candidate of the
model search is fitted all the same, and the prediction is set beside the outcome:

* a richer model that reproduces the current one at its start (nested): predicted gain
  (one Gauss-Newton step) against the fitted gain, both in the objective's units;
* a model with fewer offset, width or background coefficients: predicted cost (Wald)
  against the fitted cost.

A step the screen would have decided otherwise than the fit is counted as a wrong
decision.  Then `TraceFitStep` runs on the same visits with the screen on and off
(every candidate fitted), side by side, best of 3: seconds and the chosen models.
"""

import argparse
import glob
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
CEERS = sorted(glob.glob(str(REPO.parent / "shared" / "data" / "ceers_933" / "*.fits")))


def _visits(seeds):
    """CEERS 933's nod differences, then those of the simulated visits, by label."""
    from nodcombine import NodDiffStep
    from nodcombine.simulate import FAMILIES, simulate_nodded_visit

    families = list(FAMILIES)
    yield "CEERS 933", NodDiffStep.call(CEERS)
    for seed in range(seeds):
        for n_points in (2, 3):
            models, _ = simulate_nodded_visit(
                "nrs_msa_prism",
                seed=seed,
                n_slits=2 * len(families),
                n_points=n_points,
                emission_lines=False,
                source_profile=families * 2,
                source_peak=[0.5] * len(families) + [3.0] * len(families),
            )
            yield f"simulated seed {seed} {n_points}-point", NodDiffStep.call(models)


class _Recorder:
    """Wraps `modelfit._better`: fits every candidate and notes prediction and outcome."""

    def __init__(self, modelfit):
        self.modelfit, self.rows = modelfit, []
        self.original = modelfit._better

    def __call__(self, geom, data, current, model, settings, penalty, tried):
        mf = self.modelfit
        chosen = self.original(geom, data, current, model, settings, penalty, tried)
        if model == current.model:
            return chosen
        extra = len(model.names) - len(current.model.names)
        allowance = penalty * extra * current.dispersion
        predicted = mf.predicted_gain(geom, data, current, model, settings)
        if predicted is None:
            return chosen  # not judged by the screen: always fitted
        start = model.embed(current.theta, current.model)
        trial = mf._fit_once(geom, data, model, start, settings)
        fitted = np.nan
        if trial is not None:
            fitted = current.score - mf._score(geom, data, model, trial, settings)[0]
        factor = mf._SCREEN_GAIN if extra > 0 else mf._SCREEN_LOSS
        screened = predicted < factor * allowance
        taken = bool(np.isfinite(fitted) and fitted / current.dispersion > penalty * extra)
        self.rows.append((extra > 0, predicted, fitted, allowance, screened, taken))
        return chosen


def prediction_table(visits):
    from nodcombine import TraceFitStep
    from nodcombine.trace_fit import modelfit

    recorder = _Recorder(modelfit)
    modelfit._better = recorder
    try:
        for _, nod in visits:
            TraceFitStep.call(nod)
    finally:
        modelfit._better = recorder.original
    print("\n## 1. Predicted against fitted change of the objective, every candidate fitted")
    print("| kind | steps | screened (not fitted) | wrong decisions | ", end="")
    print("median abs(predicted/fitted - 1) | worst abs(predicted - fitted) / max(fitted, 1) |")
    print("|---|---|---|---|---|---|")
    for grow, label in ((True, "nested, richer"), (False, "fewer coefficients")):
        rows = [r for r in recorder.rows if r[0] == grow]
        if not rows:
            continue
        predicted, fitted = (np.array([r[k] for r in rows]) for k in (1, 2))
        finite = np.isfinite(fitted)
        ratio = np.abs(predicted[finite] / np.where(fitted[finite] == 0, 1, fitted[finite]) - 1)
        worst = np.abs(predicted[finite] - fitted[finite]) / np.maximum(np.abs(fitted[finite]), 1)
        screened = sum(r[4] for r in rows)
        wrong = sum(r[4] and r[5] for r in rows)  # not fitted, yet the fit takes the step
        print(
            f"| {label} | {len(rows)} | {screened} | {wrong} | {np.median(ratio):.3f} | "
            f"{worst.max():.3f} |"
        )


def _timed(nod, repeats=3):
    from nodcombine import TraceFitStep

    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = TraceFitStep.call(nod)
        best = min(best, time.perf_counter() - start)
    first = out[0]
    slits = first.slits if hasattr(first, "slits") else [first]
    return best, [s.instance["trace_fit_record"]["message"] for s in slits]


def timing_table(visits):
    from nodcombine.trace_fit import modelfit

    print("\n## 2. TraceFitStep with the screen and without it (best of 3, seconds)")
    print("| visit | sources | screen on | screen off | on/off | same models |")
    print("|---|---|---|---|---|---|")
    screen = modelfit._SCREEN_GAIN, modelfit._SCREEN_LOSS
    for label, nod in visits:
        on, chosen_on = _timed(nod)
        modelfit._SCREEN_GAIN, modelfit._SCREEN_LOSS = 0.0, np.inf
        try:
            off, chosen_off = _timed(nod)
        finally:
            modelfit._SCREEN_GAIN, modelfit._SCREEN_LOSS = screen
        same = "yes" if chosen_on == chosen_off else "NO"
        print(f"| {label} | {len(chosen_on)} | {on:.2f} | {off:.2f} | {on / off:.2f} | {same} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="simulated visits per nod pattern")
    args = parser.parse_args(argv)
    configure_offline_crds(Path(tempfile.mkdtemp()) / "crds")
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    visits = list(_visits(args.seeds))
    prediction_table(visits)
    timing_table(visits)


if __name__ == "__main__":
    main()
