"""Shared fixtures: one small simulated BIDS iEEG dataset per test session.

Tests that corrupt files work on a copy (``sim_copy``); the shared dataset is never modified.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Tests that change the machine (the SLURM test installs and starts a cluster as root) run only
# when asked for: BARISTA_TEST_MACHINE=1 (.ci/run sets it).
MACHINE_TESTS = os.environ.get("BARISTA_TEST_MACHINE") == "1"


def pytest_collection_modifyitems(config, items):
    if MACHINE_TESTS:
        return
    skip = pytest.mark.skip(reason="changes the machine; opt in with BARISTA_TEST_MACHINE=1")
    for item in items:
        if "machine" in item.keywords:
            item.add_marker(skip)

SIM_ARGS = dict(n_subjects=2, n_sessions=1, duration_s=30.0, sfreq=512.0, line_freq=60.0,
                n_shafts=3, contacts_per_shaft=5, seed=3)


@pytest.fixture(scope="session")
def sim_bids(tmp_path_factory) -> Path:
    """Root of a simulated dataset: 2 subjects x 1 session x 30 s at 512 Hz, 60 Hz line noise.

    Subject 01 has a shaft through the lateral ventricle; every recording has two contacts
    marked bad in channels.tsv. Treat it as read-only.
    """
    from barista.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("sim") / "bids"
    simulate_dataset(root, **SIM_ARGS)
    return root


@pytest.fixture
def sim_copy(sim_bids, tmp_path) -> Path:
    """A private copy of the simulated dataset that a test may corrupt."""
    dest = tmp_path / "bids"
    shutil.copytree(sim_bids, dest)
    return dest



def step_json(step: str, overrides: dict | None = None, scales=()) -> str:
    """The ``--params`` a workflow rule passes to ``step`` for the config ``overrides`` (the
    schema's defaults elsewhere), as barista/steps.py derives it."""
    from barista.config import validate_config
    from barista.steps import step_params

    return step_params(step, validate_config(overrides or {}), scales)
