"""The Neuroprobe benchmark (Zahorodnii et al., arXiv 2509.21671): the one place that touches the
``neuroprobe`` package.

Neuroprobe defines its samples, labels and train/val/test splits through its package
(``pip install --no-deps neuroprobe==0.1.8``; ``--no-deps`` because it declares torchvision,
which it never imports and which would pull a second torch). A leaderboard entry must use those
splits, so they are taken from the package here, never rewritten: :func:`protocol_tables` calls
``generate_splits_within_session / cross_session / cross_subject`` with ``output_indices=True``
and turns the datasets they return into plain tables (which sample, which label, which samples
of the Brain Treebank HDF5 file, which role in which split).

Importing the package is awkward in three ways, all handled in :func:`package` alone:

- it reads the environment variable ``ROOT_DIR_BRAINTREEBANK`` at import and copies it into
  each of its modules (``from .config import *``), so the dataset root is set in every one;
- it reads the word/non-verbal alignment tables of the real recordings from its own folder;
  a dataset that is not the real Brain Treebank (the Brain Treebank-shaped fixture) has
  alignment tables of its own (:func:`derive_alignment`), pointed at the same way;
- it imports torch: the workflow's parse step must not, so the few constants the DAG needs
  are copied below and ``tests/test_neuroprobe.py`` checks them against the package's.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BaristaError, ConfigError, DataError

log = logging.getLogger("barista")

PACKAGE_VERSION = "0.1.8"
INSTALL = f"pip install --no-deps neuroprobe=={PACKAGE_VERSION}"

# --- constants of neuroprobe/config.py (checked against the package by tests/test_neuroprobe.py)
SAMPLING_RATE = 2048  # Hz of the Brain Treebank recordings; the package's indices count these
WINDOW_S = 1.0  # the leaderboard's window: 0 s before to 1 s after the word onset
N_FOLDS = 2  # within-session folds of Neuroprobe-Lite
LITE_SUBJECT_TRIALS = ((1, 1), (1, 2), (2, 0), (2, 4), (3, 0), (3, 1), (4, 0), (4, 1), (7, 0),
                       (7, 1), (10, 0), (10, 1))
FULL_SUBJECT_TRIALS = ((1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (2, 5),
                       (2, 6), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (5, 0), (6, 0),
                       (6, 1), (6, 4), (7, 0), (7, 1), (8, 0), (9, 0), (10, 0), (10, 1))
# Neuroprobe-Full's cross-session training trial: the subject's longest (else second longest)
LONGEST_TRIALS = {1: (0, 1), 2: (4, 6), 3: (2, 1), 4: (2, 1), 5: (0,), 6: (0, 2), 7: (1, 0),
                  8: (0,), 9: (0,), 10: (1, 0)}
CROSS_SUBJECT_TRAIN = (2, 4)  # DS_DM_TRAIN_SUBJECT_ID, DS_DM_TRAIN_TRIAL_ID
TASKS = {
    "onset": "Sentence Onset", "speech": "Speech", "volume": "Volume",
    "delta_volume": "Delta Volume", "pitch": "Voice Pitch", "word_index": "Word Position",
    "word_gap": "Inter-word Gap", "gpt2_surprisal": "GPT-2 Surprisal",
    "word_head_pos": "Head Word Position", "word_part_speech": "Part of Speech",
    "word_length": "Word Length", "global_flow": "Global Optical Flow",
    "local_flow": "Local Optical Flow", "frame_brightness": "Frame Brightness",
    "face_num": "Number of Faces",
}
SPLIT_TYPES = ("within_session", "cross_session", "cross_subject")
# folder names of a leaderboard entry (leaderboard/<entry>/<Split>/population_<task>.json)
SPLIT_FOLDERS = {"within_session": "Within-Session", "cross_session": "Cross-Session",
                 "cross_subject": "Cross-Subject"}
# non-verbal chunks (the negatives of speech and onset), as the package's tables were made:
# 1 s chunks from 2 s after the last word's end, every 0.5 s, ending 3 s before the next word
NONVERBAL_PAD_AFTER_WORD_S = 2.0
NONVERBAL_STEP_S = 0.5
NONVERBAL_PAD_BEFORE_WORD_S = 3.0


def subject_trials(lite: bool) -> tuple[tuple[int, int], ...]:
    return LITE_SUBJECT_TRIALS if lite else FULL_SUBJECT_TRIALS


def train_trial(split_type: str, subject: int, trial: int, lite: bool = True
                ) -> tuple[int, int] | None:
    """The (subject, trial) a split type trains on when ``(subject, trial)`` is tested; None for
    within-session (it trains on folds of the tested trial itself). Mirrors the choice inside
    the package's ``generate_splits_cross_session/cross_subject``."""
    if split_type == "within_session":
        return None
    if split_type == "cross_subject":
        if subject == CROSS_SUBJECT_TRAIN[0]:
            raise ConfigError(f"Neuroprobe cross_subject never tests subject {subject}: it is "
                              "the subject every cross-subject model trains on")
        return CROSS_SUBJECT_TRAIN
    if split_type != "cross_session":
        raise ConfigError(f"unknown Neuroprobe split type {split_type!r}; one of {SPLIT_TYPES}")
    if lite:
        others = [t for s, t in LITE_SUBJECT_TRIALS if s == subject and t != trial]
        if not others:
            raise ConfigError(f"subject {subject} has no second Neuroprobe-Lite trial to train "
                              "a cross_session model on")
        return subject, others[0]
    longest = LONGEST_TRIALS.get(subject, ())
    if len(longest) < 2:
        raise ConfigError(f"subject {subject} has a single trial: no Neuroprobe cross_session")
    return subject, longest[1] if longest[0] == trial else longest[0]


