import numpy as np
import pytest

from barista.atlas import classify_label, default_atlas, default_dk_atlas, destrieux_lobes


@pytest.fixture(scope="module")
def atlas():
    return default_atlas()


@pytest.mark.parametrize(("xyz", "hemi", "parcel", "lobe"), [
    ((-45, -20, 8), "L", "G_temp_sup-G_T_transv", "temporal"),  # left Heschl's gyrus
    ((48, -18, 8), "R", "G_temp_sup-G_T_transv", "temporal"),  # right Heschl's gyrus
    ((-25, -20, -15), "L", "Hippocampus", "hippocampus"),
    ((-22, -5, -20), "L", "Amygdala", "amygdala"),
    ((-16, -10, 20), "L", "Caudate", "subcortical"),
])
def test_known_mni_points(atlas, xyz, hemi, parcel, lobe):
    region, how = atlas.region_at(np.array(xyz, float), 0.0)
    assert (region.hemisphere, region.parcel, region.lobe, how) == (hemi, parcel, lobe, "atlas")


def test_ventricle_is_flagged(atlas):
    region, _ = atlas.region_at(np.array([-2.0, 10.0, 10.0]), 4.0)
    assert region.kind == "ventricle"


def test_white_matter_takes_nearest_grey_within_radius(atlas):
    xyz = np.array([-30.0, 20.0, 30.0])  # deep frontal white matter
    far, how = atlas.region_at(xyz, 1.0)
    assert far.kind == "white_matter" and far.parcel == "unknown" and how == "atlas"
    label, dist = atlas.nearest_grey(xyz, 20.0)
    assert label is not None and 1.0 < dist <= 20.0
    near, how = atlas.region_at(xyz, 20.0)
    assert how == "atlas_nearest" and near.kind == "cortex" and near.lobe != "unknown"
    assert near.atlas_label == "Left-Cerebral-White-Matter"


def test_lobe_table_covers_every_cortical_parcel(atlas):
    lobes = destrieux_lobes()
    cortical = [n for n in atlas.names.values()
                if n.startswith("ctx_lh_") and not n.endswith("Unknown")]
    assert len(cortical) == 74
    assert all(n[len("ctx_lh_"):] in lobes for n in cortical)
    assert set(lobes.values()) == {"frontal", "parietal", "temporal", "occipital", "insula",
                                   "limbic"}


def test_classify_label_variants():
    assert classify_label("ctx-rh-G_front_sup").parcel == "G_front_sup"
    assert classify_label("ctx-rh-G_front_sup").hemisphere == "R"
    bare = classify_label("G_cuneus", x=-10.0)
    assert (bare.hemisphere, bare.lobe) == ("L", "occipital")
    assert classify_label("Right-Inf-Lat-Vent").kind == "ventricle"
    assert classify_label("some new label").kind == "unknown"  # never crashes on unseen labels


@pytest.fixture(scope="module")
def dk_atlas():
    return default_dk_atlas()


@pytest.mark.parametrize(("xyz", "label"), [
    ((-60, -15, 5), "ctx-lh-superiortemporal"),  # left superior temporal gyrus
    ((-45, -20, 8), "ctx-lh-transversetemporal"),  # left Heschl's gyrus
    ((-25, -20, -15), "Left-Hippocampus"),
    ((28, -20, -14), "Right-Hippocampus"),
    ((-22, -5, -20), "Left-Amygdala"),
    ((38, 0, 5), "ctx-rh-insula"),
    ((5, -85, 10), "ctx-rh-cuneus"),
])
def test_desikan_killiany_on_known_mni_points(dk_atlas, xyz, label):
    assert dk_atlas.grey_label_at(np.array(xyz, float), 0.0) == (label, "atlas")


def test_desikan_killiany_white_matter_takes_nearest_grey(dk_atlas):
    """The rule of the Destrieux label: white matter takes the nearest grey label within the
    radius, beyond it the white-matter label stays."""
    xyz = np.array([55.0, -20.0, 5.0])  # just under the right superior temporal gyrus
    assert dk_atlas.grey_label_at(xyz, 0.0) == ("Right-Cerebral-White-Matter", "atlas")
    assert dk_atlas.grey_label_at(xyz, 4.0) == ("ctx-rh-superiortemporal", "atlas_nearest")


def test_desikan_killiany_unknown_cortex_is_not_grey():
    # the DK table spells it ctx-lh-unknown, Destrieux ctx_lh_Unknown: both unlabelled
    assert classify_label("ctx-lh-unknown").kind == "unknown"
    assert classify_label("ctx_lh_Unknown").kind == "unknown"
    assert classify_label("ctx-lh-superiortemporal").kind == "cortex"
