"""Diagnostic: how much of each patch's band power can be read linearly from its token?

The linear floor decodes the demo's tasks from per-channel log band power (0.79 speech AUROC
cross-validated over the chronological folds), while finetuned transformers stay near chance.
This measures what the tokens hold: for each band, the R^2 of a least-squares map from a
patch's token (the tokenizer's output, before the spatial embedding) to that patch's log power
in the band, fitted and scored on separate halves of the windows. It also reports how much of
the token is a linear function of the raw patch. It compares the tokenizer finetuning starts
from (the EMA tokenizer of a ``model.pt``) with the one its pretraining started from
(``initial_encoder``). Results go to ``--out`` and are quoted in
docs/notes/latent_objective_small_scale.md.

    python benchmarks/token_content.py --results results/demo \\
        --model results/demo/models/barista/parcel-parcel/model.pt \\
                results/demo/models/barista/channel-channel/model.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from barista.data import SegmentDataset, collate_packed
from barista.evaluation import read_recordings
from barista.training.pretrain import initial_encoder, load_pretrained

# a 64-sample patch at 256 Hz resolves 4 Hz, so the lowest band starts there
BANDS = ((4, 12), (12, 30), (30, 70), (70, 120))


def band_log_power(patches: np.ndarray, sfreq: float) -> np.ndarray:
    """(patches, samples) -> (patches, bands) log mean periodogram power."""
    spectrum = np.abs(np.fft.rfft(patches, axis=1)) ** 2
    freqs = np.fft.rfftfreq(patches.shape[1], 1 / sfreq)
    return np.stack([np.log(spectrum[:, (freqs >= lo) & (freqs < hi)].mean(1) + 1e-12)
                     for lo, hi in BANDS], axis=1)


def held_out_r2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R^2 per column of ``y`` of a least-squares map from ``x`` (with intercept) fitted on the
    first half of the rows and scored on the second."""
    half = len(x) // 2
    design = np.c_[x, np.ones(len(x))]
    weights, *_ = np.linalg.lstsq(design[:half], y[:half], rcond=None)
    resid = y[half:] - design[half:] @ weights
    return 1 - (resid ** 2).sum(0) / ((y[half:] - y[half:].mean(0)) ** 2).sum(0)


@torch.no_grad()
def token_content(encoder, windows: SegmentDataset, sfreq: float) -> dict:
    batch = collate_packed([windows[i] for i in range(len(windows))])
    patches = batch["x"].reshape(-1, batch["x"].shape[-1]).numpy().astype(np.float64)
    tokens = encoder.eval().tokenizer(batch["x"]).reshape(len(patches), -1).numpy()
    power = band_log_power(patches, sfreq)
    linear = held_out_r2(patches, tokens)
    return {"band_r2": dict(zip([f"{lo}-{hi} Hz" for lo, hi in BANDS],
                                held_out_r2(tokens, power).round(4).tolist(), strict=True)),
            "token_linear_in_patch_r2": float(np.mean(linear).round(4)),
            "token_norm": float(np.linalg.norm(tokens, axis=1).mean().round(3))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--model", type=Path, nargs="+", required=True)
    parser.add_argument("--seed", type=int, default=0, help="pretrain.seed of those runs")
    parser.add_argument("--windows", type=int, default=64, help="task windows per recording")
    parser.add_argument("--task", default="speech_vs_nonspeech")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/token_content.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    recordings = read_recordings(args.results / "recordings.tsv")["recording"].tolist()
    runs = []
    for path in args.model:
        pretrained, state = load_pretrained(path)
        start = initial_encoder(pretrained.config, args.seed)
        scale = pretrained.config.encode_scale
        per = {"pretrained": [], "start": []}
        for rec in recordings:
            windows = SegmentDataset(args.results, args.task, encode_scale=scale,
                                     split=None, recordings=[rec])
            keep = np.linspace(0, len(windows) - 1, min(args.windows, len(windows))).astype(int)
            windows = windows.subset(np.unique(keep))
            sfreq = windows.files[rec].meta["sfreq"]
            per["pretrained"].append(token_content(pretrained, windows, sfreq))
            per["start"].append(token_content(start, windows, sfreq))
        summary = {}
        for name, rows in per.items():
            summary[name] = {
                "band_r2": {band: float(np.mean([r["band_r2"][band] for r in rows]).round(4))
                            for band in rows[0]["band_r2"]},
                "token_linear_in_patch_r2": float(np.mean(
                    [r["token_linear_in_patch_r2"] for r in rows]).round(4)),
                "token_norm": float(np.mean([r["token_norm"] for r in rows]).round(3))}
        runs.append({"model": str(path), "encode_scale": scale,
                     "mask_scale": state["mask_scale"], "steps": int(state["steps"]), **summary})
        print(json.dumps(runs[-1], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": str(args.results), "task": args.task,
                                    "windows_per_recording": args.windows,
                                    "recordings": recordings, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
