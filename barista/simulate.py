"""Simulated sEEG listening dataset with known speech responses, written as BIDS iEEG.

The offline demo needs data whose answer is known: depth shafts placed at real MNI positions
of the Destrieux volume, a speech-like stimulus, high-gamma responses to words in temporal
parcels, a phase-locked potential evoked by every word in the same contacts (full size after
silence, adapted within running speech, as auditory cortex responds) and an evoked transient
at sentence onsets in temporal and inferior frontal parcels. The background (its spectrum,
the correlation of neighbouring contacts under each re-reference, the line noise) follows what
a real sEEG recording measures: docs/notes/simulator_vs_real.md.
Everything derives from one seed, so the same arguments always give byte-identical files.
The ground truth lies under ``derivatives/simulation/``.
"""

from __future__ import annotations

import json
import shutil
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mne
import mne_bids
import numpy as np
import pandas as pd
from mne_bids.config import BIDS_VERSION
from scipy import fft as sp_fft

from . import __version__
from .atlas import GREY_KINDS, DestrieuxAtlas, Region, classify_label, default_atlas
from .errors import ConfigError

SPACE = "MNI152NLin2009aSym"
CONTACT_SPACING_MM = 3.5
# a fixed date keeps scans.tsv and the BrainVision headers identical from run to run
_MEAS_DATE = datetime(2020, 1, 6, 9, 0, 0, tzinfo=timezone.utc)
_BAD_CHANNELS = {
    "flat": "flat: no signal (simulated disconnection)",
    "noisy": "noisy: broadband artefact (simulated broken wire)",
}

# amplitudes in microvolts. The response sizes make a 2 s window decodable from log band power,
# not trivially; the background's levels (reference, sensor, line, resting gamma against the
# 1/f background) follow what a real recording measures (docs/notes/simulator_vs_real.md)
_UV = {
    "source": 40.0,  # 1/f background shared by all contacts of a parcel
    "rhythm": 15.0,  # parcel-specific oscillation (4-30 Hz), at 10 Hz (see _RHYTHM_REF_HZ)
    "burst": 25.0,  # bursts of each contact's own rhythm, timed by its parcel, at 10 Hz
    "local": 25.0,  # 1/f background of each contact's own generators
    "reference": 25.0,  # 1/f activity at the recording reference, in every contact
    "sensor": 0.5,  # white amplifier noise
    "line": 7.0,  # power-line fundamental (harmonics fall off as 1 / k)
    "high_gamma": 3.5,  # speech-driven 70-120 Hz amplitude at gain 1.0
    "resting_gamma": 1.0,  # own 70-120 Hz activity of every contact, speech or not
    "evoked": 50.0,  # sentence-onset transient peak at gain 1.0
    "word_evoked": 30.0,  # word-onset evoked potential (N1-P2) peak at gain 1.0, after silence
    "flat": 0.05,  # a disconnected contact
    "noisy": 800.0,  # a contact with a broken wire
}
# aperiodic power ~ 1 / f ** 2 up to the knee, 1 / f ** 3.5 above it (a broken power law, as
# intracranial spectra steepen above ~40 Hz; the real recording of
# docs/notes/simulator_vs_real.md gives 3.1 over 40-150 Hz)
_SPECTRAL_EXPONENT = 2.0
_HIGH_EXPONENT = 3.5
_KNEE_HZ = 40.0
# contacts record each other's local generators through the tissue: a smooth (Matern 3/2)
# spatial covariance of this length, fitted to the real recording's neighbour correlations
_FIELD_LENGTH_MM = 5.0
_DRIFT_SD = 0.5  # log-sd of slow drifts in the level of each contact's activity
_MIX_LENGTH_MM = 10.0  # volume conduction between parcels, weight exp(-d / length)
_PICKUP_SD = 0.5  # log-sd of how strongly each contact picks up the shared parcel sources
_HIGH_GAMMA_HZ = (70.0, 120.0)  # below the 128 Hz Nyquist of the 256 Hz pipeline rate
# contacts' own high-frequency activity, unshared with their neighbours, rises above the
# volume-conducted background from about here (real sEEG: neighbours correlate 0.64 at
# 30-55 Hz, 0.12 at 70-110 Hz)
_LOCAL_HIGHPASS_HZ = 50.0
_RESPONSE_LATENCY_S = 0.05
# a rhythm stands as far above the 1/f background at its own frequency as a 10 Hz one does:
# amplitudes scale as (10 Hz / f) ** (_SPECTRAL_EXPONENT / 2)
_RHYTHM_REF_HZ = 10.0
_BURST_HZ = (0.25, 2.0)  # how fast the shared burst envelopes wax and wane
_BURST_SD = (0.5, 0.7)  # log-sd of the brain-wide and of the parcel part of a burst envelope
_ADAPTATION_S = 2.0  # time constant of the high-gamma decline within a speech period


@dataclass(frozen=True)
class ShaftTemplate:
    """One plausible sEEG trajectory, given in the left hemisphere (mirrored for the right).

    Contacts run from ``start_mm`` along the line ``deep_mm`` -> ``entry_mm``; contact 1 is
    the deepest, as in clinical naming.
    """

    letter: str
    target: str
    deep_mm: tuple[float, float, float]
    entry_mm: tuple[float, float, float]
    start_mm: float


