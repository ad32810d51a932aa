"""Training curves: the pretraining loss per step of every scale pair, and the validation AUROC
per finetuning epoch of every model variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from .aggregate import PANEL, VARIANT, ordered, summarise, tidy, variant_key
from .decoding import CHANCE, panel_title, panels
from .style import (
    PAGE_IN,
    Drawn,
    label,
    mask_linestyle,
    message_figure,
    new_figure,
    paper_style,
    pretty,
    scale_color,
    scale_index,
    variant_of,
    variant_style,
    with_variant,
)

LOSS_LABEL = "masked-token loss (MSE)"
RUN = [*VARIANT, "pretrain_seed"]  # one pretraining run


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    if window <= 1:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    return (cumsum[end] - cumsum[start]) / (end - start)


def _scale_legend(encodes: list[str], masks: list[str], random_init: bool = False) -> list:
    handles = [Line2D([], [], color=scale_color(e), label=f"encode {e}") for e in encodes]
    handles += [Line2D([], [], color="#666666", linestyle=mask_linestyle(k), label=f"mask {k}")
                for k in masks]
    if random_init:
        handles.append(Line2D([], [], color="#666666", linestyle=":", label="random init"))
    return handles


def pretraining(history: pd.DataFrame) -> Drawn:
    """Training loss per optimizer step (raw, faint, and a moving average) and validation loss
    per epoch, one line per pretraining run (variant, encode-mask pair, seed; a variant other
    than the paper's is its own model, :func:`barista.figures.style.with_variant`). Variants
    predict different targets, so the loss axis is logarithmic and compares runs of one
    variant, not variants."""
    if history.empty:
        table = history
    else:
        history = history.assign(variant=history.get("variant", "paper"),
                                 pretrain_seed=history.get("pretrain_seed", 0))
        history["model"] = [with_variant(m, v) for m, v in
                            history[["model", "variant"]].to_numpy()]
        table = ordered(history.assign(setting="", task=""))
        table = table[["model", "encode_scale", "mask_scale", "pretrain_seed", "split", "epoch",
                       "step", "loss"]].reset_index(drop=True)
    with paper_style():
        if table.empty:
            return message_figure("no pretraining histories"), table
        pairs = sorted({tuple(v) for v in table[RUN].itertuples(index=False)},
                       key=lambda v: (variant_key(*v[:3]), v[3]))
        fig = new_figure(PAGE_IN, 2.5)
        ax_train, ax_val = fig.subplots(1, 2)
        smoothed = []
        for pair in pairs:
            style = variant_style(*pair[:3])
            mine = table[(table[RUN] == list(pair)).all(axis=1)]
            train = mine[mine["split"] == "train"].sort_values("step")
            val = mine[mine["split"] == "val"].sort_values("step")
            steps = train["step"].to_numpy()
            loss = train["loss"].to_numpy(dtype=float)
            window = max(1, len(steps) // 25)
            ax_train.plot(steps, loss, color=style["color"], alpha=0.2, linewidth=0.5)
            line = smooth(loss, window)
            ax_train.plot(steps, line, color=style["color"], linestyle=style["linestyle"],
                          linewidth=1.0)
            smoothed.append(train.assign(loss_smoothed=line))
            ax_val.plot(val["step"], val["loss"], color=style["color"],
                        linestyle=style["linestyle"], marker="o", markersize=2.5,
                        linewidth=1.0)
        for ax, title in ((ax_train, "training (moving average over steps)"),
                          (ax_val, "validation (end of each epoch)")):
            ax.set_yscale("log")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(LOSS_LABEL)
            ax.set_title(title)
        encodes = sorted({p[1] for p in pairs}, key=scale_index)
        masks = sorted({p[2] for p in pairs}, key=scale_index)
        variants = sorted({variant_of(p[0]) for p in pairs} - {""})
        handles = _scale_legend(encodes, masks) + [
            Line2D([], [], color="#666666", marker="D", markersize=3, label=f"variant {v}")
            for v in variants]
        fig.legend(handles=handles, loc="outside right center")
        out = table.merge(pd.concat(smoothed)[[*RUN, "split", "step", "loss_smoothed"]],
                          on=[*RUN, "split", "step"], how="left")
        return fig, out


def finetuning(curves: pd.DataFrame) -> Drawn:
    """Validation AUROC per epoch, mean ± s.e.m. over the runs (sessions x seeds, and x folds
    under ``window_split: chrono``) still training at that epoch, per task. Early stopping
    ends runs at different epochs: a line is drawn while at least half of its runs reach the
    epoch (the CSV has every epoch and n)."""
    if curves.empty:
        table = pd.DataFrame()
    else:
        rows = tidy(curves.assign(metric="val_auroc", value=curves["val_auroc"]), "val_auroc")
        table = ordered(summarise(rows, PANEL + VARIANT + ["epoch"]))
        table.insert(len(PANEL) + len(VARIANT), "label",
                     [label(*v) for v in table[VARIANT].itertuples(index=False)])
    with paper_style():
        if table.empty:
            return message_figure("no finetuning curves"), table
        settings, tasks = panels(table)
        rows_keys = [(s, t) for s in settings for t in tasks]
        encodes = sorted(table["encode_scale"].unique(), key=scale_index)
        fig = new_figure(PAGE_IN, 0.5 + 1.55 * len(rows_keys))
        axes = fig.subplots(len(rows_keys), len(encodes), squeeze=False, sharex=True,
                            sharey=True)
        for i, (setting, task) in enumerate(rows_keys):
            for j, encode in enumerate(encodes):
                ax = axes[i, j]
                here = table[(table["setting"] == setting) & (table["task"] == task)
                             & (table["encode_scale"] == encode)]
                for variant, line in here.groupby(VARIANT, sort=False):
                    style = variant_style(*variant)
                    line = line.sort_values("epoch")
                    line = line[line["n"] >= np.ceil(line["n"].max() / 2)]
                    ax.plot(line["epoch"], line["mean"], color=style["color"],
                            linestyle=style["linestyle"], linewidth=1.0)
                    err = line["sem"].fillna(0.0)
                    ax.fill_between(line["epoch"], line["mean"] - err, line["mean"] + err,
                                    color=style["color"], alpha=0.15, linewidth=0)
                ax.axhline(CHANCE, color="#888888", linewidth=0.6, linestyle=":")
                if i == 0:
                    ax.set_title(f"encode {encode}" if encode != "none" else "no encode scale")
                if i == len(rows_keys) - 1:
                    ax.set_xlabel("finetuning epoch")
                if j == 0:
                    row = panel_title(task, setting, settings).replace(" · ", "\n")
                    ax.set_ylabel(f"{row}\nvalidation AUROC")
                ax.set_ylim(0, 1.02)
        variants = {tuple(v) for v in table[VARIANT].itertuples(index=False)}
        masks = sorted({k for m, _, k in variants if m != "random_init"}, key=scale_index)
        handles = _scale_legend([], [k for k in masks if k != "none"],
                                any(m == "random_init" for m, _, _ in variants))
        for model, encode, mask in sorted(variants):
            if model not in ("barista", "random_init") and pretty(model) not in [
                    h.get_label() for h in handles]:
                handles.append(Line2D([], [], color="#666666", label=pretty(model),
                                      linestyle=variant_style(model, encode, mask)["linestyle"]))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles),
                   title="line = mean ± s.e.m. over runs (sessions x seeds x folds); "
                         "colour = encode scale")
        return fig, table
