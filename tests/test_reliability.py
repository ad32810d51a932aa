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
from conftest import step_json
from test_bad_input import REC, SPACE, ieeg, localize, preprocess, rec_file, segment

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
    code = cli.main(["segment", "--params", step_json("segment"), "--bids-root", str(sim_bids),
                     "--recording", REC, "--fif", str(fif), "--localization", str(loc),
                     "--out-dir", str(out)])
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
    code = cli.main(["tokens", "--params", step_json("tokens", cfg, ["channel"]), "--scale",
                     "channel", "--out-dir", str(results / "tokens" / "channel"), *channel_files])
    err = capsys.readouterr().err
    assert code == 1
    msg = err[err.index("barista: error:"):]
    assert "different sampling rates" in msg and "preprocess.resample_hz" in msg
    assert f"512 Hz: {REC}" in msg and "256 Hz: sub-02_ses-01" in msg
    assert not (results / "tokens" / "channel" / "channels.parquet").exists()

    from barista.tokens import write_tokens

    write_tokens(channel_files, "channel", {}, results / "tokens" / "channel")
    with pytest.raises(DataError, match="different sampling rates"):
        model_config(results, "channel", "demo", {}, [REC, REC.replace("sub-01", "sub-02")])


# --- duplicated names -------------------------------------------------------------------------


def test_duplicate_contact_in_electrodes_tsv(sim_copy):
    """A contact listed twice (a real dataset lists two STN contacts again with the other
    hemisphere's coordinates): which row is right is unknown, so it is an error."""

    tsv = ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_electrodes.tsv"
    lines = tsv.read_text().splitlines(keepends=True)
    la2 = next(ln for ln in lines if ln.startswith("LA2\t"))
    lines.append(la2.replace("\t-", "\t"))  # the same name, mirrored to the other hemisphere
    tsv.write_text("".join(lines))
    with pytest.raises(DataError) as err:
        localize(sim_copy)
    assert str(tsv) in str(err.value) and "listed more than once: ['LA2']" in str(err.value)


# --- truncated raw files ----------------------------------------------------------------------


def drop_recording_duration(root: Path) -> None:
    sidecar = rec_file(root, "ieeg.json")
    meta = json.loads(sidecar.read_text())
    del meta["RecordingDuration"]
    sidecar.write_text(json.dumps(meta))


