"""The cells of ``attention_study.py``, each run in a fresh subprocess: speed/memory of one tower, or one training.

    python -m benchmarks.study_cells speed '{"arch": "ViT-B-16", "attention": {"kind": "window"}, ...}'
    python -m benchmarks.study_cells train '{"arch": "PS-Study-ViT", "seed": 0, ...}'

Prints one JSON line (the cell's result) last. Speed: crops/s per batch (the best of the
first call and further calls until ``min_s`` seconds or ``max_iters`` calls), peak memory growth of the first call
per batch (free heap given back with glibc's ``malloc_trim``, then VmHWM after resetting it
through /proc/self/clear_refs, minus VmRSS before: the memory the forward touched), and the analytic attention
figures of the built kernels. Train: the study's fixed recipe on a generated dataset (the seed draws the
initial weights, the data order and the augmentation) through ``person-search train``'s loop and losses
(``person_search.lab.train``), then Rank-1 / mAP on its test split through the encoder serving uses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import proc_status_bytes, reset_peak_rss, time_calls


def vit_kernels(attention: dict, grid, layers: int = 12, width: int = 768, heads: int = 12) -> list:
    """Return the image-tower kernels of a ViT (ViT-B/16 by default) with ``attention`` at ``grid``, no model built."""
    from person_search.core.attention.kernels import LayerContext
    from person_search.core.attention.registry import KERNELS
    from person_search.core.config import AttentionConfig

    cfg = AttentionConfig(**attention)
    return [KERNELS.get(cfg.kind)(cfg, LayerContext(tower="image", layer=i, num_layers=layers, embed_dim=width,
                                                    num_heads=heads, grid=tuple(grid), prefix_tokens=1,
                                                    seq_len=1 + grid[0] * grid[1]))
            for i in range(layers)]


def attention_figures(kernels: list) -> dict:
    """Return analytic attention figures of image-tower kernels: token-layers, score entries, FLOPs, peak scores."""
    from person_search.core.attention.lam import LamKernel
    from person_search.core.attention.local import WindowKernel
    from person_search.core.attention.prune import PruneKernel, token_schedule

    kernels = [k for k in kernels if k.ctx.tower == "image" and k.ctx.seq_len]
    if not kernels:
        return {}
    tokens = entries = flops = peak = 0  # peak: largest score matrix of one image and one head (entries)
    for k in kernels:
        ctx = k.ctx
        n = ctx.seq_len
        if isinstance(k, PruneKernel):
            n = token_schedule(k.cfg, ctx.num_layers, ctx.seq_len, ctx.prefix_tokens)[ctx.layer][0]
        if isinstance(k, WindowKernel) and k.active:
            parts = [ctx.prefix_tokens * n] + [getattr(k, f"band{i}").numel() for i in range(len(k.bands))]
            e, top = sum(parts), max(parts)
        else:
            e = top = n * n
        tokens += n
        entries += e
        peak = max(peak, top)
        flops += 4 * e * ctx.embed_dim  # QK^T and AV over all heads, multiply-add = 2 FLOPs
        if isinstance(k, LamKernel):
            flops += 2 * n * sum(lin.in_features * lin.out_features for lin in k.generator
                                 if isinstance(lin, torch.nn.Linear))
    return {"token_layers": tokens, "score_entries": entries, "attn_gflops": flops / 1e9,
            "peak_scores_mb_b1": peak * kernels[0].ctx.num_heads * 4 / 2 ** 20}


def speed(spec: dict) -> dict:
    """Time and measure one image tower at one input size for each batch of ``spec``."""
    from person_search.core.config import AttentionConfig, EncoderConfig
    from person_search.core.models.factory import build_clip

    torch.set_num_threads(int(spec.get("threads", 2)))
    h, w = spec["size"]
    if spec.get("config_dir"):  # the study-scale towers (PS-Study-*)
        from person_search.core.models.archs import open_clip_registered
        open_clip_registered().add_model_config(spec["config_dir"])
    cfg = EncoderConfig(arch=spec["arch"], image_height=h, image_width=w,
                        attention=AttentionConfig(**spec.get("attention", {})))
    tower = build_clip(cfg, towers=("image",)).model
    from person_search.core.attention.module import ClipAttention

    cuda = spec.get("device", "cpu") == "cuda"  # GPU rows: fp16 (the deploy precision), CUDA allocator peak
    dtype = torch.float16 if cuda else torch.float32
    tower = tower.to("cuda" if cuda else "cpu", dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    kernels = [m.kernel for m in tower.modules() if isinstance(m, ClipAttention)]
    out = {"analytic": attention_figures(kernels), "batches": {}, "load1_start": os.getloadavg()[0],
           "device": torch.cuda.get_device_name() if cuda else "cpu"}
    for b in spec["batches"]:
        x = torch.randn(b, 3, h, w, device="cuda" if cuda else "cpu", dtype=dtype)
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            ok = reset_peak_rss()
            rss = proc_status_bytes("VmRSS")
        t0 = time.perf_counter()
        with torch.inference_mode():
            tower(x)  # warm-up, and the memory figure
        sync()
        first = time.perf_counter() - t0
        if cuda:
            peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        else:
            peak = (proc_status_bytes("VmHWM") - rss) / 2 ** 20 if ok else float("nan")

        def call(x=x):
            with torch.inference_mode():
                tower(x)

        times = [first] + time_calls(call, seconds=float(spec.get("min_s", 2.0)),
                                     max_calls=int(spec.get("max_iters", 20)) - 1, warmup=0, sync=sync)
        # best call: on a shared machine other jobs only ever slow a call down
        out["batches"][str(b)] = {"crops_s": b / float(min(times)), "iters": len(times), "peak_mb": peak}
        print(f"  {spec['arch']} {spec.get('attention', {}).get('kind', 'sdpa')} {h}x{w} b{b}: "
              f"{out['batches'][str(b)]['crops_s']:.2f} crops/s, +{peak:.0f} MB", file=sys.stderr)
    return out


def attnmem(spec: dict) -> dict:
    """Peak memory of one attention call of ViT-B/16's first image layer with ``spec``'s kernel, no model around it.

    q, k, v (batch, 12 heads, tokens, 64) and x are made first; the figure is the growth of the process's peak RSS
    during the kernel's forward alone (what the attention itself allocates: scores, masks, bands), per batch.
    """
    torch.set_num_threads(int(spec.get("threads", 2)))
    h, w = spec["size"]
    grid = (h // 16, w // 16)
    kernel = vit_kernels(spec["attention"], grid)[0].eval()
    n = 1 + grid[0] * grid[1]
    out = {"tokens": n, "batches": {}, "load1_start": os.getloadavg()[0]}
    for b in spec["batches"]:
        q, k, v = (torch.randn(b, 12, n, 64) for _ in range(3))
        x = torch.randn(b, n, 768)
        with torch.inference_mode():
            kernel(q, k, v, None, x)  # warm-up: one-time buffers (masks, band indices) are not the figure
        ok = reset_peak_rss()
        rss = proc_status_bytes("VmRSS")
        t0 = time.perf_counter()
        with torch.inference_mode():
            kernel(q, k, v, None, x)
        out["batches"][str(b)] = {"peak_mb": (proc_status_bytes("VmHWM") - rss) / 2 ** 20 if ok else float("nan"),
                                  "ms": 1e3 * (time.perf_counter() - t0)}
        del q, k, v, x
    return out


def train_config(spec: dict):
    """Return the ``TrainConfig`` of a training cell: the study recipe as ``person-search train`` settings.

    From scratch (the seed draws the initial weights, the data order and the augmentation), AdamW
    with weight decay 0.05, linear warm-up then cosine, symmetric InfoNCE with the logit scale
    learnt from CLIP's initial 1/0.07, fp32 on the CPU.
    """
    from person_search.lab.train.config import TrainConfig

    att = dict(spec.get("attention", {}))
    h, w = spec["size"]
    return TrainConfig(arch=spec["arch"], weights="", image_height=h, image_width=w,
                       attention=att.pop("kind", "sdpa"), attention_settings=att, mode="full", loss="infonce",
                       logit_scale=1 / 0.07, learn_logit_scale=True, epochs=int(spec["epochs"]),
                       batch_size=int(spec["batch"]), lr=float(spec["lr"]), weight_decay=0.05,
                       warmup_steps=int(spec.get("warmup", 0)), precision="fp32", device="cpu", seed=int(spec["seed"]),
                       threads=int(spec.get("threads", 2)), data={"path": spec["data"], "format": "cuhk-pedes"})


def train(spec: dict) -> dict:
    """Train one model through ``person-search train``'s loop and losses on ``spec``'s generated data; evaluate it.

    The run folder (``spec["run_dir"]``, else a temporary one) is the model contract; the test split
    is then ranked by ``ClipEncoder`` serving that run folder, as ``person-search eval`` does.
    """
    import tempfile

    from person_search.core.config import AttentionConfig, EncoderConfig
    from person_search.core.clip_encoder import ClipEncoder
    from person_search.core.models.factory import model_id_for
    from person_search.lab.data import CaptionPairs, TrainTransform, load_dataset
    from person_search.lab.eval.evaluate import evaluate
    from person_search.lab.train import train as train_run

    if spec.get("config_dir"):
        from person_search.core.models.archs import open_clip_registered
        open_clip_registered().add_model_config(spec["config_dir"])
    cfg = train_config(spec)
    data = load_dataset(spec["data"], "cuhk-pedes")
    split = data.split("train")
    with tempfile.TemporaryDirectory(prefix="study_cell_") as tmp:
        run = Path(spec.get("run_dir") or Path(tmp) / "run")
        t0 = time.perf_counter()

        def pairs(facts):
            return CaptionPairs(split, TrainTransform(facts.image_size, facts.mean, facts.std))

        result = train_run(cfg, pairs, run, progress=bool(spec.get("progress", True)))
        train_s = time.perf_counter() - t0
        if spec.get("save"):
            from safetensors.torch import load_file
            Path(spec["save"]).parent.mkdir(parents=True, exist_ok=True)
            torch.save(load_file(str(run / "best.safetensors")), spec["save"])
        h, w = spec["size"]
        enc = ClipEncoder(EncoderConfig(arch=spec["arch"], weights=str(run), image_height=h, image_width=w,
                                        attention=AttentionConfig(**spec.get("attention", {})),
                                        threads=int(spec.get("threads", 2))), backend="torch")
        res = evaluate(enc, data.split("test").eval_view(), progress=False)
        model_id = model_id_for(spec["arch"], f"random-seed{cfg.seed}", cfg.attention_config())  # start weights
    return {"rank1": float(res.t2i["R1"]), "map": float(res.t2i["mAP"]), "chance_rank1": float(res.chance_rank1),
            "train_s": train_s, "steps": int(result.steps), "model_id": model_id, "loop": "lab"}


def main(argv=None) -> int:
    """Run one cell: ``KIND SPEC`` (SPEC a JSON object); print its result as one JSON line."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["speed", "train", "attnmem"])
    ap.add_argument("spec", type=json.loads, help="the cell's spec, a JSON object")
    a = ap.parse_args(argv)
    print(json.dumps({"speed": speed, "train": train, "attnmem": attnmem}[a.kind](a.spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
