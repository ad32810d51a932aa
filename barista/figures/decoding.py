"""Decoding figures: the main comparison of every model variant, the encode x mask grid, and
pretrained against random-init models session by session."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..variants import init_variant
from .aggregate import (
    PANEL,
    SESSION,
    VARIANT,
    best_vs_next,
    format_p,
    ordered,
    setting_key,
    variant_key,
    variant_summary,
    with_tests,
)
from .style import (
    NONE,
    PAGE_IN,
    Drawn,
    bar_positions,
    base_model,
    chars_per_line,
    label,
    legend_handles,
    message_figure,
    new_figure,
    paper_style,
    pretty,
    scale_color,
    scale_index,
    scale_legend,
    variant_of,
    variant_style,
    wrap,
)

CHANCE = 0.5
AUROC_LABEL = "test AUROC"


def panels(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Settings (figure rows) and tasks (figure columns) present, in display order."""
    settings = sorted(rows["setting"].unique(), key=setting_key)
    tasks = sorted(rows["task"].unique())
    return settings, tasks


def panel_title(task: str, setting: str, settings: list[str]) -> str:
    return pretty(task) if len(settings) == 1 else f"{pretty(task)} · {pretty(setting)}"


def _variants(frame: pd.DataFrame) -> list[tuple]:
    return sorted({tuple(v) for v in frame[VARIANT].itertuples(index=False)},
                  key=lambda v: variant_key(*v))


def comparison(rows: pd.DataFrame, *, seed: int = 0) -> Drawn:
    """Bars (mean ± s.e.m. over sessions x seeds) with the individual values, per task (and per
    setting when there are several), for every model variant.

    The table has one row per variant and panel, with the Wilcoxon test of the best variant
    against the runner-up on the best's row.
    """
    summary = variant_summary(rows)
    table = with_tests(summary, best_vs_next(rows, summary))
    with paper_style():
        if rows.empty:
            return message_figure("no decoding results"), table
        settings, tasks = panels(rows)
        variants = _variants(rows)
        width = min(PAGE_IN, 0.55 + 0.24 * len(variants) * len(tasks) + 0.4 * len(tasks))
        fig = new_figure(max(width, 3.5), 0.6 + 2.2 * len(settings))
        axes = fig.subplots(len(settings), len(tasks), squeeze=False, sharey=True)
        rng = np.random.default_rng(seed)
        # the same x scale in every panel, so bars are equally wide everywhere
        span = max(np.ptp(bar_positions(_variants(rows[(rows["setting"] == s)
                                                       & (rows["task"] == t)])))
                   for s in settings for t in tasks if ((rows["setting"] == s)
                                                     & (rows["task"] == t)).any())
        title_chars = chars_per_line(fig.get_figwidth() / len(tasks) - 0.3)
        for i, setting in enumerate(settings):
            for j, task in enumerate(tasks):
                ax = axes[i, j]
                here = rows[(rows["setting"] == setting) & (rows["task"] == task)]
                present = _variants(here)
                x = bar_positions(present)
                for xi, variant in zip(x, present, strict=True):
                    s = summary[(summary[PANEL + VARIANT] == [setting, task, *variant])
                                .all(axis=1)].iloc[0]
                    style = variant_style(*variant)
                    ax.bar(xi, s["mean"], width=0.8, color=style["facecolor"],
                           edgecolor=style["edgecolor"], hatch=style["hatch"],
                           linewidth=0.8 if style["hollow"] else 0.4, zorder=2)
                    ax.errorbar(xi, s["mean"], yerr=0 if np.isnan(s["sem"]) else s["sem"],
                                color="black", linewidth=0.8, zorder=4)
                    values = here[(here[VARIANT] == list(variant)).all(axis=1)]["value"]
                    jitter = rng.uniform(-0.22, 0.22, len(values))
                    ax.scatter(xi + jitter, values, s=5, color="black", alpha=0.7,
                               edgecolors="white", linewidths=0.3, zorder=3)
                ax.axhline(CHANCE, color="#888888", linewidth=0.6, linestyle=":", zorder=1)
                ax.set_xticks(x, [label(*v) for v in present], rotation=45, ha="right",
                              rotation_mode="anchor")
                ax.set_xlim(x.min() - 0.7, x.min() + span + 0.7)
                ax.set_ylim(0, 1.04)
                test = table[(table["setting"] == setting) & (table["task"] == task)
                             & table["compared_with"].notna()]
                title = panel_title(task, setting, settings)
                if not test.empty:
                    t = test.iloc[0]
                    pair = f"{t['label']} vs {t['compared_with']}"
                    test_text = f"Wilcoxon {format_p(t['wilcoxon_p'])}, n = {int(t['n_pairs'])}"
                    line = f"{pair}: {test_text}"
                    title += "\n" + (line if len(line) <= title_chars
                                     else f"{wrap(pair, title_chars)}\n{test_text}")
                ax.set_title(title)
                ax.set_xlabel("model (encode/mask scale)")
                if j == 0:
                    ax.set_ylabel(AUROC_LABEL)
        handles = legend_handles(variants)
        ncol = len(handles) if len(handles) <= 7 else int(np.ceil(len(handles) / 2))
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=1.2,
                   columnspacing=1.0)
        return fig, table


