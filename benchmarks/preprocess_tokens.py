"""Benchmark: preprocessing + tokenization throughput and peak memory of one long recording.

The input is a simulated BIDS iEEG dataset with one recording (by default 600 s, 128 sEEG
contacts on 16 shafts of 8, 2048 Hz, 60 Hz line noise, word events), written once with
:func:`barista.simulate.simulate_dataset` and cached under ``benchmarks/.cache/``.

Stages, each run in a fresh Python process so that its peak RSS is its own:

``read_write`` (baseline)
    read the raw recording with mne-bids, write it back as float32 FIF, and write the same
    samples as a Parquet file of 3 s windows (no processing): the cost of simply reading and
    writing the data.
``preprocess``
    :func:`barista.preprocess.preprocess_recording` with the paper's settings: no resampling,
    notch at 60 Hz and its harmonics (Q = 30), Laplacian reference.
``segment``
    :func:`barista.segments.segment_recording` on the preprocessed FIF: 3 s windows of
    12 patches (512 samples at 2048 Hz), tasks speech_vs_nonspeech and sentence_onset.
``total``
    preprocess + segment.

Each stage is repeated ``--repeats`` times (rounds interleave the stages, so a change in the
machine's load hits all of them alike) and the median wall time is reported, together with
CPU time, channel-seconds per second (per wall second, per core used and per CPU second), peak
RSS and ratios to the ``read_write`` baseline of the same run. Wall and CPU time cover the work
only: the interpreter start and the imports (identical for every stage) are left out.

Run ``python benchmarks/preprocess_tokens.py --help`` for the options; ``--quick`` is a smoke
check (60 s, 32 channels, 1 repeat).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "preprocess_tokens.json"
CONTACTS_PER_SHAFT = 8
MAX_SHAFTS = 24  # barista.simulate: 12 shaft templates x 2 hemispheres
SUBJECT, SESSION = "01", "01"
RECORDING = f"sub-{SUBJECT}_ses-{SESSION}_task-listen_run-01"
RESULT_MARK = "BENCH_RESULT "
STAGES = ("read_write", "preprocess", "segment")

# The paper's setting (BaRISTA, NeurIPS 2025): 2048 Hz kept, Laplacian reference, notch at the
# 60 Hz harmonics with Q = 30, 3 s segments of 12 patches of 512 samples.
PAPER_CONFIG = {
    "preprocess": {"channel_types": ["seeg", "ecog"], "line_freq": 60.0, "notch_q": 30.0,
                   "reference": "laplacian", "bandpass": None, "resample_hz": None},
    "segments": {"length_s": 3.0, "n_patches": 12,
                 "tasks": ["speech_vs_nonspeech", "sentence_onset"]},
}

# Started with ``python -c``: load this file as a module and run one stage in the child.
CHILD_CODE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_bench_preprocess_tokens", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.child_main(sys.argv[2], sys.argv[3])
"""


# --- child process -----------------------------------------------------------------------------


