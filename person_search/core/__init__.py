"""ROS-free core of person_search: video, detection + tracking, the CLIP model, gallery, query.

The CLIP model lives in ``models/`` (the one builder), ``attention/``, ``backends/`` and
``clip_encoder.py``; ``models/__init__.py`` says which folder owns what; ``embed_stage.py``
is what the embedder node runs. Nothing under this package imports rclpy, message packages
or the packages above it (nodes, graph, CLI, lab; ``test/test_layout.py``); the demo video
generators are in :mod:`person_search.demo`.
"""