def test_truncated_eeg_without_recording_duration(sim_copy, tmp_path):
    """Half a BrainVision file, whole samples, no RecordingDuration: mne reads 15 s of the 30
    without a word; the events after the end tell."""
    drop_recording_duration(sim_copy)
    eeg = rec_file(sim_copy, "ieeg.eeg")
    frame = 4 * N_CHANNELS
    eeg.write_bytes(eeg.read_bytes()[:(eeg.stat().st_size // frame // 2) * frame])
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    msg = str(err.value)
    assert str(rec_file(sim_copy, "ieeg.vhdr")) in msg and "truncated" in msg
    assert str(rec_file(sim_copy, "events.tsv")) in msg and "holds 14.998 s of data" in msg


def test_truncated_eeg_mid_sample(sim_copy, tmp_path):
    """Cut inside a sample, with neither RecordingDuration nor events: the file's size tells."""
    drop_recording_duration(sim_copy)
    rec_file(sim_copy, "events.tsv").unlink()
    eeg = rec_file(sim_copy, "ieeg.eeg")
    eeg.write_bytes(eeg.read_bytes()[:eeg.stat().st_size // 2 + 6])
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    msg = str(err.value)
    assert str(rec_file(sim_copy, "ieeg.vhdr")) in msg and "truncated" in msg
    assert "not a whole number of samples" in msg


def write_edf(path: Path, data: np.ndarray, sfreq: int, names: list[str]) -> None:
    """A minimal EDF file: 1 s data records, int16 samples scaled to +-1 mV."""
    n_ch, n = data.shape
    n_records = n // sfreq

    def field(value, width):
        return str(value).ljust(width)[:width].encode("ascii")

    head = (field(0, 8) + field("X X X X", 80) + field("Startdate X X X X", 80)
            + field("01.01.01", 8) + field("00.00.00", 8) + field(256 * (n_ch + 1), 8)
            + field("", 44) + field(n_records, 8) + field(1, 8) + field(n_ch, 4))
    for width, values in ((16, names), (80, [""] * n_ch), (8, ["uV"] * n_ch),
                          (8, [-1000] * n_ch), (8, [1000] * n_ch), (8, [-32768] * n_ch),
                          (8, [32767] * n_ch), (80, [""] * n_ch), (8, [sfreq] * n_ch),
                          (32, [""] * n_ch)):
        head += b"".join(field(v, width) for v in values)
    digital = np.clip(np.round(data / 1000 * 32767), -32768, 32767).astype("<i2")
    records = digital[:, :n_records * sfreq].reshape(n_ch, n_records, sfreq).transpose(1, 0, 2)
    path.write_bytes(head + records.tobytes())


def test_truncated_edf(tmp_path):
    """mne reads an EDF file shorter than its header says from its size (with a warning that
    the pipeline's quiet reading hides); the header's record count tells."""
    from barista.preprocess import truncation

    edf = tmp_path / "rec.edf"
    write_edf(edf, np.random.default_rng(0).uniform(-500, 500, (3, 10 * 64)), 64,
              ["LA1", "LA2", "LA3"])
    assert mne.io.read_raw_edf(edf, verbose="error").n_times == 640 and truncation(edf) is None
    edf.write_bytes(edf.read_bytes()[:-3 * 64 * 2 * 4 - 10])  # 4 records and a bit less
    assert mne.io.read_raw_edf(edf, verbose="error").n_times == 5 * 64  # no complaint
    assert truncation(edf) == "its header declares 10 data records, the file holds 5"


# --- duplicated channel names in the recording ------------------------------------------------


def test_duplicate_channel_name_in_recording(sim_copy, tmp_path):
    """mne renames a repeated name (LA1-0, LA1-1) and then fails on units, a message that
    never says 'duplicate'; the header is read first and the repeated name reported."""
    vhdr = rec_file(sim_copy, "ieeg.vhdr")
    vhdr.write_text(vhdr.read_text(encoding="utf-8").replace("Ch7=LA2,", "Ch7=LA1,"),
                    encoding="utf-8")
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path)
    assert str(vhdr) in str(err.value)
    assert "channel names recorded more than once: ['LA1']" in str(err.value)


# --- shaft references and real neighbours -----------------------------------------------------


def edit_tsv(path: Path, edit) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(ln) for ln in lines))


def test_preprocess_references_by_position(sim_copy, tmp_path):
    """Preprocessing passes the contacts' positions to the Laplacian: a contact 30 mm off its
    shaft is nobody's neighbour, and ECoG contacts without positions stop the run."""
    tsv = ieeg(sim_copy) / f"sub-01_ses-01_space-{SPACE}_electrodes.tsv"
    before = json.loads(preprocess(sim_copy, tmp_path / "a").with_suffix(".json").read_text())
    la = {c["name"] for c in before["Channels"] if c["name"].startswith("LA")}
    assert la == {"LA2", "LA3"}  # LA5 is marked bad, so LA4 lacks a neighbour

    def displace(line):
        if not line.startswith("LA3\t"):
            return line
        name, x, y, z, size = line.rstrip("\n").split("\t")
        return "\t".join([name, x, str(float(y) + 30.0), z, size]) + "\n"

    edit_tsv(tsv, displace)
    after = json.loads(preprocess(sim_copy, tmp_path / "b").with_suffix(".json").read_text())
    assert not {c["name"] for c in after["Channels"] if c["name"].startswith("LA")}
    assert {"LA2", "LA3"} <= set(after["ChannelsWithoutReference"])

    # the LT shaft as ECoG contacts without positions: a grid or a strip? unknown
    edit_tsv(rec_file(sim_copy, "channels.tsv"),
             lambda ln: ln.replace("\tSEEG\t", "\tECOG\t") if ln.startswith("LT") else ln)
    edit_tsv(tsv, lambda ln: "" if ln.startswith("LT") else ln)
    with pytest.raises(DataError) as err:
        preprocess(sim_copy, tmp_path / "c")
    msg = str(err.value)
    assert str(rec_file(sim_copy, "ieeg.vhdr")) in msg and "ECoG contacts ['LT" in msg
    assert "preprocess.reference" in msg


# --- the workflow: config files, datasets without positions or task events --------------------

REPO = Path(__file__).resolve().parents[1]
needs_snakemake = pytest.mark.skipif(shutil.which("snakemake") is None,
                                     reason="needs snakemake")


def run_snakemake(workdir: Path, args: list[str], ok: bool = True) -> str:
    """Snakemake with the repository's Snakefile, run in ``workdir`` (as a user would from a
    checkout, with the results in ``workdir``)."""
    import os
    import subprocess

    cmd = ["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory", str(workdir), *args]
    # the rules' `python -m barista` must import this checkout's package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=workdir,
                          env=env)
    log = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, log[-4000:]
    return log


def planned(log: str) -> dict[str, int]:
    from test_workflow import planned_jobs

    return planned_jobs(log)


def set_key(cfg: dict, dotted: str, value) -> None:
    section, key = dotted.split(".")
    cfg.setdefault(section, {})[key] = value


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"## {title}\n")[1].split("\n## ")[0]


