"""Shared fixtures: one small simulated BIDS iEEG dataset per test session.

Tests that corrupt files work on a copy (``sim_copy``); the shared dataset is never modified.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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

