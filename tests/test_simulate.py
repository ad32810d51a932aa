"""Tests of the simulated BIDS iEEG dataset (barista.simulate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
import pytest
from scipy.signal import welch

from barista import reference, signal_stats
from barista.atlas import classify_label, default_atlas
from barista.errors import ConfigError
from barista.preprocess import notch, notch_frequencies
from barista.simulate import (
    RESPONSIVE_PARCELS,
    SPACE,
    _aperiodic_noise,
    _volume_conduction,
    ground_truth_table,
    simulate_dataset,
    simulated_contacts,
)

# two minutes hold enough speech periods for the signal checks to have a margin
SMALL = dict(n_subjects=2, n_sessions=1, duration_s=120.0, sfreq=256.0, seed=7)
TEMPORAL_SPEECH = ("G_temp_sup-G_T_transv", "G_temp_sup-Lateral", "G_temp_sup-Plan_tempo",
                   "S_temporal_transverse", "S_temporal_sup", "G_temporal_middle")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "bids", **SMALL)


def _recordings(root: Path) -> list[mne_bids.BIDSPath]:
    paths = mne_bids.find_matching_paths(root, datatypes="ieeg", extensions=".vhdr")
    return sorted(paths, key=str)


def _contacts(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "derivatives" / "simulation" / "contacts.tsv", sep="\t",
                       dtype={"subject": str, "session": str})


def _sidecar(bids_path: mne_bids.BIDSPath, suffix: str, extension: str) -> Path:
    return bids_path.copy().update(suffix=suffix, extension=extension).fpath


def _electrodes(root: Path, subject: str, session: str) -> pd.DataFrame:
    path = mne_bids.BIDSPath(root=root, subject=subject, session=session, datatype="ieeg",
                             space=SPACE, suffix="electrodes", extension=".tsv").fpath
    return pd.read_csv(path, sep="\t")


def _read(bids_path: mne_bids.BIDSPath) -> mne.io.BaseRaw:
    return mne_bids.read_raw_bids(bids_path, verbose=False).load_data()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_layout_and_sidecars(small):
    recordings = _recordings(small)
    assert [(p.subject, p.session) for p in recordings] == [("01", "01"), ("02", "01")]
    for path in small.rglob("*"):
        # space belongs to the positions, never to the data files
        if "_task-" in path.name:
            assert "space-" not in path.name
    assert "simulated" in (small / "README").read_text(encoding="utf-8").lower()
    assert (small / "participants.tsv").exists()

    derivative = small / "derivatives" / "simulation"
    description = json.loads((derivative / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "barista.simulate"
    settings = json.loads((derivative / "simulation.json").read_text())
    assert settings["arguments"] == dict(SMALL, line_freq=60.0, n_shafts=6,
                                         contacts_per_shaft=8, task="listen")

    for bids_path in recordings:
        sidecar = json.loads(_sidecar(bids_path, "ieeg", ".json").read_text())
        assert sidecar["PowerLineFrequency"] == 60.0
        assert sidecar["SEEGChannelCount"] == 48
        events_json = json.loads(_sidecar(bids_path, "events", ".json").read_text())
        assert {"sentence_onset", "word"} <= set(events_json)
        coordsystem = mne_bids.BIDSPath(root=small, subject=bids_path.subject,
                                        session=bids_path.session, datatype="ieeg",
                                        space=SPACE, suffix="coordsystem", extension=".json")
        content = json.loads(coordsystem.fpath.read_text())
        assert content["iEEGCoordinateSystem"] == SPACE
        assert content["iEEGCoordinateUnits"] == "mm"


def test_read_raw_bids_every_recording(small):
    contacts = _contacts(small)
    for bids_path in _recordings(small):
        electrodes = _electrodes(small, bids_path.subject, bids_path.session)
        rows = contacts[(contacts.subject == bids_path.subject)
                        & (contacts.session == bids_path.session)]
        expected_bads = set(rows.channel[rows.bad != "none"])
        assert sorted(rows.bad[rows.bad != "none"]) == ["flat", "noisy"]
        # data files carry no space entity; the one electrodes.tsv is found without it
        raw = mne_bids.read_raw_bids(bids_path, verbose=False)
        assert raw.info["line_freq"] == 60.0
        assert raw.info["sfreq"] == 256.0
        assert set(raw.get_channel_types()) == {"seeg"}
        assert set(raw.info["bads"]) == expected_bads
        positions = raw.get_montage().get_positions()
        assert positions["coord_frame"] == "mni_tal"
        xyz = np.array([positions["ch_pos"][name] for name in electrodes.name])
        np.testing.assert_allclose(xyz, electrodes[["x", "y", "z"]].to_numpy() / 1000.0,
                                   atol=1e-9)
        # realistic sEEG amplitudes on the good contacts, a flat one and a noisy one
        data = _read(bids_path).get_data()
        std = dict(zip(raw.ch_names, data.std(axis=1), strict=True))
        good = [std[name] for name in raw.ch_names if name not in expected_bads]
        assert 30e-6 < np.median(good) < 200e-6
        flat, noisy = (rows.channel[rows.bad == reason].item() for reason in ("flat", "noisy"))
        assert std[flat] < 1e-6
        assert std[noisy] > 3 * max(good)


def test_channel_names_form_laplacian_shafts(small):
    for bids_path in _recordings(small):
        electrodes = _electrodes(small, bids_path.subject, bids_path.session)
        shafts: dict[str, list[int]] = {}
        for name in electrodes.name:
            match = re.fullmatch(r"([A-Z]+)(\d+)", name)
            assert match, name
            shafts.setdefault(match.group(1), []).append(int(match.group(2)))
        assert len(shafts) == 6
        assert all(numbers == list(range(1, 9)) for numbers in shafts.values())
        # neighbours on a shaft are 3.5 mm apart
        xyz = electrodes[["x", "y", "z"]].to_numpy().reshape(6, 8, 3)
        np.testing.assert_allclose(np.linalg.norm(np.diff(xyz, axis=1), axis=-1), 3.5,
                                   atol=0.02)


def test_electrodes_fall_in_intended_regions(small):
    atlas = default_atlas()
    contacts = _contacts(small)
    kinds = set()
    for bids_path in _recordings(small):
        electrodes = _electrodes(small, bids_path.subject, bids_path.session)
        xyz = electrodes[["x", "y", "z"]].to_numpy()
        labels = atlas.label_names(xyz)
        regions = [classify_label(label, x) for label, x in zip(labels, xyz[:, 0], strict=True)]
        rows = contacts[(contacts.subject == bids_path.subject)
                        & (contacts.session == bids_path.session)]
        assert list(rows.atlas_label) == labels
        subject_kinds = {r.kind for r in regions}
        kinds |= subject_kinds
        assert any(r.kind == "cortex" and r.lobe == "temporal" for r in regions)
        assert subject_kinds & {"hippocampus", "amygdala"}
        # every subject has contacts that respond to speech, all in responsive parcels
        responsive = rows[rows.speech_gain > 0]
        assert len(responsive) >= 2
        assert set(responsive.parcel) <= set(RESPONSIVE_PARCELS)
    assert "white_matter" in kinds


def test_default_implants_reach_heschl_and_a_ventricle(small):
    contacts = simulated_contacts()
    assert (contacts.parcel == "G_temp_sup-G_T_transv").any()
    assert (contacts.kind == "ventricle").any()
    assert set(contacts.hemisphere) == {"L", "R"}
    assert contacts.subject.nunique() == 3
    assert contacts.parcel.nunique() >= 20
    # the written contacts are the implants this function reports
    written = _contacts(small).drop(columns=["session", "bad"])
    expected = simulated_contacts(n_subjects=2, seed=SMALL["seed"])
    pd.testing.assert_frame_equal(written, expected, check_exact=False, atol=1e-3)


def test_ground_truth_table():
    table = ground_truth_table()
    assert list(table.columns) == ["hemisphere", "parcel", "lobe", "speech_gain",
                                   "sentence_gain"]
    assert len(table) == 2 * len(RESPONSIVE_PARCELS)
    left = table[table.hemisphere == "L"].set_index("parcel")
    assert left.speech_gain.idxmax() in ("G_temp_sup-G_T_transv", "G_temp_sup-Lateral")
    assert left.loc["G_front_inf-Triangul", "speech_gain"] == 0
    assert left.loc["G_front_inf-Triangul", "sentence_gain"] > 0
    assert set(left.loc[list(TEMPORAL_SPEECH), "lobe"]) == {"temporal"}
    assert ((table.speech_gain > 0) | (table.sentence_gain > 0)).all()


def test_events_structure(small):
    for bids_path in _recordings(small):
        events = pd.read_csv(_sidecar(bids_path, "events", ".tsv"), sep="\t")
        assert list(events.columns) == ["onset", "duration", "trial_type", "value", "sample",
                                        "sentence_onset", "word"]
        assert set(events.trial_type) == {"word"}
        assert set(events.sentence_onset) <= {0, 1}
        assert events.word.str.fullmatch(r"[a-z]+").all()
        np.testing.assert_array_equal(events["sample"], np.round(events.onset * 256.0))
        assert events.duration.between(0.1, 0.45).all()
        gaps = events.onset.to_numpy()[1:] - (events.onset + events.duration).to_numpy()[:-1]
        assert (gaps > 0).all()
        after_silence = np.r_[True, gaps >= 0.5]
        # at least two speech periods, each opened by a sentence onset
        assert after_silence.sum() >= 2
        assert (events.sentence_onset[after_silence] == 1).all()
        assert 0 < events.sentence_onset[~after_silence].sum() < (~after_silence).sum()
        # raw annotations agree with events.tsv
        raw = mne_bids.read_raw_bids(bids_path, verbose=False)
        np.testing.assert_allclose(raw.annotations.onset, events.onset, atol=1e-6)


def test_line_noise_peak(small):
    bids_path = _recordings(small)[0]
    raw = _read(bids_path)
    raw.drop_channels(raw.info["bads"])
    freqs, psd = welch(raw.get_data(), raw.info["sfreq"], nperseg=512)
    median = np.median(psd, axis=0)
    for line in (60.0, 120.0):
        peak = median[np.argmin(np.abs(freqs - line))]
        near = median[(np.abs(freqs - line) > 3) & (np.abs(freqs - line) < 8)]
        assert peak > 20 * np.median(near), line
    # but not far above the real recording's 21 dB (docs/notes/simulator_vs_real.md)
    height = np.median(signal_stats.line_peak_db(freqs, psd, 60.0))
    assert 15.0 < height < 28.0, height


def test_aperiodic_background_steepens_above_the_knee():
    sfreq = 512.0
    noise = _aperiodic_noise(np.random.default_rng(0), (8, int(60 * sfreq)), sfreq)
    np.testing.assert_allclose(noise.std(axis=1), 1.0)
    freqs, psd = signal_stats.welch_psd(noise, sfreq)
    np.testing.assert_allclose(np.median(signal_stats.spectral_exponent(freqs, psd, 2, 35)),
                               2.0, atol=0.15)
    np.testing.assert_allclose(np.median(signal_stats.spectral_exponent(freqs, psd, 45, 200)),
                               3.5, atol=0.15)


def test_volume_conduction_has_a_smooth_spatial_covariance():
    # one shaft of 3.5 mm spacing and a contact 40 mm away
    xyz = np.array([[3.5 * k, 0.0, 0.0] for k in range(6)] + [[0.0, 40.0, 0.0]])
    mixing = _volume_conduction(xyz)
    covariance = mixing @ mixing.T
    np.testing.assert_allclose(np.diag(covariance), 1.0, atol=1e-9)
    # Matern 3/2 with a 5 mm length: 0.66 at 3.5 mm, 0.30 at 7 mm, ~0 at 40 mm
    np.testing.assert_allclose([covariance[0, 1], covariance[2, 3], covariance[0, 2]],
                               [0.658, 0.658, 0.303], atol=1e-3)
    assert abs(covariance[0, 6]) < 1e-4


def _pair_correlations(raw: mne.io.BaseRaw, positions: pd.DataFrame,
                       scheme: str) -> dict[str, float]:
    """Median 1-100 Hz correlation of adjacent, next-adjacent and far (>= 30 mm) contact pairs
    after the pipeline's notch and ``scheme`` re-reference, as the benchmark measures them."""
    sfreq = raw.info["sfreq"]
    good = [c for c in raw.ch_names if c not in raw.info["bads"]]
    data = notch(raw.get_data(good) * 1e6, sfreq, notch_frequencies(60.0, sfreq), 30.0)
    derivs = reference.derivations(good, scheme)
    broadband = signal_stats.bandpass(reference.apply(data, good, derivs), sfreq, 1.0, 100.0)
    anchors = [d.anchor for d in derivs]
    xyz = positions.set_index("name").loc[anchors, ["x", "y", "z"]].to_numpy()
    matrix = signal_stats.correlation_matrix(broadband)
    return {kind: float(np.median(signal_stats.pair_values(matrix, pairs)))
            for kind, pairs in signal_stats.pair_classes(anchors, xyz).items()}


