"""Brain Treebank source: layout reader, channel selection, localization, word events, streamed
preprocessing, download, the paper's protocol and bad input.

The fixture holds real contact names, voxel indices and word timings from the ``neuroprobe``
package (installed with ``pip install --no-deps neuroprobe``); tests that need it skip without.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import mne
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import signal

from barista.braintreebank import (
    LIP_CENTRE,
    RELEASE_TRIALS,
    Layout,
    choose_trials,
    localize_subject,
    recordings_table,
    release_lobe,
    select_contacts,
    word_events,
)
from barista.config import load_config, validate_config
from barista.errors import ConfigError, DataError, DownloadError
from barista.evaluation import assign_roles, decoded, heldout, pretraining, validation

sys.path.insert(0, str(Path(__file__).parent))  # the helper module lives next to this file

from static_server import StaticServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NOTCH = dict(notch_q=30.0, line_freq=None, notch_max_hz=360.0, reference="laplacian",
             bandpass=None, resample_hz=None)


def _neuroprobe_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("neuroprobe") is None


needs_neuroprobe = pytest.mark.skipif(
    _neuroprobe_missing(), reason="the fixture needs real metadata from the 'neuroprobe' "
    "package: pip install --no-deps neuroprobe")


@pytest.fixture(scope="module")
def bt(tmp_path_factory) -> Path:
    """A 40 s, two-trial, three-shaft fixture of subject 1. Read-only."""
    if _neuroprobe_missing():
        pytest.skip("needs the 'neuroprobe' package: pip install --no-deps neuroprobe")
    from barista.braintreebank_fixture import make_fixture

    return make_fixture(tmp_path_factory.mktemp("bt") / "release", sessions=("1_0", "1_1"),
                        duration_s=40.0, max_shafts=3, seed=1)


@pytest.fixture
def bt_copy(bt, tmp_path) -> Path:
    dest = tmp_path / "release"
    shutil.copytree(bt, dest)
    return dest


# ------------------------------------------------------------------------- fixture, layout


@needs_neuroprobe
def test_fixture_has_the_release_layout_and_its_odd_cases(bt):
    raw = json.loads((bt / "electrode_labels" / "sub_1" / "electrode_labels.json").read_text())
    assert "T2aA12" in raw and {"DC1", "DC2", "TRIG1"} <= set(raw)
    assert any(n.endswith("*") for n in raw)
    with h5py.File(bt / "sub_1_trial000.h5") as fh:
        assert sorted(fh["data"].keys(), key=lambda k: int(k.split("_")[1])) == \
            [f"electrode_{i}" for i in range(len(raw))]
        assert fh["data"]["electrode_0"].shape == (40 * 2048,)
    loc = pd.read_csv(bt / "localization" / "sub_1" / "depth-wm.csv")
    assert list(loc.columns) == ["Electrode", "Destrieux", "DesikanKilliany", "L", "I", "P"]
    assert (loc["Destrieux"] == "Unknown").sum() == 1
    assert len(loc) == len(raw) - 3 - 1  # no trigger rows; one contact without a row
    corrupted = json.loads((bt / "corrupted_elec.json").read_text())["sub_1"]
    assert len(corrupted) == 1
    for name in ("subject_timings/sub_1_trial000_timings.csv",
                 "subject_metadata/sub_1_trial001_metadata.json",
                 "transcripts/the-martian/features.csv", "localization/elec_coords_full.csv",
                 "clean_laplacian.json"):
        assert (bt / name).is_file(), name


@needs_neuroprobe
def test_fixture_is_deterministic(bt, tmp_path):
    from barista.braintreebank_fixture import make_fixture

    again = make_fixture(tmp_path / "again", sessions=("1_0",), duration_s=40.0,
                         max_shafts=3, seed=1)
    for name in ("localization/sub_1/depth-wm.csv", "corrupted_elec.json",
                 "subject_timings/sub_1_trial000_timings.csv"):
        assert (again / name).read_bytes() == (bt / name).read_bytes()
    with h5py.File(again / "sub_1_trial000.h5") as a, h5py.File(bt / "sub_1_trial000.h5") as b:
        for key in ("electrode_0", "electrode_20"):
            assert np.array_equal(a["data"][key][()], b["data"][key][()])


@needs_neuroprobe
def test_words_land_on_the_real_samples(bt):
    """The fixture's trigger table maps its real words onto its samples: each aligned onset is
    the word's real neuroprobe sample minus the stretch's start, within 25 ms, and the sentence
    onsets are the real ones."""
    from barista.braintreebank_fixture import real_words

    words = word_events(Layout(bt), 1, 0, need_sentences=True)
    real = real_words(1, 0)
    both = pd.merge_asof(words.sort_values("movie_time"),
                         real.sort_values("start").rename(columns={"sample": "sample_real"}),
                         left_on="movie_time", right_on="start", direction="nearest",
                         tolerance=1e-4)
    assert both["sample_real"].notna().all() and len(both) > 30
    shift = both["sample_real"] - both["sample"]  # the real triggers jitter by ~10 ms
    assert np.abs(shift - shift.median()).max() < 0.025 * 2048
    assert (both["sentence_onset"] == both["is_onset"].astype(int)).all()
    assert words["sentence_onset"].sum() >= 3 and (np.diff(words["onset"]) >= 0).all()


def test_alignment_uses_the_trigger_after_each_word(tmp_path):
    """Movie time t -> index of the first trigger at or after t, plus (t - its time) * fs,
    across a pause of the movie (the trigger clock jumps)."""
    from barista.braintreebank_fixture import make_skeleton

    root = make_skeleton(tmp_path / "r", ["1_0"])
    (root / "subject_timings").mkdir()
    pd.DataFrame({"movie_time": [10.0, 11.0, 12.0, 12.0, 13.0],
                  "index": [0, 2048, 4096, 10000, 12048]}).to_csv(
        root / "subject_timings" / "sub_1_trial000_timings.csv", index=False)
    folder = root / "transcripts" / "empty"
    folder.mkdir(parents=True)
    pd.DataFrame({"start": [9.0, 10.5, 12.0, 12.5, 14.0, np.nan],
                  "end": [9.2, 10.7, 12.2, 12.9, 14.2, np.nan],
                  "text": ["before", "a", "b", "c", "after", "x"],
                  "is_onset": [True, True, False, True, False, False]}).to_csv(
        folder / "features.csv")
    words = word_events(Layout(root), 1, 0, need_sentences=True)
    assert words["word"].tolist() == ["a", "b", "c"]
    assert words["sample"].tolist() == [2048 - 1024, 4096, 12048 - 1024]
    assert words["sentence_onset"].tolist() == [1, 0, 1]


# ---------------------------------------------------------------------- selection, location


@needs_neuroprobe
def test_selection_and_localization_follow_the_paper(bt):
    layout = Layout(bt)
    sel = select_contacts(layout, 1)
    assert sel.triggers == ["TRIG1", "DC1", "DC2"]
    assert all("*" not in n for n in sel.labels)
    table = localize_subject(layout, 1, ["0", "1"])
    assert set(table["session"]) == {"0", "1"}
    one = table[table["session"] == "0"].set_index("channel")
    assert not set(sel.triggers) & set(one.index)
    row = one.loc["T2aA12"]
    loc = pd.read_csv(bt / "localization" / "sub_1" / "depth-wm.csv").set_index("Electrode")
    assert (row["lip_l"], row["lip_i"], row["lip_p"]) == tuple(loc.loc["T2aA12", ["L", "I", "P"]])
    assert row["x"] == LIP_CENTRE - row["lip_l"] and row["z"] == LIP_CENTRE - row["lip_i"]
    assert row["atlas_label"] == loc.loc["T2aA12", "Destrieux"]
    assert row["parcel"] == loc.loc["T2aA12", "Destrieux"].split("_", 2)[2]
    assert row["lobe"] == release_lobe(loc.loc["T2aA12", "DesikanKilliany"]) == "temporal"
    assert row["hemisphere"] == "R"
    unknown = one[one["atlas_label"] == "Unknown"].iloc[0]
    assert unknown["parcel"] == "unknown" and unknown["lobe"] == "unknown" and unknown["keep"]
    vent = one[one["atlas_label"].str.contains("Ventricle")].iloc[0]
    assert not vent["keep"] and vent["drop_reason"] == "ventricle"
    missing = one[one["label_source"] == "none"]
    assert len(missing) == 1 and missing["keep"].all() and pd.isna(missing["lip_l"]).all()
    assert str(table["lip_l"].dtype) == "Int64"


def test_release_lobe_groups_desikan_killiany_labels():
    assert release_lobe("ctx-lh-superiortemporal") == "temporal"
    assert release_lobe("ctx-rh-fusiform") == "temporal"  # Destrieux puts it elsewhere
    assert release_lobe("ctx-lh-posteriorcingulate") == "cingulate"
    assert release_lobe("Left-Hippocampus") == "hippocampus"
    assert release_lobe("Right-Putamen") == "putamen"
    assert release_lobe("ctx-lh-lateraloccipital") == "unknown"  # the release has no id
    assert release_lobe("Left-Cerebral-White-Matter") == "unknown"
    assert release_lobe("Unknown") == "unknown"


# ---------------------------------------------------------------------------- preprocessing


@needs_neuroprobe
def test_preprocess_equals_the_whole_trial_computation(bt, tmp_path):
    """Streamed channel by channel, the FIF equals Laplacian + zero-phase notch of the whole
    trial in memory, without corrupted and trigger contacts; clean_laplacian.json decides."""
    from barista.braintreebank_preprocess import preprocess_trial

    out = tmp_path / "sub-1_ses-0_desc-preproc_ieeg.fif"
    record = preprocess_trial(bt, 1, 0, out, NOTCH)
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    labels = select_contacts(Layout(bt), 1).labels
    with h5py.File(bt / "sub_1_trial000.h5") as fh:
        data = {n: fh["data"][f"electrode_{i}"][()].astype(float) for i, n in enumerate(labels)}
    clean = json.loads((bt / "clean_laplacian.json").read_text())["sub_1"]
    assert raw.ch_names == [n for n in labels if n in clean]
    assert record["NotchFrequencies"] == [60.0, 120.0, 180.0, 240.0, 300.0, 360.0]
    corrupted = record["BadChannelsDropped"][0]
    assert corrupted not in raw.ch_names and "DC1" not in raw.ch_names
    sos = np.concatenate([signal.tf2sos(*signal.iirnotch(f, 30.0, fs=2048.0))
                          for f in record["NotchFrequencies"]])
    for entry in record["Channels"]:
        assert corrupted not in entry["weights"]
        ref = sum(w * data[c] for c, w in entry["weights"].items())
        expected = signal.sosfiltfilt(sos, ref) * 1e-6
        got = raw.get_data(picks=[entry["name"]])[0]
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    assert raw.info["sfreq"] == 2048.0


@needs_neuroprobe
def test_preprocess_streams_in_blocks_and_resamples(bt, tmp_path, monkeypatch):
    from barista import braintreebank_preprocess as bp

    blocks = []
    original = bp._ChannelMajorRaw._read_segment_file

    def spy(self, data, idx, fi, start, stop, cals, mult):
        blocks.append(stop - start)
        return original(self, data, idx, fi, start, stop, cals, mult)

    monkeypatch.setattr(bp._ChannelMajorRaw, "_read_segment_file", spy)
    out = tmp_path / "x_desc-preproc_ieeg.fif"
    bp.preprocess_trial(bt, 1, 1, out, {**NOTCH, "resample_hz": 256.0})
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert raw.info["sfreq"] == 256.0 and raw.n_times == 40 * 256
    assert blocks and max(blocks) <= bp._BLOCK_S * 256  # never the whole trial at once
    assert not list(tmp_path.glob(".*partial*"))  # scratch removed


# ---------------------------------------------------------------------------------- bad input


@needs_neuroprobe
def test_missing_trial_file_is_named(bt, tmp_path):
    from barista.braintreebank_preprocess import preprocess_trial

    with pytest.raises(DataError, match=r"sub_1_trial002\.h5: trial file not found"):
        preprocess_trial(bt, 1, 2, tmp_path / "x.fif", NOTCH)


@needs_neuroprobe
def test_contact_list_not_matching_the_datasets_is_named(bt_copy, tmp_path):
    from barista.braintreebank_preprocess import preprocess_trial

    path = bt_copy / "electrode_labels" / "sub_1" / "electrode_labels.json"
    labels = json.loads(path.read_text())
    path.write_text(json.dumps(labels + ["T9z1"]))
    with pytest.raises(DataError, match=r"sub_1_trial000\.h5: contact 'T9z1' .* no dataset "
                                        r"data/electrode_\d+"):
        preprocess_trial(bt_copy, 1, 0, tmp_path / "x.fif", NOTCH)
    # a dataset beyond the list names no contact: read nothing from it, and say so
    path.write_text(json.dumps(labels))
    with h5py.File(bt_copy / "sub_1_trial000.h5", "a") as fh:
        fh["data"].create_dataset(f"electrode_{len(labels)}", data=np.zeros(40 * 2048))
    record = preprocess_trial(bt_copy, 1, 0, tmp_path / "y.fif", NOTCH)
    assert record["UnlabeledDatasetsIgnored"] == [f"electrode_{len(labels)}"]
    # a dataset shorter than the others
    with h5py.File(bt_copy / "sub_1_trial000.h5", "a") as fh:
        del fh["data"]["electrode_3"]
        fh["data"].create_dataset("electrode_3", data=np.zeros(100))
    with pytest.raises(DataError, match=rf"contact '{re.escape(labels[3])}' has 100 samples"):
        preprocess_trial(bt_copy, 1, 0, tmp_path / "z.fif", NOTCH)


@needs_neuroprobe
def test_transcript_without_sentence_onsets_is_named(bt_copy):
    path = bt_copy / "transcripts" / "fantastic-mr-fox" / "features.csv"
    table = pd.read_csv(path, index_col=0)
    table.drop(columns="is_onset").to_csv(path)
    with pytest.raises(DataError, match=r"fantastic-mr-fox/features\.csv: column 'is_onset'"):
        word_events(Layout(bt_copy), 1, 0, need_sentences=True)
    assert len(word_events(Layout(bt_copy), 1, 0, need_sentences=False)) > 0
    table.assign(is_onset=False).to_csv(path)
    with pytest.raises(DataError, match="marks no sentence onset"):
        word_events(Layout(bt_copy), 1, 0, need_sentences=True)


def test_subject_filter_naming_no_subject_is_an_error(tmp_path):
    from barista.braintreebank_download import release_files
    from barista.braintreebank_fixture import make_skeleton

    root = make_skeleton(tmp_path / "r", ["1_0", "1_1", "3_0"])
    with pytest.raises(DataError, match=r"subject\(s\) \[2\] with no trial file .*"
                                        r"subjects found: \[1, 3\]"):
        choose_trials(Layout(root), [2], [])
    with pytest.raises(DataError, match=r"names 1_5, but .*sub_1_trial005\.h5"):
        choose_trials(Layout(root), [], ["1_5"])
    assert choose_trials(Layout(root), ["sub-1"], []) == [(1, 0), (1, 1)]
    with pytest.raises(DownloadError, match=r"names \[11\], which the release does not have"):
        release_files(subjects=[11])
    with pytest.raises(DownloadError, match="names 3_4"):
        release_files(sessions=["3_4"])


@needs_neuroprobe
def test_coordinates_outside_the_table_range_are_named(bt_copy):
    path = bt_copy / "localization" / "sub_1" / "depth-wm.csv"
    loc = pd.read_csv(path)
    corrupted = json.loads((bt_copy / "corrupted_elec.json").read_text())["sub_1"][0]
    loc.loc[loc["Electrode"] == corrupted, "L"] = 250  # a dropped contact: not checked
    loc.to_csv(path, index=False)
    localize_subject(Layout(bt_copy), 1, ["0"])
    loc.loc[loc["Electrode"] == "T2aA11", "P"] = 230
    loc.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"depth-wm\.csv: contact 'T2aA11' has P = 230, "
                                        r"outside the coordinate table range 0\.\.199"):
        localize_subject(Layout(bt_copy), 1, ["0"])
    loc["P"] = loc["P"].astype(float)
    loc.loc[loc["Electrode"] == "T2aA11", "P"] = 120.5
    loc.to_csv(path, index=False)
    with pytest.raises(DataError, match="not a whole voxel index"):
        localize_subject(Layout(bt_copy), 1, ["0"])


@needs_neuroprobe
def test_clean_laplacian_naming_a_contact_without_neighbours_is_named(bt_copy, tmp_path):
    from barista.braintreebank_preprocess import preprocess_trial

    corrupted = json.loads((bt_copy / "corrupted_elec.json").read_text())["sub_1"][0]
    shaft, number = re.match(r"^(.*?)(\d+)$", corrupted).groups()
    path = bt_copy / "clean_laplacian.json"
    clean = json.loads(path.read_text())
    clean["sub_1"].append(f"{shaft}{int(number) + 1}")
    path.write_text(json.dumps(clean))
    with pytest.raises(DataError, match=rf"lists '{shaft}{int(number) + 1}', but a shaft "
                                        "neighbour"):
        preprocess_trial(bt_copy, 1, 0, tmp_path / "x.fif", NOTCH)
    path.unlink()  # without the file: every contact with both neighbours
    record = preprocess_trial(bt_copy, 1, 0, tmp_path / "y.fif", NOTCH)
    assert f"{shaft}{int(number) + 1}" in record["ChannelsWithoutReference"]


# ------------------------------------------------------------------------------- download


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def _release(tmp_path) -> dict[str, bytes]:
    """The release's files for subject 1 (from a skeleton layout), zipped as published."""
    from barista.braintreebank_fixture import make_skeleton

    root = make_skeleton(tmp_path / "src", [f"1_{t}" for t in RELEASE_TRIALS[1]])
    files = {"corrupted_elec.json": (root / "corrupted_elec.json").read_bytes()}
    for folder in ("localization", "electrode_labels", "subject_metadata"):
        members = {str(p.relative_to(root if folder == "localization" else root / folder)):
                   p.read_bytes() for p in (root / folder).rglob("*") if p.is_file()}
        files[f"{folder}.zip"] = _zip(members)  # one zip holds its folder, others do not
    files["subject_timings.zip"] = _zip({"subject_timings/README": b"x"})
    files["transcripts.zip"] = _zip({"transcripts/empty/features.csv": b"start,end\n"})
    for t in RELEASE_TRIALS[1]:
        name = f"sub_1_trial{t:03d}"
        files[f"subject_data/sub_1/trial{t:03d}/{name}.h5.zip"] = _zip(
            {f"{name}.h5": (root / f"{name}.h5").read_bytes()})
    return files


