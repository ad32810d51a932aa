"""Spatially masked latent reconstruction: BaRISTA's self-supervised pretraining.

For each sample, random groups at the masking scale are masked until 30% of the tokens are; the
encoder sees the mask token (plus the channel's spatial embedding) in their place; a predictor MLP
maps the encoder's states at masked positions to the tokens that an EMA copy of the tokenizer
gives for the real signal (stop-gradient); the loss is their mean squared error.

Training is a pure function of the config and the step: every step seeds each sample's mask from
``(seed, step, position of the sample in the global batch)`` and dropout from ``(seed, step,
rank)``, the data order is a function of ``(seed, epoch)`` and the learning rate of the step. A
checkpoint (model, EMA, predictor, optimizer, scheduler, RNG, step) is written atomically every
``checkpoint_every`` steps; a killed run started again resumes from it and ends with the same
parameters as an uninterrupted one. Only the very run that wrote a checkpoint resumes it: the
checkpoint holds a fingerprint of the run (:func:`run_fingerprint`: its settings and the
identity of its input files), and a run with another fingerprint (a changed learning rate, new
tokens) starts over and says so in the log, instead of returning the old model.

Several processes (``torchrun``, ``WORLD_SIZE`` > 1; NCCL on ``cuda:LOCAL_RANK``, gloo on the
CPU): the global batch order is the single process's, rank ``r`` takes the ``r``-th contiguous
slice of every global batch, the model is wrapped in ``DistributedDataParallel``, and each rank's
loss is its sum of squared errors over the *global* number of masked elements times the world
size, so DDP's gradient average is exactly the single-process gradient of the global mean.
Without dropout, ``W`` processes with ``batch_size / W`` samples each reach the parameters of
one process with ``batch_size`` (to floating-point rounding). Rank 0 alone writes checkpoints
(the others wait at a barrier) and history rows (loss: the global mean); a checkpoint holds the
global step, so a run resumes with any number of processes.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from ..data import BlockShuffleSampler, SegmentDataset, collate_packed
from ..errors import ConfigError, DataError
from ..models import BaristaConfig, BaristaEncoder, preset
from .common import (
    Distributed,
    atomic_save,
    autocast,
    init_distributed,
    rng_state,
    seed_everything,
    seed_of,
    set_rng_state,
    to_device,
    warmup_decay,
)
from .ema import EMA
from .masking import group_mask, sample_generators
from .targets import SignalTarget, target_size

log = logging.getLogger(__name__)
HISTORY_FIELDS = ["step", "epoch", "split", "loss", "lr", "ema_momentum", "masked_fraction",
                  "seconds"]


@dataclass
class PretrainConfig:
    """Optimisation settings (defaults: the paper's)."""

    epochs: int = 70
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 5
    decay: float = 0.99
    mask_ratio: float = 0.3
    grad_clip: float | None = None
    ema_end: float = 0.996
    ema_ramp_epochs: float = 10
    target_norm: bool = False
    seed: int = 0
    checkpoint_every: int = 200
    max_steps: int | None = None
    num_workers: int = 0
    device: str = "auto"
    extra: dict = field(default_factory=dict)


class Predictor(nn.Module):
    """MLP with ``n_hidden`` hidden layers (GELU, dropout) from states to targets
    (``out_features``: the target's width, ``d_model`` for the paper's latent target)."""

    def __init__(self, d_model: int, n_hidden: int = 3, dropout: float = 0.1,
                 out_features: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_hidden):
            layers += [nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers, nn.Linear(d_model, out_features or d_model))

    def forward(self, x):
        return self.net(x)


def build_predictor(config: BaristaConfig) -> Predictor:
    """The predictor of a model config, its output as wide as ``config.target``'s."""
    return Predictor(config.d_model, config.predictor_layers, config.dropout,
                     target_size(config.target, config.d_model, config.patch_samples))


class MaskedLatentModel(nn.Module):
    """Encoder + predictor + EMA tokenizer, with the pretraining loss.

    ``config.target`` says what a masked patch's prediction is scored against: the EMA
    tokenizer's token (``latent``, the paper's) or the signal (:mod:`.targets`).
    """

    def __init__(self, config: BaristaConfig, ema_ramp_steps: int = 1, ema_end: float = 0.996,
                 target_norm: bool = False):
        super().__init__()
        self.target_norm = target_norm
        self.encoder = BaristaEncoder(config)
        self.predictor = build_predictor(config)
        self.target = EMA(self.encoder.tokenizer, end=ema_end, ramp_steps=ema_ramp_steps)
        self.signal_target = (None if config.target == "latent"
                              else SignalTarget(config.target, config.patch_samples))

    def prepare(self, windows: SegmentDataset, n_windows: int = 64) -> None:
        """Fit what the targets need from the data (the log spectrum's per-bin scale) on up
        to ``n_windows`` training windows evenly spaced over ``windows``: the same ones in
        every process, whatever its share of the batches."""
        if self.signal_target is None or not self.signal_target.spectral:
            return
        picks = torch.linspace(0, len(windows) - 1, min(n_windows, len(windows))).round()
        self.signal_target.fit(torch.cat([windows[int(i)]["x"] for i in picks.unique()]))

    def forward(self, batch: dict, channel_mask: torch.Tensor) -> dict:
        states = self.encoder(batch, channel_mask=channel_mask)
        pred = self.predictor(states[channel_mask])
        if self.signal_target is not None:
            target = self.signal_target(batch["x"][channel_mask])
        else:
            target = self.target(batch["x"][channel_mask])  # stop-gradient by construction
        if self.target_norm and self.signal_target is None:
            # per-token standardisation (as data2vec does): the loss cannot fall by shrinking
            # the targets, so the tokenizer cannot collapse to a constant
            target = F.layer_norm(target.float(), target.shape[-1:])
        # the sum and the element count, so a multi-process loop can form the global mean
        sse = (pred.float() - target.float()).pow(2).sum()
        count = pred.numel()
        return {"loss": sse / count, "sse": sse, "count": count, "pred": pred,
                "target": target, "states": states}


def model_config(results: Path, encode_scale: str, size: str, overrides: dict,
                 recordings: list[str], segments: str = "segments") -> BaristaConfig:
    """Architecture for the windows of ``recordings`` (under ``results/<segments>/``): the
    patch geometry they all share (every one's is read: windows of different shapes are an
    error naming two recordings) and the encode scale's vocabulary."""
    vocab = Path(results) / "tokens" / encode_scale / "vocab.parquet"
    if not vocab.exists():
        raise DataError(f"{vocab} missing: build the '{encode_scale}' tokens first")
    from ..segments import recording_geometry

    meta = recording_geometry(results, recordings, segments)
    return preset(size, patch_samples=meta["patch_samples"], n_patches=meta["n_patches"],
                  encode_scale=encode_scale,
                  vocab_size=int(pd.read_parquet(vocab)["token_id"].max()) + 1, **overrides)


# --- the objective: what the loop needs from it -------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A pretraining objective, as the loop uses it (BaRISTA's: :data:`BARISTA`).

    ``build(config, cfg, steps_per_epoch)``
        the model (an ``nn.Module`` with an ``.encoder``), on the CPU, from the global seed.
    ``loss(model, batch, cfg, key, first)``
        this process's share of one step's loss: ``{"sse", "count", "masked", "tokens"}``,
        where ``sse`` is the differentiable *sum* of the per-element losses of this rank's
        samples and ``count`` how many elements it sums, so the loop can form the global mean
        over every rank; ``masked`` / ``tokens`` count masked and all tokens (for the history).
        ``model`` may be wrapped in DDP: call it, never reach into it. Randomness comes from
        ``(cfg.seed, key, global position of the sample)`` (``key`` is the step, or
        ``"val<i>"``), never from how the batch is split; ``first`` is the global position of
        this rank's first sample.
    ``after_step(model, step)``
        anything done after an optimizer step (the EMA update); returns history columns.
    ``final_state(model)``
        what ``model.pt`` holds besides the run's description.
    ``configure(results, encode_scale, size, overrides, recordings)``
        the architecture for a dataset (patch geometry and vocabulary from its files).
    ``prepare(model, train)``
        fits what the objective needs from the training windows before the first step (the
        log-spectrum target's scale); a resumed run then loads it back from the checkpoint.

    An objective whose model only returns a mean loss (as ``RpntPretrainModel`` does) can return
    ``sse = loss * n_samples`` and ``count = n_samples``.
    """

    build: Callable[[BaristaConfig, PretrainConfig, int], nn.Module]
    loss: Callable[[nn.Module, dict, PretrainConfig, object, int], dict]
    after_step: Callable[[nn.Module, int], dict]
    final_state: Callable[[nn.Module], dict]
    configure: Callable[[Path, str, str, dict, list], object] = model_config
    name: str = "barista"
    prepare: Callable[[nn.Module, SegmentDataset], None] | None = None


def build_barista(config: BaristaConfig, cfg: PretrainConfig,
                  steps_per_epoch: int) -> MaskedLatentModel:
    return MaskedLatentModel(config, ema_ramp_steps=int(cfg.ema_ramp_epochs * steps_per_epoch),
                             ema_end=cfg.ema_end, target_norm=cfg.target_norm)


def sample_masks(batch: dict, ratio: float, seed: int, key, first: int = 0) -> torch.Tensor:
    """Group masks of a (slice of a) global batch: sample ``i`` draws from its own generator,
    seeded by ``(seed, "mask", key, first + i)``, so the masks do not depend on the split."""
    n = len(batch["cu_channels"]) - 1
    gens = sample_generators(seed, "mask", key, "pos", first=first, n=n)
    return group_mask(batch["group_id"], batch["cu_channels"], ratio, gens)


def barista_loss(model, batch: dict, cfg: PretrainConfig, key, first: int) -> dict:
    mask = sample_masks(batch, cfg.mask_ratio, cfg.seed, key, first)
    out = model(batch, mask)
    return {"sse": out["sse"], "count": out["count"], "masked": int(mask.sum()),
            "tokens": mask.numel()}


def barista_after_step(model: MaskedLatentModel, step: int) -> dict:
    return {"ema_momentum": model.target.update(model.encoder.tokenizer, step + 1)}


def barista_final_state(model: MaskedLatentModel) -> dict:
    state = {"encoder": model.encoder.state_dict(),
             "ema_tokenizer": model.target.shadow.state_dict(),
             "predictor": model.predictor.state_dict()}
    if model.signal_target is not None:
        state["signal_target"] = model.signal_target.state_dict()
    return state


def barista_prepare(model: MaskedLatentModel, train: SegmentDataset) -> None:
    model.prepare(train)


BARISTA = Objective(build=build_barista, loss=barista_loss, after_step=barista_after_step,
                    final_state=barista_final_state, prepare=barista_prepare)


# --- data sharding --------------------------------------------------------------------------


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous slice of a global batch of ``n`` samples
    (equal slices when ``world_size`` divides ``n``, else the first ``n % world_size`` one
    longer)."""
    size, extra = divmod(n, world_size)
    lo = rank * size + min(rank, extra)
    return lo, lo + size + (rank < extra)


class RankBatches(Sampler[list[int]]):
    """This rank's slices of the global batches of ``sampler``'s order.

    The global batches are exactly those of a single process with batch size ``batch_size``;
    rank ``r`` gets the ``r``-th contiguous slice of each (see :func:`shard_bounds`), so the
    data a step sees does not depend on the number of processes. Empty slices (a last, short
    batch with fewer samples than processes) are skipped. ``len`` is the number of global
    batches.
    """

    def __init__(self, sampler: BlockShuffleSampler, batch_size: int, drop_last: bool,
                 rank: int = 0, world_size: int = 1):
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """See :meth:`BlockShuffleSampler.set_epoch` (``start`` counts global samples)."""
        self.sampler.set_epoch(epoch, start=start)

    def _slice(self, batch: list[int]) -> list[int]:
        lo, hi = shard_bounds(len(batch), self.world_size, self.rank)
        return batch[lo:hi]

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield self._slice(batch)
                batch = []
        if batch and not self.drop_last and self._slice(batch):
            yield self._slice(batch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def rank_loader(dataset: SegmentDataset, batch_size: int, dist: Distributed, *,
                shuffle: bool = True, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """:func:`barista.data.make_loader` for one rank: its slices of the global batches."""
    batches = RankBatches(BlockShuffleSampler(dataset, seed=seed, shuffle=shuffle), batch_size,
                          drop_last, dist.rank, dist.world_size)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate_packed,
                      num_workers=num_workers, persistent_workers=num_workers > 0)


def _global_size(n_samples: int, batch_size: int, index: int) -> int:
    """Samples in global batch ``index`` of an epoch (the last one may be short)."""
    return min(batch_size, n_samples - index * batch_size)


def _check_world(cfg: PretrainConfig, dist: Distributed, n_train: int) -> None:
    if cfg.batch_size % dist.world_size:
        raise ConfigError(f"config key 'pretrain.batch_size': {cfg.batch_size} is not divisible "
                          f"by the number of processes ({dist.world_size}); the global batch "
                          "is split evenly across them")
    if n_train < dist.world_size:
        raise DataError(f"{n_train} pretraining window(s) for {dist.world_size} processes: every "
                        "process needs at least one")


# --- the loop -------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: PretrainConfig, device,
             dist: Distributed | None = None, objective: Objective = BARISTA) -> float:
    """Mean masked-reconstruction loss over every rank's slices, masks fixed by (seed, batch
    index, sample position). ``model`` is the unwrapped module (no collective inside)."""
    dist = dist or Distributed(device=device)
    n_val = len(loader.batch_sampler.sampler)
    model.eval()
    sse, count = 0.0, 0.0
    for i, batch in enumerate(loader):
        first, _ = shard_bounds(_global_size(n_val, cfg.batch_size, i), dist.world_size,
                                dist.rank)
        batch = to_device(batch, device)
        with autocast(device):
            out = objective.loss(model, batch, cfg, f"val{i}", first)
        sse += float(out["sse"])
        count += float(out["count"])
    model.train()
    total = dist.sum([sse, count])
    return float(total[0] / total[1].clamp(min=1))


class _History:
    """``history.csv`` rows, written by the main process only (others hold no file)."""

    def __init__(self, path: Path, enabled: bool):
        self.fh = open(path, "a", newline="") if enabled else None  # noqa: SIM115
        if self.fh is not None:
            self.writer = csv.DictWriter(self.fh, HISTORY_FIELDS)
            if self.fh.tell() == 0:
                self.writer.writeheader()

    def write(self, row: dict) -> None:
        if self.fh is not None:
            self.writer.writerow(row)

    def flush(self) -> None:
        if self.fh is not None:
            self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def pretrain(results: str | Path, out_dir: str | Path, *, encode_scale: str, mask_scale: str,
             recordings: list[str], size: str = "paper", model_overrides: dict | None = None,
             cfg: PretrainConfig | None = None, progress: bool = True,
             stop_after: int | None = None, objective: Objective = BARISTA,
             val_recordings: list[str] | None = None) -> dict:
    """Pretrain one (encode scale, mask scale) pair; write ``model.pt`` and ``history``.

    Without ``val_recordings`` the windows of ``recordings`` are split by their random split
    (train windows train, val windows validate); with them (the validation sessions of
    ``evaluation.sessions``), every window of ``recordings`` trains and every window of
    ``val_recordings`` validates, as in the paper.

    Run by ``torchrun`` with ``WORLD_SIZE`` > 1, every process takes its rank's slice of each
    global batch of ``cfg.batch_size`` samples and the model is wrapped in DDP (see the module
    docstring); the main process alone writes files. ``stop_after`` ends the run after that
    many steps without finishing it (for tests of resumption, as if the process had been
    killed).
    """
    results, out_dir = Path(results), Path(out_dir)
    cfg = cfg or PretrainConfig()
    dist = init_distributed(cfg.device)
    try:
        return _pretrain(results, out_dir, encode_scale, mask_scale, recordings, size,
                         model_overrides or {}, cfg, progress, stop_after, objective, dist,
                         val_recordings)
    finally:
        dist.close()


def _pretrain(results: Path, out_dir: Path, encode_scale: str, mask_scale: str,
              recordings: list[str], size: str, model_overrides: dict,
              cfg: PretrainConfig, progress: bool, stop_after: int | None, objective: Objective,
              dist: Distributed, val_recordings: list[str] | None = None) -> dict:
    device = dist.device
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    # the geometry of every window the model sees, the validation recordings' too
    config = objective.configure(results, encode_scale, size, model_overrides,
                                 [*recordings, *(val_recordings or [])])
    if val_recordings:
        train = SegmentDataset(results, "pretrain", encode_scale=encode_scale,
                               mask_scale=mask_scale, split=None, recordings=recordings)
        val = SegmentDataset(results, "pretrain", encode_scale=encode_scale,
                             mask_scale=mask_scale, split=None, recordings=val_recordings)
    else:
        train = SegmentDataset(results, "pretrain", encode_scale=encode_scale,
                               mask_scale=mask_scale, roles=("train",), recordings=recordings)
        val = SegmentDataset(results, "pretrain", encode_scale=encode_scale,
                             mask_scale=mask_scale, roles=("val",), recordings=recordings)
    if len(train) == 0:
        raise DataError(f"no pretraining windows in {results} for recordings {recordings}")
    _check_world(cfg, dist, len(train))
    loader = rank_loader(train, cfg.batch_size, dist, seed=cfg.seed,
                         num_workers=cfg.num_workers, drop_last=len(train) > cfg.batch_size)
    val_loader = rank_loader(val, cfg.batch_size, dist, shuffle=False)
    steps_per_epoch = len(loader)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    seed_everything(cfg.seed)
    model = objective.build(config, cfg, steps_per_epoch)
    if objective.prepare is not None:
        objective.prepare(model, train)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_decay(s, steps_per_epoch, cfg.warmup_epochs, cfg.decay))

    ckpt_path, history_path = out_dir / "checkpoint.pt", out_dir / "history.csv"
    fingerprint = run_fingerprint(results, encode_scale, mask_scale, recordings,
                                  config.to_dict(), cfg, objective.name)
    step = 0
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get("fingerprint") != fingerprint:
            # another run's (config or inputs changed since): resuming it would return the
            # old model under the new settings
            if dist.is_main:
                log.warning("%s was written by another run (its config or input files "
                            "differ from this run's): starting over from step 0", ckpt_path)
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = state["step"]
        if dist.is_main:
            log.info("resuming %s from step %d (written by %d process(es), now %d)", out_dir,
                     step, state.get("world_size", 1), dist.world_size)
    if dist.is_main:
        _truncate_history(history_path, step)
    dist.barrier()  # every rank has read the checkpoint before rank 0 may overwrite it
    net = model
    if dist.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None)
        log.info("rank %d of %d on %s", dist.rank, dist.world_size, device)

    def save_checkpoint():
        if dist.is_main:
            atomic_save({"config": config.to_dict(), "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": rng_state(), "step": step, "world_size": dist.world_size,
                         "fingerprint": fingerprint},
                        ckpt_path)
        dist.barrier()

    bar = tqdm(total=total_steps, initial=step, disable=not (progress and dist.is_main),
               desc=f"pretrain {objective.name} {encode_scale}/{mask_scale}", unit="step")
    history = _History(history_path, dist.is_main)
    model.train()
    try:
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            loader.batch_sampler.set_epoch(epoch, start=start * cfg.batch_size)
            for batch in loader:
                t0 = time.perf_counter()
                index = step % steps_per_epoch
                first, _ = shard_bounds(_global_size(len(train), cfg.batch_size, index),
                                        dist.world_size, dist.rank)
                batch = to_device(batch, device)
                torch.manual_seed(seed_of(cfg.seed, "dropout", step, f"rank{dist.rank}"))
                with autocast(device):
                    out = objective.loss(net, batch, cfg, step, first)
                sse, count, masked, tokens = dist.sum(
                    [out["sse"].detach(), out["count"], out["masked"], out["tokens"]]).tolist()
                # DDP averages gradients over ranks: scaling by world_size / global count makes
                # the average the gradient of the global mean over every masked element
                loss = out["sse"] * (dist.world_size / count)
                lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                logged = objective.after_step(model, step)
                step += 1
                history.write({"step": step, "epoch": epoch, "split": "train",
                               "loss": sse / count, "lr": lr, **logged,
                               "masked_fraction": masked / tokens,
                               "seconds": time.perf_counter() - t0})
                bar.update()
                bar.set_postfix(loss=f"{sse / count:.4f}")
                end_of_epoch = step % steps_per_epoch == 0
                if end_of_epoch and len(val):
                    history.write({"step": step, "epoch": epoch, "split": "val",
                                   "loss": evaluate(model, val_loader, cfg, device, dist,
                                                    objective)})
                if step % cfg.checkpoint_every == 0 or end_of_epoch or step == total_steps:
                    history.flush()
                    save_checkpoint()
                if stop_after is not None and step >= stop_after:
                    history.flush()
                    save_checkpoint()
                    return {"stopped_at": step}
                if step >= total_steps:
                    break
    finally:
        history.close()
        bar.close()

    summary_path = out_dir / "summary.json"
    if dist.is_main:
        rows = pd.read_csv(history_path)
        rows.to_parquet(out_dir / "history.parquet", index=False)
        final = {"config": config.to_dict(), **objective.final_state(model),
                 "encode_scale": encode_scale, "mask_scale": mask_scale,
                 "recordings": recordings, "steps": step, "seed": cfg.seed}
        atomic_save(final, out_dir / "model.pt")
        train_loss = rows[rows["split"] == "train"]["loss"]
        summary = {"encode_scale": encode_scale, "mask_scale": mask_scale, "steps": step,
                   "epochs": cfg.epochs, "first_loss": float(train_loss.iloc[0]),
                   "final_loss": float(train_loss.tail(max(steps_per_epoch, 1)).mean()),
                   "n_parameters": sum(p.numel() for p in model.encoder.parameters()),
                   "device": str(device), "processes": dist.world_size,
                   "n_train_windows": len(train)}
        summary_path.write_text(json.dumps(summary, indent=2))
    dist.barrier()
    return json.loads(summary_path.read_text())


