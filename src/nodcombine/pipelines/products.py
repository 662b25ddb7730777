"""Per-source products of a visit, named like ``calwebb_spec3``'s.

``calwebb_spec3`` names a source's products ``<product>_<source>_<suffix>``,
with the source field ``s`` (a source), ``b`` (background) or ``v`` (virtual)
and nine digits of its id; a ``{source_id}``/``{slit_name}`` template in the
association's product name is filled in instead.
"""

import copy
from pathlib import Path

from stdatamodels.jwst import datamodels

__all__ = ["per_source_products", "product_name", "source_tag"]


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


def source_tag(slit):
    """calwebb_spec3's source field: ``s``, ``b`` (background) or ``v`` (virtual) + 9 digits."""
    source_id = int(slit.source_id or 0)
    if "BKG" in str(slit.source_name or ""):
        return f"b{source_id:09d}"
    if source_id < 0:
        return f"v{-source_id:09d}"
    return f"s{source_id:09d}"


def _source_stem(product, slit):
    tag = source_tag(slit)
    stem = product
    if "{slit_name}" in stem:
        stem = stem.replace("{slit_name}", str(slit.name or "").lower())
    if "{source_id}" in stem:
        return stem.replace("{source_id}", tag)
    return f"{stem}_{tag}"


def per_source_products(product, s2d, x1d):
    """``(name, model)`` of each source's ``_s2d`` and ``_x1d``, calwebb_spec3 style.

    Parameters
    ----------
    product : str
        Product stem (see `product_name`); ``{source_id}`` and ``{slit_name}``
        are filled in as calwebb_spec3 does, else the source field is appended.
    s2d : MultiSlitModel
        Rectified slits.
    x1d : MultiSpecModel
        Spectra.

    Yields
    ------
    name : str
        File name without extension.
    model : DataModel
        ``MultiSlitModel`` with one slit, or ``MultiSpecModel`` with one spectrum.
    """
    spectra = {(spec.name, spec.source_id): spec for spec in x1d.spec}
    for slit in s2d.slits:
        stem = _source_stem(product, slit)
        yield f"{stem}_s2d", _one_of(datamodels.MultiSlitModel, s2d, "slits", slit)
        spec = spectra.get((slit.name, slit.source_id))
        if spec is not None:
            yield f"{stem}_x1d", _one_of(datamodels.MultiSpecModel, x1d, "spec", spec)


def _one_of(model_class, whole, key, item):
    """A product holding one item of ``whole`` and its metadata.

    Written to the tree (validated when saved): ``update`` and a validated
    append cost 0.1 s per source, more than saving the file.
    """
    one = model_class()
    one.instance["meta"] = copy.deepcopy(whole.instance["meta"])
    one.instance[key] = [item.instance]
    return one
