"""``person-search train`` (fine-tune CLIP on a person-text dataset) and ``lora merge``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

log = logging.getLogger("person_search")

# flag -> (TrainConfig field, type, help); defaults come from TrainConfig alone
OPTIONS: Tuple[Tuple[str, str, Any, str], ...] = (
    ("--arch", "arch", str, "open_clip architecture"),
    ("--weights", "weights", str, 'start checkpoint (path or open_clip tag); "" = random init'),
    ("--attention", "attention", str, "attention kernel (sdpa, eager, ...)"),
    ("--mode", "mode", str, "full, frozen-text or lora"),
    ("--lora-rank", "lora_rank", int, "LoRA rank r"),
    ("--lora-alpha", "lora_alpha", float, "LoRA alpha (delta = alpha / r * B A)"),
    ("--lora-dropout", "lora_dropout", float, "dropout on the LoRA input"),
    ("--epochs", "epochs", int, "epochs (see --max-steps)"),
    ("--max-steps", "max_steps", int, "optimizer steps; > 0 overrides --epochs"),
    ("--batch-size", "batch_size", int, "pairs per micro-batch"),
    ("--accum", "accum", int, "micro-batches per optimizer step"),
    ("--lr", "lr", float, "peak learning rate (AdamW)"),
    ("--warmup-steps", "warmup_steps", int, "linear warm-up steps, then cosine"),
    ("--warmup-epochs", "warmup_epochs", float, "warm-up in epochs (when --warmup-steps is 0)"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (never on norms, biases, logit scale)"),
    ("--grad-clip", "grad_clip", float, "max gradient norm; 0 = off"),
    ("--loss", "loss", str, "infonce or infonce+sdm"),
    ("--logit-scale", "logit_scale", float, "logit scale (1 / temperature)"),
    ("--sdm-weight", "sdm_weight", float, "weight of the SDM term"),
    ("--precision", "precision", str, "auto, fp32, bf16 or fp16 (autocast on a GPU)"),
    ("--device", "device", str, "auto, cpu, cuda, cuda:1, ..."),
    ("--seed", "seed", int, "seed of every random generator (a from-scratch run: its initial weights too)"),
    ("--workers", "workers", int, "DataLoader worker processes"),
    ("--threads", "threads", int, "torch CPU threads; 0 = default"),
    ("--eval-every", "eval_every", int, "optimizer steps between validations; 0 = every epoch"),
)


def _parse_size(text: str) -> Tuple[int, int]:
    """Parse ``--image-size`` WIDTHxHEIGHT into (H, W) (a wider-than-tall size is refused: the old HxW order)."""
    from person_search.cli.common import parse_wxh
    return parse_wxh(text, "--image-size", person=True)


def _config(a):
    from person_search.lab.train.config import TrainConfig
    fields: Dict[str, Any] = {f: getattr(a, f) for _, f, _, _ in OPTIONS if getattr(a, f) is not None}
    if a.image_size:
        fields["image_height"], fields["image_width"] = _parse_size(a.image_size)
    if a.lora_targets:
        fields["lora_targets"] = tuple(a.lora_targets)
    if a.lora_frozen_projections:
        fields["lora_train_projections"] = False
    if a.attention_set:
        import yaml
        for item in a.attention_set:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--attention-set expects KEY=VALUE, got {item!r}")
            fields.setdefault("attention_settings", {})[key] = yaml.safe_load(value)
    fields["learn_logit_scale"] = a.learn_logit_scale
    fields["shuffle_captions"] = a.shuffle_captions
    cfg = TrainConfig(**fields)
    cfg.validate()
    return cfg


def load_training_data(root: str, fmt: str) -> Tuple[Callable, Optional[Callable], Dict[str, str]]:
    """Return (dataset factory of ModelFacts, validation hook or None, provenance) for ``root``.

    The one place that knows the dataset and evaluation packages (branches ``data`` / ``eval``):
    training pairs from the train split, validation on the val split when the format has one.
    """
    from person_search.lab.data import CaptionPairs, TrainTransform, load_dataset  # lazy: only this command needs it
    from person_search.core.models.weights import file_digest

    ds = load_dataset(root, fmt)
    train_split = ds.split("train")

    def make(facts):
        return CaptionPairs(train_split, TrainTransform(facts.image_size, facts.mean, facts.std))

    validate: Optional[Callable] = None
    if "val" in ds.splits:
        try:
            from person_search.lab.eval.evaluate import evaluate
        except ImportError as exc:
            log.warning("no validation (person_search.lab.eval unavailable: %s); best = last", exc)
        else:
            val_view = ds.split("val").eval_view()
            validate = lambda encoder: evaluate(encoder, val_view, progress=False).t2i  # noqa: E731 - one call
    data = {"path": str(Path(root).resolve()), "format": fmt, "digest": f"sha256-{file_digest(ds.annotations)[:16]}"}
    return make, validate, data


def cmd_train(a) -> int:
    """Train into ``--out``; one line on stderr and exit code 2 for any user error."""
    from person_search.core.config import ConfigError
    from person_search.core.models.weights import WeightsError
    from person_search.lab.train import TrainError, train

    try:
        cfg = _config(a)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not Path(a.data).is_dir():
        print(f"error: --data {a.data}: no such dataset folder", file=sys.stderr)
        return 2
    try:
        make, validate, cfg.data = load_training_data(a.data, a.format)
    except ImportError as exc:
        print(f"error: the dataset loaders are not available here ({exc})", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # DatasetError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, make, a.out, validate=validate, resume=a.resume)
    except (ConfigError, TrainError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {a.out} holds the last step; continue with --resume", file=sys.stderr)
        return 130
    share = 100.0 * result.trainable_params / max(result.total_params, 1)
    print(f"{result.steps} steps, last loss {result.last_loss:.4f}; {result.trainable_params:,} of "
          f"{result.total_params:,} parameters trained ({share:.2f}%)")
    if result.best:
        figures = ", ".join(f"{k} {v:.2f}" for k, v in result.best["metrics"].items())
        print(f"best at step {result.best['step']}: {figures}")
    print(f"run folder: {a.out} (model.json, best.safetensors, metrics.jsonl, curves.png)")
    return 0


def cmd_lora_merge(a) -> int:
    """Merge a run's LoRA adapters into a plain open_clip checkpoint."""
    from person_search.lab.train.merge import MergeError, merge_run
    try:
        meta = merge_run(a.run, a.out, checkpoint=a.checkpoint)
    except MergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    h, w = meta["image_size"]
    print(f"wrote {a.out} (+ {a.out}.json): plain open_clip {meta['arch']} checkpoint, {meta['mode']} run; serve it "
          f"with --set encoder.arch={meta['arch']} --set encoder.weights={a.out} "
          f"--set encoder.image_height={h} --set encoder.image_width={w}")
    return 0


