"""OptimalExtract1dStep: Horne optimal extraction with a path-loss correction."""

import logging
from functools import partial

import numpy as np
from stdatamodels.jwst import datamodels

from nodcombine.extract_1d import io
from nodcombine.extract_1d.aperture import APERTURE_PARAMETERS, BACKGROUND_FITS, BoxAperture
from nodcombine.extract_1d.extraction import ExtractionSettings, extract_source
from nodcombine.inputchecks import check_rectified
from nodcombine.parrefs import override_box
from nodcombine.stepbase import NodcombineStep
from nodcombine.visit import slits_of

__all__ = ["BOX_SUFFIX", "OptimalExtract1dStep"]

log = logging.getLogger(__name__)

#: suffix of a box extraction's products, not the optimal one's; still ``*_x1d.fits``
#: (jdaviz's Mosviz and specutils' MIRI MRS loader find 1-D products by name)
BOX_SUFFIX = "box_x1d"


class OptimalExtract1dStep(NodcombineStep):
    """Extract each rectified source optimally (Horne 1986) into an ``_x1d`` spectrum.

    The profile is the rectified one of ``rectify`` (a stock jwst ``_s2d``: its
    ``trace_model``, else a Gaussian fitted to the image).  ``FLUX`` is in Jy;
    with ``apply_pathloss`` it is divided by the fraction of a point source of
    the fitted width, at the planned position, that the slit transmits.

    ``extraction_type='box'`` sums a boxcar aperture instead, given by the keys
    of a JSON ``extract1d`` reference (`nodcombine.extract_1d.aperture`; convert
    a JSON file with ``nodcombine extract1d``, or name it in
    ``override_extract1d``) in the ``_s2d``'s pixels:
    dispersion along x, cross-dispersion along y.  With ``use_source_posn`` the
    aperture and its background regions are moved to centre it on the source.
    """

    class_alias = "optimal_extract_1d"

    spec = f"""
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
    bkg_fit = option({", ".join(repr(f) for f in BACKGROUND_FITS)}, default="poly")  # box: background per column: polynomial, mean or median of the background regions
    bkg_order = integer(default=0, min=0)  # box: order of the polynomial background
    smoothing_length = integer(default=0, min=0)  # box: odd boxcar length smoothing the image along the dispersion before the background fit; 0: none
    independent_var = option("pixel", "wavelength", default="pixel")  # box: variable of src_coeff/bkg_coeff (column index or micron)
    use_source_posn = boolean(default=True)  # box: move the aperture (and background regions) to centre it on the source
    override_extract1d = string(default=None)  # a JSON extract1d reference: its aperture for the input's slit or EXP_TYPE sets the box parameters, over any parameter file
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
        self.check_parameters()
        # a model passed in is only read (not copied), and closed only if opened here
        opened = not isinstance(input_data, datamodels.JwstDataModel)
        model = datamodels.open(input_data) if opened else input_data
        try:
            with self.parameters_changed(override_box(self.override_extract1d, model, type(self))):
                return self._extract_all(model)
        finally:
            if opened:
                model.close()

    def _extract_all(self, model):
        """The spectra of every slit of an ``_s2d`` model."""
        output = io.new_multispec(model)
        try:
            check_rectified(model)
            # checked once for the visit, not once per slit
            aperture = self._aperture() if self.extraction_type == "box" else None
        except ValueError as err:
            return self.skip_input(output, err)
        slits = slits_of(model)
        spectra = [
            self.per_source(f"slit {slit.name}", partial(self._extract, slit, model, aperture))
            for slit in self.track(slits, noun="slits")
        ]
        io.append_spectra(output, spectra)
        self.log_summary((len(output.spec), len(slits)), "extracted")
        output.meta.cal_step.optimal_extract_1d = "COMPLETE" if len(output.spec) else "SKIPPED"
        return output

    def default_suffix(self):
        """Suffix of the product: ``x1d``, or ``box_x1d`` for a box (never the optimal's file)."""
        return BOX_SUFFIX if self.extraction_type == "box" or self.override_extract1d else "x1d"

    def _extract(self, slit, model, aperture):
        inputs = io.read_slit(slit, model)
        result = extract_source(
            **inputs.kernel_arguments(),
            settings=ExtractionSettings(
                apply_pathloss=self.apply_pathloss,
                window=self.window,
                clip_sigma=self.clip_sigma,
                aperture=aperture,
                use_source_posn=self.use_source_posn,
            ),
        )
        for level, note in result.notes:
            log.log(level, "%s: %s", inputs.label, note)
        self._log_spectrum(inputs, result)
        return io.spectrum_entry(slit, inputs, result, apply_pathloss=self.apply_pathloss)

    def _aperture(self):
        """The box aperture of the step's parameters."""
        try:
            return BoxAperture.from_parameters(
                **{name: getattr(self, name) for name in APERTURE_PARAMETERS}
            )
        except ValueError as err:
            raise ValueError(f"{self.class_alias} box parameters: {err}") from err

    @staticmethod
    def _log_spectrum(inputs, result):
        spectrum, pathloss = result.spectrum, result.pathloss
        good = np.isfinite(spectrum.flux)
        log.info(
            "%s: %d of %d bins extracted (%s, profile from %s), median S/N %.1f%s",
            inputs.label,
            int(good.sum()),
            good.size,
            result.extent,
            "a fit to the image" if result.fitted else inputs.profile_origin,
            float(np.nanmedian(spectrum.flux / spectrum.error)) if good.any() else 0.0,
            f", path loss {np.nanmedian(pathloss):.3f}" if pathloss is not None else "",
        )
