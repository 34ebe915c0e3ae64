import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports Prefect: keep its state inside the test run and offline.
_prefect_home = tempfile.mkdtemp(prefix="misr-prefect-")
os.environ.setdefault("PREFECT_HOME", _prefect_home)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.helpers import REPO  # noqa: E402  (after the environment is set)


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """A copy of the repository's params.yaml in a scratch folder."""
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    return target


@pytest.fixture
def small_synth():
    """A synth config small enough for unit tests."""
    from tests.helpers import params

    synth = [
        "data.synth.scenario=shift",
        "data.synth.n_clips={train: 60, valid: 20, test: 20}",
        "data.synth.audio_frames=[4, 12]",
        "data.synth.visual_frames=[5, 9]",
    ]
    return params(*synth).data.synth


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect API for the whole session (starting one is slow); most tests never need it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
