"""A Brain Treebank-shaped dataset for tests and the laptop demo, in the release's exact layout.

Real metadata, simulated signals. The ``neuroprobe`` package (PyPI, MIT licence, Copyright (c)
2025 Andrii Zahorodnii, collaborators and contributors) ships metadata of the real recordings:
every contact's name, shaft, voxel indices (L, I, P) and MNI152 position
(``neuroprobe/mni_coords/btbank<S>_mni_coords.csv``) and every word of every trial aligned to
the neural samples (``neuroprobe/braintreebank_features_time_alignment/
subject<S>_trial<T>_words_df.csv``). Its data files are read by path: importing ``neuroprobe``
reads an environment variable and pulls torchvision, so it is never imported (install it with
``pip install --no-deps neuroprobe``).

A fixture trial is a stretch of ``duration_s`` seconds of the real trial: its words keep their
real timing (a sentence onset is a word whose sentence context is empty), its trigger table
maps movie seconds to the stretch's samples, and its contacts are the real contacts of the
subject's first ``max_shafts`` shafts (temporal shafts first). Their signals come from
:mod:`barista.simulate`: speech responses in the temporal parcels the Destrieux MNI volume
assigns to the real contacts. Labels: Destrieux and Desikan-Killiany from the MNI volumes
(nearest grey matter within 4 mm). What the real data will exercise is put in on purpose:
trigger channels (``DC1``, ``DC2``, ``TRIG1``), a ``*``-marked name, a corrupted contact, a
contact labelled ``Unknown``, one labelled as ventricle, and one without a localization row.
Everything derives from ``seed``: the same arguments write the same values.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .atlas import VolumeAtlas, classify_label, default_atlas, default_dk_atlas
from .braintreebank import SFREQ, VOLTS_PER_UNIT, parse_session
from .errors import ConfigError, DataError
from .reference import laplacian

MARKER = ".barista-fixture.json"
_TRIGGER_NAMES = ("TRIG1", "DC1", "DC2")
_TRIGGER_PERIOD_S = 1.0
_LEAD_S = 4.0  # silence kept before the first sentence of a stretch


def neuroprobe_dir() -> Path:
    """The installed ``neuroprobe`` package folder, found without importing it."""
    spec = importlib.util.find_spec("neuroprobe")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'neuroprobe' package (real Brain Treebank metadata) is not "
                        "installed: pip install --no-deps neuroprobe")
    return Path(list(spec.submodule_search_locations)[0])


def real_contacts(subject: int) -> pd.DataFrame:
    """Contacts of a real subject: ``label``, ``shaft``, ``number``, ``L``, ``I``, ``P``,
    ``hemisphere`` and MNI152 ``x``, ``y``, ``z`` (mm), in the file's order."""
    path = neuroprobe_dir() / "mni_coords" / f"btbank{subject}_mni_coords.csv"
    if not path.is_file():
        raise DataError(f"{path}: no contact table for subject {subject}")
    table = pd.read_csv(path)
    return pd.DataFrame({
        "label": table["electrode_label"].astype(str), "shaft": table["name"].astype(str),
        "number": table["num"].astype(int), "L": table["vox_x"].round().astype(int),
        "I": table["vox_y"].round().astype(int), "P": table["vox_z"].round().astype(int),
        "hemisphere": table["hem"].astype(str), "x": table["mni152_x"],
        "y": table["mni152_y"], "z": table["mni152_z"]})


def real_words(subject: int, trial: int) -> pd.DataFrame:
    """Words of a real trial: ``sample``, ``end_sample`` (neural samples), ``start``,
    ``end`` (movie seconds), ``text`` and ``is_onset`` (first word of a sentence)."""
    folder = neuroprobe_dir() / "braintreebank_features_time_alignment"
    path = folder / f"subject{subject}_trial{trial}_words_df.csv"
    if not path.is_file():
        raise DataError(f"{path}: no word table for subject {subject} trial {trial}")
    table = pd.read_csv(path)
    context = table["context"]
    return pd.DataFrame({
        "sample": table["est_idx"].astype(np.int64),
        "end_sample": table["est_end_idx"].astype(np.int64),
        "start": table["start"].astype(float), "end": table["end"].astype(float),
        "text": table["full_word"].astype(str),
        # the context is the sentence before the word: empty for a sentence's first word
        "is_onset": (context.isna() | (context.astype(str).str.strip() == "")).astype(bool)})


