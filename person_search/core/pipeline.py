"""The whole pipeline in one process, without ROS: video -> tracks -> embeddings -> gallery."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

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

    def __init__(self, cfg: PipelineConfig, *, encoder=None, tracker=None):
        from person_search.core.detect import PersonTracker
        from person_search.core.embed_stage import Embedder
        from person_search.core.gallery import make_gallery
        self.cfg = cfg
        self.tracker = tracker or PersonTracker(cfg.detector)
        self.embedder = Embedder(cfg.encoder, encoder)
        self.gallery = make_gallery(cfg.gallery, dim=self.embedder.dim, model_id=self.embedder.model_id)
        self.stats = RunStats()

    def process_frame(self, frame) -> int:
        det = self.tracker.update(frame)
        self.stats.frames += 1
        self.stats.detections += len(det.people)
        self.stats.tracks.update((det.source_id, p.track_id) for p in det.people)
        if not det.people:
            return 0
        batch = self.embedder.embed(det, frame=frame.image)  # thumbnail encoded only if a crop passes
        if batch is None:
            return 0
        self.gallery.add(batch)
        self.stats.embedded += len(batch)
        return len(batch)

    def process_video(self, source: str, *, max_frames: int = 0,
                      progress: Optional[Callable[[int, int, float], None]] = None) -> RunStats:
        """Run a file through the pipeline as fast as possible, on the video's own clock.

        Frames are stamped start + position in the video (so budgets count video seconds);
        ``video.fps`` > 0 keeps at most that many frames per video second. ``progress`` is
        called with (frames done, frames expected or 0, video seconds done).
        """
        from person_search.core.video import open_source
        vcfg = replace(self.cfg.video, source=str(source), loop=False, realtime=False)
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
