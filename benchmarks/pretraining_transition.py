"""Diagnostic: when does masked pretraining start reading masked channels, and does it help?

Runs the workflow's own pretraining (``barista.training.pretrain.pretrain``, the code the
``pretrain`` rule calls) for one (encode, mask) pair in chunks of ``--every`` steps; a resumed
run ends exactly where an uninterrupted one does, so stopping to score costs nothing. After
each chunk the checkpoint is scored on the validation windows: the predictor's latent R^2
against the EMA targets (0 while it outputs one mean token). At the end the EMA tokenizer plus
backbone (what finetuning starts from) and a randomly initialised encoder of the same size are
compared on each ``--task`` by a frozen-feature probe (``barista.training.probe``: a ridge
classifier on every token's state, cross-validated over the chronological folds of every
recording), and the channel-level reconstruction R^2 of the held-out recordings is measured
as the ``reconstruct`` rule does. One run per ``--seed``; the results are written to ``--out``
and quoted in docs/notes/latent_objective_small_scale.md.

    python benchmarks/pretraining_transition.py --results results/demo --seed 0 1 2 \\
        --override d_model=64 --override n_heads=4 --steps 500 --every 50
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from barista.config import load_config
from barista.data import SegmentDataset
from barista.evaluation import decoded, pretraining, read_recordings
from barista.models import BaristaEncoder
from barista.training.diagnostics import load_masked_latent_model, masked_latent_scores
from barista.training.pretrain import (
    PretrainConfig,
    initial_encoder,
    load_pretrained,
    model_config,
    pretrain,
)
from barista.training.probe import probe_auroc
from barista.training.reconstruct import evaluate_channels, train_head

DEMO_CONFIG = Path(__file__).parents[1] / "config" / "config.yaml"
EVALUATION = {"heldout_sessions": 1, "heldout_subjects": 1,
              "settings": ["within_session", "cross_session", "cross_subject"]}


def parse_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, yaml.safe_load(value)


def transition_curve(args, seed: int, work: Path, overrides: dict,
                     recordings: list[str]) -> list[dict]:
    """Latent R^2 every ``args.every`` steps of one seeded pretraining run."""
    cfg = PretrainConfig(epochs=10**6, max_steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, warmup_epochs=1, ema_ramp_epochs=2, seed=seed,
                         checkpoint_every=args.every, device="cpu")
    val = SegmentDataset(args.results, "pretrain", encode_scale=args.encode,
                         mask_scale=args.mask, roles=("val",), recordings=recordings)
    curve = []
    for stop in range(args.every, args.steps + 1, args.every):
        t0 = time.perf_counter()
        pretrain(args.results, work, encode_scale=args.encode, mask_scale=args.mask,
                 recordings=recordings, size=args.size, model_overrides=overrides, cfg=cfg,
                 progress=False, stop_after=stop if stop < args.steps else None)
        model, _ = load_masked_latent_model(work / "checkpoint.pt")
        scores = masked_latent_scores(model, val)
        curve.append({"step": stop, **scores, "seconds": time.perf_counter() - t0})
        print(f"seed {seed} step {stop}: latent R^2 {scores['latent_r2']:.3f}", flush=True)
    return curve


def reconstruction_r2(args, model_path: Path, recordings: list[str],
                      heldout: list[str]) -> dict:
    """Channel-level reconstruction as the ``reconstruct`` rule runs it, with the demo
    config's ``reconstruct`` settings: the linear head fitted on masked pretraining windows,
    R^2 per channel of held-out recordings with one channel masked at a time; the mean over
    channels of each recording."""
    rc = load_config(DEMO_CONFIG)["reconstruct"]
    head, _ = train_head(model_path, args.results, recordings=recordings, epochs=rc["epochs"],
                         batch_size=rc["batch_size"], ridge=rc["ridge"], device="cpu")
    return {rec: float(evaluate_channels(model_path, head, args.results, recording=rec,
                                         max_windows=rc["max_windows"],
                                         batch_size=rc["batch_size"], device="cpu")["r2"].mean())
            for rec in heldout}


def probe(args, encoder: BaristaEncoder, recordings: list[str]) -> dict:
    """Probe AUROC per task and recording."""
    return {task: {rec: probe_auroc(encoder, args.results, rec, task)["probe_auroc"]
                   for rec in recordings} for task in args.task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--encode", default="channel")
    parser.add_argument("--mask", default="channel")
    parser.add_argument("--size", default="demo")
    parser.add_argument("--override", action="append", default=[], type=parse_override,
                        help="model field=value, e.g. d_model=64 (repeatable)")
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--task", nargs="+", default=["speech_vs_nonspeech", "sentence_onset"])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "pretraining_transition.json")
    args = parser.parse_args()
    overrides = dict(args.override)
    table = read_recordings(args.results / "recordings.tsv")
    recordings = pretraining(table, EVALUATION)
    targets = decoded(table, EVALUATION)["recording"].tolist()
    runs = []
    for seed in args.seed:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            curve = transition_curve(args, seed, work, overrides, recordings)
            pretrained, _ = load_pretrained(work / "model.pt")
            reconstruction = reconstruction_r2(args, work / "model.pt", recordings,
                                               [r for r in targets if r not in recordings])
        # the twin: what this run started from (the DAG's random-init baseline)
        random_init = initial_encoder(model_config(args.results, args.encode, args.size,
                                                   overrides), seed)
        every = sorted(table["recording"])
        probes = {"pretrained": probe(args, pretrained, every),
                  "random_init": probe(args, random_init, every)}
        summary = {name: {task: float(np.mean(list(p.values()))) for task, p in by_task.items()}
                   for name, by_task in probes.items()}
        print(f"seed {seed}: probe AUROC {summary}", flush=True)
        print(f"seed {seed}: reconstruction R^2 {reconstruction}", flush=True)
        runs.append({"seed": seed, "curve": curve, "probe_auroc": probes,
                     "probe_auroc_mean": summary, "reconstruction_r2": reconstruction})
    report = {"results": str(args.results), "encode_scale": args.encode,
              "mask_scale": args.mask, "size": args.size, "overrides": overrides,
              "steps": args.steps, "lr": args.lr, "batch_size": args.batch_size,
              "task": args.task, "pretraining_recordings": recordings,
              "threads": torch.get_num_threads(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
