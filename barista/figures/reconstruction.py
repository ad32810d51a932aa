"""Reconstruction figures: MSE and R² per (encode, mask) pair, and R² of every channel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import SESSION, VARIANT, ordered, summarise, tidy, variant_key
from .style import (
    PAGE_IN,
    Drawn,
    bar_positions,
    label,
    message_figure,
    new_figure,
    paper_style,
    pretty,
    scale_color,
    scale_legend,
    variant_style,
)

METRICS = {"mse": "MSE (z-score units²)", "r2": "R²"}


def per_channel(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variant, setting, session, channel and pretraining run (``seed``) with
    ``mse`` and ``r2`` columns."""
    keys = ["setting", *VARIANT, *SESSION, "channel", "seed"]
    frames = []
    for metric in METRICS:
        rows = tidy(table, metric)
        if "task" not in rows:
            rows["task"] = ""
        frames.append(rows[keys + ["value"]].rename(columns={"value": metric})
                      .set_index(keys))
    wide = pd.concat(frames, axis=1).reset_index()
    return wide


def summary(table: pd.DataFrame, *, seed: int = 0) -> Drawn:
    """MSE and R² per pair: every channel of the held-out sessions as a faint point, and their
    mean ± s.e.m. as a marker (colour = encode scale, shape = mask scale)."""
    wide = per_channel(table) if not table.empty else pd.DataFrame()
    frames = []
    for metric in METRICS:
        if wide.empty:
            break
        s = summarise(wide.rename(columns={metric: "value"}), ["setting", *VARIANT])
        frames.append(s.assign(metric=metric))
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not result.empty:
        result = ordered(result.assign(task=""))
        result.insert(1 + len(VARIANT), "label", [label(*v) for v in
                                                  result[VARIANT].itertuples(index=False)])
        result = result.drop(columns=["task"])
    with paper_style():
        if result.empty:
            return message_figure("no reconstruction results"), result
        variants = sorted({tuple(v) for v in result[VARIANT].itertuples(index=False)},
                          key=lambda v: variant_key(*v))
        settings = sorted(result["setting"].unique())
        fig = new_figure(min(PAGE_IN, 1.2 + 0.55 * len(variants) * 2), 0.9 + 1.9 * len(settings))
        axes = fig.subplots(len(settings), len(METRICS), squeeze=False)
        rng = np.random.default_rng(seed)
        x = bar_positions(variants)
        for i, setting in enumerate(settings):
            for j, metric in enumerate(METRICS):
                ax = axes[i, j]
                for xi, variant in zip(x, variants, strict=True):
                    s = result[(result[VARIANT] == list(variant)).all(axis=1)
                               & (result["setting"] == setting) & (result["metric"] == metric)]
                    if s.empty:
                        continue
                    s = s.iloc[0]
                    style = variant_style(*variant)
                    values = wide[(wide[VARIANT] == list(variant)).all(axis=1)
                                  & (wide["setting"] == setting)][metric]
                    ax.scatter(xi + rng.uniform(-0.3, 0.3, len(values)), values, s=2.5,
                               color=style["color"], alpha=0.35, linewidths=0, zorder=2)
                    ax.errorbar(xi, s["mean"], yerr=0 if np.isnan(s["sem"]) else s["sem"],
                                color="black", linewidth=0.9, zorder=4)
                    ax.scatter(xi, s["mean"], s=22, marker=style["marker"],
                               color=style["color"], edgecolors="black", linewidths=0.6,
                               zorder=5)
                reference = 1.0 if metric == "mse" else 0.0
                ax.axhline(reference, color="#888888", linewidth=0.6, linestyle=":", zorder=1)
                _focus(ax, wide[wide["setting"] == setting][metric], reference)
                ax.ticklabel_format(axis="y", useOffset=False)
                ax.set_xticks(x, [label(*v) for v in variants], rotation=45, ha="right",
                              rotation_mode="anchor")
                ax.set_ylabel(METRICS[metric])
                ax.set_xlabel("encode/mask scale")
                where = "held-out sessions" if setting == "heldout_session" else pretty(setting)
                ax.set_title(f"{where}: {METRICS[metric].split(' ')[0]}")
        handles = scale_legend(variants)
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
        return fig, result


def _focus(ax, values: pd.Series, reference: float) -> None:
    """Y range around the data and the reference line (values near the reference are tiny)."""
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return
    lo, hi = min(v.min(), reference), max(v.max(), reference)
    pad = 0.08 * (hi - lo) if hi > lo else max(abs(reference), 1.0) * 1e-3
    ax.set_ylim(lo - pad, hi + pad)


def channels(table: pd.DataFrame) -> Drawn:
    """R² of every channel (columns, grouped by held-out session) for every pair (rows)."""
    from matplotlib.colors import TwoSlopeNorm

    wide = per_channel(table) if not table.empty else pd.DataFrame()
    with paper_style():
        if wide.empty:
            return message_figure("no reconstruction results"), wide
        # the mean over pretraining runs of each channel
        wide = wide.groupby(["setting", *VARIANT, *SESSION, "channel"], as_index=False)[
            list(METRICS)].mean()
        wide = wide.sort_values(["setting", "recording", "channel"], kind="stable")
        wide["label"] = [label(*v) for v in wide[VARIANT].itertuples(index=False)]
        variants = sorted({tuple(v) for v in wide[VARIANT].itertuples(index=False)},
                          key=lambda v: variant_key(*v))
        columns = wide[["setting", "recording", "channel"]].drop_duplicates()
        col_index = {tuple(c): i for i, c in enumerate(columns.itertuples(index=False))}
        grid = np.full((len(variants), len(columns)), np.nan)
        for r in wide.itertuples(index=False):
            grid[variants.index((r.model, r.encode_scale, r.mask_scale)),
                 col_index[(r.setting, r.recording, r.channel)]] = r.r2
        spread = float(np.nanmax(np.abs(grid))) or 1.0
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-spread, vmax=spread)
        fig = new_figure(PAGE_IN, 1.1 + 0.2 * len(variants))
        ax = fig.subplots()
        image = ax.imshow(grid, cmap="RdBu_r", norm=norm, aspect="auto",
                          interpolation="nearest")
        ax.set_yticks(range(len(variants)), [label(*v) for v in variants])
        for tick, (_, encode, _) in zip(ax.get_yticklabels(), variants, strict=True):
            tick.set_color(scale_color(encode))
        # one labelled block per recording
        recs = columns["recording"].to_numpy()
        starts = [0] + [i for i in range(1, len(recs)) if recs[i] != recs[i - 1]]
        ends = starts[1:] + [len(recs)]
        ax.set_xticks([(a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)],
                      [_session_name(recs[a]) for a in starts])
        for boundary in starts[1:]:
            ax.axvline(boundary - 0.5, color="black", linewidth=0.8)
        ax.tick_params(axis="x", length=0)
        ax.set_xlabel("channel (grouped by held-out session)")
        ax.set_ylabel("encode/mask scale")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        bar = fig.colorbar(image, ax=ax, pad=0.01, aspect=10)
        bar.set_label("R²")
        bar.formatter.set_powerlimits((-2, 2))
        out = wide[["setting", *VARIANT, "label", *SESSION, "channel", "mse", "r2"]]
        return fig, out.reset_index(drop=True)


def _session_name(recording: str) -> str:
    parts = dict(p.split("-", 1) for p in recording.split("_") if "-" in p)
    return " ".join(f"{k}-{parts[k]}" for k in ("sub", "ses") if k in parts) or recording

