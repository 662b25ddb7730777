"""One source's cutouts on a common grid, in the kernels' orientation.

The exposures of a nod pattern cut a source's slit out of the detector with
origins (``xstart``, ``ystart``) that may differ by a pixel or more; the
kernels want one array per quantity, ``(n_exposures, n_along, n_dispersion)``.
`stack_source` places every member's cutout on the union of the cutouts,
turning MIRI LRS images (dispersed along detector y) so that the dispersion
runs along the last axis, and `to_cutout` takes a grid array back to one
member's own cutout and orientation.
"""

from dataclasses import dataclass

import numpy as np
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from nodcombine.variances import VARIANCE_COMPONENTS

__all__ = ["DQ", "SourceStack", "cutout_origin", "stack_source"]

DQ = dqflags.pixel


@dataclass(frozen=True)
class SourceStack:
    """Arrays of one source's exposures on a common grid, kernel orientation.

    Attributes
    ----------
    members : list of SlitRef
        The slits, in the order of the first axis.
    data : numpy.ndarray, shape (n_exp, ny, nx)
    variances : dict of str to numpy.ndarray
        Keyed by `VARIANCE_COMPONENTS`, like ``data``.
    dq : numpy.ndarray of uint32
        ``DO_NOT_USE`` off each member's cutout.
    windows : list of tuple of int
        Each member's cutout within the grid, ``(row0, col0, n_rows, n_cols)``.
    transposed : bool
        Whether the cutouts were turned (dispersion along detector y).
    """

    members: list
    data: np.ndarray
    variances: dict
    dq: np.ndarray
    windows: list
    transposed: bool

    @property
    def n_columns(self):
        """Dispersion pixels of the grid."""
        return self.data.shape[2]

    def place(self, arrays, fill=np.nan, dtype=float):
        """Per-member cutout arrays (slit orientation) on the grid, kernel orientation."""
        grid = np.full(self.data.shape, fill, dtype=dtype)
        for k, (arr, (row0, col0, n_rows, n_cols)) in enumerate(
            zip(arrays, self.windows, strict=True)
        ):
            grid[k, row0 : row0 + n_rows, col0 : col0 + n_cols] = arr.T if self.transposed else arr
        return grid

    def place_columns(self, arrays, fill=np.nan):
        """Per-member arrays along the dispersion pixels, on the grid's columns."""
        out = np.full((len(arrays), self.n_columns), fill)
        for k, values in enumerate(arrays):
            _, col0, _, n_cols = self.windows[k]
            out[k, col0 : col0 + n_cols] = values
        return out

    def place_traces(self, traces):
        """Each member's trace on the grid's columns, in the grid's rows.

        A trace is a position along the slit per dispersion pixel of the
        member's own cutout.
        """
        return np.stack(
            [
                np.interp(np.arange(self.n_columns) - col0, np.arange(n_cols), trace) + row0
                for trace, (row0, col0, _, n_cols) in zip(traces, self.windows, strict=True)
            ]
        )

    def to_cutout(self, grid, k, dtype=np.float32):
        """Member ``k``'s cutout of a grid array, in the slit's own orientation.

        Parameters
        ----------
        grid : numpy.ndarray, shape (n_exp, ny, nx)
            Array on the common grid, kernel orientation.
        k : int
            Member index.
        dtype : numpy.dtype, optional
            Output type.

        Returns
        -------
        numpy.ndarray
            Shaped like the member's ``data``.
        """
        row0, col0, n_rows, n_cols = self.windows[k]
        arr = grid[k, row0 : row0 + n_rows, col0 : col0 + n_cols]
        return np.ascontiguousarray(arr.T if self.transposed else arr).astype(dtype)

    def window_slices(self, k):
        """``(rows, columns)`` slices of member ``k``'s cutout in the grid."""
        row0, col0, n_rows, n_cols = self.windows[k]
        return slice(row0, row0 + n_rows), slice(col0, col0 + n_cols)


def cutout_origin(ref):
    """1-based detector origin (xstart, ystart) of a slit or image."""
    if ref.slit is ref.model and isinstance(ref.model, datamodels.ImageModel):
        sub = ref.model.meta.subarray
        return (sub.xstart or 1), (sub.ystart or 1)
    return (ref.slit.xstart or 1), (ref.slit.ystart or 1)


def _windows(members, vertical):
    """Each member's ``(row0, col0, n_rows, n_cols)`` on the union of the cutouts."""
    origins = [cutout_origin(ref) for ref in members]
    shapes = [ref.slit.data.shape for ref in members]
    x0 = min(o[0] for o in origins)
    y0 = min(o[1] for o in origins)
    windows = []
    for (xs, ys), (h, w) in zip(origins, shapes, strict=True):
        windows.append((xs - x0, ys - y0, w, h) if vertical else (ys - y0, xs - x0, h, w))
    n_rows = max(row0 + n_rows for row0, _, n_rows, _ in windows)
    n_cols = max(col0 + n_cols for _, col0, _, n_cols in windows)
    return windows, (len(members), n_rows, n_cols)


def stack_source(members, *, scale=None):
    """Put one source's slits on a common grid in kernel orientation.

    Parameters
    ----------
    members : list of SlitRef
        Checked slits of one source, all with the same dispersion direction.
    scale : list of numpy.ndarray or None, optional
        Per member, a factor (or None) multiplying its data, and its square the
        variances, on the way in (``nod_diff`` takes jwst's path-loss
        correction out with it).

    Returns
    -------
    SourceStack
    """
    vertical = members[0].dispersion_is_vertical
    windows, shape = _windows(members, vertical)
    empty = SourceStack(members, np.empty(shape), {}, np.empty(shape), windows, vertical)
    scale = scale or [None] * len(members)
    data = empty.place([_times(r.slit.data, f) for r, f in zip(members, scale, strict=True)])
    variances = {
        c: empty.place(
            [_times(getattr(r.slit, c), f, 2) for r, f in zip(members, scale, strict=True)]
        )
        for c in VARIANCE_COMPONENTS
    }
    dq = empty.place(
        [np.asarray(r.slit.dq, dtype=np.uint32) for r in members], DQ["DO_NOT_USE"], np.uint32
    )
    return SourceStack(members, data, variances, dq, windows, vertical)


def _times(values, factor, power=1):
    values = np.asarray(values, dtype=float)
    return values if factor is None else values * factor**power
