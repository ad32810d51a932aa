"""Multi-process pretraining (DDP, gloo on the CPU) against the single process.

Two ranks with half the batch each must end with the parameters of one process with the whole
batch (masks are seeded per sample, the loss is the global mean), and a two-rank run stopped
part way resumes with one process to the same parameters. The model has no dropout: dropout
masks cannot match across process counts. The two-rank runs go through the real launcher,
``python -m torch.distributed.run --standalone --nproc_per_node 2 -m barista pretrain``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import step_json  # noqa: E402
from test_data import make_recording  # noqa: E402

from barista import cli  # noqa: E402
from barista.data import BlockShuffleSampler, SegmentDataset, collate_packed  # noqa: E402
from barista.errors import ConfigError  # noqa: E402
from barista.tokens import write_tokens  # noqa: E402
from barista.training.common import Distributed  # noqa: E402
from barista.training.pretrain import (  # noqa: E402
    PretrainConfig,
    RankBatches,
    _check_world,
    load_pretrained,
    sample_masks,
)

RECS = ["sub-01_ses-01_task-t", "sub-02_ses-01_task-t"]
SMALL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "ffn_hidden": 32, "cnn_blocks": 2,
         "dropout": 0.0}
STEPS, BATCH = 6, 8  # 32 training windows: 4 steps per epoch, so one epoch end (validation)
PARTS = ("encoder", "ema_tokenizer", "predictor")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    make_recording(root, RECS[0], 6, 20, 0)
    make_recording(root, RECS[1], 4, 20, 1)
    files = sorted((root / "segments").glob("*/channels.parquet"))
    for scale in ("channel", "parcel"):
        write_tokens(files, scale, {}, root / "tokens" / scale)
    pd.DataFrame({"subject": ["01", "02"], "session": ["01", "01"],
                  "recording": RECS}).to_csv(root / "recordings.tsv", sep="\t", index=False)
    return root


def _args(results, out, **pretrain):
    params = {"model": {"size": "demo", "overrides": SMALL, "device": "cpu", "threads": 1},
              "pretrain": {"epochs": 3, "batch_size": BATCH, "warmup_epochs": 1,
                           "ema_ramp_epochs": 1, "checkpoint_every": 2, "seed": 4,
                           "max_steps": STEPS, **pretrain}}
    return ["pretrain", "--params", step_json("pretrain:barista", params, ["parcel"]),
            "--results", str(results),
            "--recordings", str(results / "recordings.tsv"), "--encode", "parcel", "--mask",
            "parcel", "--out-dir", str(out), "--no-progress"]


def single(results, out, *extra, **pretrain):
    """``barista pretrain`` in this process (world size 1)."""
    threads = torch.get_num_threads()
    try:
        assert cli.main(_args(results, out, **pretrain) + list(extra)) == 0
    finally:
        torch.set_num_threads(threads)


def torchrun(results, out, *extra, nproc=2, **pretrain):
    """``barista pretrain`` under the real launcher, gloo on the CPU."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "barista", *_args(results, out, **pretrain),
           *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


# The bias of each conv of a dilated block is followed by a parameter-free layer norm over time,
# which removes it: its gradient is zero up to rounding, and Adam (update ~ lr * g / |g|) walks
# it on that rounding noise, differently for any change of summation order. It changes no
# output, so it is reported apart (the encoders' outputs are compared instead).
INERT = re.compile(r"cnn\.\d+\.conv[12]\.bias$")


def max_difference(a: Path, b: Path, inert: bool = False) -> float:
    """Max |difference| over the parameters of two ``model.pt`` (``inert``: only those the
    layer norm cancels, else all the others)."""
    sa = torch.load(a / "model.pt", weights_only=False)
    sb = torch.load(b / "model.pt", weights_only=False)
    assert sa["steps"] == sb["steps"] == STEPS
    return max(float((t - sb[part][name]).abs().max())
               for part in PARTS for name, t in sa[part].items()
               if t.is_floating_point() and bool(INERT.search(name)) == inert)


