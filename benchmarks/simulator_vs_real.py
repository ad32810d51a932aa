"""Measure a real sEEG recording and the simulator's recordings with the same code, side by side.

For each recording: the Welch spectrum (power-law exponents over 2-40 and 40-150 Hz, relative
band powers), the line noise (height of the mains peak and its harmonics over the neighbouring
bins, and which mains frequency it is), the correlation of contact pairs (adjacent on a shaft,
next-adjacent, at least 30 mm apart) after each re-reference the pipeline offers, in the
1-150 Hz broadband signal and in the 70-150 Hz envelope, and the amplitude distribution
(excess kurtosis, fraction of samples beyond 5 SD, spread of channel variances). Notch and
references are the pipeline's own functions (``barista.preprocess.notch``,
``barista.reference``); the measures are ``barista.signal_stats``.

The real recording is ``../shared/real/seeg_pat01`` (20 s, 88 contacts, BSD-3, from
mne-misc-data). The simulated ones use the demo's settings from ``config/config.yaml``: the
demo's first recording (sub-01, ses-01, full length) and one with the real recording's size
(11 shafts x 8 = 88 contacts, 20 s). Both are written as BIDS and read back with mne-bids,
as the pipeline reads them.

    python benchmarks/simulator_vs_real.py \\
        --out benchmarks/results/simulator_vs_real.json --markdown table.md \\
        --figure docs/notes/simulator_vs_real.png
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import mne
import mne_bids
import numpy as np
import yaml

from barista import reference, signal_stats, simulate
from barista.preprocess import notch, notch_frequencies
from barista.simulate import simulate_dataset

REFERENCES = ("none", "car", "bipolar", "laplacian")
BROADBAND_HZ = (1.0, 150.0)
HIGH_GAMMA_HZ = (70.0, 150.0)
# 70-110 Hz: inside the simulator's high-gamma band (70-120 Hz), where a flat floor would show
SLOPE_RANGES_HZ = {"2-40": (2.0, 40.0), "40-150": (40.0, 150.0), "70-110": (70.0, 110.0)}
FAR_MM = 30.0
LINE_MAX_HZ = 240.0  # the harmonics below both recordings' Nyquist (256 Hz for the demo's 512)


def read_recording(bids_path: mne_bids.BIDSPath) -> dict:
    """Good sEEG/ECoG channels in microvolts, their names, positions (mm) and the sidecars'
    line frequency, read with mne-bids as ``barista.preprocess`` reads them."""
    raw = mne_bids.read_raw_bids(bids_path, verbose="error").load_data()
    picks = [c for c, t in zip(raw.ch_names, raw.get_channel_types(), strict=True)
             if t in ("seeg", "ecog") and c not in raw.info["bads"]]
    montage = raw.get_montage()
    positions = montage.get_positions()["ch_pos"] if montage is not None else {}
    xyz = np.array([positions.get(c, np.full(3, np.nan)) for c in picks]) * 1000.0
    return {"data": raw.get_data(picks) * 1e6, "sfreq": float(raw.info["sfreq"]),
            "names": picks, "xyz_mm": xyz, "line_freq": raw.info["line_freq"],
            "bads": list(raw.info["bads"])}


def real_recording(root: Path) -> dict:
    paths = mne_bids.find_matching_paths(root, datatypes="ieeg", extensions=".edf")
    if len(paths) != 1:
        raise FileNotFoundError(f"{root}: expected one .edf recording, found {len(paths)}")
    return read_recording(paths[0])


def simulated_recording(folder: Path, settings: dict) -> dict:
    """Simulate one subject's first session with ``settings`` and read it back."""
    root = simulate_dataset(folder, **settings)
    paths = mne_bids.find_matching_paths(root, subjects="01", sessions="01",
                                         datatypes="ieeg", extensions=".vhdr")
    return read_recording(paths[0])


def _summaries(values: dict[str, np.ndarray]) -> dict[str, dict]:
    return {name: signal_stats.summary(v) for name, v in values.items()}


