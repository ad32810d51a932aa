"""Localization of the simulated contacts, unit handling, spaces, label columns and TSV quirks.

Expected regions come from the simulator's ground truth (``derivatives/simulation``) and from a
brute-force search of the Destrieux volume done here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barista.atlas import GREY_KINDS, classify_label, default_atlas
from barista.errors import DataError
from barista.localize import COLUMNS, localize_contacts, localize_subject

SPACE = "MNI152NLin2009aSym"
RADIUS = 4.0


def ieeg(root: Path, subject: str = "01") -> Path:
    return Path(root) / f"sub-{subject}" / "ses-01" / "ieeg"


def electrodes_tsv(root: Path, subject: str = "01", space: str = SPACE) -> Path:
    return ieeg(root, subject) / f"sub-{subject}_ses-01_space-{space}_electrodes.tsv"


def coordsystem_json(root: Path, subject: str = "01", space: str = SPACE) -> Path:
    return ieeg(root, subject) / f"sub-{subject}_ses-01_space-{space}_coordsystem.json"


def localize(root, subject="01", *, space=None, need_atlas=True, radius=RADIUS,
             label_column=None) -> pd.DataFrame:
    return localize_subject(root, subject, ["01"], space=space, need_atlas=need_atlas,
                            white_matter_radius_mm=radius, label_column=label_column)


def set_units(root: Path, units: str, subject: str = "01", space: str = SPACE) -> None:
    path = coordsystem_json(root, subject, space)
    meta = json.loads(path.read_text())
    meta["iEEGCoordinateUnits"] = units
    path.write_text(json.dumps(meta))


def scale_coordinates(root: Path, factor: float, subject: str = "01") -> None:
    path = electrodes_tsv(root, subject)
    table = pd.read_csv(path, sep="\t")
    table[["x", "y", "z"]] = table[["x", "y", "z"]] * factor
    table.to_csv(path, sep="\t", index=False, float_format="%.8g")


def move_to_space(root: Path, space: str, subject: str = "01") -> tuple[Path, Path]:
    """Rename the electrodes/coordsystem files to ``space`` and declare it inside."""
    tsv, cs = electrodes_tsv(root, subject), coordsystem_json(root, subject)
    new_tsv, new_cs = electrodes_tsv(root, subject, space), coordsystem_json(root, subject, space)
    tsv.rename(new_tsv)
    meta = json.loads(cs.read_text())
    meta["iEEGCoordinateSystem"] = space
    cs.unlink()
    new_cs.write_text(json.dumps(meta))
    return new_tsv, new_cs


@pytest.fixture(scope="module")
def truth(sim_bids) -> pd.DataFrame:
    return pd.read_csv(sim_bids / "derivatives" / "simulation" / "contacts.tsv", sep="\t",
                       dtype={"subject": str, "session": str})


@pytest.fixture(scope="module")
def grey_voxels():
    """MNI mm coordinates and label names of every grey-matter voxel of the atlas."""
    atlas = default_atlas()
    ids = [i for i, n in atlas.names.items() if classify_label(n).kind in GREY_KINDS]
    ijk = np.argwhere(np.isin(atlas.volume, ids))
    labels = atlas.volume[tuple(ijk.T)]
    return ijk @ atlas.affine[:3, :3].T + atlas.affine[:3, 3], labels


def nearest_grey(grey_voxels, xyz, reach: float = 15.0):
    """(distance, set of label names at that distance), by brute force (inf beyond reach)."""
    mm, labels = grey_voxels
    xyz = np.asarray(xyz, float)
    near = np.all(np.abs(mm - xyz) <= reach, axis=1)
    if not near.any():
        return np.inf, set()
    mm, labels = mm[near], labels[near]
    dist = np.linalg.norm(mm - xyz, axis=1)
    best = dist.min()
    names = {default_atlas().names[int(i)] for i in labels[dist <= best + 1e-6]}
    return best, names


@pytest.mark.parametrize("subject", ["01", "02"])
def test_simulated_contacts_match_ground_truth(sim_bids, truth, subject):
    table = localize(sim_bids, subject, radius=0.0)
    assert list(table.columns) == COLUMNS
    want = truth[truth["subject"] == subject].reset_index(drop=True)
    assert table["channel"].tolist() == want["channel"].tolist()
    assert (table["subject"] == subject).all() and (table["session"] == "01").all()
    assert (table["space"] == SPACE).all()
    np.testing.assert_allclose(table[["x", "y", "z"]].to_numpy(float),
                               want[["x", "y", "z"]].to_numpy(float), atol=0.006)
    for col in ("atlas_label", "kind", "hemisphere", "parcel", "lobe"):
        assert table[col].tolist() == want[col].tolist(), col
    # and the same as a direct look-up in the atlas volume
    names = default_atlas().label_names(table[["x", "y", "z"]].to_numpy(float))
    assert table["atlas_label"].tolist() == names
    lobes = {classify_label(n).lobe for n in names if classify_label(n).kind == "cortex"}
    assert lobes <= {"frontal", "parietal", "temporal", "occipital", "insula", "limbic"}
    assert (table["label_source"] == "atlas").all()


def test_hemisphere_follows_x(sim_bids):
    table = localize(sim_bids, "01")
    assert ((table["x"] < 0) == (table["hemisphere"] == "L")).all()
    assert table["channel"].str[0].eq(table["hemisphere"]).all()  # names start with L/R


def test_white_matter_gets_nearest_grey_parcel_within_radius(sim_bids, grey_voxels):
    table = localize(sim_bids, "01").pipe(
        lambda t: pd.concat([t, localize(sim_bids, "02")], ignore_index=True))
    checked = {"atlas_nearest": 0, "beyond": 0}
    for row in table.itertuples():
        direct = classify_label(row.atlas_label, row.x)
        if direct.kind not in ("white_matter", "unknown"):
            assert row.label_source == "atlas" and row.parcel == direct.parcel
            continue
        dist, names = nearest_grey(grey_voxels, (row.x, row.y, row.z))
        if dist <= RADIUS:
            assert row.label_source == "atlas_nearest", row
            assert row.parcel in {classify_label(n).parcel for n in names}, (row, names)
            assert row.kind in GREY_KINDS
            checked["atlas_nearest"] += 1
        else:
            assert (row.kind, row.parcel, row.lobe) == ("white_matter", "unknown", "unknown")
            checked["beyond"] += 1
    assert checked["atlas_nearest"] >= 3


def test_white_matter_radius_on_chosen_points(grey_voxels):
    """Deep white matter stays unknown; white matter next to cortex takes the cortex."""
    atlas = default_atlas()
    mm, labels = grey_voxels
    box = np.all((mm > [-60, -50, 0]) & (mm < [0, 30, 60]), axis=1)
    grey_voxels = mm[box], labels[box]
    deep, shallow = None, None
    for x, y, z in np.ndindex(8, 10, 5):
        xyz = (-34.0 + 2 * x, -30.0 + 4 * y, 20.0 + 4 * z)
        if classify_label(atlas.label_names(np.array(xyz))[0]).kind != "white_matter":
            continue
        dist, names = nearest_grey(grey_voxels, xyz)
        if dist > RADIUS + 2 and deep is None:
            deep = xyz
        if 1.5 < dist < RADIUS - 1 and shallow is None and len(names) == 1:
            shallow = (xyz, names.pop())
        if deep and shallow:
            break
    assert deep is not None and shallow is not None
    table = pd.DataFrame({"name": ["W1", "W2"], "x": [deep[0], shallow[0][0]],
                          "y": [deep[1], shallow[0][1]], "z": [deep[2], shallow[0][2]]})
    out = localize_contacts(table, SPACE, atlas=atlas, white_matter_radius_mm=RADIUS,
                            label_column=None, source="t.tsv")
    assert out.loc[0, "parcel"] == "unknown" and out.loc[0, "kind"] == "white_matter"
    assert out.loc[0, "label_source"] == "atlas"
    assert out.loc[1, "parcel"] == classify_label(shallow[1]).parcel
    assert out.loc[1, "label_source"] == "atlas_nearest"
    assert out.loc[1, "atlas_label"] == atlas.label_names(np.array(shallow[0]))[0]
    # radius 0 switches the search off
    off = localize_contacts(table, SPACE, atlas=atlas, white_matter_radius_mm=0.0,
                            label_column=None, source="t.tsv")
    assert (off["parcel"] == "unknown").all()


def test_ventricle_contacts_are_dropped(sim_bids):
    table = localize(sim_bids, "01")
    fluid = table["atlas_label"].str.contains("Ventricle")
    assert fluid.any()  # the simulator puts a shaft through the lateral ventricle
    assert (table.loc[fluid, "kind"] == "ventricle").all()
    assert (~table.loc[fluid, "keep"]).all()
    assert (table.loc[fluid, "drop_reason"] == "ventricle").all()
    assert table.loc[~fluid, "keep"].all()
    assert (table.loc[~fluid, "drop_reason"] == "").all()


@pytest.mark.parametrize("units,factor", [("m", 1e-3), ("cm", 0.1)])
def test_units_are_converted_to_mm(sim_bids, sim_copy, units, factor):
    original = localize(sim_bids, "01")
    scale_coordinates(sim_copy, factor)
    set_units(sim_copy, units)
    converted = localize(sim_copy, "01")
    np.testing.assert_allclose(converted[["x", "y", "z"]].to_numpy(float),
                               original[["x", "y", "z"]].to_numpy(float), atol=1e-6)
    cols = ["channel", "atlas_label", "kind", "hemisphere", "parcel", "lobe", "keep"]
    pd.testing.assert_frame_equal(converted[cols], original[cols])


def test_metres_declared_as_mm_raise(sim_copy):
    scale_coordinates(sim_copy, 1e-3)  # units stay "mm"
    with pytest.raises(DataError, match="look like metres") as err:
        localize(sim_copy, "01")
    assert electrodes_tsv(sim_copy).name in str(err.value)
    assert "iEEGCoordinateUnits" in str(err.value)


@pytest.mark.parametrize("space", ["ACPC", "Other"])
def test_non_mni_space(sim_bids, sim_copy, space):
    tsv, _ = move_to_space(sim_copy, space)
    with pytest.raises(DataError) as err:
        localize(sim_copy, "01", need_atlas=True)
    msg = str(err.value)
    assert tsv.name in msg and f"'{space}'" in msg and "atlas.label_column" in msg
    # the channel scale needs no atlas: coordinates kept, regions unknown, nothing dropped
    table = localize(sim_copy, "01", need_atlas=False)
    original = localize(sim_bids, "01")
    np.testing.assert_allclose(table[["x", "y", "z"]].to_numpy(float),
                               original[["x", "y", "z"]].to_numpy(float))
    assert (table["space"] == space).all()
    assert (table["parcel"] == "unknown").all() and (table["lobe"] == "unknown").all()
    assert (table["label_source"] == "none").all()
    assert table["keep"].all()


def test_label_column_is_used(sim_copy):
    """A label column (here with a space in its name) wins, even outside MNI space."""
    tsv, _ = move_to_space(sim_copy, "ACPC")
    table = pd.read_csv(tsv, sep="\t")
    labels = ["ctx_lh_G_front_sup", "Left-Hippocampus", "Right-Lateral-Ventricle", "n/a",
              "G_temporal_middle"] * (len(table) // 5)
    table["Destrieux label"] = labels
    table.to_csv(tsv, sep="\t", index=False)
    out = localize(sim_copy, "01", need_atlas=True, label_column="Destrieux label")
    assert (out["label_source"] == "column").all()
    first = out.iloc[:5]
    assert first["parcel"].tolist() == ["G_front_sup", "Hippocampus", "unknown", "unknown",
                                        "G_temporal_middle"]
    assert first["lobe"].tolist() == ["frontal", "hippocampus", "unknown", "unknown",
                                      "temporal"]
    assert first["kind"].tolist() == ["cortex", "hippocampus", "ventricle", "unknown", "cortex"]
    assert first["keep"].tolist() == [True, True, False, True, True]
    # a bare cortical name takes its hemisphere from x
    assert first["hemisphere"].iloc[4] == ("L" if first["x"].iloc[4] < 0 else "R")
    assert (out["space"] == "ACPC").all()


def test_label_column_in_mni_space_overrides_atlas(sim_copy):
    tsv = electrodes_tsv(sim_copy)
    table = pd.read_csv(tsv, sep="\t")
    table["destrieux"] = "ctx_rh_G_precuneus"
    table.to_csv(tsv, sep="\t", index=False)
    out = localize(sim_copy, "01", label_column="destrieux")
    assert (out["parcel"] == "G_precuneus").all() and (out["hemisphere"] == "R").all()
    assert (out["lobe"] == "parietal").all()


def test_missing_label_column_raises(sim_copy):
    with pytest.raises(DataError) as err:
        localize(sim_copy, "01", label_column="aparc_a2009s")
    msg = str(err.value)
    assert "'aparc_a2009s'" in msg and "atlas.label_column" in msg
    assert electrodes_tsv(sim_copy).name in msg


def test_bom_and_crlf(sim_bids, sim_copy):
    tsv, cs = electrodes_tsv(sim_copy), coordsystem_json(sim_copy)
    text = tsv.read_text(encoding="utf-8")
    tsv.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    cs.write_bytes(b"\xef\xbb\xbf" + cs.read_bytes().replace(b"\n", b"\r\n"))
    assert tsv.read_bytes().startswith(b"\xef\xbb\xbfname\t")
    got = localize(sim_copy, "01")
    pd.testing.assert_frame_equal(got, localize(sim_bids, "01"))


def test_several_spaces_need_dataset_space(sim_bids, sim_copy):
    tsv, cs = electrodes_tsv(sim_copy), coordsystem_json(sim_copy)
    (tsv.parent / tsv.name.replace(SPACE, "Other")).write_bytes(tsv.read_bytes())
    meta = json.loads(cs.read_text())
    meta["iEEGCoordinateSystem"] = "Other"
    (cs.parent / cs.name.replace(SPACE, "Other")).write_text(json.dumps(meta))
    with pytest.raises(DataError) as err:
        localize(sim_copy, "01")
    msg = str(err.value)
    assert SPACE in msg and "Other" in msg and "dataset.space" in msg
    chosen = localize(sim_copy, "01", space=SPACE)
    pd.testing.assert_frame_equal(chosen, localize(sim_bids, "01"))
    other = localize(sim_copy, "01", space="Other", need_atlas=False)
    assert (other["space"] == "Other").all() and (other["parcel"] == "unknown").all()


def test_channel_scale_without_positions(sim_copy):
    """Without a parcel or lobe scale, missing positions are no error: nothing is localized."""
    coordsystem_json(sim_copy).unlink()
    assert localize(sim_copy, "01", need_atlas=False).empty
    electrodes_tsv(sim_copy).unlink()
    table = localize(sim_copy, "01", need_atlas=False)
    assert table.empty and list(table.columns) == COLUMNS


def test_dataset_inside_a_derivatives_folder(sim_bids, tmp_path):
    """Only the dataset's own derivatives/ is skipped, not a root that lies inside one."""
    import shutil

    root = tmp_path / "derivatives" / "bids"
    shutil.copytree(sim_bids, root)
    pd.testing.assert_frame_equal(localize(root, "01"), localize(sim_bids, "01"))


