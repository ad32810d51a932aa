"""Our Neuroprobe results beside the benchmark's published leaderboard, and as a leaderboard entry.

The published rows (``resources/neuroprobe_leaderboard.tsv``, source ``published``) are the
Neuroprobe-Lite leaderboard's mean test ROC AUC over subject-trials and folds; ours are the
``protocol == neuroprobe`` rows of ``decoding.parquet``, averaged the same way (each row's
``auroc`` is already the mean over its folds, so the mean over rows is the mean over
subject-trials, folds and seeds).

A leaderboard entry is a folder ``<MODEL>_<FIRST>_<LAST>_<D>_<M>_<YYYY>`` holding
``metadata.json``, ``PUBLICATION.bib``, ``ATTESTATION.txt`` and ``<Split>/population_<task>.json``
per split type and task: the layout and fields of the neuroprobe repository's SUBMIT.md, checked
by :func:`validate_submission` the way its ``tests/test_submission_format.py`` checks them.
"""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from . import neuroprobe as npb
from .errors import BaristaError, DataError

PROTOCOL = "neuroprobe"
NONE = "none"
FOLD_METRICS = ("train_accuracy", "train_roc_auc", "test_accuracy", "test_roc_auc")
OVERLAP_METRIC = "pretrained_on_benchmark"  # Neuroprobe subject-trials the encoder pretrained on
ENTRY_NAME = re.compile(r"^.+_[^_]+_[^_]+_\d{1,2}_\d{1,2}_\d{4}$")
ATTESTATION_PHRASES = (
    "I attest that the training and test splits of Neuroprobe were respected",
    "I attest that the submitted model was not pretrained on any data that intersects with any "
    "data of Neuroprobe",
)
# the sessions (subject_trial) the authors' released encoders were pretrained and validated on
# (the paper's braintreebank.yaml: 17 pretrain, 2 validation); 7 are Neuroprobe-Lite trials
RELEASE_PRETRAINING_SESSIONS = ("1_0", "1_2", "2_0", "2_1", "2_2", "2_3", "2_4", "3_1", "3_2",
                                "4_1", "5_0", "6_0", "6_1", "7_1", "8_0", "9_0", "10_1", "2_5",
                                "4_2")
MODEL_NAMES = {"barista": "BaRISTA", "barista_release": "BaRISTA (released encoder)",
               "random_init": "BaRISTA random init", "rpnt": "RPNT", "linear": "Linear (ours)"}


def published() -> pd.DataFrame:
    """The published leaderboard rows: ``model, split_type, task, auroc, source``."""
    path = resources.files("barista") / "resources" / "neuroprobe_leaderboard.tsv"
    with path.open(encoding="utf-8") as fh:
        return pd.read_csv(fh, sep="\t", comment="#")


def fold_metric(name: str, fold: int) -> str:
    return f"{name}_fold{fold}"


def variant_name(model: str, encode: str, mask: str, variant: str = NONE) -> str:
    """``BaRISTA parcel/channel``, ``BaRISTA prior+raw parcel/channel``, ``RPNT parcel``,
    ``Linear (ours)`` (the paper's pretraining variant is not named)."""
    scales = "/".join(s for s in (encode, mask) if s and s != NONE)
    named = "" if variant in ("", NONE, "paper") else f" {variant}"
    return f"{MODEL_NAMES.get(model, model)}{named} {scales}".strip()


def neuroprobe_rows(decoding: pd.DataFrame) -> pd.DataFrame:
    if "protocol" not in decoding:
        return decoding.iloc[0:0]
    return decoding[decoding["protocol"] == PROTOCOL]


