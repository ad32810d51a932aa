"""RPNT's robust self-supervised objective on packed iEEG batches.

Per batch (:func:`barista.training.causal_masking.robust_ssl_loss`): a time ratio and a channel
ratio are drawn uniformly from ``config.mask_ratio_range`` with the caller's generator; every
sample gets the last ``ceil(r_t P)`` patches of all its channels plus ``round(r_c C)`` random
channels (per-sample counts from ``cu_channels``) masked; masked input patches are zeroed before
the encoder sees them; a linear head maps every state back to a raw patch and the reconstruction
loss is the MSE over masked entries only (iEEG is continuous, so MSE where RPNT's spike counts
use a Poisson NLL).

Contrastive term (``config.contrastive_weight`` x InfoNCE, temperature ``config.temperature``,
:func:`barista.training.contrastive.group_info_nce`): embeddings are means of *unmasked* token
states, projected by a linear layer:

- ``contrast_by="session"``: one embedding per sample; positives are other windows of the same
  subject and session (``sub-`` + ``ses-`` of ``recording``);
- ``contrast_by="region"``: one embedding per (sample, region), region = ``spatial_id`` (the
  dataset's encoding scale; 0 = unknown is left out, and so is a region whose every channel is
  masked); positives are the same region in other windows (RPNT's site-contrastive term).

A batch with no positive pair (every window from a different session, say) has a contrastive
term of exactly 0 (with a gradient path), and the loss is the reconstruction alone.

``RpntPretrainModel(batch, generator)`` is the drop-in counterpart of
:class:`barista.training.pretrain.MaskedLatentModel` (whose mask comes from the loop): it draws
its own mask from ``generator``, so a loop seeds ``generator`` from ``(seed, step)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models.rpnt import RpntConfig, RpntEncoder, recording_ids, rpnt_preset
from ..segments import recording_geometry
from .causal_masking import robust_ssl_loss
from .common import seed_of
from .contrastive import group_info_nce
from .pretrain import Objective, PretrainConfig


def session_groups(recordings: list[str]) -> torch.Tensor:
    """(samples,) integer labels, equal for recordings of the same subject and session."""
    keys: dict[tuple[str, str], int] = {}
    out = []
    for rec in recordings:
        ids = recording_ids(rec)
        out.append(keys.setdefault((ids["subject"], ids["session"]), len(keys)))
    return torch.tensor(out, dtype=torch.long)


def pooled_embeddings(states: torch.Tensor, visible: torch.Tensor, owner: torch.Tensor,
                      n_owners: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the visible token states of each owner.

    ``states`` (channels, patches, d), ``visible`` bool (channels, patches), ``owner`` (channels,)
    in ``0 .. n_owners - 1`` -> ``(means (n_owners, d), has_visible (n_owners,))``.
    """
    d = states.shape[-1]
    w = visible.to(states.dtype)
    sums = states.new_zeros((n_owners, d)).index_add_(0, owner, (states * w[..., None]).sum(1))
    counts = states.new_zeros(n_owners).index_add_(0, owner, w.sum(1))
    return sums / counts.clamp(min=1)[:, None], counts > 0


