"""Evaluation end to end with a tiny random CLIP (PS-Tiny-ViT) on generated data, and the eval CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from person_search.cli import main
from person_search.lab.data import load_dataset
from person_search.lab.data.synth import SynthConfig, generate
from person_search.core.models.run import write_model_json
from person_search.lab.eval.evaluate import CheckpointError, build_encoder, evaluate, resolve_checkpoint
from tinykit import cfg, model_json
from person_search.lab.eval.metrics import retrieval_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--arch", "PS-Tiny-ViT", "--image-size", "32x64", "--batch-size", "16"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaldata")
    generate(out, SynthConfig(ids=40, images_per_id=2, seed=3, size=(128, 64), val_ids=0, test_ids=20),
             progress=False)
    return out


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(cfg(image_width=32, batch_size=16))


def test_evaluate_random_encoder_is_near_chance(data, encoder):
    view = load_dataset(data, "cuhk-pedes").split("test").eval_view()
    res = evaluate(encoder, view, batch_size=16, i2t=True, progress=False)
    assert res.sim.shape == (80, 40) and np.all(np.abs(res.sim) <= 1.0 + 1e-5)
    assert res.chance_rank1 == pytest.approx(5.0)
    for m in (res.t2i, res.i2t):
        assert all(0.0 <= m[k] <= 100.0 for k in ("R1", "R5", "R10", "mAP", "mINP"))
    # an untrained model knows nothing: far from a trained one's figures, around the random ranking's
    assert res.t2i["R1"] <= 20.0 and res.t2i["R10"] <= 60.0
    direct = retrieval_metrics(res.sim, view.caption_pids, view.image_pids)
    for k in ("R1", "mAP", "mINP"):
        assert res.t2i[k] == pytest.approx(direct[k])
    txt = encoder.encode_text(view.captions[:3])
    img = encoder.encode_images([cv2.imread(str(view.image_paths[0]))])
    np.testing.assert_allclose(res.sim[:3, :1], txt @ img.T, atol=1e-5)
    assert "t2i" in res.table() and "i2t" in res.table() and res.summary()["gallery"] == 40


def test_cli_eval_writes_json_npz_and_pngs(data, tmp_path, capsys):
    files = {k: tmp_path / n for k, n in (("json", "m.json"), ("npz", "s.npz"), ("plot", "cmc.png"),
                                          ("sheet", "top5.png"))}
    rc = main(["eval", "--data", str(data), "--random-weights", *TINY, "--json", str(files["json"]),
               "--save-scores", str(files["npz"]), "--plot", str(files["plot"]), "--sheet", str(files["sheet"]),
               "--sheet-queries", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "generated data: not comparable" in out and "random weights (control)" in out and "R1" in out
    summary = json.loads(files["json"].read_text())
    scores = np.load(files["npz"])
    assert scores["sim"].shape == (80, 40) and scores["query_pids"].shape == (80,)
    again = retrieval_metrics(scores["sim"], scores["query_pids"], scores["gallery_pids"])
    assert summary["t2i"]["mAP"] == pytest.approx(again["mAP"], abs=1e-3)
    assert summary["chance_rank1"] == pytest.approx(5.0)
    held = json.loads((data / "stats.json").read_text())["test_held_out_pair_ids"]
    keep = np.isin(scores["query_pids"], held)
    assert 0 < keep.sum() < 80 and "t2i-unseen-pairs" in out
    sub = retrieval_metrics(scores["sim"][keep], scores["query_pids"][keep], scores["gallery_pids"])
    assert summary["t2i-unseen-pairs"]["R1"] == pytest.approx(sub["R1"], abs=1e-3)
    for k in ("plot", "sheet"):
        img = cv2.imread(str(files[k]))
        assert img is not None and img.shape[0] > 100 and img.std() > 5


def test_run_folder_contract(data, tmp_path, capsys):
    import torch

    from person_search.core.models.archs import open_clip_registered
    from safetensors.torch import save_file
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="model.json: no such file"):
        resolve_checkpoint(run)
    torch.manual_seed(1)
    model = open_clip_registered().create_model("PS-Tiny-ViT")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "last.safetensors"))
    (run / "model.json").write_text(json.dumps({"arch": "PS-Tiny-ViT", "image_size": [64, 32], "epochs": 3}))
    with pytest.raises(CheckpointError, match="not a person_search.train/1 model.json"):  # one strict reader
        resolve_checkpoint(run)
    write_model_json(run, model_json("PS-Tiny-ViT", (64, 32)))
    ckpt, facts = resolve_checkpoint(run)
    assert ckpt == run / "last.safetensors" and facts.arch == "PS-Tiny-ViT" and facts.image_size == (64, 32)
    assert main(["eval", "--data", str(data), "--weights", str(run), "--json", str(tmp_path / "m.json")]) == 0
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["model_id"].startswith("PS-Tiny-ViT@sha256-")  # the run's weights, not the random ones
    assert "32x64 (WxH)" in capsys.readouterr().out
    (run / "best.safetensors").write_bytes((run / "last.safetensors").read_bytes())
    assert resolve_checkpoint(run)[0] == run / "best.safetensors"
    (run / "model.json").write_text(json.dumps({**model_json("PS-Tiny-ViT", (64, 32)), "image_size": "tall"}))
    with pytest.raises(CheckpointError, match=r"model.json: image_size must be \[H, W\]"):
        resolve_checkpoint(run)


@pytest.mark.parametrize("args, message", [
    (["--weights", "/nonexistent/ckpt.safetensors"], "no such file or run folder"),
    (["--random-weights", "--split", "val"], "the 'val' split is empty"),
    (["--random-weights", "--arch", "NoSuchNet"], "unknown encoder.arch 'NoSuchNet'"),
    (["--random-weights", "--image-size", "tall"], "expects WIDTHxHEIGHT"),
    (["--random-weights", "--image-size", "64x32"], "write 32x64"),  # the old HxW order, refused
])
def test_cli_eval_user_errors_are_one_line(data, capsys, args, message):
    assert main(["eval", "--data", str(data), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_cli_eval_bad_checkpoint_no_traceback(data, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    proc = subprocess.run([sys.executable, "-m", "person_search", "eval", "--data", str(data), "--weights", str(bad),
                           *TINY], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")][0].count(str(bad)) == 1


def test_cli_eval_unreadable_image_is_one_line(data, tmp_path, capsys):
    import shutil
    copy = shutil.copytree(data, tmp_path / "d")
    bad = sorted((copy / "imgs" / "test").glob("*.jpg"))[3]
    bad.write_bytes(b"truncated")
    assert main(["eval", "--data", str(copy), "--random-weights", *TINY]) == 2
    err = capsys.readouterr().err
    errors = [ln[ln.index("error:"):] for ln in err.splitlines() if "error:" in ln]  # after the progress bar
    assert len(errors) == 1 and str(bad) in errors[0] and "cannot read the image" in errors[0]
    assert "Traceback" not in err
