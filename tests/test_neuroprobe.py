"""barista.neuroprobe against the neuroprobe package: its constants, its non-verbal chunks, and
(on a Brain Treebank-shaped dataset) its splits."""

from __future__ import annotations

import importlib.util

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