def leaderboard_table(decoding: pd.DataFrame, source: str) -> pd.DataFrame:
    """Published rows and ours (``source`` names our run, e.g. ``this run: btdemo``): one row per
    model x split type x task with ``auroc`` and ``n_trials`` (subject-trials averaged; NaN for
    the published rows, whose count is the benchmark's: 12, 10 cross-subject)."""
    ours = neuroprobe_rows(decoding)
    ours = ours[ours["metric"] == "auroc"]
    if "variant" not in ours:  # tables written before pretraining variants
        ours = ours.assign(variant=NONE)
    rows = []
    for (model, variant, encode, mask, split, task), cell in ours.groupby(
            ["model", "variant", "encode_scale", "mask_scale", "setting", "task"], sort=True):
        rows.append({"model": variant_name(model, encode, mask, variant), "split_type": split,
                     "task": task, "auroc": float(cell["value"].mean()),
                     "n_trials": int(cell["recording"].nunique()), "source": source})
    theirs = published().assign(n_trials=np.nan)
    table = pd.concat([theirs, pd.DataFrame(rows, columns=theirs.columns)], ignore_index=True)
    return table[["source", "model", "split_type", "task", "auroc", "n_trials"]]


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = (source, model), columns = (split type, task), in the leaderboard's order."""
    splits = [s for s in npb.SPLIT_TYPES if s in set(table["split_type"])]
    order = ["speech", "onset", *(t for t in npb.TASKS if t not in ("speech", "onset"))]
    tasks = [t for t in order if t in set(table["task"])]
    grid = table.pivot_table(index=["source", "model"], columns=["split_type", "task"],
                             values="auroc", sort=False)
    columns = [(s, t) for s in splits for t in tasks if (s, t) in grid.columns]
    order = sorted(grid.index, key=lambda k: (k[0] != "published", k[0]))  # published first
    return grid.loc[order, columns]