def evaluated(present: list[tuple[int, int]], split_type: str, lite: bool = True
              ) -> list[tuple[int, int]]:
    """The Neuroprobe subject-trials among ``present`` that ``split_type`` tests: those of the
    benchmark whose training trial is present too."""
    have = set(present)
    out = []
    for subject, trial in sorted(have & set(subject_trials(lite))):
        if split_type == "cross_subject" and subject == CROSS_SUBJECT_TRAIN[0]:
            continue
        if split_type == "cross_session" and lite and sum(
                s == subject for s, _ in LITE_SUBJECT_TRIALS) < 2:
            continue
        if split_type == "cross_session" and not lite and len(LONGEST_TRIALS[subject]) < 2:
            continue
        train = train_trial(split_type, subject, trial, lite)
        if train is None or train in have:
            out.append((subject, trial))
    return out


def subject_trial(subject: str, session: str) -> tuple[int, int]:
    """Brain Treebank subject and trial numbers of a recording's ``subject`` and ``session``
    labels (``1``, ``trial002`` -> 1, 2)."""
    digits = [re.sub(r"\D", "", str(x)) for x in (subject, session)]
    if not all(digits):
        raise DataError(f"cannot read a Brain Treebank subject and trial from subject "
                        f"{subject!r}, session {session!r}")
    return int(digits[0]), int(digits[1])


def session_key(subject: int, trial: int) -> str:
    """The benchmark's name of a subject-trial (``btbank1_1``)."""
    return f"btbank{subject}_{trial}"


# --- the package ---------------------------------------------------------------------------