def median_spectra(rec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Median Welch spectrum across channels without and with the Laplacian reference."""
    data = rec["data"] - rec["data"].mean(axis=1, keepdims=True)
    out = {}
    for scheme in ("none", "laplacian"):
        derivs = reference.derivations(rec["names"], scheme)
        freqs, psd = signal_stats.welch_psd(reference.apply(data, rec["names"], derivs),
                                            rec["sfreq"])
        out[scheme] = (freqs, np.median(psd, axis=0))
    return out


def plot_spectra(spectra: dict[str, dict], path: Path) -> None:
    """Median spectra of every recording, each divided by its mean over 8-12 Hz so that
    shapes compare (absolute levels depend on the amplifier and the reference)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, scheme in zip(axes, ("none", "laplacian"), strict=True):
        for label, per in spectra.items():
            freqs, psd = per[scheme]
            alpha = (freqs >= 8) & (freqs <= 12)
            keep = (freqs > 0) & (freqs <= 250)
            ax.loglog(freqs[keep], psd[keep] / psd[alpha].mean(), label=label, lw=1)
        ax.set_title(f"reference: {scheme}")
        ax.set_xlabel("Hz")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("median PSD / its 8-12 Hz mean")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def measure(rec: dict, notch_q: float) -> dict:
    """Every measure of one recording (see the module docstring)."""
    data, sfreq, names = rec["data"], rec["sfreq"], rec["names"]
    data = data - data.mean(axis=1, keepdims=True)
    freqs, psd = signal_stats.welch_psd(data, sfreq)
    detected = signal_stats.detect_line_frequency(freqs, psd)
    line = {f"{f:g}": signal_stats.summary(signal_stats.line_peak_db(freqs, psd, f))
            for f in signal_stats.line_harmonics(detected, LINE_MAX_HZ)}
    other = 50.0 if detected == 60.0 else 60.0
    out = {
        "n_channels": len(names), "sfreq": sfreq, "duration_s": data.shape[1] / sfreq,
        "bads": rec["bads"], "declared_line_freq": rec["line_freq"],
        "detected_line_freq": detected, "line_peak_db": line,
        f"line_peak_db_at_{other:g}": signal_stats.summary(
            signal_stats.line_peak_db(freqs, psd, other)),
        "references": {},
    }
    notched = notch(data.copy(), sfreq, notch_frequencies(detected, sfreq), notch_q)
    position = dict(zip(names, rec["xyz_mm"], strict=True))
    for scheme in REFERENCES:
        derivs = reference.derivations(names, scheme)
        referenced = reference.apply(notched, names, derivs)
        # spectra before the notch, whose skirts reach beyond the interpolated line bins
        anchors = [d.anchor for d in derivs]
        pairs = signal_stats.pair_classes(anchors, np.array([position[a] for a in anchors]),
                                          far_mm=FAR_MM)
        f_ref, p_ref = signal_stats.welch_psd(reference.apply(data, names, derivs), sfreq)
        p_ref = signal_stats.without_line_bins(f_ref, p_ref, detected)
        broadband = signal_stats.bandpass(referenced, sfreq, *BROADBAND_HZ)
        envelope = signal_stats.band_envelope(referenced, sfreq, *HIGH_GAMMA_HZ)
        amplitude = signal_stats.amplitude_stats(broadband)
        correlations = {}
        for kind, signals in (("broadband", broadband), ("high_gamma_envelope", envelope)):
            matrix = signal_stats.correlation_matrix(signals)
            correlations[kind] = {cls: signal_stats.summary(signal_stats.pair_values(matrix, p))
                                  for cls, p in pairs.items()}
        out["references"][scheme] = {
            "n_channels": len(derivs),
            "spectral_exponent": {
                name: signal_stats.summary(signal_stats.spectral_exponent(f_ref, p_ref, lo, hi))
                for name, (lo, hi) in SLOPE_RANGES_HZ.items()},
            "relative_band_power": _summaries(signal_stats.relative_band_powers(f_ref, p_ref)),
            "correlation": correlations,
            "amplitude": _summaries(amplitude),
            "variance_spread": signal_stats.log_variance_spread(amplitude["sd"]),
        }
    return out


# --- the side-by-side table ------------------------------------------------------------------


def _cell(s: dict, digits: int = 2) -> str:
    if not s["n"]:
        return "-"
    return f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}]"


