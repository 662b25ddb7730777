"""The exceptions for input a step cannot use.

`InputError` is confined to what it names: every step handles it the same way
(`nodcombine.stepbase`): a warning that starts with ``SKIPPED`` and names the
file, slit and field, the affected slit or source marked ``SKIPPED`` in the
product, and the rest of the visit goes on.  Kernels raise plain `ValueError`
for arrays they cannot work with; the step turns those into an `InputError` of
the source they came from.

`RefusedError` ends the run before any work: an association or a parameter
that no part of the visit can be reduced with.  The step that meets it logs
one line that starts with ``REFUSED``; ``strun`` then exits with status 2 and
no traceback (`nodcombine.stepbase`), and Python callers catch it as the
`ValueError` it also is.
"""

__all__ = ["REFUSED_EXIT_STATUS", "InputError", "RefusedError"]

#: ``strun``'s exit status when the input or a parameter is refused
REFUSED_EXIT_STATUS = 2


class InputError(ValueError):
    """Input that cannot be used, naming where it is and which field is wrong.

    Parameters
    ----------
    where : str
        The file and slit (``file[slit name]``), or the file alone for a
        problem of a whole exposure, or the association.
    field : str
        The metadata entry or array at fault (``meta.wcs``, ``var_rnoise``,
        ``nod_diff_status`` ...).
    problem : str
        What is wrong, and where it helps, what to do about it.

    Examples
    --------
    >>> str(InputError("x_cal.fits[slit 12]", "var_rnoise", "is missing"))
    "x_cal.fits[slit 12]: 'var_rnoise' is missing"
    """

    def __init__(self, where, field, problem):
        self.where = where
        self.field = field
        self.problem = problem
        super().__init__(f"{where}: {field!r} {problem}")

    def __reduce__(self):
        # keeps the error picklable (worker processes send it back)
        return type(self), (self.where, self.field, self.problem)


class RefusedError(InputError):
    """Input or a parameter that the whole run cannot use; raised before any work.

    Parameters are those of `InputError`; ``where`` is the association, a file
    or a step (for a parameter).

    Examples
    --------
    >>> err = RefusedError("nod_diff", "n_sigma_outlier", "is nan; give a finite number")
    >>> isinstance(err, ValueError), err.exit_status
    (True, 2)
    """

    exit_status = REFUSED_EXIT_STATUS