SHAFT_TEMPLATES: tuple[ShaftTemplate, ...] = (
    ShaftTemplate("T", "Heschl's gyrus, planum temporale, lateral STG",
                  (-30.0, -22.0, 8.0), (-75.0, -18.0, 8.0), 10.0),
    ShaftTemplate("H", "hippocampus to superior temporal sulcus",
                  (-20.0, -22.0, -14.0), (-75.0, -26.0, -8.0), 6.0),
    ShaftTemplate("A", "amygdala to superior temporal sulcus",
                  (-15.0, -5.0, -20.0), (-75.0, -4.0, -16.0), 9.0),
    ShaftTemplate("I", "anterior insula through planum polare and STG",
                  (-32.0, 4.0, -4.0), (-70.0, 4.0, -10.0), 3.0),
    ShaftTemplate("F", "insula to inferior frontal gyrus (opercular)",
                  (-30.0, 12.0, 0.0), (-70.0, 14.0, 10.0), 3.0),
    ShaftTemplate("P", "precentral and postcentral gyri",
                  (-28.0, -8.0, 40.0), (-70.0, -8.0, 40.0), 10.0),
    ShaftTemplate("S", "supramarginal gyrus",
                  (-20.0, -30.0, 38.0), (-75.0, -30.0, 38.0), 19.0),
    ShaftTemplate("C", "anterior cingulate to middle frontal gyrus",
                  (-6.0, 30.0, 24.0), (-50.0, 32.0, 30.0), 1.0),
    ShaftTemplate("V", "lateral ventricle and caudate, out through frontal white matter",
                  (-8.0, -4.0, 20.0), (-55.0, 0.0, 34.0), 1.0),
    ShaftTemplate("M", "middle temporal gyrus",
                  (-30.0, -42.0, -6.0), (-75.0, -42.0, -6.0), 12.0),
    ShaftTemplate("Q", "temporal pole: planum polare, STG, MTG",
                  (-30.0, 10.0, -25.0), (-65.0, 10.0, -25.0), 6.0),
    ShaftTemplate("B", "basal temporal: fusiform to inferior temporal gyrus",
                  (-20.0, -50.0, -12.0), (-70.0, -50.0, -10.0), 4.0),
)

# (speech gain, sentence-onset gain) in the left hemisphere; the right gets _RIGHT_SCALE of it
RESPONSIVE_PARCELS: dict[str, tuple[float, float]] = {
    "G_temp_sup-G_T_transv": (1.0, 0.3),
    "G_temp_sup-Lateral": (1.0, 1.0),
    "G_temp_sup-Plan_tempo": (0.8, 0.3),
    "S_temporal_transverse": (0.8, 0.0),
    "G_temp_sup-Plan_polar": (0.5, 0.4),
    "S_temporal_sup": (0.6, 0.8),
    "G_temporal_middle": (0.5, 0.6),
    "G_front_inf-Opercular": (0.0, 1.0),
    "G_front_inf-Triangul": (0.0, 0.8),
}
_RIGHT_SCALE = (0.8, 0.5)


@dataclass
class Implant:
    """Contacts of one subject: names, MNI positions (mm), atlas regions and response gains."""

    names: list[str]
    xyz_mm: np.ndarray
    regions: list[Region]
    speech_gain: np.ndarray
    sentence_gain: np.ndarray
    sentence_sign: np.ndarray
    pickup: np.ndarray  # gain of each contact for the shared parcel sources


@dataclass
class Stimulus:
    """Words of one recording: onsets and durations (s), sentence starts, tokens, periods."""

    onset: np.ndarray
    duration: np.ndarray
    sentence_onset: np.ndarray
    word: list[str]
    speech_periods: np.ndarray  # (n_periods, 2) start and stop in seconds
    n_times: int  # samples in the recording


def simulate_dataset(
    bids_root: str | Path,
    *,
    n_subjects: int = 3,
    n_sessions: int = 2,
    duration_s: float = 240.0,
    sfreq: float = 512.0,
    line_freq: float = 60.0,
    n_shafts: int = 6,
    contacts_per_shaft: int = 8,
    seed: int = 7,
    task: str = "listen",
    overwrite: bool = False,
) -> Path:
    """Simulate a BIDS iEEG dataset of depth recordings during speech listening.

    Parameters
    ----------
    bids_root : path-like
        Folder to write the dataset to. It must be empty or missing unless ``overwrite``.
    n_subjects : int
        Number of subjects (``sub-01``, ``sub-02``, ...), each with its own implant.
    n_sessions : int
        Sessions per subject (``ses-01``, ...), one run each; the implant stays the same.
    duration_s : float
        Length of each recording in seconds.
    sfreq : float
        Sampling frequency in Hz; at least 256 Hz so the 70-120 Hz responses are sampled.
    line_freq : float
        Power-line frequency in Hz; the line noise includes its harmonics below Nyquist.
    n_shafts : int
        Depth shafts per subject, drawn from :data:`SHAFT_TEMPLATES` in either hemisphere.
    contacts_per_shaft : int
        Contacts per shaft, 3.5 mm apart.
    seed : int
        Seed of every random draw; the same arguments give byte-identical files.
    task : str
        BIDS task label.
    overwrite : bool
        Replace an existing simulated dataset at ``bids_root``. A non-empty folder that was
        not written by this function is never deleted.

    Returns
    -------
    bids_root : Path
        The root of the written dataset.

    Notes
    -----
    Each contact records the source of its own parcel, the sources of the other parcels of
    the implant weighted by ``exp(-d / 10 mm)``, the 1/f activity and rhythm bursts of the
    generators at every contact, carried by volume conduction (a smooth spatial covariance of
    5 mm length), the activity at the recording reference, sensor noise and line noise. The
    aperiodic background steepens from 1/f^2 to 1/f^3.5 above 40 Hz. During words, 70-120 Hz
    power rises in temporal parcels; sentence onsets evoke a damped 3 Hz transient in
    temporal and inferior frontal parcels. Each recording has one flat and one noisy contact
    marked bad in ``channels.tsv``.

    The ground truth is written to ``derivatives/simulation/``: ``ground_truth.tsv`` (gain
    of every responsive hemisphere x parcel), ``contacts.tsv`` (one row per subject, session
    and contact) and ``simulation.json`` (the arguments, without the output folder).
    """
    _check_implant_arguments(n_subjects, n_shafts, contacts_per_shaft)
    _check_recording_arguments(n_sessions, duration_s, sfreq, line_freq, task)
    arguments = dict(n_subjects=int(n_subjects), n_sessions=int(n_sessions),
                     duration_s=float(duration_s), sfreq=float(sfreq),
                     line_freq=float(line_freq), n_shafts=int(n_shafts),
                     contacts_per_shaft=int(contacts_per_shaft), seed=int(seed), task=task)
    root = _prepare_root(Path(bids_root), overwrite)
    atlas = default_atlas()
    _write_readme(root, task)
    mne_bids.make_dataset_description(
        path=root, name="barista simulated sEEG speech listening", dataset_type="raw",
        authors=["barista.simulate"], overwrite=True, verbose=False)

    tables = []
    for sub_index in range(arguments["n_subjects"]):
        implant = _make_implant(arguments["seed"], sub_index, arguments["n_shafts"],
                                arguments["contacts_per_shaft"], atlas)
        for ses_index in range(arguments["n_sessions"]):
            tables.append(_simulate_recording(root, implant, sub_index, ses_index, arguments))
    _write_ground_truth(root, pd.concat(tables, ignore_index=True), arguments)
    return root


