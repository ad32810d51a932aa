"""Descriptive statistics of multichannel recordings: spectrum, line noise, correlations, amplitude.

The same functions measure a real recording and a simulated one, so that the two can be
compared side by side (``benchmarks/simulator_vs_real.py``). Every function takes an array of
shape (channels, times) in any unit and returns one value per channel (or per channel pair),
so callers summarise across channels themselves (:func:`summary`).
"""

from __future__ import annotations

import numpy as np
from scipy import signal, stats

from . import reference

BANDS_HZ: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "low_gamma": (30.0, 70.0),
    "high_gamma": (70.0, 150.0),
}


def welch_psd(data: np.ndarray, sfreq: float, segment_s: float = 2.0) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Welch power spectral density per channel (Hann, 50 % overlap, linear detrend).

    Returns ``(freqs, psd)`` with ``psd`` of shape (channels, freqs), in unit**2 / Hz.
    """
    nperseg = int(round(segment_s * sfreq))
    if data.shape[-1] < nperseg:
        raise ValueError(f"welch_psd: {data.shape[-1]} samples are fewer than one "
                         f"{segment_s} s segment ({nperseg} samples)")
    return signal.welch(data, sfreq, window="hann", nperseg=nperseg, detrend="linear",
                        axis=-1)


def line_harmonics(line_freq: float, fmax: float) -> list[float]:
    """The line frequency and its harmonics up to ``fmax`` Hz (inclusive)."""
    return [k * line_freq for k in range(1, int(fmax // line_freq) + 1)]


def line_peak_db(freqs: np.ndarray, psd: np.ndarray, freq: float, peak_hz: float = 1.0,
                 flank_hz: tuple[float, float] = (3.0, 8.0)) -> np.ndarray:
    """Per channel, how far the spectrum at ``freq`` stands above its neighbourhood, in dB.

    The peak is the largest bin within ``peak_hz`` of ``freq``; the neighbourhood is the median
    of the bins ``flank_hz`` away on both sides. 0 dB means no line at all; a sine of power P
    over a background density N gives about 10 log10(P / (N * bin width)) with a Hann window.
    """
    distance = np.abs(freqs - freq)
    near = distance <= peak_hz
    flank = (distance >= flank_hz[0]) & (distance <= flank_hz[1])
    if not near.any() or flank.sum() < 2:
        raise ValueError(f"line_peak_db: {freq} Hz and its flanks lie outside the spectrum "
                         f"({freqs[0]:g}-{freqs[-1]:g} Hz)")
    return 10 * np.log10(psd[:, near].max(axis=1) / np.median(psd[:, flank], axis=1))


def detect_line_frequency(freqs: np.ndarray, psd: np.ndarray,
                          candidates: tuple[float, ...] = (50.0, 60.0)) -> float:
    """The candidate mains frequency whose fundamental stands highest (median over channels)."""
    heights = [np.median(line_peak_db(freqs, psd, f)) for f in candidates]
    return float(candidates[int(np.argmax(heights))])


def without_line_bins(freqs: np.ndarray, psd: np.ndarray, line_freq: float,
                      half_width_hz: float = 2.0) -> np.ndarray:
    """The spectrum with the bins near the line and its harmonics replaced by a straight line
    in log-log between the bins on either side, so slopes and band powers ignore the mains."""
    out = psd.copy()
    masked = np.zeros(len(freqs), dtype=bool)
    for f in line_harmonics(line_freq, freqs[-1]):
        masked |= np.abs(freqs - f) <= half_width_hz
    keep = ~masked & (freqs > 0)
    fill = masked & (freqs > 0)
    if not fill.any():
        return out
    log_f = np.log10(np.where(freqs > 0, freqs, 1.0))  # the DC bin is neither kept nor filled
    for row in range(psd.shape[0]):
        out[row, fill] = 10 ** np.interp(log_f[fill], log_f[keep], np.log10(psd[row, keep]))
    return out


def spectral_exponent(freqs: np.ndarray, psd: np.ndarray, fmin: float,
                      fmax: float) -> np.ndarray:
    """Per channel, the exponent x of a power law P ~ 1 / f**x fitted between fmin and fmax.

    A least-squares line through log10 power against log10 frequency over the Welch bins in
    the range; x is minus its slope (2 for a random walk, 0 for white noise).
    """
    band = (freqs >= fmin) & (freqs <= fmax)
    if band.sum() < 3:
        raise ValueError(f"spectral_exponent: fewer than 3 bins in {fmin}-{fmax} Hz")
    x = np.log10(freqs[band])
    y = np.log10(psd[:, band])
    x_c = x - x.mean()
    slope = (y - y.mean(axis=1, keepdims=True)) @ x_c / (x_c @ x_c)
    return -slope


def band_power(freqs: np.ndarray, psd: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per channel, power between ``low`` (inclusive) and ``high`` (exclusive) Hz."""
    band = (freqs >= low) & (freqs < high)
    return psd[:, band].sum(axis=1) * (freqs[1] - freqs[0])


