"""Brain Treebank (braintreebank.dev), read in place: layout, channel selection, localization,
word events and the recording list.

The release is not BIDS. Its extracted layout (``S`` = subject 1..10, ``TTT`` = trial, three
digits):

==========================================================  =====================================
``sub_S_trialTTT.h5`` (or under ``all_subject_data/``)      group ``data``, one 1-D dataset per
                                                            contact, ``electrode_<i>`` in the
                                                            order of ``electrode_labels.json``
``electrode_labels/sub_S/electrode_labels.json``            contact names (``T2aA12``: shaft
                                                            ``T2aA``, contact 12)
``localization/sub_S/depth-wm.csv``                         ``Electrode``, ``Destrieux``,
                                                            ``DesikanKilliany``, integer ``L``,
                                                            ``I``, ``P``
``corrupted_elec.json``                                     ``{"sub_S": [contacts to drop]}``
``clean_laplacian.json`` (optional)                         ``{"sub_S": [Laplacian-able
                                                            contacts]}``
``subject_timings/sub_S_trialTTT_timings.csv``              ``movie_time``, ``index`` (sample)
``subject_metadata/sub_S_trialTTT_metadata.json``           ``title``, ``filename`` (movie id)
``transcripts/<movie id>/features.csv``                     one row per word: ``start``, ``end``
                                                            (movie s), ``text``, ``is_onset``
==========================================================  =====================================

Contact names carry ``*`` and ``#`` marks in places; they are removed everywhere a name is read
(labels, corrupted list, localization), as the release's other readers do. Trial ``TTT`` of
subject ``S`` becomes the recording ``sub-S_ses-T`` (e.g. ``sub-1_ses-0``), so every later step
sees the same names as for a BIDS source. Nothing here reads the neural signal; the streaming
preprocessing is :mod:`barista.braintreebank_preprocess`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .atlas import UNKNOWN, classify_label
from .errors import ConfigError, DataError
from .localize import COLUMNS as BIDS_COLUMNS
from .reference import Derivation, _find, derivations, parse_contact

SFREQ = 2048.0  # the release's sampling rate (Hz)
LINE_FREQ = 60.0  # recorded in Boston
VOLTS_PER_UNIT = 1e-6  # the HDF5 values are microvolts (as the release's readers treat them)
LIP_TABLE_SIZE = 200  # the paper's channel tables hold L, I, P ids 0..199 per axis
LIP_CENTRE = 128  # centre voxel of the 256-voxel, 1 mm volume the L, I, P indices count in

#: The release's 26 subject-trials (movie sessions): subject -> trial numbers.
RELEASE_TRIALS: dict[int, tuple[int, ...]] = {
    1: (0, 1, 2), 2: (0, 1, 2, 3, 4, 5, 6), 3: (0, 1, 2), 4: (0, 1, 2), 5: (0,),
    6: (0, 1, 4), 7: (0, 1), 8: (0,), 9: (0,), 10: (0, 1),
}

#: Localization columns added to :data:`barista.localize.COLUMNS` (same names for BIDS data).
EXTRA_COLUMNS = ["desikan_killiany", "lip_l", "lip_i", "lip_p"]
COLUMNS = BIDS_COLUMNS + [c for c in EXTRA_COLUMNS if c not in BIDS_COLUMNS]

_TRIAL_FILE = re.compile(r"^sub_(\d+)_trial(\d{3})\.h5$")
_SESSION = re.compile(r"^(\d+)_(\d+)$")
_LOCALIZATION_COLUMNS = ("Electrode", "Destrieux", "DesikanKilliany", "L", "I", "P")

# the release's lobe ids (release_lobe_index.tsv) and what each groups; odd ids are the left
# hemisphere, even ids the right (11 and 12 are reserved and unused, id 0 is unknown)
_LOBE_OF_ID = {1: "amygdala", 2: "amygdala", 3: "hippocampus", 4: "hippocampus",
               5: "frontal", 6: "frontal", 7: "parietal", 8: "parietal", 9: "temporal",
               10: "temporal", 13: "cingulate", 14: "cingulate", 15: "insula", 16: "insula",
               17: "putamen", 18: "putamen", 19: "ventricle", 20: "ventricle"}


def clean_label(name: str) -> str:
    """A contact name without the release's ``*`` and ``#`` marks."""
    return str(name).replace("*", "").replace("#", "").strip()


