"""Linear probe of frozen features: how much of a task an encoder's states hold before finetuning.

Foundation models of neural data are usually also judged by a linear read-out of their frozen
states (BrainBERT, Population Transformer, Neuroprobe), because finetuning a whole model on one
session's few dozen windows mostly measures the finetuning. Here a ridge classifier reads the
states of every token of a window (channels x patches x d, nothing pooled) and is scored across
the recording's chronological folds: fold ``k`` trains on its ``train`` windows and scores its
``test`` block, whose buffer keeps every overlapping window out of training. The score is the
AUROC of each test block, averaged with weights by the block's size: one AUROC over the pooled
blocks would compare scores of different fits, and where the class balance drifts from block to
block (fewer positives in training, more in the test block) that pooling falls below chance
with no signal at all. Blocks that hold one class rank nothing and are left out. The
ridge penalty is chosen by leave-one-out error on each fold's training windows alone (closed
form, cheap even with more features than windows), so the test block never picks it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifierCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..data import SegmentDataset, collate_packed
from ..errors import DataError
from .common import autocast, to_device
from .folds import chronological_roles, weighted_mean

ALPHAS = tuple(np.logspace(-1, 5, 7))


@torch.no_grad()
def token_states(encoder: nn.Module, windows: SegmentDataset, *, batch_size: int = 32,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Every token's state of every window, flattened: (windows, channels * patches * d).

    The windows must share one montage (one recording), so each feature is one channel's
    patch everywhere.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval().to(device)
    out = []
    for start in range(0, len(windows), batch_size):
        samples = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
        with autocast(device):
            states = encoder(to_device(collate_packed(samples), device)).float().cpu()
        out.append(states.reshape(len(samples), -1).numpy())
    encoder.train(was_training)
    return np.concatenate(out)


def probe_auroc(encoder: nn.Module, results: str | Path, recording: str, task: str, *,
                alphas=ALPHAS, batch_size: int = 32,
                device: str | torch.device = "cpu",
                spatial_ids: dict[str, np.ndarray] | None = None) -> dict:
    """Chronologically cross-validated AUROC of a ridge classifier on frozen token states
    (``spatial_ids``: an encoder's own vocabulary, as in :func:`~.finetune.finetune`).

    Returns ``probe_auroc`` (the size-weighted mean over test blocks), ``probe_windows`` (how
    many windows were scored) and ``probe_folds`` (how many blocks held both classes).
    """
    scale = getattr(encoder.config, "encode_scale", None)
    windows = SegmentDataset(results, task, encode_scale=scale, mask_scale=None,
                             split=None, recordings=[recording], spatial_ids=spatial_ids)
    if len(windows) == 0:
        raise DataError(f"{recording}: no '{task}' windows to probe")
    x = token_states(encoder, windows, batch_size=batch_size, device=device)
    y = windows.index["label"].to_numpy()
    roles = chronological_roles(results, recording, task).reindex(windows.index["segment"])
    aurocs, sizes = [], []
    for fold in roles.columns:
        train = (roles[fold] == "train").to_numpy()
        test = (roles[fold] == "test").to_numpy()
        if len(np.unique(y[test])) < 2:  # a block of one class ranks nothing
            continue
        if np.bincount(y[train], minlength=2).min() < 2:
            raise DataError(f"{recording}, fold {fold}: fewer than 2 '{task}' training windows "
                            "of a class for the probe")
        probe = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas))
        scores = probe.fit(x[train], y[train]).decision_function(x[test])
        aurocs.append(roc_auc_score(y[test], scores))
        sizes.append(int(test.sum()))
    if not aurocs:
        raise DataError(f"{recording}: no chronological test block of '{task}' holds both "
                        "classes")
    return {"probe_auroc": weighted_mean(aurocs, sizes),
            "probe_windows": int(sum(sizes)), "probe_folds": len(aurocs)}
