"""The Snakemake catalog's conventions, checked in seconds: the workflow is found as
workflow/Snakefile from the repository root, every test configuration under .test/ dry-runs
and lints against it, and the one SLURM profile asks for GPUs either as --gpus or as --gres.
The end-to-end runs of the .test/ configurations are tests/test_study.py and
tests/test_workflow.py (slow)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIGS = sorted((REPO / ".test").glob("*/config.yaml"))
# the target each test configuration is written for (its header comment names it)
TARGETS = {"config": "all", "config_data": "data"}

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")


# The one lint the workflow does not follow, on purpose: every rule runs in the environment that
# `pip install -e .` (or environment.yml) makes, where the `barista` it calls is installed; a
# per-rule conda env would have to install barista itself into every env (README, after the
# install commands).
ACCEPTED_LINTS = {"Specify a conda environment or container for each rule."}


def snakemake(cwd: Path, *args: str, env: dict | None = None, ok=(0,)) -> str:
    done = subprocess.run(["snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    log = done.stdout + done.stderr
    assert done.returncode in ok, log[-3000:]
    return log


def lint_findings(log: str) -> dict[str, set[str]]:
    """`snakemake --lint`'s text output as {finding: where (rule or file)}."""
    findings: dict[str, set[str]] = {}
    where = ""
    for line in log.splitlines():
        if line.startswith("Lints for "):
            where = line[len("Lints for "):].split(" (")[0].rstrip(":")
        elif re.match(r"^    \* .+:$", line):
            findings.setdefault(line.strip()[2:-1], set()).add(where)
    return findings


def test_lint_findings_are_read():
    log = ("Lints for rule a (line 1, x.smk):\n    * Specify a conda environment or container "
           "for each rule.:\n      why\nLints for snakefile x.smk:\n    * Mixed rules and "
           "functions in same snakefile.:\n      why\n")
    assert lint_findings(log) == {
        "Specify a conda environment or container for each rule.": {"rule a"},
        "Mixed rules and functions in same snakefile.": {"snakefile x.smk"}}


def test_every_test_configuration_has_a_target():
    assert {p.parent.name for p in TEST_CONFIGS} == set(TARGETS)


@pytest.mark.parametrize("config", TEST_CONFIGS, ids=lambda p: p.parent.name)
def test_test_configuration_dry_runs_and_lints(config, tmp_path):
    args = ["-s", str(REPO / "workflow/Snakefile"), "--directory", str(tmp_path),
            "--configfile", str(config)]
    log = snakemake(REPO, *args, "-n", TARGETS[config.parent.name])
    assert "Job stats:" in log
    findings = lint_findings(snakemake(REPO, *args, "--lint", ok=(0, 1)))
    assert set(findings) <= ACCEPTED_LINTS, {k: v for k, v in findings.items()
                                             if k not in ACCEPTED_LINTS}


def test_workflow_is_found_from_the_repository_root(tmp_path):
    """`snakemake -n` with no -s and no --configfile, as the README runs it: Snakemake finds
    workflow/Snakefile, the default profile and config/config.yaml by itself (here in a copy
    of the root made of links, so that nothing is written into the repository)."""
    for name in ("workflow", "config", "profiles"):
        (tmp_path / name).symlink_to(REPO / name)
    log = snakemake(tmp_path, "-n")
    assert "workflow specific profile profiles/default" in log
    assert re.search(r"^simulate\s+1$", log, re.M), log[-2000:]


@pytest.mark.parametrize("gres", ["", "gpu:a100:1"])
def test_slurm_profile_requests_gpus_as_gpus_or_gres(gres, tmp_path):
    """Every GPU rule gets gpu=1 (sbatch --gpus=1), or with BARISTA_SLURM_GRES gpu=0 and that
    gres (the plugin refuses both at once); the other rules get neither."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    config = REPO / ".test/config/config.yaml"
    log = snakemake(REPO, "-s", str(REPO / "workflow/Snakefile"), "--directory", str(tmp_path),
                    "--configfile", str(config), "--workflow-profile", "profiles/slurm",
                    "-n", "models", env={"BARISTA_SLURM_GRES": gres})
    jobs = re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):\n(.*?)(?:\n\n|\Z)", log,
                      re.M | re.S)
    resources = {rule: dict(re.findall(r"(\w+)=([^,\n]*)", re.search(r"resources: (.*)",
                                                                     body).group(1)))
                 for rule, body in jobs if "resources:" in body}
    gpu_rules = {r for r, res in resources.items() if res.get("gpu", "0") != "0"
                 or res.get("gres")}
    # (reconstruct follows a checkpoint, so a dry run does not plan it yet)
    finetuning = {r for r in resources if r.startswith("finetune")}
    assert finetuning and {"pretrain", "pretrain_rpnt"} | finetuning == gpu_rules
    for rule in gpu_rules:
        want = ("0", gres) if gres else ("1", "")
        assert (resources[rule]["gpu"], resources[rule]["gres"]) == want, rule
