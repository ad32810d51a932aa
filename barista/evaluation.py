"""Which recordings pretrain and which are decoded, and the tidy result rows.

Every number the study reports is a row of ``results/<ds>/decoding.parquet`` or
``reconstruction.parquet`` with the columns of :data:`RESULT_COLUMNS`; nothing is parsed from logs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import config_hash
from .errors import ConfigError

RESULT_COLUMNS = ["model", "encode_scale", "mask_scale", "task", "subject", "session",
                  "recording", "seed", "split_kind", "metric", "value", "config_hash"]
NONE = "none"


def read_recordings(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def heldout(recordings: pd.DataFrame, n_sessions: int) -> pd.DataFrame:
    """The last ``n_sessions`` sessions of each subject that has more sessions than that."""
    rows = []
    for _, sub in recordings.groupby("subject", sort=True):
        sessions = sorted(sub["session"].unique())
        if len(sessions) > n_sessions:
            rows.append(sub[sub["session"].isin(sessions[-n_sessions:])])
    if not rows:
        raise ConfigError("config key 'evaluation.heldout_sessions': no subject has more than "
                          f"{n_sessions} session(s), so no session can be held out of "
                          "pretraining for decoding")
    return pd.concat(rows).sort_values("recording").reset_index(drop=True)


def pretraining(recordings: pd.DataFrame, n_sessions: int) -> list[str]:
    """Recordings used for pretraining: all but the held-out sessions."""
    held = set(heldout(recordings, n_sessions)["recording"])
    return sorted(r for r in recordings["recording"] if r not in held)


def result_hash(cfg: dict, *sections: str) -> str:
    """Hash of the config sections a number depends on (always the data sections)."""
    keys = ("dataset", "preprocess", "atlas", "scales", "segments", "splits", *sections)
    return config_hash({k: cfg[k] for k in keys if k in cfg})


def rows(metrics: dict, **columns) -> pd.DataFrame:
    """Tidy rows: one per metric, the other columns repeated."""
    frame = pd.DataFrame({"metric": list(metrics), "value": [float(v) for v in
                                                             metrics.values()]})
    for key, value in columns.items():
        frame[key] = value
    return frame[RESULT_COLUMNS]


def collect(files: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate per-job result files into one table, sorted for stable bytes."""
    table = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    keys = [c for c in table.columns if c not in ("value", "config_hash")]
    table = table.sort_values(keys).reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return table
