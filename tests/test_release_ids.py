"""Our localization output in the released encoders' vocabularies, and the geometry the
release needs. Expected ids are the rows of the release's own tables
(``official_destrieux_index.tsv``, ``official_lobe_index.tsv``), written out here by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from barista.atlas import default_atlas, default_dk_atlas
from barista.config import validate_config
from barista.errors import ConfigError
from barista.localize import localize_contacts
from barista.release_ids import channel_release_ids, destrieux_label

# name: MNI mm, release parcel id (Destrieux), release lobe id (Desikan-Killiany)
POINTS = {
    "L_heschl": ((-45, -20, 8), 31, 9),  # CTX_LH_G_TEMP_SUP_G_T_TRANSV; lh transversetemporal
    "L_stg": ((-60, -15, 5), 32, 9),  # CTX_LH_G_TEMP_SUP_LATERAL; lh superiortemporal
    "L_hippocampus": ((-25, -20, -15), 2, 3),
    "R_hippocampus": ((28, -20, -14), 6, 4),
    "L_amygdala": ((-22, -5, -20), 1, 1),
    "R_insula": ((38, 0, 5), 79, 16),  # CTX_RH_G_INSULAR_SHORT; rh insula
    # cortex Brain Treebank never sampled: in neither table (the release's Destrieux table
    # holds the 57 + 55 parcels its contacts were in, the lobe table no occipital lobe)
    "R_cuneus": ((5, -85, 10), 0, 0),
    "deep_wm": ((-30, 20, 30), 0, 0),  # white matter beyond the radius: UNKNOWN
}


@pytest.fixture(scope="module")
def channels() -> pd.DataFrame:
    """The named points through localization, as segments/<rec>/channels.parquet has them."""
    xyz = np.array([p[0] for p in POINTS.values()], float)
    table = pd.DataFrame({"name": list(POINTS), "x": xyz[:, 0], "y": xyz[:, 1],
                          "z": xyz[:, 2]})
    out = localize_contacts(table, "MNI152NLin2009aSym", atlas=default_atlas(),
                            white_matter_radius_mm=4.0, label_column=None, source="named",
                            dk_atlas=default_dk_atlas())
    return out


def test_parcel_ids_of_named_points(channels):
    found = channel_release_ids(channels, "parcel")
    got = dict(zip(found.channels, found.ids.tolist(), strict=True))
    assert got == {n: p[1] for n, p in POINTS.items()}
    assert found.labels[0] == "ctx_lh_G_temp_sup-G_T_transv"
    assert found.unmatched == ["ctx_rh_G_cuneus"]  # deep white matter has no label to report


def test_lobe_ids_of_named_points_use_desikan_killiany(channels):
    found = channel_release_ids(channels, "lobe")
    got = dict(zip(found.channels, found.ids.tolist(), strict=True))
    assert got == {n: p[2] for n, p in POINTS.items()}
    assert found.labels[1] == "ctx-lh-superiortemporal"
    # labels outside the release's lobe table are reported, unknown white matter is not
    assert found.unmatched == ["Left-Cerebral-White-Matter", "ctx-rh-cuneus"]


def test_destrieux_spelling_of_localized_parcels():
    assert destrieux_label("L", "cortex", "G_temp_sup-G_T_transv") == \
        "ctx_lh_G_temp_sup-G_T_transv"
    assert destrieux_label("R", "hippocampus", "Hippocampus") == "Right-Hippocampus"
    assert destrieux_label("L", "subcortical", "Thalamus") == "Left-Thalamus-Proper"
    assert destrieux_label("L", "white_matter", "unknown") == ""
    assert destrieux_label("", "cortex", "G_front_sup") == ""


def test_channel_scale_says_where_its_rows_come_from(channels):
    found = channel_release_ids(channels, "channel")
    assert (found.ids == 0).all() and "MNI mm" in found.note
    with_lip = channels.assign(lip_l=pd.array([3] * len(channels), dtype="Int64"),
                               lip_i=pd.array([4] * len(channels), dtype="Int64"),
                               lip_p=pd.array([None] + [5] * (len(channels) - 1),
                                              dtype="Int64"))
    found = channel_release_ids(with_lip, "channel")
    assert "L, I, P" in found.note and "1 channel(s) without them" in found.note


def test_segments_without_desikan_killiany_name_the_fix(channels):
    with pytest.raises(Exception, match="desikan_killiany"):
        channel_release_ids(channels.drop(columns="desikan_killiany"), "lobe")


@pytest.mark.parametrize(("changes", "says"), [
    ({"preprocess": {"resample_hz": 256.0}, "segments": {"length_s": 2.0, "n_patches": 8}},
     "256 Hz x 2 s / 8 patches = 64 samples"),
    ({"dataset": {"simulate": {"sfreq": 512.0}}}, "512 Hz x 3 s / 12 patches = 128 samples"),
    ({"dataset": {"simulate": {"sfreq": 2048.0}}, "segments": {"n_patches": 6}},
     "2048 Hz x 3 s / 6 patches = 1024 samples"),
])
def test_another_geometry_stops_with_the_mismatch(changes, says):
    cfg = {"finetune": {"barista_release": True}, **changes}
    with pytest.raises(ConfigError, match="finetune.barista_release") as err:
        validate_config(cfg)
    assert says in str(err.value) and "segments.n_patches: 12" in str(err.value)
    validate_config({**cfg, "finetune": {"barista_release": False}})  # fine without it


def test_release_geometry_passes():
    validate_config({"finetune": {"barista_release": True},
                     "dataset": {"simulate": {"sfreq": 2048.0}}})
    # a local dataset's rate is only known from its segments: checked there
    validate_config({"finetune": {"barista_release": True},
                     "dataset": {"source": "local", "local": {"bids_root": "/data"}}})


def test_release_keys_are_validated():
    with pytest.raises(ConfigError, match="release.url"):
        validate_config({"release": {"url": "http://example.org/chans_chans.ckpt"}})
    with pytest.raises(ConfigError, match="'mirror' was unexpected"):
        validate_config({"release": {"mirror": "x"}})
    with pytest.raises(ConfigError, match="model.spatial_init"):
        validate_config({"model": {"spatial_init": "large"}})
    with pytest.raises(ConfigError, match="both"):
        validate_config({"model": {"spatial_init": "small",
                                   "overrides": {"spatial_init": "release"}}})