def _cell_text_color(value: float, norm) -> str:
    return "white" if abs(norm(value) - 0.5) > 0.3 else "black"


def grid(rows: pd.DataFrame) -> Drawn:
    """Heatmap of mean AUROC per (encode, mask) pair, one per task (and setting, and model
    with a mask scale), the mean ± s.e.m. written in each cell."""
    from matplotlib.colors import TwoSlopeNorm

    summary = variant_summary(rows)
    paired = summary[(summary["mask_scale"] != NONE) & (summary["encode_scale"] != NONE)]
    table = paired.drop(columns=["rank"]).reset_index(drop=True)
    with paper_style():
        if paired.empty:
            return message_figure("no pretrained (encode, mask) results"), table
        settings, tasks = panels(paired)
        models = sorted(paired["model"].unique(), key=lambda m: (m != "barista", m))
        row_keys = [(s, m) for s in settings for m in models
                    if ((paired["setting"] == s) & (paired["model"] == m)).any()]
        encodes = sorted(paired["encode_scale"].unique(), key=scale_index)
        masks = sorted(paired["mask_scale"].unique(), key=scale_index)
        spread = max(0.1, float(np.nanmax(np.abs(paired["mean"] - CHANCE))))
        spread = float(np.ceil(spread * 20) / 20)
        norm = TwoSlopeNorm(vcenter=CHANCE, vmin=CHANCE - spread, vmax=CHANCE + spread)
        cell_w, cell_h = 0.62, 0.36
        fig = new_figure(min(PAGE_IN, 0.9 + len(tasks) * (0.75 + cell_w * len(masks)) + 0.6),
                         0.5 + len(row_keys) * (0.55 + cell_h * len(encodes)))
        axes = fig.subplots(len(row_keys), len(tasks), squeeze=False)
        image = None
        for i, (setting, model) in enumerate(row_keys):
            for j, task in enumerate(tasks):
                ax = axes[i, j]
                here = paired[(paired["setting"] == setting) & (paired["model"] == model)
                              & (paired["task"] == task)]
                grid_mean = np.full((len(encodes), len(masks)), np.nan)
                for _, r in here.iterrows():
                    grid_mean[encodes.index(r["encode_scale"]), masks.index(r["mask_scale"])] \
                        = r["mean"]
                image = ax.imshow(grid_mean, cmap="RdBu_r", norm=norm, aspect="auto")
                for _, r in here.iterrows():
                    a, b = encodes.index(r["encode_scale"]), masks.index(r["mask_scale"])
                    text = f"{r['mean']:.2f}"
                    if np.isfinite(r["sem"]):
                        text += f"\n±{r['sem']:.2f}"
                    ax.text(b, a, text, ha="center", va="center", fontsize=6,
                            color=_cell_text_color(r["mean"], norm))
                ax.set_xticks(range(len(masks)), masks)
                ax.set_yticks(range(len(encodes)), encodes if j == 0 else [])
                for tick, scale in zip(ax.get_xticklabels(), masks, strict=True):
                    tick.set_color(scale_color(scale))
                for tick, scale in zip(ax.get_yticklabels(), encodes, strict=True):
                    tick.set_color(scale_color(scale))
                ax.tick_params(length=0)
                for side in ("top", "right", "left", "bottom"):
                    ax.spines[side].set_visible(False)
                ax.set_xlabel("mask scale")
                if j == 0:
                    ax.set_ylabel("encode scale")
                title = panel_title(task, setting, settings)
                ax.set_title(title if len(models) == 1 else f"{pretty(model)}: {title}")
        bar = fig.colorbar(image, ax=axes, shrink=0.9, aspect=15, pad=0.02)
        bar.set_label(f"mean {AUROC_LABEL}")
        return fig, table


