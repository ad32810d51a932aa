"""Neuroprobe figure: our models beside the published leaderboard, laid out as it is (rows =
models, columns = split type x task), each cell the mean test ROC AUC, published rows marked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import leaderboard
from .. import neuroprobe as npb
from .decoding import CHANCE, _cell_text_color
from .style import (
    PAGE_IN,
    RC,
    Drawn,
    chars_per_line,
    message_figure,
    new_figure,
    paper_style,
    wrap,
)


def leaderboard_figure(table: pd.DataFrame, dataset: str) -> Drawn:
    """``table``: :func:`barista.leaderboard.leaderboard_table`. One panel per split type (the
    leaderboard's pages), a column per task, a row per model; published rows in grey italics
    above a white rule, this run's below. Colours centred on chance, as the other heatmaps."""
    from matplotlib.colors import TwoSlopeNorm

    with paper_style():
        if not (table["source"] != "published").any():
            return message_figure("No Neuroprobe results in this run (config key "
                                  "'evaluation.protocols' lacks neuroprobe)."), table
        grid = leaderboard.wide(table)
        splits = list(dict.fromkeys(s for s, _ in grid.columns))
        tasks = list(dict.fromkeys(t for _, t in grid.columns))
        rows = [f"{model} (published)" if source == "published" else model
                for source, model in grid.index]
        n_published = int((grid.index.get_level_values("source") == "published").sum())
        values = grid.to_numpy(dtype=float)
        spread = max(0.1, float(np.nanmax(np.abs(values - CHANCE))))
        norm = TwoSlopeNorm(vcenter=CHANCE, vmin=CHANCE - spread, vmax=CHANCE + spread)
        width = min(PAGE_IN, 2.2 + len(splits) * (0.25 + 0.45 * len(tasks)) + 0.6)
        fig = new_figure(width, 0.9 + 0.16 * len(rows))
        axes = fig.subplots(1, len(splits), squeeze=False, sharey=True)[0]
        image = None
        for ax, split in zip(axes, splits, strict=True):
            cols = [grid.columns.get_loc((split, t)) if (split, t) in grid.columns else None
                    for t in tasks]
            cell = np.array([[values[i, c] if c is not None else np.nan for c in cols]
                             for i in range(len(rows))])
            image = ax.imshow(np.ma.masked_invalid(cell), cmap="RdBu_r", norm=norm,
                              aspect="auto")
            for i in range(cell.shape[0]):
                for j in range(cell.shape[1]):
                    if np.isfinite(cell[i, j]):
                        ax.text(j, i, f"{cell[i, j]:.3f}", ha="center", va="center", fontsize=5,
                                color=_cell_text_color(cell[i, j], norm))
            ax.set_xticks(range(len(tasks)), tasks)
            ax.set_yticks(range(len(rows)), rows)
            if 0 < n_published < len(rows):
                ax.axhline(n_published - 0.5, color="white", linewidth=1.5)
            ax.tick_params(length=0)
            for side in ("top", "right", "left", "bottom"):
                ax.spines[side].set_visible(False)
            ax.set_title(npb.SPLIT_FOLDERS[split])
        for tick, (source, _) in zip(axes[0].get_yticklabels(), grid.index, strict=True):
            if source == "published":
                tick.set_color("#555555")
                tick.set_fontstyle("italic")
        fig.suptitle(wrap(f"Neuroprobe-Lite test ROC AUC: the published leaderboard (Brain "
                          f"Treebank) and this run ({dataset}); numbers of other data than the "
                          "Brain Treebank do not compare with it", chars_per_line(width)),
                     fontsize=RC["axes.titlesize"])
        bar = fig.colorbar(image, ax=axes, shrink=0.9, aspect=15, pad=0.02)
        bar.set_label("ROC AUC")
        return fig, table