def _simulate_recording(root: Path, implant: Implant, sub_index: int, ses_index: int,
                        arguments: dict) -> pd.DataFrame:
    """Simulate and write one run; return its rows of ``contacts.tsv``."""
    subject, session = f"{sub_index + 1:02d}", f"{ses_index + 1:02d}"
    sfreq, line_freq = arguments["sfreq"], arguments["line_freq"]
    # sessions draw from their own stream so adding one never changes another
    rng = np.random.default_rng([arguments["seed"], sub_index, ses_index + 1])
    stim = _make_stimulus(rng, arguments["duration_s"], sfreq)
    picks = rng.choice(len(implant.names), len(_BAD_CHANNELS), replace=False)
    bad = dict(zip(_BAD_CHANNELS, picks.tolist(), strict=True))
    raw = _make_raw(_simulate_signals(rng, implant, stim, sfreq, line_freq, bad), implant,
                    stim, sfreq, line_freq, ses_index)
    bids_path = mne_bids.BIDSPath(root=root, subject=subject, session=session,
                                  task=arguments["task"], run="01", datatype="ieeg")
    _write_recording(raw, bids_path, implant, bad)

    table = _implant_table(implant, subject)
    table.insert(1, "session", session)
    table["bad"] = "none"
    for reason, index in bad.items():
        table.loc[index, "bad"] = reason
    return table


def _check_implant_arguments(n_subjects: int, n_shafts: int, contacts_per_shaft: int) -> None:
    for name, value in (("n_subjects", n_subjects), ("n_shafts", n_shafts),
                        ("contacts_per_shaft", contacts_per_shaft)):
        if int(value) != value or value < 1:
            raise ConfigError(f"simulate: {name} must be a positive integer, got {value!r}")
    if n_shafts > 2 * len(SHAFT_TEMPLATES):
        raise ConfigError(f"simulate: n_shafts must be at most {2 * len(SHAFT_TEMPLATES)} "
                          f"(templates x hemispheres), got {n_shafts}")
    if contacts_per_shaft < 3:
        raise ConfigError("simulate: contacts_per_shaft must be at least 3 so that the "
                          "Laplacian reference keeps a contact")


def _check_recording_arguments(n_sessions: int, duration_s: float, sfreq: float,
                               line_freq: float, task: str) -> None:
    if int(n_sessions) != n_sessions or n_sessions < 1:
        raise ConfigError(f"simulate: n_sessions must be a positive integer, got {n_sessions!r}")
    if sfreq < 256:
        raise ConfigError(f"simulate: sfreq must be at least 256 Hz, got {sfreq}")
    if not 0 < line_freq < sfreq / 2:
        raise ConfigError(f"simulate: line_freq must lie in (0, sfreq / 2), got {line_freq}")
    if duration_s < 20:
        raise ConfigError(f"simulate: duration_s must be at least 20 s, got {duration_s}")
    if not (isinstance(task, str) and task.isalnum()):
        raise ConfigError(f"simulate: task must be alphanumeric (a BIDS label), got {task!r}")


def _prepare_root(root: Path, overwrite: bool) -> Path:
    """Make ``root`` an empty folder, deleting only a dataset this module wrote."""
    if root.exists() and any(root.iterdir()):
        marker = root / "derivatives" / "simulation" / "simulation.json"
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True to replace a "
                                  "simulated dataset")
        if not marker.exists():
            raise FileExistsError(f"{root} is not empty and holds no {marker.relative_to(root)}"
                                  "; refusing to delete a folder this module did not write")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


# --- implant -------------------------------------------------------------------------------


def _choose_shafts(rng: np.random.Generator, n_shafts: int,
                   sub_index: int) -> list[tuple[ShaftTemplate, str]]:
    """Pick (template, hemisphere) pairs: auditory and mesial temporal shafts come first."""
    by_letter = {t.letter: t for t in SHAFT_TEMPLATES}
    # alternate the auditory side across subjects so both hemispheres are covered
    main = "L" if sub_index % 2 == 0 else "R"
    wanted = [("T", main), (str(rng.choice(["H", "A"])), str(rng.choice(["L", "R"])))]
    if sub_index == 0:
        wanted.append(("V", "R" if main == "L" else "L"))  # a ventricle contact somewhere
    rest = [(t.letter, h) for t in SHAFT_TEMPLATES for h in ("L", "R")
            if (t.letter, h) not in wanted]
    order = rng.permutation(len(rest))
    chosen = (wanted + [rest[i] for i in order])[:n_shafts]
    return [(by_letter[letter], hemi) for letter, hemi in chosen]


def _shaft_positions(template: ShaftTemplate, hemisphere: str, n_contacts: int,
                     rng: np.random.Generator) -> np.ndarray:
    """MNI mm positions of one shaft's contacts with a per-subject jitter of a few mm."""
    deep = np.array(template.deep_mm, dtype=float)
    entry = np.array(template.entry_mm, dtype=float)
    direction = (entry - deep) / np.linalg.norm(entry - deep)
    direction = direction + rng.normal(0.0, 0.04, 3)  # a couple of degrees
    direction /= np.linalg.norm(direction)
    start = deep + template.start_mm * direction + np.clip(rng.normal(0.0, 1.5, 3), -3, 3)
    xyz = start + np.arange(n_contacts)[:, None] * CONTACT_SPACING_MM * direction
    if hemisphere == "R":
        xyz[:, 0] *= -1
    return np.round(xyz, 2)


