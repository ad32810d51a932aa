"""The step declarations (barista/steps.py): every rule's --params and every result row's
config_hash change exactly when a declared config key changes, and the rules take their params
from the declarations, never from section lists of their own."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from barista import cli
from barista.config import load_schema, validate_config
from barista.errors import BaristaError
from barista.steps import (
    NAMES,
    STEPS,
    SWITCHES,
    USED,
    check_params,
    closure,
    scoped_config,
    step_params,
)

REPO = Path(__file__).resolve().parents[1]
BASE = validate_config({})
SCHEMA = load_schema()["properties"]

# a valid other value for the keys whose type alone does not give one
OTHER = {
    "preprocess.line_freq": 50.0, "preprocess.notch_max_hz": 200.0,
    "preprocess.bandpass": [1.0, 100.0], "preprocess.resample_hz": 256.0,
    "model.variants": {"paper": "all", "prior+raw": "all"}, "model.overrides": {"d_model": 16},
    "model.device": "cpu", "pretrain.max_steps": 5, "finetune.repeats": 1,
    "rpnt.mask_ratio_range": [0.1, 0.9], "rpnt.overrides": {"d_model": 16},
    "release.url": "http://127.0.0.1/{name}.ckpt", "evaluation.settings": ["within_session"],
    "evaluation.window_split": "chrono", "evaluation.protocols": ["neuroprobe"],
    "evaluation.sessions": {"pretrain": ["1_0"], "test": ["1_1"]},
    "dataset.braintreebank.subjects": ["1"],
    "splits.random": {"train": 0.7, "val": 0.2, "test": 0.1},
}


def other(key: str, value, spec: dict | None = None):
    """A valid value of config key ``key`` other than ``value`` (``spec``: its schema)."""
    if key in OTHER:
        return OTHER[key]
    if spec is None:
        section, sub = key.split(".")
        spec = SCHEMA[section]["properties"][sub]
    if "enum" in spec:
        return next(v for v in spec["enum"] if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        top = spec.get("maximum", spec.get("exclusiveMaximum", float("inf")))
        if value + 1 < top:
            return value + 1
        return value - 1 if isinstance(value, int) else value / 2
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return "x"
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    if isinstance(value, dict) and value:  # one of its keys changed
        inner = sorted(value)[-1]
        sub_spec = spec.get("properties", {}).get(inner, {})
        return {**value, inner: other(f"{key}.{inner}", value[inner], sub_spec)}
    raise AssertionError(f"no other value for {key}: add one to OTHER")


KEYS = [f"{s}.{k}" for s, v in BASE.items() if s != "scales" for k in v]
# the scales' options: those of a scale the job uses, of one it does not, and which are built
SCALE_CHANGES = {
    "options of a used scale": lambda c: c["scales"]["parcel"].update(hemisphere_specific=False),
    "options of another scale": lambda c: c["scales"]["lobe"].update(separate_mtl=False),
    "which scales are built": lambda c: c["scales"].pop("lobe"),
}
JOB_SCALES = ("channel", "parcel")  # a job's scales: lobe is never one


def declared(step: str, source: str, key: str) -> bool:
    keys, _ = closure(step, source)
    return key not in SWITCHES and (key in keys or key.split(".")[0] in keys)


def outputs(step: str, config: dict) -> tuple[str, str]:
    """The params a rule passes and the config_hash the CLI writes for them."""
    params = step_params(step, config, JOB_SCALES)
    check_params(step, json.loads(params))  # the CLI accepts what the rule passes
    return params, scoped_config(step, json.loads(params)).digest


def sources_of(step: str) -> list[str]:
    if step.startswith("braintreebank-") or step == "neuroprobe-alignment":
        return ["braintreebank"]
    if step in ("simulate", "download", "local"):
        return [{"simulate": "simulate", "download": "openneuro", "local": "local"}[step]]
    return ["simulate", "braintreebank"]


CASES = [(step, source) for step in STEPS for source in sources_of(step)]


@pytest.mark.parametrize("step,source", CASES, ids=[f"{s}@{src}" for s, src in CASES])
def test_params_and_hash_change_exactly_with_a_declared_key(step, source):
    base = copy.deepcopy(BASE)
    base["dataset"]["source"] = source
    before = outputs(step, base)
    wrong = []
    for key in KEYS:
        config = copy.deepcopy(base)
        section, sub = key.split(".")
        config[section][sub] = other(key, config[section][sub])
        params, digest = outputs(step, config)
        expect = declared(step, source, key)
        if (params != before[0], digest != before[1]) != (expect, expect):
            wrong.append(f"{key} (declared: {expect}; params changed: {params != before[0]}, "
                         f"hash changed: {digest != before[1]})")
    _, kinds = closure(step, source)
    for what, change in SCALE_CHANGES.items():
        config = copy.deepcopy(base)
        change(config)
        params, digest = outputs(step, config)
        expect = {"options of a used scale": USED in kinds, "options of another scale": False,
                  "which scales are built": NAMES in kinds}[what]
        if (params != before[0], digest != before[1]) != (expect, expect):
            wrong.append(f"scales: {what}")
    assert not wrong, f"step {step} ({source}): " + "; ".join(wrong)


def test_declarations_keep_the_rerun_rules():
    """What the tests of the workflow check of re-runs, at the source: turning the random-init
    runs, the released encoders or the linear floor on or off re-runs nothing; how finetuning
    is scored never retrains a model; finetuning options never re-run the linear floor."""
    for step in STEPS:
        assert not any(declared(step, "simulate", key) for key in SWITCHES), step
    for step in ("pretrain:barista", "pretrain:rpnt", "reconstruct"):
        for key in ("evaluation.window_split", "evaluation.settings", "finetune.epochs"):
            assert not declared(step, "simulate", key), (step, key)
    assert not declared("linear", "simulate", "finetune.epochs")
    # preprocessing and segmentation shape every result: rows of runs with other
    # preprocessing never share a hash
    for step in ("finetune:barista", "finetune:barista_release", "linear", "reconstruct"):
        assert declared(step, "simulate", "preprocess.bandpass")
        assert declared(step, "simulate", "segments.length_s")


def test_a_finetune_row_hashes_the_configs_dataset_not_the_schemas():
    """A config's finetuning rows hash its own dataset, never a default filled in for a
    section the rule did not pass (dataset.name is the results folder, no option)."""
    cfg = validate_config({"dataset": {"name": "paper", "simulate": {"seed": 11}}})
    given = json.loads(step_params("finetune:barista", cfg, JOB_SCALES))
    assert set(given["dataset"]) == {"source", "simulate", "task", "space"}
    assert given["dataset"]["simulate"] == cfg["dataset"]["simulate"]
    scoped = scoped_config("finetune:barista", given)
    assert "name" not in scoped["dataset"] and scoped["dataset"]["simulate"]["seed"] == 11


def test_the_cli_takes_exactly_the_declared_closure(tmp_path, capsys):
    params = json.loads(step_params("linear", BASE))
    missing = {k: v for k, v in params.items() if k != "preprocess"}
    extra = {**params, "pretrain": BASE["pretrain"]}
    for given, words in ((missing, ["lacks", "'preprocess.bandpass'"]),
                         (extra, ["has", "'pretrain.lr'", "does not declare"])):
        status = cli.main(["linear", "--params", json.dumps(given), "--results", str(tmp_path),
                           "--recordings", str(tmp_path / "r.tsv"), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert status == 1 and "step 'linear'" in err, err
        assert all(w in err for w in words), err
    with pytest.raises(BaristaError, match="'finetune.random_init'"):
        check_params("finetune:barista",
                     {**json.loads(step_params("finetune:barista", BASE, JOB_SCALES)),
                      "finetune": BASE["finetune"]})


def test_a_step_cannot_read_a_key_it_does_not_declare():
    cfg = scoped_config("linear", json.loads(step_params("linear", BASE)))
    assert cfg["evaluation"]["window_split"] == "random"
    with pytest.raises(BaristaError, match="step 'linear' reads config key 'pretrain'"):
        cfg["pretrain"]
    with pytest.raises(BaristaError, match="config key 'finetune.epochs'"):
        cfg["finetune"]["epochs"]


def test_by_hand_the_closure_comes_from_the_config_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("segments:\n  length_s: 2.0\n")
    args = cli.build_parser().parse_args(
        ["tokens", "--config", str(path), "--scale", "parcel", "--out-dir", str(tmp_path), "x"])
    cfg = cli._params(args)
    from barista.config import load_config

    expected = step_params("tokens", load_config(path), ("parcel",))
    assert cfg.digest == scoped_config("tokens", json.loads(expected)).digest
    assert cfg["segments"]["length_s"] == 2.0 and set(cfg["scales"]["parcel"]) == {
        "hemisphere_specific"}


# --- the rules take their params from the declarations --------------------------------------


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, of every rule in workflow/rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^\s*(?:rule|checkpoint) (\w+):\n", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            blocks[f"{path.name}:{name}"] = body
    return blocks


def test_every_rule_gets_its_params_from_a_declared_step():
    commands = {s.command for s in STEPS.values()}
    checked = 0
    for name, body in rule_blocks().items():
        call = re.search(r"-m barista ([\w-]+)", body)
        if not call or call.group(1) not in commands:
            continue
        checked += 1
        assert "--params {params.cfg:q}" in body, f"{name}: --params not from params.cfg"
        cfg = re.search(r"^\s+cfg=(.*?)(?=^\s+\w+=|^\s+log:)", body, flags=re.M | re.S)
        assert cfg and "step_params(" in cfg.group(1), f"{name}: cfg is not step_params(...)"
        steps = re.findall(r'step_params\(f?"([\w:-]+)', cfg.group(1))
        assert all(s.split(":")[0] == call.group(1) or s.startswith(call.group(1) + ":")
                   for s in steps), (name, steps, call.group(1))
        assert all(s in STEPS or s.endswith(":") for s in steps), (name, steps)
    assert checked >= 20
    text = "\n".join((REPO / "workflow" / "rules" / f).read_text()
                     for f in ("common.smk", "data.smk", "model.smk", "neuroprobe.smk",
                               "braintreebank.smk"))
    for own in ("json.dumps", "as_json(", "scoped_json(", "HELDOUT", "'{{}}'"):
        assert own not in text, f"a rule builds its own params: {own}"


def test_models_do_not_import_each_other():
    """models/barista.py and models/rpnt.py share what they both need through mrope.py and
    transformer.py; each imports alone in a fresh interpreter."""
    import ast

    for name, other_ in (("barista", "rpnt"), ("rpnt", "barista")):
        tree = ast.parse((REPO / "barista" / "models" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert other_ not in imported, f"models/{name}.py imports .{other_}"
        done = subprocess.run([sys.executable, "-c", f"import barista.models.{name}"],
                              cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
