"""The exposures of a visit, their slits, and the sources they group into.

A *source* is what one slit of every exposure of a nod pattern saw with one
disperser: the key is (program, observation, visit, detector, disperser,
slit name, source id), so one source seen by two dispersers forms two groups,
and the groups of one source (a *family*) are fitted together by ``trace_fit``.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine.errors import InputError

__all__ = [
    "SlitRef",
    "SourceGroup",
    "SourceKey",
    "exposure_refs",
    "exposure_slits",
    "group_by_source",
    "group_families",
    "slits_of",
]

_KNOWN_DISPERSERS = {
    "NIRSPEC": {"PRISM", "G140M", "G235M", "G395M", "G140H", "G235H", "G395H"},
    "MIRI": {"P750L"},
}
_SLIT_EXP_TYPES = {"NRS_MSASPEC", "NRS_FIXEDSLIT", "MIR_LRS-FIXEDSLIT"}


@dataclass
class SlitRef:
    """One slit of one exposure: where it lives and how to name it.

    Attributes
    ----------
    exposure : int
        Position of the exposure in the input.
    model : DataModel
        The exposure.
    slit : DataModel or ObjectNode
        The slit (the model itself for a ``SlitModel`` or MIRI ``ImageModel``).
    filename : str
        The exposure's file name, for messages.
    """

    exposure: int
    model: object
    slit: object
    filename: str

    @property
    def slit_name(self):
        """The slit's name (``image`` for a MIRI LRS image)."""
        return getattr(self.slit, "name", None) or "image"

    @property
    def label(self):
        """``file[slit name]`` for messages."""
        return f"{self.filename}[slit {self.slit_name}]"

    @property
    def instrument(self):
        """``meta.instrument.name`` of the exposure, upper case."""
        return (self.model.meta.instrument.name or "").upper()

    @property
    def disperser(self):
        """The grating (NIRSpec) or filter (MIRI) of the exposure."""
        instrument = self.model.meta.instrument
        return instrument.filter if self.instrument == "MIRI" else instrument.grating

    @property
    def dispersion_is_vertical(self):
        """Whether the exposure disperses along detector y (MIRI LRS)."""
        wcsinfo = getattr(self.model.meta, "wcsinfo", None)
        return getattr(wcsinfo, "dispersion_direction", None) == 2

    def error(self, field_name, problem):
        """An `InputError` naming this slit."""
        return InputError(self.label, field_name, problem)


class SourceKey(NamedTuple):
    """What makes slits of different exposures one source."""

    program: object
    observation: object
    visit: object
    detector: object
    disperser: str
    slit: str
    source: object

    @property
    def label(self):
        """Readable name: detector, disperser, slit and source."""
        return f"{self.detector}/{self.disperser}/{self.slit}/{self.source}"

    @property
    def file_stem(self):
        """Every field, joined for a file name unique to the source in its visit."""
        return "_".join(str(k) for k in self).replace("/", "-").replace(" ", "-")

    @property
    def instrument(self):
        """The instrument part of ``disperser`` (``NIRSPEC-PRISM`` → ``NIRSPEC``)."""
        return self.disperser.split("-")[0]


@dataclass
class SourceGroup:
    """The slits of all exposures that saw one source with one disperser."""

    key: SourceKey
    members: list = field(default_factory=list)

    @property
    def label(self):
        """Readable name of the source (see `SourceKey.label`)."""
        return self.key.label


def _filename(model, index):
    return model.meta.filename or f"exposure {index}"


def exposure_refs(models):
    """One `SlitRef` per exposure (the model itself), for exposure-level metadata."""
    return [
        SlitRef(index, model, model, _filename(model, index)) for index, model in enumerate(models)
    ]


def slits_of(model):
    """The slits of an exposure (the model itself for a single slit or image)."""
    return model.slits if isinstance(model, datamodels.MultiSlitModel) else [model]


def exposure_slits(model, index):
    """The slits of one exposure.

    Parameters
    ----------
    model : DataModel
        A ``MultiSlitModel``, ``SlitModel`` or (MIRI LRS) ``ImageModel``.
    index : int
        Position of the exposure in the input, for messages and bookkeeping.

    Returns
    -------
    list of SlitRef

    Raises
    ------
    InputError
        Naming the file and field, if the exposure is not nodded slit data.
    """
    name = _filename(model, index)
    exp_type = model.meta.exposure.type
    if exp_type not in _SLIT_EXP_TYPES:
        raise InputError(name, "meta.exposure.type", f"is {exp_type!r}, not nodded slit data")
    steps = model.meta.instance.get("cal_step") or {}
    rectified = [k for k in ("rectify", "resample", "resample_spec") if steps.get(k) == "COMPLETE"]
    if rectified:  # an _s2d among the _cal files: its slits are not cutouts
        raise InputError(name, f"meta.cal_step.{rectified[0]}", "is COMPLETE: a rectified product")
    ref = SlitRef(index, model, model, name)
    if ref.disperser not in _KNOWN_DISPERSERS.get(ref.instrument, ()):
        field_name = "filter" if ref.instrument == "MIRI" else "grating"
        raise InputError(name, f"meta.instrument.{field_name}", f"{ref.disperser!r} is unknown")
    if isinstance(model, datamodels.MultiSlitModel):
        return [SlitRef(index, model, slit, name) for slit in model.slits]
    if isinstance(model, (datamodels.SlitModel, datamodels.ImageModel)):
        return [ref]
    raise InputError(name, "model type", f"a {type(model).__name__} is not slit data")


def _source_key(ref):
    meta = ref.model.meta
    obs = meta.observation
    source = getattr(ref.slit, "source_id", None)
    if source is None:
        source = meta.target.catalog_name or meta.target.proposer_name or 0
    return SourceKey(
        obs.program_number,
        obs.observation_number,
        obs.visit_number,
        meta.instrument.detector,
        f"{ref.instrument}-{ref.disperser}",
        getattr(ref.slit, "name", None) or "LRS",
        source,
    )


def group_by_source(models):
    """Group the slits of a visit by source.

    Parameters
    ----------
    models : sequence of DataModel
        The exposures.

    Returns
    -------
    groups : list of SourceGroup
        In order of first appearance.
    problems : dict of int to InputError
        Exposures that could not be used (by position in ``models``), and why.
    """
    groups, problems = {}, {}
    for index, model in enumerate(models):
        try:
            slits = exposure_slits(model, index)
        except InputError as err:
            problems[index] = err
            continue
        for ref in slits:
            key = _source_key(ref)
            groups.setdefault(key, SourceGroup(key)).members.append(ref)
    return list(groups.values()), problems


def group_families(groups):
    """Group sources seen by several dispersers (or detectors) into families.

    A family shares program, observation, visit, instrument, slit and a real
    ``source_id``; the groups of a family (its dispersers and detectors) are
    fitted together so that the best one can force its profile on the others.
    Different pointings are never mixed: an offset from the planned position
    belongs to one pointing; nor are different slits (two slitlets of one
    source, jwst's fixed slits that all number their source 1): the source
    sits elsewhere in each, so one's centre would be forced on the other.

    Parameters
    ----------
    groups : list of SourceGroup

    Returns
    -------
    list of list of SourceGroup
    """
    families = {}
    for index, group in enumerate(groups):
        key = group.key
        real_id = isinstance(key.source, int | np.integer) and key.source > 0
        family = (key.program, key.observation, key.visit, key.instrument, key.source, key.slit)
        families.setdefault(family if real_id else ("group", index), []).append(group)
    return list(families.values())