def markdown_table(recordings: dict[str, dict]) -> str:
    """One row per measure, one column per recording: median [IQR] across channels or pairs."""
    labels = list(recordings)
    rows = [("channels, sfreq, duration",
             [f"{r['n_channels']}, {r['sfreq']:g} Hz, {r['duration_s']:.0f} s"
              for r in recordings.values()])]
    rows.append(("mains (declared / detected)",
                 [f"{r['declared_line_freq']:g} / {r['detected_line_freq']:g} Hz"
                  for r in recordings.values()]))
    for f in recordings[labels[0]]["line_peak_db"]:
        rows.append((f"line peak at {f} Hz, dB over neighbours",
                     [_cell(r["line_peak_db"][f], 1) if f in r["line_peak_db"] else "-"
                      for r in recordings.values()]))
    for scheme in REFERENCES:
        per = [r["references"][scheme] for r in recordings.values()]
        rows.append((f"**{scheme}**: output channels", [str(p["n_channels"]) for p in per]))
        for name in SLOPE_RANGES_HZ:
            rows.append((f"{scheme}: 1/f exponent {name} Hz",
                         [_cell(p["spectral_exponent"][name]) for p in per]))
        for band in signal_stats.BANDS_HZ:
            rows.append((f"{scheme}: relative power {band}",
                         [_cell(p["relative_band_power"][band], 3) for p in per]))
        for kind in ("broadband", "high_gamma_envelope"):
            for cls in ("adjacent", "next_adjacent", "far"):
                rows.append((f"{scheme}: r {kind}, {cls}",
                             [_cell(p["correlation"][kind][cls]) for p in per]))
        rows.append((f"{scheme}: SD (uV, 1-150 Hz)", [_cell(p["amplitude"]["sd"], 1)
                                                      for p in per]))
        rows.append((f"{scheme}: excess kurtosis", [_cell(p["amplitude"]["kurtosis"])
                                                    for p in per]))
        rows.append((f"{scheme}: fraction beyond 5 SD (x1e-4)",
                     [_cell({k: (v * 1e4 if k != "n" else v)
                             for k, v in p["amplitude"]["beyond_sd_fraction"].items()})
                      for p in per]))
        rows.append((f"{scheme}: SD of log10 variance across channels",
                     [f"{p['variance_spread']['sd_log10_var']:.2f}" for p in per]))
    lines = ["| measure | " + " | ".join(labels) + " |",
             "|---|" + "---|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path("../shared/real/seeg_pat01"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/simulator_vs_real.json"))
    parser.add_argument("--markdown", type=Path, help="also write the side-by-side table here")
    parser.add_argument("--figure", type=Path, help="also plot the median spectra here (PNG)")
    args = parser.parse_args()
    mne.set_log_level("ERROR")
    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    demo = dict(config["dataset"]["simulate"], n_subjects=1, n_sessions=1)
    matched = dict(demo, n_shafts=11, contacts_per_shaft=8, duration_s=20.0)
    notch_q = float(config["preprocess"]["notch_q"])

    real = real_recording(args.real)
    recordings = {"real seeg_pat01": measure(real, notch_q)}
    spectra = {"real seeg_pat01": median_spectra(real)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, settings in (("simulated, demo recording", demo),
                                ("simulated, 88 contacts x 20 s", matched)):
            rec = simulated_recording(Path(tmp) / label.replace(" ", "_").replace(",", ""),
                                      settings)
            recordings[label] = measure(rec, notch_q)
            recordings[label]["simulate_arguments"] = settings
            spectra[label] = median_spectra(rec)
    # the commit may hold an uncommitted simulator: its hash says which one ran
    simulator = hashlib.sha256(Path(simulate.__file__).read_bytes()).hexdigest()[:12]
    result = {"date": date.today().isoformat(), "commit": _git_commit(),
              "simulate_py_sha256": simulator,
              "python": platform.python_version(), "numpy": np.__version__,
              "mne": mne.__version__, "notch_q": notch_q, "broadband_hz": BROADBAND_HZ,
              "high_gamma_hz": HIGH_GAMMA_HZ, "far_mm": FAR_MM, "recordings": recordings}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    table = markdown_table(recordings)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if args.figure:
        plot_spectra(spectra, args.figure)
    print(table)


if __name__ == "__main__":
    main()
