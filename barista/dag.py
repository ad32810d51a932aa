"""What the workflow's DAG holds for a validated config: its paths, its pretraining runs, the
encoders it finetunes and the result files each protocol gathers.

The Snakemake rules (workflow/rules/*.smk) read everything here through one :class:`Dag`;
what depends on the recordings found (known once the ``recordings`` checkpoint ran) takes that
table as an argument, so all of it is tested without Snakemake. What each job passes to its
step is :mod:`barista.steps`' business.
"""

from __future__ import annotations

import shlex

import pandas as pd

from . import neuroprobe as npb
from .config import active_scales
from .errors import ConfigError, DataError
from .evaluation import decoded, heldout
from .release import RELEASES
from .variants import init_variant

# the authors' released encoder of each encode scale (finetune.barista_release), downloaded once
# for every dataset into resources/release/
RELEASE_OF_SCALE = {scale: name for name, (_, scale) in RELEASES.items()}


def release_checkpoint(encode: str) -> str:
    return f"resources/release/{RELEASE_OF_SCALE[encode]}.ckpt"


def bids_dir(rec: str) -> str:
    """sub-X[/ses-Y] of a recording basename."""
    parts = dict(p.split("-", 1) for p in rec.split("_") if "-" in p)
    return "/".join([f"sub-{parts['sub']}"] + ([f"ses-{parts['ses']}"] if "ses" in parts
                                                 else []))


