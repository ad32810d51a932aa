# Figures and tables of the study, drawn from the results that exist. One rule per figure, so a
# changed input redraws only the figures that read it; every figure is registered for
# `snakemake --report` (captions in workflow/report/). Each figure is <name>.png, <name>.pdf and
# <name>.csv (the numbers it plots) under results/<ds>/figures/.

FIGURES = f"{RESULTS}/figures"
FIGURE_EXTS = ("png", "pdf", "csv")

# Input functions are lambdas: `snakemake --lint` wants named functions only in files without
# rules, and these belong to the figure rules alone.

# output path without its extension (the CLI adds .png, .pdf, .csv)
out_stem = lambda wildcards, output: os.path.splitext(output[0])[0]

# metrics.parquet of every finetuning run of the study's protocol (its curve.parquet lies beside)
finetune_run_results = lambda wildcards: [
    f for f in study_results() if "/finetune/linear/" not in f
]

# metrics.parquet of the finetuned runs of one pretrained pair (head weights beside it), of the
# first variant that pretrains the pair
importance_run_results = lambda wildcards: [
    f"{RESULTS}/finetune/barista/{v}/{e}-{m}/seed{s}/metrics.parquet"
    for v, e, m, s in pretrained_runs()
    if (e, m) == (wildcards.encode, wildcards.mask)
    and s in FINETUNED_SEEDS
    and v == next(x for x in VARIANTS if (e, m) in variant_pairs(x))
]

# metrics.parquet of one released encoder, every task (head weights beside it)
importance_release_results = lambda wildcards: [
    f for f in study_results() if f"/finetune/barista_release/{wildcards.encode}/" in f
]

localization_tables = lambda wildcards: [
    f"{RESULTS}/localization/sub-{s}.parquet"
    for s in sorted(set(recording_table()["subject"]))
]

# the simulated BIDS dataset: its derivatives/simulation/ holds the ground truth
simulation_truth = lambda wildcards: [BIDS_ROOT] if SOURCE == "simulate" else []

pretraining_histories = [
    f"{RESULTS}/models/barista/{v}/{e}-{m}/seed{s}/history.parquet"
    for v, e, m, s in pretrained_runs()
]

# every figure and table that the config's results allow
FIGURE_NAMES = ["electrodes_parcel", "electrodes_lobe"]
FIGURE_NAMES += ["pretraining_curves"] if pretrained_runs() else []
FIGURE_TABLES = []
if config["finetune"]["tasks"] and "barista" in PROTOCOLS:
    FIGURE_NAMES += ["decoding_comparison", "decoding_grid", "finetuning_curves"]
    FIGURE_NAMES += ["pretrained_vs_random"] if config["finetune"]["random_init"] else []
    FIGURE_NAMES += [
        f"importance/{e}-{m}_{t}"
        for e, m in dict.fromkeys((e, m) for _, e, m, _ in pretrained_runs())
        for t in config["finetune"]["tasks"]
    ]
    if config["finetune"]["barista_release"]:
        FIGURE_NAMES += [
            f"importance/barista_release_{e}_{t}"
            for e in config["model"]["encode_scales"]
            for t in config["finetune"]["tasks"]
        ]
    FIGURE_TABLES += [f"{FIGURES}/results_table.md", f"{FIGURES}/results_table.csv"]
    if config["evaluation"]["probe"]:
        FIGURE_TABLES += [f"{FIGURES}/probe_table.md", f"{FIGURES}/probe_table.csv"]
if config["reconstruct"]["enabled"] and pretrained_runs():
    FIGURE_NAMES += ["reconstruction", "reconstruction_channels"]
if "neuroprobe" in PROTOCOLS:  # workflow/rules/neuroprobe.smk
    FIGURE_NAMES += ["neuroprobe_leaderboard"]
    FIGURE_TABLES += [f"{FIGURES}/neuroprobe_table.md", f"{FIGURES}/neuroprobe_table.csv"]


