"""The honest floor: logistic regression on per-channel log band power of the same windows.

As in the Neuroprobe benchmark, a linear model on spectral features of the same segments is shown
beside every foundation model (on Brain Treebank it beats several of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data import SegmentDataset
from ..errors import DataError
from .finetune import auroc
from .folds import CROSS_VALIDATED, chronological_roles, cross_validation_folds, weighted_mean

BANDS = ((1, 4), (4, 8), (8, 13), (13, 30), (30, 70), (70, 150), (150, 300))


def band_power_features(x: np.ndarray, sfreq: float) -> np.ndarray:
    """Log mean Welch power per channel and band: (windows, channels, samples) ->
    (windows, channels * bands). Bands are cut at Nyquist; bands above it are left out."""
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=min(x.shape[-1], int(sfreq / 2)), axis=-1)
    nyquist = sfreq / 2
    feats = [np.log(psd[..., (freqs >= lo) & (freqs < min(hi, nyquist))].mean(-1) + 1e-12)
             for lo, hi in BANDS if np.any((freqs >= lo) & (freqs < min(hi, nyquist)))]
    return np.stack(feats, axis=-1).reshape(len(x), -1)


def _arrays(ds: SegmentDataset) -> tuple[np.ndarray, np.ndarray]:
    xs = [ds[i]["x"].flatten(1).numpy() for i in range(len(ds))]  # each window read once
    return np.stack(xs), ds.index["label"].to_numpy()


def linear_baseline(results: str | Path, *, recording: str, task: str, seed: int,
                    window_split: str = "random", cs=(0.01, 0.1, 1.0, 10.0),
                    cv_val_fraction: float = 0.1) -> dict:
    """Fit on train, choose the regularisation on val, report test AUROC.

    ``window_split`` ``chrono`` runs every chronological fold (:mod:`barista.training.folds`) and
    reports the test-size-weighted mean AUROC, as finetuning does.
    """
    if window_split == CROSS_VALIDATED:
        windows = SegmentDataset(results, task, encode_scale=None, split=None,
                                 recordings=[recording])
        if len(windows) == 0:
            raise DataError(f"{recording}: no '{task}' windows")
        x, y = _arrays(windows)
        feats = band_power_features(x, windows.files[recording].meta["sfreq"])
        roles = chronological_roles(results, recording, task).reindex(windows.index["segment"])
        folds = cross_validation_folds(roles, y, val_fraction=cv_val_fraction, seed=seed,
                                       recording=recording, task=task)
        fits = [_fit({r: (feats[pos], y[pos]) for r, pos in fold.items()}, cs, seed)
                for fold in folds.values()]
        sizes = [len(fold["test"]) for fold in folds.values()]
        return {"auroc": weighted_mean([f["auroc"] for f in fits], sizes),
                "val_auroc": float(np.nanmean([f["val_auroc"] for f in fits])),
                "C": float(np.exp(np.mean(np.log([f["C"] for f in fits])))),
                "n_train": float(np.mean([len(f["train"]) for f in folds.values()])),
                "n_test": int(sum(sizes)), "n_folds": len(fits)}
    sets = {role: SegmentDataset(results, task, encode_scale=None, split=window_split,
                                 roles=(role,), recordings=[recording])
            for role in ("train", "val", "test")}
    if any(len(ds) == 0 for ds in sets.values()):
        raise DataError(f"{recording}: a split of '{task}' is empty")
    sfreq = sets["train"].files[recording].meta["sfreq"]
    data = {}
    for role, ds in sets.items():
        x, y = _arrays(ds)
        data[role] = (band_power_features(x, sfreq), y)
    return {**_fit(data, cs, seed), "n_train": len(sets["train"]), "n_test": len(sets["test"])}


def _fit(data: dict, cs, seed: int) -> dict:
    """Logistic regression on ``data['train']`` for each C; the best on ``val`` is tested."""
    val, c, clf = _best(data, cs, seed)
    return {"auroc": auroc(data["test"][1], clf.predict_proba(data["test"][0])[:, 1]),
            "val_auroc": val, "C": c}


def _best(data: dict, cs, seed: int):
    best = None
    for c in cs:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000,
                                                                 random_state=seed))
        clf.fit(*data["train"])
        val = auroc(data["val"][1], clf.predict_proba(data["val"][0])[:, 1])
        if best is None or np.nan_to_num(val, nan=-1) > np.nan_to_num(best[0], nan=-1):
            best = (val, c, clf)
    return best


def fit_logistic(data: dict, seed: int, cs=(0.01, 0.1, 1.0, 10.0)) -> dict:
    """:func:`_fit` plus the accuracies and the training AUROC a Neuroprobe leaderboard entry
    reports per fold."""
    val, c, clf = _best(data, cs, seed)
    out = {"val_auroc": val, "C": c}
    for role, name in (("test", "test"), ("train", "train")):
        x, y = data[role]
        p = clf.predict_proba(x)[:, 1]
        out[f"{name}_roc_auc"] = auroc(y, p)
        out[f"{name}_accuracy"] = float(np.mean((p > 0.5) == y))
    out["auroc"] = out["test_roc_auc"]
    return out