def _vm_hwm_mib() -> float:
    """Peak RSS so far (``VmHWM``) in MiB, from /proc; falls back to getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_main(stage: str, spec_json: str) -> None:
    """Run one stage in this (fresh) process and print its measurements as one JSON line."""
    import gc
    import logging
    import resource
    import warnings

    # the same imports for every stage, before the clock starts, so that the interpreter and
    # library footprint is identical and stays out of the timings
    import mne  # noqa: F401
    import mne_bids  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import barista.bids  # noqa: F401
    import barista.config  # noqa: F401
    import barista.preprocess  # noqa: F401
    import barista.segments  # noqa: F401

    logging.basicConfig(level=logging.WARNING)
    warnings.simplefilter("ignore")
    spec = json.loads(spec_json)
    work = {"read_write": _stage_read_write, "preprocess": _stage_preprocess,
            "segment": _stage_segment}[stage]
    gc.collect()
    startup_rss = _vm_hwm_mib()
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    info = work(spec)
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    result = {"stage": stage, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": peak,
              "startup_rss_mib": startup_rss, **info}
    if profiler is not None:
        result["profile"] = _profile_summary(profiler, spec.get("profile_top", 15))
    print(RESULT_MARK + json.dumps(result), flush=True)


def _profile_summary(profiler, top: int) -> dict:
    """The functions with the most own time and the most cumulative time."""
    import pstats

    stats = pstats.Stats(profiler)
    rows = []
    for (fname, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():
        where = fname
        for marker in ("site-packages/", "/barista/", "/lib/python"):
            if marker in fname:
                where = fname.split(marker, 1)[1]
                where = ("barista/" + where) if marker == "/barista/" else where
                break
        rows.append({"function": f"{where}:{line}({func})", "ncalls": ncalls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})
    by_own = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:top]
    by_cum = sorted(rows, key=lambda r: r["cumtime_s"], reverse=True)[:top]
    return {"total_s": round(stats.total_tt, 3), "by_tottime": by_own, "by_cumtime": by_cum}


def _stage_read_write(spec: dict) -> dict:
    """Baseline: read the raw recording, write it as float32 FIF and as 3 s Parquet windows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mne_bids import read_raw_bids

    from barista.bids import bids_path_of
    from barista.segments import WINDOWS_PER_ROW_GROUP, signal_schema, window_samples

    out_dir = Path(spec["work_dir"]) / "read_write"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = read_raw_bids(bids_path_of(spec["bids_root"], RECORDING), verbose="error")
    raw.load_data(verbose="error")
    fif = out_dir / f"{RECORDING}_ieeg.fif"
    raw.save(fif, fmt="single", overwrite=True, verbose="error")

    # the same layout and compression as barista's signal.parquet: one row per window and
    # channel, WINDOWS_PER_ROW_GROUP windows per row group, zstd level 1; no z-scoring
    seg = spec["config"]["segments"]
    n_window = window_samples(seg["length_s"], seg["n_patches"], raw.info["sfreq"])
    onsets = np.arange(0, raw.n_times - n_window + 1, n_window, dtype=np.int64)
    names = list(raw.ch_names)
    n_ch = len(names)
    schema = signal_schema(n_window, {"recording": RECORDING, "baseline": True})
    channel = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(n_ch, dtype=np.int16), WINDOWS_PER_ROW_GROUP)),
        pa.array(names, pa.string()))
    parquet = out_dir / "signal.parquet"
    with pq.ParquetWriter(parquet, schema, compression="zstd", compression_level=1) as writer:
        for first in range(0, len(onsets), WINDOWS_PER_ROW_GROUP):
            block = onsets[first:first + WINDOWS_PER_ROW_GROUP]
            n = len(block)
            # window by window, so that no float64 copy of the whole row group is made
            windows = np.empty((n, n_ch, n_window), dtype=np.float32)
            for k, onset in enumerate(block):
                windows[k] = raw.get_data(start=int(onset), stop=int(onset) + n_window)
            table = pa.Table.from_arrays(
                [pa.array(np.repeat(np.arange(first, first + n, dtype=np.int32), n_ch)),
                 channel.slice(0, n * n_ch),
                 pa.FixedSizeListArray.from_arrays(pa.array(windows.reshape(-1)), n_window)],
                schema=schema)
            writer.write_table(table, row_group_size=n * n_ch)
    return {"n_channels_in": n_ch, "n_channels_out": n_ch, "n_windows": int(len(onsets)),
            "output_bytes": fif.stat().st_size + parquet.stat().st_size}


def _stage_preprocess(spec: dict) -> dict:
    from barista.bids import bids_path_of
    from barista.preprocess import preprocess_recording

    fif = Path(spec["fif"])
    record = preprocess_recording(bids_path_of(spec["bids_root"], RECORDING), fif,
                                  spec["config"]["preprocess"])
    return {"n_channels_out": len(record["Channels"]),
            "n_bad_dropped": len(record["BadChannelsDropped"]),
            "n_notch": len(record["NotchFrequencies"]),
            "output_bytes": fif.stat().st_size}