def _parcel_gains(region: Region) -> tuple[float, float]:
    """Speech and sentence-onset gains of a region from :data:`RESPONSIVE_PARCELS`."""
    if region.kind != "cortex" or region.parcel not in RESPONSIVE_PARCELS:
        return 0.0, 0.0
    speech, sentence = RESPONSIVE_PARCELS[region.parcel]
    if region.hemisphere == "R":
        speech, sentence = speech * _RIGHT_SCALE[0], sentence * _RIGHT_SCALE[1]
    return speech, sentence


def _make_implant(seed: int, sub_index: int, n_shafts: int, contacts_per_shaft: int,
                  atlas: DestrieuxAtlas) -> Implant:
    """Shafts, atlas regions and response gains of one subject (shared by its sessions)."""
    # the implant has its own stream (session streams are [seed, subject, session >= 1])
    rng = np.random.default_rng([seed, sub_index, 0])
    names, positions = [], []
    for template, hemi in _choose_shafts(rng, n_shafts, sub_index):
        positions.append(_shaft_positions(template, hemi, contacts_per_shaft, rng))
        names += [f"{hemi}{template.letter}{k + 1}" for k in range(contacts_per_shaft)]
    xyz = np.concatenate(positions)
    regions = [classify_label(label, x) for label, x in zip(atlas.label_names(xyz), xyz[:, 0],
                                                            strict=True)]
    gains = np.array([_parcel_gains(r) for r in regions])
    # contacts differ within a parcel; the factor is fixed per implant, so per subject
    factor = rng.uniform(0.6, 1.4, size=gains.shape)
    return Implant(names=names, xyz_mm=xyz, regions=regions,
                   speech_gain=np.round(gains[:, 0] * factor[:, 0], 3),
                   sentence_gain=np.round(gains[:, 1] * factor[:, 1], 3),
                   sentence_sign=rng.choice([-1.0, 1.0], size=len(names)),
                   # contacts see a source at different distances and orientations, so even
                   # neighbours in one parcel pick it up unequally and a Laplacian keeps part of it
                   pickup=rng.lognormal(0.0, _PICKUP_SD, size=len(names)))


# --- stimulus ------------------------------------------------------------------------------

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _make_word(rng: np.random.Generator) -> str:
    n_syllables = int(rng.integers(1, 4))
    return "".join(str(rng.choice(list(_CONSONANTS))) + str(rng.choice(list(_VOWELS)))
                   for _ in range(n_syllables))


def _make_stimulus(rng: np.random.Generator, duration_s: float, sfreq: float) -> Stimulus:
    """Speech periods of 4-12 s between silences of 2-8 s, a word every 0.22-0.5 s.

    The first word of each period and then every 6th to 12th word start a sentence. Gaps in
    a period stay below 0.5 s, so only period-initial words follow 0.5 s of silence.
    """
    onsets, durations, starts, periods = [], [], [], []
    t = rng.uniform(2.0, 6.0)
    while True:
        stop = min(t + rng.uniform(4.0, 12.0), duration_s - 1.0)
        if stop - t < 1.0:
            break
        onset, countdown = t, 0
        while onset + 0.2 <= stop:
            interval = rng.uniform(0.22, 0.5)
            onsets.append(onset)
            durations.append(min(rng.uniform(0.2, 0.4), interval - 0.02))
            starts.append(int(countdown == 0))
            countdown = int(rng.integers(5, 12)) if countdown == 0 else countdown - 1
            onset += interval
        periods.append((t, onsets[-1] + durations[-1]))
        t = periods[-1][1] + rng.uniform(2.0, 8.0)
    # snap to the sample grid so events.tsv onsets and samples agree exactly
    onset_samples = np.round(np.array(onsets) * sfreq)
    duration_samples = np.maximum(np.round(np.array(durations) * sfreq), 1)
    return Stimulus(onset=onset_samples / sfreq, duration=duration_samples / sfreq,
                    sentence_onset=np.array(starts, dtype=int),
                    word=[_make_word(rng) for _ in onsets],
                    speech_periods=np.array(periods), n_times=int(round(duration_s * sfreq)))


# --- signals -------------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Scale zero-mean rows (their DC bin was removed) to unit variance."""
    return x / np.maximum(np.sqrt(np.mean(x * x, axis=-1, keepdims=True)), 1e-12)


