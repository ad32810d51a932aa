"""Which recordings pretrain and which are decoded in each generalisation setting."""

import pandas as pd
import pytest

from barista.errors import ConfigError
from barista.evaluation import assign_settings, collect, decoded, heldout, pretraining, rows


def table(sessions_per_subject=(2, 2, 3)):
    rows = [{"subject": f"{s + 1:02d}", "session": f"{k + 1:02d}",
             "recording": f"sub-{s + 1:02d}_ses-{k + 1:02d}_task-listen_run-01"}
            for s, n in enumerate(sessions_per_subject) for k in range(n)]
    return pd.DataFrame(rows)


def test_settings_partition_the_recordings():
    t = assign_settings(table(), heldout_sessions=1, heldout_subjects=1)
    by = dict(zip(t["recording"].str[:13], t["setting"], strict=True))
    # sub-03 is never seen; the last session of the others is held out
    assert by == {"sub-01_ses-01": "within_session", "sub-01_ses-02": "cross_session",
                  "sub-02_ses-01": "within_session", "sub-02_ses-02": "cross_session",
                  "sub-03_ses-01": "cross_subject", "sub-03_ses-02": "cross_subject",
                  "sub-03_ses-03": "cross_subject"}


def test_pretraining_never_sees_a_decoded_heldout_recording():
    ev = {"heldout_sessions": 1, "heldout_subjects": 1,
          "settings": ["within_session", "cross_session", "cross_subject"]}
    pre = set(pretraining(table(), ev))
    held = set(heldout(table(), ev)["recording"])
    assert pre and held and not pre & held
    assert pre | held == set(table()["recording"])
    dec = decoded(table(), ev)
    assert set(dec.loc[dec["setting"] == "within_session", "recording"]) == pre
    assert set(dec.loc[dec["setting"] != "within_session", "recording"]) == held


def test_a_single_session_subject_only_pretrains():
    t = assign_settings(table((1, 2)), heldout_sessions=1)
    assert list(t["setting"]) == ["within_session", "within_session", "cross_session"]


def test_impossible_settings_name_the_config_key():
    with pytest.raises(ConfigError, match="evaluation.heldout_subjects"):
        assign_settings(table((2, 2)), heldout_sessions=1, heldout_subjects=2)
    with pytest.raises(ConfigError, match="evaluation.settings.*cross_subject"):
        decoded(table(), {"heldout_sessions": 1, "heldout_subjects": 0,
                          "settings": ["cross_subject"]})
    with pytest.raises(ConfigError, match="evaluation.settings.*cross_session"):
        decoded(table((1, 1)), {"heldout_sessions": 1, "settings": ["cross_session"]})


def test_collect_renames_the_setting_column_of_older_result_files(tmp_path):
    """A job's metrics.parquet written before the rename (column split_kind) joins today's
    files under ``setting``, with no empty cells and no old column."""
    keys = dict(model="linear", encode_scale="none", mask_scale="none", task="t",
                subject="01", session="02", seed=0, config_hash="h")
    new = rows({"auroc": 0.6}, **keys, recording="sub-01_ses-02", setting="cross_session")
    old = rows({"auroc": 0.7}, **keys, recording="sub-02_ses-02", setting="cross_subject")
    new.to_parquet(tmp_path / "new.parquet")
    old.rename(columns={"setting": "split_kind"}).to_parquet(tmp_path / "old.parquet")
    table = collect([tmp_path / "new.parquet", tmp_path / "old.parquet"], tmp_path / "all.parquet")
    assert "split_kind" not in table and table["setting"].notna().all()
    assert dict(zip(table["recording"], table["setting"], strict=True)) == {
        "sub-01_ses-02": "cross_session", "sub-02_ses-02": "cross_subject"}
