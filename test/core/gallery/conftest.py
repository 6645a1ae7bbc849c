"""Fixtures of the gallery tests (their helpers are in gallerykit.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["fp32", "fp16"])
def storage(request) -> str:
    """The gallery's vector storage: each test that takes it runs with both."""
    return request.param