def test_neighbour_correlations_resemble_real_seeg(small):
    """Volume conduction makes monopolar neighbours correlate (real recording: 0.77 adjacent,
    0.54 next-adjacent, 0.16 at >= 30 mm through the shared reference) and leaves Laplacian
    neighbours less anticorrelated than independent contacts (-0.67; real: -0.34, -0.18)."""
    for bids_path in _recordings(small):
        raw = _read(bids_path)
        positions = _electrodes(small, bids_path.subject, bids_path.session)
        none = _pair_correlations(raw, positions, "none")
        assert none["adjacent"] > 0.6, none
        assert none["adjacent"] > none["next_adjacent"] + 0.1 > none["far"] + 0.1, none
        assert 0.05 < none["far"] < 0.35, none
        car = _pair_correlations(raw, positions, "car")
        # the common average takes the reference's activity out (real: 0.16 -> -0.05)
        assert car["far"] < none["far"] - 0.1, (none, car)
        laplacian = _pair_correlations(raw, positions, "laplacian")
        assert -0.6 < laplacian["adjacent"] < -0.2, laplacian
        assert laplacian["next_adjacent"] < 0.05, laplacian


def test_high_frequencies_fall_steeply_and_rhythms_stay_moderate(small):
    """Real sEEG's spectrum falls as about 1/f^3 over 40-150 Hz (3.1 in the real recording)
    and little of its power is in beta (median share 0.03); a flat floor of resting gamma or
    sensor noise, or a 25 Hz rhythm as strong as a 10 Hz one, would break this."""
    for bids_path in _recordings(small):
        raw = _read(bids_path)
        good = [c for c in raw.ch_names if c not in raw.info["bads"]]
        freqs, psd = signal_stats.welch_psd(raw.get_data(good) * 1e6, raw.info["sfreq"])
        psd = signal_stats.without_line_bins(freqs, psd, 60.0)
        exponent = np.median(signal_stats.spectral_exponent(freqs, psd, 40.0, 110.0))
        assert 2.3 < exponent < 3.5, exponent
        shares = signal_stats.relative_band_powers(freqs, psd, {
            "low": (1.0, 13.0), "beta": (13.0, 30.0), "high": (30.0, 120.0)})
        assert np.median(shares["beta"]) < 0.1, np.median(shares["beta"])
        assert np.percentile(shares["beta"], 75) < 0.3, np.percentile(shares["beta"], 75)


