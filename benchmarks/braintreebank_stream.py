"""Benchmark: peak memory and time of preprocessing one Brain Treebank trial, streamed.

A Brain Treebank trial is up to about two hours of about 200 contacts at 2048 Hz: 24 GB as
float64. :func:`barista.braintreebank_preprocess.preprocess_trial` reads one output channel's
contacts at a time, so its peak memory should grow with the trial's length (a few copies of
one channel) and not with the number of contacts. This script measures it.

Input: trial files in the release's layout (``data/electrode_<i>`` float64 datasets, as the
release stores them), with shafts of 10 contacts named ``T1a1..T1a10``, ``T1b1..``, ...;
each contact is 1/f-like noise plus 60 Hz line noise, written one contact at a time. Sizes
(duration x contacts) are the arguments; the default grid holds the realistic per-channel
length (2 h) at two contact counts and a shorter trial at one, so that the two factors can be
read apart. The layout files come from :func:`barista.braintreebank_fixture.make_skeleton`
(no ``neuroprobe`` needed); inputs are cached under ``benchmarks/.cache/``.

Each run starts a fresh interpreter that imports the libraries, records its peak RSS so far
(the baseline), preprocesses the trial with the paper's settings (2048 Hz kept, notch
60..360 Hz, Q 30, Laplacian) and reports its own peak RSS (``VmHWM`` of
``/proc/self/status``, Linux). Wall time covers the preprocessing only.

    python benchmarks/braintreebank_stream.py                  # 2 h x 16, 2 h x 48, 30 min x 48
    python benchmarks/braintreebank_stream.py --sizes 10x16    # minutes x contacts, a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

SFREQ = 2048.0
SHAFT = 10

# peak RSS from /proc/self/status (VmHWM): ru_maxrss survives execve on Linux, so a child would
# report its parent's peak (here the input builder's) instead of its own
_CHILD = r"""
import json, sys, time
import h5py, mne, numpy, scipy.signal
from barista.braintreebank_preprocess import preprocess_trial
def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm_kb()
params = dict(notch_q=30.0, line_freq=60.0, notch_max_hz=360.0, reference="laplacian",
              bandpass=None, resample_hz=None)
t0 = time.perf_counter(); c0 = time.process_time()
record = preprocess_trial(sys.argv[1], 1, 0, sys.argv[2], params)
wall = time.perf_counter() - t0; cpu = time.process_time() - c0
peak = hwm_kb()
print(json.dumps({"baseline_rss_mb": base / 1024, "peak_rss_mb": peak / 1024,
                  "wall_s": wall, "cpu_s": cpu, "n_out": len(record["Channels"])}))
"""


def build_input(folder: Path, minutes: float, contacts: int, seed: int = 0) -> Path:
    """Trial file ``sub_1_trial000.h5`` plus layout files, float64 as the release stores."""
    import h5py

    from barista.braintreebank_fixture import make_skeleton

    done = folder / "done.json"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    root = make_skeleton(folder, ["1_0"], n_contacts=1)
    names = [f"T1{chr(ord('a') + k // SHAFT)}{k % SHAFT + 1}" for k in range(contacts)]
    (root / "electrode_labels" / "sub_1" / "electrode_labels.json").write_text(json.dumps(names))
    import pandas as pd

    pd.DataFrame({"Electrode": names, "Destrieux": "ctx_lh_G_temp_sup-Lateral",
                  "DesikanKilliany": "ctx-lh-superiortemporal", "L": 150, "I": 140,
                  "P": 120}).to_csv(root / "localization" / "sub_1" / "depth-wm.csv",
                                    index=False)
    n = int(round(minutes * 60 * SFREQ))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SFREQ
    line = 30.0 * np.sin(2 * np.pi * 60.0 * t)
    del t
    with h5py.File(root / "sub_1_trial000.h5", "w") as fh:
        group = fh.create_group("data")
        for i in range(contacts):
            # 1/f-like: a leaky integral of white noise, plus its own white noise and the line
            x = rng.standard_normal(n)
            brown = np.empty(n)
            from scipy.signal import lfilter

            brown[:] = lfilter([1.0], [1.0, -0.995], x) * 5.0
            group.create_dataset(f"electrode_{i}", data=brown + 3.0 * x + line)
            del x, brown
    done.write_text(json.dumps({"minutes": minutes, "contacts": contacts}))
    return root


def run(root: Path, out_dir: Path) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root),
                           str(out_dir / "sub-1_ses-0_desc-preproc_ieeg.fif")],
                          capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["fif_mb"] = sum(p.stat().st_size for p in out_dir.glob("*.fif")) / 2**20
    shutil.rmtree(out_dir, ignore_errors=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["120x16", "120x48", "30x48"],
                        help="trial sizes as MINUTESxCONTACTS")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "braintreebank_stream.json")
    parser.add_argument("--keep-inputs", action="store_true",
                        help="keep the cached trial files (several GB at 2 h)")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        minutes, contacts = size.split("x")
        minutes, contacts = float(minutes), int(contacts)
        folder = args.cache / f"braintreebank-{minutes:g}min-{contacts}ch"
        t0 = time.perf_counter()
        root = build_input(folder, minutes, contacts)
        built = time.perf_counter() - t0
        result = run(root, args.cache / "braintreebank-out")
        n_times = int(round(minutes * 60 * SFREQ))
        row = {"minutes": minutes, "contacts": contacts, "output_channels": result["n_out"],
               "n_times": n_times,
               "trial_float64_mb": contacts * n_times * 8 / 2**20,
               "one_channel_float64_mb": n_times * 8 / 2**20,
               "input_h5_mb": (root / "sub_1_trial000.h5").stat().st_size / 2**20,
               "fif_mb": round(result["fif_mb"], 1),
               "baseline_rss_mb": round(result["baseline_rss_mb"], 1),
               "peak_rss_mb": round(result["peak_rss_mb"], 1),
               "wall_s": round(result["wall_s"], 1), "cpu_s": round(result["cpu_s"], 1),
               "input_build_s": round(built, 1)}
        row["peak_over_one_channel"] = round(
            (row["peak_rss_mb"] - row["baseline_rss_mb"]) / row["one_channel_float64_mb"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep_inputs:
            shutil.rmtree(folder, ignore_errors=True)
    report = {
        "benchmark": "braintreebank_stream",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count()},
        "settings": {"sfreq": SFREQ, "notch": "60..360 Hz, Q 30, zero-phase",
                     "reference": "laplacian", "resample_hz": None,
                     "input_dtype": "float64"},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'min':>5} {'contacts':>8} {'trial f64 MB':>12} {'peak RSS MB':>11} "
          f"{'base MB':>8} {'wall s':>7}")
    for r in rows:
        print(f"{r['minutes']:>5g} {r['contacts']:>8} {r['trial_float64_mb']:>12.0f} "
              f"{r['peak_rss_mb']:>11.0f} {r['baseline_rss_mb']:>8.0f} {r['wall_s']:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
