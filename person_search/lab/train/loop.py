"""The training loop: :func:`train` fits a CLIP to (image, caption, label) pairs.

Data: any ``torch.utils.data.Dataset`` whose items are ``(image, caption, label)``, a
normalised float (3, H, W) tensor at the run's image size, a str and an int person label.
Validation: an optional callable ``validate(encoder) -> dict`` that receives
``ClipEncoder.over`` the live model (in eval mode: the encoder serving uses, see
:meth:`~person_search.lab.train.model.Trainable.encoder`) and returns figures in percent, at
least ``"R1"``; ``best.safetensors`` keeps the weights with the highest R1. The run folder is
the model contract of :mod:`person_search.core.models.run`, written by
:mod:`person_search.lab.train.checkpoint`.
"""

from __future__ import annotations

import logging
import math
import numbers
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from person_search.core.config import ConfigError
from person_search.core.models.factory import ModelFacts
from person_search.core.models.run import CURVES, LAST, METRICS, STATE, checkpoint_file, write_model_json
from person_search.lab.train import checkpoint as ck
from person_search.lab.train.config import TrainConfig
from person_search.lab.train.losses import matching_loss
from person_search.lab.train.model import Trainable, build_trainable

logger = logging.getLogger(__name__)

Validate = Callable[[Any], Dict[str, float]]  # ClipEncoder -> figures
RESUMABLE_CHANGES = ("epochs", "max_steps", "eval_every", "workers", "threads", "device", "data")


class TrainError(RuntimeError):
    """A run cannot start or continue (dataset too small, resume mismatch, ...): one line."""


@dataclass
class TrainResult:
    """What :func:`train` leaves behind."""

    run_dir: Path
    steps: int
    last_loss: float
    best: Optional[Dict[str, Any]]  # {"step", "metrics"} of the best validation, None without one
    final_eval: Optional[Dict[str, float]]
    trainable_params: int
    total_params: int


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:  # DataLoader workers: numpy / random follow torch's per-worker seed
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


def shuffle_captions(captions: Sequence[str], generator: torch.Generator) -> List[str]:
    """Return the batch's captions in a uniformly random order: the control that must stay at chance.

    Every image gets a caption drawn without regard to identity, so the pairs say nothing about
    who is who. (A derangement that always moves a caption to *another* person would: "not
    this person" is a signal, and a model learns it and falls below chance.)
    """
    return [captions[j] for j in torch.randperm(len(captions), generator=generator).tolist()]


class _EpochSampler(Sampler):
    """A seeded random order per epoch, started part-way through on resume."""

    def __init__(self, n: int, count: int, seed: int):
        self.n, self.count, self.seed = n, count, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[self.start:self.count].tolist())

    def __len__(self) -> int:
        return self.count - self.start


def param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Split the trainable parameters: AdamW decay on matrices, none on norms, biases, embeddings, logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "positional_embedding" in name or name.endswith("logit_scale")
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """Return the lr factor of step s: linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``."""
    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))
    return factor