def is_trigger(name: str) -> bool:
    """Trigger channels (``DC*``, ``TRIG*``) carry movie sync pulses, not brain signal."""
    upper = name.upper()
    return upper.startswith("DC") or upper.startswith("TRIG")


def recording_name(subject: int | str, trial: int | str) -> str:
    """``sub-<S>_ses-<T>`` of subject ``S``, trial ``T`` (BIDS-style, so later steps parse it)."""
    return f"sub-{int(subject)}_ses-{int(trial)}"


def session_key(subject: int | str, trial: int | str) -> str:
    """``S_T``: how ``evaluation.sessions`` and ``dataset.braintreebank.sessions`` name a trial."""
    return f"{int(subject)}_{int(trial)}"


def parse_session(key: str, where: str) -> tuple[int, int]:
    m = _SESSION.match(str(key))
    if m is None:
        raise ConfigError(f"config key '{where}': {key!r} is not a session name like '1_0' "
                          "(subject_trial)")
    return int(m.group(1)), int(m.group(2))


def parse_subject(value, where: str) -> int:
    """A subject filter's entry (``3``, ``"3"``, ``"sub-3"`` or ``"sub_3"``) as its number."""
    text = str(value).removeprefix("sub-").removeprefix("sub_")
    if not text.isdigit():
        raise ConfigError(f"config key '{where}': {value!r} is not a subject number like 3 or "
                          "'sub-3'")
    return int(text)


