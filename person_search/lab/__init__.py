"""The lab wing over the core: datasets, training (with LoRA) and evaluation.

* ``data/``: dataset readers (a registry of formats), torch views, the generated dataset.
* ``train/``: :func:`~person_search.lab.train.train` (loop, losses, run folders, ``lora.py``),
  used by ``person-search train`` and by the attention study alike.
* ``eval/``: retrieval metrics, the encode-and-rank loop, figures.

The lab imports the core (``person_search.core``: models, encoder, model contract); the core
never imports the lab (``test/test_imports.py`` checks it).
"""
