# barista: intracranial recordings -> Parquet tokens -> pretrained spatiotemporal models -> figures.
# Rules are thin: each calls one `barista` CLI step; all logic lives in the barista package.

import re

from snakemake.utils import min_version

min_version("9.0")


# The demo's config/config.yaml is the configuration only when no --configfile is given: a
# user's file is the whole configuration (keys it leaves out take the schema's defaults), never
# merged into the demo's, so its lists and mappings (`scales: {channel: {}}`) are what runs.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    rec=r"sub-[A-Za-z0-9]+[A-Za-z0-9_-]*",
    subject=r"[A-Za-z0-9]+",
    bidsdir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?",
    scale="|".join(SCALES),
    encode="|".join(SCALES),
    mask="|".join(SCALES),
    task="speech_vs_nonspeech|sentence_onset",
    variant="|".join(re.escape(v) for v in dict.fromkeys(VARIANTS + INIT_VARIANTS)),
    pseed=r"\d+",
    nptask="|".join(npb.TASKS),
    split="|".join(npb.SPLIT_TYPES),
    np_subject=r"\d+",
    np_trial=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/neuroprobe.smk"


# Run by Snakemake itself, not submitted to a cluster: downloads (compute nodes are often
# offline), the small bookkeeping steps, the result tables, the figures and the aggregate
# targets. A new rule of that kind belongs here too (the figure rules say so themselves:
# workflow/rules/figures.smk).
localrules:
    simulate,
    download,
    download_release,
    recordings,
    derivative_description,
    decoding_table,
    reconstruction_table,
    data,
    models,
    figures,
    all,


rule all:
    default_target: True
    input:
        rules.data.input,
        rules.models.input,
        rules.figures.input,