class Dag:
    def __init__(self, config: dict):
        self.config = config
        self.results = f"results/{config['dataset']['name']}"
        self.logs = f"{self.results}/logs"
        self.deriv = f"{self.results}/derivatives/barista-preproc"
        self.scales = active_scales(config)
        self.source = config["dataset"]["source"]
        self.architectures = config["model"]["architectures"]
        self.neuroprobe = config["neuroprobe"]
        # pretraining runs of every variant and pair: seeds pretrain.seed, +1, ...
        # (pretrain.repeats); the first finetune.repeats of them are finetuned, the others
        # only probed frozen
        pre = config["pretrain"]
        self.pretrain_seeds = [pre["seed"] + i for i in range(pre["repeats"])]
        self.finetuned_seeds = self.pretrain_seeds[:config["finetune"]["repeats"]
                                                   or len(self.pretrain_seeds)]
        self.evaluated_seeds = (self.pretrain_seeds if config["evaluation"]["probe"]
                                else self.finetuned_seeds)
        self.variants = list(config["model"]["variants"])
        # the random-init baselines: one per encoder a variant starts from (the target
        # changes only what pretraining predicts, barista.variants.init_variant)
        self.init_variants = list(dict.fromkeys(init_variant(v) for v in self.variants))
        self.encoders = self._encoders()
        self.neuroprobe_encoders = {e["neuroprobe"]: e for e in self.encoders.values()
                                    if e["neuroprobe"]}

    # --- the raw dataset ------------------------------------------------------------------

    @property
    def bids_root(self) -> str:
        ds = self.config["dataset"]
        return {"simulate": f"{self.results}/bids",
                "openneuro": f"resources/openneuro/{ds['openneuro']['id']}",
                # not BIDS: the release folder, read in place (braintreebank.smk)
                "braintreebank": ds["braintreebank"]["root"] or "resources/braintreebank",
                "local": ds["local"]["bids_root"]}[self.source]

    def bids_input(self) -> str:
        """Input of every step that reads the raw dataset: the folder this workflow writes, or
        the dataset_description.json of a local dataset (the CLI accepts either)."""
        if self.source == "local":
            return f"{self.bids_root}/dataset_description.json"
        if self.source == "braintreebank":
            # a copy read in place is tracked by its corrupted_elec.json, a download by the
            # file it writes last (the download's folder changes while later steps run)
            if self.config["dataset"]["braintreebank"]["root"]:
                return f"{self.bids_root}/corrupted_elec.json"
            return f"{self.bids_root}/.barista/braintreebank.json"
        return self.bids_root

    def preproc_fif(self, rec: str) -> str:
        return f"{self.deriv}/{bids_dir(rec)}/ieeg/{rec}_desc-preproc_ieeg.fif"

    def token_tables(self, *scales: str) -> list[str]:
        return [f"{self.results}/tokens/{s}/channels.parquet" for s in dict.fromkeys(scales)]

    def segment_files(self, recordings, name: str, folder: str = "segments") -> list[str]:
        return [f"{self.results}/{folder}/{r}/{name}.parquet" for r in recordings]

    # --- pretraining runs and encoders -----------------------------------------------------

    def variant_pairs(self, variant: str) -> list[tuple[str, str]]:
        """The (encode, mask) pairs a variant is pretrained for (model.variants)."""
        model = self.config["model"]
        wanted = model["variants"][variant]
        if wanted == "all":
            return [(e, m) for e in model["encode_scales"] for m in model["mask_scales"]]
        return [tuple(p.split("-")) for p in wanted]

    def pretrained_runs(self) -> list[tuple[str, str, str, int]]:
        """(variant, encode, mask, pretraining seed) of every BaRISTA pretraining run."""
        if "barista" not in self.architectures:
            return []
        return [(v, e, m, s) for v in self.variants for e, m in self.variant_pairs(v)
                for s in self.pretrain_seeds]

    def random_init_runs(self) -> list[tuple[str, str, int]]:
        """(starting variant, encode, seed): the encoder each pretraining run starts from,
        once for all variants that share it (also without barista in model.architectures)."""
        runs = {(init_variant(v), e, s) for v in self.variants for e, _ in self.variant_pairs(v)
                for s in self.pretrain_seeds}
        return sorted(runs, key=lambda r: (self.init_variants.index(r[0]), r[1], r[2]))

    def _encoders(self) -> dict[str, dict]:
        """Every encoder the DAG finetunes, by the path fragment of its results under
        finetune/: its model, the finetune CLI arguments naming it (and its checkpoint), its
        checkpoint (none: built from the token table), the scales and token tables it reads,
        and the fragment of its Neuroprobe results (None: not finetuned there). Both protocols
        finetune the encoders of this table; a model family joins the DAG by an entry here
        and one in barista/steps.py (ENCODER_MODELS)."""
        ft, first, out = self.config["finetune"], self.pretrain_seeds[0], {}

        def add(fragment, model, args, checkpoint, scales, pseed=None, neuroprobe=None):
            if checkpoint:
                args += f" --pretrained {checkpoint}"
            if pseed is not None and pseed not in self.finetuned_seeds:
                args += " --probe-only"  # a pretraining run past finetune.repeats
            out[fragment] = {"model": model, "args": args, "checkpoint": checkpoint or [],
                             "scales": scales, "tokens": self.token_tables(*scales),
                             "neuroprobe": neuroprobe}

        # BaRISTA: every variant, pair and evaluated pretraining seed; random init: the
        # encoder each of those starts from. Neuroprobe, a second protocol and not where
        # pretraining runs are compared, takes the first pretraining seed of each.
        for v, e, m, s in self.pretrained_runs():
            if s in self.evaluated_seeds:
                add(f"barista/{v}/{e}-{m}/seed{s}", "barista",
                    f"--model barista --encode {e} --mask {m}",
                    f"{self.results}/models/barista/{v}/{e}-{m}/seed{s}/model.pt", (e, m), s,
                    s == first and f"barista/{v}/{e}-{m}")
        if ft["random_init"]:
            for v, e, s in self.random_init_runs():
                if s in self.evaluated_seeds:
                    add(f"random_init/{v}/{e}/seed{s}", "random_init",
                        f"--model random_init --variant {shlex.quote(v)} --encode {e} "
                        f"--pretrain-seed {s}", None, (e,), s,
                        s == first and f"random_init/{v}/{e}")
        if "rpnt" in self.architectures:
            add("rpnt", "rpnt", "--model rpnt", f"{self.results}/models/rpnt/model.pt",
                (self.config["rpnt"]["encode_scale"],), neuroprobe="rpnt")
        if ft["barista_release"]:
            # the authors' encoders, pretrained with channel masking; their own spatial ids
            # come from our localization, so no token table is read
            for e in self.config["model"]["encode_scales"]:
                add(f"barista_release/{e}", "barista_release",
                    f"--model barista_release --encode {e} --mask channel",
                    release_checkpoint(e), (), neuroprobe=f"barista_release/{e}")
        return out

    # --- result files ----------------------------------------------------------------------

    def study_results(self) -> list[str]:
        """Result files of the study's own protocol: one per encoder (all its tasks,
        recordings and seeds), and the linear floor's."""
        if not self.config["finetune"]["tasks"]:
            return []  # pretraining only: the decoding table has no rows
        files = [f"{self.results}/finetune/{enc}/metrics.parquet" for enc in self.encoders]
        if self.config["finetune"]["linear_baseline"]:
            files.append(f"{self.results}/finetune/linear/metrics.parquet")
        return files

    def decoded_segments(self, table: pd.DataFrame) -> list[str]:
        """Segment indices of the recordings finetuned and tested (evaluation.settings)."""
        return self.segment_files(decoded(table, self.config["evaluation"])["recording"],
                                  "index")

    def reconstruction_results(self, table: pd.DataFrame) -> list[str]:
        if "barista" not in self.architectures:
            return []
        # reconstruction is scored on held-out recordings: none is an error naming the keys,
        # now rather than after pretraining
        heldout(table, self.config["evaluation"])
        return [f"{self.results}/reconstruct/{v}/{e}-{m}/seed{s}/channels.parquet"
                for v, e, m, s in self.pretrained_runs()]

    # --- the Neuroprobe protocol (evaluation.protocols: neuroprobe) -------------------------

    def neuroprobe_trials(self, table: pd.DataFrame) -> dict[str, tuple[int, int]]:
        """Recording -> (subject, trial) of every Neuroprobe subject-trial the dataset holds."""
        benchmark = set(npb.subject_trials(self.neuroprobe["lite"]))
        trials = {rec: npb.subject_trial(subject, session) for rec, subject, session in
                  zip(table["recording"], table["subject"], table["session"], strict=True)}
        return {rec: trial for rec, trial in trials.items() if trial in benchmark}

    def neuroprobe_jobs(self, table: pd.DataFrame) -> list[tuple[str, str, str]]:
        """(split type, tested recording, recording it trains on or '') of every Neuroprobe
        split the dataset allows."""
        np_cfg, trials = self.neuroprobe, self.neuroprobe_trials(table)
        rec_of = {trial: rec for rec, trial in trials.items()}
        jobs = []
        for split in np_cfg["split_types"]:
            for trial in npb.evaluated(list(rec_of), split, np_cfg["lite"]):
                train = npb.train_trial(split, *trial, np_cfg["lite"])
                jobs.append((split, rec_of[trial], rec_of[train] if train else ""))
        if not jobs:
            raise ConfigError(f"config key 'evaluation.protocols': the dataset holds no "
                              f"Neuroprobe{'-Lite' if np_cfg['lite'] else ''} subject-trial "
                              f"that {np_cfg['split_types']} can test (it has "
                              f"{sorted(trials.values())})")
        return jobs

    def neuroprobe_train_recording(self, table: pd.DataFrame, split: str, rec: str) -> str:
        for job_split, tested, train in self.neuroprobe_jobs(table):
            if (job_split, tested) == (split, rec):
                return train
        raise DataError(f"no Neuroprobe {split} split tests {rec}")

    def neuroprobe_segments(self, table: pd.DataFrame, split: str, rec: str) -> list[str]:
        """Segment indices of a Neuroprobe split: its tested and its training trial."""
        train = self.neuroprobe_train_recording(table, split, rec)
        return self.segment_files(sorted({rec, train} - {""}), "index", "neuroprobe/segments")

    def neuroprobe_results(self, table: pd.DataFrame) -> list[str]:
        """Result files of the Neuroprobe protocol: every encoder (every seed) and the linear
        floor, per task, split type and tested trial."""
        files, stem = [], f"{self.results}/neuroprobe/finetune"
        for split, rec, _ in self.neuroprobe_jobs(table):
            for task in self.neuroprobe["tasks"]:
                files += [f"{stem}/{enc}/{task}/{split}/{rec}/seed{s}/metrics.parquet"
                          for enc in self.neuroprobe_encoders
                          for s in self.config["finetune"]["seeds"]]
                if self.config["finetune"]["linear_baseline"]:
                    files.append(f"{stem}/linear/{task}/{split}/{rec}/metrics.parquet")
        return files

    @property
    def neuroprobe_alignment_dir(self) -> str:
        """Folder of the alignment tables the package reads: its own ('') or those derived."""
        derived = self.neuroprobe["alignment"] == "derived"
        return f"{self.results}/neuroprobe/alignment" if derived else ""

    def neuroprobe_alignment_tables(self, table: pd.DataFrame) -> list[str]:
        """Derived alignment tables of every Neuroprobe trial (a split reads its training
        trial's too); none when the package's are used."""
        if not self.neuroprobe_alignment_dir:
            return []
        return [str(p) for s, t in sorted(set(self.neuroprobe_trials(table).values()))
                for p in npb.alignment_paths(self.neuroprobe_alignment_dir, s, t)]