def _word_and_silence_masks(events: pd.DataFrame, n_times: int,
                            sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n_times) / sfreq
    words = np.zeros(n_times, dtype=bool)
    silence = np.ones(n_times, dtype=bool)
    for onset, duration in zip(events.onset, events.duration, strict=True):
        words[(t >= onset + 0.05) & (t < onset + duration + 0.05)] = True
        silence[(t >= onset - 0.5) & (t < onset + duration + 0.5)] = False
    return words, silence


def test_high_gamma_rises_during_words(small):
    contacts = _contacts(small)
    for bids_path in _recordings(small):
        raw = _read(bids_path)
        sfreq = raw.info["sfreq"]
        raw.notch_filter([60.0, 120.0], verbose=False)
        power = mne.filter.filter_data(raw.get_data(), sfreq, 70.0, 110.0, verbose=False) ** 2
        events = pd.read_csv(_sidecar(bids_path, "events", ".tsv"), sep="\t")
        words, silence = _word_and_silence_masks(events, raw.n_times, sfreq)
        ratio = dict(zip(raw.ch_names, power[:, words].mean(1) / power[:, silence].mean(1),
                         strict=True))
        rows = contacts[(contacts.subject == bids_path.subject)
                        & (contacts.session == bids_path.session) & (contacts.bad == "none")]
        best = rows.channel[rows.speech_gain.idxmax()]
        assert rows.speech_gain.max() > 0.7
        assert ratio[best] > 2.0, (best, ratio[best])
        # the resting level drifts, so single silent contacts wander, but not as a group
        silent = np.median([ratio[name] for name in rows.channel[rows.speech_gain == 0]])
        assert 0.8 < silent < 1.2
        assert ratio[best] > 2 * silent