def register(sub) -> None:
    """Add ``train`` and ``lora merge``."""
    from person_search.lab.train.config import LORA_TARGETS, TrainConfig
    defaults = TrainConfig()
    sp = sub.add_parser("train", help="fine-tune CLIP on a person-text dataset (full, frozen-text or LoRA)")
    sp.add_argument("--data", required=True, help="dataset folder")
    sp.add_argument("--format", default="cuhk-pedes", help="cuhk-pedes, icfg-pedes or rstpreid")
    sp.add_argument("--out", required=True, help="run folder (checkpoints, metrics, model.json)")
    sp.add_argument("--image-size", metavar="WxH",
                    help=f"input WIDTHxHEIGHT, taller than wide "
                         f"(default {defaults.image_width}x{defaults.image_height})")
    for flag, field, typ, text in OPTIONS:
        sp.add_argument(flag, dest=field, type=typ, default=None, help=f"{text} (default {getattr(defaults, field)!r})")
    sp.add_argument("--lora-targets", nargs="+", metavar="NAME",
                    help=f"modules to adapt (default: {' '.join(LORA_TARGETS)})")
    sp.add_argument("--lora-frozen-projections", action="store_true",
                    help="LoRA mode: keep visual.proj and text_projection frozen (default: they train)")
    sp.add_argument("--attention-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the attention kernel, e.g. window_size=5 or prune_keep=0.5 (repeatable)")
    sp.add_argument("--learn-logit-scale", action="store_true", help="learn the logit scale (default: fixed)")
    sp.add_argument("--shuffle-captions", action="store_true",
                    help="control: shuffle the captions of every batch across identities (must stay at chance)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("lora", help="LoRA adapters: merge a run into a plain checkpoint")
    lsub = sp.add_subparsers(dest="lora_cmd", required=True, help="merge: fold the adapters into a plain checkpoint")
    mp = lsub.add_parser("merge", help="fold a run's adapters into the weights: a plain open_clip checkpoint")
    mp.add_argument("run", help="training run folder")
    mp.add_argument("--out", required=True, help="merged checkpoint to write (.safetensors; metadata in FILE.json)")
    mp.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which of the run's checkpoints")
    mp.set_defaults(func=cmd_lora_merge)
