"""tools/gpu_check.sh: the one script for a lent GPU machine; its dry run works on the CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def _run(*args, timeout=300):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def test_bad_argument_is_one_clear_line_exit_2():
    p = _run("--bogus", timeout=30)
    assert p.returncode == 2 and "unknown argument --bogus" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="an NVIDIA GPU may be here: the real run applies")
def test_without_a_gpu_it_says_so_and_runs_nothing(tmp_path):
    p = _run("--out", str(tmp_path), timeout=30)
    assert p.returncode == 2 and "no NVIDIA GPU here" in p.stdout
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.slow
def test_dry_run_checks_the_plan_and_runs_the_cpu_halves(tmp_path):
    """The plan fits 8 minutes, every script and flag it uses exists, the CPU halves run; one results file."""
    p = _run("--dry-run", "--out", str(tmp_path))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for step in ("install", "tests", "embedder", "detector", "attention"):
        assert f"  {step} " in p.stdout  # the plan is printed
    rec = json.loads((tmp_path / "gpu_check.json").read_text())
    assert rec["dry_run"] is True and rec["ok"] is True
    assert [s["step"] for s in rec["steps"]] == ["tests", "embedder", "attention"]
    assert all(s["rc"] == 0 for s in rec["steps"])
    tail = {s["step"]: "\n".join(s["tail"]) for s in rec["steps"]}
    assert "GPU rows: not run (no CUDA GPU)" in tail["embedder"]
    assert "skipped" in tail["tests"]  # the gpu/tensorrt tests are collected and skip with their reason here
    assert '"crops_s"' in tail["attention"]