class Layout:
    """An extracted Brain Treebank release (or a copy of part of it) at ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"Brain Treebank root {self.root} is not a folder (config key "
                            "'dataset.braintreebank.root')")

    # ------------------------------------------------------------------ files
    def _require(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise DataError(f"{path}: file not found ({what} of the Brain Treebank release at "
                            f"{self.root})")
        return path

    def trial_file(self, subject: int, trial: int) -> Path:
        name = f"sub_{subject}_trial{trial:03d}.h5"
        for folder in (self.root, self.root / "all_subject_data"):
            if (folder / name).is_file():
                return folder / name
        raise DataError(f"{self.root / name}: trial file not found (nor under "
                        f"{self.root / 'all_subject_data'}) for subject {subject} trial {trial}")

    def trials(self) -> list[tuple[int, int]]:
        """(subject, trial) of every trial file present, sorted."""
        found = set()
        for folder in (self.root, self.root / "all_subject_data"):
            if folder.is_dir():
                for path in folder.iterdir():
                    m = _TRIAL_FILE.match(path.name)
                    if m:
                        found.add((int(m.group(1)), int(m.group(2))))
        return sorted(found)

    def _json(self, path: Path, what: str):
        self._require(path, what)
        try:
            return json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON: {err}") from err

    def _csv(self, path: Path, what: str, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
        self._require(path, what)
        try:
            table = pd.read_csv(path, encoding="utf-8-sig", **kwargs)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
            raise DataError(f"{path} is not a readable CSV file: {err}") from err
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataError(f"{path}: column(s) {missing} missing (has {list(table.columns)})")
        return table

    def labels_file(self, subject: int) -> Path:
        return self.root / "electrode_labels" / f"sub_{subject}" / "electrode_labels.json"

    def electrode_labels(self, subject: int) -> list[str]:
        """Contact names of a subject in HDF5 order (``electrode_<i>``), marks removed."""
        path = self.labels_file(subject)
        raw = self._json(path, "contact names")
        if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
            raise DataError(f"{path}: expected a JSON list of contact names")
        labels = [clean_label(n) for n in raw]
        seen: dict[str, int] = {}
        for i, name in enumerate(labels):
            if not name:
                raise DataError(f"{path}: entry {i} ({raw[i]!r}) is an empty contact name")
            if name in seen:
                raise DataError(f"{path}: contact {name!r} is listed twice (entries {seen[name]} "
                                f"and {i}, after removing '*' and '#')")
            seen[name] = i
        return labels

    def corrupted(self, subject: int) -> list[str]:
        path = self.root / "corrupted_elec.json"
        table = self._json(path, "corrupted contacts")
        key = f"sub_{subject}"
        if not isinstance(table, dict) or key not in table:
            raise DataError(f"{path}: no entry '{key}' (the release lists every subject)")
        return [clean_label(n) for n in table[key]]

    def clean_laplacian(self, subject: int) -> list[str] | None:
        """Contacts the release marks Laplacian-able, or None without ``clean_laplacian.json``."""
        path = self.root / "clean_laplacian.json"
        if not path.is_file():
            return None
        table = self._json(path, "Laplacian-able contacts")
        key = f"sub_{subject}"
        if not isinstance(table, dict) or key not in table:
            raise DataError(f"{path}: no entry '{key}'")
        return [clean_label(n) for n in table[key]]

    def localization_file(self, subject: int) -> Path:
        return self.root / "localization" / f"sub_{subject}" / "depth-wm.csv"

    def localization(self, subject: int) -> pd.DataFrame:
        path = self.localization_file(subject)
        table = self._csv(path, "contact localization", _LOCALIZATION_COLUMNS)
        table["Electrode"] = table["Electrode"].map(clean_label)
        dups = table["Electrode"][table["Electrode"].duplicated()]
        if len(dups):
            raise DataError(f"{path}: contact {dups.iloc[0]!r} has more than one row")
        return table

    def timings_file(self, subject: int, trial: int) -> Path:
        return self.root / "subject_timings" / f"sub_{subject}_trial{trial:03d}_timings.csv"

    def timings(self, subject: int, trial: int) -> pd.DataFrame:
        path = self.timings_file(subject, trial)
        table = self._csv(path, "movie trigger timings", ("movie_time", "index"))
        t = pd.to_numeric(table["movie_time"], errors="coerce").to_numpy(float)
        idx = pd.to_numeric(table["index"], errors="coerce").to_numpy(float)
        bad = ~(np.isfinite(t) & np.isfinite(idx))
        if bad.any():
            raise DataError(f"{path}: row {int(np.argmax(bad)) + 2} has no numeric movie_time "
                            "and index")
        if len(t) < 2:
            raise DataError(f"{path}: fewer than two triggers; movie time cannot be aligned")
        back = np.diff(t) < 0
        if back.any():
            row = int(np.argmax(back)) + 3
            raise DataError(f"{path}: movie_time goes backwards at row {row}; the alignment of "
                            "words to samples needs it non-decreasing")
        return pd.DataFrame({"movie_time": t, "index": idx})

    def metadata(self, subject: int, trial: int) -> dict:
        path = self.root / "subject_metadata" / f"sub_{subject}_trial{trial:03d}_metadata.json"
        meta = self._json(path, "trial metadata")
        if not isinstance(meta, dict) or not meta.get("filename"):
            raise DataError(f"{path}: key 'filename' (the movie's transcript folder) is missing")
        return meta

    def transcript_file(self, movie: str) -> Path:
        return self.root / "transcripts" / movie / "features.csv"


# ---------------------------------------------------------------------- channel selection


@dataclass(frozen=True)
class Selection:
    """Which contacts of a subject the paper's channel selection keeps for re-referencing."""

    labels: list[str]  # every contact, in HDF5 order
    corrupted: list[str]  # listed in corrupted_elec.json (and recorded)
    corrupted_unknown: list[str]  # listed in corrupted_elec.json but not recorded
    triggers: list[str]
    candidates: list[str]  # neither corrupted nor trigger: what references may use


def select_contacts(layout: Layout, subject: int) -> Selection:
    labels = layout.electrode_labels(subject)
    listed = layout.corrupted(subject)
    present = set(labels)
    corrupted = [n for n in labels if n in set(listed)]
    triggers = [n for n in labels if is_trigger(n)]
    dropped = set(corrupted) | set(triggers)
    return Selection(labels=labels, corrupted=corrupted,
                     corrupted_unknown=sorted(set(listed) - present), triggers=triggers,
                     candidates=[n for n in labels if n not in dropped])