def bundled_alignment_dir() -> Path:
    """The package's alignment tables of the real recordings, found without importing it."""
    from importlib.util import find_spec

    spec = find_spec("neuroprobe")
    if spec is None or not spec.submodule_search_locations:
        raise BaristaError(f"the Neuroprobe protocol needs the neuroprobe package: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "braintreebank_features_time_alignment"


def package(root: str | Path, alignment_dir: str | Path | None = None):
    """The ``neuroprobe`` package, reading the Brain Treebank layout at ``root`` and the
    alignment tables in ``alignment_dir`` (None: its own, those of the real recordings)."""
    root = str(Path(root).resolve())
    os.environ["ROOT_DIR_BRAINTREEBANK"] = root  # read once, when the package is imported
    try:
        import neuroprobe
        from neuroprobe import braintreebank_subject, config, datasets
    except ImportError as err:
        raise BaristaError(f"the Neuroprobe protocol needs the neuroprobe package ({err}): "
                           f"{INSTALL}") from err
    version = metadata.version("neuroprobe")
    if version != PACKAGE_VERSION:  # its splits define the benchmark: say which ones were used
        log.warning("neuroprobe %s is installed; this pipeline was checked against %s",
                    version, PACKAGE_VERSION)
    # each module holds its own copy of these (``from .config import *``): set every one, so a
    # second root in one process (tests) or a dataset's own alignment tables are the ones read
    for module in (config, braintreebank_subject, datasets):
        module.ROOT_DIR = root
    datasets.SAVE_SUBJECT_TRIAL_DF_DIR = str(alignment_dir or bundled_alignment_dir())
    return neuroprobe


@dataclass
class ProtocolTables:
    """One tested subject-trial's part of the benchmark, for each task asked for.

    ``samples``: ``task, sample, label, start, stop`` (sample = index in the package's dataset;
    start/stop = samples of the trial's HDF5 file, at :data:`SAMPLING_RATE`).
    ``roles``: ``task, split, sample, role`` for every split that tests this trial
    (``within_session0``, ``within_session1``, ``cross_session``, ``cross_subject``; roles
    ``train``, ``val``, ``test``); cross-trial splits train on every sample of ``train_of``.
    ``electrodes``: the benchmark's electrodes of the subject (the Lite subset), in order.
    ``train_of``: split type -> the (subject, trial) it trains on.
    """

    samples: pd.DataFrame
    roles: pd.DataFrame
    electrodes: list[str]
    train_of: dict[str, tuple[int, int]]


def _flatten(dataset) -> tuple[object, np.ndarray]:
    """(base dataset, sample indices into it) of a dataset or a chain of torch ``Subset``s."""
    from torch.utils.data import Subset

    index = None
    while isinstance(dataset, Subset):
        inner = np.asarray(dataset.indices, dtype=np.int64)
        index = inner if index is None else inner[index]
        dataset = dataset.dataset
    return dataset, np.arange(len(dataset)) if index is None else index


def dataset_samples(dataset) -> pd.DataFrame:
    """``sample, label, start, stop`` of every sample of a package dataset built with
    ``output_indices=True`` (the neural data are never read)."""
    rows = []
    for i in range(len(dataset)):
        item = dataset[i]
        start, stop = item["data"] if isinstance(item, dict) else item[0]
        label = item["label"] if isinstance(item, dict) else item[1]
        rows.append((i, int(label), int(start), int(stop)))
    return pd.DataFrame(rows, columns=["sample", "label", "start", "stop"])


def protocol_tables(root: str | Path, subject: int, trial: int, tasks: list[str],
                    split_types: list[str], *, lite: bool = True,
                    alignment_dir: str | Path | None = None) -> ProtocolTables:
    """The samples and splits of ``(subject, trial)`` as the package defines them.

    Split types that do not test this trial (cross_subject on the training subject, or a
    training trial outside the benchmark) are left out; the caller decides which apply
    (:func:`evaluated`).
    """
    import torch

    np_pkg = package(root, alignment_dir)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"config key 'neuroprobe.tasks': unknown task(s) {unknown}; "
                          f"Neuroprobe's are {sorted(TASKS)}")
    if (subject, trial) not in subject_trials(lite):
        raise ConfigError(f"subject {subject} trial {trial} is not a Neuroprobe"
                          f"{'-Lite' if lite else ''} subject-trial")
    subjects = {}

    def subject_of(s: int):
        if s not in subjects:
            subjects[s] = _checked(lambda: np_pkg.BrainTreebankSubject(s, cache=False,
                                                                       dtype=torch.float32),
                                   root, s, None, None)
        return subjects[s]

    split_fns = {
        "within_session": lambda task: np_pkg.generate_splits_within_session(
            subject_of(subject), trial, task, lite=lite, output_indices=True),
        "cross_session": lambda task: np_pkg.generate_splits_cross_session(
            subject_of(subject), trial, task, lite=lite, output_indices=True),
        "cross_subject": lambda task: np_pkg.generate_splits_cross_subject(
            {subject: subject_of(subject), CROSS_SUBJECT_TRAIN[0]:
             subject_of(CROSS_SUBJECT_TRAIN[0])}, subject, trial, task, lite=lite,
            output_indices=True),
    }
    samples, roles, electrodes, train_of = [], [], None, {}
    for task in tasks:
        base = None
        for split_type in split_types:
            if split_type not in split_fns:
                raise ConfigError(f"config key 'neuroprobe.split_types': unknown {split_type!r}")
            if split_type == "cross_subject" and subject == CROSS_SUBJECT_TRAIN[0]:
                continue  # the subject cross-subject models train on is never tested
            train = train_trial(split_type, subject, trial, lite)
            folds = _checked(lambda f=split_fns[split_type], t=task: f(t), root, subject, trial,
                             task)
            for k, fold in enumerate(folds):
                kind = f"{split_type}{k}" if split_type == "within_session" else split_type
                for role in (("train", "val", "test") if split_type == "within_session"
                             else ("val", "test")):
                    dataset, index = _flatten(fold[f"{role}_dataset"])
                    if base is None:
                        base = dataset
                    elif dataset is not base and not _same_samples(dataset, base):
                        raise DataError(f"neuroprobe gave different samples of subject "
                                        f"{subject} trial {trial} ({task}) to two split types")
                    roles.append(pd.DataFrame({"task": task, "split": kind,
                                               "sample": index, "role": role}))
            if train is not None:
                train_of[split_type] = train
        if base is None:
            continue
        samples.append(dataset_samples(base).assign(task=task))
        if electrodes is None:
            electrodes = list(base.electrode_labels)
    if not samples:  # a training trial of the cross-trial splits only: its own samples
        for task in tasks:
            dataset = _checked(lambda t=task: np_pkg.BrainTreebankSubjectTrialBenchmarkDataset(
                subject_of(subject), trial, torch.float32, t, output_indices=True, lite=lite),
                root, subject, trial, task)
            samples.append(dataset_samples(dataset).assign(task=task))
            electrodes = list(dataset.electrode_labels)
        roles.append(pd.DataFrame(columns=["task", "split", "sample", "role"]))
    samples = pd.concat(samples, ignore_index=True)[["task", "sample", "label", "start", "stop"]]
    roles = pd.concat(roles, ignore_index=True)
    return ProtocolTables(samples, roles, electrodes, train_of)


