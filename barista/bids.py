"""Finding recordings and their sidecar files in a BIDS iEEG dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mne_bids import BIDSPath, find_matching_paths, get_entities_from_fname

from .errors import DataError

RAW_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set", ".fif", ".nwb", ".mefd")
READABLE = (".vhdr", ".edf", ".bdf", ".set", ".fif")


def list_recordings(bids_root: str | Path, task: str | None = None) -> list[str]:
    """Basenames (``sub-01_ses-01_task-x_run-01``) of every iEEG recording, sorted."""
    root = Path(bids_root)
    if not (root / "dataset_description.json").exists():
        raise DataError(f"{root} is not a BIDS dataset: dataset_description.json is missing")
    paths = find_matching_paths(root, datatypes="ieeg", suffixes="ieeg", tasks=task,
                                extensions=list(RAW_EXTENSIONS))
    names = set()
    for p in paths:
        if "derivatives" in p.fpath.relative_to(root).parts:
            continue
        if p.extension not in READABLE:
            raise DataError(f"{p.fpath}: {p.extension} iEEG files cannot be read by mne-bids; "
                            "convert them (e.g. to BrainVision or EDF) or exclude them")
        names.add(p.copy().update(extension=None, suffix=None).basename)
    if not names:
        raise DataError(f"no iEEG recordings found under {root}"
                        + (f" for task '{task}'" if task else ""))
    return sorted(names)


def bids_path_of(bids_root: str | Path, recording: str) -> BIDSPath:
    """The raw-data BIDSPath of a recording basename (extension resolved on disk)."""
    ents = get_entities_from_fname(recording, on_error="raise")
    path = BIDSPath(root=bids_root, datatype="ieeg", suffix="ieeg",
                    **{k: v for k, v in ents.items() if v is not None})
    matches = [m for m in path.match() if m.extension in READABLE]
    if not matches:
        raise DataError(f"no readable raw file for recording {recording} under {bids_root}")
    return matches[0]


def sidecar(raw_path: BIDSPath, suffix: str, extension: str) -> Path:
    """Path of a recording's sidecar (e.g. ``events``/``.tsv``), which may not exist."""
    return raw_path.copy().update(suffix=suffix, extension=extension).fpath


def read_tsv(path: str | Path) -> pd.DataFrame:
    """Read a BIDS TSV robustly (byte-order mark, CRLF line ends, ``n/a``)."""
    path = Path(path)
    try:
        return pd.read_csv(path, sep="\t", encoding="utf-8-sig", na_values=["n/a"],
                           keep_default_na=True)
    except FileNotFoundError as err:
        raise DataError(f"file not found: {path}") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a readable TSV file: {err}") from err
