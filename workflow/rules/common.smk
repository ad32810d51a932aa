# Shared helpers: the validated config, what the PLAN holds (barista/dag.py) and the recordings
# (known after the checkpoint). Each job's --params: barista/steps.py.

import os
import re

import pandas as pd

from barista import neuroprobe as npb
from barista.config import validate_config, visible_gpus
from barista.dag import Dag
from barista.release import RELEASES
from barista.steps import step_params

# validated against workflow/schemas/config.schema.yaml, defaults filled in
config.update(validate_config(config))
PLAN = Dag(config)  # not DAG: Snakemake's own name in this namespace
RESULTS, LOGS, DERIV, SCALES = PLAN.results, PLAN.logs, PLAN.deriv, PLAN.scales
SOURCE, ARCHITECTURES, VARIANTS = PLAN.source, PLAN.architectures, PLAN.variants
ENCODERS, NEUROPROBE_ENCODERS = PLAN.encoders, PLAN.neuroprobe_encoders
# what the Snakefile's wildcard constraints and the figure rules read
DS, BIDS_ROOT, PROTOCOLS = config["dataset"]["name"], PLAN.bids_root, config["evaluation"]["protocols"]
INIT_VARIANTS, FINETUNED_SEEDS = PLAN.init_variants, PLAN.finetuned_seeds
pretrained_runs, variant_pairs, study_results = (PLAN.pretrained_runs, PLAN.variant_pairs,
                                                 PLAN.study_results)

# GPU jobs ask for one GPU where one is visible, so two never share it; on a CPU-only machine
# they ask for none and run side by side on the cores. Cluster profiles set it explicitly.
GPU_PER_JOB = 1 if visible_gpus() else 0
# a pretraining job: one process, or pretrain.processes on this node under torchrun (DDP, one
# GPU each; docs/model.md, Multi-GPU pretraining)
PROCESSES = config["pretrain"]["processes"]
LAUNCH = "python" if PROCESSES == 1 else f"torchrun --standalone --nproc_per_node {PROCESSES}"


def recording_table():
    """Recordings found in the dataset (re-evaluated after the checkpoint ran)."""
    path = checkpoints.recordings.get().output[0]
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def results_dir(wildcards, input):
    """results/<dataset>, the folder holding a job's recordings.tsv (--results)."""
    return os.path.dirname(input.recordings)


def one_of(names):
    """A wildcard constraint matching exactly these names (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def sessions_of(subject):
    table = recording_table()
    return sorted(set(table.loc[table["subject"] == subject, "session"]))


def all_channel_tables(wildcards):
    return PLAN.segment_files(recording_table()["recording"], "channels")


def segment_events(wildcards):
    """Word events of a Brain Treebank recording (BIDS sources read their events.tsv)."""
    if SOURCE == "braintreebank" and config["segments"]["tasks"]:
        return f"{RESULTS}/events/{wildcards.rec}_events.tsv"
    return []


def train_recording(wildcards):
    """The recording a Neuroprobe split trains on ('' where it trains on the tested one)."""
    return PLAN.neuroprobe_train_recording(recording_table(), wildcards.split, wildcards.rec)


def decoding_results(wildcards):
    """Every per-job result file the decoding table gathers (the study's are known before
    the recordings are)."""
    files = PLAN.study_results() if "barista" in PROTOCOLS else []
    return files + (PLAN.neuroprobe_results(recording_table()) if "neuroprobe" in PROTOCOLS
                    else [])


def seed_files(stem, name):
    """A Neuroprobe finetuning job runs every seed of one (encoder, task, split, trial)."""
    return [f"{stem}/seed{s}/{name}" for s in config["finetune"]["seeds"]]
