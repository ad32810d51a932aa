"""barista.neuroprobe against the neuroprobe package: its constants, its non-verbal chunks, and
(on a Brain Treebank-shaped dataset) its splits."""

from __future__ import annotations

import importlib.util
import json

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
    words = pd.DataFrame({"start": [9.0, 11.0, 11.5, 19.0, 29.8], "end": [9.2, 11.4, 12.0, 19.5,
                                                                         29.9]})
    words_df, nonverbal = npb.derive_alignment(words, timings, n_samples=40960)
    # 9.0 s is before the first trigger, 29.8 s leaves no full 1 s window
    assert list(words_df["original_index"]) == [1, 2, 3]
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
                                   encode_scale="parcel", mask_scale="channel", task=task,
                                   subject=str(s), session=str(t), recording=f"sub-{s}_ses-{t}",
                                   seed=0, split_kind=split, config_hash="x"))
    frames.append(rows({"auroc": 0.9}, model="barista", encode_scale="parcel",
                       mask_scale="channel", task="speech_vs_nonspeech", subject="1",
                       session="1", recording="sub-1_ses-1", seed=0, split_kind="cross_session",
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
    rows = table[(table["split_kind"] == "within_session") & (table["task"] == "speech")
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
