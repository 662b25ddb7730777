"""The stpipe pipelines of nodcombine."""

from nodcombine.pipelines.nodcombine_pipeline import NodCombinePipeline

__all__ = ["NodCombinePipeline"]
