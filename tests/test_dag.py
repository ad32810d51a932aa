"""What the DAG holds for a config (barista/dag.py): the encoders both protocols finetune,
their result paths and arguments, and the Neuroprobe splits of a recordings table."""

import pandas as pd

from barista.config import validate_config
from barista.dag import Dag


def test_encoder_table_names_every_finetuned_encoder_once():
    config = validate_config({
        "dataset": {"name": "d"}, "preprocess": {"resample_hz": 2048.0},
        "model": {"architectures": ["barista", "rpnt"], "encode_scales": ["parcel"],
                  "mask_scales": ["channel"],
                  "variants": {"paper": "all", "prior+raw": ["parcel-channel"]}},
        "pretrain": {"seed": 4, "repeats": 2},
        "finetune": {"repeats": 1, "random_init": True, "barista_release": True},
        "evaluation": {"probe": True}})
    enc = Dag(config).encoders
    assert list(enc) == [
        "barista/paper/parcel-channel/seed4", "barista/paper/parcel-channel/seed5",
        "barista/prior+raw/parcel-channel/seed4", "barista/prior+raw/parcel-channel/seed5",
        "random_init/paper/parcel/seed4", "random_init/paper/parcel/seed5",
        "random_init/prior/parcel/seed4", "random_init/prior/parcel/seed5",
        "rpnt", "barista_release/parcel"]
    first = enc["barista/paper/parcel-channel/seed4"]
    assert first["args"] == ("--model barista --encode parcel --mask channel --pretrained "
                             "results/d/models/barista/paper/parcel-channel/seed4/model.pt")
    assert first["tokens"] == ["results/d/tokens/parcel/channels.parquet",
                               "results/d/tokens/channel/channels.parquet"]
    # the second pretraining run is only probed, and Neuroprobe takes the first run only
    assert enc["barista/paper/parcel-channel/seed5"]["args"].endswith(" --probe-only")
    assert enc["random_init/prior/parcel/seed4"]["args"] == (
        "--model random_init --variant prior --encode parcel --pretrain-seed 4")
    assert enc["random_init/prior/parcel/seed4"]["checkpoint"] == []
    assert [e["neuroprobe"] for e in enc.values() if e["neuroprobe"]] == [
        "barista/paper/parcel-channel", "barista/prior+raw/parcel-channel",
        "random_init/paper/parcel", "random_init/prior/parcel", "rpnt",
        "barista_release/parcel"]
    release = enc["barista_release/parcel"]
    assert release["tokens"] == [] and release["checkpoint"].startswith("resources/release/")
    assert Dag(config).study_results()[-1] == "results/d/finetune/linear/metrics.parquet"


def test_neuroprobe_splits_of_a_recordings_table():
    plan = Dag(validate_config({"neuroprobe": {"split_types": ["within_session",
                                                               "cross_session"]}}))
    table = pd.DataFrame({"recording": ["sub-1_ses-1", "sub-1_ses-2", "sub-9_ses-0"],
                          "subject": ["1", "1", "9"], "session": ["1", "2", "0"]})
    jobs = plan.neuroprobe_jobs(table)
    assert ("within_session", "sub-1_ses-1", "") in jobs
    for split, rec, train in jobs:
        assert plan.neuroprobe_train_recording(table, split, rec) == train
        assert plan.neuroprobe_segments(table, split, rec) == [
            f"results/demo/neuroprobe/segments/{r}/index.parquet"
            for r in sorted({rec, train} - {""})]
    assert "sub-9_ses-0" not in plan.neuroprobe_trials(table)  # not a benchmark trial
