"""Compare the result tables of two runs of the workflow, row by row.

    python benchmarks/compare_tables.py results_before/demo results/demo

Rows are matched on every column but ``value`` and ``config_hash``; a table written before the
``split_kind`` -> ``setting`` rename is read with the column renamed. Prints, per table, the rows
only one run has, how many values differ (and the largest difference) and how many rows share a
config hash; exits 1 when a row or value differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from barista.evaluation import RENAMED_RESULT_COLUMNS


def compare(first: Path, second: Path, name: str) -> bool:
    a = pd.read_parquet(first / f"{name}.parquet").rename(columns=RENAMED_RESULT_COLUMNS)
    b = pd.read_parquet(second / f"{name}.parquet")
    if set(a.columns) != set(b.columns):
        print(f"{name}: columns differ: {sorted(set(a.columns) ^ set(b.columns))}")
        return False
    keys = [c for c in a.columns if c not in ("value", "config_hash")]
    merged = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    delta = (both["value_a"] - both["value_b"]).abs()
    differing = int((delta > 0).sum())
    only = merged["_merge"].value_counts()
    print(f"{name}: {len(a)} vs {len(b)} rows, {len(both)} in both, "
          f"{only.get('left_only', 0)} only in the first, {only.get('right_only', 0)} only in "
          f"the second; {differing} values differ (largest {delta.max() if len(both) else 0:.3g}); "
          f"config_hash equal in {int((both['config_hash_a'] == both['config_hash_b']).sum())}")
    return differing == 0 and len(both) == len(a) == len(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="results/<ds> of the first run")
    parser.add_argument("second", type=Path, help="results/<ds> of the second run")
    parser.add_argument("--tables", nargs="+", default=["decoding", "reconstruction"])
    args = parser.parse_args()
    same = [compare(args.first, args.second, name) for name in args.tables]
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
