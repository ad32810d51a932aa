"""Pretraining variants: the paper's method and the named departures from it.

A variant is a set of model options that change *how BaRISTA pretrains*, and its name is
derived from them, so every result row says which method produced it (``model = barista,
variant = paper`` is the paper's method; anything else is ours):

| name part | option | meaning |
|---|---|---|
| ``prior`` | ``attention_prior: distance`` | the learnable distance / same-patch attention bias |
| ``raw`` | ``target: raw`` | predict the masked patch's samples |
| ``logspec`` | ``target: logspec`` | predict its log power spectrum |
| ``raw+logspec`` | ``target: raw+logspec`` | both |

Parts are joined by ``+`` in the order of the table (``prior+raw``, ``prior+raw+logspec``);
``paper`` is the name of no departure at all. Models without variants (the linear floor, RPNT)
get :data:`barista.evaluation.NONE`.

The target decides only what pretraining predicts, not the encoder: every variant with the prior
starts from the same encoder (``prior``), every variant without it from the paper's
(:func:`init_variant`), so one random-init model serves as the paired baseline of all of them.
"""

from __future__ import annotations

from .errors import ConfigError

PAPER = "paper"
DEFAULTS = {"attention_prior": "none", "target": "latent"}
TARGET_PARTS = ("raw", "logspec")  # in name order


def variant_name(options) -> str:
    """The name of a model config (a ``BaristaConfig`` or a dict of its fields)."""
    get = options.get if isinstance(options, dict) else (lambda k, d: getattr(options, k, d))
    parts = []
    if get("attention_prior", "none") != "none":
        parts.append("prior")
    target = get("target", "latent")
    if target != "latent":
        parts.append(target)
    return "+".join(parts) or PAPER


def variant_options(name: str) -> dict:
    """The model options of a variant name (the inverse of :func:`variant_name`)."""
    if name == PAPER:
        return dict(DEFAULTS)
    parts = name.split("+")
    unknown = [p for p in parts if p not in ("prior", *TARGET_PARTS)]
    if unknown or len(set(parts)) != len(parts):
        raise ConfigError(f"variant {name!r}: unknown or repeated part(s) {unknown or parts}; "
                          f"a variant is '{PAPER}' or parts of prior, raw, logspec joined by '+'")
    targets = [p for p in TARGET_PARTS if p in parts]
    options = {"attention_prior": "distance" if "prior" in parts else "none",
               "target": "+".join(targets) or "latent"}
    if variant_name(options) != name:
        raise ConfigError(f"variant {name!r} is spelled {variant_name(options)!r}")
    return options


def init_variant(name: str) -> str:
    """The variant whose encoder a variant's pretraining starts from: its name without the
    target (``prior+raw`` -> ``prior``, ``raw`` -> ``paper``). Its random init is the paired
    baseline of every variant that maps to it."""
    return variant_name({**variant_options(name), "target": "latent"})
