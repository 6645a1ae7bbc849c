"""``TrainConfig``: everything one fine-tuning run needs, apart from the pipeline config.

The pipeline config (``core/config.py``) describes a deployed graph; a training run is a
different thing with its own lifetime, so its settings live here. ``validate()`` raises
:class:`~person_search.core.config.ConfigError` with one line naming the bad field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from person_search.core.config import AttentionConfig, ConfigError

MODES = ("full", "frozen-text", "lora")
LOSSES = ("infonce", "infonce+sdm")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LORA_TARGETS = ("qkv", "out_proj", "c_fc", "c_proj")  # split q/k/v, attention output, MLP in/out


@dataclass
class TrainConfig:
    """One training run: model, mode, optimisation, loss and bookkeeping.

    Defaults follow IRRA's CLIP baseline where it has one (fixed logit scale 50 = temperature
    0.02, lr 1e-5 for a full fine-tune of pretrained weights); LoRA usually wants ~1e-4.
    """

    # model
    arch: str = "ViT-B-16"  # open_clip architecture
    weights: str = ""  # start checkpoint (path or open_clip tag); "" = random init (from scratch)
    image_height: int = 384
    image_width: int = 128
    attention: str = "sdpa"  # attention kernel (core/attention): "sdpa", "eager", "window", "lam", ...
    attention_settings: Dict[str, Any] = field(default_factory=dict)  # the kernel's settings, e.g. window_size
    # what trains
    mode: str = "full"  # "full", "frozen-text" (text tower frozen) or "lora"
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: Tuple[str, ...] = LORA_TARGETS
    lora_train_projections: bool = True  # also train visual.proj and text_projection in lora mode
    # loss
    loss: str = "infonce"  # "infonce" or "infonce+sdm" (IRRA's similarity distribution matching)
    logit_scale: float = 50.0  # exp(model.logit_scale) at the start; IRRA keeps it fixed at 50
    learn_logit_scale: bool = False
    sdm_weight: float = 1.0
    # optimisation
    epochs: int = 1
    max_steps: int = 0  # optimizer steps; > 0 overrides epochs
    batch_size: int = 64
    accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-5
    weight_decay: float = 0.02  # AdamW; never on norms, biases, embeddings' 1-D params or the logit scale
    warmup_steps: int = 0  # linear warm-up, then cosine to 0
    warmup_epochs: float = 0.0  # used when warmup_steps is 0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    precision: str = "auto"  # "auto" (bf16 autocast on a GPU that has it, else fp16; fp32 on CPU)
    device: str = "auto"  # "auto" = cuda when available, else cpu
    # data and controls
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    threads: int = 0  # torch CPU threads; 0 = torch's default
    shuffle_captions: bool = False  # control: captions shuffled across the batch (identities) every step
    # bookkeeping
    eval_every: int = 0  # optimizer steps between validations; 0 = at the end of each epoch
    data: Dict[str, Any] = field(default_factory=dict)  # provenance: path, format, digest (model.json)

    def attention_config(self) -> AttentionConfig:
        """Return the attention sub-config (kind + settings) the model is built with."""
        names = {f.name for f in dataclasses.fields(AttentionConfig)} - {"kind"}
        bad = sorted(set(self.attention_settings) - names)
        if bad:
            raise ConfigError(f"unknown attention setting(s): {', '.join(bad)} (known: {', '.join(sorted(names))})")
        return AttentionConfig(kind=self.attention, **self.attention_settings)

    def validate(self) -> None:
        """Raise ConfigError (one line) for the first field out of range."""
        def check(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        check(bool(self.arch), "arch must not be empty")
        check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        check(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        self.attention_config().validate()  # a kernel of core/attention and its settings
        check(self.image_height >= 16 and self.image_width >= 16, "image size must be at least 16x16")
        check(self.lora_rank > 0, f"lora rank must be > 0, not {self.lora_rank}")
        check(self.lora_alpha > 0, f"lora alpha must be > 0, not {self.lora_alpha}")
        check(0.0 <= self.lora_dropout < 1.0, f"lora dropout must be in [0, 1), not {self.lora_dropout}")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        check(bool(self.lora_targets) and not bad,
              f"lora targets must be a non-empty subset of {', '.join(LORA_TARGETS)} (bad: {', '.join(bad)})")
        check(self.logit_scale > 0, f"logit scale must be > 0, not {self.logit_scale}")
        check(self.sdm_weight >= 0, f"sdm weight must be >= 0, not {self.sdm_weight}")
        check(self.epochs >= 1 or self.max_steps >= 1, "need epochs >= 1 or max steps >= 1")
        check(self.max_steps >= 0, f"max steps must be >= 0, not {self.max_steps}")
        check(self.batch_size >= 2, f"batch size must be >= 2 (contrastive loss), not {self.batch_size}")
        check(self.accum >= 1, f"accum must be >= 1, not {self.accum}")
        check(self.lr > 0, f"lr must be > 0, not {self.lr}")
        check(self.weight_decay >= 0, f"weight decay must be >= 0, not {self.weight_decay}")
        check(self.warmup_steps >= 0 and self.warmup_epochs >= 0, "warm-up must be >= 0")
        check(self.grad_clip >= 0, f"grad clip must be >= 0, not {self.grad_clip}")
        check(self.workers >= 0 and self.threads >= 0, "workers and threads must be >= 0")
        check(self.eval_every >= 0, f"eval every must be >= 0, not {self.eval_every}")

    @property
    def image_size(self) -> Tuple[int, int]:
        """Return (H, W) of the image tower input."""
        return int(self.image_height), int(self.image_width)

    def to_dict(self) -> Dict[str, Any]:
        """Return a JSON-ready dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        """Build from :meth:`to_dict` output; unknown keys are an error (a run from another version)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(unknown)}")
        d = dict(d)
        if "lora_targets" in d:
            d["lora_targets"] = tuple(d["lora_targets"])
        return cls(**d)

    def lora_settings(self) -> Dict[str, Any]:
        """Return the LoRA settings (rank, alpha, dropout, targets, projections) or {} when not LoRA."""
        if self.mode != "lora":
            return {}
        return {"rank": self.lora_rank, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                "targets": list(self.lora_targets), "train_projections": self.lora_train_projections}