def _evoked_peak(bids_path: mne_bids.BIDSPath, onsets_s: pd.Series,
                 length_s: float) -> dict[str, float]:
    """Per channel, the largest absolute value of the 1-8 Hz average over epochs that start at
    ``onsets_s``: what stays of a response when only its phase-locked part survives."""
    raw = _read(bids_path)
    sfreq = raw.info["sfreq"]
    slow = mne.filter.filter_data(raw.get_data(), sfreq, 1.0, 8.0, verbose=False)
    starts = np.round(onsets_s * sfreq).astype(int)
    epochs = np.stack([slow[:, s:s + int(length_s * sfreq)] for s in starts])
    return dict(zip(raw.ch_names, np.abs(epochs.mean(axis=0)).max(axis=1), strict=True))


def _assert_best_contact_responds(small: Path, bids_path: mne_bids.BIDSPath, gain: str,
                                  peak: dict[str, float]) -> None:
    """The contact with the largest ``gain`` shows over twice the median peak of contacts that
    respond to nothing."""
    contacts = _contacts(small)
    rows = contacts[(contacts.subject == bids_path.subject)
                    & (contacts.session == bids_path.session) & (contacts.bad == "none")]
    best = rows.channel[rows[gain].idxmax()]
    silent = rows.channel[(rows.sentence_gain == 0) & (rows.speech_gain == 0)]
    assert peak[best] > 2 * np.median([peak[name] for name in silent]), peak[best]


