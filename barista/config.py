"""Configuration: load YAML, fill defaults and validate against the JSON schema.

The schema (``workflow/schemas/config.schema.yaml``) is the single source of truth for keys,
types and defaults; Snakemake and the library validate with the same file.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

SCALES = ("channel", "parcel", "lobe")
# the window the authors' released encoders were trained on: 3 s at 2048 Hz, 12 patches of 512
RELEASE_SFREQ = 2048.0
RELEASE_LENGTH_S = 3.0
RELEASE_PATCHES = 12
RELEASE_PATCH_SAMPLES = 512


def schema_path() -> Path:
    """Path of the JSON schema (YAML) shipped with the package."""
    return Path(str(resources.files("barista") / "resources" / "config.schema.yaml"))


def load_schema() -> dict:
    with open(schema_path(), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that it fills in ``default`` values while validating."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


@functools.lru_cache(maxsize=1)
def _validator():
    """One validator for the process: parsing the schema's YAML takes ~0.1 s, and every step
    validates its config (defaults are deep-copied out of it, so it is never changed)."""
    return _Validator(load_schema())


def _key_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: Mapping[str, Any] | None, *, partial: bool = False) -> dict:
    """Return a validated copy of ``config`` with every default filled in.

    ``partial=True`` is for the sections of an already validated config that the workflow
    hands to one step: types are checked, rules spanning sections are not (the sections left
    out are defaults, not the user's values).

    Raises
    ------
    ConfigError
        Naming the offending key (dotted path) and what is wrong with its value.
    """
    cfg = copy.deepcopy(dict(config or {}))
    _check_session_names(cfg)
    errors = sorted(_validator().iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = [f"config key '{_key_of(e)}': {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    for key in ("encode_scales", "mask_scales"):  # null: every scale that is built
        if cfg["model"][key] is None:
            cfg["model"][key] = active_scales(cfg)
    if not partial:
        _check_consistency(cfg)
    return cfg


def _check_session_names(cfg: dict) -> None:
    """YAML reads an unquoted ``1_0`` as the integer 10: say so instead of a schema error."""
    places = {"evaluation.sessions": ((cfg.get("evaluation") or {}).get("sessions") or {}),
              "dataset.braintreebank.sessions":
                  {"": ((cfg.get("dataset") or {}).get("braintreebank") or {}).get("sessions")}}
    for key, lists in places.items():
        if not isinstance(lists, dict):
            continue
        for role, names in lists.items():
            numbers = [n for n in names or [] if isinstance(n, int)] \
                if isinstance(names, list) else []
            if numbers:
                where = f"{key}.{role}" if role else key
                raise ConfigError(f"config key '{where}': {numbers} are numbers; write session "
                                  "names in quotes ('1_0'), since YAML reads 1_0 as 10")


def _check_consistency(cfg: dict) -> None:
    """Rules that a JSON schema cannot express well."""
    ds = cfg["dataset"]
    if ds["source"] == "openneuro" and not ds["openneuro"]["id"]:
        raise ConfigError("config key 'dataset.openneuro.id' is required when dataset.source is "
                          "'openneuro' (e.g. ds005574)")
    if ds["source"] == "local" and not ds["local"]["bids_root"]:
        raise ConfigError("config key 'dataset.local.bids_root' is required when dataset.source "
                          "is 'local'")
    if ds["source"] == "braintreebank" and cfg["preprocess"]["reference"] == "car":
        raise ConfigError("config key 'preprocess.reference': 'car' is not available for "
                          "dataset.source 'braintreebank' (its trials are read one contact at "
                          "a time); use laplacian, bipolar or none")
    roles = cfg["evaluation"]["sessions"]
    if roles:
        seen: dict[str, str] = {}
        for role, names in roles.items():
            for name in names:
                if name in seen:
                    raise ConfigError(f"config key 'evaluation.sessions': session {name} is "
                                      f"both {seen[name]} and {role}")
                seen[name] = role
        if not roles["test"]:
            raise ConfigError("config key 'evaluation.sessions.test' is empty: no session "
                              "would be decoded")
    fractions = cfg["splits"]["random"]
    total = fractions["train"] + fractions["val"] + fractions["test"]
    if abs(total - 1.0) > 1e-6:
        raise ConfigError("config keys 'splits.random.train/val/test' must sum to 1, "
                          f"got {total:g}")
    for key in ("encode_scales", "mask_scales"):
        missing = sorted(set(cfg["model"][key]) - set(cfg["scales"]))
        if missing:
            raise ConfigError(f"config key 'model.{key}' names scales {missing} that are not "
                              "built: add them to config key 'scales'")
    pairs = {f"{e}-{m}" for e in cfg["model"]["encode_scales"] for m in cfg["model"]["mask_scales"]}
    for name, wanted in cfg["model"]["variants"].items():
        from .variants import variant_options

        try:
            variant_options(name)
        except ConfigError as err:
            raise ConfigError(f"config key 'model.variants': {err}") from None
        extra = sorted(set(wanted) - pairs) if wanted != "all" else []
        if extra:
            raise ConfigError(f"config key 'model.variants.{name}': scale pairs {extra} are not "
                              "among model.encode_scales x model.mask_scales")
    rpnt_scale = cfg["rpnt"]["encode_scale"]
    if "rpnt" in cfg["model"]["architectures"] and rpnt_scale not in cfg["scales"]:
        raise ConfigError(f"config key 'rpnt.encode_scale' names scale '{rpnt_scale}', which is "
                          f"not built (config key 'scales' has {list(cfg['scales'])}): set it "
                          "to one of them")
    missing = sorted(set(cfg["finetune"]["tasks"]) - set(cfg["segments"]["tasks"]))
    if missing:
        raise ConfigError(f"config key 'finetune.tasks' names tasks {missing} that config key "
                          "'segments.tasks' does not cut")
    if "neuroprobe" in cfg["evaluation"]["protocols"] and ds["source"] != "braintreebank":
        raise ConfigError("config key 'evaluation.protocols': neuroprobe scores Brain Treebank "
                          f"trials and needs dataset.source 'braintreebank' (is {ds['source']!r})")
    for key in ("spatial_init", "channel_coordinates"):
        if cfg["model"][key] is not None and key in cfg["model"]["overrides"]:
            raise ConfigError(f"config keys 'model.{key}' and 'model.overrides.{key}' are both "
                              "set: keep one")
    if cfg["finetune"]["barista_release"]:
        problem = release_geometry_problem(cfg)
        if problem:
            raise ConfigError(problem)
    band = cfg["preprocess"]["bandpass"]
    if band is not None and None not in band and band[0] >= band[1]:
        raise ConfigError(f"config key 'preprocess.bandpass': low edge {band[0]} must be below "
                          f"high edge {band[1]}")


def sampling_rate(cfg: dict) -> float | None:
    """The rate of the segments when the config alone says it (resampled, or simulated
    without resampling); ``None`` when it is the recordings' own."""
    if cfg["preprocess"]["resample_hz"] is not None:
        return float(cfg["preprocess"]["resample_hz"])
    if cfg["dataset"]["source"] == "simulate":
        return float(cfg["dataset"]["simulate"]["sfreq"])
    return None


def release_geometry_problem(cfg: dict) -> str | None:
    """Why ``finetune.barista_release`` cannot run with this config, or ``None``; a rate the
    config does not fix (the recordings' own) is checked on the segments instead
    (:func:`release_geometry_mismatch`)."""
    seg = cfg["segments"]
    return release_geometry_mismatch(sampling_rate(cfg), float(seg["length_s"]),
                                     int(seg["n_patches"]))


def release_geometry_mismatch(sfreq: float | None, length_s: float,
                              n_patches: int) -> str | None:
    """Why windows of ``length_s`` at ``sfreq`` in ``n_patches`` patches do not fit the
    released encoders, or ``None`` (an unknown ``sfreq`` passes).

    They read 3 s windows at 2048 Hz cut into 12 patches of 512 samples: the tokenizer's
    weights are for 512 samples and its dilations for 2048 Hz, the rotary positions for patches
    0..11.
    """
    if (length_s, n_patches) == (RELEASE_LENGTH_S, RELEASE_PATCHES) and sfreq in (
            None, RELEASE_SFREQ):
        return None
    rate = f"{sfreq:g} Hz" if sfreq is not None else "the recordings' rate"
    samples = f" = {sfreq * length_s / n_patches:g} samples" if sfreq is not None else ""
    return (f"config key 'finetune.barista_release' needs the released encoders' "
            f"{RELEASE_PATCH_SAMPLES}-sample patches ({RELEASE_SFREQ:g} Hz x "
            f"{RELEASE_LENGTH_S / RELEASE_PATCHES:g} s, {RELEASE_PATCHES} per "
            f"{RELEASE_LENGTH_S:g} s window); this config gives {rate} x {length_s:g} s / "
            f"{n_patches} patches{samples}: set preprocess.resample_hz: null with "
            f"{RELEASE_SFREQ:g} Hz data (or resample_hz: {RELEASE_SFREQ:g}), "
            f"segments.length_s: {RELEASE_LENGTH_S:g}, segments.n_patches: {RELEASE_PATCHES}")


def barista_overrides(model: dict) -> dict:
    """Architecture fields a ``model`` section sets over its size preset: ``overrides`` plus
    ``spatial_init`` and ``channel_coordinates`` where they are not null (the preset's)."""
    named = {k: model[k] for k in ("spatial_init", "channel_coordinates")
             if model.get(k) is not None}
    return {**model["overrides"], **named}


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, "
                          f"got {type(raw).__name__}")
    try:
        return validate_config(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def config_hash(section: Any) -> str:
    """Short stable hash of a config section (key order does not matter)."""
    blob = json.dumps(section, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def active_scales(cfg: Mapping[str, Any]) -> list[str]:
    """Scales to build, in canonical order."""
    return [s for s in SCALES if s in cfg["scales"]]


def visible_gpus() -> int:
    """How many CUDA GPUs this process may use, without importing torch (the Snakefile asks at
    parse time, and importing torch costs seconds): ``CUDA_VISIBLE_DEVICES`` when set, else the
    devices ``nvidia-smi -L`` lists, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d for d in visible.split(",") if d.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
