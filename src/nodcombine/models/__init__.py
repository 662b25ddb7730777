"""The one adapter between jwst datamodels and the numpy kernels.

Everything that reads or writes a datamodel attribute lives in this package:
`nodcombine.models.modelio` opens the ``_cal`` files of a visit;
`nodcombine.models.slits` groups the slits of a visit by source, aligns cutouts
by ``xstart``/``ystart``, turns MIRI LRS images (dispersion along detector y)
into the kernels' axis order ``(n_spatial, n_dispersion)``, evaluates the WCS
for the predicted trace and the shutter map, and writes nod differences back;
`nodcombine.models.trace` reads the ``_nod`` products for the trace fit (the
along-slit coordinate from the WCS, the pixel scale, the nominal PSF width) and
writes the fitted profile back.
"""

from nodcombine.models.modelio import IndexedHDUList, new_entry, open_exposure, open_visit
from nodcombine.models.rectify import (
    PROFILE_KEY,
    RECTIFY_KEY,
    RectifyInputs,
    new_multislit,
    rectified_slit,
    rectified_wcs,
    rectify_inputs,
    trace_fit_problem,
)
from nodcombine.models.slits import (
    DQ,
    NIRSPEC_SHUTTER_PITCH,
    REF_VARIANCE_ATTRS,
    SlitRef,
    SourceGroup,
    SourceStack,
    check_member,
    container_problem,
    exposure_refs,
    exposure_slits,
    exposure_status,
    group_by_source,
    nod_offset,
    outlier_pixels,
    set_exposure_status,
    set_slit_status,
    slits_of,
    stack_source,
    to_cutout,
    write_array,
    write_differences,
)
from nodcombine.models.spectra import (
    EXTRAS_KEY,
    ExtractionInputs,
    companion_tree,
    extraction_inputs,
    new_multispec,
    per_source_products,
    product_name,
    source_tag,
    spec_model,
)
from nodcombine.models.trace import (
    TRACE_FIT_KEY,
    TraceInputs,
    fit_record,
    group_families,
    nod_diff_problem,
    set_trace_skipped,
    trace_fit_status,
    trace_inputs,
    usable_members,
    write_trace_fit,
)

__all__ = [
    "DQ",
    "EXTRAS_KEY",
    "NIRSPEC_SHUTTER_PITCH",
    "PROFILE_KEY",
    "RECTIFY_KEY",
    "REF_VARIANCE_ATTRS",
    "TRACE_FIT_KEY",
    "ExtractionInputs",
    "IndexedHDUList",
    "RectifyInputs",
    "SlitRef",
    "SourceGroup",
    "SourceStack",
    "TraceInputs",
    "check_member",
    "companion_tree",
    "container_problem",
    "exposure_refs",
    "exposure_slits",
    "exposure_status",
    "extraction_inputs",
    "fit_record",
    "group_by_source",
    "group_families",
    "new_entry",
    "new_multislit",
    "new_multispec",
    "nod_diff_problem",
    "nod_offset",
    "open_exposure",
    "open_visit",
    "outlier_pixels",
    "per_source_products",
    "product_name",
    "rectified_slit",
    "rectified_wcs",
    "rectify_inputs",
    "set_exposure_status",
    "set_slit_status",
    "set_trace_skipped",
    "slits_of",
    "source_tag",
    "spec_model",
    "stack_source",
    "to_cutout",
    "trace_fit_problem",
    "trace_fit_status",
    "trace_inputs",
    "usable_members",
    "write_array",
    "write_differences",
    "write_trace_fit",
]
