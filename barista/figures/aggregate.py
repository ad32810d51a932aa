"""Tidy aggregation of result rows: mean and s.e.m. per model variant, ranking, Wilcoxon tests.

A *variant* is one ``(model, encode_scale, mask_scale)``: a pretrained scale pair, a random-init
model at one encode scale, the linear floor, or any other model. A *panel* is one ``(setting,
task)``. Every number is aggregated over the rows of a variant in a panel: sessions x seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import NONE, SETTING_ORDER, base_model, label, scale_index, variant_of, with_variant

VARIANT = ["model", "encode_scale", "mask_scale"]
PANEL = ["setting", "task"]
SESSION = ["subject", "session", "recording"]
DEFAULT_SETTING = "within_session"


def tidy(table: pd.DataFrame, metric: str = "auroc", protocol: str = "barista") -> pd.DataFrame:
    """Rows of one metric and one evaluation protocol with every key column present and typed
    as text.

    Rows without a ``protocol`` are the study's own (``barista``); missing ``setting``
    becomes ``within_session``; missing scales become ``none``; a missing ``seed`` or
    ``pretrain_seed`` becomes 0 (deterministic models). A BaRISTA
    pretraining variant other than the paper's method becomes a model of its own
    (``barista:prior+raw``, :func:`barista.figures.style.with_variant`), so no figure or table
    mixes it with the paper's rows. A run is one (pretraining seed, finetuning seed): ``seed``
    becomes ``1000 * pretrain_seed + seed``, so sessions x runs are aggregated and paired.
    """
    rows = table[table["metric"] == metric].copy() if "metric" in table else table.copy()
    if "protocol" in rows:
        rows = rows[rows["protocol"].fillna("barista") == protocol]
    elif protocol != "barista":
        rows = rows.iloc[0:0]
    defaults = {"setting": DEFAULT_SETTING, "encode_scale": NONE, "mask_scale": NONE,
                "seed": 0, "pretrain_seed": 0, "variant": NONE, "subject": "", "session": "",
                "recording": ""}
    for column, value in defaults.items():
        if column not in rows:
            rows[column] = value
    for column in ("model", "encode_scale", "mask_scale", "setting", "task", "subject",
                   "session", "recording"):
        if column in rows:
            rows[column] = rows[column].fillna(defaults.get(column, "")).astype(str)
    for column in ("encode_scale", "mask_scale"):
        rows[column] = rows[column].replace("", NONE)
    if not rows.empty and not rows["recording"].astype(bool).all():
        missing = ~rows["recording"].astype(bool)
        rows.loc[missing, "recording"] = ("sub-" + rows.loc[missing, "subject"] + "_ses-"
                                          + rows.loc[missing, "session"])
    rows["variant"] = rows["variant"].fillna(NONE).astype(str)
    rows["model"] = pd.Series([with_variant(m, v) for m, v in
                               rows[["model", "variant"]].to_numpy()], index=rows.index,
                              dtype=object)
    rows["seed"] = (1000 * rows["pretrain_seed"].fillna(0).astype(int)
                    + rows["seed"].fillna(0).astype(int))
    rows["value"] = rows["value"].astype(float)
    return rows.reset_index(drop=True)


def sem(values) -> float:
    """Standard error of the mean (sample s.d. / sqrt(n)); NaN for fewer than two values."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def summarise(rows: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """Mean, s.e.m., s.d., n, min and max of ``value`` per group of ``by``."""
    groups = rows.groupby(by, sort=False, observed=True)[value]
    out = groups.agg(mean="mean", sd=lambda x: float(np.std(x, ddof=1)) if len(x) > 1
                     else float("nan"), n="count", min="min", max="max").reset_index()
    out["sem"] = out["sd"] / np.sqrt(out["n"])
    return out[[*by, "mean", "sem", "sd", "n", "min", "max"]]


def variant_key(model: str, encode: str, mask: str) -> tuple:
    """Order of variants in figures: grouped by encode scale, pretrained (by mask scale) then
    other models then random init; models without a scale (the linear floor) last."""
    group = {"barista": 0, "random_init": 2}.get(base_model(model), 1)
    return (*scale_index(encode), group, variant_of(model), *scale_index(mask), model)


def setting_key(setting: str) -> tuple[int, str]:
    if setting in SETTING_ORDER:
        return SETTING_ORDER.index(setting), ""
    return len(SETTING_ORDER), setting


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by setting, task and variant order."""
    if frame.empty:
        return frame
    keys = frame.apply(lambda r: (setting_key(r["setting"]), r["task"],
                                  variant_key(r["model"], r["encode_scale"], r["mask_scale"])),
                       axis=1)
    return frame.iloc[np.argsort(keys.to_numpy(), kind="stable")].reset_index(drop=True)


