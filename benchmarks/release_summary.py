"""Summarise a run of config/release.yaml: finetuning AUROCs of the authors' released encoders
beside ours, random init and the linear floor, mean ± s.e.m. over decoded recordings.

    snakemake --cores 2 --configfile config/release.yaml      # the run (timed by you)
    python benchmarks/release_summary.py --results results/release --wall-s 900 \\
        --out benchmarks/results/release_2048hz.json

The numbers are read from the run's ``decoding.parquet``; nothing is recomputed. Each cell is
the mean over the decoded recordings (seeds averaged first) and the s.e.m. over recordings.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("auroc", "probe_auroc")
MODEL_ORDER = {"barista_release": 0, "barista": 1, "random_init": 2, "linear": 3}


def summarise(decoding: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, task, model, encode, mask): mean, s.e.m. and n over recordings."""
    rows = decoding[decoding["metric"].isin(METRICS)]
    per_rec = rows.groupby(["metric", "task", "model", "encode_scale", "mask_scale",
                            "recording"], as_index=False)["value"].mean()
    out = per_rec.groupby(["metric", "task", "model", "encode_scale", "mask_scale"])["value"]
    table = out.agg(mean="mean", n="count",
                    sem=lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1
                    else float("nan")).reset_index()
    table["order"] = table["model"].map(MODEL_ORDER).fillna(9)
    return table.sort_values(["metric", "task", "order", "encode_scale"]).drop(columns="order")


def markdown(table: pd.DataFrame, metric: str) -> str:
    tasks = sorted(table["task"].unique())
    lines = ["| model | encode / mask | " + " | ".join(tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    mine = table[table["metric"] == metric]
    for (model, enc, mask), group in mine.groupby(["model", "encode_scale", "mask_scale"],
                                                  sort=False):
        cells = []
        for task in tasks:
            hit = group[group["task"] == task]
            cells.append("" if hit.empty else f"{hit['mean'].iloc[0]:.3f} ± "
                         f"{hit['sem'].iloc[0]:.3f} (n={int(hit['n'].iloc[0])})")
        lines.append(f"| {model} | {enc} / {mask} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results/release")
    parser.add_argument("--config", default="config/release.yaml")
    parser.add_argument("--wall-s", type=float, required=True,
                        help="measured wall time of the snakemake run, seconds")
    parser.add_argument("--cpu-s", type=float, default=None,
                        help="user + sys CPU time of the run, seconds")
    parser.add_argument("--note", default="", help="conditions of the measurement")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    results = Path(args.results)
    table = summarise(pd.read_parquet(results / "decoding.parquet"))
    summary = {
        "date": date.today().isoformat(),
        "config": args.config,
        "results": str(results),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "wall_s": args.wall_s,
        "cpu_s": args.cpu_s,
        "note": args.note,
        "recordings": sorted(pd.read_parquet(results / "decoding.parquet")["recording"]
                             .unique()),
        "cells": table.to_dict(orient="records"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2, default=float) + "\n")
    for metric in METRICS:
        print(f"\n{metric} (mean ± s.e.m. over recordings)\n{markdown(table, metric)}")
    return summary


if __name__ == "__main__":
    main()
