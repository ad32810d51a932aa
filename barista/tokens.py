"""Spatial token tables: each channel's spatial identity and masking group at one scale.

Scales follow BaRISTA: ``channel`` (every contact its own identity), ``parcel`` (Destrieux
label, hemisphere-specific by default) and ``lobe`` (hemisphere-specific lobe, with hippocampus,
amygdala and other subcortical structures as their own groups). Token id 0 is reserved for
``unknown`` (the model gives it an untrained zero embedding). A channel of unknown region forms a
masking group of its own, since nothing says which channels it would be masked with.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .atlas import UNKNOWN
from .errors import DataError

TOKEN_COLUMNS = ["recording", "subject", "session", "channel", "label", "token_id", "group",
                 "group_id"]
_MTL = ("hippocampus", "amygdala")


def scale_label(row: pd.Series, scale: str, options: dict) -> str:
    """Spatial label of one channel at a scale (``unknown`` when not localized)."""
    if scale == "channel":
        return f"sub-{row['subject']}/{row['contact']}"
    name = row["parcel"] if scale == "parcel" else row["lobe"]
    if not isinstance(name, str) or name in ("", UNKNOWN):
        return UNKNOWN
    if scale == "lobe" and not options.get("separate_mtl", True) and name in _MTL:
        name = "limbic"
    if options.get("hemisphere_specific", True) and row.get("hemisphere") in ("L", "R"):
        name = f"{row['hemisphere']}-{name}"
    return name


def build_tokens(channel_tables: Iterable[pd.DataFrame], scale: str,
                 options: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Token table (one row per recording channel) and vocabulary of a scale.

    Ids are assigned over the sorted labels, so they depend only on the set of labels and never
    on file order.
    """
    frames = list(channel_tables)
    if not frames:
        raise DataError(f"no channel tables to build the '{scale}' scale from")
    channels = pd.concat(frames, ignore_index=True)
    labels = channels.apply(scale_label, axis=1, scale=scale, options=options)
    known = sorted(set(labels) - {UNKNOWN})
    ids = {UNKNOWN: 0} | {label: i + 1 for i, label in enumerate(known)}
    groups = labels.where(labels != UNKNOWN,
                          UNKNOWN + ":sub-" + channels["subject"] + "/" + channels["contact"])
    group_ids = {g: i for i, g in enumerate(sorted(set(groups)))}
    tokens = channels[["recording", "subject", "session", "channel"]].assign(
        label=labels, token_id=labels.map(ids).astype("int32"), group=groups,
        group_id=groups.map(group_ids).astype("int32"))
    counts = tokens.groupby("label").agg(n_channels=("channel", "size"),
                                         n_subjects=("subject", "nunique"))
    vocab = pd.DataFrame({"token_id": list(ids.values()), "label": list(ids.keys())})
    vocab = vocab.join(counts, on="label").fillna({"n_channels": 0, "n_subjects": 0})
    vocab = vocab.astype({"n_channels": "int64", "n_subjects": "int64"})
    return tokens[TOKEN_COLUMNS], vocab.sort_values("token_id").reset_index(drop=True)


def write_tokens(channel_files: Iterable[str | Path], scale: str, options: dict,
                 out_dir: str | Path) -> dict:
    """Build a scale's tables from per-recording ``channels.parquet`` files and write them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens, vocab = build_tokens((pd.read_parquet(f) for f in sorted(map(str, channel_files))),
                                 scale, options)
    tokens.to_parquet(out_dir / "channels.parquet", index=False)
    vocab.to_parquet(out_dir / "vocab.parquet", index=False)
    return {"scale": scale, "n_tokens": int(len(vocab)), "n_channels": int(len(tokens)),
            "n_unknown": int((tokens["token_id"] == 0).sum())}