def _stage_segment(spec: dict) -> dict:
    import pandas as pd

    from barista.bids import bids_path_of, sidecar
    from barista.segments import segment_recording

    cfg = spec["config"]
    events = sidecar(bids_path_of(spec["bids_root"], RECORDING), "events", ".tsv")
    out_dir = Path(spec["work_dir"]) / "segments"
    summary = segment_recording(spec["fif"], events, pd.read_parquet(spec["localization"]),
                                RECORDING, out_dir, cfg["segments"], cfg["splits"])
    size = sum(p.stat().st_size for p in out_dir.glob("*.parquet"))
    return {"n_channels_out": summary["n_channels"], "n_windows": summary["n_windows"],
            "output_bytes": size}


# --- input -------------------------------------------------------------------------------------


def build_input(cache: Path, duration: float, channels: int, sfreq: float,
                rebuild: bool) -> dict:
    """Simulated BIDS dataset and its localization table, built once per size and cached."""
    import hashlib

    import barista.simulate
    from barista import __version__

    # the simulator's source is part of the key: a change to it builds the input again
    source = Path(barista.simulate.__file__).read_bytes()
    key = {"duration_s": duration, "channels": channels, "sfreq": sfreq,
           "n_shafts": channels // CONTACTS_PER_SHAFT, "contacts_per_shaft": CONTACTS_PER_SHAFT,
           "line_freq": 60.0, "seed": 7, "barista": __version__,
           "simulate_sha256": hashlib.sha256(source).hexdigest()[:16]}
    folder = cache / f"input-{duration:g}s-{channels}ch-{sfreq:g}Hz"
    marker = folder / "input.json"
    if not rebuild and marker.exists():
        meta = json.loads(marker.read_text())
        if meta.get("key") == key:
            meta["cached"] = True
            return meta
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    root = folder / "bids"
    print(f"building the input: {channels} channels x {duration:g} s at {sfreq:g} Hz "
          f"in {root} ...", flush=True)
    t0 = time.perf_counter()
    # in a child process, so that this process stays small and the memory is given back
    code = ("import sys, json; from barista.simulate import simulate_dataset; "
            "from barista.localize import localize_subject; "
            "a = json.loads(sys.argv[1]); "
            "root = simulate_dataset(a['root'], n_subjects=1, n_sessions=1, "
            "duration_s=a['duration_s'], sfreq=a['sfreq'], line_freq=a['line_freq'], "
            "n_shafts=a['n_shafts'], contacts_per_shaft=a['contacts_per_shaft'], "
            "seed=a['seed'], overwrite=True); "
            "t = localize_subject(root, a['subject'], [a['session']], space=None, "
            "need_atlas=True, white_matter_radius_mm=4.0, label_column=None); "
            "t.to_parquet(a['localization'], index=False)")
    args = {**key, "root": str(root), "subject": SUBJECT, "session": SESSION,
            "localization": str(folder / "localization.parquet")}
    subprocess.run([sys.executable, "-c", code, json.dumps(args)], check=True, cwd=REPO)
    raw_files = sorted((root / f"sub-{SUBJECT}" / f"ses-{SESSION}" / "ieeg").glob("*_ieeg.eeg"))
    meta = {"key": key, "bids_root": str(root), "recording": RECORDING,
            "localization": str(folder / "localization.parquet"),
            "raw_file": str(raw_files[0]), "raw_file_bytes": raw_files[0].stat().st_size,
            "build_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(meta, indent=2))
    meta["cached"] = False
    return meta


def warm_page_cache(path: str | Path) -> None:
    """Read a file once so that every stage starts with it in the page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


# --- parent ------------------------------------------------------------------------------------


def clear_outputs(stage: str, spec: dict) -> None:
    """Delete what an earlier run of ``stage`` wrote (not timed)."""
    if stage == "preprocess":
        fif = Path(spec["fif"])
        for path in (fif, fif.with_suffix(".json")):
            path.unlink(missing_ok=True)
    else:
        folder = {"read_write": "read_write", "segment": "segments"}[stage]
        shutil.rmtree(Path(spec["work_dir"]) / folder, ignore_errors=True)


def run_stage(stage: str, spec: dict) -> dict:
    """One stage in a fresh interpreter; returns the child's measurements."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD_CODE, str(Path(__file__).resolve()),
                           stage, json.dumps(spec)],
                          capture_output=True, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"stage {stage} failed with exit status {proc.returncode}")
    result = json.loads(lines[-1][len(RESULT_MARK):])
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def cores_used(wall: float, cpu: float, n_cpu: int) -> int:
    """Cores the stage kept busy: CPU time / wall time rounded up, at most the CPU count.

    A 5 % tolerance keeps short bursts of a second thread (a BLAS call) from doubling the
    count: 1.03 counts as one core, 1.2 as two.
    """
    return max(1, min(n_cpu, math.ceil(cpu / wall - 0.05)))