def test_sentence_onsets_evoke_a_transient(small):
    for bids_path in _recordings(small):
        events = pd.read_csv(_sidecar(bids_path, "events", ".tsv"), sep="\t")
        peak = _evoked_peak(bids_path, events.onset[events.sentence_onset == 1], 0.5)
        _assert_best_contact_responds(small, bids_path, "sentence_gain", peak)


def test_words_evoke_a_phase_locked_potential(small):
    """Every word evokes a potential in speech-responsive contacts, phase-locked, so it shows in
    the average of 1-8 Hz epochs. Only words at least 0.6 s after the last sentence onset are
    averaged: the 0.5 s sentence transient is over by then, so what remains is the word's."""
    for bids_path in _recordings(small):
        events = pd.read_csv(_sidecar(bids_path, "events", ".tsv"), sep="\t")
        last_sentence = events.onset.where(events.sentence_onset == 1).ffill()
        words = events.onset[(events.onset - last_sentence) >= 0.6]
        assert len(words) > 20
        _assert_best_contact_responds(small, bids_path, "speech_gain",
                                      _evoked_peak(bids_path, words, 0.3))


def test_same_arguments_give_identical_files(small, tmp_path):
    again = simulate_dataset(tmp_path / "again", **SMALL)
    first, second = _files(small), _files(again)
    assert list(first) == list(second)
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def test_another_seed_gives_other_data(small, tmp_path):
    other = simulate_dataset(tmp_path / "other", **dict(SMALL, seed=8))
    first, second = _files(small), _files(other)
    for name in first:
        if name.endswith(("_ieeg.eeg", "_events.tsv", "_electrodes.tsv")):
            assert first[name] != second.get(name), name


def test_refuses_bad_arguments_and_foreign_folders(tmp_path):
    with pytest.raises(ConfigError, match="n_shafts"):
        simulate_dataset(tmp_path / "a", n_shafts=0)
    with pytest.raises(ConfigError, match="sfreq"):
        simulate_dataset(tmp_path / "a", sfreq=200.0)
    with pytest.raises(ConfigError, match="line_freq"):
        simulate_dataset(tmp_path / "a", sfreq=256.0, line_freq=150.0)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        simulate_dataset(foreign, overwrite=True)
    assert (foreign / "notes.txt").exists()

    small = dict(n_subjects=1, n_sessions=1, duration_s=20.0, sfreq=256.0)
    root = simulate_dataset(tmp_path / "sim", **small)
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_dataset(root, **small)
    simulate_dataset(root, **dict(small, seed=1), overwrite=True)
    settings = json.loads((root / "derivatives" / "simulation" / "simulation.json").read_text())
    assert settings["arguments"]["seed"] == 1
