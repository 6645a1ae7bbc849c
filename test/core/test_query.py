"""QueryEngine and description / top_k validation (deterministic fake text encoder + real gallery)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from person_search.core.config import GalleryConfig, QueryConfig
from person_search.core.gallery import RollingGallery
from person_search.core.query import QueryEngine, QueryError, validate_description, validate_top_k
from person_search.core.types import EmbeddingBatch

DIM = 32


def word_vec(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class FakeTextEncoder:
    """Bag of hashed words: texts sharing words get similar unit vectors."""

    model_id = "fake-clip"
    dim = DIM

    def __init__(self):
        self.calls = []

    def encode_text(self, texts):
        self.calls.append(list(texts))
        out = np.stack([sum(word_vec(w) for w in t.lower().replace(".", " ").split()) for t in texts]).astype(
            np.float32
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "empty"),
        ("   \t\n  ", "whitespace"),
        ("a" * 1001, "1001 characters.*limit is 1000"),
        ("x" * 100_000, "100000 characters.*limit is 1000"),
        ("red\x00coat", "control character"),
        ("red\x1b[31mcoat", "control character"),
        ("red\x7fcoat", "control character"),
        ("red\x0bcoat", "control character"),
        ("abc\u202edcba", "control character"),
        (None, "must be a string"),
        (42, "must be a string"),
        (b"red coat", "must be a string"),
        (["red coat"], "must be a string"),
    ],
)
def test_validate_description_refuses(bad, why):
    with pytest.raises(QueryError, match=why):
        validate_description(bad)


def test_validate_description_normalises():
    assert validate_description("  a  man\tin a\n red \r\n coat ") == "a man in a red coat"
    assert validate_description("a" * 1000) == "a" * 1000
    assert validate_description("une femme à l'écharpe bleue 👒") == "une femme à l'écharpe bleue 👒"
    assert validate_description("abc", max_chars=3) == "abc"
    with pytest.raises(QueryError, match="4 characters.*limit is 3"):
        validate_description("abcd", max_chars=3)
    assert issubclass(QueryError, ValueError)


def test_validate_top_k():
    assert validate_top_k(None, default=10, max_top_k=100) == 10
    assert validate_top_k(1, default=10, max_top_k=100) == 1
    assert validate_top_k(np.int64(100), default=10, max_top_k=100) == 100
    for bad in (0, -1, 101, 2.0, "3", True):
        with pytest.raises(QueryError):
            validate_top_k(bad, default=10, max_top_k=100)


# ---------------------------------------------------------------------------- engine


def test_encode_fills_templates_averages_and_normalises():
    enc = FakeTextEncoder()
    cfg = QueryConfig(templates=["a photo of {}.", "a blurry photo of {}.", "{}"])
    eng = QueryEngine(enc, cfg)
    v = eng.encode("  a man in a  red coat ")
    assert enc.calls == [
        ["a photo of a man in a red coat.", "a blurry photo of a man in a red coat.", "a man in a red coat"]
    ]
    expected = enc.encode_text(enc.calls[0]).mean(axis=0)
    np.testing.assert_allclose(v, expected / np.linalg.norm(expected), atol=1e-6)
    assert v.shape == (DIM,) and v.dtype == np.float32
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-6)


def test_encode_cache_is_lru_and_keyed_by_normalised_text():
    enc = FakeTextEncoder()
    eng = QueryEngine(enc, QueryConfig(), cache_size=2)
    a = eng.encode("red coat")
    b = eng.encode(" red   coat ")  # same normalised text: cached
    np.testing.assert_array_equal(a, b)
    assert len(enc.calls) == 1 and eng.cache_hits == 1
    a[:] = 0  # callers get a copy: the cache is not corrupted
    np.testing.assert_array_equal(eng.encode("red coat"), b)
    eng.encode("blue hat")
    eng.encode("green bag")  # evicts the least recently used ("red coat")
    assert len(enc.calls) == 3
    eng.encode("green bag")
    assert len(enc.calls) == 3
    eng.encode("red coat")
    assert len(enc.calls) == 4


def test_encode_refuses_bad_descriptions_before_encoding():
    enc = FakeTextEncoder()
    eng = QueryEngine(enc, QueryConfig(max_chars=20))
    for bad in ("", " ", "x" * 21, "a\x00b", None):
        with pytest.raises(QueryError):
            eng.encode(bad)
    assert enc.calls == []


def _gallery_with_people(model_id="fake-clip"):
    g = RollingGallery(GalleryConfig(window_s=600.0, capacity=10_000), dim=DIM, model_id=model_id)
    people = {
        1: "man red coat black hat",
        2: "woman blue dress",
        3: "child yellow raincoat",
        4: "man green jacket backpack",
    }
    for t, words in people.items():
        v = unit(sum(word_vec(w) for w in words.split()))
        g.add(
            EmbeddingBatch(
                model_id=model_id,
                vectors=v[None],
                track_ids=np.array([t]),
                boxes=np.zeros((1, 4), np.float32),
                scores=np.ones(1, np.float32),
                stamp_ns=t * 1_000_000_000,
                source_id="cam0" if t % 2 else "cam1",
            )
        )
    return g


def test_query_finds_the_described_person_and_respects_top_k_and_filters():
    eng = QueryEngine(FakeTextEncoder(), QueryConfig(templates=["{}"], default_top_k=3, max_top_k=4))
    g = _gallery_with_people()
    res = eng.query(g, "woman in a blue dress")
    assert len(res) == 3 and res[0].track_id == 2
    assert [m.track_id for m in eng.query(g, "yellow raincoat", top_k=1)] == [3]
    assert eng.query(g, "red coat", top_k=4)[0].track_id == 1
    res = eng.query(g, "red coat", top_k=4, source_id="cam1")
    assert {m.track_id for m in res} == {2, 4}
    res = eng.query(g, "man", top_k=4, since_ns=3_500_000_000)
    assert [m.track_id for m in res] == [4]
    for bad in (0, -3, 5):
        with pytest.raises(QueryError):
            eng.query(g, "red coat", top_k=bad)
    with pytest.raises(QueryError):
        eng.query(g, "\x00")


def test_query_refuses_a_gallery_of_another_model():
    eng = QueryEngine(FakeTextEncoder(), QueryConfig())
    with pytest.raises(QueryError, match="other-model.*fake-clip"):
        eng.query(_gallery_with_people("other-model"), "red coat")