def summarize(name: str, runs: list[dict], channel_seconds: float, n_cpu: int) -> dict:
    walls = [r["wall_s"] for r in runs]
    wall = statistics.median(walls)
    # CPU time of the run whose wall time is the median (the lower middle one for even counts)
    middle = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    cpu = middle["cpu_s"]
    cores = cores_used(wall, cpu, n_cpu)
    return {
        "stage": name, "repeats": len(runs), "wall_s": wall, "wall_s_runs": walls,
        "cpu_s": cpu, "parallelism": cpu / wall, "cores_used": cores,
        "ch_s_per_s": channel_seconds / wall,
        "ch_s_per_s_per_core": channel_seconds / wall / cores,
        "ch_s_per_cpu_s": channel_seconds / cpu,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "startup_rss_mib": max(r["startup_rss_mib"] for r in runs),
        **{k: runs[-1][k] for k in ("n_channels_out", "n_windows", "output_bytes")
           if k in runs[-1]},
    }


def combine_total(pre: dict, seg: dict, channel_seconds: float, n_cpu: int) -> dict:
    wall, cpu = pre["wall_s"] + seg["wall_s"], pre["cpu_s"] + seg["cpu_s"]
    cores = cores_used(wall, cpu, n_cpu)
    return {
        "stage": "total", "repeats": pre["repeats"], "wall_s": wall, "cpu_s": cpu,
        "parallelism": cpu / wall, "cores_used": cores,
        "ch_s_per_s": channel_seconds / wall,
        "ch_s_per_s_per_core": channel_seconds / wall / cores,
        "ch_s_per_cpu_s": channel_seconds / cpu,
        # the stages run one after the other, so the peak of the pair is the larger peak
        "peak_rss_mib": max(pre["peak_rss_mib"], seg["peak_rss_mib"]),
        "startup_rss_mib": max(pre["startup_rss_mib"], seg["startup_rss_mib"]),
    }


def machine_info() -> dict:
    import mne
    import mne_bids
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import scipy

    import barista

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=REPO, check=False).stdout.strip()
    except OSError:
        commit = ""
    total_mem = None
    try:
        total_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": cpu_model,
        "memory_gib": round(total_mem, 1) if total_mem else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
        "mne": mne.__version__, "mne_bids": mne_bids.__version__, "pyarrow": pa.__version__,
        "barista": barista.__version__, "git_commit": commit,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS") if k in os.environ},
    }


def print_table(stages: dict, raw_gib: float) -> None:
    header = (f"{'stage':<11} {'wall s':>8} {'cpu s':>8} {'cores':>5} {'ch-s/s':>9} "
              f"{'ch-s/s/core':>11} {'ch-s/cpu-s':>10} {'peak MiB':>9} {'x wall':>7} "
              f"{'RSS/raw':>7}")
    print(header)
    print("-" * len(header))
    for s in stages.values():
        print(f"{s['stage']:<11} {s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} {s['cores_used']:>5d} "
              f"{s['ch_s_per_s']:>9.0f} {s['ch_s_per_s_per_core']:>11.0f} "
              f"{s['ch_s_per_cpu_s']:>10.0f} {s['peak_rss_mib']:>9.0f} "
              f"{s['wall_ratio_to_read_write']:>7.2f} {s['peak_rss_ratio_to_raw_float64']:>7.2f}")
    print(f"(x wall: wall time / read_write wall time; RSS/raw: peak RSS / raw data in float64, "
          f"{raw_gib:.2f} GiB)")


