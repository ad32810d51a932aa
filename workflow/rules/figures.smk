# Figures and tables of the study, drawn from the results that exist. FIGURE_RULES below is the
# one table of them; the loop at the end makes one local rule per entry, so a changed input
# redraws only the figures that read it, and registers each for `snakemake --report` (captions
# in workflow/report/). A figure is <stem>.png (reported), .pdf and .csv (the numbers it plots)
# under results/<ds>/figures/; a table is <stem>.md and <stem>.csv (reported).

FIGURES = f"{RESULTS}/figures"
FIGURE_EXTS = ("png", "pdf", "csv")
TABLE_EXTS = ("md", "csv")

# Input functions are lambdas: `snakemake --lint` wants named functions only in files without
# rules, and these belong to the figure rules alone.
# metrics.parquet of every finetuning run of the study's protocol (its curve.parquet lies beside)
finetune_run_results = lambda wc: [f for f in study_results() if "/finetune/linear/" not in f]
# metrics.parquet of the finetuned runs of one pretrained pair (head weights beside it), of the
# first variant that pretrains the pair
importance_run_results = lambda wc: [
    f"{RESULTS}/finetune/barista/{v}/{e}-{m}/seed{s}/metrics.parquet"
    for v, e, m, s in pretrained_runs()
    if (e, m) == (wc.encode, wc.mask)
    and s in FINETUNED_SEEDS
    and v == next(x for x in VARIANTS if (e, m) in variant_pairs(x))
]
# metrics.parquet of one released encoder, every task (head weights beside it)
importance_release_results = lambda wc: [
    f for f in study_results() if f"/finetune/barista_release/{wc.encode}/" in f
]
localization_tables = lambda wc: [
    f"{RESULTS}/localization/sub-{s}.parquet" for s in sorted(set(recording_table()["subject"]))
]
# the simulated BIDS dataset: its derivatives/simulation/ holds the ground truth
simulation_truth = lambda wc: [BIDS_ROOT] if SOURCE == "simulate" else []
# A job's `barista figures` arguments: its entry's cli with the job's {wildcards.*} and
# {input.*} filled in, {runs} (the folders of its finetuning runs: the CLI reads the curves and
# head weights there), {bids} (--bids-root of a simulated dataset: the ground truth), {dataset}.
# A param, not the shell command: a rule made in a loop evaluates its shell command when the
# job runs, when the loop's variables hold the last entry.
figure_args = lambda cli: lambda wildcards, input: cli.format(
    wildcards=wildcards, input=input, dataset=DS,
    runs=" ".join(sorted({os.path.dirname(f) for f in input.get("runs", [])})),
    bids=f"--bids-root {input.bids}" if input.get("bids") else "",
)

DECODING = {"decoding": f"{RESULTS}/decoding.parquet"}
RECONSTRUCTION = {"reconstruction": f"{RESULTS}/reconstruction.parquet"}
IMPORTANCE = dict(localization=localization_tables, bids=simulation_truth)
IMPORTANCE_CLI = (
    "importance --task {wildcards.task} --runs {runs} --localization {input.localization} {bids}"
)
# what the config's results allow
FINETUNED = bool(config["finetune"]["tasks"]) and "barista" in PROTOCOLS
PRETRAINED_PAIRS = list(dict.fromkeys((e, m) for _, e, m, _ in pretrained_runs()))
DECODED_TASKS = config["finetune"]["tasks"] if FINETUNED else []
RECONSTRUCTED = config["reconstruct"]["enabled"] and bool(PRETRAINED_PAIRS)

