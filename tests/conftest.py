"""Shared fixtures. Every test runs headless (offscreen Qt) with a private HEALTHFM_HOME so no
settings, autosaves or databases leak between tests or onto the developer's machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# CI replays the same generated examples every run (a red build is then always reproducible);
# a developer's run explores new ones. Either way every example must pass.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"
TRAINING_DATA = REPO / "models" / "training" / "data"
SAMPLES = REPO / "resources" / "samples"


@pytest.fixture(autouse=True, scope="session")
def _private_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("healthfm_home")
    os.environ["HEALTHFM_HOME"] = str(home)
    yield home


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture
def _orthanc_missing_in_ci():
    pytest.fail("CI must run the PACS tests against a real Orthanc, and its binary is missing (scripts/system-deps.sh installs it)")


@pytest.fixture(scope="module")
def dask_scheduler():
    """The address of a real Dask cluster for one test module: a LocalCluster of 2 worker
    processes of 1 thread on loopback (what `dask scheduler` + `dask worker` give)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=50) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def compute():
    """Settings > Compute for the test: ``compute(address)`` chooses a Dask scheduler ("" = this
    computer); reset to this computer afterwards."""
    from healthfm_desktop.core.cluster import COMPUTE_SETTING
    from healthfm_desktop.controllers.app import open_settings

    settings = open_settings()

    def choose(address: str) -> None:
        settings.setValue(COMPUTE_SETTING, address)
        settings.sync()

    yield choose
    choose("")
