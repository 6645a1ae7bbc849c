"""``person-search eval``: text-to-image retrieval metrics of a CLIP checkpoint on a dataset split.

Exit codes: 0 done; 2 bad input (arguments, dataset, checkpoint, architecture), one line on
stderr; 1 an output file could not be written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from person_search.cli.common import int_at_least
from person_search.cli.data import add_dataset_args

DEFAULT_ARCH = "ViT-B-16"
DEFAULT_SIZE = (384, 128)  # (H, W); on the command line 128x384
HELD_OUT_ROW = "t2i-unseen-pairs"
GENERATED_NOTE = "generated data: not comparable with CUHK-PEDES / ICFG-PEDES / RSTPReid figures"


def _settings(a):
    """Return (checkpoint path or "", arch, (H, W), attention section) from the flags and the model contract.

    A run folder's model.json or a checkpoint's FILE.json gives the arch, size and attention it
    was trained with; ``--arch`` / ``--image-size`` override the first two.
    """
    from person_search.cli.common import parse_wxh
    from person_search.lab.eval.evaluate import resolve_checkpoint
    ckpt, facts = ("", None) if a.random_weights else resolve_checkpoint(a.weights)
    arch = a.arch or (facts.arch if facts else DEFAULT_ARCH)
    size = (parse_wxh(a.image_size, "--image-size", person=True) if a.image_size
            else tuple(facts.image_size) if facts else DEFAULT_SIZE)
    attention = facts.attention_dict() if facts else {}
    return str(ckpt), arch, size, attention


def _check_outputs(a) -> None:
    """Refuse output files in folders that do not exist before the model loads (exit 2)."""
    from person_search.cli.common import UsageError
    for flag, path in (("--json", a.json), ("--save-scores", a.save_scores), ("--plot", a.plot),
                       ("--sheet", a.sheet)):
        if path and not Path(path).expanduser().resolve().parent.is_dir():
            raise UsageError(f"{flag} {path}: the folder {Path(path).parent} does not exist")


def cmd_eval(a) -> int:
    """Evaluate, print the table, write the files asked for."""
    from person_search.core.config import AttentionConfig, ConfigError, EncoderConfig
    from person_search.lab.data.datasets import DatasetError, load_dataset
    from person_search.lab.eval.evaluate import CheckpointError, build_encoder, evaluate
    try:
        ckpt, arch, size, attention = _settings(a)
        _check_outputs(a)
        ds = load_dataset(a.data, a.format)
        view = ds.split(a.split).eval_view()
        cfg = EncoderConfig(arch=arch, weights=ckpt, image_height=size[0], image_width=size[1], device=a.device,
                            batch_size=a.batch_size, threads=a.threads, attention=AttentionConfig(**attention))
        res = evaluate(build_encoder(cfg), view, batch_size=a.batch_size, i2t=a.i2t)
    except (CheckpointError, DatasetError, ConfigError, ValueError) as exc:  # DatasetError: an unreadable image
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = f"{ds.annotations.parent} {a.split} ({a.format}), {res.model_id}, {size[1]}x{size[0]} (WxH)"
    notes = ([GENERATED_NOTE] if ds.generated else []) + (["random weights (control)"] if not ckpt else [])
    print(what + "".join(f"\n  {n}" for n in notes))
    print(f"{len(view.captions)} queries x {len(view.image_paths)} gallery images; "
          f"chance Rank-1 {res.chance_rank1:.2f} %")
    held = ds.generator_stats().get(f"{a.split}_held_out_pair_ids") or []
    if held:
        res.extra[HELD_OUT_ROW] = res.queries_of(held)
        print(f"{HELD_OUT_ROW}: the queries of the {len(held)} identities wearing an attribute pair never seen "
              f"in training, against the whole gallery")
    print(res.table())
    try:
        _write_outputs(a, res, title="; ".join([what] + notes))
    except OSError as exc:
        print(f"error: cannot write an output file: {exc}", file=sys.stderr)
        return 1
    return 0


def _write_outputs(a, res, *, title: str) -> None:
    from person_search.lab.eval.metrics import chance_cmc
    from person_search.lab.eval.plots import plot_cmc, topk_sheet
    if a.json:
        summary = {"data": str(a.data), "format": a.format, "split": a.split, "weights": a.weights or "",
                   "title": title, **res.summary()}
        Path(a.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"metrics: {a.json}")
    if a.save_scores:
        np.savez_compressed(a.save_scores, sim=res.sim, query_pids=res.view.caption_pids,
                            gallery_pids=res.view.image_pids)
        print(f"scores: {a.save_scores}")
    if a.plot:
        curves = {"text-to-image": res.t2i["cmc"]}
        if res.i2t:
            curves["image-to-text"] = res.i2t["cmc"]
        plot_cmc(curves, a.plot, title=title, chance=chance_cmc(res.view.caption_pids, res.view.image_pids))
        print(f"CMC curve: {a.plot}")
    if a.sheet:
        n = len(res.view.captions)
        picks = sorted(set(np.linspace(0, n - 1, min(a.sheet_queries, n)).astype(int).tolist()))
        topk_sheet(res.view, res.sim, a.sheet, queries=picks, title=title)
        print(f"top-5 sheet: {a.sheet}")


def register(sub) -> None:
    """Add ``eval``."""
    sp = sub.add_parser("eval", help="text-to-image retrieval metrics (R1/R5/R10/mAP/mINP) on a dataset split")
    add_dataset_args(sp)
    sp.add_argument("--split", default="test", choices=["train", "val", "test"],
                    help="which split to rank (default test)")
    w = sp.add_mutually_exclusive_group(required=True)
    w.add_argument("--weights", metavar="CKPT|RUN", help="checkpoint file, or a run folder (best/last.safetensors)")
    w.add_argument("--random-weights", action="store_true", help="untrained control: random CLIP weights")
    sp.add_argument("--arch", help=f"open_clip architecture (default: the run's model.json or the checkpoint's "
                                   f"FILE.json, else {DEFAULT_ARCH})")
    sp.add_argument("--image-size", metavar="WxH",
                    help="input WIDTHxHEIGHT, taller than wide (default: model.json or FILE.json, else 128x384)")
    sp.add_argument("--device", default="cpu", help="torch device for the model (default cpu)")
    sp.add_argument("--batch-size", type=int_at_least(1), default=64, help="images / captions per forward pass")
    sp.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (0 = torch's default)")
    sp.add_argument("--i2t", action="store_true", help="also image-to-text metrics")
    sp.add_argument("--json", metavar="OUT.json", help="write the metrics as JSON")
    sp.add_argument("--save-scores", metavar="OUT.npz", help="write sim [queries x gallery], query_pids, gallery_pids")
    sp.add_argument("--plot", metavar="CMC.png", help="write the CMC curve")
    sp.add_argument("--sheet", metavar="TOP5.png", help="write the top-5 images of a few queries")
    sp.add_argument("--sheet-queries", type=int_at_least(1), default=6, help="queries on the sheet")
    sp.set_defaults(func=cmd_eval)
