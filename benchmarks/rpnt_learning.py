"""Does RPNT's pretraining learn on the demo? The measures of pretraining_variants.py, for RPNT.

For each ``--seed`` this runs the workflow's own RPNT pretraining (``pretrain(...,
objective=RPNT)`` with the demo config's ``pretrain`` and ``rpnt`` settings, ``--steps``
steps) and scores the final model on:

- ``recon_r2``: masked-channel reconstruction of every recording pretraining did not see: one
  channel at a time is zeroed in the input (as RPNT's own masking does) and RPNT's trained
  linear head maps its states back to raw patches; R^2 per channel (around each window's
  mean, as ``barista.training.reconstruct.evaluate_channels``), mean over channels, then over
  recordings. The same number for the paired random init (the model the run starts from:
  untrained encoder and head) is beside it.
- the frozen-feature probe (``barista.training.probe``) of the pretrained encoder and of its
  paired random init on every recording and ``--task``.

One JSON line per run is appended to ``--out``.

    python benchmarks/rpnt_learning.py --seed 0 1 2 --steps 144
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from barista.config import load_config
from barista.data import SegmentDataset, collate_packed
from barista.evaluation import heldout, pretraining, read_recordings
from barista.training.common import seed_everything
from barista.training.pretrain import PretrainConfig, pretrain
from barista.training.probe import probe_auroc
from barista.training.rpnt_pretrain import RPNT, RpntPretrainModel, rpnt_config

DEMO_CONFIG = Path(__file__).parents[1] / "config" / "config.yaml"


def sem(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


@torch.no_grad()
def channel_r2(model: RpntPretrainModel, results: Path, recording: str, max_windows: int,
               batch_size: int = 16) -> float:
    """Mean over channels of the R^2 of each channel's patches, that channel zeroed."""
    model.eval()
    ds = SegmentDataset(results, "pretrain", encode_scale=model.config.encode_scale,
                        split=None, recordings=[recording])
    keep = np.unique(np.linspace(0, len(ds) - 1, min(max_windows, len(ds))).round().astype(int))
    n = len(ds.files[recording].channels)
    sse, sst = np.zeros(n), np.zeros(n)
    for start in range(0, len(keep), batch_size):
        batch = collate_packed([ds[int(i)] for i in keep[start:start + batch_size]])
        for c in range(n):
            mask = torch.zeros(batch["x"].shape[0], dtype=torch.bool)
            mask[c::n] = True
            x = batch["x"].clone()
            x[mask] = 0.0
            pred = model.head(model.encoder({**batch, "x": x}))[mask]
            truth = batch["x"][mask]
            sse[c] += float(((pred - truth) ** 2).sum())
            sst[c] += float(((truth - truth.mean(dim=(1, 2), keepdim=True)) ** 2).sum())
    return float(np.mean(1 - sse / sst))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=144)
    parser.add_argument("--task", nargs="+", default=["speech_vs_nonspeech"])
    parser.add_argument("--max-windows", type=int, default=16)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "rpnt_learning.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    table = read_recordings(args.results / "recordings.tsv")
    recordings = pretraining(table, cfg["evaluation"])
    held = heldout(table, cfg["evaluation"])["recording"].tolist()
    every = sorted(table["recording"])
    rp = cfg["rpnt"]
    options = {k: v for k, v in cfg["pretrain"].items() if k not in ("processes", "repeats")}
    options.update({k: rp[k] for k in ("lr", "weight_decay", "warmup_epochs", "grad_clip")})
    overrides = {**rp["overrides"], "causal": rp["causal"], "contrast_by": rp["contrast_by"],
                 "contrastive_weight": rp["contrastive_weight"],
                 "temperature": rp["temperature"],
                 "mask_ratio_range": tuple(rp["mask_ratio_range"])}
    config = rpnt_config(args.results, rp["encode_scale"], cfg["model"]["size"], overrides)
    for seed in args.seed:
        t0 = time.perf_counter()
        train_cfg = PretrainConfig(**{**options, "seed": seed, "max_steps": args.steps,
                                      "epochs": 10**6, "device": "cpu"})
        seed_everything(seed)
        start = RpntPretrainModel(config)  # what the run starts from (built as it builds)
        with tempfile.TemporaryDirectory() as tmp:
            pretrain(args.results, tmp, encode_scale=rp["encode_scale"], mask_scale=None,
                     recordings=recordings, size=cfg["model"]["size"],
                     model_overrides=overrides, cfg=train_cfg, progress=False,
                     objective=RPNT)
            state = torch.load(Path(tmp) / "model.pt", weights_only=False)
        trained = RpntPretrainModel(config)
        trained.encoder.load_state_dict(state["encoder"])
        trained.head.load_state_dict(state["head"])
        recon = {name: {rec: channel_r2(m, args.results, rec, args.max_windows) for rec in held}
                 for name, m in (("pretrained", trained), ("random_init", start))}
        line = {"model": "rpnt", "seed": seed, "steps": args.steps, "lr": train_cfg.lr,
                "recon_r2": float(np.mean(list(recon["pretrained"].values()))),
                "recon_r2_random_init": float(np.mean(list(recon["random_init"].values()))),
                "recon_r2_by_recording": recon, "probe": {}}
        for task in args.task:
            pairs = {rec: (probe_auroc(trained.encoder, args.results, rec, task)["probe_auroc"],
                           probe_auroc(start.encoder, args.results, rec, task)["probe_auroc"])
                     for rec in every}
            gains = [a - b for a, b in pairs.values()]
            line["probe"][task] = {
                "pretrained": {r: p[0] for r, p in pairs.items()},
                "random_init": {r: p[1] for r, p in pairs.items()},
                "mean_pretrained": float(np.mean([p[0] for p in pairs.values()])),
                "mean_random_init": float(np.mean([p[1] for p in pairs.values()])),
                "gain": float(np.mean(gains)), "gain_sem": sem(gains)}
        line["seconds"] = time.perf_counter() - t0
        line["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True,
                                        capture_output=True).stdout.strip()
        print(json.dumps({k: v for k, v in line.items() if k != "recon_r2_by_recording"}),
              flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