def movie_of(subject: int, trial: int) -> str:
    """Movie id (transcript folder) of a real trial, from neuroprobe's config file text."""
    text = (neuroprobe_dir() / "config.py").read_text(encoding="utf-8")
    m = re.search(rf'"btbank{subject}_{trial}"\s*:\s*"([^"]+)"', text)
    if m is None:
        raise DataError(f"{neuroprobe_dir() / 'config.py'}: no movie for btbank{subject}_{trial}")
    return m.group(1)


def _choose_shafts(contacts: pd.DataFrame, max_shafts: int) -> list[str]:
    """Temporal shafts (``T``, ``LT``, ``RT``) first, each group in the file's order."""
    order = list(dict.fromkeys(contacts["shaft"]))
    temporal = [s for s in order if re.match(r"^[LR]?T", s)]
    return (temporal + [s for s in order if s not in temporal])[:max_shafts]


def _stretch(words: pd.DataFrame, n_times: int, sfreq: float) -> int:
    """First sample of a stretch of the real trial: it starts ``_LEAD_S`` before a sentence
    onset, the movie ran without a pause through it (constant sample - movie time offset) and
    it holds words and silences."""
    # real triggers jitter the offset by a few ms; a pause of the movie shifts it by seconds
    offset = words["sample"] - np.round(words["start"] * sfreq)
    for i in np.flatnonzero(words["is_onset"].to_numpy()):
        first = int(words["sample"].iloc[i] - _LEAD_S * sfreq)
        inside = (words["sample"] >= first) & (words["end_sample"] < first + n_times)
        if first < 0 or inside.sum() < 20 or words["is_onset"][inside].sum() < 3:
            continue
        span = words["end_sample"][inside].max() - words["sample"][inside].min()
        if np.ptp(offset[inside]) <= 0.1 * sfreq and span > 0.6 * n_times:
            return first
    raise DataError("no stretch of the real trial without a pause fits "
                    f"{n_times / sfreq:.0f} s; choose a shorter duration_s")


def _label_at(atlas: VolumeAtlas, xyz: np.ndarray, radius_mm: float = 4.0) -> str:
    name = atlas.label_names(xyz)[0]
    if classify_label(name, xyz[0]).kind in ("white_matter", "unknown"):
        near, _ = atlas.nearest_grey(xyz, radius_mm)
        if near is not None:
            return near
    return name


