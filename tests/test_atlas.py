import numpy as np
import pytest

from barista.atlas import classify_label, default_atlas, destrieux_lobes


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
