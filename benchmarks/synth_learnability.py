"""Check that the generated dataset is learnable from pixels, and that the caption-shuffled control is not.

One command generates the data (``person-search data synth``, unless ``--data`` names a folder),
trains a tiny CLIP (PS-Tiny-ViT, random init drawn with ``--seed``, both towers) for a few epochs with the
symmetric InfoNCE loss on its train split, evaluates it, the untrained model and the caption-shuffled
control (every image paired with the caption of a random other training image: must stay at chance)
on the test split with the project's evaluation, prints the table and writes it with the run's record
(commit, arguments, machine, load) to ``--json``; ``--doc`` rewrites the document's ``learnability``
block from it (``--from-json`` redraws without training). Figures are on generated data: never compare
them with CUHK-PEDES numbers. Not the project's trainer (no LoRA, no schedule, no checkpoint
selection): a data sanity check.

    tools/env.sh python -m benchmarks.synth_learnability --json docs/synth_learnability.json --doc docs/lab.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from benchmarks.common import (ROOT, add_results_args, check_results_args, describe_run, new_record, replace_block,
                               write_results)
from person_search.core.config import EncoderConfig
from person_search.core.models.factory import build_clip
from person_search.lab.data import load_dataset, train_loader
from person_search.lab.eval.evaluate import build_encoder, evaluate

ARCH, SIZE = "PS-Tiny-ViT", (64, 64)  # its native size: the checkpoint loads without resizing
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
ROWS = ("trained", "trained: t2i-unseen-pairs", "untrained", "caption-shuffled control")


def train_and_save(data: Path, run: Path, *, epochs: int, lr: float, seed: int, shuffle: bool) -> float:
    """Train the tiny CLIP on ``data``'s train split, save ``run``; return the training seconds."""
    torch.manual_seed(seed)
    built = build_clip(EncoderConfig(arch=ARCH, image_height=SIZE[0], image_width=SIZE[1]), for_training=True,
                       init_seed=seed)
    model, tok = built.model, built.tokenizer
    train = load_dataset(data, "cuhk-pedes").split("train")
    if shuffle:
        rng = np.random.default_rng(seed)
        caps = [r.captions for r in train.records]
        order = rng.permutation(len(caps))
        train.records = [type(r)(r.image, r.pid, caps[j], r.source_pid, r.index) for r, j in zip(train.records, order)]
    loader = train_loader(train, size=SIZE, mean=MEAN, std=STD, batch_size=64, workers=0,
                          generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        losses = []
        for images, captions, _ in tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False):
            img = F.normalize(model.encode_image(images), dim=-1)
            txt = F.normalize(model.encode_text(tok(list(captions))), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * txt @ img.T
            target = torch.arange(len(images))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}{' (shuffled captions)' if shuffle else ''}")
    run.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(run / "last.safetensors"))
    (run / "model.json").write_text(json.dumps({"arch": ARCH, "image_size": list(SIZE), "epochs": epochs,
                                                "shuffled_captions": shuffle, "seed": seed}))
    return time.perf_counter() - t0


def _figures(m: dict) -> dict:
    return {k: round(float(m[k]), 2) for k in ("R1", "R5", "R10", "mAP", "mINP")}


def table(rows: dict) -> str:
    """Return the markdown table of the rows ({name: figures})."""
    lines = ["| test split | R1 | R5 | R10 | mAP | mINP |", "|---|---:|---:|---:|---:|---:|"]
    for name in ROWS:
        m = rows.get(name)
        cells = " | ".join(f"{m[k]:.2f}" for k in ("R1", "R5", "R10", "mAP", "mINP")) if m else "not run | | | |"
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def command(args: dict) -> str:
    """Return the command line that reproduces a run with ``args`` (its recorded arguments)."""
    parts = ["python -m benchmarks.synth_learnability"]
    for k in ("ids", "epochs", "lr", "seed"):
        parts.append(f"--{k} {args[k]}")
    if args.get("json"):
        parts.append(f"--json {args['json']}")
    if args.get("doc"):
        parts.append(f"--doc {args['doc']}")
    return " ".join(parts)