# settings that do not change the trained parameters: a run may resume with other values
_NOT_FINGERPRINTED = ("checkpoint_every", "device", "num_workers")


def run_fingerprint(results: Path, encode_scale: str, mask_scale: str | None,
                    recordings: list[str], config: dict, cfg: PretrainConfig,
                    objective: str) -> str:
    """What makes a pretraining run: the objective, architecture, optimisation settings,
    scales and recordings, and the input files (size and modification time of the token
    tables and of every segment file read). A checkpoint with another fingerprint is another
    run's. Sizes and times, not contents: hashing every signal file would read the whole
    dataset at each start; a file rewritten with the same bytes only costs a fresh start."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_FINGERPRINTED}
    seg_root = results / "segments"
    names = sorted(recordings)
    files = [results / "tokens" / s / f"{t}.parquet"
             for s in dict.fromkeys(x for x in (encode_scale, mask_scale) if x)
             for t in ("channels", "vocab")]
    files += [seg_root / n / f"{t}.parquet" for n in names
              for t in ("signal", "index", "splits", "channels")]
    identity = []
    for f in files:
        st = f.stat() if f.exists() else None
        identity.append([str(f.relative_to(results)), st and st.st_size, st and st.st_mtime_ns])
    blob = json.dumps({"objective": objective, "model": config, "train": settings,
                       "encode_scale": encode_scale, "mask_scale": mask_scale,
                       "recordings": names, "files": identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _truncate_history(path: Path, step: int) -> None:
    """Drop history rows past the checkpoint, so a resumed run logs each step once."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    rows = pd.read_csv(path)
    rows[rows["step"] <= step].to_csv(path, index=False)