def _shaped_noise(rng: np.random.Generator, shape: tuple[int, int], sfreq: float,
                  amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Unit-variance Gaussian noise whose Fourier amplitude follows ``amplitude(freqs)``."""
    spectrum = sp_fft.rfft(rng.standard_normal(shape), axis=-1, workers=-1)
    freqs = sp_fft.rfftfreq(shape[-1], 1.0 / sfreq)
    spectrum *= amplitude(freqs)
    spectrum[..., 0] = 0.0
    return _unit_rows(sp_fft.irfft(spectrum, n=shape[-1], axis=-1, workers=-1))


def _colored_noise(rng: np.random.Generator, shape: tuple[int, int], sfreq: float,
                   exponent: float, fmin: float = 0.5) -> np.ndarray:
    """Unit-variance noise with power ~ 1 / f ** exponent (flat below ``fmin``)."""
    return _shaped_noise(rng, shape, sfreq, lambda f: np.maximum(f, fmin) ** (-exponent / 2))


def _aperiodic_noise(rng: np.random.Generator, shape: tuple[int, int], sfreq: float,
                     fmin: float = 0.5) -> np.ndarray:
    """Unit-variance noise with the aperiodic spectrum of the background: power
    ~ 1 / f ** _SPECTRAL_EXPONENT below ``_KNEE_HZ``, ~ 1 / f ** _HIGH_EXPONENT above it,
    continuous at the knee (flat below ``fmin``)."""
    def amplitude(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, fmin)
        low = f ** (-_SPECTRAL_EXPONENT / 2)
        high = _KNEE_HZ ** (-_SPECTRAL_EXPONENT / 2) * (f / _KNEE_HZ) ** (-_HIGH_EXPONENT / 2)
        return np.where(f <= _KNEE_HZ, low, high)
    return _shaped_noise(rng, shape, sfreq, amplitude)


def _local_broadband(rng: np.random.Generator, shape: tuple[int, int],
                     sfreq: float) -> np.ndarray:
    """Noise with the background's spectrum above 40 Hz, high-passed at
    ``_LOCAL_HIGHPASS_HZ`` (second order, no edge), scaled to unit power within
    ``_HIGH_GAMMA_HZ``."""
    def amplitude(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 0.5)
        return f ** (-_HIGH_EXPONENT / 2) / np.sqrt(1.0 + (_LOCAL_HIGHPASS_HZ / f) ** 4)
    noise = _shaped_noise(rng, shape, sfreq, amplitude)
    freqs = sp_fft.rfftfreq(shape[-1], 1.0 / sfreq)[1:]
    power = amplitude(freqs) ** 2
    in_band = (freqs >= _HIGH_GAMMA_HZ[0]) & (freqs <= _HIGH_GAMMA_HZ[1])
    return noise / np.sqrt(power[in_band].sum() / power.sum())


def _band_noise(rng: np.random.Generator, shape: tuple[int, int], sfreq: float,
                low: float, high: float) -> np.ndarray:
    """Unit-variance noise with a flat spectrum between ``low`` and ``high`` Hz."""
    return _shaped_noise(rng, shape, sfreq, lambda f: ((f >= low) & (f <= high)).astype(float))


def _slow_gain(rng: np.random.Generator, shape: tuple[int, int], sfreq: float,
               spread: float) -> np.ndarray:
    """Positive, slowly drifting (0.01-0.2 Hz) gains with median 1 and log-sd ``spread``."""
    # drawn on a 4 Hz grid and interpolated: the full rate would only add cost
    coarse_rate = 4.0
    n_coarse = int(np.ceil(shape[-1] / sfreq * coarse_rate)) + 2
    coarse = _band_noise(rng, (shape[0], n_coarse), coarse_rate, 0.01, 0.2)
    position = np.arange(shape[-1]) * (coarse_rate / sfreq)
    left = position.astype(int)
    frac = position - left
    return np.exp(spread * (coarse[:, left] * (1 - frac) + coarse[:, left + 1] * frac))


def _parcel_frequency(hemisphere: str, parcel: str) -> float:
    """Oscillation frequency of a parcel, 4-30 Hz, fixed by its name (crc32 is stable)."""
    return 4.0 + (zlib.crc32(f"{hemisphere}-{parcel}".encode()) % 2601) / 100.0


def _volume_conduction(xyz_mm: np.ndarray) -> np.ndarray:
    """Mixing V with V @ V.T = C, the Matern 3/2 covariance of contacts' positions.

    Applied to independent unit-variance generators, one per contact, it gives a field that
    is smooth in space: each contact keeps unit variance and two contacts d mm apart correlate
    (1 + sqrt(3) d / l) exp(-sqrt(3) d / l), l = ``_FIELD_LENGTH_MM`` (0.66 at the 3.5 mm
    spacing, 0.30 at 7 mm, 0.01 at 20 mm). With a smooth covariance, Laplacian-referenced
    neighbours anticorrelate less than independent contacts would (-0.67), as in real sEEG.
    """
    scaled = np.sqrt(3.0) * np.linalg.norm(xyz_mm[:, None] - xyz_mm[None], axis=-1) \
        / _FIELD_LENGTH_MM
    covariance = (1.0 + scaled) * np.exp(-scaled)
    values, vectors = np.linalg.eigh(covariance)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _mixing_matrix(implant: Implant, keys: list[tuple[str, str]]) -> np.ndarray:
    """Weight of each parcel source in each contact: its pickup gain for its own parcel, else
    that times ``exp(-d / 10 mm)`` with d the distance to the nearest contact in that parcel."""
    own = [(r.hemisphere, r.parcel) if r.kind in GREY_KINDS else None for r in implant.regions]
    dist = np.linalg.norm(implant.xyz_mm[:, None] - implant.xyz_mm[None], axis=-1)
    weights = np.zeros((len(own), len(keys)))
    for p, key in enumerate(keys):
        members = [j for j, k in enumerate(own) if k == key]
        weights[:, p] = np.exp(-dist[:, members].min(axis=1) / _MIX_LENGTH_MM)
    return weights * implant.pickup[:, None]


def _rhythm_scale(freqs: np.ndarray) -> np.ndarray:
    """Amplitude of a rhythm at ``freqs`` relative to one at ``_RHYTHM_REF_HZ``: the ratio of
    the aperiodic background's amplitude, so every rhythm stands equally far above it."""
    return (_RHYTHM_REF_HZ / freqs) ** (_SPECTRAL_EXPONENT / 2)


def _parcel_bursts(rng: np.random.Generator, implant: Implant, keys: list[tuple[str, str]],
                   freqs: np.ndarray, sfreq: float, n_times: int) -> np.ndarray:
    """Rhythm bursts of grey-matter contacts, (n_contacts, n_times) with unit median envelope.

    Each contact oscillates with its own phase near its parcel's frequency, so a Laplacian keeps
    much of the bursts (volume conduction, applied by the caller, spreads them to the
    neighbours); their timing is shared, partly brain-wide and partly by the parcel, so the
    burst power of one contact can be told from its neighbours' (the structure that masked
    reconstruction has to learn), beyond the waveform that volume conduction shares.
    """
    own = {key: p for p, key in enumerate(keys)}
    rows = [(c, own[(r.hemisphere, r.parcel)]) for c, r in enumerate(implant.regions)
            if (r.hemisphere, r.parcel) in own]
    out = np.zeros((len(implant.names), n_times))
    if not rows:
        return out
    contacts, parcels = (np.array(v) for v in zip(*rows, strict=True))
    shared = _band_noise(rng, (1, n_times), sfreq, *_BURST_HZ)
    local = _band_noise(rng, (len(keys), n_times), sfreq, *_BURST_HZ)
    envelope = np.exp(_BURST_SD[0] * shared + _BURST_SD[1] * local)
    centre = freqs[parcels][:, None]
    carrier = _shaped_noise(rng, (len(contacts), n_times), sfreq,
                            lambda f: np.exp(-0.5 * ((f - centre) / 1.5) ** 2))
    out[contacts] = (implant.pickup[contacts] * _rhythm_scale(freqs[parcels]))[:, None] \
        * envelope[parcels] * carrier
    return out


def _speech_envelope(stim: Stimulus, rng: np.random.Generator, n_times: int,
                     sfreq: float) -> np.ndarray:
    """Drive of high-gamma power: 0 in silence, up to about 1 at the start of speech.

    Word-locked bursts sit on a sustained floor; the response adapts within a speech period
    (onsets drive auditory cortex hardest) and its gain varies from period to period.
    """
    words = np.zeros(n_times)
    for onset, duration in zip(stim.onset, stim.duration, strict=True):
        words[int(round(onset * sfreq)):int(round((onset + duration) * sfreq))] = 0.6
    t = np.arange(n_times) / sfreq
    envelope = np.zeros(n_times)
    for start, stop in stim.speech_periods:
        a, b = int(round(start * sfreq)), int(round(stop * sfreq))
        # attention and loudness vary, so some periods drive the cortex less than others
        gain = rng.lognormal(0.0, 0.4)
        adaptation = 0.6 + 0.4 * np.exp(-(t[a:b] - start) / _ADAPTATION_S)
        envelope[a:b] = gain * adaptation * (0.4 + words[a:b])
    lag = int(round(_RESPONSE_LATENCY_S * sfreq))
    envelope = np.concatenate([np.zeros(lag), envelope[:n_times - lag]])
    window = np.hanning(max(int(0.04 * sfreq), 3))
    return np.convolve(envelope, window / window.sum(), mode="same")


def _sentence_drive(stim: Stimulus, rng: np.random.Generator, n_times: int,
                    sfreq: float) -> np.ndarray:
    """Sentence onsets convolved with a 500 ms damped 3 Hz wave (peak 1)."""
    impulses = np.zeros(n_times)
    onsets = stim.onset[stim.sentence_onset == 1]
    jitter = rng.normal(0.0, 0.015, len(onsets))
    idx = np.round((onsets + _RESPONSE_LATENCY_S + jitter) * sfreq).astype(int)
    keep = (idx >= 0) & (idx < n_times)
    np.add.at(impulses, idx[keep], rng.lognormal(0.0, 0.3, len(onsets))[keep])
    t = np.arange(int(0.5 * sfreq)) / sfreq
    kernel = np.exp(-t / 0.12) * np.sin(2 * np.pi * 3.0 * t)
    return np.convolve(impulses, kernel / np.abs(kernel).max())[:n_times]


def _word_drive(stim: Stimulus, rng: np.random.Generator, n_times: int,
                sfreq: float) -> np.ndarray:
    """Word onsets convolved with an N1-P2-like evoked potential (peak about 1 after silence).

    Auditory cortex answers a word after silence hardest and words inside running speech with
    an adapted response (a third of it here); sizes vary from word to word. The response is
    phase-locked, so unlike the high-gamma power it survives averaging and shows in the
    waveform that a patch tokenizer sees.
    """
    impulses = np.zeros(n_times)
    first = np.zeros(len(stim.onset), dtype=bool)
    for start, _ in stim.speech_periods:
        first[np.argmin(np.abs(stim.onset - start))] = True
    # a word after silence evokes the full response; words inside running speech, an adapted one
    size = np.where(first, 1.0, 0.35) * rng.lognormal(0.0, 0.25, len(stim.onset))
    idx = np.round((stim.onset + _RESPONSE_LATENCY_S) * sfreq).astype(int)
    keep = idx < n_times
    np.add.at(impulses, idx[keep], size[keep])
    t = np.arange(int(0.4 * sfreq)) / sfreq
    kernel = np.exp(-t / 0.08) * np.sin(2 * np.pi * 5.0 * t)
    return np.convolve(impulses, kernel / np.abs(kernel).max())[:n_times]


def _line_noise(rng: np.random.Generator, n_channels: int, n_times: int, sfreq: float,
                line_freq: float) -> np.ndarray:
    """Line frequency and harmonics below Nyquist, amplitude and phase varying by contact."""
    t = np.arange(n_times) / sfreq
    amplitude = _UV["line"] * rng.uniform(0.5, 1.5, (n_channels, 1))
    phase = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.3, (n_channels, 1))
    out = np.zeros((n_channels, n_times))
    k = 1
    while k * line_freq < sfreq / 2:
        # sin(a + b) = sin a cos b + cos a sin b: two waveforms shared by all contacts
        wave = 2 * np.pi * k * line_freq * t
        out += amplitude / k * (np.cos(k * phase) * np.sin(wave)
                                + np.sin(k * phase) * np.cos(wave))
        k += 1
    return out


