# barista: intracranial recordings -> Parquet tokens -> pretrained spatiotemporal models -> figures.
# Rules are thin: each calls one `barista` CLI step; all logic lives in the barista package.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    rec=r"sub-[A-Za-z0-9]+[A-Za-z0-9_-]*",
    subject=r"[A-Za-z0-9]+",
    bidsdir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?",
    scale="|".join(SCALES),
    encode="|".join(SCALES),
    mask="|".join(SCALES),
    task="speech_vs_nonspeech|sentence_onset",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"


rule all:
    default_target: True
    input:
        rules.data.input,
        rules.models.input,
