"""`simulate_nodded_visit`: the seeded simulation of one nodded visit."""

import numpy as np

from nodcombine.simulate.exposures import simulate_slit
from nodcombine.simulate.files import build_exposure_model
from nodcombine.simulate.modes import MODES, nod_offsets
from nodcombine.simulate.options import VisitOptions
from nodcombine.simulate.truth import NodTruth

__all__ = ["simulate_nodded_visit"]


def simulate_nodded_visit(
    mode="nrs_msa_prism",
    *,
    n_slits=1,
    n_points=3,
    exposures_per_position=1,
    source_peak=1.0,
    source_offset_arcsec=0.0,
    source_sigma_arcsec=0.0,
    position_error_arcsec=0.0,
    trace_wobble_pix=(),
    source_xpos=0.0,
    slit_loss=False,
    emission_lines=True,
    sky_scale=1.0,
    noise=True,
    cosmic_ray_fraction=0.0,
    n_snowballs=0,
    stuck_closed_shutter=None,
    failed_open=False,
    jitter_cutouts=False,
    source_profile="psf_law",
    seed=0,
):
    """Simulate the ``_cal`` exposures of one nodded visit.

    Parameters
    ----------
    mode : str or InstrumentMode
        Observing mode, a key of `MODES` (``nrs_msa_prism``, ``nrs_msa_g395m``,
        ``nrs_fs_prism``, ``miri_lrs``).
    n_slits : int
        Slits per exposure (MOS: slitlets, one source each; fixed slit and MIRI
        LRS: must be 1).
    n_points : int
        Nod positions in the pattern.
    exposures_per_position : int
        Exposures (dithers or repeats) at each nod position.
    source_peak : float or sequence of float
        Peak surface brightness of the source continuum at mid-band, MJy/sr, per
        slit; 0 gives an empty slit.
    source_offset_arcsec : float or sequence of float
        Along-slit offset of the source from the shutter (MOS) or slit centre,
        arcsec, per slit.
    source_sigma_arcsec : float or sequence of float
        Intrinsic Gaussian sigma of the source along the slit, arcsec (0 for a
        point source), per slit: the ``s`` of the PSF law
        ``σ(λ)² = σ_PSF(λ)² + s²`` that ``source_profile`` families anchor on.
    position_error_arcsec : float or sequence of float
        True minus planned source position along the slit, arcsec, per slit:
        the source sits at ``source_offset_arcsec + position_error_arcsec``
        while ``source_ypos`` (and so the WCS-predicted trace) says
        ``source_offset_arcsec``, as an astrometric or MSA-placement error does.
    trace_wobble_pix : sequence of float
        Legendre coefficients (degree 0, 1, ...) of a further deviation of the
        true trace from the predicted one, in pixels along the slit (towards
        increasing cutout row, or column for MIRI LRS), of the wavelength scaled
        to −1 … 1 over the mode's range; the same in every slit and exposure.
    source_xpos : float
        Planned (and true) source position across the slit, in slit widths from
        its middle (jwst's ``source_xpos``), the same for every slit.
    slit_loss : bool
        Remove the light an image of the source, at ``source_xpos``, loses
        outside the slit's open width (`SLIT_WIDTH_ARCSEC`); the image is
        separable with the along-slit profile also across the slit (Gaussian
        families integrated numerically, the others by their distribution
        function).  The truth keeps the flux before the loss as ``total_flux``.
    emission_lines : bool
        Add three emission lines to the continuum.
    sky_scale : float
        Multiplier of the mode's sky.
    noise : bool
        Draw photon, read and flat noise; ``False`` writes the expected values
        (with the same variances) for exactness tests.
    cosmic_ray_fraction : float
        Fraction of pixels hit by unflagged cosmic rays in each exposure.
    n_snowballs : int
        Unflagged snowballs per slit and exposure.
    stuck_closed_shutter : int or None
        MOS only: shutter of slit 0 (-1, 0 or +1 relative to the middle one)
        that is stuck closed in every exposure.
    failed_open : bool
        MOS only: light from a failed-open shutter crosses slit 0, flagged
        ``MSA_FAILED_OPEN`` in DQ one row short of its full extent.
    jitter_cutouts : bool
        Shift each exposure's cutout by up to one pixel, as real cutouts differ.
    source_profile : str, SourceProfile, or a list or tuple of them
        Family of the source's profile along the slit, per slit (one for all
        slits, or one per slit): ``psf_law`` (a Gaussian following the width
        law the trace fit assumes; the default, bit for bit what the simulator
        always drew), ``constant``, ``steep``, ``moffat``, ``core_halo`` or
        ``asymmetric``, by name with default parameters or as a `SourceProfile`
        (see `nodcombine.simulate.profiles` for the formulas).  Every profile is
        integrated analytically over the pixels and has unit integral over an
        infinite slit; its centre is its mean.
    seed : int
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    models : list of DataModel
        One model per exposure, in exposure order.
    truth : NodTruth
        What was simulated (`SlitTruth` defines its fluxes, centre and width).
    """
    mode = MODES[mode] if isinstance(mode, str) else mode
    options = VisitOptions.build(
        mode,
        n_slits=n_slits,
        n_points=n_points,
        exposures_per_position=exposures_per_position,
        source_peak=source_peak,
        source_offset_arcsec=source_offset_arcsec,
        source_sigma_arcsec=source_sigma_arcsec,
        position_error_arcsec=position_error_arcsec,
        trace_wobble_pix=trace_wobble_pix,
        source_xpos=source_xpos,
        slit_loss=slit_loss,
        emission_lines=emission_lines,
        sky_scale=sky_scale,
        noise=noise,
        cosmic_ray_fraction=cosmic_ray_fraction,
        n_snowballs=n_snowballs,
        stuck_closed_shutter=stuck_closed_shutter,
        failed_open=failed_open,
        jitter_cutouts=jitter_cutouts,
        source_profile=source_profile,
    )
    rng = np.random.default_rng(seed)
    positions = options.positions()
    offsets = nod_offsets(mode, options.n_points)[positions]
    # slit by slit, each drawing all its exposures' randoms in turn: the order of
    # the draws is what a seed reproduces
    per_slit = [
        simulate_slit(mode, options.slit(k), options, offsets, rng) for k in range(options.n_slits)
    ]
    models, truth_slits = _assemble(mode, options, positions, offsets, per_slit)
    truth = NodTruth(mode=mode, positions=positions, offsets_arcsec=offsets, slits=truth_slits)
    return models, truth


def _assemble(mode, options, positions, offsets, per_slit):
    """Datamodel and slit truths of each exposure from the slits' cutouts.

    ``per_slit[k][i]`` is the `SlitCutout` of slit ``k`` in exposure ``i``.
    """
    models, truth_slits = [], []
    for i, offset in enumerate(offsets):
        cutouts = [slit[i] for slit in per_slit]
        models.append(
            build_exposure_model(
                mode,
                cutouts,
                index=i,
                position=positions[i],
                offset=offset,
                n_points=options.n_points,
            )
        )
        truth_slits.append([cutout.truth for cutout in cutouts])
    return models, truth_slits
