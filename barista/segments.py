"""Segments: fixed-length windows of a preprocessed recording, their task labels and splits.

Windows are stored once per recording (``signal.parquet``: one row per window and channel,
z-scored per channel within the window); ``index.parquet`` says which windows serve which purpose
(``pretrain``, ``speech_vs_nonspeech``, ``sentence_onset``) with which label, and
``splits.parquet`` assigns them to train/val/test for random and chronological splits. Task
definitions follow BaRISTA (NeurIPS 2025): positives are windows centred on word onsets that follow
silence (speech) or on sentence-onset words; negatives are grid windows that contain no word.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .bids import read_tsv
from .errors import ConfigError, DataError, OutputError

TASKS = ("speech_vs_nonspeech", "sentence_onset")
WINDOWS_PER_ROW_GROUP = 64
INDEX_COLUMNS = ["recording", "subject", "session", "kind", "segment", "onset_s", "label"]


@dataclass(frozen=True)
class Windows:
    """Unique window onsets (samples) and which purposes use them."""

    onsets: np.ndarray  # sorted unique onsets; the window id is the position in this array
    index: pd.DataFrame  # kind, segment, label


def seeded_rng(*keys: object) -> np.random.Generator:
    """An RNG seeded from ints and strings, stable across Python runs (no ``hash()``)."""
    words = [k if isinstance(k, int) and k >= 0 else zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(words)


def window_samples(length_s: float, n_patches: int, sfreq: float) -> int:
    n = int(round(length_s * sfreq))
    if n % n_patches:
        raise ConfigError(f"config key 'segments.n_patches': {length_s} s at {sfreq:g} Hz is {n} "
                          f"samples, which does not split into {n_patches} equal patches")
    return n


def read_words(events_tsv: Path, need_sentences: bool) -> pd.DataFrame:
    """Word events (onset, duration, sentence_onset) of a recording, sorted by onset."""
    if not Path(events_tsv).exists():
        raise DataError(f"no events file {events_tsv}: the decoding tasks need word events")
    events = read_tsv(events_tsv)
    if "trial_type" in events.columns:
        words = events[events["trial_type"].astype(str).str.lower() == "word"]
    else:
        words = events
    if words.empty:
        raise DataError(f"{events_tsv}: no word events (rows with trial_type 'word') for the "
                        "speech and sentence-onset tasks")
    if need_sentences and "sentence_onset" not in words.columns:
        raise DataError(f"{events_tsv}: column 'sentence_onset' is missing; the sentence_onset "
                        "task needs it (or drop it from config key 'segments.tasks')")
    if "onset" not in words.columns:
        raise DataError(f"{events_tsv}: column 'onset' is missing (has {list(events.columns)})")
    onset = pd.to_numeric(words["onset"], errors="coerce")
    not_number = onset.isna() & words["onset"].notna()
    if not_number.any():
        raise DataError(f"{events_tsv}: column 'onset' holds a value that is not a number "
                        f"({words['onset'][not_number].iloc[0]!r}) in a word event")
    words, onset = words[onset.notna()], onset[onset.notna()]  # n/a onsets are unusable
    # duration is required by BIDS but often missing; a bare onset counts as 0 s
    duration = words["duration"] if "duration" in words.columns else pd.Series(0.0, words.index)
    out = pd.DataFrame({
        "onset": onset.to_numpy(float),
        "duration": pd.to_numeric(duration, errors="coerce").fillna(0.0).to_numpy(float),
        "sentence_onset": (pd.to_numeric(words["sentence_onset"], errors="coerce").fillna(0)
                           .to_numpy(int) if "sentence_onset" in words else 0),
    })
    return out.sort_values("onset", kind="stable").reset_index(drop=True)


def grid_onsets(n_total: int, n_window: int) -> np.ndarray:
    """Non-overlapping windows tiling the recording from its start."""
    return np.arange(0, n_total - n_window + 1, n_window, dtype=np.int64)


def word_free(onsets: np.ndarray, n_window: int, sfreq: float, words: pd.DataFrame) -> np.ndarray:
    """Mask of windows that overlap no word interval."""
    start_s, end_s = onsets / sfreq, (onsets + n_window) / sfreq
    w_start = words["onset"].to_numpy()
    w_end = w_start + np.maximum(words["duration"].to_numpy(), 0.0)
    # a window is free when every word ends before it starts or starts after it ends
    first_after = np.searchsorted(w_start, end_s, side="left")
    last_end_before = np.array([w_end[:k].max() if k else -np.inf for k in first_after])
    return last_end_before <= start_s


def centred_onsets(times_s: np.ndarray, n_window: int, sfreq: float, n_total: int) -> np.ndarray:
    onsets = np.rint(times_s * sfreq).astype(np.int64) - n_window // 2
    return onsets[(onsets >= 0) & (onsets + n_window <= n_total)]


def speech_onsets(words: pd.DataFrame, silence_s: float) -> np.ndarray:
    """Onsets of words preceded by at least ``silence_s`` without any word."""
    onset = words["onset"].to_numpy()
    ends = onset + words["duration"].to_numpy()
    prev_end = np.concatenate([[-np.inf], np.maximum.accumulate(ends)[:-1]])
    return onset[onset - prev_end >= silence_s]


def _balanced(pos: np.ndarray, neg: np.ndarray, rng: np.random.Generator):
    n = min(len(pos), len(neg))
    pos = np.sort(rng.choice(pos, n, replace=False)) if len(pos) > n else pos
    neg = np.sort(rng.choice(neg, n, replace=False)) if len(neg) > n else neg
    return pos, neg


def plan_windows(n_total: int, sfreq: float, n_window: int, words: pd.DataFrame | None,
                 tasks: list[str], silence_s: float, rng_key: tuple) -> Windows:
    """All windows of a recording: the pretraining grid and each task's balanced windows."""
    grid = grid_onsets(n_total, n_window)
    plans = [("pretrain", grid, np.full(len(grid), -1))]
    if tasks:
        free = grid[word_free(grid, n_window, sfreq, words)]
        for task in tasks:
            if task == "speech_vs_nonspeech":
                times = speech_onsets(words, silence_s)
            else:
                times = words.loc[words["sentence_onset"] == 1, "onset"].to_numpy()
            pos = centred_onsets(times, n_window, sfreq, n_total)
            pos, neg = _balanced(np.unique(pos), free, seeded_rng(*rng_key, task))
            onsets = np.concatenate([pos, neg])
            labels = np.concatenate([np.ones(len(pos), int), np.zeros(len(neg), int)])
            plans.append((task, onsets, labels))
    unique = np.unique(np.concatenate([p[1] for p in plans]))
    index = pd.concat([pd.DataFrame({"kind": kind, "segment": np.searchsorted(unique, onsets),
                                     "label": labels})
                       for kind, onsets, labels in plans], ignore_index=True)
    index = index.sort_values(["kind", "segment"], kind="stable").reset_index(drop=True)
    return Windows(unique, index)


