"""nodcombine: nodded-slit reductions for JWST as stpipe steps.

One folder per step (`nodcombine.nod_diff`, `nodcombine.trace_fit`,
`nodcombine.rectify`, `nodcombine.extract_1d`), each holding its Step, its
adapter (``io.py``) and its pure kernels; `nodcombine.contract` owns what
passes between them; `nodcombine.pipelines` chains them.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nodcombine")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: public class -> module that defines it (imported on first use: they import jwst)
_CLASSES = {
    "NodDiffStep": "nodcombine.nod_diff.step",
    "TraceFitStep": "nodcombine.trace_fit.step",
    "RectifyStep": "nodcombine.rectify.step",
    "OptimalExtract1dStep": "nodcombine.extract_1d.step",
    "NodCombinePipeline": "nodcombine.pipelines.nodcombine_pipeline",
    "Spec3NodPipeline": "nodcombine.pipelines.spec3_nod",
    "Spec2NodPipeline": "nodcombine.pipelines.spec2_nod",
}

__all__ = [*_CLASSES, "__version__"]


def lazy_attributes(package, classes):
    """A module ``__getattr__`` that imports each class from its module on first use.

    The steps import jwst, which takes seconds: the kernels, the contract and
    ``stpipe list`` load without it.

    Parameters
    ----------
    package : str
        The package's ``__name__``, for the error message.
    classes : dict of str to str
        Class name -> module that defines it.
    """

    def __getattr__(name):
        if name in classes:
            return getattr(importlib.import_module(classes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_attributes(__name__, _CLASSES)
