"""A big MOS visit as several tasks: source groups reduced apart, then merged.

A visit of more sources than ``sources_per_task`` is split into N parts: N
tasks each run ``strun nodcombine asn.json --part=K/N`` into
``<visit>/.parts/K`` (the pipeline shares the visit's source families out in
order, `~nodcombine.pipelines.families.family_visits`, and plans every
product name from the whole visit), and a last task, `merge_parts`, moves
the per-source products into the visit's folder, joins the parts' spectra
into the visit's ``_x1d`` in part order (`merged_spectra`, as the pipeline
joins its own parts) and their records into the visit record.  A source's
products do not depend on which part it was reduced in, so the visit's
folder ends up as one ``strun`` run's (every array equal; `tests/test_batch.py`).

Each part task opens the whole exposures: on the real NIRSpec geometry a
slit's WCS costs some 60 ms per exposure to read, so a part of 25 sources of a
200-source visit spends about as long opening as reducing.  Splitting buys
latency (a big visit spread over workers), not throughput.
"""

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from nodcombine.batch.task import (
    COMPLETE,
    FAILED,
    VisitOutcome,
    outcome_in_this_batch,
    write_outcome,
)

__all__ = ["count_sources", "merge_parts", "part_jobs"]


def count_sources(association):
    """Slits of the association's first exposure (a MOS exposure has one per source).

    Read from the FITS headers (``SCI`` extensions), without opening the models;
    0 if the first exposure cannot be read (the task will say why).
    """
    document = json.loads(Path(association).read_text())
    members = document["products"][0]["members"]
    first = Path(association).parent / members[0]["expname"]
    try:
        with warnings.catch_warnings():  # a truncated file: its task will say so
            warnings.simplefilter("ignore", AstropyUserWarning)
            with fits.open(first) as hdus:
                return sum(1 for hdu in hdus if hdu.name == "SCI")
    except (OSError, ValueError):
        return 0


def part_jobs(job, n_sources, sources_per_task):
    """The part jobs of ``job``'s visit, or ``[]`` when it is one task.

    Only ``nodcombine`` has the ``part`` parameter: the caller splits only its visits.

    Parameters
    ----------
    job : VisitJob
    n_sources : int
        From `count_sources`.
    sources_per_task : int
        Most sources a task should reduce; 0: never split.
    """
    if sources_per_task <= 0 or n_sources <= sources_per_task:
        return []
    n = -(-n_sources // sources_per_task)
    return [replace(job, part=f"{k}/{n}") for k in range(1, n + 1)]


def merge_parts(job, *outcomes):
    """The visit's folder from its parts' (run after every part); the visit's outcome.

    Parameters
    ----------
    job : VisitJob
        The visit's (whole) job.
    *outcomes : VisitOutcome
        The parts', in part order.

    Returns
    -------
    VisitOutcome
        ``failed`` if a part failed (its folder is kept for a look), written
        to the visit's outcome file.
    """
    earlier = outcome_in_this_batch(job)
    if earlier is not None:
        return earlier
    common = {
        "name": job.name,
        "wall_s": round(sum(o.wall_s for o in outcomes), 3),
        "worker": " ".join(dict.fromkeys(o.worker for o in outcomes)),
        "attempts": max(o.attempts for o in outcomes),
        "batch_id": job.batch_id,
    }
    failed = [(k, o) for k, o in enumerate(outcomes, start=1) if o.status == FAILED]
    if failed:
        reason = "; ".join(f"part {k}/{len(outcomes)}: {o.reason}" for k, o in failed)
        return write_outcome(job, VisitOutcome(status=FAILED, reason=reason, **common))
    folders = [job.visit_dir / ".parts" / str(k) for k in range(1, len(outcomes) + 1)]
    _merge_folders(folders, job.visit_dir)
    shutil.rmtree(job.visit_dir / ".parts")
    notes = [f"part {k}: {o.reason}" for k, o in enumerate(outcomes, start=1) if o.reason]
    outcome = VisitOutcome(
        status=COMPLETE,
        reason="; ".join(notes),
        sources=[s for o in outcomes for s in o.sources],
        products=sorted(p.name for p in job.visit_dir.iterdir() if not p.name.startswith(".")),
        **common,
    )
    return write_outcome(job, outcome)


def _merge_folders(folders, target):
    """Per-source files moved; the visits' ``_x1d`` and records joined."""
    from stdatamodels.jwst import datamodels

    from nodcombine.pipelines.families import merged_spectra
    from nodcombine.pipelines.visitrecord import merge_records, save_atomically

    records, spectra = {}, {}
    for folder in (f for f in folders if f.is_dir()):
        listed = set()
        for path in sorted(folder.glob("*_visit.json")):
            records.setdefault(path.name, []).append(path)
            for source in json.loads(path.read_text())["sources"]:
                listed.update(source.get("products", []))
        for path in sorted(folder.iterdir()):
            if path.name.endswith("_visit.json"):
                continue
            if path.name.endswith("x1d.fits") and path.name not in listed:
                spectra.setdefault(path.name, []).append(path)  # the visit's, not a source's
            else:
                path.replace(target / path.name)
    for name, paths in spectra.items():
        models = [datamodels.open(p) for p in paths]
        try:
            joined = merged_spectra([m for m in models if len(m.spec)] or models[:1])
            save_atomically(joined, target / name)
        finally:
            for model in models:
                model.close()
    for name, paths in records.items():
        merge_records(paths, target / name)
