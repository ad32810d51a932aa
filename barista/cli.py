"""Command line interface: one sub-command per workflow step.

Each workflow step takes exactly the config it declares in :mod:`barista.steps` as JSON
(``--params``), so Snakemake passes the values it tracks for re-runs and the result rows hash
them; ``--config FILE`` takes the same values from a YAML config instead, for use by hand.
Bad input ends with one clear ``barista: error: ...`` line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import BaristaError

log = logging.getLogger("barista")


def step_of(args) -> str:
    """The workflow step (barista/steps.py) a parsed command line runs."""
    if args.command == "pretrain":
        return f"pretrain:{args.architecture}"
    if args.command in ("finetune", "neuroprobe-finetune"):
        return f"{args.command}:{args.model}"
    return args.command


def job_scales(args, config: dict) -> tuple[str, ...]:
    """The scales whose token tables (and options) a job reads."""
    if "rpnt" in (getattr(args, "model", None), getattr(args, "architecture", None)):
        return (config["rpnt"]["encode_scale"],)
    return tuple(x for x in (getattr(args, a, None) for a in ("scale", "encode", "mask")) if x)


def _params(args) -> dict:
    """The step's config: the ``--params`` JSON, which must hold exactly the step's declared
    closure, or that closure taken from ``--config``. Reading any other key is an error; its
    ``digest`` is the result rows' ``config_hash`` (barista/steps.py)."""
    from .config import load_config, validate_config
    from .steps import check_params, scoped_config, step_config

    if getattr(args, "_cfg", None) is None:
        step = step_of(args)
        if args.params:
            try:
                given = json.loads(args.params)
            except json.JSONDecodeError as err:
                raise BaristaError(f"--params is not valid JSON: {err}") from err
            validate_config(given, partial=True)  # a value of the wrong type, by its key
            check_params(step, given)
        else:
            full = load_config(args.config)
            given = step_config(step, full, job_scales(args, full))
        args._cfg = scoped_config(step, given)
    return args._cfg


def _bids_root(value: str) -> Path:
    """``--bids-root`` accepts the root folder or its dataset_description.json."""
    path = Path(value)
    return path.parent if path.name == "dataset_description.json" else path


def cmd_simulate(args) -> dict:
    from .simulate import simulate_dataset

    sim = _params(args)["dataset"]["simulate"]
    simulate_dataset(args.out, overwrite=True, **sim)
    return {"bids_root": args.out, **sim}


def cmd_download(args) -> dict:
    from .download import download_dataset

    on = _params(args)["dataset"]["openneuro"]
    root = download_dataset(on["id"], args.out, version=on["version"], include=on["include"],
                            exclude=on["exclude"], subjects=on["subjects"],
                            base_url=on["base_url"], graphql_url=on["graphql_url"])
    return {"bids_root": str(root)}


def _bt_root(value: str) -> Path:
    """``--root`` of a Brain Treebank step: the release folder, its ``corrupted_elec.json``
    (what the workflow tracks for a copy read in place) or the download's completion file."""
    path = Path(value)
    if path.name == "corrupted_elec.json":
        return path.parent
    if path.name == "braintreebank.json" and path.parent.name == ".barista":
        return path.parent.parent
    return path


def cmd_braintreebank_download(args) -> dict:
    from .braintreebank_download import download_release

    bt = _params(args)["dataset"]["braintreebank"]
    root = download_release(args.out, subjects=bt["subjects"], sessions=bt["sessions"],
                            base_url=bt["base_url"], keep_zips=bt["keep_zips"],
                            progress=not args.no_progress)
    return {"root": str(root)}


