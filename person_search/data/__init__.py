"""Text-based person search datasets: loaders (CUHK-PEDES, ICFG-PEDES, RSTPReid), torch views, generator.

The trainer's entry points::

    from person_search.data import load_dataset, train_loader, EvalTransform

    ds = load_dataset("data/CUHK-PEDES", "cuhk-pedes")
    loader = train_loader(ds.split("train"), size=(384, 128), mean=enc.mean, std=enc.std)
    for images, captions, labels in loader: ...
    view = ds.split("test").eval_view()  # gallery images + query captions with pids
"""

from person_search.data.datasets import (FORMATS, DatasetError, EvalView, PersonTextDataset, Record, Split,
                                         load_dataset)
from person_search.data.torchdata import (CaptionPairs, Images, EvalTransform, TrainTransform, read_image,
                                          train_loader)

__all__ = ["FORMATS", "DatasetError", "EvalView", "PersonTextDataset", "Record", "Split", "load_dataset",
           "CaptionPairs", "Images", "EvalTransform", "TrainTransform", "read_image", "train_loader"]
