"""The one place that knows both ROS messages and core types.

Images go through cv_bridge where it is installed and through an equivalent numpy
conversion otherwise (the two are tested against each other where both exist).

Array fields are filled with ``array.array`` objects (``msg.data.frombytes(...)`` as
cv_bridge does), never with ``bytes`` or lists: on Humble, and wherever
``ROS_PYTHON_CHECK_FIELDS=1``, the generated setters check a bytes/list value element by
element in Python (~130 ms for a 960x540 frame), while an ``array.array`` of the right
type code is taken as is (benchmarks/bench_convert.py).
"""

from __future__ import annotations

import array
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

from person_search.core.imaging import decode_jpeg, encode_jpeg, is_bgr
from person_search.core.types import EmbeddingBatch, FrameDetections, PersonDetection, TrackMatch

try:  # cv_bridge exists on a ROS 2 distribution, not among the PyPI wheels
    from cv_bridge import CvBridge as _CvBridge
    _BRIDGE = _CvBridge()
except Exception:  # noqa: BLE001 - any import failure means "use numpy"
    _BRIDGE = None

# encoding -> (channels, dtype, conversion to BGR or None)
_ENCODINGS: Dict[str, Tuple[int, type, Optional[int]]] = {
    "bgr8": (3, np.uint8, None),
    "rgb8": (3, np.uint8, cv2.COLOR_RGB2BGR),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2BGR),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2BGR),
}


CROP_JPEG_QUALITY = 90  # person crops on /person_crops: ~10x smaller than bgr8, no visible loss for CLIP


class ImageError(ValueError):
    """An image message that cannot be turned into a BGR frame."""


def ns_to_time(ns: int) -> Time:
    ns = max(0, int(ns))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_to_ns(t: Time) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def image_to_bgr(msg: Image, *, use_bridge: Optional[bool] = None) -> np.ndarray:
    """Decode a sensor_msgs/Image (bgr8, rgb8, bgra8, rgba8, mono8) to a BGR uint8 array.

    Raises:
        ImageError: unsupported encoding, or a data size that does not match the header.
    """
    enc = msg.encoding.lower()
    if enc not in _ENCODINGS:
        raise ImageError(f"unsupported image encoding {msg.encoding!r}; use one of {', '.join(_ENCODINGS)}")
    ch, dtype, conv = _ENCODINGS[enc]
    if msg.height == 0 or msg.width == 0:
        raise ImageError(f"empty image ({msg.width}x{msg.height})")
    row = msg.width * ch
    if msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ImageError(f"image data of {len(msg.data)} bytes does not fit {msg.width}x{msg.height} "
                         f"{msg.encoding} with step {msg.step}")
    if (use_bridge if use_bridge is not None else _BRIDGE is not None) and _BRIDGE is not None:
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="bgr8"))
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            raise ImageError(f"cv_bridge could not convert the image: {exc}") from exc
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8, count=msg.step * msg.height)
    arr = buf.reshape(msg.height, msg.step)[:, :row].reshape(msg.height, msg.width, ch) if ch > 1 \
        else buf.reshape(msg.height, msg.step)[:, :row]
    if msg.is_bigendian and np.dtype(dtype).itemsize > 1:
        arr = arr.byteswap()
    return np.ascontiguousarray(cv2.cvtColor(arr, conv)) if conv is not None else np.ascontiguousarray(arr)


