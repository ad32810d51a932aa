"""Bad input ends with an error that names the file, channel or config key to fix.

Each case runs on a private copy of the simulated dataset; some go through the command line,
where the contract is exit status 1, one ``barista: error:`` line and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mne
import pandas as pd
import pytest
from conftest import step_json

from barista.bids import bids_path_of
from barista.config import validate_config
from barista.errors import BaristaError, ConfigError, DataError
from barista.localize import localize_subject
from barista.preprocess import derivative_path, preprocess_recording, write_dataset_description
from barista.segments import segment_recording

REC = "sub-01_ses-01_task-listen_run-01"
REC2 = "sub-02_ses-01_task-listen_run-01"
SPACE = "MNI152NLin2009aSym"
REPO = Path(__file__).resolve().parents[1]


def ieeg(root: Path, subject: str = "01") -> Path:
    return Path(root) / f"sub-{subject}" / "ses-01" / "ieeg"


def rec_file(root: Path, suffix_ext: str, recording: str = REC) -> Path:
    return ieeg(root, recording[4:6]) / f"{recording}_{suffix_ext}"


def preprocess(root: Path, out_root: Path, recording: str = REC, **overrides) -> Path:
    out = derivative_path(out_root, recording)
    preprocess_recording(bids_path_of(root, recording), out,
                         validate_config({"preprocess": overrides})["preprocess"])
    return out


def localize(root: Path, need_atlas: bool = True) -> pd.DataFrame:
    return localize_subject(root, "01", ["01"], space=None, need_atlas=need_atlas,
                            white_matter_radius_mm=4.0, label_column=None)


def segment(root: Path, fif: Path, out_dir: Path, events: Path | None = None) -> dict:
    cfg = validate_config({})
    events = rec_file(root, "events.tsv") if events is None else events
    return segment_recording(fif, events, localize(root), REC, out_dir, cfg["segments"],
                             cfg["splits"])


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "barista", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def assert_cli_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, exactly one ``barista: error:`` line, no traceback; returns the message."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "barista: error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("barista: error: "), proc.stderr
    message = proc.stderr[proc.stderr.index("barista: error:"):]
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(scope="module")
def preprocessed(sim_bids, tmp_path_factory) -> Path:
    """The first simulated recording, preprocessed (read-only)."""
    return preprocess(sim_bids, tmp_path_factory.mktemp("deriv"))


# --- localization -----------------------------------------------------------------------------


def test_missing_electrodes_tsv(sim_copy):
    (ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_electrodes.tsv").unlink()
    with pytest.raises(DataError, match="no electrodes.tsv for sub-01_ses-01") as err:
        localize(sim_copy)
    assert "parcel and lobe scales" in str(err.value)


def test_missing_coordsystem_json(sim_copy):
    cs = ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_coordsystem.json"
    cs.unlink()
    with pytest.raises(DataError, match="coordsystem.json") as err:
        localize(sim_copy)
    assert f"sub-01_ses-01_space-{SPACE}_electrodes.tsv" in str(err.value)
    assert str(cs) in str(err.value)


def test_cli_localize_without_electrodes(sim_copy, tmp_path):
    (ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_electrodes.tsv").unlink()
    out = tmp_path / "loc" / "sub-01.parquet"
    proc = cli("localize", "--params", step_json("localize"), "--bids-root", sim_copy,
               "--subject", "01", "--sessions", "01", "--out", out)
    assert_cli_error(proc, "electrodes.tsv", "sub-01_ses-01")
    assert not out.exists()


def test_invalid_coordsystem_json(sim_copy):
    cs = ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_coordsystem.json"
    cs.write_text('{"iEEGCoordinateSystem": ')
    with pytest.raises(DataError, match="not valid JSON") as err:
        localize(sim_copy)
    assert str(cs) in str(err.value)
    cs.write_text(json.dumps({"iEEGCoordinateSystem": SPACE, "iEEGCoordinateUnits": "inch"}))
    with pytest.raises(DataError, match="'inch' is not one of m, cm, mm"):
        localize(sim_copy)


# --- unreadable raw files ---------------------------------------------------------------------


def test_truncated_vhdr(sim_copy, tmp_path):
    vhdr = rec_file(sim_copy, "ieeg.vhdr")
    vhdr.write_text(vhdr.read_text()[:200])
    with pytest.raises(DataError, match="cannot read raw file") as err:
        preprocess(sim_copy, tmp_path)
    assert str(vhdr) in str(err.value)


@pytest.mark.parametrize("keep", [0.5, 1001])
def test_truncated_eeg(sim_copy, tmp_path, keep):
    """Half a file (RecordingDuration tells) or a few bytes (under 1 s) are refused."""
    eeg = rec_file(sim_copy, "ieeg.eeg")
    data = eeg.read_bytes()
    eeg.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(DataError, match="truncated") as err:
        preprocess(sim_copy, tmp_path)
    assert str(rec_file(sim_copy, "ieeg.vhdr")) in str(err.value)
    assert not any(tmp_path.rglob("*.fif"))


def test_missing_eeg(sim_copy, tmp_path):
    rec_file(sim_copy, "ieeg.eeg").unlink()
    with pytest.raises(DataError, match="cannot read raw file") as err:
        preprocess(sim_copy, tmp_path)
    assert f"{REC}_ieeg.eeg" in str(err.value)


def test_cli_preprocess_corrupt_eeg(sim_copy, tmp_path):
    eeg = rec_file(sim_copy, "ieeg.eeg")
    eeg.write_bytes(b"")
    out = derivative_path(tmp_path, REC)
    proc = cli("preprocess", "--params", step_json("preprocess"), "--bids-root", sim_copy,
               "--recording", REC, "--out", out)
    assert_cli_error(proc, "cannot read raw file", f"{REC}_ieeg.vhdr")
    assert not out.parent.exists() or not any(out.parent.iterdir())


# --- channels.tsv against the recording -------------------------------------------------------


def edit_channels(root: Path, edit) -> Path:
    path = rec_file(root, "channels.tsv")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))
    return path


def test_channels_tsv_renamed_channel(sim_copy, tmp_path):
    path = edit_channels(sim_copy, lambda ls: [ln.replace("LT3\t", "LX3\t") for ln in ls])
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "'LX3'" in msg and "'LT3'" in msg
    assert "do not match" in msg


def test_channels_tsv_missing_row(sim_copy, tmp_path):
    path = edit_channels(sim_copy, lambda ls: [ln for ln in ls if not ln.startswith("LT3\t")])
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "recorded but not listed ['LT3']" in msg


def test_channels_tsv_other_order(sim_copy, tmp_path):
    def swap(lines):
        lines[2], lines[3] = lines[3], lines[2]
        return lines

    path = edit_channels(sim_copy, swap)
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "different order" in msg and "'LT3'" in msg


def test_cli_channels_mismatch(sim_copy, tmp_path):
    edit_channels(sim_copy, lambda ls: [ln.replace("LA2\t", "LA02\t") for ln in ls])
    proc = cli("preprocess", "--params", step_json("preprocess"), "--bids-root", sim_copy,
               "--recording", REC, "--out", derivative_path(tmp_path, REC))
    assert_cli_error(proc, f"{REC}_channels.tsv", "'LA02'", "'LA2'")


def test_missing_power_line_frequency(sim_copy, tmp_path):
    sidecar = rec_file(sim_copy, "ieeg.json")
    meta = json.loads(sidecar.read_text())
    del meta["PowerLineFrequency"]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="PowerLineFrequency") as err:
        preprocess(sim_copy, tmp_path)
    assert str(sidecar) in str(err.value) and "preprocess.line_freq" in str(err.value)
    # the config key fixes it
    assert preprocess(sim_copy, tmp_path, line_freq=60.0).exists()


# --- word events ------------------------------------------------------------------------------


def test_events_without_words(sim_copy, preprocessed, tmp_path):
    events = rec_file(sim_copy, "events.tsv")
    table = pd.read_csv(events, sep="\t")
    table["trial_type"] = "tone"
    table.to_csv(events, sep="\t", index=False)
    with pytest.raises(DataError, match="no word events") as err:
        segment(sim_copy, preprocessed, tmp_path / "seg")
    assert str(events) in str(err.value)
    assert not any((tmp_path / "seg").glob("*.parquet*"))


def test_no_events_file(sim_copy, preprocessed, tmp_path):
    events = rec_file(sim_copy, "events.tsv")
    events.unlink()
    with pytest.raises(DataError, match="no events file") as err:
        segment(sim_copy, preprocessed, tmp_path / "seg")
    assert str(events) in str(err.value)


def test_events_without_sentence_column(sim_copy, preprocessed, tmp_path):
    events = rec_file(sim_copy, "events.tsv")
    pd.read_csv(events, sep="\t").drop(columns="sentence_onset").to_csv(events, sep="\t",
                                                                         index=False)
    with pytest.raises(DataError, match="'sentence_onset' is missing") as err:
        segment(sim_copy, preprocessed, tmp_path / "seg")
    assert "segments.tasks" in str(err.value) and str(events) in str(err.value)


def test_cli_segment_without_events(sim_copy, preprocessed, tmp_path):
    events = rec_file(sim_copy, "events.tsv")
    events.unlink()
    loc = tmp_path / "sub-01.parquet"
    localize(sim_copy).to_parquet(loc)
    before = preprocessed.read_bytes()
    proc = cli("segment", "--params", step_json("segment"), "--bids-root", sim_copy,
               "--recording", REC, "--fif", preprocessed, "--localization", loc,
               "--out-dir", tmp_path / "seg")
    assert_cli_error(proc, "no events file", f"{REC}_events.tsv")
    assert not any((tmp_path / "seg").glob("*.parquet*"))
    assert preprocessed.read_bytes() == before  # the earlier step's output is untouched


# --- configuration ----------------------------------------------------------------------------


def test_cli_config_key_of_wrong_type(sim_bids, tmp_path):
    out = derivative_path(tmp_path, REC)
    proc = cli("preprocess", "--params", '{"preprocess": {"resample_hz": "fast"}}',
               "--bids-root", sim_bids, "--recording", REC, "--out", out)
    assert_cli_error(proc, "preprocess.resample_hz", "'fast'")
    assert not out.exists()


def test_config_key_of_wrong_type_library():
    with pytest.raises(ConfigError, match="preprocess.resample_hz") as err:
        validate_config({"preprocess": {"resample_hz": "fast"}})
    assert "'fast' is not of type" in str(err.value)
    with pytest.raises(ConfigError, match="preprocess.reference"):
        validate_config({"preprocess": {"reference": "average"}})
    with pytest.raises(ConfigError, match="preprocess.bandpass"):
        validate_config({"preprocess": {"bandpass": [100, 10]}})


def test_bandpass_above_nyquist(sim_bids, tmp_path):
    with pytest.raises(ConfigError, match="preprocess.bandpass") as err:
        preprocess(sim_bids, tmp_path, bandpass=[1.0, 300.0])
    assert "Nyquist" in str(err.value) and "256" in str(err.value)
    assert not any(tmp_path.rglob("*.fif"))


# --- failures leave earlier outputs alone and write nothing partial ---------------------------


def test_failing_recording_leaves_other_outputs_intact(sim_copy, tmp_path):
    deriv = tmp_path / "derivatives" / "barista-preproc"
    desc = write_dataset_description(deriv, sim_copy)
    good = preprocess(sim_copy, deriv, REC)
    snapshot = {p: p.read_bytes() for p in (desc, good, good.with_suffix(".json"))}
    rec_file(sim_copy, "ieeg.eeg", REC2).write_bytes(b"\0" * 100)
    with pytest.raises(DataError):
        preprocess(sim_copy, deriv, REC2)
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert not derivative_path(deriv, REC2).parent.exists()
    # a failed re-run of the same recording keeps the earlier result too
    with pytest.raises(ConfigError):
        preprocess(sim_copy, deriv, REC, bandpass=[1.0, 400.0])
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name,
                                                            good.with_suffix(".json").name]


def test_failure_while_writing_leaves_no_partial_file(sim_bids, tmp_path, monkeypatch):
    def broken_save(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"half a FIF file")
        raise OSError("No space left on device")

    monkeypatch.setattr(mne.io.RawArray, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        preprocess(sim_bids, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_every_error_class_of_the_package_is_a_barista_error():
    """A public exception class defined anywhere in barista must derive from BaristaError, or
    the command line would show its traceback instead of one ``barista: error:`` line.
    (Private ones, such as download's retried ``_IncompleteTransfer``, never leave their
    module.)"""
    import importlib
    import inspect
    import pkgutil

    import barista

    defined = []
    for info in pkgutil.walk_packages(barista.__path__, "barista."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        defined += [obj for _, obj in inspect.getmembers(module, inspect.isclass)
                    if issubclass(obj, Exception) and obj.__module__ == info.name
                    and not obj.__name__.startswith("_")]
    assert defined, "no exception class found: the walk over the package is broken"
    assert [c.__qualname__ for c in defined if not issubclass(c, BaristaError)] == []


def test_command_line_turns_a_barista_error_into_one_line(tmp_path, capsys):
    from barista.cli import main

    status = main(["tokens", "--params", step_json("tokens", {"scales": {"channel": {}}}),
                   "--scale", "lobe", "--out-dir", str(tmp_path), str(tmp_path / "x.parquet")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err == ["barista: error: scale 'lobe' is not in config key 'scales'"]
