"""Is pretraining learning? Scores of a masked-latent model and of frozen features.

Two questions a validation loss does not answer:

- does the predictor read masked channels from the visible ones, or output one mean token?
  :func:`masked_latent_scores` gives the R^2 of its predictions against the EMA targets and
  the variance of its output (near 0 when it has collapsed to a constant);
- do the encoder's states hold the task? :func:`probe_auroc` fits a logistic regression on
  frozen, mean-pooled states of every labelled window of one recording, cross-validated, so
  the score does not hang on a test split of a few windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data import SegmentDataset, collate_packed
from ..errors import DataError
from ..models import BaristaConfig, BaristaEncoder
from .pretrain import MaskedLatentModel, sample_masks


def load_masked_latent_model(path: str | Path) -> tuple[MaskedLatentModel, dict]:
    """Encoder, predictor and EMA tokenizer of a ``model.pt`` or a pretraining
    ``checkpoint.pt``, in eval mode on the CPU, and the file's contents."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = MaskedLatentModel(BaristaConfig(**state["config"]))
    if "model" in state:  # a checkpoint holds the whole module
        model.load_state_dict(state["model"])
    else:
        model.encoder.load_state_dict(state["encoder"])
        model.predictor.load_state_dict(state["predictor"])
        model.target.shadow.load_state_dict(state["ema_tokenizer"])
    return model.eval(), state


@torch.no_grad()
def masked_latent_scores(model: MaskedLatentModel, windows: SegmentDataset, *,
                         mask_ratio: float = 0.3, seed: int = 0,
                         batch_size: int = 32) -> dict:
    """R^2 of the predictor against the EMA-target tokens of masked channels.

    Masks are drawn as pretraining draws them, from ``(seed, "val<start>", position)``, so two
    models are scored on the same tokens. ``latent_r2`` is 1 - SSE / total sum of squares
    around the targets' mean token: 0 for a predictor that outputs that mean.
    """
    if len(windows) == 0:
        raise DataError("masked_latent_scores: no windows to score")
    was_training = model.training
    model.eval()
    preds, targets = [], []
    for start in range(0, len(windows), batch_size):
        batch = collate_packed([windows[i] for i in range(start, min(start + batch_size,
                                                                       len(windows)))])
        out = model(batch, sample_masks(batch, mask_ratio, seed, f"val{start}"))
        preds.append(out["pred"].float().reshape(-1, out["pred"].shape[-1]))
        targets.append(out["target"].float().reshape(-1, out["target"].shape[-1]))
    model.train(was_training)
    p, t = torch.cat(preds), torch.cat(targets)
    return {"latent_r2": float(1 - ((p - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()),
            "prediction_variance": float(p.var(0).mean()),
            "target_variance": float(t.var(0).mean()), "n_tokens": len(p)}


@torch.no_grad()
def pooled_states(encoder: BaristaEncoder, windows: SegmentDataset,
                  batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Mean over channels and patches of the encoder's states, and the labels, per window."""
    was_training = encoder.training
    encoder.eval()
    features, labels = [], []
    for start in range(0, len(windows), batch_size):
        batch = collate_packed([windows[i] for i in range(start, min(start + batch_size,
                                                                       len(windows)))])
        states = encoder(batch)  # channels of every window, patches, d
        window = torch.repeat_interleave(torch.arange(len(batch["n_channels"])),
                                         batch["n_channels"].long())
        summed = torch.zeros(len(batch["n_channels"]), states.shape[-1])
        summed.index_add_(0, window, states.float().mean(1))
        features.append(summed / batch["n_channels"][:, None].float())
        labels.append(batch["label"])
    encoder.train(was_training)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def probe_auroc(encoder: BaristaEncoder, results: str | Path, recording: str, task: str, *,
                folds: int = 5, C: float = 0.1, seed: int = 0) -> float:
    """Cross-validated AUROC of a logistic regression on :func:`pooled_states` of every
    labelled window of ``recording`` (each window is scored by the fold that left it out)."""
    windows = SegmentDataset(results, task, encode_scale=encoder.config.encode_scale,
                             mask_scale=None, roles=("train", "val", "test"),
                             recordings=[recording])
    x, y = pooled_states(encoder, windows)
    if np.bincount(y, minlength=2).min() < folds:
        raise DataError(f"{recording}: fewer than {folds} '{task}' windows of a class for a "
                        f"{folds}-fold probe")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    scores = cross_val_predict(probe, x, y, method="predict_proba",
                               cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return float(roc_auc_score(y, scores[:, 1]))