def bgr_to_image(img: np.ndarray, *, stamp_ns: int = 0, frame_id: str = "") -> Image:
    """Encode a BGR uint8 array as a bgr8 sensor_msgs/Image."""
    if not is_bgr(img, empty_ok=True):
        shape = (img.shape, img.dtype) if isinstance(img, np.ndarray) else None
        raise ImageError(f"expected a BGR uint8 (H, W, 3) array, got {shape}")
    msg = Image()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = "bgr8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data.frombytes(np.ascontiguousarray(img).tobytes())
    return msg


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (jpeg/png) to BGR."""
    if not msg.data:
        raise ImageError("empty compressed image")
    img = decode_jpeg(bytes(msg.data))
    if img is None:
        raise ImageError(f"compressed image ({msg.format!r}, {len(msg.data)} bytes) could not be decoded")
    return img


def jpeg_msg(data: bytes, *, stamp_ns: int = 0, frame_id: str = "") -> CompressedImage:
    msg = CompressedImage()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.format = "jpeg"
    msg.data.frombytes(bytes(data))
    return msg


def float_array(values) -> array.array:
    """Return a float32[] field value (no per-element checks on Humble)."""
    return array.array("f", np.ascontiguousarray(values, np.float32).reshape(-1).tobytes())


def int64_array(values) -> array.array:
    return array.array("q", np.ascontiguousarray(values, np.int64).reshape(-1).tobytes())


def detections_to_msg(det: FrameDetections, *, frame_jpeg: bytes = b""):
    from person_search_interfaces.msg import PersonCrop, PersonCrops
    msg = PersonCrops()
    msg.header.stamp = ns_to_time(det.stamp_ns)
    msg.header.frame_id = det.source_id
    msg.frame_width, msg.frame_height = int(det.frame_size[0]), int(det.frame_size[1])
    for p in det.people:
        c = PersonCrop()
        c.track_id = int(p.track_id)
        c.box = [float(v) for v in p.box]
        c.score = float(p.score)
        c.quality = float(p.quality)
        c.crop = jpeg_msg(encode_jpeg(p.crop, quality=CROP_JPEG_QUALITY), stamp_ns=det.stamp_ns,
                          frame_id=det.source_id)
        msg.people.append(c)
    if frame_jpeg:
        msg.frame_thumbnail = jpeg_msg(frame_jpeg, stamp_ns=det.stamp_ns, frame_id=det.source_id)
    return msg


def msg_to_detections(msg) -> Tuple[FrameDetections, bytes]:
    stamp = time_to_ns(msg.header.stamp)
    people: List[PersonDetection] = []
    for c in msg.people:
        people.append(PersonDetection(track_id=int(c.track_id), box=tuple(float(v) for v in c.box),
                                      score=float(c.score), crop=compressed_to_bgr(c.crop),
                                      quality=float(c.quality)))
    det = FrameDetections(stamp_ns=stamp, source_id=msg.header.frame_id, frame_index=-1,
                          frame_size=(int(msg.frame_width), int(msg.frame_height)), people=people)
    return det, bytes(msg.frame_thumbnail.data)


def batch_to_msg(batch: EmbeddingBatch):
    from person_search_interfaces.msg import PersonEmbeddings
    msg = PersonEmbeddings()
    msg.header.stamp = ns_to_time(batch.stamp_ns)
    msg.header.frame_id = batch.source_id
    msg.model_id = batch.model_id
    msg.dim = batch.dim
    msg.track_ids = int64_array(batch.track_ids)
    msg.boxes = float_array(batch.boxes)
    msg.scores = float_array(batch.scores)
    msg.qualities = float_array(batch.qualities if batch.qualities is not None else np.zeros(len(batch)))
    msg.data = float_array(batch.vectors)
    msg.crops = [jpeg_msg(b, stamp_ns=batch.stamp_ns, frame_id=batch.source_id) for b in batch.crops_jpeg]
    if batch.frame_jpeg:
        msg.frame_thumbnail = jpeg_msg(batch.frame_jpeg, stamp_ns=batch.stamp_ns, frame_id=batch.source_id)
    if batch.reid_vectors is not None and len(batch):
        msg.reid_model_id = batch.reid_model_id
        msg.reid_dim = int(batch.reid_vectors.shape[1])
        msg.reid_data = float_array(batch.reid_vectors)
    return msg


def msg_to_batch(msg) -> EmbeddingBatch:
    """Convert PersonEmbeddings -> EmbeddingBatch; refuse inconsistent sizes with a ValueError."""
    n = len(msg.track_ids)
    dim = int(msg.dim)
    data = np.asarray(msg.data, dtype=np.float32)
    if dim <= 0 or data.size != n * dim:
        raise ValueError(f"embedding message has {data.size} values for {n} rows of dim {dim}")
    boxes = np.asarray(msg.boxes, dtype=np.float32)
    if boxes.size != 4 * n or len(msg.scores) != n:
        raise ValueError(f"embedding message has {boxes.size // 4} boxes and {len(msg.scores)} scores for {n} rows")
    crops = [bytes(c.data) for c in msg.crops]
    if crops and len(crops) != n:
        raise ValueError(f"embedding message has {len(crops)} crops for {n} rows")
    quals = np.asarray(msg.qualities, np.float32) if len(msg.qualities) == n else None
    reid = None
    if msg.reid_dim:
        reid = np.asarray(msg.reid_data, np.float32)
        if reid.size != n * int(msg.reid_dim):
            raise ValueError(f"embedding message has {reid.size} re-id values for {n} rows of dim {msg.reid_dim}")
        reid = reid.reshape(n, int(msg.reid_dim))
    return EmbeddingBatch(model_id=msg.model_id, vectors=data.reshape(n, dim),
                          track_ids=np.asarray(msg.track_ids, np.int64), boxes=boxes.reshape(n, 4),
                          scores=np.asarray(msg.scores, np.float32), stamp_ns=time_to_ns(msg.header.stamp),
                          source_id=msg.header.frame_id, crops_jpeg=crops, qualities=quals,
                          frame_jpeg=bytes(msg.frame_thumbnail.data), reid_vectors=reid,
                          reid_model_id=msg.reid_model_id if reid is not None else "")


def match_to_msg(m: TrackMatch, *, with_crop: bool = True, with_frame: bool = False, person_id: int = -1,
                 tracks: Sequence[Tuple[str, int]] = ()):
    """Build a PersonMatch; the gallery's JPEG crop (and frame) go out as they are, undecoded.

    ``person_id`` and ``tracks`` ((camera, track id) of all of the person's tracks, this one
    first) fill the person fields; without them the match is its own unknown person.
    """
    from person_search_interfaces.msg import PersonMatch
    msg = PersonMatch()
    msg.track_id = int(m.track_id)
    msg.score = float(m.score)
    msg.camera_frame_id = m.source_id
    msg.first_seen = ns_to_time(m.first_seen_ns)
    msg.last_seen = ns_to_time(m.last_seen_ns)
    msg.box = [float(v) for v in m.box]
    if with_crop and m.crop_jpeg:
        msg.crop = jpeg_msg(m.crop_jpeg, stamp_ns=m.last_seen_ns, frame_id=m.source_id)
    if with_frame and m.frame_jpeg:
        msg.frame = jpeg_msg(m.frame_jpeg, stamp_ns=m.last_seen_ns, frame_id=m.source_id)
    msg.person_id = int(person_id)
    tracks = list(tracks) or [(m.source_id, int(m.track_id))]
    msg.person_track_ids = [int(t) for _, t in tracks]
    msg.cameras = [str(c) for c, _ in tracks]
    return msg


def vision_msgs_available() -> bool:
    """Return True where vision_msgs (a ROS 2 distribution package, not on PyPI) imports."""
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def detections_to_vision(det: FrameDetections):
    """Convert FrameDetections -> vision_msgs/Detection2DArray (track id in ``Detection2D.id``)."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
    msg = Detection2DArray()
    msg.header.stamp = ns_to_time(det.stamp_ns)
    msg.header.frame_id = det.source_id
    for p in det.people:
        d = Detection2D()
        d.header = msg.header
        d.id = str(int(p.track_id))
        x1, y1, x2, y2 = (float(v) for v in p.box)
        center = d.bbox.center
        # vision_msgs >= 4 (Humble+): center is vision_msgs/Pose2D with a position; older: x, y
        point = center.position if hasattr(center, "position") else center
        point.x, point.y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        d.bbox.size_x, d.bbox.size_y = x2 - x1, y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = "person"
        hyp.hypothesis.score = float(p.score)
        d.results.append(hyp)
        msg.detections.append(d)
    return msg
