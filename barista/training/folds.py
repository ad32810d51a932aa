"""Which windows of a decoded session train, validate and test, split by split.

A single split of one session tests a handful of windows (6-8 speech windows in the demo), too
few to tell models a few hundredths apart. ``window_split: chrono`` instead runs every
chronological fold of the session in turn, so each window is tested once. Fold ``k`` tests its
time block; the block's buffer keeps every window that overlaps it out of training (those
windows validate, as the segmenter assigned them). The buffer holds only a few windows, so a
seeded, stratified share of the fold's training windows validates as well: it picks the epoch
(and the linear floor's penalty), never the test block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import read_splits
from ..errors import DataError
from .common import seed_of

CROSS_VALIDATED = "chrono"


def chronological_roles(results: str | Path, recording: str, task: str) -> pd.DataFrame:
    """Role of every window of ``task`` in each chronological fold: segments x folds."""
    path = Path(results) / "segments" / recording / "splits.parquet"
    if not path.exists():
        raise DataError(f"{path} missing: build the segments first")
    splits = read_splits(path)
    splits = splits[(splits["kind"] == task) & splits["split"].str.startswith("chrono")]
    if splits.empty:
        raise DataError(f"{path}: no chronological folds of '{task}' (config "
                        "'splits.chronological.n_folds')")
    return splits.pivot(index="segment", columns="split", values="role")


def cross_validation_folds(roles: pd.DataFrame, labels: np.ndarray, *, val_fraction: float,
                           seed: int, recording: str = "", task: str = ""
                           ) -> dict[str, dict[str, np.ndarray]]:
    """Positions of the ``train``, ``val`` and ``test`` windows of every usable fold.

    ``roles`` holds one row per window, in the order of ``labels`` (``chronological_roles``
    reindexed to the windows). A fold whose test block holds a single class ranks nothing and is
    left out. ``val_fraction`` of each class's training windows (at least one) moves to
    validation, drawn with a generator seeded by ``seed`` and the fold.
    """
    labels = np.asarray(labels)
    folds = {}
    for fold in roles.columns:
        role = roles[fold].to_numpy()
        test = np.flatnonzero(role == "test")
        if len(np.unique(labels[test])) < 2:
            continue
        rng = np.random.default_rng(seed_of(seed, "cv-val", fold))
        train, val = [], [np.flatnonzero(role == "val")]
        for cls in (0, 1):
            pool = np.flatnonzero((role == "train") & (labels == cls))
            if len(pool) < 2:
                raise DataError(f"{recording}, fold {fold}: fewer than 2 '{task}' training "
                                f"windows of class {cls}")
            n_val = min(max(1, round(val_fraction * len(pool))), len(pool) - 1)
            moved = rng.choice(pool, n_val, replace=False)
            val.append(moved)
            train.append(np.setdiff1d(pool, moved))
        folds[fold] = {"train": np.sort(np.concatenate(train)),
                       "val": np.sort(np.concatenate(val)), "test": test}
    if not folds:
        raise DataError(f"{recording}: no chronological test block of '{task}' holds both "
                        "classes")
    return folds


def weighted_mean(scores: list[float], sizes: list[int]) -> float:
    """Mean of per-fold scores weighted by test-block size, NaN folds left out.

    Scores of separate fits are averaged rather than pooled: one AUROC over the pooled blocks
    compares scores of different models, and where the class balance drifts between blocks it
    falls below chance with no signal at all.
    """
    scores, sizes = np.asarray(scores, float), np.asarray(sizes, float)
    keep = np.isfinite(scores)
    if not keep.any():
        return float("nan")
    return float(np.average(scores[keep], weights=sizes[keep]))