def test_download_resumes_verifies_and_extracts(tmp_path):

    from barista.braintreebank_download import COMPLETE, download_release

    files = _release(tmp_path)
    trial = "subject_data/sub_1/trial001/sub_1_trial001.h5.zip"
    dest = tmp_path / "resources" / "braintreebank"
    with StaticServer(files) as server:
        server.truncate_after[trial] = 100  # the connection drops once: resumed with Range
        download_release(dest, subjects=[1], base_url=server.base_url, progress=False)
        assert server.gets(trial) == [None, "bytes=100-"]
        layout = Layout(dest)
        assert layout.trials() == [(1, 0), (1, 1), (1, 2)]
        assert layout.electrode_labels(1)[0] == "T1a1"
        assert layout.localization_file(1).is_file()
        assert not (dest / "zips" / trial).exists()  # deleted once extracted
        assert (dest / COMPLETE).is_file()
        manifest = pd.read_csv(dest / ".barista" / "braintreebank-manifest.tsv", sep="\t")
        row = manifest.set_index("path").loc[trial]
        assert row["md5"] == hashlib.md5(files[trial]).hexdigest()
        seen = len(server.seen)
        download_release(dest, subjects=[1], base_url=server.base_url, progress=False)
        assert len(server.seen) == seen  # done: not even a HEAD request