def print_profile(name: str, prof: dict, top: int = 10) -> None:
    print(f"\ncProfile of {name} ({prof['total_s']:.1f} s profiled), most own time:")
    for row in prof["by_tottime"][:top]:
        print(f"  {row['tottime_s']:8.2f} s own {row['cumtime_s']:8.2f} s cum "
              f"{row['ncalls']:>8} calls  {row['function']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Preprocessing + tokenization throughput (channel-seconds per second per "
                    "core) and peak RSS of one simulated recording, beside the cost of simply "
                    "reading and writing the same data.",
        epilog="Results: a table on stdout and a JSON file (--out). The simulated input is "
               "cached under --cache-dir and reused when its size matches.")
    parser.add_argument("--duration", type=float, default=600.0,
                        help="recording length in seconds (default 600)")
    parser.add_argument("--channels", type=int, default=128,
                        help="sEEG contacts, a multiple of 8: shafts of 8 contacts "
                             "(default 128 = 16 shafts)")
    parser.add_argument("--sfreq", type=float, default=2048.0,
                        help="sampling frequency in Hz (default 2048)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each stage; the median wall time is reported (default 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"JSON results file (default {DEFAULT_OUT.relative_to(REPO)}; "
                             "with --quick, preprocess_tokens_quick.json beside it)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 60 s, 32 channels, 1 repeat (overrides --duration, "
                             "--channels and --repeats)")
    parser.add_argument("--profile", action="store_true",
                        help="also run preprocess and segment once each under cProfile (not "
                             "timed) and store their top functions in the JSON")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the input and the stage outputs go (default "
                             f"{DEFAULT_CACHE.relative_to(REPO)})")
    parser.add_argument("--rebuild", action="store_true",
                        help="simulate the input again even when a cached copy matches")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep the stage outputs (FIF, Parquet) instead of deleting them")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.channels, args.repeats = 60.0, 32, 1
    if args.out is None:
        args.out = (DEFAULT_OUT.with_name("preprocess_tokens_quick.json") if args.quick
                    else DEFAULT_OUT)
    if args.channels % CONTACTS_PER_SHAFT or not 0 < args.channels <= (
            MAX_SHAFTS * CONTACTS_PER_SHAFT):
        parser.error(f"--channels must be a multiple of {CONTACTS_PER_SHAFT} between "
                     f"{CONTACTS_PER_SHAFT} and {MAX_SHAFTS * CONTACTS_PER_SHAFT}")
    if args.duration < 20:
        parser.error("--duration must be at least 20 s (barista.simulate's minimum)")
    if args.sfreq < 256:
        parser.error("--sfreq must be at least 256 Hz (barista.simulate's minimum)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from barista.config import validate_config
    from barista.preprocess import derivative_path

    t_start = time.perf_counter()
    machine = machine_info()
    n_cpu = machine["cpu_affinity"] or machine["cpu_count"] or 1
    cache = args.cache_dir.resolve()
    data = build_input(cache, args.duration, args.channels, args.sfreq, args.rebuild)
    print(f"input: {data['bids_root']} ({'cached' if data['cached'] else 'built'}, "
          f"{data['raw_file_bytes'] / 2**20:.0f} MiB raw file)", flush=True)

    config = validate_config(PAPER_CONFIG)
    work_dir = Path(data["bids_root"]).parent / "work"
    if work_dir.exists():
        shutil.rmtree(work_dir)
    fif = derivative_path(work_dir / "derivatives" / "barista-preproc", RECORDING)
    spec = {"bids_root": data["bids_root"], "localization": data["localization"],
            "work_dir": str(work_dir), "fif": str(fif),
            "config": {k: config[k] for k in ("preprocess", "segments", "splits")}}

    warm_page_cache(data["raw_file"])
    runs: dict[str, list[dict]] = {stage: [] for stage in STAGES}
    for round_ in range(args.repeats):
        for stage in STAGES:  # segment reads the FIF that preprocess wrote just before
            # every run writes into an empty place: freeing the previous run's files (about
            # 1 GiB) would otherwise be timed too, in some runs and not others
            clear_outputs(stage, spec)
            result = run_stage(stage, spec)
            runs[stage].append(result)
            print(f"round {round_ + 1}/{args.repeats} {stage:<10} wall {result['wall_s']:7.2f} s"
                  f"  cpu {result['cpu_s']:7.2f} s  peak RSS {result['peak_rss_mib']:7.0f} MiB",
                  flush=True)

    channel_seconds = args.channels * args.duration
    raw_bytes = args.channels * args.duration * args.sfreq * 8
    stages = {s: summarize(s, runs[s], channel_seconds, n_cpu) for s in STAGES}
    stages["total"] = combine_total(stages["preprocess"], stages["segment"], channel_seconds,
                                    n_cpu)
    base = stages["read_write"]
    for s in stages.values():
        s["wall_ratio_to_read_write"] = s["wall_s"] / base["wall_s"]
        s["cpu_ratio_to_read_write"] = s["cpu_s"] / base["cpu_s"]
        s["peak_rss_ratio_to_read_write"] = s["peak_rss_mib"] / base["peak_rss_mib"]
        s["peak_rss_ratio_to_raw_float64"] = s["peak_rss_mib"] * 2**20 / raw_bytes

    profile = {}
    if args.profile:
        for stage in ("preprocess", "segment"):
            print(f"profiling {stage} ...", flush=True)
            profile[stage] = run_stage(stage, {**spec, "profile": True})["profile"]

    print()
    print(f"{args.channels} channels x {args.duration:g} s at {args.sfreq:g} Hz = "
          f"{channel_seconds:g} channel-seconds; median of {args.repeats} run(s); "
          f"{n_cpu} CPU(s)")
    print_table(stages, raw_bytes / 2**30)
    for stage, prof in profile.items():
        print_profile(stage, prof)

    report = {
        "benchmark": "preprocess_tokens",
        "description": "preprocessing + tokenization throughput and peak RSS of one recording, "
                       "beside the cost of reading and writing the same data (read_write)",
        "parameters": {"duration_s": args.duration, "channels": args.channels,
                       "sfreq": args.sfreq, "repeats": args.repeats, "quick": args.quick,
                       "channel_seconds": channel_seconds,
                       "raw_float64_bytes": raw_bytes,
                       "config": spec["config"]},
        "definitions": {
            "wall_s": "median over repeats of the stage's wall time (imports excluded)",
            "cpu_s": "CPU time (user + system, all threads) of the median-wall run",
            "cores_used": "min(CPU count, ceil(cpu_s / wall_s - 0.05))",
            "ch_s_per_s": "channels x duration / wall_s",
            "ch_s_per_s_per_core": "ch_s_per_s / cores_used",
            "ch_s_per_cpu_s": "channels x duration / cpu_s",
            "peak_rss_mib": "max over repeats of the child's ru_maxrss (imports included)",
            "startup_rss_mib": "peak RSS after the imports, before the stage's work",
            "wall_ratio_to_read_write": "wall_s / wall_s of read_write in this run",
            "peak_rss_ratio_to_raw_float64": "peak RSS / (channels x samples x 8 bytes)",
            "total": "preprocess + segment (sums of times; the larger peak RSS)",
        },
        "machine": machine,
        "input": {k: v for k, v in data.items() if k != "key"},
        "stages": stages,
        "runs": runs,
        "profile": profile,
        "benchmark_wall_s": round(time.perf_counter() - t_start, 1),
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if not args.keep_outputs:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
