"""Diagnostic: how predictable masked channels are, and how much of it a pretrained model reads.

Masked pretraining can only teach what the data hold. For one recording this measures the
ceiling of a *linear* reader: each channel's raw samples regressed (ridge, instantaneous) on
all other channels, or on its three nearest contacts, fitted on even windows and scored on odd
ones. Given ``--model`` (a BaRISTA ``model.pt``), it also scores the model as pretraining
uses it: on the pretraining recordings' validation windows with the pretraining masks, the
R^2 of the predictor's output against the EMA-target tokens (``latent_r2``) and the variance
of that output (near 0 when the predictor has collapsed to one token).
docs/notes/latent_objective_small_scale.md quotes these numbers.

    python benchmarks/masked_predictability.py --results results/demo \
        --model results/demo/models/barista/channel-channel/model.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from barista.data import SegmentDataset, SignalFile
from barista.training.diagnostics import load_masked_latent_model, masked_latent_scores


def linear_ceiling(segment_dir: Path, ridge: float = 0.1) -> dict:
    """Mean and median R^2 of each channel from the others, and from its 3 nearest contacts."""
    signal = SignalFile(segment_dir / "signal.parquet")
    n_windows = len(pd.read_parquet(segment_dir / "index.parquet", columns=["segment"])
                    ["segment"].unique())
    x = np.stack([signal.window(w) for w in range(n_windows)])  # windows, channels, samples
    x = x.reshape(x.shape[0], x.shape[1], -1)
    xyz = pd.read_parquet(segment_dir / "channels.parquet")[["x", "y", "z"]].to_numpy()
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    fit, score = np.arange(len(x)) % 2 == 0, np.arange(len(x)) % 2 == 1
    out = {}
    for name, pick in (("all_others", lambda c: np.delete(np.arange(x.shape[1]), c)),
                       ("nearest_3", lambda c: np.argsort(dist[c])[1:4])):
        r2 = []
        for c in range(x.shape[1]):
            cols = pick(c)
            a = x[fit][:, cols].transpose(0, 2, 1).reshape(-1, len(cols))
            w = np.linalg.solve(a.T @ a + ridge * np.eye(len(cols)),
                                a.T @ x[fit][:, c].reshape(-1))
            b = x[score][:, cols].transpose(0, 2, 1).reshape(-1, len(cols))
            y = x[score][:, c].reshape(-1)
            r2.append(1 - np.mean((y - b @ w) ** 2) / np.mean((y - y.mean()) ** 2))
        out[name] = {"mean_r2": float(np.mean(r2)), "median_r2": float(np.median(r2))}
    return out


def model_scores(results: Path, model_path: Path) -> dict:
    """Latent R^2 and output variance of a pretrained predictor on validation windows."""
    model, state = load_masked_latent_model(model_path)
    val = SegmentDataset(results, "pretrain", encode_scale=state["encode_scale"],
                         mask_scale=state["mask_scale"], roles=("val",),
                         recordings=state["recordings"])
    return {**masked_latent_scores(model, val), "encode_scale": state["encode_scale"],
            "mask_scale": state["mask_scale"], "steps": state["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--recording", help="segments/<recording> (default: the first)")
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "masked_predictability.json")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    segment_dir = (args.results / "segments" / args.recording if args.recording
                   else sorted((args.results / "segments").glob("*/signal.parquet"))[0].parent)
    report = {"recording": segment_dir.name, "linear_ceiling": linear_ceiling(segment_dir),
              "models": {str(m): model_scores(args.results, m) for m in args.model}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
