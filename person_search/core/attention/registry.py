"""Attention kernel names (``encoder.attention.kind``) -> kernel classes, imported on use."""

from person_search.core.plugins import Registry

KERNELS = Registry("encoder.attention.kind", {
    "sdpa": "person_search.core.attention.kernels:SdpaKernel",
    "eager": "person_search.core.attention.kernels:EagerKernel",
})
