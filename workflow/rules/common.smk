# Shared helpers: config validation, paths and the recording list (known after the checkpoint).

import os
import re
import shlex

import pandas as pd

from barista import neuroprobe as npb
from barista.config import active_scales, validate_config, visible_gpus
from barista.errors import ConfigError, DataError
from barista.evaluation import decoded, heldout
from barista.release import RELEASES
from barista.steps import step_params
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
PROTOCOLS = config["evaluation"]["protocols"]
NEUROPROBE = config["neuroprobe"]

# GPU jobs ask for one GPU where one is visible, so two never share it; on a CPU-only machine
# they ask for none and run side by side on the cores. Cluster profiles set it explicitly.
GPU_PER_JOB = 1 if visible_gpus() else 0


# pretraining runs of every variant and pair: seeds pretrain.seed, +1, ... (pretrain.repeats);
# the first finetune.repeats of them are finetuned, the others only probed frozen
PRETRAIN_SEEDS = [config["pretrain"]["seed"] + i for i in range(config["pretrain"]["repeats"])]
FINETUNED_SEEDS = PRETRAIN_SEEDS[: config["finetune"]["repeats"] or len(PRETRAIN_SEEDS)]
EVALUATED_SEEDS = PRETRAIN_SEEDS if config["evaluation"]["probe"] else FINETUNED_SEEDS
VARIANTS = list(config["model"]["variants"])
# the random-init baselines: one per encoder a variant starts from (the target changes only
# what pretraining predicts, barista.variants.init_variant)
INIT_VARIANTS = list(dict.fromkeys(init_variant(v) for v in VARIANTS))

# the authors' released encoder of each encode scale (finetune.barista_release), downloaded once
# for every dataset into resources/release/
RELEASE_OF_SCALE = {scale: name for name, (_, scale) in RELEASES.items()}


def release_checkpoint(encode):
    return f"resources/release/{RELEASE_OF_SCALE[encode]}.ckpt"


SEED_ARGS = " ".join(str(s) for s in config["finetune"]["seeds"])


def seed_files(stem, name):
    """A Neuroprobe finetuning job runs every seed of one (encoder, task, split, trial): its
    per-seed files."""
    return [f"{stem}/seed{s}/{name}" for s in config["finetune"]["seeds"]]


def seeds_dir(wildcards, output):
    """The folder holding a finetuning job's seed<k>/ folders."""
    return os.path.dirname(os.path.dirname(output.metrics[0]))


def results_dir(wildcards, input):
    """results/<dataset>, the folder holding a job's recordings.tsv (--results)."""
    return os.path.dirname(input.recordings)


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
elif SOURCE == "braintreebank":
    # not BIDS: the release folder, read in place (workflow/rules/braintreebank.smk)
    BIDS_ROOT = config["dataset"]["braintreebank"]["root"] or "resources/braintreebank"
else:
    BIDS_ROOT = config["dataset"]["local"]["bids_root"]


def bids_input():
    """Input of every step that reads the BIDS dataset. It is the folder this workflow writes, or the
    dataset_description.json of a local dataset (the CLI accepts either as --bids-root)."""
    if SOURCE == "local":
        return f"{BIDS_ROOT}/dataset_description.json"
    if SOURCE == "braintreebank":
        # a copy read in place is tracked by its corrupted_elec.json, a download by the file
        # it writes last (the download's folder itself changes while later steps run)
        if config["dataset"]["braintreebank"]["root"]:
            return f"{BIDS_ROOT}/corrupted_elec.json"
        return f"{BIDS_ROOT}/.barista/braintreebank.json"
    return BIDS_ROOT


