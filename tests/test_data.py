"""The PyTorch loader over the Parquet segments: streaming, packing, deterministic order."""

import mne
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from barista import segments
from barista.data import (
    BlockShuffleSampler,
    SegmentDataset,
    SignalFile,
    collate_packed,
    make_loader,
)
from barista.errors import DataError
from barista.tokens import write_tokens

SFREQ, N_WINDOW, N_PATCHES = 64.0, 64, 4
RECS = ["sub-01_ses-01_task-t", "sub-02_ses-01_task-t"]


def make_recording(root, rec, n_channels, n_windows, seed, n_patches=N_PATCHES):
    rng = np.random.default_rng(seed)
    names = [f"A{i + 1}" for i in range(n_channels)]
    data = rng.standard_normal((n_channels, N_WINDOW * n_windows))
    raw = mne.io.RawArray(data, mne.create_info(names, SFREQ, "seeg"), verbose="error")
    out = root / "segments" / rec
    out.mkdir(parents=True)
    onsets = segments.grid_onsets(raw.n_times, N_WINDOW)
    meta = {"recording": rec, "sfreq": SFREQ, "n_patches": n_patches,
            "patch_samples": N_WINDOW // n_patches,
            "windows_per_row_group": segments.WINDOWS_PER_ROW_GROUP, "channels": names}
    segments.write_signal(raw, names, onsets, N_WINDOW, out / "signal.parquet", meta)
    subject = rec.split("_")[0][4:]
    index = pd.DataFrame({"recording": rec, "subject": subject, "session": "01",
                          "kind": "pretrain", "segment": np.arange(len(onsets)),
                          "onset_s": onsets / SFREQ, "label": np.arange(len(onsets)) % 2})
    index.to_parquet(out / "index.parquet")
    split = segments.random_split(index, {"train": 0.8, "val": 0.1, "test": 0.1}, (0, rec))
    split.insert(0, "recording", rec)
    split.to_parquet(out / "splits.parquet")
    pd.DataFrame({"recording": rec, "subject": subject, "session": "01", "channel": names,
                  "contact": names, "x": np.arange(n_channels, dtype=float), "y": 0.0,
                  "z": 0.0, "hemisphere": "L",
                  "parcel": [f"P{i % 3}" for i in range(n_channels)],
                  "lobe": "temporal"}).to_parquet(out / "channels.parquet")
    return data


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    raws = {"sub-01_ses-01_task-t": make_recording(root, "sub-01_ses-01_task-t", 5, 150, 0),
            "sub-02_ses-01_task-t": make_recording(root, "sub-02_ses-01_task-t", 3, 90, 1)}
    files = sorted((root / "segments").glob("*/channels.parquet"))
    for scale, opts in (("channel", {}), ("parcel", {"hemisphere_specific": True})):
        write_tokens(files, scale, opts, root / "tokens" / scale)
    return root, raws


@pytest.fixture(scope="module")
def root(built):
    return built[0]


def test_sample_matches_the_source_signal(built):
    root, raws = built
    ds = SegmentDataset(root, "pretrain", recordings=RECS, encode_scale="parcel",
                        split=None)
    assert len(ds) == 240
    for i in (0, 77, 149, 150, 239):
        s = ds[i]
        data = raws[s["recording"]]
        seg = s["segment"]
        expected = segments.zscore(data[:, seg * N_WINDOW:(seg + 1) * N_WINDOW])
        np.testing.assert_allclose(s["x"].reshape(len(expected), -1).numpy(), expected,
                                   atol=1e-5)
    # channels of one parcel share a token; ids follow the vocabulary
    s = ds[0]
    assert s["spatial_id"][0] == s["spatial_id"][3] != s["spatial_id"][1]


