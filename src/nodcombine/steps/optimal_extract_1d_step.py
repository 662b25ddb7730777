"""OptimalExtract1dStep: Horne optimal extraction with a path-loss correction."""

import logging

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine import models as adapter
from nodcombine.extract import fit_rectified_profile, optimal_extract, window_bins
from nodcombine.pathloss import slit_transmission
from nodcombine.steps.base import NodcombineStep

__all__ = ["OptimalExtract1dStep"]

log = logging.getLogger(__name__)


class OptimalExtract1dStep(NodcombineStep):
    """Extract each rectified source optimally (Horne 1986) into an ``_x1d`` spectrum.

    The profile is the rectified one of ``rectify`` (a stock jwst ``_s2d``: its
    ``trace_model``, else a Gaussian fitted to the image).  ``FLUX`` is in Jy;
    with ``apply_pathloss`` it is divided by the fraction of a point source of
    the fitted width, at the planned position, that the slit transmits.
    """

    class_alias = "optimal_extract_1d"

    spec = """
    apply_pathloss = boolean(default=True)  # divide FLUX by the profile-based point-source slit transmission; False gives the in-slit flux
    window = float(default=None, min=0.5)  # half-width (pixels from the source) of the extraction; default: half the nod separation, or 4 sigma of a fitted profile
    """  # noqa: E501

    def process(self, input_data):
        """Extract every slit of an ``_s2d`` product.

        Parameters
        ----------
        input_data : str or MultiSlitModel
            ``_s2d`` product (ours or a stock jwst one).

        Returns
        -------
        MultiSpecModel
            One spectrum per source (suffix ``_x1d``).
        """
        # extraction only reads its input: a model passed in is used as is (not
        # copied), and closed only if opened here
        opened = not isinstance(input_data, datamodels.JwstDataModel)
        model = datamodels.open(input_data) if opened else input_data
        try:
            output = adapter.new_multispec(model)
            slits = adapter.slits_of(model)
            for slit in slits:
                spec = self._extract_safely(slit, model)
                if spec is not None:
                    output.spec.append(spec)
        finally:
            if opened:
                model.close()
        log.info("optimal_extract_1d: %d of %d slits extracted", len(output.spec), len(slits))
        output.meta.cal_step.optimal_extract_1d = "COMPLETE" if len(output.spec) else "SKIPPED"
        return output

    def default_suffix(self):
        """Suffix of the product: ``x1d``."""
        return "x1d"

    def _extract_safely(self, slit, model):
        try:
            return self._extract(slit, model)
        except ValueError as err:
            log.warning("SKIPPED %s", err)
        except Exception as err:  # one bad source never stops a visit
            log.exception("SKIPPED slit %s: unexpected %s: %s", slit.name, type(err).__name__, err)
        return None

    def _extract(self, slit, model):
        inputs = adapter.extraction_inputs(slit, model)
        profile, half_width = inputs.profile, self.window
        if profile is None:
            fit = fit_rectified_profile(inputs.data, sum(inputs.variances.values()), inputs.offset)
            profile = fit.profile
            offset = inputs.offset - fit.centre
            half_width = half_width or 4.0 * fit.sigma
            log.info(
                "%s: fitted profile, centre %+.2f px, sigma %.2f px",
                inputs.label,
                fit.centre,
                fit.sigma,
            )
        else:
            offset = inputs.offset
            half_width = half_width or _default_window(inputs.nod_separation)
        usable = inputs.usable & window_bins(offset, inputs.data.shape, half_width=half_width)
        spectrum = optimal_extract(inputs.data, inputs.variances, profile, usable)
        pathloss = None
        if inputs.slit_width_arcsec:
            pathloss = slit_transmission(
                inputs.sigma_arcsec, inputs.x_offset_arcsec, inputs.slit_width_arcsec
            )
        elif self.apply_pathloss:
            log.warning("%s: slit width unknown; no path-loss correction", inputs.label)
        spec = adapter.spec_model(
            slit, inputs, spectrum, pathloss=pathloss, apply_pathloss=self.apply_pathloss
        )
        good = np.isfinite(spectrum.flux)
        log.info(
            "%s: %d of %d bins extracted (window +-%.1f px, profile from %s), median S/N %.1f%s",
            inputs.label,
            int(good.sum()),
            good.size,
            half_width,
            inputs.profile_origin if inputs.profile is not None else "a fit to the image",
            float(np.nanmedian(spectrum.flux / spectrum.error)) if good.any() else 0.0,
            f", path loss {np.nanmedian(pathloss):.3f}" if pathloss is not None else "",
        )
        return spec


def _default_window(nod_separation):
    """Half the nod separation: no bin of the window shares noise with another."""
    return nod_separation / 2.0 if np.isfinite(nod_separation) else 5.0
