"""Localization: every contact of a subject to an atlas parcel and lobe, in MNI mm.

Coordinates come from ``electrodes.tsv`` (units from ``coordsystem.json``), labels from the
Destrieux MNI volume or from a label column of ``electrodes.tsv``. Each contact also gets its
Desikan-Killiany label (the released lobe encoder's vocabulary is keyed by it) and, where
``electrodes.tsv`` has Brain Treebank's integer ``L``, ``I``, ``P`` voxel columns, those (the
released channel encoder's spatial ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mne_bids import find_matching_paths

from .atlas import (
    UNKNOWN,
    DestrieuxAtlas,
    VolumeAtlas,
    classify_label,
    default_atlas,
    default_dk_atlas,
)
from .bids import read_tsv
from .errors import DataError

MNI_SPACES = ("MNI152", "MNI305", "fsaverage", "ICBM452", "IXI549Space")
_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}

COLUMNS = ["subject", "session", "channel", "x", "y", "z", "space", "hemisphere", "atlas_label",
           "kind", "parcel", "lobe", "desikan_killiany", "label_source", "keep", "drop_reason",
           "lip_l", "lip_i", "lip_p"]
# Brain Treebank's integer voxel coordinates (left, inferior, posterior), when electrodes.tsv
# carries them, and the localization columns they become
LIP_COLUMNS = {"L": "lip_l", "I": "lip_i", "P": "lip_p"}


def is_mni(space: str | None) -> bool:
    return bool(space) and any(space.startswith(s) for s in MNI_SPACES)


def _in_derivatives(path: Path, root: Path) -> bool:
    """Inside the dataset's ``derivatives/`` (a root that itself lies in one does not count)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        parts = Path(path).parts
    return "derivatives" in parts


def find_electrodes(bids_root: str | Path, subject: str, session: str | None,
                    space: str | None, require_coordsystem: bool = True
                    ) -> tuple[Path, Path] | None:
    """``(electrodes.tsv, coordsystem.json)`` of a subject/session, or ``None`` when absent.

    Raises when several spaces exist and none was chosen, or when coordsystem.json is missing
    and ``require_coordsystem`` (otherwise the positions count as absent).
    """
    root = Path(bids_root)
    found = find_matching_paths(bids_root, subjects=subject, sessions=session,
                                datatypes="ieeg", suffixes="electrodes", extensions=".tsv")
    found = [p for p in found if not _in_derivatives(p.fpath, root)]
    if space is not None:
        found = [p for p in found if p.space == space]
    if not found:
        return None
    spaces = sorted({str(p.space) for p in found})
    if len(found) > 1 and len(spaces) == 1:
        raise DataError(f"subject {subject} has several electrodes.tsv files "
                        f"{sorted(p.fpath.name for p in found)}; name the session")
    if len(found) > 1:
        raise DataError(f"subject {subject} has electrodes.tsv files in several spaces {spaces} "
                        f"({found[0].fpath.parent}); choose one with config key 'dataset.space'")
    tsv = found[0].fpath
    coordsystem = found[0].copy().update(suffix="coordsystem", extension=".json").fpath
    if not coordsystem.exists():
        if not require_coordsystem:
            return None
        raise DataError(f"{tsv} has no coordsystem.json beside it ({coordsystem}): the "
                        "coordinate space and units are unknown")
    return tsv, coordsystem