def cmd_braintreebank_recordings(args) -> dict:
    from .braintreebank import Layout, recordings_table

    cfg = _params(args)
    bt = cfg["dataset"]["braintreebank"]
    table = recordings_table(Layout(args.root), bt["subjects"], bt["sessions"],
                             cfg["evaluation"]["sessions"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False)
    return {"n_recordings": len(table)}


def cmd_braintreebank_preprocess(args) -> dict:
    from .braintreebank import subject_trial
    from .braintreebank_preprocess import preprocess_trial

    cfg = _params(args)
    subject, trial = subject_trial(args.recording)
    record = preprocess_trial(args.root, subject, trial, args.out, cfg["preprocess"])
    summary = {k: record[k] for k in ("SamplingFrequency", "NotchFrequencies",
                                      "BadChannelsDropped", "TriggerChannelsDropped",
                                      "ChannelsWithoutReference")}
    # the log's record of the memory a trial took (the sidecar stays the same from run to run)
    return {**summary, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float | None:
    """This process's peak RSS (Linux ``VmHWM``; ``ru_maxrss`` would include the peak of the
    process that started it, since Linux keeps it across ``execve``); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cmd_braintreebank_localize(args) -> dict:
    from .braintreebank import Layout, localize_subject

    table = localize_subject(Layout(args.root), int(args.subject), args.sessions)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return {"n_contacts": len(table), "by_kind": table["kind"].value_counts().to_dict(),
            "dropped": table.loc[~table["keep"], "channel"].unique().tolist(),
            "without_localization": table.loc[table["label_source"] == "none",
                                              "channel"].unique().tolist()}


def cmd_braintreebank_words(args) -> dict:
    from .braintreebank import Layout, subject_trial, word_events

    cfg = _params(args)
    subject, trial = subject_trial(args.recording)
    words = word_events(Layout(args.root), subject, trial,
                        need_sentences="sentence_onset" in cfg["segments"]["tasks"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    words.to_csv(out, sep="\t", index=False, na_rep="n/a")
    return {"n_words": len(words), "n_sentence_onsets": int(words["sentence_onset"].sum())}


def cmd_braintreebank_fixture(args) -> dict:
    from .braintreebank_fixture import make_fixture

    root = make_fixture(args.out_dir, sessions=tuple(args.sessions), duration_s=args.duration_s,
                        max_shafts=args.max_shafts, seed=args.seed, overwrite=args.overwrite)
    return {"root": str(root), "sessions": args.sessions}


def cmd_recordings(args) -> dict:
    import pandas as pd
    from mne_bids import get_entities_from_fname

    from .bids import list_recordings

    cfg = _params(args)
    recs = list_recordings(args.bids_root, task=cfg["dataset"]["task"])
    rows = [{"recording": r, **{k: get_entities_from_fname(r)[k] or ""
                                for k in ("subject", "session", "task", "run")}} for r in recs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, sep="\t", index=False)
    return {"n_recordings": len(rows)}


def cmd_preprocess(args) -> dict:
    from .bids import bids_path_of
    from .preprocess import preprocess_recording

    cfg = _params(args)
    record = preprocess_recording(bids_path_of(args.bids_root, args.recording), args.out,
                                  cfg["preprocess"])
    return {k: record[k] for k in ("SamplingFrequency", "NotchFrequencies",
                                   "BadChannelsDropped", "NonFiniteChannelsDropped",
                                   "ChannelsWithoutReference")}


def cmd_derivative(args) -> dict:
    from .preprocess import write_dataset_description

    return {"path": str(write_dataset_description(args.out, args.bids_root))}


def cmd_localize(args) -> dict:
    from .config import active_scales
    from .localize import localize_subject

    cfg = _params(args)
    table = localize_subject(
        args.bids_root, args.subject, args.sessions or [None], space=cfg["dataset"]["space"],
        need_atlas=bool({"parcel", "lobe"} & set(active_scales(cfg))),
        white_matter_radius_mm=cfg["atlas"]["white_matter_radius_mm"],
        label_column=cfg["atlas"]["label_column"],
        dk_label_column=cfg["atlas"]["dk_label_column"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return {"n_contacts": len(table), "by_kind": table["kind"].value_counts().to_dict()}


def cmd_segment(args) -> dict:
    import pandas as pd

    from .bids import bids_path_of, sidecar
    from .segments import segment_recording

    cfg = _params(args)
    events = None
    if cfg["segments"]["tasks"]:
        events = Path(args.events) if args.events else sidecar(
            bids_path_of(args.bids_root, args.recording), "events", ".tsv")
    return segment_recording(args.fif, events, pd.read_parquet(args.localization),
                             args.recording, args.out_dir, cfg["segments"], cfg["splits"])


def cmd_tokens(args) -> dict:
    from .segments import window_geometry
    from .tokens import write_tokens

    cfg = _params(args)
    if args.scale not in cfg["scales"]:
        raise BaristaError(f"scale '{args.scale}' is not in config key 'scales'")
    # the first step that sees every recording: stop here, not at the models, when the
    # recordings' windows differ in shape (each signal.parquet lies beside its channels table)
    window_geometry([Path(f).with_name("signal.parquet") for f in args.channels])
    return write_tokens(args.channels, args.scale, cfg["scales"][args.scale], args.out_dir)


def _threads(cfg: dict) -> None:
    import torch

    torch.set_num_threads(cfg["model"]["threads"])


def _entities(recording: str) -> dict:
    """subject, session, recording of a BIDS basename (without importing mne-bids: ~1 s)."""
    ents = dict(part.split("-", 1) for part in recording.split("_") if "-" in part)
    return {"subject": ents["sub"], "session": ents.get("ses", ""), "recording": recording}


def _setting(table, cfg: dict, recording: str) -> str:
    """Generalisation setting of a decoded recording (the result column ``setting``)."""
    from .evaluation import setting_of

    return setting_of(table, cfg["evaluation"], recording)


def cmd_pretrain(args) -> dict:
    """Single process, or one rank of ``torchrun`` (``WORLD_SIZE`` > 1: DDP, see
    ``barista.training.pretrain``); ``model.threads`` is shared by a node's processes."""
    import os

    import torch

    from .evaluation import pretraining, read_recordings, validation
    from .training.pretrain import PretrainConfig, pretrain

    cfg = _params(args)
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(cfg["model"]["threads"] // local_procs, 1))
    table = read_recordings(args.recordings)
    recs = pretraining(table, cfg["evaluation"])
    val_recs = validation(table, cfg["evaluation"]) or None
    # the launcher's process count is not a training option
    options = {k: v for k, v in cfg["pretrain"].items() if k != "processes"}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.architecture == "rpnt":
        from .training.rpnt_pretrain import RPNT

        rp = cfg["rpnt"]
        options.update({k: rp[k] for k in ("lr", "weight_decay", "warmup_epochs", "grad_clip")})
        overrides = {**rp["overrides"], "causal": rp["causal"], "contrast_by": rp["contrast_by"],
                     "contrastive_weight": rp["contrastive_weight"],
                     "temperature": rp["temperature"],
                     "mask_ratio_range": tuple(rp["mask_ratio_range"])}
        encode, mask, objective = rp["encode_scale"], None, RPNT
    else:
        from .training.pretrain import BARISTA
        from .variants import variant_options

        if not (args.encode and args.mask):
            raise BaristaError("pretrain --architecture barista needs --encode and --mask")
        from .config import barista_overrides

        overrides = {**barista_overrides(cfg["model"]), **variant_options(args.variant)}
        encode, mask, objective = args.encode, args.mask, BARISTA
    train_cfg = PretrainConfig(**options, device=cfg["model"]["device"])
    return pretrain(args.results, args.out_dir, encode_scale=encode, mask_scale=mask,
                    recordings=recs, size=cfg["model"]["size"], model_overrides=overrides,
                    cfg=train_cfg, progress=not args.no_progress, stop_after=args.stop_after,
                    objective=objective, val_recordings=val_recs)


def _encoder(args, cfg: dict, recordings: list[str], segments: str = "segments"):
    """The encoder a finetuning job starts from, its variant and its pretraining seed (a
    random init is built for the geometry of the windows of ``recordings``)."""
    from .config import barista_overrides
    from .evaluation import NONE
    from .training.pretrain import initial_encoder, load_pretrained, model_config
    from .variants import variant_name, variant_options

    if args.model == "barista":
        encoder, state = load_pretrained(args.pretrained)
        return encoder, variant_name(state["config"]), state.get("seed", cfg["pretrain"]["seed"])
    if args.model == "rpnt":
        from .training.rpnt_pretrain import load_rpnt_encoder

        encoder, state = load_rpnt_encoder(args.pretrained)
        return encoder, NONE, state.get("seed", cfg["pretrain"]["seed"])
    # random init: the very encoder the pretraining run of this variant and seed starts from,
    # so the comparison isolates pretraining
    if args.pretrain_seed is None:
        raise BaristaError("--model random_init needs --pretrain-seed: the pretraining run "
                           "whose starting encoder it is")
    seed = args.pretrain_seed
    overrides = {**barista_overrides(cfg["model"]), **variant_options(args.variant)}
    config = model_config(Path(args.results), args.encode, cfg["model"]["size"], overrides,
                          recordings, segments)
    return initial_encoder(config, seed), args.variant, seed


def cmd_finetune(args) -> dict:
    """One encoder on every task and decoded recording (``finetune.tasks`` and those of
    ``evaluation.settings``, unless ``--task`` / ``--recording`` name some) for every seed, in
    one process: an interpreter start with torch costs about as much as a demo finetuning run,
    so one job per encoder, not per run. Writes ``metrics``, ``curve`` and ``importance``
    (``.parquet``) under ``--out-dir``, every row keyed by model, variant, pretraining seed,
    task, recording and seed. ``--probe-only`` scores the frozen probe alone."""
    import copy

    import pandas as pd

    from .evaluation import NONE, decoded, read_recordings, rows

    cfg = _params(args)
    _threads(cfg)
    table = read_recordings(args.recordings)
    tasks = args.task or cfg["finetune"]["tasks"]
    recordings = args.recording or decoded(table, cfg["evaluation"])["recording"].tolist()
    seeds = args.seeds or cfg["finetune"]["seeds"]
    mask = args.mask or NONE
    if args.model == "barista_release":
        mask = "channel"  # every released encoder was pretrained with channel-scale masking
        encoder, variant, pretrain_seed = None, NONE, 0
    else:
        encoder, variant, pretrain_seed = _encoder(args, cfg, recordings)
    digest = cfg.digest
    metrics, curves, weights, summary = [], [], [], {}
    for rec in recordings:
        spatial_ids = None  # the encode scale's token ids, unless the encoder has its own
        if args.model == "barista_release":
            encoder, spatial_ids = _release_encoder(args, rec)
        for task in tasks:
            keys = {"model": args.model, "variant": variant, "encode_scale": args.encode or NONE,
                    "mask_scale": mask, "task": task,
                    "setting": _setting(table, cfg, rec), "pretrain_seed": pretrain_seed,
                    **_entities(rec)}
            # the encoder is the same for every seed: its frozen probe is scored once
            scores = _probe(args, cfg, encoder, rec, task, spatial_ids)
            if scores:
                metrics.append(rows(scores, **keys, seed=seeds[0], config_hash=digest))
            if args.probe_only:
                continue
            for seed in seeds:
                out = _finetune_run(args, cfg, copy.deepcopy(encoder), rec, task, seed,
                                    spatial_ids)
                metrics.append(rows(out["metrics"], **keys, seed=seed, config_hash=digest))
                curves.append(out["curve"].assign(**keys, seed=seed))
                weights.append(out["importance"].assign(**keys, seed=seed))
                summary[f"{task}/{rec}/seed{seed}"] = out["metrics"]["auroc"]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frames in (("metrics", metrics), ("curve", curves), ("importance", weights)):
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    return summary


def _probe(args, cfg: dict, encoder, recording: str, task: str, spatial_ids=None) -> dict:
    if not cfg["evaluation"]["probe"]:
        return {}
    from .training.common import pick_device
    from .training.probe import probe_auroc

    return probe_auroc(encoder, args.results, recording, task,
                       device=pick_device(cfg["model"]["device"]), spatial_ids=spatial_ids)


def _finetune_config(cfg: dict, seed: int):
    from .training.finetune import FinetuneConfig

    # which tasks and seeds are the job's, not training options (the keys that only say which
    # jobs exist are never in a step's config: barista.steps.SWITCHES)
    ft = {k: v for k, v in cfg["finetune"].items() if k not in ("tasks", "seeds")}
    return FinetuneConfig(**ft, seed=seed, device=cfg["model"]["device"],
                          cv_val_fraction=cfg["evaluation"]["cv_val_fraction"])


def _finetune_run(args, cfg: dict, encoder, recording: str, task: str, seed: int,
                  spatial_ids=None) -> dict:
    from .training.finetune import finetune

    return finetune(args.results, encoder, recording=recording, task=task, mask_scale=None,
                    window_split=cfg["evaluation"]["window_split"],
                    cfg=_finetune_config(cfg, seed), spatial_ids=spatial_ids)


def _released_checkpoint(args, meta: dict):
    """The released encoder ``--pretrained`` names, checked to be the ``--encode`` scale's, at
    the windows' patch geometry (``meta`` of their signal file)."""
    from .release import RELEASES, load_release

    name = Path(args.pretrained).stem
    if name not in RELEASES or RELEASES[name][1] != args.encode:
        raise BaristaError(f"--pretrained {args.pretrained} is not the released "
                           f"{args.encode}-scale encoder (one of {sorted(RELEASES)})")
    encoder, _ = load_release(Path(args.pretrained), name=name,
                              patch_samples=meta["patch_samples"], n_patches=meta["n_patches"])
    return encoder


def _release_encoder(args, recording: str) -> tuple:
    """The released encoder of ``--pretrained`` and the recording's channels in its
    vocabulary (both logged), after checking that the segments have the release's geometry."""
    from .config import release_geometry_mismatch
    from .data import SignalFile
    from .release_ids import log_release_ids, recording_release_ids

    meta = SignalFile(Path(args.results) / "segments" / recording / "signal.parquet").meta
    length = meta["n_patches"] * meta["patch_samples"] / meta["sfreq"]
    problem = release_geometry_mismatch(float(meta["sfreq"]), length, int(meta["n_patches"]))
    if problem:
        raise BaristaError(f"{recording}: {problem}")
    encoder = _released_checkpoint(args, meta)
    found = recording_release_ids(args.results, recording, args.encode)
    log_release_ids(found)
    return encoder, {recording: found.ids}


def cmd_linear(args) -> dict:
    """The linear floor on every task and decoded recording (or those named), one table."""
    import pandas as pd

    from .evaluation import NONE, decoded, read_recordings, rows
    from .training.baselines import linear_baseline

    cfg = _params(args)
    table = read_recordings(args.recordings)
    tasks = args.task or cfg["finetune"]["tasks"]
    recordings = args.recording or decoded(table, cfg["evaluation"])["recording"].tolist()
    frames, summary = [], {}
    for task in tasks:
        for rec in recordings:
            metrics = linear_baseline(args.results, recording=rec, task=task, seed=0,
                                      window_split=cfg["evaluation"]["window_split"],
                                      cv_val_fraction=cfg["evaluation"]["cv_val_fraction"])
            frames.append(rows(metrics, model="linear", variant=NONE, encode_scale=NONE,
                               mask_scale=NONE, task=task, pretrain_seed=0, seed=0,
                               setting=_setting(table, cfg, rec), **_entities(rec),
                               config_hash=cfg.digest))
            summary[f"{task}/{rec}"] = metrics["auroc"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(args.out, index=False)
    return summary


def cmd_reconstruct(args) -> dict:
    import pandas as pd

    from .evaluation import heldout, pretraining, read_recordings
    from .training.reconstruct import evaluate_channels, train_head

    cfg = _params(args)
    _threads(cfg)
    rc = cfg["reconstruct"]
    recs = read_recordings(args.recordings)
    held = heldout(recs, cfg["evaluation"])
    pre = pretraining(recs, cfg["evaluation"])
    head, fit = train_head(args.model_path, args.results, recordings=pre, epochs=rc["epochs"],
                           batch_size=rc["batch_size"], ridge=rc["ridge"],
                           seed=cfg["pretrain"]["seed"] if args.seed is None else args.seed,
                           mask_ratio=cfg["pretrain"]["mask_ratio"],
                           device=cfg["model"]["device"])
    frames = []
    for rec, setting in zip(held["recording"], held["setting"], strict=True):
        per_channel = evaluate_channels(args.model_path, head, args.results, recording=rec,
                                        max_windows=rc["max_windows"],
                                        batch_size=rc["batch_size"],
                                        device=cfg["model"]["device"])
        long = per_channel.melt(id_vars="channel", var_name="metric", value_name="value")
        frames.append(long.assign(setting=setting, **_entities(rec)))
    from .training.pretrain import load_pretrained
    from .variants import variant_name

    _, state = load_pretrained(args.model_path)
    pretrain_seed = state.get("seed", cfg["pretrain"]["seed"])
    table = pd.concat(frames, ignore_index=True).assign(
        model="barista", variant=variant_name(state["config"]), encode_scale=args.encode,
        mask_scale=args.mask, pretrain_seed=pretrain_seed, seed=pretrain_seed,
        config_hash=cfg.digest)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    means = table.groupby("metric")["value"].mean().to_dict()
    return {**fit, **means}


def cmd_collect(args) -> dict:
    from .evaluation import collect

    table = collect(args.files, args.out)
    return {"rows": len(table)}


def _recording_row(path, recording: str) -> dict:
    from .evaluation import read_recordings

    table = read_recordings(path)
    match = table[table["recording"] == recording]
    if match.empty:
        raise BaristaError(f"recording {recording!r} is not in {path}")
    return match.iloc[0].to_dict()


def cmd_neuroprobe_alignment(args) -> dict:
    from .neuroprobe import write_derived_alignment

    return write_derived_alignment(args.btb_root, args.subject, args.trial, args.out_dir)


def cmd_neuroprobe_segment(args) -> dict:
    import pandas as pd

    from .evaluation import read_recordings
    from .neuroprobe import evaluated, subject_trial
    from .neuroprobe_protocol import segment_trial

    cfg = _params(args)
    np_cfg = cfg["neuroprobe"]
    row = _recording_row(args.recordings, args.recording)
    subject, trial = subject_trial(row["subject"], row["session"])
    recs = read_recordings(args.recordings)
    present = [subject_trial(s, t) for s, t in zip(recs["subject"], recs["session"],
                                                   strict=True)]
    # the split types that test this trial: those whose training trial the dataset holds
    split_types = [split for split in np_cfg["split_types"]
                   if (subject, trial) in evaluated(present, split, np_cfg["lite"])]
    seg = cfg["segments"]
    return segment_trial(args.fif, pd.read_parquet(args.localization), args.btb_root,
                         recording=args.recording, subject=subject, trial=trial,
                         out_dir=args.out_dir, cfg={**np_cfg, "split_types": split_types},
                         patch_samples_s=seg["length_s"] / seg["n_patches"],
                         alignment_dir=args.alignment_dir or None)


def _pretrained_on_benchmark(args, cfg: dict) -> int:
    """Neuroprobe subject-trials among the recordings the encoder pretrained on or validated
    its pretraining on (the benchmark forbids both); none for a random-init encoder or the
    linear floor."""
    from .evaluation import pretraining, read_recordings, validation
    from .neuroprobe import subject_trial, subject_trials

    benchmark = set(subject_trials(cfg["neuroprobe"]["lite"]))
    if args.model == "barista_release":
        from .leaderboard import RELEASE_PRETRAINING_SESSIONS

        return sum(tuple(map(int, key.split("_"))) in benchmark
                   for key in RELEASE_PRETRAINING_SESSIONS)
    if args.model not in ("barista", "rpnt"):
        return 0
    recs = read_recordings(args.recordings)
    seen = pretraining(recs, cfg["evaluation"]) + validation(recs, cfg["evaluation"])
    pre = recs[recs["recording"].isin(seen)]
    return sum(subject_trial(s, t) in benchmark for s, t in zip(pre["subject"], pre["session"],
                                                                strict=True))


def _neuroprobe_keys(args, cfg: dict, model: str) -> dict:
    from .evaluation import NONE

    return {"protocol": "neuroprobe", "model": model,
            "encode_scale": getattr(args, "encode", None) or NONE,
            "mask_scale": getattr(args, "mask", None) or NONE, "task": args.task,
            "setting": args.split_type, **_entities_of(args)}


def _entities_of(args) -> dict:
    row = _recording_row(args.recordings, args.recording)
    return {"subject": row["subject"], "session": row["session"], "recording": args.recording}


def cmd_neuroprobe_finetune(args) -> dict:
    """Every seed of one (encoder, task, split type, tested trial): ``<out-dir>/seed<k>/``."""
    import copy

    from .evaluation import NONE, rows
    from .neuroprobe_protocol import evaluate_encoder
    from .training.common import pick_device

    cfg = _params(args)
    _threads(cfg)
    keys = _neuroprobe_keys(args, cfg, args.model)
    overlap = _pretrained_on_benchmark(args, cfg)
    summary = {}
    spatial_ids = None  # the encode scale's token ids, unless the encoder has its own
    if args.model == "barista_release":
        encoder, spatial_ids = _neuroprobe_release(args)
        keys.update(variant=NONE, pretrain_seed=0)
    else:
        from .neuroprobe_protocol import SEGMENTS

        encoder, keys["variant"], keys["pretrain_seed"] = _encoder(
            args, cfg, [r for r in (args.recording, args.train_recording) if r], SEGMENTS)
    for seed in args.seeds:
        out = evaluate_encoder(args.results, copy.deepcopy(encoder), task=args.task,
                               split_type=args.split_type, recording=args.recording,
                               train_recording=args.train_recording or None,
                               cfg=_finetune_config(cfg, seed),
                               device=pick_device(cfg["model"]["device"]),
                               spatial_ids=spatial_ids)
        metrics = {**out["metrics"], "pretrained_on_benchmark": overlap}
        out_dir = Path(args.out_dir) / f"seed{seed}"
        out_dir.mkdir(parents=True, exist_ok=True)
        rows(metrics, **keys, seed=seed, config_hash=cfg.digest
             ).to_parquet(out_dir / "metrics.parquet", index=False)
        out["curve"].assign(**keys, seed=seed).to_parquet(out_dir / "curve.parquet",
                                                          index=False)
        summary[f"seed{seed}"] = metrics
    return summary


def _neuroprobe_release(args) -> tuple:
    """The released encoder for the Neuroprobe windows (1 s = 4 of its 512-sample patches at
    2048 Hz; rotary positions 0..3, a subset of the 0..11 it was pretrained on) and its own
    spatial ids of the channels of the tested and training trials."""
    import pandas as pd

    from .config import RELEASE_PATCH_SAMPLES, RELEASE_SFREQ
    from .data import SignalFile
    from .neuroprobe_protocol import SEGMENTS
    from .release_ids import channel_release_ids, log_release_ids

    folder = Path(args.results) / SEGMENTS
    meta = SignalFile(folder / args.recording / "signal.parquet").meta
    if float(meta["sfreq"]) != RELEASE_SFREQ or int(meta["patch_samples"]) != \
            RELEASE_PATCH_SAMPLES:
        raise BaristaError(f"{args.recording}: the released encoders read {RELEASE_SFREQ:g} Hz "
                           f"patches of {RELEASE_PATCH_SAMPLES} samples; these Neuroprobe "
                           f"windows are {meta['sfreq']:g} Hz, {meta['patch_samples']} samples "
                           "per patch (preprocess.resample_hz, segments.length_s/n_patches)")
    encoder = _released_checkpoint(args, meta)
    ids = {}
    for rec in filter(None, {args.recording, args.train_recording}):
        order = SignalFile(folder / rec / "signal.parquet").channels
        table = pd.read_parquet(folder / rec / "channels.parquet")
        found = channel_release_ids(table.set_index("channel", drop=False).loc[order]
                                    .reset_index(drop=True), args.encode)
        log_release_ids(found)
        ids[rec] = found.ids
    return encoder, ids


def cmd_neuroprobe_linear(args) -> dict:
    from .evaluation import rows
    from .neuroprobe_protocol import evaluate_linear

    cfg = _params(args)
    metrics = evaluate_linear(args.results, task=args.task, split_type=args.split_type,
                              recording=args.recording,
                              train_recording=args.train_recording or None, seed=0)
    metrics["pretrained_on_benchmark"] = 0
    table = rows(metrics, **_neuroprobe_keys(args, cfg, "linear"), seed=0,
                 config_hash=cfg.digest)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)
    return metrics


def cmd_neuroprobe_submission(args) -> dict:
    from .figures.load import read_table
    from .leaderboard import validate_submission, write_submission

    publication = Path(args.publication).read_text() if args.publication else None
    entry = write_submission(
        read_table(args.decoding), args.out, model=args.model, encode=args.encode,
        mask=args.mask, model_name=args.model_name, description=args.description,
        author=args.author, organization=args.organization,
        organization_url=args.organization_url, seed=args.seed, publication=publication,
        allow_overlap=args.allow_overlap, variant=args.variant)
    problems = validate_submission(entry, complete=not args.partial)
    if problems:
        raise BaristaError(f"{entry} does not make a leaderboard entry:\n  "
                           + "\n  ".join(problems)
                           + ("" if args.partial else "\n(--partial accepts missing tasks "
                              "and subject-trials)"))
    log.info("wrote %s; sign its ATTESTATION.txt before submitting", entry)
    return {"entry": str(entry)}


def cmd_figures(args) -> dict:
    from .figures.make import make

    return make(args)


def cmd_release_download(args) -> dict:
    from .release import download_release, sha256_of

    path = download_release(args.name, Path(args.dest), url=args.url)
    print(path)
    return {"path": str(path), "sha256": sha256_of(path)}


def cmd_release_show(args) -> dict:
    from .release import RELEASES, format_mapping, load_release

    path = Path(args.dest) / f"{args.target}.ckpt" if args.target in RELEASES \
        else Path(args.target)
    encoder, mapping = load_release(path, log_mapping=False)
    c = encoder.config
    n_params = sum(p.numel() for p in encoder.parameters())
    print(f"{path}\nkey mapping (release -> barista):\n{format_mapping(mapping)}")
    print(f"encode scale: {c.encode_scale}\nvocabulary: {c.vocab_size}"
          + (" (L, I, P grid tables of 200 rows)" if c.encode_scale == "channel" else ""))
    print(f"parameters: {n_params}")
    return {"path": str(path), "encode_scale": c.encode_scale, "vocab_size": c.vocab_size,
            "parameters": n_params, "mapped_keys": len(mapping)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="barista", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_)
        src = p.add_mutually_exclusive_group()
        src.add_argument("--config", default="config/config.yaml", help="YAML config file")
        src.add_argument("--params", help="config (or the sections needed) as JSON")
        p.set_defaults(func=func)
        return p

    add("simulate", cmd_simulate, "write the simulated BIDS iEEG dataset").add_argument(
        "--out", required=True)
    add("download", cmd_download, "download an OpenNeuro dataset").add_argument(
        "--out", required=True)
    p = add("recordings", cmd_recordings, "list the iEEG recordings of a BIDS dataset")
    p.add_argument("--bids-root", required=True, type=_bids_root)
    p.add_argument("--out", required=True)
    p = add("derivative", cmd_derivative, "write the derivative's dataset_description.json")
    p.add_argument("--bids-root", required=True, type=_bids_root)
    p.add_argument("--out", required=True)
    p = add("preprocess", cmd_preprocess, "preprocess one recording")
    p.add_argument("--bids-root", required=True, type=_bids_root)
    p.add_argument("--recording", required=True)
    p.add_argument("--out", required=True)
    p = add("localize", cmd_localize, "localize the contacts of one subject")
    p.add_argument("--bids-root", required=True, type=_bids_root)
    p.add_argument("--subject", required=True)
    p.add_argument("--sessions", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p = add("segment", cmd_segment, "cut one preprocessed recording into labelled windows")
    p.add_argument("--bids-root", required=True, type=_bids_root)
    p.add_argument("--recording", required=True)
    p.add_argument("--fif", required=True)
    p.add_argument("--localization", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--events", default=None,
                   help="word events TSV (default: the recording's BIDS events.tsv)")
    p = add("braintreebank-download", cmd_braintreebank_download,
            "download and extract the Brain Treebank release (or part of it)")
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    p = add("braintreebank-recordings", cmd_braintreebank_recordings,
            "list the trials of a Brain Treebank release as recordings")
    p.add_argument("--root", required=True, type=_bt_root)
    p.add_argument("--out", required=True)
    p = add("braintreebank-preprocess", cmd_braintreebank_preprocess,
            "preprocess one Brain Treebank trial, one channel at a time")
    p.add_argument("--root", required=True, type=_bt_root)
    p.add_argument("--recording", required=True, help="sub-S_ses-T")
    p.add_argument("--out", required=True)
    p = add("braintreebank-localize", cmd_braintreebank_localize,
            "localization table of one Brain Treebank subject")
    p.add_argument("--root", required=True, type=_bt_root)
    p.add_argument("--subject", required=True)
    p.add_argument("--sessions", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p = add("braintreebank-words", cmd_braintreebank_words,
            "word events of one Brain Treebank trial on its neural clock")
    p.add_argument("--root", required=True, type=_bt_root)
    p.add_argument("--recording", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("braintreebank-fixture",
                       help="write a Brain Treebank-shaped fixture (real metadata, simulated "
                            "signals; needs the neuroprobe package)")
    p.add_argument("out_dir")
    p.add_argument("--sessions", nargs="+", default=["1_0", "1_1"], help="S_T, e.g. 1_0")
    p.add_argument("--duration-s", type=float, default=60.0)
    p.add_argument("--max-shafts", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_braintreebank_fixture)
    p = add("tokens", cmd_tokens, "build the token table of one spatial scale")
    p.add_argument("--scale", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("channels", nargs="+", help="per-recording channels.parquet files")

    p = add("pretrain", cmd_pretrain,
            "pretrain BaRISTA for one (encode, mask) scale pair, or RPNT")
    p.add_argument("--results", required=True, help="results/<dataset>")
    p.add_argument("--recordings", required=True, help="recordings.tsv")
    p.add_argument("--architecture", choices=["barista", "rpnt"], default="barista")
    p.add_argument("--encode", default=None, help="encoding scale (BaRISTA)")
    p.add_argument("--mask", default=None, help="masking scale (BaRISTA)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--variant", default="paper",
                   help="BaRISTA pretraining variant (barista.variants): paper, prior+raw, ...")
    p.add_argument("--seed", type=int, default=None, help="pretraining seed (pretrain.seed)")
    p.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                   help="end after STEPS steps without finishing, as if killed (for tests)")
    p = add("finetune", cmd_finetune,
            "finetune (and probe) one encoder on every task and decoded recording")
    p.add_argument("--results", required=True)
    p.add_argument("--model", choices=["barista", "random_init", "rpnt", "barista_release"],
                   required=True)
    p.add_argument("--encode", default=None, help="encoding scale (not for rpnt)")
    p.add_argument("--mask", default=None)
    p.add_argument("--pretrained", default=None,
                   help="model.pt (--model barista, rpnt) or a released <name>.ckpt "
                        "(--model barista_release)")
    p.add_argument("--variant", default="paper",
                   help="random_init: the variant whose starting point this is")
    p.add_argument("--pretrain-seed", type=int, default=None,
                   help="random_init: the pretraining seed whose starting point this is")
    p.add_argument("--task", nargs="*", default=None, help="default: finetune.tasks")
    p.add_argument("--recording", nargs="*", default=None,
                   help="default: the recordings of evaluation.settings")
    p.add_argument("--recordings", required=True, help="recordings.tsv")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default: finetune.seeds")
    p.add_argument("--probe-only", action="store_true",
                   help="score the frozen probe only (no finetuning)")
    p.add_argument("--out-dir", required=True,
                   help="writes metrics, curve and importance .parquet")
    p = add("linear", cmd_linear, "logistic regression on log band power (the floor)")
    p.add_argument("--results", required=True)
    p.add_argument("--task", nargs="*", default=None, help="default: finetune.tasks")
    p.add_argument("--recording", nargs="*", default=None,
                   help="default: the recordings of evaluation.settings")
    p.add_argument("--recordings", required=True, help="recordings.tsv")
    p.add_argument("--out", required=True)
    p = add("reconstruct", cmd_reconstruct, "channel-level reconstruction of a pretrained model")
    p.add_argument("--results", required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--model-path", required=True)
    p.add_argument("--encode", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--seed", type=int, default=None,
                   help="masks of the head's fit (default: pretrain.seed)")
    p.add_argument("--out", required=True)
    p = add("collect", cmd_collect, "gather per-job result rows into one Parquet table")
    p.add_argument("--out", required=True)
    p.add_argument("files", nargs="*", help="none: a table without rows (nothing decoded)")
    p = add("neuroprobe-alignment", cmd_neuroprobe_alignment,
            "derive Neuroprobe's word/non-verbal tables of a trial the package does not ship")
    p.add_argument("--btb-root", required=True, type=_bt_root,
                   help="Brain Treebank release folder (or the file the workflow tracks)")
    p.add_argument("--subject", type=int, required=True)
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p = add("neuroprobe-segment", cmd_neuroprobe_segment,
            "cut one trial's Neuroprobe samples and splits (the neuroprobe package's)")
    p.add_argument("--btb-root", required=True, type=_bt_root,
                   help="Brain Treebank release folder (or the file the workflow tracks)")
    p.add_argument("--alignment-dir", default="",
                   help="derived alignment tables (empty: the package's, of the real data)")
    p.add_argument("--recording", required=True)
    p.add_argument("--recordings", required=True, help="recordings.tsv")
    p.add_argument("--fif", required=True)
    p.add_argument("--localization", required=True)
    p.add_argument("--out-dir", required=True)

    def neuroprobe_job(name, func, help_):
        p = add(name, func, help_)
        p.add_argument("--results", required=True)
        p.add_argument("--task", required=True, help="Neuroprobe task (speech, onset, ...)")
        p.add_argument("--split-type", required=True,
                       choices=["within_session", "cross_session", "cross_subject"])
        p.add_argument("--recording", required=True, help="the tested trial's recording")
        p.add_argument("--train-recording", default="",
                       help="the recording a cross-session/subject split trains on")
        p.add_argument("--recordings", required=True, help="recordings.tsv")
        return p

    p = neuroprobe_job("neuroprobe-finetune", cmd_neuroprobe_finetune,
                       "finetune and test an encoder on one Neuroprobe split")
    p.add_argument("--model", choices=["barista", "random_init", "rpnt", "barista_release"],
                   required=True)
    p.add_argument("--encode", default=None)
    p.add_argument("--mask", default=None)
    p.add_argument("--pretrained", default=None,
                   help="model.pt, or a released <name>.ckpt (--model barista_release)")
    p.add_argument("--variant", default="paper",
                   help="random_init: the variant whose starting point this is")
    p.add_argument("--pretrain-seed", type=int, default=None,
                   help="random_init: the pretraining seed whose starting point this is")
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--out-dir", required=True, help="writes seed<k>/ for each seed")
    p = neuroprobe_job("neuroprobe-linear", cmd_neuroprobe_linear,
                       "the linear floor on one Neuroprobe split")
    p.add_argument("--out", required=True)
    p = sub.add_parser("neuroprobe-submission", help="write a model's Neuroprobe results as a "
                       "leaderboard entry (leaderboard/<entry>/<Split>/population_<task>.json)")
    p.set_defaults(func=cmd_neuroprobe_submission)
    p.add_argument("--decoding", required=True, help="decoding.parquet")
    p.add_argument("--out", required=True, help="folder the entry folder is written into")
    p.add_argument("--model", required=True, help="model column (barista, rpnt, linear, ...)")
    p.add_argument("--variant", default=None,
                   help="pretraining variant column (needed when the model has several)")
    p.add_argument("--encode", default="none")
    p.add_argument("--mask", default="none")
    p.add_argument("--seed", type=int, default=None, help="seed written (default: lowest)")
    p.add_argument("--model-name", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--author", required=True, help="first and last name")
    p.add_argument("--organization", required=True)
    p.add_argument("--organization-url", required=True)
    p.add_argument("--publication", help="bibtex file of the publication (default: N/A)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="write a model pretrained on Neuroprobe trials, saying so")
    p.add_argument("--partial", action="store_true",
                   help="accept an entry without every task and subject-trial")
    from .figures import FIGURE_NAMES

    p = add("figures", cmd_figures, "draw one figure or table of the study (docs/figures.md)")
    p.add_argument("figure", choices=FIGURE_NAMES)
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--decoding", help="decoding.parquet")
    p.add_argument("--reconstruction", help="reconstruction.parquet")
    p.add_argument("--histories", nargs="*", default=[], help="pretraining history.parquet files")
    p.add_argument("--runs", nargs="*", default=[], help="finetuning run folders")
    p.add_argument("--localization", nargs="*", default=[], help="localization/sub-*.parquet")
    p.add_argument("--bids-root", type=_bids_root, help="BIDS dataset (simulated ground truth)")
    p.add_argument("--task", help="decoding task (importance)")
    p.add_argument("--metric", default="auroc",
                   help="metric of the table: auroc (finetuned) or probe_auroc (frozen probe)")
    p.add_argument("--color-by", choices=["parcel", "lobe"], default="parcel")
    p.add_argument("--dataset", help="dataset name (neuroprobe figures)")

    from .release import DEFAULT_DEST, RELEASES

    release = sub.add_parser("release", help="the authors' released BaRISTA encoders")
    actions = release.add_subparsers(dest="action", required=True)
    p = actions.add_parser("download", help="download a released checkpoint, sha256-verified")
    p.add_argument("name", choices=sorted(RELEASES))
    p.add_argument("--dest", default=str(DEFAULT_DEST), help="folder (default %(default)s)")
    p.add_argument("--url", default=None, help="fetch from here instead of the release URL")
    p.set_defaults(func=cmd_release_download)
    p = actions.add_parser("show", help="load a checkpoint into barista's encoder and print "
                                        "the key mapping, scale, vocabulary and size")
    p.add_argument("target", help=f"a checkpoint name ({', '.join(RELEASES)}) under --dest, "
                                  f"or a path")
    p.add_argument("--dest", default=str(DEFAULT_DEST), help="folder (default %(default)s)")
    p.set_defaults(func=cmd_release_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    try:
        from .steps import STEPS

        if step_of(args) in STEPS:  # every step checks its config before it starts
            _params(args)
        summary = args.func(args)
    except BaristaError as err:
        print(f"barista: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # a full disk, a lost mount, no permission: one line naming the cause (and the file,
        # where the OS says it), short enough to fit in what space a full disk has left
        print(f"barista: error: {args.command}: {err}", file=sys.stderr)
        return 1
    log.info("%s done: %s", args.command, json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
