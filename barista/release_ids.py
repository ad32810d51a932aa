"""A recording's channels in the spatial vocabularies of the authors' released encoders.

Localization gives every channel a Destrieux parcel, a Desikan-Killiany label and, where the
data have them, Brain Treebank's integer L, I, P voxel coordinates (``segments/<rec>/
channels.parquet``). The released encoders index:

- ``parcel`` (``parcels_chans``): the Destrieux label the parcel scale uses, white-matter
  contacts taking the nearest grey-matter label within ``atlas.white_matter_radius_mm`` as our
  own parcel tokens do; spelled as the atlas does (``ctx_lh_G_temp_sup-G_T_transv``,
  ``Left-Hippocampus``) and looked up by :func:`barista.release.release_spatial_ids`;
- ``lobe`` (``lobes_chans``): the Desikan-Killiany label (column ``desikan_killiany``);
- ``channel`` (``chans_chans``): three table rows per channel, read by the encoder from the
  batch (``grid_ids``, from ``lip_l, lip_i, lip_p``) or, for data with MNI positions only,
  derived from MNI mm (:func:`barista.models.spatial.mni_grid_ids`). The channel scale has no
  label ids: its ``spatial_id`` are zeros, unused.

Labels outside a table get id 0, the release's untrained UNKNOWN row, and are reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atlas import UNKNOWN
from .errors import DataError

log = logging.getLogger(__name__)

LIP = ["lip_l", "lip_i", "lip_p"]
_ASEG_HEMI = {"L": "Left", "R": "Right"}


def destrieux_label(hemisphere: str, kind: str, parcel: str) -> str:
    """The atlas spelling of a localized parcel: ``ctx_lh_<parcel>`` for cortex,
    ``Left-<structure>`` for the aseg structures, ``""`` when there is none."""
    if not isinstance(parcel, str) or parcel in ("", UNKNOWN) or hemisphere not in _ASEG_HEMI:
        return ""
    if kind == "cortex":
        return f"ctx_{hemisphere.lower()}h_{parcel}"
    structure = "Thalamus-Proper" if parcel == "Thalamus" else parcel  # classify_label renames it
    return f"{_ASEG_HEMI[hemisphere]}-{structure}"


@dataclass
class ReleaseIds:
    """One recording's channels in a released encoder's vocabulary (signal order)."""

    scale: str
    channels: list[str]
    ids: np.ndarray  # spatial_id per channel (zeros for the channel scale)
    labels: list[str]  # the label looked up per channel ("" where none)
    unmatched: list[str] = field(default_factory=list)  # distinct labels outside the table
    note: str = ""  # how the channel scale's rows are found

    def n_known(self) -> int:
        """Channels with a table row other than UNKNOWN (parcel and lobe scales)."""
        return int((self.ids > 0).sum())


def channel_release_ids(channels: pd.DataFrame, scale: str) -> ReleaseIds:
    """Release ids of the rows of a ``channels.parquet`` table, in its order."""
    from .release import release_spatial_ids

    names = channels["channel"].astype(str).tolist()
    if scale == "channel":
        has_lip = set(LIP) <= set(channels.columns) and channels[LIP].notna().any(axis=None)
        if has_lip:
            missing = int(channels[LIP].isna().any(axis=1).sum())
            note = ("rows from the data's integer L, I, P voxel coordinates (the release's "
                    f"convention); {missing} channel(s) without them get a zero embedding")
        else:
            note = ("no L, I, P voxel coordinates in the data: rows derived from MNI mm "
                    "(round(mm) + 100 per axis), not the frame the released channel tables were "
                    "trained on")
        return ReleaseIds(scale, names, np.zeros(len(names), np.int64), [""] * len(names),
                          note=note)
    if scale == "parcel":
        labels = [destrieux_label(h, k, p) for h, k, p in
                  channels[["hemisphere", "kind", "parcel"]].itertuples(index=False)]
    elif scale == "lobe":
        if "desikan_killiany" not in channels.columns:
            raise DataError("the released lobe encoder needs Desikan-Killiany labels, and these "
                            "segments have none (column 'desikan_killiany'): cut them again "
                            "(snakemake reruns localize and segment)")
        labels = ["" if pd.isna(v) else str(v) for v in channels["desikan_killiany"]]
    else:
        raise DataError(f"the release has no encoder at scale {scale!r}")
    ids, unmatched = release_spatial_ids(labels, scale)
    return ReleaseIds(scale, names, ids, labels, unmatched)


def recording_release_ids(results: str | Path, recording: str, scale: str) -> ReleaseIds:
    """:func:`channel_release_ids` of ``results/segments/<recording>/channels.parquet``, in
    the order of its signal file."""
    from .data import SignalFile

    folder = Path(results) / "segments" / recording
    table = pd.read_parquet(folder / "channels.parquet")
    order = SignalFile(folder / "signal.parquet").channels
    table = table.set_index("channel", drop=False).loc[order].reset_index(drop=True)
    return channel_release_ids(table, scale)


def log_release_ids(found: ReleaseIds) -> None:
    """Say in the job's log which id every channel got and which labels fell to UNKNOWN."""
    if found.scale == "channel":
        log.info("release channel scale: %s", found.note)
        return
    for name, label, index in zip(found.channels, found.labels, found.ids, strict=True):
        log.info("release %s id %3d <- %s (%s)", found.scale, index, label or "-", name)
    if found.unmatched:
        log.warning("release %s: %d label(s) outside the release's table get UNKNOWN (id 0): %s",
                    found.scale, len(found.unmatched), ", ".join(found.unmatched))
    log.info("release %s: %d of %d channels with a known id", found.scale, found.n_known(),
             len(found.channels))
