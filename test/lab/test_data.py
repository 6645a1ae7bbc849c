"""Dataset loaders on small fixtures of the real layouts, their errors, and the torch views."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from person_search.lab.data import (CaptionPairs, DatasetError, EvalTransform, TrainTransform, load_dataset,
                                    read_image, train_loader)

ROOT = Path(__file__).resolve().parents[2]
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

# (split, id, number of images) of a small CUHK-PEDES-like file: ids not contiguous, as in the real one
LAYOUT = [("train", 12, 2), ("train", 5, 1), ("train", 9, 2), ("val", 30, 1), ("test", 20, 2), ("test", 21, 1)]


def write_dataset(root: Path, *, annotation="reid_raw.json", image_key="file_path", layout=LAYOUT, extra=None):
    """Write a dataset of tiny images in a real layout; return the records."""
    records = []
    for split, pid, n in layout:
        for k in range(n):
            rel = f"{split}/{pid}_{k}.jpg"
            (root / "imgs" / split).mkdir(parents=True, exist_ok=True)
            img = np.full((16, 8, 3), (pid * 10 % 255, k * 60, 100), np.uint8)
            cv2.imwrite(str(root / "imgs" / rel), img)
            rec = {"split": split, "captions": [f"person {pid} image {k} first", f"person {pid} image {k} second"],
                   image_key: rel, "id": pid}
            rec.update(extra or {})
            records.append(rec)
    (root / annotation).write_text(json.dumps(records))
    return records


def test_cuhk_pedes_splits_labels_and_eval_view(tmp_path):
    write_dataset(tmp_path, extra={"processed_tokens": [["a"], ["b"]]})
    ds = load_dataset(tmp_path, "cuhk-pedes")
    train, test = ds.split("train"), ds.split("test")
    assert (len(train), train.num_ids, train.num_captions) == (5, 3, 10)
    # train ids 5, 9, 12 -> labels 0, 1, 2 by original id; the original stays in source_pid
    assert {(r.source_pid, r.pid) for r in train.records} == {(12, 2), (5, 0), (9, 1)}
    assert [r.pid for r in test.records] == [20, 20, 21]  # test keeps the original ids
    assert ds.split("val").records[0].captions == ("person 30 image 0 first", "person 30 image 0 second")
    view = test.eval_view()
    assert len(view.image_paths) == 3 and len(view.captions) == 6
    assert view.caption_pids.tolist() == [20, 20, 20, 20, 21, 21]
    assert view.caption_image.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(p.is_file() for p in view.image_paths)
    # chance Rank-1: 4 queries with 2 positives of 3, 2 with 1 of 3 -> (4 * 2/3 + 2 * 1/3) / 6
    assert view.chance_rank1() == pytest.approx(100 * (4 * 2 / 3 + 2 / 3) / 6)
    assert not ds.generated


def test_irra_parent_folder_layout(tmp_path):
    write_dataset(tmp_path / "CUHK-PEDES")
    ds = load_dataset(tmp_path, "cuhk-pedes")
    assert ds.annotations == tmp_path / "CUHK-PEDES" / "reid_raw.json"
    assert ds.split("train").records[0].image.is_file()


@pytest.mark.parametrize("name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_pedes_both_file_names_and_no_val_split(tmp_path, name):
    write_dataset(tmp_path, annotation=name, layout=[s for s in LAYOUT if s[0] != "val"])
    ds = load_dataset(tmp_path, "icfg-pedes")
    assert ds.annotations.name == name and set(ds.splits) == {"train", "test"}
    with pytest.raises(DatasetError, match="icfg-pedes has no 'val' split"):
        ds.split("val")


def test_rstpreid_img_path(tmp_path):
    write_dataset(tmp_path, annotation="data_captions.json", image_key="img_path")
    ds = load_dataset(tmp_path, "rstpreid")
    assert (ds.split("train").num_ids, ds.split("val").num_ids, ds.split("test").num_ids) == (3, 1, 2)
    # the same records read as CUHK-PEDES lack its image key
    (tmp_path / "reid_raw.json").write_text((tmp_path / "data_captions.json").read_text())
    with pytest.raises(DatasetError, match="record 0: missing key 'file_path'"):
        load_dataset(tmp_path, "cuhk-pedes")


def test_a_new_format_is_a_registration_not_an_edit(tmp_path, monkeypatch):
    """A JSON-lines format with its own reader and parser, registered from outside the loader."""
    from person_search.lab.data import datasets as dsm
    records = write_dataset(tmp_path)
    (tmp_path / "people.jsonl").write_text("".join(json.dumps({"s": r["split"], "img": r["file_path"], "who": r["id"],
                                                               "text": " | ".join(r["captions"])}) + "\n"
                                                   for r in records))

    def read(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    def parse(path, i, rec, fmt):
        return rec["s"], rec["img"], int(rec["who"]), tuple(rec["text"].split(" | "))

    monkeypatch.setattr(dsm, "FORMATS", dict(dsm.FORMATS))  # the registration stays in this test
    dsm.register_format(dsm.DatasetFormat("jsonl-people", "People", ("people.jsonl",), "img", dsm.SPLITS,
                                          read=read, parse=parse))
    ds = load_dataset(tmp_path, "jsonl-people")
    assert (ds.split("train").num_ids, ds.split("test").num_ids) == (3, 2)
    assert ds.split("train").num_captions == 2 * 5
    with pytest.raises(ValueError, match="registered already"):
        dsm.register_format(dsm.FORMATS["cuhk-pedes"])


def _corrupt(path: Path, fn):
    recs = json.loads(path.read_text())
    fn(recs)
    path.write_text(json.dumps(recs))


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[2].pop("captions"), r"record 2: missing key 'captions'"),
    (lambda r: r[3].update(split="dev"), r"record 3: split 'dev' is not one of train, val, test"),
    (lambda r: r[1].update(captions=[" "]), r"record 1: no caption"),
    (lambda r: r[1].update(captions="a man"), r"record 1: captions must be a list of strings"),
    (lambda r: r[0].update(id="twelve"), r"record 0: id 'twelve' is not an integer"),
    (lambda r: r.__setitem__(4, "x"), r"record 4: expected an object"),
])
def test_bad_records_name_file_and_record(tmp_path, edit, message):
    write_dataset(tmp_path)
    _corrupt(tmp_path / "reid_raw.json", edit)
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset(tmp_path, "cuhk-pedes")
    assert str(tmp_path / "reid_raw.json") in str(e.value)


def test_malformed_json_and_empty_file(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "reid_raw.json").write_text('[{"split": "train",')
    with pytest.raises(DatasetError, match=r"reid_raw.json: malformed JSON at line 1"):
        load_dataset(tmp_path, "cuhk-pedes")
    (tmp_path / "reid_raw.json").write_text("[]")
    with pytest.raises(DatasetError, match="holds no records"):
        load_dataset(tmp_path, "cuhk-pedes")


def test_missing_images_listed_with_count(tmp_path):
    write_dataset(tmp_path)
    for p in sorted((tmp_path / "imgs" / "train").glob("*.jpg")):
        p.unlink()
    with pytest.raises(DatasetError, match=r"5 of 9 images missing under .*imgs \(record 0: .*12_0.jpg; record 1") \
            as e:
        load_dataset(tmp_path, "cuhk-pedes")
    assert str(e.value).count("record ") == 5 and "more" not in str(e.value)


def test_empty_split_missing_folder_unknown_format(tmp_path):
    write_dataset(tmp_path, layout=[s for s in LAYOUT if s[0] != "val"])
    ds = load_dataset(tmp_path, "cuhk-pedes")
    with pytest.raises(DatasetError, match=r"reid_raw.json: the 'val' split is empty"):
        ds.split("val")
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope", "cuhk-pedes")
    with pytest.raises(DatasetError, match="no data_captions.json here"):
        load_dataset(tmp_path, "rstpreid")
    with pytest.raises(DatasetError, match="unknown dataset format 'market'"):
        load_dataset(tmp_path, "market")


def test_cli_check_bad_dataset_is_one_line_exit_2(tmp_path):
    write_dataset(tmp_path)
    _corrupt(tmp_path / "reid_raw.json", lambda r: r[3].pop("id"))
    proc = subprocess.run([sys.executable, "-m", "person_search", "data", "check", "--data", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "reid_raw.json: record 3: missing key 'id'" in errors[0]


def test_cli_check_prints_splits(tmp_path, capsys):
    from person_search.cli import main
    write_dataset(tmp_path)
    assert main(["data", "check", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"train +3 ids +5 images +10 captions", out) and "chance Rank-1 on test" in out


def test_read_image_error_names_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=str(bad)):
        read_image(bad)


def test_test_transform_normalises_rgb():
    bgr = np.zeros((32, 16, 3), np.uint8)
    bgr[...] = (255, 0, 51)  # B=255, G=0, R=51
    x = EvalTransform((64, 32), MEAN, STD)(bgr)
    assert x.shape == (3, 64, 32) and x.dtype == torch.float32
    expect = [(0.2 - MEAN[0]) / STD[0], (0.0 - MEAN[1]) / STD[1], (1.0 - MEAN[2]) / STD[2]]
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), expect, atol=1e-5)


def test_train_transform_flip_and_augmentations():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    plain = EvalTransform((64, 32), MEAN, STD)(bgr)
    flipped = TrainTransform((64, 32), MEAN, STD, flip=1.0, pad=0, jitter=0.0)(bgr)
    torch.testing.assert_close(flipped, plain.flip(-1))
    torch.manual_seed(0)
    aug = TrainTransform((64, 32), MEAN, STD, erasing=1.0)
    a, b = aug(bgr), aug(bgr)
    assert a.shape == (3, 64, 32) and not torch.equal(a, b)
    assert (a == 0).all(0).sum() >= 0.02 * 64 * 32 * 0.5  # an erased box reads 0 in every channel


def test_caption_pairs_and_train_loader(tmp_path):
    write_dataset(tmp_path)
    train = load_dataset(tmp_path, "cuhk-pedes").split("train")
    ds = CaptionPairs(train, EvalTransform((32, 16), MEAN, STD))
    assert len(ds) == 10 and ds.num_classes == 3
    img, cap, label = ds[1]
    assert img.shape == (3, 32, 16) and cap == "person 12 image 0 second" and label == 2
    tok = CaptionPairs(train, EvalTransform((32, 16), MEAN, STD), tokenizer=lambda t: torch.tensor([[len(t[0])]]))
    assert tok[1][1].tolist() == [len("person 12 image 0 second")]
    loader = train_loader(train, size=(32, 16), mean=MEAN, std=STD, batch_size=4, workers=0,
                          generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == 2  # 10 pairs, batches of 4, the last incomplete one dropped
    images, captions, labels = batches[0]
    assert images.shape == (4, 3, 32, 16) and len(captions) == 4 and labels.dtype == torch.int64
    for c, lab in zip(captions, labels.tolist()):
        assert {12: 2, 5: 0, 9: 1}[int(c.split()[1])] == lab


def test_images_dataset_for_batched_gallery_encoding(tmp_path):
    from person_search.lab.data import Images
    write_dataset(tmp_path)
    view = load_dataset(tmp_path, "cuhk-pedes").split("test").eval_view()
    ds = Images(view.image_paths, view.image_pids, EvalTransform((32, 16), MEAN, STD))
    img, pid = ds[2]
    assert len(ds) == 3 and img.shape == (3, 32, 16) and pid == 21
    with pytest.raises(ValueError, match="3 paths but 2 pids"):
        Images(view.image_paths, [1, 2], EvalTransform((32, 16), MEAN, STD))
