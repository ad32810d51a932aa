"""barista.neuroprobe against the neuroprobe package: its constants, its non-verbal chunks, and
(on a Brain Treebank-shaped dataset) its splits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barista import neuroprobe as npb
from barista.errors import ConfigError

needs_package = pytest.mark.skipif(importlib.util.find_spec("neuroprobe") is None,
                                   reason=f"needs the neuroprobe package: {npb.INSTALL}")


@pytest.fixture(scope="module")
def package_config(tmp_path_factory):
    """neuroprobe.config, imported the way barista does it."""
    return npb.package(tmp_path_factory.mktemp("btb")).config


@needs_package
def test_constants_are_the_packages(package_config):
    c = package_config
    assert npb.SAMPLING_RATE == c.SAMPLING_RATE
    assert npb.N_FOLDS == c.NEUROPROBE_LITE_N_FOLDS
    assert list(npb.LITE_SUBJECT_TRIALS) == [tuple(x) for x in c.NEUROPROBE_LITE_SUBJECT_TRIALS]
    assert list(npb.FULL_SUBJECT_TRIALS) == [tuple(x) for x in c.NEUROPROBE_FULL_SUBJECT_TRIALS]
    assert npb.CROSS_SUBJECT_TRAIN == (c.DS_DM_TRAIN_SUBJECT_ID, c.DS_DM_TRAIN_TRIAL_ID)
    assert npb.TASKS == c.NEUROPROBE_TASKS_MAPPING
    assert {k: tuple(v) for k, v in c.NEUROPROBE_LONGEST_TRIALS_FOR_SUBJECT.items()} \
        == npb.LONGEST_TRIALS
    # the leaderboard's 1 s window: 0 s before to 1 s after the onset
    assert (c.START_NEURAL_DATA_BEFORE_WORD_ONSET, c.END_NEURAL_DATA_AFTER_WORD_ONSET) == \
        (0, npb.WINDOW_S)
    assert c.NEURAL_DATA_NONVERBAL_WINDOW_PADDING_TIME == npb.NONVERBAL_PAD_AFTER_WORD_S
    assert c.NEURAL_DATA_NONVERBAL_WINDOW_OVERLAP * npb.WINDOW_S == npb.NONVERBAL_STEP_S


def test_training_trial_of_each_split_type():
    assert npb.train_trial("within_session", 1, 1) is None
    assert npb.train_trial("cross_session", 1, 1) == (1, 2)
    assert npb.train_trial("cross_session", 2, 4) == (2, 0)
    assert npb.train_trial("cross_subject", 7, 0) == (2, 4)
    assert npb.train_trial("cross_session", 1, 0, lite=False) == (1, 1)  # longest is tested
    with pytest.raises(ConfigError, match="never tests subject 2"):
        npb.train_trial("cross_subject", 2, 0)
    with pytest.raises(ConfigError, match="single trial"):
        npb.train_trial("cross_session", 5, 0, lite=False)


def test_evaluated_needs_the_training_trial():
    present = [(1, 1), (1, 2), (2, 4), (3, 0), (6, 0)]  # 6_0 is not in Lite
    assert npb.evaluated(present, "within_session") == [(1, 1), (1, 2), (2, 4), (3, 0)]
    assert npb.evaluated(present, "cross_session") == [(1, 1), (1, 2)]  # 2_0, 3_1 absent
    assert npb.evaluated(present, "cross_subject") == [(1, 1), (1, 2), (3, 0)]
    assert npb.evaluated([(1, 1), (3, 0)], "cross_subject") == []  # 2_4 absent


@needs_package
def test_nonverbal_chunks_rebuild_every_table_of_the_package():
    """The rule derive_alignment uses for a dataset's own tables is the one behind the package's
    tables of the real recordings: all 26 are rebuilt exactly from their word tables."""
    folder = npb.bundled_alignment_dir()
    words = sorted(folder.glob("subject*_words_df.csv"))
    assert len(words) == len(npb.FULL_SUBJECT_TRIALS)
    for path in words:
        theirs = pd.read_csv(str(path).replace("_words_df", "_nonverbal_df"))
        ours = npb.nonverbal_chunks(pd.read_csv(path))
        assert len(ours) == len(theirs), path.name
        np.testing.assert_array_equal(ours["est_idx"], theirs["est_idx"].astype(np.int64))
        np.testing.assert_array_equal(ours["est_end_idx"], theirs["est_end_idx"])
        np.testing.assert_allclose(ours["start"], theirs["start"], atol=1e-9)


def test_derive_alignment_interpolates_the_triggers():
    timings = pd.DataFrame({"movie_time": [10.0, 20.0, 30.0], "index": [0, 20480, 40960]})
    words = pd.DataFrame({"start": [9.0, 11.0, 11.5, np.nan, 19.0, 29.8],
                          "end": [9.2, 11.4, 12.0, np.nan, 19.5, 29.9]})
    words_df, nonverbal = npb.derive_alignment(words, timings, n_samples=40960)
    # 9.0 s is before the first trigger, row 3 was never timed, 29.8 s leaves no 1 s window
    assert list(words_df["original_index"]) == [1, 2, 4]
    assert list(words_df["est_idx"]) == [2048, 3072, 18432]
    # a gap 12.0 -> 19.0 s (7 s): chunks from 14.0 s every 0.5 s, ending by 16.0 s
    assert list(nonverbal["start"] + 10.0) == [14.0, 14.5, 15.0]


# --- the leaderboard entry -------------------------------------------------------------------

def _decoding(tasks, trials=npb.LITE_SUBJECT_TRIALS, overlap=0):
    """A decoding table with Neuroprobe rows of one model (and a barista-protocol row)."""
    from barista.evaluation import rows

    frames = []
    rng = np.random.default_rng(0)
    for split in npb.SPLIT_TYPES:
        n_folds = npb.N_FOLDS if split == "within_session" else 1
        for s, t in trials:
            if split == "cross_subject" and s == npb.CROSS_SUBJECT_TRAIN[0]:
                continue
            for task in tasks:
                metrics = {"auroc": 0.7, "pretrained_on_benchmark": overlap}
                for k in range(n_folds):
                    metrics[f"test_roc_auc_fold{k}"] = float(rng.uniform(0.5, 0.9))
                    metrics[f"test_accuracy_fold{k}"] = 0.6
                frames.append(rows(metrics, protocol="neuroprobe", model="barista",
                                   variant="paper", pretrain_seed=0, encode_scale="parcel",
                                   mask_scale="channel", task=task,
                                   subject=str(s), session=str(t), recording=f"sub-{s}_ses-{t}",
                                   seed=0, setting=split, config_hash="x"))
    frames.append(rows({"auroc": 0.9}, model="barista", variant="paper", pretrain_seed=0,
                       encode_scale="parcel",
                       mask_scale="channel", task="speech_vs_nonspeech", subject="1",
                       session="1", recording="sub-1_ses-1", seed=0, setting="cross_session",
                       config_hash="x"))
    return pd.concat(frames, ignore_index=True)


ENTRY = dict(model="barista", encode="parcel", mask="channel", model_name="BaRISTA parcel",
             description="BaRISTA, parcel encoding, channel masking", author="Ada Lovelace",
             organization="barista", organization_url="https://example.org", timestamp=0)


def test_submission_of_every_task_validates(tmp_path):
    from barista.leaderboard import validate_submission, write_submission

    table = _decoding(list(npb.TASKS))
    entry = write_submission(table, tmp_path, **ENTRY)
    assert entry.name == "BaRISTA_parcel_Ada_Lovelace_1_1_1970"
    assert validate_submission(entry) == []
    body = json.loads((entry / "Within-Session" / "population_speech.json").read_text())
    assert set(body["evaluation_results"]) == {npb.session_key(*x)
                                               for x in npb.LITE_SUBJECT_TRIALS}
    folds = body["evaluation_results"]["btbank3_1"]["population"]["one_second_after_onset"]
    assert folds["time_bin_end"] == 1.0 and len(folds["folds"]) == 2
    rows = table[(table["setting"] == "within_session") & (table["task"] == "speech")
                 & (table["subject"] == "3") & (table["session"] == "1")]
    value = rows.loc[rows["metric"] == "test_roc_auc_fold1", "value"].item()
    assert folds["folds"][1]["test_roc_auc"] == value
    cross = json.loads((entry / "Cross-Subject" / "population_onset.json").read_text())
    assert "btbank2_4" not in cross["evaluation_results"]
    assert len(cross["evaluation_results"]["btbank1_1"]["population"]
               ["one_second_after_onset"]["folds"]) == 1


def test_validation_finds_what_the_benchmark_refuses(tmp_path):
    from barista.leaderboard import validate_submission, write_submission

    entry = write_submission(_decoding(["speech", "onset"], trials=[(1, 1), (2, 4)]), tmp_path,
                             **ENTRY)
    problems = validate_submission(entry)
    assert any("no population file for tasks" in p and "volume" in p for p in problems)
    assert any("missing" in p and "btbank10_1" in p for p in problems)
    assert validate_submission(entry, complete=False) == []  # --partial
    path = entry / "Within-Session" / "population_speech.json"
    body = json.loads(path.read_text())
    fold = body["evaluation_results"]["btbank1_1"]["population"]["one_second_after_onset"]
    fold["folds"][0]["test_roc_auc"] = 1.5
    body["evaluation_results"]["btbank6_0"] = body["evaluation_results"]["btbank1_1"]
    path.write_text(json.dumps(body))
    (entry / "metadata.json").write_text(json.dumps({"model_name": "x"}))
    (entry / "ATTESTATION.txt").write_text("I agree.\n")
    problems = validate_submission(entry, complete=False)
    assert any("test_roc_auc 1.5" in p for p in problems)
    assert any("btbank6_0" in p and "not Neuroprobe-Lite" in p for p in problems)
    assert any("metadata.json: field 'author' missing" in p for p in problems)
    assert any("two SIGN" in p for p in problems)


def test_a_model_pretrained_on_the_benchmark_is_refused(tmp_path):
    from barista.errors import BaristaError
    from barista.leaderboard import write_submission

    table = _decoding(list(npb.TASKS), overlap=3)
    with pytest.raises(BaristaError, match="pretrained on 3 Neuroprobe subject-trial"):
        write_submission(table, tmp_path, **ENTRY)
    entry = write_submission(table, tmp_path, **ENTRY, allow_overlap=True)
    assert "pretrained on 3 Neuroprobe" in (entry / "ATTESTATION.txt").read_text()


def test_submission_command(tmp_path):
    from barista.cli import main

    table = _decoding(["speech", "onset"])
    table.to_parquet(tmp_path / "decoding.parquet")
    args = ["neuroprobe-submission", "--decoding", str(tmp_path / "decoding.parquet"),
            "--out", str(tmp_path / "leaderboard"), "--model", "barista", "--encode", "parcel",
            "--mask", "channel", "--model-name", "BaRISTA", "--description", "d", "--author",
            "Ada Lovelace", "--organization", "o", "--organization-url", "https://example.org"]
    assert main(args) == 1  # 13 tasks missing
    assert main([*args, "--partial"]) == 0
    entry = next((tmp_path / "leaderboard").iterdir())
    assert sorted(p.name for p in (entry / "Cross-Session").iterdir()) == [
        "population_onset.json", "population_speech.json"]


def test_leaderboard_table_puts_ours_beside_the_published_rows():
    from barista.leaderboard import leaderboard_table, markdown, published, wide

    assert len(published()) == 6 * 3 * 2
    table = leaderboard_table(_decoding(["speech", "onset"], trials=[(1, 1), (1, 2), (2, 4)]),
                              "this run: fixture")
    ours = table[table["source"] == "this run: fixture"]
    assert set(ours["model"]) == {"BaRISTA parcel/channel"}
    assert ours.set_index(["split_type", "task"])["n_trials"].to_dict()[
        ("cross_subject", "speech")] == 2
    grid = wide(table)
    assert grid.index[0] == ("published", "Linear, Laplacian + spectrogram")
    assert grid.loc[("published", "BrainBERT (frozen)"), ("within_session", "speech")] == 0.611
    text = markdown(table, "fixture")
    assert "*published*" in text and "not Brain Treebank numbers" in text


# --- scoring on hand-made Neuroprobe segments ------------------------------------------------

SFREQ, N_WINDOW, PATCH = 128.0, 128, 32  # 1 s windows of 4 patches


def _write_trial(root, rec, subject, names, n, seed, roles):
    """A Neuroprobe segments folder of one trial: label-1 samples carry 20 Hz on the channels
    whose name ends in 2; ``roles``: split -> role per sample."""
    import mne

    from barista import segments

    rng = np.random.default_rng(seed)
    labels = np.tile([1, 0], n // 2)  # the package interleaves the classes
    data = rng.standard_normal((len(names), N_WINDOW * n))
    t = np.arange(N_WINDOW) / SFREQ
    for w in np.flatnonzero(labels):
        for c, name in enumerate(names):
            if name.endswith("2"):
                data[c, w * N_WINDOW:(w + 1) * N_WINDOW] += 1.5 * np.sin(2 * np.pi * 20 * t)
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "seeg"), verbose="error")
    out = root / "neuroprobe" / "segments" / rec
    out.mkdir(parents=True)
    onsets = segments.grid_onsets(raw.n_times, N_WINDOW)
    meta = {"recording": rec, "sfreq": SFREQ, "n_patches": N_WINDOW // PATCH,
            "patch_samples": PATCH, "windows_per_row_group": segments.WINDOWS_PER_ROW_GROUP,
            "channels": names}
    segments.write_signal(raw, names, onsets, N_WINDOW, out / "signal.parquet", meta)
    pd.DataFrame({"recording": rec, "subject": subject, "session": "0", "kind": "speech",
                  "segment": np.arange(n), "onset_s": onsets / SFREQ, "label": labels,
                  "sample": np.arange(n)}).to_parquet(out / "index.parquet")
    pd.concat([pd.DataFrame({"recording": rec, "kind": "speech", "segment": np.arange(n),
                             "split": kind, "role": role, "sample": np.arange(n)})
               for kind, role in roles.items()]).to_parquet(out / "splits.parquet")
    x = np.linspace(-40, -20, len(names))
    pd.DataFrame({"recording": rec, "subject": subject, "session": "0", "channel": names,
                  "contact": names, "x": x, "y": 0.0, "z": 0.0, "hemisphere": "L",
                  "parcel": "P", "lobe": "temporal"}).to_parquet(out / "channels.parquet")
    return out / "channels.parquet"


@pytest.fixture(scope="module")
def np_results(tmp_path_factory):
    """Trials A (subject 1), B (subject 1, one channel fewer), C (subject 2, other names)."""
    from barista.tokens import write_tokens

    root = tmp_path_factory.mktemp("np_results")
    n = 48
    half, quarter = n // 2, n // 4
    within = {f"within_session{k}": np.array(["train"] * n, dtype=object) for k in range(2)}
    for k in range(2):  # KFold(2): fold k tests half k; its first half validates
        lo = k * half
        within[f"within_session{k}"][lo:lo + half] = ["val"] * quarter + ["test"] * quarter
    cross = np.array(["val"] * half + ["test"] * half, dtype=object)
    tables = [
        _write_trial(root, "sub-1_ses-1", "1", ["A1", "A2", "A3", "B1", "B2"], n, 0,
                     {**within, "cross_session": cross, "cross_subject": cross}),
        _write_trial(root, "sub-1_ses-2", "1", ["A1", "A2", "B1", "B2"], n, 1, within),
        _write_trial(root, "sub-2_ses-4", "2", ["C1", "C2", "C3"], n, 2, within),
    ]
    write_tokens(tables, "channel", {}, root / "tokens" / "channel")
    return root


def test_splits_of_and_patches():
    from barista.neuroprobe_protocol import patches_of, splits_of

    assert splits_of("within_session") == ["within_session0", "within_session1"]
    assert splits_of("cross_subject") == ["cross_subject"]
    assert patches_of(2048, 512) == 4  # the paper's patches: 1 s is 4 of them
    with pytest.raises(ConfigError, match="does not split into patches"):
        patches_of(2048, 600)


@pytest.mark.parametrize("split_type,train", [("within_session", None),
                                              ("cross_session", "sub-1_ses-2"),
                                              ("cross_subject", "sub-2_ses-4")])
def test_linear_floor_on_each_split_type(np_results, split_type, train):
    from barista.neuroprobe_protocol import evaluate_linear

    m = evaluate_linear(np_results, task="speech", split_type=split_type,
                        recording="sub-1_ses-1", train_recording=train)
    n_folds = 2 if split_type == "within_session" else 1
    assert m["n_folds"] == n_folds
    assert m["auroc"] == pytest.approx(np.mean([m[f"test_roc_auc_fold{k}"]
                                                for k in range(n_folds)]))
    assert m["auroc"] > 0.9  # 20 Hz on the '2' channels: every split type sees it
    assert m["n_test_fold0"] == 12 if n_folds == 2 else m["n_test_fold0"] == 24
    assert 0 <= m["train_accuracy_fold0"] <= 1


@pytest.mark.parametrize("split_type,train,pooled", [("within_session", None, False),
                                                     ("cross_session", "sub-1_ses-2", False),
                                                     ("cross_subject", "sub-2_ses-4", True)])
def test_encoder_built_for_12_patches_decodes_4(np_results, split_type, train, pooled):
    """A model of 12 patches per window scores 1 s windows of 4 (rotary positions 0..3);
    cross-session keeps the channels both trials have, cross-subject pools channels."""
    import torch

    from barista.models import BaristaEncoder, preset
    from barista.neuroprobe_protocol import evaluate_encoder

    torch.set_num_threads(1)  # a tiny model: more threads only contend
    from barista.training.finetune import FinetuneConfig

    torch.manual_seed(0)
    encoder = BaristaEncoder(preset("demo", patch_samples=PATCH, n_patches=12,
                                    encode_scale="channel", vocab_size=16))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = FinetuneConfig(epochs=25, batch_size=8, warmup_epochs=1, patience=25, freeze="none",
                         lr_pretrained=1e-3, lr_head=1e-2)
    out = evaluate_encoder(np_results, encoder, task="speech", split_type=split_type,
                           recording="sub-1_ses-1", train_recording=train, cfg=cfg,
                           device=torch.device("cpu"))
    m = out["metrics"]
    assert m["n_folds"] == (2 if split_type == "within_session" else 1)
    assert m["auroc"] > 0.9  # the 20 Hz of label-1 samples, found in every split type
    assert m["auroc"] == pytest.approx(np.mean([m[f"test_roc_auc_fold{k}"]
                                                for k in range(m["n_folds"])]))
    assert 0 <= m["test_accuracy_fold0"] <= 1
    assert set(out["curve"]["fold"]) == set(range(m["n_folds"]))
    # every fold started from the same weights, and the caller's encoder is left as it was
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_channel_subset_of_a_dataset(np_results):
    from barista.data import SegmentDataset

    ds = SegmentDataset(np_results, "speech", encode_scale="channel", split=None,
                        recordings=["sub-1_ses-1"], segments="neuroprobe/segments",
                        channels=["B2", "A1"])
    sample = ds[0]
    assert sample["x"].shape == (2, 4, PATCH) and ds.channel_names("sub-1_ses-1") == ["B2", "A1"]
    full = SegmentDataset(np_results, "speech", encode_scale="channel", split=None,
                          recordings=["sub-1_ses-1"], segments="neuroprobe/segments")
    assert np.array_equal(sample["x"][0], full[0]["x"][4])
    assert sample["spatial_id"].tolist() == full[0]["spatial_id"][[4, 0]].tolist()
    from barista.errors import DataError
    with pytest.raises(DataError, match="no channel"):
        SegmentDataset(np_results, "speech", encode_scale="channel", split=None,
                       recordings=["sub-1_ses-2"], segments="neuroprobe/segments",
                       channels=["A3"])


def test_protocol_config():
    from barista.config import validate_config

    with pytest.raises(ConfigError, match="needs dataset.source 'braintreebank'"):
        validate_config({"evaluation": {"protocols": ["barista", "neuroprobe"]}})
    with pytest.raises(ConfigError, match="neuroprobe.tasks"):
        validate_config({"neuroprobe": {"tasks": ["speech", "syntax"]}})
    cfg = validate_config({})
    assert cfg["evaluation"]["protocols"] == ["barista"]
    assert cfg["neuroprobe"] == {"lite": True, "tasks": ["speech", "onset"], "split_types": [
        "within_session", "cross_session", "cross_subject"], "alignment": "package"}


def test_pretraining_on_benchmark_trials_is_counted(tmp_path):
    """The benchmark forbids pretraining (or validating pretraining) on its trials: each such
    trial counts, the others do not; a random-init encoder saw none."""
    from types import SimpleNamespace

    from barista.cli import _pretrained_on_benchmark

    recs = tmp_path / "recordings.tsv"
    pd.DataFrame({"recording": ["sub-1_ses-0", "sub-1_ses-1", "sub-2_ses-0", "sub-2_ses-4"],
                  "subject": ["1", "1", "2", "2"], "session": ["0", "1", "0", "4"]}
                 ).to_csv(recs, sep="\t", index=False)
    cfg = {"evaluation": {"sessions": {"pretrain": ["1_0", "1_1"], "validation": ["2_0"],
                                       "test": ["2_4"]}},
           "neuroprobe": {"lite": True}}
    count = _pretrained_on_benchmark(SimpleNamespace(model="barista", recordings=recs), cfg)
    assert count == 2  # 1_1 pretrained, 2_0 validated; 1_0 is allowed
    assert _pretrained_on_benchmark(SimpleNamespace(model="random_init", recordings=recs),
                                    cfg) == 0


OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "official"


@pytest.mark.skipif(not (OFFICIAL / "parcels_chans.ckpt").exists(),
                    reason="needs the released checkpoints in ../shared/official")
def test_released_encoder_scores_neuroprobe_windows(tmp_path):
    """The authors' parcel encoder (3 s x 12 patches of 512 at 2048 Hz) reads a 1 s window as 4
    of its patches, with its own parcel ids of the channels (cross-session: both trials')."""
    import shutil as sh
    from types import SimpleNamespace

    import mne
    import torch

    from barista import segments
    from barista.cli import _finetune_config, _neuroprobe_release
    from barista.neuroprobe_protocol import evaluate_encoder

    torch.set_num_threads(1)
    sfreq, n = 2048.0, 16
    rng = np.random.default_rng(0)
    parcels = ["G_temp_sup-Lateral", "S_temporal_sup", "G_temporal_middle"]
    for rec, names in (("sub-1_ses-1", ["A1", "A2", "A3"]), ("sub-1_ses-2", ["A1", "A2"])):
        out = tmp_path / "neuroprobe" / "segments" / rec
        out.mkdir(parents=True)
        raw = mne.io.RawArray(rng.standard_normal((len(names), 2048 * n)),
                              mne.create_info(names, sfreq, "seeg"), verbose="error")
        onsets = segments.grid_onsets(raw.n_times, 2048)
        meta = {"recording": rec, "sfreq": sfreq, "n_patches": 4, "patch_samples": 512,
                "windows_per_row_group": segments.WINDOWS_PER_ROW_GROUP, "channels": names}
        segments.write_signal(raw, names, onsets, 2048, out / "signal.parquet", meta)
        pd.DataFrame({"recording": rec, "subject": "1", "session": rec[-1], "kind": "speech",
                      "segment": np.arange(n), "onset_s": onsets / sfreq,
                      "label": np.tile([1, 0], n // 2), "sample": np.arange(n)}
                     ).to_parquet(out / "index.parquet")
        pd.DataFrame({"recording": rec, "kind": "speech", "segment": np.arange(n),
                      "split": "cross_session", "role": ["val"] * 8 + ["test"] * 8,
                      "sample": np.arange(n)}).to_parquet(out / "splits.parquet")
        pd.DataFrame({"recording": rec, "subject": "1", "session": rec[-1], "channel": names,
                      "contact": names, "x": -50.0, "y": 0.0, "z": 0.0, "hemisphere": "L",
                      "kind": "cortex", "parcel": parcels[:len(names)]}
                     ).to_parquet(out / "channels.parquet")
    sh.copy(OFFICIAL / "parcels_chans.ckpt", tmp_path / "parcels_chans.ckpt")
    args = SimpleNamespace(results=tmp_path, recording="sub-1_ses-1",
                           train_recording="sub-1_ses-2", model="barista_release",
                           encode="parcel", pretrained=str(tmp_path / "parcels_chans.ckpt"))
    release = _neuroprobe_release(args)
    assert set(release[1]) == {"sub-1_ses-1", "sub-1_ses-2"}
    assert (release[1]["sub-1_ses-1"] > 0).all()  # every parcel is in the release's table
    cfg = {"finetune": {"epochs": 1, "batch_size": 8, "warmup_epochs": 1, "patience": 1},
           "model": {"device": "cpu"}, "evaluation": {"cv_val_fraction": 0.1}}
    (encoder, spatial_ids), ft_cfg = release, _finetune_config(cfg, 0)
    out = evaluate_encoder(tmp_path, encoder, task="speech", split_type="cross_session",
                           recording="sub-1_ses-1", train_recording="sub-1_ses-2", cfg=ft_cfg,
                           device=torch.device("cpu"), spatial_ids=spatial_ids)
    assert out["metrics"]["n_test_fold0"] == 8 and 0 <= out["metrics"]["auroc"] <= 1
    from barista.errors import BaristaError

    with pytest.raises(BaristaError, match="not the released lobe-scale encoder"):
        _neuroprobe_release(SimpleNamespace(**{**vars(args), "encode": "lobe"}))