def random_split(index: pd.DataFrame, fractions: dict, rng_key: tuple) -> pd.DataFrame:
    """Seeded train/val/test assignment per kind, stratified by label."""
    rows = []
    for (kind, label), group in index.groupby(["kind", "label"], sort=True):
        segs = group["segment"].to_numpy()
        order = seeded_rng(*rng_key, kind, int(label)).permutation(len(segs))
        n_train = int(round(fractions["train"] * len(segs)))
        n_val = int(round(fractions["val"] * len(segs)))
        role = np.array(["test"] * len(segs), dtype=object)
        role[order[:n_train]] = "train"
        role[order[n_train:n_train + n_val]] = "val"
        rows.append(pd.DataFrame({"kind": kind, "segment": segs, "split": "random",
                                  "role": role}))
    return pd.concat(rows, ignore_index=True)


def chronological_folds(index: pd.DataFrame, onsets_s: np.ndarray, length_s: float,
                        duration_s: float, n_folds: int, buffer_s: float) -> pd.DataFrame:
    """Fold k tests on the k-th time block; windows within ``buffer_s`` of it validate.

    Windows overlapping the test block without fitting inside it go to validation too, and a
    window reaching into the buffer is excluded from training, so no training window shares a
    sample with a test window.
    """
    start = onsets_s[index["segment"].to_numpy()]
    end = start + length_s
    frames = []
    for k in range(n_folds):
        a, b = k * duration_s / n_folds, (k + 1) * duration_s / n_folds
        role = np.full(len(index), "excluded", dtype=object)
        role[(end <= a - buffer_s) | (start >= b + buffer_s)] = "train"
        in_zone = (start >= a - buffer_s) & (end <= b + buffer_s)
        role[in_zone] = "val"
        role[(start >= a) & (end <= b)] = "test"
        frames.append(pd.DataFrame({"kind": index["kind"].to_numpy(),
                                    "segment": index["segment"].to_numpy(),
                                    "split": f"chrono{k}", "role": role}))
    return pd.concat(frames, ignore_index=True)


