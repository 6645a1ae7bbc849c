"""Attention of the CLIP towers: one module, pluggable kernels, one place that patches open_clip.

* ``module.py``: :class:`ClipAttention`, checkpoint-compatible with ``nn.MultiheadAttention``
  (same parameter names), an optional split q/k/v ``nn.Linear`` (int8, LoRA), and a kernel.
* ``kernels.py``: the kernels (``sdpa``, ``eager``) and their interface
  (:class:`AttentionKernel`); ``local.py`` (``window``, ``sparse``), ``lam.py``, ``prune.py``.
  A new variant is a new kernel class (in its own file), its settings dataclass in
  ``settings.py`` if it has settings, and one line in ``registry.py`` (two with settings).
* ``settings.py``: each kernel's settings (``encoder.attention.<setting>``), torch-free.
* ``registry.py``: kernel name -> class, imported lazily, and kernel -> settings class; the
  names the config accepts; ``AttentionConfig`` (core/config.py) gathers the settings from it.
* ``patch.py``: the only file that touches open_clip / timm attention internals; finds the
  attention blocks by structure and installs :class:`ClipAttention` with the chosen kernel.
"""