def test_packed_batch_boundaries(root):
    ds = SegmentDataset(root, "pretrain", recordings=RECS, encode_scale="channel",
                        mask_scale="parcel", split=None)
    picks = [0, 200, 1]  # 5, 3 and 5 channels
    batch = next(iter(DataLoader(ds, batch_size=3, sampler=picks, collate_fn=collate_packed)))
    assert batch["n_channels"].tolist() == [5, 3, 5]
    assert batch["cu_channels"].tolist() == [0, 5, 8, 13]
    for k, i in enumerate(picks):
        lo, hi = batch["cu_channels"][k], batch["cu_channels"][k + 1]
        assert torch.equal(batch["x"][lo:hi], ds[i]["x"])
        assert torch.equal(batch["group_id"][lo:hi], ds[i]["group_id"])


def test_split_roles_partition_the_windows(root):
    sizes = {r: len(SegmentDataset(root, "pretrain", recordings=RECS, roles=(r,))) for r in
             ("train", "val", "test")}
    assert sum(sizes.values()) == 240 and sizes["train"] == 192


def test_segments_written_before_the_rename_keep_their_splits(tmp_path):
    """A splits.parquet whose window-split column has its old name (split_kind) selects the
    same windows; one with neither name is an error naming the file."""
    rec = "sub-01_ses-01_task-t"
    make_recording(tmp_path, rec, 3, 40, 0)
    path = tmp_path / "segments" / rec / "splits.parquet"
    before = {r: SegmentDataset(tmp_path, "pretrain", encode_scale=None, roles=(r,),
                                recordings=[rec]).index for r in ("train", "val", "test")}
    splits = pd.read_parquet(path)
    splits.rename(columns={"split": "split_kind"}).to_parquet(path)
    for role, index in before.items():
        pd.testing.assert_frame_equal(
            SegmentDataset(tmp_path, "pretrain", encode_scale=None, roles=(role,),
                           recordings=[rec]).index, index)
    splits.drop(columns="split").to_parquet(path)
    with pytest.raises(DataError, match="splits.parquet: no 'split' column"):
        SegmentDataset(tmp_path, "pretrain", encode_scale=None, recordings=[rec])


