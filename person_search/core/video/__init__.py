"""Video sources: files, V4L2 cameras, RTSP/HTTP streams and image folders, as `Frame`s.

All sources go through OpenCV (``cv2.VideoCapture``; folders through ``cv2.imread``).

* Files and folders are read on the caller's thread. Offline (``realtime=False``, what
  `person-search run` uses) they run on the video's own clock, as fast as they are read: a
  frame is stamped ``start + its position in the video`` (``CAP_PROP_POS_MSEC``, or index /
  fps where the container gives no usable time; a loop continues after the last frame),
  where ``start`` is the wall time when the first frame is read, so results and rate
  budgets count video seconds. Live (``realtime=True``, the camera node) a file plays like
  a camera: the frame at video time v is due at ``t0 + v`` on the wall clock, is delivered
  then and stamped at that moment on the capture clock below; a frame found late (the next
  one already due) is dropped and counted (``stats()["late"]``), never queued, so stamps
  cannot fall behind the wall clock however slow the decoder or the consumer. ``fps`` (when
  below the file's rate) samples a file: at most ``fps`` frames per video second are kept
  (an image folder plays at ``fps``, default 30). ``loop=True`` restarts at the end. A frame
  that does not decode is skipped with a warning and counted (``stats()["corrupt"]``).
  ``max_width`` downscales every frame of any source at once (INTER_AREA).
* Live sources (cameras, URLs) are read by a background grabber thread that keeps only
  the latest frame (frames the caller did not take in time are dropped, never queued).
  ``read()`` waits at most ``read_timeout_s``; after that the stream is treated as lost
  and the grabber reconnects with exponential backoff (``reconnect_initial_s`` doubling up
  to ``reconnect_max_s``, at most ``max_reconnects`` attempts in a row; -1 = forever).
  The frame index keeps counting across reconnects.

Live frames (and files played live) are stamped at capture on a monotonic clock anchored to the wall clock at open:
``wall_at_open_ns + (time.monotonic_ns() - mono_at_open_ns)``. Stamps strictly increase.

A source that cannot be opened (missing file, undecodable file, empty folder, camera or
URL that does not answer) raises `SourceError` naming it, at open time.
"""

from person_search.core.video.capture import (CaptureFactory, CaptureTarget, SourceError, default_capture_factory,
                                              source_kind)
from person_search.core.video.files import (FILE_DEFAULT_FPS, FOLDER_DEFAULT_FPS, IMAGE_EXTENSIONS,
                                            MAX_CONSECUTIVE_CORRUPT)
from person_search.core.video.source import VideoSource, open_source

__all__ = ["CaptureFactory", "CaptureTarget", "FILE_DEFAULT_FPS", "FOLDER_DEFAULT_FPS", "IMAGE_EXTENSIONS",
           "MAX_CONSECUTIVE_CORRUPT", "SourceError", "VideoSource", "default_capture_factory", "open_source",
           "source_kind"]
