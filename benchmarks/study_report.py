"""Write ``docs/attention_study.md`` and its PNGs from the cached cells of ``attention_study.py``."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from attention_study import DOCS, ROOT, SHAPES, SMALL, SPEED_OF, TRAIN_CELLS, TRAIN_SIZE, VARIANTS, VIT, WORK

CMD = "tools/env.sh python benchmarks/attention_study.py"
NOT_RUN = "not run"


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return NOT_RUN if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _speed(cache: dict, arch: str, name: str, shape: str, device: str = "cpu") -> dict:
    return cache.get(f"speed|{arch}|{name}|{shape}" + ("" if device == "cpu" else f"|{device}"), {})


def _crops(cell: dict, b: int) -> Optional[float]:
    return cell.get("batches", {}).get(str(b), {}).get("crops_s")


def _peak(cell: dict, b: int) -> Optional[float]:
    return cell.get("batches", {}).get(str(b), {}).get("peak_mb")


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b not in (None, 0) else None


def _analytic(cell: dict, variant: str, size: Tuple[int, int]) -> dict:
    """Return a ViT-B/16 cell's analytic figures, computed from its kernels when the cell was not run."""
    if cell.get("analytic"):
        return cell["analytic"]
    from study_cells import attention_figures, vit_kernels

    return attention_figures(vit_kernels(VARIANTS[variant], (size[0] // 16, size[1] // 16)))


def speed_tables(cache: dict) -> List[str]:
    """Return the markdown of the speed / memory / analytic tables, one per input shape (and device)."""
    out = []
    models = [(VIT, n) for n in VARIANTS] + [(a, "sdpa") for a in SMALL]
    for shape, (h, w) in SHAPES.items():
        for device in ("cpu", "cuda"):
            base = _speed(cache, VIT, "sdpa", shape, device)
            if device == "cuda" and not any(_speed(cache, a, n, shape, "cuda") for a, n in models):
                out += [f"GPU ({h}x{w}): not run (no GPU was lent to this task); `{CMD} --only speed` on a CUDA "
                        "machine adds these rows (fp16, peak = `torch.cuda.max_memory_allocated` growth).", ""]
                continue
            where = (f"CPU, {base.get('spec', {}).get('threads', 2)} threads" if device == "cpu"
                     else f"GPU {base.get('device', '')}, fp16")
            mem = "peak MB" if device == "cpu" else "CUDA peak MB"
            out += [f"### {h}x{w} ({shape}), {where}", "",
                    f"| model | attention | crops/s b1 | b8 | b32 | x sdpa b1 | x b8 | x b32 | {mem} b1 | {mem} b8 "
                    "| x sdpa peak b8 | token-layers | attn GFLOP/img | x sdpa | peak scores MB/img | x sdpa |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            ba = _analytic(base, "sdpa", (h, w))
            for arch, name in models:
                c = _speed(cache, arch, name, shape, device)
                if "error" in c:
                    out.append(f"| {arch} | {name} | error: {c['error'][:80]} |" + " |" * 13)
                    continue
                a = _analytic(c, name, (h, w)) if arch == VIT else c.get("analytic", {})
                row = [arch, name] + [_fmt(_crops(c, b), ".2f") for b in (1, 8, 32)]
                row += [_fmt(_ratio(_crops(c, b), _crops(base, b))) for b in (1, 8, 32)]
                row += [_fmt(_peak(c, 1), ".0f"), _fmt(_peak(c, 8), ".0f"), _fmt(_ratio(_peak(c, 8), _peak(base, 8)))]
                row += [str(a.get("token_layers", "n/a")), _fmt(a.get("attn_gflops"), ".3f") if a else "n/a",
                        _fmt(_ratio(a.get("attn_gflops"), ba.get("attn_gflops"))) if a else "n/a",
                        _fmt(a.get("peak_scores_mb_b1"), ".2f") if a else "n/a",
                        _fmt(_ratio(a.get("peak_scores_mb_b1"), ba.get("peak_scores_mb_b1"))) if a else "n/a"]
                out.append("| " + " | ".join(row) + " |")
            out.append("")
    return out


def _mem(cache: dict, name: str, shape: str, b: int) -> Optional[float]:
    return cache.get(f"attnmem|{VIT}|{name}|{shape}", {}).get("batches", {}).get(str(b), {}).get("peak_mb")


def attnmem_table(cache: dict) -> List[str]:
    """Return the markdown of the attention-only peak memory table (one attention call of layer 1, ViT-B/16)."""
    if not any(k.startswith("attnmem|") for k in cache):
        return []
    out = ["### Attention-only peak memory (ViT-B/16, first image layer, CPU)", "",
           "Growth of the process's peak RSS during one attention call of the layer's kernel alone (q, k, v and the "
           "input made before; warm-up call first), so weights, MLP and the rest of the forward are not in it. "
           "The CPU's fused SDPA never holds the full score matrix (it works in blocks), so `eager` is the "
           "full-attention reference that holds it.", "",
           "| attention | shape | MB b1 | MB b8 | MB b32 | x eager b8 | x sdpa b8 | ms b8 |",
           "|---|---|---|---|---|---|---|---|"]
    for shape, (h, w) in SHAPES.items():
        for name in VARIANTS:
            cell = cache.get(f"attnmem|{VIT}|{name}|{shape}", {})
            ms = cell.get("batches", {}).get("8", {}).get("ms")
            mem = [_mem(cache, name, shape, b) for b in (1, 8, 32)]
            vs_eager = _ratio(mem[1], _mem(cache, "eager", shape, 8))
            vs_sdpa = _ratio(mem[1], _mem(cache, "sdpa", shape, 8))
            out.append(f"| {name} | {h}x{w} | " + " | ".join(_fmt(m, ".1f") for m in mem)
                       + f" | {_fmt(vs_eager)} | {_fmt(vs_sdpa)} | {_fmt(ms, '.1f')} |")
    return out + [""]


def accuracy_stats(cache: dict, name: str) -> Tuple[List[float], List[float], List[dict]]:
    """Return (Rank-1s, mAPs, cells) of the finished seeds of a training cell."""
    cells = [v for k, v in cache.items() if k.startswith(f"train|{name}|") and "rank1" in v]
    return [c["rank1"] for c in cells], [c["map"] for c in cells], cells


def _by_seed(cache: dict, name: str) -> dict:
    """Return {seed: Rank-1} of a training cell's finished seeds, in seed order."""
    out = {int(k.rsplit("|", 1)[1]): v["rank1"] for k, v in cache.items()
           if k.startswith(f"train|{name}|") and "rank1" in v}
    return dict(sorted(out.items()))


def paired_delta(cache: dict, name: str) -> List[float]:
    """Return Rank-1 of ``name`` minus sdpa's, for each seed both finished (same data order and init)."""
    base, own = _by_seed(cache, "sdpa"), _by_seed(cache, name)
    return [own[s] - base[s] for s in own if s in base]


def _ms(values: List[float]) -> str:
    if not values:
        return NOT_RUN
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def accuracy_table(cache: dict, args) -> List[str]:
    """Return the markdown of the accuracy table."""
    seeds = args.seeds
    out = ["| cell | arch | attention | seeds done | Rank-1 % (mean ± sd) | Rank-1 per seed | ΔRank-1 vs sdpa, "
           "paired by seed (mean ± sd) | mAP % | train s / run | chance R1 % |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, (arch, att) in TRAIN_CELLS.items():
        r1, mp, cells = accuracy_stats(cache, name)
        settings = ", ".join(f"{k}={v}" for k, v in att.items() if k != "kind")
        secs = _fmt(statistics.mean(c["train_s"] for c in cells), ".0f") if cells else NOT_RUN
        chance = _fmt(cells[0]["chance_rank1"], ".2f") if cells else NOT_RUN
        per_seed = " / ".join(f"{v:.1f}" for v in _by_seed(cache, name).values()) or NOT_RUN
        out.append(f"| {name} | {arch} | {att['kind']}{f' ({settings})' if settings else ''} | {len(cells)}/{seeds} "
                   f"| {_ms(r1)} | {per_seed} | {_ms(paired_delta(cache, name))} | {_ms(mp)} | {secs} | {chance} |")
    missing = [n for n in TRAIN_CELLS if len(accuracy_stats(cache, n)[0]) < seeds]
    if missing:
        out += ["", f"Cells with fewer than {seeds} seeds ({', '.join(missing)}) were cut by the time budget: "
                f"`{CMD} --only accuracy --seeds {seeds} --epochs {args.epochs} --batch {args.batch} "
                f"--ids {args.ids}` runs what is missing (cached cells are kept)."]
    return out


def pareto_plot(cache: dict, path: Path) -> List[Tuple[str, float, float]]:
    """Plot deploy-size throughput (x ViT-B/16 sdpa, batch 8) against study-scale Rank-1; mark the Pareto front."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _speed(cache, VIT, "sdpa", "deploy")
    pts = []
    for name, (arch, variant) in SPEED_OF.items():
        r1 = accuracy_stats(cache, name)[0]
        c = _speed(cache, arch, variant, "deploy")
        x = _ratio(_crops(c, 8), _crops(base, 8)) or _ratio(_crops(c, 1), _crops(base, 1))
        if r1 and x:
            pts.append((name, x, statistics.mean(r1), statistics.stdev(r1) if len(r1) > 1 else 0.0))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    front = [p for p in pts if not any(q[1] >= p[1] and q[2] >= p[2] and q != p for q in pts)]
    for name, x, y, sd in pts:
        ax.errorbar(x, y, yerr=sd, fmt="o", color="tab:red" if (name, x, y, sd) in front else "tab:blue", capsize=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if front:
        f = sorted(front, key=lambda p: p[1])
        ax.plot([p[1] for p in f], [p[2] for p in f], "--", color="tab:red", label="Pareto front")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("CPU crops/s at 384x128, batch 8, x ViT-B/16 sdpa (deploy-size towers; log scale)")
    ax.set_ylabel(f"Rank-1 % (study-scale models, generated data, {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]})")
    ax.set_title("Speed vs Rank-1 (generated data; not comparable with CUHK-PEDES)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [(n, x, y) for n, x, y, _ in front]


def _study_model(name: str):
    """Return (model, facts) of the seed-0 checkpoint of a study ViT cell, or None."""
    import torch

    from person_search.core.config import AttentionConfig, EncoderConfig
    from person_search.core.models.factory import build_clip
    from person_search.core.models.registry import open_clip_registered

    ckpt = WORK / "ckpt" / f"{name.replace(' ', '_')}_0.pt"
    if not ckpt.is_file():
        return None
    open_clip_registered().add_model_config(str(WORK / "configs"))
    arch, att = TRAIN_CELLS[name]
    built = build_clip(EncoderConfig(arch=arch, image_height=TRAIN_SIZE[0], image_width=TRAIN_SIZE[1],
                                     attention=AttentionConfig(**att)), towers=("image", "text"))
    built.model.load_state_dict(torch.load(ckpt, weights_only=True))
    return built.model.eval(), built.facts


def _recipe(cache: dict) -> dict:
    """Return the training spec the cached accuracy cells share (the first one's), or {}."""
    return next((v["spec"] for k, v in sorted(cache.items()) if k.startswith("train|") and "rank1" in v), {})


def _crops_of_test(data: Path, n: int = 4):
    from person_search.data import load_dataset
    from person_search.data.torchdata import read_image

    recs = load_dataset(data, "cuhk-pedes").split("test").records
    return [read_image(recs[i * 4].image) for i in range(n)]


def _real_crops(n: int = 3):
    """Return up to ``n`` person crops from the real photos ultralytics ships (bus.jpg, zidane.jpg) and who found them.

    The shared pretrained YOLO11n finds them where it is present (``../shared/models``), else OpenCV's HOG.
    """
    import cv2

    from person_search.core.config import DetectorConfig
    from person_search.core.paths import shared_models_dir
    from person_search.core.sample import sample_images

    try:
        photos = [cv2.imread(str(p)) for p in sample_images()]
    except FileNotFoundError:
        return [], "none"
    yolo = shared_models_dir() / "yolo11n_int8_openvino_model"
    if yolo.is_dir():
        from person_search.core.detect.yolo import YoloDetector
        det, who = YoloDetector(DetectorConfig(backend="yolo", model=str(yolo)), yolo), "the shared YOLO11n"
    else:
        from person_search.core.detect.hog import HogDetector
        det, who = HogDetector(DetectorConfig(backend="hog")), "OpenCV HOG"
    found = []
    for img in photos:
        boxes = det.detect(img, 0.4)
        for x1, y1, x2, y2, score, _ in boxes:
            if (y2 - y1) >= 1.5 * (x2 - x1):  # upright people: the crops the embedder sees
                found.append((float(score), img[int(y1):int(y2), int(x1):int(x2)].copy()))
    found.sort(key=lambda t: -t[0])
    return [c for _, c in found[:n]], who


def mask_pictures(lam_path: Path, prune_path: Path, data: Optional[Path]) -> List[str]:
    """Draw LAM's learned class-token mask rows and the tokens pruning keeps over real generated crops."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from person_search.data.torchdata import EvalTransform

    notes = []
    if data is None or not (data / "stats.json").is_file():
        return notes
    real, who = _real_crops()
    crops = _crops_of_test(data, 3) + real
    kinds = ["generated"] * (len(crops) - len(real)) + ["real"] * len(real)
    grid = (TRAIN_SIZE[0] // 8, TRAIN_SIZE[1] // 8)
    shown = [cv2.cvtColor(cv2.resize(c, TRAIN_SIZE[::-1]), cv2.COLOR_BGR2RGB) for c in crops]
    lam = _study_model("lam")
    if lam is not None:
        model, facts = lam
        x = torch.stack([EvalTransform(TRAIN_SIZE, facts.mean, facts.std)(c) for c in crops])
        kernels = [b.attn.kernel for b in model.visual.transformer.resblocks]
        rows = []
        hooks = [k.register_forward_pre_hook(lambda _m, a: rows.append(_m.mask(a[4])[:, 0, 0, 1:])) for k in kernels]
        with torch.no_grad():
            model.encode_image(x)
        for h in hooks:
            h.remove()
        fig, axes = plt.subplots(len(crops), 1 + len(rows), figsize=(1.3 * (1 + len(rows)), 2.6 * len(crops)))
        for i in range(len(crops)):
            axes[i, 0].imshow(shown[i])
            axes[i, 0].set_title(kinds[i], fontsize=7)
            for j, r in enumerate(rows):
                axes[i, j + 1].imshow(shown[i])
                axes[i, j + 1].imshow(r[i].reshape(grid).numpy(), cmap="coolwarm", alpha=0.6,
                                      extent=(0, TRAIN_SIZE[1], TRAIN_SIZE[0], 0))
                axes[0, j + 1].set_title(f"layer {j}", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.suptitle("LAM: learned additive mask of the class-token row (red = boosted)", fontsize=9)
        fig.tight_layout()
        fig.savefig(lam_path, dpi=60)
        plt.close(fig)
        notes.append(f"![LAM masks]({lam_path.name})")
    prune = _study_model("prune 0.5")
    if prune is not None:
        model, facts = prune
        x = torch.stack([EvalTransform(TRAIN_SIZE, facts.mean, facts.std)(c) for c in crops])
        with torch.no_grad():
            model.encode_image(x)
        k = next(b.attn.kernel for b in model.visual.transformer.resblocks if b.attn.kernel.keep)
        fig, axes = plt.subplots(1, len(crops), figsize=(1.6 * len(crops), 3.2))
        for i, ax in enumerate(axes):
            keep = np.zeros(grid[0] * grid[1])
            keep[k.last_kept[i].numpy()] = 1
            ax.imshow(shown[i])
            ax.imshow(keep.reshape(grid), cmap="gray", alpha=0.55, vmin=0, vmax=1,
                      extent=(0, TRAIN_SIZE[1], TRAIN_SIZE[0], 0))
            ax.axis("off")
            ax.set_title(kinds[i], fontsize=7)
        fig.suptitle(f"prune: patches kept before layer {k.ctx.layer + 1} (bright), the rest fused", fontsize=9)
        fig.tight_layout()
        fig.savefig(prune_path, dpi=100)
        plt.close(fig)
        notes.append(f"![pruned tokens]({prune_path.name})")
    if notes:
        notes.append(f"Crops: {len(crops) - len(real)} from the generated test split and {len(real)} real people "
                     f"from the photos ultralytics ships (bus.jpg, zidane.jpg; found by {who}), through the seed-0 "
                     "study models trained on generated data only.")
    return notes


def targets(cache: dict) -> List[str]:
    """Return the three targets with the measured figures: met, missed or not run."""
    out = []
    base_d, base_l = _speed(cache, VIT, "sdpa", "deploy"), _speed(cache, VIT, "sdpa", "large")
    pr = _speed(cache, VIT, "prune", "deploy")
    speedups = {b: _ratio(_crops(pr, b), _crops(base_d, b)) for b in (1, 8, 32)}
    d_p = paired_delta(cache, "prune 0.5")
    loss = -statistics.mean(d_p) if d_p else None
    sp = [v for v in speedups.values() if v]
    met = sp and min(sp) >= 1.5 and loss is not None and loss <= 2
    xs = ", x".join(_fmt(v) for v in speedups.values())
    change = _fmt(-loss if loss is not None else None, "+.1f") + (
        f" ± {statistics.stdev(d_p):.1f}" if len(d_p) > 1 else "")
    out.append(f"- **prune keep 0.5 (last 2/3 of layers)**: throughput x{xs} (b1/b8/b32) vs ViT-B/16 sdpa at "
               f"384x128 (analytic: 0.67x token-layers, so ~1.5x at best); Rank-1 change {change} points (study "
               f"scale, paired by seed over {len(d_p)} seed(s)). Target >= 1.5x and <= 2 points lost: "
               f"**{'met' if met else 'missed'}**.")
    win = _speed(cache, VIT, "window", "large")
    wa, sa = win.get("analytic", {}), base_l.get("analytic", {})
    ea = _speed(cache, VIT, "eager", "large")
    an = _ratio(wa.get("peak_scores_mb_b1"), sa.get("peak_scores_mb_b1"))
    meas = {n: _ratio(_peak(win, 1), _peak(c, 1)) for n, c in (("sdpa", base_l), ("eager", ea))}
    att = {b: (_ratio(_mem(cache, "window", "large", b), _mem(cache, "eager", "large", b)),
               _ratio(_mem(cache, "window", "large", b), _mem(cache, "sdpa", "large", b))) for b in (1, 8, 32)}
    worst = max((e for e, _ in att.values() if e is not None), default=None)
    ok = worst <= 1 / 3 if worst is not None else bool(an and an <= 1 / 3)
    out.append(f"- **window at 768x256**: measured attention-only peak memory x{_fmt(att[1][0])} / "
               f"x{_fmt(att[8][0])} / x{_fmt(att[32][0])} of full (eager) attention at batch 1 / 8 / 32, and "
               f"x{_fmt(att[8][1])} of the CPU's fused SDPA at batch 8 (which never holds the scores); analytic "
               f"largest score tensor {_fmt(an, '.3f')} x full attention. Whole-forward peak RSS growth at batch 1: "
               f"x{_fmt(meas['sdpa'])} of sdpa's and x{_fmt(meas['eager'])} of eager's (weights-sized buffers and "
               f"the MLP dominate it). Target <= 1/3 of full attention's: **{'met' if ok else 'missed'}**.")
    rows = []
    for name in ("MobileNetV4-S", "MobileNetV3-L", "EfficientNet-B0"):
        arch = SPEED_OF[name][0]
        x = _ratio(_crops(_speed(cache, arch, "sdpa", "deploy"), 8), _crops(base_d, 8))
        d = paired_delta(cache, name)
        gap = -statistics.mean(d) if d else None
        spread = statistics.stdev(d) if len(d) > 1 else 0.0
        ok = x is not None and gap is not None and x >= 3 and gap <= 5
        rows.append((name, x, gap, spread, ok))
    text = "; ".join(f"{n}: x{_fmt(x)} throughput, Rank-1 {_fmt(-g if g is not None else None, '+.1f')} ± "
                     f"{sd:.1f} points (paired by seed)" for n, x, g, sd, _ in rows)
    shaky = [n for n, _, g, sd, ok in rows if ok and sd > 5 - g]
    caveat = (f"; the paired spread of {', '.join(shaky)} is wider than its margin to the 5 points, so this is not "
              "a firm result" if shaky else "")
    out.append(f"- **small encoder within 5 points at >= 3x**: {text}. "
               f"**{'met' if any(r[4] for r in rows) else 'missed or not run'}** (on the mean; Rank-1 against the "
               f"study-scale ViT, not ViT-B/16: ViT-B/16 cannot be trained on these CPUs in the budget{caveat}).")
    return out


def _speed_note(cache: dict) -> str:
    """Say how the cached speed cells were timed and how loaded the machine was (from the cells themselves)."""
    cells = [v for k, v in cache.items() if k.startswith("speed|") and "batches" in v and not k.endswith("|cuda")]
    if not cells:
        return NOT_RUN
    quick = sum(1 for c in cells if c["spec"].get("max_iters", 10) <= 3)
    loads = [c["load1_start"] for c in cells if "load1_start" in c]
    mode = (f"{len(cells) - quick} cell(s) in full mode (best of up to 10 calls in 10 s per batch)"
            + (f", {quick} in `--quick` mode (best of up to 3 calls in 4 s)" if quick else ""))
    load = (f"1-minute load average at the start of the cells {min(loads):.1f}-{max(loads):.1f} on the 2 cores "
            f"(the study's own cell included: ~2 when the machine is otherwise quiet)" if loads
            else "load average not recorded")
    return (f"the best of the first call and further calls: {mode}; other jobs on the shared cores only ever slow "
            f"a call down; {load}")


def write_report(cache: dict, args) -> None:
    """Write docs/attention_study.md (+ PNGs) from ``cache``."""
    DOCS.mkdir(exist_ok=True)
    front = pareto_plot(cache, DOCS / "attention_study_pareto.png")
    recipe = _recipe(cache)
    pics = mask_pictures(DOCS / "attention_study_lam.png", DOCS / "attention_study_prune.png",
                         ROOT / recipe["data"] if recipe.get("data") else None)
    md = render(speed_tables(cache) + attnmem_table(cache), accuracy_table(cache, args), targets(cache), front, pics,
                args, recipe, _speed_note(cache))
    (DOCS / "attention_study.md").write_text(md)
    print(f"wrote {DOCS / 'attention_study.md'}")


def render(speed: List[str], accuracy: List[str], goals: List[str], front, pics: List[str], args,
           recipe: dict, speed_note: str) -> str:
    """Return the study's markdown."""
    ids = int(recipe.get("ids", args.ids))
    test = max(1, round(0.1 * ids))
    recipe_txt = (f"{ids} ids x 4 images, 192x64, seed 0: {ids - 2 * test} train / {test} val / {test} test "
                  f"identities; chance Rank-1 {100 / test:.2f} %), input {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, symmetric "
                  f"InfoNCE, AdamW lr {recipe.get('lr', args.lr):g} ({recipe.get('warmup', 0)} warm-up steps, then "
                  f"cosine), batch {recipe.get('batch', args.batch)}, "
                  f"{recipe.get('epochs', args.epochs)} epochs per run (same budget for every cell), "
                  f"{recipe.get('jobs', args.jobs)} runs at a time with {recipe.get('threads', 1)} CPU thread(s) "
                  f"each")
    front_txt = ", ".join(f"{n} (x{x:.2f}, R1 {y:.1f})" for n, x, y in sorted(front, key=lambda t: t[1])) or NOT_RUN
    lines = [
        "# Attention study: efficient attention and small vision encoders",
        "",
        f"Regenerate: `{CMD}` (add `--quick` for short timing; `--only report` redraws from the cache "
        "`docs/attention_study_cells.json`; every cell runs in its own subprocess and is cached when it ends, so an "
        "interrupted run resumes). Machine: the project's 2-core AMD EPYC box, shared with other work (the load "
        "at measurement is stated below); absolute crops/s move with it, so every speed figure is also a ratio to "
        "ViT-B/16 sdpa measured in the same run. Random weights "
        "(speed does not depend on them).",
        "",
        "## Variants",
        "",
        "| kind | what | tower | exports to ONNX |",
        "|---|---|---|---|",
        "| sdpa / eager | full softmax attention (fused / explicit) | both | yes (eager form) |",
        "| window | 2-D neighbourhood (`window_size`, `window_dilation`), class token global; computed in bands of 4 "
        "grid rows, so scores are band x reach, linear in the grid height | image (text keeps sdpa) | yes |",
        "| sparse | block-sparse pattern (`sparse_block` blocks + every `sparse_stride`-th patch global) as a dense "
        "mask through SDPA: changes what is attended, not memory or FLOPs | image (text keeps sdpa) | yes |",
        "| lam | multi-layer learnable additive mask (Linear+ReLU generator per layer, zero-initialised) | both "
        "(text: added to the causal mask) | yes |",
        "| prune | EViT: top `prune_keep` patches by class attention kept, rest fused, before layer depth/3 | image | "
        "yes (TopK + Gather, static shapes) |",
        "| ToMe | not implemented: its bipartite merge needs `scatter_reduce` (mean), which ONNX export supports "
        "only partly and TensorRT through a plugin; EViT pruning gives the static-shape token reduction instead | "
        "- | no |",
        "",
        "## Speed and memory (deploy-size towers)",
        "",
        f"crops/s: {speed_note}. Cells marked not run: "
        f"`{CMD} --only speed` (full mode) measures them. peak MB: growth of the process's peak RSS during the first "
        "call at that batch (fresh subprocess per tower and shape, free heap returned with `malloc_trim` first); "
        "token-layers, attention GFLOP/img (QK^T + AV, plus LAM's generators) and peak scores MB/img (largest score "
        "tensor of one image, all heads, fp32) are analytic, from the built kernels. CNN towers have no attention "
        "(n/a); MobileCLIP-S1's attention lives in timm blocks that are not analysed (n/a).",
        "",
        *speed,
        "## Accuracy (study scale, generated data)",
        "",
        f"Trained from random init on `person-search data synth` ({recipe_txt}, seeds 0..{args.seeds - 1} (seed = "
        "init of the training RNG and data order; the model's own init is the project's fixed seed). ViT cells: "
        "PS-Study-ViT (6 layers, width 64, patch 8: a 12x4 grid), a stand-in for ViT-B/16, which cannot be trained "
        "on these CPUs; window uses size 5 there (size 7 would cover most of a 12x4 grid). Small encoders: "
        "PS-Study-<name>, the shipped timm image tower (random init) with the same text tower as the ViT cells (2 "
        "layers of width 64) and a 64-wide embedding, so only the image side differs between cells. The study's "
        "own short loop (`benchmarks/study_cells.py`). TinyCLIP-ViT-8M-16 and MobileCLIP-S1 are in the speed "
        "tables only: their value is their pretrained weights (`encoder.weights`), which cannot be had here, and "
        "they are not retrained from scratch. Test split, text-to-image, IRRA metrics. "
        "Figures on generated data: never compare with CUHK-PEDES.",
        "",
        *accuracy,
        "",
        "![speed vs Rank-1](attention_study_pareto.png)",
        "",
        f"Pareto front (speed x, Rank-1): {front_txt}.",
        "",
        "## What the variants learn and keep (seed-0 study models; generated and real crops)",
        "",
        *(pics or [NOT_RUN + ": no seed-0 checkpoint of the lam / prune cells yet"]),
        "",
        "## Targets",
        "",
        *goals,
        "",
    ]
    return "\n".join(lines)