def markdown(table: pd.DataFrame, dataset: str, digits: int = 3) -> str:
    grid = wide(table)
    head = [f"{npb.SPLIT_FOLDERS[s]} {t}" for s, t in grid.columns]
    lines = ["# Neuroprobe-Lite: test ROC AUC", "",
             "Mean over subject-trials and folds, the benchmark's metric. Rows marked "
             "*published* are the Neuroprobe leaderboard's (Brain Treebank); the others are "
             f"this run on dataset `{dataset}`, over the subject-trials it holds (n in "
             "neuroprobe_leaderboard.csv). Numbers of a dataset other than the Brain Treebank "
             "(such as the Brain Treebank-shaped fixture) are not Brain Treebank numbers and do "
             "not compare with the published rows.", "",
             "| model | source | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(head)]
    for (source, model), values in grid.iterrows():
        cells = ["" if not np.isfinite(v) else f"{v:.{digits}f}" for v in values]
        tag = "*published*" if source == "published" else source
        lines.append(f"| {model} | {tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(decoding: pd.DataFrame, stem: str | Path, dataset: str) -> pd.DataFrame:
    """``<stem>.md`` (the leaderboard layout) and ``<stem>.csv`` (tidy)."""
    table = leaderboard_table(decoding, f"this run: {dataset}")
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.md").write_text(markdown(table, dataset), encoding="utf-8")
    table.to_csv(f"{stem}.csv", index=False, float_format="%.6g", lineterminator="\n")
    return table


# --- the leaderboard entry -----------------------------------------------------------------

def entry_name(model_name: str, author: str, when: time.struct_time) -> str:
    """``MODELNAME_AUTHORFIRSTNAME_AUTHORLASTNAME_DAY_MONTH_YEAR``."""
    names = author.split()
    if len(names) < 2:
        raise BaristaError(f"--author {author!r}: the entry is named by the author's first and "
                           "last name")
    model = re.sub(r"[^A-Za-z0-9]+", "_", model_name).strip("_")
    return f"{model}_{names[0]}_{names[-1]}_{when.tm_mday}_{when.tm_mon}_{when.tm_year}"


def write_submission(decoding: pd.DataFrame, out_dir: str | Path, *, model: str, encode: str,
                     mask: str, model_name: str, description: str, author: str,
                     organization: str, organization_url: str, seed: int | None = None,
                     publication: str | None = None, timestamp: int | None = None,
                     allow_overlap: bool = False, variant: str | None = None) -> Path:
    """Write one model variant's Neuroprobe rows as a leaderboard entry under ``out_dir``.

    One seed's folds are written (``seed``; default the lowest present): the leaderboard holds
    one result per fold. A model pretrained on Neuroprobe's subject-trials (metric
    ``pretrained_on_benchmark`` > 0) breaks the benchmark's rule and is refused unless
    ``allow_overlap``, which states the overlap in ``ATTESTATION.txt``. The attestation is left
    for the submitting author to sign. Returns the entry folder.
    """
    rows = neuroprobe_rows(decoding)
    rows = rows[(rows["model"] == model) & (rows["encode_scale"] == (encode or NONE))
                & (rows["mask_scale"] == (mask or NONE))]
    if "variant" in rows:
        if variant is not None:
            rows = rows[rows["variant"] == variant]
        elif rows["variant"].nunique() > 1:
            raise DataError(f"Neuroprobe rows of model {model!r} encode {encode!r} mask "
                            f"{mask!r} have pretraining variants {sorted(set(rows['variant']))}:"
                            " name one (--variant)")
    if rows.empty:
        raise DataError(f"no Neuroprobe rows of model {model!r} encode {encode!r} mask {mask!r} "
                        "in the decoding table")
    seed = int(rows["seed"].min()) if seed is None else seed
    rows = rows[rows["seed"] == seed]
    if rows.empty:
        raise DataError(f"no Neuroprobe rows of seed {seed} for model {model!r}")
    overlap = rows.loc[rows["metric"] == OVERLAP_METRIC, "value"]
    n_overlap = int(overlap.max()) if len(overlap) else 0
    if n_overlap and not allow_overlap:
        raise BaristaError(f"{model} {encode}/{mask} was pretrained on {n_overlap} Neuroprobe "
                           "subject-trial(s): the benchmark forbids it (neuroprobe SUBMIT.md, "
                           "'Pretraining guidelines'); pretrain without them or pass "
                           "--allow-overlap to write the entry with the overlap stated")
    timestamp = int(time.time()) if timestamp is None else timestamp
    header = {"model_name": model_name, "description": description, "author": author,
              "organization": organization, "organization_url": organization_url,
              "timestamp": timestamp}
    entry = Path(out_dir) / entry_name(model_name, author, time.gmtime(timestamp))
    entry.mkdir(parents=True, exist_ok=True)
    (entry / "metadata.json").write_text(json.dumps(header, indent=2) + "\n")
    (entry / "PUBLICATION.bib").write_text((publication or "N/A").strip() + "\n")
    (entry / "ATTESTATION.txt").write_text(_attestation(n_overlap))
    for (split, task), cell in rows.groupby(["setting", "task"], sort=True):
        if split not in npb.SPLIT_FOLDERS:
            continue
        results = {}
        for (subject, session), one in cell.groupby(["subject", "session"], sort=True):
            values = dict(zip(one["metric"], one["value"].astype(float), strict=True))
            folds = []
            for k in range(npb.N_FOLDS if split == "within_session" else 1):
                fold = {m: values[fold_metric(m, k)] for m in FOLD_METRICS
                        if fold_metric(m, k) in values}
                if "test_roc_auc" not in fold:
                    raise DataError(f"{split} {task} subject {subject} session {session}: no "
                                    f"{fold_metric('test_roc_auc', k)} in the decoding table")
                folds.append(fold)
            key = npb.session_key(*npb.subject_trial(subject, session))
            results[key] = {"population": {"one_second_after_onset": {
                "time_bin_start": 0.0, "time_bin_end": npb.WINDOW_S, "folds": folds}}}
        folder = entry / npb.SPLIT_FOLDERS[split]
        folder.mkdir(exist_ok=True)
        body = {**header, "evaluation_results": dict(sorted(results.items(), key=_by_trial))}
        (folder / f"population_{task}.json").write_text(json.dumps(body, indent=2) + "\n")
    return entry


def _by_trial(item) -> tuple[int, int]:
    s, t = item[0].removeprefix("btbank").split("_")
    return int(s), int(t)


def _attestation(n_overlap: int) -> str:
    lines = [ATTESTATION_PHRASES[0] + " and taken from the `neuroprobe/train_test_splits.py` "
             "function.", "SIGN (the submitting author signs here after checking)", "",
             ATTESTATION_PHRASES[1] + ".", "SIGN (the submitting author signs here after "
             "checking)"]
    if n_overlap:
        lines.append(f"The encoder was pretrained on {n_overlap} Neuroprobe subject-trial(s) "
                     "(see the run's recordings and evaluation.heldout_* settings).")
    return "\n".join(lines) + "\n"


def validate_submission(entry: str | Path, complete: bool = True) -> list[str]:
    """Problems of a leaderboard entry folder (empty: valid). The checks of the neuroprobe
    repository's submission test, plus (``complete``) every task and every Neuroprobe-Lite
    subject-trial of each split present, and each split's fold count."""
    entry = Path(entry)
    problems = []
    if not ENTRY_NAME.match(entry.name):
        problems.append(f"{entry.name}: not MODELNAME_AUTHORFIRSTNAME_AUTHORLASTNAME_D_M_YYYY")
    for name in ("metadata.json", "PUBLICATION.bib", "ATTESTATION.txt"):
        if not (entry / name).exists():
            problems.append(f"{name} missing")
    header_types = {"model_name": str, "description": str, "author": str, "organization": str,
                    "organization_url": str, "timestamp": (int, float)}
    if (entry / "metadata.json").exists():
        problems += _fields(json.loads((entry / "metadata.json").read_text()), header_types,
                            "metadata.json")
    if (entry / "PUBLICATION.bib").exists():
        bib = (entry / "PUBLICATION.bib").read_text().strip()
        if not bib or (bib != "N/A" and not ("@" in bib and "{" in bib and "}" in bib)):
            problems.append("PUBLICATION.bib is neither N/A nor a bibtex entry")
    if (entry / "ATTESTATION.txt").exists():
        text = (entry / "ATTESTATION.txt").read_text().strip()
        if text != "N/A":
            problems += [f"ATTESTATION.txt lacks {p!r}" for p in ATTESTATION_PHRASES
                         if p not in text]
            if text.count("SIGN") < 2:
                problems.append("ATTESTATION.txt needs two SIGN lines")
    splits = {split: entry / folder for split, folder in npb.SPLIT_FOLDERS.items()
              if (entry / folder).is_dir()}
    if not splits:
        problems.append(f"no split folder ({', '.join(npb.SPLIT_FOLDERS.values())})")
    for split, folder in splits.items():
        files = {p.name[len("population_"):-len(".json")]: p
                 for p in folder.glob("population_*.json")}
        unexpected = sorted(set(files) - set(npb.TASKS))
        if unexpected:
            problems.append(f"{folder.name}: unexpected tasks {unexpected}")
        missing = sorted(set(npb.TASKS) - set(files))
        if missing and complete:
            problems.append(f"{folder.name}: no population file for tasks {missing}")
        for _, path in sorted(files.items()):
            problems += _population(path, split, complete)
    return problems


def _fields(data: dict, types: dict, where: str) -> list[str]:
    out = []
    for field, kind in types.items():
        if field not in data:
            out.append(f"{where}: field {field!r} missing")
        elif not isinstance(data[field], kind) or isinstance(data[field], bool):
            out.append(f"{where}: field {field!r} has type {type(data[field]).__name__}")
    return out


def _population(path: Path, split: str, complete: bool) -> list[str]:
    where = f"{path.parent.name}/{path.name}"
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [f"{where}: not JSON ({err})"]
    problems = _fields(data, {"model_name": str, "description": str, "author": str,
                              "organization": str, "organization_url": str,
                              "timestamp": (int, float), "evaluation_results": dict}, where)
    results = data.get("evaluation_results")
    if not isinstance(results, dict) or not results:
        return problems + [f"{where}: evaluation_results must be a non-empty dict"]
    expected = {npb.session_key(s, t) for s, t in npb.LITE_SUBJECT_TRIALS
                if split != "cross_subject" or s != npb.CROSS_SUBJECT_TRAIN[0]}
    unknown = sorted(set(results) - expected)
    if unknown:
        problems.append(f"{where}: sessions {unknown} are not Neuroprobe-Lite's")
    if complete and set(results) != expected:
        problems.append(f"{where}: sessions {sorted(expected - set(results))} missing")
    n_folds = npb.N_FOLDS if split == "within_session" else 1
    for key, session in results.items():
        population = session.get("population") if isinstance(session, dict) else None
        if not isinstance(population, dict):
            problems.append(f"{where}: {key} has no 'population' dict")
            continue
        for bin_name, time_bin in population.items():
            spot = f"{where}: {key}/{bin_name}"
            if not isinstance(time_bin, dict):
                problems.append(f"{spot} is not a dict")
                continue
            problems += _fields(time_bin, {"time_bin_start": (int, float),
                                           "time_bin_end": (int, float), "folds": list}, spot)
            folds = time_bin.get("folds")
            if not isinstance(folds, list) or not folds:
                problems.append(f"{spot}: 'folds' must hold at least one fold")
                continue
            if len(folds) != n_folds:
                problems.append(f"{spot}: {len(folds)} folds, {split} has {n_folds}")
            for i, fold in enumerate(folds):
                value = fold.get("test_roc_auc") if isinstance(fold, dict) else None
                if not isinstance(value, int | float) or isinstance(value, bool) \
                        or not 0.0 <= value <= 1.0:
                    problems.append(f"{spot}: fold {i} test_roc_auc {value!r} is not in [0, 1]")
    return problems
