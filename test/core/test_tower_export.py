"""Image-tower exports that need no GPU: the ONNX files TensorRT builds from, the export command's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from person_search.cli import main
from person_search.core.backends import tensorrt
from person_search.core.backends.export import export_image_tower, expected_metadata
from person_search.core.models.factory import build_clip
from tinykit import cfg

SIZE = (64, 32)


def tiny_tower():
    built = build_clip(cfg(image_height=SIZE[0], image_width=SIZE[1]), towers=("image",))
    return built.image_tower


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_onnx_export_is_valid_and_names_the_engine_tensors(tmp_path, half):
    tower = tiny_tower()
    x = torch.randn(3, 3, *SIZE)
    with torch.inference_mode():
        ref = tower(x).numpy()
    path = tmp_path / "tower.onnx"
    export_image_tower(tower, path, SIZE, {"person_search_format": "1", "precision": "x"}, half=half)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == (tensorrt.INPUT_NAME, tensorrt.OUTPUT_NAME)
    want = onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT
    assert inp.type.tensor_type.elem_type == want and out.type.tensor_type.elem_type == want
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, *SIZE]
    assert expected_metadata(path)["precision"] == "x"
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy().astype(np.float16 if half else np.float32)})[0].astype(np.float32)
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert got.shape == ref.shape and cos.min() > (0.999 if half else 0.99999)


def test_export_to_engine_without_a_gpu_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the no-GPU error cannot be shown here")
    assert main(["export", "--to", "engine", "--random-weights"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --to engine needs a CUDA GPU with TensorRT") and err.count("\n") == 1


def test_export_to_onnx_writes_the_configured_tower(tmp_path, capsys):
    out = tmp_path / "tower.onnx"
    rc = main(["export", "--to", "onnx", "--out", str(out), "--config", "test", "--random-weights",
               "--set", "encoder.arch=PS-Tiny-ViT", "--set", "encoder.image_height=64",
               "--set", "encoder.image_width=32"])
    assert rc == 0, capsys.readouterr().err
    meta = expected_metadata(out)
    assert meta["arch"] == "PS-Tiny-ViT" and (meta["input_height"], meta["input_width"]) == ("64", "32")
    assert meta["precision"] == "fp32" and "[export] 3/3 wrote" in capsys.readouterr().out


def test_export_needs_a_target_and_a_file(capsys):
    assert main(["export"]) == 2
    assert "say what to export" in capsys.readouterr().err
    assert main(["export", "--to", "onnx"]) == 2
    assert "--to onnx needs --out" in capsys.readouterr().err


def test_detector_engine_export_without_a_gpu_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the no-GPU error cannot be shown here")
    weights = tmp_path / "yolo11n.pt"
    weights.write_bytes(b"not read before the GPU check")
    assert main(["export", "--detector", "--model", str(weights), "--format", "engine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --format engine needs a CUDA GPU") and err.count("\n") == 1


def test_detector_export_replaces_only_its_own_output(tmp_path, monkeypatch, capsys):
    """An existing target export did not write is refused (exit 2, one line, untouched); its own is replaced."""
    from person_search.cli import export as ex

    out = tmp_path / "out"
    foreign = out / ex.exported_name("yolo11n", "openvino", False)
    foreign.mkdir(parents=True)
    (foreign / "keep.txt").write_text("someone's")
    weights = tmp_path / "yolo11n.pt"
    weights.write_bytes(b"not read: the refusal comes first")
    assert main(["export", "--detector", "--model", str(weights), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not written by person-search export" in err
    assert (foreign / "keep.txt").read_text() == "someone's"
    # replace_with: a folder (or file) carrying the marker is replaced, the marker travels with the new one
    made = tmp_path / "made"
    made.mkdir()
    (made / "model.xml").write_text("new")
    with pytest.raises(FileExistsError):
        ex.replace_with(made, foreign)
    mine = out / "mine_openvino_model"
    ex.replace_with(made, mine)
    assert (mine / ex.MARKER).is_file() and (mine / "model.xml").read_text() == "new"
    again = tmp_path / "again"
    again.mkdir()
    (again / "model.xml").write_text("newer")
    ex.replace_with(again, mine)
    assert (mine / "model.xml").read_text() == "newer" and (mine / ex.MARKER).is_file()
    onnx = tmp_path / "m.onnx"
    onnx.write_text("a")
    ex.replace_with(onnx, out / "m.onnx")
    assert (out / "m.onnx.person_search_export").is_file()
    assert ex.occupied(out / "m.onnx") is None and ex.occupied(out / "other.onnx") is None


def test_detector_export_defaults_to_models_not_beside_the_pt():
    from person_search.cli import export as ex
    from person_search.core.paths import MODELS_DIR

    assert ex.default_out_dir() == (MODELS_DIR if MODELS_DIR.is_dir()
                                    else Path.home() / ".cache" / "person_search" / "models")