def resolve_device(cfg: TrainConfig):
    """Return (device, autocast dtype or None): AMP only on a CUDA GPU."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(cfg.device)
        except RuntimeError:
            raise ConfigError(f"device {cfg.device!r} is not a torch device") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device is {cfg.device!r} but CUDA is not available")
    if device.type != "cuda":
        if cfg.precision in ("bf16", "fp16"):
            raise ConfigError(f"precision {cfg.precision} (autocast) needs a CUDA GPU; use fp32 on {device}")
        return device, None
    if cfg.precision == "fp32":
        return device, None
    if cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported()):
        return device, torch.bfloat16
    return device, torch.float16


class _Run:
    """The state of one run between steps (kept small: train() reads top to bottom)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, trainable: Trainable, device, amp, validate):
        self.cfg, self.dir, self.t = cfg, run_dir, trainable
        self.device, self.amp, self.validate = device, amp, validate
        self.best: Optional[Dict[str, Any]] = None
        self.final_eval: Optional[Dict[str, float]] = None
        self.step = 0

    def evaluate(self) -> Optional[Dict[str, float]]:
        if self.validate is None:
            return None
        self.t.clip.eval()
        try:
            raw = self.validate(self.t.encoder(device=self.device, autocast_dtype=self.amp,
                                               batch_size=self.cfg.batch_size, step=self.step))
        finally:
            self.t.clip.train()
        figures = {k: float(v) for k, v in dict(raw).items() if isinstance(v, numbers.Real)}  # scalars only
        if "R1" not in figures:
            raise TrainError(f"the validation hook returned {sorted(figures)}: it must return R1")
        if self.best is None or figures["R1"] > self.best["metrics"]["R1"]:
            self.best = {"step": self.step, "metrics": figures}
            ck.save_checkpoint(self.t, self.dir, "best")
        return figures

    def save(self, optimizer, scheduler, scaler) -> None:
        ck.save_checkpoint(self.t, self.dir, "last")
        _, keys, pos, has_gauss, cached = np.random.get_state()
        rng = {"torch": torch.get_rng_state(), "random": random.getstate(),
               "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        ck.save_state(self.dir / STATE, {
            "step": self.step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": rng, "best": self.best, "config": self.cfg.to_dict()})

    def restore(self, optimizer, scheduler, scaler) -> None:
        state = ck.load_state(self.dir / STATE)
        saved = state["config"]
        differ = [k for k, v in self.cfg.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v]
        if (saved.get("data") or {}).get("digest") != (self.cfg.data or {}).get("digest"):
            differ.append("data (digest)")
        if differ:
            raise TrainError(f"{self.dir} was trained with other settings ({', '.join(differ)}); "
                             f"resume with the same ones or use another --out")
        layout = "lora" if self.t.peft is not None else "open_clip"
        ck.load_weights(self.t.clip, self.dir / checkpoint_file("last", layout))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["random"])
        keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step, self.best = int(state["step"]), state["best"]

    def finish(self, log: ck.MetricsLog) -> None:
        info = ck.model_info(self.cfg, self.t.facts, counts=self.t.parameter_counts(), step=self.step,
                             best=self.best, final_eval=self.final_eval)
        write_model_json(self.dir, info)
        ck.plot_curves(log.rows(), self.dir / CURVES, title=f"{self.cfg.arch} {self.cfg.mode} ({self.dir.name})")


