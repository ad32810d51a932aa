"""barista.signal_stats measures what it claims, on signals whose properties are known."""

from __future__ import annotations

import numpy as np
import pytest

from barista import signal_stats as ss

SFREQ = 500.0


def _power_law_noise(rng: np.random.Generator, n_channels: int, n_times: int,
                     exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectral density is exactly ~ 1 / f ** exponent."""
    spectrum = np.fft.rfft(rng.standard_normal((n_channels, n_times)), axis=-1)
    freqs = np.fft.rfftfreq(n_times, 1 / SFREQ)
    spectrum[:, 1:] *= freqs[1:] ** (-exponent / 2)
    spectrum[:, 0] = 0
    return np.fft.irfft(spectrum, n=n_times, axis=-1)


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_spectral_exponent_recovers_a_known_power_law(exponent):
    data = _power_law_noise(np.random.default_rng(0), 6, int(60 * SFREQ), exponent)
    freqs, psd = ss.welch_psd(data, SFREQ)
    for low, high in ((2.0, 40.0), (40.0, 150.0)):
        measured = ss.spectral_exponent(freqs, psd, low, high)
        np.testing.assert_allclose(measured, exponent, atol=0.1)


def test_line_peak_db_matches_the_sine_to_noise_ratio():
    rng = np.random.default_rng(1)
    n_times = int(60 * SFREQ)
    t = np.arange(n_times) / SFREQ
    sd, amplitude = 1.0, 0.5
    data = sd * rng.standard_normal((4, n_times)) + amplitude * np.sin(2 * np.pi * 60 * t)
    freqs, psd = ss.welch_psd(data, SFREQ, segment_s=2.0)
    # white noise: one-sided density 2 sd^2 / fs; a sine of power A^2 / 2 fills one bin of
    # the Hann window's equivalent noise bandwidth, 1.5 bins of 0.5 Hz
    noise_density = 2 * sd**2 / SFREQ
    peak_density = amplitude**2 / 2 / (1.5 * 0.5) + noise_density
    expected = 10 * np.log10(peak_density / noise_density)  # 21.2 dB
    np.testing.assert_allclose(ss.line_peak_db(freqs, psd, 60.0), expected, atol=0.7)
    # no line at 50 Hz: the largest of 5 noise bins over the median of their neighbours
    assert np.all(np.abs(ss.line_peak_db(freqs, psd, 50.0)) < 2.0)
    assert ss.detect_line_frequency(freqs, psd) == 60.0
    fifty = sd * rng.standard_normal((4, n_times)) + amplitude * np.sin(2 * np.pi * 50 * t)
    assert ss.detect_line_frequency(*ss.welch_psd(fifty, SFREQ)) == 50.0
    with pytest.raises(ValueError, match="outside the spectrum"):
        ss.line_peak_db(freqs, psd, 260.0)


def test_without_line_bins_restores_the_power_law_under_the_mains():
    rng = np.random.default_rng(2)
    n_times = int(60 * SFREQ)
    clean = _power_law_noise(rng, 4, n_times, 2.0)
    t = np.arange(n_times) / SFREQ
    lines = sum(np.sin(2 * np.pi * f * t) * 0.05 * clean.std() for f in (60.0, 120.0, 180.0))
    freqs, psd = ss.welch_psd(clean + lines, SFREQ)
    _, psd_clean = ss.welch_psd(clean, SFREQ)
    assert np.all(ss.line_peak_db(freqs, psd, 60.0) > 20)  # the line is there
    filled = ss.without_line_bins(freqs, psd, 60.0)
    near = np.abs(freqs - 60.0) <= 2.0
    ratio = filled[:, near] / psd_clean[:, near]
    assert np.all((ratio > 0.5) & (ratio < 2.0))
    np.testing.assert_allclose(ss.spectral_exponent(freqs, filled, 40.0, 200.0), 2.0, atol=0.1)
    # bins away from every harmonic below Nyquist (60-240 Hz) are left as they were
    away = np.all([np.abs(freqs - f) > 2 for f in (60, 120, 180, 240)], axis=0)
    np.testing.assert_array_equal(filled[:, away], psd[:, away])


def test_relative_band_powers_put_a_sine_in_its_band():
    rng = np.random.default_rng(3)
    t = np.arange(int(20 * SFREQ)) / SFREQ
    data = np.stack([np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 100 * t)])
    data += 1e-3 * rng.standard_normal(data.shape)
    shares = ss.relative_band_powers(*ss.welch_psd(data, SFREQ))
    np.testing.assert_allclose(sum(shares.values()), 1.0)
    assert shares["alpha"][0] > 0.99 and shares["high_gamma"][1] > 0.99
    assert shares["delta"].max() < 0.01


def test_band_envelope_follows_a_known_modulation():
    t = np.arange(int(20 * SFREQ)) / SFREQ
    envelope = 1.0 + 0.5 * np.sin(2 * np.pi * 0.5 * t)
    data = (envelope * np.sin(2 * np.pi * 100 * t))[None]
    measured = ss.band_envelope(data, SFREQ, 70.0, 150.0)[0]
    inner = slice(int(SFREQ), -int(SFREQ))  # away from the filter's edges
    np.testing.assert_allclose(measured[inner], envelope[inner], atol=0.02)
    with pytest.raises(ValueError, match="low < high"):
        ss.band_envelope(data, SFREQ, 70.0, 300.0)


def test_correlations_and_pair_classes():
    rng = np.random.default_rng(4)
    base = rng.standard_normal(1000)
    other = rng.standard_normal(1000)
    data = np.stack([base, 3 * base, -base, other])
    r = ss.correlation_matrix(data)
    np.testing.assert_allclose([r[0, 1], r[0, 2]], [1.0, -1.0])
    assert abs(r[0, 3]) < 0.1
    names = ["A1", "A2", "A3", "B1"]  # anchors: the bipolar A3-A4 sits at A3
    pairs = ss.pair_classes(names)
    assert pairs == {"adjacent": [(0, 1), (1, 2)], "next_adjacent": [(0, 2)],
                     "far": [(0, 3), (1, 3), (2, 3)]}
    xyz = np.array([[0.0, 0, 0], [3.5, 0, 0], [7.0, 0, 0], [10.0, 0, 0]])
    # with positions, far means at least far_mm apart, on any shaft; NaN positions never are
    assert ss.pair_classes(names, xyz, far_mm=7.0)["far"] == [(0, 2), (0, 3)]
    xyz[3] = np.nan
    assert ss.pair_classes(names, xyz, far_mm=7.0)["far"] == [(0, 2)]
    np.testing.assert_allclose(ss.pair_values(r, pairs["next_adjacent"]), [-1.0])


def test_amplitude_stats_count_artefacts():
    rng = np.random.default_rng(5)
    gaussian = rng.standard_normal((2, 200_000))
    stats = ss.amplitude_stats(gaussian)
    assert np.all(np.abs(stats["kurtosis"]) < 0.05)
    assert np.all(stats["beyond_sd_fraction"] < 1e-5)
    spiky = gaussian.copy()
    spiky[1, ::100] = 30.0  # 1 % of samples far out
    stats = ss.amplitude_stats(spiky)
    assert stats["kurtosis"][1] > 50
    np.testing.assert_allclose(stats["beyond_sd_fraction"][1], 0.01, rtol=0.01)
    spread = ss.log_variance_spread(np.array([1.0, 10.0]))
    np.testing.assert_allclose([spread["max_over_min_var"], spread["iqr_log10_var"]],
                               [100.0, 1.0])


def test_summary_ignores_non_finite_values():
    assert ss.summary(np.array([1.0, 2.0, 3.0, np.nan])) == {"median": 2.0, "q1": 1.5,
                                                             "q3": 2.5, "n": 3}
    assert ss.summary(np.array([]))["n"] == 0
