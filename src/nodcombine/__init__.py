"""nodcombine: nodded-slit reductions for JWST as stpipe steps."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nodcombine")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

_STEPS = ("NodDiffStep", "TraceFitStep", "RectifyStep", "OptimalExtract1dStep")
_PIPELINES = ("NodCombinePipeline",)

__all__ = [*_STEPS, *_PIPELINES, "__version__"]


def __getattr__(name):
    # Steps import jwst, which is slow; load them only when asked for.
    if name in _STEPS:
        from nodcombine import steps

        return getattr(steps, name)
    if name in _PIPELINES:
        from nodcombine import pipelines

        return getattr(pipelines, name)
    raise AttributeError(f"module 'nodcombine' has no attribute {name!r}")
