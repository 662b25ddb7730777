"""NodDiffStep: subtract the sky by differencing the exposures of a nod pattern."""

import logging
from functools import partial

from nodcombine.errors import InputError
from nodcombine.modelio import open_visit
from nodcombine.nod_diff import io
from nodcombine.nod_diff.masks import mask_pixels
from nodcombine.nod_diff.noddiff import (
    DEFAULT_N_SIGMA_OUTLIER,
    DEFAULT_OUTLIER_ITERATIONS,
    DEFAULT_OUTLIER_MODEL_FRACTION,
    POSITION_KEYS,
    check_partners,
    label_positions,
    nod_difference,
)
from nodcombine.stepbase import NodcombineStep
from nodcombine.visit import slits_of

__all__ = ["NodDiffStep"]

log = logging.getLogger(__name__)


class NodDiffStep(NodcombineStep):
    """Difference the unrectified cutouts of the nod positions of a visit.

    Each slit of each exposure becomes that exposure minus the mean of the
    exposures at the other nod positions, with ``var_poisson``, ``var_rnoise``
    and ``var_flat`` propagated, masked pixels (DQ, failed-open and stuck-closed
    shutters, bar shadows, slit edges) left out and cosmic rays missed by jump
    detection found by comparing the exposures.
    """

    class_alias = "nod_diff"

    spec = f"""
    output_use_model = boolean(default=True)  # name each _nod product after its input exposure
    position_key = option({", ".join(repr(k) for k in POSITION_KEYS)}, default='auto')  # metadata that identifies nod positions; auto = dither offset along the slit
    position_tolerance = float(default=0.1, min=0)  # arcsec: offsets closer than this are one nod position
    n_sigma_outlier = float(default={DEFAULT_N_SIGMA_OUTLIER}, min=0)  # cross-exposure outlier threshold in sigma; 0 disables
    outlier_model_fraction = float(default={DEFAULT_OUTLIER_MODEL_FRACTION}, min=0)  # fraction of the source model's local spectral structure (lines) added to the outlier threshold
    outlier_iterations = integer(default={DEFAULT_OUTLIER_ITERATIONS}, min=1)  # rounds of outlier rejection
    failed_open_dilation = integer(default=1, min=0)  # pixels by which to grow the MSA_FAILED_OPEN mask
    min_bar = float(default=0.4, min=0, max=1)  # bar-shadow throughput below which pixels are masked
    edge_pixels = integer(default=1, min=0)  # pixels along the slit masked next to the slit edges
    stuck_threshold = float(default=0.3, min=0, max=1)  # MOS: shutter/slitlet light ratio below which a shutter is stuck closed; 0 disables
    """  # noqa: E501

    def process(self, input_data):
        """Difference the nod positions of every source in the input.

        Parameters
        ----------
        input_data : str, list or ModelContainer
            A spec3 association, or ``_cal`` files or models of one visit.

        Returns
        -------
        ModelContainer
            One model per exposure with the differences (suffix ``_nod``).
        """
        container = open_visit(input_data)
        if container is None:
            container = self.prepare_output(input_data)
        try:
            io.check_visit(container)
        except InputError as err:
            return self.skip_input(container, err)
        groups, problems = self.group_sources(container)
        for index, err in problems.items():
            io.write_skipped(slits_of(container[index]), str(err))
        visit_labels = self._labels(io.exposure_positions(container, self.position_key))
        done = 0
        for g in groups:
            skip = partial(io.skip_group, g)
            done += bool(self.per_source(g.label, partial(self._difference, g, visit_labels), skip))
        # COMPLETE for an exposure with at least one differenced slit
        return self.record_status(container, io.exposure_status, (done, len(groups)), "differenced")

    def default_suffix(self):
        """Suffix of the products: ``nod``."""
        return "nod"

    def _labels(self, values):
        if values is None:
            return None
        return label_positions(
            values, position_key=self.position_key, tolerance=self.position_tolerance
        )

    def _difference(self, group, visit_labels):
        """Difference one source and write the result on its slits."""
        if visit_labels is None:  # positions from the slits' shutter states
            labels = self._labels(io.read_positions(group.members, self.position_key))
        else:
            labels = [visit_labels[ref.exposure] for ref in group.members]
        members = io.check_members(group.members, labels)
        for ref, err in members.skipped:
            log.warning("SKIPPED %s", err)
            io.write_skipped([ref.slit], str(err))
        check_partners(members.positions, self.position_key)
        inputs = io.read_source(members, with_shutters=self.stuck_threshold > 0)
        usable, flags, stuck = mask_pixels(
            inputs.stack.data,
            inputs.stack.variances,
            inputs.stack.dq,
            io.mask_settings(
                failed_open_dilation=self.failed_open_dilation,
                min_bar=self.min_bar,
                edge_pixels=self.edge_pixels,
                stuck_threshold=self.stuck_threshold,
            ),
            barshadow=inputs.barshadow,
            shutter_index=inputs.shutter_index,
        )
        if inputs.trace_rows is None and self.n_sigma_outlier > 0:
            log.warning("%s: no predicted trace from the WCS; outlier rejection off", group.label)
        result = nod_difference(
            inputs.stack.data,
            inputs.stack.variances,
            inputs.positions,
            usable=usable,
            trace_rows=inputs.trace_rows,
            n_sigma_outlier=self.n_sigma_outlier,
            outlier_model_fraction=self.outlier_model_fraction,
            outlier_iterations=self.outlier_iterations,
            wavelengths=inputs.wavelengths,
        )
        io.write_source(inputs, result, mask_flags=flags)
        for shutter in stuck:
            log.info("%s: shutter %d of the slitlet is stuck closed", group.label, shutter)
        log.info(
            "%s: %d exposures at %d nod positions, %d outlier pixels",
            group.label,
            len(inputs.stack.members),
            len(set(inputs.positions.tolist())),
            result.outliers.sum(),
        )
        return True
