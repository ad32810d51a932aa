import pytest

from barista.config import active_scales, config_hash, load_config, validate_config
from barista.errors import ConfigError


def test_defaults_fill_an_empty_config():
    cfg = validate_config({})
    assert cfg["segments"]["length_s"] == 3.0 and cfg["segments"]["n_patches"] == 12
    assert cfg["preprocess"]["reference"] == "laplacian"
    assert active_scales(cfg) == ["channel", "parcel", "lobe"]
    assert cfg["scales"]["lobe"]["separate_mtl"] is True


def test_shipped_config_is_valid():
    cfg = load_config("config/config.yaml")
    assert cfg["dataset"]["source"] == "simulate"


@pytest.mark.parametrize(("cfg", "key"), [
    ({"preprocess": {"resample_hz": "fast"}}, "preprocess.resample_hz"),
    ({"segments": {"n_patches": 1.5}}, "segments.n_patches"),
    ({"preprocess": {"reference": "average"}}, "preprocess.reference"),
    ({"scales": {"voxel": {}}}, "scales"),
    ({"dataset": {"source": "openneuro"}}, "dataset.openneuro.id"),
    ({"splits": {"random": {"train": 0.9, "val": 0.1, "test": 0.1}}}, "splits.random"),
    ({"preprocess": {"bandpass": [100, 1]}}, "preprocess.bandpass"),
])
def test_bad_values_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(cfg)


def test_bad_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("segments:\n  length_s: long\n")
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml.*segments\.length_s"):
        load_config(path)


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_visible_gpus_reads_the_environment_not_torch(monkeypatch, tmp_path):
    from barista.config import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_gpus() == 2
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert visible_gpus() == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    fake = tmp_path / "nvidia-smi"  # lists two GPUs, as the real tool does
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\n"
                    "echo 'GPU 1: NVIDIA H100 (UUID: b)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == 2


def test_snakefile_parses_without_importing_torch(tmp_path):
    """Parsing the workflow (every snakemake call does it) must not pay for importing torch."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    probe = ("import sys, builtins\n"
             "real = builtins.__import__\n"
             "def guard(name, *a, **k):\n"
             "    if name == 'torch' or name.startswith('torch.'):\n"
             "        raise SystemExit('torch imported at parse time')\n"
             "    return real(name, *a, **k)\n"
             "builtins.__import__ = guard\n"
             "from snakemake.cli import main\n"
             f"sys.argv = ['snakemake', '-s', {str(repo / 'workflow/Snakefile')!r}, '-d', "
             f"{str(tmp_path)!r}, '--configfile', {str(repo / 'config/config.yaml')!r}, "
             "'-n', '--quiet', 'rules']\n"
             "main()\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "torch imported at parse time" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