def test_download_refuses_a_corrupt_zip_and_fetches_it_again(tmp_path):

    from barista.braintreebank_download import download_release

    files = _release(tmp_path)
    trial = "subject_data/sub_1/trial002/sub_1_trial002.h5.zip"
    good = files[trial]
    bad = bytearray(good)
    member = good.index(b"HDF")  # flip a byte of the member's data: same size, wrong CRC
    bad[member + 200] ^= 0xFF
    dest = tmp_path / "bt"
    with StaticServer(files) as server:
        server.served_body[trial] = bytes(bad)
        with pytest.raises(DownloadError, match=r"sub_1_trial002\.h5\.zip: member "
                                                r"sub_1_trial002\.h5 fails its CRC check"):
            download_release(dest, subjects=[1], base_url=server.base_url, progress=False)
        assert not (dest / "zips" / trial).exists() and not (dest / "sub_1_trial002.h5").exists()
        del server.served_body[trial]
        download_release(dest, subjects=[1], base_url=server.base_url, progress=False)
        assert Layout(dest).trials() == [(1, 0), (1, 1), (1, 2)]


# ------------------------------------------------------------------------ protocol, roles


def _recordings(keys):
    return pd.DataFrame([{"recording": f"sub-{s}_ses-{t}", "subject": str(s),
                          "session": str(t)} for s, t in keys])


