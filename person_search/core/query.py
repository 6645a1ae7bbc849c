"""Text queries: validate a description, embed it with prompt templates, search the gallery."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from typing import List, Optional, Protocol

import numpy as np

from person_search.core.config import QueryConfig
from person_search.core.models.run import CLIP_TEMPLATES
from person_search.core.types import TrackMatch

log = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")
_ALLOWED_CONTROL = {"\t", "\n", "\r"}  # ordinary whitespace, collapsed to one space
# bidirectional embedding / override / isolate controls (can disguise text in logs and UIs)
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class QueryError(ValueError):
    """A query (description or top_k) is invalid; the message says why."""


class TextEncoder(Protocol):
    """What the engine needs of a text encoder (e.g. encoder.ClipEncoder).

    It may also carry ``text_templates``, the prompt templates its weights expect (used
    when ``query.templates`` is empty, the default).
    """

    model_id: str
    dim: int

    def encode_text(self, texts: List[str]) -> np.ndarray:  # (N, D) float32, rows L2-normalised
        ...


def validate_description(text: object, *, max_chars: int = 1000) -> str:
    """Check a person description and return it normalised (stripped, whitespace collapsed).

    Refuses (QueryError) non-strings, empty or whitespace-only text, text longer than
    ``max_chars`` characters, control characters (Unicode category Cc, e.g. NUL, ESC,
    DEL, vertical tab) other than tab, newline and carriage return, lone surrogates
    and bidirectional override characters. Any run of whitespace becomes one space.
    """
    if not isinstance(text, str):
        raise QueryError(f"description must be a string, not {type(text).__name__}")
    if len(text) > max_chars:
        raise QueryError(f"description is {len(text)} characters long; the limit is {max_chars}")
    for i, ch in enumerate(text):
        if ch in _ALLOWED_CONTROL:
            continue
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
            raise QueryError(f"description contains a control character {ch!r} (U+{ord(ch):04X}) at position {i}")
    norm = _WHITESPACE.sub(" ", text).strip()
    if not norm:
        raise QueryError("description is empty" if not text else "description is only whitespace")
    return norm


def validate_top_k(top_k: object, *, default: int, max_top_k: int) -> int:
    """top_k as an int in [1, max_top_k]; None gives ``default``. <= 0, > max or non-int -> QueryError."""
    if top_k is None:
        return int(default)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise QueryError(f"top_k must be an integer, not {top_k!r}")
    if top_k <= 0:
        raise QueryError(f"top_k must be >= 1, got {int(top_k)}")
    if top_k > max_top_k:
        raise QueryError(f"top_k is {int(top_k)}; the limit is {max_top_k}")
    return int(top_k)


class QueryEngine:
    """Turns descriptions into query embeddings and searches a gallery.

    Args:
        text_encoder: object with ``encode_text(list[str]) -> (N, D) float32`` (rows
            L2-normalised), ``model_id`` and ``dim``.
        cfg: query configuration (prompt templates, limits, default top_k).
        cache_size: number of recent descriptions whose embedding is kept (LRU).
    """

    def __init__(self, text_encoder: TextEncoder, cfg: Optional[QueryConfig] = None, *, cache_size: int = 64):
        self.cfg = cfg if cfg is not None else QueryConfig()
        self.cfg.validate()
        self.encoder = text_encoder
        # query.templates when set; else the weights' own (a lab run: captions as written; CLIP: its prompt)
        self.templates: List[str] = list(self.cfg.templates or getattr(text_encoder, "text_templates", None)
                                         or CLIP_TEMPLATES)
        self.model_id = str(getattr(text_encoder, "model_id", ""))
        self.dim = int(getattr(text_encoder, "dim"))
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._cache_size = max(0, int(cache_size))
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    def prompts(self, description: str) -> List[str]:
        """Return the prompt texts of a (validated) description, one per template."""
        return [t.replace("{}", description) for t in self.templates]

    def encode(self, description: object) -> np.ndarray:
        """Encode a validated description -> (D,) float32 unit vector (templates averaged)."""
        text = validate_description(description, max_chars=self.cfg.max_chars)
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
                return hit.copy()
        emb = np.asarray(self.encoder.encode_text(self.prompts(text)), dtype=np.float32)
        n = len(self.templates)
        if emb.ndim != 2 or emb.shape != (n, self.dim):
            raise RuntimeError(f"text encoder returned shape {emb.shape}, expected ({n}, {self.dim})")
        if not np.isfinite(emb).all():
            raise RuntimeError("text encoder returned non-finite values")
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        vec = emb.mean(axis=0)
        norm = float(np.linalg.norm(vec))
        if norm <= 1e-12:
            raise RuntimeError("prompt embeddings cancel out (zero mean); check the templates")
        vec = (vec / norm).astype(np.float32)
        vec.setflags(write=False)
        with self._lock:
            self.cache_misses += 1
            if self._cache_size:
                self._cache[text] = vec
                self._cache.move_to_end(text)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return vec.copy()

    def query(self, gallery, description: object, top_k: Optional[int] = None, **filters) -> List[TrackMatch]:
        """Encode ``description`` and return the best ``top_k`` tracks of ``gallery``.

        Args:
            gallery: a RollingGallery (or anything with ``search`` and ``model_id``/``dim``).
            description: the person description.
            top_k: tracks wanted; None = cfg.default_top_k; <= 0 or > cfg.max_top_k -> QueryError.
            **filters: passed to ``gallery.search`` (min_score, since_ns, until_ns, source_id).

        Raises:
            QueryError: invalid description / top_k, or the gallery holds embeddings of
                another model than the text encoder.
        """
        k, vec = self._prepare(gallery, description, top_k)
        return gallery.search(vec, k, **filters)

    def _prepare(self, gallery, description: object, top_k: Optional[int]):
        """Check top_k and the gallery's model and dim; return (top_k, the description's embedding)."""
        k = validate_top_k(top_k, default=self.cfg.default_top_k, max_top_k=self.cfg.max_top_k)
        g_model = getattr(gallery, "model_id", None)
        if g_model is not None and self.model_id and g_model != self.model_id:
            raise QueryError(
                f"the gallery holds embeddings of model {g_model!r} but the text encoder is {self.model_id!r}"
            )
        g_dim = getattr(gallery, "dim", None)
        if g_dim is not None and int(g_dim) != self.dim:
            raise QueryError(f"the gallery holds dim {g_dim} embeddings but the text encoder gives dim {self.dim}")
        return k, self.encode(description)

    def query_persons(self, gallery, linker, description: object, top_k: Optional[int] = None, *,
                      by_track: bool = False, **filters):
        """Like :meth:`query`, folded into persons by ``linker`` (see ``gallery.persons.search_persons``).

        Returns:
            (track matches, person groups); the groups are None by track or without persons.
        """
        from person_search.core.gallery.persons import search_persons
        k, vec = self._prepare(gallery, description, top_k)
        return search_persons(gallery, linker, vec, k, by_track=by_track, **filters)