def zscore(x: np.ndarray) -> np.ndarray:
    """Per channel (row) within the window; flat channels become zeros, not NaN."""
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def signal_schema(n_samples: int, metadata: dict) -> pa.Schema:
    return pa.schema(
        [pa.field("segment", pa.int32()),
         pa.field("channel", pa.dictionary(pa.int16(), pa.string())),
         pa.field("data", pa.list_(pa.float32(), n_samples))],
        metadata={b"barista": json.dumps(metadata).encode()},
    )


def write_signal(raw: mne.io.BaseRaw, picks: list[str], onsets: np.ndarray, n_window: int,
                 path: Path, metadata: dict) -> None:
    """Stream z-scored windows into Parquet, ``WINDOWS_PER_ROW_GROUP`` windows per row group."""
    n_ch = len(picks)
    schema = signal_schema(n_window, metadata)
    channel = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(n_ch, dtype=np.int16), WINDOWS_PER_ROW_GROUP)),
        pa.array(picks, pa.string()))
    pick_idx = [raw.ch_names.index(c) for c in picks]
    tmp = path.with_name(path.name + ".tmp")
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=1) as writer:
            for first in range(0, len(onsets), WINDOWS_PER_ROW_GROUP):
                block = onsets[first:first + WINDOWS_PER_ROW_GROUP]
                windows = np.stack(list(_read_windows(raw, pick_idx, block, n_window)))
                _check_finite(windows, block, picks, raw)
                n = len(block)
                flat = pa.array(windows.reshape(-1), pa.float32())
                table = pa.Table.from_arrays(
                    [pa.array(np.repeat(np.arange(first, first + n, dtype=np.int32), n_ch)),
                     channel.slice(0, n * n_ch),
                     pa.FixedSizeListArray.from_arrays(flat, n_window)],
                    schema=schema)
                writer.write_table(table, row_group_size=n * n_ch)
    except BaseException as err:
        # no partial file left behind; on a full disk this also frees the space that the
        # error message needs in the rule's log (otherwise the log stays empty)
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"writing {path} failed: {err}") from err
        raise
    tmp.replace(path)


def _check_finite(windows: np.ndarray, onsets: np.ndarray, picks: list[str],
                  raw: mne.io.BaseRaw) -> None:
    """Refuse NaN or Inf before it reaches a model: one such sample makes every weight NaN in
    pretraining, and the first error would come rules later from somewhere else."""
    bad = ~np.isfinite(windows)
    if not bad.any():
        return
    w, ch = np.argwhere(bad.any(axis=2))[0]
    source = raw.filenames[0] if raw.filenames else "the recording"
    raise DataError(f"{source}: channel {picks[ch]} holds a NaN or Inf sample in the window "
                    f"starting at {onsets[w] / raw.info['sfreq']:.3f} s; preprocess the "
                    "recording again (config key 'preprocess.nonfinite' drops such channels)")


