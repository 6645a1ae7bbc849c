"""benchmarks/lab_proof.py: the logic beyond calling person-search (recovery, spread, skipping, resuming)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab():
    spec = importlib.util.spec_from_file_location("lab_proof", ROOT / "benchmarks" / "lab_proof.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["lab_proof"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_recovery(lab):
    assert lab.recovery(10.0, 50.0, 46.0) == pytest.approx(90.0)
    assert lab.recovery(10.0, 50.0, 10.0) == pytest.approx(0.0)
    assert lab.recovery(10.0, 50.0, 60.0) == pytest.approx(125.0)  # LoRA above full: over 100 %
    assert lab.recovery(10.0, 10.0, 30.0) is None  # no gain to recover: undefined, not a division by zero
    assert lab.recovery(10.0, 5.0, 30.0) is None


def test_mean_spread(lab):
    assert lab.mean_spread([50.0]) == {"mean": 50.0, "std": 0.0, "min": 50.0, "max": 50.0, "n": 1}
    ms = lab.mean_spread([40.0, 50.0, 60.0])
    assert ms["mean"] == pytest.approx(50.0) and ms["std"] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        lab.mean_spread([])


def test_plan_is_ordered_and_complete(lab, tmp_path):
    steps = lab.plan(tmp_path, seeds=(0, 1), quick=True)
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    for i, s in enumerate(steps):  # every dependency comes earlier
        assert all(d in names[:i] for d in s.after), s.name
    assert {"train scratch-s0", "train scratch-s1", "train shuffled", "eval untrained", "eval zero-shot",
            "train shifted-full", "train shifted-lora"} <= set(names)
    by = {s.name: s for s in steps}
    assert "--shuffle-captions" in by["train shuffled"].argv
    lora = by["train shifted-lora"].argv
    assert lora[lora.index("--mode") + 1] == "lora"
    # both adaptations start from the first seed's model and get the same step budget
    for name in ("train shifted-full", "train shifted-lora"):
        argv = by[name].argv
        assert argv[argv.index("--weights") + 1] == str(tmp_path / "scratch-s0" / "best.safetensors")
        assert argv[argv.index("--max-steps") + 1] == str(lab.QUICK["adapt_steps"])
    assert by["train scratch-s0"].shell().startswith("person-search train --data ")


def test_steps_skip_and_resume(lab, tmp_path):
    step = lab.plan(tmp_path, quick=True)[2]  # train scratch-s0
    assert step.name == "train scratch-s0" and not step.is_done()
    assert "--resume" not in step.command()
    (tmp_path / "scratch-s0").mkdir()
    (tmp_path / "scratch-s0" / "state.pt").write_bytes(b"")
    assert step.command()[-1] == "--resume"  # a run cut short continues
    (tmp_path / "scratch-s0" / "model.json").write_text("{}")
    assert step.is_done()


def test_run_steps_skips_finished_steps(lab, tmp_path, monkeypatch):
    steps = lab.plan(tmp_path, quick=True)
    for s in steps:
        s.done.parent.mkdir(parents=True, exist_ok=True)
        s.done.write_text("{}")
    (tmp_path / "walltimes.json").write_text(json.dumps({"train scratch-s0": 12.0}))
    monkeypatch.setattr(lab, "_launch", lambda *a: pytest.fail("a finished step was launched"))
    assert lab.run_steps(steps, tmp_path) == {"train scratch-s0": 12.0}


def test_median_step_time(lab, tmp_path):
    rows = [{"kind": "train", "step_time_s": t} for t in (3.0, 1.0, 2.0)] + [{"kind": "eval", "R1": 5.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert lab.median_step_s(tmp_path) == 2.0
    assert lab.median_step_s(tmp_path / "missing") is None
