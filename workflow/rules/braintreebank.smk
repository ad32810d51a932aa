# Brain Treebank source (dataset.source: braintreebank): the release read in place, one trial
# at a time (barista/braintreebank*.py). These rules make what the BIDS rules make: the
# recordings table, the preprocessed FIF derivative and the localization tables, plus each
# trial's word events (BIDS sources have an events.tsv). Each job's --params: barista/steps.py.


localrules:
    braintreebank_download,
    words,


rule braintreebank_download:
    output:
        "resources/braintreebank/.barista/braintreebank.json",
    params:
        cfg=step_params("braintreebank-download", config),
    log:
        "resources/logs/download_braintreebank.log",
    shell:
        "python -m barista braintreebank-download --params {params.cfg:q} "
        "--out resources/braintreebank --no-progress > {log} 2>&1"


checkpoint recordings:
    input:
        root=PLAN.bids_input(),
    output:
        f"{RESULTS}/recordings.tsv",
    params:
        cfg=step_params("braintreebank-recordings", config),
    log:
        f"{LOGS}/recordings.log",
    shell:
        "python -m barista braintreebank-recordings --params {params.cfg:q} "
        "--root {input.root:q} --out {output} > {log} 2>&1"


rule derivative_description:
    input:
        root=PLAN.bids_input(),
    output:
        f"{DERIV}/dataset_description.json",
    params:
        cfg=step_params("derivative", config),
        # the release folder: the tracked file's folder, or two up from the download's marker
        root=lambda wc, input: os.path.dirname(
            input.root if input.root.endswith("corrupted_elec.json")
            else os.path.dirname(input.root)
        ),
    log:
        f"{LOGS}/derivative_description.log",
    shell:
        "python -m barista derivative --params {params.cfg:q} --bids-root {params.root:q} "
        "--out $(dirname {output}) > {log} 2>&1"


rule preprocess:
    input:
        root=PLAN.bids_input(),
        recordings=f"{RESULTS}/recordings.tsv",
    output:
        fif=f"{DERIV}/{{bidsdir}}/ieeg/{{rec}}_desc-preproc_ieeg.fif",
        sidecar=f"{DERIV}/{{bidsdir}}/ieeg/{{rec}}_desc-preproc_ieeg.json",
    params:
        cfg=step_params("braintreebank-preprocess", config),
    log:
        f"{LOGS}/preprocess/{{bidsdir}}/{{rec}}.log",
    shell:
        "python -m barista braintreebank-preprocess --params {params.cfg:q} "
        "--root {input.root:q} --recording {wildcards.rec} --out {output.fif} > {log} 2>&1"


rule localize:
    input:
        root=PLAN.bids_input(),
        recordings=f"{RESULTS}/recordings.tsv",
    output:
        f"{RESULTS}/localization/sub-{{subject}}.parquet",
    params:
        cfg=step_params("braintreebank-localize", config),
        sessions=lambda wc: " ".join(sessions_of(wc.subject)),
    log:
        f"{LOGS}/localize/sub-{{subject}}.log",
    shell:
        "python -m barista braintreebank-localize --params {params.cfg:q} --root {input.root:q} "
        "--subject {wildcards.subject} --sessions {params.sessions} --out {output} "
        "> {log} 2>&1"


rule words:
    input:
        root=PLAN.bids_input(),
        recordings=f"{RESULTS}/recordings.tsv",
    output:
        f"{RESULTS}/events/{{rec}}_events.tsv",
    params:
        cfg=step_params("braintreebank-words", config),
    log:
        f"{LOGS}/words/{{rec}}.log",
    shell:
        "python -m barista braintreebank-words --params {params.cfg:q} --root {input.root:q} "
        "--recording {wildcards.rec} --out {output} > {log} 2>&1"
