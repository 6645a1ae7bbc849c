"""Fixtures of the graph tests (test/rosgraph.py, shared with test/launch)."""

from rosgraph import probe, sample_video  # noqa: F401 - fixtures
