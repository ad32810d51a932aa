"""PyTorch access to the Parquet segments: streaming reads and packed batches.

A sample is one window of one recording: ``x`` (channels x patches x patch samples) plus each
channel's spatial token id (encoding scale), masking group id (masking scale) and MNI position.
Signal files are memory-mapped and read one row group at a time, so memory stays bounded by a
few row groups per worker whatever the dataset size. Batches pack samples with different channel
counts along the channel axis and say where each sample starts (``cu_channels``), so no padding
is ever needed.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import DataError


class SignalFile:
    """Random access to the windows of one ``signal.parquet``, a few row groups cached."""

    def __init__(self, path: str | Path, cache_size: int = 2):
        self.path = Path(path)
        self.cache_size = cache_size
        self._file: pq.ParquetFile | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        meta = pq.read_schema(self.path).metadata or {}
        if b"barista" not in meta:
            raise DataError(f"{self.path} is not a barista signal file (no 'barista' metadata)")
        self.meta = json.loads(meta[b"barista"])
        self.channels: list[str] = self.meta["channels"]
        self.per_group: int = self.meta["windows_per_row_group"]
        self.n_patches: int = self.meta["n_patches"]
        self.patch_samples: int = self.meta["patch_samples"]

    def __getstate__(self):  # ParquetFile handles do not cross process boundaries
        state = self.__dict__.copy()
        state["_file"], state["_cache"] = None, OrderedDict()
        return state

    def _group(self, g: int) -> np.ndarray:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        if self._file is None:
            self._file = pq.ParquetFile(self.path, memory_map=True)
        column = self._file.read_row_group(g, columns=["data"]).column("data")
        values = column.combine_chunks().flatten().to_numpy()
        n_ch, n_s = len(self.channels), self.n_patches * self.patch_samples
        block = values.reshape(-1, n_ch, self.n_patches, n_s // self.n_patches)
        self._cache[g] = block
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return block

    def window(self, segment: int) -> np.ndarray:
        """Window ``segment`` as float32 (channels, patches, patch samples)."""
        block = self._group(segment // self.per_group)
        return block[segment % self.per_group]


def read_splits(path: str | Path) -> pd.DataFrame:
    """A segment folder's ``splits.parquet``: ``recording, kind, segment, split, role`` (and a
    Neuroprobe folder's ``sample``). Migration: folders segmented before the rename call the
    window split ``split_kind``; it is read as ``split``."""
    splits = pd.read_parquet(path)
    if "split" not in splits:
        splits = splits.rename(columns={"split_kind": "split"})
    if "split" not in splits:
        raise DataError(f"{path}: no 'split' column; rebuild the segments")
    return splits


class SegmentDataset(Dataset):
    """Windows of one kind (``pretrain`` or a task) from a barista results folder.

    Parameters
    ----------
    root : path-like
        ``results/<dataset>``.
    kind : str
        ``pretrain``, ``speech_vs_nonspeech`` or ``sentence_onset``.
    encode_scale, mask_scale : str
        Scales whose token ids and group ids the samples carry; ``encode_scale=None`` reads
        the signal alone (ids are zeros) and needs no token table.
    split : str | None
        The window split (``splits.parquet``): ``random`` or ``chrono<k>`` (a Neuroprobe
        segment folder's: its split names); ``None`` keeps every window.
    roles : sequence of str
        Which roles of the split to keep (``train``, ``val``, ``test``).
    recordings : sequence of str
        The recordings to read, ``<root>/<segments>/<recording>/``: every one is named, none
        found by listing the folder, and their windows must share one shape.
    segments : str
        Folder under ``root`` holding the per-recording segment folders: ``segments`` (the
        study's windows) or ``neuroprobe/segments`` (the benchmark's, ``barista.neuroprobe``).
    channels : sequence of str | None
        Keep only these channels, in this order (every recording must have them all): a
        model trained on one recording and tested on another sees the same channels in both.
    spatial_ids : mapping of str to int array | None
        Each recording's spatial token ids (one per channel, in signal order) in place of the
        ``encode_scale`` token table's: a vocabulary of another model, such as the authors'
        released encoders (:func:`barista.release_ids.release_spatial_ids`). Group ids then
        come from ``mask_scale``'s table, or are zeros without one.

    Samples carry ``grid_ids`` (channels, 3), the integer L, I, P voxel coordinates the
    ``lip`` channel encoder indexes (-1 where a channel has none), when every recording's
    ``channels.parquet`` has them for some channel; otherwise the encoder derives rows from the
    MNI ``coords`` (:func:`barista.models.spatial.mni_grid_ids`). Frames never mix in a batch.
    """

    def __init__(self, root: str | Path, kind: str = "pretrain", *,
                 encode_scale: str | None = "channel",
                 mask_scale: str | None = None, split: str | None = "random",
                 roles: Sequence[str] = ("train",), recordings: Sequence[str],
                 spatial_ids: dict[str, np.ndarray] | None = None,
                 segments: str = "segments", channels: Sequence[str] | None = None):
        root = Path(root)
        if not recordings:
            raise DataError("SegmentDataset needs the recordings to read (recordings=[...])")
        seg_dirs = [root / segments / rec for rec in sorted(set(recordings))]
        missing = [str(d / "index.parquet") for d in seg_dirs if not (d / "index.parquet").exists()]
        if missing:
            raise DataError(f"no segments of {len(missing)} recording(s): {missing[:5]}; run the "
                            "segment step first")
        from .segments import window_geometry

        window_geometry([d / "signal.parquet" for d in seg_dirs])  # one model, one shape
        index = pd.concat([pd.read_parquet(d / "index.parquet") for d in seg_dirs],
                          ignore_index=True)
        index = index[index["kind"] == kind]
        if split is not None:
            splits = pd.concat([read_splits(d / "splits.parquet") for d in seg_dirs])
            splits = splits[(splits["split"] == split) & (splits["kind"] == kind)
                            & splits["role"].isin(list(roles))]
            index = index.merge(splits[["recording", "segment"]], on=["recording", "segment"])
        self.index = index.sort_values(["recording", "segment"]).reset_index(drop=True)
        self.kind = kind
        self.files = {d.name: SignalFile(d / "signal.parquet") for d in seg_dirs}
        self.channels = {d.name: pd.read_parquet(d / "channels.parquet") for d in seg_dirs}
        self.coords = {rec: torch.tensor(table[["x", "y", "z"]].to_numpy(np.float32))
                       for rec, table in self.channels.items()}
        self.grid_ids = _grid_ids(self.channels, self.files)
        if spatial_ids is not None:
            self.spatial = {rec: _checked_ids(spatial_ids, rec, f)
                            for rec, f in self.files.items()}
            self.groups = (self._ids(root, mask_scale, "group_id") if mask_scale else
                           {rec: np.zeros(len(f.channels), np.int64)
                            for rec, f in self.files.items()})
        elif encode_scale is None:  # signal only (e.g. spectral baselines): no token tables
            self.spatial = {rec: np.zeros(len(f.channels), np.int64)
                            for rec, f in self.files.items()}
            self.groups = dict(self.spatial)
        else:
            self.spatial = self._ids(root, encode_scale, "token_id")
            self.groups = self._ids(root, mask_scale or encode_scale, "group_id")
        self._recordings = self.index["recording"].to_numpy()
        self._segments = self.index["segment"].to_numpy()
        self._labels = self.index["label"].to_numpy()
        self._memory: list[dict] | None = None
        self._picks = {rec: None for rec in self.files}
        if channels is not None:
            self._select(list(channels))

    def _select(self, channels: list[str]) -> None:
        """Restrict every recording to ``channels`` (in that order)."""
        for rec, f in self.files.items():
            missing = [c for c in channels if c not in f.channels]
            if missing:
                raise DataError(f"{rec}: no channel(s) {missing[:5]} in {f.path}")
            picks = np.array([f.channels.index(c) for c in channels], dtype=np.int64)
            self._picks[rec] = picks
            self.spatial[rec] = self.spatial[rec][picks]
            self.groups[rec] = self.groups[rec][picks]
            self.coords[rec] = self.coords[rec][torch.from_numpy(picks)]
            self.channels[rec] = self.channels[rec].iloc[picks].reset_index(drop=True)
            if self.grid_ids is not None:
                self.grid_ids[rec] = self.grid_ids[rec][torch.from_numpy(picks)]

    def channel_names(self, recording: str) -> list[str]:
        """The channels a sample of ``recording`` holds, in order."""
        picks = self._picks[recording]
        names = self.files[recording].channels
        return list(names) if picks is None else [names[i] for i in picks]

    def load_into_memory(self, transform=None) -> SegmentDataset:
        """Read every sample once and keep it (for small sets read many times, such as one
        session's task windows during finetuning); ``transform`` maps each sample first."""
        self._memory = None
        samples = [self[i] for i in range(len(self))]
        self._memory = [transform(s) if transform else s for s in samples]
        return self

    def subset(self, positions: Sequence[int]) -> SegmentDataset:
        """The windows at ``positions`` as a dataset of their own, sharing the files and any
        samples already held in memory (cross-validation folds of one loaded session)."""
        positions = np.asarray(positions, dtype=np.int64)
        view = copy.copy(self)
        view.index = self.index.iloc[positions].reset_index(drop=True)
        view._recordings = self._recordings[positions]
        view._segments = self._segments[positions]
        view._labels = self._labels[positions]
        if self._memory is not None:
            view._memory = [self._memory[i] for i in positions]
        return view

    def _ids(self, root: Path, scale: str, column: str) -> dict[str, np.ndarray]:
        path = root / "tokens" / scale / "channels.parquet"
        if not path.exists():
            raise DataError(f"token table {path} missing: is scale '{scale}' in config 'scales'?")
        table = pd.read_parquet(path)
        out = {}
        for rec, f in self.files.items():
            ids = table[table["recording"] == rec].set_index("channel")[column]
            missing = [c for c in f.channels if c not in ids.index]
            if missing:
                raise DataError(f"{path}: no {scale}-scale token for channels {missing[:5]} of "
                                f"{rec}; rebuild the tokens")
            out[rec] = ids.loc[f.channels].to_numpy(np.int64)
        return out

    def __len__(self) -> int:
        return len(self.index)

    def block_of(self, i: int) -> tuple[str, int]:
        """(recording, row group) holding sample ``i``: samples sharing one decode together."""
        rec = self._recordings[i]
        return rec, int(self._segments[i]) // self.files[rec].per_group

    def __getitem__(self, i: int) -> dict:
        if self._memory is not None:
            return self._memory[i]
        rec, seg = self._recordings[i], int(self._segments[i])
        window = self.files[rec].window(seg)
        picks = self._picks[rec]
        sample = {
            "x": torch.from_numpy(np.array(window if picks is None else window[picks])),
            "spatial_id": torch.from_numpy(self.spatial[rec]),
            "group_id": torch.from_numpy(self.groups[rec]),
            "coords": self.coords[rec],
            "label": int(self._labels[i]),
            "recording": rec,
            "segment": seg,
        }
        if self.grid_ids is not None:
            sample["grid_ids"] = self.grid_ids[rec]
        return sample


LIP = ["lip_l", "lip_i", "lip_p"]


def _grid_ids(channels: dict[str, pd.DataFrame],
              files: dict[str, SignalFile]) -> dict[str, torch.Tensor] | None:
    """Per recording, (channels, 3) int64 L, I, P rows (-1 = unknown), or None when some
    recording has none at all (segments cut before these columns existed have none)."""
    out = {}
    for rec, table in channels.items():
        if not set(LIP) <= set(table.columns) or table[LIP].isna().all(axis=None):
            return None
        lip = table.set_index("channel").loc[files[rec].channels, LIP]
        out[rec] = torch.from_numpy(lip.astype("Int64").fillna(-1).to_numpy(np.int64))
    return out


def _checked_ids(spatial_ids: dict[str, np.ndarray], rec: str, file: SignalFile) -> np.ndarray:
    if rec not in spatial_ids:
        raise DataError(f"no spatial ids given for recording {rec}")
    ids = np.asarray(spatial_ids[rec], dtype=np.int64)
    if ids.shape != (len(file.channels),):
        raise DataError(f"{rec}: {ids.shape[0] if ids.ndim else 0} spatial ids given for "
                        f"{len(file.channels)} channels")
    return ids


def collate_packed(samples: list[dict]) -> dict:
    """Concatenate samples along the channel axis; ``cu_channels`` marks sample boundaries."""
    counts = torch.tensor([s["x"].shape[0] for s in samples], dtype=torch.int64)
    cu = torch.zeros(len(samples) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(counts, 0)
    extra = {key: torch.cat([s[key] for s in samples]) for key in ("features", "grid_ids")
             if key in samples[0]}
    return {
        **extra,
        "x": torch.cat([s["x"] for s in samples]),
        "spatial_id": torch.cat([s["spatial_id"] for s in samples]),
        "group_id": torch.cat([s["group_id"] for s in samples]),
        "coords": torch.cat([s["coords"] for s in samples]),
        "n_channels": counts,
        "cu_channels": cu,
        "label": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        "recording": [s["recording"] for s in samples],
        "segment": torch.tensor([s["segment"] for s in samples], dtype=torch.int64),
    }


class BlockShuffleSampler(Sampler[int]):
    """Shuffle that keeps row groups together, so each one is decoded once per epoch.

    Order is a pure function of ``(seed, epoch)``: blocks are permuted, then samples within a
    block. Call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.
    """

    def __init__(self, dataset: SegmentDataset, seed: int = 0, shuffle: bool = True):
        self.dataset, self.seed, self.shuffle = dataset, seed, shuffle
        self.epoch, self.start = 0, 0
        blocks: dict[tuple[str, int], list[int]] = {}
        for i in range(len(dataset)):
            blocks.setdefault(dataset.block_of(i), []).append(i)
        self.blocks = [blocks[k] for k in sorted(blocks)]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Order of ``epoch``, skipping its first ``start`` samples (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        if not self.shuffle:
            return [i for b in self.blocks for i in b]
        rng = np.random.default_rng([self.seed, self.epoch])
        return [self.blocks[b][j] for b in rng.permutation(len(self.blocks))
                for j in rng.permutation(len(self.blocks[b]))]

    def __iter__(self) -> Iterator[int]:
        yield from self.order()[self.start:]

    def __len__(self) -> int:
        return len(self.dataset)


def make_loader(dataset: SegmentDataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """DataLoader of packed batches in block-shuffled order (see :class:`BlockShuffleSampler`)."""
    return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last,
                      sampler=BlockShuffleSampler(dataset, seed=seed, shuffle=shuffle),
                      collate_fn=collate_packed, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
