"""Check that the generated dataset is learnable from pixels, and that the caption-shuffled control is not.

Trains a tiny CLIP (PS-Tiny-ViT, random init, both towers) for a few epochs with the
symmetric InfoNCE loss on the train split of a ``person-search data synth`` folder, saves
the run (``RUN/last.safetensors`` + ``RUN/model.json``, the eval contract) and evaluates it
on the test split with the project's evaluation. ``--shuffle-captions`` pairs every image
with the caption of a random other training image: the control that must stay at chance.
Figures are on generated data: never compare them with CUHK-PEDES numbers. Not the
project's trainer (no LoRA, no schedule, no checkpoints selection), a data sanity check.

    python benchmarks/synth_learnability.py DATA RUN [--epochs 15] [--shuffle-captions]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from person_search.core.config import EncoderConfig
from person_search.data import load_dataset, train_loader
from person_search.eval.evaluate import build_encoder, evaluate

ARCH, SIZE = "PS-Tiny-ViT", (64, 64)  # its native size: the checkpoint loads without resizing
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def main() -> None:
    """Train, save the run, evaluate on the test split, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("run")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle-captions", action="store_true", help="control: captions of random other images")
    a = p.parse_args()
    import open_clip
    torch.manual_seed(a.seed)
    build_encoder(EncoderConfig(arch=ARCH, image_height=SIZE[0], image_width=SIZE[1]))  # registers the configs
    model = open_clip.create_model(ARCH)
    tok = open_clip.get_tokenizer(ARCH)
    train = load_dataset(a.data, "cuhk-pedes").split("train")
    if a.shuffle_captions:
        rng = np.random.default_rng(a.seed)
        caps = [r.captions for r in train.records]
        order = rng.permutation(len(caps))
        train.records = [type(r)(r.image, r.pid, caps[j], r.source_pid, r.index) for r, j in zip(train.records, order)]
    loader = train_loader(train, size=SIZE, mean=MEAN, std=STD, batch_size=64, workers=0,
                          generator=torch.Generator().manual_seed(a.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(a.epochs):
        losses = []
        for images, captions, _ in tqdm(loader, desc=f"epoch {epoch + 1}/{a.epochs}", leave=False):
            img = F.normalize(model.encode_image(images), dim=-1)
            txt = F.normalize(model.encode_text(tok(list(captions))), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * txt @ img.T
            target = torch.arange(len(images))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}")
    run = Path(a.run)
    run.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(run / "last.safetensors"))
    (run / "model.json").write_text(json.dumps({"arch": ARCH, "image_size": list(SIZE), "epochs": a.epochs,
                                                "shuffled_captions": a.shuffle_captions}))
    enc = build_encoder(EncoderConfig(arch=ARCH, weights=str(run / "last.safetensors"), image_height=SIZE[0],
                                      image_width=SIZE[1], batch_size=64))
    res = evaluate(enc, load_dataset(a.data, "cuhk-pedes").split("test").eval_view())
    print(f"trained {a.epochs} epochs in {time.perf_counter() - t0:.0f} s"
          f"{' (caption-shuffled control)' if a.shuffle_captions else ''}; generated data, test split, "
          f"chance Rank-1 {res.chance_rank1:.2f} %")
    print(res.table())


if __name__ == "__main__":
    main()
