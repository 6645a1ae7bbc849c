"""Attention kernel names (``encoder.attention.kind``) -> kernel classes, imported on use."""

from person_search.core.plugins import Registry

KERNELS = Registry("encoder.attention.kind", {
    "sdpa": "person_search.core.attention.kernels:SdpaKernel",
    "eager": "person_search.core.attention.kernels:EagerKernel",
    "window": "person_search.core.attention.local:WindowKernel",
    "sparse": "person_search.core.attention.local:SparseKernel",
    "lam": "person_search.core.attention.lam:LamKernel",
    "prune": "person_search.core.attention.prune:PruneKernel",
})