def contact_derivations(layout: Layout, subject: int, selection: Selection,
                        scheme: str) -> list[Derivation]:
    """Output channels of a subject: with ``laplacian``, the contacts of
    ``clean_laplacian.json`` when the release copy has it (each checked to have both shaft
    neighbours among the kept contacts), else every kept contact that has both."""
    if scheme == "car":
        raise ConfigError("config key 'preprocess.reference': 'car' needs every contact at "
                          "once and is not available for dataset.source 'braintreebank', whose "
                          "trials are read one contact at a time; use laplacian, bipolar or none")
    listed = layout.clean_laplacian(subject) if scheme == "laplacian" else None
    if listed is None:
        derivs = derivations(selection.candidates, scheme)
    else:
        where = layout.root / "clean_laplacian.json"
        kept = set(selection.candidates)
        derivs = []
        for name in [n for n in selection.labels if n in set(listed)]:
            parsed = parse_contact(name)
            if name not in kept or parsed is None:
                why = "corrupted" if name in selection.corrupted else "a trigger channel"
                raise DataError(f"{where}: sub_{subject} lists {name!r}, which is {why}")
            before = _find(kept, parsed[0], parsed[1] - 1, name)
            after = _find(kept, parsed[0], parsed[1] + 1, name)
            if not (before and after):
                raise DataError(f"{where}: sub_{subject} lists {name!r}, but a shaft neighbour "
                                f"of it is missing, corrupted or a trigger channel")
            derivs.append(Derivation(name, name, {name: 1.0, before: -0.5, after: -0.5}))
        unknown = sorted(set(listed) - set(selection.labels))
        if unknown:
            raise DataError(f"{where}: sub_{subject} lists contacts {unknown[:5]} that "
                            f"{layout.labels_file(subject)} does not name")
    if not derivs:
        raise DataError(f"sub_{subject}: re-reference '{scheme}' leaves no channel "
                        f"(contacts kept: {len(selection.candidates)})")
    return derivs


# ---------------------------------------------------------------------------- localization


@cache
def release_lobe_ids() -> dict[str, int]:
    """Desikan-Killiany label (upper case, ``-`` -> ``_``) -> the release's lobe id."""
    path = resources.files("barista") / "resources" / "release_lobe_index.tsv"
    with path.open(encoding="utf-8") as fh:
        return {row["desikan_killiany_label"]: int(row["index"])
                for row in csv.DictReader(fh, delimiter="\t")}


def release_lobe(desikan_killiany: str) -> str:
    """Lobe group of a Desikan-Killiany label as the release groups them; ``unknown`` for
    labels it leaves out (occipital cortex, white matter, thalamus, ...)."""
    key = str(desikan_killiany).strip().upper().replace("-", "_")
    return _LOBE_OF_ID.get(release_lobe_ids().get(key, 0), UNKNOWN)


def _lip(value, path: Path, contact: str, axis: str, check_range: bool) -> int | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if pd.isna(number):
        if check_range:
            raise DataError(f"{path}: contact {contact!r} has no numeric {axis} coordinate "
                            f"({value!r})")
        return None
    if number != round(number):
        raise DataError(f"{path}: contact {contact!r} has {axis} = {value!r}, not a whole "
                        "voxel index")
    number = int(round(number))
    if check_range and not 0 <= number < LIP_TABLE_SIZE:
        raise DataError(f"{path}: contact {contact!r} has {axis} = {number}, outside the "
                        f"coordinate table range 0..{LIP_TABLE_SIZE - 1}")
    return number


def _region_row(contact: str, loc: pd.Series | None, path: Path, check_range: bool) -> dict:
    if loc is None:  # no localization row: kept, of unknown place (never dropped silently)
        return {"channel": contact, "x": np.nan, "y": np.nan, "z": np.nan, "space": "",
                "hemisphere": "", "atlas_label": "", "kind": "unknown", "parcel": UNKNOWN,
                "lobe": UNKNOWN, "label_source": "none", "keep": True, "drop_reason": "",
                "desikan_killiany": "", "lip_l": None, "lip_i": None, "lip_p": None}
    lip = {axis: _lip(loc[axis], path, contact, axis, check_range) for axis in ("L", "I", "P")}
    # voxel indices grow to the left, inferior and posterior; 128 - index is millimetres
    # towards right, anterior and superior about the volume's centre (scanner RAS up to the
    # volume's centre offset), the frame the channel scale's coordinate tables read
    xyz = [np.nan if lip[a] is None else float(LIP_CENTRE - lip[a]) for a in ("L", "P", "I")]
    destrieux = "" if pd.isna(loc["Destrieux"]) else str(loc["Destrieux"]).strip()
    dk = "" if pd.isna(loc["DesikanKilliany"]) else str(loc["DesikanKilliany"]).strip()
    region = classify_label(destrieux, xyz[0] if np.isfinite(xyz[0]) else 0.0)
    kind = "unknown" if destrieux.lower() in ("", UNKNOWN) else region.kind
    upper = destrieux.upper()
    drop = "grid" if "GRID" in upper else "ventricle" if ("VENT" in upper
                                                           or kind == "ventricle") else ""
    hemisphere = region.hemisphere if (np.isfinite(xyz[0]) or destrieux) else ""
    return {"channel": contact, "x": xyz[0], "y": xyz[1], "z": xyz[2], "space": "LIP",
            "hemisphere": hemisphere, "atlas_label": destrieux, "kind": kind,
            "parcel": region.parcel, "lobe": release_lobe(dk), "label_source": "depth-wm.csv",
            "keep": not drop, "drop_reason": drop, "desikan_killiany": dk,
            "lip_l": lip["L"], "lip_i": lip["I"], "lip_p": lip["P"]}