def test_block_shuffle_is_deterministic_and_block_local(root):
    ds = SegmentDataset(root, "pretrain", recordings=RECS, split=None)
    sampler = BlockShuffleSampler(ds, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(ds)))
    assert first == list(BlockShuffleSampler(ds, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != first
    # every row group is visited in one contiguous run, so it is decoded once per epoch
    blocks = [ds.block_of(i) for i in first]
    runs = [b for j, b in enumerate(blocks) if j == 0 or b != blocks[j - 1]]
    assert len(runs) == len(set(blocks))


def test_streaming_keeps_only_a_few_row_groups(root):
    f = SignalFile(root / "segments" / "sub-01_ses-01_task-t" / "signal.parquet", cache_size=2)
    for seg in range(0, 150, 10):
        f.window(seg)
    assert len(f._cache) <= 2  # 150 windows = 3 row groups, never all held


def test_loader_reproducible(root):
    ds = SegmentDataset(root, "pretrain", recordings=RECS, encode_scale="parcel")
    a = [b["segment"].tolist() for b in make_loader(ds, 16, seed=1)]
    b = [b["segment"].tolist() for b in make_loader(ds, 16, seed=1)]
    assert a == b


def test_missing_scale_names_the_file(root):
    with pytest.raises(DataError, match=r"tokens/lobe/channels\.parquet"):
        SegmentDataset(root, "pretrain", recordings=RECS, encode_scale="lobe")


def test_grid_ids_come_from_lip_columns_in_signal_order(built, tmp_path):
    """With L, I, P voxel columns the samples carry them (-1 where one is missing), reordered
    to the signal's channel order; without them there is no grid_ids (MNI rows instead)."""
    import shutil

    src, _ = built
    root = tmp_path / "results"
    shutil.copytree(src, root)
    assert "grid_ids" not in SegmentDataset(root, "pretrain", recordings=RECS,
                                            encode_scale="channel")[0]
    rec = "sub-01_ses-01_task-t"
    path = root / "segments" / rec / "channels.parquet"
    table = pd.read_parquet(path).iloc[::-1]  # another order than the signal's
    table["lip_l"] = pd.array([10, 11, 12, 13, None], dtype="Int64")
    table["lip_i"] = pd.array([20, 21, 22, 23, 24], dtype="Int64")
    table["lip_p"] = pd.array([30, 31, 32, 33, 34], dtype="Int64")
    table.to_parquet(path)
    other = root / "segments" / "sub-02_ses-01_task-t" / "channels.parquet"
    assert "grid_ids" not in SegmentDataset(root, "pretrain", encode_scale="channel",
                                            recordings=[rec, other.parent.name])[0]
    ds = SegmentDataset(root, "pretrain", encode_scale="channel", recordings=[rec])
    grid = ds[0]["grid_ids"]
    by_name = dict(zip(table["channel"], zip(table["lip_l"], table["lip_i"], table["lip_p"],
                                             strict=True), strict=True))
    expected = [[-1 if pd.isna(v) else int(v) for v in by_name[c]]
                for c in ds.files[rec].channels]
    assert grid.tolist() == expected and expected[0] == [-1, 24, 34]
    batch = collate_packed([ds[0], ds[1]])
    assert batch["grid_ids"].shape == (10, 3)


def test_spatial_ids_replace_the_token_table(root):
    rec = "sub-02_ses-01_task-t"
    ds = SegmentDataset(root, "pretrain", encode_scale="parcel", recordings=[rec],
                        spatial_ids={rec: np.array([7, 0, 9])})
    assert ds[0]["spatial_id"].tolist() == [7, 0, 9] and ds[0]["group_id"].tolist() == [0, 0, 0]
    with pytest.raises(DataError, match="3 channels"):
        SegmentDataset(root, "pretrain", encode_scale="parcel", recordings=[rec],
                       spatial_ids={rec: np.array([7, 0])})
    with pytest.raises(DataError, match="no spatial ids"):
        SegmentDataset(root, "pretrain", recordings=RECS, encode_scale="parcel",
                       spatial_ids={rec: [1, 2, 3]})


def test_windows_of_different_shapes_name_two_recordings(tmp_path):
    """The model's geometry comes from every recording it is given: two whose windows are cut
    into patches of different lengths (64 samples as 4 or as 8 patches) stop the dataset and
    the model's configuration with both recordings and both values, not a reshape error."""
    from barista.training.pretrain import model_config

    make_recording(tmp_path, RECS[0], 3, 10, 0, n_patches=4)
    make_recording(tmp_path, RECS[1], 3, 10, 1, n_patches=8)
    write_tokens(sorted((tmp_path / "segments").glob("*/channels.parquet")), "channel", {},
                 tmp_path / "tokens" / "channel")
    for build in (lambda: SegmentDataset(tmp_path, "pretrain", recordings=RECS),
                  lambda: model_config(tmp_path, "channel", "demo", {}, RECS)):
        with pytest.raises(DataError) as err:
            build()
        msg = str(err.value)
        assert f"recordings {RECS[0]} and {RECS[1]}" in msg
        assert "n_patches 4 vs 8" in msg and "patch_samples 16 vs 8" in msg
        assert "sfreq" not in msg  # the rates agree: the message says what differs
    # one recording alone has one shape
    assert model_config(tmp_path, "channel", "demo", {}, RECS[:1]).patch_samples == 16


def test_segments_are_named_never_listed(root):
    """A dataset reads the recordings it is given; none given or one without segments is an
    error, not whatever the folder holds."""
    with pytest.raises(DataError, match="needs the recordings"):
        SegmentDataset(root, "pretrain", recordings=[])
    with pytest.raises(DataError, match="sub-09_ses-01_task-t/index.parquet"):
        SegmentDataset(root, "pretrain", recordings=[*RECS, "sub-09_ses-01_task-t"])
    assert set(SegmentDataset(root, "pretrain", recordings=RECS[:1]).files) == {RECS[0]}
