"""Per-source products of a visit: names like ``calwebb_spec3``'s, never two alike.

``calwebb_spec3`` names a source's products ``<product>_<source>_<suffix>``,
with the source field ``s`` (a source), ``b`` (background) or ``v`` (virtual)
and nine digits of its id; a ``{source_id}``/``{slit_name}`` template in the
association's product name is filled in instead.  Source ids repeat (two
slitlets of one source, a MOS slit and a fixed slit, one slit on both NIRSpec
detectors): where they do, the slit name, then the detector, then the
disperser are added until every source of the visit has a name of its own.
The names are planned from the input, before any work (`plan_products`).
"""

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine.contract import RectifyRecord, TraceFitRecord
from nodcombine.extract_1d.step import BOX_SUFFIX

__all__ = [
    "PlannedSource",
    "per_source_products",
    "plan_products",
    "product_name",
    "product_stem",
    "source_tag",
    "x1d_suffix",
]


def product_name(container):
    """Stem of the products of a visit: the association's product name, if any.

    Parameters
    ----------
    container : ModelContainer

    Returns
    -------
    str
    """
    table = getattr(container, "asn_table", None) or {}
    products = table.get("products") or []
    if products and products[0].get("name"):
        return str(products[0]["name"])
    first = container[0].meta.filename if len(container) else None
    return Path(first).stem.rsplit("_", 1)[0] if first else "nodcombine"


def source_tag(source_id, source_name=""):
    """calwebb_spec3's source field: ``s``, ``b`` (background) or ``v`` (virtual) + 9 digits."""
    try:
        number = int(source_id or 0)
    except (TypeError, ValueError):  # a MIRI target name: no number
        number = 0
    if "BKG" in str(source_name or ""):
        return f"b{number:09d}"
    if number < 0:
        return f"v{-number:09d}"
    return f"s{number:09d}"


@dataclass(frozen=True)
class PlannedSource:
    """One source of the visit and the stem of its products.

    Attributes
    ----------
    label : str
        The source (``detector/disperser/slit/source``, `SourceKey.label`).
    members : frozenset of str
        Its slits (``file[slit name]``), as the rectified slit lists them.
    stem : str
        ``<stem>_s2d.fits`` and ``<stem>_x1d.fits`` are its products.
    """

    label: str
    members: frozenset
    stem: str


def plan_products(product, groups):
    """A product stem per source, unique in the visit.

    Parameters
    ----------
    product : str
        Product stem (see `product_name`).
    groups : list of SourceGroup
        The visit's sources (`nodcombine.visit.group_by_source`).

    Returns
    -------
    list of PlannedSource
    """
    # each qualifier is added to the names still shared, in this order
    qualifiers = (
        lambda key: str(key.slit).lower(),
        lambda key: str(key.detector).lower(),
        lambda key: str(key.disperser).lower(),
    )
    parts = [[_tag_of(group)] for group in groups]
    for qualify in qualifiers:
        shared = _shared(parts)
        for index in shared:
            parts[index].append(qualify(groups[index].key))
    if _shared(parts):  # one source listed twice; refused upstream
        raise ValueError("two sources of the visit have the same slit, detector and disperser")
    return [
        PlannedSource(g.label, frozenset(r.label for r in g.members), _stem(product, g, p))
        for g, p in zip(groups, parts, strict=True)
    ]


def _tag_of(group):
    first = group.members[0].slit
    return source_tag(group.key.source, getattr(first, "source_name", ""))


def _shared(parts):
    seen = {}
    for index, name in enumerate("_".join(p) for p in parts):
        seen.setdefault(name, []).append(index)
    return [i for indices in seen.values() if len(indices) > 1 for i in indices]


def _stem(product, group, parts):
    tag = "-".join(parts)
    stem = product
    if "{slit_name}" in stem:
        stem = stem.replace("{slit_name}", str(group.key.slit).lower())
    if "{source_id}" in stem:
        return stem.replace("{source_id}", tag)
    return f"{stem}_{tag}"


def per_source_products(plan, s2d, x1d, *, x1d_suffix="x1d"):
    """``(name, model)`` of each source's ``_s2d`` and ``_x1d``.

    Each product carries its source's own history and exposure time (those of
    the rectified slit: the exposures the source was seen in), not the
    visit's; jwst's ``combine_1d`` weights a spectrum by that time.

    Parameters
    ----------
    plan : list of PlannedSource
        From `plan_products`.
    s2d : MultiSlitModel
        Rectified slits (each names its member slits in its `RectifyRecord`).
    x1d : MultiSpecModel
        Spectra; a spectrum belongs to the rectified slit with its name, source
        id and wavelength grid.
    x1d_suffix : str, optional
        Suffix of the spectra: ``x1d``, or
        `~nodcombine.extract_1d.step.BOX_SUFFIX` for a box extraction, so that
        box and optimal spectra of a visit never share a file.

    Yields
    ------
    name : str
        File name without extension (`product_stem` gives back the source's stem).
    model : DataModel
        ``MultiSlitModel`` with one slit, or ``MultiSpecModel`` with one spectrum.
    """
    for slit in s2d.slits:
        planned = _planned_for(plan, slit)
        yield f"{planned.stem}_s2d", _one_of(datamodels.MultiSlitModel, s2d, "slits", slit, slit)
        spec = _spectrum_of(slit, x1d)
        if spec is not None:
            one = _one_of(datamodels.MultiSpecModel, x1d, "spec", spec, slit)
            yield f"{planned.stem}_{x1d_suffix}", one


