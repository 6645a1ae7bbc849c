"""The re-id stage (OSNet x0_25, real pretrained weights from ../shared) and the Market-1501 protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from person_search.core.config import ReidConfig
from person_search.core.paths import shared_models_dir
from person_search.core.reid.encoder import ReidEncoder, ReidUnavailable, maybe_reid_encoder, preprocess_reid
from person_search.core.reid.market import ReidDataError, evaluate_market, market_metrics, parse_name, read_market
from person_search.demo.sample import sample_images

OSNET = shared_models_dir() / "osnet_x0_25_msmt17"
needs_osnet = pytest.mark.skipif(not (OSNET / "osnet_x0_25_msmt17.onnx").is_file(),
                                 reason=f"pretrained OSNet x0_25 not in {OSNET} (shared test data, absent in a "
                                        f"user's clone)")
# real people: the 4 of bus.jpg (the reference boxes) and the 2 of zidane.jpg (found by YOLO11n)
ZIDANE_BOXES = ((747, 42, 1149, 710), (143, 201, 700, 712))


def _photo(name: str) -> np.ndarray:
    path = next(p for p in sample_images() if p.name == name)
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def _people():
    ref = np.load(OSNET / "reference_features.npz", allow_pickle=True) if OSNET.is_dir() else None
    fallback = ((50, 395, 245, 905), (215, 400, 350, 860), (670, 380, 810, 880), (0, 550, 80, 880))
    bus_boxes = ref["boxes_xyxy"] if ref is not None else fallback
    bus, zid = _photo("bus.jpg"), _photo("zidane.jpg")
    out = [bus[int(y1):int(y2), int(x1):int(x2)] for x1, y1, x2, y2 in bus_boxes]
    return out + [zid[y1:y2, x1:x2] for x1, y1, x2, y2 in ZIDANE_BOXES]


# ---------------------------------------------------------------- the encoder on real weights
@needs_osnet
@pytest.mark.parametrize("backend,model", [("onnx", "osnet_x0_25_msmt17.onnx"), ("torch", "osnet_x0_25_msmt17.pth"),
                                           ("openvino", "osnet_x0_25_msmt17.onnx")])
def test_reference_features_reproduced(backend, model):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    ref = np.load(OSNET / "reference_features.npz", allow_pickle=True)
    enc = ReidEncoder(ReidConfig(model=str(OSNET / model), backend=backend))
    feats = enc.encode(_people()[:4])
    want = ref["features"] / np.linalg.norm(ref["features"], axis=1, keepdims=True)
    assert feats.shape == (4, 512) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    cos = (feats * want).sum(axis=1)
    assert cos.min() >= 0.999, cos
    # and they tell people apart: each crop is closest to its own reference
    assert ((feats @ want.T).argmax(axis=1) == np.arange(4)).all()


@needs_osnet
def test_same_person_closer_than_others_after_shift_and_recolour():
    enc = ReidEncoder(ReidConfig(model=str(OSNET / "osnet_x0_25_msmt17.onnx")))
    people = _people()
    views = [_view(p, k=1) for p in people]
    sim = enc.encode(people) @ enc.encode(views).T
    assert (sim.argmax(axis=1) == np.arange(len(people))).all(), sim.round(2)


def test_missing_weights_one_line_and_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSON_SEARCH_SHARED_MODELS", str(tmp_path / "nowhere"))
    cfg = ReidConfig(model="no_such_osnet.onnx")
    with pytest.raises(ReidUnavailable) as err:
        ReidEncoder(cfg)
    assert "\n" not in str(err.value) and "models/README.md" in str(err.value)
    said = []
    assert maybe_reid_encoder(cfg, warn=said.append) is None
    assert len(said) == 1 and "without person identities" in said[0]
    assert maybe_reid_encoder(ReidConfig(enabled=False, model="no_such_osnet.onnx"), warn=said.append) is None
    assert len(said) == 1  # switched off: nothing to say


@needs_osnet
def test_torch_backend_needs_the_pth(tmp_path):
    lone = tmp_path / "osnet.onnx"
    shutil.copy(OSNET / "osnet_x0_25_msmt17.onnx", lone)
    with pytest.raises(ReidUnavailable, match="needs the Torchreid .pth"):
        ReidEncoder(ReidConfig(model=str(lone), backend="torch"))


def test_not_a_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ReidUnavailable) as err:
        ReidEncoder(ReidConfig(model=str(bad), backend="torch"))
    assert "\n" not in str(err.value)


def test_preprocess_is_the_model_zoo_one():
    crop = np.zeros((10, 6, 3), np.uint8)
    crop[..., 2] = 255  # pure red in BGR
    x = preprocess_reid([crop])
    assert x.shape == (1, 3, 256, 128)
    np.testing.assert_allclose(x[0, :, 100, 50], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)


# ---------------------------------------------------------------- the standard protocol
def _reference_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Torchreid's eval_market1501 logic, written out plainly (an independent check)."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, valid = [], [], 0
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][~remove]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        cmc = np.pad(cmc[:max_rank], (0, max(0, max_rank - cmc.size)), mode="edge")
        all_cmc.append(cmc)
        valid += 1
        num_rel = raw_cmc.sum()
        tmp = raw_cmc.cumsum() / (np.arange(raw_cmc.size) + 1.0) * raw_cmc
        all_ap.append(tmp.sum() / num_rel)
    return np.asarray(all_cmc, np.float64).sum(0) / valid, float(np.mean(all_ap)), valid


@pytest.mark.parametrize("seed", range(6))
def test_metric_matches_reference_protocol(seed):
    rng = np.random.default_rng(seed)
    nq, ng, ids, cams = int(rng.integers(5, 40)), int(rng.integers(20, 200)), int(rng.integers(3, 30)), 6
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    q_cams, g_cams = rng.integers(1, cams + 1, nq), rng.integers(1, cams + 1, ng)
    dist = rng.random((nq, ng))
    cmc, m_ap, valid = _reference_market(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    got = market_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    assert got["queries"] == valid and got["skipped"] == nq - valid
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert abs(got["mAP"] - m_ap) < 1e-12
    assert got["rank1"] == pytest.approx(cmc[0]) and got["rank10"] == pytest.approx(cmc[9])


def test_metric_by_hand():
    # query pid 1 cam 1; gallery: pid 1 cam 1 (excluded), pid 2, pid 1 cam 2, pid 0 (distractor), pid 1 cam 3
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]])
    res = market_metrics(dist, np.array([1]), np.array([1, 2, 1, 0, 1]), np.array([1]), np.array([1, 1, 2, 1, 3]),
                         max_rank=4)
    # kept order: pid2, pid1(c2), pid0, pid1(c3): hits at ranks 2 and 4
    assert res["cmc"] == [0.0, 1.0, 1.0, 1.0]
    assert res["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_names():
    assert parse_name("0002_c1s1_000451_03.jpg") == (2, 1)
    assert parse_name("-1_c3s2_000100_01.jpg") == (-1, 3)
    assert parse_name("0000_c6s4_001005_02.jpg") == (0, 6)
    with pytest.raises(ReidDataError, match="PPPP_cCsS"):
        parse_name("person3.jpg")


# ---------------------------------------------------------------- a Market-1501 folder of real people
def _view(crop: np.ndarray, k: int) -> np.ndarray:
    """Another 'sighting' of a crop: shifted box, changed size, light and clothes colour, maybe mirrored."""
    rng = np.random.default_rng(k)
    h, w = crop.shape[:2]
    dx, dy = int(w * rng.uniform(-0.06, 0.06)), int(h * rng.uniform(-0.04, 0.04))
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(crop, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    s = rng.uniform(0.6, 1.2)
    out = cv2.resize(out, (max(8, int(w * s)), max(16, int(h * s))))
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-8, 8))) % 180
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.75, 1.2), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    return out[:, ::-1].copy() if k % 2 else out


def write_market(root: Path, people, *, views: int = 3) -> Path:
    """Write people as a Market-1501 folder: query in camera 1, gallery in cameras 1..3, junk and distractors."""
    (root / "query").mkdir(parents=True)
    (root / "bounding_box_test").mkdir()
    for pid, crop in enumerate(people, start=1):
        cv2.imwrite(str(root / "query" / f"{pid:04d}_c1s1_000100_00.jpg"), _view(crop, 100 + pid))
        for v in range(views):
            cam = 1 + v % 3  # camera-1 entries are the same-camera ones the protocol removes
            cv2.imwrite(str(root / "bounding_box_test" / f"{pid:04d}_c{cam}s1_{200 + v:06d}_00.jpg"),
                        _view(crop, 10 * pid + v))
    bg = cv2.resize(_photo("bus.jpg")[0:300, 300:600], (64, 128))
    cv2.imwrite(str(root / "bounding_box_test" / "0000_c2s1_000900_00.jpg"), bg)  # distractor
    cv2.imwrite(str(root / "bounding_box_test" / "-1_c2s1_000901_00.jpg"), people[0])  # junk: ignored
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"")
    return root


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "person_search", *args], capture_output=True, text=True,
                          timeout=timeout)


@needs_osnet
def test_reid_eval_cli_on_real_people(tmp_path):
    root = write_market(tmp_path / "market", _people())
    res = _cli("reid", "eval", "--data", str(root), "--model", str(OSNET / "osnet_x0_25_msmt17.onnx"), "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["query_images"] == 6 and got["gallery_images"] == 6 * 3 + 1 and got["junk_left_out"] == 1
    # the same numbers by hand: the encoder, then the reference protocol
    q, g = read_market(root)
    enc = ReidEncoder(ReidConfig(model=str(OSNET / "osnet_x0_25_msmt17.onnx")))
    load = lambda ps: [cv2.imread(str(p)) for p in ps]  # noqa: E731
    dist = 1.0 - enc.encode(load(q.paths)) @ enc.encode(load(g.paths)).T
    cmc, m_ap, _ = _reference_market(dist, q.pids, g.pids, q.camids, g.camids)
    assert got["rank1"] == pytest.approx(cmc[0], abs=1e-9) and got["mAP"] == pytest.approx(m_ap, abs=1e-6)
    assert got["rank1"] >= 0.8  # real weights: shifted, re-lit views of the same person come first
    text = _cli("reid", "eval", "--data", str(root), "--model", str(OSNET / "osnet_x0_25_msmt17.onnx"))
    assert text.returncode == 0 and "Rank-1" in text.stdout and "mAP" in text.stdout


def test_reid_eval_user_errors(tmp_path):
    res = _cli("reid", "eval", "--data", str(tmp_path / "absent"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such folder" in res.stderr
    (tmp_path / "m" / "query").mkdir(parents=True)
    (tmp_path / "m" / "bounding_box_test").mkdir()
    cv2.imwrite(str(tmp_path / "m" / "query" / "alice.jpg"), np.zeros((8, 4, 3), np.uint8))
    res = _cli("reid", "eval", "--data", str(tmp_path / "m"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "alice.jpg" in res.stderr
    res = _cli("reid", "eval", "--data", str(tmp_path / "m"), "--set", "reid.backend=cuda-magic")
    assert res.returncode == 2 and "reid.backend" in res.stderr and "Traceback" not in res.stderr


def test_evaluate_market_with_a_perfect_encoder(tmp_path):
    # an "encoder" that knows the person from the pixels it wrote: all metrics 1.0
    root = tmp_path / "m"
    (root / "query").mkdir(parents=True)
    (root / "bounding_box_test").mkdir()
    for pid in (1, 2, 3):
        for d, cam in (("query", 1), ("bounding_box_test", 2), ("bounding_box_test", 1)):
            cv2.imwrite(str(root / d / f"{pid:04d}_c{cam}s1_000001_00.png"), np.full((8, 4, 3), pid * 60, np.uint8))

    def encode(crops):
        v = np.zeros((len(crops), 4), np.float32)
        for i, c in enumerate(crops):
            v[i, int(c[0, 0, 0]) // 60] = 1.0
        return v

    res = evaluate_market(root, encode)
    assert res["rank1"] == 1.0 and res["mAP"] == 1.0 and res["queries"] == 3 and res["gallery_images"] == 6
