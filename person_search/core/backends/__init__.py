"""Image-tower runtimes behind one protocol (``base.ImageBackend``), chosen by ``encoder.backend``.

One file per runtime (``torch.py``, ``torch_int8.py``, ``onnx.py``); the runtime library is
imported inside its file. A new runtime (e.g. ``tensorrt.py``) subclasses ``ImageBackend``,
declares the devices it runs on, and is added to ``registry.py``: the config's list of
valid names is that registry.
"""
