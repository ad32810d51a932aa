"""The figure rules that workflow/rules/figures.smk generates from its table: which figures a
configuration draws, which rule draws each, and what each rule registers for the report.

The expected lists are written out here by hand from what each figure needs (docs/figures.md),
independently of the table. Dry runs on a hand-written recordings.tsv: no data is made."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = next(p for p in (REPO / "workflow" / "Snakefile", REPO / "Snakefile") if p.exists())
RECORDINGS = "recording\tsubject\tsession\ttask\trun\n" + "".join(
    f"sub-{s}_ses-{k}_task-listen_run-01\t{s}\t{k}\tlisten\t01\n"
    for s in ("01", "02", "03") for k in ("01", "02"))
TASKS = ("speech_vs_nonspeech", "sentence_onset")
SHELL = "python -m barista figures {params.args} --out {params.stem} > {log} 2>&1"
FIGURE = ("png", "pdf", "csv")
TABLE = ("md", "csv")

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")


def planned_figures(tmp_path: Path, base: str = "config", **changes) -> dict[str, str]:
    """{file under figures/: rule} that `snakemake --summary` plans for config/<base>.yaml with
    ``changes`` (section -> {key: value}) applied."""
    config = yaml.safe_load((REPO / "config" / f"{base}.yaml").read_text())
    for section, keys in changes.items():
        config[section].update(keys)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    results = tmp_path / "results" / config["dataset"]["name"]
    results.mkdir(parents=True)
    (results / "recordings.tsv").write_text(RECORDINGS)
    done = subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "config.yaml"), "--summary",
                           "--cores", "1"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = {}
    for line in done.stdout.splitlines():
        path, _, rule, *_ = line.split("\t") + ["", ""]
        if m := re.match(rf"{re.escape(str(results))}/figures/(.+)|results/[^/]+/figures/(.+)",
                         path):
            figures[m.group(1) or m.group(2)] = rule
    return figures


def files(rule: str, stems: list[str], exts=FIGURE) -> dict[str, str]:
    return {f"{stem}.{x}": rule for stem in stems for x in exts}


def test_demo_config_draws_every_figure_of_its_results(tmp_path):
    expected = {
        **files("fig_electrodes", ["electrodes_parcel", "electrodes_lobe"]),
        **files("fig_pretraining_curves", ["pretraining_curves"]),
        **files("fig_decoding_comparison", ["decoding_comparison"]),
        **files("fig_decoding_grid", ["decoding_grid"]),
        **files("fig_finetuning_curves", ["finetuning_curves"]),
        **files("fig_pretrained_vs_random", ["pretrained_vs_random"]),
        **files("fig_reconstruction", ["reconstruction"]),
        **files("fig_reconstruction_channels", ["reconstruction_channels"]),
        # one per pretrained pair (the demo's variants pretrain channel-channel only) and task
        **files("fig_importance", [f"importance/channel-channel_{t}" for t in TASKS]),
        **files("results_table", ["results_table"], TABLE),
        **files("probe_table", ["probe_table"], TABLE),
    }
    assert planned_figures(tmp_path) == expected


def test_released_encoders_and_switches_change_only_their_figures(tmp_path):
    """config/release.yaml (three encode scales, mask scale channel, released encoders, no
    reconstruction) without random inits and probes: one importance figure per pair and task,
    one per released encoder and task (its own rule); no paired figure, no probe table."""
    got = planned_figures(tmp_path, "release", finetune={"random_init": False},
                          evaluation={"probe": False})
    pairs = ("channel-channel", "parcel-channel", "lobe-channel")
    expected = {
        **files("fig_electrodes", ["electrodes_parcel", "electrodes_lobe"]),
        **files("fig_pretraining_curves", ["pretraining_curves"]),
        **files("fig_decoding_comparison", ["decoding_comparison"]),
        **files("fig_decoding_grid", ["decoding_grid"]),
        **files("fig_finetuning_curves", ["finetuning_curves"]),
        **files("fig_importance", [f"importance/{p}_{t}" for p in pairs for t in TASKS]),
        **files("fig_importance_release", [f"importance/barista_release_{e}_{t}"
                                           for e in ("channel", "parcel", "lobe") for t in TASKS]),
        **files("results_table", ["results_table"], TABLE),
    }
    assert got == expected


def test_no_decoding_task_draws_no_decoding_figure(tmp_path):
    got = planned_figures(tmp_path, finetune={"tasks": []})
    assert set(got.values()) == {"fig_electrodes", "fig_pretraining_curves",
                                 "fig_reconstruction", "fig_reconstruction_channels"}


def test_each_figure_rule_is_local_reported_and_captioned():
    """Loaded in this process: every generated rule runs on the submitting node, carries no
    conda env, registers one output for the report whose caption file exists, and gets its
    own arguments when it runs (a shell command made in a loop is evaluated at run time, with
    the loop's last entry: the arguments must come from the rule's params)."""
    api = pytest.importorskip("snakemake.api")
    from snakemake.iocontainers import Namedlist
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    table = {}
    with api.SnakemakeApi(OutputSettings(quiet=True)) as snakemake:
        workflow = snakemake.workflow(
            resource_settings=ResourceSettings(), snakefile=SNAKEFILE, workdir=REPO,
            config_settings=ConfigSettings(configfiles=[REPO / "config" / "config.yaml"]),
        )._workflow
        for rule in workflow.rules:
            reported = [(str(f), f.flags["report"]) for f in rule.output if "report" in f.flags]
            if reported:
                table[rule.name] = (rule, reported, rule.name in workflow._localrules)
    assert {"fig_electrodes", "fig_importance", "fig_importance_release", "fig_neuroprobe",
            "neuroprobe_table", "results_table", "probe_table"} <= set(table)
    for name, (rule, reported, local) in table.items():
        assert local and rule.conda_env is None, name
        assert len(reported) == 1, name
        path, report = reported[0]
        assert path.endswith(".csv" if name.endswith("_table") else ".png"), name
        caption = Path(report.caption.get_path_or_uri(True)).resolve()
        assert caption.parent == REPO / "workflow" / "report" and caption.exists(), name
        assert report.category and report.subcategory and report.labels, name
        assert rule.shellcmd == SHELL, name
    # named inputs as Snakemake hands them to a params function
    wildcards = Namedlist(fromdict={"by": "lobe", "task": "t1"})
    inputs = Namedlist(["f/a/seed0/metrics.parquet", "f/b/metrics.parquet", "l1.parquet",
                        "l2.parquet"])
    for name, start, end in (("runs", 0, 2), ("localization", 2, 4), ("bids", 4, 4)):
        inputs._set_name(name, start, end)
    assert table["fig_electrodes"][0].params["args"](wildcards, inputs) == (
        "electrodes --color-by lobe --localization l1.parquet l2.parquet")
    assert table["fig_importance"][0].params["args"](wildcards, inputs) == (
        "importance --task t1 --runs f/a/seed0 f/b --localization l1.parquet l2.parquet ")
