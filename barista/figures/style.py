"""One look for every figure: colours per scale, model and lobe, fonts for a paper column, and
the writer that saves a figure as PNG and PDF beside the CSV of the numbers it plots.

A spatial scale has one colour everywhere (bars, lines, markers, heatmap labels); the mask scale
of a pretrained model is drawn as a hatch (bars), a line style (curves) or a marker (scatters);
random-init models are the hollow version of their encode scale's colour; models without a scale
(the linear floor) and models this module does not know get a colour of their own.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.text import Text

NONE = "none"
SCALE_ORDER = ("channel", "parcel", "lobe")
# Okabe-Ito colour-blind-safe palette
SCALE_COLORS = {"channel": "#0072B2", "parcel": "#E69F00", "lobe": "#009E73"}
MASK_HATCHES = {"channel": "", "parcel": "////", "lobe": "...."}
MASK_LINESTYLES = {"channel": "-", "parcel": "--", "lobe": "-."}
MASK_MARKERS = {"channel": "o", "parcel": "s", "lobe": "^"}
RANDOM_INIT_LINESTYLE = ":"
MODEL_COLORS = {"linear": "#4D4D4D", "rpnt": "#CC79A7"}
# colours of models and scales this module has no entry for, picked by a hash of the name
_EXTRA_COLORS = ("#CC79A7", "#D55E00", "#56B4E9", "#882255", "#44AA99", "#999933", "#661100")
_EXTRA_HATCHES = ("xxxx", "\\\\\\\\", "++++", "oo")
_EXTRA_LINESTYLES = ((0, (3, 1, 1, 1, 1, 1)), (0, (5, 2)), (0, (1, 2)))
_EXTRA_MARKERS = ("D", "v", "P", "X", "*")

LOBE_COLORS = {
    "frontal": "#4477AA", "parietal": "#228833", "temporal": "#EE6677", "occipital": "#CCBB44",
    "insula": "#66CCEE", "limbic": "#AA3377", "hippocampus": "#8B4513", "amygdala": "#E08E0B",
    "subcortical": "#777777", "cerebellum": "#332288", "unknown": "#D9D9D9",
}

SETTING_ORDER = ("within_session", "heldout_session", "cross_session", "cross_subject")
MODEL_NAMES = {"barista": "BaRISTA", "random_init": "random init", "linear": "linear",
               "rpnt": "RPNT", "barista_release": "BaRISTA release"}

# what every figure function returns: the figure and the table of the numbers it plots
Drawn = tuple[Figure, pd.DataFrame]

COLUMN_IN = 3.5  # one column of a two-column paper, inches
PAGE_IN = 7.0  # the full text width

RC = {
    "font.family": "sans-serif",
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.title_fontsize": 6,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "patch.linewidth": 0.6,
    "hatch.linewidth": 0.6,
    "errorbar.capsize": 1.5,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "figure.constrained_layout.h_pad": 0.05,
    "figure.constrained_layout.w_pad": 0.05,
}


def _pick(name: str, options: tuple):
    return options[zlib.crc32(name.encode()) % len(options)]


def scale_index(scale: str) -> tuple[int, str]:
    """Sort key of a scale: channel < parcel < lobe < others by name < none."""
    if scale in SCALE_ORDER:
        return SCALE_ORDER.index(scale), ""
    return (len(SCALE_ORDER) + 1, "") if scale == NONE else (len(SCALE_ORDER), scale)


VARIANT_EDGE = "#222222"  # edges of a pretraining variant that is not the paper's method


def scale_color(scale: str) -> str:
    return SCALE_COLORS.get(scale) or _pick(scale, _EXTRA_COLORS)


def model_color(model: str) -> str:
    return MODEL_COLORS.get(model) or _pick(model, _EXTRA_COLORS)


def lobe_color(lobe: str) -> str:
    return LOBE_COLORS.get(lobe) or _pick(lobe, _EXTRA_COLORS)


def mask_hatch(mask: str) -> str:
    return "" if mask == NONE else MASK_HATCHES.get(mask, _pick(mask, _EXTRA_HATCHES))


def mask_linestyle(mask: str):
    return MASK_LINESTYLES.get(mask) or _pick(mask, _EXTRA_LINESTYLES)


def mask_marker(mask: str) -> str:
    return MASK_MARKERS.get(mask) or ("o" if mask == NONE else _pick(mask, _EXTRA_MARKERS))


# A BaRISTA pretraining variant other than the paper's method (barista.variants) is drawn as a
# model of its own: ``barista:prior+raw`` (and its random init ``random_init:prior+raw``)
VARIANT_SEP = ":"
PAPER_VARIANTS = ("", NONE, "paper")


def with_variant(model: str, variant: str) -> str:
    """The model name figures use: the model alone for the paper's method (or models without
    variants), ``model:variant`` otherwise."""
    return model if variant in PAPER_VARIANTS else f"{model}{VARIANT_SEP}{variant}"


def base_model(model: str) -> str:
    return model.split(VARIANT_SEP)[0]


def variant_of(model: str) -> str:
    """The variant part of a figure's model name ('' for the paper's method)."""
    return model.partition(VARIANT_SEP)[2]


def pretty(name: str) -> str:
    """A task, setting or model name as text: ``speech_vs_nonspeech`` -> ``speech vs
    nonspeech``; ``barista:prior+raw`` -> ``BaRISTA prior+raw``."""
    if VARIANT_SEP in name:
        return f"{pretty(base_model(name))} {variant_of(name)}"
    return MODEL_NAMES.get(name, name.replace("_", " "))


def label(model: str, encode: str, mask: str) -> str:
    """Short name of a model variant: ``channel/parcel`` (BaRISTA, the paper's method),
    ``prior+raw channel/parcel`` (a pretraining variant), ``random init channel``, ``linear``,
    ``RPNT parcel/lobe``."""
    scales = "/".join(s for s in (encode, mask) if s != NONE)
    if base_model(model) == "barista":
        return f"{variant_of(model)} {scales}".strip() or "BaRISTA"
    return f"{pretty(model)} {scales}".strip()


def variant_style(model: str, encode: str, mask: str) -> dict:
    """Colours, hatch, line style and marker of a model variant, the same in every figure.
    A pretraining variant other than the paper's has dark edges and diamond markers."""
    variant = variant_of(model)
    model = base_model(model)
    if encode != NONE:
        color = scale_color(encode)
    else:
        color = model_color(model)
    style = {"color": color, "facecolor": color, "edgecolor": "white", "hatch": mask_hatch(mask),
             "linestyle": mask_linestyle(mask) if mask != NONE else "-",
             "marker": mask_marker(mask), "hollow": False}
    if variant:
        style.update(edgecolor=VARIANT_EDGE, marker="D")
    if model == "random_init":
        style.update(facecolor="white", edgecolor=VARIANT_EDGE if variant else color, hatch="",
                     linestyle=RANDOM_INIT_LINESTYLE, hollow=True)
    elif model not in ("barista", "linear") and encode != NONE:
        # another model at a scale: the scale's colour, darker edges, its own hatch
        style.update(edgecolor=model_color(model), hatch=_pick(model, _EXTRA_HATCHES),
                     linestyle=_pick(model, _EXTRA_LINESTYLES), marker=_pick(model,
                                                                             _EXTRA_MARKERS))
    return style


def legend_handles(variants: list[tuple]) -> list:
    """Encode scales as colours, mask scales as hatches, random init hollow, other models."""
    encodes = sorted({e for m, e, _ in variants if e != NONE}, key=scale_index)
    masks = sorted({k for _, _, k in variants if k != NONE}, key=scale_index)
    handles = [Patch(facecolor=scale_color(e), edgecolor="white", label=f"encode {e}")
               for e in encodes]
    handles += [Patch(facecolor="#BBBBBB", edgecolor="white", hatch=mask_hatch(k),
                      label=f"mask {k}") for k in masks]
    if any(base_model(m) == "random_init" for m, _, _ in variants):
        handles.append(Patch(facecolor="white", edgecolor="#444444", label="random init"))
    for name in sorted({variant_of(m) for m, _, _ in variants} - {""}):
        handles.append(Patch(facecolor="#BBBBBB", edgecolor=VARIANT_EDGE,
                             label=f"variant {name} (dark edge)"))
    for model, encode, mask in variants:
        if base_model(model) in ("barista", "random_init"):
            continue
        style = variant_style(model, encode, mask)
        name = pretty(model) if encode != NONE else label(model, encode, mask)
        if name not in [h.get_label() for h in handles]:
            handles.append(Patch(facecolor=style["facecolor"], edgecolor=style["edgecolor"],
                                 hatch=style["hatch"] if encode != NONE else "", label=name))
    return handles


def chars_per_line(width_in: float, fontsize: float = RC["axes.titlesize"]) -> int:
    """About how many characters of a sans-serif text fit in ``width_in`` inches (an average
    glyph of 0.6 em: names such as "BaRISTA release" are rich in capitals, and at 0.55 em a
    title of them reached past the edge of the page)."""
    return max(10, int(width_in * 72 / (0.6 * fontsize)))


def wrap(text: str, width: int) -> str:
    """Break a line of text at spaces so no line is longer than ``width`` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=False))


def scale_legend(variants: list[tuple]) -> list:
    """Marker legend: encode scales as colours, mask scales as marker shapes."""
    from matplotlib.lines import Line2D

    encodes = sorted({e for _, e, _ in variants if e != NONE}, key=scale_index)
    masks = sorted({k for _, _, k in variants if k != NONE}, key=scale_index)
    handles = [Line2D([], [], linestyle="", marker="o", color=scale_color(e),
                      label=f"encode {e}") for e in encodes]
    handles += [Line2D([], [], linestyle="", marker=mask_marker(k), color="#666666",
                       label=f"mask {k}") for k in masks]
    return handles


def bar_positions(variants: list[tuple]) -> np.ndarray:
    """Bar positions with a gap between encode-scale groups."""
    x, pos, previous = [], 0.0, None
    for _, encode, _ in variants:
        if previous is not None and encode != previous:
            pos += 0.6
        x.append(pos)
        pos += 1.0
        previous = encode
    return np.array(x)


@contextmanager
def paper_style() -> Iterator[None]:
    """rcParams of every figure (fonts in points at print size)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float, **kwargs) -> Figure:
    """A figure of print size in inches, laid out so labels never collide."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def save(fig: Figure, stem: str | Path, table: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<stem>.png`` (300 dpi), ``<stem>.pdf`` and, given a table, ``<stem>.csv``.

    Metadata that would change from run to run (dates, versions) is left out of the files.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.png"), Path(f"{stem}.pdf")]
    with paper_style():
        fig.savefig(paths[0], metadata={"Software": None})
        fig.savefig(paths[1], metadata={"Creator": None, "Producer": None,
                                        "CreationDate": None})
    if table is not None:
        paths.append(Path(f"{stem}.csv"))
        table.to_csv(paths[-1], index=False, float_format="%.6g", lineterminator="\n")
    return paths


def message_figure(text: str, width: float = COLUMN_IN, height: float = 1.2) -> Figure:
    """A figure that says why there is nothing to plot (so the workflow's outputs still exist)."""
    fig = new_figure(width, height)
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def _text_polygon(text: Text, renderer) -> np.ndarray:
    """Corners of a drawn text's box in display coordinates, rotation included."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation() % 360
    if np.isclose(angle % 180, 0):
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1],
                         [box.x0, box.y1]])
    text.set_rotation(0)
    flat = text.get_window_extent(renderer)
    text.set_rotation(angle)
    w, h = flat.width, flat.height
    theta = np.deg2rad(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]]) @ rot.T
    return corners - corners.min(axis=0) + [box.x0, box.y0]


def _polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex polygons (touching edges do not count)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for nx, ny in np.column_stack([-edges[:, 1], edges[:, 0]]):
            pa, pb = a @ [nx, ny], b @ [nx, ny]
            if pa.max() <= pb.min() + 1e-6 or pb.max() <= pa.min() + 1e-6:
                return False
    return True


def drawn_texts(fig: Figure) -> list[Text]:
    """Every non-empty text the figure draws: figure titles and legends, and per axes its
    titles, axis labels, offset texts, annotations, legend and the tick labels in view."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    texts: list[Text] = list(fig.texts)
    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        if getattr(fig, name, None) is not None:
            texts.append(getattr(fig, name))
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                  ax.xaxis.offsetText, ax.yaxis.offsetText, *ax.texts]
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis._update_ticks():  # only the ticks inside the view
                texts += [tick.label1, tick.label2]
    for legend in legends:
        texts += [*legend.get_texts(), legend.get_title()]
    return [t for t in dict.fromkeys(texts) if t.get_visible() and t.get_text().strip()]


def layout_problems(fig: Figure) -> dict[str, list]:
    """Drawn texts that overlap each other (``overlaps``: pairs, rotation included) or reach
    beyond the edges of the figure (``clipped``), from one draw of the figure."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    w, h = fig.canvas.get_width_height()
    shapes = [(t.get_text(), _text_polygon(t, renderer)) for t in texts]
    overlaps = [(name_a, name_b) for i, (name_a, a) in enumerate(shapes)
                for name_b, b in shapes[i + 1:] if _polygons_overlap(a, b)]
    clipped = [name for name, poly in shapes
               if poly.min() < -1 or poly[:, 0].max() > w + 1 or poly[:, 1].max() > h + 1]
    return {"overlaps": overlaps, "clipped": clipped}


def text_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose (rotated) boxes overlap."""
    return layout_problems(fig)["overlaps"]


def clipped_texts(fig: Figure) -> list[str]:
    """Texts that reach beyond the edges of the figure."""
    return layout_problems(fig)["clipped"]
