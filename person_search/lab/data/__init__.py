"""Text-based person search datasets: loaders (CUHK-PEDES, ICFG-PEDES, RSTPReid), torch views, generator.

The trainer's entry points::

    from person_search.lab.data import load_dataset, train_loader, EvalTransform

    ds = load_dataset("data/CUHK-PEDES", "cuhk-pedes")
    loader = train_loader(ds.split("train"), size=(384, 128), mean=enc.mean, std=enc.std)
    for images, captions, labels in loader: ...
    view = ds.split("test").eval_view()  # gallery images + query captions with pids
"""

import importlib

_EXPORTS = {
    "datasets": ["FORMATS", "DatasetError", "EvalView", "PersonTextDataset", "Record", "Split", "load_dataset"],
    "torchdata": ["CaptionPairs", "Images", "EvalTransform", "TrainTransform", "read_image", "train_loader"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Import the submodule that defines ``name`` on first use (no package <-> submodule cycle)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