def test_desikan_killiany_labels_of_named_points():
    """Each contact also gets its Desikan-Killiany label (the released lobe encoder's key),
    with white matter taking the nearest grey label as the Destrieux label does."""
    table = pd.DataFrame({"name": ["STG", "HIP", "AMY", "WM", "DEEP"],
                          "x": [-60.0, -25.0, -22.0, 55.0, -30.0],
                          "y": [-15.0, -20.0, -5.0, -20.0, 20.0],
                          "z": [5.0, -15.0, -20.0, 5.0, 30.0]})
    from barista.atlas import default_dk_atlas

    out = localize_contacts(table, SPACE, atlas=default_atlas(), white_matter_radius_mm=RADIUS,
                            label_column=None, source="t.tsv", dk_atlas=default_dk_atlas())
    assert out["desikan_killiany"].tolist() == [
        "ctx-lh-superiortemporal", "Left-Hippocampus", "Left-Amygdala",
        "ctx-rh-superiortemporal", "Left-Cerebral-White-Matter"]
    assert out["parcel"].tolist()[:3] == ["G_temp_sup-Lateral", "Hippocampus", "Amygdala"]
    assert out["lip_l"].isna().all() and str(out["lip_l"].dtype) == "Int64"


def test_simulated_contacts_have_desikan_killiany_labels(sim_bids):
    from barista.atlas import default_dk_atlas

    table = localize(sim_bids, "01")
    grey = table["kind"].isin(GREY_KINDS) & (table["label_source"] == "atlas")
    assert grey.any() and (table["desikan_killiany"] != "").all()
    xyz = table.loc[grey, ["x", "y", "z"]].to_numpy(float)
    assert table.loc[grey, "desikan_killiany"].tolist() == default_dk_atlas().label_names(xyz)
    # the two atlases agree on the hemisphere of cortical contacts
    cortex = table[table["desikan_killiany"].str.startswith("ctx-")]
    assert (cortex["desikan_killiany"].str[4] == cortex["hemisphere"].str.lower()).all()