def doc_block(result: dict) -> str:
    """Return the document block of a results file: the command, the run record, the data, the table."""
    run, d, m = result["run"], result["data"], result["model"]
    return "\n".join([
        f"Generated by `{command(run['args'])}` into [synth_learnability.json](synth_learnability.json) "
        f"({describe_run(run)}). Generated data, one seed: never comparable with CUHK-PEDES.", "",
        f"Data: {d['ids']['train']} / {d['ids']['val']} / {d['ids']['test']} train / val / test identities at "
        f"{d['size']}, {d['test_queries']} test queries, chance Rank-1 {d['chance_rank1_test']:.2f} %; "
        f"{d['test_ids_with_a_held_out_pair']} test identities wear an attribute pair never seen in training. "
        f"Model: {m['arch']} at {m['input'][0]}x{m['input'][1]}, random init (seed {m['seed']}), {m['epochs']} "
        f"epochs, batch {m['batch']}, lr {m['lr']:g}; training took {result['train_s'].get('trained', '?')} s "
        f"(control {result['train_s'].get('caption-shuffled control', '?')} s).", "",
        table(result["rows"])])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Generate (if needed), train, evaluate the three rows, print and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="a data synth folder (default: generated into --work)")
    p.add_argument("--work", default=str(ROOT / "runs" / "synth_learnability"), help="data and runs (not committed)")
    p.add_argument("--ids", type=int, default=400, help="identities to generate (10 %% val, 10 %% test)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="data order, augmentation and initial weights")
    add_results_args(p, "learnability")
    a = p.parse_args(argv)
    check_results_args(p, a)
    if a.from_json:
        result = json.loads(Path(a.from_json).read_text())
        print(table(result["rows"]))
        return 0 if not a.doc or replace_block(a.doc, "learnability", doc_block(result)) else 2
    record = new_record(vars(a), "learnability")
    work = Path(a.work)
    data = Path(a.data) if a.data else work / f"data_{a.ids}"
    if not (data / "stats.json").is_file():
        subprocess.run([sys.executable, "-m", "person_search", "data", "synth", str(data), "--ids", str(a.ids),
                        "--images-per-id", "4", "--seed", "0", "--size", "64x128"], cwd=ROOT, check=True)
    build_encoder(EncoderConfig(arch=ARCH, image_height=SIZE[0], image_width=SIZE[1]))  # registers the configs
    test = load_dataset(data, "cuhk-pedes").split("test").eval_view()
    stats = json.loads((data / "stats.json").read_text())
    held = stats.get("test_held_out_pair_ids", [])
    rows, secs = {}, {}
    for name, shuffle in (("trained", False), ("caption-shuffled control", True)):
        run = work / ("shuffled" if shuffle else "trained") / f"seed{a.seed}"
        secs[name] = round(train_and_save(data, run, epochs=a.epochs, lr=a.lr, seed=a.seed, shuffle=shuffle), 1)
        enc = build_encoder(EncoderConfig(arch=ARCH, weights=str(run / "last.safetensors"), image_height=SIZE[0],
                                          image_width=SIZE[1], batch_size=64))
        res = evaluate(enc, test, progress=False)
        rows[name] = _figures(res.t2i)
        if not shuffle and held:
            rows["trained: t2i-unseen-pairs"] = _figures(res.queries_of(held))
    res = evaluate(build_encoder(EncoderConfig(arch=ARCH, image_height=SIZE[0], image_width=SIZE[1],
                                               batch_size=64)), test, progress=False)
    rows["untrained"] = _figures(res.t2i)
    shown = data.resolve().relative_to(ROOT) if data.resolve().is_relative_to(ROOT) else data
    out = {"data": {"path": str(shown), "ids": stats["ids"], "size": stats["size"],
                    "chance_rank1_test": stats["chance_rank1"]["test"], "test_queries": len(test.captions),
                    "test_ids_with_a_held_out_pair": len(held)},
           "model": {"arch": ARCH, "input": list(SIZE), "epochs": a.epochs, "lr": a.lr, "batch": 64,
                     "seed": a.seed}, "train_s": secs, "rows": rows}
    print(f"generated data ({stats['ids']['train']} / {stats['ids']['val']} / {stats['ids']['test']} train / val / "
          f"test ids; test chance Rank-1 {stats['chance_rank1']['test']:.2f} %), {ARCH} {a.epochs} epochs, seed "
          f"{a.seed}; commit {record['commit'][:12]}, load {record['load1_start']}")
    print(table(rows))
    if a.json:
        write_results(a.json, record, **out)
        if a.doc and not replace_block(a.doc, "learnability", doc_block(json.loads(Path(a.json).read_text()))):
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