def read_electrodes(tsv: Path, coordsystem: Path) -> tuple[pd.DataFrame, str]:
    """Electrode table with x, y, z in mm, and the coordinate space name."""
    table = read_tsv(tsv)
    for col in ("name", "x", "y", "z"):
        if col not in table.columns:
            raise DataError(f"{tsv}: column '{col}' is missing (has {list(table.columns)})")
    try:
        meta = json.loads(Path(coordsystem).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataError(f"{coordsystem} is not valid JSON: {err}") from err
    space = meta.get("iEEGCoordinateSystem") or "unknown"
    units = meta.get("iEEGCoordinateUnits", "mm")
    if units not in _TO_MM:
        raise DataError(f"{coordsystem}: iEEGCoordinateUnits '{units}' is not one of m, cm, mm")
    table["name"] = table["name"].astype(str)
    repeated = sorted(set(table.loc[table["name"].duplicated(), "name"]))
    if repeated:  # which row holds the contact's position? (the first used to win, silently)
        raise DataError(f"{tsv}: contact names listed more than once: {repeated}; each contact "
                        "needs exactly one row")
    xyz = table[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    xyz = xyz * _TO_MM[units]
    finite = np.abs(xyz[np.isfinite(xyz)])
    if units == "mm" and finite.size and finite.max() < 0.3:
        # declared mm but a brain 0.3 mm wide: the values are metres (seen in public datasets)
        raise DataError(f"{tsv}: coordinates are declared in mm ({coordsystem}) but span less "
                        "than 0.3; they look like metres. Fix iEEGCoordinateUnits.")
    table[["x", "y", "z"]] = xyz
    return table, space


def lip_coordinates(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """Columns ``lip_l, lip_i, lip_p`` (nullable integers) from electrodes.tsv's ``L, I, P``.

    All three columns or none: one or two of them is an error, as is a value that is not a
    whole number (these index the rows of the released channel encoder's tables, so a
    rounded value would silently move a contact). Missing values (``n/a``) stay missing.
    """
    present = [c for c in LIP_COLUMNS if c in table.columns]
    out = pd.DataFrame(index=table.index)
    if not present:
        for name in LIP_COLUMNS.values():
            out[name] = pd.array([pd.NA] * len(table), dtype="Int64")
        return out
    if len(present) != len(LIP_COLUMNS):
        raise DataError(f"{source}: has column(s) {present} of Brain Treebank's voxel "
                        f"coordinates but not all of {list(LIP_COLUMNS)}")
    for column, name in LIP_COLUMNS.items():
        values = pd.to_numeric(table[column], errors="coerce")  # read_tsv made n/a missing
        text = values.isna() & table[column].notna()  # a word where a number belongs
        bad = table[column][text | (values.notna() & (values % 1 != 0))]
        if len(bad):
            raise DataError(f"{source}: column '{column}' must hold whole voxel indices, got "
                            f"{bad.tolist()[:5]}")
        out[name] = values.astype("Int64")
    return out


def localize_contacts(table: pd.DataFrame, space: str, *, atlas: DestrieuxAtlas | None,
                      white_matter_radius_mm: float, label_column: str | None,
                      source: str, dk_atlas: VolumeAtlas | None = None,
                      dk_label_column: str | None = None) -> pd.DataFrame:
    """Region of every contact in an electrode table (x, y, z in mm).

    The Desikan-Killiany label comes from ``dk_label_column`` when given, else from
    ``dk_atlas`` by the rule of the Destrieux label (the nearest grey-matter label within
    ``white_matter_radius_mm`` for white matter), else it is empty.
    """
    for key, column in (("label_column", label_column), ("dk_label_column", dk_label_column)):
        if column is not None and column not in table.columns:
            raise DataError(f"{source}: label column '{column}' (config key "
                            f"'atlas.{key}') not found; columns are {list(table.columns)}")
    # by position, not itertuples attributes: a label column may not be a Python identifier
    labels = table[label_column].tolist() if label_column is not None else [None] * len(table)
    dk_labels = (table[dk_label_column].tolist() if dk_label_column is not None
                 else [None] * len(table))
    lip = lip_coordinates(table, source)
    rows = []
    for rec, value, dk_value in zip(table.itertuples(index=False), labels, dk_labels,
                                    strict=True):
        xyz = np.array([rec.x, rec.y, rec.z], dtype=float)
        has_xyz = bool(np.all(np.isfinite(xyz)))
        if label_column is not None:
            name = "" if pd.isna(value) else str(value)
            region = classify_label(name, xyz[0] if has_xyz else 0.0)
            how = "column"
        elif atlas is not None and has_xyz:
            region, how = atlas.region_at(xyz, white_matter_radius_mm)
        else:
            region, how = classify_label("", xyz[0] if has_xyz else 0.0), "none"
        if dk_label_column is not None:
            dk = "" if pd.isna(dk_value) else str(dk_value).strip()
        elif dk_atlas is not None and has_xyz:
            dk, _ = dk_atlas.grey_label_at(xyz, white_matter_radius_mm)
        else:
            dk = ""
        keep = region.kind != "ventricle"
        rows.append({
            "channel": rec.name, "x": xyz[0], "y": xyz[1], "z": xyz[2], "space": space,
            "hemisphere": region.hemisphere if has_xyz or how == "column" else "",
            "atlas_label": region.atlas_label, "kind": region.kind,
            "parcel": region.parcel, "lobe": region.lobe, "desikan_killiany": dk,
            "label_source": how, "keep": keep, "drop_reason": "" if keep else "ventricle",
        })
    named = [c for c in COLUMNS[2:] if c not in lip.columns]
    out = pd.concat([pd.DataFrame(rows, columns=named), lip.reset_index(drop=True)], axis=1)
    return out[COLUMNS[2:]]


def localize_subject(bids_root: str | Path, subject: str, sessions: list[str | None], *,
                     space: str | None, need_atlas: bool, white_matter_radius_mm: float,
                     label_column: str | None,
                     dk_label_column: str | None = None) -> pd.DataFrame:
    """Channel table of a subject: one row per contact and session (columns :data:`COLUMNS`).

    Parameters
    ----------
    need_atlas : bool
        True when a parcel or lobe scale is built: then electrodes.tsv, coordsystem.json and an
        MNI space (or a label column) are required, and their absence is an error.
    """
    frames = []
    for session in sessions:
        found = find_electrodes(bids_root, subject, session, space,
                                require_coordsystem=need_atlas)
        where = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        if found is None:
            if need_atlas:
                raise DataError(f"{bids_root}: no electrodes.tsv for {where}"
                                + (f" in space '{space}'" if space else "")
                                + "; it is required for the parcel and lobe scales")
            continue
        tsv, coordsystem = found
        table, coord_space = read_electrodes(tsv, coordsystem)
        atlas = None
        if label_column is None and need_atlas:
            if not is_mni(coord_space):
                raise DataError(f"{tsv}: coordinates are in '{coord_space}' ({coordsystem}), "
                                "not an MNI space; atlas labels need MNI coordinates (or set "
                                "config key 'atlas.label_column')")
            atlas = default_atlas()
        elif label_column is None and is_mni(coord_space):
            atlas = default_atlas()
        # the Desikan-Killiany volume wherever positions are MNI (it costs one more lookup)
        dk_atlas = default_dk_atlas() if dk_label_column is None and is_mni(coord_space) \
            else None
        located = localize_contacts(table, coord_space, atlas=atlas,
                                    white_matter_radius_mm=white_matter_radius_mm,
                                    label_column=label_column, source=str(tsv),
                                    dk_atlas=dk_atlas, dk_label_column=dk_label_column)
        located.insert(0, "session", session or "")
        located.insert(0, "subject", subject)
        frames.append(located)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="Int64" if c in LIP_COLUMNS.values() else object)
                             for c in COLUMNS})
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def lookup(table: pd.DataFrame, session: str | None, contact: str) -> dict:
    """Localization row of a contact in a session (unknown region when absent)."""
    hit = table[(table["session"] == (session or "")) & (table["channel"] == contact)]
    if len(hit):
        return hit.iloc[0].to_dict()
    return {"channel": contact, "x": np.nan, "y": np.nan, "z": np.nan, "space": "",
            "hemisphere": "", "atlas_label": "", "kind": "unknown", "parcel": UNKNOWN,
            "lobe": UNKNOWN, "desikan_killiany": "", "label_source": "none", "keep": True,
            "drop_reason": "", "lip_l": pd.NA, "lip_i": pd.NA, "lip_p": pd.NA}