rule fig_electrodes:
    input:
        localization_tables,
    output:
        png=report(
            f"{FIGURES}/electrodes_{{by}}.png",
            caption="../report/electrodes.rst",
            category="data",
            subcategory="electrodes",
            labels={"figure": "contacts", "colour": "{by}"},
        ),
        pdf=f"{FIGURES}/electrodes_{{by}}.pdf",
        csv=f"{FIGURES}/electrodes_{{by}}.csv",
    wildcard_constraints:
        by="parcel|lobe",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/electrodes_{{by}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures electrodes --color-by {wildcards.by} "
        "--localization {input} --out {params.stem} > {log} 2>&1"


rule fig_pretraining_curves:
    input:
        pretraining_histories,
    output:
        png=report(
            f"{FIGURES}/pretraining_curves.png",
            caption="../report/pretraining_curves.rst",
            category="pretraining",
            subcategory="loss",
            labels={"figure": "pretraining loss", "scale": "all pairs"},
        ),
        pdf=f"{FIGURES}/pretraining_curves.pdf",
        csv=f"{FIGURES}/pretraining_curves.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/pretraining_curves.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures pretraining --histories {input} --out {params.stem} "
        "> {log} 2>&1"


rule fig_decoding_comparison:
    input:
        f"{RESULTS}/decoding.parquet",
    output:
        png=report(
            f"{FIGURES}/decoding_comparison.png",
            caption="../report/decoding_comparison.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "1 model comparison", "scale": "all"},
        ),
        pdf=f"{FIGURES}/decoding_comparison.pdf",
        csv=f"{FIGURES}/decoding_comparison.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/decoding_comparison.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures comparison --decoding {input} --out {params.stem} > {log} 2>&1"


rule fig_decoding_grid:
    input:
        f"{RESULTS}/decoding.parquet",
    output:
        png=report(
            f"{FIGURES}/decoding_grid.png",
            caption="../report/decoding_grid.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "2 encode x mask grid", "scale": "encode x mask"},
        ),
        pdf=f"{FIGURES}/decoding_grid.pdf",
        csv=f"{FIGURES}/decoding_grid.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/decoding_grid.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures grid --decoding {input} --out {params.stem} > {log} 2>&1"


rule fig_pretrained_vs_random:
    input:
        f"{RESULTS}/decoding.parquet",
    output:
        png=report(
            f"{FIGURES}/pretrained_vs_random.png",
            caption="../report/pretrained_vs_random.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "3 pretrained vs random init", "scale": "per encode scale"},
        ),
        pdf=f"{FIGURES}/pretrained_vs_random.pdf",
        csv=f"{FIGURES}/pretrained_vs_random.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/pretrained_vs_random.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures paired --decoding {input} --out {params.stem} > {log} 2>&1"


rule results_table:
    input:
        f"{RESULTS}/decoding.parquet",
    output:
        md=f"{FIGURES}/results_table.md",
        csv=report(
            f"{FIGURES}/results_table.csv",
            caption="../report/results_table.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "4 results table", "scale": "all"},
        ),
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/results_table.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures table --decoding {input} --out {params.stem} > {log} 2>&1"


rule probe_table:
    input:
        f"{RESULTS}/decoding.parquet",
    output:
        md=f"{FIGURES}/probe_table.md",
        csv=report(
            f"{FIGURES}/probe_table.csv",
            caption="../report/probe_table.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "4b frozen-probe table", "scale": "all"},
        ),
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/probe_table.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures table --metric probe_auroc --decoding {input} "
        "--out {params.stem} > {log} 2>&1"


rule fig_finetuning_curves:
    input:
        finetune_run_results,
    output:
        png=report(
            f"{FIGURES}/finetuning_curves.png",
            caption="../report/finetuning_curves.rst",
            category="decoding",
            subcategory="all tasks",
            labels={"figure": "5 finetuning curves", "scale": "all"},
        ),
        pdf=f"{FIGURES}/finetuning_curves.pdf",
        csv=f"{FIGURES}/finetuning_curves.csv",
    params:
        stem=out_stem,
        runs=lambda wc, input: sorted({os.path.dirname(f) for f in input}),
    log:
        f"{LOGS}/figures/finetuning_curves.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures finetuning --runs {params.runs} --out {params.stem} "
        "> {log} 2>&1"


rule fig_importance:
    input:
        runs=importance_run_results,
        localization=localization_tables,
        bids=simulation_truth,
    output:
        png=report(
            f"{FIGURES}/importance/{{encode}}-{{mask}}_{{task}}.png",
            caption="../report/importance.rst",
            category="decoding",
            subcategory="{task}",
            labels={"figure": "channel weights", "encode": "{encode}", "mask": "{mask}"},
        ),
        pdf=f"{FIGURES}/importance/{{encode}}-{{mask}}_{{task}}.pdf",
        csv=f"{FIGURES}/importance/{{encode}}-{{mask}}_{{task}}.csv",
    params:
        stem=out_stem,
        runs=lambda wc, input: sorted({os.path.dirname(f) for f in input.runs}),
        bids=lambda wc, input: f"--bids-root {input.bids}" if input.bids else "",
    log:
        f"{LOGS}/figures/importance/{{encode}}-{{mask}}_{{task}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures importance --task {wildcards.task} --runs {params.runs} "
        "--localization {input.localization} {params.bids} --out {params.stem} > {log} 2>&1"


rule fig_importance_release:
    input:
        runs=importance_release_results,
        localization=localization_tables,
        bids=simulation_truth,
    output:
        png=report(
            f"{FIGURES}/importance/barista_release_{{encode}}_{{task}}.png",
            caption="../report/importance.rst",
            category="decoding",
            subcategory="{task}",
            labels={"figure": "channel weights", "encode": "{encode}", "mask": "released"},
        ),
        pdf=f"{FIGURES}/importance/barista_release_{{encode}}_{{task}}.pdf",
        csv=f"{FIGURES}/importance/barista_release_{{encode}}_{{task}}.csv",
    params:
        stem=out_stem,
        runs=lambda wc, input: sorted({os.path.dirname(f) for f in input.runs}),
        bids=lambda wc, input: f"--bids-root {input.bids}" if input.bids else "",
    log:
        f"{LOGS}/figures/importance/barista_release_{{encode}}_{{task}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures importance --task {wildcards.task} --runs {params.runs} "
        "--localization {input.localization} {params.bids} --out {params.stem} > {log} 2>&1"


rule fig_reconstruction:
    input:
        f"{RESULTS}/reconstruction.parquet",
    output:
        png=report(
            f"{FIGURES}/reconstruction.png",
            caption="../report/reconstruction.rst",
            category="reconstruction",
            subcategory="held-out sessions",
            labels={"figure": "MSE and R2 per pair", "scale": "encode/mask pairs"},
        ),
        pdf=f"{FIGURES}/reconstruction.pdf",
        csv=f"{FIGURES}/reconstruction.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/reconstruction.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures reconstruction --reconstruction {input} --out {params.stem} "
        "> {log} 2>&1"


rule fig_reconstruction_channels:
    input:
        f"{RESULTS}/reconstruction.parquet",
    output:
        png=report(
            f"{FIGURES}/reconstruction_channels.png",
            caption="../report/reconstruction_channels.rst",
            category="reconstruction",
            subcategory="held-out sessions",
            labels={"figure": "R2 per channel", "scale": "encode/mask pairs"},
        ),
        pdf=f"{FIGURES}/reconstruction_channels.pdf",
        csv=f"{FIGURES}/reconstruction_channels.csv",
    params:
        stem=out_stem,
    log:
        f"{LOGS}/figures/reconstruction_channels.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista figures reconstruction-channels --reconstruction {input} "
        "--out {params.stem} > {log} 2>&1"


rule figures:
    input:
        FIGURE_TABLES,
        expand(f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=FIGURE_EXTS),