def localize_subject(layout: Layout, subject: int, sessions: list[str]) -> pd.DataFrame:
    """Localization table of a subject: one row per recorded contact (trigger channels left
    out) and session, with the columns of :data:`COLUMNS`.

    Parcels come from the ``Destrieux`` column, lobes from ``DesikanKilliany`` grouped as the
    release groups them (:func:`release_lobe`), coordinates from ``L``, ``I``, ``P``. Contacts
    whose Destrieux label contains ``GRID`` or ``VENT`` get ``keep`` False (the paper drops
    them). A contact without a localization row is kept with an unknown region. L, I, P of
    every contact the selection keeps must be whole numbers in the table range.
    """
    selection = select_contacts(layout, subject)
    path = layout.localization_file(subject)
    table = layout.localization(subject).set_index("Electrode")
    kept = set(selection.candidates)
    rows = [_region_row(c, table.loc[c] if c in table.index else None, path, c in kept)
            for c in selection.labels if c not in set(selection.triggers)]
    frame = pd.DataFrame(rows)
    frames = []
    for session in sessions or [""]:
        part = frame.copy()
        part.insert(0, "session", session)
        part.insert(0, "subject", str(subject))
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    for axis in ("lip_l", "lip_i", "lip_p"):
        out[axis] = out[axis].astype("Int64")
    return out[COLUMNS]


# ------------------------------------------------------------------------------ word events


def word_events(layout: Layout, subject: int, trial: int, *, need_sentences: bool,
                sfreq: float = SFREQ) -> pd.DataFrame:
    """Words of a trial on the neural clock: onset and duration in seconds from the trial's
    first sample, sentence onsets, the word, the onset sample and the movie time.

    Movie seconds become samples through the trigger table: a word starting at movie time
    ``t`` takes the first trigger at or after ``t`` (``movie_time`` ``t_k``, sample ``i_k``)
    and lies at ``i_k + (t - t_k) * sfreq``. Words outside the triggers' span, or without a
    start and end time, are left out (the movie did not run while they were recorded).
    """
    meta = layout.metadata(subject, trial)
    path = layout.transcript_file(str(meta["filename"]))
    words = layout._csv(path, f"transcript of '{meta.get('title', meta['filename'])}'",
                        ("start", "end"))
    if need_sentences:
        if "is_onset" not in words.columns:
            raise DataError(f"{path}: column 'is_onset' (sentence onsets) is missing; the "
                            "sentence_onset task needs it (or drop it from config key "
                            "'segments.tasks')")
    onset_flag = _flag(words["is_onset"], path, "is_onset") if "is_onset" in words else \
        np.zeros(len(words), dtype=int)
    if need_sentences and not onset_flag.any():
        raise DataError(f"{path}: column 'is_onset' marks no sentence onset; the "
                        "sentence_onset task needs some")
    start = pd.to_numeric(words["start"], errors="coerce").to_numpy(float)
    end = pd.to_numeric(words["end"], errors="coerce").to_numpy(float)
    timings = layout.timings(subject, trial)
    t, idx = timings["movie_time"].to_numpy(), timings["index"].to_numpy()
    usable = np.isfinite(start) & np.isfinite(end) & (start >= t[0]) & (start <= t[-1])
    k = np.minimum(np.searchsorted(t, start[usable], side="left"), len(t) - 1)
    onset_sample = np.rint(idx[k] + (start[usable] - t[k]) * sfreq)
    k_end = np.minimum(np.searchsorted(t, end[usable], side="left"), len(t) - 1)
    end_sample = np.rint(idx[k_end] + (end[usable] - t[k_end]) * sfreq)
    text = words["text"].astype(str).to_numpy()[usable] if "text" in words else ""
    out = pd.DataFrame({
        "onset": onset_sample / sfreq,
        "duration": np.maximum(end_sample - onset_sample, 0.0) / sfreq,
        "trial_type": "word",
        "sentence_onset": onset_flag[usable],
        "word": text,
        "sample": onset_sample.astype(np.int64),
        "movie_time": start[usable],
    })
    out = out[out["sample"] >= 0]
    return out.sort_values("onset", kind="stable").reset_index(drop=True)


