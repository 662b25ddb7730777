"""The stpipe pipelines of nodcombine."""

from nodcombine.pipelines.nodcombine_pipeline import NodCombinePipeline
from nodcombine.pipelines.spec2_nod import Spec2NodPipeline
from nodcombine.pipelines.spec3_nod import Spec3NodPipeline

__all__ = ["NodCombinePipeline", "Spec2NodPipeline", "Spec3NodPipeline"]
