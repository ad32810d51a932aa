"""Figures and tables drawn from small synthetic result tables (no workflow run needed)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from barista.figures import aggregate, curves, decoding, electrodes, reconstruction, style, tables

TASKS = ("speech_vs_nonspeech", "sentence_onset")
SCALES = ("channel", "parcel", "lobe")
SUBJECTS = ("01", "02", "03", "04", "05")


def _rows(model, encode, mask, task, split, seeds, rng, offset, subjects=SUBJECTS):
    out = []
    for sub in subjects:
        for seed in seeds:
            base = dict(model=model, encode_scale=encode, mask_scale=mask, task=task,
                        subject=sub, session="02", recording=f"sub-{sub}_ses-02_task-x_run-01",
                        seed=seed, setting=split, config_hash="abc")
            auroc = float(np.clip(offset + rng.normal(0, 0.08), 0, 1))
            out.append({**base, "metric": "auroc", "value": auroc})
            out.append({**base, "metric": "val_auroc", "value": 0.99})  # must be ignored
            out.append({**base, "metric": "n_test", "value": 20.0})
    return out


@pytest.fixture(scope="module")
def decoding_table() -> pd.DataFrame:
    """Every model variant the workflow writes, an unbalanced design (one seed missing for one
    session of one pair, so a mean of session means differs from the mean of runs), a second
    setting and a model name the figures have never heard of."""
    rng = np.random.default_rng(1)
    rows = []
    for t, task in enumerate(TASKS):
        for i, enc in enumerate(SCALES):
            for j, mask in enumerate(SCALES[:2]):
                rows += _rows("barista", enc, mask, task, "within_session", (0, 1, 2), rng,
                              0.6 + 0.05 * i - 0.03 * j + 0.02 * t)
            rows += _rows("random_init", enc, "none", task, "within_session", (0, 1, 2), rng,
                          0.55)
            # the authors' released encoders (finetune.barista_release): mask scale channel
            rows += _rows("barista_release", enc, "channel", task, "within_session", (0, 1, 2),
                          rng, 0.64)
        rows += _rows("linear", "none", "none", task, "within_session", (0,), rng, 0.62)
        rows += _rows("rpnt", "parcel", "lobe", task, "within_session", (0, 1, 2), rng, 0.5)
        rows += _rows("barista", "parcel", "channel", task, "cross_subject", (0, 1), rng, 0.58)
        rows += _rows("random_init", "parcel", "none", task, "cross_subject", (0, 1), rng, 0.52)
    table = pd.DataFrame(rows)
    drop = ((table["model"] == "barista") & (table["encode_scale"] == "lobe")
            & (table["mask_scale"] == "parcel") & (table["subject"] == "03")
            & (table["seed"] == 2))
    return table[~drop].reset_index(drop=True)


@pytest.fixture(scope="module")
def auroc(decoding_table) -> pd.DataFrame:
    return aggregate.tidy(decoding_table, "auroc")


def _expected(decoding_table, split, task, model, encode, mask):
    """Mean and s.e.m. computed here, independently of barista.figures."""
    t = decoding_table
    v = t[(t["metric"] == "auroc") & (t["setting"] == split) & (t["task"] == task)
          & (t["model"] == model) & (t["encode_scale"] == encode)
          & (t["mask_scale"] == mask)]["value"].to_numpy()
    return v.mean(), v.std(ddof=1) / np.sqrt(len(v)), len(v)


def _parse_markdown(markdown: str) -> dict:
    """{(section, row, column): (mean, sem, bold)} from the Markdown tables."""
    cells, section, header = {}, None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            section, header = line[3:], None
        elif line.startswith("| encode"):
            header = [c.strip() for c in line.strip("|").split("|")][1:]
        elif line.startswith("|---"):
            continue
        elif line.startswith("| ") and header:
            parts = [c.strip() for c in line.strip("|").split("|")]
            for column, text in zip(header, parts[1:], strict=True):
                m = re.fullmatch(r"(\*\*)?([0-9.]+) ± ([0-9.]+)(\*\*)?", text)
                if m:
                    cells[(section, parts[0], column)] = (float(m.group(2)),
                                                         float(m.group(3)), bool(m.group(1)))
    return cells


def test_markdown_table_numbers_equal_the_aggregated_results(decoding_table, auroc):
    markdown, table = tables.results_table(auroc)
    cells = _parse_markdown(markdown)
    variants = decoding_table[["setting", "task", "model", "encode_scale",
                               "mask_scale"]].drop_duplicates()
    assert len(cells) == len(variants) == len(table)
    for split, task, model, enc, mask in variants.itertuples(index=False):
        section = f"{style.pretty(task)} ({style.pretty(split)})"
        row = tables.row_name(model, enc)
        column = mask if mask != "none" else tables.NO_MASK
        mean, sem, n = _expected(decoding_table, split, task, model, enc, mask)
        got_mean, got_sem, _ = cells[(section, row, column)]
        assert got_mean == pytest.approx(mean, abs=5e-4), (section, row, column)
        assert got_sem == pytest.approx(sem, abs=5e-4), (section, row, column)
        csv_row = table[(table["setting"] == split) & (table["task"] == task)
                        & (table["model"] == model) & (table["encode_scale"] == enc)
                        & (table["mask_scale"] == mask)].iloc[0]
        assert csv_row["mean"] == pytest.approx(mean) and csv_row["n"] == n
    # the paper layout: encode scales as rows, mask scales as columns, plus the extra rows
    section = markdown.split("## speech vs nonspeech (within session)")[1].split("##")[0]
    assert "| encode \\ mask | channel | parcel | lobe | — |" in section
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["channel", "parcel", "lobe", "BaRISTA release · channel",
                        "BaRISTA release · parcel", "BaRISTA release · lobe", "RPNT · parcel",
                        "random init · channel", "random init · parcel", "random init · lobe",
                        "linear"]
    # exactly one bold cell per table, and it is the highest mean
    for (section, _, _), (mean, _, bold) in cells.items():
        best = max(m for (s, _, _), (m, _, _) in cells.items() if s == section)
        assert bold == (mean == best)


def test_best_vs_next_wilcoxon_pairs_sessions_and_seeds(decoding_table, auroc):
    tests = aggregate.best_vs_next(auroc)
    assert set(zip(tests["setting"], tests["task"], strict=True)) == {
        (s, t) for s in ("within_session", "cross_subject") for t in TASKS}
    for t in tests.itertuples(index=False):
        keys = ["subject", "session", "seed"]
        rows = auroc[(auroc["setting"] == t.setting) & (auroc["task"] == t.task)]
        a = rows[(rows["model"] == t.best_model) & (rows["encode_scale"] == t.best_encode_scale)
                 & (rows["mask_scale"] == t.best_mask_scale)]
        b = rows[(rows["model"] == t.next_model) & (rows["encode_scale"] == t.next_encode_scale)
                 & (rows["mask_scale"] == t.next_mask_scale)]
        if set(a["seed"]) != set(b["seed"]):  # the linear floor: session means
            keys = ["subject", "session"]
            a, b = (x.groupby(keys, as_index=False)["value"].mean() for x in (a, b))
        pairs = a.merge(b, on=keys)
        assert t.n_pairs == len(pairs)
        assert t.best_mean >= t.next_mean
        expected = stats.wilcoxon(pairs["value_x"] - pairs["value_y"])
        assert t.wilcoxon_p == pytest.approx(expected.pvalue)
        assert t.wilcoxon_statistic == pytest.approx(expected.statistic)


def test_wilcoxon_with_no_difference_is_nan_not_an_error():
    assert all(np.isnan(aggregate.wilcoxon([0.5, 0.6], [0.5, 0.6])))
    assert all(np.isnan(aggregate.wilcoxon([], [])))


def test_tidy_fills_missing_columns():
    raw = pd.DataFrame({"model": ["barista", "linear"], "encode_scale": ["parcel", None],
                        "task": ["t", "t"], "subject": ["01", "01"], "session": ["1", "1"],
                        "metric": ["auroc", "auroc"], "value": [0.7, 0.6]})
    rows = aggregate.tidy(raw)
    assert list(rows["setting"]) == ["within_session"] * 2
    assert list(rows["mask_scale"]) == ["none", "none"]
    assert list(rows["encode_scale"]) == ["parcel", "none"]
    assert list(rows["seed"]) == [0, 0]


def test_colours_are_consistent_and_generic():
    assert style.variant_style("barista", "parcel", "channel")["color"] == \
        style.variant_style("random_init", "parcel", "none")["color"] == \
        style.SCALE_COLORS["parcel"]
    assert style.variant_style("random_init", "lobe", "none")["hollow"]
    # an unknown model or scale gets a stable colour of its own
    assert style.model_color("newmodel") == style.model_color("newmodel")
    assert style.scale_color("voxel").startswith("#")
    assert style.label("rpnt", "parcel", "lobe") == "RPNT parcel/lobe"
    assert style.label("linear", "none", "none") == "linear"


def test_overlap_detector():
    fig = style.new_figure(2, 1)
    ax = fig.subplots()
    ax.text(0.5, 0.5, "some text")
    ax.text(0.52, 0.5, "more text")
    assert ("some text", "more text") in style.text_overlaps(fig)
    fig = style.new_figure(3.5, 2)
    ax = fig.subplots()
    ax.set_xticks(range(8), [f"a long tick label {i}" for i in range(8)], rotation=45,
                  ha="right", rotation_mode="anchor")
    assert style.text_overlaps(fig) == []  # rotated labels whose upright boxes overlap


@pytest.fixture(scope="module")
def localization() -> pd.DataFrame:
    rows = []
    for s, sub in enumerate(SUBJECTS[:2]):
        for c in range(6):
            rows.append(dict(subject=sub, session="02", channel=f"LT{c + 1}",
                             x=-40.0 - 4 * c, y=-20.0 + 3 * s, z=6.0, hemisphere="L",
                             parcel=["G_temp_sup-Lateral", "unknown"][c % 2],
                             lobe=["temporal", "unknown"][c % 2], kind="cortex",
                             keep=c != 5, drop_reason="" if c != 5 else "ventricle"))
    return pd.DataFrame(rows)


def _importance(localization) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for seed in (0, 1):
        for (sub, session), group in localization.groupby(["subject", "session"]):
            frames.append(pd.DataFrame({
                "channel": group["channel"], "weight": rng.uniform(0.5, 1.5, len(group)),
                "model": "barista", "encode_scale": "parcel", "mask_scale": "channel",
                "task": "speech_vs_nonspeech", "seed": seed, "setting": "within_session",
                "subject": sub, "session": session,
                "recording": f"sub-{sub}_ses-{session}_task-x_run-01"}))
    return pd.concat(frames, ignore_index=True)


def _reconstruction() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for enc in SCALES:
        for mask in SCALES[:2]:
            for sub in SUBJECTS[:2]:
                for c in range(5):
                    mse = float(rng.uniform(0.5, 1.1))
                    for metric, value in (("mse", mse), ("r2", 1 - mse)):
                        rows.append(dict(channel=f"A{c}", metric=metric, value=value,
                                         subject=sub, session="02",
                                         recording=f"sub-{sub}_ses-02_task-x_run-01",
                                         model="barista", encode_scale=enc, mask_scale=mask,
                                         setting="heldout_session", seed=0))
    return pd.DataFrame(rows)


def _history() -> pd.DataFrame:
    frames = []
    for enc in SCALES:
        for mask in SCALES[:2]:
            steps = np.arange(1, 41)
            train = pd.DataFrame({"step": steps, "epoch": (steps - 1) // 10, "split": "train",
                                  "loss": 0.08 * np.exp(-steps / 20) + 0.05})
            val = pd.DataFrame({"step": [10, 20, 30, 40], "epoch": [0, 1, 2, 3],
                                "split": "val", "loss": [0.07, 0.06, 0.055, 0.052]})
            frames.append(pd.concat([train, val]).assign(model="barista", encode_scale=enc,
                                                         mask_scale=mask))
    return pd.concat(frames, ignore_index=True)


def _curves(auroc) -> pd.DataFrame:
    runs = auroc.drop_duplicates(["model", "encode_scale", "mask_scale", "task", "recording",
                                  "seed", "setting"])
    runs = runs[runs["model"] != "linear"]
    frames = [pd.DataFrame({"epoch": np.arange(4 + r.seed), "val_auroc": np.linspace(
        0.5, r.value, 4 + r.seed)}).assign(**{k: getattr(r, k) for k in (
            "model", "encode_scale", "mask_scale", "task", "seed", "setting", "subject",
            "session", "recording")}) for r in runs.itertuples(index=False)]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def drawn(auroc, localization):
    """Every figure of the study, drawn once from the fixtures."""
    contacts = localization.assign(speech_gain=np.linspace(0, 1, len(localization)),
                                   sentence_gain=0.0)
    parcels = pd.DataFrame({"hemisphere": ["L"], "parcel": ["G_temp_sup-Lateral"],
                            "lobe": ["temporal"], "speech_gain": [1.0], "sentence_gain": [1.0]})
    return {
        "comparison": decoding.comparison(auroc),
        "grid": decoding.grid(auroc),
        "paired": decoding.pretrained_vs_random(auroc),
        "reconstruction": reconstruction.summary(_reconstruction()),
        "reconstruction-channels": reconstruction.channels(_reconstruction()),
        "pretraining": curves.pretraining(_history()),
        "finetuning": curves.finetuning(_curves(auroc)),
        "electrodes": electrodes.contacts(localization, by="lobe"),
        "importance": electrodes.importance(_importance(localization), localization,
                                            task="speech_vs_nonspeech",
                                            ground_truth=(contacts, parcels)),
    }


def test_figures_have_no_overlapping_text_and_fit_the_page(drawn):
    for name, (fig, table) in drawn.items():
        assert not table.empty, name
        width, _ = fig.get_size_inches()
        assert width <= style.PAGE_IN + 1e-9, name
        assert style.layout_problems(fig) == {"overlaps": [], "clipped": []}, name
        panels = [ax for ax in fig.axes if ax.has_data() and ax.get_label() != "<colorbar>"]
        assert any(ax.get_xlabel() for ax in panels), name  # labelled axes
        assert any(ax.get_ylabel() for ax in panels), name


def test_figure_tables_hold_the_plotted_numbers(drawn, auroc):
    comparison = drawn["comparison"][1]
    expected = auroc.groupby(["setting", "task", "model", "encode_scale",
                              "mask_scale"])["value"].agg(["mean", "count"])
    got = comparison.set_index(["setting", "task", "model", "encode_scale", "mask_scale"])
    assert np.allclose(got.loc[expected.index, "mean"], expected["mean"])
    assert (got.loc[expected.index, "n"] == expected["count"]).all()
    assert comparison["compared_with"].notna().sum() == 4  # one test per panel
    # two settings: the comparison has a row of panels for each
    assert len(drawn["comparison"][0].axes) == 2 * len(TASKS)
    grid = drawn["grid"][1]
    assert set(grid["model"]) == {"barista", "rpnt", "barista_release"}
    paired = drawn["paired"][1]
    assert (paired["difference"] == paired["pretrained"] - paired["random_init"]).all()
    # the released encoders are paired with the random init of their encode scale too
    release = paired[paired["model"] == "barista_release"]
    assert set(release["encode_scale"]) == set(SCALES)
    assert len(release) == len(TASKS) * len(SCALES) * len(SUBJECTS)
    recon = drawn["reconstruction"][1]
    mse = _reconstruction().query("metric == 'mse'").groupby(["encode_scale", "mask_scale"])
    assert np.allclose(recon[recon["metric"] == "mse"].set_index(
        ["encode_scale", "mask_scale"]).loc[mse.groups.keys(), "mean"], mse["value"].mean())
    importance = drawn["importance"][1]
    assert importance["relative_weight"].notna().all()
    assert np.isfinite(importance["spearman_rho"].iloc[0])
    assert set(drawn["electrodes"][1]["lobe"]) == {"temporal", "unknown"}


def test_relative_weights_average_one_per_run(localization):
    weights = electrodes.relative_weights(_importance(localization))
    per_recording = weights.groupby(["subject", "session"])["relative_weight"].mean()
    assert np.allclose(per_recording, 1.0)
    assert (weights["n_seeds"] == 2).all()


def test_empty_inputs_still_give_a_figure():
    fig, table = decoding.comparison(aggregate.tidy(pd.DataFrame(
        columns=["model", "task", "metric", "value"])))
    assert table.empty and fig.texts


def test_cli_writes_png_pdf_csv_and_markdown(tmp_path, decoding_table):
    from barista.cli import main

    path = tmp_path / "decoding.parquet"
    decoding_table.to_parquet(path)
    out = tmp_path / "figures"
    assert main(["figures", "table", "--decoding", str(path), "--out",
                 str(out / "results_table")]) == 0
    assert main(["figures", "grid", "--decoding", str(path), "--out",
                 str(out / "decoding_grid")]) == 0
    assert (out / "results_table.md").read_text().startswith("# Results: test AUROC")
    assert len(pd.read_csv(out / "results_table.csv")) == len(
        decoding_table[["setting", "task", "model", "encode_scale",
                        "mask_scale"]].drop_duplicates())
    for ext in ("png", "pdf", "csv"):
        assert (out / f"decoding_grid.{ext}").stat().st_size > 0
    assert (out / "decoding_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["figures", "comparison", "--out", str(out / "x")]) == 1  # no --decoding


def test_results_written_before_the_rename_draw_the_same_table(tmp_path, decoding_table):
    """A decoding.parquet whose setting column still has its old name (split_kind) is read
    with it renamed: the same table, byte for byte; one with both names is refused."""
    from barista.cli import main
    from barista.errors import DataError
    from barista.figures.load import read_table

    new, old = tmp_path / "new.parquet", tmp_path / "old.parquet"
    decoding_table.to_parquet(new)
    decoding_table.rename(columns={"setting": "split_kind"}).to_parquet(old)
    for path in (new, old):
        assert main(["figures", "table", "--decoding", str(path), "--out",
                     str(tmp_path / path.stem)]) == 0
    for ext in ("md", "csv"):
        assert (tmp_path / f"old.{ext}").read_bytes() == (tmp_path / f"new.{ext}").read_bytes()
    pd.testing.assert_frame_equal(read_table(old), read_table(new))
    both = tmp_path / "both.parquet"
    decoding_table.assign(split_kind=decoding_table["setting"]).to_parquet(both)
    with pytest.raises(DataError, match=r"both\.parquet.*'split_kind'.*'setting'"):
        read_table(both)


def test_probe_table_reads_only_the_probe_rows(tmp_path, decoding_table):
    from barista.cli import main

    encoders = decoding_table[decoding_table["model"] != "linear"]
    probe = encoders.assign(metric="probe_auroc", value=0.5 + 0.4 * (encoders["value"] % 0.1))
    path = tmp_path / "decoding.parquet"
    pd.concat([decoding_table, probe]).to_parquet(path)
    assert main(["figures", "table", "--metric", "probe_auroc", "--decoding", str(path),
                 "--out", str(tmp_path / "probe_table")]) == 0
    assert (tmp_path / "probe_table.md").read_text().startswith("# Results: frozen-probe AUROC")
    cells = pd.read_csv(tmp_path / "probe_table.csv")
    assert "linear" not in set(cells["model"])  # the floor has no encoder to probe
    assert cells["mean"].between(0.5, 0.54).all()


def test_variants_are_their_own_rows_and_pair_with_their_own_start():
    """A pretraining variant is never averaged into the paper's rows; each pretraining run
    (pretrain_seed) pairs with its own random init, prior+raw with the 'prior' start."""
    rng = np.random.default_rng(3)
    rows = []
    for pseed in (0, 1, 2):
        for model, variant, mask, offset in (("barista", "paper", "channel", 0.55),
                                             ("barista", "prior+raw", "channel", 0.75),
                                             ("random_init", "paper", "none", 0.5),
                                             ("random_init", "prior", "none", 0.6)):
            for r in _rows(model, "channel", mask, TASKS[0], "within_session", (0,), rng,
                           offset):
                rows.append({**r, "variant": variant, "pretrain_seed": pseed})
    table = pd.DataFrame(rows)
    md, cells = tables.results_table(aggregate.tidy(table, "auroc"))
    names = set(cells["row"])
    assert {"channel", "BaRISTA prior+raw · channel", "random init · channel",
            "random init prior · channel"} <= names
    paper = cells[cells["row"] == "channel"]
    want = table[(table["variant"] == "paper") & (table["model"] == "barista")
                 & (table["metric"] == "auroc")]["value"]
    assert paper["mean"].iloc[0] == pytest.approx(want.mean())
    assert paper["n"].iloc[0] == len(want) == 15  # 5 sessions x 3 pretraining runs
    _, paired = decoding.pretrained_vs_random(aggregate.tidy(table, "auroc"))
    assert set(zip(paired["model"], paired["pairs_with"], strict=True)) == {
        ("barista", "paper"), ("barista:prior+raw", "prior")}
    ours = paired[paired["model"] == "barista:prior+raw"].set_index("recording")
    auroc = table[table["metric"] == "auroc"]
    means = auroc.groupby(["model", "variant", "recording"])["value"].mean()
    want = means["barista", "prior+raw"] - means["random_init", "prior"]
    assert np.allclose(ours["difference"].sort_index(), want.sort_index())
