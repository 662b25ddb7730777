"""The visits of a batch: associations as given, or ``_cal`` files grouped by visit.

An association is taken as it is (its ``products[0].name`` names the visit).
Loose ``_cal`` files are grouped by the visit their headers name (``PROGRAM``,
``OBSERVTN``, ``VISIT``; the ``jwPPPPPOOOVVV`` of the exposure file names) and
each group gets a spec3 association written with jwst's ``asn_from_list``,
named ``jwPPPPP-oOOO-vVVV``.  Two visits with one product name are refused:
their products would overwrite each other.
"""

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

__all__ = ["BatchInputError", "VisitInput", "find_visits"]


class BatchInputError(ValueError):
    """An input of the batch that cannot be used (the message names the file)."""


@dataclass(frozen=True)
class VisitInput:
    """One visit of a batch.

    Attributes
    ----------
    name : str
        The association's product name: the visit's output folder and product stem.
    association : pathlib.Path
        The spec3 association (absolute).
    """

    name: str
    association: Path


def find_visits(inputs, association_dir):
    """The visits named by ``inputs``, in the order given.

    Parameters
    ----------
    inputs : list of str or os.PathLike
        Association files, ``_cal`` files, or folders holding either
        (searched recursively; a folder's associations are used if it has any).
    association_dir : pathlib.Path
        Where associations made for loose ``_cal`` files are written.

    Returns
    -------
    list of VisitInput

    Raises
    ------
    BatchInputError
        A path that does not exist, a JSON file that is not an association,
        no visit at all, or two visits with one product name.
    """
    associations, exposures = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*.json") if _is_association(p))
            associations += found
            if not found:
                exposures += sorted(item.rglob("*_cal.fits"))
        elif item.suffix == ".json":
            if not _is_association(item):
                raise BatchInputError(f"{item}: not a spec3 association (no products/members)")
            associations.append(item)
        elif item.is_file():
            exposures.append(item)
        else:
            raise BatchInputError(f"{item}: no such file or folder")
    visits = [_visit_of(path) for path in associations]
    visits += _associate(exposures, Path(association_dir))
    if not visits:
        raise BatchInputError(f"no association or _cal file in {', '.join(map(str, inputs))}")
    _refuse_shared_names(visits)
    return visits


def _is_association(path):
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    products = document.get("products") if isinstance(document, dict) else None
    return bool(products) and isinstance(products, list) and "members" in products[0]


def _visit_of(path):
    path = Path(path).resolve()
    name = json.loads(path.read_text())["products"][0].get("name") or path.stem
    return VisitInput(name=str(name), association=path)


def _visit_key(path):
    """``jwPPPPP-oOOO-vVVV`` from the primary header, naming the file if it cannot."""
    try:
        header = fits.getheader(path)
        program, observation, visit = (header[k] for k in ("PROGRAM", "OBSERVTN", "VISIT"))
    except (OSError, KeyError) as err:
        message = f"{path}: cannot tell its visit (PROGRAM/OBSERVTN/VISIT): {err}"
        raise BatchInputError(message) from err
    return f"jw{int(program):05d}-o{int(observation):03d}-v{int(visit):03d}"


def _associate(exposures, association_dir):
    """One spec3 association per visit of loose ``_cal`` files (jwst's ``asn_from_list``)."""
    if not exposures:
        return []
    from jwst.associations import asn_from_list  # jwst's import is slow: only when needed

    groups = {}
    for path in exposures:
        groups.setdefault(_visit_key(path), []).append(str(Path(path).resolve()))
    association_dir.mkdir(parents=True, exist_ok=True)
    visits = []
    for name, members in groups.items():
        with warnings.catch_warnings():  # absolute member paths: on purpose, the files stay put
            warnings.filterwarnings("ignore", "Input association file contains path information")
            association = asn_from_list.asn_from_list(sorted(members), product_name=name)
            _, serialized = association.dump(format="json")
        path = association_dir / f"{name}_asn.json"
        path.write_text(serialized)
        visits.append(VisitInput(name=name, association=path.resolve()))
    return visits


def _refuse_shared_names(visits):
    seen = {}
    for visit in visits:
        if visit.name in seen:
            raise BatchInputError(
                f"{seen[visit.name]} and {visit.association} both name the product "
                f"{visit.name!r}: their products would overwrite each other"
            )
        seen[visit.name] = visit.association
