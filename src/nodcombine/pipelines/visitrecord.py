"""Before the work, a check that the products can be written; after it, the record of the visit.

`preflight` plans every source's product names (`plan_products`) and refuses,
before any work, a product name a FITS header cannot hold or an output folder
that cannot be written to.  `save_atomically` writes each product under a
temporary name in the output folder and renames it, so a product on disk is
always whole, and lists the ASDF extensions it used in a fixed order (asdf
lists them in the order of a set of objects hashed by memory address, so two
runs of the same visit wrote different bytes).  The visit record
``<product>_visit.json`` is written first with status ``started`` and
rewritten last with ``complete`` and every source's status: a run that was
interrupted is the one whose record still says ``started``.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from nodcombine.errors import RefusedError
from nodcombine.modelio import sort_asdf_extension_history
from nodcombine.pipelines.products import plan_products
from nodcombine.visit import group_by_source

__all__ = [
    "RECORD_SUFFIX",
    "VisitRecord",
    "merge_records",
    "preflight",
    "save_atomically",
]

#: file name suffix of the visit record
RECORD_SUFFIX = "_visit.json"


def preflight(product, container, output_dir):
    """The products' plan, after checking that they can be written.

    Parameters
    ----------
    product : str
        Product stem of the visit.
    container : ModelContainer
        The opened exposures.
    output_dir : pathlib.Path
        Where the products go (created by stpipe).

    Returns
    -------
    list of PlannedSource

    Raises
    ------
    RefusedError
        A product name that is not ASCII (FITS headers hold only ASCII), or an
        output folder that cannot be written to.
    """
    if not product.isascii():
        raise RefusedError(
            "association",
            "products[0].name",
            f"{product!r} is not ASCII: FITS headers hold only ASCII",
        )
    groups, _ = group_by_source(container)
    plan = plan_products(product, groups)
    try:
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".nodcombine-check-"):
            pass
    except OSError as err:
        raise RefusedError(str(output_dir), "output_dir", f"cannot be written to: {err}") from err
    return plan


def save_atomically(model, path):
    """Save ``model`` to ``path`` through a temporary file in the same folder.

    The temporary file keeps the final file name (in a hidden sub-folder), so
    ``meta.filename`` is written right, and `os.replace` makes the product
    appear whole or not at all.
    """
    path = Path(path)
    partial = Path(tempfile.mkdtemp(dir=path.parent, prefix=".nodcombine-partial-"))
    try:
        model.meta.filename = path.name
        model.save(partial / path.name)
        sort_asdf_extension_history(partial / path.name)
        os.replace(partial / path.name, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


class VisitRecord:
    """The visit record: inputs, and per source its status, reason and products.

    Parameters
    ----------
    path : pathlib.Path
        ``<output_dir>/<product>_visit.json``.
    plan : list of PlannedSource
    inputs : list of str
        The exposures' file names.
    """

    def __init__(self, path, plan, inputs):
        self.path = Path(path)
        self.inputs = list(inputs)
        self.reason = None
        self.sources = {
            planned.label: {"source": planned.label, "stem": planned.stem, "status": "PLANNED"}
            for planned in plan
        }

    def started(self):
        """Write the record with status ``started`` (before the work)."""
        self._write("started")

    def finish(self, written, reasons, details=None):
        """Record each source's outcome and write the record with status ``complete``.

        Parameters
        ----------
        written : dict of str to list of str
            Product file names written, by source label.
        reasons : dict of str to str
            Why a source was not done, by source label (the steps' skip reasons).
        details : dict of str to dict, optional
            Per source label, what its products say of it
            (`~nodcombine.pipelines.products.source_summary`: ``trace_snr``,
            ``model``, ``median_snr``).
        """
        details = details or {}
        for label, entry in self.sources.items():
            entry.update(details.get(label, {}))
            files = sorted(written.get(label, []))
            entry["products"] = files
            entry["status"] = (
                "COMPLETE" if any(f.endswith("_x1d.fits") for f in files) else "SKIPPED"
            )
            if entry["status"] == "SKIPPED":
                entry["reason"] = reasons.get(label, "no spectrum was extracted")
        self._write("complete")

    def refused(self, reason):
        """Write the record with status ``refused`` and why (no product was written)."""
        self.reason = reason
        self._write("refused")

    def _write(self, status):
        _write_record(self.path, status, self.inputs, list(self.sources.values()), self.reason)


def merge_records(paths, target):
    """Write at ``target`` the record of a visit reduced in parts (``part=K/N``), from theirs.

    Parameters
    ----------
    paths : list of pathlib.Path
        The parts' records, in part order; every one ``complete``.
    target : pathlib.Path
        The visit's record.
    """
    documents = [json.loads(Path(p).read_text()) for p in paths]
    sources = [entry for document in documents for entry in document["sources"]]
    _write_record(target, "complete", documents[0]["inputs"], sources, None)


def _write_record(path, status, inputs, sources, reason):
    counts = {}
    for entry in sources:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    document = {
        "status": status,
        **({"reason": reason} if reason else {}),
        "inputs": inputs,
        "counts": counts,
        "sources": sources,
    }
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, path)
