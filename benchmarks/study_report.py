"""Write ``docs/attention_study.md`` and its PNGs from the cached cells of ``attention_study.py``.

Ratios are formed only between cells that carry the same run record (``run.run_id``); a cell without one is
shown with "no run record" and used in no ratio and no verdict. Accuracy cells are compared only when they share
the recipe of the report (``recipe_of``). A verdict joins the speed and the accuracy of the same pair of models.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.common import interval95, paired_ratio_interval, run_id
from benchmarks.study_plan import (DOCS, ROOT, SHAPES, SMALL, SPEED_OF, TRAIN_CELLS, TRAIN_SIZE, VARIANTS, VIT,
                                   WORK, current_recipe, recipe_of)

CMD = "tools/env.sh python -m benchmarks.attention_study"
NOT_RUN = "not run"
NO_RECORD = "no run record"
OTHER_RUN = "other run"
NOT_MEASURED = "not measured"


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return NOT_RUN if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _speed(cache: dict, arch: str, name: str, shape: str, device: str = "cpu") -> dict:
    return cache.get(f"speed|{arch}|{name}|{shape}" + ("" if device == "cpu" else f"|{device}"), {})


def _study(cache: dict, name: str) -> dict:
    """Return the speed cell of a study-scale tower (a ``TRAIN_CELLS`` name) at the training input size."""
    return cache.get(f"speed|study|{name}", {})


def _crops(cell: dict, b: int) -> Optional[float]:
    return cell.get("batches", {}).get(str(b), {}).get("crops_s")


def _peak(cell: dict, b: int) -> Optional[float]:
    return cell.get("batches", {}).get(str(b), {}).get("peak_mb")


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b not in (None, 0) else None


def _round_values(cell: dict, base: dict, get) -> Optional[Tuple[List[float], List[float]]]:
    """Return ``get`` of each timing round of both cells (round i with round i), or None unless both have the
    same number (>= 2) of rounds with a value in each."""
    rc, rb = cell.get("rounds") or [], base.get("rounds") or []
    if len(rc) < 2 or len(rc) != len(rb):
        return None
    vc, vb = [get(r) for r in rc], [get(r) for r in rb]
    return None if any(v is None or v <= 0 for v in vc + vb) else (vc, vb)


def _same_run(cell: dict, base: dict) -> bool:
    if not cell or not base or "error" in cell or "error" in base:
        return False
    rid = run_id(cell)
    return rid is not None and rid == run_id(base)


def ratio_interval(cell: dict, base: dict, get) -> Optional[Tuple[float, float, float]]:
    """Return (ratio, low, high) of two cells of one run, or None when there is no same-run ratio.

    Cells timed in several rounds (``rounds``): the geometric mean of the per-round ratios and its 95 % Student t
    interval (``paired_ratio_interval``); a single measurement: the ratio itself as both ends (no interval)."""
    if not _same_run(cell, base):
        return None
    rounds = _round_values(cell, base, get)
    if rounds:
        return paired_ratio_interval(*rounds)[:3]
    r = _ratio(get(cell), get(base))
    return None if r is None else (r, r, r)


def same_run_ratio(cell: dict, base: dict, get) -> Optional[float]:
    """Return ``get(cell) / get(base)`` when both cells carry the same run record, else None (cells timed in
    rounds: the geometric mean of the per-round ratios)."""
    iv = ratio_interval(cell, base, get)
    return None if iv is None else iv[0]


def _rel(cell: dict, base: dict, get, spec: str = ".2f") -> str:
    """Format a ratio of two cells: the figure when both come from one run (with its 95 % interval over rounds
    when both were timed in rounds), else why there is none."""
    if not cell or not base or "error" in cell or "error" in base or get(cell) is None or get(base) is None:
        return NOT_RUN
    if run_id(cell) is None or run_id(base) is None:
        return NO_RECORD
    if run_id(cell) != run_id(base):
        return OTHER_RUN
    iv = ratio_interval(cell, base, get)
    if iv is None:
        return NOT_RUN
    if _round_values(cell, base, get):
        return f"{_fmt(iv[0], spec)} [{_fmt(iv[1], spec)}, {_fmt(iv[2], spec)}]"
    return _fmt(iv[0], spec)


def _run_tag(cell: dict) -> str:
    """Return a cell's run id (short) and the load average at its start, or "no run record"."""
    if not cell or "error" in cell:
        return "-"
    rec = cell.get("run")
    if not rec:
        return NO_RECORD
    load = rec.get("load1_cell", cell.get("load1_start"))
    return f"{rec['run_id'][-6:]} (load {load:.1f})" if load is not None else rec["run_id"][-6:]


