"""Which recordings pretrain and which are decoded, and the tidy result rows.

Every number the study reports is a row of ``results/<ds>/decoding.parquet`` or
``reconstruction.parquet`` with the columns of :data:`RESULT_COLUMNS`; nothing is parsed from logs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import ConfigError, DataError

# ``variant``: the BaRISTA pretraining variant (barista.variants; ``paper`` is the paper's
# method, random-init rows carry the variant they pair with, other models ``none``);
# ``pretrain_seed``: the pretraining run (and its paired random init); ``seed``: finetuning's;
# ``setting``: the generalisation setting of the recording (SETTINGS; a Neuroprobe row's split
# type)
RESULT_COLUMNS = ["protocol", "model", "variant", "encode_scale", "mask_scale", "task",
                  "subject", "session", "recording", "pretrain_seed", "seed", "setting",
                  "metric", "value", "config_hash"]
# Migration: result files written before the rename call the setting ``split_kind``, a name the
# window split (segments' ``splits.parquet``) also used; they are read with it renamed.
RENAMED_RESULT_COLUMNS = {"split_kind": "setting"}
NONE = "none"
# how a row was scored: ``barista`` (the study's windows, tasks and splits) or ``neuroprobe``
# (the benchmark's samples, tasks and splits; barista.neuroprobe)
PROTOCOLS = ("barista", "neuroprobe")


def read_results(path: str | Path) -> pd.DataFrame:
    """A result table (a job's ``metrics.parquet`` or ``curve.parquet``, ``decoding.parquet``,
    ``reconstruction.parquet``), with the columns of older files renamed
    (:data:`RENAMED_RESULT_COLUMNS`)."""
    if not Path(path).exists():
        raise DataError(f"result table not found: {path}")
    return migrate_results(pd.read_parquet(path), path)


def migrate_results(table: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """``table`` with its old column names replaced by today's; a table holding both an old
    and its new name is an error (two writers mixed), named after ``source``."""
    both = [old for old, new in RENAMED_RESULT_COLUMNS.items()
            if old in table and new in table]
    if both:
        raise DataError(f"{source}: has both columns {both[0]!r} (old name) and "
                        f"{RENAMED_RESULT_COLUMNS[both[0]]!r}; rebuild it from its result files")
    return table.rename(columns=RENAMED_RESULT_COLUMNS)


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
        if heldout_sessions and len(sessions) > heldout_sessions:  # [-0:] would be all
            late = sub.index[sub["session"].isin(sessions[-heldout_sessions:])]
            table.loc[late, "setting"] = "cross_session"
    return table.sort_values("recording").reset_index(drop=True)


def assign_roles(recordings: pd.DataFrame, roles: dict) -> pd.DataFrame:
    """Settings from explicit session roles (``evaluation.sessions``).

    A recording's session is named ``<subject>_<session>``. ``pretrain`` sessions are
    ``within_session``, ``validation`` sessions ``validation`` (pretraining's validation set,
    never decoded), ``test`` sessions ``cross_session``, or ``cross_subject`` when their subject
    has no pretrain session. Roles may name sessions absent from the table (a subject filter
    can leave them out), but every recording of the table needs a role.
    """
    role_of = {name: role for role, names in roles.items() for name in names or []}
    table = recordings.copy()
    keys = table["subject"].astype(str) + "_" + table["session"].astype(str)
    missing = sorted(table.loc[~keys.isin(list(role_of)), "recording"])
    if missing:
        raise ConfigError(f"config key 'evaluation.sessions': recording(s) {missing[:5]} "
                          f"(sessions {sorted(set(keys[~keys.isin(list(role_of))]))[:5]}) have "
                          "no role; name each in pretrain, validation or test")
    role = keys.map(role_of)
    pretrained = set(table.loc[role == "pretrain", "subject"])
    table["setting"] = "within_session"
    table.loc[role == "validation", "setting"] = "validation"
    test = role == "test"
    table.loc[test, "setting"] = [
        "cross_session" if s in pretrained else "cross_subject" for s in table.loc[test, "subject"]]
    return table.sort_values("recording").reset_index(drop=True)


def _settings(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    if evaluation.get("sessions"):
        return assign_roles(recordings, evaluation["sessions"])
    return assign_settings(recordings, evaluation["heldout_sessions"],
                           evaluation.get("heldout_subjects", 0))


def decoded(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    """Recordings that are finetuned and tested, with their ``setting``."""
    table = _settings(recordings, evaluation)
    wanted = evaluation.get("settings", ["cross_session"])
    for setting in wanted:
        if not (table["setting"] == setting).any() and evaluation.get("sessions"):
            raise ConfigError(
                f"config key 'evaluation.settings': no recording is {setting!r} with the "
                "roles of 'evaluation.sessions' (test sessions are cross_session when their "
                "subject has a pretrain session, else cross_subject)")
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


def validation(recordings: pd.DataFrame, evaluation: dict) -> list[str]:
    """Recordings of ``evaluation.sessions.validation``: pretraining's validation set."""
    table = _settings(recordings, evaluation)
    return sorted(table.loc[table["setting"] == "validation", "recording"])


def heldout(recordings: pd.DataFrame, evaluation: dict) -> pd.DataFrame:
    """Recordings pretraining never saw (held-out sessions and subjects; not the validation
    sessions, which chose nothing but are not test data either)."""
    table = _settings(recordings, evaluation)
    held = table[~table["setting"].isin(["within_session", "validation"])]
    if held.empty:
        raise ConfigError("config keys 'evaluation.heldout_sessions'/'heldout_subjects': no "
                          "session or subject is held out of pretraining, and reconstruction "
                          "is scored on held-out recordings; to pretrain on every recording, "
                          "set config key 'reconstruct.enabled' to false")
    return held.reset_index(drop=True)


def rows(metrics: dict, **columns) -> pd.DataFrame:
    """Tidy rows: one per metric, the other columns repeated (``protocol`` defaults to
    ``barista``; models without pretraining variants default to variant ``none`` and
    pretraining seed 0, while BaRISTA and random-init rows must name theirs)."""
    columns.setdefault("protocol", "barista")
    if columns.get("model") not in ("barista", "random_init"):
        columns.setdefault("variant", NONE)
        columns.setdefault("pretrain_seed", 0)
    missing = [c for c in ("variant", "pretrain_seed") if c not in columns]
    if missing:
        raise ValueError(f"result rows of model {columns.get('model')} need columns {missing}")
    frame = pd.DataFrame({"metric": list(metrics), "value": [float(v) for v in
                                                             metrics.values()]})
    for key, value in columns.items():
        frame[key] = value
    return frame[RESULT_COLUMNS]


def collect(files: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate per-job result files into one table, sorted for stable bytes.

    No files (pretraining only, no decoding task) make a table with the result columns and
    no rows."""
    if not files:
        table = pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object)
                              for c in RESULT_COLUMNS})
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out, index=False)
        return table
    table = pd.concat([read_results(f) for f in files], ignore_index=True)
    if "protocol" not in table:  # result files written before the protocol column
        table.insert(0, "protocol", "barista")
    table["protocol"] = table["protocol"].fillna("barista")
    keys = [c for c in table.columns if c not in ("value", "config_hash")]
    table = table.sort_values(keys).reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return table
