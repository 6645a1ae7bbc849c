"""Image-tower runtimes behind one protocol (``base.ImageBackend``), chosen by ``encoder.backend``.

One file per runtime: ``torch.py``, ``torch_int8.py``, ``onnx.py`` (ONNX Runtime fp32 and
int8), ``openvino.py``, ``tensorrt.py``; the runtime library is imported inside its file.
``export.py`` is the ONNX export of the tower and the cache of exported files
(``ExportedBackend``), which the exporting runtimes extend. A new runtime subclasses
``ImageBackend`` (or ``ExportedBackend`` when it runs an exported file), declares the devices
it runs on, and is added to ``registry.py``: the config's list of valid names is that registry.
"""