def _read_windows(raw: mne.io.BaseRaw, picks: list[int], onsets: np.ndarray, n_window: int,
                  max_span: int = 16):
    """Yield z-scored windows, reading runs of nearby windows with one file read each.

    One read per run instead of per window saves most of the I/O overhead; capping a run at
    ``max_span`` window lengths bounds memory whatever the spacing of the windows.
    """
    i = 0
    while i < len(onsets):
        lo = int(onsets[i])
        j = i + 1
        while j < len(onsets) and onsets[j] + n_window - lo <= max_span * n_window:
            j += 1
        hi = int(onsets[j - 1]) + n_window
        span = raw.get_data(picks=picks, start=lo, stop=hi)
        for o in onsets[i:j]:
            yield zscore(span[:, o - lo:o - lo + n_window])
        i = j


def window_geometry(signal_files: list[str | Path]) -> dict:
    """Sampling rate and patch geometry shared by the windows of every recording.

    One model takes windows of one shape: recordings kept at different sampling rates (or cut
    with other segment options) cut windows of different shapes, which used to fail later as a
    reshape error inside the model. Every file's metadata is read (a schema read each, no
    data); a disagreement names two recordings and their values.
    """
    if not signal_files:
        raise DataError("no signal.parquet files: run the segment step first")
    geometry: dict[tuple, list[str]] = {}
    for path in signal_files:
        if not Path(path).exists():
            raise DataError(f"{path} missing: run the segment step first")
        meta = pq.read_schema(path).metadata or {}
        if b"barista" not in meta:
            raise DataError(f"{path} is not a barista signal file (no 'barista' metadata)")
        m = json.loads(meta[b"barista"])
        key = (float(m["sfreq"]), int(m["n_patches"]), int(m["patch_samples"]))
        geometry.setdefault(key, []).append(m["recording"])
    if len(geometry) > 1:
        (a, recs_a), (b, recs_b) = list(geometry.items())[:2]
        diff = ", ".join(f"{name} {x:g} vs {y:g}" for name, x, y in
                         zip(("sfreq", "n_patches", "patch_samples"), a, b, strict=True)
                         if x != y)
        msg = (f"recordings {recs_a[0]} and {recs_b[0]} have windows of different shapes "
               f"({diff}); one model takes windows of one shape")
        if len({k[0] for k in geometry}) > 1:
            groups = "; ".join(f"{sfreq:g} Hz: {', '.join(sorted(recs)[:5])}"
                               + (f" and {len(recs) - 5} more" if len(recs) > 5 else "")
                               for (sfreq, _, _), recs in sorted(geometry.items()))
            msg += (f". The recordings are at different sampling rates after preprocessing "
                    f"({groups}): set config key 'preprocess.resample_hz' (e.g. to "
                    f"{min(k[0] for k in geometry):g}) to resample every recording to one rate")
        else:
            msg += ": segment every recording with the same segments.length_s and n_patches"
        raise DataError(msg)
    (sfreq, n_patches, patch_samples), = geometry
    return {"sfreq": sfreq, "n_patches": n_patches, "patch_samples": patch_samples}


def recording_geometry(results: str | Path, recordings: list[str],
                       segments: str = "segments") -> dict:
    """:func:`window_geometry` of the named recordings' windows under ``results``."""
    if not recordings:
        raise DataError("no recordings given: a model's geometry comes from the windows it "
                        "reads")
    return window_geometry([Path(results) / segments / rec / "signal.parquet"
                            for rec in recordings])