def _flag(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """0/1 of a boolean column written as True/False, 1/0 or 1.0/0.0 (empty = 0)."""
    text = column.astype(str).str.strip().str.lower()
    mapped = text.map({"true": 1, "false": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0, "nan": 0,
                       "": 0})
    if mapped.isna().any():
        raise DataError(f"{path}: column '{name}' holds {column[mapped.isna()].iloc[0]!r}, "
                        "not True/False")
    return mapped.to_numpy(int)


# -------------------------------------------------------------------------------- recordings


def choose_trials(layout: Layout, subjects: list, sessions: list[str]) -> list[tuple[int, int]]:
    """Trials on disk that the subject and session filters keep (empty filter = all)."""
    present = layout.trials()
    if not present:
        raise DataError(f"{layout.root}: no trial files sub_<S>_trial<TTT>.h5 (nor under "
                        "all_subject_data/)")
    on_disk = sorted({s for s, _ in present})
    wanted_subjects = [parse_subject(s, "dataset.braintreebank.subjects") for s in subjects]
    missing = [s for s in wanted_subjects if s not in on_disk]
    if missing:
        raise DataError(f"config key 'dataset.braintreebank.subjects' names subject(s) "
                        f"{missing} with no trial file under {layout.root} (subjects found: "
                        f"{on_disk})")
    keys = [parse_session(k, "dataset.braintreebank.sessions") for k in sessions]
    for s, t in keys:
        if (s, t) not in present:
            raise DataError(f"config key 'dataset.braintreebank.sessions' names {s}_{t}, but "
                            f"{layout.root / f'sub_{s}_trial{t:03d}.h5'} does not exist")
    return [(s, t) for s, t in present
            if (not wanted_subjects or s in wanted_subjects) and (not keys or (s, t) in keys)]


def recordings_table(layout: Layout, subjects: list, sessions: list[str],
                     roles: dict | None = None) -> pd.DataFrame:
    """The recordings of the chosen trials (columns of a BIDS source's table plus ``movie``).

    A session named in ``roles`` (``evaluation.sessions``) that the filters keep but whose
    trial file is missing is an error: the protocol would silently lose a session.
    """
    trials = choose_trials(layout, subjects, sessions)
    if roles:
        chosen = set(trials)
        wanted_subjects = {parse_subject(s, "dataset.braintreebank.subjects") for s in subjects}
        wanted_sessions = {parse_session(k, "dataset.braintreebank.sessions") for k in sessions}
        for role, keys in roles.items():
            for key in keys or []:
                s, t = parse_session(key, f"evaluation.sessions.{role}")
                filtered_out = ((wanted_subjects and s not in wanted_subjects)
                                or (wanted_sessions and (s, t) not in wanted_sessions))
                if not filtered_out and (s, t) not in chosen:
                    raise DataError(f"config key 'evaluation.sessions.{role}' names {key}, but "
                                    f"its trial file sub_{s}_trial{t:03d}.h5 is not under "
                                    f"{layout.root}")
    rows = []
    for s, t in trials:
        meta_path = layout.root / "subject_metadata" / f"sub_{s}_trial{t:03d}_metadata.json"
        movie = layout.metadata(s, t)["filename"] if meta_path.exists() else ""
        rows.append({"recording": recording_name(s, t), "subject": str(s), "session": str(t),
                     "task": "movie", "run": "", "movie": str(movie)})
    return pd.DataFrame(rows)


def subject_trial(recording: str) -> tuple[int, int]:
    """(subject, trial) of a recording name ``sub-S_ses-T``."""
    m = re.match(r"^sub-(\d+)_ses-(\d+)$", recording)
    if m is None:
        raise DataError(f"{recording!r} is not a Brain Treebank recording name (sub-S_ses-T)")
    return int(m.group(1)), int(m.group(2))