def _analytic(cell: dict, variant: str, size: Tuple[int, int]) -> dict:
    """Return a ViT-B/16 cell's analytic figures, computed from its kernels when the cell was not run."""
    if cell.get("analytic"):
        return cell["analytic"]
    from benchmarks.study_cells import attention_figures, vit_kernels

    return attention_figures(vit_kernels(VARIANTS[variant], (size[0] // 16, size[1] // 16)))


def _speed_rows(rows: Sequence[Tuple[str, str, dict, dict]], base: dict, base_a: dict) -> List[str]:
    """Return table rows (arch, attention, cell, analytic) with crops/s, same-run ratios and analytic figures."""
    out = []
    for arch, name, c, a in rows:
        if "error" in c:
            out.append(f"| {arch} | {name} | error: {c['error'][:80]} |" + " |" * 14)
            continue
        row = [arch, name, _run_tag(c)] + [_fmt(_crops(c, b), ".2f") for b in (1, 8, 32)]
        row += [_rel(c, base, lambda x, b=b: _crops(x, b)) for b in (1, 8, 32)]
        row += [_fmt(_peak(c, 1), ".0f"), _fmt(_peak(c, 8), ".0f"), _rel(c, base, lambda x: _peak(x, 8))]
        row += [str(a.get("token_layers", "n/a")), _fmt(a.get("attn_gflops"), ".3f") if a else "n/a",
                _fmt(_ratio(a.get("attn_gflops"), base_a.get("attn_gflops"))) if a else "n/a",
                _fmt(a.get("peak_scores_mb_b1"), ".2f") if a else "n/a",
                _fmt(_ratio(a.get("peak_scores_mb_b1"), base_a.get("peak_scores_mb_b1"))) if a else "n/a"]
        out.append("| " + " | ".join(row) + " |")
    return out


def _table_head(mem: str) -> List[str]:
    return [f"| model | attention | run (load) | crops/s b1 | b8 | b32 | x sdpa b1 | x b8 | x b32 | {mem} b1 | "
            f"{mem} b8 | x sdpa peak b8 | token-layers | attn GFLOP/img | x sdpa | peak scores MB/img | x sdpa |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


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
            out += [f"### {h}x{w} ({shape}), {where}", "", *_table_head(mem)]
            rows = []
            for arch, name in models:
                c = _speed(cache, arch, name, shape, device)
                rows.append((arch, name, c, _analytic(c, name, (h, w)) if arch == VIT else c.get("analytic", {})))
            out += _speed_rows(rows, base, _analytic(base, "sdpa", (h, w)))
            out.append("")
    base = _study(cache, "sdpa")
    out += [f"### Study-scale towers at their training size {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, CPU, "
            f"{base.get('spec', {}).get('threads', 2)} threads: the models the accuracy cells train", "",
            "Ratios against the study ViT with sdpa: the speed half of every verdict below (the accuracy half "
            "compares the same towers).", "", *_table_head("peak MB")]
    rows = [(TRAIN_CELLS[n][0], n, _study(cache, n), _study(cache, n).get("analytic", {})) for n in TRAIN_CELLS]
    out += _speed_rows(rows, base, base.get("analytic", {}))
    return out + [""]


def _mem(cache: dict, name: str, shape: str, b: int) -> Optional[float]:
    return cache.get(f"attnmem|{VIT}|{name}|{shape}", {}).get("batches", {}).get(str(b), {}).get("peak_mb")


def _mem_cell(cache: dict, name: str, shape: str) -> dict:
    return cache.get(f"attnmem|{VIT}|{name}|{shape}", {})


def attnmem_table(cache: dict) -> List[str]:
    """Return the markdown of the attention-only peak memory table (one attention call of layer 1, ViT-B/16)."""
    if not any(k.startswith("attnmem|") for k in cache):
        return []
    out = ["### Attention-only peak memory (ViT-B/16, first image layer, CPU)", "",
           "Growth of the process's peak RSS during one attention call of the layer's kernel alone (q, k, v and the "
           "input made before; warm-up call first), so weights, MLP and the rest of the forward are not in it. "
           "The CPU's fused SDPA never holds the full score matrix (it works in blocks), so `eager` is the "
           "full-attention reference that holds it. Ratios only between cells of one run.", "",
           "| attention | shape | run (load) | MB b1 | MB b8 | MB b32 | x eager b8 | x sdpa b8 | ms b8 |",
           "|---|---|---|---|---|---|---|---|---|"]

    def b8(c):
        return c.get("batches", {}).get("8", {}).get("peak_mb")

    for shape, (h, w) in SHAPES.items():
        for name in VARIANTS:
            cell = _mem_cell(cache, name, shape)
            ms = cell.get("batches", {}).get("8", {}).get("ms")
            mem = [_mem(cache, name, shape, b) for b in (1, 8, 32)]
            out.append(f"| {name} | {h}x{w} | {_run_tag(cell)} | " + " | ".join(_fmt(m, ".1f") for m in mem)
                       + f" | {_rel(cell, _mem_cell(cache, 'eager', shape), b8)} | "
                       f"{_rel(cell, _mem_cell(cache, 'sdpa', shape), b8)} | {_fmt(ms, '.1f')} |")
    return out + [""]


def report_recipe(cache: dict, args) -> dict:
    """Return the recipe the report compares: that of the last accuracy run when cached, else of ``args``."""
    run = cache.get("run|accuracy")
    if run and run.get("args"):
        from types import SimpleNamespace
        return current_recipe(SimpleNamespace(**{**vars(args), **run["args"]}))
    return current_recipe(args)


def _cells_of(cache: dict, name: str, recipe: Optional[dict], legacy: bool = False) -> Dict[int, dict]:
    """Return {seed: cell} of a training cell's finished seeds with ``recipe`` (legacy: those without it)."""
    out = {}
    for k, v in cache.items():
        if k.startswith(f"train|{name}|") and "rank1" in v:
            if (recipe_of(v.get("spec", {})) == recipe) != legacy:
                out[int(k.rsplit("|", 1)[1])] = v
    return dict(sorted(out.items()))


def accuracy_stats(cache: dict, name: str, recipe: Optional[dict] = None,
                   legacy: bool = False) -> Tuple[List[float], List[float], List[dict]]:
    """Return (Rank-1s, mAPs, cells) of the finished seeds of a training cell with ``recipe``."""
    cells = list(_cells_of(cache, name, recipe, legacy).values())
    return [c["rank1"] for c in cells], [c["map"] for c in cells], cells


def _by_seed(cache: dict, name: str, recipe: Optional[dict], legacy: bool = False) -> dict:
    """Return {seed: Rank-1} of a training cell's finished seeds, in seed order."""
    return {s: c["rank1"] for s, c in _cells_of(cache, name, recipe, legacy).items()}


def paired_delta(cache: dict, name: str, recipe: Optional[dict] = None, legacy: bool = False) -> List[float]:
    """Return Rank-1 of ``name`` minus sdpa's, for each seed both finished with the same recipe (same seed: same
    data order and augmentation; initial weights drawn from the same seed)."""
    base, own = _by_seed(cache, "sdpa", recipe, legacy), _by_seed(cache, name, recipe, legacy)
    return [own[s] - base[s] for s in own if s in base]


def _ms(values: List[float]) -> str:
    if not values:
        return NOT_RUN
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def _ci(values: List[float]) -> str:
    iv = interval95(values)
    return f"[{iv[1]:+.1f}, {iv[2]:+.1f}]" if iv else "n < 2"


def accuracy_table(cache: dict, args, recipe: Optional[dict] = None) -> List[str]:
    """Return the markdown of the accuracy table (cells with the report's recipe) and of the cells without it."""
    recipe = recipe or report_recipe(cache, args)
    seeds = args.seeds
    out = ["| cell | arch | attention | seeds done | Rank-1 % (mean ± sd) | Rank-1 per seed | ΔRank-1 vs sdpa, "
           "paired by seed (mean ± sd) | 95 % interval of Δ | mAP % | train s / run | chance R1 % |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, (arch, att) in TRAIN_CELLS.items():
        r1, mp, cells = accuracy_stats(cache, name, recipe)
        settings = ", ".join(f"{k}={v}" for k, v in att.items() if k != "kind")
        secs = _fmt(statistics.mean(c["train_s"] for c in cells), ".0f") if cells else NOT_RUN
        chance = _fmt(cells[0]["chance_rank1"], ".2f") if cells else NOT_RUN
        per_seed = " / ".join(f"{v:.1f}" for v in _by_seed(cache, name, recipe).values()) or NOT_RUN
        d = paired_delta(cache, name, recipe)
        out.append(f"| {name} | {arch} | {att['kind']}{f' ({settings})' if settings else ''} | {len(cells)}/{seeds} "
                   f"| {_ms(r1)} | {per_seed} | {_ms(d)} | {_ci(d) if d else NOT_RUN} | {_ms(mp)} | {secs} | "
                   f"{chance} |")
    missing = [n for n in TRAIN_CELLS if len(accuracy_stats(cache, n, recipe)[0]) < seeds]
    if missing:
        out += ["", f"Cells with fewer than {seeds} seeds of this recipe ({', '.join(missing)}): "
                f"`{CMD} --only accuracy --seeds {seeds} --epochs {recipe['epochs']} --batch {recipe['batch']} "
                f"--ids {recipe['ids']}` trains what is missing (finished cells of this recipe are kept)."]
    legacy = {n: accuracy_stats(cache, n, recipe, legacy=True) for n in TRAIN_CELLS}
    if any(v[0] for v in legacy.values()):
        out += ["", "#### Cells without a run record (an earlier version of the study code)", "",
                "Trained before cells carried a run record and before the seed drew the initial weights (every "
                "seed of these started from the project's one fixed random init; the seed changed only the data "
                "order and the augmentation). Shown as they are; **used in no ratio, no plot and no verdict**. "
                f"`{CMD} --only accuracy` retrains them with the current recipe.", "",
                "| cell | seeds | Rank-1 % (mean ± sd) | Rank-1 per seed | ΔRank-1 vs sdpa, paired by seed | "
                "epochs / batch / lr / ids |", "|---|---|---|---|---|---|"]
        for name, (r1, _, cells) in legacy.items():
            if not r1:
                continue
            sp = cells[0].get("spec", {})
            per_seed = " / ".join(f"{v:.1f}" for v in _by_seed(cache, name, recipe, legacy=True).values())
            out.append(f"| {name} | {len(r1)} | {_ms(r1)} | {per_seed} | "
                       f"{_ms(paired_delta(cache, name, recipe, legacy=True))} | {sp.get('epochs')} / "
                       f"{sp.get('batch')} / {sp.get('lr')} / {sp.get('ids')} |")
    return out


def pareto_plot(cache: dict, path: Path, recipe: Optional[dict] = None) -> List[Tuple[str, float, float]]:
    """Plot study-scale throughput (x the study ViT sdpa, batch 8, one run) against Rank-1 of the same towers.

    Only cells with both halves measured are drawn: the speed of a tower and the accuracy of that same tower.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _study(cache, "sdpa")
    pts = []
    for name in TRAIN_CELLS:
        r1 = accuracy_stats(cache, name, recipe)[0]
        c = _study(cache, name)
        x = same_run_ratio(c, base, lambda v: _crops(v, 8)) or same_run_ratio(c, base, lambda v: _crops(v, 1))
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
    if not pts:
        ax.text(0.5, 0.5, "not measured: no tower has both a same-run speed cell and\naccuracy cells of the "
                "report's recipe", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel(f"CPU crops/s at {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, batch 8, x study ViT sdpa (the trained towers; "
                  "log scale)")
    ax.set_ylabel(f"Rank-1 % (study-scale models, generated data, {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]})")
    ax.set_title("Speed vs Rank-1 of the same towers (generated data; not comparable with CUHK-PEDES)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [(n, x, y) for n, x, y, _ in front]


def _study_model(name: str):
    """Return (model, facts) of the seed-0 checkpoint of a study ViT cell, or None."""
    import torch

    from person_search.core.config import AttentionConfig, EncoderConfig
    from person_search.core.models.factory import build_clip
    from person_search.core.models.archs import open_clip_registered

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
    from person_search.lab.data import load_dataset
    from person_search.lab.data.torchdata import read_image

    recs = load_dataset(data, "cuhk-pedes").split("test").records
    return [read_image(recs[i * 4].image) for i in range(n)]


def _real_crops(n: int = 3):
    """Return up to ``n`` person crops from the real photos ultralytics ships (bus.jpg, zidane.jpg) and who found them.

    The shared pretrained YOLO11n finds them where it is present (``../shared/models``), else OpenCV's HOG.
    """
    import cv2

    from person_search.core.config import DetectorConfig
    from person_search.core.paths import shared_models_dir
    from person_search.demo.sample import sample_images

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

    from person_search.lab.data.torchdata import EvalTransform

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


def verdict(speedups: Sequence, min_speed: float, delta: Sequence[float], max_loss: float) -> str:
    """Return met / missed / not resolved / not measured for "speed >= min_speed and Rank-1 lost <= max_loss".

    ``speedups``: same-run ratios of the same pair (None where not measured), each a number or a (ratio, low,
    high) 95 % interval over timing rounds; ``delta``: paired Rank-1 changes (points) of that pair. Each half is
    met when its whole interval clears the line (every speedup's low end >= ``min_speed``; the mean change's low
    end >= ``-max_loss``), missed when a whole interval falls short (a speedup's high end below the line; the
    change's high end below ``-max_loss``), else unresolved. The verdict: missed if a half is missed, met if both
    are met, else not resolved; not measured: a half missing or fewer than 2 paired seeds (a verdict needs both
    halves, even a speed that alone misses the line).
    """
    iv = interval95(delta)
    if not speedups or any(x is None for x in speedups) or iv is None:
        return NOT_MEASURED  # both halves, on the same pair, or no verdict at all
    spans = [x if isinstance(x, tuple) else (x, x, x) for x in speedups]
    _, low, high = iv
    speed = "missed" if any(h < min_speed for _, _, h in spans) else (
        "met" if all(lo >= min_speed for _, lo, _ in spans) else "open")
    acc = "met" if low >= -max_loss else ("missed" if high < -max_loss else "open")
    if "missed" in (speed, acc):
        return "missed"
    return "met" if speed == acc == "met" else "not resolved"


def _delta_txt(d: Sequence[float]) -> str:
    iv = interval95(d)
    if not d:
        return f"Rank-1 change {NOT_MEASURED}"
    if iv is None:
        return f"Rank-1 change {d[0]:+.1f} points (1 paired seed: no interval)"
    return (f"Rank-1 change {iv[0]:+.1f} points, 95 % interval [{iv[1]:+.1f}, {iv[2]:+.1f}] over {len(d)} "
            "paired seeds")


def targets(cache: dict, recipe: Optional[dict] = None) -> List[str]:
    """Return the three targets with the measured figures: met, missed, not resolved or not measured.

    Speed and accuracy come from the same pair of towers (the study-scale ones, timed at their training size in
    one run); the deploy-size ViT-B/16 figures are given beside them as speed only.
    """
    out = []
    sbase = _study(cache, "sdpa")
    base_d = _speed(cache, VIT, "sdpa", "deploy")

    def xs(cell, base, batches=(1, 8, 32)):
        return [ratio_interval(cell, base, lambda v, b=b: _crops(v, b)) for b in batches]

    def xtxt(cell, base, get_all):
        """Ratios as text ("x1.23/x1.30"), or why there are none (not run, no run record, other run)."""
        got = [_rel(cell, base, g) for g in get_all]
        if all(t[0].isdigit() for t in got):
            return "/".join("x" + t for t in got)
        return "n/a (" + ", ".join(sorted(set(t for t in got if not t[0].isdigit()))) + ")"

    crops = [lambda v, b=b: _crops(v, b) for b in (1, 8, 32)]
    sp = xs(_study(cache, "prune 0.5"), sbase)
    d_p = paired_delta(cache, "prune 0.5", recipe)
    out.append(f"- **prune keep 0.5 (last 2/3 of layers)**: study ViT throughput "
               f"{xtxt(_study(cache, 'prune 0.5'), sbase, crops)} (b1/b8/b32, same run) of its sdpa twin at "
               f"{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}; {_delta_txt(d_p)} (the same two towers). "
               f"Target >= 1.5x with <= 2 points lost: **{verdict(sp, 1.5, d_p, 2.0)}**. Speed only, accuracy not "
               f"measured: ViT-B/16 at 384x128 {xtxt(_speed(cache, VIT, 'prune', 'deploy'), base_d, crops)} of sdpa "
               "(analytic: 0.67x token-layers, so ~1.5x at best).")
    big = {n: _speed(cache, VIT, n, "large") for n in ("sdpa", "eager", "window")}
    mem = {n: _mem_cell(cache, n, "large") for n in ("sdpa", "eager", "window")}

    def at(b):
        return lambda c: c.get("batches", {}).get(str(b), {}).get("peak_mb")

    vs_eager = [same_run_ratio(mem["window"], mem["eager"], at(b)) for b in (1, 8, 32)]
    wa = big["window"].get("analytic") or _analytic({}, "window", SHAPES["large"])
    sa = _analytic({}, "sdpa", SHAPES["large"])
    an = _ratio(wa.get("peak_scores_mb_b1"), sa.get("peak_scores_mb_b1"))
    if any(v is None for v in vs_eager):
        ok = NOT_MEASURED
    else:
        ok = "met" if max(vs_eager) <= 1 / 3 else "missed"
    ats = [at(b) for b in (1, 8, 32)]
    out.append(f"- **window at 768x256**: attention-only peak memory {xtxt(mem['window'], mem['eager'], ats)} of "
               f"full attention held as scores (eager) at batch 1/8/32, and "
               f"{xtxt(mem['window'], mem['sdpa'], [at(8)])} of the CPU's fused SDPA (the default, which never "
               f"holds the scores) at batch 8 (one memory run); analytic largest score tensor {_fmt(an, '.3f')} x "
               f"full attention. Whole-forward peak RSS growth at batch 1: "
               f"{xtxt(big['window'], big['sdpa'], [lambda c: _peak(c, 1)])} of sdpa's and "
               f"{xtxt(big['window'], big['eager'], [lambda c: _peak(c, 1)])} of eager's (one speed run; "
               f"weights-sized buffers and the MLP dominate it). Target <= 1/3 of full (eager) attention's: "
               f"**{ok}**.")
    rows = []
    for name in ("MobileNetV4-S", "MobileNetV3-L", "EfficientNet-B0"):
        x = xs(_study(cache, name), sbase, (8,))
        d = paired_delta(cache, name, recipe)
        b8 = [crops[1]]
        rows.append((name, xtxt(_study(cache, name), sbase, b8), d, verdict(x, 3.0, d, 5.0),
                     xtxt(_speed(cache, SPEED_OF[name][0], "sdpa", "deploy"), base_d, b8)))
    text = "; ".join(f"{n}: {x} throughput at batch 8 of the study ViT (same run), {_delta_txt(d)}: "
                     f"**{v}** (deploy-size tower vs ViT-B/16, speed only: {dep})" for n, x, d, v, dep in rows)
    found = [v for *_, v, _ in rows]
    overall = next((v for v in ("met", "not resolved", "missed") if v in found), NOT_MEASURED)
    out.append(f"- **small encoder within 5 points at >= 3x** (the study-scale tower against the study ViT it "
               f"trains beside, both halves on the same pair): {text}. Overall: **{overall}**.")
    return out


def _speed_note(cache: dict) -> str:
    """Say how the cached speed cells were timed, in which runs, and how loaded the machine was (from the cells)."""
    cells = [v for k, v in cache.items() if k.startswith("speed|") and "batches" in v and not k.endswith("|cuda")]
    if not cells:
        return NOT_RUN
    quick = sum(1 for c in cells if c["spec"].get("max_iters", 10) <= 3)
    mode = (f"{len(cells) - quick} cell(s) in full mode (best of up to 10 calls in 10 s per batch)"
            + (f", {quick} in `--quick` mode (best of up to 3 calls in 4 s)" if quick else ""))
    runs: Dict[str, List[dict]] = {}
    for c in cells:
        runs.setdefault(run_id(c) or NO_RECORD, []).append(c)
    parts = []
    for rid, group in sorted(runs.items()):
        loads = [c["run"].get("load1_cell", c.get("load1_start")) if c.get("run") else c.get("load1_start")
                 for c in group]
        loads += [r.get("load1_cell") for c in group for r in (c.get("rounds") or [])[1:]]
        loads = [v for v in loads if v is not None]
        load = (f"1-minute load {min(loads):.1f}-{max(loads):.1f}" if loads else "load not recorded") + (
            f" (recorded for {len(loads)} of {len(group)})" if 0 < len(loads) < len(group) else "")
        if rid == NO_RECORD:
            parts.append(f"{len(group)} cell(s) without a run record (timed by an earlier version of the cell code; "
                         f"{load}): no ratio is formed with them")
        else:
            rec = group[0]["run"]
            parts.append(f"run {rid} ({len(group)} cells, commit {rec.get('commit', '?')[:12]}, "
                         f"{rec.get('machine', {}).get('cpu', '?')}, {rec.get('machine', {}).get('cores', '?')} "
                         f"cores, {load})")
    rounds = sorted({len(c.get("rounds") or []) for c in cells if len(c.get("rounds") or []) > 1})
    rnd = (f" Study-scale cells timed in {'/'.join(map(str, rounds))} rounds (every study cell once per round, "
           "each in a fresh subprocess): crops/s is the median over the rounds, and a ratio is the geometric mean "
           "of the per-round ratios with its 95 % t interval in brackets." if rounds else "")
    return (f"the best of the first call and further calls: {mode}; other jobs on the shared cores only ever slow "
            f"a call down.{rnd} Runs: {'; '.join(parts)}")


def write_report(cache: dict, args) -> None:
    """Write docs/attention_study.md (+ PNGs) from ``cache``."""
    DOCS.mkdir(exist_ok=True)
    recipe = report_recipe(cache, args)
    front = pareto_plot(cache, DOCS / "attention_study_pareto.png", recipe)
    spec = _recipe(cache)
    ours = all(recipe_of(cache.get(f"train|{n}|0", {}).get("spec", {})) == recipe for n in ("lam", "prune 0.5"))
    pics = mask_pictures(DOCS / "attention_study_lam.png", DOCS / "attention_study_prune.png",
                         ROOT / spec["data"] if spec.get("data") else None) if ours else []
    if not pics:
        old = [p for p in (DOCS / "attention_study_lam.png", DOCS / "attention_study_prune.png") if p.is_file()]
        if old:
            pics = [f"![{p.stem}]({p.name})" for p in old] + [
                "These pictures were drawn by an earlier run from its seed-0 checkpoints (cells without a run "
                "record, fixed initialisation); `runs/` is not committed, so `--only report` cannot redraw them: "
                f"`{CMD} --only accuracy` trains the checkpoints they come from."]
    md = render(speed_tables(cache) + attnmem_table(cache), accuracy_table(cache, args, recipe),
                targets(cache, recipe), front, pics, args, recipe, _speed_note(cache), cache)
    (DOCS / "attention_study.md").write_text(md)
    print(f"wrote {DOCS / 'attention_study.md'}")


def _recipe_text(cache: dict, recipe: dict) -> str:
    """Describe the report's recipe, with the thread and job counts the cells that use it really ran with."""
    ids = int(recipe["ids"])
    test = max(1, round(0.1 * ids))
    used = [v["spec"] for k, v in cache.items() if k.startswith("train|") and "rank1" in v
            and recipe_of(v.get("spec", {})) == recipe]
    how = sorted({(sp.get("jobs"), sp.get("threads")) for sp in used})
    how_txt = ("; ".join(f"{j} run(s) at a time with {t} CPU thread(s) each" for j, t in how)
               if how else "no cell of this recipe has run yet")
    return (f"{ids} ids x 4 images, 192x64, seed 0: {ids - 2 * test} train / {test} val / {test} test "
            f"identities; chance Rank-1 {100 / test:.2f} %), input {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}, symmetric "
            f"InfoNCE, AdamW lr {recipe['lr']:g} ({recipe['warmup']} warm-up steps, then cosine), batch "
            f"{recipe['batch']}, {recipe['epochs']} epochs per run (every cell of the accuracy table has this "
            f"recipe: the cache records it per cell and the report compares only cells that share it), {how_txt}")


def render(speed: List[str], accuracy: List[str], goals: List[str], front, pics: List[str], args,
           recipe: dict, speed_note: str, cache: Optional[dict] = None) -> str:
    """Return the study's markdown."""
    cache = cache or {}
    recipe_txt = _recipe_text(cache, recipe)
    machines = sorted({f"{c['run']['machine'].get('cpu')}, {c['run']['machine'].get('cores')} cores"
                       for c in cache.values() if isinstance(c, dict) and (c.get("run") or {}).get("machine")})
    front_txt = ", ".join(f"{n} (x{x:.2f}, R1 {y:.1f})" for n, x, y in sorted(front, key=lambda t: t[1])) or (
        NOT_MEASURED)
    lines = [
        "# Attention study: efficient attention and small vision encoders",
        "",
        f"Regenerate: `{CMD}` (add `--quick` for short timing; `--only speed|memory|accuracy` runs one half; "
        "`--only report` redraws this page from the caches `docs/attention_study_speed_cells.json` and "
        "`docs/attention_study_cells.json` alone). Every cell runs in its own subprocess and is cached with the "
        "record of its run (run id, commit, arguments, machine, load average) when it ends; an interrupted run "
        "resumes under its id. Ratios are formed only between cells of one run; a cell without a run record is "
        "marked so and used in no ratio and no verdict. Machine(s) of the recorded runs: "
        f"{'; '.join(machines) or 'none recorded'}. Random weights for speed (speed does not depend on them).",
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
        "## Speed and memory",
        "",
        f"crops/s: {speed_note}. Cells marked not run: "
        f"`{CMD} --only speed` measures them. peak MB: growth of the process's peak RSS during the first "
        "call at that batch (fresh subprocess per tower and shape, free heap returned with `malloc_trim` first); "
        "token-layers, attention GFLOP/img (QK^T + AV, plus LAM's generators) and peak scores MB/img (largest score "
        "tensor of one image, all heads, fp32) are analytic, from the built kernels. CNN towers have no attention "
        "(n/a); MobileCLIP-S1's attention lives in timm blocks that are not analysed (n/a). \"run (load)\": the "
        "last characters of the cell's run id and the 1-minute load average when it started.",
        "",
        *speed,
        "## Accuracy (study scale, generated data)",
        "",
        f"Trained from random init on `person-search data synth` ({recipe_txt}), seeds 0..{args.seeds - 1}: seed "
        "s draws the model's initial weights, the data order and the augmentation, so the spread over seeds "
        "includes the initialisation. ViT cells: "
        "PS-Study-ViT (6 layers, width 64, patch 8: a 12x4 grid), a stand-in for ViT-B/16, which cannot be trained "
        "on these CPUs; window uses size 5 there (size 7 would cover most of a 12x4 grid). Small encoders: "
        "PS-Study-<name>, the shipped timm image tower (random init) with the same text tower as the ViT cells (2 "
        "layers of width 64) and a 64-wide embedding, so only the image side differs between cells. The study's "
        "own short loop (`benchmarks/study_cells.py`). TinyCLIP-ViT-8M-16 and MobileCLIP-S1 are in the speed "
        "tables only: their value is their pretrained weights (`encoder.weights`), which cannot be had here, and "
        "they are not retrained from scratch. Test split, text-to-image, IRRA metrics. The 95 % interval of the "
        "paired change is a Student t interval over seeds. "
        "Figures on generated data: never compare with CUHK-PEDES.",
        "",
        *accuracy,
        "",
        "![speed vs Rank-1](attention_study_pareto.png)",
        "",
        f"Pareto front (speed x of the study ViT sdpa, Rank-1; the same towers on both axes): {front_txt}.",
        "",
        "## What the variants learn and keep (seed-0 study models; generated and real crops)",
        "",
        *(pics or [NOT_RUN + ": no seed-0 checkpoint of the lam / prune cells of this recipe"]),
        "",
        "## Targets",
        "",
        "Met: the figures clear the line, the whole 95 % interval of the paired Rank-1 change included; missed: "
        "they fall short; not resolved: the interval straddles the line; not measured: the speed and the accuracy "
        "of the same pair of towers are not both in the cache (from one run each, with the report's recipe).",
        "",
        *goals,
        "",
    ]
    return "\n".join(lines)
