"""Test configuration: offline CRDS for every test, shared data and simulated visits."""

import os
from pathlib import Path

import pytest

from nodcombine.offline import configure_offline_crds

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CEERS_DIR = SHARED_DATA / "ceers_933"


def pytest_configure(config):
    # Before any test imports jwst: stpipe and CRDS read these at first use.
    crds_path = Path(os.environ.get("PYTEST_CRDS_PATH", REPO / ".pytest_cache" / "crds"))
    configure_offline_crds(crds_path)


@pytest.fixture(autouse=True)
def _offline_crds(monkeypatch, tmp_path_factory):
    """Keep every test offline even if one changed the environment."""
    crds_path = tmp_path_factory.getbasetemp() / "crds"
    for key, value in configure_offline_crds(crds_path, environ={}).items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def ceers_files():
    files = sorted(CEERS_DIR.glob("*.fits"))
    if len(files) != 3:
        pytest.fail(f"expected the 3 CEERS 933 exposures in {CEERS_DIR}, found {len(files)}")
    return [str(f) for f in files]
