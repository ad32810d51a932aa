# The Neuroprobe protocol (evaluation.protocols: neuroprobe): each Neuroprobe trial's samples and
# splits, taken from the neuroprobe package, cut from the preprocessed recording; every encoder
# of the DAG and the linear floor finetuned and tested on every split type x task x tested
# trial; the leaderboard-style figure and table beside the published rows.


rule neuroprobe_alignment:
    input:
        root=bids_input(),
    output:
        words=f"{RESULTS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}_words_df.csv",
        nonverbal=f"{RESULTS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}_nonverbal_df.csv",
    log:
        f"{LOGS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista neuroprobe-alignment --params '{{}}' --btb-root {input.root:q} "
        "--subject {wildcards.np_subject} --trial {wildcards.np_trial} "
        "--out-dir $(dirname {output.words}) > {log} 2>&1"


rule neuroprobe_segment:
    input:
        root=bids_input(),
        recordings=f"{RESULTS}/recordings.tsv",
        fif=lambda wc: preproc_fif(wc.rec),
        localization=lambda wc: f"{RESULTS}/localization/{wc.rec.split('_')[0]}.parquet",
        alignment=neuroprobe_alignment_tables,
    output:
        signal=f"{RESULTS}/neuroprobe/segments/{{rec}}/signal.parquet",
        channels=f"{RESULTS}/neuroprobe/segments/{{rec}}/channels.parquet",
        index=f"{RESULTS}/neuroprobe/segments/{{rec}}/index.parquet",
        splits=f"{RESULTS}/neuroprobe/segments/{{rec}}/splits.parquet",
    params:
        cfg=as_json("segments", "neuroprobe"),
        alignment=neuroprobe_alignment_dir(),
    log:
        f"{LOGS}/neuroprobe/segment/{{rec}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista neuroprobe-segment --params {params.cfg:q} --btb-root {input.root:q} "
        "--alignment-dir {params.alignment:q} --recording {wildcards.rec} "
        "--recordings {input.recordings} --fif {input.fif} "
        "--localization {input.localization} --out-dir $(dirname {output.signal}) > {log} 2>&1"


rule neuroprobe_finetune:
    input:
        unpack(neuroprobe_encoder_inputs),
    output:
        metrics=seed_files(f"{RESULTS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}", "curve.parquet"),
    wildcard_constraints:
        encoder="|".join(re.escape(e) for e in NEUROPROBE_ENCODERS) or "(?!)",
    params:
        seeds=SEED_ARGS,
        out_dir=seeds_dir,
        model=lambda wc: NEUROPROBE_ENCODERS[wc.encoder]["args"],
        pretrained=lambda wc, input: (
            f"--pretrained {input.model}" if getattr(input, "model", None) else ""
        ),
        train=lambda wc: neuroprobe_train_recording(wc.split, wc.rec),
        cfg=lambda wc: scoped_json(
            ["model", "pretrain", "rpnt", "finetune", "evaluation", "neuroprobe"],
            *NEUROPROBE_ENCODERS[wc.encoder]["scales"],
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista neuroprobe-finetune --params {params.cfg:q} --results {params.results} "
        "{params.model} {params.pretrained} --task {wildcards.nptask} "
        "--split-type {wildcards.split} --recording {wildcards.rec} "
        "--train-recording={params.train} --recordings {input.recordings} "
        "--seeds {params.seeds} --out-dir {params.out_dir} > {log} 2>&1"


rule neuroprobe_linear:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        segments=lambda wc: [
            f"{RESULTS}/neuroprobe/segments/{r}/index.parquet"
            for r in sorted({wc.rec, neuroprobe_train_recording(wc.split, wc.rec)})
            if r
        ],
    output:
        f"{RESULTS}/neuroprobe/finetune/linear/{{nptask}}/{{split}}/{{rec}}/metrics.parquet",
    params:
        cfg=as_json("neuroprobe"),
        train=lambda wc: neuroprobe_train_recording(wc.split, wc.rec),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/neuroprobe/finetune/linear/{{nptask}}/{{split}}/{{rec}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista neuroprobe-linear --params {params.cfg:q} --results {params.results} "
        "--task {wildcards.nptask} --split-type {wildcards.split} --recording {wildcards.rec} "
        "--train-recording={params.train} --recordings {input.recordings} --out {output} "
        "> {log} 2>&1"
