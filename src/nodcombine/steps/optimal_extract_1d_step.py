"""OptimalExtract1dStep: Horne optimal extraction with a path-loss correction."""

import json
import logging

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine import models as adapter
from nodcombine.boxcar import BoxAperture, boxcar_extract
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

    ``extraction_type='box'`` sums a boxcar aperture instead, given by the keys
    of a JSON ``extract1d`` reference (`nodcombine.boxcar`; convert a JSON file
    with ``nodcombine-extract1d``) in the ``_s2d``'s pixels: dispersion along x,
    cross-dispersion along y.  With ``use_source_posn`` the aperture and its
    background regions are moved so that the aperture is centred on the source.
    """

    class_alias = "optimal_extract_1d"

    spec = """
    apply_pathloss = boolean(default=True)  # divide FLUX by the profile-based point-source slit transmission; False gives the in-slit flux
    window = float(default=None, min=0.5)  # half-width (pixels from the source) of the extraction; default: half the nod separation, or 4 sigma of a fitted profile
    clip_sigma = float(default=5.0, min=0)  # optimal: drop bins deviating from the profile model by more than this many sigma (Horne 1986), at most 3 per column; 0: none
    extraction_type = option("optimal", "box", default="optimal")  # Horne optimal extraction, or a boxcar aperture set by the JSON extract1d keys below
    xstart = float(default=None)  # box: first column (dispersion), inclusive; default 0
    xstop = float(default=None)  # box: last column, inclusive; default the last
    ystart = float(default=None)  # box: first row (cross-dispersion), inclusive; default 0
    ystop = float(default=None)  # box: last row, inclusive; default the last
    extract_width = float(default=None, min=0)  # box: rows of the aperture, centred on (ystart + ystop) / 2
    src_coeff = list(default=None)  # box: lower/upper edge polynomials of source regions, alternating, constant term first
    bkg_coeff = list(default=None)  # box: lower/upper edge polynomials of background regions; given, a background is fitted and subtracted
    bkg_fit = option("poly", "mean", "median", default="poly")  # box: background per column: polynomial, mean or median of the background regions
    bkg_order = integer(default=0, min=0)  # box: order of the polynomial background
    smoothing_length = integer(default=0, min=0)  # box: odd boxcar length smoothing the image along the dispersion before the background fit; 0: none
    independent_var = option("pixel", "wavelength", default="pixel")  # box: variable of src_coeff/bkg_coeff (column index or micron)
    use_source_posn = boolean(default=True)  # box: move the aperture (and background regions) to centre it on the source
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
            try:
                # checked once for the visit, not once per slit
                aperture = self._aperture() if self.extraction_type == "box" else None
            except ValueError as err:
                return self._skip(output, str(err))
            slits = adapter.slits_of(model)
            spectra = [self._extract_safely(slit, model, aperture) for slit in slits]
            # added to the tree, not through the model: validating the growing
            # list at each append is slower than the extraction; the product
            # is validated when saved
            output.instance.setdefault("spec", []).extend(
                spec.instance for spec in spectra if spec is not None
            )
        finally:
            if opened:
                model.close()
        log.info("optimal_extract_1d: %d of %d slits extracted", len(output.spec), len(slits))
        output.meta.cal_step.optimal_extract_1d = "COMPLETE" if len(output.spec) else "SKIPPED"
        return output

    def default_suffix(self):
        """Suffix of the product: ``x1d``."""
        return "x1d"

    def _extract_safely(self, slit, model, aperture):
        try:
            return self._extract(slit, model, aperture)
        except ValueError as err:
            log.warning("SKIPPED %s", err)
        except Exception as err:  # one bad source never stops a visit
            log.exception("SKIPPED slit %s: unexpected %s: %s", slit.name, type(err).__name__, err)
        return None

    def _extract(self, slit, model, aperture):
        inputs = adapter.extraction_inputs(slit, model)
        profile, offset, fitted = self._profile(inputs, box=aperture is not None)
        pathloss = self._slit_transmission(inputs) if profile is not None else None
        if aperture is not None:
            return self._box(slit, inputs, aperture, profile, offset, pathloss, fitted is not None)
        half_width = self.window or (
            4.0 * fitted.sigma if fitted else _default_window(inputs.nod_separation)
        )
        usable = inputs.usable & window_bins(offset, inputs.data.shape, half_width=half_width)
        spectrum = optimal_extract(
            inputs.data, inputs.variances, profile, usable, clip_sigma=self.clip_sigma
        )
        if spectrum.rejected.any():
            log.info(
                "%s: %d bins rejected as outliers (> %.1f sigma)",
                inputs.label,
                int(spectrum.rejected.sum()),
                self.clip_sigma,
            )
        spec = adapter.spec_model(
            slit, inputs, spectrum, pathloss=pathloss, apply_pathloss=self.apply_pathloss
        )
        self._log_spectrum(
            inputs, spectrum, pathloss, f"window +-{half_width:.1f} px", fitted is not None
        )
        return spec

    def _profile(self, inputs, *, box):
        """The source profile, its row offsets, and the fit it came from (or None).

        A stock ``_s2d`` without a profile gets a Gaussian fitted to the image;
        a fixed box needs it only for its aperture correction, so there a
        failed fit costs the path-loss correction, not the spectrum.
        """
        if inputs.profile is not None or (
            box and not self.use_source_posn and not self.apply_pathloss
        ):
            return inputs.profile, inputs.offset, None
        try:
            fitted = fit_rectified_profile(
                inputs.data, sum(inputs.variances.values()), inputs.offset
            )
        except ValueError:
            if not box or self.use_source_posn:
                raise
            log.warning("%s: no profile could be fitted; no path-loss correction", inputs.label)
            return None, inputs.offset, None
        log.info(
            "%s: fitted profile, centre %+.2f px, sigma %.2f px",
            inputs.label,
            fitted.centre,
            fitted.sigma,
        )
        return fitted.profile, inputs.offset - fitted.centre, fitted

    def _box(self, slit, inputs, aperture, profile, offset, pathloss, fitted):
        shape = inputs.data.shape
        if self.use_source_posn:
            source_row = float(np.interp(0.0, offset, np.arange(shape[0])))
            shift = source_row - aperture.centre(shape, inputs.wavelength)
            aperture = aperture.shifted(shift, shape[0])
            log.info("%s: box aperture moved by %+.2f rows onto the source", inputs.label, shift)
        _warn_on_negative_images(inputs, aperture, offset)
        spectrum = boxcar_extract(
            inputs.data, inputs.variances, inputs.usable, inputs.wavelength, aperture
        )
        # a box holds the profile inside it: that is the (profile-based) aperture loss
        inside = np.full(shape[1], np.nan)
        if profile is not None:
            inside = np.nansum(spectrum.weights * np.nan_to_num(profile), axis=0)
        if pathloss is not None:
            pathloss = pathloss * inside
        spec = adapter.spec_model(
            slit,
            inputs,
            spectrum,
            pathloss=pathloss,
            apply_pathloss=self.apply_pathloss,
            extras={"aperture_profile_fraction": [float(v) for v in inside]},
        )
        lower, upper = spectrum.limits[:2]
        self._log_spectrum(inputs, spectrum, pathloss, f"box rows {lower:.1f}-{upper:.1f}", fitted)
        return spec

    def _aperture(self):
        """The box aperture of the step's parameters."""
        try:
            return BoxAperture(
                xstart=self.xstart,
                xstop=self.xstop,
                ystart=self.ystart,
                ystop=self.ystop,
                extract_width=self.extract_width,
                src_coeff=_coefficients(self.src_coeff),
                bkg_coeff=_coefficients(self.bkg_coeff),
                bkg_fit=self.bkg_fit,
                bkg_order=self.bkg_order,
                smoothing_length=self.smoothing_length,
                independent_var=self.independent_var,
            )
        except ValueError as err:
            raise ValueError(f"{self.class_alias} box parameters: {err}") from err

    def _slit_transmission(self, inputs):
        if inputs.slit_width_arcsec:
            return slit_transmission(
                inputs.sigma_arcsec, inputs.x_offset_arcsec, inputs.slit_width_arcsec
            )
        if self.apply_pathloss:
            log.warning("%s: slit width unknown; no path-loss correction", inputs.label)
        return None

    @staticmethod
    def _log_spectrum(inputs, spectrum, pathloss, extent, fitted):
        good = np.isfinite(spectrum.flux)
        log.info(
            "%s: %d of %d bins extracted (%s, profile from %s), median S/N %.1f%s",
            inputs.label,
            int(good.sum()),
            good.size,
            extent,
            "a fit to the image" if fitted else inputs.profile_origin,
            float(np.nanmedian(spectrum.flux / spectrum.error)) if good.any() else 0.0,
            f", path loss {np.nanmedian(pathloss):.3f}" if pathloss is not None else "",
        )


def _warn_on_negative_images(inputs, aperture, offset):
    """Warn when background regions hold a negative image of the nod differences."""
    weights = aperture.background_weights(inputs.data.shape, inputs.wavelength)
    if weights is None or not np.isfinite(inputs.nod_separation):
        return
    rows = weights.max(axis=1) > 0
    near = np.abs(np.abs(offset[rows]) - inputs.nod_separation) < 2.0
    if near.any():
        log.warning(
            "%s: box background regions reach the negative nod images (%.1f px from the "
            "source); the background will be biased low and the flux high",
            inputs.label,
            inputs.nod_separation,
        )


def _coefficients(value):
    """``src_coeff``/``bkg_coeff`` as given in ASDF (lists) or on the command line (JSON)."""
    if isinstance(value, str):
        value = json.loads(value)
    if value is not None and all(isinstance(v, str) for v in value):
        # configobj splits "[[1, 2], [3, 4]]" given on the command line at the commas
        value = json.loads(",".join(value))
    return value


def _default_window(nod_separation):
    """Half the nod separation: no bin of the window shares noise with another."""
    return nod_separation / 2.0 if np.isfinite(nod_separation) else 5.0
