# Data half of the PLAN: BIDS iEEG -> preprocessed derivative -> localization -> segments -> tokens.
# Each job's --params: barista/steps.py.


rule simulate:
    output:
        directory(f"{RESULTS}/bids"),
    params:
        cfg=step_params("simulate", config),
    log:
        f"{LOGS}/simulate.log",
    shell:
        "python -m barista simulate --params {params.cfg:q} --out {output} > {log} 2>&1"


rule download:
    output:
        directory(f"resources/openneuro/{{dataset_id}}"),
    params:
        cfg=step_params("download", config),
    log:
        "resources/logs/download_{dataset_id}.log",
    shell:
        "python -m barista download --params {params.cfg:q} --out {output} > {log} 2>&1"


# A Brain Treebank release is not BIDS: its own rules list, preprocess and localize it
# (workflow/rules/braintreebank.smk); everything from segmentation on is shared.
if SOURCE == "braintreebank":

    include: "braintreebank.smk"

else:

    checkpoint recordings:
        input:
            bids=PLAN.bids_input(),
        output:
            f"{RESULTS}/recordings.tsv",
        params:
            cfg=step_params("recordings", config),
        log:
            f"{LOGS}/recordings.log",
        shell:
            "python -m barista recordings --params {params.cfg:q} --bids-root {input.bids:q} "
            "--out {output} > {log} 2>&1"

    rule derivative_description:
        input:
            bids=PLAN.bids_input(),
        output:
            f"{DERIV}/dataset_description.json",
        params:
            cfg=step_params("derivative", config),
        log:
            f"{LOGS}/derivative_description.log",
        shell:
            "python -m barista derivative --params {params.cfg:q} --bids-root {input.bids:q} "
            "--out $(dirname {output}) > {log} 2>&1"

    rule preprocess:
        input:
            bids=PLAN.bids_input(),
            recordings=f"{RESULTS}/recordings.tsv",
        output:
            fif=f"{DERIV}/{{bidsdir}}/ieeg/{{rec}}_desc-preproc_ieeg.fif",
            sidecar=f"{DERIV}/{{bidsdir}}/ieeg/{{rec}}_desc-preproc_ieeg.json",
        params:
            cfg=step_params("preprocess", config),
        log:
            f"{LOGS}/preprocess/{{bidsdir}}/{{rec}}.log",
        shell:
            "python -m barista preprocess --params {params.cfg:q} --bids-root {input.bids:q} "
            "--recording {wildcards.rec} --out {output.fif} > {log} 2>&1"

    rule localize:
        input:
            bids=PLAN.bids_input(),
            recordings=f"{RESULTS}/recordings.tsv",
        output:
            f"{RESULTS}/localization/sub-{{subject}}.parquet",
        params:
            cfg=step_params("localize", config),
            sessions=lambda wc: " ".join(sessions_of(wc.subject)),
        log:
            f"{LOGS}/localize/sub-{{subject}}.log",
        shell:
            "python -m barista localize --params {params.cfg:q} --bids-root {input.bids:q} "
            "--subject {wildcards.subject} --sessions {params.sessions} --out {output} "
            "> {log} 2>&1"


rule segment:
    input:
        bids=PLAN.bids_input(),
        fif=lambda wc: PLAN.preproc_fif(wc.rec),
        localization=lambda wc: f"{RESULTS}/localization/{wc.rec.split('_')[0]}.parquet",
        events=segment_events,
    output:
        signal=f"{RESULTS}/segments/{{rec}}/signal.parquet",
        channels=f"{RESULTS}/segments/{{rec}}/channels.parquet",
        index=f"{RESULTS}/segments/{{rec}}/index.parquet",
        splits=f"{RESULTS}/segments/{{rec}}/splits.parquet",
    params:
        cfg=step_params("segment", config),
        events=lambda wc, input: f"--events {input.events}" if input.events else "",
    log:
        f"{LOGS}/segment/{{rec}}.log",
    shell:
        "python -m barista segment --params {params.cfg:q} --bids-root {input.bids:q} "
        "--recording {wildcards.rec} --fif {input.fif} --localization {input.localization} "
        "{params.events} --out-dir $(dirname {output.signal}) > {log} 2>&1"


rule tokens:
    input:
        all_channel_tables,
    output:
        channels=f"{RESULTS}/tokens/{{scale}}/channels.parquet",
        vocab=f"{RESULTS}/tokens/{{scale}}/vocab.parquet",
    params:
        cfg=lambda wc: step_params("tokens", config, (wc.scale,)),
    log:
        f"{LOGS}/tokens/{{scale}}.log",
    shell:
        "python -m barista tokens --params {params.cfg:q} --scale {wildcards.scale} "
        "--out-dir $(dirname {output.channels}) {input} > {log} 2>&1"


rule data:
    input:
        f"{DERIV}/dataset_description.json",
        expand(f"{RESULTS}/tokens/{{scale}}/{{table}}.parquet", scale=SCALES,
               table=["channels", "vocab"]),
