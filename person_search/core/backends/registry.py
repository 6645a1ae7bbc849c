"""Backend names (``encoder.backend``) -> classes, imported on use; the one list of backends."""

from person_search.core.plugins import Registry

BACKENDS = Registry("encoder.backend", {
    "torch": "person_search.core.backends.torch:TorchBackend",
    "torch-int8": "person_search.core.backends.torch_int8:TorchInt8Backend",
    "onnx": "person_search.core.backends.onnx:OnnxBackend",
    "onnx-int8": "person_search.core.backends.onnx:OnnxInt8Backend",
    "openvino": "person_search.core.backends.openvino:OpenVinoBackend",
    "tensorrt": "person_search.core.backends.tensorrt:TensorRTBackend",
})
