"""The workflow on a real SLURM cluster, through profiles/slurm.

A single-node cluster with fake GPUs is installed from Debian's packages and started on
127.0.0.1 (tests/slurm_cluster.py). A tiny config's data stage runs locally; a copy of that
working directory then runs the model stage through SLURM while the original runs it locally.
Every job that is not a local rule must go through sbatch with the partition and account given
by environment variables (seen in slurmdbd's accounting), the GPU rules must get a GPU, the
data stage must not rerun, and the models and result tables must equal the local run's. A job
made to fail must make Snakemake exit non-zero and name the job's SLURM log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # the helper module lives next to this file

from slurm_cluster import (  # noqa: E402
    ACCOUNT,
    PARTITION,
    SYSTEM_CONF,
    SlurmCluster,
    hostname_is_loopback,
    install_slurm,
    system_conf_in_use,
)

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
CONFIG = {
    "dataset": {"name": "tiny", "source": "simulate",
                "simulate": {"n_subjects": 1, "n_sessions": 2, "duration_s": 90.0,
                             "sfreq": 256.0, "n_shafts": 2, "contacts_per_shaft": 4}},
    "preprocess": {"resample_hz": 128.0},
    "segments": {"length_s": 2.0, "n_patches": 4, "tasks": ["speech_vs_nonspeech"]},
    "model": {"size": "demo", "encode_scales": ["channel"], "mask_scales": ["channel"],
              "threads": 1},
    "pretrain": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "ema_ramp_epochs": 1},
    "finetune": {"tasks": ["speech_vs_nonspeech"], "seeds": [0], "epochs": 1, "batch_size": 8,
                 "warmup_epochs": 0, "patience": 1, "linear_baseline": False},
    "reconstruct": {"epochs": 1, "batch_size": 8, "max_windows": 8},
}
GPU_RULES = {"pretrain", "finetune", "reconstruct"}
# speed flags for a 2-core machine; everything else comes from the profile
FAST = ["--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5", "--jobs", "4"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.machine,
    pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake"),
]


def snakemake(workdir: Path, target: str, *args: str, env: dict | None = None, ok: bool = True,
              limit_s: int = 200) -> str:
    """Snakemake on the tiny config, stopped with SIGINT (which cancels its SLURM jobs);
    its output. With ok, a non-zero exit fails the test."""
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    cmd = ["timeout", "-s", "INT", "-k", "30", str(limit_s),
           "snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory", str(workdir),
           target, "--configfile", str(cfg), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, f"exit {done.returncode}:\n{log[-4000:]}"
    return log


def executed(log: str) -> tuple[Counter, Counter]:
    """(remote, local) jobs per rule, from the headers Snakemake prints as it starts each
    (not those in the logs of failed jobs that it prints, between lines of 80 '=')."""
    log = re.sub(r"^Logfile .*?:\n={80}\n.*?^={80}$", "", log, flags=re.M | re.S)
    remote, local = Counter(), Counter()
    for kind, rule in re.findall(r"^(local)?(?:rule|checkpoint) (\w+):$", log, re.M):
        (local if kind else remote)[rule] += 1
    return remote, local


def local_rules() -> set[str]:
    """The rules named in the Snakefile's `localrules:` (one line, or one rule a line)."""
    snakefile = (REPO / "workflow/Snakefile").read_text()
    block = re.search(r"^localrules:(.*?)\n\n", snakefile, re.M | re.S)
    return set(block.group(1).replace(",", " ").split())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("SLURM test: needs root to install and start the SLURM daemons")
    if not hostname_is_loopback():
        pytest.skip("SLURM test: this machine's hostname does not resolve to 127.0.0.1")
    if system_conf_in_use():
        pytest.skip(f"SLURM test: {SYSTEM_CONF} exists, a SLURM setup this test must not touch")
    if why := install_slurm():
        pytest.skip(f"SLURM test: cannot install SLURM from Debian's packages: {why}")
    pytest.importorskip("snakemake_executor_plugin_slurm")
    with SlurmCluster(tmp_path_factory.mktemp("slurm-test-cluster"), gpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """(local workdir, SLURM workdir, the SLURM run's output)."""
    local = tmp_path_factory.mktemp("local")
    snakemake(local, "data", "--cores", "2")
    remote = tmp_path_factory.mktemp("remote") / "work"
    shutil.copytree(local, remote, symlinks=True)  # data stage done, as after an interruption
    snakemake(local, "models", "--cores", "2")
    env = {**cluster.env, "BARISTA_SLURM_PARTITION": PARTITION,
           "BARISTA_SLURM_ACCOUNT": ACCOUNT}
    log = snakemake(remote, "models", "--workflow-profile", str(PROFILE), *FAST, env=env)
    return local, remote, log


def test_every_remote_job_went_through_sbatch(cluster, runs):
    remote, local = executed(runs[2])
    assert set(remote) == GPU_RULES, f"remote jobs {remote}: only the model stage should rerun"
    assert set(local) <= local_rules() and {"decoding_table", "models"} <= set(local)
    submitted = Counter()
    for job in cluster.jobs():
        rule = next(r for r in remote if re.fullmatch(rf"rule_{r}(_wildcards_.*)?",
                                                      job["Comment"]))
        submitted[rule] += 1
        assert job["State"] == "COMPLETED", job
        assert (job["Partition"], job["Account"]) == (PARTITION, ACCOUNT), job
        assert "gres/gpu=1" in job["AllocTRES"], job
    assert submitted == remote, f"sbatch jobs {dict(submitted)} != remote jobs {dict(remote)}"
    print(f"\n{submitted.total()} jobs went through sbatch: {dict(submitted)}")


def test_same_results_as_local_run(runs):
    import torch

    local, remote, _ = runs
    res_l, res_r = local / "results" / "tiny", remote / "results" / "tiny"
    for table in ("decoding.parquet", "reconstruction.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(res_l / table),
                                      pd.read_parquet(res_r / table))
    model = "models/barista/paper/channel-channel/seed0/model.pt"
    a = torch.load(res_l / model, map_location="cpu", weights_only=False)
    b = torch.load(res_r / model, map_location="cpu", weights_only=False)
    for part in ("encoder", "ema_tokenizer", "predictor"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part


def test_failed_job_is_reported_with_its_slurm_log(cluster, runs):
    """A corrupt checkpoint fails a finetuning job; run with the profile's GPUs requested as
    generic resources (BARISTA_SLURM_GRES, sbatch --gres), which must get the job a GPU too."""
    _, remote, _ = runs
    model = remote / "results/tiny/models/barista/paper/channel-channel/seed0/model.pt"
    kept = model.stat()
    model.write_bytes(b"not a checkpoint")
    os.utime(model, ns=(kept.st_atime_ns, kept.st_mtime_ns))  # so that nothing else reruns
    env = {**cluster.env, "BARISTA_SLURM_PARTITION": PARTITION, "BARISTA_SLURM_GRES": "gpu:1"}
    log = snakemake(remote, "models", "--workflow-profile", str(PROFILE),
                    *FAST, "--forcerun",
                    "results/tiny/finetune/barista/paper/channel-channel/seed0/metrics.parquet",
                    env=env, ok=False)
    assert executed(log)[0] == {"finetune": 1}, executed(log)
    failed = re.search(r"SLURM-job '(\d+)' failed", log)
    assert failed, log[-3000:]
    slurm_log = next((remote / ".snakemake" / "slurm_logs").rglob(f"{failed.group(1)}.log"))
    assert "rule_finetune" in slurm_log.parts
    assert str(slurm_log) in log
    assert "Error in rule finetune" in slurm_log.read_text()
    job = next(j for j in cluster.jobs() if j["JobID"] == failed.group(1))
    assert job["State"] == "FAILED" and "gres/gpu=1" in job["AllocTRES"], job
