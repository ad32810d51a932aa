"""Neuroprobe figure: our models beside the published leaderboard, laid out as it is (rows =
models, columns = split type x task), each cell the mean test ROC AUC, published rows marked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import leaderboard
from .. import neuroprobe as npb
from .style import PAGE_IN, Drawn, message_figure, new_figure


def leaderboard_figure(table: pd.DataFrame, dataset: str) -> Drawn:
    """``table``: :func:`barista.leaderboard.leaderboard_table`."""
    if not (table["source"] != "published").any():
        fig = message_figure("No Neuroprobe results in this run (config key "
                             "'evaluation.protocols' lacks neuroprobe).")
        return fig, table
    grid = leaderboard.wide(table)
    values = grid.to_numpy(dtype=float)
    rows = [f"{model} (published)" if source == "published" else model
            for source, model in grid.index]
    columns = [f"{npb.SPLIT_FOLDERS[s]}\n{npb.TASKS[t]}" for s, t in grid.columns]
    height = 0.9 + 0.2 * len(rows)
    fig = new_figure(PAGE_IN, height)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.5, vmax=1.0,
                      aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=5,
                        color="white" if values[i, j] < 0.75 else "black")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    n_published = int((grid.index.get_level_values("source") == "published").sum())
    if 0 < n_published < len(rows):  # a rule between the published rows and ours
        ax.axhline(n_published - 0.5, color="white", linewidth=1.5)
    for tick, (source, _) in zip(ax.get_yticklabels(), grid.index, strict=True):
        if source == "published":
            tick.set_color("#555555")
            tick.set_fontstyle("italic")
    ax.tick_params(length=0)
    ax.set_title(f"Neuroprobe-Lite, test ROC AUC: published leaderboard (Brain Treebank) and this "
                 f"run ({dataset}; other data than the Brain Treebank do not compare)")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="ROC AUC")
    return fig, table
