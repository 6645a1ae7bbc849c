#!/usr/bin/env python3
"""Training cost of the three modes: LoRA vs full fine-tune vs frozen text tower.

For each mode, in a fresh subprocess (so peak memory is that mode's alone): build the model
(random weights), then time optimizer steps (forward of both towers, InfoNCE, backward,
AdamW step) on a random batch after ``--warmup`` untimed steps (which also allocate AdamW's
state). Reports trainable parameters, the median step time and peak memory, with ratios to
the full fine-tune of the same run. Memory: on CPU the growth of the peak RSS
(``getrusage`` max RSS) over the RSS after the model is built, i.e. activations + gradients +
optimizer state; on a GPU ``torch.cuda.max_memory_allocated`` during the steps.

With ``--json FILE`` the figures are written with the run record (commit, arguments, machine, load at start
and end, and the load when each mode started); ``--doc docs/lab.md`` rewrites the document's
``<!-- results:bench_train -->`` block from them, ``--from-json FILE --doc docs/lab.md`` redraws it without measuring.

Example (ViT-B/16 at 384x128, batch 8, 2 threads; 7.2 min on 2 CPU cores under a load average of 5-10):
    python -m benchmarks.bench_train --arch ViT-B-16 --image-size 384x128 --batch 8 --steps 2 --threads 2 \
        --json docs/bench_train.json --doc docs/lab.md
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys

from pathlib import Path

from benchmarks.common import (ROOT, add_results_args, check_results_args, cpu_line, describe_run, load_average,
                               new_record, peak_rss_mb, replace_block, rss_mb, time_calls, write_results)

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
    load_start = round(load_average()[0], 2)
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
            "amp": str(amp) if amp else "fp32", "load1_start": load_start, "load1_end": round(load_average()[0], 2)}


def header(result: dict) -> str:
    """Return the sentence that says what the table measured (arch, size, batch, threads, device, steps)."""
    a = result["run"]["args"]
    first = result["rows"][0]
    memory = "peak allocated" if first["device"].startswith("cuda") else "peak RSS growth"
    return (f"{a['arch']} {a['image_size']}, batch {a['batch']}, {a['threads']} threads, random weights, "
            f"{first['device']} {first['amp']}, one fresh process per mode, median of {a['steps']} steps after "
            f"{a['warmup']} warm-up; LoRA r={a['lora_rank']} on qkv/out_proj/c_fc/c_proj + projections; "
            f"memory = {memory} during the steps")


def table(result: dict) -> list:
    """Return the rows of the results as a Markdown table, ratios to the full fine-tune of the same run."""
    rows = result["rows"]
    ref = next((r for r in rows if r["mode"] == "full"), None)
    out = ["| mode | trainable | share | step s (min-max) | x full | peak MB | x full | load at start |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        st = f"{r['step_s'] / ref['step_s']:.2f}" if ref else "-"
        mem = f"{r['peak_mb'] / ref['peak_mb']:.2f}" if ref and ref["peak_mb"] > 0 else "-"
        out.append(f"| {r['mode']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} % | "
                   f"{r['step_s']:.2f} ({min(r['steps']):.2f}-{max(r['steps']):.2f}) | {st} | "
                   f"{r['peak_mb']:.0f} | {mem} | "
                   f"{r.get('load1_start', float('nan')):.1f} |")
    return out


def command(args: dict) -> str:
    """Return the command line that measures with ``args`` (the record's arguments)."""
    parts = ["tools/env.sh python -m benchmarks.bench_train"]
    for k in ("arch", "image_size", "batch", "steps", "warmup", "threads", "lora_rank", "device"):
        parts.append(f"--{k.replace('_', '-')} {args[k]}")
    if args.get("modes") and list(args["modes"]) != list(MODES):
        parts.append("--modes " + " ".join(args["modes"]))
    return " ".join(parts) + f" --json {args.get('json') or 'FILE'} --doc {args.get('doc') or 'docs/lab.md'}"


def doc_block(result: dict) -> str:
    """Return the document's block of a results file: the command, the run record, the table."""
    run = result["run"]
    lines = [f"Generated by `{command(run['args'])}` into [bench_train.json](bench_train.json) ({describe_run(run)}; "
             f"redraw: `tools/env.sh python -m benchmarks.bench_train --from-json docs/bench_train.json "
             f"--doc docs/lab.md`). {header(result)}. Step times move with the load of the shared cores; ratios "
             "are between the modes of this one run.", ""]
    return "\n".join(lines + table(result))


def main(argv=None) -> int:
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
    add_results_args(p, "bench_train")
    a = p.parse_args(argv)
    check_results_args(p, a)
    logging.disable(logging.WARNING)
    if a.child:
        print("RESULT " + json.dumps(child(a)))
        return 0
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
        return 0 if not a.doc or replace_block(a.doc, "bench_train", doc_block(result)) else 2
    record = new_record({k: v for k, v in vars(a).items() if k != "child"}, "bench_train")
    print(cpu_line(), file=sys.stderr)

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
    result = {"run": record, "rows": list(rows.values())}
    print("\n" + header(result))
    print("\n".join(table(result)))
    print(f"CPU at the end: {cpu_line()}")
    if a.json:
        result = json.loads(write_results(a.json, record, rows=result["rows"]).read_text())
        if a.doc and not replace_block(a.doc, "bench_train", doc_block(result)):
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