def segment_events(wildcards):
    """Word events of a Brain Treebank recording (BIDS sources read their events.tsv)."""
    if SOURCE == "braintreebank" and config["segments"]["tasks"]:
        return f"{RESULTS}/events/{wildcards.rec}_events.tsv"
    return []


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
    # model.architectures without barista (none of ours pretrained) still has random inits
    runs = {(init_variant(v), e, s) for v in VARIANTS for e, _ in variant_pairs(v)
            for s in PRETRAIN_SEEDS}
    return sorted(runs, key=lambda r: (INIT_VARIANTS.index(r[0]), r[1], r[2]))


def decoding_results(wildcards):
    """Every per-job result file that the decoding table gathers."""
    files = study_results() if "barista" in PROTOCOLS else []
    if "neuroprobe" in PROTOCOLS:
        files += neuroprobe_results()
    return files


def study_results():
    """Result files of the study's own protocol (evaluation.protocols: barista): one per
    encoder (all its tasks, recordings and seeds), and the linear floor's."""
    if not config["finetune"]["tasks"]:
        return []  # pretraining only: the decoding table has no rows
    files = [f"{RESULTS}/finetune/{enc}/metrics.parquet" for enc in ENCODERS]
    if config["finetune"]["linear_baseline"]:
        files.append(f"{RESULTS}/finetune/linear/metrics.parquet")
    return files


def reconstruction_results(wildcards):
    if "barista" not in ARCHITECTURES:
        return []
    # reconstruction is scored on held-out recordings: none is an error naming the keys,
    # now rather than after pretraining
    heldout(recording_table(), config["evaluation"])
    return [
        f"{RESULTS}/reconstruct/{v}/{e}-{m}/seed{s}/channels.parquet"
        for v, e, m, s in pretrained_runs()
    ]


# --- the Neuroprobe protocol (evaluation.protocols: neuroprobe; workflow/rules/neuroprobe.smk)


def encoders():
    """Every encoder the DAG finetunes, by the path fragment of its results under finetune/:
    its model, the finetune CLI arguments naming it (and its checkpoint), its checkpoint file
    (none: built from the token table), the scales and token tables it reads, and the
    fragment of its Neuroprobe results (None: not finetuned there). Both protocols finetune
    the encoders of this table; a model family joins the DAG by an entry here and one in
    barista/steps.py (ENCODER_MODELS)."""
    ft = config["finetune"]
    first = PRETRAIN_SEEDS[0]
    out = {}

    def add(fragment, model, args, checkpoint, scales, pseed=None, neuroprobe=None):
        if checkpoint:
            args += f" --pretrained {checkpoint}"
        if pseed is not None and pseed not in FINETUNED_SEEDS:
            args += " --probe-only"  # a pretraining run past finetune.repeats: probe only
        out[fragment] = {"model": model, "args": args, "checkpoint": checkpoint or [],
                         "scales": scales, "tokens": token_tables(*scales),
                         "neuroprobe": neuroprobe}

    # BaRISTA: every variant, pair and evaluated pretraining seed; random init: the encoder
    # each of those starts from. Neuroprobe, a second protocol and not where pretraining runs
    # are compared, takes the first pretraining seed of each.
    for v, e, m, s in pretrained_runs():
        if s in EVALUATED_SEEDS:
            add(f"barista/{v}/{e}-{m}/seed{s}", "barista", f"--model barista --encode {e} "
                f"--mask {m}", f"{RESULTS}/models/barista/{v}/{e}-{m}/seed{s}/model.pt",
                (e, m), s, s == first and f"barista/{v}/{e}-{m}")
    if ft["random_init"]:
        for v, e, s in random_init_runs():
            if s in EVALUATED_SEEDS:
                add(f"random_init/{v}/{e}/seed{s}", "random_init",
                    f"--model random_init --variant {shlex.quote(v)} --encode {e} "
                    f"--pretrain-seed {s}", None, (e,), s, s == first and f"random_init/{v}/{e}")
    if "rpnt" in ARCHITECTURES:
        add("rpnt", "rpnt", "--model rpnt", f"{RESULTS}/models/rpnt/model.pt",
            (config["rpnt"]["encode_scale"],), neuroprobe="rpnt")
    if ft["barista_release"]:
        # the authors' encoders, pretrained with channel masking; their own spatial ids come
        # from our localization, so no token table is read
        for e in config["model"]["encode_scales"]:
            add(f"barista_release/{e}", "barista_release",
                f"--model barista_release --encode {e} --mask channel", release_checkpoint(e),
                (), neuroprobe=f"barista_release/{e}")
    return out