def variant_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean +- s.e.m. over sessions x seeds of every variant in every panel, with its label and
    its rank within the panel (1 = highest mean)."""
    out = ordered(summarise(rows, PANEL + VARIANT))
    if out.empty:
        return out.assign(label=[], rank=[])
    out["label"] = [label(m, e, k) for m, e, k in out[VARIANT].itertuples(index=False)]
    out["rank"] = (out.groupby(PANEL)["mean"].rank(ascending=False, method="first")
                   .astype(int))
    return out


def paired_values(rows: pd.DataFrame, a: tuple, b: tuple) -> pd.DataFrame:
    """Values of two variants side by side, paired over (session, seed).

    When the two have different seeds (the linear floor has one), each is first averaged over
    its seeds and the pairs are sessions.
    """
    def pick(variant):
        mask = np.logical_and.reduce([rows[c] == v for c, v in zip(VARIANT, variant, strict=True)])
        return rows[mask]

    ra, rb = pick(a), pick(b)
    keys = SESSION + ["seed"]
    if set(ra["seed"]) != set(rb["seed"]):
        ra = ra.groupby(SESSION, as_index=False)["value"].mean()
        rb = rb.groupby(SESSION, as_index=False)["value"].mean()
        keys = SESSION
    return ra[keys + ["value"]].merge(rb[keys + ["value"]], on=keys, suffixes=("_a", "_b"))


def wilcoxon(a, b) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired values: (statistic, p). NaN when it cannot
    be computed (no pairs, or every difference zero)."""
    from scipy import stats  # imported here: scipy.stats takes a second to import

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0 or np.all(d == 0):
        return float("nan"), float("nan")
    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def best_vs_next(rows: pd.DataFrame, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per panel: the variant with the highest mean against the runner-up, Wilcoxon signed-rank
    over (session, seed) pairs."""
    summary = variant_summary(rows) if summary is None else summary
    out = []
    for (setting, task), panel in summary.groupby(PANEL, sort=False):
        top = panel.sort_values("rank")
        if len(top) < 2:
            continue
        best, nxt = top.iloc[0], top.iloc[1]
        pairs = paired_values(rows[(rows["setting"] == setting) & (rows["task"] == task)],
                              tuple(best[VARIANT]), tuple(nxt[VARIANT]))
        statistic, p = wilcoxon(pairs["value_a"], pairs["value_b"])
        out.append({"setting": setting, "task": task,
                    **{f"best_{c}": best[c] for c in VARIANT}, "best_label": best["label"],
                    "best_mean": best["mean"],
                    **{f"next_{c}": nxt[c] for c in VARIANT}, "next_label": nxt["label"],
                    "next_mean": nxt["mean"], "n_pairs": len(pairs),
                    "paired_over": "session, seed" if "seed" in pairs else "session",
                    "mean_difference": float((pairs["value_a"] - pairs["value_b"]).mean())
                    if len(pairs) else float("nan"),
                    "wilcoxon_statistic": statistic, "wilcoxon_p": p})
    columns = ["setting", "task", *(f"best_{c}" for c in VARIANT), "best_label", "best_mean",
               *(f"next_{c}" for c in VARIANT), "next_label", "next_mean", "n_pairs",
               "paired_over", "mean_difference", "wilcoxon_statistic", "wilcoxon_p"]
    return pd.DataFrame(out, columns=columns)


def with_tests(summary: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """The summary with the best-vs-next test on the row of each panel's best variant."""
    cols = ["setting", "task", "best_model", "best_encode_scale", "best_mask_scale",
            "next_label", "n_pairs", "paired_over", "wilcoxon_statistic", "wilcoxon_p"]
    right = tests[cols].rename(columns={"best_model": "model", "best_encode_scale":
                                        "encode_scale", "best_mask_scale": "mask_scale",
                                        "next_label": "compared_with"})
    return summary.merge(right, on=PANEL + VARIANT, how="left")


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def mean_sem_text(mean: float, err: float, digits: int = 3) -> str:
    """``0.712 ± 0.031``; the mean alone when the s.e.m. is undefined (one value)."""
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(err):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {err:.{digits}f}"
