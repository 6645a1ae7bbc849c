"""Model building shared by serving and training: ``build_clip(cfg)`` is the one way in.

Which folder owns what (all under ``person_search/core/``):

* ``models/archs.py``: explicit registration of the shipped architectures
  (``person_search/model_configs/*.json``) with open_clip; the list of known archs.
  A new architecture is a JSON config there (open_clip's format).
* ``models/weights.py``: ``WeightsError``; weights resolution (random, local file,
  pretrained tag, offline first), checkpoint loading, file digests and fingerprints.
* ``models/pos_embed.py``: the 2-D position-embedding resize for tall crops (384x128).
* ``models/factory.py``: :func:`build_clip` -> :class:`BuiltModel` (module + its one
  ``ModelFacts``), for serving (frozen, eval) or training (trainable, both towers).
* ``models/run.py``: the model contract from training to serving: the run-folder layout,
  the one strict reader of ``model.json`` and of a checkpoint's sidecar, ``servable()``
  (what ``encoder.weights``, ``person-search eval`` and ``lora merge`` read).
* ``attention/``: the attention module, its kernels and ``patch.py`` (the only file that
  touches open_clip's attention internals). A new attention variant is a kernel there.
* ``backends/``: image-tower runtimes (torch, torch-int8, onnx, onnx-int8, openvino, tensorrt) behind
  ``backends/base.py``; a new runtime is one file there plus one line in its registry.
* ``encoder.py``: the thin runtime :class:`ClipEncoder` (preprocess, backend, normalise);
  ``ClipEncoder.over(built)`` is the one encoder over a model built already (training-time
  validation, the attention study).
"""
