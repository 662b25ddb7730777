"""What the data say about how they were prepared, whatever their metadata say.

A nod background already subtracted:
``calwebb_spec2``'s ``bkg_subtract`` on a nod pattern subtracts the other
positions' exposures: each ``_cal`` then holds the source's image at its own
trace and *negative* images at the traces of the other positions (each
``−1/(n−1)`` of it for ``n`` positions).  A ``_cal`` that was not subtracted
holds the sky there, which is never negative on average.  So along the traces
of one exposure, the ratio ``r`` of the mean level at the other positions'
traces to the level at its own trace is ``−1/(n−1)`` (−1 for 2-point, −0.5 for
3-point) after a subtraction and ``sky / (sky + source) ≥ 0`` before.  The
``bkg_subtract`` flag is checked first (`nodcombine.inputchecks`); this is for
files whose flag says otherwise.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PRESUBTRACTED_RATIO",
    "PresubtractedSignature",
    "presubtracted_signature",
]

#: r below this in every exposure (between 0 and the −0.5 of a 3-point subtraction)
PRESUBTRACTED_RATIO = -0.25
#: S/N of an exposure's own trace level below which it is not judged
_MIN_SNR = 10.0


@dataclass(frozen=True)
class PresubtractedSignature:
    """The trace levels of each exposure of a source.

    Attributes
    ----------
    ratio : numpy.ndarray, shape (n_exp,)
        Mean level at the other positions' traces over the level at its own.
    snr : numpy.ndarray, shape (n_exp,)
        S/N of the level at its own trace (median over columns, ``√n_col`` of them).
    """

    ratio: np.ndarray
    snr: np.ndarray

    @property
    def presubtracted(self):
        """Whether every judged exposure shows the negative images (and one was judged)."""
        judged = self.snr >= _MIN_SNR
        return bool(judged.any() and np.all(self.ratio[judged] < PRESUBTRACTED_RATIO))


def presubtracted_signature(data, error, trace_rows, positions):
    """Trace levels of each exposure: its own image, and what lies at the other positions'.

    Parameters
    ----------
    data, error : numpy.ndarray, shape (n_exp, ny, nx)
        The exposures on a common grid, NaN where unusable.
    trace_rows : numpy.ndarray, shape (n_exp, nx)
        Predicted source row of each exposure per column.
    positions : numpy.ndarray of int, shape (n_exp,)
        Nod position of each exposure.

    Returns
    -------
    PresubtractedSignature
    """
    n_exp, ny, nx = data.shape
    columns = np.arange(nx)
    # one trace per position: the mean of its exposures' predicted rows
    traces = {p: np.nanmean(trace_rows[positions == p], axis=0) for p in np.unique(positions)}
    rows = {p: np.clip(np.round(t), 0, ny - 1) for p, t in traces.items()}
    ratio, snr = np.full(n_exp, np.nan), np.zeros(n_exp)
    for e in range(n_exp):
        levels = {}
        for p, row in rows.items():
            known = np.isfinite(row)
            index = row[known].astype(int)
            levels[p] = np.nanmedian(data[e, index, columns[known]]) if known.any() else np.nan
        own = levels[positions[e]]
        others = [v for p, v in levels.items() if p != positions[e]]
        noise = np.nanmedian(error[e]) / np.sqrt(nx)
        if np.isfinite(own) and own > 0 and others and np.isfinite(noise) and noise > 0:
            ratio[e] = np.nanmean(others) / own
            snr[e] = own / noise
    return PresubtractedSignature(ratio, snr)