def test_session_roles_give_settings():
    table = _recordings([(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)])
    roles = {"pretrain": ["1_0", "2_0"], "validation": ["2_1"], "test": ["1_1", "3_0"]}
    settings = assign_roles(table, roles).set_index("recording")["setting"].to_dict()
    assert settings == {"sub-1_ses-0": "within_session", "sub-1_ses-1": "cross_session",
                        "sub-2_ses-0": "within_session", "sub-2_ses-1": "validation",
                        "sub-3_ses-0": "cross_subject"}
    ev = {"sessions": roles, "heldout_sessions": 1, "settings": ["cross_session"]}
    assert pretraining(table, ev) == ["sub-1_ses-0", "sub-2_ses-0"]
    assert validation(table, ev) == ["sub-2_ses-1"]
    assert list(decoded(table, ev)["recording"]) == ["sub-1_ses-1"]
    assert sorted(heldout(table, ev)["recording"]) == ["sub-1_ses-1", "sub-3_ses-0"]
    with pytest.raises(ConfigError, match=r"\['sub-2_ses-1'\] .* have no role"):
        assign_roles(table, {"pretrain": ["1_0", "2_0"], "test": ["1_1", "3_0"]})


def test_session_role_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="is both pretrain and test"):
        validate_config({"evaluation": {"sessions": {"pretrain": ["1_0"], "test": ["1_0"]}}})
    path = tmp_path / "c.yaml"
    path.write_text("evaluation:\n  sessions:\n    pretrain: [1_0]\n    test: ['1_1']\n")
    with pytest.raises(ConfigError, match=r"sessions\.pretrain': \[10\] are numbers; write "
                                          "session names in quotes"):
        load_config(path)
    with pytest.raises(ConfigError, match="'car' is not available"):
        validate_config({"dataset": {"source": "braintreebank"},
                         "preprocess": {"reference": "car"}})


