"""Attention of the CLIP towers: one module, pluggable kernels, one place that patches open_clip.

* ``module.py``: :class:`ClipAttention`, checkpoint-compatible with ``nn.MultiheadAttention``
  (same parameter names), an optional split q/k/v ``nn.Linear`` (int8, LoRA), and a kernel.
* ``kernels.py``: the kernels (``sdpa``, ``eager``) and their interface
  (:class:`AttentionKernel`). A new variant (window, sparse, learnable mask, token pruning)
  is a new kernel class there (or in its own file) plus one line in ``registry.py``.
* ``registry.py``: kernel name -> class, imported lazily; the names the config accepts.
* ``patch.py``: the only file that touches open_clip / timm attention internals; finds the
  attention blocks by structure and installs :class:`ClipAttention` with the chosen kernel.
"""