def recording_channels(raw: mne.io.BaseRaw, anchors: dict[str, str], localization: pd.DataFrame,
                       session: str) -> pd.DataFrame:
    """Localization of each preprocessed channel (a derived channel takes its anchor's place)."""
    from .localize import lookup

    rows = []
    for ch in raw.ch_names:
        anchor = anchors.get(ch, ch)
        row = lookup(localization, session, anchor)
        row.update({"channel": ch, "contact": anchor})
        rows.append(row)
    cols = ["channel", "contact", "x", "y", "z", "hemisphere", "atlas_label", "kind", "parcel",
            "lobe", "desikan_killiany", "label_source", "keep", "drop_reason", "lip_l", "lip_i",
            "lip_p"]
    table = pd.DataFrame(rows, columns=cols)
    return table.astype({c: "Int64" for c in ("lip_l", "lip_i", "lip_p")})


def segment_recording(fif: str | Path, events_tsv: str | Path | None,
                      localization: pd.DataFrame, recording: str, out_dir: str | Path,
                      seg_cfg: dict, split_cfg: dict) -> dict:
    """Cut one preprocessed recording into windows; write signal, channels, index and splits.

    Returns a summary (window counts per kind) for the log.
    """
    from mne_bids import get_entities_from_fname

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ents = get_entities_from_fname(recording)
    subject, session = ents["subject"], ents.get("session") or ""
    raw = mne.io.read_raw_fif(fif, preload=False, verbose="error")
    sfreq = raw.info["sfreq"]
    n_window = window_samples(seg_cfg["length_s"], seg_cfg["n_patches"], sfreq)
    if raw.n_times < n_window:
        raise DataError(f"{fif}: recording is {raw.n_times / sfreq:.1f} s, shorter than one "
                        f"{seg_cfg['length_s']} s segment")

    sidecar = Path(fif).with_suffix(".json")
    anchors = {}
    if sidecar.exists():
        anchors = {c["name"]: c["anchor"] for c in json.loads(sidecar.read_text())["Channels"]}
    channels = recording_channels(raw, anchors, localization, session)
    dropped = channels[~channels["keep"].astype(bool)]
    channels = channels[channels["keep"].astype(bool)].reset_index(drop=True)
    if channels.empty:
        raise DataError(f"{fif}: no channel left after dropping ventricle contacts")

    tasks = list(seg_cfg["tasks"])
    words = None
    if tasks:
        words = read_words(Path(events_tsv), "sentence_onset" in tasks) if events_tsv else None
        if words is None:
            raise DataError(f"{recording}: no events.tsv, but tasks {tasks} need word events")
    plan = plan_windows(raw.n_times, sfreq, n_window, words, tasks, seg_cfg["silence_before_s"],
                        (seg_cfg["seed"], recording))
    onsets_s = plan.onsets / sfreq
    index = plan.index.assign(recording=recording, subject=subject, session=session,
                              onset_s=onsets_s[plan.index["segment"].to_numpy()])[INDEX_COLUMNS]
    splits = pd.concat([
        random_split(plan.index, split_cfg["random"], (split_cfg["seed"], recording)),
        chronological_folds(plan.index, onsets_s, seg_cfg["length_s"], raw.n_times / sfreq,
                             split_cfg["chronological"]["n_folds"],
                             split_cfg["chronological"]["buffer_s"]),
    ], ignore_index=True)
    splits.insert(0, "recording", recording)

    metadata = {"recording": recording, "sfreq": sfreq, "n_patches": seg_cfg["n_patches"],
                "patch_samples": n_window // seg_cfg["n_patches"],
                "windows_per_row_group": WINDOWS_PER_ROW_GROUP,
                "channels": channels["channel"].tolist()}
    write_signal(raw, channels["channel"].tolist(), plan.onsets, n_window,
                 out_dir / "signal.parquet", metadata)
    channels.insert(0, "recording", recording)
    channels.insert(1, "subject", subject)
    channels.insert(2, "session", session)
    for name, table in (("channels", channels), ("index", index), ("splits", splits)):
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
    counts = index.groupby(["kind", "label"]).size().rename("n").reset_index()
    return {"recording": recording, "n_windows": int(len(plan.onsets)),
            "n_channels": int(len(channels)), "dropped": dropped["channel"].tolist(),
            "counts": counts.to_dict(orient="records")}
