# The Neuroprobe protocol (evaluation.protocols: neuroprobe): each Neuroprobe trial's samples and
# splits, taken from the neuroprobe package, cut from the preprocessed recording; every encoder
# of the PLAN and the linear floor finetuned and tested on every split type x task x tested
# trial; the leaderboard-style figure and table beside the published rows. Each job's --params:
# barista/steps.py.


rule neuroprobe_alignment:
    input:
        root=PLAN.bids_input(),
    output:
        words=f"{RESULTS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}_words_df.csv",
        nonverbal=f"{RESULTS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}_nonverbal_df.csv",
    params:
        cfg=step_params("neuroprobe-alignment", config),
    log:
        f"{LOGS}/neuroprobe/alignment/subject{{np_subject}}_trial{{np_trial}}.log",
    shell:
        "python -m barista neuroprobe-alignment --params {params.cfg:q} --btb-root {input.root:q} "
        "--subject {wildcards.np_subject} --trial {wildcards.np_trial} "
        "--out-dir $(dirname {output.words}) > {log} 2>&1"


rule neuroprobe_segment:
    input:
        root=PLAN.bids_input(),
        recordings=f"{RESULTS}/recordings.tsv",
        fif=lambda wc: PLAN.preproc_fif(wc.rec),
        localization=lambda wc: f"{RESULTS}/localization/{wc.rec.split('_')[0]}.parquet",
        alignment=lambda wc: PLAN.neuroprobe_alignment_tables(recording_table()),
    output:
        signal=f"{RESULTS}/neuroprobe/segments/{{rec}}/signal.parquet",
        channels=f"{RESULTS}/neuroprobe/segments/{{rec}}/channels.parquet",
        index=f"{RESULTS}/neuroprobe/segments/{{rec}}/index.parquet",
        splits=f"{RESULTS}/neuroprobe/segments/{{rec}}/splits.parquet",
    params:
        cfg=step_params("neuroprobe-segment", config),
        alignment=PLAN.neuroprobe_alignment_dir,
    log:
        f"{LOGS}/neuroprobe/segment/{{rec}}.log",
    shell:
        "python -m barista neuroprobe-segment --params {params.cfg:q} --btb-root {input.root:q} "
        "--alignment-dir {params.alignment:q} --recording {wildcards.rec} "
        "--recordings {input.recordings} --fif {input.fif} "
        "--localization {input.localization} --out-dir $(dirname {output.signal}) > {log} 2>&1"


# Every seed of one (encoder of NEUROPROBE_ENCODERS, task, split type, tested trial).
rule neuroprobe_finetune:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: NEUROPROBE_ENCODERS[wc.encoder]["tokens"],
        segments=lambda wc: PLAN.neuroprobe_segments(recording_table(), wc.split, wc.rec),
        model=lambda wc: NEUROPROBE_ENCODERS[wc.encoder]["checkpoint"],
    output:
        metrics=seed_files(f"{RESULTS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}", "curve.parquet"),
    wildcard_constraints:
        encoder=one_of(NEUROPROBE_ENCODERS),
    params:
        cfg=lambda wc: step_params(
            f"neuroprobe-finetune:{NEUROPROBE_ENCODERS[wc.encoder]['model']}", config,
            NEUROPROBE_ENCODERS[wc.encoder]["scales"]),
        encoder=lambda wc: NEUROPROBE_ENCODERS[wc.encoder]["args"],
        train=train_recording,
        seeds=" ".join(map(str, config["finetune"]["seeds"])),
        out_dir=lambda wc, output: os.path.dirname(os.path.dirname(output.metrics[0])),
        results=results_dir,
    log:
        f"{LOGS}/neuroprobe/finetune/{{encoder}}/{{nptask}}/{{split}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "python -m barista neuroprobe-finetune --params {params.cfg:q} --results {params.results} "
        "{params.encoder} --task {wildcards.nptask} --split-type {wildcards.split} "
        "--recording {wildcards.rec} --train-recording={params.train} "
        "--recordings {input.recordings} --seeds {params.seeds} --out-dir {params.out_dir} "
        "> {log} 2>&1"


rule neuroprobe_linear:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        segments=lambda wc: PLAN.neuroprobe_segments(recording_table(), wc.split, wc.rec),
    output:
        f"{RESULTS}/neuroprobe/finetune/linear/{{nptask}}/{{split}}/{{rec}}/metrics.parquet",
    params:
        cfg=step_params("neuroprobe-linear", config),
        train=train_recording,
        results=results_dir,
    log:
        f"{LOGS}/neuroprobe/finetune/linear/{{nptask}}/{{split}}/{{rec}}.log",
    shell:
        "python -m barista neuroprobe-linear --params {params.cfg:q} --results {params.results} "
        "--task {wildcards.nptask} --split-type {wildcards.split} --recording {wildcards.rec} "
        "--train-recording={params.train} --recordings {input.recordings} --out {output} "
        "> {log} 2>&1"