def initial_encoder(config: BaristaConfig, seed: int) -> BaristaEncoder:
    """The encoder a pretraining run with ``seed`` starts from, before any step.

    The random-init baseline is this encoder, so it differs from a pretrained model only by
    pretraining: on the demo, random initialisations differ from seed to seed in a frozen probe
    by more than pretraining changes them (docs/model.md, "Evaluation protocol"; numbers in
    docs/notes/latent_objective_small_scale.md).
    """
    seed_everything(seed)
    return MaskedLatentModel(config).encoder  # built first, as pretraining builds it


def load_pretrained(path: str | Path, device="cpu",
                    tokenizer: str = "ema") -> tuple[BaristaEncoder, dict]:
    """Encoder of a ``model.pt``: by default the EMA tokenizer plus the pretrained backbone,
    as downstream models start (``tokenizer="online"`` keeps the online tokenizer)."""
    state = torch.load(path, map_location=device, weights_only=False)
    try:
        encoder = BaristaEncoder(BaristaConfig(**state["config"]))
        encoder.load_state_dict(state["encoder"])
        if tokenizer == "ema":
            encoder.tokenizer.load_state_dict(state["ema_tokenizer"])
    except (TypeError, RuntimeError) as exc:  # unknown config fields, other tensors
        raise DataError(f"{path} does not fit the current BaRISTA architecture (written by an "
                        f"older version?): {str(exc).splitlines()[0]}; delete it and pretrain "
                        f"again") from None
    return encoder, state
