"""NodDiffStep: subtract the sky by differencing the exposures of a nod pattern."""

import logging

import numpy as np

from nodcombine import models as adapter
from nodcombine.masks import MaskSettings, mask_pixels
from nodcombine.noddiff import group_nod_positions, nod_difference
from nodcombine.steps.base import NodcombineStep

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

    spec = """
    output_use_model = boolean(default=True)  # name each _nod product after its input exposure
    position_key = option('auto', 'position_number', 'shutter_state', 'x_offset', 'y_offset', default='auto')  # metadata that identifies nod positions; auto = dither offset along the slit
    position_tolerance = float(default=0.1, min=0)  # arcsec: offsets closer than this are one nod position
    n_sigma_outlier = float(default=5.0, min=0)  # cross-exposure outlier threshold in sigma; 0 disables
    outlier_model_fraction = float(default=0.3, min=0)  # fraction of the source model's local spectral structure (lines) added to the outlier threshold
    outlier_iterations = integer(default=3, min=1)  # rounds of outlier rejection
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
        container = adapter.open_visit(input_data)
        if container is None:
            container = self.prepare_output(input_data)
        problem = adapter.container_problem(container)
        if problem:
            return self._skip(container, problem)
        groups, problems = adapter.group_by_source(container)
        for index, message in problems.items():
            log.warning("SKIPPED %s", message)
            adapter.set_exposure_status(container[index], f"SKIPPED: {message}")
        exposure_labels = self._visit_position_labels(container)
        done = sum(self._difference_group(group, exposure_labels) for group in groups)
        log.info("nod_diff: %d of %d sources differenced", done, len(groups))
        for model in container:
            # COMPLETE for an exposure with at least one differenced slit
            model.meta.cal_step.nod_diff = adapter.exposure_status(model)
        return container

    def default_suffix(self):
        """Suffix of the products: ``nod``."""
        return "nod"

    def _difference_group(self, group, exposure_labels):
        """Difference one source; log and return False if it cannot be done."""
        if exposure_labels is None:
            labels = self._position_labels(group.members)
        else:
            labels = [exposure_labels[ref.exposure] for ref in group.members]
        members, positions = [], []
        for ref, label in zip(group.members, labels, strict=True):
            problem = label if isinstance(label, str) else adapter.check_member(ref)
            if problem:
                log.warning("SKIPPED %s", problem)
                adapter.set_slit_status(ref, f"SKIPPED: {problem}")
            else:
                members.append(ref)
                positions.append(label)
        try:
            positions = _check_partners(np.asarray(positions, dtype=int), self.position_key)
            stack = adapter.stack_source(members, with_shutters=self.stuck_threshold > 0)
            usable, flags, stuck = mask_pixels(
                stack.data,
                stack.variances,
                stack.dq,
                self._mask_settings(),
                barshadow=stack.barshadow,
                shutter_index=stack.shutter_index,
            )
            if stack.trace_rows is None and self.n_sigma_outlier > 0:
                log.warning(
                    "%s: no predicted trace from the WCS; outlier rejection off", group.label
                )
            result = nod_difference(
                stack.data,
                stack.variances,
                positions,
                usable=usable,
                trace_rows=stack.trace_rows,
                n_sigma_outlier=self.n_sigma_outlier,
                outlier_model_fraction=self.outlier_model_fraction,
                outlier_iterations=self.outlier_iterations,
                wavelengths=stack.wavelengths,
            )
        except ValueError as err:
            log.warning("SKIPPED source %s: %s", group.label, err)
            for ref in members:
                adapter.set_slit_status(ref, f"SKIPPED: {err}")
            return False
        adapter.write_differences(stack, result, mask_flags=flags, positions=positions)
        for shutter in stuck:
            log.info("%s: shutter %d of the slitlet is stuck closed", group.label, shutter)
        log.info(
            "%s: %d exposures at %d nod positions, %d outlier pixels",
            group.label,
            len(members),
            np.unique(positions).size,
            result.outliers.sum(),
        )
        return True

    def _visit_position_labels(self, container):
        """Position label (or the reason for none) of every input exposure, by index.

        Dither offsets and position numbers belong to exposures: labelling all of
        them at once keeps a position's label the same whichever exposures or
        slits are skipped later.  ``shutter_state`` belongs to slits: None.
        """
        if self.position_key == "shutter_state":
            return None
        refs = adapter.exposure_refs(container)
        return self._position_labels(refs)

    def _position_labels(self, refs):
        """Nod position label of each slit or exposure, or the reason it has none."""
        values, labels = [], []
        for ref in refs:
            try:
                values.append(adapter.nod_offset(ref, self.position_key))
                labels.append(None)
            except ValueError as err:
                labels.append(str(err))
        if values:
            if self.position_key in ("auto", "x_offset", "y_offset"):
                found = group_nod_positions(values, tolerance=self.position_tolerance)
            else:
                found = np.unique(values, return_inverse=True)[1]
            found = iter(found)
            labels = [int(next(found)) if label is None else label for label in labels]
        return labels

    def _mask_settings(self):
        dq = adapter.DQ
        return MaskSettings(
            do_not_use=dq["DO_NOT_USE"],
            failed_open=dq["MSA_FAILED_OPEN"],
            other_bad=dq["OTHER_BAD_PIXEL"],
            failed_open_dilation=self.failed_open_dilation,
            min_bar=self.min_bar,
            edge_pixels=self.edge_pixels,
            stuck_threshold=self.stuck_threshold,
        )


def _check_partners(positions, position_key):
    """Raise ValueError unless the exposures cover at least two nod positions."""
    if positions.size < 2:
        raise ValueError(f"{positions.size} usable exposure(s); a nod difference needs two")
    if np.unique(positions).size < 2:
        raise ValueError(
            f"all {positions.size} exposures are at one nod position "
            f"({position_key}); there is no partner to difference against"
        )
    return positions
