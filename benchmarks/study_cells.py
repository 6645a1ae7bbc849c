"""The cells of ``attention_study.py``, each run in a fresh subprocess: speed/memory of one tower, or one training.

    python benchmarks/study_cells.py speed '{"arch": "ViT-B-16", "attention": {"kind": "window"}, ...}'
    python benchmarks/study_cells.py train '{"arch": "PS-Study-ViT", "seed": 0, ...}'

Prints one JSON line (the cell's result) last. Speed: crops/s per batch (the best of the
first call and further calls until ``min_s`` seconds or ``max_iters`` calls), peak memory growth of the first call
per batch (free heap given back with glibc's ``malloc_trim``, then VmHWM after resetting it
through /proc/self/clear_refs, minus VmRSS before: the memory the forward touched), and the analytic attention
figures of the built kernels. Train: the study's fixed recipe on a generated dataset (the seed draws the
initial weights, the data order and the augmentation), then Rank-1 / mAP on its test split.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    """Give free heap memory back to the OS (glibc), then reset the peak RSS; False where that is not possible."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


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
            ok = _reset_peak()
            rss = _status("VmRSS")
        t0 = time.perf_counter()
        with torch.inference_mode():
            tower(x)  # warm-up, and the memory figure
        sync()
        first = time.perf_counter() - t0
        if cuda:
            peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        else:
            peak = (_status("VmHWM") - rss) / 2 ** 20 if ok else float("nan")
        times = [first]
        t_end = time.perf_counter() + float(spec.get("min_s", 2.0))
        while len(times) < int(spec.get("max_iters", 20)) and time.perf_counter() < t_end:
            t0 = time.perf_counter()
            with torch.inference_mode():
                tower(x)
            sync()
            times.append(time.perf_counter() - t0)
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
        ok = _reset_peak()
        rss = _status("VmRSS")
        t0 = time.perf_counter()
        with torch.inference_mode():
            kernel(q, k, v, None, x)
        out["batches"][str(b)] = {"peak_mb": (_status("VmHWM") - rss) / 2 ** 20 if ok else float("nan"),
                                  "ms": 1e3 * (time.perf_counter() - t0)}
        del q, k, v, x
    return out


class _Live:
    """Encoder adapter over an in-memory CLIP for ``evaluate`` (no checkpoint round trip)."""

    def __init__(self, model, tokenizer, size, mean, std, model_id):
        from person_search.data.torchdata import EvalTransform

        self.model, self.tok, self.model_id = model.eval(), tokenizer, model_id
        self.transform = EvalTransform(size, mean, std)

    def encode_images(self, crops):
        with torch.no_grad():
            x = torch.stack([self.transform(c) for c in crops])
            return torch.nn.functional.normalize(self.model.encode_image(x), dim=-1).numpy()

    def encode_text(self, texts):
        with torch.no_grad():
            return torch.nn.functional.normalize(self.model.encode_text(self.tok(list(texts))), dim=-1).numpy()


def info_nce(model, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Return the symmetric InfoNCE loss of a batch of matching (image, caption) pairs."""
    f = torch.nn.functional
    sim = f.normalize(model.encode_text(tokens), dim=-1) @ f.normalize(model.encode_image(images), dim=-1).T
    sim = sim * model.logit_scale.exp().clamp(max=100)
    labels = torch.arange(sim.shape[0])
    return 0.5 * (f.cross_entropy(sim, labels) + f.cross_entropy(sim.T, labels))


def train(spec: dict) -> dict:
    """Train one model (the study recipe) on the generated data of ``spec`` and evaluate it."""
    from tqdm import tqdm

    from person_search.core.config import AttentionConfig, EncoderConfig
    from person_search.core.models.factory import build_clip
    from person_search.data import load_dataset, train_loader
    from person_search.eval.evaluate import evaluate

    torch.set_num_threads(int(spec.get("threads", 2)))
    torch.manual_seed(spec["seed"])
    h, w = spec["size"]
    if spec.get("config_dir"):
        from person_search.core.models.archs import open_clip_registered
        open_clip_registered().add_model_config(spec["config_dir"])
    cfg = EncoderConfig(arch=spec["arch"], image_height=h, image_width=w,
                        attention=AttentionConfig(**spec.get("attention", {})))
    # "init": "seed": the seed draws the initial weights too (cells made before had the project's fixed init)
    built = build_clip(cfg, for_training=True, init_seed=spec["seed"] if spec.get("init") == "seed" else None)
    model, tok, facts = built.model, built.tokenizer, built.facts
    data = load_dataset(spec["data"], "cuhk-pedes")
    loader = train_loader(data.split("train"), size=(h, w), mean=facts.mean, std=facts.std,
                          batch_size=spec["batch"], workers=0, generator=torch.Generator().manual_seed(spec["seed"]))
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.05)
    steps = spec["epochs"] * len(loader)
    warm = int(spec.get("warmup", 0))  # linear warm-up steps, then cosine to 0

    def lr_at(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, steps - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    t0 = time.perf_counter()
    with tqdm(total=steps, desc=f"{spec['name']} seed {spec['seed']}", unit="step", file=sys.stderr) as bar:
        for _ in range(spec["epochs"]):
            for images, captions, _labels in loader:
                loss = info_nce(model, images, tok(list(captions)))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    train_s = time.perf_counter() - t0
    if spec.get("save"):
        Path(spec["save"]).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), spec["save"])
    res = evaluate(_Live(model, tok, (h, w), facts.mean, facts.std, facts.model_id),
                   data.split("test").eval_view(), progress=False)
    return {"rank1": float(res.t2i["R1"]), "map": float(res.t2i["mAP"]), "chance_rank1": float(res.chance_rank1),
            "train_s": train_s,
            "steps": steps, "model_id": facts.model_id}


if __name__ == "__main__":
    kind, arg = sys.argv[1], json.loads(sys.argv[2])
    result = {"speed": speed, "train": train, "attnmem": attnmem}[kind](arg)
    print(json.dumps(result))
