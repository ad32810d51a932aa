"""Dataset sources end to end: OpenNeuro (served on 127.0.0.1) and a local BIDS root."""

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers living next to this file

from openneuro_server import FakeOpenNeuro  # noqa: E402
from test_workflow import TINY, pytestmark, snakemake  # noqa: E402, F401

from barista.simulate import simulate_dataset  # noqa: E402

DATASET = "ds009999"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = simulate_dataset(tmp_path_factory.mktemp("bids"), n_subjects=2, n_sessions=1,
                            duration_s=30.0, sfreq=256.0, n_shafts=3, contacts_per_shaft=6)
    files = {p.relative_to(root).as_posix(): p.read_bytes()
             for p in sorted(Path(root).rglob("*")) if p.is_file()}
    fake = FakeOpenNeuro({DATASET: files}, max_keys=7)
    fake.start()
    try:
        yield fake, files
    finally:
        fake.stop()


def test_workflow_downloads_then_processes(served, tmp_path):
    fake, files = served
    config = {**TINY, "dataset": {
        "name": "fromopenneuro", "source": "openneuro",
        "openneuro": {"id": DATASET, "subjects": ["02"], "exclude": ["derivatives/*"],
                      "base_url": fake.base_url, "graphql_url": fake.graphql_url}}}
    snakemake(tmp_path, config=config)
    local = tmp_path / "resources" / "openneuro" / DATASET
    got = {p.relative_to(local).as_posix() for p in local.rglob("*")
           if p.is_file() and ".barista" not in p.parts and p.name != ".snakemake_timestamp"}
    assert got == {f for f in files if not f.startswith(("sub-01/", "derivatives/"))}
    for rel in got:
        assert (local / rel).read_bytes() == files[rel]
    manifest = pd.read_csv(local / ".barista" / "manifest.tsv", sep="\t")
    assert set(manifest["path"]) == got
    recs = pd.read_csv(tmp_path / "results" / "fromopenneuro" / "recordings.tsv", sep="\t",
                       dtype=str)
    assert list(recs["subject"]) == ["02"]
    assert (tmp_path / "results" / "fromopenneuro" / "tokens" / "lobe" / "vocab.parquet").exists()
    # nothing is fetched again on a second run
    n_requests = len(fake.seen)
    snakemake(tmp_path, config=config)
    assert len(fake.seen) == n_requests


def test_local_bids_root_is_used_in_place(tmp_path, tmp_path_factory):
    root = simulate_dataset(tmp_path_factory.mktemp("local"), n_subjects=1, n_sessions=1,
                            duration_s=30.0, sfreq=256.0, n_shafts=3, contacts_per_shaft=6)
    before = sorted(p.relative_to(root) for p in Path(root).rglob("*"))
    config = {**TINY, "dataset": {"name": "mine", "source": "local",
                                  "local": {"bids_root": str(root)}}}
    snakemake(tmp_path, config=config)
    assert (tmp_path / "results" / "mine" / "tokens" / "parcel" / "channels.parquet").exists()
    assert sorted(p.relative_to(root) for p in Path(root).rglob("*")) == before  # untouched
    assert not (tmp_path / "resources").exists()
