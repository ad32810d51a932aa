"""The Neuroprobe protocol on the Brain Treebank-shaped fixture: our samples and splits are the
neuroprobe package's, sample for sample; the DAG plans every Neuroprobe job and, run end to end,
writes Neuroprobe rows of every model, the leaderboard-style table and figure, and an entry the
submission check accepts. Fixture numbers are not Brain Treebank numbers."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from barista import neuroprobe as npb

REPO = Path(__file__).resolve().parents[1]
SESSIONS = ("1_0", "1_1", "1_2", "2_4")  # 1_0: allowed for pretraining; the others: Lite
TRIALS = {"sub-1_ses-1": (1, 1), "sub-1_ses-2": (1, 2), "sub-2_ses-4": (2, 4)}
TASKS = ["speech", "onset"]
SFREQ = 128.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("neuroprobe") is None,
                       reason=f"needs the neuroprobe package: {npb.INSTALL}"),
]


@pytest.fixture(scope="module")
def btb(tmp_path_factory):
    """The fixture release, its derived alignment tables, and our Neuroprobe segments of its
    three Lite trials (preprocessed at 128 Hz, Laplacian)."""
    import torch

    from barista.braintreebank import Layout, localize_subject, recording_name
    from barista.braintreebank_fixture import make_fixture
    from barista.braintreebank_preprocess import preprocess_trial
    from barista.cli import main
    from barista.config import validate_config
    from barista.steps import step_params

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("np_fixture")
    root = make_fixture(base / "release", sessions=SESSIONS, duration_s=120.0, max_shafts=2)
    align, results = base / "alignment", base / "results"
    cfg = validate_config({"preprocess": {"resample_hz": SFREQ, "line_freq": 60.0},
                           "segments": {"length_s": 2.0, "n_patches": 8, "tasks": []},
                           "neuroprobe": {"tasks": TASKS, "alignment": "derived"}},
                          partial=True)
    rows = []
    for key in SESSIONS:
        s, t = map(int, key.split("_"))
        rows.append({"recording": recording_name(s, t), "subject": str(s), "session": str(t)})
    recordings = base / "recordings.tsv"
    pd.DataFrame(rows).to_csv(recordings, sep="\t", index=False)
    params = step_params("neuroprobe-segment", cfg)
    for s, t in TRIALS.values():
        npb.write_derived_alignment(root, s, t, align)
    for rec, (s, t) in TRIALS.items():
        fif = base / "fif" / f"{rec}_desc-preproc_ieeg.fif"
        fif.parent.mkdir(exist_ok=True)
        preprocess_trial(root, s, t, fif, cfg["preprocess"])
        loc = base / "localization" / f"{rec}.parquet"
        loc.parent.mkdir(exist_ok=True)
        localize_subject(Layout(root), s, [str(t)]).to_parquet(loc)
        assert main(["neuroprobe-segment", "--params", params, "--btb-root", str(root),
                     "--alignment-dir", str(align), "--recording", rec, "--recordings",
                     str(recordings), "--fif", str(fif), "--localization", str(loc),
                     "--out-dir", str(results / "neuroprobe" / "segments" / rec)]) == 0
    return {"root": root, "align": align, "results": results}


def _ours(results: Path, rec: str, task: str, kind: str | None) -> dict[str, list]:
    """(window onset at 128 Hz, label) of each role of split ``kind`` of our segments, as the
    scoring code reads them (None: every sample, a cross-trial training set)."""
    from barista.neuroprobe_protocol import SEGMENTS, _positions

    index = pd.read_parquet(results / SEGMENTS / rec / "index.parquet")
    index = index[index["kind"] == task].sort_values(["recording", "segment"]
                                                     ).reset_index(drop=True)
    pairs = list(zip(np.rint(index["onset_s"] * SFREQ).astype(int), index["label"], strict=True))
    if kind is None:
        return {"train": sorted(pairs)}
    positions = _positions(results, rec, task, kind, index)
    return {role: sorted(pairs[i] for i in pos) for role, pos in positions.items()}


def _theirs(dataset) -> list:
    """(window onset at 128 Hz, label) of a package dataset or Subset, read through its own
    ``__getitem__`` (``output_indices=True``: sample indices of the 2048 Hz file)."""
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        start, _ = item["data"]
        out.append((int(np.rint(start * SFREQ / npb.SAMPLING_RATE)), int(item["label"])))
    return sorted(out)


def test_our_splits_are_the_packages(btb):
    """Every role of every split, fold and task of our segments holds exactly the samples the
    package's generate_splits_* give (and a cross-trial split trains on the whole training
    trial, as the package's train_dataset)."""
    import torch

    pkg = npb.package(btb["root"], btb["align"])
    subjects = {s: pkg.BrainTreebankSubject(s, cache=False, dtype=torch.float32) for s in (1, 2)}
    rec_of = {trial: rec for rec, trial in TRIALS.items()}
    checked = 0
    for rec, (s, t) in TRIALS.items():
        for task in TASKS:
            splits = {"within_session": pkg.generate_splits_within_session(
                subjects[s], t, task, output_indices=True)}
            if s == 1:  # 1_1 and 1_2 train on each other; 2_4's partner 2_0 is absent
                splits["cross_session"] = pkg.generate_splits_cross_session(
                    subjects[s], t, task, output_indices=True)
                splits["cross_subject"] = pkg.generate_splits_cross_subject(
                    subjects, s, t, task, output_indices=True)
            for split, folds in splits.items():
                assert len(folds) == (npb.N_FOLDS if split == "within_session" else 1)
                for k, fold in enumerate(folds):
                    kind = f"within_session{k}" if split == "within_session" else split
                    ours = _ours(btb["results"], rec, task, kind)
                    for role in ("val", "test") + (("train",) if split == "within_session"
                                                   else ()):
                        theirs = _theirs(fold[f"{role}_dataset"])
                        assert theirs, (rec, task, kind, role)
                        assert ours[role] == theirs, (rec, task, kind, role)
                        checked += 1
                    if split != "within_session":
                        train = npb.train_trial(split, s, t)
                        assert _ours(btb["results"], rec_of[train], task, None)["train"] == \
                            _theirs(fold["train_dataset"]), (rec, task, split)
                        checked += 1
    assert checked == 2 * (3 * 3 * 2 + 2 * 2 * 3)  # tasks x (within roles + cross roles)