def test_paper_config_is_the_paper_protocol():
    cfg = load_config(REPO / "config" / "paper.yaml")
    roles = cfg["evaluation"]["sessions"]
    assert len(roles["pretrain"]) == 17 and len(roles["validation"]) == 2
    assert len(roles["test"]) == 7
    named = sorted(roles["pretrain"] + roles["validation"] + roles["test"])
    assert named == sorted(f"{s}_{t}" for s, ts in RELEASE_TRIALS.items() for t in ts)
    assert cfg["dataset"]["source"] == "braintreebank"
    assert cfg["preprocess"]["resample_hz"] is None and cfg["preprocess"]["notch_max_hz"] == 360
    assert (cfg["segments"]["length_s"], cfg["segments"]["n_patches"]) == (3.0, 12)
    assert cfg["splits"]["random"] == {"train": 0.8, "val": 0.1, "test": 0.1}


def test_roles_naming_a_missing_trial_are_an_error(tmp_path):
    from barista.braintreebank_fixture import make_skeleton

    root = make_skeleton(tmp_path / "r", ["1_0", "1_1", "2_0"])
    roles = {"pretrain": ["1_0", "2_0"], "test": ["1_1", "2_1"]}
    with pytest.raises(DataError, match=r"'evaluation\.sessions\.test' names 2_1, but its "
                                        r"trial file sub_2_trial001\.h5"):
        recordings_table(Layout(root), [], [], roles)
    table = recordings_table(Layout(root), [1], [], roles)  # subject 2 filtered out: fine
    assert table["recording"].tolist() == ["sub-1_ses-0", "sub-1_ses-1"]


