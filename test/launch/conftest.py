"""Fixtures of the launch tests; launch_pytest on this pytest: a compatibility attribute for launch_pytest 3.7.1.

pytest 8.4 made fixture functions FixtureFunctionDefinition objects; launch_pytest 3.7.1
still reads their old ``_pytestfixturefunction`` attribute (the fixture marker) while it
collects a ``@pytest.mark.launch`` test. The attribute is given back as an alias of the
marker when it is missing; nothing else of pytest or launch_pytest is changed.
"""

from __future__ import annotations

import pytest

from launch_helpers import RosLaunch
from rosgraph import probe, sample_video  # noqa: F401 - fixtures shared with test/ros

try:
    from _pytest.fixtures import FixtureFunctionDefinition
except ImportError:  # pytest < 8.4: the attribute exists
    FixtureFunctionDefinition = None

if FixtureFunctionDefinition is not None and not hasattr(FixtureFunctionDefinition, "_pytestfixturefunction"):
    FixtureFunctionDefinition._pytestfixturefunction = property(lambda self: self._fixture_function_marker)


@pytest.fixture
def ros2_launch(tmp_path):
    """Factory: start ``ros2 launch`` (killed with its nodes at the end of the test)."""
    started = []

    def start(file: str, *args: str) -> RosLaunch:
        run = RosLaunch(file, args, tmp_path / f"launch{len(started)}.log")
        started.append(run)
        return run
    yield start
    for run in started:
        run.kill()