def _simulate_signals(rng: np.random.Generator, implant: Implant, stim: Stimulus,
                      sfreq: float, line_freq: float, bad: dict[str, int]) -> np.ndarray:
    """Signals of one recording in volts, shape (n_contacts, n_times)."""
    n_ch, n_times = len(implant.names), stim.n_times
    keys = sorted({(r.hemisphere, r.parcel) for r in implant.regions if r.kind in GREY_KINDS})
    t = np.arange(n_times) / sfreq

    # parcel sources: shared 1/f background plus a waxing and waning parcel rhythm
    freqs = np.array([[_parcel_frequency(*key)] for key in keys])
    rhythm = np.sin(2 * np.pi * freqs * t + rng.uniform(0, 2 * np.pi, (len(keys), 1))) \
        * _rhythm_scale(freqs)
    sources = (_UV["source"] * _aperiodic_noise(rng, (len(keys), n_times), sfreq)
               + _UV["rhythm"] * rhythm * _slow_gain(rng, (len(keys), n_times), sfreq, 0.5))
    data = _mixing_matrix(implant, keys) @ sources if keys else np.zeros((n_ch, n_times))
    del sources, rhythm

    # contact-level generators: own 1/f background whose level drifts, and rhythm bursts;
    # the tissue carries both to the nearby contacts (volume conduction)
    grey = np.array([r.kind in GREY_KINDS for r in implant.regions])
    local_scale = np.where(grey, 1.0, 0.6)[:, None] * _UV["local"]
    local = local_scale * _aperiodic_noise(rng, (n_ch, n_times), sfreq) \
        * _slow_gain(rng, (n_ch, n_times), sfreq, _DRIFT_SD)
    if keys:
        local += _UV["burst"] * _parcel_bursts(rng, implant, keys, freqs[:, 0], sfreq, n_times)
    data += _volume_conduction(implant.xyz_mm) @ local
    del local
    # monopolar contacts share the activity at the reference contact; any re-reference but
    # "none" removes it
    data += _UV["reference"] * _aperiodic_noise(rng, (1, n_times), sfreq)
    data += _UV["sensor"] * rng.standard_normal((n_ch, n_times))

    # high gamma is local to each contact, so a Laplacian reference keeps it. At rest it is
    # each contact's own broadband activity, rising above the volume-conducted background from
    # ~50 Hz without an edge, its level drifting on its own so that speech is not read off as
    # a ratio to the low bands. Speech adds 70-120 Hz power that falls within the band as the
    # background does: a rise of high gamma lifts the power law rather than adding a plateau
    resting = _UV["resting_gamma"] * _slow_gain(rng, (n_ch, n_times), sfreq, _DRIFT_SD)
    data += resting * _local_broadband(rng, (n_ch, n_times), sfreq)
    drive = _UV["high_gamma"] * implant.speech_gain[:, None] \
        * _speech_envelope(stim, rng, n_times, sfreq)
    low, high = _HIGH_GAMMA_HZ
    data += drive * _shaped_noise(rng, (n_ch, n_times), sfreq, lambda f: np.where(
        (f >= low) & (f <= high), np.maximum(f, low) ** (-_HIGH_EXPONENT / 2), 0.0))
    del drive, resting
    word = _word_drive(stim, rng, n_times, sfreq)
    data += _UV["word_evoked"] * (implant.speech_gain * implant.sentence_sign)[:, None] * word
    del word
    evoked = _sentence_drive(stim, rng, n_times, sfreq)
    data += _UV["evoked"] * (implant.sentence_gain * implant.sentence_sign)[:, None] * evoked

    data += _line_noise(rng, n_ch, n_times, sfreq, line_freq)
    data[bad["flat"]] = _UV["flat"] * rng.standard_normal(n_times)
    data[bad["noisy"]] += _UV["noisy"] * (rng.standard_normal(n_times)
                                         + _colored_noise(rng, (1, n_times), sfreq, 2.0)[0])
    return data * 1e-6


