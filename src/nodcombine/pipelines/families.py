"""A visit reduced family by family: memory bounded by a source family, not the visit.

The steps work on whole containers, and each returns a new one (the ``_nod``,
``_trace``, rectified and extracted products): run on a whole MOS visit, all
four are in memory at the end, some 5 MB per source on the real NIRSpec
geometry.  `family_visits` cuts the visit into small visits of a few families
of sources each (a family: the groups `nodcombine.visit.group_families` fits
together), each holding every exposure with only those families' slits; the
pipeline runs the chain on one, writes its products and lets them go before
the next.  The
sub-visits share the opened slits (nothing is copied), and every source meets
the same exposures, slits and parameters as in the whole visit, so its
products are the same.
"""

import copy
import logging

from jwst.datamodels import ModelContainer
from stdatamodels.jwst.datamodels import MultiSlitModel

from nodcombine.modelio import product_history
from nodcombine.visit import group_by_source, group_families

__all__ = [
    "FAMILIES_PER_PART",
    "family_count",
    "family_visits",
    "merged_spectra",
    "planned_in",
    "sub_visit",
    "worker_tasks",
]

log = logging.getLogger(__name__)

#: families reduced together: enough for the trace fits to keep a few workers
#: busy and the steps' per-run overhead (~0.1 s for the four) small, few
#: enough that a part's products take little memory
FAMILIES_PER_PART = 10

#: what `jwst.datamodels.ModelContainer` keeps of an association
_ASSOCIATION = ("asn_table", "asn_table_name", "asn_pool_name", "asn_file_path")


def family_visits(visit, per_part=None):
    """The visit as sub-visits of ``per_part`` families of sources each, or ``[visit]``.

    A visit is cut only when that changes nothing a step sees: two or more
    families in multi-slit exposures, each family in every exposure, and
    every slit in some family.  Otherwise (one family, an exposure a step will
    refuse or skip, a slit of no source, a source missing from an exposure)
    the whole visit is returned, so that its messages and products stay those
    of a whole-visit run.

    Parameters
    ----------
    visit : ModelContainer or DataModel
    per_part : int, optional
        Families per sub-visit (default `FAMILIES_PER_PART`).

    Returns
    -------
    list of ModelContainer or DataModel
    """
    if not isinstance(visit, ModelContainer) or len(visit) < 2:
        return [visit]
    if not all(type(model) is MultiSlitModel for model in visit):
        return [visit]
    groups, problems = group_by_source(visit)
    families = group_families(groups)
    if problems or len(families) < 2:
        return [visit]
    positions = [{id(slit): k for k, slit in enumerate(m.instance["slits"])} for m in visit]
    chosen = []
    for family in families:
        slits = [set() for _ in visit]
        for group in family:
            for ref in group.members:
                slits[ref.exposure].add(positions[ref.exposure][id(ref.slit.instance)])
        if not all(slits):
            return [visit]
        chosen.append(slits)
    n_grouped = sum(len(slits) for family in chosen for slits in family)
    if n_grouped != sum(map(len, positions)):
        return [visit]
    per_part = per_part or FAMILIES_PER_PART
    parts = [_merged(chosen[k : k + per_part]) for k in range(0, len(chosen), per_part)]
    if len(parts) < 2:
        return [visit]
    log.info(
        "reducing %d source families in %d parts of up to %d", len(chosen), len(parts), per_part
    )
    return [sub_visit(visit, slits) for slits in parts]


def family_count(visit):
    """How many families of sources a visit holds."""
    return len(group_families(group_by_source(visit)[0]))


def worker_tasks(visit, workers, most):
    """The visit as tasks for ``workers`` processes: lists of consecutive parts.

    The families are shared out evenly: as few tasks as hold at most ``most``
    families each, a multiple of ``workers`` so that every worker has as many
    families to reduce as the next (50 families on 2 workers: 25 and 25, not
    the 30 and 20 of whole parts of 10); each task is cut into parts of at
    most `FAMILIES_PER_PART`, as even as can be.

    Parameters
    ----------
    visit : ModelContainer
    workers : int
    most : int
        Most families in one task (opened together in its worker).

    Returns
    -------
    list of list
        Sub-visits (`family_visits`), task by task; one task of ``[visit]``
        when the visit cannot be cut.
    """
    n_families = family_count(visit) if isinstance(visit, ModelContainer) else 1
    workers = min(workers, n_families)
    if workers < 2:
        return [[visit]]
    per_task = _ceil(n_families, workers * _ceil(n_families, workers * most))
    tasks = family_visits(visit, per_part=per_task)
    if len(tasks) < 2:  # a visit that cannot be cut
        return [tasks]
    sizes = [min(per_task, n_families - k) for k in range(0, n_families, per_task)]
    return [_even_parts(task, size) for task, size in zip(tasks, sizes, strict=True)]


def _even_parts(visit, n_families):
    """``visit`` (of ``n_families``) cut into the fewest parts of at most `FAMILIES_PER_PART`."""
    return family_visits(visit, per_part=_ceil(n_families, _ceil(n_families, FAMILIES_PER_PART)))


def _ceil(a, b):
    return -(-a // b)


def _merged(families):
    """The slits of several families, per exposure."""
    return [set().union(*exposure) for exposure in zip(*families, strict=True)]


def sub_visit(visit, slits):
    """The exposures of ``visit`` with only the slits ``slits[exposure]``.

    The slits are shared, not copied: a family's steps work on its own slits
    only.  The exposure-level tree (``meta``, a few kB) is copied: the steps
    mark ``meta.cal_step`` of what they are given.
    """
    container = ModelContainer()
    for model, indices in zip(visit, slits, strict=True):
        tree = copy.deepcopy({k: v for k, v in model.instance.items() if k != "slits"})
        tree["slits"] = [model.instance["slits"][k] for k in sorted(indices)]
        container.append(type(model)(tree))
    for name in _ASSOCIATION:
        if hasattr(visit, name):
            setattr(container, name, getattr(visit, name))
    return container


def planned_in(plan, visit):
    """The entries of a visit's ``plan`` whose source is in ``visit`` (a sub-visit)."""
    labels = {group.label for group in group_by_source(visit)[0]}
    return [planned for planned in plan if planned.label in labels]


def merged_spectra(products):
    """One ``MultiSpecModel`` of the families' spectra, in the order of the families.

    The first family's product receives the others' spectra; its
    ``meta.cal_step`` says ``COMPLETE`` for a step done for any family, as a
    whole-visit run would.
    """
    merged = products[0]
    if len(products) == 1:
        return merged
    for other in products[1:]:
        for spec in other.spec:
            merged.spec.append(spec.instance)
    merged.meta.cal_step = product_history(products)[0]
    return merged
