"""No silent wrong results: inputs that used to pass unnoticed and spoil every later step.

Non-finite samples, mixed sampling rates, duplicated names, ECoG grids under a shaft
reference, truncated files, full disks, and config files that could not remove the demo's
settings. Each case ends in a clear error or a documented, logged choice.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mne
import numpy as np
import pytest
from test_bad_input import REC, localize, preprocess, rec_file, segment

from barista.errors import DataError

# --- non-finite samples -----------------------------------------------------------------------

N_CHANNELS = 15  # of the simulated recordings (3 shafts x 5 contacts)


def poison(root: Path, channel: int, sample: int, value: float = np.nan) -> None:
    """Write ``value`` into one sample of the float32, multiplexed BrainVision file."""
    eeg = rec_file(root, "ieeg.eeg")
    data = np.fromfile(eeg, dtype="<f4").reshape(-1, N_CHANNELS)
    data[sample, channel] = value
    data.tofile(eeg)


def test_nan_channel_is_dropped_and_listed(sim_copy, tmp_path, caplog):
    """By default (preprocess.nonfinite: drop) a NaN channel is dropped before the reference
    mixes it into its neighbours; the derivative is finite and its sidecar lists the channel."""
    poison(sim_copy, channel=7, sample=1000)  # LA3, at 1000 / 512 Hz = 1.953 s
    with caplog.at_level(logging.WARNING, logger="barista.preprocess"):
        out = preprocess(sim_copy, tmp_path)
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert np.isfinite(raw.get_data()).all()
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["NonFiniteChannelsDropped"] == ["LA3"]
    assert all("LA3" not in ch["weights"] for ch in record["Channels"])
    assert "LA3 (first at 1.953 s)" in caplog.text


def test_inf_sample_stops_the_run_when_asked(sim_copy, tmp_path):
    poison(sim_copy, channel=1, sample=2048, value=np.inf)  # LT2 at 4 s
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path, nonfinite="error")
    msg = str(err.value)
    assert str(rec_file(sim_copy, "ieeg.vhdr")) in msg
    assert "LT2 (first at 4.000 s)" in msg and "preprocess.nonfinite" in msg
    assert not any(tmp_path.rglob("*.fif"))


def test_segments_refuse_nonfinite_windows(sim_bids, tmp_path):
    """The last guard before the models: a derivative holding NaN (written by another tool,
    or an older barista) stops at the segment step with the channel and the time."""
    good = preprocess(sim_bids, tmp_path / "deriv")
    raw = mne.io.read_raw_fif(good, preload=True, verbose="error")
    raw._data[3, 300] = np.nan
    bad = tmp_path / "nan" / good.name
    bad.parent.mkdir()
    raw.save(bad, verbose="error")
    shutil.copy(good.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(DataError) as err:
        segment(sim_bids, bad, tmp_path / "seg")
    msg = str(err.value)
    assert str(bad) in msg and f"channel {raw.ch_names[3]} " in msg and "NaN" in msg
    assert not any((tmp_path / "seg").glob("signal.parquet*"))


# --- a full disk ------------------------------------------------------------------------------


def test_full_disk_during_segment_is_reported(sim_bids, tmp_path, monkeypatch, capsys):
    """A disk that fills while the signal file is written: the step ends with one line naming
    the file and the cause (the rule's log is this stderr), and no partial file is left, which
    also frees the space that line needs on the full disk."""
    import errno

    import pyarrow.parquet as pq

    from barista import cli

    fif = preprocess(sim_bids, tmp_path / "deriv")
    loc = tmp_path / "sub-01.parquet"
    localize(sim_bids).to_parquet(loc)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    out = tmp_path / "seg"
    code = cli.main(["segment", "--params", "{}", "--bids-root", str(sim_bids), "--recording",
                     REC, "--fif", str(fif), "--localization", str(loc), "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    line = next(ln for ln in err.splitlines() if ln.startswith("barista: error:"))
    assert str(out / "signal.parquet") in line and "No space left on device" in line
    assert not list(out.glob("signal.parquet*"))


# --- recordings at different sampling rates ---------------------------------------------------


def test_mixed_sampling_rates_stop_at_the_tokens_step(sim_bids, tmp_path, capsys):
    """Two recordings kept at 512 and 256 Hz cut 2 s windows of 1024 and 512 samples; the
    tokens step, the first to see every recording, stops with the recordings and their rates
    (it used to pass, and pretraining crashed on a reshape). The model's geometry check reads
    every recording too, not the first file found."""
    from barista import cli
    from barista.config import validate_config
    from barista.localize import localize_subject
    from barista.segments import segment_recording
    from barista.training.pretrain import model_config

    cfg = validate_config({"segments": {"length_s": 2.0, "n_patches": 4, "tasks": []},
                           "finetune": {"tasks": []}})
    results = tmp_path / "results"
    channel_files = []
    for rec, rate in ((REC, None), (REC.replace("sub-01", "sub-02"), 256.0)):
        fif = preprocess(sim_bids, tmp_path / "deriv", rec, resample_hz=rate)
        loc = localize_subject(sim_bids, rec[4:6], ["01"], space=None, need_atlas=False,
                               white_matter_radius_mm=4.0, label_column=None)
        segment_recording(fif, None, loc, rec, results / "segments" / rec, cfg["segments"],
                          cfg["splits"])
        channel_files.append(str(results / "segments" / rec / "channels.parquet"))
    code = cli.main(["tokens", "--params", "{}", "--scale", "channel", "--out-dir",
                     str(results / "tokens" / "channel"), *channel_files])
    err = capsys.readouterr().err
    assert code == 1
    msg = err[err.index("barista: error:"):]
    assert "different sampling rates" in msg and "preprocess.resample_hz" in msg
    assert f"512 Hz: {REC}" in msg and "256 Hz: sub-02_ses-01" in msg
    assert not (results / "tokens" / "channel" / "channels.parquet").exists()

    from barista.tokens import write_tokens

    write_tokens(channel_files, "channel", {}, results / "tokens" / "channel")
    with pytest.raises(DataError, match="different sampling rates"):
        model_config(results, "channel", "demo", {})
