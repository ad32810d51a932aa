"""Does pretraining learn? The paper's objective and its variants, each against its own start.

For every ``--variant`` (``paper``, ``prior+raw``, ...; ``barista.variants``) and ``--seed``
this runs the workflow's own pretraining (``barista.training.pretrain.pretrain``, the code the
``pretrain`` rule calls, with the demo config's settings unless overridden here) for one
(encode, mask) pair, stopping every ``--every`` steps to score the checkpoint (a resumed run
ends where an uninterrupted one does) on:

- ``recon_r2``: channel-level reconstruction as the ``reconstruct`` rule runs it (linear head on
  the predictor's output fitted on masked pretraining windows; one channel masked at a time on
  every recording pretraining did not see; R^2 per channel), the mean over channels of each
  held-out recording, and their mean;
- ``target_r2``: the predictor's R^2 against its own targets on the validation windows.

At the end, the final encoder (EMA tokenizer + backbone, what finetuning starts from) and its
paired random init (the very encoder the run started from) are scored by the frozen-feature
probe (``barista.training.probe``) on every recording and ``--task``; the difference per
recording, its mean and s.e.m. go to the line. The linear floor (band power, the same folds) is
scored once per recording and task. One JSON line per run is appended to ``--out``.

    python benchmarks/pretraining_variants.py --variant paper prior+raw --seed 0 1 2 \\
        --steps 216 --every 72 --out benchmarks/results/pretraining_variants.jsonl
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
from barista.data import SegmentDataset
from barista.evaluation import heldout, pretraining, read_recordings
from barista.training.baselines import linear_baseline
from barista.training.common import atomic_save
from barista.training.diagnostics import load_masked_latent_model, masked_latent_scores
from barista.training.pretrain import (
    PretrainConfig,
    barista_final_state,
    initial_encoder,
    load_pretrained,
    model_config,
    pretrain,
)
from barista.training.probe import probe_auroc
from barista.training.reconstruct import evaluate_channels, train_head
from barista.variants import variant_options

DEMO_CONFIG = Path(__file__).parents[1] / "config" / "config.yaml"


def sem(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def model_file(checkpoint: Path, out: Path, encode: str, mask: str, steps: int) -> Path:
    """A ``model.pt`` (what the reconstruct step reads) from a pretraining checkpoint."""
    model, state = load_masked_latent_model(checkpoint)
    atomic_save({"config": state["config"], **barista_final_state(model),
                 "encode_scale": encode, "mask_scale": mask, "steps": steps}, out)
    return out


def reconstruction(args, cfg: dict, model_path: Path, recordings: list[str],
                   held: list[str]) -> dict:
    rc = cfg["reconstruct"]
    head, fit = train_head(model_path, args.results, recordings=recordings, epochs=rc["epochs"],
                           batch_size=rc["batch_size"], ridge=rc["ridge"], device="cpu")
    per_rec = {rec: float(evaluate_channels(model_path, head, args.results, recording=rec,
                                            max_windows=rc["max_windows"],
                                            batch_size=rc["batch_size"], device="cpu")
                          ["r2"].mean()) for rec in held}
    return {"recon_r2": float(np.mean(list(per_rec.values()))), "recon_r2_by_recording": per_rec,
            "head_train_r2": fit["train_r2"]}


def run(args, cfg: dict, variant: str, seed: int, recordings: list[str], held: list[str],
        every_rec: list[str]) -> dict:
    overrides = {**cfg["model"]["overrides"], **variant_options(variant), **dict(args.override)}
    pre = {k: v for k, v in cfg["pretrain"].items() if k not in ("processes", "repeats")}
    pre.update(seed=seed, max_steps=args.steps, epochs=10**6, checkpoint_every=args.every,
               device="cpu")
    if args.lr is not None:
        pre["lr"] = args.lr
    train_cfg = PretrainConfig(**pre)
    val = SegmentDataset(args.results, "pretrain", encode_scale=args.encode, mask_scale=args.mask,
                         roles=("val",), recordings=recordings)
    curve = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for stop in range(args.every, args.steps + 1, args.every):
            t0 = time.perf_counter()
            pretrain(args.results, work, encode_scale=args.encode, mask_scale=args.mask,
                     recordings=recordings, size=cfg["model"]["size"],
                     model_overrides=overrides, cfg=train_cfg, progress=False,
                     stop_after=stop if stop < args.steps else None)
            seconds = time.perf_counter() - t0
            model, _ = load_masked_latent_model(work / "checkpoint.pt")
            point = {"step": stop, "pretrain_seconds": seconds,
                     "target_r2": masked_latent_scores(model, val)["latent_r2"]}
            point.update(reconstruction(args, cfg, model_file(
                work / "checkpoint.pt", work / "scored.pt", args.encode, args.mask, stop),
                recordings, held))
            curve.append(point)
            print(f"{variant} seed {seed} step {stop}: target R^2 {point['target_r2']:.3f}, "
                  f"reconstruction R^2 {point['recon_r2']:.3f} ({seconds:.0f} s)", flush=True)
        pretrained, state = load_pretrained(work / "model.pt")
    start = initial_encoder(model_config(args.results, args.encode, cfg["model"]["size"],
                                         overrides), seed)
    probes = {}
    for task in args.task:
        pairs = {rec: (probe_auroc(pretrained, args.results, rec, task)["probe_auroc"],
                       probe_auroc(start, args.results, rec, task)["probe_auroc"])
                 for rec in every_rec}
        gains = [a - b for a, b in pairs.values()]
        probes[task] = {"pretrained": {r: p[0] for r, p in pairs.items()},
                        "random_init": {r: p[1] for r, p in pairs.items()},
                        "mean_pretrained": float(np.mean([p[0] for p in pairs.values()])),
                        "mean_random_init": float(np.mean([p[1] for p in pairs.values()])),
                        "gain": float(np.mean(gains)), "gain_sem": sem(gains)}
        print(f"{variant} seed {seed} {task}: probe {probes[task]['mean_pretrained']:.3f} vs "
              f"start {probes[task]['mean_random_init']:.3f}, gain {probes[task]['gain']:+.3f}"
              f" ± {probes[task]['gain_sem']:.3f}", flush=True)
    return {"variant": variant, "seed": seed, "encode_scale": args.encode,
            "mask_scale": args.mask, "steps": args.steps, "lr": train_cfg.lr,
            "batch_size": train_cfg.batch_size, "overrides": overrides, "curve": curve,
            "probe": probes, "final_prior": (state["encoder"].get("prior.slope", None) is not None
                                             and {k: state["encoder"][k].tolist() for k in
                                                  ("prior.slope", "prior.same_patch")}) or None,
            "seconds": time.perf_counter() - t_start, "threads": torch.get_num_threads(),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True,
                                     capture_output=True).stdout.strip()}


def linear_floor(args, cfg: dict, every_rec: list[str]) -> dict:
    ev = cfg["evaluation"]
    return {task: {rec: linear_baseline(args.results, recording=rec, task=task, seed=0,
                                        window_split=ev["window_split"],
                                        cv_val_fraction=ev["cv_val_fraction"])["auroc"]
                   for rec in every_rec} for task in args.task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--variant", nargs="+", default=["paper", "prior+raw"])
    parser.add_argument("--encode", default="channel")
    parser.add_argument("--mask", default="channel")
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=216)
    parser.add_argument("--every", type=int, default=72)
    parser.add_argument("--lr", type=float, default=None, help="default: the config's")
    parser.add_argument("--override", action="append", default=[],
                        type=lambda t: (t.split("=")[0], json.loads(t.split("=", 1)[1])),
                        help='model field=JSON value, e.g. d_model=64 (repeatable)')
    parser.add_argument("--task", nargs="+", default=["speech_vs_nonspeech"])
    parser.add_argument("--linear-floor", action="store_true",
                        help="also score the linear floor once per recording and task")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "pretraining_variants.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    table = read_recordings(args.results / "recordings.tsv")
    recordings = pretraining(table, cfg["evaluation"])
    held = heldout(table, cfg["evaluation"])["recording"].tolist()
    every_rec = sorted(table["recording"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.linear_floor:
        floor = linear_floor(args, cfg, every_rec)
        with args.out.open("a") as fh:
            fh.write(json.dumps({"linear_floor": floor}) + "\n")
        print(f"linear floor: {floor}", flush=True)
    for variant in args.variant:
        for seed in args.seed:
            line = run(args, cfg, variant, seed, recordings, held, every_rec)
            with args.out.open("a") as fh:
                fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
