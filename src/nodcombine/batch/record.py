"""The batch record: one row per source (one per visit without sources), and its summary.

Written as ``batch_record.csv`` and, with pyarrow installed,
``batch_record.parquet`` into the batch's output folder, each atomically
(under a temporary name, then renamed).
"""

import math
import os
from pathlib import Path

from astropy.table import Table

from nodcombine.batch.task import COMPLETE, FAILED

__all__ = ["COLUMNS", "record_rows", "summary", "write_record"]

#: the record's columns, in order
COLUMNS = (
    "visit",
    "source",
    "status",
    "reason",
    "trace_snr",
    "model",
    "median_snr",
    "visit_status",
    "visit_reason",
    "wall_s",
    "worker",
    "attempts",
    "resumed",
)


def record_rows(outcome, *, resumed=False):
    """The rows of one visit's outcome.

    Parameters
    ----------
    outcome : VisitOutcome
    resumed : bool
        The visit was complete from an earlier run and not reduced again.

    Returns
    -------
    list of dict
    """
    common = {
        "visit": outcome.name,
        "visit_status": outcome.status,
        "visit_reason": outcome.reason,
        "wall_s": outcome.wall_s,
        "worker": outcome.worker,
        "attempts": outcome.attempts,
        "resumed": resumed,
    }
    if outcome.status == FAILED or not outcome.sources:
        status = FAILED if outcome.status == FAILED else COMPLETE
        return [{**common, "source": "", "status": status.upper(), "reason": outcome.reason}]
    return [
        {
            **common,
            "source": source.get("source", ""),
            "status": source.get("status", ""),
            "reason": source.get("reason", ""),
            "trace_snr": source.get("trace_snr"),
            "model": source.get("model", ""),
            "median_snr": source.get("median_snr"),
        }
        for source in outcome.sources
    ]


def write_record(rows, output_dir):
    """Write the record; returns the paths written."""
    cells = [[_cell(row, name) for name in COLUMNS] for row in rows]
    table = Table(rows=cells, names=COLUMNS) if cells else Table(names=COLUMNS)
    written = [_write(table, Path(output_dir) / "batch_record.csv", "ascii.csv")]
    try:
        import pyarrow  # noqa: F401 - astropy writes Parquet with it
    except ImportError:
        return written
    written.append(_write(table, Path(output_dir) / "batch_record.parquet", "parquet"))
    return written


def _cell(row, name):
    value = row.get(name)
    if name in ("trace_snr", "median_snr", "wall_s"):
        return math.nan if value is None else float(value)
    if name == "attempts":
        return int(value or 0)
    if name == "resumed":
        return bool(value)
    return "" if value is None else str(value)


def _write(table, path, format_name):
    partial = path.with_name(f".{path.name}.partial")
    table.write(partial, format=format_name, overwrite=True)
    os.replace(partial, path)
    return path


def summary(outcomes, resumed, wall_s, n_workers):
    """The lines printed at the end of a batch.

    Parameters
    ----------
    outcomes : list of VisitOutcome
        Every visit's, those resumed included.
    resumed : set of str
        Names of the visits complete from an earlier run.
    wall_s : float
        The batch's wall time.
    n_workers : int
        Workers the batch had.
    """
    failed = [o for o in outcomes if o.status == FAILED]
    sources = [s for o in outcomes for s in o.sources]
    counts = {}
    for source in sources:
        counts[source.get("status", "?")] = counts.get(source.get("status", "?"), 0) + 1
    by_status = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
    ran = [o for o in outcomes if o.name not in resumed]
    ran_sources = sum(len(o.sources) for o in ran)
    lines = [
        f"batch: {len(outcomes)} visits: {len(outcomes) - len(failed)} complete "
        f"({len(resumed)} from an earlier run), {len(failed)} failed; "
        f"{len(sources)} sources: {by_status or 'none'}",
        f"  {wall_s:.1f} s wall on {n_workers} worker(s) for {len(ran)} visits reduced"
        + (f", {wall_s / ran_sources:.2f} s per source" if ran_sources else ""),
    ]
    lines += [f"  FAILED {o.name}: {o.reason}" for o in failed]
    retried = [o for o in outcomes if o.attempts > 1 and o not in failed]
    lines += [f"  retried {o.name}: {o.reason}" for o in retried]
    return lines
