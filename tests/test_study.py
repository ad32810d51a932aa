"""The whole study on a tiny simulated dataset: both models, three generalisation settings,
figures, the results table and the Snakemake report; a finetuning change reruns only what
follows it."""

import copy
import shutil
import subprocess

import pandas as pd
import pytest
import yaml
from test_workflow import REPO, planned_jobs, snakemake

# the catalog's test configuration (.test/config/config.yaml; tests/test_catalog.py dry-runs it)
STUDY = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
SETTINGS = {"within_session", "cross_session", "cross_subject"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    wd = tmp_path_factory.mktemp("study")
    snakemake(wd, config=STUDY, target="all")
    return wd


def test_both_models_in_every_setting(study):
    table = pd.read_parquet(study / "results/tiny/decoding.parquet")
    auroc = table[table["metric"] == "auroc"]
    for model in ("barista", "random_init", "linear", "rpnt"):
        assert set(auroc.loc[auroc["model"] == model, "setting"]) == SETTINGS, model
    # every encoder is also probed frozen, over the chronological folds of the session
    probe = table[table["metric"] == "probe_auroc"]
    for model in ("barista", "random_init", "rpnt"):
        assert set(probe.loc[probe["model"] == model, "setting"]) == SETTINGS, model
    assert probe["value"].between(0, 1).all()
    # sub-02 is held out of pretraining; sub-01's second session too
    kinds = auroc.groupby("recording")["setting"].first().to_dict()
    assert kinds == {"sub-01_ses-01_task-listen_run-01": "within_session",
                     "sub-01_ses-02_task-listen_run-01": "cross_session",
                     "sub-02_ses-01_task-listen_run-01": "cross_subject",
                     "sub-02_ses-02_task-listen_run-01": "cross_subject"}
    pretrained = pd.read_json(study / "results/tiny/models/rpnt/summary.json", typ="series")
    assert pretrained["n_train_windows"] > 0
    recon = pd.read_parquet(study / "results/tiny/reconstruction.parquet")
    assert set(recon["setting"]) == {"cross_session", "cross_subject"}


def test_rows_name_the_variant_and_the_pretraining_run(study):
    """The paper's method and ours are never mixed: every BaRISTA and random-init row names its
    variant; each pretraining run (seed) is paired with its own random init; runs past
    finetune.repeats are probed, not finetuned."""
    table = pd.read_parquet(study / "results/tiny/decoding.parquet")
    # prior+raw starts from the encoder with the prior: its random init is variant 'prior'
    for model, variants in (("barista", {"paper", "prior+raw"}),
                            ("random_init", {"paper", "prior"})):
        rows = table[table["model"] == model]
        assert set(rows["variant"]) == variants, model
        assert set(rows["pretrain_seed"]) == {0, 1}, model
        finetuned = rows[rows["metric"] == "auroc"]
        assert set(finetuned["pretrain_seed"]) == {0}, model
    assert set(table.loc[table["model"].isin(["linear", "rpnt"]), "variant"]) == {"none"}
    recon = pd.read_parquet(study / "results/tiny/reconstruction.parquet")
    assert set(zip(recon["variant"], recon["pretrain_seed"], strict=True)) == {
        ("paper", 0), ("paper", 1), ("prior+raw", 0), ("prior+raw", 1)}
    md = (study / "results/tiny/figures/results_table.md").read_text()
    assert "BaRISTA prior+raw" in md and "random init prior" in md
    paired = pd.read_csv(study / "results/tiny/figures/pretrained_vs_random.csv")
    assert set(zip(paired["model"], paired["pairs_with"], strict=True)) == {
        ("barista", "paper"), ("barista:prior+raw", "prior")}


def test_results_table_lists_both_models_per_setting(study):
    md = (study / "results/tiny/figures/results_table.md").read_text()
    sections = md.split("## ")[1:]
    assert len(sections) == 3
    for section in sections:
        assert "rpnt" in section.lower() and "parcel" in section and "linear" in section
    for label in ("within session", "cross session", "cross subject"):
        assert label in md


def test_report_is_built(study):
    out = study / "report.html"
    done = subprocess.run(["snakemake", "-s", str(REPO / "workflow/Snakefile"),
                           "--directory", str(study),
                           "--configfile", str(study / "config.yaml"), "--report", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    html = out.read_text(errors="ignore")
    assert "decoding_comparison" in html and "electrodes_parcel" in html


def test_finetune_change_reruns_only_finetuning_and_what_follows(study):
    changed = copy.deepcopy(STUDY)
    changed["finetune"]["epochs"] = 3
    jobs = planned_jobs(snakemake(study, "-n", config=changed, target="all"))
    # one job per encoder: 2 variants x 2 pretraining runs, and RPNT
    assert jobs["finetune:barista"] == jobs["finetune:random_init"] == 4
    assert jobs["finetune:rpnt"] == 1
    upstream = {"pretrain", "pretrain_rpnt", "reconstruct", "segment", "linear_baseline"}
    assert not upstream & set(jobs)
    (study / "config.yaml").write_text(yaml.safe_dump(STUDY))  # the dry run rewrote it


def test_evaluation_split_change_never_retrains_a_model(study):
    """How finetuning is scored (a single split or every chronological fold) decides the
    finetuning and the linear floor, not the pretrained models or their reconstruction."""
    changed = copy.deepcopy(STUDY)
    changed["evaluation"]["window_split"] = "chrono"
    jobs = planned_jobs(snakemake(study, "-n", config=changed, target="all"))
    assert jobs["finetune:barista"] == jobs["finetune:random_init"] == 4
    assert jobs["linear_baseline"] == 1
    assert not {"pretrain", "pretrain_rpnt", "reconstruct", "segment"} & set(jobs)
    (study / "config.yaml").write_text(yaml.safe_dump(STUDY))


def test_every_job_passes_its_steps_declared_params(study):
    """Every `barista` job of the whole DAG gets --params from barista/steps.py: the JSON of
    each printed command equals step_params of its step for this config (a rule passing a
    section list of its own fails here), and every row of the decoding table carries the hash
    of its finetuning step's closure."""
    import json
    import re
    import shlex

    from barista import cli
    from barista.config import validate_config
    from barista.steps import scoped_config, step_params

    config = validate_config(STUDY)
    # every job from the checkpoint on (the checkpoint re-run would leave its followers
    # unknown to a dry run), and the jobs up to it
    log = snakemake(study, "-n", "-p", "--forcerun", "preprocess", "localize",
                    "derivative_description", config=STUDY, target="all")
    log += snakemake(study, "-n", "-p", "--forceall", config=STUDY, target="recordings")
    (study / "config.yaml").write_text(yaml.safe_dump(STUDY))
    checked, hashes = {}, {}
    for line in log.splitlines():
        if not re.search(r"-m barista [\w-]+ .*--params", line):
            continue
        line = re.sub(r"\$\(dirname ([^)]+)\)", r"\1", line.split(" > ")[0])
        argv = shlex.split(line)
        args = cli.build_parser().parse_args(argv[argv.index("barista") + 1:])
        step = cli.step_of(args)
        expected = step_params(step, config, cli.job_scales(args, config))
        assert json.loads(args.params) == json.loads(expected), f"{step}: {line[:300]}"
        checked[step] = checked.get(step, 0) + 1
        if args.command == "finetune":
            hashes[step] = scoped_config(step, json.loads(args.params)).digest
    assert set(checked) >= {"simulate", "recordings", "derivative", "preprocess", "localize",
                            "segment", "tokens", "pretrain:barista", "pretrain:rpnt",
                            "finetune:barista", "finetune:random_init", "finetune:rpnt",
                            "linear", "reconstruct", "collect"}, checked
    table = pd.read_parquet(study / "results/tiny/decoding.parquet")
    for step, digest in hashes.items():
        model = step.split(":")[1]
        assert set(table.loc[table["model"] == model, "config_hash"]) == {digest}, model