class RpntPretrainModel(nn.Module):
    """RPNT encoder + linear patch reconstruction head + contrastive projection."""

    def __init__(self, config: RpntConfig):
        super().__init__()
        self.config = config
        self.encoder = RpntEncoder(config)
        self.head = nn.Linear(config.d_model, config.patch_samples)
        self.project = nn.Linear(config.d_model, config.d_model)

    def embeddings(self, batch: dict, states: torch.Tensor, mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected contrastive embeddings and their group labels (see the module docstring)."""
        device = states.device
        counts = batch["n_channels"].to(device).long()
        sample = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
        visible = ~mask.to(device)
        if self.config.contrast_by == "session":
            emb, ok = pooled_embeddings(states, visible, sample, len(counts))
            groups = session_groups(batch["recording"]).to(device)
        else:
            region = batch["spatial_id"].to(device).long()
            pair, owner = torch.unique(torch.stack([sample, region], 1), dim=0,
                                       return_inverse=True)
            emb, ok = pooled_embeddings(states, visible, owner, len(pair))
            ok = ok & (pair[:, 1] != 0)
            groups = pair[:, 1]
        return self.project(emb[ok]), groups[ok]

    def forward(self, batch: dict, generator: torch.Generator) -> dict:
        """Loss of one packed batch; the mask is drawn from ``generator`` (CPU).

        Returns ``loss`` (reconstruction + weight x contrastive), ``reconstruction``,
        ``contrastive`` (0 without positive pairs), ``masked_fraction`` (float) and ``mask``
        (bool channels x patches), ``states``.
        """
        c = self.config
        kept: dict[str, torch.Tensor] = {}

        def encode(masked_x, m):
            # robust_ssl_loss zeroed the masked input; the encoder sees nothing else of it
            kept["states"] = states = self.encoder({**batch, "x": masked_x})
            return self.head(states), None

        # the contrastive term is added here, not through robust_ssl_loss's ``groups``: region
        # embeddings (and which of them exist) depend on the mask it draws
        counts = batch["cu_channels"][1:] - batch["cu_channels"][:-1]
        out = robust_ssl_loss(encode, batch["x"], counts.cpu(), generator,
                              ratio_range=c.mask_ratio_range, reconstruction="mse")
        states, mask = kept["states"], out.mask.mask
        emb, groups = self.embeddings(batch, states, mask)
        con = group_info_nce(emb, groups, c.temperature) if len(emb) > 1 else states.sum() * 0
        return {"loss": out.reconstruction + c.contrastive_weight * con,
                "reconstruction": out.reconstruction, "contrastive": con,
                "masked_fraction": float(mask.float().mean()), "mask": mask, "states": states}

    def state_for_downstream(self) -> dict:
        """What finetuning needs: ``{"model": "rpnt", "config": ..., "encoder": state_dict}``."""
        return {"model": "rpnt", "config": self.config.to_dict(),
                "encoder": self.encoder.state_dict()}


def load_rpnt_encoder(path: str | Path, device="cpu") -> tuple[RpntEncoder, dict]:
    """The encoder saved by :meth:`RpntPretrainModel.state_for_downstream` (``torch.save``d)."""
    state = torch.load(path, map_location=device, weights_only=False)
    encoder = RpntEncoder(RpntConfig(**state["config"]))
    encoder.load_state_dict(state["encoder"])
    return encoder.to(device), state


# --- the objective, as the shared pretraining loop uses it ---------------------------------------


def rpnt_config(results: Path, encode_scale: str, size: str, overrides: dict,
                recordings: list[str]) -> RpntConfig:
    """RPNT architecture for the windows of ``recordings``: the patch geometry they all share
    (as for BaRISTA, :func:`~barista.training.pretrain.model_config`)."""
    geometry = recording_geometry(results, recordings)
    return rpnt_preset(size, patch_samples=geometry["patch_samples"],
                       n_patches=geometry["n_patches"], encode_scale=encode_scale, **overrides)


def _loss(model, batch: dict, cfg: PretrainConfig, key, first: int) -> dict:
    # one mask draw per (seed, step) for the whole batch: RPNT draws its ratios per batch, so
    # unlike BaRISTA's per-sample masks these depend on how a batch is split across processes
    generator = torch.Generator().manual_seed(seed_of(cfg.seed, "rpnt-mask", key, first))
    out = model(batch, generator)
    n = len(batch["cu_channels"]) - 1
    return {"sse": out["loss"] * n, "count": n, "masked": int(out["mask"].sum()),
            "tokens": out["mask"].numel()}


def _final_state(model: RpntPretrainModel) -> dict:
    return {**model.state_for_downstream(), "head": model.head.state_dict()}


RPNT = Objective(build=lambda config, cfg, steps_per_epoch: RpntPretrainModel(config),
                 loss=_loss, after_step=lambda model, step: {}, final_state=_final_state,
                 configure=rpnt_config, name="rpnt")
