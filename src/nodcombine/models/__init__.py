"""The one adapter between jwst datamodels and the numpy kernels.

Everything that reads or writes a datamodel attribute lives in this package:
`nodcombine.models.slits` groups the slits of a visit by source, aligns cutouts
by ``xstart``/``ystart``, turns MIRI LRS images (dispersion along detector y)
into the kernels' axis order ``(n_spatial, n_dispersion)``, evaluates the WCS
for the predicted trace and the shutter map, and writes nod differences back;
`nodcombine.models.trace` reads the ``_nod`` products for the trace fit (the
along-slit coordinate from the WCS, the pixel scale, the nominal PSF width) and
writes the fitted profile back.
"""

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
    "NIRSPEC_SHUTTER_PITCH",
    "REF_VARIANCE_ATTRS",
    "TRACE_FIT_KEY",
    "SlitRef",
    "SourceGroup",
    "SourceStack",
    "TraceInputs",
    "check_member",
    "container_problem",
    "exposure_refs",
    "exposure_slits",
    "exposure_status",
    "fit_record",
    "group_by_source",
    "group_families",
    "nod_diff_problem",
    "nod_offset",
    "outlier_pixels",
    "set_exposure_status",
    "set_slit_status",
    "set_trace_skipped",
    "slits_of",
    "stack_source",
    "to_cutout",
    "trace_fit_status",
    "trace_inputs",
    "usable_members",
    "write_array",
    "write_differences",
    "write_trace_fit",
]