# ------------------------------------------------------------------------------- workflow


def _snakemake(workdir: Path, cfg: dict, *args: str, target: str = "all") -> str:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = ["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory", str(workdir),
           "--configfile", str(path), "--cores", "2", target, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _job_counts(log: str) -> dict[str, int]:
    from test_workflow import planned_jobs

    return planned_jobs(log)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")
def test_paper_config_dry_runs_to_the_paper_job_list(tmp_path):
    """All 26 sessions (empty signals): 17 pretrain, 2 validation, 7 decoded."""
    from barista.braintreebank_fixture import make_skeleton

    sessions = [f"{s}_{t}" for s, ts in RELEASE_TRIALS.items() for t in ts]
    root = make_skeleton(tmp_path / "release", sessions)
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cfg["dataset"]["braintreebank"]["root"] = str(root)
    _snakemake(tmp_path, cfg, target=f"results/{cfg['dataset']['name']}/recordings.tsv")
    jobs = _job_counts(_snakemake(tmp_path, cfg, "-n"))
    n_pairs = 9  # 3 encode x 3 mask scales
    assert jobs["preprocess"] == jobs["segment"] == jobs["words"] == 26
    assert jobs["localize"] == 10 and jobs["tokens"] == 3
    assert jobs["pretrain"] == n_pairs and jobs["reconstruct"] == n_pairs
    # one finetuning job per encoder (every task, test session and seed)
    assert jobs["finetune:barista"] == n_pairs and jobs["finetune:random_init"] == 3
    assert jobs["linear_baseline"] == 1
    assert jobs["finetune:barista_release"] == 3  # the authors' encoders, one per scale


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")
@needs_neuroprobe
def test_data_stage_on_the_fixture(bt, tmp_path):
    """Release -> recordings -> preprocess, localization, words -> segments -> tokens at all
    three scales, by Snakemake, as for a BIDS source."""
    cfg = yaml.safe_load((REPO / "config" / "braintreebank-demo.yaml").read_text())
    cfg["dataset"].update(name="bt-tiny", braintreebank={"root": str(bt)})
    cfg["preprocess"]["resample_hz"] = 128.0
    cfg["segments"].update(length_s=2.0, n_patches=4, silence_before_s=0.3)
    cfg["evaluation"]["sessions"] = {"pretrain": ["1_0"], "test": ["1_1"]}
    _snakemake(tmp_path, cfg, target="data")
    results = tmp_path / "results" / "bt-tiny"
    table = pd.read_csv(results / "recordings.tsv", sep="\t", dtype=str)
    assert table["recording"].tolist() == ["sub-1_ses-0", "sub-1_ses-1"]
    channels = pd.read_parquet(results / "segments" / "sub-1_ses-0" / "channels.parquet")
    assert "T2aA11" in set(channels["channel"]) and channels["keep"].all()
    assert not channels["channel"].str.startswith(("DC", "TRIG")).any()
    index = pd.read_parquet(results / "segments" / "sub-1_ses-0" / "index.parquet")
    assert {"pretrain", "speech_vs_nonspeech", "sentence_onset"} <= set(index["kind"])
    for scale in ("channel", "parcel", "lobe"):
        tokens = pd.read_parquet(results / "tokens" / scale / "channels.parquet")
        assert set(tokens["recording"]) == {"sub-1_ses-0", "sub-1_ses-1"}
    lobes = pd.read_parquet(results / "tokens" / "lobe" / "vocab.parquet")["label"]
    assert "R-temporal" in set(lobes)
