"""Preprocessing of one Brain Treebank trial, streamed: one output channel at a time.

A trial holds up to two hours of about 200 contacts at 2048 Hz (24 GB as float64), so it is
never read whole. Each output channel is formed from the one to three contacts it needs
(re-reference first: the Laplacian and the notch are both linear and time-invariant, so
notching the re-referenced signal equals re-referencing the notched contacts), then notched
(zero-phase IIR, the same cascade as :func:`barista.preprocess.notch`), optionally
band-passed and resampled, and appended as float32 to a channel-major scratch file. The FIF
derivative is then written from that file one time block at a time. Peak memory is a few
copies of one channel's float64 samples, whatever the number of contacts.

The FIF and its JSON sidecar have the names, units and keys of a BIDS source's derivative
(:func:`barista.preprocess.preprocess_recording`), so segmentation reads both alike.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import h5py
import mne
import numpy as np
from mne._fiff.utils import _mult_cal_one
from scipy import signal

from . import __version__
from .braintreebank import (
    LINE_FREQ,
    SFREQ,
    VOLTS_PER_UNIT,
    Layout,
    contact_derivations,
    select_contacts,
)
from .errors import ConfigError, DataError
from .preprocess import move_staged, notch_frequencies

log = logging.getLogger(__name__)

_BLOCK_S = 10.0  # seconds per FIF write buffer: 200 channels x 10 s x 2048 Hz = 33 MB


class TrialFile:
    """The ``data/electrode_<i>`` datasets of a trial file, checked against the contact list.

    Every listed contact must have its dataset, all of one length; datasets beyond the list
    (no name, so no contact) are reported in :attr:`unlabeled` and never read.
    """

    def __init__(self, path: Path, labels: list[str], labels_file: Path):
        self.path = path
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as err:
            raise DataError(f"{path}: not a readable HDF5 file: {err}") from err
        if "data" not in self._h5:
            self.close()
            raise DataError(f"{path}: group 'data' is missing (the release stores each "
                            "contact as data/electrode_<i>)")
        group = self._h5["data"]
        names = set(group.keys())
        missing = [(i, c) for i, c in enumerate(labels) if f"electrode_{i}" not in names]
        if missing:
            i, contact = missing[0]
            self.close()
            raise DataError(f"{path}: contact {contact!r} (entry {i} of {labels_file}) has no "
                            f"dataset data/electrode_{i}; the file holds {len(names)} datasets "
                            f"for {len(labels)} listed contacts ({len(missing)} without one)")
        self.unlabeled = sorted(names - {f"electrode_{i}" for i in range(len(labels))})
        self.labels = labels
        lengths = {}
        for i, contact in enumerate(labels):
            ds = group[f"electrode_{i}"]
            if ds.ndim != 1:
                self.close()
                raise DataError(f"{path}: data/electrode_{i} ({contact!r}) has shape "
                                f"{ds.shape}, not one dimension")
            lengths[contact] = ds.shape[0]
        self.n_times = lengths[labels[0]] if labels else 0
        odd = [c for c, n in lengths.items() if n != self.n_times]
        if odd:
            self.close()
            raise DataError(f"{path}: contact {odd[0]!r} has {lengths[odd[0]]} samples, "
                            f"{labels[0]!r} has {self.n_times}; every contact must be as long")
        self._index = {c: i for i, c in enumerate(labels)}

    def read(self, contact: str) -> np.ndarray:
        """One contact's whole signal as float64 (in the file's units)."""
        return self._h5["data"][f"electrode_{self._index[contact]}"][()].astype(np.float64)

    def close(self) -> None:
        self._h5.close()


class _ChannelMajorRaw(mne.io.BaseRaw):
    """A float32 channel-major file (channel after channel) presented to mne as a Raw, so
    ``Raw.save`` can write a FIF one time block at a time without holding the data."""

    def __init__(self, path: Path, info: mne.Info, n_times: int):
        super().__init__(info, preload=False, first_samps=[0], last_samps=[n_times - 1],
                         filenames=[None], raw_extras=[{"path": str(path), "n_times": n_times}],
                         orig_format="single", verbose="error")

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
        extra = self._raw_extras[fi]
        n_ch, n_times = extra["orig_nchan"], extra["n_times"]
        block = np.empty((n_ch, stop - start), dtype=np.float64)
        with open(extra["path"], "rb") as fh:
            for ch in range(n_ch):
                # plain reads, not a memory map: mapped pages would stay in this process
                fh.seek((ch * n_times + start) * 4)
                block[ch] = np.fromfile(fh, dtype="<f4", count=stop - start)
        _mult_cal_one(data, block, idx, cals, mult)


def _notch_sos(freqs: list[float], q: float, sfreq: float) -> np.ndarray | None:
    if not freqs:
        return None
    return np.concatenate([signal.tf2sos(*signal.iirnotch(f, q, fs=sfreq)) for f in freqs])


def _resample_ratio(sfreq: float, target: float | None) -> tuple[int, int] | None:
    if not target or target == sfreq:
        return None
    from fractions import Fraction

    ratio = Fraction(target / sfreq).limit_denominator(10_000)
    if abs(float(ratio) * sfreq - target) > 1e-6:
        raise ConfigError(f"config key 'preprocess.resample_hz': {target:g} Hz is not a "
                          f"rational fraction of {sfreq:g} Hz")
    return ratio.numerator, ratio.denominator


def preprocess_trial(root: str | Path, subject: int, trial: int, out_fname: str | Path,
                     params: dict[str, Any], sfreq: float = SFREQ) -> dict[str, Any]:
    """Preprocess one trial into ``out_fname`` (FIF) and its ``.json`` sidecar.

    Parameters
    ----------
    root : path-like
        The Brain Treebank release folder.
    subject, trial : int
        Which trial (``sub_<subject>_trial<trial:03d>.h5``).
    out_fname : path-like
        ``..._desc-preproc_ieeg.fif``.
    params : dict
        The validated ``preprocess`` section: ``notch_q``, ``line_freq`` (null = 60 Hz),
        ``notch_max_hz``, ``reference``, ``bandpass``, ``resample_hz``.
    sfreq : float
        Sampling rate of the trial file (the release's is 2048 Hz).

    Returns
    -------
    record : dict
        The provenance written to the sidecar.
    """
    layout = Layout(root)
    selection = select_contacts(layout, subject)
    derivs = contact_derivations(layout, subject, selection, params["reference"])
    trial_path = layout.trial_file(subject, trial)
    source = TrialFile(trial_path, selection.labels, layout.labels_file(subject))
    try:
        return _write(source, selection, derivs, Path(out_fname), params, sfreq)
    finally:
        source.close()


def _write(source: TrialFile, selection, derivs, out_fname: Path, params: dict,
           sfreq: float) -> dict:
    if source.n_times < sfreq:
        raise DataError(f"{source.path}: {source.n_times} samples, less than 1 s; is it "
                        "truncated?")
    line_freq = float(params["line_freq"] or LINE_FREQ)
    freqs = notch_frequencies(line_freq, sfreq, params.get("notch_max_hz"))
    sos = _notch_sos(freqs, params["notch_q"], sfreq)
    band = params["bandpass"]
    if band is not None:
        for edge in band:
            if edge is not None and edge >= sfreq / 2:
                raise ConfigError(f"config key 'preprocess.bandpass': edge {edge:g} Hz is not "
                                  f"below the Nyquist frequency {sfreq / 2:g} Hz of "
                                  f"{source.path}")
    ratio = _resample_ratio(sfreq, params["resample_hz"])
    out_sfreq = sfreq * ratio[0] / ratio[1] if ratio else sfreq

    out_fname.parent.mkdir(parents=True, exist_ok=True)
    staging = out_fname.parent / f".{out_fname.stem}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        scratch = staging / "channels.f32"
        n_out = None
        with open(scratch, "wb") as fh:
            for d in derivs:
                x = _channel(source, d, sos, band, ratio, sfreq)
                if n_out is None:
                    n_out = len(x)
                (x * VOLTS_PER_UNIT).astype("<f4").tofile(fh)
                del x
        info = mne.create_info([d.name for d in derivs], out_sfreq, ch_types="seeg")
        info["line_freq"] = line_freq
        raw = _ChannelMajorRaw(scratch, info, n_out)
        raw.save(staging / out_fname.name, fmt="single", buffer_size_sec=_BLOCK_S,
                 overwrite=True, verbose="error")
        scratch.unlink()
        record = {
            "Sources": [str(source.path)],
            "SamplingFrequency": out_sfreq,
            "OriginalSamplingFrequency": sfreq,
            "PowerLineFrequency": line_freq,
            "NotchFrequencies": freqs,
            "NotchQ": params["notch_q"],
            "Reference": params["reference"],
            "Bandpass": band,
            "BadChannelsDropped": selection.corrupted,
            "TriggerChannelsDropped": selection.triggers,
            "CorruptedListedButNotRecorded": selection.corrupted_unknown,
            "UnlabeledDatasetsIgnored": source.unlabeled,
            "ChannelsWithoutReference": sorted(set(selection.candidates)
                                               - {d.anchor for d in derivs}),
            "Channels": [{"name": d.name, "anchor": d.anchor, "weights": d.weights}
                         for d in derivs],
            "Units": "V (the release's values read as microvolts)",
            "GeneratedBy": {"Name": "barista", "Version": __version__},
        }
        (staging / out_fname.with_suffix(".json").name).write_text(json.dumps(record, indent=2))
        move_staged(staging, out_fname)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if source.unlabeled:
        log.warning("%s: datasets %s have no contact name and were not read", source.path,
                    source.unlabeled[:5])
    return record


def _channel(source: TrialFile, d, sos, band, ratio, sfreq: float) -> np.ndarray:
    """One output channel: weighted contacts, notched, band-passed, resampled (float64)."""
    x = None
    for contact, weight in d.weights.items():
        part = source.read(contact)
        if not np.all(np.isfinite(part)):
            raise DataError(f"{source.path}: contact {contact!r} holds non-finite samples "
                            f"(first at {int(np.argmax(~np.isfinite(part)))})")
        x = part * weight if x is None else x + part * weight
        del part
    if sos is not None:
        x = signal.sosfiltfilt(sos, x)
    if band is not None:
        x = mne.filter.filter_data(x[None], sfreq, band[0], band[1], verbose="error")[0]
    if ratio is not None:
        x = mne.filter.resample(x, ratio[0], ratio[1], method="polyphase", verbose="error")
    return x
