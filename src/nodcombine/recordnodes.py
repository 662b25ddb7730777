"""Records of flat fields as entries of a model's tree, and back (for `nodcombine.contract`).

A record's tuples are lists in the tree; its per-wavelength fields are float64
arrays, which stdatamodels keeps as binary blocks of the product's ASDF
extension.  Reading accepts both, so products written when the per-wavelength
fields were lists read as before.
"""

from dataclasses import fields

import numpy as np

__all__ = ["from_node", "to_node", "tree_value"]


def to_node(record, arrays=()):
    """A record of flat fields as a tree entry: None left out, tuples as lists.

    The fields named in ``arrays`` (one value per wavelength) are written as
    float64 arrays instead: binary blocks of the product's ASDF extension, which
    stdatamodels writes in a fraction of the time it spends on a YAML list of
    the same floats (every element is a node of its tree walks and its YAML).
    """
    return {
        f.name: tree_value(v, f.name in arrays)
        for f in fields(record)
        if (v := getattr(record, f.name)) is not None
    }


def tree_value(value, as_array):
    """One field's tree value: a float64 array, or a tuple as a list, or itself."""
    if as_array:
        return np.asarray(value, dtype=float)
    return list(value) if isinstance(value, tuple) else value


def from_node(cls, node):
    """A record of flat fields from its tree entry (lists and arrays as tuples); None if absent."""
    known = {f.name for f in fields(cls)}
    values = {k: _record_value(v) for k, v in (node or {}).items()}
    return cls(**{k: v for k, v in values.items() if k in known}) if node else None


def _record_value(value):
    """One field's record value: lists and arrays as tuples, anything else as it is."""
    if isinstance(value, list):
        return tuple(value)
    if hasattr(value, "__array__"):  # numpy, or asdf's lazily read array
        return tuple(np.asarray(value, dtype=float).tolist())
    return value