def source_summary(model):
    """What a visit record says of a source, from one of its products.

    Parameters
    ----------
    model : MultiSlitModel, SlitModel or MultiSpecModel
        A product of `per_source_products` (or a ``calwebb_spec3_nod`` one).

    Returns
    -------
    dict
        From an ``_s2d``: ``trace_snr`` and ``model`` (the fitted profile,
        `model_summary`); from a spectrum:
        ``median_snr``, the median of FLUX / FLUX_ERROR over the bins that have
        both.  Empty for anything else.
    """
    if isinstance(model, datamodels.MultiSpecModel):
        if not len(model.spec):
            return {}
        table = model.spec[0].spec_table
        flux = np.asarray(table["FLUX"], dtype=float)
        error = np.asarray(table["FLUX_ERROR"], dtype=float)
        good = np.isfinite(flux) & np.isfinite(error) & (error > 0)
        return {"median_snr": float(np.median(flux[good] / error[good])) if good.any() else None}
    slits = model.instance.get("slits") or [model.instance]  # a SlitModel is its own slit
    record = TraceFitRecord.from_tree(slits[0])
    if record is None:
        return {}
    snr = None if record.snr is None else float(record.snr)
    return {"trace_snr": snr, "model": model_summary(record)}


def model_summary(record):
    """A trace fit's model in one line, e.g. ``FIT: offset deg 1, width deg 1, halo 0.12 x 3.0``.

    Parameters
    ----------
    record : TraceFitRecord

    Returns
    -------
    str
        For visit records and batch tables; a skipped source gives its status.
    """
    if not record.fitted:
        return record.status
    terms = [] if record.degree is None else [f"offset deg {record.degree}"]
    if record.width_free is False:
        terms.append("width fixed")
    elif record.width_degree is not None:
        terms.append(f"width deg {record.width_degree}")
    if record.halo_fraction:
        terms.append(f"halo {record.halo_fraction:.2f} x {record.halo_scale or 1.0:.1f}")
    if record.wings_beta is not None and math.isfinite(record.wings_beta):
        terms.append(f"Moffat beta {record.wings_beta:.1f}")
    if record.skew:
        terms.append(f"skew {record.skew:+.2f}")
    return f"{record.status}: {', '.join(terms)}" if terms else record.status


def x1d_suffix(extract_step):
    """Suffix of an ``optimal_extract_1d`` step's spectra: ``box_x1d`` for a box, else ``x1d``.

    A box is ``extraction_type='box'`` or an ``override_extract1d`` reference
    (whose aperture is always a box), decided before the run starts.
    """
    box = extract_step.extraction_type == "box" or bool(extract_step.override_extract1d)
    return BOX_SUFFIX if box else "x1d"


def product_stem(name):
    """The source's stem of a name `per_source_products` gives.

    Parameters
    ----------
    name : str
        E.g. ``visit_s000000933_box_x1d``.

    Returns
    -------
    str
        E.g. ``visit_s000000933``; ``name`` itself if it has no product suffix.
    """
    for suffix in (BOX_SUFFIX, "x1d", "s2d"):  # the longest first: box_x1d ends with x1d
        if name.endswith(f"_{suffix}"):
            return name[: -len(suffix) - 1]
    return name


def _planned_for(plan, slit):
    record = RectifyRecord.from_tree(slit.instance)
    members = set(record.members) if record is not None else set()
    for planned in plan:
        if planned.members & members:
            return planned
    raise ValueError(f"rectified slit {slit.name} is not a source of the visit")


def _spectrum_of(slit, x1d):
    record = RectifyRecord.from_tree(slit.instance)
    for spec in x1d.spec:
        if (spec.name, spec.source_id) != (slit.name, slit.source_id):
            continue
        wave = np.asarray(spec.spec_table["WAVELENGTH"], dtype=float)
        grid = None if record is None else record.wavelength_grid_um
        if grid is None or (wave.shape == grid.shape and np.allclose(wave, grid, rtol=1e-6)):
            return spec
    return None


def _one_of(model_class, whole, key, item, slit):
    """A product holding one item of ``whole``, its metadata and the slit's own history.

    Written to the tree (validated when saved): ``update`` and a validated
    append cost 0.1 s per source, more than saving the file.
    """
    one = model_class()
    meta = copy.deepcopy(whole.instance["meta"])
    own = slit.instance.get("meta") or {}
    # the visit's steps, the source's own statuses over them (rectify sets them per slit)
    meta["cal_step"] = {**meta.get("cal_step", {}), **own.get("cal_step", {})}
    if own.get("exposure"):
        meta["exposure"] = copy.deepcopy(own["exposure"])
    one.instance["meta"] = meta
    one.instance[key] = [item.instance]
    return one
