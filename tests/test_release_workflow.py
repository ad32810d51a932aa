"""finetune.barista_release in the DAG: the job list it adds, the early stop at another geometry,
and end to end on a tiny 2048 Hz dataset: the released parcel encoder is downloaded from a
server on 127.0.0.1 (serving ../shared/official/), verified, finetuned, and its rows written.

The end-to-end module takes about two minutes on one CPU core (``-m slow`` selects it)."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import REPO, planned_jobs, snakemake

OFFICIAL = REPO.parent / "shared" / "official"
REC = "sub-01_ses-02_task-listen_run-01"  # the held-out session: the one decoded

TINY_RELEASE = {
    "dataset": {"name": "tiny", "source": "simulate",
                "simulate": {"n_subjects": 1, "n_sessions": 2, "duration_s": 300.0,
                             "sfreq": 2048.0, "n_shafts": 3, "contacts_per_shaft": 6,
                             "seed": 7}},
    "preprocess": {"resample_hz": None},
    "scales": {"channel": {}, "parcel": {}},
    "segments": {"length_s": 3.0, "n_patches": 12, "tasks": ["speech_vs_nonspeech"]},
    "model": {"size": "demo", "architectures": ["barista"], "encode_scales": ["parcel"],
              "mask_scales": ["channel"]},
    "pretrain": {"epochs": 1, "batch_size": 8, "warmup_epochs": 1, "ema_ramp_epochs": 1},
    "finetune": {"tasks": ["speech_vs_nonspeech"], "seeds": [0], "epochs": 2, "batch_size": 8,
                 "warmup_epochs": 1, "patience": 2, "barista_release": True},
    "splits": {"chronological": {"n_folds": 2, "buffer_s": 3.0}},
    "reconstruct": {"enabled": False},
    "evaluation": {"heldout_sessions": 1, "heldout_subjects": 0, "settings": ["cross_session"],
                   "window_split": "chrono"},
}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake"),
              pytest.mark.skipif(not (OFFICIAL / "parcels_chans.ckpt").exists(),
                                 reason="needs the released checkpoints in ../shared/official")]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """``http://127.0.0.1:<port>/`` serving ../shared/official/, and the paths it was asked."""
    asked: list[str] = []

    class Handler(_Quiet):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(Handler, directory=str(OFFICIAL)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, server):
    """The tiny study with its data built (the recordings checkpoint has run)."""
    wd = tmp_path_factory.mktemp("release")
    cfg = copy.deepcopy(TINY_RELEASE)
    cfg["release"] = {"url": server[0] + "/{name}.ckpt"}
    snakemake(wd, config=cfg, target="data")
    return wd, cfg


def test_release_adds_its_jobs_and_nothing_else(workdir):
    wd, cfg = workdir
    with_release = planned_jobs(snakemake(wd, "-n", config=cfg, target="all"))
    without = copy.deepcopy(cfg)
    without["finetune"]["barista_release"] = False
    jobs = planned_jobs(snakemake(wd, "-n", config=without, target="all"))
    added = {rule: n - jobs.get(rule, 0) for rule, n in with_release.items()
             if n != jobs.get(rule, 0)}
    # one checkpoint, one finetuning job per encoder and its channel-weight figure
    assert added == {"download_release": 1, "finetune": 1, "finetune:barista_release": 1,
                     "fig_importance_release": 1}
    assert not set(jobs) - set(with_release)


def test_released_parcel_encoder_finetuned_end_to_end(workdir, server):
    """None of ours pretrained (model.architectures: []): random init and the linear floor
    first, then the release turned on adds its download and finetuning and re-runs nothing."""
    wd, cfg = workdir
    url, asked = server
    table = "results/tiny/decoding.parquet"
    off = copy.deepcopy(cfg)
    off["model"]["architectures"] = []
    off["finetune"]["barista_release"] = False
    snakemake(wd, config=off, target=table)
    on = copy.deepcopy(off)
    on["finetune"]["barista_release"] = True
    assert planned_jobs(snakemake(wd, "-n", config=on, target=table)) == {
        "download_release": 1, "finetune": 1, "finetune:barista_release": 1,
        "decoding_table": 1}
    snakemake(wd, config=on, target=table)

    checkpoint = wd / "resources" / "release" / "parcels_chans.ckpt"
    assert checkpoint.read_bytes() == (OFFICIAL / "parcels_chans.ckpt").read_bytes()
    assert asked == ["/parcels_chans.ckpt"]
    rows = pd.read_parquet(wd / table)
    auroc = rows[rows["metric"] == "auroc"].set_index("model")
    assert sorted(auroc.index) == ["barista_release", "linear", "random_init"]
    release = rows[rows["model"] == "barista_release"]
    assert set(release["encode_scale"]) == {"parcel"} and set(release["mask_scale"]) == {"channel"}
    assert set(release["setting"]) == {"cross_session"} and set(release["recording"]) == {REC}
    metrics = release.set_index("metric")["value"]
    assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["probe_auroc"] <= 1.0
    # the same folds and windows as the random-init model of the same session
    theirs = rows[rows["model"] == "random_init"].set_index("metric")["value"]
    assert metrics["n_folds"] == theirs["n_folds"] == 2
    assert metrics["n_test"] == theirs["n_test"]
    # the job's log names the key mapping and every channel's release id
    log = (wd / "results" / "tiny" / "logs" / "finetune" / "barista_release" /
           "parcel.log").read_text()
    assert re.search(r"backbone\.layers\.0\.attention\.qkv_proj\.weight +-> "
                     r"transformer\.blocks\.0\.attn\.qkv\.weight", log)
    assert "release parcel id" in log and "channels with a known id" in log
    run = wd / "results" / "tiny" / "finetune" / "barista_release" / "parcel"
    curve = pd.read_parquet(run / "curve.parquet")
    assert set(curve["model"]) == {"barista_release"} and len(curve) >= 2


def test_wrong_checkpoint_bytes_stop_the_download_rule(tmp_path):
    """A server sending another file: the download rule fails on the sha256 and nothing is
    left under the checkpoint's name for a finetuning job to load."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "parcels_chans.ckpt").write_bytes(b"not the checkpoint" * 100)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    wd = tmp_path / "wd"
    wd.mkdir()
    cfg = copy.deepcopy(TINY_RELEASE)
    cfg["release"] = {"url": f"http://127.0.0.1:{httpd.server_address[1]}/{{name}}.ckpt"}
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    try:
        done = subprocess.run(["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory",
                               str(wd), "--configfile", str(wd / "config.yaml"), "--cores", "1",
                               "resources/release/parcels_chans.ckpt"],
                              capture_output=True, text=True, timeout=300)
    finally:
        httpd.shutdown()
    assert done.returncode != 0
    log = (wd / "resources" / "logs" / "release_parcels_chans.log").read_text()
    assert "sha256 mismatch" in log
    assert not (wd / "resources" / "release" / "parcels_chans.ckpt").exists()


def test_demo_geometry_with_release_stops_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["finetune"]["barista_release"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run(["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                           "-n", "all"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert ("needs the released encoders' 512-sample patches" in done.stdout + done.stderr)
    assert "256 Hz x 2 s / 8 patches = 64 samples" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_release_config_validates():
    from barista.config import load_config

    cfg = load_config(REPO / "config" / "release.yaml")
    assert cfg["finetune"]["barista_release"] and cfg["preprocess"]["resample_hz"] is None
    assert Path(REPO / "config" / "release.yaml").exists()
