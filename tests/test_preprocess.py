"""Preprocessing of the simulated recordings: notch, re-reference, band-pass, resample, output.

Expected values are computed here by hand (scipy notch, contact arithmetic, channels.tsv read
with pandas), never with barista's own helpers, so a bug in those helpers fails a test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from mne_bids import get_entities_from_fname, read_raw_bids
from scipy import signal

from barista.bids import bids_path_of, list_recordings
from barista.config import validate_config
from barista.preprocess import (
    derivative_path,
    notch_frequencies,
    preprocess_recording,
    write_dataset_description,
)

REC = "sub-01_ses-01_task-listen_run-01"
SFREQ = 512.0
LINE = 60.0


def params(**overrides) -> dict:
    return validate_config({"preprocess": overrides})["preprocess"]


def run(root: Path, out_dir: Path, recording: str = REC, **overrides):
    """Preprocess one recording; returns (raw FIF read back, sidecar record)."""
    out = derivative_path(out_dir, recording)
    record = preprocess_recording(bids_path_of(root, recording), out, params(**overrides))
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    return raw, record


def channels_tsv(root: Path, recording: str = REC) -> pd.DataFrame:
    sub, ses = re.match(r"sub-(\w+?)_ses-(\w+?)_", recording).groups()
    path = root / f"sub-{sub}" / f"ses-{ses}" / "ieeg" / f"{recording}_channels.tsv"
    return pd.read_csv(path, sep="\t")


def split_name(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    return m.group(1), int(m.group(2))


def band_power(x: np.ndarray, sfreq: float, lo: float, hi: float) -> np.ndarray:
    """Power per channel in [lo, hi] Hz from a Welch PSD with 0.5 Hz resolution."""
    freqs, psd = signal.welch(x, sfreq, nperseg=int(2 * sfreq), axis=-1)
    mask = (freqs >= lo) & (freqs <= hi)
    assert mask.sum() >= 2
    return psd[:, mask].sum(axis=1)


def db(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 10 * np.log10(a / b)


@pytest.fixture(scope="module")
def raw_in(sim_bids):
    """The raw recording as mne-bids reads it (volts), with its bad channels removed."""
    raw = read_raw_bids(bids_path_of(sim_bids, REC), verbose="error")
    raw.load_data()
    return raw


@pytest.fixture(scope="module")
def good_names(sim_bids):
    table = channels_tsv(sim_bids)
    return [n for n, s in zip(table["name"], table["status"], strict=True) if s != "bad"]


@pytest.fixture(scope="module")
def out_none(sim_bids, tmp_path_factory):
    """Notched data without re-referencing, as written and read back."""
    return run(sim_bids, tmp_path_factory.mktemp("none"), reference="none")


@pytest.fixture(scope="module")
def out_laplacian(sim_bids, tmp_path_factory):
    return run(sim_bids, tmp_path_factory.mktemp("lap"))


def test_notch_frequencies():
    assert notch_frequencies(60, 512) == [60, 120, 180, 240]
    # a harmonic exactly at Nyquist cannot be notched
    assert notch_frequencies(50, 500) == [50, 100, 150, 200]
    assert notch_frequencies(60, 2048) == [60.0 * k for k in range(1, 18)]
    assert notch_frequencies(50, 256) == [50, 100]
    assert notch_frequencies(60, 100) == []


def test_line_noise_removed_neighbouring_bands_kept(raw_in, good_names, out_none):
    raw, record = out_none
    assert raw.ch_names == good_names
    x = raw_in.get_data(picks=good_names)
    y = raw.get_data()
    assert record["NotchFrequencies"] == [60.0, 120.0, 180.0, 240.0]
    for f0 in (LINE, 2 * LINE):
        peak_in = band_power(x, SFREQ, f0 - 0.5, f0 + 0.5)
        # the test only means something when the input has a clear line peak
        assert np.all(db(peak_in, band_power(x, SFREQ, f0 - 9, f0 - 7)) > 6)
        assert np.all(db(band_power(y, SFREQ, f0 - 0.5, f0 + 0.5), peak_in) < -20), f0
    for lo, hi in ((LINE - 10, LINE - 6), (LINE + 6, LINE + 10)):
        change = db(band_power(y, SFREQ, lo, hi), band_power(x, SFREQ, lo, hi))
        assert np.all(np.abs(change) < 1.0), (lo, hi, change)


def test_notch_equals_scipy_cascade(raw_in, good_names, out_none):
    """Reference 'none' output = second-order IIR notch (Q 30) at each harmonic, zero phase."""
    x = raw_in.get_data(picks=good_names)
    for f0 in (60.0, 120.0, 180.0, 240.0):
        b, a = signal.iirnotch(f0, 30.0, fs=SFREQ)
        x = signal.filtfilt(b, a, x, axis=-1)
    y = out_none[0].get_data()
    scale = np.abs(x).max()
    # one cascade vs one filtfilt per notch: identical filters, different edge padding, so
    # compare away from the first and last 3 s
    edge = int(3 * SFREQ)
    np.testing.assert_allclose(y[:, edge:-edge], x[:, edge:-edge], rtol=0,
                               atol=1e-6 * scale)  # float32 on disk


def test_laplacian_is_contact_minus_mean_of_neighbours(out_none, out_laplacian, good_names):
    notched, _ = out_none
    lap, record = out_laplacian
    good = set(good_names)
    expected = []
    for name in good_names:
        shaft, k = split_name(name)
        if f"{shaft}{k - 1}" in good and f"{shaft}{k + 1}" in good:
            expected.append(name)
    assert lap.ch_names == expected
    assert 0 < len(expected) < len(good_names)
    x = notched.get_data()
    idx = {n: i for i, n in enumerate(notched.ch_names)}
    y = lap.get_data()
    for row, name in enumerate(expected):
        shaft, k = split_name(name)
        want = x[idx[name]] - 0.5 * (x[idx[f"{shaft}{k - 1}"]] + x[idx[f"{shaft}{k + 1}"]])
        np.testing.assert_allclose(y[row], want, rtol=0, atol=1e-6 * np.abs(x).max())
    assert record["ChannelsWithoutReference"] == sorted(good - set(expected))
    assert [c["anchor"] for c in record["Channels"]] == expected


def test_bad_channels_dropped_recorded_and_not_used_as_neighbours(sim_bids, out_laplacian):
    lap, record = out_laplacian
    table = channels_tsv(sim_bids)
    bads = sorted(table.loc[table["status"] == "bad", "name"])
    assert len(bads) == 2
    assert sorted(record["BadChannelsDropped"]) == bads
    assert not set(bads) & set(lap.ch_names)
    for ch in record["Channels"]:
        assert not set(bads) & set(ch["weights"]), ch
    sidecar = json.loads(derivative_path(Path(lap.filenames[0]).parents[3], REC)
                         .with_suffix(".json").read_text())
    assert sorted(sidecar["BadChannelsDropped"]) == bads
    assert sidecar["Reference"] == "laplacian"


def test_resample_to_256(sim_bids, tmp_path, out_none):
    raw, record = run(sim_bids, tmp_path, reference="none", resample_hz=256)
    full = out_none[0]
    assert raw.info["sfreq"] == 256.0
    assert raw.n_times == full.n_times // 2 == 15360 // 2
    assert record["SamplingFrequency"] == 256.0
    assert record["OriginalSamplingFrequency"] == SFREQ
    # the spectrum below the new Nyquist is kept ...
    for lo, hi in ((2, 8), (10, 40), (65, 100)):
        change = db(band_power(raw.get_data(), 256, lo, hi),
                    band_power(full.get_data(), SFREQ, lo, hi))
        assert np.all(np.abs(change) < 0.5), (lo, hi, change)
    # ... and the samples are not shifted in time: low-passed, they line up with every other one
    a = mne.filter.filter_data(full.get_data(), SFREQ, None, 30.0, verbose="error")[:, ::2]
    b = mne.filter.filter_data(raw.get_data(), 256, None, 30.0, verbose="error")
    mid = slice(512, -512)
    err = np.abs(a[:, mid] - b[:, mid]).max() / np.abs(a[:, mid]).max()
    assert err < 0.02


def test_bipolar(sim_bids, tmp_path, out_none, good_names):
    raw, record = run(sim_bids, tmp_path, reference="bipolar")
    good = set(good_names)
    pairs = []
    for name in good_names:
        shaft, k = split_name(name)
        if f"{shaft}{k + 1}" in good:
            pairs.append((name, f"{shaft}{k + 1}"))
    assert raw.ch_names == [f"{a}-{b}" for a, b in pairs]
    x, idx = out_none[0].get_data(), {n: i for i, n in enumerate(out_none[0].ch_names)}
    want = np.stack([x[idx[a]] - x[idx[b]] for a, b in pairs])
    np.testing.assert_allclose(raw.get_data(), want, rtol=0, atol=1e-6 * np.abs(x).max())
    assert [c["anchor"] for c in record["Channels"]] == [a for a, _ in pairs]


def test_common_average(sim_bids, tmp_path, out_none, good_names):
    raw, _ = run(sim_bids, tmp_path, reference="car")
    assert raw.ch_names == good_names
    x = out_none[0].get_data()
    want = x - x.mean(axis=0, keepdims=True)
    np.testing.assert_allclose(raw.get_data(), want, rtol=0, atol=1e-6 * np.abs(x).max())
    np.testing.assert_allclose(raw.get_data().mean(axis=0), 0, atol=1e-6 * np.abs(x).max())


def test_bandpass(sim_bids, tmp_path, out_none):
    raw, record = run(sim_bids, tmp_path, reference="none", bandpass=[70.0, 120.0])
    assert record["Bandpass"] == [70.0, 120.0]
    x, y = out_none[0].get_data(), raw.get_data()
    assert np.all(db(band_power(y, SFREQ, 2, 40), band_power(x, SFREQ, 2, 40)) < -20)
    assert np.all(db(band_power(y, SFREQ, 160, 200), band_power(x, SFREQ, 160, 200)) < -20)
    assert np.all(np.abs(db(band_power(y, SFREQ, 85, 105), band_power(x, SFREQ, 85, 105))) < 1)


def test_output_fif_positions_line_freq_and_types(sim_bids, raw_in, out_laplacian, tmp_path):
    lap, _ = out_laplacian
    assert lap.info["line_freq"] == LINE
    assert set(lap.get_channel_types()) == {"seeg"}
    electrodes = pd.read_csv(
        sim_bids / "sub-01/ses-01/ieeg/sub-01_ses-01_space-MNI152NLin2009aSym_electrodes.tsv",
        sep="\t").set_index("name")
    src = {ch["ch_name"]: ch for ch in raw_in.info["chs"]}
    for ch in lap.info["chs"]:
        np.testing.assert_allclose(ch["loc"][:3], src[ch["ch_name"]]["loc"][:3], atol=1e-7)
        # and those are the electrodes.tsv millimetres, in metres
        np.testing.assert_allclose(ch["loc"][:3] * 1000,
                                   electrodes.loc[ch["ch_name"], ["x", "y", "z"]].to_numpy(float),
                                   atol=1e-3)
        assert ch["coord_frame"] == src[ch["ch_name"]]["coord_frame"]
    # a bipolar channel sits at its first contact, also after resampling
    bip, _ = run(sim_bids, tmp_path, reference="bipolar", resample_hz=256)
    for ch in bip.info["chs"]:
        anchor = ch["ch_name"].split("-")[0]
        np.testing.assert_allclose(ch["loc"][:3], src[anchor]["loc"][:3], atol=1e-7)


def test_every_recording_preprocesses(sim_bids, tmp_path):
    recordings = list_recordings(sim_bids)
    assert recordings == [REC, "sub-02_ses-01_task-listen_run-01"]
    raw, record = run(sim_bids, tmp_path, recordings[1])
    assert raw.n_times == 15360 and len(raw.ch_names) > 0
    assert record["Sources"][0].endswith("sub-02_ses-01_task-listen_run-01_ieeg.vhdr")


def test_line_freq_from_config_overrides_sidecar(sim_bids, tmp_path):
    _, record = run(sim_bids, tmp_path, line_freq=50.0, reference="none")
    assert record["PowerLineFrequency"] == 50.0
    assert record["NotchFrequencies"] == [50.0, 100.0, 150.0, 200.0, 250.0]


def test_dataset_description(sim_bids, tmp_path):
    deriv = tmp_path / "derivatives" / "barista-preproc"
    path = write_dataset_description(deriv, sim_bids)
    assert path == deriv / "dataset_description.json"
    desc = json.loads(path.read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["BIDSVersion"]
    assert desc["GeneratedBy"][0]["Name"] == "barista"
    assert desc["GeneratedBy"][0]["Version"]
    assert desc["SourceDatasets"] == [{"URL": sim_bids.resolve().as_uri()}]


def test_derivative_path(tmp_path):
    got = derivative_path(tmp_path, REC)
    assert got == (tmp_path / "sub-01" / "ses-01" / "ieeg"
                   / "sub-01_ses-01_task-listen_run-01_desc-preproc_ieeg.fif")
    ents = get_entities_from_fname(got.name)
    assert ents["description"] == "preproc" and ents["task"] == "listen"
    no_session = derivative_path(tmp_path, "sub-07_task-film_acq-clinical_run-2")
    assert no_session == (tmp_path / "sub-07" / "ieeg"
                          / "sub-07_task-film_acq-clinical_run-2_desc-preproc_ieeg.fif")


def test_no_temporary_files_left(out_laplacian):
    folder = Path(out_laplacian[0].filenames[0]).parent
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{REC}_desc-preproc_ieeg.fif", f"{REC}_desc-preproc_ieeg.json"]