# The table: rule name -> stem (the output path under figures/ without extension; wildcards
# allowed), when (the `figures` target draws it) or, for a stem with wildcards, targets (the
# stems it draws), input (named), constraints (wildcard constraints beyond the global ones),
# cli (the `barista figures` arguments, see figure_args; the rule adds --out), caption
# (workflow/report/<caption>.rst, report category, subcategory, labels), table (writes .md and
# .csv, not a figure).
FIGURE_RULES = {
    "fig_electrodes": dict(
        stem="electrodes_{by}", targets=["electrodes_parcel", "electrodes_lobe"],
        input={"localization": localization_tables}, constraints={"by": "parcel|lobe"},
        cli="electrodes --color-by {wildcards.by} --localization {input.localization}",
        caption=("electrodes", "data", "electrodes", {"figure": "contacts", "colour": "{by}"}),
    ),
    "fig_pretraining_curves": dict(
        stem="pretraining_curves", when=bool(PRETRAINED_PAIRS),
        cli="pretraining --histories {input.histories}",
        input={"histories": [f"{RESULTS}/models/barista/{v}/{e}-{m}/seed{s}/history.parquet"
                             for v, e, m, s in pretrained_runs()]},
        caption=("pretraining_curves", "pretraining", "loss",
                 {"figure": "pretraining loss", "scale": "all pairs"}),
    ),
    "fig_decoding_comparison": dict(
        stem="decoding_comparison", when=FINETUNED, input=DECODING,
        cli="comparison --decoding {input.decoding}",
        caption=("decoding_comparison", "decoding", "all tasks",
                 {"figure": "1 model comparison", "scale": "all"}),
    ),
    "fig_decoding_grid": dict(
        stem="decoding_grid", when=FINETUNED, input=DECODING,
        cli="grid --decoding {input.decoding}",
        caption=("decoding_grid", "decoding", "all tasks",
                 {"figure": "2 encode x mask grid", "scale": "encode x mask"}),
    ),
    "fig_pretrained_vs_random": dict(
        stem="pretrained_vs_random", when=FINETUNED and config["finetune"]["random_init"],
        input=DECODING, cli="paired --decoding {input.decoding}",
        caption=("pretrained_vs_random", "decoding", "all tasks",
                 {"figure": "3 pretrained vs random init", "scale": "per encode scale"}),
    ),
    "results_table": dict(
        stem="results_table", table=True, when=FINETUNED, input=DECODING,
        cli="table --decoding {input.decoding}",
        caption=("results_table", "decoding", "all tasks",
                 {"figure": "4 results table", "scale": "all"}),
    ),
    "probe_table": dict(
        stem="probe_table", table=True, when=FINETUNED and config["evaluation"]["probe"],
        input=DECODING, cli="table --metric probe_auroc --decoding {input.decoding}",
        caption=("probe_table", "decoding", "all tasks",
                 {"figure": "4b frozen-probe table", "scale": "all"}),
    ),
    "fig_finetuning_curves": dict(
        stem="finetuning_curves", when=FINETUNED, input={"runs": finetune_run_results},
        cli="finetuning --runs {runs}",
        caption=("finetuning_curves", "decoding", "all tasks",
                 {"figure": "5 finetuning curves", "scale": "all"}),
    ),
    "fig_importance": dict(
        stem="importance/{encode}-{mask}_{task}",
        targets=[f"importance/{e}-{m}_{t}" for e, m in PRETRAINED_PAIRS for t in DECODED_TASKS],
        input={"runs": importance_run_results} | IMPORTANCE,
        cli=IMPORTANCE_CLI,
        caption=("importance", "decoding", "{task}",
                 {"figure": "channel weights", "encode": "{encode}", "mask": "{mask}"}),
    ),
    "fig_importance_release": dict(
        stem="importance/barista_release_{encode}_{task}",
        targets=[
            f"importance/barista_release_{e}_{t}"
            for e in config["model"]["encode_scales"] if config["finetune"]["barista_release"]
            for t in DECODED_TASKS
        ],
        input={"runs": importance_release_results} | IMPORTANCE,
        cli=IMPORTANCE_CLI,
        caption=("importance", "decoding", "{task}",
                 {"figure": "channel weights", "encode": "{encode}", "mask": "released"}),
    ),
    "fig_reconstruction": dict(
        stem="reconstruction", when=RECONSTRUCTED, input=RECONSTRUCTION,
        cli="reconstruction --reconstruction {input.reconstruction}",
        caption=("reconstruction", "reconstruction", "held-out sessions",
                 {"figure": "MSE and R2 per pair", "scale": "encode/mask pairs"}),
    ),
    "fig_reconstruction_channels": dict(
        stem="reconstruction_channels", when=RECONSTRUCTED, input=RECONSTRUCTION,
        cli="reconstruction-channels --reconstruction {input.reconstruction}",
        caption=("reconstruction_channels", "reconstruction", "held-out sessions",
                 {"figure": "R2 per channel", "scale": "encode/mask pairs"}),
    ),
    # the Neuroprobe protocol's (workflow/rules/neuroprobe.smk)
    "fig_neuroprobe": dict(
        stem="neuroprobe_leaderboard", when="neuroprobe" in PROTOCOLS, input=DECODING,
        cli="neuroprobe --decoding {input.decoding} --dataset {dataset}",
        caption=("neuroprobe_leaderboard", "neuroprobe", "leaderboard",
                 {"figure": "Neuroprobe leaderboard", "scale": "all"}),
    ),
    "neuroprobe_table": dict(
        stem="neuroprobe_table", table=True, when="neuroprobe" in PROTOCOLS, input=DECODING,
        cli="neuroprobe-table --decoding {input.decoding} --dataset {dataset}",
        caption=("neuroprobe_table", "neuroprobe", "leaderboard",
                 {"figure": "Neuroprobe table", "scale": "all"}),
    ),
}


for name, fig in FIGURE_RULES.items():
    stem = f"{FIGURES}/{fig['stem']}"
    exts, shown = (TABLE_EXTS, "csv") if fig.get("table") else (FIGURE_EXTS, "png")
    rst, category, subcategory, labels = fig["caption"]
    reported = report(f"{stem}.{shown}", f"../report/{rst}.rst", category, subcategory, labels)

    rule:
        name: name
        localrule: True
        input: **fig["input"]
        output: **{x: reported if x == shown else f"{stem}.{x}" for x in exts}
        wildcard_constraints: **fig.get("constraints", {})
        params:
            args=figure_args(fig["cli"]),
            stem=lambda wc, output: os.path.splitext(output[0])[0],
        log: f"{LOGS}/figures/{fig['stem']}.log"
        shell: "python -m barista figures {params.args} --out {params.stem} > {log} 2>&1"


rule figures:
    input:
        [
            f"{FIGURES}/{target}.{x}"
            for fig in FIGURE_RULES.values()
            for target in fig.get("targets", [fig["stem"]] if fig.get("when") else [])
            for x in (TABLE_EXTS if fig.get("table") else FIGURE_EXTS)
        ],
