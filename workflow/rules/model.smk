# Model half of the DAG: pretraining per (encode, mask) scale pair and RPNT, finetuning per (model,
# task, decoded session) with one result folder per seed, the linear floor, reconstruction, tables.


rule pretrain:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: token_tables(wc.encode, wc.mask),
        segments=all_channel_tables,
    output:
        model=f"{RESULTS}/models/barista/{{encode}}-{{mask}}/model.pt",
        history=f"{RESULTS}/models/barista/{{encode}}-{{mask}}/history.parquet",
    params:
        cfg=lambda wc: scoped_json(["model", "pretrain"], wc.encode, wc.mask, keys=HELDOUT_KEYS),
        results=lambda wc, input: os.path.dirname(input.recordings),
        launch=pretrain_launcher(),
    log:
        f"{LOGS}/pretrain/{{encode}}-{{mask}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=pretrain_gpus(),
    conda:
        "../envs/barista.yaml"
    shell:
        "{params.launch} -m barista pretrain --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --encode {wildcards.encode} --mask {wildcards.mask} "
        "--out-dir $(dirname {output.model}) --no-progress > {log} 2>&1"


rule finetune_pretrained:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/barista/{{encode}}-{{mask}}/model.pt",
        segments=lambda wc: f"{RESULTS}/segments/{wc.rec}/index.parquet",
    output:
        metrics=seed_files(f"{RESULTS}/finetune/barista/{{encode}}-{{mask}}/{{task}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/finetune/barista/{{encode}}-{{mask}}/{{task}}/{{rec}}", "curve.parquet"),
        importance=seed_files(f"{RESULTS}/finetune/barista/{{encode}}-{{mask}}/{{task}}/{{rec}}", "importance.parquet"),
    params:
        seeds=SEED_ARGS,
        out_dir=seeds_dir,
        cfg=lambda wc: scoped_json(["model", "finetune", "evaluation"], wc.encode, wc.mask),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/barista/{{encode}}-{{mask}}/{{task}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model barista --encode {wildcards.encode} --mask {wildcards.mask} "
        "--pretrained {input.model} --task {wildcards.task} --recording {wildcards.rec} "
        "--recordings {input.recordings} "
        "--seeds {params.seeds} --out-dir {params.out_dir} > {log} 2>&1"


rule finetune_random_init:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        tokens=lambda wc: token_tables(wc.encode),
        segments=lambda wc: f"{RESULTS}/segments/{wc.rec}/index.parquet",
    output:
        metrics=seed_files(f"{RESULTS}/finetune/random_init/{{encode}}/{{task}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/finetune/random_init/{{encode}}/{{task}}/{{rec}}", "curve.parquet"),
        importance=seed_files(f"{RESULTS}/finetune/random_init/{{encode}}/{{task}}/{{rec}}", "importance.parquet"),
    params:
        seeds=SEED_ARGS,
        out_dir=seeds_dir,
        # the random-init model is the encoder pretraining starts from: pretrain.seed's
        cfg=lambda wc: scoped_json(
            ["model", "finetune", "evaluation"], wc.encode, keys=["pretrain.seed"]
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/random_init/{{encode}}/{{task}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model random_init --encode {wildcards.encode} --task {wildcards.task} "
        "--recording {wildcards.rec} --recordings {input.recordings} --seeds {params.seeds} "
        "--out-dir {params.out_dir} "
        "> {log} 2>&1"


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


rule finetune_release:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=lambda wc: release_checkpoint(wc.encode),
        segments=lambda wc: f"{RESULTS}/segments/{wc.rec}/index.parquet",
    output:
        metrics=seed_files(f"{RESULTS}/finetune/barista_release/{{encode}}/{{task}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/finetune/barista_release/{{encode}}/{{task}}/{{rec}}", "curve.parquet"),
        importance=seed_files(f"{RESULTS}/finetune/barista_release/{{encode}}/{{task}}/{{rec}}", "importance.parquet"),
    params:
        seeds=SEED_ARGS,
        out_dir=seeds_dir,
        # the released encoder is fixed: no pretraining or architecture option applies to it
        cfg=lambda wc: scoped_json(
            ["finetune", "evaluation"], wc.encode, keys=["model.device", "model.threads"]
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/barista_release/{{encode}}/{{task}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model barista_release --encode {wildcards.encode} --pretrained {input.model} "
        "--task {wildcards.task} --recording {wildcards.rec} --recordings {input.recordings} "
        "--seeds {params.seeds} --out-dir {params.out_dir} > {log} 2>&1"


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
        segments=lambda wc: f"{RESULTS}/segments/{wc.rec}/index.parquet",
    output:
        metrics=seed_files(f"{RESULTS}/finetune/rpnt/{{task}}/{{rec}}", "metrics.parquet"),
        curve=seed_files(f"{RESULTS}/finetune/rpnt/{{task}}/{{rec}}", "curve.parquet"),
        importance=seed_files(f"{RESULTS}/finetune/rpnt/{{task}}/{{rec}}", "importance.parquet"),
    params:
        seeds=SEED_ARGS,
        out_dir=seeds_dir,
        cfg=scoped_json(["model", "pretrain", "rpnt", "finetune", "evaluation"], config["rpnt"]["encode_scale"]),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/rpnt/{{task}}/{{rec}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista finetune --params {params.cfg:q} --results {params.results} "
        "--model rpnt --pretrained {input.model} --task {wildcards.task} "
        "--recording {wildcards.rec} --recordings {input.recordings} --seeds {params.seeds} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule linear_baseline:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        segments=lambda wc: f"{RESULTS}/segments/{wc.rec}/index.parquet",
    output:
        f"{RESULTS}/finetune/linear/{{task}}/{{rec}}/metrics.parquet",
    params:
        cfg=as_json("evaluation"),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/finetune/linear/{{task}}/{{rec}}.log",
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista linear --params {params.cfg:q} --results {params.results} "
        "--task {wildcards.task} --recording {wildcards.rec} --recordings {input.recordings} "
        "--out {output} > {log} 2>&1"


rule reconstruct:
    input:
        recordings=f"{RESULTS}/recordings.tsv",
        model=f"{RESULTS}/models/barista/{{encode}}-{{mask}}/model.pt",
    output:
        f"{RESULTS}/reconstruct/{{encode}}-{{mask}}/channels.parquet",
    params:
        cfg=lambda wc: scoped_json(
            ["model", "pretrain", "reconstruct"], wc.encode, wc.mask, keys=HELDOUT_KEYS
        ),
        results=lambda wc, input: os.path.dirname(input.recordings),
    log:
        f"{LOGS}/reconstruct/{{encode}}-{{mask}}.log",
    threads: config["model"]["threads"]
    resources:
        gpu=GPU_PER_JOB,
    conda:
        "../envs/barista.yaml"
    shell:
        "python -m barista reconstruct --params {params.cfg:q} --results {params.results} "
        "--recordings {input.recordings} --model-path {input.model} --encode {wildcards.encode} "
        "--mask {wildcards.mask} --out {output} > {log} 2>&1"


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
