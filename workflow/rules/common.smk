# Shared helpers: config validation, paths and the recording list (known after the checkpoint).

import json
import os

import pandas as pd
import torch

from barista.config import active_scales, validate_config
from barista.evaluation import decoded
from barista.variants import init_variant

# validated against workflow/schemas/config.schema.yaml, defaults filled in
config.update(validate_config(config))


DS = config["dataset"]["name"]
RESULTS = f"results/{DS}"
LOGS = f"{RESULTS}/logs"
DERIV = f"{RESULTS}/derivatives/barista-preproc"
SCALES = active_scales(config)
SOURCE = config["dataset"]["source"]
ARCHITECTURES = config["model"]["architectures"]

# GPU jobs ask for one GPU where one is visible, so two never share it; on a CPU-only machine
# they ask for none and run side by side on the cores. Cluster profiles set it explicitly.
GPU_PER_JOB = 1 if torch.cuda.is_available() else 0


# pretraining runs of every variant and pair: seeds pretrain.seed, +1, ... (pretrain.repeats);
# the first finetune.repeats of them are finetuned, the others only probed frozen
PRETRAIN_SEEDS = [config["pretrain"]["seed"] + i for i in range(config["pretrain"]["repeats"])]
FINETUNED_SEEDS = PRETRAIN_SEEDS[: config["finetune"]["repeats"] or len(PRETRAIN_SEEDS)]
EVALUATED_SEEDS = PRETRAIN_SEEDS if config["evaluation"]["probe"] else FINETUNED_SEEDS
VARIANTS = list(config["model"]["variants"])
# the random-init baselines: one per encoder a variant starts from (the target changes only
# what pretraining predicts, barista.variants.init_variant)
INIT_VARIANTS = list(dict.fromkeys(init_variant(v) for v in VARIANTS))


def probe_only(wildcards):
    """A finetuning job of a pretraining seed past finetune.repeats scores the probe alone."""
    return "" if int(wildcards.pseed) in FINETUNED_SEEDS else "--probe-only"


def pretrain_launcher():
    """How a pretraining job starts: one process, or `pretrain.processes` on this node under
    torchrun (DDP, one GPU each; docs/model.md, Multi-GPU pretraining)."""
    n = config["pretrain"]["processes"]
    return "python" if n == 1 else f"torchrun --standalone --nproc_per_node {n}"


def pretrain_gpus():
    """GPUs a pretraining job asks for: one per process where GPUs exist, else none."""
    return GPU_PER_JOB * config["pretrain"]["processes"]

if SOURCE == "simulate":
    BIDS_ROOT = f"{RESULTS}/bids"
elif SOURCE == "openneuro":
    BIDS_ROOT = f"resources/openneuro/{config['dataset']['openneuro']['id']}"
else:
    BIDS_ROOT = config["dataset"]["local"]["bids_root"]


def as_json(*sections):
    """Config sections as a JSON string: the exact values a step uses, tracked for re-runs."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


# which recordings pretrain and which are held out: all that pretraining and reconstruction
# take from 'evaluation', so changing how finetuning is evaluated never retrains a model
HELDOUT_KEYS = ["evaluation.heldout_sessions", "evaluation.heldout_subjects"]


def scoped_json(sections, *scales, keys=()):
    """Config sections plus the options of the scales a job uses (and single ``section.key``
    options): a job is re-run when they change, and not when another scale's options do."""
    cfg = {s: config[s] for s in sections}
    for dotted in keys:
        section, key = dotted.split(".")
        cfg.setdefault(section, {})[key] = config[section][key]
    cfg["scales"] = {s: config["scales"][s] for s in scales}
    return json.dumps(cfg, sort_keys=True)


def bids_input():
    """Input of every step that reads the BIDS dataset. It is the folder this workflow writes, or the
    dataset_description.json of a local dataset (the CLI accepts either as --bids-root)."""
    if SOURCE == "local":
        return f"{BIDS_ROOT}/dataset_description.json"
    return BIDS_ROOT


def recording_table():
    """Recordings found in the BIDS dataset (re-evaluated after the checkpoint ran)."""
    path = checkpoints.recordings.get().output[0]
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def bids_dir(rec):
    """sub-X[/ses-Y] of a recording basename."""
    parts = dict(p.split("-", 1) for p in rec.split("_") if "-" in p)
    levels = [f"sub-{parts['sub']}"] + ([f"ses-{parts['ses']}"] if "ses" in parts else [])
    return "/".join(levels)


def preproc_fif(rec):
    return f"{DERIV}/{bids_dir(rec)}/ieeg/{rec}_desc-preproc_ieeg.fif"


def sessions_of(subject):
    table = recording_table()
    return sorted(set(table.loc[table["subject"] == subject, "session"]))


def all_channel_tables(wildcards):
    return [f"{RESULTS}/segments/{r}/channels.parquet" for r in recording_table()["recording"]]


def token_tables(*scales):
    return [f"{RESULTS}/tokens/{s}/channels.parquet" for s in dict.fromkeys(scales)]


def decoded_recordings():
    """Recordings finetuned and tested, in the settings that evaluation.settings asks for."""
    return list(decoded(recording_table(), config["evaluation"])["recording"])


def decoded_segments(wildcards):
    """The segment indices of every decoded recording (what a finetuning job reads)."""
    return [f"{RESULTS}/segments/{r}/index.parquet" for r in decoded_recordings()]


def scale_pairs():
    return [(e, m) for e in config["model"]["encode_scales"] for m in config["model"]["mask_scales"]]


def variant_pairs(variant):
    """The (encode, mask) pairs a variant is pretrained for (model.variants)."""
    wanted = config["model"]["variants"][variant]
    if wanted == "all":
        return scale_pairs()
    return [tuple(p.split("-")) for p in wanted]


def pretrained_runs():
    """(variant, encode, mask, pretraining seed) of every BaRISTA pretraining run."""
    if "barista" not in ARCHITECTURES:
        return []
    return [(v, e, m, s) for v in VARIANTS for e, m in variant_pairs(v) for s in PRETRAIN_SEEDS]


def random_init_runs():
    """(starting variant, encode, seed): the encoder each pretraining run starts from, once
    for all variants that share it."""
    runs = {(init_variant(v), e, s) for v, e, _, s in pretrained_runs()}
    return sorted(runs, key=lambda r: (INIT_VARIANTS.index(r[0]), r[1], r[2]))


def decoding_results(wildcards):
    """Every result file that the decoding table gathers: one per encoder (all its tasks,
    recordings and seeds), and the linear floor's."""
    ft = config["finetune"]
    files = [
        f"{RESULTS}/finetune/barista/{v}/{e}-{m}/seed{s}/metrics.parquet"
        for v, e, m, s in pretrained_runs()
        if s in EVALUATED_SEEDS
    ]
    if ft["random_init"]:
        files += [
            f"{RESULTS}/finetune/random_init/{v}/{e}/seed{s}/metrics.parquet"
            for v, e, s in random_init_runs()
            if s in EVALUATED_SEEDS
        ]
    if "rpnt" in ARCHITECTURES:
        files.append(f"{RESULTS}/finetune/rpnt/metrics.parquet")
    if ft["linear_baseline"]:
        files.append(f"{RESULTS}/finetune/linear/metrics.parquet")
    return files


def reconstruction_results(wildcards):
    return [
        f"{RESULTS}/reconstruct/{v}/{e}-{m}/seed{s}/channels.parquet"
        for v, e, m, s in pretrained_runs()
    ]