def test_lip_voxel_columns_are_carried(sim_copy):
    """Brain Treebank's integer L, I, P voxel coordinates become lip_l, lip_i, lip_p."""
    tsv = electrodes_tsv(sim_copy)
    table = pd.read_csv(tsv, sep="\t")
    n = len(table)
    table["L"], table["I"], table["P"] = range(n), range(10, 10 + n), range(20, 20 + n)
    table["P"] = table["P"].astype(object)
    table.loc[1, "P"] = "n/a"
    table.to_csv(tsv, sep="\t", index=False)
    out = localize(sim_copy, "01")
    assert out["lip_l"].tolist() == list(range(n))
    assert out["lip_i"].tolist() == list(range(10, 10 + n))
    assert out["lip_p"].isna().tolist() == [i == 1 for i in range(n)]
    assert out.loc[0, "lip_p"] == 20 and str(out["lip_p"].dtype) == "Int64"


@pytest.mark.parametrize(("columns", "message"), [
    ({"L": 1, "I": 2}, "not all of"),
    ({"L": 1, "I": 2, "P": 3.5}, "whole voxel indices"),
    ({"L": 1, "I": "left", "P": 3}, "whole voxel indices"),
])
def test_bad_lip_columns_raise(sim_copy, columns, message):
    tsv = electrodes_tsv(sim_copy)
    table = pd.read_csv(tsv, sep="\t").assign(**columns)
    table.to_csv(tsv, sep="\t", index=False)
    with pytest.raises(DataError, match=message):
        localize(sim_copy, "01")


def test_desikan_killiany_label_column(sim_copy):
    tsv, _ = move_to_space(sim_copy, "ACPC")
    table = pd.read_csv(tsv, sep="\t")
    table["DK"] = "ctx-lh-insula"
    table.loc[0, "DK"] = np.nan
    table["destrieux"] = "ctx_lh_G_insular_short"
    table.to_csv(tsv, sep="\t", index=False)
    out = localize_subject(sim_copy, "01", ["01"], space=None, need_atlas=True,
                           white_matter_radius_mm=RADIUS, label_column="destrieux",
                           dk_label_column="DK")
    assert out["desikan_killiany"].tolist() == [""] + ["ctx-lh-insula"] * (len(out) - 1)
    with pytest.raises(DataError, match="atlas.dk_label_column"):
        localize_subject(sim_copy, "01", ["01"], space=None, need_atlas=True,
                         white_matter_radius_mm=RADIUS, label_column="destrieux",
                         dk_label_column="missing")
