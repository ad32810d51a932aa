"""Reading the outputs of a run that the figures draw: result tables, training histories, the
per-run curves and head weights, localization tables and the simulation's ground truth."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..evaluation import read_results

log = logging.getLogger("barista")

_PAIR_DIR = re.compile(r"^(?P<encode>[^-]+)-(?P<mask>[^-]+)$")


def read_table(path: str | Path) -> pd.DataFrame:
    """A result table; one written before a column was renamed is read with today's names."""
    return read_results(path)


_SEED_DIR = re.compile(r"^seed(?P<seed>[0-9]+)$")


def read_histories(paths: list[str | Path]) -> pd.DataFrame:
    """Pretraining histories, each tagged with the model, variant, scale pair and pretraining
    seed of its folder (``models/<model>/<variant>/<encode>-<mask>/seed<k>/history.parquet``,
    or ``models/<model>/<encode>-<mask>/history.parquet``: variant ``paper``, seed 0)."""
    frames = []
    for path in map(Path, paths):
        folder, seed, variant = path.parent, 0, None
        if (s := _SEED_DIR.match(folder.name)) is not None:
            seed, folder = int(s["seed"]), folder.parent
            variant, model = folder.parent.name, folder.parent.parent.name
        else:
            variant, model = "paper", folder.parent.name
        m = _PAIR_DIR.match(folder.name)
        if m is None:
            raise DataError(f"cannot tell the scale pair of {path}: its folder is not "
                            "<encode>-<mask>")
        frame = pd.read_parquet(path).assign(model=model, variant=variant, pretrain_seed=seed,
                                             **m.groupdict())
        frames.append(frame.rename(columns={"encode": "encode_scale", "mask": "mask_scale"}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_runs(run_dirs: list[str | Path], name: str) -> pd.DataFrame:
    """``<name>.parquet`` (``curve`` or ``importance``) of every finetuning run folder that has
    one; folders without it (the linear floor) are skipped."""
    frames = []
    for run in map(Path, run_dirs):
        path = run / f"{name}.parquet"
        if path.exists():
            frames.append(read_results(path))
        else:
            log.info("no %s in %s", path.name, run)
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    for column in ("subject", "session", "recording", "model", "encode_scale", "mask_scale",
                   "task", "setting"):
        if column in table:
            table[column] = table[column].astype(str)
    return table


def read_localization(paths: list[str | Path]) -> pd.DataFrame:
    """All subjects' localization tables (``localization/sub-<S>.parquet``)."""
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=["subject", "session", "channel", "x", "y", "z", "parcel",
                                     "lobe", "hemisphere", "keep"])
    table = pd.concat(frames, ignore_index=True)
    for column in ("subject", "session", "channel"):
        table[column] = table[column].astype(str)
    return table


def simulation_folder(bids_root: str | Path | None) -> Path | None:
    """``derivatives/simulation`` of a simulated dataset, or None for real data."""
    if bids_root is None:
        return None
    folder = Path(bids_root) / "derivatives" / "simulation"
    return folder if (folder / "contacts.tsv").exists() else None


def read_ground_truth(bids_root: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(contacts, parcels) of the simulation's ground truth: per-contact and per-parcel speech and
    sentence-onset gains; None when the dataset is not simulated."""
    folder = simulation_folder(bids_root)
    if folder is None:
        return None
    text = {"subject": str, "session": str, "channel": str, "hemisphere": str, "parcel": str}
    contacts = pd.read_csv(folder / "contacts.tsv", sep="\t", dtype=text,
                           keep_default_na=False)
    parcels = pd.read_csv(folder / "ground_truth.tsv", sep="\t", dtype=text,
                          keep_default_na=False)
    return contacts, parcels
