"""The generated dataset: deterministic, readable by the CUHK-PEDES loader, honest splits and captions."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from person_search.cli import main
from person_search.lab.data import load_dataset
from person_search.lab.data.attributes import BASE_PALETTE, COLOURS, HAIR_COLOURS, SHIFTED_EXTRA, combo
from person_search.lab.data.synth import SynthConfig, SynthError, generate, parse_size

SMALL = SynthConfig(ids=40, images_per_id=3, seed=7, size=(128, 64), val_ids=4, test_ids=8)
COLOUR_WORDS = set(COLOURS) | set(HAIR_COLOURS) | {"gray"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    stats = generate(out, SMALL, progress=False)
    return out, stats, json.loads((out / "reid_raw.json").read_text())


def test_layout_read_by_cuhk_loader_and_stats(small):
    out, stats, records = small
    ds = load_dataset(out, "cuhk-pedes")
    assert ds.generated
    assert {s: ds.split(s).num_ids for s in ("train", "val", "test")} == {"train": 28, "val": 4, "test": 8}
    assert len(ds.split("test")) == 24 and ds.split("test").num_captions == 48
    assert stats["chance_rank1"]["test"] == pytest.approx(100 / 8)
    assert stats["images"] == {"train": 84, "val": 12, "test": 24}
    assert all(len(r["captions"]) == 2 and r["processed_tokens"] for r in records)
    assert json.loads((out / "stats.json").read_text())["ids"]["test"] == 8


def test_deterministic_for_a_seed(small, tmp_path):
    out, _, records = small
    generate(tmp_path / "again", SMALL, progress=False)
    assert json.loads((tmp_path / "again" / "reid_raw.json").read_text()) == records
    for r in records[::17]:
        a = (out / "imgs" / r["file_path"]).read_bytes()
        assert a == (tmp_path / "again" / "imgs" / r["file_path"]).read_bytes()
    other = SynthConfig(**{**SMALL.__dict__, "seed": 8})
    generate(tmp_path / "other", other, progress=False)
    assert json.loads((tmp_path / "other" / "reid_raw.json").read_text()) != records


def test_splits_use_unseen_combinations_and_held_out_pairs(small):
    _, stats, records = small
    by_split = {s: {combo(r["attributes"]) for r in records if r["split"] == s} for s in ("train", "val", "test")}
    ids = {s: {r["id"] for r in records if r["split"] == s} for s in by_split}
    assert len(by_split["train"]) == 28 and len(by_split["test"]) == 8  # one combination per identity
    assert not by_split["train"] & by_split["test"] and not by_split["train"] & by_split["val"]
    assert not ids["train"] & ids["test"] and not ids["train"] & ids["val"]
    pairs = stats["held_out_pairs"]
    assert len(pairs) == 3

    def has(attrs):
        return any(all(attrs[k] == v for k, v in p.items()) for p in pairs)
    assert not any(has(r["attributes"]) for r in records if r["split"] == "train")
    test_with = {r["id"] for r in records if r["split"] == "test" and has(r["attributes"])}
    assert sorted(test_with) == stats["test_held_out_pair_ids"] and len(test_with) >= 4


def test_nuisances_vary_within_an_identity(small):
    out, _, records = small
    import cv2
    first = [r for r in records if r["id"] == records[0]["id"]]
    imgs = [cv2.imread(str(out / "imgs" / r["file_path"])).astype(np.int16) for r in first]
    corners = [im[:12, :12].mean((0, 1)) for im in imgs]  # background: drawn per image
    assert max(np.abs(corners[0] - c).max() for c in corners[1:]) > 5
    assert len({r["view"] for r in records}) == 3


def _words(caption):
    return re.findall(r"[a-z\-]+", caption.lower())


def test_captions_describe_what_the_image_shows(small):
    _, _, records = small
    for r in records:
        a, hidden = r["attributes"], set(r["hidden"])
        allowed = {a[k] for k in ("hair_colour", "upper_colour", "lower_colour", "shoe_colour", "bag_colour",
                                  "hat_colour") if k not in hidden}
        allowed |= {"gray"} if "grey" in allowed else set()
        for cap in r["captions"]:
            words = _words(cap)
            assert set(words) & COLOUR_WORDS <= allowed, (cap, a, hidden)  # no colour the person lacks
            gender = {"man": {"man", "guy", "male", "he", "his"}, "woman": {"woman", "lady", "female", "she", "her"}}
            other = "woman" if a["gender"] == "man" else "man"
            assert gender[a["gender"]] & set(words) and not gender[other] & set(words), cap
            if "upper_colour" not in hidden:
                assert a["upper_colour"] in words or (a["upper_colour"] == "grey" and "gray" in words), cap
                assert ("long-sleeved" in cap or "long-sleeve" in cap or "sweater" in cap or "jacket" in cap) \
                    == (a["sleeve"] == "long"), cap
            if "lower_type" not in hidden:
                kinds = {"trousers": {"trousers", "pants", "jeans"}, "shorts": {"shorts"}, "skirt": {"skirt"}}
                assert kinds[a["lower_type"]] & set(words), cap
            bag_words = {"backpack", "handbag", "bag"}
            assert bool(bag_words & set(words)) == (a["bag"] != "none" and "bag" not in hidden), cap
            hat_words = {"cap", "beanie", "hat"}
            assert bool(hat_words & set(words)) == (a["hat"] != "none" and "hat" not in hidden), cap
            if "shoe_colour" in hidden:
                assert not {"shoes", "sneakers"} & set(words), cap


def test_shifted_domain_adds_new_colours(small, tmp_path):
    _, _, base = small
    used = {r["attributes"][k] for r in base for k in ("upper_colour", "lower_colour", "bag_colour")}
    assert not used & set(SHIFTED_EXTRA) and used <= set(BASE_PALETTE) | {"none"}
    stats = generate(tmp_path / "s", SynthConfig(**{**SMALL.__dict__, "domain": "shifted"}), progress=False)
    recs = json.loads((tmp_path / "s" / "reid_raw.json").read_text())
    new = {r["attributes"][k] for r in recs for k in ("upper_colour", "lower_colour")} & set(SHIFTED_EXTRA)
    assert new and stats["domain"] == "shifted"
    assert any(set(SHIFTED_EXTRA) & set(_words(c)) for r in recs for c in r["captions"])


@pytest.mark.parametrize("cfg, message", [
    (SynthConfig(ids=2), "cannot hold"),
    (SynthConfig(ids=10, images_per_id=0), "images-per-id"),
    (SynthConfig(ids=10, domain="moon"), "domain"),
    (SynthConfig(ids=10, size=(32, 16)), "too small"),
])
def test_bad_config(cfg, message, tmp_path):
    with pytest.raises(SynthError, match=message):
        generate(tmp_path, cfg, progress=False)


def test_parse_size():
    assert parse_size("384x128") == (384, 128)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("384")


def test_cli_synth_prints_chance_and_refuses_to_overwrite(tmp_path, capsys):
    args = ["data", "synth", str(tmp_path / "d"), "--ids", "12", "--images-per-id", "2", "--size", "48x96",
            "--test-ids", "4", "--seed", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"test +4 ids +8 images +16 captions", out)
    assert "chance Rank-1: val 100.00 %, test 25.00 %" in out
    assert main(args) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert main(["data", "synth", str(tmp_path / "e"), "--ids", "12", "--size", "big"]) == 2


def test_force_never_removes_a_folder_synth_did_not_write(tmp_path, capsys):
    """``--force`` on a folder holding someone else's ``imgs/`` refuses (exit 2, one line) and deletes nothing."""
    foreign = tmp_path / "mine"
    (foreign / "imgs").mkdir(parents=True)
    (foreign / "imgs" / "holiday.jpg").write_bytes(b"not ours")
    (foreign / "reid_raw.json").write_text("[]")
    args = ["data", "synth", str(foreign), "--ids", "12", "--images-per-id", "2", "--size", "48x96",
            "--test-ids", "4"]
    for extra in ([], ["--force"]):
        assert main(args + extra) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "did not write" in err
        assert (foreign / "imgs" / "holiday.jpg").read_bytes() == b"not ours"
    # a folder synth wrote carries the marker, and --force replaces it (stale images go)
    ours = tmp_path / "ours"
    assert main(["data", "synth", str(ours)] + args[3:]) == 0
    assert (ours / ".person_search_synth").is_file()
    (ours / "imgs" / "train" / "stale.jpg").write_bytes(b"x")
    assert main(["data", "synth", str(ours)] + args[3:] + ["--force"]) == 0
    assert not (ours / "imgs" / "train" / "stale.jpg").exists()
