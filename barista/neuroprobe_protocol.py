"""Every model of the DAG scored on the Neuroprobe protocol: its samples, its splits, its metric.

Windows (:func:`segment_trial`): for one Brain Treebank trial, the benchmark's samples of each
task (1 s from the word onset, or a non-verbal chunk), read from *our* preprocessed recording
(the same re-referencing and filtering the models were pretrained on, z-scored per channel as
every window of the study) on the benchmark's electrodes (the Lite subset) that preprocessing
kept. They are stored as a segments folder (``results/<ds>/neuroprobe/segments/<recording>/``,
the format of :mod:`barista.segments`) whose ``splits.parquet`` holds the package's roles:
``within_session0``/``within_session1`` (train/val/test), ``cross_session`` and
``cross_subject`` (val/test of this trial; they train on every sample of another trial).

Scores (:func:`evaluate_encoder`, :func:`evaluate_linear`): a fresh head per fold, early stopping
on the fold's validation half, the test ROC AUC of the best epoch; the row's ``auroc`` is the
mean over folds, and each fold's numbers are kept (``test_roc_auc_fold<k>``, ...) for the
leaderboard entry. Heads: a weight per channel and patch where train and test share the
subject (cross-session on the channels both trials kept), the channel-mean head where they do
not (cross-subject). The linear floor reads log band power per channel, averaged over channels
cross-subject.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import neuroprobe as npb
from .errors import ConfigError, DataError
from .leaderboard import fold_metric

log = logging.getLogger("barista")
SEGMENTS = "neuroprobe/segments"


def splits_of(split_type: str) -> list[str]:
    """The splits (``splits.parquet`` column ``split``) of a Neuroprobe split type: one per
    within-session fold, else the split type itself."""
    if split_type == "within_session":
        return [f"within_session{k}" for k in range(npb.N_FOLDS)]
    return [split_type]


def patches_of(window_samples: int, patch_samples: int) -> int:
    """Patches of a Neuroprobe window for a model of ``patch_samples`` per patch."""
    if window_samples % patch_samples:
        raise ConfigError(f"a Neuroprobe window ({npb.WINDOW_S:g} s = {window_samples} samples) "
                          f"does not split into patches of {patch_samples} samples (config keys "
                          "'segments.length_s' / 'segments.n_patches' set the patch length)")
    return window_samples // patch_samples


def segment_trial(fif: str | Path, localization: pd.DataFrame, btb_root: str | Path, *,
                  recording: str, subject: int, trial: int, out_dir: str | Path,
                  cfg: dict, patch_samples_s: float, alignment_dir: str | Path | None = None
                  ) -> dict:
    """Write the Neuroprobe windows of one trial (see the module docstring); returns a summary.

    ``cfg`` is the ``neuroprobe`` config section; ``patch_samples_s`` the models' patch length in
    seconds (``segments.length_s / segments.n_patches``).
    """
    import mne

    from .segments import WINDOWS_PER_ROW_GROUP, recording_channels, write_signal

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = npb.protocol_tables(btb_root, subject, trial, list(cfg["tasks"]),
                                 list(cfg["split_types"]), lite=cfg["lite"],
                                 alignment_dir=alignment_dir)
    raw = mne.io.read_raw_fif(fif, preload=False, verbose="error")
    sfreq = raw.info["sfreq"]
    n_window = int(round(npb.WINDOW_S * sfreq))
    n_patches = patches_of(n_window, int(round(patch_samples_s * sfreq)))

    sidecar = Path(fif).with_suffix(".json")
    anchors = {}
    if sidecar.exists():
        anchors = {c["name"]: c["anchor"] for c in json.loads(sidecar.read_text())["Channels"]}
    session = str(localization["session"].iloc[0]) if "session" in localization and \
        len(localization) else ""
    channels = recording_channels(raw, anchors, localization, session)
    channels = channels[channels["keep"].astype(bool)]
    by_contact = dict(zip(channels["contact"], channels.index, strict=True))
    kept = [e for e in tables.electrodes if e in by_contact]
    lost = [e for e in tables.electrodes if e not in by_contact]
    if not kept:
        raise DataError(f"{recording}: none of the {len(tables.electrodes)} Neuroprobe "
                        f"electrodes of subject {subject} survived preprocessing ({fif})")
    channels = channels.loc[[by_contact[e] for e in kept]].reset_index(drop=True)

    samples = tables.samples.copy()
    # the package counts samples of the 2048 Hz recording; ours may be resampled
    samples["onset"] = np.rint(samples["start"] * sfreq / npb.SAMPLING_RATE).astype(np.int64)
    late = samples[samples["onset"] + n_window > raw.n_times]
    if len(late) or (samples["onset"] < 0).any():
        row = (late if len(late) else samples[samples["onset"] < 0]).iloc[0]
        raise DataError(f"{recording}: Neuroprobe sample {row['sample']} of task {row['task']} "
                        f"(samples {row['start']}-{row['stop']} at {npb.SAMPLING_RATE} Hz) lies "
                        f"outside the recording ({raw.n_times} samples at {sfreq:g} Hz): the "
                        "alignment tables do not belong to this recording")
    onsets = np.unique(samples["onset"].to_numpy())
    samples["segment"] = np.searchsorted(onsets, samples["onset"])
    ids = {"recording": recording, "subject": str(localization["subject"].iloc[0])
           if "subject" in localization and len(localization) else str(subject),
           "session": session}
    index = pd.DataFrame({**ids, "kind": samples["task"], "segment": samples["segment"],
                          "onset_s": samples["onset"] / sfreq, "label": samples["label"],
                          "sample": samples["sample"]})
    roles = tables.roles.merge(samples[["task", "sample", "segment"]], on=["task", "sample"])
    # keyed by the package's sample too: two samples can share a window (two words at one
    # onset), and each keeps the role the package gave it
    splits = pd.DataFrame({"recording": recording, "kind": roles["task"],
                           "segment": roles["segment"], "split": roles["split"],
                           "role": roles["role"], "sample": roles["sample"]})
    metadata = {"recording": recording, "sfreq": sfreq, "n_patches": n_patches,
                "patch_samples": n_window // n_patches,
                "windows_per_row_group": WINDOWS_PER_ROW_GROUP,
                "channels": channels["channel"].tolist(), "protocol": "neuroprobe",
                "subject_id": subject, "trial_id": trial,
                "train_of": {k: list(v) for k, v in tables.train_of.items()}}
    write_signal(raw, channels["channel"].tolist(), onsets, n_window, out_dir / "signal.parquet",
                 metadata)
    channels.insert(0, "recording", recording)
    channels.insert(1, "subject", ids["subject"])
    channels.insert(2, "session", session)
    for name, table in (("channels", channels), ("index", index), ("splits", splits)):
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
    counts = index.groupby(["kind", "label"]).size().rename("n").reset_index()
    return {"recording": recording, "subject_trial": npb.session_key(subject, trial),
            "n_windows": int(len(onsets)), "n_channels": int(len(channels)),
            "electrodes_lost_in_preprocessing": lost, "n_patches": n_patches,
            "train_of": metadata["train_of"], "counts": counts.to_dict(orient="records")}


# --- scoring ------------------------------------------------------------------------------

def _windows(results, task, recording, scale, channels=None, spatial_ids=None):
    from .data import SegmentDataset

    ds = SegmentDataset(results, task, encode_scale=scale, mask_scale=None, split=None,
                        recordings=[recording], segments=SEGMENTS, channels=channels,
                        spatial_ids=None if spatial_ids is None else
                        {recording: spatial_ids[recording]})
    if len(ds) == 0:
        raise DataError(f"{recording}: no Neuroprobe '{task}' samples under "
                        f"{Path(results) / SEGMENTS / recording}")
    return ds


def _positions(results, recording: str, task: str, split: str, index: pd.DataFrame
               ) -> dict[str, np.ndarray]:
    """Row positions in ``index`` (one recording's samples of ``task``) of each role."""
    from .data import read_splits

    path = Path(results) / SEGMENTS / recording / "splits.parquet"
    splits = read_splits(path)
    splits = splits[(splits["kind"] == task) & (splits["split"] == split)]
    if splits.empty:
        raise DataError(f"{path}: no '{split}' split of '{task}': is it in config key "
                        "'neuroprobe.split_types', and does this trial's training trial exist?")
    if splits["sample"].duplicated().any():
        raise DataError(f"{path}: a sample of '{task}' has two roles in '{split}'")
    role_of = dict(zip(splits["sample"], splits["role"], strict=True))
    roles = index["sample"].map(role_of)
    return {role: np.flatnonzero((roles == role).to_numpy()) for role in ("train", "val", "test")}


def _common_channels(results, test_rec: str, train_rec: str) -> list[str]:
    names = {}
    for rec in (test_rec, train_rec):
        table = pd.read_parquet(Path(results) / SEGMENTS / rec / "channels.parquet")
        names[rec] = table["channel"].tolist()
    common = [c for c in names[test_rec] if c in set(names[train_rec])]
    if not common:
        raise DataError(f"{test_rec} and {train_rec} share no channel for a per-channel head")
    dropped = len(names[test_rec]) - len(common)
    if dropped:
        log.info("%s: %d channel(s) not in %s left out", test_rec, dropped, train_rec)
    return common


def _fold_rows(outs: list[dict]) -> dict:
    """The row's metrics: mean test AUROC over folds and every fold's own numbers."""
    metrics = {"auroc": float(np.mean([o["auroc"] for o in outs])), "n_folds": len(outs)}
    for k, out in enumerate(outs):
        for name in ("test_roc_auc", "test_accuracy", "train_roc_auc", "train_accuracy",
                     "n_train", "n_test"):
            if name in out:
                metrics[fold_metric(name, k)] = float(out[name])
    return metrics


def evaluate_encoder(results: str | Path, encoder, *, task: str, split_type: str,
                     recording: str, train_recording: str | None, cfg, device,
                     spatial_ids: dict | None = None) -> dict:
    """Finetune and test ``encoder`` on one Neuroprobe split of ``recording`` (every fold, each
    from the same starting weights). ``cfg``: :class:`barista.training.finetune.FinetuneConfig`;
    ``spatial_ids``: per recording, the encoder's own spatial ids of its Neuroprobe channels
    (the released encoders' vocabularies), in place of the encode scale's tokens.
    """
    from .training.common import seed_everything, seed_of
    from .training.finetune import _fit, _load_windows, apply_freeze

    scale = getattr(encoder.config, "encode_scale", None)
    start = copy.deepcopy(encoder.state_dict())
    apply_freeze(encoder, cfg.freeze)
    pooled = split_type == "cross_subject"
    if split_type == "within_session":
        windows = _windows(results, task, recording, scale, spatial_ids=spatial_ids)
        _load_windows(windows, encoder, device)
        folds = {kind: _positions(results, recording, task, kind, windows.index)
                 for kind in splits_of(split_type)}
        fold_sets = [{role: windows.subset(pos) for role, pos in roles.items()}
                     for roles in folds.values()]
    else:
        if train_recording is None:
            raise ConfigError(f"{split_type} needs the recording it trains on")
        channels = None if pooled else _common_channels(results, recording, train_recording)
        train = _windows(results, task, train_recording, scale, channels, spatial_ids)
        test = _windows(results, task, recording, scale, channels, spatial_ids)
        for ds in (train, test):
            _load_windows(ds, encoder, device)
        roles = _positions(results, recording, task, split_type, test.index)
        fold_sets = [{"train": train, "val": test.subset(roles["val"]),
                      "test": test.subset(roles["test"])}]
    outs, curves = [], []
    for k, sets in enumerate(fold_sets):
        for role, ds in sets.items():
            if len(ds) == 0 or len(np.unique(ds.index["label"])) < 2:
                raise DataError(f"{recording} {task} {split_type} fold {k}: the {role} set "
                                f"holds {len(ds)} samples of {ds.index['label'].nunique()} "
                                "class(es)")
        encoder.load_state_dict(start)
        seed_everything(seed_of(cfg.seed, recording, task, split_type, k))
        out = _fit(encoder, sets, recording, cfg, device, seed=seed_of(cfg.seed, k),
                   pooled=pooled)
        out["curve"].insert(0, "fold", k)
        curves.append(out["curve"])
        m = out["metrics"]
        outs.append({"auroc": m["auroc"], "test_roc_auc": m["auroc"],
                     "test_accuracy": m["test_accuracy"], "n_train": m["n_train"],
                     "n_test": m["n_test"]})
    encoder.load_state_dict(start)  # the caller's encoder as it came
    return {"metrics": _fold_rows(outs), "curve": pd.concat(curves, ignore_index=True)}


def evaluate_linear(results: str | Path, *, task: str, split_type: str, recording: str,
                    train_recording: str | None, seed: int = 0) -> dict:
    """The linear floor (log band power, logistic regression, penalty chosen on the fold's
    validation half) on one Neuroprobe split of ``recording``."""
    from .training.baselines import _arrays, band_power_features, fit_logistic

    def features(ds, pooled):
        x, y = _arrays(ds)
        f = band_power_features(x, ds.files[ds.index["recording"].iloc[0]].meta["sfreq"])
        if pooled:  # channels differ across subjects: their mean per band
            n_ch = x.shape[1]
            f = f.reshape(len(f), n_ch, -1).mean(axis=1)
        return f, y

    if split_type == "within_session":
        windows = _windows(results, task, recording, None)
        feats, y = features(windows, False)
        folds = [_positions(results, recording, task, kind, windows.index)
                 for kind in splits_of(split_type)]
        data = [{role: (feats[pos], y[pos]) for role, pos in roles.items()} for roles in folds]
    else:
        if train_recording is None:
            raise ConfigError(f"{split_type} needs the recording it trains on")
        pooled = split_type == "cross_subject"
        channels = None if pooled else _common_channels(results, recording, train_recording)
        train = _windows(results, task, train_recording, None, channels)
        test = _windows(results, task, recording, None, channels)
        train_f, test_f = features(train, pooled), features(test, pooled)
        roles = _positions(results, recording, task, split_type, test.index)
        data = [{"train": train_f, "val": (test_f[0][roles["val"]], test_f[1][roles["val"]]),
                 "test": (test_f[0][roles["test"]], test_f[1][roles["test"]])}]
    outs = []
    for fold in data:
        out = fit_logistic(fold, seed=seed)
        outs.append({**out, "test_roc_auc": out["auroc"], "n_train": len(fold["train"][1]),
                     "n_test": len(fold["test"][1])})
    return _fold_rows(outs)
