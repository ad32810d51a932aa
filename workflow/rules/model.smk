# Model half of the DAG: pretraining per (variant, encode-mask pair, pretraining seed) and RPNT;
# finetuning and probing one job per encoder (all tasks, decoded sessions and seeds); the linear
# floor; reconstruction; the result tables.


rule pretrain:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: token_tables(wc.encode, wc.mask),
        segments=all_channel_tables,
    output:
        model=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/model.pt",
        history=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/history.parquet",
    params:
        cfg=lambda wc: scoped_json(["model", "pretrain"], wc.encode, wc.mask, keys=HELDOUT_KEYS),
        results=lambda wc, input: os.path.dirname(input.recordings),
        launch=pretrain_launcher(),
    log:
        f"{LOGS}/pretrain/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=pretrain_gpus(),
    conda:
        "../envs/barista.yaml"
    shell:
        "{params.launch} -m barista pretrain --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --variant {wildcards.variant:q} "
        "--encode {wildcards.encode} --mask {wildcards.mask} --seed {wildcards.pseed} "
        "--out-dir $(dirname {output.model}) --no-progress > {log} 2>&1"


# One finetuning job per encoder: every task, decoded recording and finetuning seed in one
# process (an interpreter start with torch costs as much as a demo finetuning run).
rule finetune_pretrained:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/model.pt",
        segments=decoded_segments,
    output:
        metrics=f"{RESULTS}/finetune/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/metrics.parquet",
        curve=f"{RESULTS}/finetune/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/curve.parquet",
        importance=f"{RESULTS}/finetune/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/importance.parquet",
    params:
        cfg=lambda wc: scoped_json(["model", "finetune", "evaluation"], wc.encode, wc.mask),
        results=lambda wc, input: os.path.dirname(input.recordings),
        probe_only=probe_only,
    log:
        f"{LOGS}/finetune/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model barista --encode {wildcards.encode} --mask {wildcards.mask} "
        "--pretrained {input.model} --recordings {input.recordings} {params.probe_only} "
        "--out-dir $(dirname {output.metrics}) > {log} 2>&1"


rule finetune_random_init:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: token_tables(wc.encode),
        segments=decoded_segments,
    output:
        metrics=f"{RESULTS}/finetune/random_init/{{variant}}/{{encode}}/seed{{pseed}}/metrics.parquet",
        curve=f"{RESULTS}/finetune/random_init/{{variant}}/{{encode}}/seed{{pseed}}/curve.parquet",
        importance=f"{RESULTS}/finetune/random_init/{{variant}}/{{encode}}/seed{{pseed}}/importance.parquet",
    params:
        # the random-init model is the encoder the variant's pretraining run of this seed
        # starts from
        cfg=lambda wc: scoped_json(["model", "finetune", "evaluation"], wc.encode),
        results=lambda wc, input: os.path.dirname(input.recordings),
        probe_only=probe_only,
    log:
        f"{LOGS}/finetune/random_init/{{variant}}/{{encode}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model random_init --variant {wildcards.variant:q} --encode {wildcards.encode} "
        "--pretrain-seed {wildcards.pseed} --recordings {input.recordings} "
        "{params.probe_only} --out-dir $(dirname {output.metrics}) > {log} 2>&1"


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
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista release download {wildcards.release} --url {params.url:q} "
        "--dest $(dirname {output}) > {log} 2>&1"


# the authors' released encoder of one encode scale, one job like the others (every task,
# decoded recording and seed); its own spatial ids are read per recording from our localization
rule finetune_release:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=lambda wc: release_checkpoint(wc.encode),
        segments=decoded_segments,
    output:
        metrics=f"{RESULTS}/finetune/barista_release/{{encode}}/metrics.parquet",
        curve=f"{RESULTS}/finetune/barista_release/{{encode}}/curve.parquet",
        importance=f"{RESULTS}/finetune/barista_release/{{encode}}/importance.parquet",
    params:
        # the released encoder is fixed: no pretraining or architecture option applies to it
        cfg=lambda wc: scoped_json(
            ["finetune", "evaluation"], wc.encode, keys=["model.device", "model.threads"]
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/barista_release/{{encode}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model barista_release --encode {wildcards.encode} --pretrained {input.model} "
        "--recordings {input.recordings} --out-dir $(dirname {output.metrics}) > {log} 2>&1"


rule pretrain_rpnt:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=token_tables(config["rpnt"]["encode_scale"]),
        segments=all_channel_tables,
    output:
        model=f"{RESULTS}/models/rpnt/model.pt",
        history=f"{RESULTS}/models/rpnt/history.parquet",
    params:
        cfg=scoped_json(
            ["model", "pretrain", "rpnt"], config["rpnt"]["encode_scale"], keys=HELDOUT_KEYS
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
        launch=pretrain_launcher(),
    log:
        f"{LOGS}/pretrain/rpnt.log",
    threads: config["model"]["threads"]
    resources:
        gpu=pretrain_gpus(),
    conda:
        "../envs/barista.yaml"
    shell:
        "{params.launch} -m barista pretrain --architecture rpnt --params {params.cfg:q} "
        "--results {params.results} --recordings {input.recordings} "
        "--out-dir $(dirname {output.model}) --no-progress > {log} 2>&1"


rule finetune_rpnt:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/rpnt/model.pt",
        segments=decoded_segments,
    output:
        metrics=f"{RESULTS}/finetune/rpnt/metrics.parquet",
        curve=f"{RESULTS}/finetune/rpnt/curve.parquet",
        importance=f"{RESULTS}/finetune/rpnt/importance.parquet",
    params:
        cfg=scoped_json(["model", "pretrain", "rpnt", "finetune", "evaluation"], config["rpnt"]["encode_scale"]),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/rpnt.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model rpnt --pretrained {input.model} --recordings {input.recordings} "
        "--out-dir $(dirname {output.metrics}) > {log} 2>&1"


rule linear_baseline:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        segments=decoded_segments,
    output:
        f"{RESULTS}/finetune/linear/metrics.parquet",
    params:
        cfg=as_json("evaluation"),
        tasks=" ".join(config["finetune"]["tasks"]),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/linear.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista linear --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --task {params.tasks} --out {output} > {log} 2>&1"


rule reconstruct:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/barista/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/model.pt",
    output:
        f"{RESULTS}/reconstruct/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}/channels.parquet",
    params:
        cfg=lambda wc: scoped_json(
            ["model", "pretrain", "reconstruct"], wc.encode, wc.mask, keys=HELDOUT_KEYS
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/reconstruct/{{variant}}/{{encode}}-{{mask}}/seed{{pseed}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista reconstruct --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --model-path {input.model} --encode {wildcards.encode} "
        "--mask {wildcards.mask} --seed {wildcards.pseed} --out {output} > {log} 2>&1"


rule decoding_table:
    input:
        decoding_results,
    output:
        f"{RESULTS}/decoding.parquet",
    log:
        f"{LOGS}/decoding_table.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista collect --params '{{}}' --out {output} {input} > {log} 2>&1"


rule reconstruction_table:
    input:
        reconstruction_results,
    output:
        f"{RESULTS}/reconstruction.parquet",
    log:
        f"{LOGS}/reconstruction_table.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista collect --params '{{}}' --out {output} {input} > {log} 2>&1"


rule models:
    input:
        rules.decoding_table.output,
        (
            rules.reconstruction_table.output
            if config["reconstruct"]["enabled"] and "barista" in ARCHITECTURES
            else []
        ),
