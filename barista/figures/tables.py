"""The results table in the paper's layout: rows encode scale, columns mask scale, one table per
task and setting, with rows for random-init models and the linear floor (and any other
model), as Markdown and as a tidy CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import (
    PANEL,
    VARIANT,
    best_vs_next,
    format_p,
    mean_sem_text,
    ordered,
    variant_summary,
    with_tests,
)
from .style import NONE, base_model, pretty, scale_index, variant_of

NO_MASK = "—"  # column of variants without a mask scale


def row_name(model: str, encode: str) -> str:
    """``channel`` for the paper's BaRISTA, ``BaRISTA prior+raw · channel`` for a variant."""
    if model == "barista":
        return encode
    return f"{pretty(model)} · {encode}" if encode != NONE else pretty(model)


def _row_key(model: str, encode: str) -> tuple:
    group = {"barista": 0, "random_init": 2}.get(base_model(model), 3 if encode == NONE else 1)
    return group, variant_of(model), model if group in (1, 3) else "", *scale_index(encode)


def results_table(rows: pd.DataFrame, metric_name: str = "test AUROC",
                  digits: int = 3) -> tuple[str, pd.DataFrame]:
    """Markdown text and tidy table of mean ± s.e.m. per variant, panel by panel.

    Parameters
    ----------
    rows : DataFrame
        Tidy rows of one metric (see :func:`barista.figures.aggregate.tidy`).

    Returns
    -------
    markdown, table
        ``table`` has one row per cell: ``setting, task, row, column, model, encode_scale,
        mask_scale, mean, sem, n, rank, text`` and, on the best cell of each panel, the
        Wilcoxon test against the runner-up (``compared_with, n_pairs, wilcoxon_statistic,
        wilcoxon_p``).
    """
    summary = variant_summary(rows)
    tests = best_vs_next(rows, summary)
    cells = ordered(with_tests(summary, tests))
    if cells.empty:
        return "# Results\n\nNo results.\n", cells
    cells["row"] = [row_name(m, e) for m, e in cells[["model", "encode_scale"]].to_numpy()]
    cells["column"] = cells["mask_scale"].where(cells["mask_scale"] != NONE, NO_MASK)
    cells["text"] = [mean_sem_text(m, s, digits) for m, s in cells[["mean", "sem"]].to_numpy()]

    lines = [f"# Results: {metric_name}", "",
             f"Mean ± s.e.m. of the {metric_name} over held-out sessions × seeds; rows are the "
             "encode scale, columns the mask scale (— = no mask: random-init models and "
             "baselines). The best cell of each table is bold; n per cell is in "
             "results_table.csv.", ""]
    for (setting, task), panel in cells.groupby(PANEL, sort=False):
        masks = sorted({c for c in panel["column"] if c != NO_MASK}, key=scale_index)
        columns = masks + ([NO_MASK] if (panel["column"] == NO_MASK).any() else [])
        row_keys = sorted({(m, e) for m, e in panel[["model", "encode_scale"]].to_numpy()},
                          key=lambda k: _row_key(*k))
        lines += [f"## {pretty(task)} ({pretty(setting)})", "",
                  "| encode \\ mask | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for model, encode in row_keys:
            mine = panel[(panel["model"] == model) & (panel["encode_scale"] == encode)]
            texts = []
            for column in columns:
                cell = mine[mine["column"] == column]
                if cell.empty:
                    texts.append("")
                    continue
                text = cell["text"].iloc[0]
                texts.append(f"**{text}**" if cell["rank"].iloc[0] == 1 else text)
            lines.append(f"| {row_name(model, encode)} | " + " | ".join(texts) + " |")
        test = tests[(tests["setting"] == setting) & (tests["task"] == task)]
        if not test.empty:
            t = test.iloc[0]
            stat = ("" if not np.isfinite(t["wilcoxon_statistic"])
                    else f"W = {t['wilcoxon_statistic']:g}, ")
            lines += ["", f"Best: {t['best_label']} ({t['best_mean']:.{digits}f}) vs next: "
                      f"{t['next_label']} ({t['next_mean']:.{digits}f}); Wilcoxon signed-rank "
                      f"over {t['n_pairs']} ({t['paired_over']}) pairs: "
                      f"{stat}{format_p(t['wilcoxon_p'])}."]
        lines.append("")
    columns = ["setting", "task", "row", "column", *VARIANT, "label", "mean", "sem", "n",
               "rank", "text", "compared_with", "n_pairs", "paired_over", "wilcoxon_statistic",
               "wilcoxon_p"]
    return "\n".join(lines), cells[columns]


def write_results_table(rows: pd.DataFrame, stem: str | Path,
                        metric_name: str = "test AUROC") -> pd.DataFrame:
    """Write ``<stem>.md`` and ``<stem>.csv``; returns the table."""
    markdown, table = results_table(rows, metric_name)
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.md").write_text(markdown, encoding="utf-8")
    table.to_csv(f"{stem}.csv", index=False, float_format="%.6g", lineterminator="\n")
    return table
