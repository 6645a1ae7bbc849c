"""The whole pipeline in one process, without ROS: video -> tracks -> embeddings -> gallery -> persons.

As in the graph: the embedder stage adds re-id features of the admitted crops (``reid.*``;
missing weights: one line, answers per track), and the index's
:class:`~person_search.core.gallery.persons.PersonLinker` links tracks into persons, so
answers come one per person (:meth:`OfflinePipeline.answer`). Several videos may be
processed as several cameras (``source_id``), each with its own tracker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

from person_search.core.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    frames: int = 0
    detections: int = 0
    embedded: int = 0
    seconds: float = 0.0
    video_seconds: float = 0.0  # video time covered (first to last frame + one frame period)
    tracks: set = field(default_factory=set)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Video seconds processed per wall second (>= 1: faster than real time)."""
        return self.video_seconds / self.seconds if self.seconds > 0 else 0.0


class OfflinePipeline:
    """Owns one tracker, one embedder and one gallery; feed it frames or a whole video."""

    def __init__(self, cfg: PipelineConfig, *, encoder=None, tracker=None, reid=None):
        from person_search.core.detect import PersonTracker
        from person_search.core.embed_stage import Embedder
        from person_search.core.gallery import make_gallery
        from person_search.core.gallery.persons import PersonLinker
        from person_search.core.reid.encoder import maybe_reid_encoder
        self.cfg = cfg
        self.tracker = tracker or PersonTracker(cfg.detector)
        self.trackers: Dict[str, object] = {}  # source id -> its tracker (the first source gets self.tracker)
        self.reid = reid if reid is not None else maybe_reid_encoder(cfg.reid, warn=log.warning)
        self.embedder = Embedder(cfg.encoder, encoder, reid=self.reid)
        self.gallery = make_gallery(cfg.gallery, dim=self.embedder.dim, model_id=self.embedder.model_id)
        self.linker = PersonLinker(cfg.reid, window_s=cfg.gallery.window_s)
        self.stats = RunStats()

    def _tracker_for(self, source_id: str):
        if source_id not in self.trackers:
            from person_search.core.detect import PersonTracker
            self.trackers[source_id] = self.tracker if not self.trackers else PersonTracker(self.cfg.detector)
        return self.trackers[source_id]

    def link(self, batch) -> None:
        """Feed a batch's re-id features to the person linker (what the index node does)."""
        if batch.reid_vectors is None or not self.cfg.reid.enabled:
            return
        store = getattr(self.gallery, "person_store", None)
        if store is not None and self.linker.shared is None:  # Milvus: persons shared with other writers
            self.linker.attach(store(batch.reid_model_id, batch.reid_vectors.shape[1]))
        self.linker.observe(batch.source_id, batch.track_ids.tolist(), batch.stamp_ns, batch.reid_vectors,
                            batch.reid_model_id)
        if self.stats.frames % 100 == 0:
            self.linker.evict(batch.stamp_ns)

    def process_frame(self, frame) -> int:
        det = self._tracker_for(frame.source_id).update(frame)
        self.stats.frames += 1
        self.stats.detections += len(det.people)
        self.stats.tracks.update((det.source_id, p.track_id) for p in det.people)
        if not det.people:
            return 0
        batch = self.embedder.embed(det, frame=frame.image)  # thumbnail encoded only if a crop passes
        if batch is None:
            return 0
        self.gallery.add(batch)
        self.link(batch)
        self.stats.embedded += len(batch)
        return len(batch)

    def process_video(self, source: str, *, max_frames: int = 0, source_id: Optional[str] = None,
                      progress: Optional[Callable[[int, int, float], None]] = None) -> RunStats:
        """Run a file through the pipeline as fast as possible, on the video's own clock.

        Frames are stamped start + position in the video (so budgets count video seconds);
        ``video.fps`` > 0 keeps at most that many frames per video second. ``progress`` is
        called with (frames done, frames expected or 0, video seconds done). ``source_id``
        names the camera (default ``video.source_id``); each camera has its own tracker.
        """
        from person_search.core.video import open_source
        vcfg = replace(self.cfg.video, source=str(source), loop=False, realtime=False,
                       source_id=source_id or self.cfg.video.source_id)
        t0 = time.monotonic()
        with open_source(vcfg) as src:
            total = int(src.duration_s * src.fps) if src.duration_s > 0 else 0
            first_ns = last_ns = None
            while True:
                frame = src.read()
                if frame is None:
                    break
                self.process_frame(frame)
                first_ns = frame.stamp_ns if first_ns is None else first_ns
                last_ns = frame.stamp_ns
                video_s = (last_ns - first_ns) / 1e9 + 1.0 / max(src.fps, 1e-9)
                if progress:
                    progress(self.stats.frames, total, video_s)
                if max_frames and self.stats.frames >= max_frames:
                    break
        self.stats.seconds += time.monotonic() - t0
        if first_ns is not None:
            self.stats.video_seconds += video_s
        return self.stats

    def text_engine(self, encoder=None):
        """Return a QueryEngine on the same CLIP model (text tower built on first use)."""
        from person_search.core.clip_encoder import ClipEncoder
        from person_search.core.query import QueryEngine
        if encoder is None:
            encoder = ClipEncoder(self.cfg.encoder, towers=("text",))
        if encoder.model_id != self.embedder.model_id:
            raise ValueError(f"text model {encoder.model_id} differs from image model {self.embedder.model_id}")
        return QueryEngine(encoder, self.cfg.query)

    def answer(self, engine, description, top_k: int, *, by_track: bool = False, **filters
               ) -> Tuple[List, Optional[List]]:
        """Answer a description as ``/query_person`` does: (track matches, person groups or None when by track)."""
        return engine.query_persons(self.gallery, self.linker, description, top_k, by_track=by_track, **filters)
