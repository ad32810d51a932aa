import pandas as pd

from barista.tokens import build_tokens, write_tokens


def channel_table(rec, subject, rows):
    return pd.DataFrame([
        {"recording": rec, "subject": subject, "session": "01", "channel": ch, "contact": ch,
         "hemisphere": hemi, "parcel": parcel, "lobe": lobe}
        for ch, hemi, parcel, lobe in rows])


TABLES = [
    channel_table("sub-01_ses-01_task-x", "01", [
        ("LA2", "L", "G_temp_sup-Lateral", "temporal"),
        ("LA3", "L", "G_temp_sup-Lateral", "temporal"),
        ("LH2", "L", "Hippocampus", "hippocampus"),
        ("LW2", "L", "unknown", "unknown"),
        ("LW3", "L", "unknown", "unknown"),
    ]),
    channel_table("sub-02_ses-01_task-x", "02", [
        ("RA2", "R", "G_temp_sup-Lateral", "temporal"),
        ("RG2", "R", "G_cingul-Post-dorsal", "limbic"),
    ]),
]


def test_parcel_scale_shares_tokens_within_a_parcel():
    tokens, vocab = build_tokens(TABLES, "parcel", {"hemisphere_specific": True})
    t = tokens.set_index("channel")
    assert t.loc["LA2", "token_id"] == t.loc["LA3", "token_id"] != 0
    assert t.loc["LA2", "group_id"] == t.loc["LA3", "group_id"]
    assert t.loc["RA2", "token_id"] != t.loc["LA2", "token_id"]  # hemisphere-specific
    assert vocab.loc[vocab["token_id"] == 0, "label"].item() == "unknown"
    assert (t.loc[["LW2", "LW3"], "token_id"] == 0).all()
    # unknown channels share the zero token but are masked on their own
    assert t.loc["LW2", "group_id"] != t.loc["LW3", "group_id"]
    assert vocab.set_index("label").loc["L-G_temp_sup-Lateral", "n_channels"] == 2


def test_parcel_scale_across_hemispheres():
    tokens, _ = build_tokens(TABLES, "parcel", {"hemisphere_specific": False})
    t = tokens.set_index("channel")
    assert t.loc["RA2", "token_id"] == t.loc["LA2", "token_id"]


def test_lobe_scale_mtl_option():
    separate, _ = build_tokens(TABLES, "lobe", {"hemisphere_specific": True,
                                                 "separate_mtl": True})
    merged, _ = build_tokens(TABLES, "lobe", {"hemisphere_specific": False,
                                               "separate_mtl": False})
    assert separate.set_index("channel").loc["LH2", "label"] == "L-hippocampus"
    m = merged.set_index("channel")
    assert m.loc["LH2", "label"] == "limbic" == m.loc["RG2", "label"]
    assert m.loc["LH2", "group_id"] == m.loc["RG2", "group_id"]


def test_channel_scale_is_one_token_per_contact():
    tokens, vocab = build_tokens(TABLES, "channel", {})
    assert tokens["token_id"].is_unique and (tokens["token_id"] > 0).all()
    assert len(vocab) == len(tokens) + 1


def test_ids_do_not_depend_on_file_order(tmp_path):
    a, _ = build_tokens(TABLES, "parcel", {})
    b, _ = build_tokens(TABLES[::-1], "parcel", {})
    key = ["recording", "channel"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                  b.sort_values(key).reset_index(drop=True))
    files = []
    for i, t in enumerate(TABLES):
        files.append(tmp_path / f"{i}.parquet")
        t.to_parquet(files[-1])
    summary = write_tokens(files, "parcel", {}, tmp_path / "out")
    assert summary["n_unknown"] == 2
    assert pd.read_parquet(tmp_path / "out" / "channels.parquet").shape[0] == 7
