"""Linear probe of frozen features: how much of a task an encoder's states hold before finetuning.

Foundation models of neural data are usually also judged by a linear read-out of their frozen
states (BrainBERT, Population Transformer, Neuroprobe), because finetuning a whole model on one
session's few dozen windows mostly measures the finetuning. Here a ridge classifier reads the
states of every token of a window (channels x patches x d, nothing pooled) and is scored across
the recording's chronological folds: fold ``k`` trains on its ``train`` windows and scores its
``test`` block, whose buffer keeps every overlapping window out of training. Each tested window
is scored once, by the fold that held it out, and one AUROC is computed over all of them. The
ridge penalty is chosen by leave-one-out error on each fold's training windows alone (closed
form, cheap even with more features than windows), so the test block never picks it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeClassifierCV
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..data import SegmentDataset, collate_packed
from ..errors import DataError
from .common import autocast, to_device

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


def chronological_roles(results: str | Path, recording: str, task: str) -> pd.DataFrame:
    """Role of every window of ``task`` in each chronological fold: segments x folds."""
    path = Path(results) / "segments" / recording / "splits.parquet"
    if not path.exists():
        raise DataError(f"{path} missing: build the segments first")
    splits = pd.read_parquet(path)
    splits = splits[(splits["kind"] == task) & splits["split_kind"].str.startswith("chrono")]
    if splits.empty:
        raise DataError(f"{path}: no chronological folds of '{task}' (config "
                        "'splits.chronological.n_folds')")
    return splits.pivot(index="segment", columns="split_kind", values="role")


def probe_auroc(encoder: nn.Module, results: str | Path, recording: str, task: str, *,
                alphas=ALPHAS, batch_size: int = 32,
                device: str | torch.device = "cpu") -> dict:
    """Chronologically cross-validated AUROC of a ridge classifier on frozen token states.

    Returns ``probe_auroc`` (over every tested window), ``probe_windows`` (how many were
    tested) and ``probe_folds``.
    """
    scale = getattr(encoder.config, "encode_scale", None)
    windows = SegmentDataset(results, task, encode_scale=scale, mask_scale=None,
                             split_kind=None, recordings=[recording])
    if len(windows) == 0:
        raise DataError(f"{recording}: no '{task}' windows to probe")
    x = token_states(encoder, windows, batch_size=batch_size, device=device)
    y = windows.index["label"].to_numpy()
    roles = chronological_roles(results, recording, task).reindex(windows.index["segment"])
    scores = np.full(len(y), np.nan)
    for fold in roles.columns:
        train = (roles[fold] == "train").to_numpy()
        test = (roles[fold] == "test").to_numpy()
        if not test.any():
            continue
        if np.bincount(y[train], minlength=2).min() < 2:
            raise DataError(f"{recording}, fold {fold}: fewer than 2 '{task}' training windows "
                            "of a class for the probe")
        probe = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas))
        scores[test] = probe.fit(x[train], y[train]).decision_function(x[test])
    tested = ~np.isnan(scores)
    if len(np.unique(y[tested])) < 2:
        raise DataError(f"{recording}: the chronological test blocks of '{task}' hold one class")
    return {"probe_auroc": float(roc_auc_score(y[tested], scores[tested])),
            "probe_windows": int(tested.sum()), "probe_folds": int(roles.shape[1])}
