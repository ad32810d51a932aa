"""Pretraining step throughput: packed (fused) attention against a padded, unfused baseline.

Each variant runs the same BaRISTA pretraining step (forward, backward, AdamW, EMA update) on the
same synthetic packed batches. The baseline pads every sample to the longest and runs masked math
attention, as a naive implementation would; the packed variant uses ``attention="auto"``
(FlashAttention varlen on CUDA, length-bucketed fused SDPA elsewhere) and bf16 autocast on CUDA.
The ``rpnt`` variant runs an RPNT pretraining step (context attention over materialised score
maps, MRoPE, stochastic causal masking, contrastive term) on the same batches and presets, so
its throughput reads against BaRISTA's packed step. Every variant runs in its own subprocess so
peak memory is its own.

    python benchmarks/train_step.py                      # CPU: demo size and paper size
    python benchmarks/train_step.py --device cuda        # GPU: paper size, batch 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def synthetic_batch(batch_size: int, n_patches: int, patch: int, seed: int, vocab: int = 150):
    """A packed batch whose channel counts come from a pool of 17 'recordings' (72-205
    channels, mean about 125, as the paper's sessions), so lengths repeat as in real data."""
    rng = np.random.default_rng(seed)
    pool = np.clip(rng.normal(125, 35, 17).round().astype(int), 72, 205)
    counts = torch.tensor(rng.choice(pool, batch_size))
    total = int(counts.sum())
    cu = torch.zeros(batch_size + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(counts, 0)
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(total, n_patches, patch, generator=g),
        "spatial_id": torch.randint(0, vocab, (total,), generator=g),
        "group_id": torch.randint(0, 40, (total,), generator=g),
        "coords": torch.randn(total, 3, generator=g) * 40,
        "n_channels": counts,
        "cu_channels": cu,
    }


def run_variant(args) -> dict:
    """One variant in this process: time ``args.steps`` steps after ``args.warmup`` warm-up."""
    from barista.models import preset
    from barista.training.common import autocast, to_device
    from barista.training.masking import group_mask
    from barista.training.pretrain import MaskedLatentModel

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.variant == "rpnt":
        return run_rpnt(args, device)
    attention = "padded" if args.variant == "padded" else "auto"
    cfg = preset(args.size, patch_samples=args.patch, n_patches=args.patches, vocab_size=150,
                 encode_scale="parcel", attention=attention)
    torch.manual_seed(0)
    model = MaskedLatentModel(cfg, ema_ramp_steps=100).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [to_device(synthetic_batch(args.batch, args.patches, args.patch, s), device)
               for s in range(2)]
    use_amp = args.variant != "padded" and device.type == "cuda"
    gen = torch.Generator().manual_seed(0)

    def step(i):
        b = batches[i % 2]
        mask = group_mask(b["group_id"], b["cu_channels"], 0.3, gen)
        ctx = autocast(device) if use_amp else torch.autocast(device.type, enabled=False)
        with ctx:
            loss = model(b, mask)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.target.update(model.encoder.tokenizer, i + 1)

    return _time(step, args, device, batches, model)


def run_rpnt(args, device) -> dict:
    """The RPNT pretraining step on the same synthetic batches (see :func:`run_variant`)."""
    from barista.models import rpnt_preset
    from barista.training.common import autocast, to_device
    from barista.training.rpnt_pretrain import RpntPretrainModel

    torch.manual_seed(0)
    model = RpntPretrainModel(rpnt_preset(args.size, patch_samples=args.patch,
                                          n_patches=args.patches)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [to_device(synthetic_batch(args.batch, args.patches, args.patch, s), device)
               for s in range(2)]
    for b in batches:  # windows of four sessions, so the contrast has positives
        b["recording"] = [f"sub-01_ses-0{k % 4 + 1}_task-t" for k in range(args.batch)]
    gen = torch.Generator().manual_seed(0)

    def step(i):
        with autocast(device):
            loss = model(batches[i % 2], gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _time(step, args, device, batches, model)


def _time(step, args, device, batches, model) -> dict:
    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    tokens = sum(int(b["n_channels"].sum()) for b in batches) / 2 * args.patches
    out = {"variant": args.variant, "size": args.size, "device": str(device),
           "batch": args.batch, "tokens_per_step": tokens, "seconds_per_step": seconds,
           "steps_per_s": 1 / seconds, "tokens_per_s": tokens / seconds,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "n_parameters": sum(p.numel() for p in model.encoder.parameters())}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", nargs="+", default=None,
                   help="presets to run (default: demo and paper on CPU, paper on CUDA)")
    p.add_argument("--batch", type=int, default=None, help="samples per step")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--variants", nargs="+", default=["padded", "packed", "rpnt"],
                   choices=["padded", "packed", "rpnt"])
    p.add_argument("--out", default=str(HERE / "results" / "train_step.json"))
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant
    p.add_argument("--size", help=argparse.SUPPRESS)
    p.add_argument("--patch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--patches", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:
        print(json.dumps(run_variant(args)))
        return 0

    cuda = args.device.startswith("cuda")
    sizes = args.sizes or (["paper"] if cuda else ["demo", "paper"])
    geometry = {"paper": (12, 512), "demo": (8, 64)}
    rows = []
    for size in sizes:
        batch = args.batch or (128 if cuda else (32 if size == "demo" else 4))
        steps = args.steps or (20 if cuda else 3)
        for variant in args.variants:
            patches, patch = geometry[size]
            cmd = [sys.executable, __file__, "--variant", variant, "--size", size,
                   "--device", args.device, "--batch", str(batch), "--steps", str(steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--patch", str(patch), "--patches", str(patches)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    for size in sizes:
        base = next(r for r in rows if r["size"] == size and r["variant"] == "padded")
        fast = next(r for r in rows if r["size"] == size and r["variant"] == "packed")
        rpnt = next((r for r in rows if r["size"] == size and r["variant"] == "rpnt"), None)
        if rpnt is not None:
            rpnt["throughput_vs_barista_packed"] = rpnt["tokens_per_s"] / fast["tokens_per_s"]
        fast["speedup_vs_padded"] = fast["tokens_per_s"] / base["tokens_per_s"]
        fast["memory_vs_padded"] = (fast.get("peak_gpu_mib", fast["peak_rss_mib"])
                                    / base.get("peak_gpu_mib", base["peak_rss_mib"]))
        if size == "paper":
            # the paper: about 19,500 steps of batch 128
            per_step = fast["seconds_per_step"] * 128 / fast["batch"]
            fast["paper_pretraining_hours"] = 19500 * per_step / 3600
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "threads": args.threads},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{'size':6} {'variant':8} {'batch':>5} {'tokens/s':>10} {'s/step':>8} "
          f"{'peak MiB':>9} {'speedup':>8}")
    for r in rows:
        mem = r.get("peak_gpu_mib", r["peak_rss_mib"])
        print(f"{r['size']:6} {r['variant']:8} {r['batch']:5d} {r['tokens_per_s']:10.0f} "
              f"{r['seconds_per_step']:8.3f} {mem:9.0f} "
              f"{r.get('speedup_vs_padded', r.get('throughput_vs_barista_packed', 1)):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