def output_difference(results, a: Path, b: Path) -> float:
    """Max |difference| of the two pretrained encoders' states on one batch."""
    ds = SegmentDataset(results, "pretrain", recordings=RECS, encode_scale="parcel",
                        roles=("val",))
    batch = collate_packed([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        states = [load_pretrained(p / "model.pt")[0].eval()(batch) for p in (a, b)]
    return float((states[0] - states[1]).abs().max())


def test_rank_batches_slice_the_global_order(results):
    ds = SegmentDataset(results, "pretrain", recordings=RECS, encode_scale="parcel",
                        roles=("train",))
    whole = list(RankBatches(BlockShuffleSampler(ds, seed=3), 8, drop_last=True))
    parts = [RankBatches(BlockShuffleSampler(ds, seed=3), 8, True, r, 2) for r in range(2)]
    for p in parts:
        p.set_epoch(0, start=8)  # resuming at the second global batch
    halves = [list(p) for p in parts]
    assert len(parts[0]) == len(whole) == len(ds) // 8
    assert [a + b for a, b in zip(*halves, strict=True)] == whole[1:]
    assert all(len(h) == 4 for h in halves[0] + halves[1])


def test_masks_do_not_depend_on_the_split(results):
    ds = SegmentDataset(results, "pretrain", recordings=RECS, encode_scale="parcel",
                        mask_scale="parcel")
    samples = [ds[i] for i in range(0, 32, 4)]
    whole = sample_masks(collate_packed(samples), 0.3, 4, 7)
    halves = torch.cat([sample_masks(collate_packed(samples[:3]), 0.3, 4, 7, first=0),
                        sample_masks(collate_packed(samples[3:]), 0.3, 4, 7, first=3)])
    assert torch.equal(whole, halves)
    assert not torch.equal(whole, sample_masks(collate_packed(samples), 0.3, 4, 8))


def test_batch_size_must_divide_by_the_processes():
    cfg = PretrainConfig(batch_size=6)
    with pytest.raises(ConfigError, match="pretrain.batch_size"):
        _check_world(cfg, Distributed(world_size=4), 100)
    _check_world(cfg, Distributed(world_size=3), 100)


def _report(label, results, a, b):
    diff, inert = max_difference(a, b), max_difference(a, b, inert=True)
    out = output_difference(results, a, b)
    print(f"{label}: max |param diff| = {diff:.3g} (layer-norm-cancelled conv biases: "
          f"{inert:.3g}); max |encoder output diff| = {out:.3g}")
    assert diff < 1e-5 and out < 1e-5


def test_two_ranks_match_one_process_and_resume_with_one(results, tmp_path):
    single(results, tmp_path / "one")
    torchrun(results, tmp_path / "two")
    print()
    _report(f"DDP 2 ranks x {BATCH // 2} vs 1 process x {BATCH}", results, tmp_path / "one",
            tmp_path / "two")

    ha = pd.read_parquet(tmp_path / "one" / "history.parquet")
    hb = pd.read_parquet(tmp_path / "two" / "history.parquet")
    assert ha["split"].tolist() == hb["split"].tolist() and "val" in set(ha["split"])
    assert (ha["loss"] - hb["loss"]).abs().max() < 1e-5  # the global mean over both ranks
    pd.testing.assert_series_equal(ha["masked_fraction"], hb["masked_fraction"])
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == STEPS

    # killed after 3 steps (mid-epoch, after the checkpoint of step 2), then one process
    torchrun(results, tmp_path / "resumed", "--stop-after", "3")
    assert not (tmp_path / "resumed" / "model.pt").exists()
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and state["world_size"] == 2
    single(results, tmp_path / "resumed")
    _report("2 ranks stopped at step 3, resumed by 1 process vs 1 process uninterrupted",
            results, tmp_path / "one", tmp_path / "resumed")
    _report("same vs 2 ranks uninterrupted", results, tmp_path / "two", tmp_path / "resumed")
    hr = pd.read_parquet(tmp_path / "resumed" / "history.parquet")
    assert hr["step"].tolist() == ha["step"].tolist()
    assert (ha["loss"] - hr["loss"]).abs().max() < 1e-5