def _same_samples(a, b) -> bool:
    return a.subject_id == b.subject_id and a.trial_id == b.trial_id and \
        dataset_samples(a).equals(dataset_samples(b))


def _checked(call, root, subject, trial, task):
    """Run a package call; turn its bare errors on a bad dataset into ones naming the files."""
    where = f"subject {subject}" + (f" trial {trial}" if trial is not None else "")
    try:
        return call()
    except FileNotFoundError as err:
        raise DataError(f"Neuroprobe ({where}{', task ' + task if task else ''}): file "
                        f"missing under the Brain Treebank root {root}: {err}") from err
    except KeyError as err:
        raise DataError(f"Neuroprobe ({where}{', task ' + task if task else ''}): the data "
                        f"under {root} lack {err} (a transcript feature column, a "
                        "subject in corrupted_elec.json or a movie of the trial)") from err


# --- alignment tables of a dataset that is not the real recordings ------------------------

def derive_alignment(words: pd.DataFrame, timings: pd.DataFrame, n_samples: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The package's two alignment tables (``words_df``, ``nonverbal_df``) of one trial, for
    recordings the package does not ship them for (the fixture).

    ``words``: the movie's ``transcripts/<movie>/features.csv`` (``start``, ``end`` in movie
    seconds; its row index is ``original_index``). ``timings``: the trial's
    ``subject_timings`` table (``movie_time`` -> neural sample ``index``). Word onsets become
    samples by interpolating movie time against the triggers; words whose 1 s window does not
    fit in the ``n_samples`` of the recording are left out. Non-verbal chunks follow the rule
    the package's tables of the real recordings obey (``tests/test_neuroprobe.py`` rebuilds all
    26 of them from their word tables): 1 s chunks from 2 s after the end of the last word,
    every 0.5 s, kept while they end 3 s before the next word starts.
    """
    for column in ("movie_time", "index"):
        if column not in timings:
            raise DataError(f"trigger timings lack column {column!r} (have {list(timings)})")
    for column in ("start", "end"):
        if column not in words:
            raise DataError(f"transcript features lack column {column!r} (have {list(words)})")
    timing = timings.sort_values("movie_time")
    movie, index = timing["movie_time"].to_numpy(float), timing["index"].to_numpy(float)
    words = words[words["start"].notna() & words["end"].notna()]  # words never timed
    start = np.rint(np.interp(words["start"].to_numpy(float), movie, index)).astype(np.int64)
    end = np.rint(np.interp(words["end"].to_numpy(float), movie, index)).astype(np.int64)
    window = int(WINDOW_S * SAMPLING_RATE)
    inside = (start >= 0) & (start + window <= n_samples) & \
        (words["start"].to_numpy(float) >= movie[0]) & (words["end"].to_numpy(float) <= movie[-1])
    words_df = pd.DataFrame({"original_index": words.index[inside], "est_idx": start[inside],
                             "est_end_idx": end[inside],
                             "start": words["start"].to_numpy(float)[inside],
                             "end": words["end"].to_numpy(float)[inside]})
    words_df = words_df.sort_values("est_idx", kind="stable").reset_index(drop=True)
    return words_df, nonverbal_chunks(words_df)


def nonverbal_chunks(words_df: pd.DataFrame) -> pd.DataFrame:
    """Non-verbal chunks between the words of an alignment table (see :func:`derive_alignment`)."""
    onset = words_df["est_idx"].to_numpy(np.int64)
    last_end = np.maximum.accumulate(words_df["est_end_idx"].to_numpy(np.int64))
    window = int(WINDOW_S * SAMPLING_RATE)
    pad_after = int(NONVERBAL_PAD_AFTER_WORD_S * SAMPLING_RATE)
    step = int(NONVERBAL_STEP_S * SAMPLING_RATE)
    pad_before = int(NONVERBAL_PAD_BEFORE_WORD_S * SAMPLING_RATE)
    starts = [np.arange(last_end[i] + pad_after, onset[i + 1] - pad_before - window + 1, step)
              for i in range(len(onset) - 1)]
    starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    return pd.DataFrame({"start": starts / SAMPLING_RATE, "end": starts / SAMPLING_RATE + WINDOW_S,
                         "est_idx": starts, "est_end_idx": starts + window})


def alignment_paths(folder: str | Path, subject: int, trial: int) -> tuple[Path, Path]:
    folder = Path(folder)
    return (folder / f"subject{subject}_trial{trial}_words_df.csv",
            folder / f"subject{subject}_trial{trial}_nonverbal_df.csv")


def write_derived_alignment(root: str | Path, subject: int, trial: int, out_dir: str | Path
                            ) -> dict:
    """Derive and write one trial's alignment tables from the Brain Treebank layout at ``root``
    (its transcript, trigger timings and recording length; :func:`derive_alignment`)."""
    import h5py

    root = Path(root)
    config = package(root).config
    key = f"{session_key(subject, trial)}"
    movie = config.BRAINTREEBANK_SUBJECT_TRIAL_MOVIE_NAME_MAPPING.get(key)
    if movie is None:
        raise DataError(f"Neuroprobe knows no movie of subject {subject} trial {trial}")
    paths = {"transcript": root / "transcripts" / movie / "features.csv",
             "timings": root / "subject_timings" / f"sub_{subject}_trial{trial:03}_timings.csv",
             "recording": root / f"sub_{subject}_trial{trial:03}.h5"}
    for what, path in paths.items():
        if not path.exists():
            raise DataError(f"subject {subject} trial {trial}: {what} file {path} is missing")
    words = pd.read_csv(paths["transcript"])
    if "Unnamed: 0" in words:  # the release's transcripts carry their row number unnamed
        words = words.set_index("Unnamed: 0")
    with h5py.File(paths["recording"], "r") as fh:
        if "data" not in fh or not len(fh["data"]):
            raise DataError(f"{paths['recording']}: no group 'data' of electrode datasets")
        n_samples = len(next(iter(fh["data"].values())))
    try:
        words_df, nonverbal = derive_alignment(words, pd.read_csv(paths["timings"]), n_samples)
    except DataError as err:
        raise DataError(f"subject {subject} trial {trial} ({paths['transcript']}, "
                        f"{paths['timings']}): {err}") from err
    out_words, out_nonverbal = alignment_paths(out_dir, subject, trial)
    out_words.parent.mkdir(parents=True, exist_ok=True)
    words_df.to_csv(out_words, index=False)
    nonverbal.to_csv(out_nonverbal, index=False)
    return {"words": len(words_df), "nonverbal": len(nonverbal), "movie": movie}