# --- writing -------------------------------------------------------------------------------

_EVENT_COLUMNS = {
    "sentence_onset": "1 if the word is the first word of a sentence, else 0.",
    "word": "Made-up token spoken at this time (the stimulus is simulated).",
}


def _make_raw(data: np.ndarray, implant: Implant, stim: Stimulus, sfreq: float,
              line_freq: float, ses_index: int) -> mne.io.RawArray:
    """RawArray of sEEG channels in volts with word annotations (positions are written apart)."""
    info = mne.create_info(implant.names, sfreq, ch_types="seeg")
    raw = mne.io.RawArray(data, info, verbose=False)
    raw.set_meas_date(_MEAS_DATE + timedelta(days=7 * ses_index))
    raw.info["line_freq"] = line_freq
    extras = [{"sentence_onset": int(s), "word": w}
              for s, w in zip(stim.sentence_onset, stim.word, strict=True)]
    raw.set_annotations(mne.Annotations(stim.onset, stim.duration, ["word"] * len(stim.onset),
                                        extras=extras))
    return raw


def _write_recording(raw: mne.io.RawArray, bids_path: mne_bids.BIDSPath, implant: Implant,
                     bad: dict[str, int]) -> None:
    with warnings.catch_warnings():
        # the conversion to BrainVision is the point, not a surprise
        warnings.filterwarnings("ignore", message=".*BrainVision.*")
        mne_bids.write_raw_bids(raw, bids_path, event_id={"word": 1}, format="BrainVision",
                                allow_preload=True, overwrite=True,
                                extra_columns_descriptions=_EVENT_COLUMNS, verbose=False)
    mne_bids.mark_channels(bids_path, ch_names=[implant.names[bad[r]] for r in _BAD_CHANNELS],
                           status=["bad"] * len(_BAD_CHANNELS),
                           descriptions=list(_BAD_CHANNELS.values()), verbose=False)
    _write_positions(bids_path, implant)


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_positions(bids_path: mne_bids.BIDSPath, implant: Implant) -> None:
    """Replace mne-bids' placeholder positions by MNI coordinates in millimetres.

    The raw data carry no montage: mne-bids would write ``mni_tal`` positions in metres
    under ``space-fsaverage``, while the positions are MNI152NLin2009aSym millimetres, the
    convention of the template and of most public iEEG datasets.
    """
    entities = dict(root=bids_path.root, subject=bids_path.subject,
                    session=bids_path.session, datatype="ieeg")
    for suffix, extension in (("electrodes", ".tsv"), ("electrodes", ".json"),
                              ("coordsystem", ".json")):
        placeholder = mne_bids.BIDSPath(**entities, suffix=suffix, extension=extension).fpath
        placeholder.unlink(missing_ok=True)
    entities["space"] = SPACE
    electrodes = mne_bids.BIDSPath(**entities, suffix="electrodes", extension=".tsv").fpath
    table = pd.DataFrame({"name": implant.names, "x": implant.xyz_mm[:, 0],
                          "y": implant.xyz_mm[:, 1], "z": implant.xyz_mm[:, 2],
                          "size": 5.0})  # mm^2: a 2 mm long, 0.8 mm wide cylinder
    table.to_csv(electrodes, sep="\t", index=False, float_format="%.2f", lineterminator="\n")
    _write_json(electrodes.with_suffix(".json"), {"SpatialReference": SPACE})
    _write_json(mne_bids.BIDSPath(**entities, suffix="coordsystem", extension=".json").fpath, {
        "iEEGCoordinateSystem": SPACE,
        "iEEGCoordinateUnits": "mm",
        "iEEGCoordinateSystemDescription": (
            "ICBM 2009a nonlinear symmetric MNI152 template; contacts were placed in the "
            "Destrieux (aparc.a2009s+aseg) volume of cvs_avg35_inMNI152"),
    })


