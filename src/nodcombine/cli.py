"""The ``nodcombine`` command: parameter references and set-up, beside ``strun``.

::

    nodcombine pars jw..._cal.fits                  # which packaged file each step would get
    nodcombine copy-pars nodcombine --for asn.json my_pars.asdf   # a user copy to edit
    nodcombine copy-pars trace_fit --mode nrs_fixedslit my_trace.asdf
    nodcombine extract1d jwst_miri_extract1d_0005.json MIR_LRS-FIXEDSLIT box.asdf
    nodcombine offline ~/crds_offline               # the CRDS variables for running offline
    nodcombine batch visits/ -o reduced             # every visit, on Dask (the survey extra)
    nodcombine batch visits/ -o reduced --scheduler tcp://host:8786 -- --steps.trace_fit.snr_min=5

Single visits run with ``strun`` (``strun nodcombine asn.json``).
"""

import argparse
import shutil
import sys
from pathlib import Path

from nodcombine import offline, parfiles
from nodcombine.parrefs import (
    SELECTION,
    SELECTORS,
    packaged_directory,
    packaged_parameter_file,
    select_mode,
    selection_parameters,
)

__all__ = ["main"]

#: the aliases that have packaged parameter files, in pipeline order
ALIASES = (
    "nod_diff",
    "trace_fit",
    "rectify",
    "optimal_extract_1d",
    "nodcombine",
    "calwebb_spec3_nod",
    "calwebb_spec2_nod",
)


def main(argv=None):
    """Run one subcommand.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0, or 2 for an input the command cannot use.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    strun_args = []
    if argv[:1] == ["batch"] and "--" in argv:  # what follows ``--`` goes to strun
        cut = argv.index("--")
        argv, strun_args = argv[:cut], argv[cut + 1 :]
    parser = _parser()
    args = parser.parse_args(argv)
    args.strun_args = strun_args
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args)


def _parser():
    parser = argparse.ArgumentParser(
        prog="nodcombine",
        description="Parameter references and set-up for the nodcombine steps "
        "(the reductions run with strun: strun nodcombine asn.json).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    pars = commands.add_parser(
        "pars", help="show which packaged parameter file each step gets for an input"
    )
    pars.add_argument("input", help="a _cal file or an association")
    pars.set_defaults(run=_show_pars)

    copy = commands.add_parser("copy-pars", help="write a user copy of a packaged parameter file")
    copy.add_argument("alias", choices=ALIASES, help="step or pipeline")
    which = copy.add_mutually_exclusive_group(required=True)
    which.add_argument("--for", dest="input", help="the input whose file to copy")
    which.add_argument("--mode", choices=[mode for _, mode in SELECTION], help="observing mode")
    copy.add_argument("output", help="the ASDF file to write")
    copy.set_defaults(run=_copy_pars)

    extract = commands.add_parser(
        "extract1d", help="convert a JSON extract1d reference aperture to box parameters"
    )
    extract.add_argument("arguments", nargs=argparse.REMAINDER, help="REFERENCE [APERTURE] OUT")
    extract.set_defaults(run=lambda args: parfiles.main(args.arguments))

    crds = commands.add_parser(
        "offline", help='make a serverless CRDS cache; use: eval "$(nodcombine offline DIR)"'
    )
    crds.add_argument("directory", help="the local CRDS cache (created if needed)")
    crds.set_defaults(run=lambda args: offline.main([args.directory]))
    _add_batch_parser(commands)
    return parser


def _add_batch_parser(commands):
    batch = commands.add_parser(
        "batch",
        help="reduce many visits on Dask (a local cluster, or --scheduler ADDRESS)",
        description="Run strun on every visit, as Dask tasks; arguments after -- go to strun.",
    )
    batch.add_argument("inputs", nargs="+", help="associations, _cal files, or folders of them")
    batch.add_argument("-o", "--output-dir", required=True, help="products: <dir>/<visit>/")
    batch.add_argument(
        "--pipeline", default="nodcombine", help="alias or ASDF parameter file (nodcombine)"
    )
    batch.add_argument("--scheduler", help="address of a running Dask scheduler")
    batch.add_argument(
        "--workers", default="all", help="local worker processes: a count, none, half, all (all)"
    )
    batch.add_argument("--memory-limit", default="auto", help="per local worker (auto)")
    batch.add_argument(
        "--retries", type=int, default=2, help="further starts after a worker died (2)"
    )
    batch.add_argument("--resume", action="store_true", help="skip visits already complete")
    batch.add_argument(
        "--sources-per-task", type=int, default=50,
        help="split MOS visits of more sources into tasks of this many (50; 0: never)",
    )  # fmt: skip
    batch.add_argument("--crds-path", help="serverless CRDS cache when no server is configured")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(run=_run_batch)


def _run_batch(args):
    import logging

    try:
        from nodcombine.batch import run_batch
        from nodcombine.batch.inputs import BatchInputError
    except ImportError as err:  # dask is an extra
        print(f"nodcombine batch needs Dask: pip install 'nodcombine[survey]' ({err})",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("distributed", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("bokeh").setLevel(logging.ERROR)  # the dashboard's host-wildcard notice
    try:
        result = run_batch(
            args.inputs,
            args.output_dir,
            pipeline=args.pipeline,
            strun_args=args.strun_args,
            scheduler=args.scheduler,
            n_workers=args.workers,
            memory_limit=args.memory_limit,
            retries=args.retries,
            resume=args.resume,
            sources_per_task=args.sources_per_task,
            crds_path=args.crds_path,
            show_progress=not args.no_progress,
        )
    except (BatchInputError, ValueError) as err:
        print(f"nodcombine batch: {err}", file=sys.stderr)
        return 2
    print("\n".join(result.summary))
    return 1 if result.failed else 0


def _show_pars(args):
    if not Path(args.input).is_file():
        print(f"{args.input}: no such file", file=sys.stderr)
        return 2
    parameters = selection_parameters(args.input)
    if not parameters:
        print(f"{args.input}: cannot read {', '.join(SELECTORS.values())}", file=sys.stderr)
        return 2
    print(f"{args.input}: " + ", ".join(f"{SELECTORS[k]}={v}" for k, v in parameters.items()))
    for alias in ALIASES:
        path, _ = packaged_parameter_file(alias, parameters)
        print(f"  {alias:20s} {path.name if path else 'none: spec defaults'}")
    if select_mode(parameters) is None:
        print("  no mode of the selection table matches: the steps' spec defaults apply")
    return 0


def _copy_pars(args):
    if args.input and not Path(args.input).is_file():
        print(f"{args.input}: no such file", file=sys.stderr)
        return 2
    if args.input:
        path, _ = packaged_parameter_file(args.alias, selection_parameters(args.input))
    else:
        path, _ = packaged_parameter_file(args.alias, _example_of(args.mode))
    if path is None:
        print(f"no packaged parameter file of {args.alias} for that input", file=sys.stderr)
        return 2
    output = Path(args.output)
    if output.exists():
        print(f"{output} exists; not overwritten", file=sys.stderr)
        return 2
    try:
        shutil.copyfile(path, output)
    except OSError as err:
        print(f"{output}: cannot be written: {err.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {output} (a copy of {path.relative_to(packaged_directory().parent)})")
    print(f"edit it, then: strun {output} <input>")
    return 0


def _example_of(mode):
    """Metadata that select ``mode``: its row's selectors, patterns made concrete."""
    (selectors,) = [selectors for selectors, row_mode in SELECTION if row_mode == mode]
    return {key: pattern.replace("*", "") for key, pattern in selectors.items()}


if __name__ == "__main__":
    raise SystemExit(main())