def train(cfg: TrainConfig, data: Dataset | Callable[[ModelFacts], Dataset], run_dir: str | Path, *,
          validate: Optional[Validate] = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg``'s model on ``data`` into the run folder ``run_dir``.

    Args:
        cfg: the run's settings.
        data: a dataset of ``(image (3, H, W) float tensor, caption str, label int)`` items, or a
            callable that makes one from the model's :class:`ModelFacts` (image size, mean, std).
        run_dir: the run folder (created; must not hold a run unless ``resume``).
        validate: optional hook ``validate(encoder) -> {"R1": ..., ...}`` (see the module doc).
        resume: continue from ``run_dir/state.pt`` and ``last.safetensors``.
        progress: show a tqdm progress bar on stderr.

    Raises:
        ConfigError: a bad setting. TrainError: the data or the run folder do not allow the run.
        KeyboardInterrupt: after saving ``last.safetensors`` + ``state.pt`` (continue with resume).
    """
    from tqdm import tqdm

    cfg.validate()
    run_dir = Path(run_dir)
    if resume and not (run_dir / STATE).is_file():
        raise TrainError(f"{run_dir / STATE}: nothing to resume")
    if not resume and (run_dir / STATE).exists():
        raise TrainError(f"{run_dir} already holds a run: pass resume (--resume) or another output folder")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device, amp = resolve_device(cfg)
    seed_everything(cfg.seed)
    trainable = build_trainable(cfg)
    dataset = data if isinstance(data, Dataset) else data(trainable.facts)
    micro_per_epoch = len(dataset) // cfg.batch_size // cfg.accum * cfg.accum
    if micro_per_epoch < 1:
        raise TrainError(f"the training set has {len(dataset)} pairs: fewer than one step of "
                         f"batch size {cfg.batch_size} x accum {cfg.accum}")
    steps_per_epoch = micro_per_epoch // cfg.accum
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps or int(round(cfg.warmup_epochs * steps_per_epoch))

    run_dir.mkdir(parents=True, exist_ok=True)
    clip = trainable.clip.to(device).train()
    trainable_n, total_n = trainable.parameter_counts()
    logger.info("%s %s: %d of %d parameters train (%.2f%%); %d steps (%d per epoch), %s%s", cfg.arch, cfg.mode,
                trainable_n, total_n, 100.0 * trainable_n / total_n, total, steps_per_epoch, device,
                f" autocast {amp}" if amp else "")
    optimizer = torch.optim.AdamW(param_groups(clip, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    run = _Run(cfg, run_dir, trainable, device, amp, validate)
    if resume:
        run.restore(optimizer, scheduler, scaler)
        clip.to(device)
    log = ck.MetricsLog(run_dir / METRICS, resume_step=run.step if resume else None)

    sampler = _EpochSampler(len(dataset), micro_per_epoch * cfg.batch_size, cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda", worker_init_fn=_seed_worker,
                        persistent_workers=cfg.workers > 0, generator=torch.Generator())
    bar = tqdm(total=total, initial=run.step, unit="step", desc=f"train {cfg.mode}", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    last_loss, eval_step = float("nan"), -1
    try:
        while run.step < total:
            epoch, offset = divmod(run.step * cfg.accum, micro_per_epoch)
            sampler.set_epoch(epoch, offset * cfg.batch_size)
            loader.generator.manual_seed(cfg.seed * 1_000_003 + epoch)  # worker seeds: per epoch
            micro, losses, t0 = 0, [], time.perf_counter()
            for images, captions, labels in loader:
                labels = torch.as_tensor(labels)
                if cfg.shuffle_captions:
                    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.step * 1009 + len(losses))
                    captions = shuffle_captions(list(captions), g)
                loss = forward_loss(trainable, cfg, images, captions, labels, device, amp)
                scaler.scale(loss / cfg.accum).backward()
                losses.append(float(loss.detach()))
                micro += 1
                if micro % cfg.accum:
                    continue
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for p in clip.parameters() if p.requires_grad], cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if cfg.learn_logit_scale:
                    with torch.no_grad():
                        clip.logit_scale.clamp_(0, math.log(100))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                run.step += 1
                last_loss = float(np.mean(losses))
                now = time.perf_counter()
                log.append({"kind": "train", "step": run.step, "epoch": epoch, "loss": last_loss,
                            "lr": optimizer.param_groups[0]["lr"], "step_time_s": round(now - t0, 5),
                            "logit_scale": float(clip.logit_scale.detach().exp())})
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                losses, t0 = [], now
                epoch_end = run.step * cfg.accum % micro_per_epoch == 0
                if (cfg.eval_every and run.step % cfg.eval_every == 0) or (not cfg.eval_every and epoch_end):
                    run.final_eval = _checkpoint(run, log, optimizer, scheduler, scaler)
                    eval_step = run.step
                if run.step >= total:
                    break
        if eval_step != run.step:
            run.final_eval = _checkpoint(run, log, optimizer, scheduler, scaler)
    except KeyboardInterrupt:
        bar.close()
        run.save(optimizer, scheduler, scaler)
        run.finish(log)
        logger.warning("interrupted at step %d: %s saved; continue with resume", run.step, run_dir / LAST)
        raise
    bar.close()
    if validate is None:
        ck.save_checkpoint(trainable, run_dir, "best")  # no validation: the final weights are the best we know
    run.finish(log)
    return TrainResult(run_dir, run.step, last_loss, run.best, run.final_eval, trainable_n, total_n)


def forward_loss(t: Trainable, cfg: TrainConfig, images: torch.Tensor, captions: Sequence[str], labels: torch.Tensor,
                 device: torch.device, amp: Optional[torch.dtype]) -> torch.Tensor:
    """Return the loss of one batch (forward of both towers under autocast ``amp`` when given)."""
    images = images.to(device, non_blocking=True)
    tokens = t.tokenizer(list(captions)).to(device, non_blocking=True)
    with torch.autocast(device_type=device.type, dtype=amp, enabled=amp is not None):
        image_features = t.clip.encode_image(images)
        if cfg.mode == "frozen-text":
            with torch.no_grad():  # nothing to learn there: no activations kept for backward
                text_features = t.clip.encode_text(tokens)
        else:
            text_features = t.clip.encode_text(tokens)
    scale = t.clip.logit_scale.exp()
    return matching_loss(cfg.loss, image_features, text_features, labels.to(device), scale, cfg.sdm_weight)


def _checkpoint(run: _Run, log: ck.MetricsLog, optimizer, scheduler, scaler) -> Optional[Dict[str, float]]:
    """Validate (if a hook is given), save last / best / state, and log the figures."""
    figures = run.evaluate()
    if figures is not None:
        log.append({"kind": "eval", "step": run.step, **figures})
        logger.info("step %d: %s", run.step, ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    run.save(optimizer, scheduler, scaler)
    return figures