def test_segments_hold_the_lite_electrodes_and_1s_windows(btb):
    from barista.data import SignalFile

    for rec, (s, _) in TRIALS.items():
        folder = btb["results"] / "neuroprobe" / "segments" / rec
        signal = SignalFile(folder / "signal.parquet")
        assert signal.n_patches * signal.patch_samples == int(SFREQ)  # 1 s
        assert signal.n_patches == 4  # 2 s / 8 patches: 0.25 s patches
        lite = set(npb.package(btb["root"]).config.NEUROPROBE_LITE_ELECTRODES[f"btbank{s}"])
        contacts = pd.read_parquet(folder / "channels.parquet")["contact"]
        assert len(contacts) and set(contacts) <= lite


# --- the DAG ----------------------------------------------------------------------------------

def _config(root: Path, protocols: list[str], tasks: list[str]) -> dict:
    cfg = {
        "dataset": {"name": "nptiny", "source": "braintreebank",
                    "braintreebank": {"root": str(root)}},
        "preprocess": {"resample_hz": SFREQ, "line_freq": 60.0},
        "scales": {"channel": {}, "parcel": {}},
        "segments": {"length_s": 2.0, "n_patches": 8, "tasks": []},
        "model": {"size": "demo", "architectures": ["barista", "rpnt"],
                  "encode_scales": ["parcel"], "mask_scales": ["channel"]},
        "pretrain": {"epochs": 1, "batch_size": 16, "warmup_epochs": 1, "ema_ramp_epochs": 1},
        "rpnt": {"lr": 1e-3, "warmup_epochs": 1},
        "finetune": {"tasks": [], "seeds": [0], "epochs": 2, "batch_size": 16,
                     "warmup_epochs": 1, "patience": 2},
        "reconstruct": {"enabled": False},
        "evaluation": {"sessions": {"pretrain": ["1_0"], "test": ["1_1", "1_2", "2_4"]},
                       "protocols": protocols},
        "neuroprobe": {"tasks": tasks, "alignment": "derived"},
    }
    if "barista" in protocols:
        cfg["segments"]["tasks"] = ["speech_vs_nonspeech"]
        cfg["finetune"]["tasks"] = ["speech_vs_nonspeech"]
        cfg["evaluation"]["settings"] = ["cross_session", "cross_subject"]
    return cfg


def _snakemake(workdir: Path, config: dict, *args: str, target: str = "all") -> str:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory",
                           str(workdir), "--configfile", str(path), "--cores", "2", target,
                           *args], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


