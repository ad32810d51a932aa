# Shared helpers: config validation, paths and the recording list (known after the checkpoint).

import json
import os
import re

import pandas as pd

from barista import neuroprobe as npb
from barista.config import active_scales, validate_config, visible_gpus
from barista.errors import ConfigError, DataError
from barista.evaluation import decoded, heldout
from barista.release import RELEASES

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


SEED_ARGS = " ".join(str(s) for s in config["finetune"]["seeds"])

# the authors' released encoder of each encode scale (finetune.barista_release), downloaded once
# for every dataset into resources/release/
RELEASE_OF_SCALE = {scale: name for name, (_, scale) in RELEASES.items()}


def release_checkpoint(encode):
    return f"resources/release/{RELEASE_OF_SCALE[encode]}.ckpt"


def seed_files(stem, name):
    """One finetuning job runs every seed of a (model, task, recording): its per-seed files."""
    return [f"{stem}/seed{s}/{name}" for s in config["finetune"]["seeds"]]


def seeds_dir(wildcards, output):
    """The folder holding a finetuning job's seed<k>/ folders."""
    return os.path.dirname(os.path.dirname(output.metrics[0]))


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


def as_json(*sections):
    """Config sections as a JSON string: the exact values a step uses, tracked for re-runs."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


# which recordings pretrain and which are held out: all that pretraining and reconstruction
# take from 'evaluation', so changing how finetuning is evaluated never retrains a model
HELDOUT_KEYS = [
    "evaluation.heldout_sessions",
    "evaluation.heldout_subjects",
    "evaluation.sessions",
]


# finetune keys that only say which models are finetuned: turning the released encoders (or the
# random-init runs) on or off adds or removes their jobs and never re-runs the others
FINETUNE_SWITCHES = ("random_init", "linear_baseline", "barista_release")


def scoped_json(sections, *scales, keys=()):
    """Config sections plus the options of the scales a job uses (and single ``section.key``
    options): a job is re-run when they change, and not when another scale's options do."""
    cfg = {s: config[s] for s in sections}
    if "finetune" in cfg:
        cfg["finetune"] = {k: v for k, v in cfg["finetune"].items() if k not in FINETUNE_SWITCHES}
    for dotted in keys:
        section, key = dotted.split(".")
        cfg.setdefault(section, {})[key] = config[section][key]
    # a scale that is not built belongs to a rule that does not run (the RPNT rules' params
    # are formed even without RPNT; with RPNT, validation requires its scale to be built)
    cfg["scales"] = {s: config["scales"][s] for s in scales if s in config["scales"]}
    return json.dumps(cfg, sort_keys=True)


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


def scale_pairs():
    return [(e, m) for e in config["model"]["encode_scales"] for m in config["model"]["mask_scales"]]


def decoding_results(wildcards):
    """Every per-job result file that the decoding table gathers."""
    files = study_results() if "barista" in PROTOCOLS else []
    if "neuroprobe" in PROTOCOLS:
        files += neuroprobe_results()
    return files


def study_results():
    """Result files of the study's own protocol (evaluation.protocols: barista)."""
    ft = config["finetune"]
    if not ft["tasks"]:
        return []  # pretraining only: the decoding table has no rows
    recs = decoded_recordings()
    files = []
    if "barista" in ARCHITECTURES:
        files += [
            f"{RESULTS}/finetune/barista/{e}-{m}/{t}/{r}/seed{s}/metrics.parquet"
            for e, m in scale_pairs()
            for t in ft["tasks"]
            for r in recs
            for s in ft["seeds"]
        ]
    if "rpnt" in ARCHITECTURES:
        files += [
            f"{RESULTS}/finetune/rpnt/{t}/{r}/seed{s}/metrics.parquet"
            for t in ft["tasks"]
            for r in recs
            for s in ft["seeds"]
        ]
    if ft["random_init"]:
        files += [
            f"{RESULTS}/finetune/random_init/{e}/{t}/{r}/seed{s}/metrics.parquet"
            for e in config["model"]["encode_scales"]
            for t in ft["tasks"]
            for r in recs
            for s in ft["seeds"]
        ]
    if ft["barista_release"]:
        files += [
            f"{RESULTS}/finetune/barista_release/{e}/{t}/{r}/seed{s}/metrics.parquet"
            for e in config["model"]["encode_scales"]
            for t in ft["tasks"]
            for r in recs
            for s in ft["seeds"]
        ]
    if ft["linear_baseline"]:
        files += [f"{RESULTS}/finetune/linear/{t}/{r}/metrics.parquet" for t in ft["tasks"] for r in recs]
    return files


def reconstruction_results(wildcards):
    if "barista" not in ARCHITECTURES:
        return []
    # reconstruction is scored on held-out recordings: none is an error naming the keys,
    # now rather than after pretraining
    heldout(recording_table(), config["evaluation"])
    return [f"{RESULTS}/reconstruct/{e}-{m}/channels.parquet" for e, m in scale_pairs()]


# --- the Neuroprobe protocol (evaluation.protocols: neuroprobe; workflow/rules/neuroprobe.smk)


def neuroprobe_encoders():
    """Every encoder the DAG finetunes, by the path fragment of its results: the model CLI
    arguments, its checkpoint (None: built from pretrain.seed) and the scales whose tokens it
    reads. A model family that joins the DAG joins the Neuroprobe protocol by an entry here."""
    ft = config["finetune"]
    out = {}
    if "barista" in ARCHITECTURES:
        for e, m in scale_pairs():
            out[f"barista/{e}-{m}"] = {"args": f"--model barista --encode {e} --mask {m}",
                                       "model": f"{RESULTS}/models/barista/{e}-{m}/model.pt",
                                       "scales": (e, m)}
    if "rpnt" in ARCHITECTURES:
        out["rpnt"] = {"args": "--model rpnt", "model": f"{RESULTS}/models/rpnt/model.pt",
                       "scales": (config["rpnt"]["encode_scale"],)}
    if ft["random_init"]:
        for e in config["model"]["encode_scales"]:
            out[f"random_init/{e}"] = {"args": f"--model random_init --encode {e}",
                                       "model": None, "scales": (e,)}
    if ft["barista_release"]:
        # the authors' encoders read 1 s as 4 of their 512-sample patches; their own spatial
        # ids come from our localization, so no token table is read (scales: none)
        for e in config["model"]["encode_scales"]:
            out[f"barista_release/{e}"] = {
                "args": f"--model barista_release --encode {e} --mask channel",
                "model": release_checkpoint(e), "scales": ()}
    return out


NEUROPROBE_ENCODERS = neuroprobe_encoders()


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


def neuroprobe_encoder_inputs(wildcards):
    """Inputs of a Neuroprobe finetuning job: tokens, segments of the tested and training
    trials, the encoder's checkpoint."""
    encoder = NEUROPROBE_ENCODERS[wildcards.encoder]
    train = neuroprobe_train_recording(wildcards.split, wildcards.rec)
    files = {
        "recordings": f"{RESULTS}/recordings.tsv",
        "tokens": token_tables(*encoder["scales"]),
        "segments": [
            f"{RESULTS}/neuroprobe/segments/{r}/index.parquet" for r in sorted({wildcards.rec, train}) if r
        ],
    }
    if encoder["model"]:
        files["model"] = encoder["model"]
    return files