def bids_without(tmp_path: Path, patterns: tuple[str, ...], **simulate) -> Path:
    """A small simulated BIDS dataset with the files matching ``patterns`` removed."""
    from barista.simulate import simulate_dataset

    root = tmp_path / "bids"
    simulate_dataset(root, **{"n_subjects": 2, "n_sessions": 1, "duration_s": 24.0,
                              "sfreq": 256.0, "line_freq": 60.0, "n_shafts": 3,
                              "contacts_per_shaft": 6, "seed": 3, **simulate})
    for pattern in patterns:
        for path in root.rglob(pattern):
            path.unlink()
    return root


@pytest.mark.slow
@needs_snakemake
def test_user_config_replaces_the_demo_lists_and_mappings(tmp_path):
    """A user's file is the whole configuration: `scales: {channel: {}}` builds one scale,
    where it used to be merged into the demo's three."""
    import yaml

    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump({"dataset": {"name": "mine"}, "scales": {"channel": {}}}))
    jobs = planned(run_snakemake(tmp_path, ["data", "-n", "--cores", "1", "--configfile",
                                            str(cfg)]))
    assert jobs["tokens"] == 1
    jobs = planned(run_snakemake(tmp_path, ["all", "-n", "--cores", "1", "--configfile",
                                            str(cfg)]))
    assert jobs["pretrain"] == 1 and "pretrain_rpnt" not in jobs  # channel-channel only