def _write_readme(root: Path, task: str) -> None:
    """A README saying the data are simulated; mne-bids appends its references below it."""
    text = (
        "Simulated sEEG dataset written by barista.simulate.\n\n"
        "No person was recorded: depth contacts sit at MNI152NLin2009aSym positions in the\n"
        f"Destrieux atlas, the signals are synthetic and the '{task}' task is a made-up\n"
        "speech stimulus (words in events.tsv). High-gamma power rises during words in\n"
        "temporal parcels and sentence onsets evoke a transient in temporal and inferior\n"
        "frontal parcels; the ground truth is in derivatives/simulation/.\n"
    )
    (root / "README").write_text(text, encoding="utf-8")


def _implant_table(implant: Implant, subject: str) -> pd.DataFrame:
    return pd.DataFrame({
        "subject": subject, "channel": implant.names,
        "x": implant.xyz_mm[:, 0], "y": implant.xyz_mm[:, 1], "z": implant.xyz_mm[:, 2],
        "atlas_label": [r.atlas_label for r in implant.regions],
        "kind": [r.kind for r in implant.regions],
        "hemisphere": [r.hemisphere for r in implant.regions],
        "parcel": [r.parcel for r in implant.regions],
        "lobe": [r.lobe for r in implant.regions],
        "speech_gain": implant.speech_gain, "sentence_gain": implant.sentence_gain,
        # polarity of both evoked responses (word potential, sentence transient) at the contact
        "evoked_sign": implant.sentence_sign,
    })


def simulated_contacts(*, n_subjects: int = 3, n_shafts: int = 6, contacts_per_shaft: int = 8,
                       seed: int = 7) -> pd.DataFrame:
    """Contacts that :func:`simulate_dataset` implants, without simulating any signal.

    Parameters
    ----------
    n_subjects, n_shafts, contacts_per_shaft, seed : int
        As in :func:`simulate_dataset`; implants do not depend on the other arguments.

    Returns
    -------
    contacts : pandas.DataFrame
        One row per subject and contact: ``subject``, ``channel``, ``x``, ``y``, ``z`` (MNI
        mm), ``atlas_label``, ``kind``, ``hemisphere``, ``parcel``, ``lobe``,
        ``speech_gain`` and ``sentence_gain``; ``contacts.tsv`` adds ``session`` and ``bad``.
    """
    _check_implant_arguments(n_subjects, n_shafts, contacts_per_shaft)
    atlas = default_atlas()
    return pd.concat([_implant_table(_make_implant(seed, i, n_shafts, contacts_per_shaft,
                                                   atlas), f"{i + 1:02d}")
                      for i in range(n_subjects)], ignore_index=True)


def ground_truth_table() -> pd.DataFrame:
    """Speech and sentence-onset gains of every responsive hemisphere x parcel.

    Returns
    -------
    table : pandas.DataFrame
        Columns ``hemisphere`` (``L``/``R``), ``parcel``, ``lobe``, ``speech_gain`` and
        ``sentence_gain``. A gain of 1 is the strongest response; contacts scatter around
        their parcel's gain (see ``contacts.tsv``).
    """
    rows = []
    for hemi in ("L", "R"):
        for parcel in RESPONSIVE_PARCELS:
            region = classify_label(f"ctx_{hemi.lower()}h_{parcel}")
            speech, sentence = _parcel_gains(region)
            rows.append(dict(hemisphere=hemi, parcel=parcel, lobe=region.lobe,
                             speech_gain=round(speech, 3), sentence_gain=round(sentence, 3)))
    return pd.DataFrame(rows)


def _write_ground_truth(root: Path, contacts: pd.DataFrame, arguments: dict) -> None:
    folder = root / "derivatives" / "simulation"
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "dataset_description.json", {
        "Name": "barista simulation ground truth",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "barista.simulate",
            "Version": __version__,
            "Description": "Simulated sEEG with known speech (high gamma, word-evoked "
                           "potential) and sentence-onset responses.",
        }],
    })
    tsv = dict(sep="\t", index=False, float_format="%.3f", lineterminator="\n")
    ground_truth_table().to_csv(folder / "ground_truth.tsv", **tsv)
    contacts.to_csv(folder / "contacts.tsv", **tsv)
    _write_json(folder / "simulation.json", {
        "arguments": arguments,
        "space": SPACE,
        "contact_spacing_mm": CONTACT_SPACING_MM,
        "amplitudes_uV": _UV,
        "spectral_exponent": _SPECTRAL_EXPONENT,
        "spectral_exponent_above_knee": _HIGH_EXPONENT,
        "spectral_knee_hz": _KNEE_HZ,
        "field_length_mm": _FIELD_LENGTH_MM,
        "local_highpass_hz": _LOCAL_HIGHPASS_HZ,
        "rhythm_reference_hz": _RHYTHM_REF_HZ,
        "mix_length_mm": _MIX_LENGTH_MM,
        "high_gamma_hz": list(_HIGH_GAMMA_HZ),
        "shafts": {t.letter: t.target for t in SHAFT_TEMPLATES},
        "barista_version": __version__,
    })
