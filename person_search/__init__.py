"""person_search: find people in live video by a text description."""

__version__ = "0.1.0"
