"""The attention study's plan, shared by ``attention_study.py`` (runs the cells) and ``study_report.py`` (writes the
page): where the caches live, the variants, towers, shapes and training cells, and what makes two training cells
comparable (their recipe).
"""

from __future__ import annotations

from benchmarks.common import DOCS, ROOT

CACHE = DOCS / "attention_study_cells.json"  # training cells
SPEED_CACHE = DOCS / "attention_study_speed_cells.json"
WORK = ROOT / "runs" / "attention_study"  # generated data, model configs, checkpoints (not committed)
SHAPES = {"deploy": (384, 128), "large": (768, 256)}
VIT = "ViT-B-16"
VARIANTS = {  # name -> encoder.attention of the deploy-size ViT-B/16
    "sdpa": {"kind": "sdpa"}, "eager": {"kind": "eager"},
    "window": {"kind": "window", "window_size": 7}, "sparse": {"kind": "sparse", "sparse_block": 4, "sparse_stride": 8},
    "lam": {"kind": "lam"}, "prune": {"kind": "prune", "prune_keep": 0.5},
}
SMALL = ["PS-MobileNetV3-L", "PS-EfficientNet-B0", "PS-MobileNetV4-S", "TinyCLIP-ViT-8M-16-Text-3M", "MobileCLIP-S1"]
STUDY_VIT = {"embed_dim": 64, "vision_cfg": {"image_size": [96, 32], "layers": 6, "width": 64, "head_width": 32,
                                             "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
TRAIN_SIZE = (96, 32)  # a 12 x 4 patch grid at patch 8
# study-scale small encoders: the shipped timm image towers with the study ViT's text tower and embedding width, so
# that every cell trains the same text side and only the image tower (or its attention) differs
SMALL_STUDY = {"PS-Study-MobileNetV4-S": "PS-MobileNetV4-S", "PS-Study-MobileNetV3-L": "PS-MobileNetV3-L",
               "PS-Study-EfficientNet-B0": "PS-EfficientNet-B0"}
TRAIN_CELLS = {  # name -> (arch, attention); in priority order
    "sdpa": ("PS-Study-ViT", {"kind": "sdpa"}),
    "prune 0.5": ("PS-Study-ViT", {"kind": "prune", "prune_keep": 0.5}),
    "window 5": ("PS-Study-ViT", {"kind": "window", "window_size": 5}),
    "lam": ("PS-Study-ViT", {"kind": "lam"}),
    "MobileNetV4-S": ("PS-Study-MobileNetV4-S", {"kind": "sdpa"}),
    "sparse": ("PS-Study-ViT", {"kind": "sparse", "sparse_block": 4, "sparse_stride": 8}),
    "MobileNetV3-L": ("PS-Study-MobileNetV3-L", {"kind": "sdpa"}),
    "EfficientNet-B0": ("PS-Study-EfficientNet-B0", {"kind": "sdpa"}),
}
SPEED_OF = {"sdpa": (VIT, "sdpa"), "prune 0.5": (VIT, "prune"), "window 5": (VIT, "window"), "lam": (VIT, "lam"),
            "sparse": (VIT, "sparse"), "MobileNetV4-S": ("PS-MobileNetV4-S", "sdpa"),
            "MobileNetV3-L": ("PS-MobileNetV3-L", "sdpa"), "EfficientNet-B0": ("PS-EfficientNet-B0", "sdpa")}


RECIPE_KEYS = ("data", "ids", "size", "batch", "lr", "warmup", "epochs", "init", "loop")


def recipe_of(spec: dict) -> dict:
    """Return what makes two training cells comparable: the recipe of their spec (not the model, seed or threads).

    Cells made before the seed drew the initial weights have no ``init``, cells trained by the study's own loop
    before it used ``person_search.lab.train`` have no ``loop``: they match no current recipe.
    """
    return {k: spec.get(k) for k in RECIPE_KEYS}


def current_recipe(args) -> dict:
    """Return the recipe ``args`` train with."""
    return {"data": str((WORK / f"data_{args.ids}").relative_to(ROOT)), "ids": args.ids, "size": list(TRAIN_SIZE),
            "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "epochs": args.epochs, "init": "seed",
            "loop": "lab"}
