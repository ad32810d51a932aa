# Model half of the PLAN: pretraining per (variant, encode-mask pair, pretraining seed) and RPNT;
# finetuning and probing one job per encoder (all tasks, decoded sessions and seeds); the linear
# floor; reconstruction; the result tables. Each job's --params: barista/steps.py.


rule pretrain:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: PLAN.token_tables(wc.encode, wc.mask),
        segments=all_channel_tables,
    output:
        model=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/model.pt",
        history=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/history.parquet",
    params:
        cfg=lambda wc: step_params("pretrain:barista", config, (wc.encode, wc.mask)),
        results=results_dir,
        launch=LAUNCH,
    log:
        f"{LOGS}/pretrain/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB * PROCESSES,
    shell:
        "{params.launch} -m barista pretrain --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --variant {wildcards.variant:q} "
        "--encode {wildcards.encode} --mask {wildcards.mask} --seed {wildcards.pseed} "
        "--out-dir $(dirname {output.model}) --no-progress > {log} 2>&1"


rule pretrain_rpnt:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=PLAN.token_tables(config["rpnt"]["encode_scale"]),
        segments=all_channel_tables,
    output:
        model=f"{RESULTS}/models/rpnt/model.pt",
        history=f"{RESULTS}/models/rpnt/history.parquet",
    params:
        cfg=step_params("pretrain:rpnt", config, (config["rpnt"]["encode_scale"],)),
        results=results_dir,
        launch=LAUNCH,
    log:
        f"{LOGS}/pretrain/rpnt.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB * PROCESSES,
    shell:
        "{params.launch} -m barista pretrain --architecture rpnt --params {params.cfg:q} "
        "--results {params.results} --recordings {input.recordings} "
        "--out-dir $(dirname {output.model}) --no-progress > {log} 2>&1"


# One finetuning job per encoder of ENCODERS (common.smk): every task, decoded recording and
# finetuning seed in one process (an interpreter start with torch costs as much as a demo
# finetuning run).
rule finetune:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: ENCODERS[wc.encoder]["tokens"],
        segments=lambda wc: PLAN.decoded_segments(recording_table()),
        model=lambda wc: ENCODERS[wc.encoder]["checkpoint"],
    output:
        metrics=f"{RESULTS}/finetune/{{encoder}}/metrics.parquet",
        curve=f"{RESULTS}/finetune/{{encoder}}/curve.parquet",
        importance=f"{RESULTS}/finetune/{{encoder}}/importance.parquet",
    wildcard_constraints:
        encoder=one_of(ENCODERS),
    params:
        cfg=lambda wc: step_params(f"finetune:{ENCODERS[wc.encoder]['model']}", config,
                                   ENCODERS[wc.encoder]["scales"]),
        encoder=lambda wc: ENCODERS[wc.encoder]["args"],
        results=results_dir,
    log:
        f"{LOGS}/finetune/{{encoder}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "{params.encoder} --recordings {input.recordings} "
        "--out-dir $(dirname {output.metrics}) > {log} 2>&1"


rule download_release:
    output:
        "resources/release/{release}.ckpt",
    wildcard_constraints:
        release="|".join(RELEASES),
    params:
        # config release.url names each file with {name}; empty: the release's own URL
        url=lambda wc: (config["release"]["url"] or "").replace("{name}", wc.release),
    log:
        "resources/logs/release_{release}.log",
    shell:
        "python -m barista release download {wildcards.release} --url {params.url:q} "
        "--dest $(dirname {output}) > {log} 2>&1"


rule linear_baseline:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        segments=lambda wc: PLAN.decoded_segments(recording_table()),
    output:
        f"{RESULTS}/finetune/linear/metrics.parquet",
    params:
        cfg=step_params("linear", config),
        results=results_dir,
    log:
        f"{LOGS}/finetune/linear.log",
    shell:
        "python -m barista linear --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --out {output} > {log} 2>&1"


rule reconstruct:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/model.pt",
    output:
        f"{RESULTS}/reconstruct/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/channels.parquet",
    params:
        cfg=lambda wc: step_params("reconstruct", config, (wc.encode, wc.mask)),
        results=results_dir,
    log:
        f"{LOGS}/reconstruct/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "python -m barista reconstruct --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --model-path {input.model} --encode {wildcards.encode} "
        "--mask {wildcards.mask} --seed {wildcards.pseed} --out {output} > {log} 2>&1"


rule decoding_table:
    input:
        decoding_results,
    output:
        f"{RESULTS}/decoding.parquet",
    params:
        cfg=step_params("collect", config),
    log:
        f"{LOGS}/decoding_table.log",
    shell:
        "python -m barista collect --params {params.cfg:q} --out {output} {input} > {log} 2>&1"


use rule decoding_table as reconstruction_table with:
    input:
        lambda wc: PLAN.reconstruction_results(recording_table()),
    output:
        f"{RESULTS}/reconstruction.parquet",
    log:
        f"{LOGS}/reconstruction_table.log",


rule models:
    input:
        rules.decoding_table.output,
        (
            rules.reconstruction_table.output
            if config["reconstruct"]["enabled"] and "barista" in ARCHITECTURES
            else []
        ),
