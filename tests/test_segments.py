import mne
import numpy as np
import pandas as pd
import pytest

from barista import segments
from barista.data import SignalFile
from barista.errors import ConfigError, DataError

SFREQ = 100.0


def words_table():
    # speech 10-14 s (words every 0.5 s), silence, speech 30-33 s
    onsets = np.r_[np.arange(10, 14, 0.5), np.arange(30, 33, 0.5)]
    sentence = np.zeros(len(onsets), int)
    sentence[[0, 4, 8]] = 1
    return pd.DataFrame({"onset": onsets, "duration": 0.3, "sentence_onset": sentence})


def test_speech_onsets_follow_silence():
    got = segments.speech_onsets(words_table(), silence_s=1.0)
    np.testing.assert_allclose(got, [10.0, 30.0])
    # with a tiny silence requirement, every word follows a 0.2 s gap
    assert len(segments.speech_onsets(words_table(), silence_s=0.1)) == len(words_table())


def test_word_free_windows():
    grid = segments.grid_onsets(int(60 * SFREQ), 200)
    free = segments.word_free(grid, 200, SFREQ, words_table())
    starts = grid / SFREQ
    for s, f in zip(starts, free, strict=True):
        overlaps = any((s < w + 0.3) and (w < s + 2) for w in words_table()["onset"])
        assert f == (not overlaps)


def test_plan_windows_balanced_centred_and_seeded():
    words = words_table()
    n_total, n_window = int(60 * SFREQ), 200
    plan = segments.plan_windows(n_total, SFREQ, n_window, words,
                                 ["speech_vs_nonspeech", "sentence_onset"], 1.0, (0, "rec"))
    idx = plan.index
    speech = idx[idx["kind"] == "speech_vs_nonspeech"]
    assert (speech["label"] == 1).sum() == (speech["label"] == 0).sum() == 2
    pos_onsets = plan.onsets[speech.loc[speech["label"] == 1, "segment"]] / SFREQ
    np.testing.assert_allclose(np.sort(pos_onsets + 1.0), [10.0, 30.0])  # centred on the word
    sentence = idx[idx["kind"] == "sentence_onset"]
    assert (sentence["label"] == 1).sum() == 3
    negatives = plan.onsets[sentence.loc[sentence["label"] == 0, "segment"]]
    assert segments.word_free(negatives, n_window, SFREQ, words).all()
    pretrain = idx[idx["kind"] == "pretrain"]
    assert len(pretrain) == 30 and (pretrain["label"] == -1).all()
    again = segments.plan_windows(n_total, SFREQ, n_window, words,
                                  ["speech_vs_nonspeech", "sentence_onset"], 1.0, (0, "rec"))
    pd.testing.assert_frame_equal(idx, again.index)


def test_random_split_fractions_stratified_and_deterministic():
    index = pd.DataFrame({"kind": "t", "segment": np.arange(200), "label": np.arange(200) % 2})
    split = segments.random_split(index, {"train": 0.8, "val": 0.1, "test": 0.1}, (0, "r"))
    counts = split.groupby("role").size()
    assert counts.to_dict() == {"test": 20, "train": 160, "val": 20}
    merged = split.merge(index, on=["kind", "segment"])
    assert (merged.groupby("role")["label"].mean() == 0.5).all()
    again = segments.random_split(index, {"train": 0.8, "val": 0.1, "test": 0.1}, (0, "r"))
    pd.testing.assert_frame_equal(split, again)
    other = segments.random_split(index, {"train": 0.8, "val": 0.1, "test": 0.1}, (1, "r"))
    assert not split["role"].equals(other["role"])


def test_chronological_folds_never_leak():
    length, duration = 2.0, 100.0
    onsets = np.arange(0, 98.5, 0.5)  # overlapping windows, the hard case
    index = pd.DataFrame({"kind": "t", "segment": np.arange(len(onsets)), "label": 0})
    folds = segments.chronological_folds(index, onsets, length, duration, 5, 4.0)
    for k in range(5):
        fold = folds[folds["split"] == f"chrono{k}"]
        start = onsets[fold["segment"].to_numpy()]
        role = fold["role"].to_numpy()
        test, train = start[role == "test"], start[role == "train"]
        assert len(test) and len(train)
        assert test.min() >= k * 20 and test.max() + length <= (k + 1) * 20
        gap = np.abs(train[:, None] - test[None, :])
        assert gap.min() >= length + 4.0 - 1e-9  # buffer between any train and test sample


def test_window_samples_must_split_into_patches():
    assert segments.window_samples(3.0, 12, 2048.0) == 6144
    with pytest.raises(ConfigError, match="segments.n_patches"):
        segments.window_samples(2.0, 7, 256.0)


def test_read_words_errors(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    pd.DataFrame({"onset": [1.0], "duration": [0.1], "trial_type": ["tone"]}).to_csv(
        path, sep="\t", index=False)
    with pytest.raises(DataError, match="no word events"):
        segments.read_words(path, need_sentences=False)
    pd.DataFrame({"onset": [1.0], "duration": [0.1], "trial_type": ["word"]}).to_csv(
        path, sep="\t", index=False)
    with pytest.raises(DataError, match="sentence_onset"):
        segments.read_words(path, need_sentences=True)
    with pytest.raises(DataError, match="no events file"):
        segments.read_words(tmp_path / "missing.tsv", need_sentences=False)


def test_signal_round_trip_zscored(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 5000)) * [[1.0], [5.0], [0.0]] + [[2.0], [0.0], [1.0]]
    raw = mne.io.RawArray(data, mne.create_info(["A1", "A2", "A3"], SFREQ, "seeg"),
                          verbose="error")
    onsets = np.array([0, 100, 1000, 4800])
    meta = {"channels": ["A1", "A2", "A3"], "n_patches": 4, "patch_samples": 50,
            "windows_per_row_group": segments.WINDOWS_PER_ROW_GROUP}
    path = tmp_path / "signal.parquet"
    segments.write_signal(raw, ["A1", "A2", "A3"], onsets, 200, path, meta)
    signal = SignalFile(path)
    for i, o in enumerate(onsets):
        window = signal.window(i)
        assert window.shape == (3, 4, 50) and window.dtype == np.float32
        flat = window.reshape(3, 200)
        np.testing.assert_allclose(flat[:2], segments.zscore(data[:2, o:o + 200]), atol=1e-5)
        np.testing.assert_allclose(flat[:2].mean(1), 0, atol=1e-5)
        np.testing.assert_allclose(flat[:2].std(1), 1, atol=1e-4)
        assert np.all(flat[2] == 0)  # flat channel: zeros, not NaN
