"""Diagnostic: does a pretrained encoder finetune better than its own starting point?

The DAG's finetuning is scored on one test split per session (6 speech windows in the demo),
which decides nothing between models a few hundredths apart. This diagnostic finetunes a
``model.pt`` (EMA tokenizer + backbone, as the ``finetune`` rule starts) and the encoder that
its pretraining started from (``initial_encoder``, the DAG's random-init baseline) with the
paper's head and freezing, k-fold cross-validated over every labelled window of each
recording (stratified folds, fixed epochs, no early stopping, so no validation windows are
needed). Each window is tested once. The score per recording is the mean per-fold AUROC. The
results are written to ``--out`` and quoted in docs/notes/latent_objective_small_scale.md.

    python benchmarks/finetune_cv.py --results results/demo \\
        --model results/demo/models/barista/parcel-parcel/model.pt --lr-head 1e-3 1e-2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from barista.data import SegmentDataset, collate_packed
from barista.models import BaristaConfig, BaristaEncoder
from barista.training.finetune import Decoder, apply_freeze
from barista.training.pretrain import initial_encoder, load_pretrained


def fold_aurocs(encoder: BaristaEncoder, items: list[dict], labels: np.ndarray, args,
                lr_head: float) -> list[float]:
    """Test AUROC of each fold, every fold finetuning a fresh copy of ``encoder``."""
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.split_seed)
    state = encoder.state_dict()
    out = []
    for k, (train, test) in enumerate(folds.split(labels, labels)):
        torch.manual_seed(k)
        rng = np.random.default_rng(k)
        fresh = BaristaEncoder(encoder.config)
        fresh.load_state_dict(state)
        model = Decoder(fresh, int(items[0]["x"].shape[0]))
        apply_freeze(model.encoder, "paper")
        optimizer = torch.optim.AdamW(
            [{"params": [p for p in model.encoder.parameters() if p.requires_grad],
              "lr": args.lr_encoder},
             {"params": list(model.head.parameters()), "lr": lr_head}], weight_decay=1e-2)
        model.train()
        for _ in range(args.epochs):
            order = rng.permutation(train)
            for start in range(0, len(order), args.batch_size):
                batch = collate_packed([items[i] for i in order[start:start + args.batch_size]])
                loss = F.cross_entropy(model(batch), batch["label"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            scores = model(collate_packed([items[i] for i in test])).softmax(-1)[:, 1]
        out.append(float(roc_auc_score(labels[test], scores.numpy())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/demo"))
    parser.add_argument("--model", type=Path, required=True, help="a pretraining model.pt")
    parser.add_argument("--seed", type=int, default=0, help="pretrain.seed of that run")
    parser.add_argument("--task", default="speech_vs_nonspeech")
    parser.add_argument("--lr-head", type=float, nargs="+", default=[1e-3])
    parser.add_argument("--lr-encoder", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "finetune_cv.json")
    args = parser.parse_args()
    pretrained, state = load_pretrained(args.model)
    start = initial_encoder(BaristaConfig(**state["config"]), args.seed)
    recordings = sorted(p.parent.name for p in (args.results / "segments").glob("*/index.parquet"))
    runs = []
    for lr_head in args.lr_head:
        t0 = time.perf_counter()
        scores = {"pretrained": {}, "start": {}}
        for rec in recordings:
            windows = SegmentDataset(args.results, args.task, encode_scale=state["encode_scale"],
                                     split=None, recordings=[rec])
            items = [windows[i] for i in range(len(windows))]
            labels = windows.index["label"].to_numpy()
            for name, encoder in (("pretrained", pretrained), ("start", start)):
                scores[name][rec] = fold_aurocs(encoder, items, labels, args, lr_head)
        means = {name: {rec: float(np.mean(v)) for rec, v in by_rec.items()}
                 for name, by_rec in scores.items()}
        diff = np.array([means["pretrained"][r] - means["start"][r] for r in recordings])
        summary = {"pretrained": float(np.mean(list(means["pretrained"].values()))),
                   "start": float(np.mean(list(means["start"].values()))),
                   "difference": float(diff.mean()),
                   "difference_sem": float(diff.std(ddof=1) / np.sqrt(len(diff)))}
        print(f"lr_head {lr_head}: {summary}", flush=True)
        runs.append({"lr_head": lr_head, "fold_auroc": scores, "recording_auroc": means,
                     "summary": summary, "seconds": time.perf_counter() - t0})
    report = {"results": str(args.results), "model": str(args.model),
              "encode_scale": state["encode_scale"], "mask_scale": state["mask_scale"],
              "pretraining_steps": state["steps"], "seed": args.seed, "task": args.task,
              "lr_encoder": args.lr_encoder, "epochs": args.epochs,
              "batch_size": args.batch_size, "folds": args.folds, "freeze": "paper",
              "threads": torch.get_num_threads(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
