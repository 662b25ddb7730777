"""Run jwst/stpipe without a CRDS server.

``Step.call`` and ``strun`` look up ``pars-*`` parameter references in CRDS, and
jwst's result bookkeeping asks CRDS for its context; offline, CRDS ends the
process with ``sys.exit``.  The settings below make CRDS a local, serverless
cache with an empty context, so that nothing is looked up (DESIGN.md §6).

This module is the one home of those settings.  From a shell::

    eval "$(python -m nodcombine.offline ~/crds_offline)"

writes ``~/crds_offline/config/jwst/server_config`` and sets the variables.
"""

import argparse
import os
import shlex
from pathlib import Path

__all__ = ["OFFLINE_CONTEXT", "configure_offline_crds", "main", "write_server_config"]

OFFLINE_CONTEXT = "jwst_0000.pmap"


def write_server_config(crds_path, *, context=OFFLINE_CONTEXT):
    """Write the minimal CRDS ``server_config`` a serverless cache needs.

    Parameters
    ----------
    crds_path : str or os.PathLike
        Root of the local CRDS cache; ``config/jwst/server_config`` is created in it.
    context : str, optional
        The context named as operational, latest and edit context.

    Returns
    -------
    pathlib.Path
        The path of the file written.
    """
    config_dir = Path(crds_path) / "config" / "jwst"
    config_dir.mkdir(parents=True, exist_ok=True)
    server_config = {
        "observatory": "jwst",
        "operational_context": context,
        "edit_context": context,
        "latest_context": context,
        "mappings": [],
        "bad_files_list": [],
        "force_remote_mode": False,
        "crds_version": {"str": "offline"},
        "last_synced": "offline",
        "reference_url": {"checked": {}, "unchecked": {}},
        "mapping_url": {"checked": {}, "unchecked": {}},
    }
    path = config_dir / "server_config"
    path.write_text(repr(server_config) + "\n")
    return path


def configure_offline_crds(crds_path, *, environ=None):
    """Set the environment so that stpipe and CRDS never contact a server.

    Parameters
    ----------
    crds_path : str or os.PathLike
        Directory for the local CRDS cache (created if needed).
    environ : dict, optional
        Mapping to update; defaults to `os.environ`.

    Returns
    -------
    dict
        The variables that were set.
    """
    environ = os.environ if environ is None else environ
    write_server_config(crds_path)
    settings = {
        "STPIPE_DISABLE_CRDS_STEPPARS": "true",
        "CRDS_MODE": "local",
        "CRDS_PATH": str(crds_path),
        "CRDS_SERVER_URL": "https://jwst-crds-serverless.invalid",
        "CRDS_CONTEXT": OFFLINE_CONTEXT,
    }
    environ.update(settings)
    return settings


def main(argv=None):
    """Write the server configuration under a directory and print the ``export`` lines.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m nodcombine.offline",
        description="Make DIR a serverless CRDS cache and print the environment for it "
        '(use: eval "$(python -m nodcombine.offline DIR)").',
    )
    parser.add_argument("directory", help="the local CRDS cache (created if needed)")
    args = parser.parse_args(argv)
    settings = configure_offline_crds(Path(args.directory).expanduser().resolve(), environ={})
    for key, value in settings.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
