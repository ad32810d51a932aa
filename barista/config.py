"""Configuration: load YAML, fill defaults and validate against the JSON schema.

The schema (``workflow/schemas/config.schema.yaml``) is the single source of truth for keys,
types and defaults; Snakemake and the library validate with the same file.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError

SCALES = ("channel", "parcel", "lobe")


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
    errors = sorted(_Validator(load_schema()).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        lines = [f"config key '{_key_of(e)}': {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    if not partial:
        _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: dict) -> None:
    """Rules that a JSON schema cannot express well."""
    ds = cfg["dataset"]
    if ds["source"] == "openneuro" and not ds["openneuro"]["id"]:
        raise ConfigError("config key 'dataset.openneuro.id' is required when dataset.source is "
                          "'openneuro' (e.g. ds005574)")
    if ds["source"] == "local" and not ds["local"]["bids_root"]:
        raise ConfigError("config key 'dataset.local.bids_root' is required when dataset.source "
                          "is 'local'")
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
    missing = sorted(set(cfg["finetune"]["tasks"]) - set(cfg["segments"]["tasks"]))
    if missing:
        raise ConfigError(f"config key 'finetune.tasks' names tasks {missing} that config key "
                          "'segments.tasks' does not cut")
    band = cfg["preprocess"]["bandpass"]
    if band is not None and None not in band and band[0] >= band[1]:
        raise ConfigError(f"config key 'preprocess.bandpass': low edge {band[0]} must be below "
                          f"high edge {band[1]}")


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