@pytest.mark.slow
@needs_snakemake
def test_readme_own_data_recipe_without_positions(tmp_path):
    """README, 'Your own data', exactly as written, on a dataset without electrode positions:
    copy config/config.yaml, change the dataset section (the README's local block), apply the
    README's no-positions sentence, run the README's command. The DAG plans the whole study
    at the channel scale, and the data stage runs."""
    import yaml

    root = bids_without(tmp_path, ("*_electrodes.*", "*_coordsystem.json"), n_sessions=2)
    section = readme_section("Your own data")
    assert "Copy `config/config.yaml`, change the `dataset` section, and pass it with " \
        "`--configfile`" in section
    blocks = section.split("```")
    local = next(yaml.safe_load(b[len("yaml"):]) for b in blocks[1::2]
                 if b.startswith("yaml") and "source: local" in b)
    command = next(b[len("bash"):].strip() for b in blocks[1::2] if b.startswith("bash"))
    assert command == "snakemake --cores all --configfile my_config.yaml"
    sentence = ("in your copy replace the `scales` section by\n  `scales: {channel: {}}`, set "
                "`model.encode_scales` and `model.mask_scales` to `[channel]` and\n  set "
                "`rpnt.encode_scale` to `channel`.")
    assert sentence in section

    mine = yaml.safe_load((REPO / "config" / "config.yaml").read_text())  # the copy
    local["dataset"]["local"]["bids_root"] = str(root)  # the README's /data/mystudy
    mine["dataset"] = local["dataset"]
    mine["scales"] = {"channel": {}}
    set_key(mine, "model.encode_scales", ["channel"])
    set_key(mine, "model.mask_scales", ["channel"])
    set_key(mine, "rpnt.encode_scale", "channel")
    (tmp_path / "my_config.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))

    jobs = planned(run_snakemake(tmp_path, [*command.split()[1:], "-n"]))
    # channel-channel: the demo's two variants x three pretraining runs
    assert jobs["tokens"] == 1 and jobs["pretrain"] == 2 * 3
    run_snakemake(tmp_path, ["data", "--cores", "2", "--configfile", "my_config.yaml"])
    res = tmp_path / "results" / "mystudy"
    assert sorted(p.name for p in (res / "tokens").iterdir()) == ["channel"]
    import pandas as pd

    tokens = pd.read_parquet(res / "tokens" / "channel" / "channels.parquet")
    assert len(tokens) and (tokens["token_id"] > 0).all()  # every channel its own token
    # with the recordings known, the whole study's DAG is complete (decoded sessions etc.)
    jobs = planned(run_snakemake(tmp_path, [*command.split()[1:], "-n"]))
    assert jobs["pretrain"] == 2 * 3 and jobs["pretrain_rpnt"] == 1 and "segment" not in jobs
    # one finetuning job per encoder: every pretraining run (all are probed) and RPNT
    assert jobs["finetune:barista"] == 2 * 3 and jobs["finetune:rpnt"] == 1


@pytest.mark.slow
@needs_snakemake
def test_pretraining_only_on_recordings_without_events(tmp_path):
    """Recordings without task events, pretraining alone on every recording (the README's
    recipe): the whole workflow runs; the model saw every recording, the decoding table has
    the result columns and no rows, and only the figures without decoding are drawn."""
    import pandas as pd
    import torch
    import yaml

    from barista.evaluation import RESULT_COLUMNS

    root = bids_without(tmp_path, ("*_events.*",), n_subjects=1, n_sessions=2)
    section = readme_section("Your own data")
    sentence = ("copy set `segments.tasks` and `finetune.tasks` to `[]`, "
                "`evaluation.heldout_sessions` and\n  `evaluation.heldout_subjects` to 0 and "
                "`reconstruct.enabled` to false.")
    assert sentence in section
    mine = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    mine["dataset"] = {"name": "archive", "source": "local", "local": {"bids_root": str(root)}}
    for key, value in (("segments.tasks", []), ("finetune.tasks", []),
                       ("evaluation.heldout_sessions", 0), ("evaluation.heldout_subjects", 0),
                       ("reconstruct.enabled", False)):
        set_key(mine, key, value)
    # small and fast: one scale, one model, one epoch
    mine["scales"] = {"channel": {}}
    mine["model"].update(architectures=["barista"], encode_scales=["channel"],
                         mask_scales=["channel"], variants={"paper": "all"})
    mine["pretrain"].update(epochs=1, repeats=1, seed=0)
    cfg = tmp_path / "archive.yaml"
    cfg.write_text(yaml.safe_dump(mine))

    run_snakemake(tmp_path, ["all", "--cores", "2", "--configfile", str(cfg)])
    res = tmp_path / "results" / "archive"
    decoding = pd.read_parquet(res / "decoding.parquet")
    assert decoding.empty and list(decoding.columns) == RESULT_COLUMNS
    model = torch.load(res / "models/barista/paper/channel-channel/seed0/model.pt",
                       weights_only=False)
    assert model["recordings"] == ["sub-01_ses-01_task-listen_run-01",
                                   "sub-01_ses-02_task-listen_run-01"]
    figures = sorted(p.name for p in (res / "figures").glob("*.png"))
    assert figures == ["electrodes_lobe.png", "electrodes_parcel.png", "pretraining_curves.png"]
