"""NodDiffStep: subtract the sky by differencing the exposures of a nod pattern."""

import logging
from functools import partial

from nodcombine import inputchecks
from nodcombine.errors import InputError, RefusedError
from nodcombine.modelio import open_visit
from nodcombine.nod_diff import io
from nodcombine.nod_diff import noddiff as nd
from nodcombine.nod_diff.errorscale import error_scale_setting, nod_difference_with_error_scale
from nodcombine.nod_diff.masks import mask_pixels
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
    detection found by comparing the exposures.  Each exposure's errors are
    scaled by the factor its differences scatter beyond them off the source
    (``error_scale``).
    """

    class_alias = "nod_diff"

    spec = f"""
    output_use_model = boolean(default=True)  # name each _nod product after its input exposure
    position_key = option({", ".join(repr(k) for k in nd.POSITION_KEYS)}, default='auto')  # metadata that identifies nod positions; auto = dither offset along the slit
    position_tolerance = float(default=0.1, min=0)  # arcsec: offsets closer than this are one nod position
    n_sigma_outlier = float(default={nd.DEFAULT_N_SIGMA_OUTLIER}, min=0)  # cross-exposure outlier threshold in sigma; 0 disables
    outlier_model_fraction = float(default={nd.DEFAULT_OUTLIER_MODEL_FRACTION}, min=0)  # fraction of the source model's local spectral structure (lines) added to the outlier threshold
    outlier_iterations = integer(default={nd.DEFAULT_OUTLIER_ITERATIONS}, min=1)  # rounds of outlier rejection
    failed_open_dilation = integer(default=1, min=0)  # pixels by which to grow the MSA_FAILED_OPEN mask
    min_bar = float(default=0.4, min=0, max=1)  # bar-shadow throughput below which pixels are masked
    edge_pixels = integer(default=1, min=0)  # pixels along the slit masked next to the slit edges
    stuck_threshold = float(default=0.3, min=0, max=1)  # MOS: shutter/slitlet light ratio below which a shutter is stuck closed; 0 disables
    error_scale = string(default='auto')  # factor on each exposure's errors: auto = the one measured off the source where it exceeds 1 by > 2 standard errors, none = measure only, or a positive number
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
        self.check_parameters()
        setting = error_scale_setting(self.error_scale)
        container = open_visit(input_data)
        if container is None:
            container = self.prepare_output(input_data)
        try:
            inputchecks.check_visit(container)
        except InputError as err:
            return self.skip_input(container, err)
        inputchecks.check_background_state(container)
        groups, problems = self.group_sources(container)
        for index, err in problems.items():
            io.write_skipped(slits_of(container[index]), str(err))
        visit_labels = self._labels(io.exposure_positions(container, self.position_key))
        done = 0
        for g in self.track(groups):
            work = partial(self._difference, g, visit_labels, setting)
            skip = partial(io.skip_group, g)
            done += bool(self.per_source(g.label, work, skip, model=g.members[0].model))
        # COMPLETE for an exposure with at least one differenced slit
        return self.record_status(container, io.exposure_status, (done, len(groups)), "differenced")

    def check_parameters(self):
        """Refuse non-finite numbers and an ``error_scale`` that is not a setting."""
        super().check_parameters()
        try:
            error_scale_setting(self.error_scale)
        except ValueError as err:
            raise RefusedError(self.class_alias, "error_scale", str(err)) from err

    def default_suffix(self):
        """Suffix of the products: ``nod``."""
        return "nod"

    def _labels(self, values):
        if values is None:
            return None
        return nd.label_positions(
            values, position_key=self.position_key, tolerance=self.position_tolerance
        )

    def _difference(self, group, visit_labels, setting):
        """Difference one source and write the result on its slits."""
        if visit_labels is None:  # positions from the slits' shutter states
            labels = self._labels(io.read_positions(group.members, self.position_key))
        else:
            labels = [visit_labels[ref.exposure] for ref in group.members]
        members = inputchecks.check_members(group.members, labels)
        for ref, err in members.skipped:
            log.warning("SKIPPED %s", err)
            io.write_skipped([ref.slit], str(err))
        try:
            nd.check_partners(members.positions, self.position_key)
        except ValueError as err:  # say why the others were left out
            raise inputchecks.partners_missing(group.label, err, members.skipped) from err
        inputs = io.read_source(members, with_shutters=self.stuck_threshold > 0)
        io.refuse_presubtracted(group.label, inputs)
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
        result, scale = nod_difference_with_error_scale(
            inputs.stack.data,
            inputs.stack.variances,
            inputs.positions,
            error_scale=setting,
            usable=usable,
            trace_rows=inputs.trace_rows,
            n_sigma_outlier=self.n_sigma_outlier,
            outlier_model_fraction=self.outlier_model_fraction,
            outlier_iterations=self.outlier_iterations,
            wavelengths=inputs.wavelengths,
        )
        io.write_source(inputs, result, mask_flags=flags, error_scale=scale)
        io.log_source(group.label, inputs, result, scale, stuck)
        return True
