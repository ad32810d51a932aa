"""Which recordings pretrain and which are decoded, and the tidy result rows.

Every number the study reports is a row of ``results/<ds>/decoding.parquet`` or
``reconstruction.parquet`` with the columns of :data:`RESULT_COLUMNS`; nothing is parsed from logs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import config_hash
from .errors import ConfigError

# ``variant``: the BaRISTA pretraining variant (barista.variants; ``paper`` is the paper's
# method, random-init rows carry the variant they pair with, other models ``none``);
# ``pretrain_seed``: the pretraining run (and its paired random init); ``seed``: finetuning's
RESULT_COLUMNS = ["model", "variant", "encode_scale", "mask_scale", "task", "subject", "session",
                  "recording", "pretrain_seed", "seed", "split_kind", "metric", "value",
                  "config_hash"]
NONE = "none"


def read_recordings(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


SETTINGS = ("within_session", "cross_session", "cross_subject")


def assign_settings(recordings: pd.DataFrame, heldout_sessions: int,
                    heldout_subjects: int = 0) -> pd.DataFrame:
    """The generalisation setting of every recording (column ``setting``).

    The last ``heldout_subjects`` subjects are never seen in pretraining (``cross_subject``);
    of the others, the last ``heldout_sessions`` sessions of every subject with more sessions
    than that are held out (``cross_session``); the rest pretrain, and decoding them splits
    windows of a session that pretraining saw (``within_session``).
    """
    subjects = sorted(recordings["subject"].unique())
    if heldout_subjects >= len(subjects):
        raise ConfigError(f"config key 'evaluation.heldout_subjects': {heldout_subjects} of "
                          f"{len(subjects)} subject(s) leaves none to pretrain on")
    unseen = set(subjects[len(subjects) - heldout_subjects:]) if heldout_subjects else set()
    table = recordings.copy()
    table["setting"] = "within_session"
    for subject, sub in table.groupby("subject", sort=True):
        if subject in unseen:
            table.loc[sub.index, "setting"] = "cross_subject"
            continue
        sessions = sorted(sub["session"].unique())
        if len(sessions) > heldout_sessions:
            late = sub.index[sub["session"].isin(sessions[-heldout_sessions:])]
            table.loc[late, "setting"] = "cross_session"
    return table.sort_values("recording").reset_index(drop=True)


def _settings(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    return assign_settings(recordings, evaluation["heldout_sessions"],
                           evaluation.get("heldout_subjects", 0))


def decoded(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    """Recordings that are finetuned and tested, with their ``setting``."""
    table = _settings(recordings, evaluation)
    wanted = evaluation.get("settings", ["cross_session"])
    for setting in wanted:
        if not (table["setting"] == setting).any():
            raise ConfigError(
                f"config key 'evaluation.settings': no recording is {setting!r} with "
                f"heldout_sessions={evaluation['heldout_sessions']} and heldout_subjects="
                f"{evaluation.get('heldout_subjects', 0)} (subjects need more sessions than "
                "heldout_sessions for cross_session, and heldout_subjects >= 1 for cross_subject)")
    return table[table["setting"].isin(wanted)].reset_index(drop=True)


def setting_of(recordings: pd.DataFrame, evaluation: dict, recording: str) -> str:
    table = _settings(recordings, evaluation)
    match = table.loc[table["recording"] == recording, "setting"]
    if match.empty:
        raise ConfigError(f"recording {recording!r} is not in the recordings table")
    return str(match.iloc[0])


def pretraining(recordings: pd.DataFrame, evaluation: dict) -> list[str]:
    """Recordings that pretrain: neither held-out sessions nor held-out subjects."""
    table = _settings(recordings, evaluation)
    return sorted(table.loc[table["setting"] == "within_session", "recording"])


def heldout(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    """Recordings pretraining never saw (held-out sessions and subjects)."""
    table = _settings(recordings, evaluation)
    held = table[table["setting"] != "within_session"]
    if held.empty:
        raise ConfigError("config keys 'evaluation.heldout_sessions'/'heldout_subjects': no "
                          "session or subject is held out of pretraining")
    return held.reset_index(drop=True)


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