def relative_band_powers(freqs: np.ndarray, psd: np.ndarray,
                         bands: dict[str, tuple[float, float]] = BANDS_HZ
                         ) -> dict[str, np.ndarray]:
    """Per channel, each band's share of the power summed over all ``bands`` (shares sum to 1)."""
    powers = {name: band_power(freqs, psd, *edges) for name, edges in bands.items()}
    total = sum(powers.values())
    return {name: p / total for name, p in powers.items()}


def band_envelope(data: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Amplitude envelope (Hilbert magnitude) of the ``low``-``high`` Hz band of each channel.

    A zero-phase Butterworth band-pass of order 4 (8 after forward and backward passes).
    """
    if not 0 < low < high < sfreq / 2:
        raise ValueError(f"band_envelope: need 0 < low < high < {sfreq / 2} Hz, "
                         f"got {low}-{high} Hz")
    return np.abs(signal.hilbert(bandpass(data, sfreq, low, high), axis=-1))


def bandpass(data: np.ndarray, sfreq: float, low: float, high: float) -> np.ndarray:
    """Zero-phase Butterworth band-pass (order 4 each way) of each channel."""
    sos = signal.butter(4, [low, high], btype="bandpass", fs=sfreq, output="sos")
    return signal.sosfiltfilt(sos, data, axis=-1)


def correlation_matrix(data: np.ndarray) -> np.ndarray:
    """Pearson correlation between every pair of channels (NaN for a constant channel)."""
    centred = data - data.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred @ centred.T) / np.outer(norm, norm)


def pair_classes(anchors: list[str], xyz_mm: np.ndarray | None = None,
                 far_mm: float = 30.0) -> dict[str, list[tuple[int, int]]]:
    """Channel pairs by how the contacts they sit at relate.

    ``anchors`` names the contact each channel sits at (``LA3`` for ``LA3`` and for the bipolar
    ``LA3-LA4``), parsed with :func:`barista.reference.parse_contact`. ``adjacent``: the same
    shaft, contact numbers 1 apart; ``next_adjacent``: 2 apart; ``far``: at least ``far_mm``
    apart where positions are given (rows of ``xyz_mm`` with NaN are skipped), else on
    different shafts.
    """
    parsed = [reference.parse_contact(a) for a in anchors]
    out: dict[str, list[tuple[int, int]]] = {"adjacent": [], "next_adjacent": [], "far": []}
    for i in range(len(anchors)):
        for j in range(i + 1, len(anchors)):
            a, b = parsed[i], parsed[j]
            same_shaft = a is not None and b is not None and a[0] == b[0]
            if same_shaft and abs(a[1] - b[1]) == 1:
                out["adjacent"].append((i, j))
            elif same_shaft and abs(a[1] - b[1]) == 2:
                out["next_adjacent"].append((i, j))
            if xyz_mm is not None:
                distance = float(np.linalg.norm(xyz_mm[i] - xyz_mm[j]))
                if distance >= far_mm:  # False for NaN positions
                    out["far"].append((i, j))
            elif a is not None and b is not None and a[0] != b[0]:
                out["far"].append((i, j))
    return out


def pair_values(matrix: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Entries of a symmetric channel x channel matrix at the given pairs."""
    if not pairs:
        return np.empty(0)
    rows, cols = np.array(pairs).T
    return matrix[rows, cols]


def amplitude_stats(data: np.ndarray, threshold_sd: float = 5.0) -> dict[str, np.ndarray]:
    """Per channel: standard deviation, excess kurtosis (0 for a Gaussian) and the fraction of
    samples more than ``threshold_sd`` standard deviations from the mean (5.7e-7 for a
    Gaussian at 5 SD; artefacts and spikes raise both)."""
    centred = data - data.mean(axis=1, keepdims=True)
    sd = centred.std(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        beyond = (np.abs(centred) > threshold_sd * sd[:, None]).mean(axis=1)
    return {"sd": sd, "kurtosis": stats.kurtosis(centred, axis=1, fisher=True),
            "beyond_sd_fraction": beyond}


def log_variance_spread(sd: np.ndarray) -> dict[str, float]:
    """How unequal channel variances are: SD and IQR of log10 variance, max / min variance."""
    log_var = np.log10(sd[sd > 0] ** 2)
    q1, q3 = np.percentile(log_var, [25, 75])
    return {"sd_log10_var": float(log_var.std()), "iqr_log10_var": float(q3 - q1),
            "max_over_min_var": float(10 ** (log_var.max() - log_var.min()))}


def summary(values: np.ndarray) -> dict[str, float]:
    """Median, quartiles and count of the finite values (NaN where there are none)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return {"median": float("nan"), "q1": float("nan"), "q3": float("nan"), "n": 0}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "n": int(finite.size)}
