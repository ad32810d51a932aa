"""The study's figures and tables, drawn from the tidy result tables of a run.

One module per job: :mod:`.style` (colours per scale and model, fonts, the writer of PNG + PDF +
CSV), :mod:`.aggregate` (mean, s.e.m., Wilcoxon), :mod:`.load` (reading run outputs),
:mod:`.decoding`, :mod:`.reconstruction`, :mod:`.curves`, :mod:`.electrodes`, :mod:`.tables`,
and :mod:`.make`, which the ``barista figures`` command calls. Importing this package does not
import matplotlib.
"""

# the figures ``barista figures <name>`` draws (see docs/figures.md)
FIGURE_NAMES = (
    "comparison",
    "grid",
    "paired",
    "table",
    "reconstruction",
    "reconstruction-channels",
    "pretraining",
    "finetuning",
    "electrodes",
    "importance",
    "neuroprobe",
    "neuroprobe-table",
)
