"""Sources seen with several dispersers: one profile on the sky.

Pure numpy.  The groups of a source family (`nodcombine.visit.group_families`)
are fitted one by one; the best fit's centre and width are then forced on the
others, so that every disperser extracts the same part of the source.
"""

from nodcombine.trace_fit.solution import transfer_profile
from nodcombine.trace_fit.tracefit import fit_trace

__all__ = ["force_best_profile"]


def force_best_profile(fits, *, settings=None):
    """Force the centre and width of a source's best fit on its other dispersers.

    A source seen with several dispersers (or detectors) is one profile on the
    sky: the highest-S/N fit, if it is a real fit (status ``FIT``), is
    transferred to the pixels of each other group (`transfer_profile`) and
    that group refitted with it (DJA v2 does the same).

    Parameters
    ----------
    fits : list of tuple of (str, dict, float, TraceSolution)
        Per group: a label, the keyword arguments of `fit_trace`, the pixel
        scale along the slit (arcsec per pixel) and its own solution.
    settings : TraceFitSettings, optional

    Returns
    -------
    list of tuple of (TraceSolution, str)
        Per group, the solution to keep and the label of the group whose
        profile was forced on it ("" for its own).
    """
    if not fits:
        return []
    best_label, _, best_scale, best = max(fits, key=lambda fit: fit[3].snr)
    kept = []
    for _, arguments, scale, solution in fits:
        if solution is best or best.status != "FIT":
            kept.append((solution, ""))
            continue
        forced = transfer_profile(best, scale_ratio=best_scale / scale, label=best_label)
        kept.append((fit_trace(**arguments, settings=settings, forced=forced), best_label))
    return kept
