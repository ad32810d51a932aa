"""``barista figures <name>``: read the inputs one figure needs, draw it, write its files."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import BaristaError
from . import FIGURE_NAMES, load

log = logging.getLogger("barista")


def _need(args, *names: str) -> None:
    for name in names:
        if not getattr(args, name, None):
            raise BaristaError(f"figure '{args.figure}' needs --{name.replace('_', '-')}")


def draw(args):
    """The figure ``args.figure`` and its table, from the files the arguments name."""
    from .aggregate import tidy

    name = args.figure
    if name == "neuroprobe":
        from .. import leaderboard
        from .neuroprobe import leaderboard_figure

        _need(args, "decoding", "dataset")
        table = leaderboard.leaderboard_table(load.read_table(args.decoding),
                                              f"this run: {args.dataset}")
        return leaderboard_figure(table, args.dataset)
    if name in ("comparison", "grid", "paired"):
        from . import decoding

        _need(args, "decoding")
        rows = tidy(load.read_table(args.decoding), "auroc")
        return {"comparison": decoding.comparison, "grid": decoding.grid,
                "paired": decoding.pretrained_vs_random}[name](rows)
    if name in ("reconstruction", "reconstruction-channels"):
        from . import reconstruction

        _need(args, "reconstruction")
        results = load.read_table(args.reconstruction)
        if name == "reconstruction":
            return reconstruction.summary(results)
        return reconstruction.channels(results)
    if name == "pretraining":
        from . import curves

        return curves.pretraining(load.read_histories(args.histories or []))
    if name == "finetuning":
        from . import curves

        return curves.finetuning(load.read_runs(args.runs or [], "curve"))
    from . import electrodes

    _need(args, "localization")
    localization = load.read_localization(args.localization)
    if name == "electrodes":
        return electrodes.contacts(localization, by=args.color_by)
    _need(args, "task")
    return electrodes.importance(load.read_runs(args.runs or [], "importance"), localization,
                                 task=args.task,
                                 ground_truth=load.read_ground_truth(args.bids_root))


METRIC_NAMES = {"auroc": "test AUROC", "probe_auroc": "frozen-probe AUROC"}


def make(args) -> dict:
    """Draw ``args.figure`` to ``<args.out>.png``, ``.pdf`` and ``.csv`` (the ``table`` figure
    writes ``.md`` and ``.csv``). Returns a summary for the log."""
    for noisy in ("fontTools", "matplotlib"):  # font subsetting logs every table at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    name, out = args.figure, Path(args.out)
    if name not in FIGURE_NAMES:
        raise BaristaError(f"unknown figure '{name}'; one of {', '.join(FIGURE_NAMES)}")
    if name == "neuroprobe-table":
        from .. import leaderboard

        _need(args, "decoding", "dataset")
        table = leaderboard.write_table(load.read_table(args.decoding), out, args.dataset)
    elif name == "table":
        from .aggregate import tidy
        from .tables import write_results_table

        _need(args, "decoding")
        metric = getattr(args, "metric", "auroc")
        table = write_results_table(tidy(load.read_table(args.decoding), metric), out,
                                    METRIC_NAMES.get(metric, metric))
    else:
        from .style import layout_problems, save

        fig, table = draw(args)
        problems = layout_problems(fig)
        for kind, items in problems.items():
            if items:  # a figure is still written; the log says what to look at
                log.warning("%s: %s text: %s", name, kind, items)
        save(fig, out, table)
    return {"figure": name, "out": str(out), "rows": len(table)}
