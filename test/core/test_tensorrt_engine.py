"""TensorRT engine bookkeeping that needs no GPU: cache key, sidecar metadata, clear errors."""

import dataclasses
import importlib.util

import pytest

from person_search.core.backends.tensorrt import (
    EngineSpec, TensorRTError, cached_engine, current_gpu, import_tensorrt, read_sidecar, write_sidecar)


def spec(**kw) -> EngineSpec:
    base = dict(model_id="ViT-B-16@sha256-0123456789ab", arch="ViT-B-16", weights_fingerprint="f" * 16,
                attention="sdpa", image_height=384, image_width=128, dim=512, min_batch=1, opt_batch=8,
                max_batch=32, precision="fp16", tensorrt_version="10.3.0", gpu_name="Orin",
                compute_capability="8.7")
    base.update(kw)
    return EngineSpec(**base)


def test_key_is_stable_and_changes_with_every_field():
    a = spec()
    assert a.key() == spec().key() and a.filename() == spec().filename()
    changes = dict(model_id="x@y", arch="ViT-B-32", weights_fingerprint="e" * 16, attention="window",
                   image_height=256, image_width=64, dim=256, min_batch=2, opt_batch=16, max_batch=64,
                   precision="fp32", tensorrt_version="11.4.0", gpu_name="NVIDIA H100", compute_capability="9.0")
    assert set(changes) | {"format"} == {f.name for f in dataclasses.fields(EngineSpec)}
    keys = {a.key()}
    for name, value in changes.items():
        keys.add(spec(**{name: value}).key())
    assert len(keys) == len(changes) + 1


def test_bad_profile_is_refused():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        spec(min_batch=8, opt_batch=4)
    with pytest.raises(ValueError, match="precision"):
        spec(precision="int4")


def test_sidecar_round_trip_and_stale_engine_is_not_used(tmp_path):
    s = spec()
    engine = tmp_path / s.filename()
    assert cached_engine(tmp_path, s) is None  # nothing built yet
    engine.write_bytes(b"not really an engine")
    assert cached_engine(tmp_path, s) is None  # no metadata: rebuilt, never used
    write_sidecar(engine, s)
    assert read_sidecar(engine) == s
    assert cached_engine(tmp_path, s) == engine
    # the same file name with metadata of another GPU (copied from another machine)
    write_sidecar(engine, dataclasses.replace(s, gpu_name="NVIDIA H100", compute_capability="9.0"))
    assert cached_engine(tmp_path, s) is None
    want = {"gpu_name": ("Orin", "NVIDIA H100"), "compute_capability": ("8.7", "9.0")}
    assert s.mismatch(read_sidecar(engine)) == want


def test_corrupt_sidecar_reads_as_none(tmp_path):
    engine = tmp_path / "a.engine"
    engine.write_bytes(b"x")
    (tmp_path / "a.engine.json").write_text("{not json")
    assert read_sidecar(engine) is None
    (tmp_path / "a.engine.json").write_text('{"model_id": "a", "surprise": 1}')
    assert read_sidecar(engine) is None


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_get_it():
    with pytest.raises(TensorRTError, match="pip install tensorrt"):
        import_tensorrt()


def test_no_gpu_is_one_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the no-GPU error cannot be shown here")
    with pytest.raises(TensorRTError, match="needs a CUDA GPU"):
        current_gpu()
