"""Is pretraining learning? Scores of a masked-latent model that a validation loss does not give.

Does the predictor read masked channels from the visible ones, or output one mean token?
:func:`masked_latent_scores` gives the R^2 of its predictions against the EMA targets and the
variance of its output (near 0 when it has collapsed to a constant). Whether the encoder's states
hold a task is :func:`barista.training.probe.probe_auroc`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import SegmentDataset, collate_packed
from ..errors import DataError
from ..models import BaristaConfig
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
        if model.signal_target is not None:
            model.signal_target.load_state_dict(state["signal_target"])
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