ENCODERS = encoders()
NEUROPROBE_ENCODERS = {e["neuroprobe"]: e for e in ENCODERS.values() if e["neuroprobe"]}


def one_of(names):
    """A wildcard constraint matching exactly these names (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def neuroprobe_trials():
    """Recording -> (subject, trial) of every Neuroprobe subject-trial the dataset holds."""
    table = recording_table()
    benchmark = set(npb.subject_trials(NEUROPROBE["lite"]))
    out = {}
    for rec, subject, session in zip(table["recording"], table["subject"], table["session"]):
        trial = npb.subject_trial(subject, session)
        if trial in benchmark:
            out[rec] = trial
    return out


def neuroprobe_jobs():
    """(split type, tested recording, recording it trains on or '') of every Neuroprobe split
    the dataset allows."""
    trials = neuroprobe_trials()
    rec_of = {trial: rec for rec, trial in trials.items()}
    jobs = []
    for split in NEUROPROBE["split_types"]:
        for trial in npb.evaluated(list(rec_of), split, NEUROPROBE["lite"]):
            train = npb.train_trial(split, *trial, NEUROPROBE["lite"])
            jobs.append((split, rec_of[trial], rec_of[train] if train else ""))
    if not jobs:
        raise ConfigError(f"config key 'evaluation.protocols': the dataset holds no Neuroprobe"
                          f"{'-Lite' if NEUROPROBE['lite'] else ''} subject-trial that "
                          f"{NEUROPROBE['split_types']} can test (it has "
                          f"{sorted(trials.values())})")
    return jobs


def neuroprobe_train_recording(split, rec):
    for job_split, tested, train in neuroprobe_jobs():
        if (job_split, tested) == (split, rec):
            return train
    raise DataError(f"no Neuroprobe {split} split tests {rec}")


def neuroprobe_results():
    """Result files of the Neuroprobe protocol: every encoder and the linear floor, per task,
    split type and tested trial."""
    files = []
    for split, rec, _ in neuroprobe_jobs():
        for task in NEUROPROBE["tasks"]:
            files += [f"{RESULTS}/neuroprobe/finetune/{enc}/{task}/{split}/{rec}/seed{s}/"
                      "metrics.parquet" for enc in NEUROPROBE_ENCODERS
                      for s in config["finetune"]["seeds"]]
            if config["finetune"]["linear_baseline"]:
                files.append(f"{RESULTS}/neuroprobe/finetune/linear/{task}/{split}/{rec}/"
                             "metrics.parquet")
    return files


def neuroprobe_alignment_dir():
    """Folder of the alignment tables the package reads: its own, or those derived here."""
    return f"{RESULTS}/neuroprobe/alignment" if NEUROPROBE["alignment"] == "derived" else ""


def neuroprobe_alignment_tables(wildcards):
    """Derived alignment tables of every Neuroprobe trial (a split reads its training
    trial's too); none when the package's are used."""
    if NEUROPROBE["alignment"] != "derived":
        return []
    return [path for s, t in sorted(set(neuroprobe_trials().values()))
            for path in map(str, npb.alignment_paths(neuroprobe_alignment_dir(), s, t))]


def neuroprobe_segments(wildcards):
    """Segment indices of a Neuroprobe split: its tested and its training trial."""
    train = neuroprobe_train_recording(wildcards.split, wildcards.rec)
    return [f"{RESULTS}/neuroprobe/segments/{r}/index.parquet"
            for r in sorted({wildcards.rec, train}) if r]
