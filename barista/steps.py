"""Every workflow step, declared once: the config it reads and the steps whose results it uses.

A :class:`Step` is named by its CLI sub-command (``finetune:rpnt`` is ``barista finetune
--model rpnt``). It declares the config sections it reads itself (a whole section, or one
``section.key``), whether it reads the options of the spatial scales it uses (``scales=USED``:
only those, so one scale's options never touch another scale's jobs) or only which scales are
built (``scales=NAMES``), and the upstream steps whose results it consumes (``after``).

Its *closure* is its own sections plus the closures of its upstream steps: every option that
can change its result. Everything else is derived from this table:

- :func:`step_params`, the JSON a Snakemake rule passes (``params: cfg=``). Snakemake re-runs a
  job when its params change, so a job re-runs exactly when its closure changes;
- the CLI checks that the JSON it gets holds exactly that closure (:func:`check_params`), lets
  the step read nothing else (:func:`scoped_config`), and writes :func:`closure_hash` as the
  ``config_hash`` of its result rows: two rows share a hash only when every option that shaped
  them is the same.

A few names in ``after`` depend on ``dataset.source`` (:data:`SOURCE_STEPS`): ``source`` is the
step that makes the raw dataset (none runs for a local BIDS folder: ``local`` stands for it),
and a Brain Treebank release has its own ``recordings``, ``preprocess``, ``localize`` and
``words`` steps.

Keys that only say which jobs exist (:data:`SWITCHES`: turning the random-init runs, the
released encoders or the linear floor on or off, the number of pretraining runs and of those
finetuned) belong to no closure: changing them adds or removes jobs and never re-runs the others.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .config import active_scales, config_hash, validate_config
from .errors import BaristaError

USED = "used"  # the options of the scales the job uses
NAMES = "names"  # which scales are built, not their options

SWITCHES = ("finetune.random_init", "finetune.barista_release", "finetune.linear_baseline",
            # how many pretraining runs there are and how many are finetuned: more runs are
            # more jobs, and never re-run the runs that exist
            "pretrain.repeats", "finetune.repeats")

# what pretraining and reconstruction take from 'evaluation': which recordings pretrain and which
# are held out, so changing how finetuning is scored never retrains a model
HELDOUT = ("evaluation.heldout_sessions", "evaluation.heldout_subjects", "evaluation.sessions")


@dataclass(frozen=True)
class Step:
    name: str  # CLI sub-command, ``:model`` where the sub-command runs several models
    sections: tuple[str, ...] = ()  # config sections (or ``section.key``) it reads itself
    scales: str | None = None  # USED, NAMES or None
    after: tuple[str, ...] = ()  # steps whose results it consumes

    @property
    def command(self) -> str:
        return self.name.split(":")[0]


# finetuned encoders: model -> (its own sections, the step that makes its encoder, token scales).
# Each is finetuned by the study's protocol (finetune:<model>) and by Neuroprobe's
# (neuroprobe-finetune:<model>), which differ only in the windows they read.
ENCODER_MODELS = {
    "barista": (("model",), "pretrain:barista", USED),
    # the encoder its pretraining run starts from, built from the token table
    "random_init": (("model",), "tokens", USED),
    "rpnt": (("model", "rpnt"), "pretrain:rpnt", USED),
    # the authors' fixed encoder: no architecture option applies; its own spatial ids come
    # from our localization (segment's channel tables), no token table is read
    "barista_release": (("model.device", "model.threads"), None, None),
}

_STEPS = [
    # the raw dataset, one step per dataset.source
    Step("simulate", ("dataset.source", "dataset.simulate")),
    Step("download", ("dataset.source", "dataset.openneuro")),
    Step("braintreebank-download", ("dataset.source", "dataset.braintreebank")),
    Step("local", ("dataset.source", "dataset.local")),  # a BIDS folder: no step runs
    # BIDS datasets
    Step("recordings", ("dataset.task",), after=("source",)),
    Step("derivative", after=("source",)),
    Step("preprocess", ("preprocess",), after=("recordings",)),
    Step("localize", ("dataset.space", "atlas"), NAMES, after=("recordings",)),
    # a Brain Treebank release (not BIDS)
    Step("braintreebank-recordings", ("dataset.braintreebank", "evaluation.sessions"),
         after=("source",)),
    Step("braintreebank-preprocess", ("preprocess",), after=("recordings",)),
    Step("braintreebank-localize", after=("recordings",)),
    Step("braintreebank-words", ("segments.tasks",), after=("recordings",)),
    # windows and tokens
    Step("segment", ("segments", "splits"), after=("preprocess", "localize", "words")),
    Step("tokens", (), USED, after=("segment",)),
    # models
    Step("pretrain:barista", ("model", "pretrain", *HELDOUT), USED, after=("tokens",)),
    Step("pretrain:rpnt", ("model", "pretrain", "rpnt", *HELDOUT), USED, after=("tokens",)),
    Step("reconstruct", ("reconstruct",), USED, after=("pretrain:barista",)),
    *(Step(f"finetune:{model}", (*own, "finetune", "evaluation"), scales,
           after=tuple(filter(None, (encoder, "segment"))))
      for model, (own, encoder, scales) in ENCODER_MODELS.items()),
    Step("linear", ("finetune.tasks", "evaluation"), after=("segment",)),
    Step("collect"),
    # the Neuroprobe protocol
    Step("neuroprobe-alignment", after=("source",)),
    Step("neuroprobe-segment", ("segments", "neuroprobe"),
         after=("preprocess", "localize", "neuroprobe-alignment")),
    *(Step(f"neuroprobe-finetune:{model}", (*own, "finetune", "evaluation"), scales,
           after=tuple(filter(None, (encoder, "neuroprobe-segment"))))
      for model, (own, encoder, scales) in ENCODER_MODELS.items()),
    Step("neuroprobe-linear", after=("neuroprobe-segment",)),
]
STEPS: dict[str, Step] = {s.name: s for s in _STEPS}

# the names in `after` that stand for another step, by dataset.source (None: no step)
SOURCE_STEPS = {
    "simulate": {"source": "simulate", "words": None},
    "openneuro": {"source": "download", "words": None},
    "local": {"source": "local", "words": None},
    "braintreebank": {"source": "braintreebank-download", "words": "braintreebank-words",
                      **{n: f"braintreebank-{n}" for n in ("recordings", "preprocess",
                                                            "localize")}},
}


def closure(name: str, source: str) -> tuple[frozenset[str], frozenset[str]]:
    """The config keys (whole sections or ``section.key``) and the kinds of scale options
    (USED, NAMES) that step ``name`` depends on, for ``dataset.source`` ``source``."""
    if name not in STEPS:
        raise BaristaError(f"no workflow step {name!r} (barista/steps.py declares "
                           f"{', '.join(STEPS)})")
    step = STEPS[name]
    keys, kinds = set(step.sections), {step.scales} - {None}
    for up in step.after:
        up = SOURCE_STEPS[source].get(up, up)
        if up:
            k, s = closure(up, source)
            keys |= k
            kinds |= s
    # a whole section covers its keys
    keys = {k for k in keys if "." not in k or k.split(".")[0] not in keys}
    return frozenset(keys), frozenset(kinds)


def step_config(name: str, config: dict, scales=()) -> dict:
    """The part of a validated ``config`` that step ``name`` depends on, for a job using
    ``scales`` (the scales whose options it reads, where it reads any)."""
    keys, kinds = closure(name, config["dataset"]["source"])
    out: dict[str, Any] = {}
    for key in sorted(keys):
        section, _, sub = key.partition(".")
        if sub:
            out.setdefault(section, {})[sub] = copy.deepcopy(config[section][sub])
        else:
            out[section] = {k: copy.deepcopy(v) for k, v in config[section].items()
                            if f"{section}.{k}" not in SWITCHES}
    if kinds:
        out["scales"] = {s: {} for s in active_scales(config)} if NAMES in kinds else {}
        if USED in kinds:
            out["scales"].update({s: copy.deepcopy(config["scales"][s]) for s in scales
                                  if s in config["scales"]})
    return out


def step_params(name: str, config: dict, scales=()) -> str:
    """:func:`step_config` as the JSON string a rule passes to ``--params``."""
    return json.dumps(step_config(name, config, scales), sort_keys=True)


def _schema_keys() -> dict[str, set[str]]:
    return {section: set(values) for section, values in validate_config({}).items()
            if isinstance(values, dict)}


def check_params(name: str, given: dict) -> None:
    """Stop unless ``given`` (a rule's ``--params``) holds exactly step ``name``'s closure."""
    source = (given.get("dataset") or {}).get("source", "simulate")
    if source not in SOURCE_STEPS:
        raise BaristaError(f"step {name!r}: dataset.source {source!r} is not one of "
                           f"{sorted(SOURCE_STEPS)}")
    keys, kinds = closure(name, source)
    schema = _schema_keys()
    declared = {k for k in keys if "." in k}
    declared |= {f"{k}.{sub}" for k in keys if "." not in k for sub in schema[k]} - set(SWITCHES)
    got = set()
    for section, values in given.items():
        if section == "scales" or not isinstance(values, dict):
            got.add(section)
        else:
            got |= {f"{section}.{sub}" for sub in values}
    if kinds:
        declared.add("scales")
    missing, extra = sorted(declared - got), sorted(got - declared)
    if missing or extra:
        raise BaristaError(
            f"step {name!r} takes the config it declares in barista/steps.py and no other: "
            + "; ".join(filter(None, [missing and f"--params lacks {missing}",
                                      extra and f"--params has {extra}, which it does not "
                                                "declare"])))


class ScopedConfig(dict):
    """A step's config: reading a section (or key) the step does not declare is an error,
    never a schema default."""

    def __init__(self, step: str, values: dict, where: str = ""):
        super().__init__({k: ScopedConfig(step, v, f"{where}{k}.") if isinstance(v, dict)
                          and not where else v for k, v in values.items()})
        self.step, self.where = step, where

    def __missing__(self, key):
        raise BaristaError(f"step {self.step!r} reads config key '{self.where}{key}', which "
                           "barista/steps.py does not declare for it")

    def __deepcopy__(self, memo):
        out = ScopedConfig(self.step, copy.deepcopy(dict(self), memo), self.where)
        out.__dict__.update(self.__dict__)
        return out


def scoped_config(name: str, given: dict) -> ScopedConfig:
    """Step ``name``'s config from its closure ``given`` (validated, defaults filled only
    inside the declared keys); its ``digest`` is the hash of that closure (the result rows'
    ``config_hash``)."""
    full = validate_config(given, partial=True)
    keys, kinds = closure(name, full["dataset"]["source"])
    values: dict[str, Any] = {}
    for key in keys:
        section, _, sub = key.partition(".")
        if sub:
            values.setdefault(section, {})[sub] = full[section][sub]
        else:
            values[section] = {k: v for k, v in full[section].items()
                               if f"{section}.{k}" not in SWITCHES}
    if kinds:
        values["scales"] = full["scales"]
    cfg = ScopedConfig(name, values)
    cfg.digest = config_hash(values)
    return cfg
