"""Writing a run folder during training: checkpoints, resumable state, metrics log, curves, ``model.json``.

The layout and ``model.json`` are the model contract of :mod:`person_search.core.models.run`
(the one reader); this module writes them: ``best`` / ``last`` as plain open_clip checkpoints
in every mode (a LoRA run's adapters merged into a copy as they are written, so
``best.safetensors`` is servable as it is), ``*.adapters.safetensors`` (LoRA: the training
layout, for ``--resume``), ``state.pt``, ``metrics.jsonl`` (one row per optimizer step,
``kind: train``, and per validation, ``kind: eval``) and ``curves.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from person_search.core.models.run import BEST, FORMAT, LAST, TRAINED_TEMPLATES, atomic_write, checkpoint_file


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state dict (float tensors on the CPU, contiguous) as safetensors, atomically."""
    from safetensors.torch import save_file
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(Path(path), lambda p: save_file(sd, str(p), metadata={"format": "pt"}))


def save_checkpoint(trainable, run_dir: Path, name: str) -> None:
    """Write ``RUN/<name>.safetensors`` (plain open_clip) and, for LoRA, ``RUN/<name>.adapters.safetensors``."""
    if trainable.peft is None:
        save_weights(trainable.clip, run_dir / checkpoint_file(name))
        return
    from person_search.lab.train.lora import merged_copy
    save_weights(trainable.clip, run_dir / checkpoint_file(name, "lora"))
    save_weights(merged_copy(trainable.peft), run_dir / checkpoint_file(name))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state dict into ``model`` strictly (every key, every shape)."""
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(path), device="cpu"), strict=True)


def save_state(path: str | Path, state: Dict[str, Any]) -> None:
    """Write the resumable training state (tensors and plain Python values only)."""
    atomic_write(Path(path), lambda p: torch.save(state, p))


def load_state(path: str | Path) -> Dict[str, Any]:
    """Read :func:`save_state`'s file (``weights_only``: no code runs on load)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def model_info(cfg, facts, *, counts, step: int, best: Optional[Dict[str, Any]],
               final_eval: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Return the ``model.json`` of a run.

    Keys: format, arch, image_size [H, W], attention, mean, std, embed_dim, mode, lora (settings
    or null), start_weights (as given) and start_weights_id, checkpoint (best / last: plain
    open_clip files; adapters: the LoRA-layout files or null), trainable_params, total_params, trainable_share,
    loss, data (path, format, digest), steps, best ({step, metrics} or null), final_eval
    (the hook's figures at the end, or null), train_config (every TrainConfig field),
    text_templates (``["{}"]``: the loop tokenizes each caption as written), versions.
    """
    import open_clip

    trainable, total = counts
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:  # pragma: no cover - only LoRA runs need peft
        peft_version = None
    return {
        "format": FORMAT, "arch": facts.arch, "image_size": list(facts.image_size), "attention": facts.attention,
        "mean": list(facts.mean), "std": list(facts.std), "embed_dim": facts.dim,
        "mode": cfg.mode, "lora": cfg.lora_settings() or None,
        "start_weights": cfg.weights, "start_weights_id": facts.weights_id,
        "checkpoint": {"best": BEST, "last": LAST, "adapters": None if cfg.mode != "lora" else {
            "best": checkpoint_file("best", "lora"), "last": checkpoint_file("last", "lora")}},
        "trainable_params": int(trainable), "total_params": int(total),
        "trainable_share": round(trainable / max(total, 1), 6),
        "loss": cfg.loss, "data": dict(cfg.data), "steps": int(step), "best": best, "final_eval": final_eval,
        "train_config": cfg.to_dict(), "text_templates": list(TRAINED_TEMPLATES),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__, "peft": peft_version},
    }


class MetricsLog:
    """Append-only ``metrics.jsonl``; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: Path, *, resume_step: Optional[int] = None):
        self.path = path
        if resume_step is None:
            path.write_text("")
        elif path.is_file():
            keep = [r for r in self.rows() if r.get("step", 0) <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def append(self, row: Dict[str, Any]) -> None:
        """Write one row."""
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> List[Dict[str, Any]]:
        """Return every row."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def smoothing_window(n: int) -> int:
    """Return the EMA window (steps) for a curve of ``n`` logged steps: a tenth of it, 1..50."""
    return max(1, min(50, n // 10))


def ema(values: List[float], window: int) -> List[float]:
    """Return the bias-corrected exponential moving average of ``values`` (beta = 1 - 1/window).

    The correction (as in Adam) makes the first points the mean of what was seen so far instead
    of pulling them towards the first value, so a short curve is not drawn far from the loss.
    """
    beta = 1.0 - 1.0 / max(1, window)
    acc, out = 0.0, []
    for t, v in enumerate(values, 1):
        acc = beta * acc + (1.0 - beta) * v
        out.append(acc / (1.0 - beta ** t) if beta > 0 else v)
    return out


def plot_curves(rows: List[Dict[str, Any]], path: Path, title: str = "") -> None:
    """Draw the training loss and the validation Rank-1 against the step into ``path`` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval" and "R1" in r]
    fig, (ax_loss, ax_r1) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        steps, loss = [r["step"] for r in train], [r["loss"] for r in train]
        window = smoothing_window(len(loss))
        ax_loss.plot(steps, loss, lw=0.6 if window > 1 else 1.5, alpha=0.4 if window > 1 else 1.0,
                     marker="o" if len(loss) < 30 else None, ms=3, label="loss")
        if window > 1:  # a short run is drawn as it is: a smoothed line would only lag it
            ax_loss.plot(steps, ema(loss, window), lw=1.5, label=f"EMA over ~{window} steps")
        ax_loss.legend()
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    if evals:
        ax_r1.plot([r["step"] for r in evals], [r["R1"] for r in evals], "o-")
    else:
        ax_r1.text(0.5, 0.5, "no validation", ha="center", va="center", transform=ax_r1.transAxes)
    ax_r1.set(xlabel="step", ylabel="Rank-1 (%)", title="validation Rank-1")
    from matplotlib.ticker import MaxNLocator
    for ax in (ax_loss, ax_r1):  # steps are whole numbers
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=90, format="png"))
    plt.close(fig)