def session_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per variant and session."""
    return rows.groupby(PANEL + VARIANT + SESSION, as_index=False)["value"].mean()


PRETRAINED = ("barista", "barista_release")  # models with a random-init twin per encode scale


def pretrained_vs_random(rows: pd.DataFrame) -> Drawn:
    """Per held-out session: AUROC of each pretrained pair (ours, and the authors' released
    encoders) against the random-init model of the same encode scale (both averaged over
    seeds), against the diagonal."""
    means = session_means(rows)
    # each pretraining variant is paired with the random init it starts from
    # (random_init:prior for prior+raw, barista.variants.init_variant)
    means["pairs_with"] = [
        init_variant(variant_of(m) or "paper") if base_model(m) == "barista"
        else (variant_of(m) or "paper") for m in means["model"]]
    base = means["model"].map(base_model)
    random = means[base == "random_init"]
    # the released encoders (variant none) pair with the paper's random init
    pre = means[base.isin(PRETRAINED) & (means["encode_scale"] != NONE)]
    keys = PANEL + ["encode_scale", "pairs_with"] + SESSION
    table = pre.merge(random[keys + ["value"]], on=keys, suffixes=("_pretrained",
                                                                   "_random_init"))
    table = table.rename(columns={"value_pretrained": "pretrained",
                                  "value_random_init": "random_init"})
    table["difference"] = table["pretrained"] - table["random_init"]
    table = ordered(table)[[*PANEL, *VARIANT, "pairs_with", *SESSION, "pretrained",
                            "random_init", "difference"]]
    with paper_style():
        if table.empty:
            return message_figure("no pretrained and random-init results for the same "
                                  "encode scale"), table
        settings, tasks = panels(table)
        side = 2.1
        fig = new_figure(min(PAGE_IN, 0.5 + side * len(tasks)) + 0.9, 0.5 + side * len(settings))
        axes = fig.subplots(len(settings), len(tasks), squeeze=False)
        values = table[["pretrained", "random_init"]].to_numpy()
        lo = max(0.0, np.floor((np.nanmin(values) - 0.02) * 10) / 10)
        hi = min(1.0, np.ceil((np.nanmax(values) + 0.02) * 10) / 10)
        lo, hi = min(lo, 0.4), max(hi, 0.6)
        for i, setting in enumerate(settings):
            for j, task in enumerate(tasks):
                ax = axes[i, j]
                here = table[(table["setting"] == setting) & (table["task"] == task)]
                ax.plot([lo, hi], [lo, hi], color="#888888", linewidth=0.6, linestyle="--",
                        zorder=1)
                for (model, encode, mask), group in here.groupby(VARIANT, sort=False):
                    style = variant_style(model, encode, mask)
                    ax.scatter(group["random_init"], group["pretrained"], s=14,
                               marker=style["marker"], color=style["color"],
                               edgecolors="white", linewidths=0.3, alpha=0.9, zorder=3)
                above = int((here["difference"] > 0).sum())
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
                ax.set_aspect("equal")
                ax.set_title(f"{panel_title(task, setting, settings)}\n{above} of {len(here)} "
                             "above the diagonal")
                ax.set_xlabel(f"random init, {AUROC_LABEL}")
                if j == 0:
                    ax.set_ylabel(f"pretrained, {AUROC_LABEL}")
        variants = sorted({tuple(v) for v in table[VARIANT].itertuples(index=False)})
        # encode scales as colours; mask scales as markers of our pairs, a marker per other model
        handles = scale_legend([(m, e, k if m == "barista" else NONE) for m, e, k in variants])
        for model in sorted({v[0] for v in variants} - {"barista"}):
            style = variant_style(*next(v for v in variants if v[0] == model))
            handles.append(Line2D([], [], linestyle="", marker=style["marker"],
                                  color="#666666", label=pretty(model)))
        fig.legend(handles=handles, loc="outside right center")
        return fig, table
