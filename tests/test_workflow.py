"""The data half of the DAG, run end to end by Snakemake on a tiny simulated dataset."""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mne
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# the data stage's test configuration, shared with CI's dry runs (tests/test_catalog.py)
TINY = yaml.safe_load((REPO / ".test/config_data/config.yaml").read_text())

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("snakemake") is None, reason="needs snakemake")]


def snakemake(workdir: Path, *args: str, config: dict | None = None,
              target: str = "data") -> str:
    cfg = workdir / "config.yaml"
    cfg.write_text(yaml.safe_dump(config or TINY))
    cmd = ["snakemake", "-s", str(REPO / "workflow/Snakefile"), "--directory", str(workdir),
           "--configfile", str(cfg), "--cores", "2", target, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def planned_jobs(log: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run, and the jobs of the finetune
    rule by model (``finetune:barista``, ``finetune:rpnt``, ...: its encoder wildcard's first
    part)."""
    if "Nothing to be done" in log:
        return {}
    table = log.split("Job stats:")[1].split("\n\n")[0]
    rows = (re.match(r"^(\w+)\s+(\d+)$", line.strip()) for line in table.splitlines())
    jobs = {m.group(1): int(m.group(2)) for m in rows if m and m.group(1) != "total"}
    blocks = re.split(r"^(?:local)?(?:rule|checkpoint) (\w+):$", log, flags=re.M)
    for rule, body in zip(blocks[1::2], blocks[2::2], strict=True):
        encoder = re.search(r"wildcards: .*?encoder=([^,\s]+)", body)
        if rule == "finetune" and encoder:
            key = f"finetune:{encoder.group(1).split('/')[0]}"
            jobs[key] = jobs.get(key, 0) + 1
    return jobs


def digests(root: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob(pattern))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("workflow")
    snakemake(wd)
    return wd


def test_outputs(workdir):
    res = workdir / "results" / "tiny"
    recs = pd.read_csv(res / "recordings.tsv", sep="\t", dtype=str)
    assert list(recs["subject"]) == ["01", "02"]
    for rec in recs["recording"]:
        seg = res / "segments" / rec
        assert {p.name for p in seg.iterdir()} >= {"signal.parquet", "channels.parquet",
                                                   "index.parquet", "splits.parquet"}
        index = pd.read_parquet(seg / "index.parquet")
        assert set(index["kind"]) == {"pretrain", "speech_vs_nonspeech", "sentence_onset"}
    fif = next((res / "derivatives" / "barista-preproc").rglob("*_desc-preproc_ieeg.fif"))
    raw = mne.io.read_raw_fif(fif, verbose="error")
    assert raw.info["sfreq"] == 128.0
    desc = (res / "derivatives" / "barista-preproc" / "dataset_description.json").read_text()
    assert '"DatasetType": "derivative"' in desc and "GeneratedBy" in desc
    for scale in ("channel", "parcel", "lobe"):
        tokens = pd.read_parquet(res / "tokens" / scale / "channels.parquet")
        vocab = pd.read_parquet(res / "tokens" / scale / "vocab.parquet")
        assert set(tokens["token_id"]) <= set(vocab["token_id"])
    logs = [p.relative_to(res / "logs") for p in (res / "logs").rglob("*.log")]
    for rule in ("simulate", "recordings", "preprocess", "localize", "segment", "tokens"):
        assert any(rule in (p.parts[0], p.stem) for p in logs), f"no log for rule {rule}"


def test_second_run_has_nothing_to_do(workdir):
    assert planned_jobs(snakemake(workdir, "-n")) == {}


def test_lobe_option_rebuilds_only_lobe_tables(workdir):
    tokens = workdir / "results" / "tiny" / "tokens"
    before = {s: (tokens / s / "channels.parquet").stat().st_mtime_ns
              for s in ("channel", "parcel", "lobe")}
    changed = {**TINY, "scales": {"channel": {}, "parcel": {},
                                  "lobe": {"separate_mtl": False}}}
    assert planned_jobs(snakemake(workdir, "-n", config=changed)) == {"tokens": 1, "data": 1}
    snakemake(workdir, config=changed)
    after = {s: (tokens / s / "channels.parquet").stat().st_mtime_ns
             for s in ("channel", "parcel", "lobe")}
    assert after["lobe"] != before["lobe"]
    assert after["channel"] == before["channel"] and after["parcel"] == before["parcel"]
    assert "limbic" in "".join(pd.read_parquet(tokens / "lobe" / "channels.parquet")["label"])
    snakemake(workdir)  # back to the default


def test_same_config_same_bytes(workdir):
    res = workdir / "results" / "tiny"
    patterns = ("segments/*/*.parquet", "tokens/*/*.parquet", "localization/*.parquet")
    before = {p: digests(res, p) for p in patterns}
    snakemake(workdir, "--forcerun", "simulate")
    after = {p: digests(res, p) for p in patterns}
    assert all(before[p] for p in patterns)
    assert before == after


def test_loader_on_workflow_output(workdir):
    from barista.data import SegmentDataset, make_loader

    res = workdir / "results" / "tiny"
    recs = pd.read_csv(res / "recordings.tsv", sep="\t", dtype=str)["recording"].tolist()
    ds = SegmentDataset(res, "speech_vs_nonspeech", recordings=recs, encode_scale="parcel",
                        mask_scale="lobe", roles=("train",))
    batch = next(iter(make_loader(ds, batch_size=4, seed=0)))
    assert batch["x"].shape[1:] == (4, 64)
    assert batch["cu_channels"][-1] == batch["x"].shape[0] == batch["spatial_id"].shape[0]
    assert set(batch["label"].tolist()) <= {0, 1}


def test_cli_entry_point():
    done = subprocess.run([sys.executable, "-m", "barista", "--help"], capture_output=True,
                          text=True, check=True)
    for step in ("simulate", "download", "preprocess", "localize", "segment", "tokens"):
        assert step in done.stdout


def test_tokens_readable_without_barista(workdir):
    """The docs/tokens.md recipe: duckdb alone joins windows, labels and parcels."""
    duckdb = pytest.importorskip("duckdb")
    res = workdir / "results" / "tiny"
    rec_dir = sorted((res / "segments").iterdir())[0]
    table = duckdb.sql(f"""
      SELECT i.segment, i.label, s.channel, t.label AS parcel, s.data
      FROM '{rec_dir}/index.parquet' i
      JOIN '{rec_dir}/signal.parquet' s USING (segment)
      JOIN '{res}/tokens/parcel/channels.parquet' t
        ON t.recording = i.recording AND t.channel = s.channel
      WHERE i.kind = 'speech_vs_nonspeech'
      ORDER BY i.segment, s.channel""").df()
    n_windows = (pd.read_parquet(rec_dir / "index.parquet")["kind"]
                 == "speech_vs_nonspeech").sum()
    n_channels = len(pd.read_parquet(rec_dir / "channels.parquet"))
    assert len(table) == n_windows * n_channels
    assert set(table["label"]) == {0, 1}
    assert len(table["data"].iloc[0]) == 256  # 2 s at 128 Hz
