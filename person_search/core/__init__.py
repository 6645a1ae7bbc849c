"""ROS-free core of person_search: video, detection + tracking, the CLIP model, gallery, query.

The CLIP model lives in ``models/`` (the one builder), ``attention/``, ``backends/`` and
``clip_encoder.py``; ``models/__init__.py`` says which folder owns what. Nothing under this
package imports rclpy or message packages.
"""