needs_snakemake = pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")


@needs_snakemake
def test_dag_plans_every_neuroprobe_job(btb, tmp_path):
    from test_workflow import planned_jobs

    config = _config(btb["root"], ["barista", "neuroprobe"], TASKS)
    _snakemake(tmp_path, config, target="recordings")
    jobs = planned_jobs(_snakemake(tmp_path, config, "-n"))
    # 3 Lite trials; within-session tests all 3, cross-session 1_1 and 1_2 (2_4's partner
    # 2_0 is absent), cross-subject 1_1 and 1_2: 7 splits x 2 tasks, for each of the 3
    # encoders (barista parcel-channel, rpnt, random init parcel) and the linear floor
    assert {k: v for k, v in jobs.items() if "neuroprobe" in k} == {
        "neuroprobe_alignment": 3, "neuroprobe_segment": 3, "neuroprobe_finetune": 3 * 7 * 2,
        "neuroprobe_linear": 7 * 2, "fig_neuroprobe": 1, "neuroprobe_table": 1}
    # the study's own protocol: one job per encoder (all its tasks, recordings and seeds)
    assert jobs["finetune:barista"] == 1 and jobs["linear_baseline"] == 1


@needs_snakemake
def test_released_encoders_join_the_neuroprobe_jobs(btb, tmp_path):
    """finetune.barista_release adds the authors' encoder of each encode scale to the encoders
    the protocol scores (at their geometry: 2048 Hz, 3 s x 12 patches, so 1 s is 4 patches)."""
    from test_workflow import planned_jobs

    config = _config(btb["root"], ["neuroprobe"], ["speech"])
    config["preprocess"]["resample_hz"] = None
    config["segments"].update(length_s=3.0, n_patches=12)
    config["finetune"]["barista_release"] = True
    _snakemake(tmp_path, config, target="recordings")
    jobs = planned_jobs(_snakemake(tmp_path, config, "-n"))
    assert jobs["neuroprobe_finetune"] == 4 * 7  # barista, rpnt, random init, the release
    assert jobs["download_release"] == 1  # the parcel-scale encoder


@needs_snakemake
def test_end_to_end_writes_neuroprobe_rows_of_every_model(btb, tmp_path):
    from barista.cli import main
    from barista.leaderboard import validate_submission

    _snakemake(tmp_path, _config(btb["root"], ["neuroprobe"], ["speech"]))
    res = tmp_path / "results" / "nptiny"
    table = pd.read_parquet(res / "decoding.parquet")
    assert set(table["protocol"]) == {"neuroprobe"}
    auroc = table[table["metric"] == "auroc"]
    expected = {("within_session", "sub-1_ses-1"), ("within_session", "sub-1_ses-2"),
                ("within_session", "sub-2_ses-4"), ("cross_session", "sub-1_ses-1"),
                ("cross_session", "sub-1_ses-2"), ("cross_subject", "sub-1_ses-1"),
                ("cross_subject", "sub-1_ses-2")}
    for model in ("barista", "rpnt", "random_init", "linear"):
        mine = auroc[auroc["model"] == model]
        assert set(zip(mine["setting"], mine["recording"], strict=True)) == expected, model
    assert auroc["value"].between(0, 1).all()
    overlap = table[table["metric"] == "pretrained_on_benchmark"]
    assert (overlap["value"] == 0).all()  # pretrained on 1_0 alone
    figures = res / "figures"
    for name in ("neuroprobe_leaderboard.png", "neuroprobe_leaderboard.pdf",
                 "neuroprobe_table.md", "neuroprobe_table.csv"):
        assert (figures / name).exists(), name
    md = (figures / "neuroprobe_table.md").read_text()
    assert "*published*" in md and "this run: nptiny" in md and "RPNT" in md
    out = tmp_path / "leaderboard"
    assert main(["neuroprobe-submission", "--decoding", str(res / "decoding.parquet"),
                 "--out", str(out), "--model", "rpnt",
                 "--model-name", "RPNT fixture", "--description", "fixture run, not Brain "
                 "Treebank", "--author", "Ada Lovelace", "--organization", "barista",
                 "--organization-url", "https://example.org", "--partial"]) == 0
    entry = next(out.iterdir())
    assert validate_submission(entry, complete=False) == []
    assert {p.name for p in entry.iterdir()} >= {"Within-Session", "Cross-Session",
                                                 "Cross-Subject", "metadata.json"}
