"""What depends on the machine.

- `gpu` / `tensorrt` tests skip with the reason where CUDA / TensorRT is absent.
- test/ros/ needs rclpy and the built person_search_interfaces; test/launch/ also needs
  launch, launch_ros, launch_pytest, vision_msgs and the `ros2` command (``make setup``
  installs them). Where they are absent, each test file of those folders is one skipped
  item with the reason; with the environment variable ``CI`` set it is a failure instead,
  so that a CI run without them cannot pass. Other folders are not affected.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from person_search.core.gallery.milvus import no_grpc_fork_support

no_grpc_fork_support()  # this process talks gRPC (Milvus tests) and starts node processes: before gRPC loads


def _cuda_reason() -> str:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        return f"torch not importable: {exc}"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (run on a GPU machine: pytest -m gpu)"
    return ""


def pytest_collection_modifyitems(config, items):
    trt_items = [i for i in items if "tensorrt" in i.keywords]
    if trt_items and importlib.util.find_spec("tensorrt") is None:
        for item in trt_items:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed (GPU machines: "
                                                    "pip install -r requirements-gpu.txt; JetPack ships it)"))
    gpu_items = [i for i in items if "gpu" in i.keywords]
    if not gpu_items:
        return
    reason = _cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


TEST_DIR = Path(__file__).resolve().parent
ABSENT_FAILS = bool(os.environ.get("CI"))  # in CI a missing ROS dependency fails the run


def _module_missing(name: str) -> str:
    """Return why ``name`` cannot be imported ("" if it can); a bare namespace package counts as missing."""
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        return f"{name} ({exc})"
    if getattr(mod, "__file__", None) is None:  # e.g. this repository's launch/ folder
        return f"{name} (only a namespace package)"
    return ""


@functools.lru_cache(maxsize=None)
def _ros_missing() -> str:
    try:
        import rclpy  # noqa: F401
        from person_search_interfaces.srv import QueryPerson  # noqa: F401
    except ImportError as exc:
        return f"rclpy or person_search_interfaces not importable ({exc}); run through `make test`"
    return ""


@functools.lru_cache(maxsize=None)
def _launch_missing() -> str:
    ros = _ros_missing()
    if ros:
        return ros
    names = ("launch", "launch_ros", "launch_pytest", "vision_msgs.msg")
    missing = [m for m in (_module_missing(n) for n in names) if m]
    if shutil.which("ros2") is None:
        missing.append("the ros2 command")
    if missing:
        return (f"not installed: {', '.join(missing)} (a ROS 2 distribution has them; without one, `make setup` "
                "installs them from ../shared/vendor/ros2-python or $PERSON_SEARCH_ROS_VENDOR)")
    return ""


REQUIRES = (("launch", _launch_missing), ("ros", _ros_missing))


def missing_for(path: Path) -> str:
    """Return what the tests under ``path`` need and this machine lacks ("" if nothing)."""
    try:
        rel = Path(path).resolve().relative_to(TEST_DIR).as_posix()
    except ValueError:
        return ""
    for folder, check in REQUIRES:
        if rel == folder or rel.startswith(folder + "/"):
            return check()
    return ""


class _Absent(pytest.File):
    """A test file whose requirements are absent: one item that skips, or fails in CI, with the reason."""

    def collect(self):
        yield _AbsentItem.from_parent(self, name="requirements")


class _AbsentItem(pytest.Item):
    def runtest(self):
        reason = missing_for(self.path)
        if ABSENT_FAILS:
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}: requirements"


def pytest_pycollect_makemodule(module_path, parent):
    """Replace a test file of test/ros (or test/launch) by one skip / CI failure when its needs are absent."""
    if missing_for(module_path):
        return _Absent.from_parent(parent, path=module_path)
    return None


# --- Fast DDS shared memory ---------------------------------------------------------------
# A DDS process that is killed (the fault tests do it on purpose; a timed-out `ros2` command
# is killed by subprocess.run) leaves its 32 MiB segment in /dev/shm, which is RAM: a whole
# run would leave gigabytes. The product cleans up before it starts or respawns nodes
# (person_search.graph.shm, test/ros/test_process_lifecycle.py); here the suite starts from
# a clean /dev/shm, removes what each test left once it is over, and says in the summary
# which tests left segments behind.
SHM_LEFT = {}  # test id -> (segments, bytes)


def pytest_sessionstart(session):
    from person_search.graph.shm import clean_stale_segments
    r = clean_stale_segments()
    if r.removed:
        print(f"\n(before the tests: {r.line()}, left by DDS processes that died earlier)")


@pytest.fixture(autouse=True)
def _shm_left_by_test(request):
    yield
    from person_search.graph.shm import clean_stale_segments
    r = clean_stale_segments()
    if r.removed:
        SHM_LEFT[request.node.nodeid] = (r.removed, r.freed_bytes)


def pytest_terminal_summary(terminalreporter):
    if not SHM_LEFT:
        return
    n = sum(v[0] for v in SHM_LEFT.values())
    mib = sum(v[1] for v in SHM_LEFT.values()) / 2**20
    terminalreporter.write_sep("-", f"Fast DDS segments of killed processes, removed after the test: {n}, "
                                    f"{mib:.0f} MiB")
    for nodeid, (k, b) in sorted(SHM_LEFT.items(), key=lambda kv: -kv[1][1]):
        terminalreporter.write_line(f"{k:3d} segment(s) {b / 2**20:6.0f} MiB  {nodeid}")


# --- a failure is printed when it happens ---------------------------------------------------
# pytest prints failures at the end of the run; a run that is killed before it ends (the
# machine out of memory, a CI time limit) then shows "F" and nothing else. Each failure's
# short traceback is written at once, with the machine's free memory and shared memory.
def _memory_line() -> str:
    info = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0]) // 1024
    except OSError:
        return ""
    shm = ""
    try:
        st = os.statvfs("/dev/shm")
        shm = f", /dev/shm {(st.f_blocks - st.f_bfree) * st.f_frsize / 2**20:.0f} MiB used"
    except OSError:
        pass
    return f"memory: {info.get('MemAvailable', '?')} MiB available of {info.get('MemTotal', '?')} MiB{shm}"


def pytest_runtest_logreport(report):
    if not report.failed or os.environ.get("PERSON_SEARCH_NO_EARLY_FAILURES"):
        return
    import sys
    text = report.longreprtext or ""
    if len(text) > 4000:
        text = "...\n" + text[-4000:]
    sys.stderr.write(f"\n\n=== FAILED {report.nodeid} ({report.when}, {report.duration:.0f} s); "
                     f"{_memory_line()}\n{text}\n=== (the run goes on)\n")
    sys.stderr.flush()
