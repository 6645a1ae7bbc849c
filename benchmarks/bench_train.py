#!/usr/bin/env python3
"""Training cost of the three modes: LoRA vs full fine-tune vs frozen text tower.

For each mode, in a fresh subprocess (so peak memory is that mode's alone): build the model
(random weights), then time optimizer steps (forward of both towers, InfoNCE, backward,
AdamW step) on a random batch after ``--warmup`` untimed steps (which also allocate AdamW's
state). Reports trainable parameters, the median step time and peak memory, with ratios to
the full fine-tune of the same run. Memory: on CPU the growth of the peak RSS
(``getrusage`` max RSS) over the RSS after the model is built, i.e. activations + gradients +
optimizer state; on a GPU ``torch.cuda.max_memory_allocated`` during the steps.

Example (ViT-B/16 at 384x128, batch 8, 2 threads; a few minutes on 2 busy CPU cores):
    python -m benchmarks.bench_train --arch ViT-B-16 --image-size 384x128 --batch 8 --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys

from benchmarks.common import ROOT, peak_rss_mb, rss_mb, time_calls

MODES = ("full", "frozen-text", "lora")
CAPTIONS = ("a man in a red jacket and black trousers", "a woman with a white bag and a blue skirt",
            "a child in a yellow coat", "a person wearing a grey hoodie and jeans")


def child(a) -> dict:
    """Build one mode's model and time its steps; return the figures."""
    import torch

    from person_search.lab.train.config import TrainConfig
    from person_search.lab.train.loop import forward_loss, param_groups, resolve_device
    from person_search.lab.train.model import build_trainable

    torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.image_size.split("x"))
    cfg = TrainConfig(arch=a.arch, image_height=h, image_width=w, mode=a.child, lora_rank=a.lora_rank,
                      lora_alpha=2.0 * a.lora_rank, batch_size=a.batch, device=a.device, precision=a.precision,
                      lr=1e-5, threads=a.threads)
    device, amp = resolve_device(cfg)
    t = build_trainable(cfg)
    clip = t.clip.to(device).train()
    trainable, total = t.parameter_counts()
    opt = torch.optim.AdamW(param_groups(clip, 0.02), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(a.batch, 3, h, w, generator=g)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(a.batch)]
    labels = torch.arange(a.batch)

    def step() -> None:
        loss = forward_loss(t, cfg, images, captions, labels, device, amp)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    rss_built = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    times = time_calls(step, calls=a.steps, max_calls=a.steps, warmup=a.warmup, sync=sync)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = peak_rss_mb() - rss_built
    return {"mode": a.child, "trainable": trainable, "total": total, "step_s": statistics.median(times),
            "steps": times, "peak_mb": peak, "model_rss_mb": rss_built, "device": str(device),
            "amp": str(amp) if amp else "fp32"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="ViT-B-16")
    p.add_argument("--image-size", default="384x128", help="HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", default="auto", help="autocast on a GPU: auto, bf16, fp16, fp32")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    logging.disable(logging.WARNING)
    if a.child:
        print("RESULT " + json.dumps(child(a)))
        return 0

    from tqdm import tqdm
    rows = {}
    for mode in tqdm(a.modes, desc="modes", unit="mode", file=sys.stderr):
        argv = [sys.executable, "-m", "benchmarks.bench_train", "--child", mode] + [
            x for k in ("arch", "image_size", "batch", "steps", "warmup", "threads", "lora_rank", "device",
                        "precision") for x in (f"--{k.replace('_', '-')}", str(getattr(a, k)))]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"error: {mode} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}",
                  file=sys.stderr)
            return 1
        rows[mode] = json.loads(line[0][7:])
    ref = rows.get("full")
    first = next(iter(rows.values()))
    print(f"\n{a.arch} {a.image_size}, batch {a.batch}, {a.threads} threads, {first['device']} {first['amp']}, "
          f"median of {a.steps} steps after {a.warmup} warm-up; LoRA r={a.lora_rank} on qkv/out_proj/c_fc/c_proj "
          f"+ projections; memory = {'peak allocated' if first['device'].startswith('cuda') else 'peak RSS growth'} "
          f"during the steps")
    print(f"{'mode':<12} {'trainable':>12} {'share':>7} {'step s':>8} {'x full':>7} {'peak MB':>9} {'x full':>7}")
    for mode, r in rows.items():
        st = f"{r['step_s'] / ref['step_s']:.2f}" if ref else "-"
        mem = f"{r['peak_mb'] / ref['peak_mb']:.2f}" if ref and ref["peak_mb"] > 0 else "-"
        print(f"{mode:<12} {r['trainable']:>12,} {100 * r['trainable'] / r['total']:>6.2f}% {r['step_s']:>8.2f} "
              f"{st:>7} {r['peak_mb']:>9.0f} {mem:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