def make_fixture(out_dir: str | Path, *, sessions: tuple[str, ...] = ("1_0", "1_1"),
                 duration_s: float = 60.0, max_shafts: int = 4, seed: int = 0,
                 dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write a Brain Treebank-shaped release folder at ``out_dir``.

    Parameters
    ----------
    sessions : tuple of str
        Real subject-trials to imitate, ``"S_T"`` (e.g. ``"1_0"``).
    duration_s : float
        Length of each trial.
    max_shafts : int
        Shafts kept per subject (all their contacts).
    seed : int
        Seed of the simulated signals.
    dtype : str
        Sample type in the HDF5 files (the release stores float64; float32 halves the size).
    overwrite : bool
        Replace a fixture this function wrote before (never another folder).
    """
    if duration_s < 20:
        raise ConfigError(f"braintreebank fixture: duration_s must be at least 20 s, got "
                          f"{duration_s}")
    keys = [parse_session(k, "sessions") for k in sessions]
    root = _prepare(Path(out_dir), overwrite)
    atlas, dk_atlas = default_atlas(), default_dk_atlas()
    corrupted, clean, coords = {}, {}, []
    subjects = sorted({s for s, _ in keys})
    implants = {}
    for subject in subjects:
        implants[subject] = _write_subject(root, subject, max_shafts, atlas, dk_atlas, seed)
        corrupted[f"sub_{subject}"] = implants[subject]["corrupted"]
        clean[f"sub_{subject}"] = implants[subject]["clean"]
        coords.append(implants[subject]["coords"])
    _write_json(root / "corrupted_elec.json", corrupted)
    _write_json(root / "clean_laplacian.json", clean)
    pd.concat(coords).to_csv(root / "localization" / "elec_coords_full.csv", index=False)
    movies_written: set[str] = set()
    for subject, trial in keys:
        _write_trial(root, subject, trial, implants[subject], duration_s, seed, dtype,
                     movies_written)
    _write_json(root / MARKER, {"generator": "barista.braintreebank_fixture",
                                "sessions": list(sessions), "duration_s": duration_s,
                                "max_shafts": max_shafts, "seed": seed, "dtype": dtype})
    return root


def _prepare(root: Path, overwrite: bool) -> Path:
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True to replace a "
                                  "fixture")
        if not (root / MARKER).exists():
            raise FileExistsError(f"{root} is not empty and holds no {MARKER}; refusing to "
                                  "delete a folder this module did not write")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")


def _write_subject(root: Path, subject: int, max_shafts: int, atlas: VolumeAtlas,
                   dk_atlas: VolumeAtlas, seed: int) -> dict:
    """Contact names, localization and the selection files of one subject."""
    real = real_contacts(subject)
    shafts = _choose_shafts(real, max_shafts)
    contacts = real[real["shaft"].isin(shafts)]
    contacts = pd.concat([contacts[contacts["shaft"] == s] for s in shafts], ignore_index=True)
    names = contacts["label"].tolist()
    xyz = contacts[["x", "y", "z"]].to_numpy(float)
    destrieux = [_label_at(atlas, p) for p in xyz]
    dk = [_label_at(dk_atlas, p) for p in xyz]
    rng = np.random.default_rng([seed, subject, 0])

    # the odd cases of the real data, at fixed places: a corrupted contact inside the second
    # shaft (its neighbours then lose the Laplacian), a '*'-marked name, an Unknown label,
    # a ventricle label and a contact without a localization row
    second = contacts.index[contacts["shaft"] == shafts[min(1, len(shafts) - 1)]].tolist()
    last = contacts.index[contacts["shaft"] == shafts[-1]].tolist()
    corrupted = [names[second[len(second) // 2]]]
    starred = names[second[0]]
    destrieux[last[1]] = dk[last[1]] = "Unknown"
    hemi = "Left" if contacts["hemisphere"].iloc[last[2]] == "L" else "Right"
    destrieux[last[2]] = dk[last[2]] = f"{hemi}-Lateral-Ventricle"
    no_row = names[last[3]]

    listed = [f"{n}*" if n == starred else n for n in names]
    after_first = int((contacts["shaft"] == shafts[0]).sum())
    listed = listed[:after_first] + [_TRIGGER_NAMES[0]] + listed[after_first:] \
        + list(_TRIGGER_NAMES[1:])
    _write_json(root / "electrode_labels" / f"sub_{subject}" / "electrode_labels.json", listed)

    loc = pd.DataFrame({"Electrode": [f"{n}*" if n == starred else n for n in names],
                        "Destrieux": destrieux, "DesikanKilliany": dk,
                        "L": contacts["L"], "I": contacts["I"], "P": contacts["P"]})
    loc = loc[loc["Electrode"] != no_row]
    folder = root / "localization" / f"sub_{subject}"
    folder.mkdir(parents=True, exist_ok=True)
    loc.to_csv(folder / "depth-wm.csv", index=False)
    kept = [n for n in names if n not in corrupted]
    clean = [d.name for d in laplacian(kept)]
    coords = pd.DataFrame({"Subject": f"sub_{subject}", "Electrode": names,
                           "X": xyz[:, 0].round(3), "Y": xyz[:, 1].round(3),
                           "Z": xyz[:, 2].round(3)})
    regions = [classify_label(label, p[0]) for label, p in zip(destrieux, xyz, strict=True)]
    return {"names": names, "listed": listed, "xyz": xyz, "regions": regions,
            "corrupted": corrupted, "clean": clean, "coords": coords,
            "pickup": rng.lognormal(0.0, 0.5, len(names)),
            "gain_factor": rng.uniform(0.6, 1.4, (len(names), 2)),
            "sign": rng.choice([-1.0, 1.0], len(names))}


def _write_trial(root: Path, subject: int, trial: int, implant: dict, duration_s: float,
                 seed: int, dtype: str, movies_written: set[str]) -> None:
    from . import simulate as sim

    sfreq = SFREQ
    n_times = int(round(duration_s * sfreq))
    words = real_words(subject, trial)
    movie = movie_of(subject, trial)
    first = _stretch(words, n_times, sfreq)
    inside = words[(words["sample"] >= first) & (words["end_sample"] < first + n_times)]
    # the real clock over the stretch: sample = a + b * movie time, fitted to its words
    b, a = np.polyfit(inside["start"], inside["sample"], 1)
    t0 = (first - a) / b  # movie time at the stretch's first sample

    # triggers once a second of movie time over the stretch: index = sample of that time
    k = np.arange(int(np.floor(duration_s * sfreq / b / _TRIGGER_PERIOD_S)) + 1)
    movie_time = np.round(t0 + k * _TRIGGER_PERIOD_S, 6)
    timings = pd.DataFrame({"movie_time": movie_time,
                            "index": np.round(a + b * movie_time - first).astype(np.int64),
                            "start_time": np.round(k * _TRIGGER_PERIOD_S, 6)})
    folder = root / "subject_timings"
    folder.mkdir(parents=True, exist_ok=True)
    timings.to_csv(folder / f"sub_{subject}_trial{trial:03d}_timings.csv", index=False)
    _write_json(root / "subject_metadata" / f"sub_{subject}_trial{trial:03d}_metadata.json",
                {"title": movie.replace("-", " ").title(), "filename": movie})
    if movie not in movies_written:
        _write_transcript(root / "transcripts" / movie / "features.csv", words)
        movies_written.add(movie)

    onset = (inside["sample"].to_numpy() - first) / sfreq
    duration = np.maximum(inside["end_sample"].to_numpy() - inside["sample"].to_numpy(), 1) \
        / sfreq
    stim = sim.Stimulus(onset=onset, duration=duration,
                        sentence_onset=inside["is_onset"].to_numpy(int),
                        word=inside["text"].tolist(), speech_periods=_periods(onset, duration),
                        n_times=n_times)
    gains = np.array([sim._parcel_gains(r) for r in implant["regions"]]) * implant["gain_factor"]
    model = sim.Implant(names=implant["names"], xyz_mm=implant["xyz"],
                        regions=implant["regions"], speech_gain=np.round(gains[:, 0], 3),
                        sentence_gain=np.round(gains[:, 1], 3), sentence_sign=implant["sign"],
                        pickup=implant["pickup"])
    rng = np.random.default_rng([seed, subject, trial + 1])
    bad = implant["names"].index(implant["corrupted"][0])
    brain = sim._simulate_signals(rng, model, stim, sfreq, 60.0, {"flat": bad, "noisy": bad})
    brain /= VOLTS_PER_UNIT  # the release stores microvolts
    pulses = np.zeros(n_times)
    pulses[timings["index"].to_numpy()[timings["index"].to_numpy() < n_times]] = 1.0
    pulses = np.convolve(pulses, np.full(int(0.05 * sfreq), 5000.0))[:n_times]
    rows = {n: i for i, n in enumerate(implant["names"])}
    with h5py.File(root / f"sub_{subject}_trial{trial:03d}.h5", "w") as fh:
        group = fh.create_group("data")
        for i, name in enumerate(implant["listed"]):
            clean = name.replace("*", "")
            values = brain[rows[clean]] if clean in rows else pulses
            group.create_dataset(f"electrode_{i}", data=values.astype(dtype))


def _periods(onset: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """Speech periods: runs of words with gaps under 1 s."""
    if not len(onset):
        return np.zeros((0, 2))
    ends = onset + duration
    breaks = np.flatnonzero(onset[1:] - np.maximum.accumulate(ends)[:-1] > 1.0) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(onset)]])
    return np.array([(onset[a], ends[a:b].max()) for a, b in zip(starts, stops, strict=True)])


def _write_transcript(path: Path, words: pd.DataFrame) -> None:
    """The movie's transcript, columns as in the release (an unnamed index column first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onset = words["is_onset"].to_numpy(bool)
    table = pd.DataFrame({"start": words["start"].round(6), "end": words["end"].round(6),
                          "text": words["text"], "is_onset": onset,
                          "is_offset": np.append(onset[1:], True)})
    # a word the aligner could not time, as real transcripts have
    table.loc[len(table)] = [np.nan, np.nan, "[inaudible]", False, False]
    table.to_csv(path, index=True)


def make_skeleton(out_dir: str | Path, sessions: list[str], n_contacts: int = 6) -> Path:
    """A valid layout with empty signals (no samples), for dry runs over many sessions: one
    shaft of ``n_contacts`` contacts per subject, no words. Needs no ``neuroprobe``."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    keys = [parse_session(k, "sessions") for k in sessions]
    names = [f"T1a{i + 1}" for i in range(n_contacts)]
    subjects = sorted({s for s, _ in keys})
    _write_json(root / "corrupted_elec.json", {f"sub_{s}": [] for s in subjects})
    for s in subjects:
        _write_json(root / "electrode_labels" / f"sub_{s}" / "electrode_labels.json", names)
        folder = root / "localization" / f"sub_{s}"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"Electrode": names, "Destrieux": "ctx_lh_G_temp_sup-Lateral",
                      "DesikanKilliany": "ctx-lh-superiortemporal", "L": 150, "I": 140,
                      "P": 120}).to_csv(folder / "depth-wm.csv", index=False)
    for s, t in keys:
        with h5py.File(root / f"sub_{s}_trial{t:03d}.h5", "w") as fh:
            group = fh.create_group("data")
            for i in range(n_contacts):
                group.create_dataset(f"electrode_{i}", shape=(0,), dtype="float32")
        _write_json(root / "subject_metadata" / f"sub_{s}_trial{t:03d}_metadata.json",
                    {"title": "empty", "filename": "empty"})
    return root
